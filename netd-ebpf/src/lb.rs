//! Services: new flows to a virtual IP (VIP) go round-robin over the
//! service's backends, and the choice is recorded in `NAT_CT` so that the
//! whole flow stays on it (layouts in `netd_common::lb`).
//!
//! Where a backend is chosen:
//! - `netd_from_ep` ([`from_endpoint`]), for a container sending to a VIP
//!   of its own network: DNAT to the backend (the client's address is
//!   kept, so the backend sees who is calling), delivered with
//!   `bpf_redirect_peer`; the backend's replies are found by [`reply`] in
//!   the backend's own `netd_from_ep` and leave with the VIP as source. A
//!   client that the round robin sends to itself also gets its source
//!   rewritten to the VIP (a packet from its own address would be a martian
//!   to its stack), so its answer comes back through the VIP too. A
//!   backend on another host (an overlay network's) gets the flow through
//!   the tunnel; its host sends the replies back the same way (they are
//!   the remote endpoint's packets to the client), and [`reply`] finds them
//!   in `netd_vxlan_in` here.
//! - `nat` ([`destination`]), for ports published to a service: from
//!   outside and hairpin, as for a container target.
//! - the socket hooks (`sock`), for the host's own connections to a VIP or
//!   to a port published to a service: the socket's destination becomes the
//!   backend, nothing is translated per packet.
//!
//! New flows: a TCP SYN (without ACK), any UDP datagram or ICMP echo; any
//! other TCP segment to a VIP without a flow is dropped (`NoFlow`) rather
//! than balanced, so stray packets never select a backend, move the
//! cursor or create an entry (exact round-robin from containers).
//! Translated: TCP, UDP, ICMP echo (the identifier stands in for the
//! port); other packets to a VIP are left to the host's stack, as for any
//! unused address. A service whose count is 0 drops new flows
//! (`NoBackend`) instead of sending them anywhere stale.
//!
//! Per-packet cost, whatever the number of services and backends: a packet
//! of a known flow to a VIP costs its `NAT_CT` entry (its entry says where
//! the flow goes; from this CPU's copy but for the first packet of a tick,
//! see `conntrack::lookup`); a new flow adds the `LB_SVC` frontend lookup, one atomic
//! add on the service's cursor and one `LB_SVC` slot lookup (and, for a
//! backend on another host, its `OVL_REMOTE` entry). Replies cost an
//! `LB_BACKENDS` array read on the peer-to-peer path, and the `NAT_CT`
//! lookup only for endpoints marked there (through the tunnel: remote
//! endpoints marked in `OVL_REMOTE`). No loop over services or
//! backends.
use aya_ebpf::programs::TcContext;
use netd_common::{
    DropReason, EndpointInfo, NetworkInfo, PublishTarget,
    lb::{LbStatsKey, SLOT_FRONTEND, SvcKey, SvcSlot},
    nat::{CT_F_LB, CT_F_REPLY, CtEntry, NatCounter, PROTO_TCP},
};

use crate::{
    atomic::fetch_add,
    conntrack,
    maps::{self, LB_BACKENDS, LB_RR, LB_STATS, LB_SVC},
    parse::{self, Parsed, TCP_ACK, TCP_RST, TCP_SYN},
    translate::{self, Delivery},
};

/// A backend the round robin chose.
#[derive(Clone, Copy)]
pub(crate) struct Backend {
    /// Its address, `ipv4_be`.
    pub(crate) ip: u32,
    /// Its host-side veth; 0 for a backend on another host.
    pub(crate) ifindex: u32,
    /// The service it was chosen for.
    pub(crate) svc_index: u32,
}

impl Backend {
    /// Where a flow's packets to the backend go: into its veth, from the
    /// MAC of its network's gateway `gateway`, or through the tunnel to
    /// its host (its `OVL_REMOTE` entry, looked up once per new flow).
    /// `Err(NoBackend)` when a remote backend's entry is gone (the daemon
    /// withdraws its slot first, so only in that instant).
    #[inline(always)]
    pub(crate) fn delivery(&self, gateway: u32) -> Result<Delivery, DropReason> {
        if self.ifindex != 0 {
            return Ok(Delivery::to_endpoint(
                self.ifindex,
                maps::slot_of(self.ifindex),
                gateway,
            ));
        }
        let remote = maps::remote_endpoint(self.ip).ok_or(DropReason::NoBackend)?;
        Ok(Delivery::tunnel(remote.vni, remote.host))
    }
}

