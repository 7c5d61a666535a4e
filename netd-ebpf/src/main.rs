//! netd's kernel programs. Only entry points live here; the logic is in one
//! module per concern.
//!
//! Programs:
//! - `netd_from_ep`: TC ingress of the *host* side of each container veth
//!   (a TC filter attached by `netd::dataplane`), sees what the container
//!   sends and decides where it goes (`arp`, `forward`);
//! - `netd_to_ep`: TC egress of that veth, sees what is delivered to the
//!   container through it (from the host, and ARP replies); it only counts;
//! - `netd_mv_out`: TC egress of a macvlan endpoint inside its container's
//!   namespace, drops what does not carry the endpoint's addresses
//!   (`macvlan`);
//! - `netd_uplink_in`: TCX ingress of the uplink, for replies of
//!   masqueraded flows and connections to published ports from outside
//!   (`nat`);
//! - `netd_vxlan_in`: TC ingress of the host's VXLAN device, for what
//!   other hosts tunnel to this one's containers (`overlay`);
//! - `netd_bridge_out`: TC egress of an overlay network's bridge, for what
//!   the host itself sends into the network: its connections to services'
//!   backends on other hosts (`mesh`, `arp`);
//! - `netd_connect4`, `netd_sendmsg4`, `netd_recvmsg4`, `netd_post_bind4`:
//!   cgroup socket hooks, published ports and services for the host's own
//!   sockets (`sock`).
//!
//! # Layers
//! Each module uses only modules of the layers below its own and, within
//! its layer, ones listed before it: no module depends on itself through
//! others, so each can be read and changed knowing only what is below it.
//! 1. Packets and instructions: `verdict` (what the TC programs return),
//!    `parse` (bounds-checked headers, L2 to L4), `skb` (`sk_buff` fields
//!    the context hides), `atomic` (atomic updates of map memory), `csum`
//!    (header rewrites with their checksums).
//! 2. State: `maps` (every map, and the lookups through the programs'
//!    per-CPU copies), `stats` (endpoint and drop counters), `conntrack`
//!    (the NAT flow table).
//! 3. Translation: `tunnel` (a packet sent to another host through the
//!    VXLAN device), `translate` (a packet rewritten to its flow's tuple
//!    and delivered), `lb` (the backend of a service's new flow), `nat`
//!    (masquerade, published ports and hairpin; the backend of a port
//!    published to a service comes from `lb`), `mesh` (flows whose client
//!    and backend are on different hosts: the routing mesh on the
//!    backend's host, the host's own connections on the client's),
//!    `overlay` (a packet tunnelled to another host, and the checks and
//!    delivery of one that arrives from there).
//! 4. What a program does with a packet or a socket call: `arp`, `sock`
//!    (the socket hooks, balanced by `lb`), `forward` (IPv4 from a
//!    container, handed to `nat`, `overlay` and `lb`), `macvlan` (a macvlan
//!    endpoint's sender checks).
//! 5. This file: the entry points, and the drop accounting of every TC
//!    program.
// The object only means something for the BPF target; on the host the crate
// still compiles (with an empty `main`) so that `cargo check/clippy
// --workspace` work.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// The `atomic` operations are one instruction of inline assembly each,
// still unstable on BPF (the object is built with nightly).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

// Layer by layer (see above).
mod atomic;
mod csum;
mod parse;
mod skb;
mod verdict;

mod conntrack;
mod maps;
mod stats;

mod lb;
mod mesh;
mod nat;
mod overlay;
mod translate;
mod tunnel;

mod arp;
mod forward;
mod macvlan;
mod sock;

use aya_ebpf::{macros::classifier, programs::TcContext};
use netd_common::{Direction, DropReason};

use crate::verdict::{VERDICT_DROP, VERDICT_NEXT};

// `#[inline(always)]` on the entry points (and the `try_*` functions they
// call): aya's macro wraps each in the exported function, and left to
// itself LLVM keeps the large bodies as BPF subprograms, which cost every
// packet a call and a return; returns are dear under the CPU's
// return-thunk mitigation.
#[classifier]
#[inline(always)]
pub fn netd_from_ep(ctx: TcContext) -> i32 {
    match try_netd_from_ep(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason, Direction::FromEndpoint),
    }
}

#[classifier]
#[inline(always)]
pub fn netd_to_ep(ctx: TcContext) -> i32 {
    match try_netd_to_ep(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason, Direction::ToEndpoint),
    }
}

/// Frame a container sends on its macvlan (see `macvlan`).
#[classifier]
#[inline(always)]
pub fn netd_mv_out(ctx: TcContext) -> i32 {
    match macvlan::from_endpoint(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason, Direction::FromEndpoint),
    }
}

