//! Every map of the object, in one place.
//!
//! All maps but the programs' caches (`CT_CLOCK`, `EP_CACHE` and
//! `NET_CACHE` with their `EP_GEN`, `FLOW_CACHE` with its `CT_GEN`) are
//! pinned by name (`PinningType::ByName`): the daemon loads the object
//! with a pin directory, so a restarted daemon re-adopts the maps the
//! still-attached programs are using instead of creating empty ones. Names
//! and sizes come from `netd_common` so the daemon agrees on them.
//!
//! The programs never write the endpoint and network maps; the daemon does
//! (`netd::dataplane::Dataplane::set_endpoint`, `set_network`). The lookup
//! helpers below copy the value out right away: a pointer into a hash map
//! value is only as stable as the element, and the daemon may replace it
//! while a packet is being processed, so nothing holds on to one.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::generated::bpf_jiffies64,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, PerCpuHashMap, lpm_trie::Key},
};
use netd_common::{
    EndpointInfo, EndpointStats, IndexedNetwork, NetworkInfo,
    limits::{
        DROP_STATS_ENTRIES, ENDPOINT_SLOTS, MAX_ENDPOINTS, MAX_NETWORKS, NET_HINT_ENTRIES,
        NET_HINT_READY, NET_INDEXES,
    },
    net_hint_bit,
};

/// Endpoint slot (`EndpointInfo::slot`) -> traffic counters. Per-CPU so
/// the hot path never contends on a cache line (the daemon sums the CPUs),
/// an array so that counting is an inlined index computation, not a hash
/// lookup. Name: `map_names::EP_COUNTERS`.
#[map]
pub(crate) static EP_COUNTERS: PerCpuArray<EndpointStats> = PerCpuArray::pinned(ENDPOINT_SLOTS, 0);

/// `DropKey::index()` -> packets dropped. An array, so counting a drop is a
/// lookup in preallocated memory that cannot fail for a valid index.
/// Name: `map_names::DROP_STATS`.
#[map]
pub(crate) static DROP_STATS: PerCpuArray<u64> = PerCpuArray::pinned(DROP_STATS_ENTRIES, 0);

/// Endpoint address (`ipv4_be`) -> endpoint: where a packet for that
/// address goes. Not preallocated: it holds only live endpoints and a
/// replaced element is freed after the readers that may still see it.
/// Name: `map_names::EP_MAP`.
#[map]
pub(crate) static EP_MAP: HashMap<u32, EndpointInfo> =
    HashMap::pinned(MAX_ENDPOINTS, BPF_F_NO_PREALLOC);

/// Host-side ifindex -> endpoint: who may send on that veth (same values as
/// `EP_MAP`, other key). Name: `map_names::EP_BY_IF`.
#[map]
pub(crate) static EP_BY_IF: HashMap<u32, EndpointInfo> =
    HashMap::pinned(MAX_ENDPOINTS, BPF_F_NO_PREALLOC);

/// Macvlan ifindex (netd's choice, unique) -> endpoint: who may send on
/// that macvlan. Name: `map_names::MV_EP`.
#[map]
pub(crate) static MV_EP: HashMap<u32, EndpointInfo> =
    HashMap::pinned(MAX_ENDPOINTS, BPF_F_NO_PREALLOC);

/// Subnet -> network: which network an address belongs to, for
/// destinations that are not endpoints (gateway, unused addresses, other
/// networks) and for the sender's own network flags. aya adds the
/// `BPF_F_NO_PREALLOC` the kernel requires for LPM tries.
/// Name: `map_names::NET_LPM`.
#[map]
pub(crate) static NET_LPM: LpmTrie<u32, NetworkInfo> = LpmTrie::pinned(MAX_NETWORKS, 0);

/// Network index -> network and subnet, the values of `NET_LPM` by the
/// index the endpoints carry: the sender's own network is an array
/// element, which the verifier inlines, instead of a trie walk (an element
/// with `info.net_index` 0 is empty). Name: `map_names::NET_BY_INDEX`.
#[map]
pub(crate) static NET_BY_INDEX: Array<IndexedNetwork> = Array::pinned(NET_INDEXES, 0);

