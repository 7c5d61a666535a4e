//! A packet of a known flow translated: its IPv4 and L4 headers rewritten
//! to the tuple its `NAT_CT` entry holds (checksums by `csum`), delivered
//! where the entry says (the uplink, straight into a container, through
//! the tunnel to another host, or into the host's own stack) and counted.
//! What `nat` (masquerade, published ports, hairpin), `lb` (services) and
//! `mesh` (flows across hosts) do once they found or created a packet's
//! flow.
use core::ptr;

use aya_ebpf::{
    bindings::BPF_F_INGRESS,
    helpers::generated::{bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use netd_common::{
    DropReason, mac_for_ipv4,
    nat::{
        CT_F_TO_HOST, CT_F_TO_UPLINK, CT_F_TUNNEL, CtEntry, NatCounter, PROTO_ICMP, ct_slot,
        ct_slot_flags,
    },
};
use network_types::eth::EthHdr;

use crate::{
    conntrack::{self, Hit},
    csum::{self, Ipv4Rewrite, L4Change},
    parse::{self, Packet},
    stats, tunnel,
};

/// Where the packets of one direction of a new flow go, as its `NAT_CT`
/// entry records it (see [`packet`]).
#[derive(Clone, Copy)]
pub(crate) struct Delivery {
    ifindex: u32,
    gateway: u32,
    flags: u32,
}

impl Delivery {
    /// Into the endpoint behind the host-side veth `ifindex` (in slot
    /// `slot`), from the MAC of its network's gateway `gateway`.
    #[inline(always)]
    pub(crate) fn to_endpoint(ifindex: u32, slot: u16, gateway: u32) -> Delivery {
        Delivery {
            ifindex,
            gateway,
            flags: ct_slot_flags(slot),
        }
    }

    /// Through the tunnel with VNI `vni` to the host `host` (its underlay
    /// address, `ipv4_be`).
    #[inline(always)]
    pub(crate) fn tunnel(vni: u32, host: u32) -> Delivery {
        Delivery {
            ifindex: vni,
            gateway: host,
            flags: CT_F_TUNNEL,
        }
    }

    /// Into the host's stack as received on the bridge `ifindex`, whose
    /// address is `bridge_addr`.
    #[inline(always)]
    pub(crate) fn to_host(ifindex: u32, bridge_addr: u32) -> Delivery {
        Delivery {
            ifindex,
            gateway: bridge_addr,
            flags: CT_F_TO_HOST,
        }
    }

    /// Whether this is through the tunnel.
    #[inline(always)]
    pub(crate) fn is_tunnel(&self) -> bool {
        self.flags & CT_F_TUNNEL != 0
    }

    /// An entry delivering this way, of the flow kind `kind` (`CT_F_*`):
    /// the partner entry for `conntrack::create` as it is (its tuple is
    /// derived there), the packet's own entry once its tuple is filled in.
    #[inline(always)]
    pub(crate) fn entry(&self, kind: u32) -> CtEntry {
        CtEntry {
            ifindex: self.ifindex,
            gateway: self.gateway,
            flags: kind | self.flags,
            ..CtEntry::default()
        }
    }
}

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
    } else if e.flags & (CT_F_TUNNEL | CT_F_TO_HOST) != 0 {
        // Laid out after the hot code (see `parse::header`): flows across
        // hosts, whose packets pay the tunnel anyway.
        core::hint::cold_path();
        off_host(ctx, e)?
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

/// Delivers a translated packet whose entry `e` has `CT_F_TUNNEL` (to
/// another host: `e.ifindex` is the VNI, `e.gateway` the host) or
/// `CT_F_TO_HOST` (into the host's stack, as received on the bridge
/// `e.ifindex` whose address is `e.gateway`).
#[inline(always)]
fn off_host(ctx: &TcContext, e: &CtEntry) -> Result<i32, DropReason> {
    if e.flags & CT_F_TUNNEL != 0 {
        // Only while this host is out of the cluster (the daemon detached
        // the VXLAN device): the backend cannot be reached.
        let device = tunnel::device().ok_or(DropReason::NoBackend)?;
        let eth = parse::header::<EthHdr>(ctx, 0)?.cast_mut();
        // SAFETY: in bounds (checked by `header`, after the last helper
        // call); direct packet writes are allowed for TC programs. The
        // MAC netd gives the destination's address (the receiving host
        // writes the one it delivers to anyway).
        unsafe { (*eth).dst_addr = mac_for_ipv4(e.new_daddr.to_ne_bytes()) };
        return tunnel::send(ctx, device, e.ifindex, e.gateway);
    }
    let eth = parse::header::<EthHdr>(ctx, 0)?.cast_mut();
    // SAFETY: as above. Addressed to the bridge's MAC (its address's, as
    // every netd bridge has), as if the sender had sent it there: the
    // stack takes a frame for another MAC for another host's.
    unsafe {
        (*eth).dst_addr = mac_for_ipv4(e.gateway.to_ne_bytes());
        (*eth).src_addr = mac_for_ipv4(e.new_saddr.to_ne_bytes());
    }
    // SAFETY: plain helper call. With `BPF_F_INGRESS` it records "receive
    // on `e.ifindex`" for the kernel to act on after the program returns,
    // and returns TC_ACT_REDIRECT.
    Ok(unsafe { bpf_redirect(e.ifindex, u64::from(BPF_F_INGRESS)) } as i32)
}

/// Creates the flow for `p` (see `conntrack::create`; the source port
/// is kept where it can be) and translates the packet.
#[inline(always)]
pub(crate) fn start_flow(
    ctx: &TcContext,
    p: &Packet,
    fwd: CtEntry,
    rev: CtEntry,
    counter: NatCounter,
) -> Result<i32, DropReason> {
    start_flow_on(ctx, p, fwd, rev, counter, true)
}

/// [`start_flow`], keeping the packet's source port only if `keep_port`.
#[inline(always)]
pub(crate) fn start_flow_on(
    ctx: &TcContext,
    p: &Packet,
    fwd: CtEntry,
    rev: CtEntry,
    counter: NatCounter,
    keep_port: bool,
) -> Result<i32, DropReason> {
    let entry = conntrack::create(&p.key, fwd, rev, conntrack::now(), keep_port)?;
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
