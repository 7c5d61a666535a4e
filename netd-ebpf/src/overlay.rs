//! The overlay: the containers of one network on several hosts, joined by
//! VXLAN (layouts in `netd_common::overlay`).
//!
//! Every host has one collect_md ("external") VXLAN device: the programs
//! say per packet where it goes (`bpf_skb_set_tunnel_key`) and read where
//! it came from (`bpf_skb_get_tunnel_key`), so the kernel holds no FDB or
//! neighbour entry per remote container, only `OVL_REMOTE`'s one entry,
//! which the daemon replaces as a whole when a container moves.
//!
//! Sending ([`encapsulate`], from `forward`): a container's packet for an
//! address of its own overlay network's subnet that no local endpoint has
//! is looked up in `OVL_REMOTE`; a remote endpoint of the same network
//! gets it, its Ethernet destination set to that endpoint's MAC, tunnelled
//! to its host with the network's VNI through the VXLAN device.
//!
//! Receiving ([`from_tunnel`], `netd_vxlan_in` on the VXLAN device's TC
//! ingress): a packet is delivered (`bpf_redirect_peer`, no bridge) only if
//! its outer source is a host of the cluster, its VNI one of this host's
//! overlay networks, its inner destination a local endpoint of that network
//! and its inner source an endpoint of that network living on the sending
//! host; anything else is dropped and counted with its reason. Nothing is
//! passed to the host's stack: with forwarding on it would route what a
//! remote host sent anywhere.
//!
//! ARP does not cross the tunnel: `arp` answers a container's request for
//! a remote peer on its own host ([`is_remote_peer`]).
use core::mem::size_of;

use aya_ebpf::{
    bindings::{BPF_F_ZERO_CSUM_TX, bpf_tunnel_key},
    helpers::generated::{
        bpf_redirect, bpf_redirect_peer, bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key,
    },
    programs::TcContext,
};
use netd_common::{
    Direction, DropReason, EndpointInfo, mac_for_ipv4,
    overlay::{OUTER_TTL, OverlayCounter, RemoteEndpoint},
};
use network_types::eth::EthHdr;

use crate::{
    maps::{self, OVL_CFG, OVL_HOSTS, OVL_REMOTE, OVL_STATS, OVL_VNI},
    parse::{self, EthIpv4},
    stats,
};

/// The remote endpoint holding `ip` (`ipv4_be`), if there is one.
#[inline(always)]
fn remote_endpoint(ip: u32) -> Option<RemoteEndpoint> {
    // SAFETY: a map value pointer, copied out at once (the daemon may
    // replace the element meanwhile; the copy is then the old one).
    OVL_REMOTE.get_ptr(ip).map(|p| unsafe { *p })
}

/// Whether `ip` (`ipv4_be`) is an endpoint of `ep`'s network on another
/// host (for ARP: its MAC is `mac_for_ipv4(ip)`).
#[inline(always)]
pub(crate) fn is_remote_peer(ep: &EndpointInfo, ip: u32) -> bool {
    remote_endpoint(ip).is_some_and(|remote| remote.net_index == ep.net_index)
}

/// Tunnels the packet `ep` sends to `dst` (`ipv4_be`, in the subnet of
/// `ep`'s overlay network, no local endpoint) if `dst` is a remote
/// endpoint: `Some(TC_ACT_REDIRECT)` to the VXLAN device. `None` when it
/// is none, or when no VXLAN device is attached: the packet is then
/// treated as any unused address of the subnet. A remote endpoint of
/// another network is `CrossNetwork`.
#[inline(always)]
pub(crate) fn encapsulate(
    ctx: &TcContext,
    ep: &EndpointInfo,
    dst: u32,
) -> Result<Option<i32>, DropReason> {
    let Some(remote) = remote_endpoint(dst) else {
        return Ok(None);
    };
    if remote.net_index != ep.net_index {
        return Err(DropReason::CrossNetwork);
    }
    let vxlan_ifindex = OVL_CFG.get(0).map_or(0, |cfg| cfg.vxlan_ifindex);
    if vxlan_ifindex == 0 {
        return Ok(None);
    }
    // Verifier note: the callers' packet pointers may predate a pull
    // (`parse::header`); write through a freshly checked one.
    let eth = parse::header::<EthHdr>(ctx, 0)?;
    // SAFETY: in bounds (checked by `header`); direct packet writes are
    // allowed for TC programs, the verifier unclones the skb first.
    unsafe { (*eth.cast_mut()).dst_addr = mac_for_ipv4(dst.to_ne_bytes()) };
    // SAFETY: `bpf_tunnel_key` is plain integers and unions of them, for
    // which all zeroes is a valid value (and what the kernel expects in the
    // fields left unset).
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    key.tunnel_id = remote.vni;
    // The helper takes the addresses in host order.
    key.__bindgen_anon_1.remote_ipv4 = u32::from_be(remote.host);
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
    // `vxlan_ifindex`" for the kernel to act on after the program returns,
    // and returns TC_ACT_REDIRECT.
    Ok(Some(unsafe { bpf_redirect(vxlan_ifindex, 0) } as i32))
}

