//! Services: a virtual IP balanced round-robin over backends, in the
//! kernel (`netd-ebpf/src/lb.rs`). This module writes the service maps
//! (`LB_SVC`, `LB_RR`, `LB_STATS`, `LB_BACKENDS`; layouts in
//! `netd_common::lb`) and reads their counters back.
//!
//! # Where services are balanced
//! - a container on the service's network sending to the VIP (any port,
//!   TCP, UDP, ICMP echo): `netd_from_ep` picks a backend and records it in
//!   `NAT_CT`, replies come back from the VIP;
//! - the host itself (`connect()`/`sendto()` to the VIP): the socket hooks
//!   rewrite the socket's destination to a backend;
//! - a port published to the service ([`Dataplane::set_service_publish`]):
//!   from outside (`netd_uplink_in`), from containers through a host
//!   address (hairpin) and from the host (socket hooks), each new flow to
//!   the next backend.
//!
//! Containers resolve the VIP with ARP like their gateway (the answer is
//! the gateway's MAC); the VIP is not an endpoint and needs no
//! `set_endpoint`.
//!
//! # Backends on other hosts
//! A service of an overlay network balances over its replicas on every
//! host ([`Backend::Remote`]: an endpoint written with
//! `set_remote_endpoint`), from every path above: their flows go through
//! the tunnel, their hosts send the replies back through it, and this
//! host translates them (`netd_vxlan_in`; `dataplane::overlay` has the
//! routing mesh's side). `set_service` marks such an endpoint in
//! `OVL_REMOTE` as it marks a local backend in `LB_BACKENDS`, and unmarks
//! it the same way.
//!
//! # Order (the engine's calls)
//! 1. `set_network` of the service's network; every replica's
//!    `set_endpoint` + `attach_endpoint`.
//! 2. [`Dataplane::set_service`] with the replicas (again after every
//!    change: scale up/down, a replica joining or leaving). A backend left
//!    out stops receiving new flows at once; its established flows go on
//!    until they end or the replica goes.
//! 3. [`Dataplane::set_service_publish`] for the service's published
//!    ports (after `set_service`, so that the first flow finds backends).
//! 4. A replica going away: `set_service` without it first, then
//!    `remove_flows_of(its ip)`, then its endpoint; a remote one:
//!    `set_service` without it, then `remove_remote_endpoint` (its flows
//!    end with it over there).
//! 5. Removing a service: `remove_publish` of its ports, then
//!    [`Dataplane::remove_service`] (ends the flows through the VIP).
//! 6. On start, after writing everything again:
//!    [`Dataplane::retain_services`] with every service that should exist
//!    (and `retain_publish` with every published port, services' included).
//!
//! Everything is idempotent, so reconciling is "write it all again".

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::Ipv4Addr,
};

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuHashMap, PerCpuValues};
use netd_common::{
    PUBLISH_F_SERVICE, PublishTarget, ipv4_be,
    lb::{LbStatsKey, SLOT_FRONTEND, SvcKey, SvcSlot},
    limits::{MAX_BACKENDS, MAX_SERVICES},
    map_names,
    nat::{CT_F_DNAT, CT_F_HAIRPIN, CT_F_LB, CT_F_REPLY, CT_F_TUNNEL},
};
use tracing::{debug, info, warn};

use super::{
    BPF_ANY, BPF_NOEXIST, Dataplane, DataplaneError, Proto,
    map_access::{addr, errno, found, map_error, missing, removed},
    unicast,
};

/// A service's backend, as the load balancer reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    /// An endpoint of this host: its address and its host-side veth's
    /// ifindex.
    Local { ip: Ipv4Addr, ifindex: u32 },
    /// An endpoint of the service's (overlay) network on another host,
    /// written with [`Dataplane::set_remote_endpoint`]: its flows go
    /// through the tunnel.
    Remote { ip: Ipv4Addr },
}

