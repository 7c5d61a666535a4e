//! What the programs counted, read apart from the [`Dataplane`] that
//! changes the maps: `netd stats` and the metrics endpoint read through a
//! [`Counters`] of their own (the same maps, through duplicated
//! descriptors), so a read never waits for the engine, which owns the
//! `Dataplane`, and the engine never waits for a read.
//!
//! Counters are per-CPU arrays and hashes the programs bump; reading them
//! costs one system call per element, bounded by the number of endpoints,
//! drop reasons, NAT and overlay counters, published ports and backends. The one table that grows
//! with traffic, `NAT_CT`, is never walked per read: its occupancy comes
//! from a census ([`Counters::conntrack_census`]) that reads it in batches
//! of thousands of entries per system call, and that the daemon runs in
//! the background and on an explicit `netd stats`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use aya::maps::{MapData, MapError, PerCpuArray, PerCpuHashMap};
use netd_common::lb::LbStatsKey;
use netd_common::limits::DROP_STATS_ENTRIES;
use netd_common::nat::{self, CtEntry, CtKey, NatCounter};
use netd_common::overlay::OverlayCounter;
use netd_common::{Direction, DropKey, DropReason, EndpointStats, PublishKey, map_names};

use super::map_access::{addr, map_error, missing};
use super::nat::{NatStats, PublishedPortStats, decode_publish_key, monotonic_ns};
use super::{Dataplane, DataplaneError};

/// `NAT_CT` entries read per system call by the census: large enough that
/// 200,000 entries take a few dozen calls, small enough to stay a few
/// hundred KiB of buffer.
const CENSUS_BATCH: usize = 4096;

/// `BPF_MAP_LOOKUP_BATCH` (include/uapi/linux/bpf.h); not in libc.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// Occupancy of the connection tracking table at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Entries of live flows (two per flow).
    pub live: u64,
    /// Entries that timed out and are not reclaimed yet.
    pub expired: u64,
}

/// What the overlay tunnelled, summed over CPUs. Bytes are the inner
/// frames' (Ethernet header included; the outer headers add 50 a packet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverlayStats {
    /// Packets encapsulated to endpoints on other hosts.
    pub encap_packets: u64,
    pub encap_bytes: u64,
    /// Packets from other hosts delivered to local endpoints.
    pub decap_packets: u64,
    pub decap_bytes: u64,
}

/// Read handles on the counter maps of a loaded [`Dataplane`].
pub struct Counters {
    ep_counters: PerCpuArray<MapData, EndpointStats>,
    drop_stats: PerCpuArray<MapData, u64>,
    nat_stats: PerCpuArray<MapData, u64>,
    ovl_stats: PerCpuArray<MapData, u64>,
    publish_stats: PerCpuHashMap<MapData, PublishKey, u64>,
    lb_stats: PerCpuHashMap<MapData, LbStatsKey, u64>,
    nat_ct: MapData,
    conntrack_capacity: u64,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

/// Opens the map pinned as `name` under `maps_dir`.
fn pinned(maps_dir: &Path, name: &'static str) -> Result<MapData, DataplaneError> {
    MapData::from_pin(maps_dir.join(name)).map_err(map_error(name))
}

fn syscall(call: &'static str, io_error: std::io::Error) -> aya::sys::SyscallError {
    aya::sys::SyscallError { call, io_error }
}

/// Sums a per-CPU counter.
fn total(per_cpu: &[u64]) -> u64 {
    per_cpu.iter().fold(0u64, |acc, n| acc.wrapping_add(*n))
}

/// Element `index` of the per-CPU counter array `map` (called `name`),
/// summed over CPUs.
fn summed(
    map: &PerCpuArray<MapData, u64>,
    name: &'static str,
    index: u32,
) -> Result<u64, DataplaneError> {
    let per_cpu = map.get(&index, 0).map_err(map_error(name))?;
    Ok(total(&per_cpu))
}

impl Counters {
    /// Opens the counter maps a loaded data path pinned under `maps_dir`:
    /// descriptors of the reader's own, which live as long as it does.
    pub(super) fn open(
        maps_dir: &Path,
        conntrack_capacity: u64,
    ) -> Result<Counters, DataplaneError> {
        let per_cpu_array = |name| -> Result<aya::maps::Map, DataplaneError> {
            Ok(aya::maps::Map::PerCpuArray(pinned(maps_dir, name)?))
        };
        let per_cpu_hash = |name| -> Result<aya::maps::Map, DataplaneError> {
            Ok(aya::maps::Map::PerCpuHashMap(pinned(maps_dir, name)?))
        };
        Ok(Counters {
            ep_counters: PerCpuArray::try_from(per_cpu_array(map_names::EP_COUNTERS)?)
                .map_err(map_error(map_names::EP_COUNTERS))?,
            drop_stats: PerCpuArray::try_from(per_cpu_array(map_names::DROP_STATS)?)
                .map_err(map_error(map_names::DROP_STATS))?,
            nat_stats: PerCpuArray::try_from(per_cpu_array(map_names::NAT_STATS)?)
                .map_err(map_error(map_names::NAT_STATS))?,
            ovl_stats: PerCpuArray::try_from(per_cpu_array(map_names::OVL_STATS)?)
                .map_err(map_error(map_names::OVL_STATS))?,
            publish_stats: PerCpuHashMap::try_from(per_cpu_hash(map_names::PUBLISH_STATS)?)
                .map_err(map_error(map_names::PUBLISH_STATS))?,
            lb_stats: PerCpuHashMap::try_from(per_cpu_hash(map_names::LB_STATS)?)
                .map_err(map_error(map_names::LB_STATS))?,
            nat_ct: pinned(maps_dir, map_names::NAT_CT)?,
            conntrack_capacity,
        })
    }

