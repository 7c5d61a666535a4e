//! Compatibility with the maps an earlier netd pinned: the shape every
//! pinned map must have for this build, checked before any program uses
//! it, and the pins of the maps this build replaced.
//!
//! The loader re-adopts a pinned map by name whatever its shape, so a map
//! whose type, key/value/entry sizes or flags differ from what this build
//! expects is refused here ([`DataplaneError::IncompatiblePinnedMap`])
//! instead of letting programs run on a map of the wrong layout; the one
//! exception, `NAT_CT` of another size (the daemon's `conntrack-max`), is
//! set aside for a resize (module `nat`). The names and sizes are
//! `netd_common`'s, which the kernel definitions in `netd-ebpf/src/maps.rs`
//! use too.

use std::{
    fmt, fs, io,
    mem::size_of,
    path::{Path, PathBuf},
};

use aya::{
    maps::{MapError, MapInfo, MapType, lpm_trie},
    sys::SyscallError,
};
use netd_common::{
    EndpointInfo, EndpointStats, HostConfig, IndexedNetwork, NetworkInfo, PublishKey,
    PublishTarget,
    lb::{LbStatsKey, SvcKey, SvcSlot},
    limits::{
        DROP_STATS_ENTRIES, ENDPOINT_SLOTS, LB_STATS_ENTRIES, LB_SVC_ENTRIES, MAX_ENDPOINTS,
        MAX_HOST_ADDRS, MAX_NETWORKS, MAX_OVERLAY_HOSTS, MAX_OVERLAY_NETWORKS, MAX_PUBLISHED,
        MAX_REMOTE_ENDPOINTS, MAX_SERVICES, NAT_STATS_SLOTS, NET_HINT_ENTRIES, NET_INDEXES,
        OVL_STATS_SLOTS, UDP_REV_ENTRIES,
    },
    map_names,
    nat::{CtEntry, CtKey},
    overlay::{OverlayConfig, RemoteEndpoint},
    sock::{UdpRevKey, UdpRevValue},
};
use tracing::info;

use super::{DataplaneError, MapSizes, map_access::map_error, nat};

/// `BPF_F_NO_PREALLOC`, as the eBPF side creates its hash maps and its LPM
/// trie (see `netd-ebpf/src/maps.rs`).
const BPF_F_NO_PREALLOC: u32 = 1;

/// What a map pinned under `maps/` must look like for this build.
struct ExpectedMap {
    name: &'static str,
    map_type: MapType,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

impl ExpectedMap {
    /// A map of `map_type` from `K` to `V` (the key and value types the
    /// kernel definition names).
    const fn of<K, V>(
        name: &'static str,
        map_type: MapType,
        max_entries: u32,
        map_flags: u32,
    ) -> ExpectedMap {
        ExpectedMap {
            name,
            map_type,
            key_size: size_of::<K>() as u32,
            value_size: size_of::<V>() as u32,
            max_entries,
            map_flags,
        }
    }

    /// Whether the map `info` describes has this one's type, key and value
    /// sizes and flags (its size aside).
    fn same_layout(&self, info: &MapInfo) -> bool {
        info.map_type().ok() == Some(self.map_type)
            && info.key_size() == self.key_size
            && info.value_size() == self.value_size
            && info.map_flags() == self.map_flags
    }

    /// The refusal of the map pinned at `path` (described by `info`), which
    /// does not look like this one.
    fn incompatible(&self, info: &MapInfo, path: PathBuf, pin_dir: &Path) -> DataplaneError {
        DataplaneError::IncompatiblePinnedMap {
            path,
            pin_dir: pin_dir.to_path_buf(),
            found: format!(
                "{} key {}B value {}B entries {} flags {:#x}",
                info.map_type()
                    .map_or_else(|_| "unknown type".to_string(), |t| format!("{t:?}")),
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                info.map_flags()
            ),
            expected: self.to_string(),
        }
    }
}

impl fmt::Display for ExpectedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} key {}B value {}B entries {} flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.map_flags
        )
    }
}