impl Backend {
    /// Its address.
    pub fn ip(&self) -> Ipv4Addr {
        match *self {
            Backend::Local { ip, .. } | Backend::Remote { ip } => ip,
        }
    }

    /// `(ipv4_be address, ifindex)` as its `LB_SVC` slot holds it
    /// (ifindex 0: on another host).
    fn slot(&self) -> (u32, u32) {
        match *self {
            Backend::Local { ip, ifindex } => (ipv4_be(ip.octets()), ifindex),
            Backend::Remote { ip } => (ipv4_be(ip.octets()), 0),
        }
    }

    /// The backend a slot `(ipv4_be address, ifindex)` holds.
    fn of_slot((ip, ifindex): (u32, u32)) -> Backend {
        match ifindex {
            0 => Backend::Remote { ip: addr(ip) },
            ifindex => Backend::Local {
                ip: addr(ip),
                ifindex,
            },
        }
    }
}

/// A service as `LB_SVC` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub index: u32,
    pub vip: Ipv4Addr,
    /// In slot order (the round-robin order).
    pub backends: Vec<Backend>,
}

/// A service as read back from `LB_SVC`: its frontend's service index and
/// its backend slots 1..=count as `(ipv4_be address, ifindex)`.
type StoredService = (u32, Vec<(u32, u32)>);

fn invalid(index: u32, vip: Ipv4Addr, reason: impl Into<String>) -> DataplaneError {
    DataplaneError::InvalidService {
        index,
        vip,
        reason: reason.into(),
    }
}

/// Refuses what the programs could not serve (see also
/// [`Dataplane::check_remote_backends`]).
fn check_service(index: u32, vip: Ipv4Addr, backends: &[Backend]) -> Result<(), DataplaneError> {
    if index >= MAX_SERVICES {
        return Err(invalid(
            index,
            vip,
            format!("the service index must be below {MAX_SERVICES}"),
        ));
    }
    if !unicast(vip) {
        return Err(invalid(index, vip, "the VIP must be a unicast address"));
    }
    if backends.len() > MAX_BACKENDS as usize {
        return Err(invalid(
            index,
            vip,
            format!("at most {MAX_BACKENDS} backends per service"),
        ));
    }
    let mut seen = HashSet::new();
    for backend in backends {
        let ip = backend.ip();
        if !unicast(ip) || ip == vip || matches!(backend, Backend::Local { ifindex: 0, .. }) {
            return Err(invalid(
                index,
                vip,
                format!(
                    "backend {backend:?} needs a unicast address other than the VIP and, on this host, its host-side veth's ifindex"
                ),
            ));
        }
        if !seen.insert(ip) {
            return Err(invalid(index, vip, format!("backend {ip} is listed twice")));
        }
    }
    Ok(())
}

