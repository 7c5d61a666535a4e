//! ARP from a container, answered in the kernel.
//!
//! A container resolves only three kinds of address: its gateway, the other
//! endpoints of its network (on an overlay network also those on other
//! hosts, `OVL_REMOTE`), and the virtual IPs of its network's services
//! (answered with the gateway's MAC, see `lb`). Every answer is in the
//! maps (a local endpoint's MAC in `EP_MAP`, the others derived from their
//! address by `netd_common::mac_for_ipv4`), so the request is turned into
//! the reply in place and sent straight back to the container with
//! `bpf_redirect` to the egress of the veth it came in on. Nothing is
//! flooded: a request the maps cannot answer is dropped (`ArpUnanswered`),
//! one for another network's address too (`CrossNetwork`).
//!
//! The host resolves its own containers through permanent neighbour
//! entries the daemon writes; it asks ARP only for what its socket hooks
//! send to a service's backend on another host, through the network's
//! bridge. `netd_bridge_out` answers those requests ([`from_host`]) the same
//! way, back into the bridge.
use aya_ebpf::{bindings::BPF_F_INGRESS, helpers::generated::bpf_redirect, programs::TcContext};
use netd_common::{
    DropReason, EndpointInfo, NET_F_OVERLAY, mac_for_ipv4, overlay::REMOTE_F_BACKEND,
};

use crate::{
    lb, maps, overlay,
    parse::{self, EthArp},
    stats,
    verdict::VERDICT_NEXT,
};

/// `ARPHRD_ETHER`.
const HTYPE_ETHERNET: [u8; 2] = 1u16.to_be_bytes();
/// `ETH_P_IP` as the ARP protocol type.
const PTYPE_IPV4: [u8; 2] = 0x0800u16.to_be_bytes();
const OP_REQUEST: [u8; 2] = 1u16.to_be_bytes();
const OP_REPLY: [u8; 2] = 2u16.to_be_bytes();

/// Handles an ARP frame sent by the endpoint `ep`.
///
/// - Not Ethernet/IPv4 ARP: `NotIp`; wrong address lengths: `Malformed`.
/// - Ethernet source, sender MAC or sender IP not the endpoint's own:
///   `SpoofedSource` (so an ARP probe with sender 0.0.0.0 is dropped too;
///   netd's containers are configured statically and never probe).
/// - A request for the gateway, a service's VIP or an endpoint of the same
///   network (here or, on an overlay network, on another host): the
///   reply, redirected back to the container (`TC_ACT_REDIRECT`).
/// - A request for an address of another netd network: `CrossNetwork`;
///   for anything else: `ArpUnanswered`.
/// - A reply, or a gratuitous request (target = sender): passed on to the
///   host, with the Ethernet destination set to the gateway's MAC so the
///   bridge delivers it locally instead of flooding it to the other ports.
#[inline(always)]
pub(crate) fn from_endpoint(ctx: &TcContext, ep: &EndpointInfo) -> Result<i32, DropReason> {
    let frame = parse::header::<EthArp>(ctx, 0)?;
    // SAFETY: `header` checked that the 42 bytes of EthArp are in the packet;
    // no helper that moves packet data runs until the last use of `frame`.
    let (eth_src, arp) = unsafe { ((*frame).eth.src_addr, Fields::of(frame)) };
    if !arp.ethernet_ipv4() {
        return Err(DropReason::NotIp);
    }
    if !arp.well_sized() {
        return Err(DropReason::Malformed);
    }
    let (oper, spa, tpa) = (arp.oper, parse::ipv4(arp.spa), parse::ipv4(arp.tpa));
    if !parse::mac_eq(&eth_src, &ep.mac) || !parse::mac_eq(&arp.sha, &ep.mac) || spa != ep.ip {
        return Err(DropReason::SpoofedSource);
    }

    if oper == OP_REPLY || (oper == OP_REQUEST && tpa == ep.ip) {
        let own = maps::own_network(ep).ok_or(DropReason::NoNetwork)?;
        // SAFETY: in bounds (checked above); direct packet writes are allowed
        // for TC programs, the verifier unclones the skb first.
        unsafe { (*frame.cast_mut()).eth.dst_addr = mac_for_ipv4(own.gateway.to_ne_bytes()) };
        return Ok(VERDICT_NEXT);
    }
    if oper != OP_REQUEST {
        return Err(DropReason::ArpUnanswered);
    }

    let answer = resolve(ep, tpa)?;
    // SAFETY: in bounds (checked above), no helper ran since.
    unsafe { answer_in_place(frame.cast_mut(), ep.mac, ep.ip, answer, tpa) };
    let ifindex = stats::ifindex(ctx);
    // SAFETY: plain helper call. With flags 0 it records "egress of
    // `ifindex`" for the kernel to act on after the program returns and
    // returns TC_ACT_REDIRECT.
    Ok(unsafe { bpf_redirect(ifindex, 0) } as i32)
}

/// The fields of an ARP header the programs read, copied out.
struct Fields {
    htype: [u8; 2],
    ptype: [u8; 2],
    hlen: u8,
    plen: u8,
    oper: [u8; 2],
    sha: [u8; 6],
    spa: [u8; 4],
    tpa: [u8; 4],
}