/// One bit per /16 that may hold a netd address, then the ready flag
/// (layout and rules in `netd_common::map_names::NET_HINT`).
/// Name: `map_names::NET_HINT`.
#[map]
pub(crate) static NET_HINT: Array<u32> = Array::pinned(NET_HINT_ENTRIES, 0);

/// The daemon's generation (see `netd_common::map_names::EP_GEN`): it
/// advances it after every change to `EP_MAP`, `EP_BY_IF` and `NET_LPM`
/// and after removing flows from `NAT_CT`. Not pinned: only the programs
/// of the same load (whose `EP_CACHE`, `NET_CACHE` and `FLOW_CACHE` it
/// guards) need it; programs of
/// an earlier load, attached until a restarted daemon switches them over,
/// see no advance, and their copies last a tick at most.
/// Name: `map_names::EP_GEN`.
#[map]
static EP_GEN: Array<u64> = Array::with_max_entries(1, 0);

/// The current `EP_GEN`.
#[inline(always)]
pub(crate) fn daemon_generation() -> u64 {
    EP_GEN.get(0).copied().unwrap_or(0)
}

/// Elements of `EP_CACHE` per key kind (by ifindex, by address).
const EP_CACHE_WAYS: u32 = 256;

/// A lookup as a CPU made it: its result `value` in the `EP_GEN`
/// generation `generation` and the tick `jiffies`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Cached<T> {
    generation: u64,
    jiffies: u64,
    value: T,
}

/// Per CPU, the endpoints this CPU looked up last: elements
/// `0..EP_CACHE_WAYS` by `ifindex % EP_CACHE_WAYS` (the sender of nearly
/// every packet), the others by address (the destination; an address
/// without endpoint is cached as an entry with `ifindex` 0). A hash lookup
/// is a call and a return, which the CPU's return-thunk mitigation makes
/// the largest part of a forwarded packet's cost; a per-CPU array element
/// is an inlined load, and only the TC programs on that CPU write it
/// (they do not nest on a CPU; the socket hooks, which softirqs can
/// interrupt, must not use it).
///
/// A copy is trusted while `EP_GEN` is the generation it was made in (the
/// daemon advances it after changing the maps, so on strongly ordered
/// CPUs such as x86 no packet sees an endpoint older than the last
/// generation it read) and, because a weakly ordered CPU may see the new
/// generation before the map change, only within the tick it was made in.
/// Not pinned: a cache, filled again within a tick.
#[map]
static EP_CACHE: PerCpuArray<Cached<EndpointInfo>> =
    PerCpuArray::with_max_entries(2 * EP_CACHE_WAYS, 0);

/// An address and the network whose subnet holds it (`net_index` 0: none).
#[repr(C)]
#[derive(Clone, Copy)]
struct AddressNetwork {
    addr: u32,
    info: NetworkInfo,
}

/// Elements of `NET_CACHE`.
const NET_CACHE_WAYS: u32 = 256;

/// Per CPU, the `NET_LPM` lookups of destinations this CPU made last, by
/// address: as `EP_CACHE` (same rules, same generation, which the daemon
/// advances after network changes too). A trie lookup is a call as well;
/// this spares it to traffic to the outside whose /16 holds a netd
/// network (`NET_HINT` cannot tell those apart).
#[map]
static NET_CACHE: PerCpuArray<Cached<AddressNetwork>> =
    PerCpuArray::with_max_entries(NET_CACHE_WAYS, 0);

/// `lookup()`, or this CPU's copy of it in `cache[index]` if `matches` the
/// copied value and the copy is still valid (see `EP_CACHE`). A lookup
/// that returns `None` is not cached.
#[inline(always)]
fn cached<T: Copy>(
    cache: &PerCpuArray<Cached<T>>,
    index: u32,
    matches: impl Fn(&T) -> bool,
    lookup: impl FnOnce() -> Option<T>,
) -> Option<T> {
    let Some(entry) = cache.get_ptr_mut(index) else {
        return lookup();
    };
    let generation = daemon_generation();
    // SAFETY: plain helper call without arguments (inlined by the verifier).
    let jiffies = unsafe { bpf_jiffies64() };
    // SAFETY: this CPU's element of a per-CPU array, valid for the program
    // run; only the TC programs on this CPU access it, and they do not nest.
    let entry = unsafe { &mut *entry };
    if entry.generation == generation && entry.jiffies == jiffies && matches(&entry.value) {
        return Some(entry.value);
    }
    // A miss is once per tick and key on a CPU: its code goes after the
    // hot path (see `parse::header`).
    core::hint::cold_path();
    let found = lookup();
    if let Some(value) = found {
        *entry = Cached {
            generation,
            jiffies,
            value,
        };
    }
    found
}

