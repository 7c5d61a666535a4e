//! The user-space side of the eBPF data path: loading the embedded object,
//! pinning, attaching to endpoints, and reading the counters.
//!
//! # Pin layout
//! ```text
//! <pin_dir>/                     e.g. /sys/fs/bpf/netd (must be on bpffs)
//!   maps/EP_COUNTERS             per-CPU array endpoint slot -> EndpointStats
//!   maps/DROP_STATS              per-CPU array DropKey::index() -> u64
//!   maps/EP_MAP                  hash  endpoint IPv4 -> EndpointInfo
//!   maps/EP_BY_IF                hash  host ifindex -> EndpointInfo
//!   maps/NET_LPM                 LPM trie  subnet -> NetworkInfo
//!   maps/NET_BY_INDEX            array network index -> IndexedNetwork
//!   maps/NET_HINT                array bitmap of the /16s holding netd addresses
//!   maps/PUBLISH, HOST_CFG, NAT_CT, NAT_STATS, PUBLISH_STATS   (module `nat`)
//!   maps/LB_SVC                  hash  {vip, port, proto, slot} -> SvcSlot (module `lb`)
//!   maps/LB_RR                   array service index -> round-robin cursor
//!   maps/LB_STATS                per-CPU hash {service, backend} -> selections
//!   maps/LB_BACKENDS             array endpoint slot -> 1 if a backend
//!   maps/OVL_REMOTE              hash  remote IPv4 -> {network, VNI, host, backend mark} (module `overlay`)
//!   maps/OVL_HOSTS               hash  cluster host IPv4 -> 0
//!   maps/OVL_VNI                 hash  VNI -> network index
//!   maps/OVL_CFG                 array the VXLAN device's ifindex
//!   maps/OVL_STATS               per-CPU array OverlayCounter -> u64
//!   links/<uplink>_uplink        TCX ingress link on the uplink (module `nat`)
//!   links/cgroup_<hook>          cgroup socket hook links (module `sock`)
//! ```
//! bpffs refuses names containing '.' (EPERM: dots are reserved for files
//! the kernel itself creates), so an interface name's '.' (VLAN-style
//! `eth0.100`) is written as `%2e` in a pin name (and '%' as `%25`, to keep
//! the encoding reversible).
//!
//! # Why pins, and why endpoints have none
//! Pinning the maps by name lets the next daemon load the object with the
//! *same* maps, so the still-running programs and the new daemon share
//! counters and forwarding state. The endpoint programs run as `cls_bpf`
//! filters on the host-side veth (module `tc_filter`), which hold their
//! programs for as long as the veth exists: the daemon can exit or crash
//! without taking container networking down. On start the daemon calls
//! [`Dataplane::load`] and then [`Dataplane::attach_endpoint`] for every
//! endpoint it knows, which switches each filter to the freshly loaded
//! programs in place, never detaching.
//!
//! Earlier builds attached endpoints with pinned TCX links
//! (`links/<host_ifname>_from`, `_to`); attaching such an endpoint moves it
//! to filters, and [`Dataplane::tcx_endpoint_pins`] tells the engine which
//! of those pins belong to endpoints it no longer knows.
//!
//! The programs themselves are not pinned: the filters and links hold them.
//!
//! # Binding to the running kernel
//! Before loading, the object's read of a packet's checksum state is bound
//! to this kernel's BTF (module `kfunc`, with `kernel_btf`): aya cannot
//! relocate the kfunc it calls. Without a binding the programs still work,
//! through the kernel's checksum helpers.
//!
//! # Steering state
//! What the programs need to forward and isolate (see `netd-ebpf`) is
//! written by the engine through [`Dataplane::set_network`] and
//! [`Dataplane::set_endpoint`] (module `steering`): a network's subnet entry
//! before its endpoints, an endpoint's entries before its programs are
//! attached, so that no packet meets a half-known endpoint. Both are
//! idempotent (restart re-writes them), and [`Dataplane::retain`] removes
//! what a crash left behind. Overlay networks add their VNI, the cluster's
//! hosts and the endpoints on other hosts (module `overlay`).
//!
//! # Compatibility
//! Pinned maps keep the shape they were created with. [`Dataplane::load`]
//! (and, for the socket hooks' maps, [`Dataplane::attach_socket_hooks`])
//! refuses maps whose type, key/value/entry sizes or flags differ from what
//! this build expects ([`DataplaneError::IncompatiblePinnedMap`]) instead of
//! letting programs run on a map of the wrong layout (module `compat`, the
//! one place that knows what every pinned map looks like). Maps this build
//! adds (e.g. `EP_MAP` on top of a foundation-era pin directory) are simply
//! created next to the old ones, and the pins of maps this build replaced
//! (`map_names::OBSOLETE`) are removed. The one map whose size is a setting
//! ([`MapSizes`]), `NAT_CT`, is resized instead: a new map of the configured
//! size takes over the old one's flows (module `nat`).

