//! The overlay: networks that span hosts, joined by VXLAN. The packet work
//! is in `netd-ebpf/src/overlay.rs` (and `mesh.rs` for services across
//! hosts); this writes what it steers by and attaches `netd_vxlan_in` to
//! the host's VXLAN device and `netd_bridge_out` to each overlay
//! network's bridge.
//!
//! An overlay network looks like a bridge network on each host (its
//! gateway on a bridge, its local endpoints on veths, written with
//! [`Dataplane::set_endpoint`]), plus:
//! - its VNI (`OVL_VNI`, VNI -> this host's index of the network) and the
//!   overlay flag in its `NET_LPM`/`NET_BY_INDEX` entries, both written by
//!   [`Dataplane::set_overlay_network`];
//! - the cluster's hosts (`OVL_HOSTS`, by underlay address): the only
//!   outer sources the programs accept tunnelled packets from;
//! - its endpoints on other hosts (`OVL_REMOTE`, one entry per endpoint,
//!   by address: overlay addresses are unique in the cluster), each with
//!   the host it lives on. The kernel holds no FDB or neighbour entry for
//!   them, so nothing goes stale behind the daemon's back;
//! - the egress of its bridge ([`Dataplane::attach_bridge`]): the host's
//!   own connections to a service's backend on another host (which the
//!   socket hooks send to that backend's address) leave through it, with
//!   the uplink address as source, through the tunnel.
//!
//! A service's backends on other hosts are remote endpoints
//! (`lb::Backend::Remote`); [`Dataplane::set_service`] marks them in their
//! `OVL_REMOTE` entry (kept when the entry is written again), so that
//! their packets are looked up as possible replies and the host's
//! connections may go to them, and unmarks them like local backends.
//!
//! # Order (the programs act on whatever they find)
//! 1. [`Dataplane::attach_vxlan`] on the device
//!    `netlink::Netlink::ensure_vxlan` made, which it sets up (until then
//!    nothing is tunnelled, and remote peers are unused addresses of the
//!    subnet);
//! 2. [`Dataplane::set_overlay_network`] per overlay network this host
//!    carries, then its local endpoints as on a bridge;
//! 3. [`Dataplane::set_overlay_host`] per host of the cluster;
//! 4. [`Dataplane::set_remote_endpoint`] per endpoint on another host: it
//!    refuses one whose network, VNI or host is not written yet; then the
//!    services with their remote backends (`set_service`). An endpoint or
//!    host that goes is removed after the services were written without
//!    it.
//!
//! On start, after writing everything again: [`Dataplane::retain`] (which
//! also drops the VNIs of networks that are gone),
//! [`Dataplane::retain_overlay_hosts`] and
//! [`Dataplane::retain_remote_endpoints`]. Everything is idempotent.
//!
//! What cannot hang together is removed with what it hangs on: a network
//! that stops being an overlay (removed, or written again with
//! [`Dataplane::set_network`]) takes its VNI along, and a VNI or host that
//! goes takes its remote endpoints (so [`Dataplane::remove_overlay_host`]
//! withdraws a lost host with one call).
//!
//! # Why a TC filter
//! `netd_vxlan_in` (and `netd_bridge_out` on a bridge) runs as a `cls_bpf`
//! filter on the device's `clsact`
//! qdisc, like the endpoints' programs, not as a pinned TCX link like the
//! uplink's: the device is netd's own (no other tool's programs to order
//! against, which is what TCX is for on the uplink), the filter lives and
//! dies with the device (nothing to pin, no pin to go stale when the device
//! is made again), and a restarted daemon swaps the program in place
//! atomically. No per-endpoint or per-host kernel object exists to attach
//! to: one filter serves the whole cluster.

use std::{
    collections::HashSet,
    net::Ipv4Addr,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    maps::{Array, HashMap, MapData},
    programs::SchedClassifier,
};
use ipnet::Ipv4Net;
use netd_common::{
    Direction, NET_F_OVERLAY, ipv4_be,
    limits::NET_INDEXES,
    map_names,
    overlay::{self as wire, OverlayConfig, REMOTE_F_BACKEND, VNI_MAX},
};
use tracing::{debug, info};

use super::{
    BPF_ANY, Dataplane, DataplaneError, LinkOpError, NetworkPolicy, check_interface,
    map_access::{addr, found, map_error, removed},
    tc_filter, unicast,
};

/// Program attached to TC ingress of the VXLAN device.
pub const VXLAN_PROGRAM: &str = "netd_vxlan_in";

