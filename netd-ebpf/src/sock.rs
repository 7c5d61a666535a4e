//! Published ports for the host's own sockets: cgroup socket hooks instead of
//! a proxy process.
//!
//! A connection the host itself makes to a published port (`curl
//! localhost:8080`, or to the uplink address) never crosses the uplink's
//! ingress where the TC DNAT runs: it is local traffic. So the translation
//! happens one step earlier, on the socket call itself, before the kernel
//! routes anything:
//! - `netd_connect4` (`connect()`, TCP and connected UDP) and
//!   `netd_sendmsg4` (`sendto()`/`sendmsg()` with an address, unconnected
//!   UDP) rewrite the destination `{host address, published port}` to the
//!   container's `{address, port}`. The socket then talks to the container
//!   directly, with the source address the route to the container gives
//!   (the bridge's), and no packet ever needs translating;
//! - `netd_recvmsg4` (`recvfrom()`/`recvmsg()` of UDP) rewrites the source of
//!   a datagram coming back from that container to the address the
//!   application sent to, so `dig @127.0.0.1 -p 5353` and friends, which
//!   check who answered, accept the reply. TCP needs nothing of the kind:
//!   the socket is connected and nobody compares addresses per segment;
//! - `netd_post_bind4` refuses `bind()` of a published {address, port,
//!   protocol} with `EADDRINUSE`, so a host process does not silently lose
//!   the connections that would be redirected away from it (what Cilium
//!   does).
//!
//! # Services
//! The same rewrite balances the host's own connections to a service
//! (`lb`): `connect()`/`sendto()` to a virtual IP (any port) goes to the
//! next backend round-robin on the same port, and a port published to a
//! service to the next backend on the target port; the round-robin cursor
//! is the one the TC paths use. UDP replies show the VIP (or the published
//! address) through `netd_recvmsg4` as above. A service without backends
//! refuses the call with `ECONNREFUSED` (counted as a `NoBackend` drop).
//! A connected socket (TCP, connected UDP) stays on its backend for its
//! whole life; an unconnected UDP socket has no flow to stay on, so each
//! `sendto()` is balanced on its own.
//!
//! # Scope: only the daemon's network namespace
//! cgroup hooks attached to the cgroup v2 root see the sockets of *every*
//! process, whatever network namespace it lives in: containers, other
//! netd daemons (tests run several), other container engines. Each hook
//! first compares `bpf_get_netns_cookie()` with
//! `HOST_CFG[0].netns_cookie` (the daemon's namespace) and does nothing
//! elsewhere; a cookie of 0 (not configured yet) matches nothing.
//! Containers reach published ports through the host's address by the TC
//! path (hairpin), not through these hooks.
//!
//! # What counts as a host address
//! `127.0.0.0/8`, `HOST_CFG.uplink_addr` (if not 0), every address in
//! `HOST_ADDRS` (the daemon fills it with the host's other addresses), and
//! `0.0.0.0` (which Linux connects to the host itself).
//! A `PUBLISH` entry for `{addr, port, proto}` is looked up first, then the
//! wildcard `{0, port, proto}`: `-p 127.0.0.1:8080:80` answers only on
//! 127.0.0.1, `-p 8080:80` on every host address.
//!
//! # Limits
//! IPv4 only (no `connect6`: `curl localhost` tries `::1` first and falls
//! back to 127.0.0.1 when nothing answers there). A socket explicitly bound
//! to 127.0.0.1 *before* `connect()` cannot reach a container (the kernel
//! refuses to route a loopback source off the loopback device).
//! `getpeername()` of a redirected socket shows the container's address.
use aya_ebpf::{
    EbpfContext as _,
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    programs::{SockAddrContext, SockContext},
};
use netd_common::{
    Direction, HostConfig, PublishKey, PublishTarget, ipv4_be,
    sock::{UdpRevKey, UdpRevValue},
};

use crate::{lb, maps, stats};

/// Return value of a cgroup socket program: let the call go on.
pub(crate) const SOCK_ALLOW: i32 = 1;
/// Return value of `post_bind4`, `connect4` and `sendmsg4`: refuse the call
/// (with the error set by `bpf_set_retval`, `EPERM` if none was set).
const SOCK_REFUSE: i32 = 0;

const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
/// `EADDRINUSE` (asm-generic/errno.h, the same on every Linux architecture
/// netd targets).
const EADDRINUSE: i32 = 98;
/// `ECONNREFUSED` (asm-generic/errno.h).
const ECONNREFUSED: i32 = 111;

