//! The engine: the single owner of netd's state.
//!
//! # Shape
//! One task owns the state and runs the commands that change it, one at a
//! time, each to completion (rollback included), fed by a channel (the
//! command loop of mini-redis): the API sends a [`Command`] with a reply
//! channel through an [`EngineHandle`]; later the cluster store's watch and
//! the CNI plugin become more senders of the same commands. A client that
//! goes away (Ctrl-C, a timeout) only drops its reply: the change it asked
//! for is finished or rolled back all the same. Nothing is locked, so
//! nothing is held across an await.
//!
//! After every command the engine publishes an immutable [`Snapshot`] (the
//! state's tables are persistent maps, so this copies nothing): `ls`,
//! `inspect`, `/_ping`, `version`, DNS and metrics read the latest one and
//! never wait for a command in progress.
//!
//! Waits that take seconds run beside the loop, not in it: a container's
//! process is stopped by a background job while the record says
//! `removing` (a daemon that restarts finishes the removal), and a new
//! bridge's carrier is awaited before answering, not before the next
//! command. Such a command's answer comes when the job is done
//! ([`command::Done::Later`]).
//!
//! # Each change
//! Validate against the state, persist the new desired state, then make
//! the kernel match through the network's driver (`crate::drivers`),
//! rolling back on failure. On start the engine loads the store and
//! reconciles the kernel with it (`reconcile`), which finishes what a crash
//! interrupted and removes what no record owns.

mod cluster;
mod command;
mod containers;
mod handle;
mod kernel;
mod networks;
mod ports;
mod reconcile;
mod services;
mod snapshot;
pub mod spec;
mod taken;

pub use cluster::{
    ClusterReading, ClusterStatus, ClusterTelemetry, ClusterUpdate, VNI_OPTION, run_agent,
};
pub use command::Command;
pub use handle::EngineHandle;
pub use services::{ServiceSpec, check_replicas};
pub use snapshot::{Link, Snapshot};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::dataplane::{self, Dataplane};
use crate::dns::{Dns, DnsConfig, DnsCounters};
use crate::drivers::{Drivers, Kernel};
use crate::error::{EngineError, Result};
use crate::model::{State, Table};
use crate::netlink::Netlink;
use crate::store::Store;
use crate::uplink::Uplink;
use command::Internal;
use taken::Taken;

/// Commands waiting for the engine before senders wait in turn: a burst of
/// clients queues here instead of each holding a connection open.
const QUEUE: usize = 256;

/// What the engine needs to know about its surroundings.
pub struct EngineConfig {
    /// Prefix of every kernel object name (see `names`).
    pub prefix: String,
    /// Where container process logs go.
    pub log_dir: PathBuf,
    /// The way out; `None` on a host without one.
    pub uplink: Option<Uplink>,
    /// The embedded DNS server's settings.
    pub dns: DnsConfig,
    /// The cluster store and how this host takes part, in cluster mode.
    pub cluster: Option<(crate::cluster::Cluster, crate::cluster::HostSpec)>,
}

pub struct Engine {
    cfg: EngineConfig,
    drivers: Arc<Drivers>,
    /// The last committed state; a change works on a copy
    /// (`State::clone(&self.state)`, which shares every node).
    state: Arc<State>,
    /// Endpoint id -> its host-side interface, for endpoints whose driver
    /// has one: not persisted (the kernel numbers interfaces anew), kept
    /// up to date by attach and detach.
    links: Table<Link>,
    /// Follows every committed state, so names resolve the moment
    /// containers and services come and go.
    dns: Dns,
    /// Follows every committed state: what new objects must not reuse.
    taken: Taken,
    store: Box<dyn Store>,
    netlink: Netlink,
    dataplane: Dataplane,
    /// The cluster, in cluster mode.
    cluster: Option<cluster::ClusterLink>,
    /// Where the snapshot of every command's outcome goes.
    published: watch::Sender<Arc<Snapshot>>,
    /// The daemon's runtime, where jobs, deferred answers and DNS run:
    /// the engine's own thread only runs commands.
    runtime: tokio::runtime::Handle,
    /// Background jobs report back through here.
    internal: mpsc::UnboundedSender<Internal>,
    internal_rx: Option<mpsc::UnboundedReceiver<Internal>>,
}

impl Engine {
    /// Loads the saved state, adds the predefined networks on first start,
    /// and makes the kernel match the state.
    pub async fn start(
        cfg: EngineConfig,
        drivers: Drivers,
        mut store: Box<dyn Store>,
        netlink: Netlink,
        dataplane: Dataplane,
    ) -> Result<Engine> {
        let state = store
            .load()
            .map_err(|e| EngineError::System(e.to_string()))?;
        crate::state_dir::create_private_dir(&cfg.log_dir).map_err(|e| {
            EngineError::system(format!("cannot create {}", cfg.log_dir.display()), e)
        })?;
        let drivers = Arc::new(drivers);
        let state = Arc::new(state);
        let (published, _) = watch::channel(Arc::new(Snapshot::new(
            state.clone(),
            Table::new(),
            drivers.clone(),
            cfg.log_dir.clone(),
            None,
        )));
        let (internal, internal_rx) = mpsc::unbounded_channel();
        let cluster = cfg
            .cluster
            .clone()
            .map(|(client, host)| cluster::ClusterLink::new(client, host));
        let mut engine = Engine {
            dns: Dns::new(cfg.dns.clone()),
            cfg,
            drivers,
            taken: Taken::of(&state),
            state,
            links: Table::new(),
            store,
            netlink,
            dataplane,
            cluster,
            published,
            runtime: tokio::runtime::Handle::current(),
            internal,
            internal_rx: Some(internal_rx),
        };
        engine.attach_host()?;
        engine.ensure_predefined()?;
        engine.reconcile().await;
        engine.sync_host_addresses();
        engine.dns.sync(&engine.state);
        engine.publish();
        Ok(engine)
    }

