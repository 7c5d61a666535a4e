//! Connection tracking for NAT: the `NAT_CT` LRU hash, two entries per flow
//! (layout and timeouts in `netd_common::nat`).
//!
//! Per packet of a known flow: one lookup, plus a write of `last_seen` at
//! most once per `REFRESH_NS`; the flow's other entry is touched only on
//! state changes (first reply, FIN, RST) and when the entry looks expired.
//! Within a tick, a CPU answers the lookups of a steady flow from its own
//! copy (`FLOW_CACHE`, see [`lookup`]); every change to an entry advances
//! its tuple's generation (`CT_GEN`, see [`flows_changed`]).
//!
//! Lifetime:
//! - TCP: RST removes both entries at once; after a FIN each way the next
//!   ACK from the side that closed first (the last ACK) removes them. A
//!   lost last ACK leaves them to the closing timeout.
//! - Everything: an entry is expired when it saw no packet for its
//!   timeout; a flow is over when both its entries are (a one-way stream
//!   keeps its flow alive). An expired flow is removed by the next packet
//!   that looks it up, by a new flow that wants its tuple, or by the LRU.
//!
//! Ports: a new flow keeps its source port when the reverse tuple is free,
//! else tries `PORT_TRIES - 1` more ports from a random start in
//! `PORT_MIN..=PORT_MAX` (in a `bpf_loop`, see [`create`]). Claiming the
//! reverse tuple is one `BPF_NOEXIST` insert, atomic against other CPUs.
use core::mem::offset_of;

use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    cty::c_void,
    helpers::generated::{bpf_get_prandom_u32, bpf_jiffies64, bpf_ktime_get_ns, bpf_loop},
};
use netd_common::{
    DropReason,
    nat::{
        CT_F_CLOSING, CT_F_ESTABLISHED, CT_F_FIN_ORIG, CT_F_FIN_REPLY, CT_F_LAST_FIN_REPLY,
        CT_F_REPLY, CtEntry, CtKey, NatCounter, PORT_MAX, PORT_MIN, PORT_TRIES, PROTO_TCP,
        REFRESH_NS, expired,
    },
};

use crate::atomic;
use crate::maps::{
    CT_CLOCK, CT_GEN, CT_GEN_SLOTS, CachedFlow, ClockCache, FLOW_CACHE, FLOW_CACHE_WAYS, NAT_CT,
    NAT_STATS, daemon_generation,
};
use crate::parse::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

/// The flags that describe the flow's state (the same in both entries);
/// the others describe the entry (direction, delivery, kind).
const STATE_MASK: u32 =
    CT_F_ESTABLISHED | CT_F_FIN_ORIG | CT_F_FIN_REPLY | CT_F_CLOSING | CT_F_LAST_FIN_REPLY;

/// `EEXIST`, as map helpers return it (negated).
const EEXIST: i32 = 17;

/// `CLOCK_MONOTONIC` now, in nanoseconds, to one kernel tick: the clock of
/// `CtEntry::last_seen` (the daemon reads it with `clock_gettime`).
///
/// `bpf_ktime_get_ns` is a helper call (three calls and returns deep, an
/// indirect one to the clocksource among them), which the CPU's
/// return-thunk mitigation makes one of the dearest steps of a translated
/// packet; `bpf_jiffies64` is a load the verifier inlines. So the clock is
/// read once per tick and CPU (`CT_CLOCK`) and every other packet of that
/// tick uses the reading: at most one tick (`1/HZ`, 1-10 ms) behind, far
/// below `REFRESH_NS` and the timeouts, and never ahead.
#[inline(always)]
pub(crate) fn now() -> u64 {
    // SAFETY: plain helper call without arguments (inlined by the verifier).
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(clock) = CT_CLOCK.get_ptr_mut(0) else {
        // SAFETY: plain helper call without arguments.
        return unsafe { bpf_ktime_get_ns() };
    };
    // SAFETY: this CPU's element of a per-CPU array, valid for the program
    // run. TC programs do not nest on a CPU (and the socket hooks never
    // read the clock), so nothing else writes it meanwhile.
    unsafe {
        if (*clock).jiffies != jiffies {
            *clock = ClockCache {
                jiffies,
                ns: bpf_ktime_get_ns(),
            };
        }
        (*clock).ns
    }
}

