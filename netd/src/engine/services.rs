//! Services: a virtual IP on one network, balanced round-robin in eBPF over
//! the service's replicas. netd runs `replicas` containers `NAME.1`..`NAME.N`
//! itself; user containers can join with `--service` (repeatable: one
//! container may back several services). Whenever the set of
//! replicas changes, `sync_service` rewrites the service's backend table in
//! the datapath (in an order that never exposes a half-written service).

use std::collections::HashSet;
use std::sync::Arc;

use tracing::{info, warn};

use super::command::Done;
use super::snapshot::running_pid;
use super::spec::{ContainerSpec, EndpointSpec, NetworkMode, PortSpec};
use super::{Engine, now, ports, random_id};
use crate::cluster::ServiceRequest;
use crate::dataplane::Backend;
use crate::error::{EngineError, Result};
use crate::ipam;
use crate::model::{Container, NameOf, Service, State, check_name, update_where};

/// `service create`.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    /// Network name or id.
    pub network: String,
    pub replicas: u32,
    pub ports: Vec<PortSpec>,
    /// What each replica runs; required when `replicas` > 0.
    pub cmd: Vec<String>,
}

/// The most replicas a service can have: each is a backend of its VIP, and
/// the datapath balances over at most this many per service.
pub const MAX_REPLICAS: u32 = netd_common::limits::MAX_BACKENDS;

/// Checks a replica count (`service create --replicas`, `service scale`)
/// before anything is started.
pub fn check_replicas(replicas: u32) -> std::result::Result<(), String> {
    if replicas > MAX_REPLICAS {
        return Err(format!(
            "invalid replicas value {replicas}: a service can have at most {MAX_REPLICAS} replicas"
        ));
    }
    Ok(())
}

impl Engine {
    fn service(&self, key: &str) -> Result<&Service> {
        self.state
            .find_service(key)
            .ok_or_else(|| EngineError::service_not_found(key))
    }

    pub(super) async fn create_service(&mut self, spec: ServiceSpec) -> Result<Done<Service>> {
        check_name(NameOf::Service, &spec.name).map_err(EngineError::InvalidParameter)?;
        check_replicas(spec.replicas).map_err(EngineError::InvalidParameter)?;
        if self.taken.has_service_name(&spec.name) {
            return Err(EngineError::Conflict(format!(
                "service with name {} already exists",
                spec.name
            )));
        }
        if spec.replicas > 0 && spec.cmd.is_empty() {
            return Err(EngineError::InvalidParameter(
                "replicas need a command: netd service create ... NAME -- CMD [ARGS...]".into(),
            ));
        }
        let net = self.network(&spec.network)?.clone();
        if !self.drivers.of(&net)?.hosts_services() || net.predefined {
            return Err(EngineError::InvalidParameter(format!(
                "services need a user-defined bridge network; {} is not one",
                net.name
            )));
        }
        if let Some(taken) = (1..=spec.replicas).find(|i| {
            self.state
                .find_container(&replica_name(&spec.name, *i))
                .is_some()
        }) {
            return Err(EngineError::Conflict(format!(
                "container {} already exists; a replica of service {} needs that name",
                replica_name(&spec.name, taken),
                spec.name
            )));
        }
        let pool = net.ipam.as_ref().ok_or_else(|| {
            EngineError::InvalidParameter(format!("network {} has no address pool", net.name))
        })?;
        // Reading the host's sockets is the slow part of `resolve`, and most
        // services publish nothing.
        let ports = if spec.ports.is_empty() {
            Vec::new()
        } else {
            ports::resolve(
                &spec.ports,
                crate::drivers::options::host_binding(&net),
                &self.state,
                &ports::HostBinds::read(),
            )?
        };
        let svc = if self.cluster_scoped(&net) {
            // One VIP and name in the whole cluster; the replicas (and the
            // command they run) are this host's.
            let made = self
                .create_cluster_service(ServiceRequest {
                    id: random_id(),
                    name: spec.name.clone(),
                    network_id: net.id.clone(),
                    ports,
                })
                .await?;
            let svc = Service {
                replicas: spec.replicas,
                cmd: spec.cmd,
                ..made
            };
            let mut next = State::clone(&self.state);
            next.services.insert(svc.id.clone(), Arc::new(svc.clone()));
            self.commit(next)?;
            svc
        } else {
            let index = self.taken.free_service_index();
            if index >= netd_common::limits::MAX_SERVICES {
                return Err(EngineError::Forbidden(format!(
                    "cannot create service {}: this host has the most services its datapath \
                     holds ({})",
                    spec.name,
                    netd_common::limits::MAX_SERVICES - 1
                )));
            }
            let vip = ipam::allocate(pool, self.taken.address_used(&net.id), &net.name)?;
            let svc = Service {
                id: random_id(),
                name: spec.name.clone(),
                created: now(),
                network_id: net.id.clone(),
                vip,
                replicas: spec.replicas,
                cmd: spec.cmd,
                ports,
                index,
            };
            let mut next = State::clone(&self.state);
            next.services.insert(svc.id.clone(), Arc::new(svc.clone()));
            self.commit(next)?;
            svc
        };
        let carriers = match self.start_replicas(&svc, 1..=svc.replicas).await {
            Ok(carriers) => carriers,
            Err(e) => return Ok(self.undo_service(&svc.id, e).await),
        };
        if let Err(e) = self.sync_service(&svc.id) {
            return Ok(self.undo_service(&svc.id, e).await);
        }
        info!(service = %svc.name, vip = %svc.vip, replicas = svc.replicas, "service created");
        Ok(self.after_carriers(carriers, svc))
    }

