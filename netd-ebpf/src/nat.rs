//! Address translation: masquerade, published ports, hairpin (the design of
//! Cilium's `lib/nat.h`, on the conntrack of `conntrack`).
//!
//! Two hooks translate:
//! - `netd_from_ep` (via `forward`), for what a container sends outside
//!   every netd network or to its gateway: first the flow's entry (replies
//!   of published-port and hairpin flows, further packets of masqueraded
//!   ones); for a new flow to a host address (the uplink's, the own
//!   gateway, or one in `HOST_ADDRS`) on a published port, hairpin (DNAT to
//!   the target and SNAT to the target network's gateway, so the reply comes
//!   back through the target's `netd_from_ep`); for a new flow to anywhere
//!   else, masquerade (SNAT to the uplink address) and
//!   `bpf_redirect_neigh` to the uplink (the kernel does the FIB and
//!   neighbour work; IP forwarding need not be enabled).
//! - `netd_uplink_in` (TCX ingress of the uplink), for packets to the
//!   uplink address from an address that is neither the uplink's own nor
//!   in a netd network (those are forged from outside): the flow's entry (replies of masqueraded flows, further
//!   packets of published-port flows), else a published port
//!   (`{uplink address, port, proto}`, then `{0, port, proto}`; never a
//!   127.0.0.1 key, so loopback-only ports stay unreachable from outside),
//!   else the packet passes untouched to the host.
//!
//! A network created with `enable_ip_masquerade=false` (`NET_F_NO_MASQUERADE`)
//! gets everything but the masquerade: its containers' packets to the
//! outside pass to the host with their own source, for the host's routing.
//!
//! A translated packet (`translate`) gets its TTL decremented (it is
//! routed) and its checksums updated incrementally (`csum`). Delivered to a
//! container, it gets the container's MAC as destination and its gateway's
//! as source, and goes straight into the container's namespace
//! (`bpf_redirect_peer`).
//!
//! New flows: masquerade starts on any packet but a TCP RST or an ICMP
//! echo reply (so a flow whose entries were evicted recovers; an echo
//! reply would let the outside's requests in: `NoFlow`); a published port (from outside or
//! hairpin) only on a TCP SYN without ACK, or any UDP datagram, because an
//! ACK to a published port without a flow is the reply to a connection the
//! host itself made from that port number. (A UDP reply to a host socket
//! whose ephemeral port equals a published UDP port is taken by the
//! published port: the host's own flows are not tracked.)
//!
//! Translated: TCP, UDP, ICMP echo (the identifier stands in for the port).
//! Not translated (passed as before): other protocols, ICMP errors, packets
//! with TTL <= 1 (the host's stack answers them). Fragments other than the
//! first carry no ports and cannot be matched to a flow: to the outside
//! they are dropped (`NatFragment`), on the uplink they pass.
//!
//! Masquerade keeps the container's source port only when no socket of the
//! host would receive the replies on it (`host_socket_on`: a bound UDP
//! port, a TCP listener, a host connection to the same remote end), so a
//! container cannot take the host's traffic by sending from its port;
//! otherwise, and when another flow has the port, a port is searched in
//! `PORT_MIN..=PORT_MAX`, above the host's default ephemeral range (the
//! daemon warns when the host's `ip_local_port_range` reaches into it).
//!
//! Limits: masqueraded traffic always leaves through the uplink
//! (`bpf_redirect_neigh` to it; destinations routed elsewhere are not
//! reachable masqueraded). A packet larger than the
//! uplink's MTU is dropped by the kernel without an ICMP "fragmentation
//! needed" back (TCP's MSS normally prevents it). ICMP errors about a
//! translated flow are not translated.
//!
//! A port published to a service (`PublishTarget::flags` has
//! `PUBLISH_F_SERVICE`) is translated the same way, to the backend `lb`
//! picks for each new flow (flows marked `CT_F_LB` too); a service without
//! backends drops the new flow (`NoBackend`). A backend on another host
//! gets the flow through the tunnel (see `mesh`): from outside with the
//! client's address, hairpin with the uplink address as source instead of
//! the gateway's; the replies come back through `netd_vxlan_in`.
//!
//! Per-packet cost: for packets of known flows the `HOST_CFG` array read,
//! the flow's entry (from this CPU's copy, or the `NAT_CT` lookup for the
//! first packet of a tick, see `conntrack::lookup`) and the redirect; the
//! headers, their checksums (see `csum` for the `CHECKSUM_COMPLETE` and
//! IPv4-options exceptions), the clock and the delivery counters cost no
//! helper call; a new
//! flow adds an `EP_BY_IF` lookup (the slot of the endpoint it delivers
//! to, recorded in the flow), at most two `PUBLISH` lookups, a `HOST_ADDRS`
//! lookup and the inserts (for a service, `lb`'s two `LB_SVC` lookups and
//! the cursor). No loop over ports or services; the only loop is the
//! bounded port search of a new flow whose port is taken (in `bpf_loop`,
//! see `conntrack::create`).
use aya_ebpf::{
    bindings::{
        BPF_F_CURRENT_NETNS, bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1,
    },
    helpers::generated::{bpf_sk_lookup_tcp, bpf_sk_lookup_udp, bpf_sk_release},
    programs::TcContext,
};
use netd_common::{
    DropReason, EndpointInfo, NET_F_INTERNAL, NET_F_NO_MASQUERADE, NetworkInfo, PublishKey,
    PublishTarget,
    nat::{
        CT_F_DNAT, CT_F_HAIRPIN, CT_F_REPLY, CT_F_SNAT, CT_F_TO_UPLINK, CtEntry, NatCounter,
        PROTO_ICMP, PROTO_TCP, PROTO_UDP,
    },
};

