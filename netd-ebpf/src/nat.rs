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
//!   uplink address: the flow's entry (replies of masqueraded flows, further
//!   packets of published-port flows), else a published port
//!   (`{uplink address, port, proto}`, then `{0, port, proto}`; never a
//!   127.0.0.1 key, so loopback-only ports stay unreachable from outside),
//!   else the packet passes untouched to the host.
//!
//! A translated packet gets its TTL decremented (it is routed) and its
//! checksums updated incrementally (`csum`). Delivered to a container, it
//! gets the container's MAC as destination and its gateway's as source,
//! and goes straight into the container's namespace (`bpf_redirect_peer`).
//!
//! New flows: masquerade starts on any packet but a TCP RST (so a flow
//! whose entries were evicted recovers); a published port (from outside or
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
//! Limits: masqueraded traffic always leaves through the uplink
//! (`bpf_redirect_neigh` to it; destinations routed elsewhere are not
//! reachable masqueraded). Masquerade ports come from the host's
//! ephemeral range and the host's own connections are not tracked, so a
//! host connection from the uplink address and the same port to the same
//! remote address and port as a masqueraded flow would lose its replies to
//! the container (needs the same 4-tuple: rare). A packet larger than the
//! uplink's MTU is dropped by the kernel without an ICMP "fragmentation
//! needed" back (TCP's MSS normally prevents it). ICMP errors about a
//! translated flow are not translated.
//!
//! A port published to a service (`PublishTarget::flags` has
//! `PUBLISH_F_SERVICE`) is translated the same way, to the backend `lb`
//! picks for each new flow (flows marked `CT_F_LB` too); a service without
//! backends drops the new flow (`NoBackend`).
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
use core::ptr;

use aya_ebpf::{
    helpers::generated::{bpf_redirect_neigh, bpf_redirect_peer},
    programs::TcContext,
};
use netd_common::{
    DropReason, EndpointInfo, NET_F_INTERNAL, NetworkInfo, PublishKey, PublishTarget, mac_for_ipv4,
    nat::{
        CT_F_DNAT, CT_F_HAIRPIN, CT_F_REPLY, CT_F_SNAT, CT_F_TO_UPLINK, CtEntry, CtKey, NatCounter,
        PROTO_ICMP, PROTO_TCP, PROTO_UDP, ct_slot, ct_slot_flags,
    },
};
use network_types::eth::EthHdr;

use crate::{
    VERDICT_NEXT,
    conntrack::{self, Hit, TCP_ACK, TCP_RST, TCP_SYN},
    csum::{self, Ipv4Rewrite, L4Change},
    lb, maps,
    parse::{self, EthIpv4},
    stats,
};

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
/// `IP_MF | IP_OFFSET` in host order: set on every fragment.
const IP_OFFSET_MASK: u16 = 0x1fff;

/// 127.0.0.0/8 as [`netd_common::ipv4_be`] network and mask.
const LOOPBACK_NET: u32 = netd_common::ipv4_be([127, 0, 0, 0]);
const LOOPBACK_MASK: u32 = netd_common::ipv4_be([255, 0, 0, 0]);

/// A packet NAT can translate.
pub(crate) struct Packet {
    /// Its tuple (ICMP echo: the identifier as `sport` for requests, as
    /// `dport` for replies).
    pub(crate) key: CtKey,
    /// Offset of the L4 header in the frame.
    l4: usize,
    /// TCP flags byte (0 for other protocols).
    pub(crate) tcp_flags: u8,
    pub(crate) ttl: u8,
    /// ICMP echo request (the identifier is `key.sport`).
    icmp_request: bool,
}

/// What [`parse`] found.
pub(crate) enum Parsed {
    Packet(Packet),
    /// A fragment other than the first: no L4 header.
    Fragment,
    /// A protocol (or ICMP type) NAT does not translate.
    Other,
}

/// Reads the tuple of the IPv4 packet in the frame. `Err` only for headers
/// that are cut short or impossible.
#[inline(always)]
pub(crate) fn parse(ctx: &TcContext) -> Result<Parsed, DropReason> {
    let frame = parse::header::<EthIpv4>(ctx, 0)?;
    // SAFETY: `header` checked that the 34 bytes are in the packet; the
    // values are copied out before any helper runs.
    let (vihl, frags, ttl, proto, src, dst) = unsafe {
        let f = &*frame;
        (
            f.ip.vihl,
            f.ip.frags,
            f.ip.ttl,
            f.ip.proto,
            f.ip.src_addr,
            f.ip.dst_addr,
        )
    };
    parse::check_ipv4_vihl(ctx, vihl)?;
    if u16::from_be_bytes(frags) & IP_OFFSET_MASK != 0 {
        return Ok(Parsed::Fragment);
    }
    let l4 = EthHdr::LEN + usize::from(vihl & 0x0f) * 4;
    let (mut sport, mut dport, mut tcp_flags, mut icmp_request) = (0, 0, 0, false);
    match proto {
        PROTO_TCP => {
            let h: [u8; 14] = l4_header(ctx, l4)?;
            sport = u16::from_ne_bytes([h[0], h[1]]);
            dport = u16::from_ne_bytes([h[2], h[3]]);
            tcp_flags = h[13];
        }
        PROTO_UDP => {
            let h: [u8; 4] = l4_header(ctx, l4)?;
            sport = u16::from_ne_bytes([h[0], h[1]]);
            dport = u16::from_ne_bytes([h[2], h[3]]);
        }
        PROTO_ICMP => {
            let h: [u8; 8] = l4_header(ctx, l4)?;
            let id = u16::from_ne_bytes([h[4], h[5]]);
            match h[0] {
                ICMP_ECHO_REQUEST if h[1] == 0 => {
                    sport = id;
                    icmp_request = true;
                }
                ICMP_ECHO_REPLY if h[1] == 0 => dport = id,
                _ => return Ok(Parsed::Other),
            }
        }
        _ => return Ok(Parsed::Other),
    }
    Ok(Parsed::Packet(Packet {
        key: CtKey::new(parse::ipv4(src), parse::ipv4(dst), sport, dport, proto),
        l4,
        tcp_flags,
        ttl,
        icmp_request,
    }))
}

