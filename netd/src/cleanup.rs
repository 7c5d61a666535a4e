//! `netd system cleanup`: removes what a daemon leaves in the kernel and on
//! disk after it stopped.
//!
//! A stopped daemon keeps its data plane on purpose (pinned maps and links,
//! the uplink's program, the socket hooks on the root cgroup, TC filters,
//! bridges, namespaces), so that a restart loses no traffic. Nothing else
//! would ever remove them: this does, for one prefix and one pin directory,
//! so that an uninstalled netd (the package runs it) or an abandoned test
//! daemon leaves the machine as it found it.
//!
//! What goes, in this order:
//! 1. the processes `netd container run` started (every process in a
//!    `{prefix}-*` namespace), SIGTERM then SIGKILL;
//! 2. the links named with the prefix (bridges and host-side veths; a veth
//!    takes its peer and its TC filters with it);
//! 3. the namespaces `{prefix}-*` and their `/etc/netns/{prefix}-*` files;
//! 4. the pin directory: pinned links detached (the uplink's TCX program,
//!    the four cgroup socket hooks, TCX endpoint links of older builds),
//!    then every pinned map;
//! 5. the cgroup2 mount the daemon made under its run directory, if any,
//!    and the API socket file;
//! 6. the state directory, only when asked.
//!
//! It refuses while a daemon serves the socket (that daemon would keep
//! making what is being removed) unless forced. Processes of `--network
//! host` containers are left alone: nothing but a recorded pid, which may
//! have been reused since, ties them to netd, where a process inside one of
//! netd's namespaces is netd's beyond doubt.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dataplane::{self, Dataplane};
use crate::dns::RESOLV_DIR;
use crate::names;
use crate::netlink::{Netlink, netns};
use crate::process;

/// How long container processes get to exit on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What to clean up.
#[derive(Debug, Clone)]
pub struct Target {
    /// Links and namespaces starting with this are netd's.
    pub prefix: String,
    /// The pin directory on bpffs.
    pub bpffs: PathBuf,
    /// The daemon's API socket; its directory is the daemon's run
    /// directory.
    pub socket: PathBuf,
    /// Also remove this state directory.
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(
        "a netd daemon is serving {} - stop it first (`systemctl stop netd`), or pass --force to clean up under it",
        .0.display()
    )]
    DaemonRunning(PathBuf),
    #[error("cleanup left things behind:\n  {}", .0.join("\n  "))]
    Incomplete(Vec<String>),
}

/// What a cleanup removed, one line each, in the order it did.
pub type Removed = Vec<String>;

/// Removes everything netd made for `target` (see the module doc). Goes on
/// past failures and reports them all at the end.
pub async fn run(target: &Target, force: bool) -> Result<Removed, CleanupError> {
    if !force && crate::daemon::serving(&target.socket) {
        return Err(CleanupError::DaemonRunning(target.socket.clone()));
    }
    let mut c = Cleaner::default();
    let prefix = &target.prefix;
    let namespaces = netns::list_with_prefix(&format!("{prefix}-"))
        .map_err(|e| c.failed("list namespaces", e))
        .unwrap_or_default();
    c.stop_processes(&namespaces);
    c.delete_links(prefix).await;
    for name in &namespaces {
        match netns::delete(name) {
            Ok(()) => c.removed(format!("namespace {name}")),
            Err(e) => c.failed(&format!("delete namespace {name}"), e),
        }
    }
    c.remove_resolv_dirs(prefix);
    if target.bpffs.exists() {
        match Dataplane::remove_pins(&target.bpffs) {
            Ok(()) => c.removed(format!("pins under {}", target.bpffs.display())),
            Err(e) => c.failed(&format!("remove {}", target.bpffs.display()), e),
        }
    }
    let run_dir = crate::daemon::run_dir(&target.socket);
    match dataplane::remove_private_mount(run_dir) {
        Ok(true) => c.removed(format!(
            "cgroup2 mount {}",
            dataplane::private_mount(run_dir).display()
        )),
        Ok(false) => {}
        Err(e) => c.failed("unmount the daemon's cgroup2 mount", e),
    }
    c.remove_path(&target.socket, "socket");
    if let Some(dir) = &target.state_dir {
        c.remove_path(dir, "state directory");
    }
    c.finish()
}

#[derive(Default)]
struct Cleaner {
    removed: Removed,
    failures: Vec<String>,
}

impl Cleaner {
    fn removed(&mut self, what: String) {
        self.removed.push(what);
    }

    fn failed(&mut self, action: &str, e: impl std::fmt::Display) {
        self.failures.push(format!("cannot {action}: {e}"));
    }

    fn finish(self) -> Result<Removed, CleanupError> {
        if self.failures.is_empty() {
            Ok(self.removed)
        } else {
            Err(CleanupError::Incomplete(self.failures))
        }
    }

    /// Stops every process inside the namespaces, so that none keeps one
    /// alive after its name is gone.
    /// Each is held by a pidfd while it is still in the namespace, so
    /// that one that ends is never mistaken for a process given its pid.
    fn stop_processes(&mut self, namespaces: &[String]) {
        let own = std::process::id();
        let mut held = Vec::new();
        for name in namespaces {
            match netns::pids(name) {
                Ok(found) => {
                    held.extend(found.into_iter().filter(|p| *p != own).filter_map(|pid| {
                        process::Held::open(pid, |pid| netns::process_in(pid, &netns::path(name)))
                    }))
                }
                Err(e) => self.failed(&format!("list the processes in {name}"), e),
            }
        }
        if held.is_empty() {
            return;
        }
        let mut shown: Vec<String> = held.iter().map(|p| p.pid().to_string()).collect();
        shown.sort();
        for pid in process::stop(held, STOP_GRACE) {
            self.failed(&format!("stop process {pid}"), "it outlived SIGKILL");
        }
        self.removed(format!("processes {}", shown.join(" ")));
    }

    async fn delete_links(&mut self, prefix: &str) {
        let netlink = match Netlink::new().await {
            Ok(n) => n,
            Err(e) => return self.failed("open a netlink socket", e),
        };
        let found = match netlink.links_with_prefix(prefix).await {
            Ok(found) => found,
            Err(e) => return self.failed("list links", e),
        };
        for name in found.iter().filter(|n| names::is_own_link(prefix, n)) {
            match netlink.delete_link(name).await {
                Ok(()) => self.removed(format!("link {name}")),
                Err(e) => self.failed(&format!("delete link {name}"), e),
            }
        }
    }

    /// The containers' resolv.conf directories (`/etc/netns/{prefix}-*`).
    fn remove_resolv_dirs(&mut self, prefix: &str) {
        let entries = match fs::read_dir(RESOLV_DIR) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => return self.failed(&format!("list {RESOLV_DIR}"), e),
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&format!("{prefix}-")))
            })
            .map(|e| e.path())
            .collect();
        dirs.sort();
        for dir in dirs {
            self.remove_path(&dir, "resolv.conf directory");
        }
    }

    /// Removes a file or a directory tree; a missing one is fine.
    fn remove_path(&mut self, path: &Path, what: &str) {
        let result = match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => fs::remove_dir_all(path),
            Ok(_) => fs::remove_file(path),
        };
        match result {
            Ok(()) => self.removed(format!("{what} {}", path.display())),
            Err(e) => self.failed(&format!("remove {}", path.display()), e),
        }
    }
}