impl Dataplane {
    /// Writes or replaces the service `index` with virtual IP `vip` and
    /// `backends` (its replicas here and on other hosts, in round-robin
    /// order). Idempotent. A remote backend must be written with
    /// [`Dataplane::set_remote_endpoint`] first, on the network whose
    /// subnet holds the VIP.
    ///
    /// Order, so that the programs never see a half-written service: the
    /// backends' counters (`LB_STATS`) and reply marks (`LB_BACKENDS`), then
    /// slots 1..=n, then the count in slot 0; when shrinking, the stale
    /// slots go after the count. A backend that is left out stops
    /// receiving new flows at once (its slot is overwritten first); flows
    /// already on it keep going. An empty `backends` keeps the service
    /// with a count of 0: its new flows are dropped (`NoBackend`). The
    /// round-robin cursor starts at the first backend for a new service
    /// and carries on for an existing one.
    pub fn set_service(
        &mut self,
        index: u32,
        vip: Ipv4Addr,
        backends: &[Backend],
    ) -> Result<(), DataplaneError> {
        check_service(index, vip, backends)?;
        self.check_remote_backends(index, vip, backends)?;
        let vip_be = ipv4_be(vip.octets());
        let old = self.read_service(vip_be)?;
        let new: Vec<(u32, u32)> = backends.iter().map(Backend::slot).collect();

        // 1. Bookkeeping of the backends: counters (kept if they exist) and
        //    the marks that make their replies be looked up in NAT_CT.
        {
            let nr_cpus = self.nr_cpus;
            let mut stats: PerCpuHashMap<&mut MapData, LbStatsKey, u64> =
                self.object_map_mut(map_names::LB_STATS)?;
            for (ip, _) in &new {
                let key = LbStatsKey {
                    svc_index: index,
                    backend: *ip,
                };
                let zeros = PerCpuValues::try_from(vec![0u64; nr_cpus])
                    .map_err(|e| map_error(map_names::LB_STATS)(MapError::IoError(e)))?;
                match stats.insert(key, zeros, BPF_NOEXIST) {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                    Err(e) => return Err(map_error(map_names::LB_STATS)(e)),
                }
            }
        }
        for &(ip, ifindex) in &new {
            match ifindex {
                0 => self.mark_remote_backend(ip, true)?,
                ifindex => self.mark_backend(ifindex, true)?,
            }
        }
        if old
            .as_ref()
            .is_none_or(|(old_index, _)| *old_index != index)
        {
            // A new service starts at its first backend (the cursor may hold
            // a value of a service that had this index before).
            let mut rr: Array<&mut MapData, u64> = self.object_map_mut(map_names::LB_RR)?;
            rr.set(index, 0, 0).map_err(map_error(map_names::LB_RR))?;
        }

        // 2. The backend slots, 3. the count.
        let old_count = old.as_ref().map_or(0, |(_, slots)| slots.len());
        {
            let mut svc: HashMap<&mut MapData, SvcKey, SvcSlot> =
                self.object_map_mut(map_names::LB_SVC)?;
            for (i, (ip, ifindex)) in new.iter().enumerate() {
                let slot = SvcSlot {
                    backend: *ip,
                    ifindex: *ifindex,
                    svc_index: index,
                    ..SvcSlot::default()
                };
                svc.insert(SvcKey::new(vip_be, i as u32 + 1), slot, BPF_ANY)
                    .map_err(map_error(map_names::LB_SVC))?;
            }
            let frontend = SvcSlot {
                count: new.len() as u32,
                svc_index: index,
                ..SvcSlot::default()
            };
            svc.insert(SvcKey::new(vip_be, SLOT_FRONTEND), frontend, BPF_ANY)
                .map_err(map_error(map_names::LB_SVC))?;
            // 4. Slots beyond the new count, now unreachable.
            for slot in new.len() + 1..=old_count {
                removed(svc.remove(&SvcKey::new(vip_be, slot as u32)))
                    .map_err(map_error(map_names::LB_SVC))?;
            }
        }

        // 5. What the backends that left no longer need.
        if let Some((old_index, old_slots)) = &old {
            let stale: Vec<(u32, u32)> = old_slots
                .iter()
                .filter(|(ip, _)| *old_index != index || !new.iter().any(|(n, _)| n == ip))
                .copied()
                .collect();
            self.remove_lb_stats(*old_index, stale.iter().map(|(ip, _)| *ip))?;
            // Those the new list does not have under their mark's key (a
            // local one's ifindex, a remote one's address) may lose it.
            let gone: Vec<(u32, u32)> = stale
                .into_iter()
                .filter(|&(ip, ifindex)| {
                    !new.iter().any(|&(n_ip, n_ifindex)| match ifindex {
                        0 => n_ifindex == 0 && n_ip == ip,
                        _ => n_ifindex == ifindex,
                    })
                })
                .collect();
            self.gc_lb_backends(Some(&gone))?;
        }
        debug!(index, %vip, backends = new.len(), old_backends = old_count, "service written to the data path");
        Ok(())
    }

