//! Services against a real daemon: a virtual IP balanced round-robin in
//! eBPF over replicas that answer with their own address, reached from a
//! container, from the host and through a published port from outside;
//! scaling and removing replicas without breaking established connections.
//! Subnets 10.26.x.0/24 are this file's.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Daemon;
use serde_json::Value;

/// Each replica answers a connection with its own address, then echoes.
const REPLICA: &[&str] = &[
    "socat",
    "TCP-LISTEN:80,fork,reuseaddr",
    // `hostname -I` prints the namespace's addresses (just eth0's here);
    // no quoting, which socat's address syntax would mangle.
    "SYSTEM:hostname -I; cat",
];

/// `service create --network n --replicas N [FLAGS] NAME -- REPLICA`, then
/// waits until its N replicas listen.
fn replicated(d: &Daemon, name: &str, replicas: usize, flags: &[&str]) {
    let n = replicas.to_string();
    let mut args = vec!["service", "create", "--network", "n", "--replicas", &n];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[name, "--"]);
    args.extend_from_slice(REPLICA);
    d.ok(&args);
    wait_all_listening(d, name, replicas);
}

fn service(d: &Daemon, name: &str) -> Value {
    d.json(&["service", "inspect", name])[0].clone()
}

fn replica_ips(d: &Daemon, name: &str) -> Vec<String> {
    service(d, name)["Tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["IPAddress"].as_str().unwrap().to_string())
        .collect()
}

fn wait_all_listening(d: &Daemon, name: &str, n: usize) {
    for i in 1..=n {
        wait_listening(d, &format!("{name}.{i}"));
    }
}

/// Until the container's port 80 listens (its REPLICA started).
fn wait_listening(d: &Daemon, container: &str) {
    let ns = d.netns(container);
    for _ in 0..100 {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, "ss", "-Hltn", "sport = :80"])
            .output()
            .unwrap();
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{container} is not listening");
}

/// One request: connect, read the first line (the replica's address).
fn ask(ns: Option<&str>, addr: &str, port: u16) -> String {
    let target = format!("TCP4:{addr}:{port},connect-timeout=3");
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "socat", "-T", "3", "-", &target]);
            c
        }
        None => {
            let mut c = Command::new("socat");
            c.args(["-T", "3", "-", &target]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    line.trim().to_string()
}

/// `n` sequential requests, counted per answering replica.
fn spread(ns: Option<&str>, addr: &str, port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut hits = BTreeMap::new();
    for _ in 0..n {
        *hits.entry(ask(ns, addr, port)).or_default() += 1;
    }
    hits
}

fn exactly(ips: &[String], k: usize) -> BTreeMap<String, usize> {
    ips.iter().map(|ip| (ip.clone(), k)).collect()
}

#[test]
fn new_connections_go_round_robin_from_everywhere() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.26.1.0/24", "n"]);
    replicated(&d, "web", 5, &["-p", "18088:80"]);
    d.ok(&["container", "create", "--network", "n", "client"]);

    let svc = service(&d, "web");
    let vip = svc["VirtualIP"].as_str().unwrap().to_string();
    let ips = replica_ips(&d, "web");
    assert_eq!(ips.len(), 5);
    assert!(!ips.contains(&vip), "the VIP is not a replica's address");
    let ls = d.ok(&["service", "ls"]);
    assert!(ls.contains("5/5"), "{ls}");

    // 10 sequential new connections hit each of the 5 replicas exactly twice.
    let client = d.netns("client");
    assert_eq!(
        spread(Some(&client), &vip, 80, 10),
        exactly(&ips, 2),
        "from a container"
    );
    assert_eq!(
        spread(None, &vip, 80, 10),
        exactly(&ips, 2),
        "from the host"
    );
    assert_eq!(
        spread(Some(&d.outside), &d.uplink_addr, 18088, 10),
        exactly(&ips, 2),
        "through the published port from outside"
    );

    // Per-backend selections are exported.
    let metrics = d.metrics();
    assert!(metrics.contains("netd_lb_selections_total{"), "{metrics}");
}

