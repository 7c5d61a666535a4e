//! How everyone else talks to the engine: commands go through a channel to
//! its loop and wait for their answer; reads take the latest snapshot and
//! wait for nothing. Cheap to clone.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use super::command::{Command, Reply};
use super::services::ServiceSpec;
use super::snapshot::Snapshot;
use super::spec::{ContainerSpec, EndpointSpec, NetworkFilters, NetworkSpec};
use crate::dns::DnsCounters;
use crate::error::{EngineError, Result};
use crate::model::{Container, Network, Service};

#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    dns: DnsCounters,
}

fn stopped() -> EngineError {
    EngineError::System("the engine has stopped: the daemon is shutting down".into())
}

impl EngineHandle {
    pub(super) fn new(
        commands: mpsc::Sender<Command>,
        snapshot: watch::Receiver<Arc<Snapshot>>,
        dns: DnsCounters,
    ) -> EngineHandle {
        EngineHandle {
            commands,
            snapshot,
            dns,
        }
    }

    /// The state as of the last command the engine finished.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The embedded DNS server's query counters.
    pub fn dns_counters(&self) -> &DnsCounters {
        &self.dns
    }

    /// Sends a command and waits for its answer. Once sent, the command
    /// runs to completion even if this future is dropped.
    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    pub async fn create_network(&self, spec: NetworkSpec) -> Result<Network> {
        self.call(|r| Command::CreateNetwork(spec, r)).await
    }

    pub async fn remove_network(&self, key: &str) -> Result<()> {
        self.call(|r| Command::RemoveNetwork(key.to_string(), r))
            .await
    }

    /// Removes every unused custom network matching the filters; returns the
    /// names removed.
    pub async fn prune_networks(&self, filters: NetworkFilters) -> Result<Vec<String>> {
        self.call(|r| Command::PruneNetworks(filters, r)).await
    }

    pub async fn connect(
        &self,
        network: &str,
        container: &str,
        endpoint: EndpointSpec,
    ) -> Result<()> {
        self.call(|reply| Command::Connect {
            network: network.to_string(),
            container: container.to_string(),
            endpoint,
            reply,
        })
        .await
    }

    pub async fn disconnect(&self, network: &str, container: &str, force: bool) -> Result<()> {
        self.call(|reply| Command::Disconnect {
            network: network.to_string(),
            container: container.to_string(),
            force,
            reply,
        })
        .await
    }

    pub async fn create_container(&self, spec: ContainerSpec) -> Result<Container> {
        self.call(|r| Command::CreateContainer(spec, r)).await
    }

    pub async fn remove_container(&self, key: &str, force: bool) -> Result<()> {
        self.call(|reply| Command::RemoveContainer {
            key: key.to_string(),
            force,
            reply,
        })
        .await
    }

    pub async fn create_service(&self, spec: ServiceSpec) -> Result<Service> {
        self.call(|r| Command::CreateService(spec, r)).await
    }

    pub async fn scale_service(&self, key: &str, replicas: u32) -> Result<Service> {
        self.call(|reply| Command::ScaleService {
            key: key.to_string(),
            replicas,
            reply,
        })
        .await
    }

    pub async fn remove_service(&self, key: &str) -> Result<()> {
        self.call(|r| Command::RemoveService(key.to_string(), r))
            .await
    }

    /// Hands the engine what the cluster agent learned; false once the
    /// engine has stopped.
    pub async fn cluster(&self, update: super::ClusterUpdate) -> bool {
        self.commands.send(Command::Cluster(update)).await.is_ok()
    }

    /// Returns once the engine has run every command sent before this one.
    pub async fn ping(&self) -> Result<()> {
        self.call(Command::Ping).await
    }
}