    /// Removes the service with virtual IP `vip` (index `index`): its
    /// frontend first (new flows to the VIP stop being balanced), then its
    /// backend slots, its counters, and the flows from containers through
    /// the VIP. Flows through ports published to it end with
    /// `remove_publish`. A missing service is not an error.
    pub fn remove_service(&mut self, index: u32, vip: Ipv4Addr) -> Result<(), DataplaneError> {
        self.remove_services(&[(index, ipv4_be(vip.octets()))])
    }

    /// Garbage collection (on start, after writing every service again):
    /// removes every service whose `(index, vip)` is not in `keep`, with its
    /// counters and flows, and the marks of endpoints that back nothing any
    /// more.
    pub fn retain_services(&mut self, keep: &[(u32, Ipv4Addr)]) -> Result<(), DataplaneError> {
        let keep: HashSet<(u32, u32)> = keep
            .iter()
            .map(|(index, vip)| (*index, ipv4_be(vip.octets())))
            .collect();
        let kept_indexes: HashSet<u32> = keep.iter().map(|(i, _)| *i).collect();
        // Every VIP in the map, with the index of its frontend (if any).
        let mut vips: BTreeMap<u32, Option<u32>> = BTreeMap::new();
        {
            let svc: HashMap<&MapData, SvcKey, SvcSlot> = self.object_map(map_names::LB_SVC)?;
            for entry in svc.iter() {
                let (key, slot) = match entry {
                    Ok(kv) => kv,
                    Err(e) if missing(&e) => continue,
                    Err(e) => return Err(map_error(map_names::LB_SVC)(e)),
                };
                let index = vips.entry(key.vip).or_default();
                if key.slot == SLOT_FRONTEND {
                    *index = Some(slot.svc_index);
                }
            }
        }
        // Frontend-less leftovers (a crash mid-removal) go too.
        let doomed: Vec<(u32, u32)> = vips
            .into_iter()
            .filter(|(vip, index)| !index.is_some_and(|i| keep.contains(&(i, *vip))))
            .map(|(vip, index)| (index.unwrap_or(u32::MAX), vip))
            .collect();
        self.remove_services(&doomed)?;
        let removed_services = doomed.len();
        // Counters of indexes no service has.
        let stale: Vec<u32> = {
            let stats: PerCpuHashMap<&MapData, LbStatsKey, u64> =
                self.object_map(map_names::LB_STATS)?;
            let mut stale = BTreeSet::new();
            for key in stats.keys() {
                match key {
                    Ok(k) if !kept_indexes.contains(&k.svc_index) => {
                        stale.insert(k.svc_index);
                    }
                    Ok(_) => {}
                    Err(e) if missing(&e) => {}
                    Err(e) => return Err(map_error(map_names::LB_STATS)(e)),
                }
            }
            stale.into_iter().collect()
        };
        self.remove_lb_stats_of(&stale)?;
        self.gc_lb_backends(None)?;
        if removed_services > 0 {
            info!(services = removed_services, "removed stale services");
        }
        Ok(())
    }

    /// Publishes `host_addr:host_port/proto` (`None` = every host address)
    /// to the service `service_index` with virtual IP `vip`, port
    /// `target_port` on its backends: each new flow (from outside, hairpin
    /// from containers, or from the host through the socket hooks) goes to
    /// the next backend round-robin, as for the VIP itself. Overwrites an
    /// existing entry for the same key; [`Dataplane::remove_publish`] and
    /// [`Dataplane::retain_publish`] remove it like any published port.
    /// Write it after [`Dataplane::set_service`].
    pub fn set_service_publish(
        &mut self,
        host_addr: Option<Ipv4Addr>,
        host_port: u16,
        proto: Proto,
        service_index: u32,
        vip: Ipv4Addr,
        target_port: u16,
    ) -> Result<(), DataplaneError> {
        if host_port == 0
            || target_port == 0
            || service_index >= MAX_SERVICES
            || !unicast(vip)
            || host_addr.is_some_and(|a| a.is_unspecified() || a.is_multicast())
        {
            return Err(DataplaneError::InvalidPublish {
                port: format!(
                    "{}:{host_port}/{} -> service {service_index} {vip}:{target_port}",
                    host_addr.unwrap_or(Ipv4Addr::UNSPECIFIED),
                    proto.as_str()
                ),
            });
        }
        let target = PublishTarget {
            addr: ipv4_be(vip.octets()),
            port: target_port.to_be(),
            flags: PUBLISH_F_SERVICE,
            ifindex: 0,
            net_index: service_index,
        };
        self.write_publish(host_addr, host_port, proto, target)?;
        debug!(
            ?host_addr,
            host_port,
            proto = proto.as_str(),
            service_index,
            %vip,
            target_port,
            "published port of a service written to the data path"
        );
        Ok(())
    }