/// The maps checked when the object is loaded: every map the programs pin
/// but the socket hooks' ([`SOCKET_HOOK_MAPS`]), `NAT_CT` with the size
/// `sizes` asks for.
const fn load_checked(sizes: &MapSizes) -> [ExpectedMap; 22] {
    [
        // Endpoints, networks and their counters (module `steering`).
        ExpectedMap::of::<u32, EndpointStats>(
            map_names::EP_COUNTERS,
            MapType::PerCpuArray,
            ENDPOINT_SLOTS,
            0,
        ),
        ExpectedMap::of::<u32, u64>(
            map_names::DROP_STATS,
            MapType::PerCpuArray,
            DROP_STATS_ENTRIES,
            0,
        ),
        ExpectedMap::of::<u32, EndpointInfo>(
            map_names::EP_MAP,
            MapType::Hash,
            MAX_ENDPOINTS,
            BPF_F_NO_PREALLOC,
        ),
        ExpectedMap::of::<u32, EndpointInfo>(
            map_names::EP_BY_IF,
            MapType::Hash,
            MAX_ENDPOINTS,
            BPF_F_NO_PREALLOC,
        ),
        // Macvlan endpoints (module `macvlan`).
        ExpectedMap::of::<u32, EndpointInfo>(
            map_names::MV_EP,
            MapType::Hash,
            MAX_ENDPOINTS,
            BPF_F_NO_PREALLOC,
        ),
        // `struct bpf_lpm_trie_key_u8` with 4 data bytes.
        ExpectedMap::of::<lpm_trie::Key<u32>, NetworkInfo>(
            map_names::NET_LPM,
            MapType::LpmTrie,
            MAX_NETWORKS,
            BPF_F_NO_PREALLOC,
        ),
        ExpectedMap::of::<u32, IndexedNetwork>(
            map_names::NET_BY_INDEX,
            MapType::Array,
            NET_INDEXES,
            0,
        ),
        ExpectedMap::of::<u32, u32>(map_names::NET_HINT, MapType::Array, NET_HINT_ENTRIES, 0),
        // NAT and published ports (module `nat`).
        ExpectedMap::of::<PublishKey, PublishTarget>(
            map_names::PUBLISH,
            MapType::Hash,
            MAX_PUBLISHED,
            BPF_F_NO_PREALLOC,
        ),
        ExpectedMap::of::<u32, HostConfig>(map_names::HOST_CFG, MapType::Array, 1, 0),
        ExpectedMap::of::<CtKey, CtEntry>(
            map_names::NAT_CT,
            MapType::LruHash,
            sizes.nat_ct_entries(),
            0,
        ),
        ExpectedMap::of::<u32, u64>(
            map_names::NAT_STATS,
            MapType::PerCpuArray,
            NAT_STATS_SLOTS,
            0,
        ),
        ExpectedMap::of::<PublishKey, u64>(
            map_names::PUBLISH_STATS,
            MapType::PerCpuHash,
            MAX_PUBLISHED,
            BPF_F_NO_PREALLOC,
        ),
        // Services (module `lb`).
        ExpectedMap::of::<SvcKey, SvcSlot>(
            map_names::LB_SVC,
            MapType::Hash,
            LB_SVC_ENTRIES,
            BPF_F_NO_PREALLOC,
        ),
        ExpectedMap::of::<u32, u64>(map_names::LB_RR, MapType::Array, MAX_SERVICES, 0),
        ExpectedMap::of::<LbStatsKey, u64>(
            map_names::LB_STATS,
            MapType::PerCpuHash,
            LB_STATS_ENTRIES,
            BPF_F_NO_PREALLOC,
        ),
        ExpectedMap::of::<u32, u32>(map_names::LB_BACKENDS, MapType::Array, ENDPOINT_SLOTS, 0),
        // Overlay networks (module `overlay`).
        ExpectedMap::of::<u32, RemoteEndpoint>(
            map_names::OVL_REMOTE,
            MapType::Hash,
            MAX_REMOTE_ENDPOINTS,
            BPF_F_NO_PREALLOC,
        ),
        ExpectedMap::of::<u32, u32>(
            map_names::OVL_HOSTS,
            MapType::Hash,
            MAX_OVERLAY_HOSTS,
            BPF_F_NO_PREALLOC,
        ),
        ExpectedMap::of::<u32, u32>(
            map_names::OVL_VNI,
            MapType::Hash,
            MAX_OVERLAY_NETWORKS,
            BPF_F_NO_PREALLOC,
        ),
        ExpectedMap::of::<u32, OverlayConfig>(map_names::OVL_CFG, MapType::Array, 1, 0),
        ExpectedMap::of::<u32, u64>(
            map_names::OVL_STATS,
            MapType::PerCpuArray,
            OVL_STATS_SLOTS,
            0,
        ),
    ]
}