/// 127.0.0.0/8 as [`ipv4_be`] network and mask (byte-wise, so endianness
/// does not matter).
const LOOPBACK_NET: u32 = ipv4_be([127, 0, 0, 0]);
const LOOPBACK_MASK: u32 = ipv4_be([255, 0, 0, 0]);
/// 127.0.0.1, the address `-p 127.0.0.1:...` publishes on.
const LOCALHOST: u32 = ipv4_be([127, 0, 0, 1]);

/// `connect()` of any IPv4 socket in any namespace.
#[inline(always)]
pub(crate) fn connect4(ctx: &SockAddrContext) -> i32 {
    redirect(ctx)
}

/// `sendto()`/`sendmsg()` with a destination address, UDP (and raw/ICMP
/// sockets, which are skipped).
#[inline(always)]
pub(crate) fn sendmsg4(ctx: &SockAddrContext) -> i32 {
    redirect(ctx)
}

/// `recvfrom()`/`recvmsg()` of UDP asking for the source address: undo the
/// redirection for the application's eyes.
///
/// No namespace check: entries exist only for sockets `redirect` handled,
/// and socket cookies are unique machine-wide.
#[inline(always)]
pub(crate) fn recvmsg4(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: `sock_addr` is the context pointer the kernel passed in; these
    // are context field reads the verifier rewrites into loads from the
    // socket address being returned.
    let (addr, port) = unsafe { ((*sa).user_ip4, (*sa).user_port) };
    let key = UdpRevKey {
        // SAFETY: the helper only reads the context's socket.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        addr,
        port: port as u16,
        _pad: 0,
    };
    if let Some(orig) = maps::SOCK_UDP_REV.get_ptr(key) {
        // SAFETY: a non-null lookup result points at a whole value for the
        // rest of the run; copied out at once.
        let orig = unsafe { *orig };
        // SAFETY: context field stores; both are 4-byte stores, the only
        // width the kernel accepts for `user_ip4`/`user_port`.
        unsafe {
            (*sa).user_ip4 = orig.addr;
            (*sa).user_port = u32::from(orig.port);
        }
    }
    SOCK_ALLOW
}

/// `bind()` succeeded in the kernel and gave the socket its address and
/// port: refuse it if that {address, port, protocol} is published.
///
/// Kernel behaviour (net/ipv4/af_inet.c `__inet_bind`, Linux >= 5.18 for
/// `bpf_set_retval` in cgroup programs): the hook runs after the port was
/// taken (`get_port`), and only for an explicit `bind()` (also with port 0:
/// then it sees the port the kernel picked). Returning 0 makes the kernel
/// undo the bind (the port is released, the address reset) and fail the
/// syscall with the value set by `bpf_set_retval`, here `-EADDRINUSE`
/// (without it, `EPERM`). The implicit bind of `connect()` or `listen()`
/// on an unbound socket does not run the hook: client sockets are never
/// refused.
#[inline(always)]
pub(crate) fn post_bind4(ctx: &SockContext) -> i32 {
    let sk = ctx.sock;
    // SAFETY: `sock` is the context pointer the kernel passed in; these are
    // context field reads the verifier rewrites into loads from the socket.
    let (protocol, addr, port_host) = unsafe { ((*sk).protocol, (*sk).src_ip4, (*sk).src_port) };
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return SOCK_ALLOW;
    }
    let cfg = maps::host_config();
    // SAFETY: the helper only reads the context's socket.
    if cfg.netns_cookie == 0 || unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } != cfg.netns_cookie {
        return SOCK_ALLOW;
    }
    // `src_port` is in host byte order (unlike every other port in these
    // contexts).
    let port = (port_host as u16).to_be();
    let proto = protocol as u8;
    let mut taken = published(addr, port, proto).is_some();
    if !taken && addr == 0 {
        // A wildcard bind also receives what is addressed to the specific
        // addresses; those a program can name without iterating: loopback
        // and the uplink. (Others in HOST_ADDRS are not checked.)
        taken = lookup(LOCALHOST, port, proto).is_some()
            || (cfg.uplink_addr != 0 && lookup(cfg.uplink_addr, port, proto).is_some());
    }
    if !taken {
        return SOCK_ALLOW;
    }
    // SAFETY: sets the cgroup run context's return value; no memory access.
    unsafe { bpf_set_retval(-EADDRINUSE) };
    SOCK_REFUSE
}

