//! `netd daemon`: restores the state, serves the API on the unix socket and
//! metrics over HTTP, tells systemd when it is ready (and, with a watchdog,
//! that its engine still answers), re-reads its configuration on SIGHUP
//! (`reload`), and stops cleanly on SIGTERM. Stopping leaves the data plane
//! in the kernel: containers keep their connectivity while the daemon is
//! down or restarting.

use std::fs;
use std::io::IsTerminal as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::info;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, reload};

use crate::api;
use crate::cluster::{Cluster, ClusterConfig, HostSpec};
use crate::config::{DaemonArgs, Settings};
use crate::dataplane::{self, Dataplane, MapSizes};
use crate::dns::DnsConfig;
use crate::drivers::{Drivers, Overlay};
use crate::engine::{self, Engine, EngineConfig};
use crate::metrics::Metrics;
use crate::netlink::Netlink;
use crate::notify::Notifier;
use crate::reload::{self as config_reload, Live};
use crate::state_dir::StateDir;
use crate::store::FileStore;
use crate::traffic::Telemetry;
use crate::uplink;

/// Mode of the API socket: root and the socket's group may talk to it.
const SOCKET_MODE: u32 = 0o660;

pub fn run(args: DaemonArgs) -> anyhow::Result<()> {
    // SAFETY: nothing has started a thread yet (the runtime starts below).
    let notifier = unsafe { Notifier::take_from_env() };
    let settings = Settings::resolve(&args)?;
    let (filter, log) = reload::Layer::new(EnvFilter::try_new(&settings.log_level)?);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                // journald and log files get no colour codes.
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(args, settings, notifier, log))
}

async fn serve(
    args: DaemonArgs,
    mut s: Settings,
    notifier: Notifier,
    log: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
) -> anyhow::Result<()> {
    // First: a second daemon on this state directory stops here, before it
    // touches anything.
    let state_dir = StateDir::open(&s.state_dir)?;
    let uplink = uplink::resolve(s.uplink.as_deref())?;
    match &uplink {
        Some(u) => info!(uplink = %u.ifname, addr = %u.addr, "outside is through the uplink"),
        None => tracing::warn!(
            "no default route and no --uplink: containers have no outbound access and \
             published ports answer only on the host"
        ),
    }
    if let Some((first, last)) = uplink::ephemeral_overlap() {
        tracing::warn!(
            "the host's ephemeral ports {first}-{last} (net.ipv4.ip_local_port_range) \
             lie in netd's masquerade range {}-{}: a host connection and a container's \
             to the same server could then share a port; narrow the range or list these \
             ports in net.ipv4.ip_local_reserved_ports",
            netd_common::nat::PORT_MIN,
            netd_common::nat::PORT_MAX
        );
    }
    let store = FileStore::new(state_dir.path())?;
    let netlink = Netlink::new()
        .await
        .context("cannot open a netlink socket")?;
    let dataplane = Dataplane::load(
        &s.bpffs,
        &MapSizes {
            conntrack_flows: s.conntrack_max,
        },
    )?;
    let counters = dataplane.counters()?;
    // The engine attaches the socket hooks to the cgroup2 root it finds in
    // mountinfo: mount one first where there is none.
    let cgroup = dataplane::cgroup2_root_or_mount(run_dir(&s.socket))
        .context("cannot find or mount a cgroup2 hierarchy for the socket hooks")?;
    info!(cgroup = %cgroup.display(), "socket hooks go on this cgroup2 root");
    let dns = DnsConfig::new(s.dns.clone(), &s.prefix);
    let live = Live {
        log,
        dns: dns.upstreams.clone(),
    };
    let cluster = match &s.cluster_store {
        Some(store) => Some(join_cluster(&s, store, uplink.as_ref()).await?),
        None => None,
    };
    // The overlay's underlay: where the advertise address is (without a
    // cluster, where it would be).
    let underlay = cluster
        .as_ref()
        .and_then(|(_, host)| uplink::interface_of(host.addr))
        .or_else(|| uplink.as_ref().map(|u| u.ifname.clone()));
    let drivers = Drivers::builtin().with(Arc::new(Overlay::new(s.vxlan_port, underlay)));
    let engine = Engine::start(
        EngineConfig {
            prefix: s.prefix.clone(),
            log_dir: state_dir.logs(),
            uplink,
            dns,
            cluster: cluster.clone(),
        },
        drivers,
        Box::new(store),
        netlink,
        dataplane,
    )
    .await?
    .spawn();
    let cluster_telemetry = cluster
        .as_ref()
        .map(|_| Arc::new(engine::ClusterTelemetry::default()));
    if let (Some((client, host)), Some(watching)) = (&cluster, &cluster_telemetry) {
        tokio::spawn(engine::run_agent(
            client.clone(),
            host.clone(),
            engine.clone(),
            watching.clone(),
        ));
    }
    let telemetry = Telemetry::new(engine.clone(), counters, cluster_telemetry);
    let census = telemetry.keep_census();
    let metrics = Arc::new(Metrics::new());

    let api_listener = bind_socket(&s.socket)?;
    let metrics_listener = TcpListener::bind(s.metrics_addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", s.metrics_addr))?;
    info!(
        socket = %s.socket.display(),
        metrics = %metrics_listener.local_addr()?,
        "netd is ready"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let api_app = metrics.track_requests(api::router(api::AppState {
        engine: engine.clone(),
        telemetry: telemetry.clone(),
        cluster: cluster.map(|(client, _)| client),
    }));
    let api_server = tokio::spawn(
        axum::serve(api_listener, api_app)
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    let metrics_server = tokio::spawn(
        axum::serve(metrics_listener, metrics.router(telemetry))
            .with_graceful_shutdown(stopped(stop_rx))
            .into_future(),
    );
    // Before READY=1: from then on systemd may send SIGHUP (a reload),
    // whose default action would end the daemon.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    notifier.ready();
    let watchdog = tokio::spawn({
        let (notifier, engine) = (notifier.clone(), engine.clone());
        async move {
            notifier
                .keep_watchdog(|| {
                    let engine = engine.clone();
                    async move { engine.ping().await.is_ok() }
                })
                .await;
        }
    });
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading the configuration");
                notifier.reloading();
                config_reload::apply(&args, &mut s, &live);
                notifier.ready();
            }
            _ = term.recv() => { info!("SIGTERM: stopping"); break }
            _ = int.recv() => { info!("SIGINT: stopping"); break }
        }
    }
    notifier.stopping();
    let _ = stop_tx.send(true);
    census.abort();
    watchdog.abort();
    // Its engine handle must be gone before the engine can end.
    let _ = watchdog.await;
    api_server.await??;
    metrics_server.await??;
    // The last handle: the engine's loop ends once the commands sent
    // before it have run.
    let _ = engine.ping().await;
    drop(engine);
    let _ = fs::remove_file(&s.socket);
    info!("stopped; the data plane stays in place");
    Ok(())
}