/// Bumps a `NAT_STATS` counter.
#[inline(always)]
pub(crate) fn count(counter: NatCounter) {
    if let Some(n) = NAT_STATS.get_ptr_mut(counter as u32) {
        // SAFETY: this CPU's slot of a per-CPU array element; TC programs
        // do not nest on a CPU, so nobody else writes it meanwhile.
        unsafe { *n = (*n).wrapping_add(1) };
    }
}

/// Tuple equality without the padding, field by field (a derived `==` on
/// the struct could become a `bcmp` call, which BPF does not have).
#[inline(always)]
fn same(a: &CtKey, b: &CtKey) -> bool {
    a.saddr == b.saddr
        && a.daddr == b.daddr
        && a.sport == b.sport
        && a.dport == b.dport
        && a.proto == b.proto
}

/// A known flow, as found for a packet.
pub(crate) struct Hit {
    /// The packet's entry (a copy, state already updated for this packet).
    pub(crate) entry: CtEntry,
    /// The packet ends the flow: translate it, then [`close`].
    pub(crate) close: bool,
}

/// Looks the packet's tuple up. Updates the flow's state with the TCP flags
/// `tcp_flags` (0 for other protocols) and its `last_seen`. An expired flow
/// is removed and reported as unknown.
///
/// A packet that cannot change its flow's state (no TCP SYN, FIN or RST)
/// is answered from this CPU's copy in `FLOW_CACHE` when the copy is of
/// its tuple, was made in this tick (`jiffies`), and neither the programs
/// (the tuple's `CT_GEN` element) nor the daemon (`EP_GEN`) changed a flow
/// of that tuple since. For such a packet the map lookup would return the
/// same: within a tick nothing expires and `last_seen` needs no refresh.
/// So such a packet reads neither the map nor the clock ([`now`], read
/// only for the lookup): each is a cache line or two more, which a packet
/// that finds the CPU's caches cold pays in full.
/// Copies are made only of flows that saw no FIN, so that every packet of
/// a closing flow takes the lookup; the first reply of a flow makes a
/// copy that is never used, since marking the flow established advances
/// the generation.
///
/// The generations are read before the map, so on strongly ordered CPUs
/// (x86) a change made meanwhile outdates the copy; a weakly ordered CPU
/// may read the map first, and then a copy lags a change by the rest of
/// its tick at most. An LRU eviction changes no generation (nothing tells
/// the program which flow went), which lets a copy outlive its flow by a
/// tick; a new flow on the tuple advances it.
#[inline(always)]
pub(crate) fn lookup(key: &CtKey, tcp_flags: u8) -> Option<Hit> {
    let hash = flow_hash(key);
    let gens = (generation_at(hash), daemon_generation());
    // SAFETY: plain helper call without arguments (inlined by the verifier).
    let jiffies = unsafe { bpf_jiffies64() };
    let slot = FLOW_CACHE.get_ptr_mut(hash % FLOW_CACHE_WAYS);
    let steady_packet = key.proto != PROTO_TCP || tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) == 0;
    if let Some(slot) = slot
        && steady_packet
    {
        // SAFETY: this CPU's element of a per-CPU array, valid for the
        // program run; only the TC programs on this CPU access it, and
        // they do not nest.
        let copy = unsafe { &*slot };
        if copy.jiffies == jiffies
            && copy.ct_gen == gens.0
            && copy.daemon_gen == gens.1
            && same(&copy.key, key)
        {
            return Some(Hit {
                entry: copy.entry,
                close: false,
            });
        }
    }
    // The first packet of a flow in a tick, and every packet that may
    // change the flow's state: laid out after the hot path.
    core::hint::cold_path();
    let hit = lookup_map(key, now(), tcp_flags)?;
    if let Some(slot) = slot
        && !hit.close
        && hit.entry.flags & (BOTH_FINS | CT_F_CLOSING) == 0
    {
        // SAFETY: as above.
        unsafe {
            *slot = CachedFlow {
                key: *key,
                entry: hit.entry,
                jiffies,
                ct_gen: gens.0,
                daemon_gen: gens.1,
            };
        }
    }
    Some(hit)
}

