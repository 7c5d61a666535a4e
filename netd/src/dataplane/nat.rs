//! Masquerade, published ports and hairpin: the host facts (`HOST_CFG`),
//! the published ports (`PUBLISH`), the uplink program (`netd_uplink_in`)
//! and what the daemon can read back (`NAT_CT`, `NAT_STATS`,
//! `PUBLISH_STATS`). The packet work is in `netd-ebpf/src/nat.rs`.
//!
//! # Order (the programs act on whatever they find)
//! 1. [`Dataplane::set_host`] with the uplink's ifindex and address (and
//!    the daemon's netns cookie, for the socket hooks). Until then, or with
//!    `None`, nothing is translated: outside-bound traffic goes to the
//!    host's stack untranslated, as before NAT existed.
//! 2. [`Dataplane::attach_uplink`] on the uplink (TCX ingress): replies of
//!    masqueraded flows and connections to published ports from outside.
//! 3. [`Dataplane::set_publish`] per published port, after the target's
//!    endpoint is written and attached (`set_endpoint`, `attach_endpoint`).
//!    [`Dataplane::remove_publish`] when a port or its container goes away
//!    (that also ends the flows opened through it), and
//!    [`Dataplane::remove_flows_of`] with a removed container's address
//!    (ends its masqueraded flows too).
//! 4. On start, after writing everything again: [`Dataplane::retain_publish`]
//!    with every port that should exist, and [`Dataplane::detach_uplink`]
//!    for names in [`Dataplane::pinned_uplinks`] that are not the uplink any
//!    more.
//!
//! Everything here is idempotent, so reconciling is "write it all again".

use std::{
    collections::HashSet,
    fs, io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::{
    maps::{Array, HashMap, MapData, MapError, PerCpuHashMap, PerCpuValues},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
    },
};
use netd_common::{
    HostConfig, PublishKey, PublishTarget, ipv4_be, map_names,
    nat::{self, CtEntry, CtKey},
};
use tracing::{debug, info, warn};

use super::{
    BPF_ANY, BPF_NOEXIST, Dataplane, DataplaneError, LinkOpError, check_ifname, check_interface,
    classifier_mut, decode_ifname, encode_ifname,
    map_access::{addr, errno, map_error, removed},
    raw_link,
};
pub use netd_common::{
    Proto,
    nat::{CtEntry as ConntrackEntry, CtKey as ConntrackKey},
};

/// Program attached to TCX ingress of the uplink.
pub const UPLINK_PROGRAM: &str = "netd_uplink_in";

/// Suffix of the uplink link pin, `<pin>/links/<ifname>_uplink`. Not a
/// suffix of `_from`/`_to`, so `tcx_endpoint_pins` ignores these pins.
const UPLINK_PIN_SUFFIX: &str = "_uplink";

/// Where `NAT_CT` waits while a map of the configured size replaces it:
/// `maps/NAT_CT_resize` (bpffs refuses names with a dot). The loader never
/// opens it (no map has this name), and a start that finds it finishes the
/// resize an interrupted one began.
const RESIZE_SUFFIX: &str = "_resize";

/// How an existing uplink link pin relates to the uplink being attached.
enum PinState {
    /// Still attached to this ifindex: keep it.
    Adopt(super::Attachment),
    /// No pin.
    Missing,
    /// A pin for another (deleted or recreated) interface, now removed.
    ReplacedStale,
}

/// Moves the pinned `NAT_CT` (sized `found`) aside so that the loader
/// creates one of `wanted` entries; [`Dataplane::finish_conntrack_resize`]
/// then moves the flows over. If an interrupted resize already set a map
/// aside, that one still holds the flows and the pinned `NAT_CT` only what
/// the interrupted run added since: it is dropped.
pub(super) fn set_aside_for_resize(
    maps_dir: &Path,
    found: u32,
    wanted: u32,
) -> Result<(), DataplaneError> {
    let pin = maps_dir.join(map_names::NAT_CT);
    let aside = resize_pin(maps_dir);
    let result = if aside.exists() {
        warn!(pin = %pin.display(), "an interrupted conntrack resize left two maps; keeping the older one's flows");
        fs::remove_file(&pin)
    } else {
        info!(
            from = found,
            to = wanted,
            "resizing the conntrack map (conntrack-max changed)"
        );
        fs::rename(&pin, &aside)
    };
    result.map_err(|source| DataplaneError::PinDir {
        action: "move aside",
        path: pin,
        source,
    })
}