mod bpffs;
mod cgroup2;
mod compat;
mod kernel_btf;
mod kfunc;
mod map_access;
mod raw_link;
mod slots;
mod steering;
mod tc_filter;
// NAT, published ports, uplink (after the others so parallel work appends).
mod counters;
mod macvlan;
mod nat;

pub use counters::{Census, Counters, OverlayStats};
pub use macvlan::MACVLAN_PROGRAM;
// Services: virtual IPs balanced round-robin (kernel side `netd-ebpf/src/lb.rs`).
mod lb;
// Overlay networks: VXLAN between hosts (kernel side `netd-ebpf/src/overlay.rs`).
mod overlay;

use std::{
    ffi::CString,
    fmt, fs, io,
    mem::size_of,
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfError, EbpfLoader,
    maps::{Array, HashMap, LpmTrie, MapData, MapError, PerCpuArray, PerCpuValues},
    pin::PinError,
    programs::{ProgramError, SchedClassifier, links::LinkError},
};
pub use netd_common::{Direction, DropReason, EndpointInfo, EndpointStats, NetworkInfo};
use netd_common::{
    IndexedNetwork,
    limits::{CONNTRACK_FLOWS, CT_ENTRIES_PER_FLOW, MAX_ENDPOINTS},
    map_names,
};
use tracing::{debug, info, warn};

pub use self::lb::{Backend, ServiceEntry};
use self::map_access::{map_error, missing_map};
pub use self::nat::{
    ConntrackEntry, ConntrackKey, NatStats, Proto, Published, PublishedPortStats, UPLINK_PROGRAM,
};
pub use self::overlay::{BRIDGE_PROGRAM, RemoteEndpoint, VXLAN_PROGRAM};
pub use self::raw_link::Attachment;
pub use self::steering::NetworkPolicy;
pub use self::tc_filter::Filter;

/// The kernel object built by `build.rs` from `netd-ebpf`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netd"));

/// Program attached to TC ingress of the host-side veth.
pub const FROM_EP_PROGRAM: &str = "netd_from_ep";
/// Program attached to TC egress of the host-side veth.
pub const TO_EP_PROGRAM: &str = "netd_to_ep";

/// The name of the program handling `direction`.
pub const fn program_name(direction: Direction) -> &'static str {
    match direction {
        Direction::FromEndpoint => FROM_EP_PROGRAM,
        Direction::ToEndpoint => TO_EP_PROGRAM,
    }
}

/// Suffix of a link pin file, after the encoded `<host_ifname>`. Neither
/// suffix is a suffix of the other, so a file name decodes unambiguously.
const fn pin_suffix(direction: Direction) -> &'static str {
    match direction {
        Direction::FromEndpoint => "_from",
        Direction::ToEndpoint => "_to",
    }
}

/// Interface name -> pin file stem: bpffs rejects '.' in names.
fn encode_ifname(ifname: &str) -> String {
    ifname.replace('%', "%25").replace('.', "%2e")
}

