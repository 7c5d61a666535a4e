//! Start-up reconciliation: make the kernel match the stored state.
//!
//! Records are written before the kernel is touched, so after a crash the
//! kernel can be behind the state (a create that did not finish: finish it)
//! or ahead of it (a remove that did not finish: the objects have no record
//! any more: delete them). Objects that already match are adopted as they
//! are, so established traffic keeps flowing across a restart. Containers
//! whose removal had begun (`removing`) are removed now, and services get
//! back the replicas they should have (`restore_replicas`).

use std::collections::HashSet;

use tracing::{error, info, warn};

use super::Engine;
use super::snapshot::{running_pid, sandbox_of};
use crate::model::{Container, NetMode, Start, State, update_where};
use crate::names;
use crate::netlink::netns;
use crate::process;

impl Engine {
    pub(super) async fn reconcile(&mut self) {
        self.check_processes();
        let networks: Vec<_> = self.state.networks.values().cloned().collect();
        for net in &networks {
            if let Err(e) = self.apply_network(net).await {
                error!(network = %net.name, error = %e, "cannot restore network");
            }
        }
        let containers: Vec<_> = self.state.containers.values().cloned().collect();
        for c in &containers {
            if let NetMode::Path { path } = &c.net
                && !crate::netlink::Netns::Path(path.clone()).exists()
            {
                // The runtime's namespace went while the daemon was away,
                // taking the endpoints with it; the record stays until the
                // runtime removes it (CNI DEL).
                warn!(container = %c.name, netns = %path.display(), "namespace is gone");
                continue;
            }
            if let Err(e) = self.apply_container(c).await {
                error!(container = %c.name, error = %e, "cannot restore container");
            }
        }
        // Hosts and endpoints elsewhere in the cluster, as last known: the
        // data plane forwards to them even while the store is out of reach.
        self.reconcile_cluster_datapath();
        let services: Vec<String> = self.state.services.keys().cloned().collect();
        for id in &services {
            if let Err(e) = self.sync_service(id) {
                error!(service = %id, error = %e, "cannot restore service");
            }
        }
        self.resume_removals().await;
        self.restore_replicas().await;
        self.collect_garbage().await;
        info!(
            networks = self.state.networks.len(),
            containers = self.state.containers.len(),
            "state restored"
        );
    }

    /// Finishes the removals a stop interrupted: at once where the process
    /// has ended, through the usual background job where it still runs.
    async fn resume_removals(&mut self) {
        let (mut running, mut idle) = (Vec::new(), Vec::new());
        for c in self.state.containers.values().filter(|c| c.removing) {
            if running_pid(c).is_some() {
                running.push(c.id.clone());
            } else {
                idle.push(c.id.clone());
            }
        }
        if let Err(e) = self.finish_removal(&idle).await {
            warn!(error = %e, "cannot finish interrupted removals");
        }
        if !running.is_empty() {
            info!(
                containers = running.len(),
                "stopping processes of interrupted removals"
            );
            let job = self.stop_then_remove(running);
            tokio::spawn(async move {
                if let Err(e) = job.await {
                    warn!(error = %e, "cannot finish interrupted removals");
                }
            });
        }
    }

    /// Brings the process records up to date: a process that ended while
    /// the daemon was away (or before a reboot) no longer runs, and a
    /// record from before netd kept starts (a pid alone) gets the start of
    /// its process if that is, as far as can be told, the one it names
    /// (`process::adopt`), or is forgotten. A record with no pid at all
    /// whose container has a namespace of its own gets the process
    /// `container run` started in it if a kill came before the pid was
    /// recorded (found there the same way); else it would run on, named by
    /// no record, which `rm -f` never stops.
    fn check_processes(&mut self) {
        let state = self.state.clone();
        let mut next = State::clone(&state);
        update_where(
            &mut next.containers,
            |c| {
                c.process.as_ref().is_some_and(|p| match p.pid {
                    Some(_) => running_pid(c).is_none(),
                    None => matches!(c.net, NetMode::Own { .. }),
                })
            },
            |c| {
                let adopted = adopted(&state, c);
                if let Some(p) = c.process.as_mut() {
                    p.pid = adopted.as_ref().map(|(pid, _)| *pid);
                    p.started = adopted.map(|(_, start)| start);
                }
            },
        );
        if next != *self.state
            && let Err(e) = self.commit(next)
        {
            warn!(error = %e, "cannot record exited processes");
        }
    }

