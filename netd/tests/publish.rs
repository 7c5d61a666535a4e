//! Outbound masquerade and published ports against a real daemon, with real
//! clients and servers. Every test daemon's uplink is a veth whose far end
//! sits in an "outside" namespace with no route back to container subnets,
//! so a reply can only arrive if netd translated the addresses. Subnets
//! 10.25x.* are this file's, one per test.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{Daemon, in_ns, stderr};
use serde_json::Value;

fn spawn_in(ns: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stops a server the test started, also when the test fails half-way.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something listens on `port` (TCP, or UDP with `udp`) in `ns`.
fn wait_listening(ns: &str, port: u16, udp: bool) {
    let flags = if udp { "-Hlun" } else { "-Hltn" };
    for _ in 0..100 {
        let out = in_ns(ns, &["ss", flags, &format!("sport = :{port}")]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port} in {ns}");
}

/// One short TCP exchange with an iperf3 server, from `ns` or the host.
fn iperf_tcp(ns: Option<&str>, addr: &str, port: u16, extra: &[&str]) -> Output {
    let port = port.to_string();
    let mut args = vec![
        "iperf3",
        "-c",
        addr,
        "-p",
        &port,
        "-t",
        "1",
        "--connect-timeout",
        "3000",
    ];
    args.extend_from_slice(extra);
    match ns {
        Some(ns) => in_ns(ns, &args),
        None => Command::new(args[0]).args(&args[1..]).output().unwrap(),
    }
}

/// A UDP echo through socat, from `ns` or the host; returns what came back.
fn udp_echo(ns: Option<&str>, addr: &str, port: u16) -> String {
    let target = format!("UDP4:{addr}:{port}");
    let args = ["socat", "-T", "2", "-", target.as_str()];
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).args(args);
            c
        }
        None => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"ping\n").unwrap();
    drop(child.stdin.take());
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

#[test]
fn containers_reach_the_outside_through_the_uplink_address() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.251.0.0/24", "n"]);
    d.ok(&["container", "create", "--network", "n", "a"]);
    d.ok(&["container", "create", "--network", "n", "b"]);
    let (a, b) = (d.netns("a"), d.netns("b"));

    // ICMP: the outside has no route to 10.251.0.0/24, so a reply proves
    // the masquerade.
    let ping = in_ns(&a, &["ping", "-c", "2", "-W", "2", &d.outside_addr]);
    assert!(
        ping.status.success(),
        "ping outside: {}",
        common::stdout(&ping)
    );

    // TCP: the server sees the uplink address as the source.
    let server = spawn_in(&d.outside, &["iperf3", "-s", "-1", "-J", "-p", "7001"]);
    wait_listening(&d.outside, 7001, false);
    let out = iperf_tcp(Some(&a), &d.outside_addr, 7001, &[]);
    assert!(out.status.success(), "TCP outside: {}", stderr(&out));
    let seen: Value = serde_json::from_slice(&server.wait_with_output().unwrap().stdout).unwrap();
    assert_eq!(
        seen["start"]["connected"][0]["remote_host"],
        d.uplink_addr.as_str()
    );

    // UDP echo from the outside.
    let _echo = Server(spawn_in(
        &d.outside,
        &["socat", "UDP4-RECVFROM:7002,fork", "EXEC:/bin/cat"],
    ));
    wait_listening(&d.outside, 7002, true);
    assert_eq!(udp_echo(Some(&a), &d.outside_addr, 7002), "ping\n");

    // Two containers sending from the same source port to the same server
    // at once: the second flow needs another uplink port, and both work.
    let _s1 = Server(spawn_in(&d.outside, &["iperf3", "-s", "-p", "7003"]));
    let _s2 = Server(spawn_in(&d.outside, &["iperf3", "-s", "-p", "7004"]));
    wait_listening(&d.outside, 7003, false);
    wait_listening(&d.outside, 7004, false);
    let first = spawn_in(
        &a,
        &[
            "iperf3",
            "-c",
            &d.outside_addr,
            "-p",
            "7003",
            "-t",
            "2",
            "--cport",
            "40000",
        ],
    );
    let second = iperf_tcp(Some(&b), &d.outside_addr, 7004, &["--cport", "40000"]);
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "first: {}", stderr(&first));
    assert!(second.status.success(), "second: {}", stderr(&second));
}