/// Inverse of [`encode_ifname`]; `None` for stems it cannot have produced.
fn decode_ifname(stem: &str) -> Option<String> {
    let mut out = String::with_capacity(stem.len());
    let mut rest = stem;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let escape = rest.get(i..i + 3)?;
        out.push(match escape {
            "%25" => '%',
            "%2e" => '.',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `BPF_NOEXIST`: create the element only if it is absent.
const BPF_NOEXIST: u64 = 1;
/// `BPF_ANY`: create or overwrite.
const BPF_ANY: u64 = 0;

/// Errors of the data path layer. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error(
        "cannot mount bpffs at {}: {source} - mount it by hand with `mount -t bpf bpf {}` (needs CAP_SYS_ADMIN)",
        path.display(),
        path.display()
    )]
    MountBpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is not on a bpf filesystem - choose a pin directory under /sys/fs/bpf or mount bpffs there (`mount -t bpf bpf <dir>`)",
        path.display()
    )]
    NotBpffs { path: PathBuf },
    #[error("cannot {action} {}: {source} - check that it is on bpffs and that netd runs as root", path.display())]
    PinDir {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "pinned map {} is incompatible with this netd (found {found}, expected {expected}) - it was created by another netd version; stop netd and remove {} (endpoints lose their counters and are re-attached on the next start)",
        path.display(),
        pin_dir.display()
    )]
    IncompatiblePinnedMap {
        path: PathBuf,
        pin_dir: PathBuf,
        found: String,
        expected: String,
    },
    #[error(
        "failed to load the eBPF object: {0} - netd must run as root (CAP_BPF, CAP_NET_ADMIN) on a kernel with BPF and BTF enabled"
    )]
    LoadObject(#[source] Box<EbpfError>),
    #[error(
        "the embedded eBPF object has no {kind} named {name} - rebuild netd (`cargo build -p netd`)"
    )]
    MissingInObject {
        kind: &'static str,
        name: &'static str,
    },
    #[error(
        "failed to load program {program}: {source} - the kernel verifier rejected it (its log is part of this message) or netd lacks CAP_BPF"
    )]
    LoadProgram {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(
        "failed to access map {map}: {source} - the pinned map may have been removed or replaced; restart netd"
    )]
    Map {
        map: &'static str,
        #[source]
        source: Box<MapError>,
    },
    #[error(
        "invalid interface name {0:?} - interface names are 1 to 15 bytes without '/', ':' or whitespace"
    )]
    InvalidInterfaceName(String),
    #[error(
        "interface {ifname} has ifindex {}, not {expected} - it was deleted or recreated; look the link up again",
        found.map_or_else(|| "none (it does not exist)".to_string(), |i| i.to_string())
    )]
    InterfaceMismatch {
        ifname: String,
        expected: u32,
        found: Option<u32>,
    },
    #[error(
        "failed to attach {program} to {ifname}: {source} - is the kernel built with clsact and cls_bpf (and TCX, Linux >= 6.6, for the uplink), and does {ifname} still exist?"
    )]
    Attach {
        program: &'static str,
        ifname: String,
        #[source]
        source: Box<LinkOpError>,
    },
    #[error(
        "failed to remove netd's filters from {ifname}: {source} - see `tc filter show dev {ifname} ingress` and `egress`"
    )]
    Detach {
        ifname: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot list the TC filters of {ifname}: {source} - is netd running as root (CAP_NET_ADMIN)?"
    )]
    InspectFilters {
        ifname: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "failed to pin the {program} link of {ifname} at {}: {source} - is the pin directory on bpffs and writable?",
        path.display()
    )]
    PinLink {
        program: &'static str,
        ifname: String,
        path: PathBuf,
        #[source]
        source: Box<PinError>,
    },
    #[error(
        "failed to switch the pinned link {} to the new {program}: {source} - remove the pin to force a fresh attach (brief traffic interruption)",
        path.display()
    )]
    UpdateLink {
        program: &'static str,
        path: PathBuf,
        #[source]
        source: Box<LinkOpError>,
    },
    #[error(
        "cannot inspect pinned link {}: {source} - remove it by hand (`rm {}`) if it is stale",
        path.display(),
        path.display()
    )]
    InspectLink {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "invalid network {subnet} with gateway {gateway}: the gateway must be an address inside the subnet"
    )]
    InvalidNetwork {
        subnet: ipnet::Ipv4Net,
        gateway: std::net::Ipv4Addr,
    },
    #[error(
        "invalid endpoint {ip} on ifindex {ifindex}: an endpoint needs its host-side veth's ifindex (not 0) and a unicast address"
    )]
    InvalidEndpoint {
        ifindex: u32,
        ip: std::net::Ipv4Addr,
    },
    #[error(
        "cannot add endpoint {ip}: this host already carries the most endpoints netd supports ({max}) - remove containers first",
        max = MAX_ENDPOINTS
    )]
    NoEndpointSlot { ip: std::net::Ipv4Addr },
    #[error("cannot read the loaded program {program}: {source} - restart netd")]
    ProgramInfo {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error(
        "invalid published port {port}: host and container ports must not be 0, the target must be a unicast address on an endpoint's veth (ifindex not 0), the host address a unicast one"
    )]
    InvalidPublish { port: String },
    #[error("invalid service {index} with virtual IP {vip}: {reason} - fix the service definition")]
    InvalidService {
        index: u32,
        vip: std::net::Ipv4Addr,
        reason: String,
    },
    #[error(
        "invalid VNI {vni}: a VXLAN network identifier is a number from 1 to 16777215 - fix the network's VNI"
    )]
    InvalidVni { vni: u32 },
    #[error(
        "invalid overlay host {host}: a host's underlay address must be a unicast one - check the address the host advertises"
    )]
    InvalidOverlayHost { host: std::net::Ipv4Addr },
    #[error("cannot add remote endpoint {ip}: {reason}")]
    InvalidRemoteEndpoint {
        ip: std::net::Ipv4Addr,
        reason: String,
    },
}

