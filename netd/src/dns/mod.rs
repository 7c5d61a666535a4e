//! The embedded DNS server of user-defined networks.
//!
//! Docker answers container names at 127.0.0.11 inside each container and
//! gets there with destination-NAT firewall rules in the container's
//! namespace. netd installs no firewall rules, so it does what those rules
//! emulate: the daemon opens a UDP and a TCP socket on 127.0.0.11:53
//! *inside* each container's namespace (a thread `setns`es, binds, and
//! hands the sockets to the runtime; 127.0.0.0/8 is local on the
//! container's `lo`). The container's resolv.conf says
//! `nameserver 127.0.0.11`, like Docker's.
//!
//! Why 127.0.0.11 and not the network's gateway (Podman's aardvark-dns):
//! the answer depends on who asks (names are scoped to the networks the
//! asker is on), and a socket inside the asker's own namespace identifies
//! it without looking at source addresses; it works on `--internal`
//! networks and on macvlan (where the gateway is not the host) alike, keeps
//! DNS traffic off the datapath, and is the address Docker users and
//! images expect.
//!
//! The daemon's own threads stay in the host's namespace, so forwarding to
//! the upstream resolvers happens from there (see `forward`).
//!
//! Containers are root in their namespace and may be hostile: one that is
//! only on `--internal` networks gets nothing forwarded (see
//! [`Records::forwards`]), each has a budget of forwarded queries in flight
//! and of TCP connections (see `budget`), and names of netd's own zones are
//! never forwarded (see `zones`).
//!
//! - `records`: the names, built from the state and swapped whole after a
//!   change (when a query first needs them);
//! - `zones`: the names netd is the authority for;
//! - `server`: the request handler (local answers, forwarding, counters);
//! - `tcp`: DNS over TCP, within the budgets;
//! - `budget`: what one container may hold of the daemon;
//! - `forward`: the upstream client, with timeouts and failover;
//! - `resolv`: the host's resolv.conf and the containers'.

mod budget;
mod forward;
mod records;
mod resolv;
mod server;
mod tcp;
mod zones;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_server::Server;
use tracing::{debug, warn};

use crate::model::{NetMode, State};
use crate::netlink::netns;

pub use forward::{UPSTREAM_TIMEOUT, Upstreams};
pub use records::Records;
pub use resolv::{EMBEDDED, ResolvConf};

/// Where `ip netns exec NAME` looks for files to bind-mount over /etc
/// (`/etc/netns/NAME/resolv.conf`); `sandbox` does the same.
pub const RESOLV_DIR: &str = "/etc/netns";

/// Longest pause between attempts to open a listener whose namespace does
/// not exist yet (the engine creates it right after committing the record).
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The embedded server's settings.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Upstream resolvers for every name that is not a container's or a
    /// service's, tried in order: `--dns`/`dns`, else the nameservers of
    /// the host's /etc/resolv.conf. Loopback ones are kept: unlike Docker's
    /// resolver, which forwards from inside the container, netd forwards
    /// from the daemon's (host) namespace, where e.g. systemd-resolved's
    /// 127.0.0.53 answers. Shared: the daemon changes them on reload.
    pub upstreams: Upstreams,
    /// Where containers' resolv.conf files go (`/etc/netns`).
    pub resolv_dir: PathBuf,
    /// Namespace names of this daemon start with this (`{prefix}-`): at the
    /// first sync, files netd wrote for such names that no container owns
    /// any more (a crash) are removed. Empty: no such clean-up.
    pub netns_prefix: String,
}

impl DnsConfig {
    /// `upstreams` as configured, or the host's when none are.
    pub fn new(upstreams: Vec<SocketAddr>, prefix: &str) -> DnsConfig {
        DnsConfig {
            upstreams: Upstreams::new(upstreams),
            resolv_dir: PathBuf::from(RESOLV_DIR),
            netns_prefix: format!("{prefix}-"),
        }
    }
}