/// The first `N` bytes of the L4 header at `l4` (offset in the frame).
///
/// Verifier note: the offset depends on the IHL, and the verifier loses
/// the bounds of a variable packet offset, so a header with options is
/// read with `bpf_skb_load_bytes` (bounds checked by the helper). The
/// usual header without options is read by packet pointer at a constant
/// offset, which saves the helper call.
#[inline(always)]
fn l4_header<const N: usize>(ctx: &TcContext, l4: usize) -> Result<[u8; N], DropReason> {
    if l4 == csum::L4_NO_OPTIONS {
        let h = parse::header::<[u8; N]>(ctx, csum::L4_NO_OPTIONS)?;
        // SAFETY: `header` checked that the `N` bytes are in the packet.
        return Ok(unsafe { *h });
    }
    ctx.load(l4).map_err(|_| DropReason::Malformed)
}

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

/// Rewrites the packet to the tuple of `entry` and hands it on. Returns the
/// verdict (a redirect).
#[inline(always)]
pub(crate) fn translate(ctx: &TcContext, p: &Packet, hit: &Hit) -> Result<i32, DropReason> {
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
    translate(
        ctx,
        p,
        &Hit {
            entry,
            close: false,
        },
    )
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
    let p = match parse(ctx)? {
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
        return translate(ctx, &p, &hit).map(Some);
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
        let fwd = CtEntry {
            new_saddr: tnet.gateway,
            new_daddr: dest.addr,
            new_dport: target.port,
            ifindex: dest.ifindex,
            gateway: tnet.gateway,
            flags: CT_F_HAIRPIN | dest.ct_flags | ct_slot_flags(maps::slot_of(dest.ifindex)),
            ..CtEntry::default()
        };
        let rev = CtEntry {
            ifindex: ep.ifindex,
            gateway: own.gateway,
            flags: CT_F_HAIRPIN | CT_F_REPLY | dest.ct_flags | ct_slot_flags(ep.slot),
            ..CtEntry::default()
        };
        let verdict = start_flow(ctx, &p, fwd, rev, NatCounter::HairpinFlows)?;
        count_published(&pkey);
        dest.count();
        return Ok(Some(verdict));
    }
    if daddr & LOOPBACK_MASK == LOOPBACK_NET {
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
    let rev = CtEntry {
        ifindex: ep.ifindex,
        gateway: own.gateway,
        flags: CT_F_SNAT | CT_F_REPLY | ct_slot_flags(ep.slot),
        ..CtEntry::default()
    };
    start_flow(ctx, &p, fwd, rev, NatCounter::SnatFlows).map(Some)
}

/// Whether `p` may start a flow to a published port: for TCP only a SYN
/// without ACK (a connection attempt); UDP always.
#[inline(always)]
fn opens_flow(p: &Packet) -> bool {
    p.key.proto != PROTO_TCP || p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) == TCP_SYN
}

/// Whether `addr` is one of the host's own: the uplink address or one the
/// daemon listed in `HOST_ADDRS`.
#[inline(always)]
fn is_host_addr(addr: u32, uplink_addr: u32) -> bool {
    addr == uplink_addr || maps::HOST_ADDRS.get_ptr(addr).is_some()
}

#[inline(always)]
fn read_daddr(ctx: &TcContext) -> Result<u32, DropReason> {
    let frame = parse::header::<EthIpv4>(ctx, 0)?;
    // SAFETY: `header` checked the bounds.
    Ok(parse::ipv4(unsafe { (*frame).ip.dst_addr }))
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
    match read_daddr(ctx) {
        Ok(dst) if dst == host.uplink_addr => {}
        _ => return Ok(VERDICT_NEXT),
    }
    let p = match parse(ctx) {
        Ok(Parsed::Packet(p)) if p.ttl > 1 => p,
        // Malformed headers, fragments, other protocols: the host's stack
        // decides (and drops what is broken).
        _ => return Ok(VERDICT_NEXT),
    };
    if let Some(hit) = conntrack::lookup(&p.key, p.tcp_flags) {
        return translate(ctx, &p, &hit);
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
        ifindex: dest.ifindex,
        gateway: tnet.gateway,
        flags: CT_F_DNAT | dest.ct_flags | ct_slot_flags(maps::slot_of(dest.ifindex)),
        ..CtEntry::default()
    };
    let rev = CtEntry {
        ifindex: host.uplink_ifindex,
        flags: CT_F_DNAT | CT_F_REPLY | CT_F_TO_UPLINK | dest.ct_flags,
        ..CtEntry::default()
    };
    let verdict = start_flow(ctx, &p, fwd, rev, NatCounter::DnatFlows)?;
    count_published(&pkey);
    dest.count();
    Ok(verdict)
}
