//! Services across hosts and the routing mesh: flows whose client and
//! backend are on different hosts of the cluster (their `NAT_CT` entries
//! are "host" and "mesh" in `netd_common::nat`).
//!
//! The host a flow enters chooses the backend (`lb`: a container's VIP,
//! `nat`: a published port from outside or through a host address, the
//! socket hooks: the host's own connections) and keeps the flow; a backend
//! on another host gets it through the tunnel, and its host sends the
//! answers back the same way, where `overlay` hands them to [`lb::reply`].
//! The backend sees the client's own address where the client is a
//! container of the service's network calling the VIP (its address is the
//! cluster's) or outside every netd network (a client of a published
//! port); a container calling a published port through a host address
//! (hairpin) and the host itself are seen as the entry host's uplink
//! address (a gateway's or another network's address means nothing on
//! other hosts).
//! Two cases need more than tunnelling:
//!
//! - On the backend's host, [`from_tunnel`]: an inner source that is none
//!   of the cluster's containers. Accepted only from a host of the cluster
//!   (`overlay` checked the outer source), for a local endpoint marked as a
//!   service's backend, from an address of no netd network of this host
//!   (so never one of its containers' nor, on the overlay's networks, one
//!   of any host's) and no loopback, multicast, broadcast or "this network"
//!   address, not on an `--internal` network; and then only as a flow of
//!   its own (`CT_F_MESH`), started by a TCP SYN or a UDP datagram. The
//!   flow keeps its tuple, so the backend sees who called, and its reply
//!   entry sends the backend's answers back through the tunnel to the host
//!   the flow came from: `nat` looks up every packet a container sends
//!   outside before masquerading it.
//!   A container cannot be such a source: every host's `netd_from_ep`
//!   drops what a container sends with another address, and only this
//!   module's and `nat`'s translations put the uplink address there.
//! - On the entry host, [`from_host`] (`netd_bridge_out`, the egress of an
//!   overlay network's bridge): the host's own connections to a backend on
//!   another host, which its socket hooks sent to the backend's address
//!   and its routes through the network's bridge. The source becomes the
//!   uplink address (the bridge's is every host's gateway), the flow goes
//!   through the tunnel, and its reply entry hands the answers to the
//!   host's stack as if the bridge had received them.
//!
//! Per-packet cost: only these flows' packets, plus on the backend's host
//! the `NET_LPM` check of an inner source that no remote endpoint holds
//! (for this host's own networks; `NET_HINT` spares it for most outside
//! addresses), and on the entry host the endpoint lookup of what the host
//! sends through an overlay bridge (a per-CPU copy, see `maps`) and, for
//! destinations that are no local endpoint, their `OVL_REMOTE` entry.
use aya_ebpf::programs::TcContext;
use netd_common::{
    DropReason, EndpointInfo, NET_F_INTERNAL,
    nat::{CT_F_MESH, CT_F_REPLY, CT_F_SNAT, CtEntry, NatCounter},
    overlay::REMOTE_F_BACKEND,
};

use crate::{
    conntrack, lb, maps, nat,
    parse::{self, EthIpv4, Parsed},
    stats,
    translate::{self, Delivery},
    verdict::VERDICT_NEXT,
};

/// Handles a packet the tunnel brought from the host `host` (`ipv4_be`)
/// with VNI `vni` for the local endpoint `peer` of that VNI's network,
/// whose inner source `src` (`ipv4_be`) is no container of the network on
/// that host (see the module docs): delivered (`TC_ACT_REDIRECT`) as part
/// of its mesh flow, or the reason it is dropped.
#[inline(always)]
pub(crate) fn from_tunnel(
    ctx: &TcContext,
    peer: &EndpointInfo,
    src: u32,
    vni: u32,
    host: u32,
) -> Result<i32, DropReason> {
    // Checked before the flow lookup: a flow between two local endpoints
    // (a service's reply entry) must not be reachable with a forged
    // source.
    if !outside_client(src) {
        return Err(DropReason::SpoofedSource);
    }
    let p = match parse::l4(ctx)? {
        Parsed::Packet(p) if p.ttl > 1 => p,
        Parsed::Fragment => return Err(DropReason::NatFragment),
        _ => return Err(DropReason::NoFlow),
    };
    if let Some(hit) = conntrack::lookup(&p.key, p.tcp_flags) {
        return translate::packet(ctx, &p, &hit);
    }
    if !nat::opens_flow(&p) {
        return Err(DropReason::NoFlow);
    }
    // A host speaks for outside clients only towards services' backends.
    if !lb::is_backend(peer) {
        return Err(DropReason::SpoofedSource);
    }
    let net = maps::own_network(peer).ok_or(DropReason::NoNetwork)?;
    // Nothing from outside its networks reaches an `--internal` one.
    if net.flags & NET_F_INTERNAL != 0 {
        return Err(DropReason::InternalNetwork);
    }
    let fwd = CtEntry {
        new_saddr: src,
        new_daddr: peer.ip,
        new_dport: p.key.dport,
        ..Delivery::to_endpoint(peer.ifindex, peer.slot, net.gateway).entry(CT_F_MESH)
    };
    let rev = Delivery::tunnel(vni, host).entry(CT_F_MESH | CT_F_REPLY);
    translate::start_flow(ctx, &p, fwd, rev, NatCounter::MeshFlows)
}