/// A multiplicative hash of the tuple: its `FLOW_CACHE` element and its
/// `CT_GEN` element are this modulo their sizes (powers of two).
#[inline(always)]
fn flow_hash(key: &CtKey) -> u32 {
    let ports = (u32::from(key.sport) << 16) | u32::from(key.dport);
    (key.saddr ^ key.daddr.rotate_left(16) ^ ports ^ u32::from(key.proto)).wrapping_mul(0x9e37_79b1)
        >> 16
}

/// The generation of the flows whose tuple has [`flow_hash`] `hash` (its
/// `CT_GEN` element).
#[inline(always)]
fn generation_at(hash: u32) -> u64 {
    CT_GEN.get(hash % CT_GEN_SLOTS).copied().unwrap_or(0)
}

/// Advances the generation of the tuple `key` after a change to its entry,
/// so that no CPU uses its copy any more. A flow's changes advance both
/// its tuples.
#[inline(always)]
fn flows_changed(key: &CtKey) {
    if let Some(generation) = CT_GEN.get_ptr_mut(flow_hash(key) % CT_GEN_SLOTS) {
        // SAFETY: an aligned u64 map value, valid for the program run;
        // other CPUs add to it atomically too.
        unsafe { atomic::fetch_add(generation, 1) };
    }
}

/// [`lookup`] in `NAT_CT` itself.
#[inline(always)]
fn lookup_map(key: &CtKey, now: u64, tcp_flags: u8) -> Option<Hit> {
    let ptr = NAT_CT.get_ptr_mut(key)?;
    // SAFETY: a map value pointer, valid for the rest of the program run
    // (the element may be replaced concurrently; then we work on a copy of
    // a slightly older entry, which is fine for NAT).
    let mut entry = unsafe { *ptr };
    if expired(entry.last_seen, key.proto, entry.flags, now) && !peer_alive(key, &entry, now) {
        remove_pair(key, &entry);
        count(NatCounter::ExpiredFlows);
        return None;
    }
    if now > entry.last_seen && now - entry.last_seen > REFRESH_NS {
        // SAFETY: as above; an 8-byte aligned store.
        unsafe { (*ptr).last_seen = now };
    }

    let reply = entry.flags & CT_F_REPLY != 0;
    let old_state = entry.flags & STATE_MASK;
    let mut state = old_state;
    // The state both entries hold (as far as this packet knows).
    let mut written = old_state;
    let mut close = false;
    if key.proto == PROTO_TCP {
        if tcp_flags & TCP_RST != 0 {
            close = true;
        } else if tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN && state & CT_F_CLOSING != 0 {
            // A new connection on the tuple of one that just closed.
            state = 0;
        } else if tcp_flags & TCP_FIN != 0 {
            // Both sides may send their FIN at once, on two CPUs, each
            // reading the flow's state before the other wrote it. The bits
            // are set with atomic ORs into this entry and then its partner
            // (the other side's packet ORs them the other way round), so
            // whichever ORs second into an entry sees the other FIN there:
            // one of the two always marks the flow closing.
            let fin = if reply { CT_F_FIN_REPLY } else { CT_F_FIN_ORIG };
            state |= or_state(ptr, key, &entry, fin);
            if state & BOTH_FINS == BOTH_FINS && state & CT_F_CLOSING == 0 {
                let closing = CT_F_CLOSING | if reply { CT_F_LAST_FIN_REPLY } else { 0 };
                state |= or_state(ptr, key, &entry, closing);
            }
            written = state;
        } else if state & CT_F_CLOSING != 0
            && tcp_flags & TCP_ACK != 0
            && reply != (state & CT_F_LAST_FIN_REPLY != 0)
        {
            // The ACK of the second FIN.
            close = true;
        }
    }
    if reply {
        state |= CT_F_ESTABLISHED;
    }
    entry.flags = (entry.flags & !STATE_MASK) | state;
    if !close && state != written {
        if state & written == written {
            or_state(ptr, key, &entry, state & !written);
        } else {
            set_state(ptr, key, &entry, state);
        }
    }
    Some(Hit { entry, close })
}