/// The destination rewrite shared by `connect4` and `sendmsg4`: a
/// published port becomes its container (or, published to a service, the
/// next backend), a service's virtual IP the next backend (same port). A
/// UDP socket connected here keeps the rewritten destination for every
/// later `send()` (which runs no hook), and its replies pass the kernel's
/// connected-peer check because they do come from the container.
///
/// Returns the hook's verdict: the call goes on, except for a new flow to
/// a service without backends, refused with `ECONNREFUSED` (and counted as
/// a `NoBackend` drop) rather than sent to an address nobody answers.
#[inline(always)]
fn redirect(ctx: &SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: context field reads of the address the application passed.
    let (protocol, dst, port) = unsafe { ((*sa).protocol, (*sa).user_ip4, (*sa).user_port) };
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return SOCK_ALLOW;
    }
    let cfg = maps::host_config();
    if cfg.netns_cookie == 0 {
        return SOCK_ALLOW;
    }
    let port = port as u16;
    let proto = protocol as u8;
    let host = is_host_addr(dst, &cfg);
    // A service's VIP: looked up only for addresses that are not the
    // host's (a VIP is an address of a network's subnet that nobody holds).
    let frontend = if host { None } else { lb::frontend(dst) };
    if !host && frontend.is_none() {
        return SOCK_ALLOW;
    }
    // SAFETY: the helper only reads the context's socket.
    if unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } != cfg.netns_cookie {
        return SOCK_ALLOW;
    }
    let chosen = match frontend {
        Some(fe) => lb::select(dst, &fe).map(|b| (b.ip, port, Some(b))),
        None => {
            let Some(target) = published(dst, port, proto) else {
                return SOCK_ALLOW;
            };
            lb::destination(&target).map(|d| (d.addr, target.port, d.backend()))
        }
    };
    let (new_addr, new_port, backend) = match chosen {
        Ok(c) => c,
        Err(reason) => {
            stats::count_drop(reason, Direction::FromEndpoint);
            // SAFETY: sets the cgroup run context's return value; no
            // memory access.
            unsafe { bpf_set_retval(-ECONNREFUSED) };
            return SOCK_REFUSE;
        }
    };
    if let Some(b) = &backend {
        lb::count(b);
    }
    if protocol == IPPROTO_UDP {
        // Remember the original destination before rewriting, for
        // `recvmsg4`. Only written when missing or different: a busy UDP
        // client sending to the same port must not update the map on
        // every datagram.
        let key = UdpRevKey {
            // SAFETY: the helper only reads the context's socket.
            cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
            addr: new_addr,
            port: new_port,
            _pad: 0,
        };
        let orig = UdpRevValue {
            addr: dst,
            port,
            proto,
            _pad: 0,
        };
        let known = maps::SOCK_UDP_REV
            .get_ptr(key)
            // SAFETY: as in `recvmsg4`.
            .map(|p| unsafe { *p })
            .is_some_and(|v| v.addr == orig.addr && v.port == orig.port);
        // A failed insert (map full of entries being updated concurrently)
        // only costs the reply's source rewrite; the datagram still goes.
        if !known {
            let _ = maps::SOCK_UDP_REV.insert(key, orig, 0);
        }
    }
    // SAFETY: 4-byte context stores, as the kernel requires for these
    // fields; they change the address the syscall goes on with.
    unsafe {
        (*sa).user_ip4 = new_addr;
        (*sa).user_port = u32::from(new_port);
    }
    SOCK_ALLOW
}

/// Whether `addr` ([`ipv4_be`]) is one of this host's addresses. 0.0.0.0
/// counts: Linux connects a socket addressed to it to the host itself.
#[inline(always)]
fn is_host_addr(addr: u32, cfg: &HostConfig) -> bool {
    addr == 0
        || addr & LOOPBACK_MASK == LOOPBACK_NET
        || (cfg.uplink_addr != 0 && addr == cfg.uplink_addr)
        || maps::HOST_ADDRS.get_ptr(addr).is_some()
}

/// The target published on `{addr, port, proto}`: the address-specific
/// entry first, then the wildcard one.
#[inline(always)]
fn published(addr: u32, port: u16, proto: u8) -> Option<PublishTarget> {
    if addr != 0
        && let Some(target) = lookup(addr, port, proto)
    {
        return Some(target);
    }
    lookup(0, port, proto)
}

#[inline(always)]
fn lookup(addr: u32, port: u16, proto: u8) -> Option<PublishTarget> {
    let key = PublishKey {
        addr,
        port,
        proto,
        _pad: 0,
    };
    // SAFETY: a non-null lookup result points at a whole value for the rest
    // of the run; copied out at once (the daemon may replace it).
    maps::PUBLISH.get_ptr(key).map(|p| unsafe { *p })
}
