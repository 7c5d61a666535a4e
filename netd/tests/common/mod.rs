//! Test harness: a real `netd daemon` per test, with its own prefix, state
//! directory, socket and pin directory, so tests run in parallel without
//! seeing each other. Dropping the harness kills the daemon and removes
//! every namespace, link, pin, process and file it made, also when the test
//! failed half-way.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

// The root check of the BPF harness, so that every privileged test fails
// with the same message when not run as root.
#[path = "../bpf_harness/root.rs"]
mod root;
#[allow(unused_imports)] // not every test binary checks by itself
pub use root::require_root;

pub mod cluster;
pub mod dns;
pub mod etcd;

/// How long a daemon may take to answer its first ping (building nothing,
/// loading the eBPF object, restoring state). Generous: machines are shared.
const READY_WAIT: Duration = Duration::from_secs(60);

/// Waits until `cond` holds (a few seconds at most on a busy machine; the
/// limit only turns a hang into a failure).
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20));
    }
}

pub struct Daemon {
    pub prefix: String,
    /// The daemon's uplink: a veth whose peer (`eth0` in the `outside`
    /// namespace) stands in for the world, so no test ever touches the
    /// machine's real interfaces.
    pub uplink: String,
    pub uplink_addr: String,
    pub outside: String,
    pub outside_addr: String,
    pub dir: PathBuf,
    pub bpffs: PathBuf,
    pub metrics_port: u16,
    /// Extra `netd daemon` arguments (`start_with`), kept across restarts.
    extra_args: Vec<String>,
    /// Changes to the daemon's environment (`launch`): `None` removes.
    env: Vec<(String, Option<String>)>,
    child: Option<Child>,
}