#[test]
fn scaling_keeps_established_connections_and_rotates_new_ones() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.26.2.0/24", "n"]);
    replicated(&d, "api", 3, &[]);
    d.ok(&["container", "create", "--network", "n", "client"]);
    let vip = service(&d, "api")["VirtualIP"]
        .as_str()
        .unwrap()
        .to_string();

    // A long-lived connection: it learns which replica serves it, then
    // echoes what it is sent.
    let mut long = LongConnection::open(&d.netns("client"), &vip);
    let served_by = long.first_line();
    let ips = replica_ips(&d, "api");
    let index = ips.iter().position(|ip| *ip == served_by).unwrap() + 1;

    // Remove every other replica, keeping the one serving the connection:
    // scale down to it, and `container rm` the lower-numbered ones.
    d.ok(&["service", "scale", &format!("api={index}")]);
    for i in 1..index {
        d.ok(&["container", "rm", "-f", &format!("api.{i}")]);
    }
    assert_eq!(replica_ips(&d, "api"), vec![served_by.clone()]);
    assert_eq!(
        long.echo("still there"),
        "still there",
        "established connection broke"
    );

    // New connections only go to what is left; scaling up adds to the rotation.
    assert_eq!(
        spread(Some(&d.netns("client")), &vip, 80, 3),
        exactly(std::slice::from_ref(&served_by), 3)
    );
    d.ok(&["service", "scale", "api=5"]);
    wait_all_listening(&d, "api", 5);
    let now = replica_ips(&d, "api");
    assert!(now.len() >= 4, "{now:?}");
    assert_eq!(
        spread(Some(&d.netns("client")), &vip, 80, now.len() * 2),
        exactly(&now, 2)
    );
    assert_eq!(long.echo("and now"), "and now");

    // Removing the service removes its replicas and its address.
    drop(long);
    d.ok(&["service", "rm", "api"]);
    assert!(
        d.fails(&["service", "inspect", "api"])
            .contains("service api not found")
    );
    let left = d.ok(&["container", "ls", "-q"]);
    assert_eq!(left.lines().count(), 1, "only the client is left: {left}");
}

#[test]
fn user_containers_join_and_empty_services_drop() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.26.3.0/24", "n"]);
    d.ok(&[
        "service",
        "create",
        "--network",
        "n",
        "--replicas",
        "0",
        "mine",
    ]);
    let vip = service(&d, "mine")["VirtualIP"]
        .as_str()
        .unwrap()
        .to_string();
    d.ok(&["container", "create", "--network", "n", "client"]);
    // No backend: the connection is refused in the datapath, not forwarded.
    assert_eq!(ask(Some(&d.netns("client")), &vip, 80), "");
    let mut run = vec![
        "container",
        "run",
        "--network",
        "n",
        "--service",
        "mine",
        "b1",
        "--",
    ];
    run.extend_from_slice(REPLICA);
    d.ok(&run);
    wait_listening(&d, "b1");
    assert_eq!(
        ask(Some(&d.netns("client")), &vip, 80),
        replica_ips(&d, "mine")[0]
    );
    let wrong = d.fails(&[
        "container",
        "create",
        "--network",
        "none",
        "--service",
        "mine",
        "x",
    ]);
    assert!(wrong.contains("must be on its network"), "{wrong}");
    let busy = d.fails(&["network", "rm", "n"]);
    assert!(busy.contains("used by service mine"), "{busy}");
    d.ok(&["service", "rm", "mine"]);
    // A joined container stays, outside any service.
    assert!(d.ok(&["container", "ls"]).contains("b1"));
}