    /// The counters of the endpoint holding `slot`, summed over CPUs.
    pub fn endpoint(&self, slot: u16) -> Result<EndpointStats, DataplaneError> {
        let per_cpu = self
            .ep_counters
            .get(&u32::from(slot), 0)
            .map_err(map_error(map_names::EP_COUNTERS))?;
        Ok(per_cpu
            .iter()
            .fold(EndpointStats::default(), |acc, s| acc.add(*s)))
    }

    /// Drop counters summed over CPUs: one row per known reason and
    /// direction, zeros included, so metrics series exist from the start.
    /// Counts under reasons this build does not know (from a newer program
    /// still attached) are reported as [`DropReason::Unknown`].
    pub fn drops(&self) -> Result<Vec<(DropReason, Direction, u64)>, DataplaneError> {
        let mut totals: BTreeMap<(DropReason, Direction), u64> = BTreeMap::new();
        for direction in Direction::ALL {
            for reason in DropReason::ALL {
                totals.insert((reason, direction), 0);
            }
        }
        for index in 0..DROP_STATS_ENTRIES {
            let per_cpu = self
                .drop_stats
                .get(&index, 0)
                .map_err(map_error(map_names::DROP_STATS))?;
            let count = total(&per_cpu);
            if count == 0 {
                continue;
            }
            let Some(key) = DropKey::from_index(index) else {
                continue;
            };
            let Some(direction) = Direction::from_u32(key.direction) else {
                continue;
            };
            let reason = DropReason::from_u32(key.reason).unwrap_or(DropReason::Unknown);
            let sum = totals.entry((reason, direction)).or_default();
            *sum = sum.wrapping_add(count);
        }
        Ok(totals
            .into_iter()
            .map(|((reason, direction), n)| (reason, direction, n))
            .collect())
    }

    /// NAT counters and per-port flows; the conntrack occupancy fields are
    /// left at zero (see [`Counters::conntrack_census`]) but the capacity.
    pub fn nat(&self) -> Result<NatStats, DataplaneError> {
        let mut stats = NatStats {
            conntrack_capacity: self.conntrack_capacity,
            ..NatStats::default()
        };
        for counter in NatCounter::ALL {
            let field = match counter {
                NatCounter::SnatFlows => &mut stats.snat_flows,
                NatCounter::DnatFlows => &mut stats.dnat_flows,
                NatCounter::HairpinFlows => &mut stats.hairpin_flows,
                NatCounter::ClosedFlows => &mut stats.closed_flows,
                NatCounter::ExpiredFlows => &mut stats.expired_flows,
                NatCounter::PortCollisions => &mut stats.port_collisions,
                NatCounter::TranslatedPackets => &mut stats.translated_packets,
                NatCounter::LbFlows => &mut stats.lb_flows,
                NatCounter::HostFlows => &mut stats.host_flows,
                NatCounter::MeshFlows => &mut stats.mesh_flows,
            };
            *field = summed(&self.nat_stats, map_names::NAT_STATS, counter as u32)?;
        }
        for entry in self.publish_stats.iter() {
            let (key, per_cpu) = match entry {
                Ok(kv) => kv,
                Err(e) if missing(&e) => continue,
                Err(e) => return Err(map_error(map_names::PUBLISH_STATS)(e)),
            };
            let Some((host_addr, host_port, proto)) = decode_publish_key(&key) else {
                continue;
            };
            stats.published.push(PublishedPortStats {
                host_addr,
                host_port,
                proto,
                flows: total(&per_cpu),
            });
        }
        stats
            .published
            .sort_by_key(|p: &PublishedPortStats| (p.proto, p.host_port, p.host_addr));
        Ok(stats)
    }

