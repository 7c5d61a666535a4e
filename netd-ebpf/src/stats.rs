//! Per-endpoint traffic counters and per-reason drop counters.
use aya_ebpf::programs::TcContext;
use netd_common::{Direction, DropKey, DropReason};

use crate::maps::{DROP_STATS, EP_STATS};

/// The device the TC hook runs on: the host-side veth, for ingress and
/// egress alike.
#[inline(always)]
pub(crate) fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: `skb` is the context pointer the kernel passed to the program;
    // reading `ifindex` is a context access the verifier rewrites to
    // `skb->dev->ifindex`.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Counts the packet against the endpoint it is crossing, if that endpoint is
/// known. Interfaces without an `EP_STATS` entry are not counted: the daemon
/// creates the entry before attaching, so a miss means "not (or no longer)
/// ours", and inserting from here would let stray interfaces fill the map.
#[inline(always)]
pub(crate) fn count_endpoint(ctx: &TcContext, direction: Direction) {
    count(ifindex(ctx), direction, ctx.len());
}

/// Counts a packet delivered to the endpoint behind the host-side veth
/// `ifindex` without crossing that veth's egress (`bpf_redirect_peer` goes
/// straight to the container's `eth0`, so `netd_to_ep` never sees it).
#[inline(always)]
pub(crate) fn count_delivered(ifindex: u32, len: u32) {
    count(ifindex, Direction::ToEndpoint, len);
}

#[inline(always)]
fn count(ifindex: u32, direction: Direction, len: u32) {
    let Some(stats) = EP_STATS.get_ptr_mut(ifindex) else {
        return;
    };
    let len = u64::from(len);
    // SAFETY: the pointer is this CPU's slot of a per-CPU map value, valid for
    // the rest of the program run. Nothing else writes it concurrently: TC
    // programs run with migration disabled and do not nest on one CPU, so
    // plain (non-atomic) adds are enough.
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

/// Counts one dropped packet under {reason, direction}.
#[inline(always)]
pub(crate) fn count_drop(reason: DropReason, direction: Direction) {
    if let Some(count) = DROP_STATS.get_ptr_mut(DropKey::new(reason, direction).index()) {
        // SAFETY: this CPU's slot of a per-CPU array element; same
        // no-concurrent-writer argument as in `count`.
        unsafe { *count = (*count).wrapping_add(1) };
    }
}
