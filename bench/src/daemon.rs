//! The real netd daemon, private to this run: its own prefix, state
//! directory, socket, bpffs directory and metrics port, so it can run beside
//! an installed netd or a test's. Dropping it stops the daemon and removes
//! everything it made, the way the integration tests' harness does.
//!
//! A daemon runs in one of two places ([`Place`]). On the machine itself,
//! it gets an uplink of the bench's own (`--uplink` on a veth to an
//! "outside" namespace, [`crate::topology::netd_outside`]), so that netd's
//! uplink program, masquerade and published ports never touch the
//! machine's real interface; the daemon owns that namespace and removes it
//! after it has stopped. As a host of a simulated cluster
//! ([`crate::cluster`]), it runs inside that host's namespace (entered
//! with `setns` between fork and exec, as `nsenter --net` does: the
//! bench's mounts, /run/netns and bpffs included, stay visible) with
//! `--uplink eth0`, its veth to the underlay.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::api::{self, Api};
use crate::cmd::{self, say};
use crate::netns::{NETNS_DIR, Netns};

/// Where `ip netns exec` (and so netd) keeps per-namespace files.
const NETNS_ETC_DIR: &str = "/etc/netns";

pub struct Daemon {
    /// netd's name prefix: every link and namespace it makes starts with it.
    pub prefix: String,
    dir: PathBuf,
    bpffs: PathBuf,
    child: Option<Child>,
    api: Api,
    /// `--metrics-addr`, a free port on loopback (of the daemon's
    /// namespace).
    metrics: SocketAddr,
    /// The netd binary and the flags beyond the bench's own, kept for
    /// [`Daemon::restart`].
    netd: PathBuf,
    extra: Vec<String>,
    /// Where it runs; a field, so the namespaces are deleted after `drop`
    /// has stopped the daemon.
    place: Place,
}

/// Where a daemon runs, and so what its uplink is.
enum Place {
    /// The machine's own namespace, with `--uplink` on a veth of the
    /// bench's (`uplink`, in the machine's namespace) to `outside`.
    Machine { uplink: String, outside: Netns },
    /// A host namespace of a simulated cluster, `--uplink eth0`.
    Host(Netns),
}

impl Daemon {
    /// Starts `netd daemon` and waits until its API answers.
    ///
    /// The prefix is `bd` plus two characters from the pid: four characters
    /// (netd's maximum), never a prefix of `netd`, `dev` or the tests' `t???`,
    /// and unlike the bench's own `bn...` names, so neither side ever takes
    /// the other's objects for its own leftovers.
    pub fn start(netd: &Path, tag: &str) -> Result<Daemon> {
        Daemon::start_with(netd, tag, &[])
    }

    /// Like [`Daemon::start`], with more `netd daemon` flags.
    pub fn start_with(netd: &Path, tag: &str, extra: &[&str]) -> Result<Daemon> {
        // First, so that a failed start removes it again.
        let (outside, uplink) = crate::topology::netd_outside(tag)?;
        let tail = cmd::base36(std::process::id() % (36 * 36));
        Daemon::launch(
            netd,
            format!("bd{tail:0>2}"),
            Place::Machine { uplink, outside },
            extra,
        )
    }

    /// A daemon inside `host`, a host namespace of a simulated cluster
    /// whose `eth0` is its uplink, named `prefix` (see [`Daemon::start`]
    /// for what a prefix must not be).
    pub fn start_in(netd: &Path, host: Netns, prefix: String, extra: &[&str]) -> Result<Daemon> {
        Daemon::launch(netd, prefix, Place::Host(host), extra)
    }

