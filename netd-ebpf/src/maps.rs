//! Every map of the object, in one place.
//!
//! All maps are pinned by name (`PinningType::ByName`): the daemon loads the
//! object with a pin directory, so a restarted daemon re-adopts the maps the
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
    macros::map,
    maps::{HashMap, LpmTrie, PerCpuArray, PerCpuHashMap, lpm_trie::Key},
};
use netd_common::{
    EndpointInfo, EndpointStats, NetworkInfo,
    limits::{DROP_STATS_ENTRIES, MAX_ENDPOINTS, MAX_NETWORKS},
};

/// Host-side ifindex -> traffic counters. Per-CPU so the hot path never
/// contends on a cache line; the daemon sums the CPUs. The daemon inserts an
/// entry when it attaches an endpoint; the programs only update existing
/// entries (see `stats::count_endpoint`). Name: `map_names::EP_STATS`.
#[map]
pub(crate) static EP_STATS: PerCpuHashMap<u32, EndpointStats> =
    PerCpuHashMap::pinned(MAX_ENDPOINTS, 0);

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

/// Subnet -> network: which network an address belongs to, for
/// destinations that are not endpoints (gateway, unused addresses, other
/// networks) and for the sender's own network flags. aya adds the
/// `BPF_F_NO_PREALLOC` the kernel requires for LPM tries.
/// Name: `map_names::NET_LPM`.
#[map]
pub(crate) static NET_LPM: LpmTrie<u32, NetworkInfo> = LpmTrie::pinned(MAX_NETWORKS, 0);

/// The endpoint behind the host-side veth `ifindex`, if it is one of ours.
#[inline(always)]
pub(crate) fn endpoint_by_ifindex(ifindex: u32) -> Option<EndpointInfo> {
    // SAFETY: a non-null pointer from a map lookup points at a whole
    // `EndpointInfo` for the rest of the program run; copying it out at
    // once keeps the window for a concurrent replacement minimal.
    EP_BY_IF.get_ptr(ifindex).map(|p| unsafe { *p })
}

/// The endpoint owning `ip` (`ipv4_be`), on any network.
#[inline(always)]
pub(crate) fn endpoint_by_ip(ip: u32) -> Option<EndpointInfo> {
    // SAFETY: as in `endpoint_by_ifindex`.
    EP_MAP.get_ptr(ip).map(|p| unsafe { *p })
}

/// The network whose subnet contains `ip` (`ipv4_be`), longest prefix first.
#[inline(always)]
pub(crate) fn network_of(ip: u32) -> Option<NetworkInfo> {
    NET_LPM.get(Key::new(32, ip)).copied()
}
