//! The state the programs steer by: networks (`NET_LPM` by subnet and
//! `NET_BY_INDEX` by index, the same values) and endpoints (`EP_MAP`,
//! `EP_BY_IF`, each entry with the endpoint's slot, module `slots`).
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
//! Three arrays spare the programs most lookups (the verifier inlines
//! array reads; hash and trie lookups are calls):
//! - `NET_BY_INDEX`, the sender's network and subnet by the index its
//!   endpoint carries. The programs fall back to `NET_LPM` for an empty
//!   element, so it is written after the trie entry and cleared before it:
//!   whatever a crash leaves, the programs never see a network the trie no
//!   longer has. An array element is not replaced atomically (a program
//!   may read one halfway written), but only the network's own endpoints
//!   read it, and an element changes only while the network has none
//!   (written before them, cleared after them; a restart writes the same
//!   bytes again).
//! - `EP_GEN`, the daemon's generation, advanced after every change to
//!   `EP_MAP`, `EP_BY_IF` and `NET_LPM` and after removing flows from
//!   `NAT_CT`: the programs keep per-CPU copies of the endpoints, networks
//!   and flows they look up and drop them when it moves on.
//! - `NET_HINT`, a bit per /16 that holds a subnet's or an endpoint's
//!   address: a destination whose bit is clear is in neither map (the
//!   outside world), so the programs skip both lookups. Bits are set before
//!   the entries they cover are written and cleared only by a full
//!   recomputation after entries went ([`Dataplane::remove_network`],
//!   [`Dataplane::retain`]), so the bitmap always covers the maps. Until
//!   the daemon first writes it (a pin directory of an older netd) its
//!   ready flag is 0 and the programs look everything up.
//!
//! Addresses are stored as `netd_common::ipv4_be` (network byte order in
//! memory), subnets as LPM keys `{prefix_len, network address}` with the
//! host bits cleared.

use std::{
    collections::{BTreeMap, HashSet},
    net::Ipv4Addr,
    ops::RangeInclusive,
};

use aya::maps::lpm_trie::Key;
use ipnet::Ipv4Net;
use netd_common::{
    EndpointInfo, IndexedNetwork, NET_F_INTERNAL, NET_F_NO_ICC, NET_F_NO_MASQUERADE, NET_F_OVERLAY,
    NetworkInfo, ipv4_be,
    limits::{NET_HINT_READY, NET_HINT_WORDS, NET_INDEXES},
    map_names, net_hint_bit, next_generation,
};
use tracing::{debug, info};

use super::{
    BPF_ANY, Dataplane, DataplaneError, ifindex_exists,
    map_access::{addr, found, map_error, removed},
};

/// The LPM key of `subnet` (host bits cleared).
fn net_key(subnet: Ipv4Net) -> Key<u32> {
    let subnet = subnet.trunc();
    Key::new(
        u32::from(subnet.prefix_len()),
        ipv4_be(subnet.network().octets()),
    )
}

/// The /16s (`a.b` as `a * 256 + b`) that `subnet` overlaps.
fn slash16s(subnet: Ipv4Net) -> RangeInclusive<u32> {
    (u32::from(subnet.network()) >> 16)..=(u32::from(subnet.broadcast()) >> 16)
}

/// The /16 of `ip`, as in [`slash16s`].
fn slash16(ip: Ipv4Addr) -> RangeInclusive<u32> {
    let s = u32::from(ip) >> 16;
    s..=s
}

/// The `NET_HINT` element and bit of the /16 `slash16` ([`slash16s`]).
fn hint_bit(slash16: u32) -> (u32, u32) {
    net_hint_bit(ipv4_be(Ipv4Addr::from(slash16 << 16).octets()))
}

/// What a network lets its endpoints do beyond reaching their gateway
/// (its `NET_F_*` bits but the overlay's, which the VNI sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkPolicy(u32);

impl NetworkPolicy {
    /// Docker's defaults: endpoints reach each other, and the outside
    /// masqueraded.
    pub const OPEN: NetworkPolicy = NetworkPolicy(0);
    /// `--internal`: nothing leaves the network.
    pub const INTERNAL: NetworkPolicy = NetworkPolicy(NET_F_INTERNAL);

    /// `enable_icc=false`: endpoints do not reach each other.
    pub const fn without_icc(self) -> NetworkPolicy {
        NetworkPolicy(self.0 | NET_F_NO_ICC)
    }

