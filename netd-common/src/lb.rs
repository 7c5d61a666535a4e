//! Services: a virtual IP (VIP) balanced round-robin over backends, in the
//! kernel. The layout of `LB_SVC`, `LB_RR`, `LB_STATS` and `LB_BACKENDS`.
//!
//! # `LB_SVC`: frontend and backend slots in one hash
//! A service is a run of entries with the same `{vip, port, proto}` and
//! `slot` = 0..=n:
//! ```text
//! {vip, 0, 0, slot 0}  ->  {count: n, svc_index, ...}        the frontend
//! {vip, 0, 0, slot i}  ->  {backend: B_i, ifindex: I_i, ...}  1 <= i <= n
//! ```
//! `port`/`proto` 0 mean every port and protocol (the only frontends netd
//! writes today; the key has room for per-port frontends later). A new
//! flow costs the slot 0 lookup, one atomic add on the service's `LB_RR`
//! cursor `c`, and the lookup of slot `c % n + 1`: no loop over services or
//! backends, whatever their number.
//!
//! A backend on another host (an overlay network's endpoint there) has
//! `ifindex` 0 in its slot: a new flow to it also costs the lookup of its
//! address in `OVL_REMOTE` (its VNI and host), which the flow's entry then
//! keeps, so that its packets cost nothing more.
//!
//! # Write order (the programs read whatever is there)
//! The daemon writes the backends' bookkeeping (`LB_STATS`, `LB_BACKENDS`)
//! first, then slots 1..=n, then slot 0 with the count; when shrinking,
//! slots beyond the new count are deleted after the count went down.
//! Removing a service deletes slot 0 first. So every slot a program can
//! reach through the count it read is a complete backend; the one race left
//! (the count read just before a shrink, the slot deleted just after) is a
//! missed lookup, which the program retries once with the count read again.
//! A count of 0 is a service without backends: its new flows are dropped
//! (`DropReason::NoBackend`).
//!
//! # Round robin
//! `LB_RR[svc_index]` is a `u64` shared by every CPU (an array, not per
//! CPU) advanced with an atomic fetch-and-add, so N*k new flows in sequence
//! hit each of N backends exactly k times, also after the backend list
//! changed (any N*k consecutive cursor values cover every residue mod N k
//! times). The chosen backend is recorded in `NAT_CT` (flag
//! [`crate::nat::CT_F_LB`]), so a flow stays on it.

/// [`SvcKey::slot`] of the frontend entry (the count).
pub const SLOT_FRONTEND: u32 = 0;

/// `LB_SVC` key. `vip` and `port` in network byte order.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SvcKey {
    /// The service's virtual IP, [`crate::ipv4_be`].
    pub vip: u32,
    /// Frontend port, network byte order; 0 = every port.
    pub port: u16,
    /// IP protocol number; 0 = every protocol (TCP, UDP, ICMP echo).
    pub proto: u8,
    /// Zero.
    pub _pad: u8,
    /// 0: the frontend (count); 1..=count: the backends.
    pub slot: u32,
}

impl SvcKey {
    /// The key of slot `slot` of the every-port frontend of `vip`.
    pub const fn new(vip: u32, slot: u32) -> SvcKey {
        SvcKey {
            vip,
            port: 0,
            proto: 0,
            _pad: 0,
            slot,
        }
    }
}

/// `LB_SVC` value; which fields mean something depends on the slot.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SvcSlot {
    /// Slots >= 1: the backend's address ([`crate::ipv4_be`]); slot 0: 0.
    pub backend: u32,
    /// Slots >= 1: the backend's host-side veth ifindex (where
    /// `bpf_redirect_peer` delivers), or 0 for a backend on another host
    /// (its `OVL_REMOTE` entry says which, see [`crate::overlay`]); slot 0:
    /// 0.
    pub ifindex: u32,
    /// Slot 0: the number of backends (slots 1..=count); others: 0.
    pub count: u32,
    /// The service index (`LB_RR` index, `LB_STATS` key), in every slot.
    pub svc_index: u32,
    /// Slots >= 1: the backend's port, network byte order; 0 = the
    /// port the flow was sent to (the only value written today).
    pub port: u16,
    /// Zero.
    pub _pad: u16,
    /// Reserved, 0.
    pub flags: u32,
}

/// `LB_STATS` key: one backend of one service.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LbStatsKey {
    /// The service index.
    pub svc_index: u32,
    /// The backend's address, [`crate::ipv4_be`].
    pub backend: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, integers only with the padding spelled
    // out (12 bytes, no implicit padding), any bit pattern valid.
    unsafe impl aya::Pod for super::SvcKey {}
    // SAFETY: as above, 24 bytes of integers, no implicit padding.
    unsafe impl aya::Pod for super::SvcSlot {}
    // SAFETY: as above, two `u32`s.
    unsafe impl aya::Pod for super::LbStatsKey {}
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;
    use crate::{PUBLISH_F_SERVICE, PublishTarget, ipv4_be, limits, map_names};

    #[test]
    fn lb_layouts() {
        assert_eq!(size_of::<SvcKey>(), 12);
        assert_eq!(align_of::<SvcKey>(), 4);
        assert_eq!(offset_of!(SvcKey, vip), 0);
        assert_eq!(offset_of!(SvcKey, port), 4);
        assert_eq!(offset_of!(SvcKey, proto), 6);
        assert_eq!(offset_of!(SvcKey, _pad), 7);
        assert_eq!(offset_of!(SvcKey, slot), 8);
        assert_eq!(size_of::<SvcSlot>(), 24);
        assert_eq!(offset_of!(SvcSlot, backend), 0);
        assert_eq!(offset_of!(SvcSlot, ifindex), 4);
        assert_eq!(offset_of!(SvcSlot, count), 8);
        assert_eq!(offset_of!(SvcSlot, svc_index), 12);
        assert_eq!(offset_of!(SvcSlot, port), 16);
        assert_eq!(offset_of!(SvcSlot, _pad), 18);
        assert_eq!(offset_of!(SvcSlot, flags), 20);
        assert_eq!(size_of::<LbStatsKey>(), 8);
        assert_eq!(offset_of!(LbStatsKey, svc_index), 0);
        assert_eq!(offset_of!(LbStatsKey, backend), 4);
    }

    #[test]
    fn lb_names_and_sizes_fit() {
        for name in [
            map_names::LB_SVC,
            map_names::LB_RR,
            map_names::LB_STATS,
            map_names::LB_BACKENDS,
        ] {
            assert!(name.len() <= 15);
        }
        const {
            assert!(limits::MAX_SERVICES * 2 <= limits::LB_SVC_ENTRIES);
            assert!(limits::MAX_BACKENDS < limits::LB_SVC_ENTRIES);
        };
        let key = SvcKey::new(ipv4_be([10, 0, 0, 9]), 3);
        assert_eq!((key.port, key.proto, key._pad, key.slot), (0, 0, 0, 3));
        assert!(
            PublishTarget {
                flags: PUBLISH_F_SERVICE,
                ..PublishTarget::default()
            }
            .is_service()
        );
        assert!(!PublishTarget::default().is_service());
    }
}