use crate::{
    conntrack, lb, maps,
    parse::{self, EthIpv4, Packet, Parsed, TCP_ACK, TCP_RST, TCP_SYN},
    translate::{self, Delivery},
    verdict::VERDICT_NEXT,
};

/// 127.0.0.0/8 as [`netd_common::ipv4_be`] network and mask.
const LOOPBACK_NET: u32 = netd_common::ipv4_be([127, 0, 0, 0]);
const LOOPBACK_MASK: u32 = netd_common::ipv4_be([255, 0, 0, 0]);

/// The published port `{addr, port, proto}` or else `{0, port, proto}`,
/// with the key that matched. Never for loopback addresses.
#[inline(always)]
fn published(addr: u32, port: u16, proto: u8) -> Option<(PublishKey, PublishTarget)> {
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    if addr & LOOPBACK_MASK == LOOPBACK_NET {
        return None;
    }
    let mut key = PublishKey {
        addr,
        port,
        proto,
        _pad: 0,
    };
    if let Some(t) = maps::PUBLISH.get_ptr(key) {
        // SAFETY: map value pointer, copied out at once.
        return Some((key, unsafe { *t }));
    }
    key.addr = 0;
    // SAFETY: as above.
    maps::PUBLISH.get_ptr(key).map(|t| (key, unsafe { *t }))
}

/// Counts a new flow through the published port `key`.
#[inline(always)]
fn count_published(key: &PublishKey) {
    if let Some(n) = maps::PUBLISH_STATS.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU hash value.
        unsafe { *n = (*n).wrapping_add(1) };
    }
}

/// The network of a published port's target, if translating to it is
/// allowed (it exists and is not `--internal`).
#[inline(always)]
fn target_network(target: &PublishTarget) -> Option<NetworkInfo> {
    match maps::network_of(target.addr) {
        Some(net) if net.flags & NET_F_INTERNAL == 0 => Some(net),
        _ => None,
    }
}