/// The every-port frontend (slot 0) of `vip`, if `vip` is a service's.
#[inline(always)]
pub(crate) fn frontend(vip: u32) -> Option<SvcSlot> {
    // SAFETY: a map value pointer, copied out at once (the daemon may
    // replace the element meanwhile; the copy is then the old one).
    LB_SVC
        .get_ptr(SvcKey::new(vip, SLOT_FRONTEND))
        .map(|p| unsafe { *p })
}

/// Whether the endpoint `ep` is marked as a backend (its packets to peers
/// may be replies of balanced flows).
#[inline(always)]
pub(crate) fn is_backend(ep: &EndpointInfo) -> bool {
    LB_BACKENDS
        .get(u32::from(ep.slot))
        .is_some_and(|mark| *mark != 0)
}

/// The next value of the service's round-robin cursor.
#[inline(always)]
fn next_cursor(svc_index: u32) -> Result<u64, DropReason> {
    // The daemon refuses indexes beyond the array, so a miss is a bug, and
    // a new flow without a cursor has nowhere right to go.
    let cursor = LB_RR.get_ptr_mut(svc_index).ok_or(DropReason::NoBackend)?;
    // SAFETY: an array element stays valid for the program's run; it is a
    // naturally aligned u64 only ever accessed atomically by the programs.
    // The fetch-and-add (BPF_ATOMIC | BPF_FETCH, `__sync_fetch_and_add`)
    // makes concurrent new flows on other CPUs take distinct values.
    Ok(unsafe { fetch_add(cursor, 1) })
}

/// The backend in slot `cursor % count + 1` of `vip`, `None` if that slot
/// is missing (a shrink deleted it after `count` was read).
#[inline(always)]
fn slot(vip: u32, cursor: u64, count: u32, svc_index: u32) -> Option<Backend> {
    let index = (cursor % u64::from(count)) as u32 + 1;
    // SAFETY: as in `frontend`.
    let s = unsafe { *LB_SVC.get_ptr(SvcKey::new(vip, index))? };
    Some(Backend {
        ip: s.backend,
        ifindex: s.ifindex,
        svc_index,
    })
}

/// Chooses the backend for a new flow to the service whose frontend at
/// `vip` is `fe`: the next one round-robin. `Err(NoBackend)` for a service
/// without backends.
#[inline(always)]
pub(crate) fn select(vip: u32, fe: &SvcSlot) -> Result<Backend, DropReason> {
    if fe.count == 0 {
        return Err(DropReason::NoBackend);
    }
    let cursor = next_cursor(fe.svc_index)?;
    if let Some(b) = slot(vip, cursor, fe.count, fe.svc_index) {
        return Ok(b);
    }
    // The daemon shrank the service between our two lookups: the count is
    // already the new one, read it again (once: the daemon writes the
    // count before deleting slots, so the second read is consistent).
    let fe = frontend(vip).ok_or(DropReason::NoBackend)?;
    if fe.count == 0 {
        return Err(DropReason::NoBackend);
    }
    slot(vip, cursor, fe.count, fe.svc_index).ok_or(DropReason::NoBackend)
}

/// Counts a new flow placed on `b` (`LB_STATS`, per CPU).
#[inline(always)]
pub(crate) fn count(b: &Backend) {
    let key = LbStatsKey {
        svc_index: b.svc_index,
        backend: b.ip,
    };
    if let Some(n) = LB_STATS.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU hash value. Atomic because
        // the socket hooks (process context) and the TC programs (softirq,
        // which can interrupt them on the same CPU) both count here.
        unsafe { fetch_add(n, 1) };
    }
}

/// Where a published port's new flow goes: the container, or for a port
/// published to a service the next backend.
pub(crate) struct Destination {
    pub(crate) addr: u32,
    ifindex: u32,
    /// `CT_F_LB` when a backend was chosen, else 0.
    pub(crate) ct_flags: u32,
    backend: Option<Backend>,
}

impl Destination {
    /// The backend chosen, if the target was a service.
    #[inline(always)]
    pub(crate) fn backend(&self) -> Option<Backend> {
        self.backend
    }

    /// Where the flow's packets to it go (see [`Backend::delivery`]; a
    /// container target is always local).
    #[inline(always)]
    pub(crate) fn delivery(&self, gateway: u32) -> Result<Delivery, DropReason> {
        match &self.backend {
            Some(b) => b.delivery(gateway),
            None => Ok(Delivery::to_endpoint(
                self.ifindex,
                maps::slot_of(self.ifindex),
                gateway,
            )),
        }
    }

