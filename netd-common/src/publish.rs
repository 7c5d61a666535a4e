//! Published ports (`PUBLISH`, `PUBLISH_STATS`) and the host facts they
//! are translated with (`HOST_CFG`).

/// An IP protocol netd translates, with its IANA number as the value (what
/// [`PublishKey::proto`] and the packet's IPv4 protocol field hold).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP, 6.
    Tcp = 6,
    /// UDP, 17.
    Udp = 17,
}

impl Proto {
    /// The IANA protocol number.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// Decodes an IPv4 protocol number; `None` for anything but TCP/UDP.
    pub const fn from_u8(value: u8) -> Option<Proto> {
        match value {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    /// Stable, lower-case label (`tcp`, `udp`), as in Docker's `80/tcp`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// `PUBLISH` map key: a published host address/port. `addr` 0 = every host
/// address (`-p 8080:80`); 127.0.0.1 = loopback only
/// (`-p 127.0.0.1:8080:80`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PublishKey {
    /// Host IPv4 address, network byte order ([`crate::ipv4_be`]); 0 = any.
    pub addr: u32,
    /// Host port, network byte order (`port.to_be()`).
    pub port: u16,
    /// IP protocol number: 6 TCP, 17 UDP ([`Proto`]).
    pub proto: u8,
    /// Zero.
    pub _pad: u8,
}

/// [`PublishTarget::flags`]: the port is published to a service, not to
/// one container. `addr` is then the service's virtual IP (its `LB_SVC`
/// frontend), `ifindex` is 0 and `net_index` holds the service index; each
/// new flow goes to a backend chosen round-robin (see [`crate::lb`]).
pub const PUBLISH_F_SERVICE: u16 = 1;

/// `PUBLISH` map value: where a published port leads.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PublishTarget {
    /// Container IPv4 address, network byte order ([`crate::ipv4_be`]); with
    /// [`PUBLISH_F_SERVICE`] the service's virtual IP.
    pub addr: u32,
    /// Container port, network byte order.
    pub port: u16,
    /// `PUBLISH_F_*` bits (0 for a container target, which is what a
    /// `PUBLISH` entry of a netd without services holds here).
    pub flags: u16,
    /// The container's host-side veth ifindex; 0 for a service.
    pub ifindex: u32,
    /// The container's network index ([`crate::EndpointInfo::net_index`]); for a
    /// service, the service index.
    pub net_index: u32,
}

impl PublishTarget {
    /// Whether the port leads to a service (balanced) rather than one
    /// container.
    pub const fn is_service(&self) -> bool {
        self.flags & PUBLISH_F_SERVICE != 0
    }
}

/// `HOST_CFG` array map value, one entry (index 0): facts about the host.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HostConfig {
    /// The uplink's ifindex (where masqueraded traffic leaves).
    pub uplink_ifindex: u32,
    /// The uplink's IPv4 address, network byte order; 0 = no uplink (no
    /// masquerade, no DNAT from outside).
    pub uplink_addr: u32,
    /// The daemon's (host) network namespace cookie; the socket hooks act
    /// only there.
    pub netns_cookie: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, integers only with the padding spelled
    // out as fields (8 bytes, no implicit padding), any bit pattern valid.
    unsafe impl aya::Pod for super::PublishKey {}
    // SAFETY: as above, 16 bytes of integers, no implicit padding.
    unsafe impl aya::Pod for super::PublishTarget {}
    // SAFETY: as above, two `u32`s then a `u64` at offset 8, 16 bytes.
    unsafe impl aya::Pod for super::HostConfig {}
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;
    use crate::map_names;

    #[test]
    fn publish_layouts() {
        assert_eq!(size_of::<PublishKey>(), 8);
        assert_eq!(offset_of!(PublishKey, addr), 0);
        assert_eq!(offset_of!(PublishKey, port), 4);
        assert_eq!(offset_of!(PublishKey, proto), 6);
        assert_eq!(offset_of!(PublishKey, _pad), 7);
        assert_eq!(size_of::<PublishTarget>(), 16);
        assert_eq!(offset_of!(PublishTarget, addr), 0);
        assert_eq!(offset_of!(PublishTarget, port), 4);
        assert_eq!(offset_of!(PublishTarget, flags), 6);
        assert_eq!(offset_of!(PublishTarget, ifindex), 8);
        assert_eq!(offset_of!(PublishTarget, net_index), 12);
        assert_eq!(size_of::<HostConfig>(), 16);
        assert_eq!(align_of::<HostConfig>(), 8);
        assert_eq!(offset_of!(HostConfig, uplink_ifindex), 0);
        assert_eq!(offset_of!(HostConfig, uplink_addr), 4);
        assert_eq!(offset_of!(HostConfig, netns_cookie), 8);
    }

    #[test]
    fn proto_values_are_iana_numbers() {
        assert_eq!(Proto::Tcp as u8, 6);
        assert_eq!(Proto::Udp as u8, 17);
        assert_eq!(Proto::from_u8(6), Some(Proto::Tcp));
        assert_eq!(Proto::from_u8(17), Some(Proto::Udp));
        assert_eq!(Proto::from_u8(1), None);
        for name in [map_names::PUBLISH, map_names::HOST_CFG] {
            assert!(name.len() <= 15);
        }
    }
}
