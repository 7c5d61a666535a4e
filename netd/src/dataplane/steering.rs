//! The state the programs steer by: networks (`NET_LPM`) and endpoints
//! (`EP_MAP`, `EP_BY_IF`, each entry with the endpoint's slot, module
//! `slots`).
//!
//! The engine owns the truth (its persisted state); these maps are a copy
//! the kernel can read. Every write is idempotent so that reconciling after
//! a restart is "write everything again, then [`Dataplane::retain`] what
//! exists". Required order, because a program acts on whatever it finds:
//! 1. [`Dataplane::set_network`] for the network,
//! 2. [`Dataplane::set_endpoint`] for the endpoint (its veth exists),
//! 3. [`Dataplane::attach_endpoint`].
//!
//! An endpoint whose veth has programs but no `EP_BY_IF` entry is neither
//! steered nor counted (the programs cannot tell who it is); an endpoint
//! whose network has no `NET_LPM` entry reaches its peers but nothing else
//! (`DropReason::NoNetwork`).
//!
//! Addresses are stored as `netd_common::ipv4_be` (network byte order in
//! memory), subnets as LPM keys `{prefix_len, network address}` with the
//! host bits cleared.

use std::{collections::HashSet, net::Ipv4Addr};

use aya::maps::{MapError, lpm_trie::Key};
use ipnet::Ipv4Net;
use netd_common::{EndpointInfo, NET_F_INTERNAL, NetworkInfo, ipv4_be, map_names};
use tracing::{debug, info};

use super::{BPF_ANY, Dataplane, DataplaneError, errno, ifindex_exists};

fn map_error(map: &'static str) -> impl Fn(MapError) -> DataplaneError {
    move |source| DataplaneError::Map {
        map,
        source: Box::new(source),
    }
}

