//! The real netd daemon, private to this run: its own prefix, state
//! directory, socket, bpffs directory and metrics port, so it can run beside
//! an installed netd or a test's. Dropping it stops the daemon and removes
//! everything it made, the way the integration tests' harness does.
//!
//! Every daemon gets an uplink of the bench's own (`--uplink` on a veth to
//! an "outside" namespace, [`crate::topology::netd_outside`]), so that
//! netd's uplink program, masquerade and published ports never touch the
//! machine's real interface; the daemon owns that namespace and removes it
//! after it has stopped.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
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
    /// `--metrics-addr`, a free port on loopback.
    metrics: SocketAddr,
    /// `--uplink` (a veth in the host namespace) and the namespace beyond
    /// it; a field, so the namespace is deleted after `drop` has stopped the
    /// daemon and deleted the veth.
    uplink: (String, Netns),
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
        let prefix = format!("bd{tail:0>2}");
        let dir = std::env::temp_dir().join(format!("netd-bench-{prefix}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let socket = dir.join("netd.sock");
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = fs::File::create(dir.join("daemon.log"))?;
        let mut daemon = Daemon {
            bpffs: PathBuf::from(format!("/sys/fs/bpf/netd-bench-{prefix}")),
            prefix,
            api: Api::new(&socket),
            dir,
            child: None,
            metrics,
            uplink: (uplink.clone(), outside),
        };
        // The guard exists before the process does, so a failed start is
        // cleaned up too.
        let mut command = Command::new(netd);
        command
            .arg("daemon")
            .arg("--state-dir")
            .arg(daemon.dir.join("state"))
            .arg("--socket")
            .arg(&socket)
            .arg("--bpffs")
            .arg(&daemon.bpffs)
            .arg("--prefix")
            .arg(&daemon.prefix)
            .arg("--metrics-addr")
            .arg(metrics.to_string())
            // No /etc/netd/netd.toml: only what we pass.
            .arg("--config")
            .arg("/dev/null")
            .arg("--uplink")
            .arg(&uplink)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        {
            use std::os::unix::process::CommandExt as _;
            // Ctrl-C reaches only the bench, which stops the daemon in order.
            command.process_group(0);
        }
        daemon.child = Some(
            command
                .spawn()
                .with_context(|| format!("cannot start {}", netd.display()))?,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !daemon.api.ping() {
            cmd::check_interrupted()?;
            if let Some(status) = daemon.child.as_mut().expect("spawned").try_wait()? {
                bail!(
                    "netd exited ({status}) before it was ready:\n{}",
                    daemon.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!("netd not ready after 60 s:\n{}", daemon.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        say!(
            "netd daemon up (prefix {}, pid {})",
            daemon.prefix,
            daemon.pid()
        );
        Ok(daemon)
    }

    /// The daemon's pin directory (its maps are under `maps/`).
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// The outside namespace beyond the daemon's uplink.
    pub fn outside(&self) -> &Netns {
        &self.uplink.1
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
    /// `--metrics-addr`): the body.
    pub fn scrape(&self) -> Result<String> {
        let mut conn = TcpStream::connect(self.metrics)
            .with_context(|| format!("cannot reach netd's metrics on {}", self.metrics))?;
        conn.set_read_timeout(Some(api::TIMEOUT))?;
        // HTTP/1.0: the body is sent whole and ends with the connection.
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: netd\r\n\r\n")?;
        let mut response = Vec::new();
        conn.read_to_end(&mut response)?;
        let (status, body) =
            api::parse_response(&response).context("bad answer to GET /metrics")?;
        if status != 200 {
            bail!("netd answered GET /metrics with {status}");
        }
        String::from_utf8(body).context("netd's metrics are not UTF-8")
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

    /// Links in the host namespace that netd names as its own: `{prefix}0`,
    /// `{prefix}-...` (bridges) and `{prefix}v...` (host-side veths).
    fn own_links(&self) -> Vec<String> {
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
        // A stopped netd leaves its data plane in place by design, and its
        // containers' resolv.conf files (`/etc/netns/NAME/`, for
        // `ip netns exec`); remove both.
        let own_ns = format!("{}-", self.prefix);
        if let Ok(entries) = fs::read_dir(NETNS_DIR) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&own_ns) {
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
        let _ = Command::new("ip")
            .args(["link", "del", &self.uplink.0])
            .output();
        if let Err(e) = netd::dataplane::Dataplane::remove_pins(&self.bpffs) {
            eprintln!("bench: cannot remove {}: {e}", self.bpffs.display());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
