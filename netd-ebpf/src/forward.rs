//! IPv4 from a container: anti-spoofing, isolation between networks, and
//! delivery to endpoints of the same network without the Linux bridge.
//!
//! Same network: the frame is handed to the destination container's `eth0`
//! with `bpf_redirect_peer` (it enters that namespace's stack directly,
//! skipping the destination's host-side veth and the bridge). The frame is
//! forwarded as a bridge would (L2 semantics: the containers share a subnet,
//! so the TTL is not decremented and the Ethernet source stays the sender's
//! MAC); only the destination MAC is (re)written to the endpoint's, so the
//! frame is right even if the sender's neighbour entry was not. On a
//! network created with `enable_icc=false` (`NET_F_NO_ICC`) peers do not
//! reach each other that way (`IccDisabled`), only through services and
//! published ports.
//!
//! Everything that is passed on (to the gateway, to an unused address of the
//! own subnet, to the outside world) gets the gateway's MAC as Ethernet
//! destination: the bridge then delivers it to the host's stack and never
//! forwards or floods it to another port, whatever the container addressed
//! it to. This is what keeps containers from reaching each other through the
//! bridge's static FDB entries or by broadcast.
//!
//! Before that, on non-internal networks, `nat` gets to translate what goes
//! outside every netd network or to the own gateway (masquerade, hairpin,
//! replies of published ports); what it translates it also redirects.
//! Another destination in the own subnet of an overlay network is first
//! offered to `overlay`, which tunnels it to the host of the remote
//! endpoint holding it. Then it goes to `lb`, which balances it to a
//! backend if it is a service's virtual IP (on internal networks too),
//! and a packet to a peer from an endpoint marked as a backend is first
//! offered to `lb` as a possible reply of a balanced flow.
use aya_ebpf::{helpers::generated::bpf_redirect_peer, programs::TcContext};
use netd_common::{
    Direction, DropReason, EndpointInfo, NET_F_INTERNAL, NET_F_NO_ICC, NET_F_OVERLAY, mac_for_ipv4,
};

use crate::{
    lb, maps, nat, overlay,
    parse::{self, EthIpv4},
    stats,
    verdict::VERDICT_NEXT,
};