/// Program attached to TC egress of an overlay network's bridge.
pub const BRIDGE_PROGRAM: &str = "netd_bridge_out";

/// The hook `netd_vxlan_in` runs on: the device's ingress, which
/// `tc_filter` names by the endpoints' direction that uses it.
const INGRESS: Direction = Direction::FromEndpoint;
/// The hook `netd_bridge_out` runs on: the bridge's egress.
const EGRESS: Direction = Direction::ToEndpoint;

/// An endpoint of an overlay network on another host, as `OVL_REMOTE`
/// holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RemoteEndpoint {
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its network's index on this host.
    pub net_index: u32,
    /// Its network's VNI.
    pub vni: u32,
    /// The underlay address of the host it lives on.
    pub host: Ipv4Addr,
}

/// The refusal of a remote endpoint.
fn invalid(remote: &RemoteEndpoint, reason: impl Into<String>) -> DataplaneError {
    DataplaneError::InvalidRemoteEndpoint {
        ip: remote.ip,
        reason: reason.into(),
    }
}

impl Dataplane {
    /// [`Dataplane::set_network`] for an overlay network: the same entries
    /// with the overlay flag, and `vni` bound to `index` in `OVL_VNI`
    /// (first, so that the flag never points the programs at a network
    /// without its VNI). A VNI is one network's: binding it to `index`
    /// takes it from a network that had it (VNIs are allocated uniquely
    /// in the cluster, so that one is stale), and a network's earlier VNI
    /// is released. `vni` must fit VXLAN's 24 bits and not be 0.
    pub fn set_overlay_network(
        &mut self,
        index: u32,
        subnet: Ipv4Net,
        gateway: Ipv4Addr,
        policy: NetworkPolicy,
        vni: u32,
    ) -> Result<(), DataplaneError> {
        if vni == 0 || vni > VNI_MAX {
            return Err(DataplaneError::InvalidVni { vni });
        }
        self.write_network(index, subnet, gateway, policy, Some(vni))
    }

    /// Binds `vni` to the network `index` in `OVL_VNI` (`None`: binds none
    /// to it), releasing the VNI the network had and taking `vni` from a
    /// network that had it. Returns whether an existing binding changed,
    /// after which [`Dataplane::prune_overlay`] must run once the network's
    /// entries are written.
    pub(super) fn bind_vni(
        &mut self,
        index: u32,
        vni: Option<u32>,
    ) -> Result<bool, DataplaneError> {
        let released: Vec<u32> = self
            .overlay_networks()?
            .into_iter()
            .filter(|(v, i)| *i == index && Some(*v) != vni)
            .map(|(v, _)| v)
            .collect();
        let mut map: HashMap<&mut MapData, u32, u32> = self.object_map_mut(map_names::OVL_VNI)?;
        let mut taken = false;
        if let Some(vni) = vni {
            let previous = found(map.get(&vni, 0)).map_err(map_error(map_names::OVL_VNI))?;
            taken = previous.is_some_and(|p| p != index);
            if previous != Some(index) {
                map.insert(vni, index, BPF_ANY)
                    .map_err(map_error(map_names::OVL_VNI))?;
            }
        }
        for v in &released {
            removed(map.remove(v)).map_err(map_error(map_names::OVL_VNI))?;
        }
        Ok(taken || !released.is_empty())
    }

