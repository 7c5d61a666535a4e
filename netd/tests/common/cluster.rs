//! A cluster of netd hosts on one machine: an underlay namespace with a
//! bridge, a real etcd in it, and one namespace per host, each joined to
//! the bridge by a veth (its `eth0`, the host's uplink and underlay) and
//! running a netd daemon of its own (own prefix, state, socket, pins,
//! metrics port) in cluster mode. An "outside" namespace on the underlay
//! stands for a client of published ports.
//!
//! Daemons run under `nsenter --net`, which keeps the test's mounts (the
//! shared /run/netns and bpffs), so the daemon must find its interfaces
//! through netlink, never through /sys (TOOLCHAIN.md).
//!
//! Dropping the lab stops every daemon and removes every namespace, link,
//! pin, process and file it made, also when a test failed.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::etcd::Etcd;
use super::{free_port, in_netns, random_bytes, random_prefix, sh};

/// The lease TTL the tests run with: short, so that a lost host goes fast.
pub const LEASE_TTL_SECS: u64 = 2;

pub struct Lab {
    /// The underlay's namespace (`u` + a tag).
    pub underlay: String,
    /// The underlay's /24, as its first three octets.
    pub net: String,
    pub etcd: Etcd,
    pub hosts: Vec<Host>,
    /// A namespace on the underlay for outside clients, at `.200`.
    pub outside: String,
}

pub struct Host {
    /// The host's namespace.
    pub netns: String,
    pub addr: Ipv4Addr,
    /// Prefix of the daemon's kernel objects.
    pub prefix: String,
    pub dir: PathBuf,
    pub bpffs: PathBuf,
    pub metrics_port: u16,
    store: String,
    child: Option<Child>,
}

impl Lab {
    /// An underlay, etcd and `n` hosts with their daemons up.
    pub fn start(n: usize) -> Lab {
        super::root::require_root();
        let tag = &random_prefix()[1..];
        let [a] = random_bytes::<1>();
        let net = format!("10.{}.{}", 200 + a % 50, tag.as_bytes()[0]);
        let underlay = format!("u{tag}");
        sh(&["ip", "netns", "add", &underlay]);
        let mut lab = Lab {
            etcd: {
                sh(&[
                    "ip", "-n", &underlay, "link", "add", "br0", "type", "bridge",
                ]);
                sh(&[
                    "ip",
                    "-n",
                    &underlay,
                    "addr",
                    "add",
                    &format!("{net}.1/24"),
                    "dev",
                    "br0",
                ]);
                sh(&["ip", "-n", &underlay, "link", "set", "br0", "up"]);
                sh(&["ip", "-n", &underlay, "link", "set", "lo", "up"]);
                Etcd::start_in(Some(&underlay), format!("{net}.1").parse().unwrap())
            },
            underlay,
            outside: format!("o{tag}"),
            net,
            hosts: Vec::new(),
        };
        lab.attach(&lab.outside.clone(), 200);
        for i in 0..n {
            let host = lab.add_host(i);
            lab.hosts.push(host);
        }
        for h in &mut lab.hosts {
            h.spawn();
        }
        lab
    }

    /// A namespace `ns` on the underlay at `.last`.
    fn attach(&self, ns: &str, last: u8) {
        let port = format!("p{last}");
        sh(&["ip", "netns", "add", ns]);
        sh(&[
            "ip",
            "-n",
            &self.underlay,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        ]);
        sh(&[
            "ip",
            "-n",
            &self.underlay,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        let addr = format!("{}.{last}/24", self.net);
        sh(&["ip", "-n", ns, "addr", "add", &addr, "dev", "eth0"]);
        sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }

    fn add_host(&self, i: usize) -> Host {
        let last = 11 + i as u8;
        let netns = format!("{}h{i}", self.underlay.replacen('u', "h", 1));
        self.attach(&netns, last);
        let prefix = random_prefix();
        let dir = std::env::temp_dir().join(format!("netd-test-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Host {
            netns,
            addr: format!("{}.{last}", self.net).parse().unwrap(),
            bpffs: PathBuf::from(format!("/sys/fs/bpf/netd-test-{prefix}")),
            prefix,
            dir,
            metrics_port: free_port(),
            store: self.etcd.url(),
            child: None,
        }
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
}

/// Waits until `cond` holds; `what` names it in the failure. The limit
/// only bounds a failing test: it is no assertion about how fast.
pub fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(50));
    }
}

impl Host {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(env!("CARGO_BIN_EXE_netd"))
            .arg("daemon")
            .args(["--config", "/dev/null"])
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("--socket")
            .arg(self.socket())
            .arg("--bpffs")
            .arg(&self.bpffs)
            .args(["--prefix", &self.prefix])
            .args(["--uplink", "eth0"])
            .args([
                "--metrics-addr",
                &format!("127.0.0.1:{}", self.metrics_port),
            ])
            .args(["--cluster-store", &self.store])
            .args(["--cluster-lease-ttl", &LEASE_TTL_SECS.to_string()])
            .env("NETD_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("netd binary runs");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "daemon of {} exited with {status}:\n{}",
                    self.netns,
                    self.log()
                );
            }
            if self.netd(&["version"]).status.success() {
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

    pub fn socket(&self) -> PathBuf {
        self.dir.join("netd.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL: the daemon gets no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sets the host's link to the underlay up or down (a host lost, or
    /// back).
    pub fn set_link(&self, up: bool) {
        sh(&[
            "ip",
            "-n",
            &self.netns,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn();
    }

    pub fn netd(&self, args: &[&str]) -> Output {
        super::cli(&self.socket(), args)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.netd(args);
        assert!(
            out.status.success(),
            "netd {args:?} on {} failed: {}\n--- daemon log ---\n{}",
            self.netns,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.netd(args);
        assert!(
            !out.status.success(),
            "netd {args:?} on {} should have failed: {}",
            self.netns,
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// The namespace of container `name` of this host.
    pub fn container_netns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Runs `args` in container `name`'s namespace.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.container_netns(name)])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// One scrape of the daemon's metrics (its endpoint is on the host
    /// namespace's loopback).
    pub fn metrics(&self) -> String {
        let port = self.metrics_port;
        in_netns(&self.netns, move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            s.read_to_string(&mut response).unwrap();
            response
        })
    }

    /// The address of container `name` on network `network`.
    pub fn ip_of(&self, name: &str, network: &str) -> String {
        let c = self.json(&["container", "inspect", name]);
        c[0]["NetworkSettings"]["Networks"][network]["IPAddress"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no address on {network}: {c}"))
            .to_string()
    }

    /// Namespaces of this host's containers.
    fn own_netns(&self) -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9();
        // Container processes: every process in a namespace of this host's.
        for ns in self.own_netns() {
            super::kill_netns_processes(&ns);
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = netd::dataplane::Dataplane::remove_pins(&self.bpffs);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "daemon log of {} kept in {}",
                self.netns,
                self.dir.display()
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Hosts first (their links are in their namespaces), then the
        // underlay with its bridge and ports.
        self.hosts.clear();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.outside])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.underlay])
            .output();
    }
}