    /// Backend selections (see [`super::Counters::lb`]).
    pub fn lb_stats(&self) -> Result<Vec<(u32, Ipv4Addr, u64)>, DataplaneError> {
        self.counters.lb()
    }

    /// Every service in `LB_SVC`, sorted by VIP: for debugging and tests.
    /// A VIP with slots but no frontend (a crash in the middle of a
    /// removal) is left out; [`Dataplane::retain_services`] removes it.
    pub fn services(&self) -> Result<Vec<ServiceEntry>, DataplaneError> {
        let mut vips = BTreeSet::new();
        {
            let svc: HashMap<&MapData, SvcKey, SvcSlot> = self.object_map(map_names::LB_SVC)?;
            for key in svc.keys() {
                match key {
                    Ok(k) if k.slot == SLOT_FRONTEND => {
                        vips.insert(k.vip);
                    }
                    Ok(_) => {}
                    Err(e) if missing(&e) => {}
                    Err(e) => return Err(map_error(map_names::LB_SVC)(e)),
                }
            }
        }
        let mut out = Vec::new();
        for vip in vips {
            if let Some((index, slots)) = self.read_service(vip)? {
                out.push(ServiceEntry {
                    index,
                    vip: addr(vip),
                    backends: slots.into_iter().map(Backend::of_slot).collect(),
                });
            }
        }
        Ok(out)
    }

    /// Host-side ifindexes marked as backends in `LB_BACKENDS` (their
    /// replies to peers are looked up in `NAT_CT`), sorted.
    pub fn lb_backend_marks(&self) -> Result<Vec<u32>, DataplaneError> {
        Ok(self.slots.backends().collect())
    }

    /// Marks (or unmarks) the endpoint behind `ifindex` as a backend. An
    /// ifindex without a slot is no endpoint (any more): nothing to mark.
    fn mark_backend(&mut self, ifindex: u32, marked: bool) -> Result<(), DataplaneError> {
        let Some(slot) = self.slots.get(ifindex) else {
            warn!(ifindex, "a backend that is not an endpoint is not marked");
            return Ok(());
        };
        self.write_backend_mark(slot, marked)?;
        self.slots.set_backend(ifindex, marked);
        Ok(())
    }

    /// Writes `LB_BACKENDS[slot]`.
    pub(super) fn write_backend_mark(
        &mut self,
        slot: u16,
        marked: bool,
    ) -> Result<(), DataplaneError> {
        let mut marks: Array<&mut MapData, u32> = self.object_map_mut(map_names::LB_BACKENDS)?;
        marks
            .set(u32::from(slot), u32::from(marked), 0)
            .map_err(map_error(map_names::LB_BACKENDS))
    }

    /// Learns the marks `LB_BACKENDS` holds for the endpoints' slots (on
    /// load: they survive restarts with the map).
    pub(super) fn load_backend_marks(&mut self) -> Result<(), DataplaneError> {
        let marked: Vec<u32> = {
            let marks: Array<&MapData, u32> = self.object_map(map_names::LB_BACKENDS)?;
            let mut marked = Vec::new();
            for (ifindex, slot) in self.slots.iter() {
                if marks
                    .get(&u32::from(slot), 0)
                    .map_err(map_error(map_names::LB_BACKENDS))?
                    != 0
                {
                    marked.push(ifindex);
                }
            }
            marked
        };
        for ifindex in marked {
            self.slots.set_backend(ifindex, true);
        }
        Ok(())
    }