fn resize_pin(maps_dir: &Path) -> PathBuf {
    maps_dir.join(format!("{}{RESIZE_SUFFIX}", map_names::NAT_CT))
}

/// Counters of the NAT data path, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatStats {
    /// `NAT_CT` entries of live flows (two per flow): not timed out.
    pub conntrack_entries: u64,
    /// `NAT_CT` entries that timed out but were not reclaimed yet (the LRU
    /// or the next packet of the flow removes them).
    pub conntrack_expired: u64,
    /// Size of `NAT_CT`. When it is full the least recently used entries
    /// are evicted.
    pub conntrack_capacity: u64,
    /// Masqueraded flows created (container to outside).
    pub snat_flows: u64,
    /// Flows created through a published port from outside.
    pub dnat_flows: u64,
    /// Hairpin flows created (container to a published port through a host
    /// address).
    pub hairpin_flows: u64,
    /// Flows removed by TCP (RST, or FIN both ways then the last ACK).
    pub closed_flows: u64,
    /// Flows removed after timing out.
    pub expired_flows: u64,
    /// Source ports found taken while choosing one (collisions).
    pub port_collisions: u64,
    /// Packets translated, every direction.
    pub translated_packets: u64,
    /// Flows created from containers to services' virtual IPs.
    pub lb_flows: u64,
    /// Flows the host itself opened to services' backends on other hosts.
    pub host_flows: u64,
    /// Flows other hosts passed on to local backends for clients outside
    /// the cluster's networks (the routing mesh).
    pub mesh_flows: u64,
    /// Flows created per published port, sorted by (proto, port, address).
    pub published: Vec<PublishedPortStats>,
}

/// Flows translated through one published port (from outside and hairpin;
/// host-originated connections are redirected by the socket hooks and not
/// counted here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishedPortStats {
    /// `None`: every host address.
    pub host_addr: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    pub flows: u64,
}

/// A published port as `PUBLISH` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub host_addr: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: Proto,
    /// The container's address; for a service, its virtual IP.
    pub target: Ipv4Addr,
    pub target_port: u16,
    /// 0 for a service.
    pub target_ifindex: u32,
    /// The container's network; for a service, the service index.
    pub net_index: u32,
    /// Published to a service ([`Dataplane::set_service_publish`]): each
    /// new flow goes to the next backend.
    pub service: bool,
}

fn publish_key(host_addr: Option<Ipv4Addr>, host_port: u16, proto: Proto) -> PublishKey {
    PublishKey {
        addr: host_addr.map_or(0, |a| ipv4_be(a.octets())),
        port: host_port.to_be(),
        proto: proto.number(),
        _pad: 0,
    }
}