/// The endpoint behind the host-side veth `ifindex`, if it is one of ours.
/// TC programs only (see `EP_CACHE`).
#[inline(always)]
pub(crate) fn endpoint_by_ifindex(ifindex: u32) -> Option<EndpointInfo> {
    cached(
        &EP_CACHE,
        ifindex % EP_CACHE_WAYS,
        |info| info.ifindex == ifindex,
        // SAFETY: a non-null pointer from a map lookup points at a whole
        // `EndpointInfo` for the rest of the program run; copying it out at
        // once keeps the window for a concurrent replacement minimal.
        || EP_BY_IF.get_ptr(ifindex).map(|p| unsafe { *p }),
    )
}

/// The slot of the endpoint behind the host-side veth `ifindex` (0: none),
/// to record in a flow that delivers there.
#[inline(always)]
pub(crate) fn slot_of(ifindex: u32) -> u16 {
    endpoint_by_ifindex(ifindex).map_or(0, |ep| ep.slot)
}

/// The endpoint owning `ip` (`ipv4_be`), on any network. TC programs only
/// (see `EP_CACHE`).
#[inline(always)]
pub(crate) fn endpoint_by_ip(ip: u32) -> Option<EndpointInfo> {
    cached(
        &EP_CACHE,
        EP_CACHE_WAYS + address_hash(ip) % EP_CACHE_WAYS,
        |info| info.ip == ip,
        || {
            // No endpoint has `ip` (the gateway, a virtual IP, the
            // outside): cached too, as an entry without ifindex.
            let none = EndpointInfo {
                ip,
                ..EndpointInfo::default()
            };
            // SAFETY: as in `endpoint_by_ifindex`.
            Some(EP_MAP.get_ptr(ip).map_or(none, |p| unsafe { *p }))
        },
    )
    .filter(|info| info.ifindex != 0)
}

/// A hash of an address (`ipv4_be`) for the caches: its last two octets,
/// which vary most between the addresses of a host's networks.
#[inline(always)]
fn address_hash(ip: u32) -> u32 {
    let [.., third, fourth] = ip.to_ne_bytes();
    u32::from(third) * 31 + u32::from(fourth)
}

/// [`network_of`] for a destination address, through `NET_CACHE`. TC
/// programs only (see `EP_CACHE`).
#[inline(always)]
pub(crate) fn network_of_destination(ip: u32) -> Option<NetworkInfo> {
    cached(
        &NET_CACHE,
        address_hash(ip) % NET_CACHE_WAYS,
        |net| net.addr == ip,
        || {
            Some(AddressNetwork {
                addr: ip,
                info: network_of(ip).unwrap_or_default(),
            })
        },
    )
    .map(|net| net.info)
    .filter(|info| info.net_index != 0)
}

/// The network whose subnet contains `ip` (`ipv4_be`), longest prefix first.
#[inline(always)]
pub(crate) fn network_of(ip: u32) -> Option<NetworkInfo> {
    NET_LPM.get(Key::new(32, ip)).copied()
}

/// The `NET_BY_INDEX` element of the endpoint `ep`'s network, if there is
/// one: not for an index beyond the array, nor in a pin directory of an
/// older netd whose daemon has not written the array yet; then the
/// network is found with [`network_of`] (the daemon writes and removes
/// both together).
#[inline(always)]
pub(crate) fn indexed_network(ep: &EndpointInfo) -> Option<IndexedNetwork> {
    network_by_index(ep.net_index)
}

/// The `NET_BY_INDEX` element of the network `index` (see
/// [`indexed_network`]).
#[inline(always)]
pub(crate) fn network_by_index(index: u32) -> Option<IndexedNetwork> {
    NET_BY_INDEX
        .get(index)
        .filter(|net| net.info.net_index != 0)
        .copied()
}

