//! The cgroup socket hooks' own map (`SOCK_UDP_REV`): how
//! `netd_recvmsg4` finds the destination a UDP application used, to show
//! it as the source of the replies. (`HOST_ADDRS` is keyed and valued by
//! plain `u32`s.)

use crate::PublishKey;

/// `SOCK_UDP_REV` key: a UDP socket (by cookie) and the container
/// `{addr, port}` its datagrams were redirected to.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UdpRevKey {
    /// `bpf_get_socket_cookie()`: unique per socket for the life of the
    /// machine, never reused, so an LRU entry of a closed socket can only
    /// age out, never be matched by a newer socket.
    pub cookie: u64,
    /// Container address, [`crate::ipv4_be`].
    pub addr: u32,
    /// Container port, network byte order.
    pub port: u16,
    /// Zero (hash keys compare byte for byte).
    pub _pad: u16,
}

/// `SOCK_UDP_REV` value: the destination the application used, as a
/// [`PublishKey`] (`{host address, published port, proto}`).
pub type UdpRevValue = PublishKey;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, integers only, the padding spelled out
    // as a field (16 bytes, no implicit padding), any bit pattern valid.
    unsafe impl aya::Pod for super::UdpRevKey {}
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;
    use crate::map_names;

    #[test]
    fn udp_rev_key_layout() {
        assert_eq!(size_of::<UdpRevKey>(), 16);
        assert_eq!(align_of::<UdpRevKey>(), 8);
        assert_eq!(offset_of!(UdpRevKey, cookie), 0);
        assert_eq!(offset_of!(UdpRevKey, addr), 8);
        assert_eq!(offset_of!(UdpRevKey, port), 12);
        assert_eq!(offset_of!(UdpRevKey, _pad), 14);
        assert_eq!(size_of::<UdpRevValue>(), 8);
        for name in [map_names::HOST_ADDRS, map_names::SOCK_UDP_REV] {
            assert!(name.len() <= 15);
        }
    }
}