    /// The frontend's service index and the backend slots 1..=count of the
    /// every-port frontend of `vip`, `None` without a frontend.
    fn read_service(&self, vip: u32) -> Result<Option<StoredService>, DataplaneError> {
        let svc: HashMap<&MapData, SvcKey, SvcSlot> = self.object_map(map_names::LB_SVC)?;
        let Some(frontend) = found(svc.get(&SvcKey::new(vip, SLOT_FRONTEND), 0))
            .map_err(map_error(map_names::LB_SVC))?
        else {
            return Ok(None);
        };
        let mut slots = Vec::with_capacity(frontend.count as usize);
        for slot in 1..=frontend.count.min(MAX_BACKENDS) {
            if let Some(s) =
                found(svc.get(&SvcKey::new(vip, slot), 0)).map_err(map_error(map_names::LB_SVC))?
            {
                slots.push((s.backend, s.ifindex));
            }
        }
        Ok(Some((frontend.svc_index, slots)))
    }

    /// Removes the services `doomed` (index, VIP `ipv4_be`) as
    /// [`Dataplane::remove_service`] describes, with one walk of each map
    /// for all of them (a daemon start may find thousands stale).
    fn remove_services(&mut self, doomed: &[(u32, u32)]) -> Result<(), DataplaneError> {
        if doomed.is_empty() {
            return Ok(());
        }
        let mut indexes = Vec::with_capacity(doomed.len());
        for &(index, vip) in doomed {
            let old = self.read_service(vip)?;
            self.remove_service_entries(vip, old.as_ref().map_or(0, |(_, s)| s.len()))?;
            // Counters of `index` and of whatever index the map had.
            indexes.push(index);
            indexes.extend(old.map(|(old_index, _)| old_index));
        }
        let vips: HashSet<u32> = doomed.iter().map(|(_, vip)| *vip).collect();
        self.remove_slot_leftovers(&vips)?;
        self.remove_lb_stats_of(&indexes)?;
        let n = self.remove_flows(|k, e| {
            e.flags & CT_F_LB != 0
                && e.flags & (CT_F_REPLY | CT_F_DNAT | CT_F_HAIRPIN) == 0
                && vips.contains(&k.daddr)
        })?;
        self.gc_lb_backends(None)?;
        debug!(
            services = doomed.len(),
            flows = n,
            "services removed from the data path"
        );
        Ok(())
    }

    /// Deletes the frontend of `vip`, then its backend slots down from
    /// `count`, in that order ([`Dataplane::remove_slot_leftovers`] then
    /// deletes any others a crash may have left).
    fn remove_service_entries(&mut self, vip: u32, count: usize) -> Result<(), DataplaneError> {
        let mut svc: HashMap<&mut MapData, SvcKey, SvcSlot> =
            self.object_map_mut(map_names::LB_SVC)?;
        removed(svc.remove(&SvcKey::new(vip, SLOT_FRONTEND)))
            .map_err(map_error(map_names::LB_SVC))?;
        for slot in (1..=count as u32).rev() {
            removed(svc.remove(&SvcKey::new(vip, slot))).map_err(map_error(map_names::LB_SVC))?;
        }
        Ok(())
    }