/// The network of the endpoint `ep`: [`indexed_network`], else the
/// `NET_LPM` entry of its address.
#[inline(always)]
pub(crate) fn own_network(ep: &EndpointInfo) -> Option<NetworkInfo> {
    own_network_from(ep, indexed_network(ep))
}

/// [`own_network`] for a caller that already read `indexed`
/// ([`indexed_network`] of `ep`).
#[inline(always)]
pub(crate) fn own_network_from(
    ep: &EndpointInfo,
    indexed: Option<IndexedNetwork>,
) -> Option<NetworkInfo> {
    match indexed {
        Some(net) => Some(net.info),
        None => network_of(ep.ip),
    }
}

/// Whether `ip` (`ipv4_be`) may be the address of an endpoint or lie in a
/// netd subnet: `false` only when `NET_HINT` is ready and has no bit for
/// its /16, and then `EP_MAP` and `NET_LPM` hold nothing for it.
#[inline(always)]
pub(crate) fn may_be_netd_address(ip: u32) -> bool {
    if NET_HINT.get(NET_HINT_READY).is_none_or(|ready| *ready == 0) {
        return true;
    }
    let (word, bit) = net_hint_bit(ip);
    NET_HINT.get(word).is_none_or(|w| *w & bit != 0)
}

// ---------------------------------------------------------------------------
// Socket hooks (`sock`). Fully qualified paths so this block does not depend
// on (or clash with) the imports at the top.

/// Host addresses besides 127.0.0.0/8 and `HOST_CFG.uplink_addr`
/// ([`netd_common::ipv4_be`] -> 0, the value is unused): destinations the
/// socket hooks treat as "this host" for published ports. Written only by
/// the daemon (`Dataplane::set_host_addresses`).
/// Name: `map_names::HOST_ADDRS`.
#[aya_ebpf::macros::map]
pub(crate) static HOST_ADDRS: aya_ebpf::maps::HashMap<u32, u32> = aya_ebpf::maps::HashMap::pinned(
    netd_common::limits::MAX_HOST_ADDRS,
    aya_ebpf::bindings::BPF_F_NO_PREALLOC,
);

/// {UDP socket cookie, container address/port} -> the destination the
/// application used: what `netd_recvmsg4` shows as the source of replies.
/// LRU because nothing tells the program when a socket closes; a socket
/// cookie is never reused, so a stale entry can only age out.
/// Name: `map_names::SOCK_UDP_REV`.
#[aya_ebpf::macros::map]
pub(crate) static SOCK_UDP_REV: aya_ebpf::maps::LruHashMap<
    netd_common::sock::UdpRevKey,
    netd_common::sock::UdpRevValue,
> = aya_ebpf::maps::LruHashMap::pinned(netd_common::limits::UDP_REV_ENTRIES, 0);

// ---- NAT and published ports (see `nat`, `conntrack`) ----

/// Published host ports: `PublishKey` -> `PublishTarget`. Written by the
/// daemon (`Dataplane::set_publish`), read by `netd_uplink_in` (DNAT from
/// outside), `netd_from_ep` (hairpin) and the socket hooks (`sock`).
/// Name: `map_names::PUBLISH`.
#[map]
pub(crate) static PUBLISH: aya_ebpf::maps::HashMap<
    netd_common::PublishKey,
    netd_common::PublishTarget,
> = aya_ebpf::maps::HashMap::pinned(netd_common::limits::MAX_PUBLISHED, BPF_F_NO_PREALLOC);

/// Host facts, one element (index 0): uplink ifindex and address, the
/// daemon's netns cookie. All zero until the daemon writes it
/// (`Dataplane::set_host`): no uplink means no masquerade and no DNAT.
/// Name: `map_names::HOST_CFG`.
#[map]
pub(crate) static HOST_CFG: aya_ebpf::maps::Array<netd_common::HostConfig> =
    aya_ebpf::maps::Array::pinned(1, 0);

/// The host configuration (a copy; zeroes if the map cannot be read).
#[inline(always)]
pub(crate) fn host_config() -> netd_common::HostConfig {
    HOST_CFG.get(0).copied().unwrap_or_default()
}