#[test]
fn one_container_backs_several_services() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.26.4.0/24", "n"]);
    for name in ["api", "web"] {
        d.ok(&[
            "service",
            "create",
            "--network",
            "n",
            "--replicas",
            "0",
            name,
        ]);
    }
    let vip = |name: &str| service(&d, name)["VirtualIP"].as_str().unwrap().to_string();
    let (api, web) = (vip("api"), vip("web"));
    d.ok(&["container", "create", "--network", "n", "client"]);
    let client = d.netns("client");

    // One unknown service and nothing is made.
    let unknown = d.fails(&[
        "container",
        "create",
        "--network",
        "n",
        "--service",
        "api",
        "--service",
        "nope",
        "x",
    ]);
    assert!(unknown.contains("service nope not found"), "{unknown}");
    assert!(!d.ok(&["container", "ls"]).contains(" x "));

    let mut run = vec![
        "container",
        "run",
        "--network",
        "n",
        "--service",
        "api",
        "--service",
        "web",
        "both",
        "--",
    ];
    run.extend_from_slice(REPLICA);
    d.ok(&run);
    wait_listening(&d, "both");
    let ip = replica_ips(&d, "api");
    assert_eq!(ip.len(), 1);
    assert_eq!(replica_ips(&d, "web"), ip);
    for vip in [&api, &web] {
        assert_eq!(spread(Some(&client), vip, 80, 3), exactly(&ip, 3), "{vip}");
    }

    // The other service keeps its backend.
    d.ok(&["service", "rm", "api"]);
    assert_eq!(spread(Some(&client), &web, 80, 3), exactly(&ip, 3));
    assert_eq!(replica_ips(&d, "web"), ip);
    // Leaving the container takes it out of the rotation.
    d.ok(&["container", "rm", "-f", "both"]);
    assert!(replica_ips(&d, "web").is_empty());
    assert_eq!(ask(Some(&client), &web, 80), "");
}

/// A socat client kept open for the length of a test.
struct LongConnection {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl LongConnection {
    fn open(ns: &str, vip: &str) -> LongConnection {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "socat", "-", &format!("TCP4:{vip}:80")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        LongConnection { child, lines }
    }

    fn first_line(&mut self) -> String {
        let mut l = String::new();
        self.lines.read_line(&mut l).unwrap();
        l.trim().to_string()
    }

    fn echo(&mut self, msg: &str) -> String {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{msg}").unwrap();
        stdin.flush().unwrap();
        self.first_line()
    }
}

impl Drop for LongConnection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A restart brings a service back to its replicas: one removed by hand
/// and one whose process ended while the daemon was down (as after a
/// reboot) run again under their names; a replica that kept running is
/// left alone, and the VIP balances over all three.
#[test]
fn replicas_come_back_at_restart() {
    let mut d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.26.5.0/24", "n"]);
    replicated(&d, "web", 3, &[]);
    let pid_of = |d: &Daemon, name: &str| {
        d.json(&["container", "inspect", name])[0]["State"]["Pid"].as_u64()
    };
    let kept = pid_of(&d, "web.1").expect("web.1 runs");
    let ended = pid_of(&d, "web.3").expect("web.3 runs");

    d.ok(&["container", "rm", "-f", "web.2"]);
    d.kill9();
    // SAFETY: signalling the replica's process, which this test started.
    unsafe { libc::kill(ended as i32, libc::SIGKILL) };
    d.start_again();

    wait_all_listening(&d, "web", 3);
    let ls = d.ok(&["service", "ls"]);
    assert!(ls.contains("3/3"), "{ls}");
    assert_eq!(pid_of(&d, "web.1"), Some(kept), "a running replica is kept");
    assert_ne!(pid_of(&d, "web.3"), Some(ended), "web.3 runs anew");
    let ips = replica_ips(&d, "web");
    assert_eq!(ips.len(), 3, "{ips:?}");
    let vip = service(&d, "web")["VirtualIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(spread(None, &vip, 80, 6), exactly(&ips, 2));
}
