//! Anti-spoofing on macvlan endpoints: `netd_mv_out` runs on the egress of
//! the macvlan inside the container's namespace and lets through only what
//! carries the endpoint's own addresses: IPv4 with its source address and
//! MAC, ARP with its sender addresses. Forwarding is the macvlan's (the
//! parent's segment); this program only vets the sender, as `forward` and
//! `arp` do first on a veth.
//!
//! The endpoint is found by the macvlan's ifindex, which netd chose unique
//! (`netd_common::macvlan`), in `MV_EP`; a frame from a macvlan without an
//! entry is dropped (`UnknownSender`): the program is attached after the
//! entry is written and the entry removed only with the endpoint. (Not
//! the namespace's cookie: for a TC program the kernel gives the cookie of
//! the packet's socket's namespace, and ARP or forwarded frames have none.)
use aya_ebpf::programs::TcContext;
use netd_common::DropReason;

use crate::{
    maps,
    parse::{self, EthArp, EthIpv4},
    stats,
    verdict::VERDICT_NEXT,
};

/// Handles a frame the container sends on its macvlan.
#[inline(always)]
pub(crate) fn from_endpoint(ctx: &TcContext) -> Result<i32, DropReason> {
    // SAFETY: a non-null pointer from a map lookup points at a whole value;
    // it is copied out at once.
    let ep = unsafe { maps::MV_EP.get(stats::ifindex(ctx)) }
        .copied()
        .ok_or(DropReason::UnknownSender)?;
    let ether_type = parse::ether_type(ctx)?;
    if ether_type == parse::ETH_P_IP {
        let frame = parse::header::<EthIpv4>(ctx, 0)?;
        // SAFETY: `header` checked that the 34 bytes of EthIpv4 are there.
        let (eth_src, vihl, src) = unsafe {
            let f = &*frame;
            (f.eth.src_addr, f.ip.vihl, f.ip.src_addr)
        };
        parse::check_ipv4_vihl(ctx, vihl)?;
        if parse::ipv4(src) != ep.ip || !parse::mac_eq(&eth_src, &ep.mac) {
            return Err(DropReason::SpoofedSource);
        }
    } else if ether_type == parse::ETH_P_ARP {
        let frame = parse::header::<EthArp>(ctx, 0)?;
        // SAFETY: `header` checked that the 42 bytes of EthArp are there.
        let (eth_src, sha, spa) = unsafe {
            let f = &*frame;
            (f.eth.src_addr, f.arp.sha, f.arp.spa)
        };
        if !parse::mac_eq(&eth_src, &ep.mac)
            || !parse::mac_eq(&sha, &ep.mac)
            || parse::ipv4(spa) != ep.ip
        {
            return Err(DropReason::SpoofedSource);
        }
    } else {
        return Err(DropReason::NotIp);
    }
    Ok(VERDICT_NEXT)
}
