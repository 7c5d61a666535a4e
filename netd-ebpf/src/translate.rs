//! A packet of a known flow translated: its IPv4 and L4 headers rewritten
//! to the tuple its `NAT_CT` entry holds (checksums by `csum`), delivered
//! where the entry says (the uplink, or straight into a container) and
//! counted. What `nat` (masquerade, published ports, hairpin) and `lb`
//! (services) do once they found or created a packet's flow.
use core::ptr;

use aya_ebpf::{
    helpers::generated::{bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use netd_common::{
    DropReason, mac_for_ipv4,
    nat::{CT_F_TO_UPLINK, CtEntry, NatCounter, PROTO_ICMP, ct_slot},
};
use network_types::eth::EthHdr;

use crate::{
    conntrack::{self, Hit},
    csum::{self, Ipv4Rewrite, L4Change},
    parse::{self, Packet},
    stats,
};

/// Rewrites the packet to the tuple of `entry` and hands it on. Returns the
/// verdict (a redirect).
#[inline(always)]
pub(crate) fn packet(ctx: &TcContext, p: &Packet, hit: &Hit) -> Result<i32, DropReason> {
    let e = &hit.entry;
    let k = &p.key;
    let ip = Ipv4Rewrite {
        old_saddr: k.saddr,
        new_saddr: e.new_saddr,
        old_daddr: k.daddr,
        new_daddr: e.new_daddr,
        ttl: p.ttl,
    };
    csum::rewrite_ipv4(ctx, &ip)?;
    let change = if k.proto == PROTO_ICMP {
        let (old, new) = if p.icmp_request {
            (k.sport, e.new_sport)
        } else {
            (k.dport, e.new_dport)
        };
        if old != new {
            L4Change::IcmpId { old, new }
        } else {
            L4Change::Nothing
        }
    } else if e.new_sport != k.sport || e.new_dport != k.dport {
        L4Change::Ports {
            old: [k.sport, k.dport],
            new: [e.new_sport, e.new_dport],
        }
    } else {
        L4Change::Nothing
    };
    csum::rewrite_l4(ctx, k.proto, p.l4, &ip, change)?;
    conntrack::count(NatCounter::TranslatedPackets);

    let verdict = if e.flags & CT_F_TO_UPLINK != 0 {
        // SAFETY: plain helper call; no parameters (NULL, 0): the kernel
        // looks up the route and the neighbour itself, and the redirect
        // happens after the program returns (TC_ACT_REDIRECT).
        unsafe { bpf_redirect_neigh(e.ifindex, ptr::null_mut(), 0, 0) as i32 }
    } else {
        let eth = parse::header::<EthHdr>(ctx, 0)?.cast_mut();
        // SAFETY: in bounds (checked by `header`, after the last helper
        // call); direct packet writes are allowed for TC programs.
        unsafe {
            (*eth).dst_addr = mac_for_ipv4(e.new_daddr.to_ne_bytes());
            (*eth).src_addr = mac_for_ipv4(e.gateway.to_ne_bytes());
        }
        stats::count_delivery(ct_slot(e.flags), e.ifindex, ctx.len());
        // SAFETY: plain helper call, see `forward`.
        unsafe { bpf_redirect_peer(e.ifindex, 0) as i32 }
    };
    if hit.close {
        conntrack::close(k, e);
    }
    Ok(verdict)
}

/// Creates the flow for `p` (see `conntrack::create`) and translates the
/// packet.
#[inline(always)]
pub(crate) fn start_flow(
    ctx: &TcContext,
    p: &Packet,
    fwd: CtEntry,
    rev: CtEntry,
    counter: NatCounter,
) -> Result<i32, DropReason> {
    let entry = conntrack::create(&p.key, fwd, rev, conntrack::now())?;
    conntrack::count(counter);
    packet(
        ctx,
        p,
        &Hit {
            entry,
            close: false,
        },
    )
}