/// Whether `addr` (`ipv4_be`) may be a client outside the cluster's
/// networks: not in a subnet of a netd network here, not in 0.0.0.0/8,
/// 127.0.0.0/8, 224.0.0.0/4 or 240.0.0.0/4 (broadcast included).
#[inline(always)]
fn outside_client(addr: u32) -> bool {
    let [first, ..] = addr.to_ne_bytes();
    first != 0
        && first != 127
        && first < 224
        && (!maps::may_be_netd_address(addr) || maps::network_of(addr).is_none())
}

/// `netd_bridge_out` on an IPv4 packet the host sends through an overlay
/// network's bridge: its connections to a service's backend on another
/// host are translated and tunnelled (see the module docs); everything
/// else goes on to the bridge (`VERDICT_NEXT`), as before.
#[inline(always)]
pub(crate) fn from_host(ctx: &TcContext) -> Result<i32, DropReason> {
    let frame = parse::header::<EthIpv4>(ctx, 0)?;
    // SAFETY: `header` checked that the 34 bytes are in the packet; the
    // values are copied out before any helper runs.
    let (vihl, src, dst) = unsafe {
        let f = &*frame;
        (f.ip.vihl, f.ip.src_addr, f.ip.dst_addr)
    };
    parse::check_ipv4_vihl(ctx, vihl)?;
    let (src, dst) = (parse::ipv4(src), parse::ipv4(dst));
    // The host's own containers, what it mostly talks to here.
    if maps::endpoint_by_ip(dst).is_some() {
        return Ok(VERDICT_NEXT);
    }
    let Some(remote) = maps::remote_endpoint(dst).filter(|r| r.flags & REMOTE_F_BACKEND != 0)
    else {
        return Ok(VERDICT_NEXT);
    };
    // An `--internal` network's replicas could not answer the host (which
    // is outside it for them): only its local ones are the host's to reach.
    let Some(net) =
        maps::network_by_index(remote.net_index).filter(|net| net.info.flags & NET_F_INTERNAL == 0)
    else {
        return Ok(VERDICT_NEXT);
    };
    let host = maps::host_config();
    // The host's own packets only: not what its stack forwards (a packet
    // routed here from elsewhere is not the host's to send on).
    if host.uplink_addr == 0
        || !(src == net.info.gateway || nat::is_host_addr(src, host.uplink_addr))
    {
        return Ok(VERDICT_NEXT);
    }
    let p = match parse::l4(ctx)? {
        Parsed::Packet(p) if p.ttl > 1 => p,
        _ => return Ok(VERDICT_NEXT),
    };
    if let Some(hit) = conntrack::lookup(&p.key, p.tcp_flags) {
        return translate::packet(ctx, &p, &hit);
    }
    if !nat::opens_flow(&p) {
        return Ok(VERDICT_NEXT);
    }
    let fwd = CtEntry {
        new_saddr: host.uplink_addr,
        new_daddr: dst,
        new_dport: p.key.dport,
        ..Delivery::tunnel(remote.vni, remote.host).entry(CT_F_SNAT)
    };
    let rev =
        Delivery::to_host(stats::ifindex(ctx), net.info.gateway).entry(CT_F_SNAT | CT_F_REPLY);
    translate::start_flow(ctx, &p, fwd, rev, NatCounter::HostFlows)
}
