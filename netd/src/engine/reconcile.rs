//! Start-up reconciliation: make the kernel match the stored state.
//!
//! Records are written before the kernel is touched, so after a crash the
//! kernel can be behind the state (a create that did not finish: finish it)
//! or ahead of it (a remove that did not finish: the objects have no record
//! any more: delete them). Objects that already match are adopted as they
//! are, so established traffic keeps flowing across a restart.

use std::collections::HashSet;

use tracing::{error, info, warn};

use super::{Engine, names};
use crate::model::{Driver, NetMode, State, update_where};
use crate::netlink::netns;
use crate::sandbox;

impl Engine {
    pub(super) async fn reconcile(&mut self) {
        self.forget_exited_processes();
        let networks: Vec<_> = self.state.networks.values().cloned().collect();
        for net in &networks {
            if let Err(e) = self.apply_network(net).await {
                error!(network = %net.name, error = %e, "cannot restore network");
            }
        }
        let containers: Vec<_> = self.state.containers.values().cloned().collect();
        for c in &containers {
            if let Err(e) = self.apply_container(c).await {
                error!(container = %c.name, error = %e, "cannot restore container");
            }
        }
        let services: Vec<String> = self.state.services.keys().cloned().collect();
        for id in &services {
            if let Err(e) = self.sync_service(id).await {
                error!(service = %id, error = %e, "cannot restore service");
            }
        }
        self.collect_garbage().await;
        info!(
            networks = self.state.networks.len(),
            containers = self.state.containers.len(),
            "state restored"
        );
    }

    /// Processes that ended while the daemon was away are no longer running.
    fn forget_exited_processes(&mut self) {
        let mut next = State::clone(&self.state);
        update_where(
            &mut next.containers,
            |c| {
                c.process
                    .as_ref()
                    .and_then(|p| p.pid)
                    .is_some_and(|pid| !sandbox::alive(pid))
            },
            |c| {
                if let Some(p) = c.process.as_mut() {
                    p.pid = None;
                }
            },
        );
        if next != *self.state
            && let Err(e) = self.commit(next)
        {
            warn!(error = %e, "cannot record exited processes");
        }
    }

    /// Drops datapath map entries (subnets, endpoints, published ports) that
    /// no record owns,
    /// e.g. of a network removed while the daemon was being killed.
    async fn retain_datapath_entries(&mut self) {
        let networks: Vec<_> = self
            .state
            .networks
            .values()
            .filter(|n| n.driver == Driver::Bridge)
            .filter_map(|n| n.ipam.as_ref().map(|p| p.subnet))
            .collect();
        let mut endpoints = Vec::new();
        for ep in self.state.containers.values().flat_map(|c| &c.endpoints) {
            if let Ok(Some(ifindex)) = self.netlink.link_index(&ep.host_ifname).await {
                endpoints.push((ifindex, ep.ip));
            }
        }
        if let Err(e) = self.dataplane.retain(&networks, &endpoints) {
            warn!(error = %e, "cannot clean up datapath entries");
        }
        let published: Vec<_> = self
            .state
            .containers
            .values()
            .flat_map(|c| c.ports.iter().map(|b| (b.host_ip, b.host_port, b.proto)))
            .collect();
        let published: Vec<_> = published
            .into_iter()
            .chain(
                self.state
                    .services
                    .values()
                    .flat_map(|s| s.ports.iter().map(|b| (b.host_ip, b.host_port, b.proto))),
            )
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
        let mut links: HashSet<String> = self
            .state
            .networks
            .values()
            .map(|n| names::bridge(&prefix, n))
            .collect();
        links.extend(
            self.state
                .containers
                .values()
                .flat_map(|c| c.endpoints.iter().map(|e| e.host_ifname.clone())),
        );
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
        self.retain_datapath_entries().await;
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
