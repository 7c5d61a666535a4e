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
use crate::config::{DaemonArgs, Settings};
use crate::dataplane::{self, Dataplane, MapSizes};
use crate::dns::DnsConfig;
use crate::drivers::Drivers;
use crate::engine::{Engine, EngineConfig};
use crate::metrics::Metrics;
use crate::netlink::Netlink;
use crate::notify::Notifier;
use crate::reload::{self as config_reload, Live};
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
    if s.cluster_store.is_some() || s.advertise_addr.is_some() {
        bail!(
            "--cluster-store/--advertise-addr: multi-host (overlay) networking is not \
             available in this version of netd; start without them"
        );
    }
    let uplink = uplink::resolve(s.uplink.as_deref())?;
    match &uplink {
        Some(u) => info!(uplink = %u.ifname, addr = %u.addr, "outside is through the uplink"),
        None => tracing::warn!(
            "no default route and no --uplink: containers have no outbound access and \
             published ports answer only on the host"
        ),
    }
    let store = FileStore::new(&s.state_dir)?;
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
    let engine = Engine::start(
        EngineConfig {
            prefix: s.prefix.clone(),
            log_dir: s.state_dir.join("logs"),
            uplink,
            dns,
        },
        Drivers::builtin(),
        Box::new(store),
        netlink,
        dataplane,
    )
    .await?
    .spawn();
    let telemetry = Telemetry::new(engine.clone(), counters);
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
    let api_app = metrics.track_requests(api::router(engine.clone(), telemetry.clone()));
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