/// The socket hooks' maps (module `sock`). Checked by
/// [`Dataplane::attach_socket_hooks`] rather than at load: only the socket
/// programs use these maps, so refusing to attach them is enough to keep a
/// wrongly shaped pinned map from being used.
const SOCKET_HOOK_MAPS: [ExpectedMap; 2] = [
    ExpectedMap::of::<u32, u32>(
        map_names::HOST_ADDRS,
        MapType::Hash,
        MAX_HOST_ADDRS,
        BPF_F_NO_PREALLOC,
    ),
    ExpectedMap::of::<UdpRevKey, UdpRevValue>(
        map_names::SOCK_UDP_REV,
        MapType::LruHash,
        UDP_REV_ENTRIES,
        0,
    ),
];

/// Refuses pinned maps whose shape differs from this build's (see the
/// module docs) and sets `NAT_CT` aside when only its size differs from
/// `sizes`. Absent pins are fine: the loader creates them.
pub(super) fn check_pinned_maps(
    pin_dir: &Path,
    maps_dir: &Path,
    sizes: &MapSizes,
) -> Result<(), DataplaneError> {
    for expected in &load_checked(sizes) {
        let path = maps_dir.join(expected.name);
        let info = match MapInfo::from_pin(&path) {
            Ok(info) => info,
            Err(MapError::SyscallError(SyscallError { io_error, .. }))
                if io_error.kind() == io::ErrorKind::NotFound =>
            {
                continue;
            }
            Err(e) => return Err(map_error(expected.name)(e)),
        };
        let same_layout = expected.same_layout(&info);
        if same_layout && info.max_entries() == expected.max_entries {
            continue;
        }
        if same_layout && expected.name == map_names::NAT_CT {
            nat::set_aside_for_resize(maps_dir, info.max_entries(), expected.max_entries)?;
            continue;
        }
        return Err(expected.incompatible(&info, path, pin_dir));
    }
    Ok(())
}

/// Refuses the socket hooks' pinned maps if their shape differs from this
/// build's ([`SOCKET_HOOK_MAPS`]).
pub(super) fn check_socket_hook_maps(pin_dir: &Path) -> Result<(), DataplaneError> {
    let maps_dir = pin_dir.join("maps");
    for expected in &SOCKET_HOOK_MAPS {
        let path = maps_dir.join(expected.name);
        let info = MapInfo::from_pin(&path).map_err(map_error(expected.name))?;
        if !expected.same_layout(&info) || info.max_entries() != expected.max_entries {
            return Err(expected.incompatible(&info, path, pin_dir));
        }
    }
    Ok(())
}

/// Removes the pins of maps an older netd made and this one replaced
/// (`map_names::OBSOLETE`). Their maps live on while programs of the older
/// netd still use them, until the endpoints switch to this one's.
pub(super) fn remove_obsolete_pins(maps_dir: &Path) -> Result<(), DataplaneError> {
    for name in map_names::OBSOLETE {
        let path = maps_dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => info!(map = name, "removed the pin of a map this netd replaced"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DataplaneError::PinDir {
                    action: "remove",
                    path,
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_pinned_map_is_expected_once() {
        let load = load_checked(&MapSizes::default());
        let mut names = HashSet::new();
        for map in load.iter().chain(&SOCKET_HOOK_MAPS) {
            assert!(map.name.len() <= 15, "{}", map.name);
            assert!(names.insert(map.name), "{} twice", map.name);
            assert!(!map_names::OBSOLETE.contains(&map.name), "{}", map.name);
        }
    }
}