/// The aya error behind a failed link operation (attach, take, convert,
/// update), whichever layer of aya reported it.
#[derive(Debug, thiserror::Error)]
pub enum LinkOpError {
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Link(#[from] LinkError),
    /// From the rtnetlink requests that manage TC filters.
    #[error(transparent)]
    Netlink(#[from] io::Error),
}

/// The map sizes a daemon chooses when it loads the object (the daemon's
/// settings); every other size is fixed by `netd_common::limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    /// Translated flows `NAT_CT` holds before it evicts the least recently
    /// used (two entries each).
    pub conntrack_flows: u32,
}

impl Default for MapSizes {
    fn default() -> Self {
        MapSizes {
            conntrack_flows: CONNTRACK_FLOWS,
        }
    }
}

impl MapSizes {
    /// `max_entries` of `NAT_CT`.
    pub const fn nat_ct_entries(&self) -> u32 {
        self.conntrack_flows.saturating_mul(CT_ENTRIES_PER_FLOW)
    }
}

/// Loaded programs and maps, plus the pin directory they live in.
///
/// One per daemon; `&mut self` methods change kernel state, `&self` methods
/// only read it.
pub struct Dataplane {
    ebpf: Ebpf,
    ep_counters: PerCpuArray<MapData, EndpointStats>,
    /// The daemon's own reader of the counters, for the read methods here.
    counters: counters::Counters,
    /// Macvlan endpoints written since the load (see
    /// [`Dataplane::retain_macvlan_endpoints`]).
    macvlans_written: std::collections::HashSet<u32>,
    ep_map: HashMap<MapData, u32, EndpointInfo>,
    ep_by_if: HashMap<MapData, u32, EndpointInfo>,
    net_lpm: LpmTrie<MapData, u32, NetworkInfo>,
    net_by_index: Array<MapData, IndexedNetwork>,
    net_hint: Array<MapData, u32>,
    ep_gen: Array<MapData, u64>,
    pin_dir: PathBuf,
    nr_cpus: usize,
    sizes: MapSizes,
    slots: slots::Slots,
}

impl fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataplane")
            .field("pin_dir", &self.pin_dir)
            .finish_non_exhaustive()
    }
}