    /// Rolls back a service create that failed with `error`: the service
    /// and the replicas started so far go; the answer is the error, once
    /// they are gone.
    async fn undo_service<T: Send + 'static>(&mut self, id: &str, error: EngineError) -> Done<T> {
        match self.remove_service(id).await {
            Ok(done) => done.map(move |()| Err(error)),
            Err(e) => {
                warn!(service = %id, error = %e, "cannot roll back the service");
                Done::Now(Err(error))
            }
        }
    }

    /// Sets the number of replicas netd runs: starts the missing ones or
    /// removes the highest-numbered ones. Connections to the replicas that
    /// stay are untouched; the removed ones get no new connections from the
    /// moment the backend table is rewritten.
    pub(super) async fn scale_service(
        &mut self,
        key: &str,
        replicas: u32,
    ) -> Result<Done<Service>> {
        check_replicas(replicas).map_err(EngineError::InvalidParameter)?;
        let svc = self.service(key)?.clone();
        if replicas > 0 && svc.cmd.is_empty() {
            return Err(EngineError::InvalidParameter(format!(
                "service {} was created without a command, so netd cannot run replicas of it",
                svc.name
            )));
        }
        let doomed: Vec<String> = (replicas + 1..=svc.replicas)
            .filter_map(|i| self.state.find_container(&replica_name(&svc.name, i)))
            .map(|c| c.id.clone())
            .collect();
        let mut next = State::clone(&self.state);
        Arc::make_mut(next.services.get_mut(&svc.id).expect("service exists")).replicas = replicas;
        // With the new count, in one commit, the replicas it drops leave
        // the rotation and are marked for removal: a daemon killed before
        // they are gone finishes their removal at start, where separate
        // commits left containers of no service running for good.
        retire(&mut next, &svc.id, &doomed);
        self.commit(next)?;
        let done = if replicas > svc.replicas {
            let carriers = self
                .start_replicas(&svc, svc.replicas + 1..=replicas)
                .await?;
            self.after_carriers(carriers, ())
        } else {
            // Out of the rotation first, then gone.
            self.sync_service(&svc.id)?;
            self.remove_containers(doomed).await?
        };
        info!(service = %svc.name, replicas, "service scaled");
        let scaled = self.service(&svc.id)?.clone();
        Ok(done.map(move |()| Ok(scaled)))
    }

    /// Removes the service, its replicas and its virtual IP; containers that
    /// joined it with `--service` stay, in their other services if any.
    pub(super) async fn remove_service(&mut self, key: &str) -> Result<Done<()>> {
        let svc = self.service(key)?.clone();
        let own: Vec<String> = self
            .state
            .replicas_of(&svc.id)
            .into_iter()
            .filter(|c| is_replica_name(&svc.name, &c.name))
            .map(|c| c.id.clone())
            .collect();
        let on_cluster = self
            .state
            .networks
            .get(&svc.network_id)
            .is_some_and(|n| self.cluster_scoped(n));
        if on_cluster {
            // Gone from every host; here the mirror takes it out.
            self.remove_cluster_service(&svc.id).await?;
        } else {
            let mut next = State::clone(&self.state);
            next.services.remove(&svc.id);
            // Its own replicas are marked for removal with it (see
            // `scale_service`); the containers that joined stay.
            retire(&mut next, &svc.id, &own);
            update_where(
                &mut next.containers,
                |c| c.backs(&svc.id),
                |c| c.services.retain(|s| *s != svc.id),
            );
            self.commit(next)?;
            self.remove_service_datapath(&svc);
        }
        info!(service = %svc.name, "service removed");
        self.remove_containers(own).await
    }

    /// The ids of the services `keys` (names or ids) name, for a container
    /// on the networks `networks` to join as a backend: each must exist
    /// and be on one of them. Checked before anything is written, so one
    /// bad name changes nothing; a service named twice is joined once.
    pub(super) fn services_to_join(
        &self,
        networks: &[&str],
        keys: &[String],
    ) -> Result<Vec<String>> {
        let mut ids: Vec<String> = Vec::with_capacity(keys.len());
        let mut seen = HashSet::with_capacity(keys.len());
        for key in keys {
            let svc = self.service(key)?;
            if !networks.contains(&svc.network_id.as_str()) {
                let net = &self.state.networks[&svc.network_id].name;
                return Err(EngineError::InvalidParameter(format!(
                    "to join service {} the container must be on its network: --network {net}",
                    svc.name
                )));
            }
            if seen.insert(svc.id.as_str()) {
                ids.push(svc.id.clone());
            }
        }
        Ok(ids)
    }

    /// Starts replicas `which` of `svc`; answers with the links the host
    /// reaches them through that are not up yet.
    async fn start_replicas(
        &mut self,
        svc: &Service,
        which: std::ops::RangeInclusive<u32>,
    ) -> Result<Vec<String>> {
        let net = self.network(&svc.network_id)?.name.clone();
        let mut carriers = Vec::new();
        for i in which {
            let (_, waits) = self
                .create_container_now(ContainerSpec {
                    name: replica_name(&svc.name, i),
                    network: NetworkMode::Network(net.clone()),
                    netns: None,
                    endpoint: EndpointSpec::default(),
                    ports: Vec::new(),
                    cmd: Some(svc.cmd.clone()),
                    services: vec![svc.id.clone()],
                    labels: Default::default(),
                })
                .await?;
            carriers.extend(waits);
        }
        Ok(carriers)
    }

    /// Brings every service's replicas on this host back to its count, at
    /// start: a create or scale the daemon was killed in the middle of
    /// left some missing, and a reboot ended every replica's process. A
    /// replica whose process is gone is replaced (removed, then started
    /// again under its name), as Docker's swarm replaces a task that
    /// ended. Replicas being removed are left to their removal.
    pub(super) async fn restore_replicas(&mut self) {
        let services: Vec<Arc<Service>> = self
            .state
            .services
            .values()
            .filter(|s| s.replicas > 0 && !s.cmd.is_empty())
            .cloned()
            .collect();
        for svc in services {
            let (ended, missing) = replica_gaps(&self.state, &svc);
            if missing.is_empty() {
                continue;
            }
            info!(service = %svc.name, replicas = missing.len(), "restoring replicas");
            if let Err(e) = self.finish_removal(&ended).await {
                warn!(service = %svc.name, error = %e, "cannot remove ended replicas");
                continue;
            }
            for i in missing {
                // The carriers come up on their own; nobody waits here.
                if let Err(e) = self.start_replicas(&svc, i..=i).await {
                    warn!(service = %svc.name, replica = i, error = %e, "cannot restore replica");
                }
            }
            if let Err(e) = self.sync_service(&svc.id) {
                warn!(service = %svc.name, error = %e, "cannot update the service");
            }
        }
    }

    /// Makes the datapath's backend table and published ports of a service
    /// match its replicas: this host's, and on an overlay network the other
    /// hosts' (`State::peers`), in name order.
    pub(super) fn sync_service(&mut self, id: &str) -> Result<()> {
        let Some(svc) = self.state.services.get(id).cloned() else {
            return Ok(());
        };
        let mut named: Vec<(&str, Backend)> = self
            .state
            .replicas_of(id)
            .into_iter()
            .filter_map(|c| Some((c.name.as_str(), self.backend_of(c, &svc)?)))
            .collect();
        named.extend(
            self.state
                .peers
                .values()
                .filter(|p| p.services.iter().any(|s| s == id))
                .filter_map(|p| {
                    let remote = self.remote_endpoint(p)?;
                    Some((p.container_name.as_str(), Backend::Remote { ip: remote.ip }))
                }),
        );
        named.sort();
        let backends: Vec<Backend> = named.into_iter().map(|(_, b)| b).collect();
        let context = || format!("cannot update service {}", svc.name);
        self.dataplane
            .set_service(svc.index, svc.vip, &backends)
            .map_err(|e| EngineError::system(context(), e))?;
        for p in &svc.ports {
            self.dataplane
                .set_service_publish(
                    p.host_ip,
                    p.host_port,
                    p.proto,
                    svc.index,
                    svc.vip,
                    p.container_port,
                )
                .map_err(|e| EngineError::system(context(), e))?;
        }
        Ok(())
    }

    /// The replica's address on the service's network and its host-side
    /// veth, as the load balancer needs them; none for a replica on its way
    /// out (`removing`), which takes no new connections.
    fn backend_of(&self, c: &Container, svc: &Service) -> Option<Backend> {
        if c.removing {
            return None;
        }
        let ep = c
            .endpoints
            .iter()
            .find(|e| e.network_id == svc.network_id)?;
        let link = self.links.get(&ep.id)?;
        Some(Backend::Local {
            ip: ep.ip,
            ifindex: link.ifindex,
        })
    }

    pub(super) fn remove_service_datapath(&mut self, svc: &Service) {
        for p in &svc.ports {
            if let Err(e) = self
                .dataplane
                .remove_publish(p.host_ip, p.host_port, p.proto)
            {
                warn!(service = %svc.name, error = %e, "cannot unpublish");
            }
        }
        if let Err(e) = self.dataplane.remove_service(svc.index, svc.vip) {
            warn!(service = %svc.name, error = %e, "cannot remove from the datapath");
        }
    }
}

