//! Macvlan endpoints: the key of `MV_EP`, who may send on a macvlan.
//!
//! A macvlan lives inside its container's namespace, where interface
//! numbers start again from 1, so the number the kernel would pick names no
//! endpoint. netd therefore picks it: each macvlan is created with the
//! ifindex [`ifindex`] gives for its network and address, unique among the
//! daemon's macvlans whatever namespace they are in, and `MV_EP` is keyed
//! by it. A container cannot get another such device onto the segment (the
//! parent is in the host's namespace), so the number identifies the
//! sender.

use crate::limits::NET_INDEXES;

/// First macvlan ifindex; far above what the kernel hands out in a
/// container's namespace (lo is 1, then 2, 3, ...).
pub const IFINDEX_BASE: u32 = 1 << 30;

/// Bits of the address's offset in its subnet: subnets of macvlan networks
/// are at most /14.
pub const OFFSET_BITS: u32 = 18;

/// The ifindex of the macvlan of the address `offset` addresses into the
/// subnet of network `net_index`; `None` when either is out of range.
pub const fn ifindex(net_index: u32, offset: u32) -> Option<u32> {
    if net_index >= NET_INDEXES || offset >= (1 << OFFSET_BITS) {
        return None;
    }
    Some(IFINDEX_BASE | (net_index << OFFSET_BITS) | offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map_names;

    #[test]
    fn ifindexes_are_unique_and_in_range() {
        assert_eq!(ifindex(1, 2), Some(IFINDEX_BASE | (1 << 18) | 2));
        assert_ne!(ifindex(1, 2), ifindex(2, 1));
        let last = ifindex(NET_INDEXES - 1, (1 << OFFSET_BITS) - 1).unwrap();
        assert!(last <= i32::MAX as u32, "ifindexes are positive ints");
        assert_eq!(ifindex(NET_INDEXES, 0), None);
        assert_eq!(ifindex(1, 1 << OFFSET_BITS), None);
        assert!(map_names::MV_EP.len() <= 15);
    }
}