    fn launch(netd: &Path, prefix: String, place: Place, extra: &[&str]) -> Result<Daemon> {
        let dir = std::env::temp_dir().join(format!("netd-bench-{prefix}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // The guard exists before the process does, so a failed start is
        // cleaned up too.
        let mut daemon = Daemon {
            bpffs: PathBuf::from(format!("/sys/fs/bpf/netd-bench-{prefix}")),
            prefix,
            api: Api::new(&dir.join("netd.sock")),
            dir,
            child: None,
            // Free in the machine's namespace; a host namespace of the
            // bench's has nothing listening at all.
            metrics: std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
            netd: netd.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            place,
        };
        daemon.spawn()?;
        say!(
            "netd daemon up (prefix {}, pid {})",
            daemon.prefix,
            daemon.pid()
        );
        Ok(daemon)
    }

    /// Starts the process and waits until its API answers.
    fn spawn(&mut self) -> Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))?;
        let (mut command, uplink) = match &self.place {
            Place::Machine { uplink, .. } => (Command::new(&self.netd), uplink.as_str()),
            Place::Host(host) => (host.command(&self.netd), "eth0"),
        };
        command
            .arg("daemon")
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--socket")
            .arg(self.dir.join("netd.sock"))
            .arg("--bpffs")
            .arg(&self.bpffs)
            .arg("--prefix")
            .arg(&self.prefix)
            .arg("--metrics-addr")
            .arg(self.metrics.to_string())
            // No /etc/netd/netd.toml: only what we pass.
            .arg("--config")
            .arg("/dev/null")
            .arg("--uplink")
            .arg(uplink)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        {
            use std::os::unix::process::CommandExt as _;
            // Ctrl-C reaches only the bench, which stops the daemon in order.
            command.process_group(0);
        }
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("cannot start {}", self.netd.display()))?,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.api.ping() {
            cmd::check_interrupted()?;
            if let Some(status) = self.child.as_mut().expect("spawned").try_wait()? {
                bail!(
                    "netd exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!("netd not ready after 60 s:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGKILL, as a host that dies: the daemon cleans nothing up, its
    /// data plane stays, and [`Daemon::restart`] brings it back on the same
    /// state.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Our own child, by its pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed daemon again, with the same flags and state.
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("netd {} is still running", self.prefix);
        }
        self.spawn()
    }

    /// The daemon's pin directory (its maps are under `maps/`).
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// The outside namespace beyond the uplink of a daemon on the machine
    /// itself.
    pub fn outside(&self) -> &Netns {
        match &self.place {
            Place::Machine { outside, .. } => outside,
            Place::Host(host) => panic!(
                "netd {} runs in cluster host {}: its outside is the underlay",
                self.prefix, host.name
            ),
        }
    }

    /// The API's unix socket.
    pub fn socket(&self) -> &Path {
        self.api.socket()
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The namespace netd gives container `name`.
    pub fn netns_name(&self, container: &str) -> String {
        format!("{}-{container}", self.prefix)
    }

    /// The value of one series of the daemon's Prometheus metrics, written
    /// as netd prints it (`netd_nat_flows_total{kind="published"}`); 0 if
    /// the daemon has no such series (nothing counted yet).
    pub fn metric(&self, series: &str) -> Result<f64> {
        Ok(self
            .scrape()?
            .lines()
            .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .filter_map(|value| value.trim().parse::<f64>().ok())
            .sum())
    }

    /// One scrape of the daemon's Prometheus metrics (`GET /metrics` on
    /// `--metrics-addr`, in the daemon's namespace): the body.
    pub fn scrape(&self) -> Result<String> {
        let get = || api::http_get(self.metrics, "/metrics");
        match &self.place {
            Place::Machine { .. } => get(),
            Place::Host(host) => host.in_thread(get),
        }
        .context("scraping netd's metrics")
    }

    /// Resident memory of the daemon (VmRSS), in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS in the daemon's /proc status")
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Links in the machine's namespace that netd names as its own:
    /// `{prefix}0`, `{prefix}-...` (bridges) and `{prefix}v...` (host-side
    /// veths). None for a daemon in a cluster host: its links go with that
    /// namespace.
    fn own_links(&self) -> Vec<String> {
        if let Place::Host(_) = self.place {
            return Vec::new();
        }
        let Ok(text) = cmd::output(Command::new("ip").args(["-j", "link", "show"])) else {
            return Vec::new();
        };
        let links: Value = serde_json::from_str(&text).unwrap_or_default();
        links
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|name| {
                name.strip_prefix(&self.prefix).is_some_and(|rest| {
                    rest == "0" || rest.starts_with('-') || rest.starts_with('v')
                })
            })
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM first (a clean stop), SIGKILL if it hangs; our own
            // child, by its pid.
            // SAFETY: signalling a process we started and have not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // A stopped netd leaves its data plane in place by design, its
        // containers' processes (a scenario that ran any removes them
        // through the API; this is the safety net behind it) and their
        // resolv.conf files (`/etc/netns/NAME/`, for `ip netns exec`);
        // remove them all.
        let own_ns = format!("{}-", self.prefix);
        if let Ok(entries) = fs::read_dir(NETNS_DIR) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&own_ns) {
                    kill_processes_in(&name);
                    let _ = Command::new("ip").args(["netns", "del", &name]).output();
                }
            }
        }
        if let Ok(entries) = fs::read_dir(NETNS_ETC_DIR) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&own_ns) {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        for link in self.own_links() {
            let _ = Command::new("ip").args(["link", "del", &link]).output();
        }
        // Deleting the namespace would take the veth with it, but only once
        // the kernel gets round to it (namespace cleanup is deferred): the
        // next daemon may want the same uplink name at once.
        if let Place::Machine { uplink, .. } = &self.place {
            let _ = Command::new("ip").args(["link", "del", uplink]).output();
        }
        if let Err(e) = netd::dataplane::Dataplane::remove_pins(&self.bpffs) {
            eprintln!("bench: cannot remove {}: {e}", self.bpffs.display());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// SIGKILLs every process in namespace `name` (`ip netns pids`): the
/// processes of a container of a daemon the bench started, which would
/// otherwise outlive it.
fn kill_processes_in(name: &str) {
    let Ok(pids) = cmd::output(Command::new("ip").args(["netns", "pids", name])) else {
        return;
    };
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        // SAFETY: kill(2) with a pid from the kernel's list of the
        // namespace's processes; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