    /// Every `OVL_VNI` entry, `(vni, network index)`, sorted.
    pub fn overlay_networks(&self) -> Result<Vec<(u32, u32)>, DataplaneError> {
        let map: HashMap<&MapData, u32, u32> = self.object_map(map_names::OVL_VNI)?;
        let mut out = map
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(map_names::OVL_VNI))?;
        out.sort_unstable();
        Ok(out)
    }

    /// Adds `host` (its underlay address) to the cluster's hosts, whose
    /// tunnelled packets the programs accept. Idempotent.
    pub fn set_overlay_host(&mut self, host: Ipv4Addr) -> Result<(), DataplaneError> {
        if !unicast(host) {
            return Err(DataplaneError::InvalidOverlayHost { host });
        }
        let mut hosts: HashMap<&mut MapData, u32, u32> =
            self.object_map_mut(map_names::OVL_HOSTS)?;
        hosts
            .insert(ipv4_be(host.octets()), 0, BPF_ANY)
            .map_err(map_error(map_names::OVL_HOSTS))?;
        debug!(%host, "overlay host written to the data path");
        Ok(())
    }

    /// Removes `host` from the cluster's hosts, and the remote endpoints
    /// that live on it: nothing is tunnelled to it or accepted from it any
    /// more. A missing host is not an error.
    pub fn remove_overlay_host(&mut self, host: Ipv4Addr) -> Result<(), DataplaneError> {
        self.remove_overlay_hosts(&[ipv4_be(host.octets())])?;
        debug!(%host, "overlay host removed from the data path");
        Ok(())
    }

    /// Garbage collection (on start): removes every host not in `keep`,
    /// with its remote endpoints. Call it after writing the known hosts
    /// again.
    pub fn retain_overlay_hosts(&mut self, keep: &[Ipv4Addr]) -> Result<(), DataplaneError> {
        let keep: HashSet<Ipv4Addr> = keep.iter().copied().collect();
        let stale: Vec<u32> = self
            .overlay_hosts()?
            .into_iter()
            .filter(|host| !keep.contains(host))
            .map(|host| ipv4_be(host.octets()))
            .collect();
        if !stale.is_empty() {
            info!(hosts = stale.len(), "removing stale overlay hosts");
        }
        self.remove_overlay_hosts(&stale)
    }

    /// Removes the hosts `stale` (`ipv4_be`) and their remote endpoints.
    fn remove_overlay_hosts(&mut self, stale: &[u32]) -> Result<(), DataplaneError> {
        {
            let mut hosts: HashMap<&mut MapData, u32, u32> =
                self.object_map_mut(map_names::OVL_HOSTS)?;
            for host in stale {
                removed(hosts.remove(host)).map_err(map_error(map_names::OVL_HOSTS))?;
            }
        }
        self.prune_overlay()
    }

    /// The cluster's hosts (`OVL_HOSTS`), sorted.
    pub fn overlay_hosts(&self) -> Result<Vec<Ipv4Addr>, DataplaneError> {
        let hosts: HashMap<&MapData, u32, u32> = self.object_map(map_names::OVL_HOSTS)?;
        let mut out = hosts
            .keys()
            .map(|host| host.map(addr))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(map_names::OVL_HOSTS))?;
        out.sort_unstable();
        Ok(out)
    }

    /// Writes (or replaces: the endpoint moved) the remote endpoint
    /// `remote`. Refused unless its network is an overlay network here
    /// with `remote.vni` as its VNI, its address a unicast one of the
    /// network's subnet but the gateway, and its host one of the cluster's
    /// (see the module docs for the order). An address a local endpoint
    /// holds stays the local one's (the programs look there first). A
    /// replaced entry keeps its backend mark ([`Dataplane::set_service`]
    /// sets it).
    pub fn set_remote_endpoint(&mut self, remote: &RemoteEndpoint) -> Result<(), DataplaneError> {
        if !unicast(remote.ip) {
            return Err(invalid(remote, "the address must be a unicast one"));
        }
        let (subnet, info) = self.network_by_index(remote.net_index)?.ok_or_else(|| {
            invalid(
                remote,
                format!(
                    "network {} is not on this host - write it with set_overlay_network first",
                    remote.net_index
                ),
            )
        })?;
        let vnis: HashMap<&MapData, u32, u32> = self.object_map(map_names::OVL_VNI)?;
        let bound = found(vnis.get(&remote.vni, 0)).map_err(map_error(map_names::OVL_VNI))?;
        if info.flags & NET_F_OVERLAY == 0 || bound != Some(remote.net_index) {
            return Err(invalid(
                remote,
                format!(
                    "network {} is no overlay network with VNI {} on this host - write it with set_overlay_network first",
                    remote.net_index, remote.vni
                ),
            ));
        }
        if !subnet.contains(&remote.ip) || ipv4_be(remote.ip.octets()) == info.gateway {
            return Err(invalid(
                remote,
                format!("the address must be one of {subnet} but its gateway"),
            ));
        }
        let hosts: HashMap<&MapData, u32, u32> = self.object_map(map_names::OVL_HOSTS)?;
        let host_be = ipv4_be(remote.host.octets());
        if found(hosts.get(&host_be, 0))
            .map_err(map_error(map_names::OVL_HOSTS))?
            .is_none()
        {
            return Err(invalid(
                remote,
                format!(
                    "host {} is not a host of the cluster - write it with set_overlay_host first",
                    remote.host
                ),
            ));
        }
        let ip = ipv4_be(remote.ip.octets());
        let flags = self.remote_entry(ip)?.map_or(0, |old| old.flags);
        let mut map: HashMap<&mut MapData, u32, wire::RemoteEndpoint> =
            self.object_map_mut(map_names::OVL_REMOTE)?;
        let value = wire::RemoteEndpoint {
            net_index: remote.net_index,
            vni: remote.vni,
            host: host_be,
            flags,
        };
        map.insert(ip, value, BPF_ANY)
            .map_err(map_error(map_names::OVL_REMOTE))?;
        debug!(
            ip = %remote.ip,
            net_index = remote.net_index,
            vni = remote.vni,
            host = %remote.host,
            "remote endpoint written to the data path"
        );
        Ok(())
    }

    /// Marks (or unmarks) the remote endpoint with address `ip`
    /// (`ipv4_be`) as a service's backend (`REMOTE_F_BACKEND`: its packets
    /// are looked up as possible replies, the host's own connections may
    /// go to it). A missing one is not an error: nothing to mark.
    pub(super) fn mark_remote_backend(
        &mut self,
        ip: u32,
        marked: bool,
    ) -> Result<(), DataplaneError> {
        let Some(mut value) = self.remote_entry(ip)? else {
            return Ok(());
        };
        let flags = if marked {
            value.flags | REMOTE_F_BACKEND
        } else {
            value.flags & !REMOTE_F_BACKEND
        };
        if flags == value.flags {
            return Ok(());
        }
        value.flags = flags;
        let mut map: HashMap<&mut MapData, u32, wire::RemoteEndpoint> =
            self.object_map_mut(map_names::OVL_REMOTE)?;
        map.insert(ip, value, BPF_ANY)
            .map_err(map_error(map_names::OVL_REMOTE))
    }

    /// The `OVL_REMOTE` entry of the address `ip` (`ipv4_be`), if any.
    pub(super) fn remote_entry(
        &self,
        ip: u32,
    ) -> Result<Option<wire::RemoteEndpoint>, DataplaneError> {
        let map: HashMap<&MapData, u32, wire::RemoteEndpoint> =
            self.object_map(map_names::OVL_REMOTE)?;
        found(map.get(&ip, 0)).map_err(map_error(map_names::OVL_REMOTE))
    }

    /// The remote endpoints marked as services' backends, sorted.
    pub fn remote_backend_marks(&self) -> Result<Vec<Ipv4Addr>, DataplaneError> {
        let mut out: Vec<Ipv4Addr> = self
            .remote_entries()?
            .into_iter()
            .filter(|(_, value)| value.flags & REMOTE_F_BACKEND != 0)
            .map(|(ip, _)| addr(ip))
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Every `OVL_REMOTE` entry, `(ipv4_be address, value)`.
    fn remote_entries(&self) -> Result<Vec<(u32, wire::RemoteEndpoint)>, DataplaneError> {
        let map: HashMap<&MapData, u32, wire::RemoteEndpoint> =
            self.object_map(map_names::OVL_REMOTE)?;
        map.iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(map_names::OVL_REMOTE))
    }

    /// Removes the remote endpoint holding `ip`. A missing one is not an
    /// error.
    pub fn remove_remote_endpoint(&mut self, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        self.remove_remote_endpoints(&[ipv4_be(ip.octets())])?;
        debug!(%ip, "remote endpoint removed from the data path");
        Ok(())
    }

    /// Garbage collection (on start): removes every remote endpoint whose
    /// address is not in `keep`. Call it after writing the known ones
    /// again.
    pub fn retain_remote_endpoints(&mut self, keep: &[Ipv4Addr]) -> Result<(), DataplaneError> {
        let keep: HashSet<Ipv4Addr> = keep.iter().copied().collect();
        let stale: Vec<u32> = self
            .remote_endpoints()?
            .into_iter()
            .filter(|remote| !keep.contains(&remote.ip))
            .map(|remote| ipv4_be(remote.ip.octets()))
            .collect();
        if !stale.is_empty() {
            info!(endpoints = stale.len(), "removing stale remote endpoints");
        }
        self.remove_remote_endpoints(&stale)
    }

    /// Removes the `OVL_REMOTE` entries of the addresses `ips` (`ipv4_be`).
    fn remove_remote_endpoints(&mut self, ips: &[u32]) -> Result<(), DataplaneError> {
        let mut map: HashMap<&mut MapData, u32, wire::RemoteEndpoint> =
            self.object_map_mut(map_names::OVL_REMOTE)?;
        for ip in ips {
            removed(map.remove(ip)).map_err(map_error(map_names::OVL_REMOTE))?;
        }
        Ok(())
    }

    /// Every remote endpoint (`OVL_REMOTE`), sorted by address.
    pub fn remote_endpoints(&self) -> Result<Vec<RemoteEndpoint>, DataplaneError> {
        let mut out: Vec<RemoteEndpoint> = self
            .remote_entries()?
            .into_iter()
            .map(|(ip, value)| RemoteEndpoint {
                ip: addr(ip),
                net_index: value.net_index,
                vni: value.vni,
                host: addr(value.host),
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Removes what no longer hangs together (see the module docs): the
    /// VNIs of networks that are no overlay networks here (any more), and
    /// the remote endpoints whose VNI is not their network's or whose host
    /// is not the cluster's.
    pub(super) fn prune_overlay(&mut self) -> Result<(), DataplaneError> {
        let overlays: HashSet<u32> = self
            .networks()?
            .into_iter()
            .filter(|(_, info)| info.flags & NET_F_OVERLAY != 0)
            .map(|(_, info)| info.net_index)
            .collect();
        let (bound, unbound): (Vec<_>, Vec<_>) = self
            .overlay_networks()?
            .into_iter()
            .partition(|(_, index)| overlays.contains(index));
        {
            let mut vnis: HashMap<&mut MapData, u32, u32> =
                self.object_map_mut(map_names::OVL_VNI)?;
            for (vni, _) in &unbound {
                removed(vnis.remove(vni)).map_err(map_error(map_names::OVL_VNI))?;
            }
        }
        let bound: HashSet<(u32, u32)> = bound.into_iter().collect();
        let hosts: HashSet<Ipv4Addr> = self.overlay_hosts()?.into_iter().collect();
        let orphans: Vec<u32> = self
            .remote_endpoints()?
            .into_iter()
            .filter(|r| !bound.contains(&(r.vni, r.net_index)) || !hosts.contains(&r.host))
            .map(|r| ipv4_be(r.ip.octets()))
            .collect();
        self.remove_remote_endpoints(&orphans)?;
        if !(unbound.is_empty() && orphans.is_empty()) {
            info!(
                vnis = unbound.len(),
                remote_endpoints = orphans.len(),
                "removed overlay entries whose network or host is gone"
            );
        }
        Ok(())
    }

    /// The network with index `index` (`NET_BY_INDEX`, or `NET_LPM` for an
    /// index beyond that array): its subnet and its entry.
    pub(super) fn network_by_index(
        &self,
        index: u32,
    ) -> Result<Option<(Ipv4Net, netd_common::NetworkInfo)>, DataplaneError> {
        if (1..NET_INDEXES).contains(&index) {
            let indexed = self
                .net_by_index
                .get(&index, 0)
                .map_err(map_error(map_names::NET_BY_INDEX))?;
            if indexed.info.net_index == 0 {
                return Ok(None);
            }
            // The daemon writes valid masks only; anything else is no
            // network.
            let Ok(subnet) = Ipv4Net::with_netmask(addr(indexed.subnet), addr(indexed.mask)) else {
                return Ok(None);
            };
            return Ok(Some((subnet, indexed.info)));
        }
        Ok(self
            .networks()?
            .into_iter()
            .find(|(_, info)| info.net_index == index))
    }

    /// Attaches `netd_vxlan_in` to TC ingress of the VXLAN device `ifname`
    /// (`ifindex`, made by `netlink::Netlink::ensure_vxlan`) as a `cls_bpf`
    /// filter (see the module docs), sets the device up, and makes it the
    /// device the programs tunnel through. Idempotent and restart-safe like
    /// [`Dataplane::attach_endpoint`]: a filter already there is switched
    /// to the loaded program atomically.
    ///
    /// The device comes up here, after its filter, and not before
    /// (`ensure_vxlan` leaves a new one down): without the program, what
    /// any machine sends to the VXLAN port would be decapsulated into the
    /// host's stack, which may route it on.
    pub fn attach_vxlan(&mut self, ifname: &str, ifindex: u32) -> Result<(), DataplaneError> {
        let readopted = self.attach_filter(VXLAN_PROGRAM, ifname, ifindex, INGRESS, |rtnl| {
            rtnl.set_link_up(ifindex, true)
        })?;
        self.write_vxlan_ifindex(ifindex)?;
        info!(ifname, ifindex, readopted, "VXLAN device attached");
        Ok(())
    }

    /// Attaches `netd_bridge_out` to TC egress of the overlay network's
    /// bridge `ifname` (`ifindex`), the same way as `netd_vxlan_in`: what
    /// the host sends through it to a service's backend on another host
    /// is translated and tunnelled there (and ARP for such a backend
    /// answered). The filter goes with the bridge. Idempotent and
    /// restart-safe like [`Dataplane::attach_vxlan`].
    pub fn attach_bridge(&mut self, ifname: &str, ifindex: u32) -> Result<(), DataplaneError> {
        let readopted = self.attach_filter(BRIDGE_PROGRAM, ifname, ifindex, EGRESS, |_| Ok(()))?;
        debug!(ifname, ifindex, readopted, "overlay bridge attached");
        Ok(())
    }

    /// Puts `program` as netd's filter on `hook` of `ifname` (`ifindex`),
    /// switching one already there atomically, then runs `then` on the
    /// same rtnetlink socket. Returns whether the filter was there.
    fn attach_filter(
        &self,
        program: &'static str,
        ifname: &str,
        ifindex: u32,
        hook: Direction,
        then: impl FnOnce(&mut tc_filter::Rtnl) -> std::io::Result<()>,
    ) -> Result<bool, DataplaneError> {
        check_interface(ifname, ifindex)?;
        let attach_err = |source: LinkOpError| DataplaneError::Attach {
            program,
            ifname: ifname.to_string(),
            source: Box::new(source),
        };
        let fd = self
            .classifier(program)?
            .fd()
            .map_err(|e| attach_err(e.into()))?
            .as_fd()
            .as_raw_fd();
        let mut rtnl = tc_filter::Rtnl::open().map_err(|e| attach_err(e.into()))?;
        rtnl.add_clsact(ifindex).map_err(|e| attach_err(e.into()))?;
        let created = rtnl
            .set(ifindex, hook, fd, program)
            .map_err(|e| attach_err(e.into()))?;
        then(&mut rtnl).map_err(|e| attach_err(e.into()))?;
        Ok(!created)
    }

    /// Stops tunnelling: forgets the VXLAN device (remote peers become
    /// unused addresses of their subnet), sets it down and removes netd's
    /// filter from it, if it still exists. For a host leaving the cluster;
    /// deleting the device also removes the filter, but the programs would
    /// keep redirecting to its old ifindex.
    pub fn detach_vxlan(&mut self) -> Result<(), DataplaneError> {
        let Some(ifindex) = self.vxlan_ifindex()? else {
            return Ok(());
        };
        self.write_vxlan_ifindex(0)?;
        tc_filter::Rtnl::open()
            .and_then(|mut rtnl| {
                match rtnl.set_link_up(ifindex, false) {
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(()),
                    other => other?,
                }
                rtnl.remove(ifindex, INGRESS)
            })
            .map_err(|source| DataplaneError::Detach {
                ifname: format!("the VXLAN device (ifindex {ifindex})"),
                source,
            })?;
        info!(ifindex, "VXLAN device detached");
        Ok(())
    }

    /// The VXLAN device the programs tunnel through, if one is attached.
    pub fn vxlan_ifindex(&self) -> Result<Option<u32>, DataplaneError> {
        let cfg: Array<&MapData, OverlayConfig> = self.object_map(map_names::OVL_CFG)?;
        let ifindex = cfg
            .get(&0, 0)
            .map_err(map_error(map_names::OVL_CFG))?
            .vxlan_ifindex;
        Ok((ifindex != 0).then_some(ifindex))
    }

    fn write_vxlan_ifindex(&mut self, vxlan_ifindex: u32) -> Result<(), DataplaneError> {
        let mut cfg: Array<&mut MapData, OverlayConfig> =
            self.object_map_mut(map_names::OVL_CFG)?;
        cfg.set(0, OverlayConfig { vxlan_ifindex }, BPF_ANY)
            .map_err(map_error(map_names::OVL_CFG))
    }

    /// The loaded `netd_vxlan_in`, e.g. for BPF_PROG_TEST_RUN.
    pub fn vxlan_program(&self) -> Result<&SchedClassifier, DataplaneError> {
        self.classifier(VXLAN_PROGRAM)
    }

    /// The loaded `netd_bridge_out`, e.g. for BPF_PROG_TEST_RUN.
    pub fn bridge_program(&self) -> Result<&SchedClassifier, DataplaneError> {
        self.classifier(BRIDGE_PROGRAM)
    }
}