    /// Starts the command loop and returns the handle that talks to it.
    /// The loop ends when every handle is dropped.
    ///
    /// The loop has a thread of its own (with a single-threaded runtime):
    /// a command's blocking steps (the store's fsync, creating a namespace,
    /// starting a process) then never hold up a worker of the daemon's
    /// runtime, which serves the API, the metrics and DNS meanwhile.
    pub fn spawn(mut self) -> EngineHandle {
        let (commands, rx) = mpsc::channel(QUEUE);
        let internal = self.internal_rx.take().expect("spawned once");
        let handle = EngineHandle::new(commands, self.published.subscribe(), self.dns.counters());
        std::thread::Builder::new()
            .name("netd-engine".into())
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the engine's thread")
                    .block_on(self.run(rx, internal));
            })
            .expect("a thread for the engine");
        handle
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        loop {
            tokio::select! {
                // Jobs finish what earlier commands began: first.
                biased;
                Some(event) = internal.recv() => {
                    let answer = self.internal(event).await;
                    self.publish();
                    answer();
                }
                command = commands.recv() => match command {
                    Some(command) => {
                        let answer = self.execute(command).await;
                        self.publish();
                        answer();
                    }
                    None => break,
                },
            }
        }
        self.dns.shutdown();
        info!("engine stopped");
    }

    /// The host-wide datapath: the uplink program (masquerade replies and
    /// published ports from outside) and the socket hooks (published ports
    /// from the host itself), attached once per daemon and re-adopted on
    /// restart.
    fn attach_host(&mut self) -> Result<()> {
        let context = "cannot set up the host datapath";
        let cookie = dataplane::host_netns_cookie().map_err(|e| EngineError::system(context, e))?;
        let uplink = self.cfg.uplink.as_ref().map(|u| (u.ifindex, u.addr));
        self.dataplane
            .set_host(uplink, cookie)
            .map_err(|e| EngineError::system(context, e))?;
        if let Some(u) = &self.cfg.uplink {
            self.dataplane
                .attach_uplink(&u.ifname, u.ifindex)
                .map_err(|e| EngineError::system(context, e))?;
        }
        let cgroup = dataplane::cgroup2_root().map_err(|e| EngineError::system(context, e))?;
        self.dataplane
            .attach_socket_hooks(&cgroup)
            .map_err(|e| EngineError::system(context, e))?;
        Ok(())
    }

    /// Tells the socket hooks which addresses are "this host" (published
    /// ports answer on all of them); called at start and whenever a network
    /// (and so a gateway address) comes or goes.
    fn sync_host_addresses(&mut self) {
        if let Err(e) = self
            .dataplane
            .set_host_addresses(&crate::uplink::host_addresses())
        {
            warn!(error = %e, "cannot update the host's addresses for published ports");
        }
    }

    /// What drivers act on.
    fn kernel(&mut self) -> Kernel<'_> {
        Kernel {
            prefix: &self.cfg.prefix,
            netlink: &self.netlink,
            dataplane: &mut self.dataplane,
        }
    }

    /// Persists `next` and makes it the current state, names included.
    /// Nothing is changed when the store refuses.
    fn commit(&mut self, next: State) -> Result<()> {
        self.save(next)?;
        self.dns.sync(&self.state);
        Ok(())
    }

    /// [`Engine::commit`] without telling the DNS: for changes whose names
    /// must not resolve before the datapath can reach them (the caller
    /// syncs the DNS after its kernel step).
    fn save(&mut self, next: State) -> Result<()> {
        self.store
            .save(&self.state, &next)
            .map_err(|e| EngineError::System(e.to_string()))?;
        self.taken.update(&self.state, &next);
        self.state = Arc::new(next);
        Ok(())
    }

    /// Makes the current state and links what readers see.
    fn publish(&self) {
        let cluster = self.cluster_status();
        let current = self.published.borrow().clone();
        if Arc::ptr_eq(&current.state, &self.state)
            && current.links == self.links
            && current.cluster == cluster
        {
            return;
        }
        self.published.send_replace(Arc::new(self.view()));
    }

    /// The snapshot of the current state (the engine's own reads use the
    /// same lookups as everyone else's).
    fn view(&self) -> Snapshot {
        Snapshot::new(
            self.state.clone(),
            self.links.clone(),
            self.drivers.clone(),
            self.cfg.log_dir.clone(),
            self.cluster_status(),
        )
    }

    pub fn dns_counters(&self) -> DnsCounters {
        self.dns.counters()
    }
}

/// A 64-hex-character id from the kernel's random source, like Docker's.
fn random_id() -> String {
    let mut buf = [0u8; 32];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n, buf.len() as isize, "getrandom failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex() {
        let (a, b) = (random_id(), random_id());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
