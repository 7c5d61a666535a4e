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
    count_slot(ep.slot, direction, len);
}

/// Counts a packet of `len` bytes against the endpoint in slot `slot`, in
/// `direction`; slot 0 is nobody.
#[inline(always)]
fn count_slot(slot: u16, direction: Direction, len: u32) {
    if slot == 0 {
        return;
    }
    let Some(stats) = EP_COUNTERS.get_ptr_mut(u32::from(slot)) else {
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

/// Counts a packet that a translation delivers to the endpoint in slot
/// `slot` (as recorded in its flow, `netd_common::nat::CT_SLOT_SHIFT`), or
/// when none was recorded (0) to the one behind the host-side veth
/// `ifindex`.
#[inline(always)]
pub(crate) fn count_delivery(slot: u16, ifindex: u32, len: u32) {
    if slot != 0 {
        count_slot(slot, Direction::ToEndpoint, len);
    } else {
        count_to_ifindex(ifindex, len);
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
