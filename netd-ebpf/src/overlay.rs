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
//! host; anything else is dropped and counted with its reason. Services
//! across hosts add two exceptions (module `mesh`): what a remote endpoint
//! marked as a backend sends may be the reply of a flow this host
//! translated (looked up in `NAT_CT` first, then translated and delivered
//! where its flow says: a container, the uplink, the host), and an inner
//! source outside the cluster's networks is accepted for a local backend
//! as a routing-mesh flow. Nothing else is passed to the host's stack:
//! with forwarding on it would route what a remote host sent anywhere.
//!
//! ARP does not cross the tunnel: `arp` answers a container's request for
//! a remote peer on its own host ([`is_remote_peer`]).
use aya_ebpf::{
    bindings::bpf_tunnel_key,
    helpers::generated::{bpf_redirect_peer, bpf_skb_get_tunnel_key},
    programs::TcContext,
};
use core::mem::size_of;
use netd_common::{Direction, DropReason, EndpointInfo, mac_for_ipv4, overlay::REMOTE_F_BACKEND};
use network_types::eth::EthHdr;

use crate::{
    lb,
    maps::{self, OVL_HOSTS, OVL_VNI},
    mesh,
    parse::{self, EthIpv4},
    stats, tunnel,
};

/// Whether `ip` (`ipv4_be`) is an endpoint of `ep`'s network on another
/// host (for ARP: its MAC is `mac_for_ipv4(ip)`).
#[inline(always)]
pub(crate) fn is_remote_peer(ep: &EndpointInfo, ip: u32) -> bool {
    maps::remote_endpoint(ip).is_some_and(|remote| remote.net_index == ep.net_index)
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
    let Some(remote) = maps::remote_endpoint(dst) else {
        return Ok(None);
    };
    if remote.net_index != ep.net_index {
        return Err(DropReason::CrossNetwork);
    }
    let Some(device) = tunnel::device() else {
        return Ok(None);
    };
    // Verifier note: the callers' packet pointers may predate a pull
    // (`parse::header`); write through a freshly checked one.
    let eth = parse::header::<EthHdr>(ctx, 0)?;
    // SAFETY: in bounds (checked by `header`); direct packet writes are
    // allowed for TC programs, the verifier unclones the skb first.
    unsafe { (*eth.cast_mut()).dst_addr = mac_for_ipv4(dst.to_ne_bytes()) };
    tunnel::send(ctx, device, remote.vni, remote.host).map(Some)
}

/// Handles a packet the VXLAN device decapsulated (see the module docs):
/// `TC_ACT_REDIRECT` where it goes, or the reason it is dropped.
#[inline(always)]
pub(crate) fn from_tunnel(ctx: &TcContext) -> Result<i32, DropReason> {
    // SAFETY: `bpf_tunnel_key` is plain integers and unions of them, for
    // which all zeroes is a valid value.
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
    let vni = key.tunnel_id;
    // SAFETY: a map value pointer, copied out at once.
    let net_index = OVL_VNI
        .get_ptr(vni)
        .map(|p| unsafe { *p })
        .ok_or(DropReason::VniUnknown)?;

    if parse::ether_type(ctx)? != parse::ETH_P_IP {
        return Err(DropReason::NotIp);
    }
    let frame = parse::header::<EthIpv4>(ctx, 0)?;
    // SAFETY: `header` checked that the 34 bytes of EthIpv4 are in the
    // packet; the values are copied out before any helper runs.
    let (vihl, src, dst) = unsafe {
        let f = &*frame;
        (
            f.ip.vihl,
            parse::ipv4(f.ip.src_addr),
            parse::ipv4(f.ip.dst_addr),
        )
    };
    parse::check_ipv4_vihl(ctx, vihl)?;
    // A host speaks for its own containers of the network (and, see
    // `mesh`, for clients outside the cluster's networks).
    let sender = maps::remote_endpoint(src)
        .filter(|remote| remote.net_index == net_index && remote.host == host);
    if sender.is_some_and(|remote| remote.flags & REMOTE_F_BACKEND != 0)
        && let Some(verdict) = lb::reply(ctx)?
    {
        // A service's backend answering a flow this host translated.
        tunnel::count_received(ctx.len());
        return Ok(verdict);
    }
    let peer = maps::endpoint_by_ip(dst).ok_or(DropReason::NoEndpoint)?;
    if peer.net_index != net_index {
        return Err(DropReason::VniMismatch);
    }
    if sender.is_none() {
        // Laid out after the hot code (see `parse::header`).
        core::hint::cold_path();
        let verdict = mesh::from_tunnel(ctx, &peer, src, vni, host)?;
        tunnel::count_received(ctx.len());
        return Ok(verdict);
    }
    // Verifier note: `lb::reply` may have pulled the packet, which
    // invalidates `frame`; write through a freshly checked pointer.
    let eth = parse::header::<EthHdr>(ctx, 0)?;
    // SAFETY: in bounds (checked by `header`); see `encapsulate`.
    unsafe { (*eth.cast_mut()).dst_addr = peer.mac };
    let len = ctx.len();
    // `bpf_redirect_peer` skips the peer's host-side veth, whose
    // `netd_to_ep` would count it.
    stats::count(&peer, Direction::ToEndpoint, len);
    tunnel::count_received(len);
    // SAFETY: plain helper call. With flags 0 it records "ingress of the
    // peer of `peer.ifindex`" for the kernel to act on after the program
    // returns, and returns TC_ACT_REDIRECT.
    Ok(unsafe { bpf_redirect_peer(peer.ifindex, 0) } as i32)
}
