//! The overlay: one network's containers on several hosts, joined by VXLAN
//! through one collect_md ("external") device per host. What the programs
//! steer by: the endpoints on other hosts (`OVL_REMOTE`), the hosts of the
//! cluster (`OVL_HOSTS`), which local network a VNI is (`OVL_VNI`), the
//! VXLAN device (`OVL_CFG`); and what they count (`OVL_STATS`).
//!
//! A network is an overlay on this host when its [`crate::NetworkInfo`]
//! carries [`crate::NET_F_OVERLAY`]; its index is this host's own (every
//! host numbers its networks itself), its VNI the cluster's.
//! `OVL_HOSTS` is keyed by a host's underlay address ([`crate::ipv4_be`])
//! and its value is unused (0): membership is the entry itself.
//!
//! Services span hosts too: a service's backend on another host is a
//! backend slot without ifindex ([`crate::lb::SvcSlot::ifindex`] 0) whose
//! address is an `OVL_REMOTE` entry marked [`REMOTE_F_BACKEND`]; its flows
//! are tunnelled to its host ([`crate::nat::CT_F_TUNNEL`]), and its host
//! passes the replies back through the tunnel (see `netd-ebpf`'s `mesh`).

/// Value of `OVL_REMOTE`, keyed by the endpoint's address
/// ([`crate::ipv4_be`]; overlay addresses are unique in the cluster): an
/// endpoint of an overlay network that lives on another host. One entry
/// per remote endpoint: the kernel holds no FDB or neighbour entry for it
/// (its MAC is [`crate::mac_for_ipv4`] of its address, as every netd MAC).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct RemoteEndpoint {
    /// The network's index on this host ([`crate::EndpointInfo::net_index`]).
    pub net_index: u32,
    /// The network's VXLAN network identifier (24 bits), the same on every
    /// host.
    pub vni: u32,
    /// The underlay address of the host it lives on, [`crate::ipv4_be`]:
    /// the outer destination of what is sent to it, and the only outer
    /// source its packets are accepted from.
    pub host: u32,
    /// `REMOTE_F_*` bits, written by the daemon.
    pub flags: u32,
}

/// [`RemoteEndpoint::flags`]: the endpoint is (or recently was) a backend
/// of a service this host balances, so what it sends may be the reply of
/// a flow this host translated (the client's host looks it up in
/// `NAT_CT`), and this host's own connections may go to it. Other remote
/// endpoints' packets cost no conntrack lookup.
pub const REMOTE_F_BACKEND: u32 = 1;

/// Value of `OVL_CFG` (one element, index 0).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct OverlayConfig {
    /// The VXLAN device's ifindex, what encapsulated packets are redirected
    /// to; 0 until the daemon attached it: nothing is encapsulated then.
    pub vxlan_ifindex: u32,
}

/// The largest VNI: VXLAN carries 24 bits.
pub const VNI_MAX: u32 = (1 << 24) - 1;

/// TTL of the outer IPv4 header of an encapsulated packet (Linux's
/// default `ip_default_ttl`).
pub const OUTER_TTL: u8 = 64;

/// What `OVL_STATS` counts, one slot each (per CPU; the daemon sums them).
/// Bytes are those of the inner frame (what the containers sent, Ethernet
/// header included), not of the outer packet, which adds 50.
///
/// The values are slot indexes in a pinned map: only append.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OverlayCounter {
    /// Packets encapsulated to a remote endpoint (`netd_from_ep`).
    EncapPackets = 0,
    /// Their bytes.
    EncapBytes = 1,
    /// Packets that arrived through the tunnel and were delivered to a
    /// local endpoint (`netd_vxlan_in`).
    DecapPackets = 2,
    /// Their bytes.
    DecapBytes = 3,
}

impl OverlayCounter {
    /// All counters, in value order.
    pub const ALL: [OverlayCounter; 4] = [
        OverlayCounter::EncapPackets,
        OverlayCounter::EncapBytes,
        OverlayCounter::DecapPackets,
        OverlayCounter::DecapBytes,
    ];
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, four `u32`s: no padding, any bit
    // pattern valid.
    unsafe impl aya::Pod for super::RemoteEndpoint {}
    // SAFETY: as above, one `u32`.
    unsafe impl aya::Pod for super::OverlayConfig {}
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;
    use crate::limits;

    #[test]
    fn overlay_layouts() {
        assert_eq!(size_of::<RemoteEndpoint>(), 16);
        assert_eq!(offset_of!(RemoteEndpoint, net_index), 0);
        assert_eq!(offset_of!(RemoteEndpoint, vni), 4);
        assert_eq!(offset_of!(RemoteEndpoint, host), 8);
        assert_eq!(offset_of!(RemoteEndpoint, flags), 12);
        assert_eq!(size_of::<OverlayConfig>(), 4);
    }

    #[test]
    fn overlay_counters_are_stable_and_fit_their_slots() {
        // Slot numbers of a pinned map: renumbering is a format break.
        assert_eq!(OverlayCounter::EncapPackets as u32, 0);
        assert_eq!(OverlayCounter::EncapBytes as u32, 1);
        assert_eq!(OverlayCounter::DecapPackets as u32, 2);
        assert_eq!(OverlayCounter::DecapBytes as u32, 3);
        for (i, counter) in OverlayCounter::ALL.iter().enumerate() {
            assert_eq!(*counter as u32, i as u32, "ALL must be in value order");
            assert!((*counter as u32) < limits::OVL_STATS_SLOTS);
        }
    }
}
