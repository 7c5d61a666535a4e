//! A packet sent to another host of the cluster: through the host's one
//! collect_md ("external") VXLAN device (`OVL_CFG`), with its tunnel (the
//! VNI, the other host's underlay address) attached per packet, so the
//! kernel holds no per-destination state. What `overlay` (a container's
//! packet for a remote peer) and `translate` (a flow to or from a backend
//! on another host) deliver through, and the overlay's counters
//! (`OVL_STATS`).
use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_F_ZERO_CSUM_TX, bpf_tunnel_key},
    helpers::generated::{bpf_redirect, bpf_skb_set_tunnel_key},
    programs::TcContext,
};
use netd_common::{
    DropReason,
    overlay::{OUTER_TTL, OverlayCounter},
};

use crate::maps::{OVL_CFG, OVL_STATS};

/// The VXLAN device's ifindex, `None` until the daemon attached it (then
/// nothing can be tunnelled).
#[inline(always)]
pub(crate) fn device() -> Option<u32> {
    OVL_CFG
        .get(0)
        .map(|cfg| cfg.vxlan_ifindex)
        .filter(|ifindex| *ifindex != 0)
}

/// Sends the packet to the host `host` (its underlay address, `ipv4_be`)
/// with VNI `vni` through the VXLAN device `device` ([`device`]), as it
/// is (the Ethernet header included; the caller set its destination), and
/// counts it: `TC_ACT_REDIRECT`.
#[inline(always)]
pub(crate) fn send(ctx: &TcContext, device: u32, vni: u32, host: u32) -> Result<i32, DropReason> {
    // SAFETY: `bpf_tunnel_key` is plain integers and unions of them, for
    // which all zeroes is a valid value (and what the kernel expects in the
    // fields left unset).
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    key.tunnel_id = vni;
    // The helper takes the addresses in host order.
    key.__bindgen_anon_1.remote_ipv4 = u32::from_be(host);
    key.tunnel_ttl = OUTER_TTL;
    // SAFETY: plain helper call on the program's own context and a key on
    // its stack of the size passed. It attaches the tunnel metadata to the
    // skb for the VXLAN device to build the outer headers from. The local
    // address stays 0: the kernel takes the route's source. No outer UDP
    // checksum, as RFC 7348 recommends for IPv4 (the inner packet's own
    // checksums cover the payload), which spares computing one per packet.
    let set = unsafe {
        bpf_skb_set_tunnel_key(
            ctx.skb.skb,
            &mut key,
            size_of::<bpf_tunnel_key>() as u32,
            u64::from(BPF_F_ZERO_CSUM_TX),
        )
    };
    if set != 0 {
        // Only for arguments the kernel does not accept: a bug.
        return Err(DropReason::Unknown);
    }
    count(
        OverlayCounter::EncapPackets,
        OverlayCounter::EncapBytes,
        ctx.len(),
    );
    // SAFETY: plain helper call. With flags 0 it records "egress of
    // `device`" for the kernel to act on after the program returns, and
    // returns TC_ACT_REDIRECT.
    Ok(unsafe { bpf_redirect(device, 0) } as i32)
}

/// Counts a packet of `len` bytes that arrived through the tunnel and is
/// delivered.
#[inline(always)]
pub(crate) fn count_received(len: u32) {
    count(
        OverlayCounter::DecapPackets,
        OverlayCounter::DecapBytes,
        len,
    );
}

/// Counts one packet under `packets` and its `len` bytes under `bytes`.
#[inline(always)]
fn count(packets: OverlayCounter, bytes: OverlayCounter, len: u32) {
    for (counter, add) in [(packets, 1), (bytes, u64::from(len))] {
        if let Some(counter) = OVL_STATS.get_ptr_mut(counter as u32) {
            // SAFETY: this CPU's slot of a per-CPU array element; TC
            // programs run with migration disabled and do not nest on one
            // CPU, so nothing else writes it meanwhile.
            unsafe { *counter = (*counter).wrapping_add(add) };
        }
    }
}
