//! Per-endpoint traffic counters and per-reason drop counters.
use aya_ebpf::programs::TcContext;
use netd_common::{Direction, DropKey, DropReason, EndpointInfo};

use crate::maps::{self, DROP_STATS, EP_COUNTERS};

/// The device the TC hook runs on: the host-side veth, for ingress and
/// egress alike.
#[inline(always)]
pub(crate) fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` is the context pointer the kernel passed to the program;
    // reading `ifindex` is a context access the verifier rewrites to
    // `skb->dev->ifindex`.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Counts a packet of `len` bytes against the endpoint `ep`, in
/// `direction`. An endpoint without a slot (0) is not counted.
#[inline(always)]
pub(crate) fn count(ep: &EndpointInfo, direction: Direction, len: u32) {
    if ep.slot == 0 {
        return;
    }
    let Some(stats) = EP_COUNTERS.get_ptr_mut(u32::from(ep.slot)) else {
        return;
    };
    let len = u64::from(len);
    // SAFETY: the pointer is this CPU's slot of a per-CPU array element,
    // valid for the rest of the program run. Nothing else writes it
    // concurrently: TC programs run with migration disabled and do not nest
    // on one CPU, so plain (non-atomic) adds are enough.
    let stats = unsafe { &mut *stats };
    match direction {
        Direction::FromEndpoint => {
            stats.from_packets = stats.from_packets.wrapping_add(1);
            stats.from_bytes = stats.from_bytes.wrapping_add(len);
        }
        Direction::ToEndpoint => {
            stats.to_packets = stats.to_packets.wrapping_add(1);
            stats.to_bytes = stats.to_bytes.wrapping_add(len);
        }
    }
}

/// Counts a packet delivered to the endpoint behind the host-side veth
/// `ifindex`, if it is one of ours: by `netd_to_ep` on that veth's egress,
/// and by the redirects that skip it (`bpf_redirect_peer` goes straight to
/// the container's `eth0`).
#[inline(always)]
pub(crate) fn count_to_ifindex(ifindex: u32, len: u32) {
    if let Some(ep) = maps::endpoint_by_ifindex(ifindex) {
        count(&ep, Direction::ToEndpoint, len);
    }
}

/// Counts one dropped packet under {reason, direction}.
#[inline(always)]
pub(crate) fn count_drop(reason: DropReason, direction: Direction) {
    if let Some(count) = DROP_STATS.get_ptr_mut(DropKey::new(reason, direction).index()) {
        // SAFETY: this CPU's slot of a per-CPU array element; same
        // no-concurrent-writer argument as in `count`.
        unsafe { *count = (*count).wrapping_add(1) };
    }
}