/// Query counters since the daemon started. Every query counts in exactly
/// one of the first seven.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Answered from the records (a container or service name, an alias,
    /// `tasks.NAME`, PTR), including "exists, but no record of that type"
    /// and NXDOMAIN for names of netd's zones that nobody has.
    pub answered_local: u64,
    /// Forwarded, and the upstream's answer (other than NXDOMAIN) passed back.
    pub forwarded: u64,
    /// Forwarded, and the upstream's NXDOMAIN passed back.
    pub nxdomain: u64,
    /// No upstream answered (SERVFAIL sent), or a malformed/unsupported query.
    pub failed: u64,
    /// Not forwarded: the asker is only on `--internal` networks (SERVFAIL).
    pub refused_internal: u64,
    /// Not forwarded: the asker's forwarded queries in flight are at its
    /// budget (REFUSED).
    pub refused_container_budget: u64,
    /// Not forwarded: the daemon's forwarding slots are all taken (REFUSED).
    pub refused_daemon_budget: u64,
    /// Not a query outcome: upstreams asked that did not answer usably
    /// (a query that fails over counts here and in its outcome).
    pub upstream_failures: u64,
    /// Not a query outcome: TCP connections closed as soon as accepted,
    /// the container's budget of them being spent.
    pub tcp_rejected_container_budget: u64,
    /// The same, the daemon's being spent.
    pub tcp_rejected_daemon_budget: u64,
}

/// Reads the embedded server's query counters (cheap to clone).
#[derive(Clone)]
pub struct DnsCounters(Arc<server::Shared>);

impl DnsCounters {
    pub fn read(&self) -> DnsStats {
        let c = &self.0.counters;
        let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let (refused_container_budget, refused_daemon_budget) = c.forwards_refused.read();
        let (tcp_rejected_container_budget, tcp_rejected_daemon_budget) = c.tcp_rejected.read();
        DnsStats {
            answered_local: read(&c.answered_local),
            forwarded: read(&c.forwarded),
            nxdomain: read(&c.nxdomain),
            failed: read(&c.failed),
            refused_internal: read(&c.refused_internal),
            refused_container_budget,
            refused_daemon_budget,
            upstream_failures: self.0.forwarder.failures(),
            tcp_rejected_container_budget,
            tcp_rejected_daemon_budget,
        }
    }
}

/// Identity of a network namespace (its nsfs inode).
type NsId = (u64, u64);

/// One container's server: a task that waits for the namespace, binds the
/// sockets in it and serves until aborted.
struct Listener {
    netns: PathBuf,
    /// The namespace the sockets were bound in, once they are.
    bound: Arc<Mutex<Option<NsId>>>,
    task: tokio::task::AbortHandle,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Aborting drops the server, which aborts its socket tasks and so
        // closes the sockets (and lets the namespace go).
        self.task.abort();
    }
}

pub struct Dns {
    cfg: DnsConfig,
    shared: Arc<server::Shared>,
    /// The runtime the listeners are served on: the one `Dns` was made in
    /// (the daemon's), whichever thread calls `sync` later.
    runtime: Option<tokio::runtime::Handle>,
    /// By container id.
    listeners: HashMap<String, Listener>,
    /// resolv.conf contents written, by namespace name.
    files: HashMap<String, String>,
    synced_once: bool,
    stopped: bool,
}

impl Dns {
    pub fn new(cfg: DnsConfig) -> Dns {
        let shared = Arc::new(server::Shared::new(forward::Forwarder::new(
            cfg.upstreams.clone(),
            UPSTREAM_TIMEOUT,
        )));
        Dns {
            cfg,
            shared,
            runtime: tokio::runtime::Handle::try_current().ok(),
            listeners: HashMap::new(),
            files: HashMap::new(),
            synced_once: false,
            stopped: false,
        }
    }

    /// Called by the engine after every committed state change and once at
    /// start, from inside the tokio runtime (not from async code that must
    /// not block: it writes small files): makes `state` the one names are
    /// answered from (its records are built by the next query; queries in
    /// flight finish with the old ones), starts a listener in
    /// the namespace of every container that has its own namespace and an
    /// endpoint on a user-defined network, stops the others, and writes or
    /// removes `<resolv_dir>/<netns>/resolv.conf` for every container with
    /// its own namespace. Errors are logged.
    pub fn sync(&mut self, state: &Arc<State>) {
        self.shared.set_state(state);
        self.sync_files(state);
        if !self.stopped {
            self.sync_listeners(state);
        }
        self.synced_once = true;
    }