/// Both FIN bits: the flow is closing once each side sent one.
const BOTH_FINS: u32 = CT_F_FIN_ORIG | CT_F_FIN_REPLY;

/// Sets the state bits `bits` in the entry at `ptr` (key `key`) and then in
/// its partner, each with an atomic OR (see [`or_flags`]), and returns
/// `bits` with the state bits either entry had before: what the flow's
/// state is now, other CPUs' concurrent changes included.
#[inline(always)]
fn or_state(ptr: *mut CtEntry, key: &CtKey, entry: &CtEntry, bits: u32) -> u32 {
    // SAFETY: map value pointers, see `lookup`.
    let mut seen = unsafe { or_flags(ptr, bits) };
    let peer = entry.peer_key(key.proto);
    if let Some(p) = NAT_CT.get_ptr_mut(peer) {
        // SAFETY: as above.
        unsafe {
            if same(&(*p).peer_key(key.proto), key) {
                seen |= or_flags(p, bits);
            }
        }
    }
    flows_changed(key);
    flows_changed(&peer);
    (seen & STATE_MASK) | bits
}

/// `entry.flags |= bits`, atomically; returns the flags as they were.
///
/// `flags` is the upper half of the aligned 8-byte word it shares with
/// `gateway` (checked below; the target is little-endian), so a 64-bit
/// atomic OR of the bits shifted up changes nothing else.
///
/// # Safety
/// `entry` must be valid for reads and writes.
#[inline(always)]
unsafe fn or_flags(entry: *mut CtEntry, bits: u32) -> u32 {
    // SAFETY: `entry` is valid (caller), and the word lies inside it.
    let word = unsafe { entry.cast::<u8>().add(offset_of!(CtEntry, gateway)) }.cast::<u64>();
    // SAFETY: an aligned word of a valid entry (see the checks below).
    let old = unsafe { atomic::fetch_or(word, u64::from(bits) << 32) };
    (old >> 32) as u32
}

// The layout `or_flags` relies on.
const _: () = assert!(offset_of!(CtEntry, gateway) % 8 == 0);
const _: () = assert!(offset_of!(CtEntry, flags) == offset_of!(CtEntry, gateway) + 4);
const _: () = assert!(cfg!(target_endian = "little"));

/// Replaces the flow state with `state` in the entry at `ptr` (key `key`)
/// and in its partner: only for a reset (a new connection on the tuple of
/// one that closed), which no concurrent packet of the old one competes with.
#[inline(always)]
fn set_state(ptr: *mut CtEntry, key: &CtKey, entry: &CtEntry, state: u32) {
    // SAFETY: map value pointers, see `lookup`; 4-byte aligned stores.
    unsafe { (*ptr).flags = ((*ptr).flags & !STATE_MASK) | state };
    let peer = entry.peer_key(key.proto);
    if let Some(p) = NAT_CT.get_ptr_mut(peer) {
        // SAFETY: as above.
        unsafe {
            if same(&(*p).peer_key(key.proto), key) {
                (*p).flags = ((*p).flags & !STATE_MASK) | state;
            }
        }
    }
    flows_changed(key);
    flows_changed(&peer);
}