/// `Ok(None)` for a missing key instead of an error.
fn found<V>(result: Result<V, MapError>) -> Result<Option<V>, MapError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `Ok(())` for a key that was already absent.
fn removed(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

/// The LPM key of `subnet` (host bits cleared).
fn net_key(subnet: Ipv4Net) -> Key<u32> {
    let subnet = subnet.trunc();
    Key::new(
        u32::from(subnet.prefix_len()),
        ipv4_be(subnet.network().octets()),
    )
}

fn addr(ip_be: u32) -> Ipv4Addr {
    Ipv4Addr::from(ip_be.to_ne_bytes())
}

impl Dataplane {
    /// Writes (or overwrites) the `NET_LPM` entry of `subnet`: the network
    /// `index`, its `gateway` (whose MAC the programs derive with
    /// `netd_common::mac_for_ipv4`, so the bridge must carry that MAC) and
    /// whether it is `internal`. Host bits of `subnet` are ignored.
    ///
    /// Call it when the network is created and on every start, before any
    /// of its endpoints is written. Idempotent.
    pub fn set_network(
        &mut self,
        index: u32,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
        internal: bool,
    ) -> Result<(), DataplaneError> {
        if !subnet.contains(&gateway) {
            return Err(DataplaneError::InvalidNetwork { subnet, gateway });
        }
        let value = NetworkInfo {
            net_index: index,
            gateway: ipv4_be(gateway.octets()),
            flags: if internal { NET_F_INTERNAL } else { 0 },
        };
        self.net_lpm
            .insert(&net_key(subnet), value, BPF_ANY)
            .map_err(map_error(map_names::NET_LPM))?;
        debug!(%subnet, index, %gateway, internal, "network written to the data path");
        Ok(())
    }

    /// Removes the `NET_LPM` entry of `subnet` (host bits ignored). A
    /// missing entry is not an error.
    pub fn remove_network(&mut self, subnet: Ipv4Net) -> Result<(), DataplaneError> {
        removed(self.net_lpm.remove(&net_key(subnet))).map_err(map_error(map_names::NET_LPM))?;
        debug!(%subnet, "network removed from the data path");
        Ok(())
    }

    /// Writes `EP_BY_IF[host_ifindex]` and `EP_MAP[ip]` for the endpoint
    /// whose host-side veth is `host_ifindex` and whose container side has
    /// `ip` and `mac`, on the network `net_index` (as given to
    /// [`Dataplane::set_network`]).
    ///
    /// Call it after creating the veth and before
    /// [`Dataplane::attach_endpoint`]. Idempotent; if `host_ifindex` was
    /// registered with another address, that address's `EP_MAP` entry is
    /// dropped if it still points here. A new `host_ifindex` gets a free
    /// slot with zeroed counters; a known one keeps its slot and counters
    /// (a restart). On failure nothing this call created is left behind.
    pub fn set_endpoint(
        &mut self,
        host_ifindex: u32,
        ip: Ipv4Addr,
        mac: [u8; 6],
        net_index: u32,
    ) -> Result<(), DataplaneError> {
        if host_ifindex == 0 || ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(DataplaneError::InvalidEndpoint {
                ifindex: host_ifindex,
                ip,
            });
        }
        let previous =
            found(self.ep_by_if.get(&host_ifindex, 0)).map_err(map_error(map_names::EP_BY_IF))?;
        let (slot, fresh) = self
            .slots
            .assign(host_ifindex)
            .ok_or(DataplaneError::NoEndpointSlot { ip })?;
        let value = EndpointInfo {
            ip: ipv4_be(ip.octets()),
            ifindex: host_ifindex,
            net_index,
            mac,
            slot,
        };
        let result = self.write_endpoint(value, previous, fresh);
        if result.is_err() && fresh {
            self.slots.release(host_ifindex);
        }
        result?;
        debug!(ifindex = host_ifindex, %ip, net_index, slot, "endpoint written to the data path");
        Ok(())
    }

    /// The map writes of [`Dataplane::set_endpoint`], rolled back on
    /// failure (the caller releases a fresh slot).
    fn write_endpoint(
        &mut self,
        value: EndpointInfo,
        previous: Option<EndpointInfo>,
        fresh: bool,
    ) -> Result<(), DataplaneError> {
        let host_ifindex = value.ifindex;
        if fresh {
            // Before the entries exist, so the first packet counts from 0.
            self.reset_slot(value.slot)?;
        }
        // EP_BY_IF first: until EP_MAP has the entry no peer sends here, and
        // the endpoint itself is already validated.
        self.ep_by_if
            .insert(host_ifindex, value, BPF_ANY)
            .map_err(map_error(map_names::EP_BY_IF))?;
        if let Err(e) = self.ep_map.insert(value.ip, value, BPF_ANY) {
            let rollback = match previous {
                Some(previous) => self.ep_by_if.insert(host_ifindex, previous, BPF_ANY),
                None => removed(self.ep_by_if.remove(&host_ifindex)),
            };
            if let Err(err) = rollback {
                tracing::warn!(ifindex = host_ifindex, error = %err, "cannot roll back EP_BY_IF");
            }
            return Err(map_error(map_names::EP_MAP)(e));
        }
        if let Some(previous) = previous
            && previous.ip != value.ip
        {
            self.remove_ep_map_entry(previous.ip, |owner| owner == host_ifindex)?;
        }
        Ok(())
    }

    /// Removes the entries [`Dataplane::set_endpoint`] wrote and frees the
    /// endpoint's slot (its counters go with it). Missing entries are fine.
    ///
    /// `EP_MAP[ip]` is only removed while it still belongs to this endpoint
    /// (or to an interface that no longer exists): if another endpoint
    /// already took the address over, its entry stays. `host_ifindex` may be
    /// 0 when the veth is already gone; then the `EP_BY_IF` entries for `ip`
    /// of vanished interfaces are removed instead.
    pub fn remove_endpoint(
        &mut self,
        host_ifindex: u32,
        ip: Ipv4Addr,
    ) -> Result<(), DataplaneError> {
        let ip_be = ipv4_be(ip.octets());
        self.remove_ep_map_entry(ip_be, |owner| {
            owner == host_ifindex || !ifindex_exists(owner)
        })?;
        if host_ifindex != 0 {
            removed(self.ep_by_if.remove(&host_ifindex)).map_err(map_error(map_names::EP_BY_IF))?;
            self.slots.release(host_ifindex);
        } else {
            let stale: Vec<u32> = self
                .endpoints_by_ifindex()?
                .into_iter()
                .filter(|(ifindex, info)| info.ip == ip_be && !ifindex_exists(*ifindex))
                .map(|(ifindex, _)| ifindex)
                .collect();
            for ifindex in stale {
                removed(self.ep_by_if.remove(&ifindex)).map_err(map_error(map_names::EP_BY_IF))?;
                self.slots.release(ifindex);
            }
        }
        debug!(ifindex = host_ifindex, %ip, "endpoint removed from the data path");
        Ok(())
    }

    /// Garbage collection (after a crash, on start): removes every
    /// `NET_LPM` entry whose subnet is not in `networks`, and every
    /// `EP_MAP`/`EP_BY_IF` entry that is not exactly one of the
    /// `(host_ifindex, ip)` pairs in `endpoints`. Call it after writing the
    /// known networks and endpoints again.
    pub fn retain(
        &mut self,
        networks: &[Ipv4Net],
        endpoints: &[(u32, Ipv4Addr)],
    ) -> Result<(), DataplaneError> {
        let keep_nets: HashSet<(u32, u32)> = networks
            .iter()
            .map(|n| {
                let key = net_key(*n);
                (key.prefix_len(), key.data())
            })
            .collect();
        let keep_eps: HashSet<(u32, u32)> = endpoints
            .iter()
            .map(|(ifindex, ip)| (*ifindex, ipv4_be(ip.octets())))
            .collect();

        let mut stale_nets = Vec::new();
        for key in self.net_lpm.keys() {
            let key = key.map_err(map_error(map_names::NET_LPM))?;
            if !keep_nets.contains(&(key.prefix_len(), key.data())) {
                stale_nets.push(key);
            }
        }
        let stale_ips: Vec<u32> = self
            .endpoints_by_ip()?
            .into_iter()
            .filter(|(ip, info)| !keep_eps.contains(&(info.ifindex, ipv4_be(ip.octets()))))
            .map(|(ip, _)| ipv4_be(ip.octets()))
            .collect();
        let stale_ifs: Vec<u32> = self
            .endpoints_by_ifindex()?
            .into_iter()
            .filter(|(ifindex, info)| !keep_eps.contains(&(*ifindex, info.ip)))
            .map(|(ifindex, _)| ifindex)
            .collect();

        for key in &stale_nets {
            removed(self.net_lpm.remove(key)).map_err(map_error(map_names::NET_LPM))?;
        }
        for ip in &stale_ips {
            removed(self.ep_map.remove(ip)).map_err(map_error(map_names::EP_MAP))?;
        }
        for ifindex in &stale_ifs {
            removed(self.ep_by_if.remove(ifindex)).map_err(map_error(map_names::EP_BY_IF))?;
            self.slots.release(*ifindex);
        }
        if !(stale_nets.is_empty() && stale_ips.is_empty() && stale_ifs.is_empty()) {
            info!(
                networks = stale_nets.len(),
                addresses = stale_ips.len(),
                interfaces = stale_ifs.len(),
                "removed stale data path entries"
            );
        }
        Ok(())
    }

    /// Every `NET_LPM` entry, sorted by subnet.
    pub fn networks(&self) -> Result<Vec<(Ipv4Net, NetworkInfo)>, DataplaneError> {
        let mut out = Vec::new();
        for entry in self.net_lpm.iter() {
            let (key, info) = entry.map_err(map_error(map_names::NET_LPM))?;
            // The kernel stores what was inserted; set_network inserts valid
            // prefixes only, anything else is skipped rather than failing.
            let Ok(prefix_len) = u8::try_from(key.prefix_len()) else {
                continue;
            };
            let Ok(subnet) = Ipv4Net::new(addr(key.data()), prefix_len) else {
                continue;
            };
            out.push((subnet, info));
        }
        out.sort_by_key(|(subnet, _)| *subnet);
        Ok(out)
    }

    /// Every `EP_BY_IF` entry (host ifindex -> endpoint), sorted by ifindex.
    pub fn endpoints_by_ifindex(&self) -> Result<Vec<(u32, EndpointInfo)>, DataplaneError> {
        let mut out = Vec::new();
        for entry in self.ep_by_if.iter() {
            out.push(entry.map_err(map_error(map_names::EP_BY_IF))?);
        }
        out.sort_by_key(|(ifindex, _)| *ifindex);
        Ok(out)
    }

    /// Every `EP_MAP` entry (address -> endpoint), sorted by address.
    pub fn endpoints_by_ip(&self) -> Result<Vec<(Ipv4Addr, EndpointInfo)>, DataplaneError> {
        let mut out = Vec::new();
        for entry in self.ep_map.iter() {
            let (ip, info) = entry.map_err(map_error(map_names::EP_MAP))?;
            out.push((addr(ip), info));
        }
        out.sort_by_key(|(ip, _)| *ip);
        Ok(out)
    }

    /// Removes `EP_MAP[ip_be]` if `owned(its ifindex)`.
    fn remove_ep_map_entry(
        &mut self,
        ip_be: u32,
        owned: impl Fn(u32) -> bool,
    ) -> Result<(), DataplaneError> {
        let current = found(self.ep_map.get(&ip_be, 0)).map_err(map_error(map_names::EP_MAP))?;
        match current {
            Some(info) if owned(info.ifindex) => {
                removed(self.ep_map.remove(&ip_be)).map_err(map_error(map_names::EP_MAP))
            }
            Some(info) => {
                debug!(
                    ip = %addr(ip_be),
                    owner = info.ifindex,
                    "address belongs to another endpoint now, entry kept"
                );
                Ok(())
            }
            None => Ok(()),
        }
    }
}