    /// Stops every listener (daemon shutdown). The resolv.conf files stay,
    /// so `ip netns exec` keeps giving containers theirs.
    pub fn shutdown(&mut self) {
        self.stopped = true;
        self.listeners.clear();
    }

    /// A reader of the query counters, for whoever reports them.
    pub fn counters(&self) -> DnsCounters {
        DnsCounters(self.shared.clone())
    }

    /// Containers whose namespace has a listener (bound or waiting for its
    /// namespace), by id.
    pub fn serving(&self) -> Vec<String> {
        let mut v: Vec<String> = self.listeners.keys().cloned().collect();
        v.sort();
        v
    }

    fn sync_files(&mut self, state: &State) {
        let files = ContainerFiles::now();
        let mut wanted = HashSet::new();
        for c in state.containers.values() {
            let NetMode::Own { netns } = &c.net else {
                continue;
            };
            wanted.insert(netns.clone());
            let content = files.of(state, &c.id);
            if self.files.get(netns) == Some(content) {
                continue;
            }
            let path = self.cfg.resolv_dir.join(netns).join("resolv.conf");
            match resolv::write_if_changed(&path, content) {
                Ok(changed) => {
                    if changed {
                        debug!(path = %path.display(), "resolv.conf written");
                    }
                    self.files.insert(netns.clone(), content.clone());
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "cannot write resolv.conf");
                    // Not again at every change; a later change of content
                    // tries again.
                    self.files.insert(netns.clone(), content.clone());
                }
            }
        }
        let mut gone: Vec<String> = self
            .files
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        if !self.synced_once && !self.cfg.netns_prefix.is_empty() {
            gone.extend(self.stale_files(&wanted));
        }
        for netns in gone {
            self.files.remove(&netns);
            let dir = self.cfg.resolv_dir.join(&netns);
            if let Err(e) = resolv::remove(&dir) {
                warn!(dir = %dir.display(), error = %e, "cannot remove resolv.conf");
            }
        }
    }

    /// Directories under resolv_dir named like this daemon's namespaces
    /// that no container owns.
    fn stale_files(&self, wanted: &HashSet<String>) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.cfg.resolv_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&self.cfg.netns_prefix) && !wanted.contains(n))
            .collect()
    }

    fn sync_listeners(&mut self, state: &State) {
        let mut wanted: HashMap<&str, PathBuf> = HashMap::new();
        for c in state.containers.values() {
            let netns = match &c.net {
                NetMode::Own { netns } => netns::path(netns),
                NetMode::Path { path } => path.clone(),
                NetMode::Host | NetMode::Container { .. } => continue,
            };
            if records::wants_server(state, &c.id) {
                wanted.insert(&c.id, netns);
            }
        }
        self.listeners.retain(|id, l| {
            let keep = wanted.get(id.as_str()).is_some_and(|ns| *ns == l.netns)
                && same_namespace(&l.netns, &l.bound);
            if !keep {
                debug!(container = %id, netns = %l.netns.display(), "embedded DNS listener stopped");
            }
            keep
        });
        let Some(runtime) = self.runtime.clone() else {
            if !wanted.is_empty() {
                warn!("embedded DNS: not inside the runtime, no listener started");
            }
            return;
        };
        for (id, netns) in wanted {
            if self.listeners.contains_key(id) {
                continue;
            }
            let bound = Arc::new(Mutex::new(None));
            let task = runtime.spawn(serve(
                netns.clone(),
                id.to_string(),
                self.shared.clone(),
                bound.clone(),
            ));
            self.listeners.insert(
                id.to_string(),
                Listener {
                    netns,
                    bound,
                    task: task.abort_handle(),
                },
            );
        }
    }
}

/// The two resolv.conf files containers get, from the host's configuration
/// as it is now (read once for any number of containers).
pub struct ContainerFiles {
    embedded: String,
    plain: String,
}