/// Whether the partner of `entry` (at `key`) exists, still points back, and
/// has not expired: then the flow is alive even if `entry` is idle.
#[inline(always)]
fn peer_alive(key: &CtKey, entry: &CtEntry, now: u64) -> bool {
    let peer = entry.peer_key(key.proto);
    match NAT_CT.get_ptr(peer) {
        // SAFETY: see `lookup`.
        Some(p) => unsafe {
            let p = *p;
            same(&p.peer_key(key.proto), key) && !expired(p.last_seen, key.proto, p.flags, now)
        },
        None => false,
    }
}

/// Deletes the entry at `key` and its partner, if the partner still belongs
/// to it (its tuple may have been taken over by a newer flow).
#[inline(always)]
fn remove_pair(key: &CtKey, entry: &CtEntry) {
    let peer = entry.peer_key(key.proto);
    if let Some(p) = NAT_CT.get_ptr(peer) {
        // SAFETY: see `lookup`.
        if same(&unsafe { *p }.peer_key(key.proto), key) {
            let _ = NAT_CT.remove(peer);
        }
    }
    let _ = NAT_CT.remove(key);
    flows_changed(key);
    flows_changed(&peer);
}

/// Ends the flow of the packet whose entry is `entry` at `key` (TCP RST or
/// last ACK), after the packet was translated.
#[inline(always)]
pub(crate) fn close(key: &CtKey, entry: &CtEntry) {
    remove_pair(key, entry);
    count(NatCounter::ClosedFlows);
}

/// Frees the tuple `key` if the flow holding it is over; returns whether it
/// did.
#[inline(always)]
fn reclaim(key: &CtKey, now: u64) -> bool {
    let Some(p) = NAT_CT.get_ptr(key) else {
        // Gone meanwhile.
        return true;
    };
    // SAFETY: see `lookup`.
    let entry = unsafe { *p };
    if expired(entry.last_seen, key.proto, entry.flags, now) && !peer_alive(key, &entry, now) {
        remove_pair(key, &entry);
        count(NatCounter::ExpiredFlows);
        return true;
    }
    false
}

/// Creates a flow for the packet with tuple `key`: `fwd` is its entry with
/// the translated addresses and destination port filled in (`new_sport` is
/// chosen here), `rev` carries the partner's delivery (`ifindex`,
/// `gateway`, `flags`; its tuple is derived). Returns the packet's entry.
///
/// The translated source port is `key.sport` if `keep_port` and the
/// reverse tuple is free, else the first free one of up to `PORT_TRIES - 1`
/// ports from a random start in the range (the caller clears `keep_port`
/// when a socket of the host uses the original port).
///
/// Verifier note: the search runs in `bpf_loop` (Linux >= 5.17) rather than
/// as a bounded loop. A bounded loop is verified once per iteration and per
/// call site, and `netd_from_ep` creates flows on three paths (masquerade,
/// hairpin, services), which together went past the verifier's budget of
/// one million instructions; a `bpf_loop` callback is verified once.
#[inline(always)]
pub(crate) fn create(
    key: &CtKey,
    mut fwd: CtEntry,
    rev: CtEntry,
    now: u64,
    keep_port: bool,
) -> Result<CtEntry, DropReason> {
    fwd.last_seen = now;
    let mut search = PortSearch {
        key: *key,
        rev_entry: CtEntry {
            last_seen: now,
            new_saddr: key.daddr,
            new_daddr: key.saddr,
            new_sport: key.dport,
            new_dport: key.sport,
            ifindex: rev.ifindex,
            gateway: rev.gateway,
            flags: rev.flags,
        },
        rev_saddr: fwd.new_daddr,
        rev_daddr: fwd.new_saddr,
        rev_sport: fwd.new_dport,
        // SAFETY: plain helper call without arguments.
        start: unsafe { bpf_get_prandom_u32() },
        outcome: SEARCHING,
        port: 0,
        keep_port: u32::from(keep_port),
        now,
    };
    // SAFETY: `try_port` has the signature `bpf_loop` calls back with, and
    // `search` lives on this stack frame for the whole call.
    unsafe {
        bpf_loop(
            PORT_TRIES,
            try_port as *mut c_void,
            (&raw mut search).cast(),
            0,
        )
    };
    match search.outcome {
        CLAIMED => {
            fwd.new_sport = search.port;
            let inserted = NAT_CT.insert(key, fwd, BPF_ANY as u64);
            if inserted.is_err() {
                let _ = NAT_CT.remove(search.rev_key());
            }
            // Either tuple may have had an entry: `key` another CPU's
            // concurrent flow, the reverse one an evicted flow.
            flows_changed(key);
            flows_changed(&search.rev_key());
            inserted.map(|()| fwd).map_err(|_| DropReason::CtMapFull)
        }
        FAILED => Err(DropReason::CtMapFull),
        _ => Err(DropReason::NatNoPort),
    }
}