    /// Deletes every `LB_SVC` entry left for the VIPs `vips`, in one walk.
    fn remove_slot_leftovers(&mut self, vips: &HashSet<u32>) -> Result<(), DataplaneError> {
        let mut svc: HashMap<&mut MapData, SvcKey, SvcSlot> =
            self.object_map_mut(map_names::LB_SVC)?;
        let mut leftovers = Vec::new();
        for key in svc.keys() {
            match key {
                Ok(k) if vips.contains(&k.vip) => leftovers.push(k),
                Ok(_) => {}
                Err(e) if missing(&e) => {}
                Err(e) => return Err(map_error(map_names::LB_SVC)(e)),
            }
        }
        for key in leftovers {
            removed(svc.remove(&key)).map_err(map_error(map_names::LB_SVC))?;
        }
        Ok(())
    }

    fn remove_lb_stats(
        &mut self,
        index: u32,
        backends: impl Iterator<Item = u32>,
    ) -> Result<(), DataplaneError> {
        let mut stats: PerCpuHashMap<&mut MapData, LbStatsKey, u64> =
            self.object_map_mut(map_names::LB_STATS)?;
        for backend in backends {
            let key = LbStatsKey {
                svc_index: index,
                backend,
            };
            removed(stats.remove(&key)).map_err(map_error(map_names::LB_STATS))?;
        }
        Ok(())
    }

    /// Removes every `LB_STATS` counter of the service indexes `indexes`.
    fn remove_lb_stats_of(&mut self, indexes: &[u32]) -> Result<(), DataplaneError> {
        if indexes.is_empty() {
            return Ok(());
        }
        let indexes: HashSet<u32> = indexes.iter().copied().collect();
        let mut doomed = Vec::new();
        {
            let stats: PerCpuHashMap<&MapData, LbStatsKey, u64> =
                self.object_map(map_names::LB_STATS)?;
            for key in stats.keys() {
                match key {
                    Ok(k) if indexes.contains(&k.svc_index) => doomed.push(k),
                    Ok(_) => {}
                    Err(e) if missing(&e) => {}
                    Err(e) => return Err(map_error(map_names::LB_STATS)(e)),
                }
            }
        }
        let mut stats: PerCpuHashMap<&mut MapData, LbStatsKey, u64> =
            self.object_map_mut(map_names::LB_STATS)?;
        for key in doomed {
            removed(stats.remove(&key)).map_err(map_error(map_names::LB_STATS))?;
        }
        Ok(())
    }