impl ContainerFiles {
    pub fn now() -> ContainerFiles {
        let host = ResolvConf::host();
        let systemd = ResolvConf::read(Path::new(resolv::SYSTEMD_RESOLV_CONF)).ok();
        ContainerFiles {
            embedded: resolv::for_embedded(&host),
            plain: resolv::for_host_resolvers(&host, systemd.as_ref()),
        }
    }

    /// The embedded server's on a user-defined network, the host's
    /// resolvers' otherwise.
    fn of(&self, state: &State, container_id: &str) -> &String {
        if records::wants_server(state, container_id) {
            &self.embedded
        } else {
            &self.plain
        }
    }

    /// What the resolv.conf of container `container_id` says, the file
    /// netd writes for the namespaces it names: for a runtime that writes
    /// the container's /etc itself (CNI's result carries it).
    pub fn resolv_conf(&self, state: &State, container_id: &str) -> ResolvConf {
        ResolvConf::parse(self.of(state, container_id))
    }
}

/// False when the listener's sockets are in a namespace that is no longer
/// the one at the name (recreated after a crash): it must be restarted.
fn same_namespace(netns: &Path, bound: &Mutex<Option<NsId>>) -> bool {
    let Some(id) = *bound.lock().unwrap_or_else(|e| e.into_inner()) else {
        // Still waiting for the namespace: it will bind the right one.
        return true;
    };
    std::fs::metadata(netns).is_ok_and(|m| (m.dev(), m.ino()) == id)
}

/// The listener task of one container.
async fn serve(
    netns: PathBuf,
    container: String,
    shared: Arc<server::Shared>,
    bound: Arc<Mutex<Option<NsId>>>,
) {
    let mut delay = Duration::from_millis(5);
    let mut warned = false;
    let (id, udp, tcp) = loop {
        match bind_in(&netns).await {
            Ok(sockets) => break sockets,
            Err(e) => {
                // A missing namespace is normal for a moment: the record is
                // committed before the engine creates it.
                let quiet = e.kind() == io::ErrorKind::NotFound && delay < RETRY_MAX;
                if !quiet && !warned {
                    warn!(netns = %netns.display(), error = %e, "embedded DNS: cannot listen yet; retrying");
                    warned = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    };
    let (udp, tcp) = match (
        tokio::net::UdpSocket::from_std(udp),
        tokio::net::TcpListener::from_std(tcp),
    ) {
        (Ok(u), Ok(t)) => (u, t),
        (Err(e), _) | (_, Err(e)) => {
            warn!(netns = %netns.display(), error = %e, "embedded DNS: cannot register the sockets");
            return;
        }
    };
    *bound.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
    let handler = server::Handler::new(container, shared.clone());
    let mut server = Server::new(handler.clone());
    server.register_socket(udp);
    debug!(netns = %netns.display(), "embedded DNS listening on {EMBEDDED}:53");
    tokio::select! {
        done = server.block_until_done() => if let Err(e) = done {
            warn!(netns = %netns.display(), error = %e, "embedded DNS listener ended");
        },
        () = tcp::serve(tcp, handler, shared) => {}
    }
}

/// Opens the namespace and binds UDP and TCP 127.0.0.11:53 inside it, on a
/// short-lived thread (the runtime's threads never change namespace).
async fn bind_in(netns: &Path) -> io::Result<(NsId, std::net::UdpSocket, std::net::TcpListener)> {
    let file = File::open(netns)?;
    if !netns::is_nsfs(file.as_fd()) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a network namespace (yet)", netns.display()),
        ));
    }
    let meta = file.metadata()?;
    let id = (meta.dev(), meta.ino());
    let addr = SocketAddrV4::new(EMBEDDED, 53);
    let (udp, tcp) = netns::run_in(file, move || {
        let udp = std::net::UdpSocket::bind(addr)?;
        udp.set_nonblocking(true)?;
        let tcp = std::net::TcpListener::bind(addr)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    })
    .await?;
    Ok((id, udp, tcp))
}