impl Fields {
    /// # Safety
    /// `frame` must point at a whole `EthArp` in the packet (checked by
    /// `parse::header` after the last helper call).
    #[inline(always)]
    unsafe fn of(frame: *const EthArp) -> Fields {
        // SAFETY: see the contract.
        let a = unsafe { &(*frame).arp };
        Fields {
            htype: a.htype,
            ptype: a.ptype,
            hlen: a.hlen,
            plen: a.plen,
            oper: a.oper,
            sha: a.sha,
            spa: a.spa,
            tpa: a.tpa,
        }
    }

    /// Ethernet hardware and IPv4 protocol addresses.
    #[inline(always)]
    fn ethernet_ipv4(&self) -> bool {
        self.htype == HTYPE_ETHERNET && self.ptype == PTYPE_IPV4
    }

    /// Their lengths as they must be for that.
    #[inline(always)]
    fn well_sized(&self) -> bool {
        self.hlen == 6 && self.plen == 4
    }
}

/// Turns the request in `frame` into its reply: from `answer` (claiming
/// `target`) to the asker (`asker_mac`, `asker_ip`).
///
/// # Safety
/// `frame` must point at a whole `EthArp` in the packet (checked by
/// `parse::header` after the last helper call).
#[inline(always)]
unsafe fn answer_in_place(
    frame: *mut EthArp,
    asker_mac: [u8; 6],
    asker_ip: u32,
    answer: [u8; 6],
    target: u32,
) {
    // SAFETY: see the contract; direct packet writes are allowed for TC
    // programs, the verifier unclones the skb first.
    let f = unsafe { &mut *frame };
    f.eth.dst_addr = asker_mac;
    f.eth.src_addr = answer;
    f.arp.oper = OP_REPLY;
    f.arp.tha = asker_mac;
    f.arp.tpa = asker_ip.to_ne_bytes();
    f.arp.sha = answer;
    f.arp.spa = target.to_ne_bytes();
}

/// An ARP frame the host sends through an overlay network's bridge
/// (`netd_bridge_out`): a request from the bridge's address for a remote
/// endpoint of that network marked as a service's backend is answered
/// with the MAC netd gives that address, back into the bridge
/// (`TC_ACT_REDIRECT` to its ingress). Anything else goes on to the
/// bridge as before (`VERDICT_NEXT`).
#[inline(always)]
pub(crate) fn from_host(ctx: &TcContext) -> Result<i32, DropReason> {
    let frame = parse::header::<EthArp>(ctx, 0)?;
    // SAFETY: `header` checked that the 42 bytes of EthArp are in the
    // packet; no helper runs until the last use of `frame`.
    let arp = unsafe { Fields::of(frame) };
    if !(arp.ethernet_ipv4() && arp.well_sized() && arp.oper == OP_REQUEST) {
        return Ok(VERDICT_NEXT);
    }
    let (sha, spa, tpa) = (arp.sha, parse::ipv4(arp.spa), parse::ipv4(arp.tpa));
    let asks_for_backend = maps::remote_endpoint(tpa)
        .filter(|remote| remote.flags & REMOTE_F_BACKEND != 0)
        .and_then(|remote| maps::network_by_index(remote.net_index))
        .is_some_and(|net| net.info.gateway == spa);
    if !asks_for_backend {
        return Ok(VERDICT_NEXT);
    }
    // SAFETY: in bounds (checked above), no helper ran since.
    unsafe {
        answer_in_place(
            frame.cast_mut(),
            sha,
            spa,
            mac_for_ipv4(tpa.to_ne_bytes()),
            tpa,
        );
    }
    // SAFETY: plain helper call. With `BPF_F_INGRESS` it records "receive
    // on the bridge" for the kernel to act on after the program returns
    // and returns TC_ACT_REDIRECT.
    Ok(unsafe { bpf_redirect(stats::ifindex(ctx), u64::from(BPF_F_INGRESS)) } as i32)
}

/// The MAC that answers "who has `target`?" for the endpoint `ep`.
#[inline(always)]
fn resolve(ep: &EndpointInfo, target: u32) -> Result<[u8; 6], DropReason> {
    if let Some(peer) = maps::endpoint_by_ip(target) {
        if peer.net_index != ep.net_index {
            return Err(DropReason::CrossNetwork);
        }
        return Ok(peer.mac);
    }
    match maps::network_of(target) {
        Some(net) if net.net_index != ep.net_index => Err(DropReason::CrossNetwork),
        Some(net) if net.gateway == target => Ok(mac_for_ipv4(target.to_ne_bytes())),
        // A container of the overlay network on another host: the MAC netd
        // gives its address, which its own host's programs check.
        Some(net) if net.flags & NET_F_OVERLAY != 0 && overlay::is_remote_peer(ep, target) => {
            Ok(mac_for_ipv4(target.to_ne_bytes()))
        }
        // A service's virtual IP: answered with the gateway's MAC, so the
        // container sends VIP traffic towards the gateway and
        // `netd_from_ep` balances it by destination address.
        Some(net) if lb::frontend(target).is_some() => Ok(mac_for_ipv4(net.gateway.to_ne_bytes())),
        // An unused address of the own network, or no netd network at all.
        _ => Err(DropReason::ArpUnanswered),
    }
}