/// An IPv4 packet from the endpoint `ep` (on the non-internal network
/// `own`) to outside every netd network (`to_gateway` false) or to its own
/// gateway (true). `Ok(None)`: nothing to translate, `forward` passes it to
/// the host as before.
#[inline(always)]
pub(crate) fn from_endpoint(
    ctx: &TcContext,
    ep: &EndpointInfo,
    own: &NetworkInfo,
    to_gateway: bool,
) -> Result<Option<i32>, DropReason> {
    let host = maps::host_config();
    if host.uplink_addr == 0 || own.flags & NET_F_INTERNAL != 0 {
        return Ok(None);
    }
    let p = match parse::l4(ctx)? {
        Parsed::Packet(p) => p,
        Parsed::Other => return Ok(None),
        Parsed::Fragment => {
            let dst = read_daddr(ctx)?;
            if to_gateway || is_host_addr(dst, host.uplink_addr) {
                return Ok(None);
            }
            return Err(DropReason::NatFragment);
        }
    };
    if p.ttl <= 1 {
        return Ok(None);
    }
    if let Some(hit) = conntrack::lookup(&p.key, p.tcp_flags) {
        return translate::packet(ctx, &p, &hit).map(Some);
    }
    if p.tcp_flags & TCP_RST != 0 {
        // A RST never starts a flow.
        return Ok(None);
    }
    let daddr = p.key.daddr;
    if to_gateway || is_host_addr(daddr, host.uplink_addr) {
        // Hairpin: a host address on a published port. Only a connection
        // attempt starts a TCP flow: anything else (an ACK, a SYN-ACK) to
        // that port is the reply of a connection the host made from it.
        if !opens_flow(&p) {
            return Ok(None);
        }
        let Some((pkey, target)) = published(daddr, p.key.dport, p.key.proto) else {
            return Ok(None);
        };
        let Some(tnet) = target_network(&target) else {
            return Ok(None);
        };
        // A container, or the next backend of a service.
        let dest = lb::destination(&target)?;
        let delivery = dest.delivery(tnet.gateway)?;
        let fwd = CtEntry {
            // A backend on another host could not answer a gateway
            // address, which every host of its network has: the uplink's
            // is this host's alone.
            new_saddr: if delivery.is_tunnel() {
                host.uplink_addr
            } else {
                tnet.gateway
            },
            new_daddr: dest.addr,
            new_dport: target.port,
            ..delivery.entry(CT_F_HAIRPIN | dest.ct_flags)
        };
        let rev = Delivery::to_endpoint(ep.ifindex, ep.slot, own.gateway)
            .entry(CT_F_HAIRPIN | CT_F_REPLY | dest.ct_flags);
        let verdict = translate::start_flow(ctx, &p, fwd, rev, NatCounter::HairpinFlows)?;
        count_published(&pkey);
        dest.count();
        return Ok(Some(verdict));
    }
    if daddr & LOOPBACK_MASK == LOOPBACK_NET {
        return Ok(None);
    }
    if p.key.proto == PROTO_ICMP && !p.icmp_request {
        // An echo reply nobody asked for would open a flow that lets the
        // outside's echo requests in.
        return Err(DropReason::NoFlow);
    }
    if own.flags & NET_F_NO_MASQUERADE != 0 {
        // `enable_ip_masquerade=false`: the host routes it as it is.
        return Ok(None);
    }
    // Masquerade.
    let fwd = CtEntry {
        new_saddr: host.uplink_addr,
        new_daddr: daddr,
        new_dport: p.key.dport,
        ifindex: host.uplink_ifindex,
        flags: CT_F_SNAT | CT_F_TO_UPLINK,
        ..CtEntry::default()
    };
    let rev = Delivery::to_endpoint(ep.ifindex, ep.slot, own.gateway).entry(CT_F_SNAT | CT_F_REPLY);
    let keep_port = !host_socket_on(ctx, &p, host.uplink_addr);
    translate::start_flow_on(ctx, &p, fwd, rev, NatCounter::SnatFlows, keep_port).map(Some)
}

/// Whether a socket of the host would receive what the remote end of `p`
/// sends back to the uplink address on `p`'s own source port: a UDP socket
/// bound to that port (a WireGuard, NTP or DNS server), a TCP listener, or
/// a connection of the host's own to the same remote end. A masqueraded
/// flow must not keep that port, or the host's traffic would go to the
/// container (the host's sockets are not in `NAT_CT`).
///
/// One socket lookup in the host's namespace (the skb's: the host-side
/// veth's), for the first packet of a flow only.
#[inline(always)]
fn host_socket_on(ctx: &TcContext, p: &Packet, uplink_addr: u32) -> bool {
    let mut tuple = bpf_sock_tuple {
        __bindgen_anon_1: bpf_sock_tuple__bindgen_ty_1 {
            ipv4: bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 {
                saddr: p.key.daddr,
                daddr: uplink_addr,
                sport: p.key.dport,
                dport: p.key.sport,
            },
        },
    };
    let size = size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>() as u32;
    let skb = ctx.skb.skb.cast();
    let netns = BPF_F_CURRENT_NETNS as u64;
    // SAFETY: plain helper calls on the program's own skb and a tuple on
    // this stack; a socket found is released before returning.
    unsafe {
        let sk = match p.key.proto {
            PROTO_TCP => bpf_sk_lookup_tcp(skb, &mut tuple, size, netns, 0),
            PROTO_UDP => bpf_sk_lookup_udp(skb, &mut tuple, size, netns, 0),
            _ => return false,
        };
        if sk.is_null() {
            return false;
        }
        bpf_sk_release(sk.cast());
    }
    true
}