    /// Drops datapath map entries (subnets, endpoints, published ports,
    /// services) that no record owns, e.g. of a network removed while the
    /// daemon was being killed.
    fn retain_datapath_entries(&mut self) {
        let networks: Vec<_> = self
            .state
            .networks
            .values()
            .filter_map(|n| self.drivers.get(&n.driver)?.datapath_subnet(n))
            .collect();
        let endpoints: Vec<_> = self
            .state
            .containers
            .values()
            .flat_map(|c| &c.endpoints)
            .filter_map(|ep| Some((self.links.get(&ep.id)?.ifindex, ep.ip)))
            .collect();
        if let Err(e) = self.dataplane.retain(&networks, &endpoints) {
            warn!(error = %e, "cannot clean up datapath entries");
        }
        // Every macvlan endpoint was written again by `apply_container`.
        if let Err(e) = self.dataplane.retain_macvlan_endpoints() {
            warn!(error = %e, "cannot clean up macvlan entries");
        }
        let published: Vec<_> = self
            .state
            .containers
            .values()
            .flat_map(|c| c.ports.iter())
            .chain(self.state.services.values().flat_map(|s| s.ports.iter()))
            .map(|b| (b.host_ip, b.host_port, b.proto))
            .collect();
        if let Err(e) = self.dataplane.retain_publish(&published) {
            warn!(error = %e, "cannot clean up published ports");
        }
        let services: Vec<_> = self
            .state
            .services
            .values()
            .map(|s| (s.index, s.vip))
            .collect();
        if let Err(e) = self.dataplane.retain_services(&services) {
            warn!(error = %e, "cannot clean up services");
        }
    }

    /// Deletes links, namespaces and pinned programs that carry this daemon's
    /// prefix but belong to no record.
    async fn collect_garbage(&mut self) {
        let prefix = self.cfg.prefix.clone();
        let mut links: HashSet<String> = HashSet::new();
        for n in self.state.networks.values() {
            if let Some(driver) = self.drivers.get(&n.driver) {
                links.extend(driver.network_links(&prefix, n));
            }
        }
        for c in self.state.containers.values() {
            for ep in &c.endpoints {
                let driver = self
                    .state
                    .networks
                    .get(&ep.network_id)
                    .and_then(|n| self.drivers.get(&n.driver));
                links.extend(driver.and_then(|d| d.endpoint_link(ep)));
            }
        }
        let namespaces: HashSet<String> = self
            .state
            .containers
            .values()
            .filter_map(|c| match &c.net {
                NetMode::Own { netns } => Some(netns.clone()),
                _ => None,
            })
            .collect();

        // Endpoints of records were moved to TC filters when they were
        // applied; TCX link pins of an older netd left now are leftovers.
        match self.dataplane.tcx_endpoint_pins() {
            Ok(pinned) => {
                for name in pinned.into_iter().filter(|n| !links.contains(n)) {
                    info!(link = %name, "removing leftover datapath attachment");
                    if let Err(e) = self.dataplane.detach_endpoint(&name) {
                        warn!(link = %name, error = %e, "cannot detach leftover");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list pinned attachments"),
        }
        self.retain_datapath_entries();
        let uplink = self.cfg.uplink.as_ref().map(|u| u.ifname.clone());
        match self.dataplane.pinned_uplinks() {
            Ok(pinned) => {
                for name in pinned.into_iter().filter(|n| Some(n) != uplink.as_ref()) {
                    info!(link = %name, "detaching from a former uplink");
                    if let Err(e) = self.dataplane.detach_uplink(&name) {
                        warn!(link = %name, error = %e, "cannot detach former uplink");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list pinned uplinks"),
        }
        match self.netlink.links_with_prefix(&prefix).await {
            Ok(found) => {
                for name in found
                    .into_iter()
                    .filter(|n| names::is_own_link(&prefix, n) && !links.contains(n))
                {
                    info!(link = %name, "removing leftover link");
                    if let Err(e) = self.netlink.delete_link(&name).await {
                        warn!(link = %name, error = %e, "cannot delete leftover link");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list links"),
        }
        match netns::list_with_prefix(&format!("{prefix}-")) {
            Ok(found) => {
                for name in found.into_iter().filter(|n| !namespaces.contains(n)) {
                    info!(netns = %name, "removing leftover namespace");
                    if let Err(e) = netns::delete(&name) {
                        warn!(netns = %name, error = %e, "cannot delete leftover namespace");
                    }
                }
            }
            Err(e) => warn!(error = %e, "cannot list namespaces"),
        }
    }
}

/// The process `c`'s record names by a pid alone (written before netd
/// kept starts), if it still runs; for a record without a pid, the one
/// process in the container's own namespace that `container run` may have
/// started before a kill cut it off from its record.
fn adopted(state: &State, c: &Container) -> Option<(u32, Start)> {
    let p = c.process.as_ref()?;
    if p.started.is_some() {
        // Recorded, and no longer what runs under that pid.
        return None;
    }
    let created = humantime::parse_rfc3339(&c.created).ok()?;
    let netns = sandbox_of(state, c).map(|ns| ns.path());
    let adopt = |pid| Some((pid, process::adopt(pid, created, netns.as_deref())?));
    let found = match (p.pid, &c.net) {
        (Some(pid), _) => adopt(pid),
        (None, NetMode::Own { netns }) => {
            let mut started = netns::pids(netns).ok()?.into_iter().filter_map(adopt);
            // Two would be a guess: the record stays without.
            started.next().filter(|_| started.next().is_none())
        }
        (None, _) => None,
    }?;
    info!(container = %c.name, pid = found.0, "process adopted from a record without its start");
    Some(found)
}