/// The daemon's run directory: its socket's.
pub fn run_dir(socket: &Path) -> &Path {
    match socket.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Whether a daemon answers on the API socket at `path`.
pub fn serving(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// The cluster store client and this host's part in it: `--cluster-store`,
/// `--advertise-addr` (default: the uplink's address) and the host id kept
/// in the state directory. Does not contact the store: a daemon starts
/// while the store is out of reach, and joins once it is back.
async fn join_cluster(
    s: &Settings,
    store: &str,
    uplink: Option<&uplink::Uplink>,
) -> anyhow::Result<(Cluster, HostSpec)> {
    let addr = match (s.advertise_addr, uplink) {
        (Some(std::net::IpAddr::V4(addr)), _) => addr,
        (None, Some(u)) => u.addr,
        _ => bail!(
            "--cluster-store needs the address other hosts reach this one on: set \
             --advertise-addr IP (or an uplink with an IPv4 address)"
        ),
    };
    let mut cfg = ClusterConfig::new(store)?;
    cfg.prefix = s.cluster_prefix.clone();
    cfg.lease_ttl = std::time::Duration::from_secs(s.cluster_lease_ttl);
    let client = Cluster::connect(cfg)
        .await
        .with_context(|| format!("cannot set up the cluster store client for {store}"))?;
    let host = HostSpec {
        id: host_id(&s.state_dir)?,
        addr,
    };
    info!(host = %host.id, addr = %host.addr, store, "cluster mode");
    Ok((client, host))
}

/// This host's id in the cluster: made once, at random, and kept in the
/// state directory, so that a restarted daemon takes its records over.
fn host_id(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("host-id");
    if let Ok(id) = fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        bail!("cannot draw a random host id");
    }
    let id: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    crate::state_dir::replace_file(state_dir, "host-id", format!("{id}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// Binds the API socket with mode 0660, refusing to take over the socket of
/// a daemon that is still running.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if serving(path) {
            bail!(
                "another netd daemon is already serving {}; stop it or use --socket",
                path.display()
            );
        }
        fs::remove_file(path).with_context(|| format!("cannot remove stale {}", path.display()))?;
    }
    // Bind under a restrictive umask so the socket is never reachable with
    // wider permissions, even for an instant.
    // SAFETY: umask only swaps the process's file-mode mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("cannot listen on {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(SOCKET_MODE))?;
    Ok(listener)
}