/// How [`Daemon::launch`] starts a daemon beyond the defaults. In `args`
/// and `config`, `{outside_addr}` is replaced by the outside namespace's
/// address and `{outside_net}` by the first three octets of its /24 (both
/// are only chosen at launch), e.g. `--dns {outside_addr}:53`.
#[derive(Default)]
pub struct Launch<'a> {
    /// Extra `netd daemon` arguments.
    pub args: &'a [&'a str],
    /// A configuration file: written to [`Daemon::config_path`] and passed
    /// with `--config`.
    pub config: Option<&'a str>,
    /// Changes to the environment (after the harness's `NETD_LOG=debug`):
    /// `None` removes the variable.
    pub env: &'a [(&'a str, Option<&'a str>)],
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), N, 0) };
    assert_eq!(n, N as isize);
    buf
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn random_prefix() -> String {
    let mut buf = [0u8; 3];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n, 3);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // 't' + three random characters: all test prefixes have four characters,
    // so none is a prefix of another, nor of "netd" or "dev".
    std::iter::once('t')
        .chain(
            buf.iter()
                .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char),
        )
        .collect()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Like `start`, with extra `netd daemon` arguments (placeholders as
    /// in [`Launch`]).
    pub fn start_with(extra: &[&str]) -> Daemon {
        Daemon::launch(Launch {
            args: extra,
            ..Launch::default()
        })
    }

    pub fn launch(launch: Launch) -> Daemon {
        root::require_root();
        let prefix = random_prefix();
        let dir = std::env::temp_dir().join(format!("netd-test-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A /24 of the shared address space (100.64.0.0/10) per daemon.
        let [a, b] = random_bytes::<2>();
        let net = format!("100.{}.{}", 64 + a % 64, b);
        let mut d = Daemon {
            bpffs: PathBuf::from(format!("/sys/fs/bpf/netd-test-{prefix}")),
            uplink: format!("u{prefix}"),
            uplink_addr: format!("{net}.1"),
            outside: format!("o{prefix}"),
            outside_addr: format!("{net}.2"),
            prefix,
            dir,
            metrics_port: free_port(),
            extra_args: Vec::new(),
            env: launch
                .env
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
            child: None,
        };
        let fill = |text: &str| {
            text.replace("{outside_addr}", &d.outside_addr)
                .replace("{outside_net}", &net)
        };
        let mut extra: Vec<String> = launch.args.iter().map(|a| fill(a)).collect();
        if let Some(config) = launch.config {
            std::fs::write(d.config_path(), fill(config)).unwrap();
            extra.push("--config".into());
            extra.push(d.config_path().display().to_string());
        }
        d.extra_args = extra;
        sh(&["ip", "netns", "add", &d.outside]);
        sh(&[
            "ip", "link", "add", &d.uplink, "type", "veth", "peer", "name", "eth0", "netns",
            &d.outside,
        ]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", d.uplink_addr),
            "dev",
            &d.uplink,
        ]);
        sh(&["ip", "link", "set", &d.uplink, "up"]);
        let ns = d.outside.clone();
        let out_addr = format!("{}/24", d.outside_addr);
        sh(&["ip", "-n", &ns, "addr", "add", &out_addr, "dev", "eth0"]);
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        d.spawn();
        d
    }

    /// Runs a command in the outside namespace.
    pub fn outside(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.outside])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("netd.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Where [`Launch::config`] is written.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("netd.toml")
    }

    /// SIGHUP: `systemctl reload`.
    pub fn reload(&self) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid() as i32, libc::SIGHUP) };
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_netd"));
        command
            .arg("daemon")
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--socket")
            .arg(self.socket())
            .arg("--bpffs")
            .arg(&self.bpffs)
            .arg("--prefix")
            .arg(&self.prefix)
            .arg("--uplink")
            .arg(&self.uplink)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .args(&self.extra_args)
            .env("NETD_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (key, value) in &self.env {
            match value {
                Some(v) => command.env(key, v),
                None => command.env_remove(key),
            };
        }
        self.child = Some(command.spawn().expect("netd binary runs"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "daemon exited with {status} before it was ready:\n{}",
                    self.log()
                );
            }
            let ok = std::os::unix::net::UnixStream::connect(self.socket()).is_ok()
                && self.netd(&["version"]).status.success();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn();
    }

    /// Runs the netd CLI against this daemon.
    pub fn netd(&self, args: &[&str]) -> Output {
        cli(&self.socket(), args)
    }

    /// Runs the netd CLI and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.netd(args);
        assert!(
            out.status.success(),
            "netd {args:?} failed: {}\n--- daemon log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs the netd CLI and requires failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.netd(args);
        assert!(
            !out.status.success(),
            "netd {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs the real docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker CLI is installed (cargo xtask setup installs it)")
    }

    /// `netd container ls --format json`: one object per container.
    pub fn containers(&self) -> Vec<Value> {
        self.ok(&["container", "ls", "--format", "json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Packets netd dropped for `reason`, from `netd stats`.
    pub fn drops(&self, reason: &str) -> u64 {
        self.json(&["stats", "--format", "json"])["Drops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["Reason"] == reason)
            .map(|x| x["Packets"].as_u64().unwrap())
            .sum()
    }

    /// One scrape of the daemon's metrics endpoint.
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        response
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    pub fn netns(&self, container: &str) -> String {
        format!("{}-{}", self.prefix, container)
    }

    /// The persisted state (snapshot and journal), read as the next
    /// daemon would; reading does not change the files.
    pub fn state(&self) -> Value {
        serde_json::to_value(self.persisted().expect("the state loads")).unwrap()
    }

    /// The persisted record of container `name`, if there is one.
    pub fn stored_container(&self, name: &str) -> Option<Value> {
        let state = self.state();
        let containers = state["containers"].as_object()?;
        containers.values().find(|c| c["name"] == name).cloned()
    }

    /// The persisted state as the next daemon would load it.
    pub fn persisted(&self) -> Result<netd::model::State, netd::store::StoreError> {
        use netd::store::Store as _;
        netd::store::FileStore::new(&self.state_dir())?.load()
    }

    /// Links in the host namespace that carry this daemon's prefix.
    pub fn own_links(&self) -> Vec<String> {
        let links: Value = ip_json(&["link", "show"]);
        let mut v: Vec<String> = links
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .filter(|n| n.starts_with(&self.prefix))
            .collect();
        v.sort();
        v
    }

    /// Network namespaces that carry this daemon's prefix.
    pub fn own_netns(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// `GET /_ping` on the API socket; the status line and body.
    pub fn ping(&self) -> String {
        self.http("GET", "/_ping", b"")
    }

    /// One raw HTTP/1.0 request on the API socket (for what the CLI never
    /// sends); the whole response. A server that answers before reading
    /// the whole body (a refused, oversized one) may close the socket
    /// under the writer: that is not an error here.
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> String {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.socket()).unwrap();
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: netd\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let _ = s.write_all(body);
        let mut response = Vec::new();
        let _ = s.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Starts the netd CLI without waiting for it.
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_netd"))
            .arg("-H")
            .arg(self.host())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Checks that the store, the daemon's answers and the kernel agree
    /// ([`Daemon::inconsistencies`]).
    pub fn assert_consistent(&self, bridges: usize) {
        let found = self.inconsistencies(bridges);
        assert!(found.is_empty(), "inconsistent:\n{}", found.join("\n"));
    }

    /// Where the store, the daemon's answers and the kernel disagree: the
    /// persisted containers must be the ones listed; each must have its
    /// own namespace with its endpoints' addresses, no address may be held
    /// twice on a network (endpoints, gateways, service VIPs), and no
    /// namespace or link of this daemon's may belong to nothing.
    /// `bridges`: the daemon's bridge devices (one per bridge network).
    pub fn inconsistencies(&self, bridges: usize) -> Vec<String> {
        let mut found = Vec::new();
        let stored = match self.persisted() {
            Ok(state) => state,
            Err(e) => return vec![format!("the state does not load: {e}")],
        };
        let listed: std::collections::BTreeSet<String> = self
            .containers()
            .iter()
            .map(|c| {
                c["Name"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
        let persisted: std::collections::BTreeSet<String> =
            stored.containers.values().map(|c| c.name.clone()).collect();
        if listed != persisted {
            found.push(format!(
                "listed containers {listed:?} are not the persisted ones {persisted:?}"
            ));
        }
        // Who holds each address: gateways, service VIPs, endpoints.
        let held = stored
            .networks
            .values()
            .filter_map(|n| {
                Some((
                    &n.id,
                    n.ipam.as_ref()?.gateway,
                    format!("the gateway of {}", n.name),
                ))
            })
            .chain(
                stored
                    .services
                    .values()
                    .map(|s| (&s.network_id, s.vip, format!("service {}", s.name))),
            )
            .chain(stored.containers.values().flat_map(|c| {
                c.endpoints
                    .iter()
                    .map(|ep| (&ep.network_id, ep.ip, format!("{}'s {}", c.name, ep.ifname)))
            }));
        let mut addresses = std::collections::HashSet::new();
        for (network, ip, holder) in held {
            if !addresses.insert((network, ip)) {
                found.push(format!("{ip} handed out twice (again to {holder})"));
            }
        }
        let mut namespaces = Vec::new();
        let mut veths = 0;
        for c in stored.containers.values() {
            let netd::model::NetMode::Own { netns } = &c.net else {
                continue;
            };
            if !netns_exists(netns) {
                found.push(format!("{} has no namespace", c.name));
                continue;
            }
            namespaces.push(netns.clone());
            for ep in &c.endpoints {
                veths += 1;
                let addrs = ip_json_in(netns, &["-4", "addr", "show", "dev", &ep.ifname]);
                let local = &addrs[0]["addr_info"][0]["local"];
                if local != ep.ip.to_string().as_str() {
                    found.push(format!(
                        "{}'s {} has {local}, not {}",
                        c.name, ep.ifname, ep.ip
                    ));
                }
            }
        }
        namespaces.sort();
        let own = self.own_netns();
        if own != namespaces {
            found.push(format!(
                "namespaces {own:?}, the containers' are {namespaces:?}"
            ));
        }
        let links = self.own_links();
        if links.len() != bridges + veths {
            found.push(format!(
                "links {links:?} for {bridges} bridges and {veths} endpoints"
            ));
        }
        found
    }

    /// Pids of container processes recorded in the persisted state.
    fn recorded_pids(&self) -> Vec<i32> {
        let Ok(state) = self.persisted() else {
            return vec![];
        };
        state
            .containers
            .values()
            .filter_map(|c| c.process.as_ref()?.pid)
            .map(|p| p as i32)
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        for pid in self.recorded_pids() {
            // SAFETY: signalling the process groups our daemon started.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        for ns in self.own_netns() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        // The containers' resolv.conf files (`/etc/netns/NAME/`), which a
        // SIGKILLed daemon leaves behind.
        if let Ok(dirs) = std::fs::read_dir("/etc/netns") {
            for dir in dirs.filter_map(|e| e.ok()) {
                if dir
                    .file_name()
                    .to_string_lossy()
                    .starts_with(&format!("{}-", self.prefix))
                {
                    let _ = std::fs::remove_dir_all(dir.path());
                }
            }
        }
        for link in self.own_links() {
            let _ = Command::new("ip").args(["link", "del", &link]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.uplink])
            .output();
        kill_netns_processes(&self.outside);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.outside])
            .output();
        let _ = std::fs::remove_dir_all(&self.bpffs);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("daemon log kept in {}", self.dir.display());
        }
    }
}

/// Runs the netd CLI against the daemon on `socket`.
pub fn cli(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netd"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A process the test started, killed on drop if still running.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits for it to end on its own.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.0.wait().unwrap()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGKILLs every process in the network namespace `ns` (`ip netns pids`).
pub fn kill_netns_processes(ns: &str) {
    let Ok(pids) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| *p > 0)
    {
        // SAFETY: signalling processes the test started in its namespace.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Runs a command in the network namespace `/run/netns/NS` (`ip netns
/// exec`, which also bind-mounts `/etc/netns/NS/*`).
pub fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `f` on a thread that joined the network namespace `/run/netns/NS`
/// (sockets it opens live there).
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_netns(ns, f)
        .join()
        .expect("thread in the namespace")
}

/// Starts `f` on a thread that joins the network namespace `/run/netns/NS`
/// first, without waiting for it.
pub fn spawn_in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a valid namespace fd; it changes only this
        // thread's namespace, and the thread ends with `f`.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

/// `ip -j ARGS` parsed.
pub fn ip_json(args: &[&str]) -> Value {
    let out = Command::new("ip").arg("-j").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(vec![]))
}

/// `ip -n NETNS -j ARGS` parsed.
pub fn ip_json_in(netns: &str, args: &[&str]) -> Value {
    let mut full = vec!["-n", netns];
    full.extend_from_slice(args);
    ip_json(&full)
}

/// Whether process `pid` exists and has not exited (a zombie has).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // "pid (comm) S ...": the state follows the last ')'.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