#[test]
fn published_ports_answer_from_everywhere_but_loopback_ports_stay_local() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.252.0.0/24", "n"]);
    d.ok(&["network", "create", "--subnet", "10.252.1.0/24", "other"]);
    d.ok(&[
        "container",
        "run",
        "--network",
        "n",
        "-p",
        "8080:5201",
        "-p",
        "127.0.0.1:9091:5201",
        "-p",
        "5201",
        "web",
        "--",
        "iperf3",
        "-s",
    ]);
    d.ok(&[
        "container",
        "run",
        "--network",
        "n",
        "-p",
        "5353:7/udp",
        "echo",
        "--",
        "socat",
        "UDP4-RECVFROM:7,fork",
        "EXEC:/bin/cat",
    ]);
    d.ok(&["container", "create", "--network", "n", "peer"]);
    d.ok(&["container", "create", "--network", "other", "stranger"]);
    wait_listening(&d.netns("web"), 5201, false);
    wait_listening(&d.netns("echo"), 7, true);

    // `container port` prints Docker's format; `-p 5201` got a free port.
    let ports = d.ok(&["container", "port", "web"]);
    assert!(ports.contains("5201/tcp -> 0.0.0.0:8080"), "{ports}");
    assert!(ports.contains("5201/tcp -> 127.0.0.1:9091"), "{ports}");
    let ephemeral: u16 = ports
        .lines()
        .filter(|l| l.starts_with("5201/tcp -> 0.0.0.0:") && !l.ends_with(":8080"))
        .map(|l| l.rsplit(':').next().unwrap().parse().unwrap())
        .next()
        .expect("an ephemeral binding");

    let uplink = d.uplink_addr.clone();
    // From outside, on the uplink address.
    let out = iperf_tcp(Some(&d.outside), &uplink, 8080, &[]);
    assert!(out.status.success(), "outside -> 8080: {}", stderr(&out));
    let out = iperf_tcp(Some(&d.outside), &uplink, ephemeral, &[]);
    assert!(
        out.status.success(),
        "outside -> ephemeral: {}",
        stderr(&out)
    );
    assert_eq!(
        udp_echo(Some(&d.outside), &uplink, 5353),
        "ping\n",
        "UDP from outside"
    );
    // The loopback-only port is not reachable from outside.
    let out = iperf_tcp(Some(&d.outside), &uplink, 9091, &[]);
    assert!(
        !out.status.success(),
        "127.0.0.1:9091 answered from outside"
    );

    // From the host itself: localhost and the uplink address (socket hooks).
    for addr in ["127.0.0.1", uplink.as_str()] {
        let out = iperf_tcp(None, addr, 8080, &[]);
        assert!(
            out.status.success(),
            "host -> {addr}:8080: {}",
            stderr(&out)
        );
    }
    let out = iperf_tcp(None, "127.0.0.1", 9091, &[]);
    assert!(
        out.status.success(),
        "host -> 127.0.0.1:9091: {}",
        stderr(&out)
    );
    assert_eq!(
        udp_echo(None, "127.0.0.1", 5353),
        "ping\n",
        "UDP from the host"
    );

    // Hairpin: from containers on any network, and from the owner itself.
    for c in ["peer", "stranger", "web"] {
        let out = iperf_tcp(Some(&d.netns(c)), &uplink, 8080, &[]);
        assert!(out.status.success(), "{c} -> uplink:8080: {}", stderr(&out));
    }

    // Removing the container removes its translations, and only its.
    d.ok(&["container", "rm", "-f", "web"]);
    let out = iperf_tcp(Some(&d.outside), &uplink, 8080, &[]);
    assert!(!out.status.success(), "8080 still answers after rm");
    assert_eq!(
        udp_echo(Some(&d.outside), &uplink, 5353),
        "ping\n",
        "others untouched"
    );
}

#[test]
fn port_conflicts_are_refused_like_dockers() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.253.0.0/24", "n"]);
    d.ok(&[
        "container",
        "create",
        "--network",
        "n",
        "-p",
        "18080:80",
        "one",
    ]);
    let taken = d.fails(&[
        "container",
        "create",
        "--network",
        "n",
        "-p",
        "18080:81",
        "two",
    ]);
    assert!(
        taken.contains("Bind for 0.0.0.0:18080 failed: port is already allocated"),
        "{taken}"
    );
    assert!(
        !common::netns_exists(&d.netns("two")),
        "refused container left a namespace"
    );

    // A host process already listening on the port.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = listener.local_addr().unwrap().port().to_string();
    let err = d.fails(&[
        "container",
        "create",
        "--network",
        "n",
        "-p",
        &format!("{busy}:80"),
        "three",
    ]);
    assert!(err.contains("in use by a process on the host"), "{err}");
    drop(listener);

    // A host process binding a published port later gets EADDRINUSE.
    let bind = TcpListener::bind("0.0.0.0:18080");
    assert_eq!(
        bind.unwrap_err().kind(),
        std::io::ErrorKind::AddrInUse,
        "a host process could bind a published port"
    );
    d.ok(&["container", "rm", "one"]);
    assert!(
        TcpListener::bind("0.0.0.0:18080").is_ok(),
        "port still blocked after rm"
    );

    let bad = d.fails(&[
        "container",
        "create",
        "--network",
        "n",
        "-p",
        "80/sctp",
        "four",
    ]);
    assert!(bad.contains("invalid proto: sctp"), "{bad}");
    let none = d.fails(&[
        "container",
        "create",
        "--network",
        "none",
        "-p",
        "80",
        "five",
    ]);
    assert!(
        none.contains("published ports need a bridge network"),
        "{none}"
    );
}

#[test]
fn conntrack_entries_drain_when_flows_close() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.254.0.0/24", "n"]);
    d.ok(&["container", "create", "--network", "n", "c"]);
    let _server = Server(spawn_in(&d.outside, &["iperf3", "-s", "-p", "7005"]));
    wait_listening(&d.outside, 7005, false);
    for _ in 0..3 {
        let out = iperf_tcp(Some(&d.netns("c")), &d.outside_addr, 7005, &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let nat = |d: &Daemon| d.json(&["stats", "--format", "json"])["Nat"].clone();
    // iperf3 opens a control and a data connection per run.
    assert!(nat(&d)["MasqueradedFlows"].as_u64().unwrap() >= 6);
    // Closed TCP flows leave the table (FIN both ways, then the last ACK);
    // the last ACK may trail the client's exit a little.
    let mut left = u64::MAX;
    for _ in 0..50 {
        left = nat(&d)["ConntrackEntries"].as_u64().unwrap();
        if left == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(left, 0, "conntrack entries of closed flows stayed");
    let metrics = d.metrics();
    assert!(metrics.contains("netd_conntrack_entries 0"), "{metrics}");
    assert!(metrics.contains("netd_conntrack_capacity "), "{metrics}");
}
