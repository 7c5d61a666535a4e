//! What the engine's loop receives: commands from its handles (the API now;
//! the cluster store and CNI later) and reports of its own background jobs.
//!
//! A command runs to completion inside the loop. Its answer is either ready
//! then ([`Done::Now`]) or comes from a job that runs beside the loop
//! ([`Done::Later`]: stopping processes, waiting for a new bridge to come
//! up), so that a slow wait holds up only the caller that asked for it.

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

use super::Engine;
use super::services::ServiceSpec;
use super::spec::{ContainerSpec, EndpointSpec, NetworkFilters, NetworkSpec};
use crate::error::Result;
use crate::model::{Container, Network, Service};

/// Where a command's answer goes. Sending fails only when the caller went
/// away, which changes nothing about the command.
pub type Reply<T> = oneshot::Sender<Result<T>>;

/// A change to the state, with the channel its answer goes to.
pub enum Command {
    CreateNetwork(NetworkSpec, Reply<Network>),
    RemoveNetwork(String, Reply<()>),
    PruneNetworks(NetworkFilters, Reply<Vec<String>>),
    Connect {
        network: String,
        container: String,
        endpoint: EndpointSpec,
        reply: Reply<()>,
    },
    Disconnect {
        network: String,
        container: String,
        force: bool,
        reply: Reply<()>,
    },
    CreateContainer(ContainerSpec, Reply<Container>),
    RemoveContainer {
        key: String,
        force: bool,
        reply: Reply<()>,
    },
    CreateService(ServiceSpec, Reply<Service>),
    ScaleService {
        key: String,
        replicas: u32,
        reply: Reply<Service>,
    },
    RemoveService(String, Reply<()>),
    /// Answers once every command sent before it has run: the loop is
    /// alive and has caught up (a watchdog's question, a test's barrier).
    Ping(Reply<()>),
    /// What the cluster agent learned; no answer.
    Cluster(super::ClusterUpdate),
}

/// A background job's report.
pub(super) enum Internal {
    /// The processes of these containers (all marked `removing`) are
    /// stopped: remove them, then answer `done`.
    Stopped {
        ids: Vec<String>,
        done: oneshot::Sender<Result<()>>,
    },
}

/// Sends a command's answer.
pub(super) type Answer = Box<dyn FnOnce() + Send>;

/// A command's answer.
pub(super) enum Done<T> {
    Now(Result<T>),
    /// The rest of the work runs beside the loop; its result is the answer.
    Later(BoxFuture<'static, Result<T>>),
}

impl<T: Send + 'static> Done<T> {
    /// Turns the answer into another one once it is there.
    pub(super) fn map<U: Send + 'static>(
        self,
        f: impl FnOnce(T) -> Result<U> + Send + 'static,
    ) -> Done<U> {
        match self {
            Done::Now(r) => Done::Now(r.and_then(f)),
            Done::Later(fut) => Done::Later(Box::pin(async move { fut.await.and_then(f) })),
        }
    }

    /// The answer to send to `reply`: at once, or by spawning the rest on
    /// `runtime` (the daemon's: the engine's own thread only runs
    /// commands).
    fn answer(self, reply: Reply<T>, runtime: tokio::runtime::Handle) -> Answer {
        Box::new(move || match self {
            Done::Now(r) => {
                let _ = reply.send(r);
            }
            Done::Later(fut) => {
                runtime.spawn(async move {
                    let _ = reply.send(fut.await);
                });
            }
        })
    }
}

impl<T> From<Result<T>> for Done<T> {
    fn from(r: Result<T>) -> Done<T> {
        Done::Now(r)
    }
}

/// An error answer, or the command's own.
fn flatten<T>(r: Result<Done<T>>) -> Done<T> {
    r.unwrap_or_else(|e| Done::Now(Err(e)))
}

impl Engine {
    /// Runs `command`; returns its answer, to be sent once the snapshot
    /// shows what the command did (so that a client reads its own writes).
    pub(super) async fn execute(&mut self, command: Command) -> Answer {
        let runtime = self.runtime.clone();
        match command {
            Command::CreateNetwork(spec, reply) => {
                Done::from(self.create_network(spec).await).answer(reply, runtime)
            }
            Command::RemoveNetwork(key, reply) => {
                Done::from(self.remove_network(&key).await).answer(reply, runtime)
            }
            Command::PruneNetworks(filters, reply) => {
                Done::from(self.prune_networks(&filters).await).answer(reply, runtime)
            }
            Command::Connect {
                network,
                container,
                endpoint,
                reply,
            } => flatten(self.connect(&network, &container, endpoint).await).answer(reply, runtime),
            Command::Disconnect {
                network,
                container,
                force,
                reply,
            } => Done::from(self.disconnect(&network, &container, force).await)
                .answer(reply, runtime),
            Command::CreateContainer(spec, reply) => {
                flatten(self.create_container(spec).await).answer(reply, runtime)
            }
            Command::RemoveContainer { key, force, reply } => {
                flatten(self.remove_container(&key, force).await).answer(reply, runtime)
            }
            Command::CreateService(spec, reply) => {
                flatten(self.create_service(spec).await).answer(reply, runtime)
            }
            Command::ScaleService {
                key,
                replicas,
                reply,
            } => flatten(self.scale_service(&key, replicas).await).answer(reply, runtime),
            Command::RemoveService(key, reply) => {
                flatten(self.remove_service(&key).await).answer(reply, runtime)
            }
            Command::Ping(reply) => Done::Now(Ok(())).answer(reply, runtime),
            Command::Cluster(update) => {
                self.cluster_update(update).await;
                Box::new(|| ())
            }
        }
    }

    /// Handles a job's report; returns the answer to send once the
    /// snapshot shows it (as [`Engine::execute`]).
    pub(super) async fn internal(&mut self, event: Internal) -> Answer {
        match event {
            Internal::Stopped { ids, done } => {
                let result = self.finish_removal(&ids).await;
                Box::new(move || {
                    let _ = done.send(result);
                })
            }
        }
    }
}