    /// Refuses remote backends that are not (yet) remote endpoints of the
    /// network holding `vip`.
    fn check_remote_backends(
        &self,
        index: u32,
        vip: Ipv4Addr,
        backends: &[Backend],
    ) -> Result<(), DataplaneError> {
        for backend in backends {
            let Backend::Remote { ip } = *backend else {
                continue;
            };
            let network = match self.remote_entry(ipv4_be(ip.octets()))? {
                Some(remote) => self.network_by_index(remote.net_index)?,
                None => None,
            };
            if !network.is_some_and(|(subnet, _)| subnet.contains(&vip)) {
                return Err(invalid(
                    index,
                    vip,
                    format!(
                        "backend {ip} is no remote endpoint of the VIP's network - write it with set_remote_endpoint first"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Removes the backend marks (`LB_BACKENDS` for local endpoints,
    /// `OVL_REMOTE`'s for remote ones) of endpoints that are no backend of
    /// any service and have no balanced flow left (whose replies would
    /// still need translating). `candidates`: only these, as slots hold
    /// them (`(ipv4_be address, ifindex)`, ifindex 0 for a remote one);
    /// `None`: every mark. Walks `NAT_CT` only when some mark is
    /// unreferenced.
    ///
    /// The walk of `LB_SVC` stops as soon as every mark in question has
    /// been seen in a slot: with many services sharing their backends (one
    /// container backing thousands of services) that is a few entries
    /// rather than the whole map at every change.
    pub(super) fn gc_lb_backends(
        &mut self,
        candidates: Option<&[(u32, u32)]>,
    ) -> Result<(), DataplaneError> {
        if candidates.is_some_and(|c| c.is_empty()) {
            return Ok(());
        }
        let (mut local, mut remote): (HashSet<u32>, HashSet<u32>) = match candidates {
            Some(c) => {
                let marked: HashSet<u32> = self.lb_backend_marks()?.into_iter().collect();
                (
                    c.iter()
                        .map(|&(_, ifindex)| ifindex)
                        .filter(|i| marked.contains(i))
                        .collect(),
                    c.iter()
                        .filter(|&&(_, ifindex)| ifindex == 0)
                        .map(|&(ip, _)| ip)
                        .collect(),
                )
            }
            None => (
                self.lb_backend_marks()?.into_iter().collect(),
                self.remote_backend_marks()?
                    .into_iter()
                    .map(|ip| ipv4_be(ip.octets()))
                    .collect(),
            ),
        };
        {
            let svc: HashMap<&MapData, SvcKey, SvcSlot> = self.object_map(map_names::LB_SVC)?;
            for entry in svc.iter() {
                if local.is_empty() && remote.is_empty() {
                    return Ok(());
                }
                match entry {
                    Ok((k, s)) if k.slot != SLOT_FRONTEND => {
                        if s.ifindex == 0 {
                            remote.remove(&s.backend);
                        } else {
                            local.remove(&s.ifindex);
                        }
                    }
                    Ok(_) => {}
                    Err(e) if missing(&e) => {}
                    Err(e) => return Err(map_error(map_names::LB_SVC)(e)),
                }
            }
        }
        if local.is_empty() && remote.is_empty() {
            return Ok(());
        }
        // Balanced flows still open: by the local veth or the remote
        // address their entry towards the backend delivers to.
        let (mut busy_local, mut busy_remote) = (HashSet::new(), HashSet::new());
        for (_, e) in self.conntrack()? {
            if e.flags & (CT_F_LB | CT_F_REPLY) != CT_F_LB {
                continue;
            }
            if e.flags & CT_F_TUNNEL != 0 {
                busy_remote.insert(e.new_daddr);
            } else {
                busy_local.insert(e.ifindex);
            }
        }
        for ifindex in local.difference(&busy_local) {
            self.mark_backend(*ifindex, false)?;
        }
        for ip in remote.difference(&busy_remote) {
            self.mark_remote_backend(*ip, false)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn local(s: &str, ifindex: u32) -> Backend {
        Backend::Local { ip: ip(s), ifindex }
    }

    #[test]
    fn services_are_validated() {
        let vip = ip("10.0.0.100");
        let ok = [
            local("10.0.0.2", 5),
            local("10.0.0.3", 6),
            Backend::Remote { ip: ip("10.0.0.4") },
        ];
        assert!(check_service(0, vip, &ok).is_ok());
        assert!(check_service(0, vip, &[]).is_ok());
        assert!(check_service(MAX_SERVICES, vip, &ok).is_err());
        assert!(check_service(0, Ipv4Addr::UNSPECIFIED, &ok).is_err());
        assert!(check_service(0, vip, &[local("10.0.0.2", 0)]).is_err());
        assert!(check_service(0, vip, &[local("10.0.0.100", 3)]).is_err());
        assert!(check_service(0, vip, &[Backend::Remote { ip: vip }]).is_err());
        assert!(check_service(0, vip, &[local("10.0.0.2", 5), local("10.0.0.2", 6)]).is_err());
        let twice = [local("10.0.0.2", 5), Backend::Remote { ip: ip("10.0.0.2") }];
        assert!(check_service(0, vip, &twice).is_err());
        let many: Vec<_> = (0..=MAX_BACKENDS)
            .map(|i| Backend::Remote {
                ip: Ipv4Addr::from(0x0a00_0000 + i + 1),
            })
            .collect();
        assert!(check_service(0, vip, &many).is_err());
    }

    #[test]
    fn backends_round_trip_through_their_slots() {
        for backend in [local("10.0.0.2", 5), Backend::Remote { ip: ip("10.0.0.4") }] {
            assert_eq!(Backend::of_slot(backend.slot()), backend);
        }
    }
}
