//! Containers (network sandboxes): create, and remove in two steps when a
//! process must be stopped first.
//!
//! A process may take seconds to stop (SIGTERM, then SIGKILL after
//! [`STOP_GRACE`]). The engine does not wait for it: `rm -f` marks the
//! record `removing` (its name and addresses stay taken, it leaves DNS and
//! every service's rotation at once) and hands the stop to a background
//! job; when the job reports back, the engine removes the record and the
//! kernel objects, and `rm` answers. A daemon killed in between finds the
//! mark on start and finishes the removal, so no process is left that
//! nobody stops and no address is handed out while its veth can still
//! send from it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, warn};

use super::command::{Done, Internal};
use super::snapshot::{hold, log_path, running_pid, sandbox_of};
use super::spec::{ContainerSpec, NetworkMode};
use super::{Engine, now, ports, random_id};
use crate::drivers::{Attachment, options};
use crate::error::{EngineError, Result};
use crate::model::{Container, NameOf, NetMode, Process, State, check_name, update_where};
use crate::names;
use crate::netlink::Netns;
use crate::{process, sandbox};

/// How long `rm -f` waits for a container's process after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

impl Engine {
    pub(super) async fn create_container(
        &mut self,
        spec: ContainerSpec,
    ) -> Result<Done<Container>> {
        let (c, carriers) = self.create_container_now(spec).await?;
        Ok(self.after_carriers(carriers, c))
    }