/// Handles an IPv4 packet sent by the endpoint `ep`.
///
/// Lookups: `EP_MAP` for the destination, and `NET_LPM` when it is not an
/// endpoint and not in the own subnet, both only for destinations in the
/// own subnet or whose /16 may hold a netd address (`NET_HINT`: not for
/// the outside world).
/// Other addresses of the own subnet cost `lb`'s `NAT_CT` lookup (and
/// `LB_SVC` for a new flow), on an overlay network `OVL_REMOTE`'s first.
/// The sender's own network and subnet, the hint, counting and the
/// backend mark are array reads (by the endpoints' network index and
/// slots, by address), which the verifier inlines.
#[inline(always)]
pub(crate) fn from_endpoint(ctx: &TcContext, ep: &EndpointInfo) -> Result<i32, DropReason> {
    let frame = parse::header::<EthIpv4>(ctx, 0)?;
    // SAFETY: `header` checked that the 34 bytes of EthIpv4 are in the packet;
    // map lookups do not move packet data, so `frame` stays valid below.
    let (eth_src, vihl, src, dst) = unsafe {
        let f = &*frame;
        (f.eth.src_addr, f.ip.vihl, f.ip.src_addr, f.ip.dst_addr)
    };
    parse::check_ipv4_vihl(ctx, vihl)?;
    if parse::ipv4(src) != ep.ip || !parse::mac_eq(&eth_src, &ep.mac) {
        return Err(DropReason::SpoofedSource);
    }
    let dst = parse::ipv4(dst);
    // The own subnet is read first: a destination in it (a peer, a VIP,
    // the gateway: most traffic that is not to the outside) is one netd
    // may hold without asking the hint, whose two words are two more
    // cache lines.
    let indexed = maps::indexed_network(ep);
    let in_own_subnet = indexed.is_some_and(|own| dst & own.mask == own.subnet);
    let netd_dst = in_own_subnet || maps::may_be_netd_address(dst);

    if netd_dst && let Some(peer) = maps::endpoint_by_ip(dst) {
        if peer.net_index != ep.net_index {
            return Err(DropReason::CrossNetwork);
        }
        // A service's backend answering a client that called the VIP: the
        // reply must come from the VIP.
        if lb::is_backend(ep)
            && let Some(verdict) = lb::reply(ctx)?
        {
            return Ok(verdict);
        }
        // `enable_icc=false`: peers only reach each other through a VIP
        // or a published port (the reply just above).
        if maps::own_network_from(ep, indexed).is_some_and(|net| net.flags & NET_F_NO_ICC != 0) {
            return Err(DropReason::IccDisabled);
        }
        // Verifier note: `lb::reply` may have pulled the packet, which
        // invalidates `frame`; write through a freshly checked pointer.
        let frame = parse::header::<EthIpv4>(ctx, 0)?;
        // SAFETY: in bounds (checked by `header`); direct packet writes are
        // allowed for TC programs, the verifier unclones the skb first.
        unsafe { (*frame.cast_mut()).eth.dst_addr = peer.mac };
        stats::count(&peer, Direction::ToEndpoint, ctx.len());
        // SAFETY: plain helper call. With flags 0 it records "ingress of the
        // peer of `peer.ifindex`" for the kernel to act on after the program
        // returns, and returns TC_ACT_REDIRECT.
        return Ok(unsafe { bpf_redirect_peer(peer.ifindex, 0) } as i32);
    }

    // The destination's network: the own one when its subnet holds the
    // address (the daemon never writes overlapping subnets, so the trie
    // would find the same), else the trie's answer.
    let dst_net = match indexed {
        Some(own) if in_own_subnet => Some(own.info),
        _ if netd_dst => maps::network_of_destination(dst),
        _ => None,
    };
    let gateway = match dst_net {
        Some(net) if net.net_index == ep.net_index => {
            if dst == net.gateway {
                // The gateway is a host address: a published port there is
                // hairpin, and replies of hairpin flows come back to it.
                if let Some(verdict) = nat::from_endpoint(ctx, ep, &net, true)? {
                    return Ok(verdict);
                }
            } else {
                if net.flags & NET_F_OVERLAY != 0 {
                    // Laid out after the hot code (see `parse::header`): a
                    // packet that leaves through the tunnel costs
                    // microseconds in the VXLAN device and the underlay,
                    // where its place in the program does not show, while
                    // the other packets share fewer cache lines with it.
                    core::hint::cold_path();
                    // A container of the network on another host:
                    // tunnelled.
                    if let Some(verdict) = overlay::encapsulate(ctx, ep, dst)? {
                        return Ok(verdict);
                    }
                }
                // A service's virtual IP (an address of the subnet that no
                // endpoint holds): balanced over its backends.
                if let Some(verdict) = lb::from_endpoint(ctx, ep, &net, dst)? {
                    return Ok(verdict);
                }
            }
            net.gateway
        }
        Some(_) => return Err(DropReason::CrossNetwork),
        None => {
            let own = maps::own_network_from(ep, indexed).ok_or(DropReason::NoNetwork)?;
            if own.flags & NET_F_INTERNAL != 0 {
                return Err(DropReason::InternalNetwork);
            }
            // Masquerade, hairpin through the uplink address, replies of
            // published-port flows.
            if let Some(verdict) = nat::from_endpoint(ctx, ep, &own, false)? {
                return Ok(verdict);
            }
            own.gateway
        }
    };
    // Verifier note: `nat` may have pulled the packet (parse::header),
    // which invalidates `frame`; write through a freshly checked pointer.
    let frame = parse::header::<EthIpv4>(ctx, 0)?;
    // SAFETY: as above.
    unsafe { (*frame.cast_mut()).eth.dst_addr = mac_for_ipv4(gateway.to_ne_bytes()) };
    Ok(VERDICT_NEXT)
}