/// [`PortSearch::outcome`]: no free port yet.
const SEARCHING: u32 = 0;
/// A port was claimed (the reverse entry is inserted).
const CLAIMED: u32 = 1;
/// The map refused the reverse entry.
const FAILED: u32 = 2;

/// The state of [`create`]'s port search, shared with [`try_port`].
#[repr(C)]
struct PortSearch {
    /// The packet's tuple.
    key: CtKey,
    /// The reverse entry to insert.
    rev_entry: CtEntry,
    /// The reverse tuple but its destination port (the port searched).
    rev_saddr: u32,
    rev_daddr: u32,
    rev_sport: u16,
    /// The port claimed (network order), with `CLAIMED`.
    port: u16,
    /// Random start of the search in the range.
    start: u32,
    /// `SEARCHING`, `CLAIMED` or `FAILED`.
    outcome: u32,
    /// 1: try 0 is the packet's own source port; 0: a port of the range.
    keep_port: u32,
    now: u64,
}

impl PortSearch {
    /// The reverse tuple with destination port `port`.
    #[inline(always)]
    fn rev_key_for(&self, port: u16) -> CtKey {
        CtKey::new(
            self.rev_saddr,
            self.rev_daddr,
            self.rev_sport,
            port,
            self.key.proto,
        )
    }

    #[inline(always)]
    fn rev_key(&self) -> CtKey {
        self.rev_key_for(self.port)
    }
}

/// One try of the port search (`bpf_loop` callback; `i` counts from 0):
/// try 0 the packet's own source port (if it may be kept), then ports from
/// the random start.
/// Returns 1 to stop the loop (a port was claimed or the map failed), 0 to
/// go on.
extern "C" fn try_port(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `PortSearch` on `create`'s stack, which outlives
    // the loop; nothing else accesses it meanwhile.
    let search = unsafe { &mut *ctx.cast::<PortSearch>() };
    let range = u32::from(PORT_MAX - PORT_MIN) + 1;
    let port = if i == 0 && search.keep_port != 0 {
        search.key.sport
    } else {
        // Host order in the range, stored in network order.
        let offset = (search.start % range + i as u32) % range;
        ((u32::from(PORT_MIN) + offset) as u16).to_be()
    };
    let rev_key = search.rev_key_for(port);
    if same(&rev_key, &search.key) {
        // Only for a flow translated to its own reverse (a client balanced
        // to itself with equal ports): the two entries need distinct keys.
        return 0;
    }
    let claimed = match NAT_CT.insert(rev_key, search.rev_entry, BPF_NOEXIST as u64) {
        Ok(()) => true,
        Err(e) if e == -EEXIST => {
            reclaim(&rev_key, search.now)
                && NAT_CT
                    .insert(rev_key, search.rev_entry, BPF_NOEXIST as u64)
                    .is_ok()
        }
        Err(_) => {
            search.outcome = FAILED;
            return 1;
        }
    };
    if claimed {
        search.port = port;
        search.outcome = CLAIMED;
        return 1;
    }
    count(NatCounter::PortCollisions);
    0
}
