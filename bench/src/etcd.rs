//! A real etcd (Debian's `etcd-server`, the one netd's tests run against)
//! for a simulated cluster: one member, listening on the underlay address
//! inside the underlay namespace (its own, so etcd's standard ports are
//! free there), with a private data directory. Dropping the guard kills
//! the server and removes the directory; should the bench itself be
//! killed, the kernel kills the server (parent-death signal).
//!
//! etcd's own Prometheus metrics are what the fleet figures read: the
//! number of keys, and the watch events it has sent (to every host's
//! watch), so that nothing in netd has to count them for the bench.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::api;
use crate::cmd::{self, Background};
use crate::netns::Netns;

/// etcd's client port (free: the namespace is the bench's).
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// How long a healthy start may take on a busy machine.
const READY: Duration = Duration::from_secs(60);

pub struct Etcd {
    /// Taken (killed) in `drop` before its directory goes.
    server: Option<Background>,
    client: SocketAddr,
    /// The namespace it listens in (entered to ask it anything).
    netns: Netns,
    dir: PathBuf,
}

impl Etcd {
    /// Starts etcd in `netns` on `addr` and waits until it is healthy.
    pub fn start(netns: &Netns, addr: Ipv4Addr) -> Result<Etcd> {
        // In memory (tmpfs): etcd fsyncs every write, which on a disk
        // shared with other work can take longer than netd's 2 s call
        // timeout; a benchmark's store needs no durability.
        let dir = std::path::Path::new("/dev/shm").join(format!("{}-etcd", netns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let (client, peer) = (
            format!("http://{addr}:{CLIENT_PORT}"),
            format!("http://{addr}:{PEER_PORT}"),
        );
        let mut command = netns.command("etcd");
        command
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=bench={peer}"))
            .arg("--logger=zap")
            .arg(format!("--log-outputs={}", dir.join("etcd.log").display()));
        // SAFETY: prctl is async-signal-safe, and nothing else but the
        // namespace's setns runs in the child before exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let etcd = Etcd {
            server: Some(Background::spawn_quiet(&mut command).context(
                "cannot run etcd: install Debian's etcd-server (`cargo xtask setup` does)",
            )?),
            client: SocketAddr::from((addr, CLIENT_PORT)),
            netns: Netns::open(&netns.name)?,
            dir,
        };
        let healthy = cmd::wait_until("etcd", READY, || {
            etcd.get("/health")
                .is_ok_and(|body| body.contains("\"health\":\"true\""))
        });
        if let Err(e) = healthy {
            let log = std::fs::read_to_string(etcd.dir.join("etcd.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            return Err(e.context(format!(
                "etcd's log ends:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
        Ok(etcd)
    }

    /// `--cluster-store` for this server.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.client)
    }

    /// The value of one of etcd's Prometheus series (an unlabelled one,
    /// such as `etcd_debugging_mvcc_keys_total`).
    pub fn metric(&self, series: &str) -> Result<f64> {
        let body = self.get("/metrics")?;
        body.lines()
            .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .find_map(|value| value.trim().parse::<f64>().ok())
            .with_context(|| format!("etcd exports no {series}"))
    }

    fn get(&self, path: &str) -> Result<String> {
        self.netns.in_thread(|| api::http_get(self.client, path))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Killed and reaped first, then its data goes.
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