/// Handles a packet the VXLAN device decapsulated (see the module docs):
/// `TC_ACT_REDIRECT` into the destination container, or the reason it is
/// dropped.
#[inline(always)]
pub(crate) fn from_tunnel(ctx: &TcContext) -> Result<i32, DropReason> {
    // SAFETY: as in `encapsulate`.
    let mut key: bpf_tunnel_key = unsafe { core::mem::zeroed() };
    // SAFETY: plain helper call on the program's own context and a key on
    // its stack of the size passed; it fills the key from the tunnel
    // metadata the VXLAN device attached, or fails if there is none.
    let got = unsafe {
        bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, size_of::<bpf_tunnel_key>() as u32, 0)
    };
    if got != 0 {
        return Err(DropReason::UnknownHost);
    }
    // SAFETY: reading a `u32` of the union the helper filled (IPv4: no
    // `BPF_F_TUNINFO_IPV6`), in host order.
    let host = unsafe { key.__bindgen_anon_1.remote_ipv4 }.to_be();
    if OVL_HOSTS.get_ptr(host).is_none() {
        return Err(DropReason::UnknownHost);
    }
    // SAFETY: a map value pointer, copied out at once.
    let net_index = OVL_VNI
        .get_ptr(key.tunnel_id)
        .map(|p| unsafe { *p })
        .ok_or(DropReason::VniUnknown)?;

    if parse::ether_type(ctx)? != parse::ETH_P_IP {
        return Err(DropReason::NotIp);
    }
    let frame = parse::header::<EthIpv4>(ctx, 0)?;
    // SAFETY: `header` checked that the 34 bytes of EthIpv4 are in the
    // packet; map lookups do not move packet data, so `frame` stays valid
    // below.
    let (vihl, src, dst) = unsafe {
        let f = &*frame;
        (f.ip.vihl, f.ip.src_addr, f.ip.dst_addr)
    };
    parse::check_ipv4_vihl(ctx, vihl)?;
    let peer = maps::endpoint_by_ip(parse::ipv4(dst)).ok_or(DropReason::NoEndpoint)?;
    if peer.net_index != net_index {
        return Err(DropReason::VniMismatch);
    }
    // A host speaks only for its own containers of the network.
    if !remote_endpoint(parse::ipv4(src))
        .is_some_and(|remote| remote.net_index == net_index && remote.host == host)
    {
        return Err(DropReason::SpoofedSource);
    }
    // SAFETY: in bounds (checked by `header`); see `encapsulate`.
    unsafe { (*frame.cast_mut()).eth.dst_addr = peer.mac };
    let len = ctx.len();
    // `bpf_redirect_peer` skips the peer's host-side veth, whose
    // `netd_to_ep` would count it.
    stats::count(&peer, Direction::ToEndpoint, len);
    count(
        OverlayCounter::DecapPackets,
        OverlayCounter::DecapBytes,
        len,
    );
    // SAFETY: plain helper call. With flags 0 it records "ingress of the
    // peer of `peer.ifindex`" for the kernel to act on after the program
    // returns, and returns TC_ACT_REDIRECT.
    Ok(unsafe { bpf_redirect_peer(peer.ifindex, 0) } as i32)
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