impl Dataplane {
    /// Mounts bpffs at /sys/fs/bpf if nothing is mounted there, creates
    /// `pin_dir` (with `maps/` and `links/`), and loads the embedded object
    /// with its maps pinned under `pin_dir/maps`, re-adopting maps pinned by
    /// an earlier run (and resizing `NAT_CT` to `sizes` if it was pinned
    /// with another size). The programs are loaded (verified) but not
    /// attached.
    pub fn load(pin_dir: &Path, sizes: &MapSizes) -> Result<Dataplane, DataplaneError> {
        bpffs::ensure_mounted()?;
        let maps_dir = pin_dir.join("maps");
        let links_dir = pin_dir.join("links");
        for dir in [pin_dir, &maps_dir, &links_dir] {
            fs::create_dir_all(dir).map_err(|source| DataplaneError::PinDir {
                action: "create",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        if !bpffs::is_bpffs(pin_dir).map_err(|source| DataplaneError::PinDir {
            action: "statfs",
            path: pin_dir.to_path_buf(),
            source,
        })? {
            return Err(DataplaneError::NotBpffs {
                path: pin_dir.to_path_buf(),
            });
        }
        compat::check_pinned_maps(pin_dir, &maps_dir, sizes)?;

        let mut ebpf = match kfunc::for_running_kernel(OBJECT) {
            Some(bound) => load_programs(bound.bytes(), &maps_dir, sizes).or_else(|e| {
                // E.g. a kernel whose JIT is off: kfunc calls need it.
                warn!(
                    error = %e,
                    "the kernel refused the programs bound to its checksum state; \
                     loading them as built: NAT updates L4 checksums through the \
                     kernel's helpers, which is slower"
                );
                load_programs(OBJECT, &maps_dir, sizes)
            })?,
            None => load_programs(OBJECT, &maps_dir, sizes)?,
        };
        kfunc::release_memory();
        let ep_counters = take_map(&mut ebpf, map_names::EP_COUNTERS, |m| {
            PerCpuArray::try_from(m)
        })?;
        let ep_map = take_map(&mut ebpf, map_names::EP_MAP, HashMap::try_from)?;
        let ep_by_if = take_map(&mut ebpf, map_names::EP_BY_IF, HashMap::try_from)?;
        let net_lpm = take_map(&mut ebpf, map_names::NET_LPM, LpmTrie::try_from)?;
        let net_by_index = take_map(&mut ebpf, map_names::NET_BY_INDEX, Array::try_from)?;
        let net_hint = take_map(&mut ebpf, map_names::NET_HINT, Array::try_from)?;
        let ep_gen = take_map(&mut ebpf, map_names::EP_GEN, Array::try_from)?;
        let nr_cpus = aya::util::nr_cpus()
            .map_err(|(_, e)| map_error(map_names::EP_COUNTERS)(MapError::IoError(e)))?;
        let mut dp = Dataplane {
            ebpf,
            ep_counters,
            counters: counters::Counters::open(&maps_dir, u64::from(sizes.nat_ct_entries()))?,
            macvlans_written: Default::default(),
            ep_map,
            ep_by_if,
            net_lpm,
            net_by_index,
            net_hint,
            ep_gen,
            pin_dir: pin_dir.to_path_buf(),
            nr_cpus,
            sizes: *sizes,
            slots: slots::Slots::default(),
        };
        dp.finish_conntrack_resize(&maps_dir)?;
        compat::remove_obsolete_pins(&maps_dir)?;
        dp.slots = slots::Slots::from_entries(
            dp.endpoints_by_ifindex()?
                .into_iter()
                .map(|(ifindex, info)| (ifindex, info.slot)),
        );
        dp.load_backend_marks()?;
        info!(pin_dir = %pin_dir.display(), "eBPF data path loaded");
        Ok(dp)
    }

    /// Attaches both programs to the host-side veth `host_ifname`: netd's
    /// `cls_bpf` filter on the ingress and egress hooks of its `clsact`
    /// qdisc (module `tc_filter`). The endpoint's counters are its slot's
    /// ([`Dataplane::set_endpoint`]).
    ///
    /// Idempotent and restart-safe: a filter already there (this or an
    /// earlier daemon's) is switched to the programs this daemon loaded,
    /// atomically, so traffic never passes unprocessed. An endpoint still
    /// attached with the pinned TCX links of an older netd moves to the
    /// filters, which take over before the old links are detached.
    ///
    /// On failure the filters this call created are removed again.
    pub fn attach_endpoint(
        &mut self,
        host_ifname: &str,
        host_ifindex: u32,
    ) -> Result<(), DataplaneError> {
        check_interface(host_ifname, host_ifindex)?;
        let attach_err = |program: &'static str, source: LinkOpError| DataplaneError::Attach {
            program,
            ifname: host_ifname.to_string(),
            source: Box::new(source),
        };
        let mut rtnl =
            tc_filter::Rtnl::open().map_err(|e| attach_err(FROM_EP_PROGRAM, e.into()))?;
        rtnl.add_clsact(host_ifindex)
            .map_err(|e| attach_err(FROM_EP_PROGRAM, e.into()))?;

        let mut created = Vec::new();
        let mut readopted = false;
        let result = (|| {
            for direction in Direction::ALL {
                let program = program_name(direction);
                let fd = self
                    .program(direction)?
                    .fd()
                    .map_err(|e| attach_err(program, e.into()))?
                    .as_fd()
                    .as_raw_fd();
                if rtnl
                    .set(host_ifindex, direction, fd, program)
                    .map_err(|e| attach_err(program, e.into()))?
                {
                    created.push(direction);
                } else {
                    readopted = true;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for direction in created {
                if let Err(err) = rtnl.remove(host_ifindex, direction) {
                    warn!(ifname = host_ifname, error = %err, "cannot roll back filter");
                }
            }
            return Err(e);
        }
        for direction in Direction::ALL {
            let pin = self.link_pin(host_ifname, direction);
            if pin.exists() {
                raw_link::detach_and_unpin(&pin).map_err(|source| DataplaneError::PinDir {
                    action: "detach and remove",
                    path: pin,
                    source,
                })?;
                info!(
                    ifname = host_ifname,
                    "endpoint moved from a TCX link to a TC filter"
                );
            }
        }
        info!(
            ifname = host_ifname,
            ifindex = host_ifindex,
            readopted,
            "endpoint attached"
        );
        Ok(())
    }

    /// Removes netd's filters from `host_ifname` (and any TCX link pins an
    /// older netd left for it). A missing interface or filter is not an
    /// error, so this also cleans up after a half-done attach. The
    /// endpoint's counters go with its entries ([`Dataplane::remove_endpoint`]).
    /// Goes on past errors and returns the first one.
    pub fn detach_endpoint(&mut self, host_ifname: &str) -> Result<(), DataplaneError> {
        check_ifname(host_ifname)?;
        let mut first_error = None;
        if let Some(ifindex) = ifindex_of(host_ifname) {
            let removed = tc_filter::Rtnl::open().and_then(|mut rtnl| {
                Direction::ALL
                    .into_iter()
                    .try_for_each(|direction| rtnl.remove(ifindex, direction))
            });
            if let Err(source) = removed {
                first_error.get_or_insert(DataplaneError::Detach {
                    ifname: host_ifname.to_string(),
                    source,
                });
            }
        }
        for direction in Direction::ALL {
            let pin = self.link_pin(host_ifname, direction);
            if let Err(source) = raw_link::detach_and_unpin(&pin) {
                first_error.get_or_insert(DataplaneError::PinDir {
                    action: "detach and remove",
                    path: pin,
                    source,
                });
            }
        }
        debug!(ifname = host_ifname, "endpoint detached");
        first_error.map_or(Ok(()), Err)
    }

    /// Counters of every endpoint with a slot, summed over CPUs, by
    /// host-side ifindex (ascending).
    pub fn endpoint_stats(&self) -> Result<Vec<(u32, EndpointStats)>, DataplaneError> {
        let mut out = self
            .slots
            .iter()
            .map(|(ifindex, slot)| Ok((ifindex, self.counters.endpoint(slot)?)))
            .collect::<Result<Vec<_>, DataplaneError>>()?;
        out.sort_by_key(|(ifindex, _)| *ifindex);
        Ok(out)
    }

    /// The slot of the endpoint on host-side `ifindex` (its counters'
    /// index), if it has one.
    pub fn slot_of(&self, ifindex: u32) -> Option<u16> {
        self.slots.get(ifindex)
    }

    /// Drop counters summed over CPUs (see [`counters::Counters::drops`]).
    pub fn drop_stats(&self) -> Result<Vec<(DropReason, Direction, u64)>, DataplaneError> {
        self.counters.drops()
    }

    /// Names of the interfaces that still have a pinned TCX link from a netd
    /// that attached endpoints that way (before TC filters), sorted, whether
    /// or not the interface still exists. [`Dataplane::attach_endpoint`]
    /// moves the endpoints the engine knows to filters; the engine detaches
    /// the rest with [`Dataplane::detach_endpoint`].
    pub fn tcx_endpoint_pins(&self) -> Result<Vec<String>, DataplaneError> {
        let links_dir = self.pin_dir.join("links");
        let entries = match fs::read_dir(&links_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(DataplaneError::PinDir {
                    action: "read",
                    path: links_dir,
                    source,
                });
            }
        };
        let mut names = std::collections::BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|source| DataplaneError::PinDir {
                action: "read",
                path: links_dir.clone(),
                source,
            })?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            for direction in Direction::ALL {
                if let Some(ifname) = file_name
                    .strip_suffix(pin_suffix(direction))
                    .and_then(decode_ifname)
                {
                    names.insert(ifname);
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// The BPF filters on both hooks of `host_ifname` as the kernel reports
    /// them (netd's and any other; empty if the interface is gone): which
    /// program each one runs.
    pub fn attachments(&self, host_ifname: &str) -> Result<Vec<Filter>, DataplaneError> {
        check_ifname(host_ifname)?;
        let Some(ifindex) = ifindex_of(host_ifname) else {
            return Ok(Vec::new());
        };
        let inspect_err = |source| DataplaneError::InspectFilters {
            ifname: host_ifname.to_string(),
            source,
        };
        let mut rtnl = tc_filter::Rtnl::open().map_err(inspect_err)?;
        let mut out = Vec::new();
        for direction in Direction::ALL {
            out.extend(rtnl.filters(ifindex, direction).map_err(inspect_err)?);
        }
        Ok(out)
    }

    /// The loaded classifier for `direction`, e.g. to run it on a crafted
    /// packet with BPF_PROG_TEST_RUN (`aya::programs::TestRun`).
    pub fn program(&self, direction: Direction) -> Result<&SchedClassifier, DataplaneError> {
        self.classifier(program_name(direction))
    }

    /// The loaded classifier `name`.
    fn classifier(&self, name: &'static str) -> Result<&SchedClassifier, DataplaneError> {
        self.ebpf
            .program(name)
            .ok_or(DataplaneError::MissingInObject {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(|source| DataplaneError::LoadProgram {
                program: name,
                source: Box::new(source),
            })
    }

    /// The pin directory this data path was loaded with.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Removes the whole pin directory: every pinned link (detaching the
    /// programs from all endpoints) and every pinned map (losing all
    /// counters). For uninstalling netd or cleaning up after a test daemon,
    /// not for a normal stop. A missing directory is not an error.
    pub fn remove_pins(pin_dir: &Path) -> io::Result<()> {
        // Detach the links explicitly first: unlinking alone lets them (and
        // the programs) linger until the kernel's deferred release runs.
        if let Ok(entries) = fs::read_dir(pin_dir.join("links")) {
            for entry in entries.flatten() {
                if let Err(e) = raw_link::detach_and_unpin(&entry.path()) {
                    warn!(pin = %entry.path().display(), error = %e, "cannot detach pinned link");
                }
            }
        }
        match fs::remove_dir_all(pin_dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    fn link_pin(&self, host_ifname: &str, direction: Direction) -> PathBuf {
        self.pin_dir.join("links").join(format!(
            "{}{}",
            encode_ifname(host_ifname),
            pin_suffix(direction)
        ))
    }

    /// Zeroes the counters of a newly assigned `slot` (a previous owner
    /// may have left its counts there) and clears its backend mark.
    fn reset_slot(&mut self, slot: u16) -> Result<(), DataplaneError> {
        let map_err = map_error(map_names::EP_COUNTERS);
        let zeros = PerCpuValues::try_from(vec![EndpointStats::default(); self.nr_cpus])
            .map_err(|e| map_err(MapError::IoError(e)))?;
        self.ep_counters
            .set(u32::from(slot), zeros, 0)
            .map_err(map_err)?;
        self.write_backend_mark(slot, false)
    }
}

/// Keeps the calling thread on the CPU it runs on now. For callers of
/// BPF_PROG_TEST_RUN (tests, the bench) whose runs must share the
/// programs' per-CPU copies of lookups (`EP_CACHE`, `FLOW_CACHE`), as the
/// packets of a flow, handled on one CPU, do.
pub fn stay_on_this_cpu() -> std::io::Result<()> {
    // SAFETY: plain libc calls on a zeroed `cpu_set_t` owned here.
    let pinned = unsafe {
        let cpu = libc::sched_getcpu();
        if cpu < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if pinned != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `object` loaded with its maps (pinned in `maps_dir`) and the TC
/// programs loaded into the kernel (verified, not attached).
fn load_programs(object: &[u8], maps_dir: &Path, sizes: &MapSizes) -> Result<Ebpf, DataplaneError> {
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(maps_dir)
        .map_max_entries(map_names::NAT_CT, sizes.nat_ct_entries())
        .load(object)
        .map_err(|e| DataplaneError::LoadObject(Box::new(e)))?;
    for program in Direction::ALL.into_iter().map(program_name).chain([
        nat::UPLINK_PROGRAM,
        overlay::VXLAN_PROGRAM,
        overlay::BRIDGE_PROGRAM,
        macvlan::MACVLAN_PROGRAM,
    ]) {
        classifier_mut(&mut ebpf, program)?
            .load()
            .map_err(|source| DataplaneError::LoadProgram {
                program,
                source: Box::new(source),
            })?;
    }
    Ok(ebpf)
}

fn classifier_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut SchedClassifier, DataplaneError> {
    ebpf.program_mut(name)
        .ok_or(DataplaneError::MissingInObject {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|source| DataplaneError::LoadProgram {
            program: name,
            source: Box::new(source),
        })
}

fn take_map<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    convert: impl FnOnce(aya::maps::Map) -> Result<T, MapError>,
) -> Result<T, DataplaneError> {
    let map = ebpf.take_map(name).ok_or_else(|| missing_map(name))?;
    convert(map).map_err(map_error(name))
}

/// Linux's `dev_valid_name`; also keeps names usable as pin file names.
fn check_ifname(name: &str) -> Result<(), DataplaneError> {
    let valid = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if valid {
        Ok(())
    } else {
        Err(DataplaneError::InvalidInterfaceName(name.to_string()))
    }
}

/// Refuses an invalid `ifname` and one that is not (or no longer) the
/// interface `ifindex` in the caller's namespace.
fn check_interface(ifname: &str, ifindex: u32) -> Result<(), DataplaneError> {
    check_ifname(ifname)?;
    let found = ifindex_of(ifname);
    if found != Some(ifindex) {
        return Err(DataplaneError::InterfaceMismatch {
            ifname: ifname.to_string(),
            expected: ifindex,
            found,
        });
    }
    Ok(())
}

/// Whether `ip` can be an endpoint's or a host's own address: not
/// unspecified, broadcast, multicast or loopback.
fn unicast(ip: std::net::Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
}

/// The ifindex of `ifname` in the caller's network namespace.
pub(crate) fn ifindex_of(ifname: &str) -> Option<u32> {
    let name = CString::new(ifname).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Whether an interface with this ifindex exists in the caller's namespace.
fn ifindex_exists(ifindex: u32) -> bool {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
    let name = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    // Only "no such device" means gone; on any other failure keep the entry.
    !name.is_null()
        || !matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENXIO | libc::ENODEV)
        )
}

// The engine keeps the data path behind an async mutex shared across tasks.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Dataplane>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_kernel_rules() {
        for ok in ["veth0", "a", "nd1234567890123", "eth0.100", "x-y_z"] {
            assert!(check_ifname(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "nd12345678901234"] {
            assert!(check_ifname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn interface_names_round_trip_through_pin_names() {
        for name in ["veth0", "eth0.100", "a%2eb", "%", ".x.", "a_to", "b_from"] {
            let encoded = encode_ifname(name);
            assert!(!encoded.contains('.'), "{encoded}");
            assert_eq!(decode_ifname(&encoded).as_deref(), Some(name));
        }
        assert_eq!(decode_ifname("a%2"), None);
        assert_eq!(decode_ifname("a%41"), None);
    }

    #[test]
    fn pin_suffixes_are_distinct() {
        assert_ne!(
            pin_suffix(Direction::FromEndpoint),
            pin_suffix(Direction::ToEndpoint)
        );
    }
}

// Cgroup socket hooks: published ports for the host's own sockets (module
// `sock`, kernel side `netd-ebpf/src/sock.rs`).
mod sock;
pub use self::cgroup2::{cgroup2_root, cgroup2_root_or_mount, private_mount, remove_private_mount};
pub use self::sock::{SocketHook, SocketHookAttachment, host_netns_cookie};