    /// Counts the selection, once the flow exists.
    #[inline(always)]
    pub(crate) fn count(&self) {
        if let Some(b) = &self.backend {
            count(b);
        }
    }
}

/// The destination of a new flow to the published port `target`.
#[inline(always)]
pub(crate) fn destination(target: &PublishTarget) -> Result<Destination, DropReason> {
    if !target.is_service() {
        return Ok(Destination {
            addr: target.addr,
            ifindex: target.ifindex,
            ct_flags: 0,
            backend: None,
        });
    }
    let fe = frontend(target.addr).ok_or(DropReason::NoBackend)?;
    let b = select(target.addr, &fe)?;
    Ok(Destination {
        addr: b.ip,
        ifindex: b.ifindex,
        ct_flags: CT_F_LB,
        backend: Some(b),
    })
}

/// An IPv4 packet from the endpoint `ep` to `dst`, an address of its own
/// network `net` that no endpoint holds: a service's VIP, or an unused
/// address. Known flows are looked up first, so that their packets cost no
/// `LB_SVC` lookup; only a new flow needs the frontend, and is balanced if
/// `dst` has one. `Ok(None)`: nothing to balance (not a VIP; not
/// TCP/UDP/ICMP echo, TTL <= 1, a RST without a flow); `forward` then
/// treats `dst` like any unused address of the subnet. Packets a VIP
/// cannot balance (cut short, fragments) are dropped only when `dst` is
/// one.
#[inline(always)]
pub(crate) fn from_endpoint(
    ctx: &TcContext,
    ep: &EndpointInfo,
    net: &NetworkInfo,
    dst: u32,
) -> Result<Option<i32>, DropReason> {
    let parsed = match parse::l4(ctx) {
        Ok(parsed) => parsed,
        Err(reason) if frontend(dst).is_some() => return Err(reason),
        Err(_) => return Ok(None),
    };
    let p = match parsed {
        Parsed::Packet(p) if p.ttl > 1 => p,
        // No ports to find the flow (and its backend) by.
        Parsed::Fragment if frontend(dst).is_some() => return Err(DropReason::NatFragment),
        _ => return Ok(None),
    };
    // Packets of known flows, replies of a client that is its own backend
    // included (they are sent to the VIP as well).
    if let Some(hit) = conntrack::lookup(&p.key, p.tcp_flags) {
        return translate::packet(ctx, &p, &hit).map(Some);
    }
    let Some(fe) = frontend(dst) else {
        return Ok(None);
    };
    // Only what opens a connection selects a backend: a late ACK or FIN
    // of a flow whose entries are gone would otherwise take the next
    // backend (which answers it with a RST), advance the cursor and leave
    // an entry behind.
    if p.key.proto == PROTO_TCP && p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
        return Err(DropReason::NoFlow);
    }
    let vip = dst;
    let b = select(vip, &fe)?;
    let own = b.ip == ep.ip;
    let fwd = CtEntry {
        // To itself: from the VIP, so that its stack accepts the packet
        // and answers the VIP (which comes back here).
        new_saddr: if own { vip } else { p.key.saddr },
        new_daddr: b.ip,
        new_dport: p.key.dport,
        ..b.delivery(net.gateway)?.entry(CT_F_LB)
    };
    let rev = Delivery::to_endpoint(ep.ifindex, ep.slot, net.gateway).entry(CT_F_LB | CT_F_REPLY);
    let verdict = translate::start_flow(ctx, &p, fwd, rev, NatCounter::LbFlows)?;
    count(&b);
    Ok(Some(verdict))
}

/// A packet from the backend-marked endpoint to a peer (or, from a
/// remote endpoint marked as a backend, one that arrived through the
/// tunnel): if it belongs to a flow this host balanced (a reply to a
/// client that called the VIP or a port published to the service), it is
/// translated back (source := VIP or the published address) and
/// delivered. `Ok(None)`: not such a packet, the caller delivers it as
/// usual.
#[inline(always)]
pub(crate) fn reply(ctx: &TcContext) -> Result<Option<i32>, DropReason> {
    let p = match parse::l4(ctx)? {
        Parsed::Packet(p) if p.ttl > 1 => p,
        _ => return Ok(None),
    };
    match conntrack::lookup(&p.key, p.tcp_flags) {
        Some(hit) => translate::packet(ctx, &p, &hit).map(Some),
        None => Ok(None),
    }
}
