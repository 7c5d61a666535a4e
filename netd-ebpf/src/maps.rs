//! Every map of the object, in one place.
//!
//! All maps are pinned by name (`PinningType::ByName`): the daemon loads the
//! object with a pin directory, so a restarted daemon re-adopts the maps the
//! still-attached programs are using instead of creating empty ones. Names
//! and sizes come from `netd_common` so the daemon agrees on them.
use aya_ebpf::{
    macros::map,
    maps::{PerCpuArray, PerCpuHashMap},
};
use netd_common::{
    EndpointStats,
    limits::{DROP_STATS_ENTRIES, MAX_ENDPOINTS},
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