/// Takes the replicas `ids` out of service `service` and marks them for
/// removal (`removing`), which a restarted daemon finishes.
fn retire(next: &mut State, service: &str, ids: &[String]) {
    update_where(
        &mut next.containers,
        |c| ids.contains(&c.id),
        |c| {
            c.services.retain(|s| s != service);
            c.removing = true;
        },
    );
}

/// The replicas of `svc` this host should run and does not: the ids of
/// those whose process has ended, and the numbers of every replica to
/// start (the ended ones' included).
fn replica_gaps(state: &State, svc: &Service) -> (Vec<String>, Vec<u32>) {
    let present = state.replicas_of(&svc.id);
    let (mut ended, mut missing) = (Vec::new(), Vec::new());
    for i in 1..=svc.replicas {
        let name = replica_name(&svc.name, i);
        match present.iter().find(|c| c.name == name) {
            None => missing.push(i),
            Some(c) if c.removing => {}
            Some(c) if running_pid(c).is_none() => {
                ended.push(c.id.clone());
                missing.push(i);
            }
            Some(_) => {}
        }
    }
    (ended, missing)
}

/// `NAME.i`, Docker's task naming.
pub(super) fn replica_name(service: &str, i: u32) -> String {
    format!("{service}.{i}")
}

fn is_replica_name(service: &str, name: &str) -> bool {
    name.strip_prefix(service)
        .and_then(|r| r.strip_prefix('.'))
        .is_some_and(|n| n.parse::<u32>().is_ok())
}