    /// `enable_ip_masquerade=false`: what goes outside leaves with the
    /// container's own address, routed by the host.
    pub const fn without_masquerade(self) -> NetworkPolicy {
        NetworkPolicy(self.0 | NET_F_NO_MASQUERADE)
    }
}

impl Dataplane {
    /// Writes (or overwrites) the `NET_LPM` entry of `subnet` and the
    /// `NET_BY_INDEX` element of `index` (for indexes the array has): the
    /// network `index`, its `gateway` (whose MAC the programs derive with
    /// `netd_common::mac_for_ipv4`, so the bridge must carry that MAC) and
    /// its `policy`; and its /16s in `NET_HINT`. Host bits of
    /// `subnet` are ignored.
    ///
    /// Call it when the network is created and on every start, before any
    /// of its endpoints is written. Idempotent. A network of this host
    /// only; one that spans hosts is written with
    /// [`Dataplane::set_overlay_network`] (and stops being an overlay, its
    /// VNI and remote endpoints gone, if written with this).
    pub fn set_network(
        &mut self,
        index: u32,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
        policy: NetworkPolicy,
    ) -> Result<(), DataplaneError> {
        self.write_network(index, subnet, gateway, policy, None)
    }

    /// [`Dataplane::set_network`], for an overlay network with `vni`.
    pub(super) fn write_network(
        &mut self,
        index: u32,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
        policy: NetworkPolicy,
        vni: Option<u32>,
    ) -> Result<(), DataplaneError> {
        if !subnet.contains(&gateway) {
            return Err(DataplaneError::InvalidNetwork { subnet, gateway });
        }
        let subnet = subnet.trunc();
        let mut flags = policy.0;
        if vni.is_some() {
            flags |= NET_F_OVERLAY;
        }
        let value = NetworkInfo {
            net_index: index,
            gateway: ipv4_be(gateway.octets()),
            flags,
        };
        let rebound = self.bind_vni(index, vni)?;
        self.add_to_net_hint(slash16s(subnet))?;
        self.net_lpm
            .insert(&net_key(subnet), value, BPF_ANY)
            .map_err(map_error(map_names::NET_LPM))?;
        if (1..NET_INDEXES).contains(&index) {
            let indexed = IndexedNetwork {
                info: value,
                subnet: ipv4_be(subnet.network().octets()),
                mask: ipv4_be(subnet.netmask().octets()),
            };
            self.net_by_index
                .set(index, indexed, BPF_ANY)
                .map_err(map_error(map_names::NET_BY_INDEX))?;
        }
        self.advance_generation()?;
        if rebound {
            self.prune_overlay()?;
        }
        debug!(%subnet, index, %gateway, flags, ?vni, "network written to the data path");
        Ok(())
    }

    /// Removes the `NET_LPM` entry of `subnet` (host bits ignored), its
    /// `NET_BY_INDEX` element and the `NET_HINT` bits only it needed; for
    /// an overlay network also its VNI and remote endpoints. A missing
    /// entry is not an error.
    pub fn remove_network(&mut self, subnet: Ipv4Net) -> Result<(), DataplaneError> {
        let key = net_key(subnet);
        let entry = self
            .networks()?
            .into_iter()
            .find(|(s, _)| *s == subnet.trunc());
        if let Some((_, info)) = entry {
            self.clear_net_index(&info)?;
        }
        removed(self.net_lpm.remove(&key)).map_err(map_error(map_names::NET_LPM))?;
        if entry.is_some_and(|(_, info)| info.flags & NET_F_OVERLAY != 0) {
            self.prune_overlay()?;
        }
        self.rebuild_net_hint(None)?;
        self.advance_generation()?;
        debug!(%subnet, "network removed from the data path");
        Ok(())
    }

    /// Empties the `NET_BY_INDEX` element of the network `info` if it still
    /// holds that network (its index may be another network's by now).
    fn clear_net_index(&mut self, info: &NetworkInfo) -> Result<(), DataplaneError> {
        if !(1..NET_INDEXES).contains(&info.net_index) {
            return Ok(());
        }
        let current = self
            .net_by_index
            .get(&info.net_index, 0)
            .map_err(map_error(map_names::NET_BY_INDEX))?;
        if current.info == *info {
            self.net_by_index
                .set(info.net_index, IndexedNetwork::default(), BPF_ANY)
                .map_err(map_error(map_names::NET_BY_INDEX))?;
        }
        Ok(())
    }