/// Whether `p` may start a flow to a published port (or, across hosts, to
/// a backend there): for TCP only a SYN without ACK (a connection
/// attempt); UDP always; nothing else (ICMP is not published).
#[inline(always)]
pub(crate) fn opens_flow(p: &Packet) -> bool {
    match p.key.proto {
        PROTO_TCP => p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN,
        PROTO_UDP => true,
        _ => false,
    }
}

/// Whether `addr` is one of the host's own: the uplink address or one the
/// daemon listed in `HOST_ADDRS`.
#[inline(always)]
pub(crate) fn is_host_addr(addr: u32, uplink_addr: u32) -> bool {
    addr == uplink_addr || maps::HOST_ADDRS.get_ptr(addr).is_some()
}

#[inline(always)]
fn read_daddr(ctx: &TcContext) -> Result<u32, DropReason> {
    read_addrs(ctx).map(|(_, dst)| dst)
}

/// The IPv4 source and destination of the frame.
#[inline(always)]
fn read_addrs(ctx: &TcContext) -> Result<(u32, u32), DropReason> {
    let frame = parse::header::<EthIpv4>(ctx, 0)?;
    // SAFETY: `header` checked the bounds.
    let (src, dst) = unsafe { ((*frame).ip.src_addr, (*frame).ip.dst_addr) };
    Ok((parse::ipv4(src), parse::ipv4(dst)))
}

/// `netd_uplink_in`: a packet arriving on the uplink. Only IPv4 to the
/// uplink address is looked at; everything else, and everything netd has
/// no flow or published port for, continues untouched (`TCX_NEXT`): this
/// program must never get in the way of the host's own traffic.
#[inline(always)]
pub(crate) fn uplink_in(ctx: &TcContext) -> Result<i32, DropReason> {
    let host = maps::host_config();
    if host.uplink_addr == 0 {
        return Ok(VERDICT_NEXT);
    }
    match parse::ether_type(ctx) {
        Ok(t) if t == parse::ETH_P_IP => {}
        _ => return Ok(VERDICT_NEXT),
    }
    match read_addrs(ctx) {
        // From outside, a source that is the uplink's own address or one
        // of netd's networks is forged: it could match a flow's tuple of
        // the other direction and be translated back out.
        Ok((src, dst))
            if dst == host.uplink_addr
                && src != host.uplink_addr
                && !(maps::may_be_netd_address(src) && maps::network_of(src).is_some()) => {}
        _ => return Ok(VERDICT_NEXT),
    }
    let p = match parse::l4(ctx) {
        Ok(Parsed::Packet(p)) if p.ttl > 1 => p,
        // Malformed headers, fragments, other protocols: the host's stack
        // decides (and drops what is broken).
        _ => return Ok(VERDICT_NEXT),
    };
    if let Some(hit) = conntrack::lookup(&p.key, p.tcp_flags) {
        return translate::packet(ctx, &p, &hit);
    }
    // Only a connection attempt starts a TCP flow to a published port: an
    // ACK or SYN-ACK to it without a flow belongs to a connection of the
    // host itself (whose ephemeral port may equal a published one).
    if !opens_flow(&p) {
        return Ok(VERDICT_NEXT);
    }
    let Some((pkey, target)) = published(host.uplink_addr, p.key.dport, p.key.proto) else {
        return Ok(VERDICT_NEXT);
    };
    let Some(tnet) = target_network(&target) else {
        return Ok(VERDICT_NEXT);
    };
    let dest = lb::destination(&target)?;
    let fwd = CtEntry {
        new_saddr: p.key.saddr,
        new_daddr: dest.addr,
        new_dport: target.port,
        ..dest
            .delivery(tnet.gateway)?
            .entry(CT_F_DNAT | dest.ct_flags)
    };
    let rev = CtEntry {
        ifindex: host.uplink_ifindex,
        flags: CT_F_DNAT | CT_F_REPLY | CT_F_TO_UPLINK | dest.ct_flags,
        ..CtEntry::default()
    };
    let verdict = translate::start_flow(ctx, &p, fwd, rev, NatCounter::DnatFlows)?;
    count_published(&pkey);
    dest.count();
    Ok(verdict)
}
