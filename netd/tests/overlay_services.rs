//! Services across hosts and the routing mesh, against real daemons in a
//! simulated cluster (`common::cluster`): replicas on three hosts answer
//! with their own address and the address they see the client at; a
//! fourth host runs none. New connections go round-robin over every
//! replica from a container, from outside through the fourth host's
//! published port, from that host itself and hairpin from its container;
//! a replica removed, and a host lost, get no new connections while the
//! others keep theirs. Subnet 10.78.1.0/24 is this file's.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::cluster::{Host, LEASE_TTL_SECS, Lab, eventually};

/// The published port of the service.
const PORT: u16 = 30080;

/// Each replica answers a connection with its own address, then the
/// address it sees the client at, then echoes.
const REPLICA: &[&str] = &[
    "socat",
    "TCP-LISTEN:80,fork,reuseaddr",
    // No quoting: socat's address syntax would mangle it.
    "SYSTEM:hostname -I; echo $SOCAT_PEERADDR; cat",
];

/// A connection to a replica through `ip netns exec NS socat`.
struct Connection {
    child: Child,
    stdin: ChildStdin,
    lines: BufReader<ChildStdout>,
}

impl Connection {
    fn open(ns: &str, addr: &str, port: u16) -> Connection {
        let target = format!("TCP4:{addr}:{port},connect-timeout=3");
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "socat", "-T", "5", "-", &target])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap());
        Connection {
            child,
            stdin,
            lines,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// What the replica says first: `(its address, the client's address
    /// as it sees it)`.
    fn greeting(&mut self) -> (String, String) {
        (self.line(), self.line())
    }

    fn echo(&mut self, msg: &str) -> String {
        writeln!(self.stdin, "{msg}").unwrap();
        self.line()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` sequential connections from namespace `ns`: how many each replica
/// answered, and every client address the replicas saw.
fn spread(ns: &str, addr: &str, port: u16, n: usize) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut hits = BTreeMap::new();
    let mut seen = Vec::new();
    for _ in 0..n {
        let (replica, client) = Connection::open(ns, addr, port).greeting();
        *hits.entry(replica).or_default() += 1;
        if !seen.contains(&client) {
            seen.push(client);
        }
    }
    (hits, seen)
}

fn exactly(replicas: &[&String], k: usize) -> BTreeMap<String, usize> {
    replicas.iter().map(|ip| (ip.to_string(), k)).collect()
}

/// The backends host `h` balances service `svc` over (its load
/// balancer's per-backend counters, which exist exactly for the backends
/// in its table).
fn backends(h: &Host, svc: &str) -> Vec<String> {
    let prefix = format!("netd_lb_selections_total{{service=\"{svc}\",backend=\"");
    let mut out: Vec<String> = h
        .metrics()
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

fn sorted(ips: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = ips.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn wait_listening(h: &Host, container: &str) {
    eventually(
        &format!("{container} listening"),
        Duration::from_secs(10),
        || {
            let out = h.exec(container, &["ss", "-Hltn", "sport = :80"]);
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        },
    );
}

fn network_on(h: &Host, name: &str) -> bool {
    h.netd(&["network", "inspect", name]).status.success()
}

#[test]
fn services_span_hosts_and_every_host_answers_their_ports() {
    let mut lab = Lab::start(4);
    let h = &lab.hosts;
    h[0].ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.78.1.0/24",
        "ov",
    ]);
    for host in h {
        eventually("the network everywhere", Duration::from_secs(10), || {
            network_on(host, "ov")
        });
    }
    h[1].ok(&[
        "service",
        "create",
        "--network",
        "ov",
        "--replicas",
        "0",
        "-p",
        &format!("{PORT}:80"),
        "web",
    ]);
    for host in h {
        eventually("the service everywhere", Duration::from_secs(10), || {
            host.netd(&["service", "inspect", "web"]).status.success()
        });
    }
    let vip = h[3].json(&["service", "inspect", "web"])[0]["VirtualIP"]
        .as_str()
        .unwrap()
        .to_string();
    // Two replicas on host 0, one on hosts 1 and 2, none on host 3.
    for (host, name) in [(0, "a0"), (0, "a1"), (1, "b0"), (2, "c0")] {
        let mut args = vec![
            "container",
            "run",
            "--network",
            "ov",
            "--service",
            "web",
            name,
            "--",
        ];
        args.extend_from_slice(REPLICA);
        h[host].ok(&args);
        wait_listening(&h[host], name);
    }
    let [a0, a1, b0, c0] =
        [(0, "a0"), (0, "a1"), (1, "b0"), (2, "c0")].map(|(host, name)| h[host].ip_of(name, "ov"));
    let all = [&a0, &a1, &b0, &c0];
    for host in [&h[0], &h[3]] {
        eventually(
            "every replica in the host's rotation",
            Duration::from_secs(10),
            || backends(host, "web") == sorted(&all),
        );
    }
    h[3].ok(&["container", "create", "--network", "ov", "client"]);
    h[0].ok(&["container", "create", "--network", "ov", "near"]);
    let client = h[3].ip_of("client", "ov");
    let client_ns = h[3].container_netns("client");
    let host3 = h[3].addr.to_string();

    // The VIP from a container on a host without replicas, and from one
    // beside two of them: exact round robin, and the replicas see the
    // client's own address.
    assert_eq!(
        spread(&client_ns, &vip, 80, 8),
        (exactly(&all, 2), vec![client.clone()]),
        "the VIP from a container on a host without replicas"
    );
    let near = h[0].ip_of("near", "ov");
    assert_eq!(
        spread(&h[0].container_netns("near"), &vip, 80, 8),
        (exactly(&all, 2), vec![near]),
        "the VIP from a container beside replicas"
    );
    // The routing mesh on host 3: from outside (the replicas see the
    // client), from the host itself and hairpin from its container (the
    // replicas see host 3, whose addresses are its own).
    let outside_addr = format!("{}.200", lab.net);
    assert_eq!(
        spread(&lab.outside, &host3, PORT, 8),
        (exactly(&all, 2), vec![outside_addr]),
        "from outside through a host without replicas"
    );
    assert_eq!(
        spread(&h[3].netns, "127.0.0.1", PORT, 8),
        (exactly(&all, 2), vec![host3.clone()]),
        "from that host's localhost"
    );
    assert_eq!(
        spread(&client_ns, &host3, PORT, 8),
        (exactly(&all, 2), vec![host3.clone()]),
        "hairpin from its container"
    );
    let flows = |host: &Host, kind: &str| -> u64 {
        host.json(&["stats", "--format", "json"])["Nat"][kind]
            .as_u64()
            .unwrap_or_default()
    };
    assert!(flows(&h[3], "PublishedFlows") >= 8);

    // A connection to a replica of host 0 stays up through everything
    // below.
    let mut long = loop {
        let mut c = Connection::open(&client_ns, &vip, 80);
        if [&a0, &a1].contains(&&c.greeting().0) {
            break c;
        }
    };
    assert_eq!(long.echo("hello"), "hello");

    // A replica removed: out of every host's rotation once its host's
    // change arrives; the others keep their connections.
    h[1].ok(&["container", "rm", "-f", "b0"]);
    let left = [&a0, &a1, &c0];
    eventually(
        "b0 out of host 3's rotation",
        Duration::from_secs(10),
        || backends(&h[3], "web") == sorted(&left),
    );
    assert_eq!(
        spread(&client_ns, &vip, 80, 6).0,
        exactly(&left, 2),
        "without the removed replica"
    );
    assert_eq!(long.echo("still there"), "still there");

    // A host lost (daemon killed, link down): its replica leaves with its
    // lease.
    lab.hosts[2].kill9();
    lab.hosts[2].set_link(false);
    let h = &lab.hosts;
    let left = [&a0, &a1];
    eventually(
        "host 2's replica out of host 3's rotation",
        Duration::from_secs(LEASE_TTL_SECS + 10),
        || backends(&h[3], "web") == sorted(&left),
    );
    assert_eq!(
        spread(&lab.outside, &host3, PORT, 4).0,
        exactly(&left, 2),
        "the mesh without the lost host"
    );
    assert_eq!(long.echo("and now"), "and now");
}