    /// Creates the container and answers with the links the host reaches
    /// it through that are not up yet (see [`Engine::after_carriers`]).
    pub(super) async fn create_container_now(
        &mut self,
        spec: ContainerSpec,
    ) -> Result<(Container, Vec<String>)> {
        check_name(NameOf::Container, &spec.name).map_err(EngineError::InvalidParameter)?;
        if let Some(other) = self.state.containers.values().find(|c| c.name == spec.name) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{}\" is already in use by container \"{}\". \
                 You have to remove (or rename) that container to be able to reuse that name.",
                spec.name, other.id
            )));
        }
        if spec.cmd.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(EngineError::InvalidParameter("no command specified".into()));
        }
        if let Some(path) = &spec.netns
            && !Netns::Path(path.clone()).exists()
        {
            return Err(EngineError::InvalidParameter(format!(
                "{} is not a network namespace",
                path.display()
            )));
        }
        if spec.netns.is_some() && spec.cmd.is_some() {
            return Err(EngineError::InvalidParameter(
                "a container in a namespace netd does not own (--netns) runs no command of \
                 netd's: its runtime starts its processes"
                    .into(),
            ));
        }
        let mut c = Container {
            id: random_id(),
            name: spec.name.clone(),
            created: now(),
            net: NetMode::Host,
            network_mode: String::new(),
            endpoints: Vec::new(),
            process: spec.cmd.clone().map(|cmd| Process {
                cmd,
                pid: None,
                started: None,
            }),
            ports: Vec::new(),
            services: Vec::new(),
            removing: false,
            labels: spec.labels.clone(),
        };
        let own_netns = own_namespace(&self.cfg.prefix, &spec.name, spec.netns.clone());
        let static_settings = spec.endpoint.ip.is_some() || !spec.endpoint.aliases.is_empty();
        let network = match &spec.network {
            NetworkMode::Network(key) => {
                let net = self.network(key)?.clone();
                match self.drivers.of(&net)?.attachment() {
                    Attachment::HostNamespace => {
                        c.network_mode = "host".into();
                        None
                    }
                    Attachment::Loopback => {
                        c.net = own_netns;
                        c.network_mode = "none".into();
                        None
                    }
                    Attachment::Interface => {
                        c.net = own_netns;
                        c.network_mode = net.name.clone();
                        Some(net)
                    }
                }
            }
            NetworkMode::None => {
                c.net = own_netns;
                c.network_mode = "none".into();
                None
            }
            NetworkMode::Host => {
                c.network_mode = "host".into();
                None
            }
            NetworkMode::Container(key) => {
                let owner = self.container(key)?;
                c.net = match &owner.net {
                    NetMode::Own { .. } => NetMode::Container {
                        id: owner.id.clone(),
                    },
                    shared => shared.clone(),
                };
                c.network_mode = format!("container:{}", owner.id);
                None
            }
        };
        if spec.netns.is_some() && !matches!(c.net, NetMode::Path { .. }) {
            return Err(EngineError::InvalidParameter(format!(
                "--netns cannot be combined with network mode {}",
                c.network_mode
            )));
        }
        if static_settings && network.is_none() {
            // The API refuses this for `none`/`host`/`container:` already;
            // here it catches a network that resolves to one of them.
            return Err(EngineError::InvalidParameter(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        if (spec.endpoint.ifname.is_some() || spec.endpoint.mac.is_some()) && network.is_none() {
            return Err(EngineError::InvalidParameter(format!(
                "an interface name or MAC address needs a network the container gets an \
                 interface on; its network mode is {}",
                c.network_mode
            )));
        }
        let networks: Vec<&str> = network.iter().map(|n| n.id.as_str()).collect();
        c.services = self.services_to_join(&networks, &spec.services)?;
        if !spec.ports.is_empty() {
            let publishes = match &network {
                Some(net) => self.drivers.of(net)?.publishes_ports(),
                None => false,
            };
            if !publishes {
                return Err(EngineError::InvalidParameter(format!(
                    "published ports need a bridge network; the container's network mode is {}",
                    c.network_mode
                )));
            }
            c.ports = ports::resolve(
                &spec.ports,
                network.as_ref().and_then(options::host_binding),
                &self.state,
                &ports::HostBinds::read(),
            )?;
        }
        // Last, as on a cluster network it announces the endpoint.
        if let Some(net) = &network {
            let services = c.services.clone();
            let ep = self
                .new_endpoint(&c, net, &spec.endpoint, &services)
                .await?;
            c.endpoints.push(ep);
        }
        let mut next = State::clone(&self.state);
        next.containers.insert(c.id.clone(), Arc::new(c.clone()));
        if let Err(e) = self.commit(next) {
            self.withdraw_all(&c).await;
            return Err(e);
        }
        let carriers = match self.apply_container(&c).await {
            Ok(carriers) => carriers,
            Err(e) => {
                self.rollback_container(&c).await?;
                return Err(e);
            }
        };
        if let Some(cmd) = spec.cmd {
            let log = log_path(&self.cfg.log_dir, &c);
            let netns = sandbox_of(&self.state, &c).map(|ns| ns.path());
            let (pid, started) = match sandbox::spawn(netns.as_deref(), &cmd, &log) {
                Ok(spawned) => spawned,
                Err(e) => {
                    self.rollback_container(&c).await?;
                    return Err(EngineError::InvalidParameter(format!(
                        "failed to start {:?} in container {}: {e}",
                        cmd[0], c.name
                    )));
                }
            };
            let mut next = State::clone(&self.state);
            let stored = Arc::make_mut(next.containers.get_mut(&c.id).expect("container exists"));
            stored.process = Some(Process {
                cmd,
                pid: Some(pid),
                started: Some(started),
            });
            c = stored.clone();
            self.commit(next)?;
        }
        for svc in &c.services {
            self.sync_service(svc)?;
        }
        info!(container = %c.name, id = %c.id, mode = %c.network_mode, "container created");
        Ok((c, carriers))
    }

    pub(super) async fn remove_container(&mut self, key: &str, force: bool) -> Result<Done<()>> {
        let c = self.container(key)?.clone();
        if c.removing {
            return Err(EngineError::Conflict(format!(
                "removal of container {} is already in progress",
                c.name
            )));
        }
        if let Some(user) = self
            .state
            .containers
            .values()
            .find(|o| o.net == (NetMode::Container { id: c.id.clone() }))
        {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"/{}\": its network namespace is used by container \
                 \"/{}\"; remove that container first",
                c.name, user.name
            )));
        }
        if running_pid(&c).is_some() && !force {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"/{}\": container is running: stop the container \
                 before removing or force remove",
                c.name
            )));
        }
        self.remove_containers(vec![c.id]).await
    }

    /// Removes the containers `ids`: at once those without a running
    /// process, the others once a background job has stopped theirs. The
    /// answer comes when all are gone.
    pub(super) async fn remove_containers(&mut self, ids: Vec<String>) -> Result<Done<()>> {
        // Out of the cluster first: with the store out of reach, the
        // removal fails before anything here changed.
        for id in &ids {
            if let Some(c) = self.state.containers.get(id).cloned() {
                self.withdraw_endpoints(&c).await?;
            }
        }
        let (running, idle): (Vec<String>, Vec<String>) = ids.into_iter().partition(|id| {
            self.state
                .containers
                .get(id)
                .is_some_and(|c| running_pid(c).is_some())
        });
        if !running.is_empty() {
            self.mark_removing(&running).await?;
        }
        self.finish_removal(&idle).await?;
        if running.is_empty() {
            return Ok(Done::Now(Ok(())));
        }
        Ok(Done::Later(self.stop_then_remove(running)))
    }

    /// Commits the `removing` mark on `ids` and takes them out of their
    /// services' rotation (DNS stops naming them with the same commit).
    async fn mark_removing(&mut self, ids: &[String]) -> Result<()> {
        let mut next = State::clone(&self.state);
        update_where(
            &mut next.containers,
            |c| ids.contains(&c.id),
            |c| c.removing = true,
        );
        self.commit(next)?;
        let services = self.services_backed_by(ids);
        self.sync_services(services);
        Ok(())
    }

    /// The background job of a removal: stops the processes of `ids`, all
    /// at once, then has the engine finish. The processes are held (by
    /// pidfd) from here on, so the job signals them and nothing else, also
    /// if they end and their pids are reused meanwhile. A container whose
    /// process outlives SIGKILL keeps its record (`removing`): it is not
    /// removed while a process of its runs.
    pub(super) fn stop_then_remove(
        &self,
        ids: Vec<String>,
    ) -> futures_util::future::BoxFuture<'static, Result<()>> {
        let (mut held, mut owners) = (Vec::new(), Vec::new());
        for c in ids.iter().filter_map(|id| self.state.containers.get(id)) {
            if let Some(p) = hold(c) {
                owners.push((p.pid(), c.id.clone(), c.name.clone()));
                held.push(p);
            }
        }
        let internal = self.internal.clone();
        Box::pin(async move {
            // One thread for all of them: they share one grace period.
            let left = tokio::task::spawn_blocking(move || process::stop(held, STOP_GRACE))
                .await
                .map_err(|e| {
                    EngineError::System(format!(
                        "cannot stop the processes ({e}); the removal finishes when the \
                         daemon starts again"
                    ))
                })?;
            let (stuck, stuck_names): (Vec<String>, Vec<String>) = owners
                .into_iter()
                .filter(|(pid, ..)| left.contains(pid))
                .map(|(_, id, name)| (id, name))
                .unzip();
            let ids = ids.into_iter().filter(|id| !stuck.contains(id)).collect();
            let (done, answer) = oneshot::channel();
            let gone = || {
                EngineError::System(
                    "the daemon stopped before the removal ended; it \
                                               finishes when the daemon starts again"
                        .into(),
                )
            };
            internal
                .send(Internal::Stopped { ids, done })
                .map_err(|_| gone())?;
            answer.await.map_err(|_| gone())??;
            if stuck_names.is_empty() {
                return Ok(());
            }
            Err(EngineError::System(format!(
                "the processes of {} outlived SIGKILL; they stay marked for removal: remove \
                 them again",
                stuck_names.join(", ")
            )))
        })
    }

    /// Removes the records of `ids` (those still there) in one commit, then
    /// their kernel objects and logs.
    pub(super) async fn finish_removal(&mut self, ids: &[String]) -> Result<()> {
        let doomed: Vec<Container> = ids
            .iter()
            .filter_map(|id| self.state.containers.get(id))
            .map(|c| (**c).clone())
            .collect();
        if doomed.is_empty() {
            return Ok(());
        }
        let services = self.services_backed_by(ids);
        let mut next = State::clone(&self.state);
        for c in &doomed {
            next.containers.remove(&c.id);
        }
        self.commit(next)?;
        // Out of the rotation before the flows to them are forgotten below.
        self.sync_services(services);
        for c in &doomed {
            self.remove_container_kernel(c).await;
            let _ = std::fs::remove_file(log_path(&self.cfg.log_dir, c));
            info!(container = %c.name, "container removed");
        }
        Ok(())
    }

    /// The services any of `ids` backs.
    fn services_backed_by(&self, ids: &[String]) -> BTreeSet<String> {
        ids.iter()
            .filter_map(|id| self.state.containers.get(id))
            .flat_map(|c| c.services.iter().cloned())
            .collect()
    }

    /// Rewrites the backends of `services`.
    fn sync_services(&mut self, services: BTreeSet<String>) {
        for svc in services {
            if let Err(e) = self.sync_service(&svc) {
                warn!(service = %svc, error = %e, "cannot update its backends");
            }
        }
    }

    async fn rollback_container(&mut self, c: &Container) -> Result<()> {
        let mut back = State::clone(&self.state);
        back.containers.remove(&c.id);
        self.commit(back)?;
        self.remove_container_kernel(c).await;
        self.withdraw_all(c).await;
        Ok(())
    }

    /// Withdraws the cluster endpoints of a container that is not (or no
    /// longer) created.
    async fn withdraw_all(&mut self, c: &Container) {
        for ep in &c.endpoints {
            if let Some(net) = self.state.networks.get(&ep.network_id).cloned() {
                self.withdraw(&net, ep).await;
            }
        }
    }
}

/// The namespace a container gets when it has one: the one at `path` when
/// the caller brings it (CNI), else one netd makes and names.
fn own_namespace(prefix: &str, name: &str, path: Option<PathBuf>) -> NetMode {
    match path {
        Some(path) => NetMode::Path { path },
        None => NetMode::Own {
            netns: names::netns(prefix, name),
        },
    }
}