/// NAT connection tracking: `CtKey` -> `CtEntry`, two entries per flow (see
/// `netd_common::nat`). LRU: when full, the least recently used entries
/// make room, so a burst of flows can never stop new ones; TCP entries are
/// deleted when the connection closes and the others time out.
/// Name: `map_names::NAT_CT`.
#[map]
pub(crate) static NAT_CT: aya_ebpf::maps::LruHashMap<
    netd_common::nat::CtKey,
    netd_common::nat::CtEntry,
> = aya_ebpf::maps::LruHashMap::pinned(netd_common::limits::NAT_CT_ENTRIES, 0);

/// A reading of `CLOCK_MONOTONIC` and the tick (`jiffies`) it was taken
/// in (see `conntrack::now`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct ClockCache {
    pub(crate) jiffies: u64,
    pub(crate) ns: u64,
}

/// One element per CPU: the last [`ClockCache`] of that CPU. Not pinned: a
/// cache that the programs refill within a tick, which the daemon never
/// reads, so a program loaded by a restarted daemon simply starts with an
/// empty one.
#[map]
pub(crate) static CT_CLOCK: PerCpuArray<ClockCache> = PerCpuArray::with_max_entries(1, 0);

/// Elements of `CT_GEN` (a power of two).
pub(crate) const CT_GEN_SLOTS: u32 = 4096;
const _: () = assert!(CT_GEN_SLOTS.is_power_of_two());

/// The programs' generations of `NAT_CT`, by a hash of the tuple
/// (`conntrack::flows_changed`): the element of a tuple is advanced (an
/// atomic add) after every change the programs make to its entry but a
/// `last_seen` refresh. Per tuple rather than one for all, so that new and
/// closing flows elsewhere leave a steady flow's copies valid and its
/// packets do not read a cache line every CPU writes. The daemon never
/// writes it (a plain write could undo a concurrent add); its own changes
/// advance `EP_GEN`. Not pinned: programs of an earlier load, which share
/// `NAT_CT` until a restarted daemon switches the endpoints over, advance
/// their own, so a copy may miss their changes for the rest of its tick.
#[map]
pub(crate) static CT_GEN: Array<u64> = Array::with_max_entries(CT_GEN_SLOTS, 0);

/// A `NAT_CT` entry as `conntrack::lookup` left it for a packet: the tuple,
/// the entry, and when (the tick, `bpf_jiffies64`, and both generations).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct CachedFlow {
    pub(crate) key: netd_common::nat::CtKey,
    pub(crate) entry: netd_common::nat::CtEntry,
    pub(crate) jiffies: u64,
    pub(crate) ct_gen: u64,
    pub(crate) daemon_gen: u64,
}

/// Elements of `FLOW_CACHE` (a power of two).
pub(crate) const FLOW_CACHE_WAYS: u32 = 256;
const _: () = assert!(FLOW_CACHE_WAYS.is_power_of_two());

/// Per CPU, the flows this CPU looked up last, by a hash of the tuple
/// (`conntrack::lookup` has the rules). Like `EP_CACHE`: an inlined array
/// load instead of the hash lookup (about 30 ns of a translated packet,
/// mostly the call and return), written only by the TC programs on that
/// CPU. Not pinned: a cache, filled again within a tick.
#[map]
pub(crate) static FLOW_CACHE: PerCpuArray<CachedFlow> =
    PerCpuArray::with_max_entries(FLOW_CACHE_WAYS, 0);

/// `NatCounter` -> count. Name: `map_names::NAT_STATS`.
#[map]
pub(crate) static NAT_STATS: PerCpuArray<u64> =
    PerCpuArray::pinned(netd_common::limits::NAT_STATS_SLOTS, 0);

/// `PublishKey` -> flows translated through that published port. The
/// daemon creates the entry with the `PUBLISH` one; the programs only bump
/// existing entries. Name: `map_names::PUBLISH_STATS`.
#[map]
pub(crate) static PUBLISH_STATS: PerCpuHashMap<netd_common::PublishKey, u64> =
    PerCpuHashMap::pinned(netd_common::limits::MAX_PUBLISHED, BPF_F_NO_PREALLOC);

// ---- Services (see `lb`) ----