    /// What the overlay encapsulated and decapsulated.
    pub fn overlay(&self) -> Result<OverlayStats, DataplaneError> {
        let mut stats = OverlayStats::default();
        for counter in OverlayCounter::ALL {
            let field = match counter {
                OverlayCounter::EncapPackets => &mut stats.encap_packets,
                OverlayCounter::EncapBytes => &mut stats.encap_bytes,
                OverlayCounter::DecapPackets => &mut stats.decap_packets,
                OverlayCounter::DecapBytes => &mut stats.decap_bytes,
            };
            *field = summed(&self.ovl_stats, map_names::OVL_STATS, counter as u32)?;
        }
        Ok(stats)
    }

    /// Backend selections, summed over CPUs: `(service index, backend
    /// address, new flows sent to it)`, sorted. Every flow the load
    /// balancer placed counts once, whichever way it came (container to
    /// VIP, host socket, published port).
    pub fn lb(&self) -> Result<Vec<(u32, Ipv4Addr, u64)>, DataplaneError> {
        let mut out = Vec::new();
        for entry in self.lb_stats.iter() {
            let (key, per_cpu) = match entry {
                Ok(kv) => kv,
                Err(e) if missing(&e) => continue,
                Err(e) => return Err(map_error(map_names::LB_STATS)(e)),
            };
            out.push((key.svc_index, addr(key.backend), total(&per_cpu)));
        }
        out.sort();
        Ok(out)
    }

    /// Counts `NAT_CT`'s live and timed-out entries, reading the table
    /// [`CENSUS_BATCH`] entries per system call (`BPF_MAP_LOOKUP_BATCH`),
    /// not one call per entry as a key walk would. Blocking: tens of
    /// milliseconds for 200,000 entries, so async callers run it on the
    /// blocking pool.
    pub fn conntrack_census(&self) -> Result<Census, DataplaneError> {
        let now = monotonic_ns();
        let mut census = Census::default();
        let mut keys = vec![CtKey::default(); CENSUS_BATCH];
        let mut values = vec![CtEntry::default(); CENSUS_BATCH];
        // The hash table's batch token is a bucket number (a u32); 8 bytes
        // leave room whatever the kernel writes.
        let mut token_in = [0u8; 8];
        let mut token_out = [0u8; 8];
        let mut first = true;
        loop {
            let mut attr = BatchAttr {
                in_batch: if first {
                    0
                } else {
                    token_in.as_mut_ptr() as u64
                },
                out_batch: token_out.as_mut_ptr() as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: CENSUS_BATCH as u32,
                map_fd: self.nat_ct.fd().as_fd().as_raw_fd() as u32,
                elem_flags: 0,
                flags: 0,
            };
            // SAFETY: `attr` is a valid `bpf_attr.batch` of the size passed;
            // the kernel writes at most `count` keys and values into the
            // buffers, which hold `CENSUS_BATCH` of each with the map's key
            // and value sizes (checked against the pin on load), and at
            // most a u32 into `token_out`.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    size_of::<BatchAttr>() as u32,
                )
            };
            let err = (rc < 0).then(std::io::Error::last_os_error);
            // On ENOENT (the end) `count` still holds the last entries read.
            for (key, entry) in keys.iter().zip(&values).take(attr.count as usize) {
                if nat::expired(entry.last_seen, key.proto, entry.flags, now) {
                    census.expired += 1;
                } else {
                    census.live += 1;
                }
            }
            match err {
                None => {}
                Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(census),
                Some(e) => {
                    return Err(map_error(map_names::NAT_CT)(MapError::SyscallError(
                        syscall("bpf_map_lookup_batch", e),
                    )));
                }
            }
            token_in = token_out;
            first = false;
        }
    }
}

/// `bpf_attr` for the `BPF_MAP_*_BATCH` commands (include/uapi/linux/bpf.h).
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

impl Dataplane {
    /// Read handles on this data path's counters, for readers that must not
    /// wait for the engine.
    pub fn counters(&self) -> Result<Counters, DataplaneError> {
        Counters::open(
            &self.pin_dir.join("maps"),
            u64::from(self.sizes.nat_ct_entries()),
        )
    }
}