    /// Sets the `NET_HINT` bits of the /16s `slash16s` ([`slash16s`]);
    /// a bitmap that is not ready yet is computed in full (with them).
    /// Call it before writing the entries they cover.
    fn add_to_net_hint(&mut self, slash16s: RangeInclusive<u32>) -> Result<(), DataplaneError> {
        let ready = self
            .net_hint
            .get(&NET_HINT_READY, 0)
            .map_err(map_error(map_names::NET_HINT))?;
        if ready == 0 {
            return self.rebuild_net_hint(Some(slash16s));
        }
        let mut words: BTreeMap<u32, u32> = BTreeMap::new();
        for s in slash16s {
            let (word, bit) = hint_bit(s);
            *words.entry(word).or_default() |= bit;
        }
        for (word, bits) in words {
            let current = self
                .net_hint
                .get(&word, 0)
                .map_err(map_error(map_names::NET_HINT))?;
            if current & bits != bits {
                self.net_hint
                    .set(word, current | bits, BPF_ANY)
                    .map_err(map_error(map_names::NET_HINT))?;
            }
        }
        Ok(())
    }

    /// Recomputes `NET_HINT` from `NET_LPM` and `EP_MAP` (plus the /16s
    /// `extra`), clearing the bits nothing needs any more, and marks it
    /// ready.
    fn rebuild_net_hint(
        &mut self,
        extra: Option<RangeInclusive<u32>>,
    ) -> Result<(), DataplaneError> {
        let mut wanted = vec![0u32; NET_HINT_WORDS as usize];
        let networks = self.networks()?.into_iter().flat_map(|(s, _)| slash16s(s));
        let endpoints = self
            .endpoints_by_ip()?
            .into_iter()
            .flat_map(|(ip, _)| slash16(ip));
        for s in networks.chain(endpoints).chain(extra.into_iter().flatten()) {
            let (word, bit) = hint_bit(s);
            wanted[word as usize] |= bit;
        }
        for (word, bits) in (0..).zip(wanted) {
            let current = self
                .net_hint
                .get(&word, 0)
                .map_err(map_error(map_names::NET_HINT))?;
            if current != bits {
                self.net_hint
                    .set(word, bits, BPF_ANY)
                    .map_err(map_error(map_names::NET_HINT))?;
            }
        }
        self.net_hint
            .set(NET_HINT_READY, 1, BPF_ANY)
            .map_err(map_error(map_names::NET_HINT))
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
        let advanced = self.advance_generation();
        result.and(advanced)?;
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
        // Before `EP_MAP` has the address, so no peer's packet skips it.
        self.add_to_net_hint(slash16(addr(value.ip)))?;
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
        let result = self.remove_endpoint_entries(host_ifindex, ip);
        let advanced = self.advance_generation();
        result.and(advanced)
    }

    /// The map writes of [`Dataplane::remove_endpoint`].
    fn remove_endpoint_entries(
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
    /// `NET_LPM` entry whose subnet is not in `networks` (and its
    /// `NET_BY_INDEX` element, and for an overlay network its VNI and
    /// remote endpoints), and every `EP_MAP`/`EP_BY_IF` entry that is not
    /// exactly one of the `(host_ifindex, ip)` pairs in `endpoints`, then
    /// recomputes `NET_HINT` for what is left. Call it after writing the
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
        for entry in self.net_lpm.iter() {
            let (key, info) = entry.map_err(map_error(map_names::NET_LPM))?;
            if !keep_nets.contains(&(key.prefix_len(), key.data())) {
                stale_nets.push((key, info));
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

        for (key, info) in &stale_nets {
            self.clear_net_index(info)?;
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
        self.prune_overlay()?;
        self.advance_generation()?;
        self.rebuild_net_hint(None)
    }

    /// Advances `EP_GEN` after `EP_MAP`, `EP_BY_IF`, `NET_LPM` or `NAT_CT`
    /// changed, so that the programs stop using the per-CPU copies of
    /// lookups they keep (`EP_CACHE`, `NET_CACHE`, `FLOW_CACHE`): the next
    /// packet on every CPU looks the maps up. Every change made through
    /// `Dataplane` does this itself; it is public for those who write the
    /// pinned maps directly (tests) or measure the lookups the copies save
    /// (bench).
    pub fn advance_generation(&mut self) -> Result<(), DataplaneError> {
        let current = self
            .ep_gen
            .get(&0, 0)
            .map_err(map_error(map_names::EP_GEN))?;
        self.ep_gen
            .set(0, next_generation(current), BPF_ANY)
            .map_err(map_error(map_names::EP_GEN))
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