/// Services' frontends and backends: `SvcKey` -> `SvcSlot`, slot 0 the
/// count, slots 1..=count the backends (layout and write order in
/// `netd_common::lb`). Written only by the daemon
/// (`Dataplane::set_service`). Not preallocated: a replaced element is
/// swapped in whole, so a reader sees the old slot or the new one.
/// Name: `map_names::LB_SVC`.
#[map]
pub(crate) static LB_SVC: aya_ebpf::maps::HashMap<
    netd_common::lb::SvcKey,
    netd_common::lb::SvcSlot,
> = aya_ebpf::maps::HashMap::pinned(netd_common::limits::LB_SVC_ENTRIES, BPF_F_NO_PREALLOC);

/// Service index -> round-robin cursor. A plain (shared) array on purpose:
/// the cursor is advanced with an atomic fetch-and-add by every CPU, so
/// sequential new flows go to consecutive backends whichever CPU handles
/// them. Name: `map_names::LB_RR`.
#[map]
pub(crate) static LB_RR: aya_ebpf::maps::Array<u64> =
    aya_ebpf::maps::Array::pinned(netd_common::limits::MAX_SERVICES, 0);

/// {service index, backend} -> flows the load balancer sent there. The
/// daemon creates the entries with the backend's slot; the programs only
/// bump existing ones. Name: `map_names::LB_STATS`.
#[map]
pub(crate) static LB_STATS: PerCpuHashMap<netd_common::lb::LbStatsKey, u64> =
    PerCpuHashMap::pinned(netd_common::limits::LB_STATS_ENTRIES, BPF_F_NO_PREALLOC);

/// Endpoint slot -> 1 for endpoints that are (or recently were) a
/// service's backend, so whose packets to their peers may be replies that
/// must come back from a VIP. Only these pay the conntrack lookup on the
/// peer-to-peer path. Name: `map_names::LB_BACKENDS`.
#[map]
pub(crate) static LB_BACKENDS: aya_ebpf::maps::Array<u32> =
    aya_ebpf::maps::Array::pinned(ENDPOINT_SLOTS, 0);

// ---- Overlay (see `overlay`) ----

/// Endpoints of overlay networks on other hosts: address ->
/// `RemoteEndpoint` (network, VNI, host, whether a service's backend).
/// Written only by the daemon (`Dataplane::set_remote_endpoint`,
/// `set_service`). Not preallocated.
/// Name: `map_names::OVL_REMOTE`.
#[map]
static OVL_REMOTE: HashMap<u32, netd_common::overlay::RemoteEndpoint> =
    HashMap::pinned(netd_common::limits::MAX_REMOTE_ENDPOINTS, BPF_F_NO_PREALLOC);

/// The remote endpoint holding `ip` (`ipv4_be`), if there is one.
#[inline(always)]
pub(crate) fn remote_endpoint(ip: u32) -> Option<netd_common::overlay::RemoteEndpoint> {
    // SAFETY: a map value pointer, copied out at once (the daemon may
    // replace the element meanwhile; the copy is then the old one).
    OVL_REMOTE.get_ptr(ip).map(|p| unsafe { *p })
}

/// The cluster's hosts by underlay address (value unused). Written only by
/// the daemon (`Dataplane::set_overlay_host`). Name: `map_names::OVL_HOSTS`.
#[map]
pub(crate) static OVL_HOSTS: HashMap<u32, u32> =
    HashMap::pinned(netd_common::limits::MAX_OVERLAY_HOSTS, BPF_F_NO_PREALLOC);

/// VNI -> the index of this host's overlay network with it. Written only by
/// the daemon (`Dataplane::set_overlay_network`). Name: `map_names::OVL_VNI`.
#[map]
pub(crate) static OVL_VNI: HashMap<u32, u32> =
    HashMap::pinned(netd_common::limits::MAX_OVERLAY_NETWORKS, BPF_F_NO_PREALLOC);

/// The VXLAN device, one element (index 0), all zero until the daemon
/// attached it (`Dataplane::attach_vxlan`). Name: `map_names::OVL_CFG`.
#[map]
pub(crate) static OVL_CFG: Array<netd_common::overlay::OverlayConfig> = Array::pinned(1, 0);

/// `OverlayCounter` -> count. Name: `map_names::OVL_STATS`.
#[map]
pub(crate) static OVL_STATS: PerCpuArray<u64> =
    PerCpuArray::pinned(netd_common::limits::OVL_STATS_SLOTS, 0);