/// `(host_addr, host_port, proto)` of a `PUBLISH` key, `None` for keys this
/// build cannot have written.
pub(super) fn decode_publish_key(key: &PublishKey) -> Option<(Option<Ipv4Addr>, u16, Proto)> {
    let proto = Proto::from_u8(key.proto)?;
    let host_addr = (key.addr != 0).then(|| addr(key.addr));
    Some((host_addr, u16::from_be(key.port), proto))
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub(super) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

impl Dataplane {
    /// Writes `HOST_CFG`: the uplink (`(ifindex, address)`, `None` = no
    /// uplink, which turns masquerade and DNAT from outside off) and the
    /// daemon's network namespace cookie (the socket hooks act only there).
    /// Idempotent; flows already translated keep their entries.
    pub fn set_host(
        &mut self,
        uplink: Option<(u32, Ipv4Addr)>,
        netns_cookie: u64,
    ) -> Result<(), DataplaneError> {
        let value = HostConfig {
            uplink_ifindex: uplink.map_or(0, |(ifindex, _)| ifindex),
            uplink_addr: uplink.map_or(0, |(_, a)| ipv4_be(a.octets())),
            netns_cookie,
        };
        let mut map: Array<&mut MapData, HostConfig> = self.object_map_mut(map_names::HOST_CFG)?;
        map.set(0, value, 0)
            .map_err(map_error(map_names::HOST_CFG))?;
        debug!(
            ?uplink,
            netns_cookie, "host configuration written to the data path"
        );
        Ok(())
    }

    /// The current `HOST_CFG` entry.
    pub fn host_config(&self) -> Result<HostConfig, DataplaneError> {
        let map: Array<&MapData, HostConfig> = self.object_map(map_names::HOST_CFG)?;
        map.get(&0, 0).map_err(map_error(map_names::HOST_CFG))
    }

    /// Publishes `host_addr:host_port/proto` (`None` = every host address,
    /// `Some(127.0.0.1)` = loopback only, never reachable from outside) to
    /// `target:target_port` of the endpoint behind the host-side veth
    /// `target_ifindex` on network `net_index`. Overwrites an existing entry
    /// for the same key (new flows go to the new target; flows already
    /// translated keep theirs). Keeps that port's flow counter across
    /// restarts.
    #[allow(clippy::too_many_arguments)]
    pub fn set_publish(
        &mut self,
        host_addr: Option<Ipv4Addr>,
        host_port: u16,
        proto: Proto,
        target: Ipv4Addr,
        target_port: u16,
        target_ifindex: u32,
        net_index: u32,
    ) -> Result<(), DataplaneError> {
        if host_port == 0
            || target_port == 0
            || target_ifindex == 0
            || target.is_unspecified()
            || target.is_broadcast()
            || target.is_multicast()
            || host_addr.is_some_and(|a| a.is_unspecified() || a.is_multicast())
        {
            return Err(DataplaneError::InvalidPublish {
                port: format!(
                    "{}:{host_port}/{} -> {target}:{target_port} (ifindex {target_ifindex})",
                    host_addr.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    proto.as_str()
                ),
            });
        }
        let value = PublishTarget {
            addr: ipv4_be(target.octets()),
            port: target_port.to_be(),
            flags: 0,
            ifindex: target_ifindex,
            net_index,
        };
        self.write_publish(host_addr, host_port, proto, value)?;
        debug!(
            ?host_addr,
            host_port,
            proto = proto.as_str(),
            %target,
            target_port,
            target_ifindex,
            "published port written to the data path"
        );
        Ok(())
    }

    /// Writes the `PUBLISH` entry of `host_addr:host_port/proto`, its
    /// `PUBLISH_STATS` counter first (kept if it exists) so that the first
    /// translated flow is counted.
    pub(super) fn write_publish(
        &mut self,
        host_addr: Option<Ipv4Addr>,
        host_port: u16,
        proto: Proto,
        value: PublishTarget,
    ) -> Result<(), DataplaneError> {
        let key = publish_key(host_addr, host_port, proto);
        let zeros = PerCpuValues::try_from(vec![0u64; self.nr_cpus])
            .map_err(|e| map_error(map_names::PUBLISH_STATS)(MapError::IoError(e)))?;
        let mut stats: PerCpuHashMap<&mut MapData, PublishKey, u64> =
            self.object_map_mut(map_names::PUBLISH_STATS)?;
        match stats.insert(key, zeros, BPF_NOEXIST) {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(map_error(map_names::PUBLISH_STATS)(e)),
        }
        let mut publish: HashMap<&mut MapData, PublishKey, PublishTarget> =
            self.object_map_mut(map_names::PUBLISH)?;
        publish
            .insert(key, value, BPF_ANY)
            .map_err(map_error(map_names::PUBLISH))
    }

    /// Unpublishes `host_addr:host_port/proto` (as given to
    /// [`Dataplane::set_publish`]) and ends the flows opened through it
    /// (from outside and hairpin). A missing entry is not an error.
    pub fn remove_publish(
        &mut self,
        host_addr: Option<Ipv4Addr>,
        host_port: u16,
        proto: Proto,
    ) -> Result<(), DataplaneError> {
        let key = publish_key(host_addr, host_port, proto);
        self.remove_publish_key(&key)?;
        debug!(
            ?host_addr,
            host_port,
            proto = proto.as_str(),
            "published port removed from the data path"
        );
        Ok(())
    }

    /// Garbage collection (on start, after writing every port again):
    /// removes every published port that is not in `keep`, with its counter
    /// and its flows.
    pub fn retain_publish(
        &mut self,
        keep: &[(Option<Ipv4Addr>, u16, Proto)],
    ) -> Result<(), DataplaneError> {
        let keep: HashSet<PublishKey> = keep
            .iter()
            .map(|(a, port, proto)| publish_key(*a, *port, *proto))
            .collect();
        let mut stale = Vec::new();
        {
            let publish: HashMap<&MapData, PublishKey, PublishTarget> =
                self.object_map(map_names::PUBLISH)?;
            for key in publish.keys() {
                let key = key.map_err(map_error(map_names::PUBLISH))?;
                if !keep.contains(&key) {
                    stale.push(key);
                }
            }
            let stats: PerCpuHashMap<&MapData, PublishKey, u64> =
                self.object_map(map_names::PUBLISH_STATS)?;
            for key in stats.keys() {
                let key = key.map_err(map_error(map_names::PUBLISH_STATS))?;
                if !keep.contains(&key) && !stale.contains(&key) {
                    stale.push(key);
                }
            }
        }
        for key in &stale {
            self.remove_publish_key(key)?;
        }
        if !stale.is_empty() {
            info!(ports = stale.len(), "removed stale published ports");
        }
        Ok(())
    }

    /// Every `PUBLISH` entry, sorted by (proto, port, address).
    pub fn published(&self) -> Result<Vec<Published>, DataplaneError> {
        let publish: HashMap<&MapData, PublishKey, PublishTarget> =
            self.object_map(map_names::PUBLISH)?;
        let mut out = Vec::new();
        for entry in publish.iter() {
            let (key, target) = entry.map_err(map_error(map_names::PUBLISH))?;
            let Some((host_addr, host_port, proto)) = decode_publish_key(&key) else {
                continue;
            };
            out.push(Published {
                host_addr,
                host_port,
                proto,
                target: addr(target.addr),
                target_port: u16::from_be(target.port),
                target_ifindex: target.ifindex,
                net_index: target.net_index,
                service: target.is_service(),
            });
        }
        out.sort_by_key(|p| (p.proto, p.host_port, p.host_addr));
        Ok(out)
    }

    /// Ends every translated flow in which `ip` takes part (as the
    /// container, the target of a published port, or the sender of a
    /// hairpin flow): call it when the endpoint with that address goes away,
    /// so that its successor on the same address does not inherit them.
    /// Returns how many flows were removed.
    pub fn remove_flows_of(&mut self, ip: Ipv4Addr) -> Result<usize, DataplaneError> {
        let ip = ipv4_be(ip.octets());
        let n = self.remove_flows(|key, entry| {
            key.saddr == ip || key.daddr == ip || entry.new_saddr == ip || entry.new_daddr == ip
        })?;
        if n > 0 {
            debug!(ip = %addr(ip), flows = n, "translated flows removed");
        }
        // With its flows gone, a former backend's reply mark can go too.
        self.gc_lb_backends(None)?;
        Ok(n)
    }

    /// Every `NAT_CT` entry (key, entry), sorted by key: for debugging and
    /// tests. Two per flow; see `netd_common::nat` for how to read them.
    pub fn conntrack(&self) -> Result<Vec<(ConntrackKey, ConntrackEntry)>, DataplaneError> {
        let ct: HashMap<&MapData, CtKey, CtEntry> = self.object_map(map_names::NAT_CT)?;
        let mut out = Vec::new();
        for entry in ct.iter() {
            match entry {
                Ok(kv) => out.push(kv),
                // An entry deleted between "next key" and "lookup".
                Err(MapError::KeyNotFound) => {}
                Err(e) if errno(&e) == Some(libc::ENOENT) => {}
                Err(e) => return Err(map_error(map_names::NAT_CT)(e)),
            }
        }
        out.sort_by_key(|(k, _)| *k);
        Ok(out)
    }

    /// NAT counters and conntrack occupancy, counted now (a census of
    /// `NAT_CT` in batches: see [`super::Counters::conntrack_census`]).
    pub fn nat_stats(&self) -> Result<NatStats, DataplaneError> {
        let census = self.counters.conntrack_census()?;
        Ok(NatStats {
            conntrack_entries: census.live,
            conntrack_expired: census.expired,
            ..self.counters.nat()?
        })
    }

    /// Attaches `netd_uplink_in` to TCX ingress of the uplink `ifname`
    /// (`ifindex`) and pins the link at `<pin>/links/<ifname>_uplink`.
    /// Idempotent and restart-safe like [`Dataplane::attach_endpoint`]: a
    /// pin still attached to `ifindex` is adopted (switched atomically to
    /// the loaded program if it runs an older one), a stale pin (the
    /// interface was recreated) is replaced.
    pub fn attach_uplink(&mut self, ifname: &str, ifindex: u32) -> Result<(), DataplaneError> {
        check_interface(ifname, ifindex)?;
        let pin = self.uplink_pin(ifname);
        let state = match raw_link::pinned_link(&pin) {
            Ok(a)
                if a.is_tcx
                    && a.ifindex == ifindex
                    && a.direction == Some(netd_common::Direction::FromEndpoint) =>
            {
                PinState::Adopt(a)
            }
            Ok(a) => {
                info!(pin = %pin.display(), pinned_ifindex = a.ifindex, ifindex, "replacing stale uplink pin");
                raw_link::detach_and_unpin(&pin).map_err(|source| DataplaneError::PinDir {
                    action: "detach and remove",
                    path: pin.clone(),
                    source,
                })?;
                PinState::ReplacedStale
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PinState::Missing,
            Err(source) => return Err(DataplaneError::InspectLink { path: pin, source }),
        };
        let attach_err = |source: LinkOpError| DataplaneError::Attach {
            program: UPLINK_PROGRAM,
            ifname: ifname.to_string(),
            source: Box::new(source),
        };
        let classifier = classifier_mut(&mut self.ebpf, UPLINK_PROGRAM)?;
        match state {
            PinState::Adopt(attachment) => {
                let current = classifier
                    .info()
                    .map_err(|source| DataplaneError::ProgramInfo {
                        program: UPLINK_PROGRAM,
                        source: Box::new(source),
                    })?
                    .id();
                if attachment.program_id != current {
                    let update_err = |source: LinkOpError| DataplaneError::UpdateLink {
                        program: UPLINK_PROGRAM,
                        path: pin.clone(),
                        source: Box::new(source),
                    };
                    let pinned = PinnedLink::from_pin(&pin).map_err(|e| update_err(e.into()))?;
                    let link = SchedClassifierLink::try_from(FdLink::from(pinned))
                        .map_err(|e| update_err(e.into()))?;
                    let link_id = classifier
                        .attach_to_link(link)
                        .map_err(|e| update_err(e.into()))?;
                    drop(
                        classifier
                            .take_link(link_id)
                            .map_err(|e| update_err(e.into()))?,
                    );
                    info!(
                        ifname,
                        old_program_id = attachment.program_id,
                        new_program_id = current,
                        "uplink link switched to the loaded program"
                    );
                }
            }
            PinState::Missing | PinState::ReplacedStale => {
                let link_id = classifier
                    .attach_with_options(
                        ifname,
                        TcAttachType::Ingress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(|e| attach_err(e.into()))?;
                let link = classifier
                    .take_link(link_id)
                    .map_err(|e| attach_err(e.into()))?;
                let fd_link = FdLink::try_from(link).map_err(|e| attach_err(e.into()))?;
                fd_link
                    .pin(&pin)
                    .map_err(|source| DataplaneError::PinLink {
                        program: UPLINK_PROGRAM,
                        ifname: ifname.to_string(),
                        path: pin.clone(),
                        source: Box::new(source),
                    })?;
            }
        }
        info!(ifname, ifindex, "uplink attached");
        Ok(())
    }

    /// Removes the uplink link pin of `ifname` (detaching the program). A
    /// missing pin is not an error.
    pub fn detach_uplink(&mut self, ifname: &str) -> Result<(), DataplaneError> {
        check_ifname(ifname)?;
        let pin = self.uplink_pin(ifname);
        raw_link::detach_and_unpin(&pin).map_err(|source| DataplaneError::PinDir {
            action: "detach and remove",
            path: pin,
            source,
        })?;
        debug!(ifname, "uplink detached");
        Ok(())
    }

    /// Names of the interfaces with a pinned uplink link, sorted.
    pub fn pinned_uplinks(&self) -> Result<Vec<String>, DataplaneError> {
        let links_dir = self.pin_dir.join("links");
        let entries = match std::fs::read_dir(&links_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(DataplaneError::PinDir {
                    action: "read",
                    path: links_dir,
                    source,
                });
            }
        };
        let mut names = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            if let Some(name) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(UPLINK_PIN_SUFFIX))
                .and_then(decode_ifname)
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// The pinned uplink link of `ifname` as the kernel sees it, if any.
    pub fn uplink_attachment(
        &self,
        ifname: &str,
    ) -> Result<Option<super::Attachment>, DataplaneError> {
        check_ifname(ifname)?;
        let pin = self.uplink_pin(ifname);
        match raw_link::pinned_link(&pin) {
            Ok(a) => Ok(Some(a)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(DataplaneError::InspectLink { path: pin, source }),
        }
    }

    /// The loaded `netd_uplink_in`, e.g. for BPF_PROG_TEST_RUN.
    pub fn uplink_program(&self) -> Result<&SchedClassifier, DataplaneError> {
        self.classifier(UPLINK_PROGRAM)
    }

    fn uplink_pin(&self, ifname: &str) -> PathBuf {
        self.pin_dir
            .join("links")
            .join(format!("{}{UPLINK_PIN_SUFFIX}", encode_ifname(ifname)))
    }

    fn remove_publish_key(&mut self, key: &PublishKey) -> Result<(), DataplaneError> {
        let mut publish: HashMap<&mut MapData, PublishKey, PublishTarget> =
            self.object_map_mut(map_names::PUBLISH)?;
        removed(publish.remove(key)).map_err(map_error(map_names::PUBLISH))?;
        let mut stats: PerCpuHashMap<&mut MapData, PublishKey, u64> =
            self.object_map_mut(map_names::PUBLISH_STATS)?;
        removed(stats.remove(key)).map_err(map_error(map_names::PUBLISH_STATS))?;
        // The flows opened through the port: their first entry is keyed by
        // the packet that arrived for it ({remote or container, host
        // address, *, host port}).
        let key = *key;
        self.remove_flows(|k, e| {
            e.flags & (nat::CT_F_DNAT | nat::CT_F_HAIRPIN) != 0
                && e.flags & nat::CT_F_REPLY == 0
                && k.proto == key.proto
                && k.dport == key.port
                && (key.addr == 0 || k.daddr == key.addr)
        })?;
        Ok(())
    }

    /// Removes every flow one of whose entries matches `pred`, both
    /// entries. Returns how many flows that was.
    pub(super) fn remove_flows(
        &mut self,
        pred: impl Fn(&CtKey, &CtEntry) -> bool,
    ) -> Result<usize, DataplaneError> {
        let mut doomed = std::collections::BTreeSet::new();
        for (key, entry) in self.conntrack()? {
            if pred(&key, &entry) {
                doomed.insert(key);
                doomed.insert(entry.peer_key(key.proto));
            }
        }
        let mut ct: HashMap<&mut MapData, CtKey, CtEntry> =
            self.object_map_mut(map_names::NAT_CT)?;
        let mut entries: usize = 0;
        let mut failed = Ok(());
        for key in &doomed {
            match ct.remove(key) {
                Ok(()) => entries += 1,
                Err(e) => {
                    failed = removed(Err(e)).map_err(map_error(map_names::NAT_CT));
                    if failed.is_err() {
                        break;
                    }
                }
            }
        }
        // Also after a failure half-way: what was removed must not live on
        // in the programs' copies.
        self.advance_generation()?;
        failed?;
        // A flow whose partner entry was already gone (evicted) counts too.
        Ok(entries.div_ceil(2))
    }

    /// Copies the flows of a `NAT_CT` that [`set_aside_for_resize`] moved
    /// away into the new one and unpins the old map, so that changing
    /// `conntrack-max` keeps established connections working. Flows the old
    /// programs add between the copy and the endpoints' switch to the new
    /// programs (the restart's reconcile) are not carried over. Shrinking
    /// below the live flows keeps the most recently copied ones.
    pub(super) fn finish_conntrack_resize(
        &mut self,
        maps_dir: &Path,
    ) -> Result<(), DataplaneError> {
        let aside = resize_pin(maps_dir);
        let old = match MapData::from_pin(&aside) {
            Ok(data) => data,
            Err(MapError::SyscallError(e)) if e.io_error.kind() == io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return Err(map_error(map_names::NAT_CT)(e)),
        };
        let old: HashMap<MapData, CtKey, CtEntry> = aya::maps::Map::from_map_data(old)
            .and_then(HashMap::try_from)
            .map_err(map_error(map_names::NAT_CT))?;
        let mut new: HashMap<&mut MapData, CtKey, CtEntry> =
            self.object_map_mut(map_names::NAT_CT)?;
        let mut copied = 0u64;
        for entry in old.iter() {
            match entry {
                Ok((key, value)) => {
                    new.insert(key, value, BPF_ANY)
                        .map_err(map_error(map_names::NAT_CT))?;
                    copied += 1;
                }
                // An entry that timed out and was deleted mid-walk.
                Err(MapError::KeyNotFound) => {}
                Err(e) if errno(&e) == Some(libc::ENOENT) => {}
                Err(e) => return Err(map_error(map_names::NAT_CT)(e)),
            }
        }
        fs::remove_file(&aside).map_err(|source| DataplaneError::PinDir {
            action: "remove",
            path: aside,
            source,
        })?;
        info!(
            entries = copied,
            "conntrack map resized; its flows carried over"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_keys_are_in_network_order() {
        let key = publish_key(Some(Ipv4Addr::new(127, 0, 0, 1)), 8080, Proto::Tcp);
        assert_eq!(key.addr.to_ne_bytes(), [127, 0, 0, 1]);
        assert_eq!(key.port.to_ne_bytes(), 8080u16.to_be_bytes());
        assert_eq!(key.proto, 6);
        assert_eq!(
            decode_publish_key(&key),
            Some((Some(Ipv4Addr::new(127, 0, 0, 1)), 8080, Proto::Tcp))
        );
        let any = publish_key(None, 53, Proto::Udp);
        assert_eq!(any.addr, 0);
        assert_eq!(decode_publish_key(&any), Some((None, 53, Proto::Udp)));
    }

    #[test]
    fn uplink_pins_are_not_endpoint_pins() {
        for suffix in ["_from", "_to"] {
            assert!(!UPLINK_PIN_SUFFIX.ends_with(suffix));
            assert!(!suffix.ends_with(UPLINK_PIN_SUFFIX));
        }
    }
}