/// Packet sent by the container.
///
/// On a veth the daemon registered (`EP_BY_IF`), only two protocols pass:
/// IPv4 (`forward`) and Ethernet/IPv4 ARP (`arp`). Everything else, IPv6
/// included, is dropped as `NotIp`: the daemon disables IPv6 in container
/// namespaces, so a legitimate container sends no IPv6 (not even link-local
/// housekeeping), and a frame of an unknown protocol must not reach the
/// bridge, which would flood it to the other containers.
///
/// On a veth without an entry it drops everything (`UnknownSender`): the
/// daemon writes the entry before it attaches the program and brings the
/// veth up, and removes it only when the endpoint goes, so a missing entry
/// means an endpoint being torn down, or maps that lost it; either way
/// nothing it sends may pass unchecked (fail closed).
///
/// A packet that is not dropped is counted against the sender (`from_*`);
/// `forward` and `translate` also count the deliveries they make by redirect.
#[inline(always)]
fn try_netd_from_ep(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(ep) = maps::endpoint_by_ifindex(stats::ifindex(ctx)) else {
        return Err(DropReason::UnknownSender);
    };
    let ether_type = parse::ether_type(ctx)?;
    let verdict = if ether_type == parse::ETH_P_IP {
        forward::from_endpoint(ctx, &ep)?
    } else if ether_type == parse::ETH_P_ARP {
        arp::from_endpoint(ctx, &ep)?
    } else {
        return Err(DropReason::NotIp);
    };
    stats::count(&ep, Direction::FromEndpoint, ctx.len());
    Ok(verdict)
}

/// Packet about to be delivered to the container: same checks, other counter.
#[inline(always)]
fn try_netd_to_ep(ctx: &TcContext) -> Result<i32, DropReason> {
    parse::check_headers(ctx)?;
    stats::count_to_ifindex(stats::ifindex(ctx), ctx.len());
    Ok(VERDICT_NEXT)
}

/// Every drop goes through here so that none is left uncounted.
#[inline(always)]
fn drop_packet(reason: DropReason, direction: Direction) -> i32 {
    stats::count_drop(reason, direction);
    VERDICT_DROP
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // no_std requires a handler. Any panic path that survives optimisation
    // ends in this infinite loop, which the verifier rejects at load time,
    // so a program that loaded cannot panic.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

/// GPL-compatible so that GPL-only helpers stay available as the programs grow.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

// ---------------------------------------------------------------------------
// Socket hooks (module `sock`): published ports for the host's own sockets.
// Attached by `netd::dataplane::Dataplane::attach_socket_hooks` to the
// cgroup v2 root; they act only in the daemon's network namespace.

/// `connect()` of an IPv4 socket: a published host address/port becomes the
/// container's.
#[aya_ebpf::macros::cgroup_sock_addr(connect4)]
pub fn netd_connect4(ctx: aya_ebpf::programs::SockAddrContext) -> i32 {
    sock::connect4(&ctx)
}

/// `sendto()`/`sendmsg()` with an IPv4 address (unconnected UDP): same
/// rewrite, remembering the original destination for `netd_recvmsg4`.
#[aya_ebpf::macros::cgroup_sock_addr(sendmsg4)]
pub fn netd_sendmsg4(ctx: aya_ebpf::programs::SockAddrContext) -> i32 {
    sock::sendmsg4(&ctx)
}

/// `recvfrom()`/`recvmsg()` of UDP: a reply from a container shows the
/// address the application sent to.
#[aya_ebpf::macros::cgroup_sock_addr(recvmsg4)]
pub fn netd_recvmsg4(ctx: aya_ebpf::programs::SockAddrContext) -> i32 {
    sock::recvmsg4(&ctx)
}

/// `bind()` of an IPv4 socket: a published address/port is refused with
/// `EADDRINUSE`.
#[aya_ebpf::macros::cgroup_sock(post_bind4)]
pub fn netd_post_bind4(ctx: aya_ebpf::programs::SockContext) -> i32 {
    sock::post_bind4(&ctx)
}

// ---------------------------------------------------------------------------
// NAT (module `nat`): masquerade, published ports and hairpin.
// `netd_from_ep` calls into `nat` from `forward`; the uplink has a program
// of its own.

/// TCX ingress of the uplink: replies of masqueraded flows and connections
/// to published ports from outside, translated and handed straight to the
/// container (`bpf_redirect_peer`). Anything else passes untouched.
#[classifier]
#[inline(always)]
pub fn netd_uplink_in(ctx: TcContext) -> i32 {
    match nat::uplink_in(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason, Direction::ToEndpoint),
    }
}

// ---------------------------------------------------------------------------
// Overlay (module `overlay`): VXLAN between hosts. `netd_from_ep` tunnels
// through `forward`; the VXLAN device has a program of its own.

/// TC ingress of the host's collect_md VXLAN device: what another host of
/// the cluster tunnelled here, checked (host, VNI, destination, source) and
/// handed straight to the container (`bpf_redirect_peer`). Nothing else
/// passes.
#[classifier]
#[inline(always)]
pub fn netd_vxlan_in(ctx: TcContext) -> i32 {
    match overlay::from_tunnel(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason, Direction::ToEndpoint),
    }
}

/// TC egress of an overlay network's bridge: what the host itself sends
/// into the network. Its connections to a service's backend on another
/// host (sent there by the socket hooks) are translated and tunnelled,
/// ARP for such a backend is answered; everything else goes on to the
/// bridge.
#[classifier]
#[inline(always)]
pub fn netd_bridge_out(ctx: TcContext) -> i32 {
    match try_netd_bridge_out(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason, Direction::ToEndpoint),
    }
}

#[inline(always)]
fn try_netd_bridge_out(ctx: &TcContext) -> Result<i32, DropReason> {
    let ether_type = parse::ether_type(ctx)?;
    if ether_type == parse::ETH_P_IP {
        mesh::from_host(ctx)
    } else if ether_type == parse::ETH_P_ARP {
        arp::from_host(ctx)
    } else {
        Ok(VERDICT_NEXT)
    }
}
