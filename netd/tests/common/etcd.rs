//! A real etcd (Debian's `etcd-server`) per test: on loopback, on ports
//! nobody else uses, with a private data directory in memory (see
//! [`ETCD_DIRS`]). Dropping the guard
//! kills the server and removes the directory, also when the test failed
//! half-way; if the test process itself dies, the kernel kills the server
//! (parent-death signal) and the next start removes its directory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Where the servers' directories go: tmpfs, so that etcd's fsync of every
/// write costs nothing. On a disk shared with the parallel builds and tests
/// of a loaded machine an fsync took seconds, past the daemons' 2 s call
/// timeout; what the tests check does not depend on durability.
const ETCD_DIRS: &str = "/dev/shm";

/// How long a server may take to answer its health check: generous, the
/// machine is shared.
const READY_WAIT: Duration = Duration::from_secs(60);

pub struct Etcd {
    pub client_port: u16,
    peer_port: u16,
    /// The address it listens on, in `netns` (the test's own namespace
    /// when `None`).
    addr: std::net::Ipv4Addr,
    netns: Option<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Etcd {
    /// Starts a one-member cluster. The thread that calls this must outlive
    /// the server (a test's own thread does): the parent-death signal
    /// follows the thread that spawned it.
    pub fn start() -> Etcd {
        Etcd::start_in(None, std::net::Ipv4Addr::LOCALHOST)
    }

    /// Starts a one-member cluster listening on `addr` inside the network
    /// namespace `netns` (a simulated underlay network of the test's).
    pub fn start_in(netns: Option<&str>, addr: std::net::Ipv4Addr) -> Etcd {
        sweep_dead();
        let dir = std::path::Path::new(ETCD_DIRS).join(format!(
            "netd-etcd-{}-{:08x}",
            std::process::id(),
            u32::from_ne_bytes(super::random_bytes())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut etcd = Etcd {
            client_port: 0,
            peer_port: 0,
            addr,
            netns: netns.map(str::to_string),
            dir,
            child: None,
        };
        // A port picked free may be taken again before etcd binds it (tests
        // run in parallel): pick others then.
        for _ in 0..5 {
            let _ = std::fs::remove_dir_all(etcd.dir.join("data"));
            etcd.client_port = super::free_port();
            etcd.peer_port = super::free_port();
            if etcd.spawn() {
                return etcd;
            }
        }
        panic!("etcd did not start: {}", etcd.log());
    }

    /// `--cluster-store` for this server.
    pub fn url(&self) -> String {
        format!("etcd://{}:{}", self.addr, self.client_port)
    }

    /// Kills the server; its data stays for `restart`.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "etcd did not restart: {}", self.log());
    }

    /// Starts etcd and waits until it is healthy; false if it exited first
    /// (a port was taken).
    fn spawn(&mut self) -> bool {
        let client = format!("http://{}:{}", self.addr, self.client_port);
        let peer = format!("http://{}:{}", self.addr, self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        let mut cmd = match &self.netns {
            // nsenter keeps the test's mounts (`ip netns exec` would give
            // etcd a private /sys, which it does not need either way).
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net=/run/netns/{ns}")).arg("etcd");
                cmd
            }
            None => Command::new("etcd"),
        };
        cmd.arg("--name=test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child
        // before exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run etcd ({e}): install it with `cargo xtask setup` (etcd-server)")
        });
        self.child = Some(child);
        let deadline = Instant::now() + READY_WAIT;
        while Instant::now() < deadline {
            if self.healthy() {
                return true;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!("etcd exited with {status}; retrying on other ports");
                self.child = None;
                return false;
            }
            sleep(Duration::from_millis(50));
        }
        panic!(
            "etcd did not become healthy within {READY_WAIT:?}: {}",
            self.log()
        );
    }

    /// Whether `GET /health` says so (asked from inside its namespace).
    fn healthy(&self) -> bool {
        let (addr, port) = (self.addr, self.client_port);
        let ask = move || health(addr, port);
        match &self.netns {
            Some(ns) => super::in_netns(ns, ask),
            None => ask(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

/// Whether the server at `addr:port` answers `GET /health` healthy.
fn health(addr: std::net::Ipv4Addr, port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect((addr, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    s.write_all(request.as_bytes()).is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.contains("\"health\":\"true\"")
}

/// Removes the data directories of test processes that were killed (their
/// servers died with them, by the parent-death signal).
fn sweep_dead() {
    let Ok(entries) = std::fs::read_dir(ETCD_DIRS) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix("netd-etcd-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
