//! The embedded DNS server against a real daemon, asked with `dig` from
//! inside containers. Each daemon forwards to a DNS server the test runs in
//! its "outside" namespace (see `common::dns`).
//! Subnets 10.16x.* are this file's, one per test.

mod common;

use std::process::Output;
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::dns::{
    Mode, OUTSIDE_TEST, TC_TEST, Upstream, addr, counter, daemon_with_upstream, dig, ip_of,
    resolv_conf, short, status, wait_dns,
};
use common::{Daemon, Launch, in_ns, stdout};
use serde_json::Value;

// ---------------------------------------------------------------------------
// Names.

#[test]
fn names_aliases_network_names_and_ptr() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.161.0.0/24", "n1"]);
    d.ok(&[
        "container",
        "create",
        "--network",
        "n1",
        "--alias",
        "www",
        "--alias",
        "Front",
        "web",
    ]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");
    let web = ip_of(&d, "web", "n1");
    assert_eq!(web, "10.161.0.2");

    for name in [
        "web", "WEB", "web.", "www", "front", "web.n1", "Web.N1.", "www.n1",
    ] {
        assert_eq!(short(&d, "client", &[name]), vec![web.clone()], "{name}");
    }
    // Its own name, and the short id (the container's hostname in Docker).
    assert_eq!(short(&d, "client", &["client"]), vec!["10.161.0.3"]);
    let id = d.json(&["container", "inspect", "web"])[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(short(&d, "client", &[&id[..12]]), vec![web.clone()]);
    // Reverse: NAME.NETWORK, as Docker answers.
    assert_eq!(short(&d, "client", &["-x", &web]), vec!["web.n1."]);
    assert_eq!(short(&d, "web", &["-x", "10.161.0.3"]), vec!["client.n1."]);
    // The name exists without IPv6: NOERROR and no answer, not forwarded.
    assert_eq!(status(&d, "client", &["AAAA", "web"]), "NOERROR");
    assert!(short(&d, "client", &["AAAA", "web"]).is_empty());
    // Over TCP too.
    assert_eq!(short(&d, "client", &["+tcp", "www"]), vec![web.clone()]);
    assert!(
        !up.saw("web.") && !up.saw("www.") && !up.saw("web.n1."),
        "our names never go upstream: {:?}",
        up.seen()
    );

    // The container's resolv.conf points at the server, for `ip netns
    // exec`, `container exec` and `container run` processes alike, and the
    // C library resolves through it.
    let rc = resolv_conf(&d, "client");
    assert!(rc.contains("nameserver 127.0.0.11\n"), "{rc}");
    assert!(rc.contains("options ndots:0"), "{rc}");
    let out = in_ns(&d.netns("client"), &["cat", "/etc/resolv.conf"]);
    assert_eq!(stdout(&out), rc, "ip netns exec bind-mounts it");
    assert_eq!(
        d.ok(&[
            "container",
            "exec",
            "client",
            "--",
            "cat",
            "/etc/resolv.conf"
        ]),
        rc
    );
    let hosts = d.ok(&[
        "container",
        "exec",
        "client",
        "--",
        "getent",
        "hosts",
        "www",
    ]);
    assert!(hosts.starts_with(&format!("{web} ")), "{hosts}");
    d.ok(&[
        "container",
        "run",
        "--network",
        "n1",
        "runner",
        "--",
        "cat",
        "/etc/resolv.conf",
    ]);
    let runner_id = d.json(&["container", "inspect", "runner"])[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = d.state_dir().join("logs").join(format!("{runner_id}.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default() != rc {
        assert!(
            Instant::now() < deadline,
            "container run output: {:?}",
            std::fs::read_to_string(&log)
        );
        sleep(Duration::from_millis(50));
    }
    // The host's own resolv.conf is untouched.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(!host.contains("127.0.0.11"), "{host}");
}

#[test]
fn names_are_scoped_to_shared_networks() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.162.0.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.162.1.0/24", "n2"]);
    d.ok(&[
        "container",
        "create",
        "--network",
        "n1",
        "--alias",
        "db",
        "web",
    ]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    d.ok(&["container", "create", "--network", "n2", "other"]);
    // On the default bridge: Docker's behaviour, no embedded server.
    d.ok(&["container", "create", "legacy"]);
    wait_dns(&d, "client");
    wait_dns(&d, "other");

    assert_eq!(short(&d, "client", &["web"]), vec!["10.162.0.2"]);
    // From n2, web is not ours to answer: forwarded, and the upstream
    // says NXDOMAIN, which comes back as is.
    for name in ["web", "db", "web.n1", "client"] {
        assert_eq!(status(&d, "other", &[name]), "NXDOMAIN", "{name}");
        assert!(
            up.saw(&format!("{name}.")),
            "{name} forwarded: {:?}",
            up.seen()
        );
    }
    // Its address is netd's: NXDOMAIN from here, never asked upstream.
    assert_eq!(status(&d, "other", &["-x", "10.162.0.2"]), "NXDOMAIN");
    assert!(!up.saw("2.0.162.10.in-addr.arpa."));
    // n1 does not see n2's names either.
    assert_eq!(status(&d, "client", &["other"]), "NXDOMAIN");

    // Default bridge: the host's resolvers in resolv.conf, no listener,
    // and nobody on a user network resolves it.
    let rc = resolv_conf(&d, "legacy");
    assert!(rc.contains("nameserver"), "{rc}");
    assert!(!rc.contains("127.0.0.11"), "{rc}");
    assert!(
        !rc.contains("nameserver 127."),
        "no loopback resolvers: {rc}"
    );
    assert!(
        !dig(&d, "legacy", &["+short", "web"]).status.success(),
        "nothing listens on 127.0.0.11 on the default bridge"
    );
    assert_eq!(status(&d, "client", &["legacy"]), "NXDOMAIN");
    let inside = d.ok(&[
        "container",
        "exec",
        "legacy",
        "--",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(inside, rc);

    // A container on both networks sees both.
    d.ok(&["network", "connect", "n2", "client"]);
    assert_eq!(short(&d, "client", &["other"]), vec!["10.162.1.2"]);
    assert_eq!(short(&d, "other", &["client"]), vec!["10.162.1.3"]);
    assert_eq!(short(&d, "other", &["client.n2"]), vec!["10.162.1.3"]);
    assert_eq!(status(&d, "other", &["client.n1"]), "NXDOMAIN");
}

#[test]
fn forwarding_over_udp_and_tcp_and_nxdomain() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.163.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");

    assert_eq!(short(&d, "client", &["outside.test"]), vec![OUTSIDE_TEST]);
    assert_eq!(
        up.seen().last(),
        Some(&("outside.test.".to_string(), false)),
        "UDP for a UDP client"
    );
    assert_eq!(
        short(&d, "client", &["+tcp", "outside.test"]),
        vec![OUTSIDE_TEST]
    );
    assert_eq!(
        up.seen().last(),
        Some(&("outside.test.".to_string(), true)),
        "TCP for a TCP client"
    );
    // Truncated over UDP upstream: asked again over TCP, answered over UDP.
    let before = up.seen().len();
    assert_eq!(short(&d, "client", &["tc.test"]), vec![TC_TEST]);
    assert_eq!(
        up.seen_since(before),
        [
            ("tc.test.".to_string(), false),
            ("tc.test.".to_string(), true)
        ]
    );
    // NXDOMAIN passed back, asked once.
    let before = up.seen().len();
    assert_eq!(status(&d, "client", &["nothing.test"]), "NXDOMAIN");
    assert_eq!(
        up.seen_since(before),
        [("nothing.test.".to_string(), false)]
    );
    // And the C library in the container gets there too.
    let hosts = d.ok(&[
        "container",
        "exec",
        "client",
        "--",
        "getent",
        "hosts",
        "outside.test",
    ]);
    assert!(hosts.starts_with(OUTSIDE_TEST), "{hosts}");
}

#[test]
fn failover_between_upstreams() {
    // In order: an address nobody answers on (timeout), a SERVFAIL server,
    // a port nobody listens on, the real one, and one that must never be
    // asked (everything is answered before it, NXDOMAIN included).
    let d = Daemon::start_with(&[
        "--dns",
        "{outside_net}.3:53",
        "--dns",
        "{outside_addr}:5399",
        "--dns",
        "{outside_addr}:5398",
        "--dns",
        "{outside_addr}:53",
        "--dns",
        "{outside_addr}:5397",
    ]);
    let servfail = Upstream::start(&d.outside, addr(&d.outside_addr, 5399), Mode::ServFail);
    let good = Upstream::start(&d.outside, addr(&d.outside_addr, 53), Mode::Answer);
    let last = Upstream::start(&d.outside, addr(&d.outside_addr, 5397), Mode::Answer);
    d.ok(&["network", "create", "--subnet", "10.164.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");

    let started = Instant::now();
    let out = dig(&d, "client", &["+short", "+time=10", "outside.test"]);
    let took = started.elapsed();
    assert_eq!(
        stdout(&out).trim(),
        OUTSIDE_TEST,
        "{}",
        common::stderr(&out)
    );
    assert!(
        took >= Duration::from_millis(1900),
        "the first upstream timed out first: {took:?}"
    );
    assert!(servfail.saw("outside.test."));
    assert!(good.saw("outside.test."));
    assert_eq!(
        status(&d, "client", &["+time=10", "nothing.test"]),
        "NXDOMAIN"
    );
    assert!(good.saw("nothing.test."));
    assert!(last.seen().is_empty(), "never asked: {:?}", last.seen());
}

#[test]
fn all_upstreams_failing_is_servfail() {
    let d = Daemon::start_with(&["--dns", "{outside_addr}:5399"]);
    let _servfail = Upstream::start(&d.outside, addr(&d.outside_addr, 5399), Mode::ServFail);
    d.ok(&["network", "create", "--subnet", "10.165.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");
    assert_eq!(status(&d, "client", &["outside.test"]), "SERVFAIL");
    // Local names do not depend on the upstreams.
    assert_eq!(short(&d, "client", &["client"]), vec!["10.165.0.2"]);
}

#[test]
fn upstreams_follow_a_reload() {
    // First an upstream nobody listens on, from the configuration file.
    let d = Daemon::launch(Launch {
        config: Some("dns = [\"{outside_addr}:5399\"]\n"),
        ..Launch::default()
    });
    let up = Upstream::start(&d.outside, addr(&d.outside_addr, 53), Mode::Answer);
    d.ok(&["network", "create", "--subnet", "10.171.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");
    assert_eq!(status(&d, "client", &["outside.test"]), "SERVFAIL");
    assert!(
        counter(&d, "netd_dns_upstream_failures_total") >= 1,
        "counted:\n{}",
        d.metrics()
    );

    // `systemctl reload` with the live one: no restart, no container
    // touched, and the next query goes there.
    std::fs::write(
        d.config_path(),
        format!("dns = [\"{}:53\"]\n", d.outside_addr),
    )
    .unwrap();
    d.reload();
    let deadline = Instant::now() + Duration::from_secs(30);
    while short(&d, "client", &["outside.test"]) != vec![OUTSIDE_TEST] {
        assert!(Instant::now() < deadline, "no reload:\n{}", d.log());
        sleep(Duration::from_millis(100));
    }
    assert!(up.saw("outside.test."));
}

#[test]
fn records_follow_containers_and_networks() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.166.0.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.166.1.0/24", "n2"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    d.ok(&["container", "create", "--network", "n1", "web"]);
    wait_dns(&d, "client");
    assert_eq!(short(&d, "client", &["web"]), vec!["10.166.0.3"]);

    // Gone the moment it is removed.
    d.ok(&["container", "rm", "-f", "web"]);
    assert_eq!(status(&d, "client", &["web"]), "NXDOMAIN");
    assert!(up.saw("web."));
    assert!(
        !std::path::Path::new(&format!("/etc/netns/{}", d.netns("web"))).exists(),
        "its resolv.conf went with it"
    );
    // A new one resolves at once.
    d.ok(&["container", "create", "--network", "n1", "late"]);
    assert_eq!(short(&d, "client", &["late"]), vec!["10.166.0.3"]);

    // Connected to a shared network (with an alias): visible at once;
    // disconnected: gone.
    d.ok(&["container", "create", "--network", "n2", "other"]);
    assert_eq!(status(&d, "client", &["other"]), "NXDOMAIN");
    d.ok(&["network", "connect", "--alias", "cache", "n1", "other"]);
    assert_eq!(short(&d, "client", &["other"]), vec!["10.166.0.4"]);
    assert_eq!(short(&d, "client", &["cache"]), vec!["10.166.0.4"]);
    assert_eq!(
        short(&d, "client", &["-x", "10.166.0.4"]),
        vec!["other.n1."]
    );
    d.ok(&["network", "disconnect", "n1", "other"]);
    assert_eq!(status(&d, "client", &["cache"]), "NXDOMAIN");

    // A default-bridge container connected to a user network gets the
    // server, and its resolv.conf is rewritten (for the processes started
    // from then on).
    d.ok(&["container", "create", "legacy"]);
    let before = resolv_conf(&d, "legacy");
    assert!(!before.contains("127.0.0.11"), "{before}");
    d.ok(&["network", "connect", "n1", "legacy"]);
    assert!(resolv_conf(&d, "legacy").contains("nameserver 127.0.0.11\n"));
    wait_dns(&d, "legacy");
    assert_eq!(short(&d, "legacy", &["client"]), vec!["10.166.0.2"]);
    d.ok(&["network", "disconnect", "n1", "legacy"]);
    assert!(!resolv_conf(&d, "legacy").contains("127.0.0.11"));

    // The server comes back with the daemon after a crash.
    let mut d = d;
    d.restart();
    wait_dns(&d, "client");
    assert_eq!(short(&d, "client", &["late"]), vec!["10.166.0.3"]);
    assert_eq!(short(&d, "client", &["outside.test"]), vec![OUTSIDE_TEST]);
}

// ---------------------------------------------------------------------------
// Services. They need `netd service` (the service engine/API); run with
// `--ignored` until that lands.

fn service(d: &Daemon, name: &str) -> Value {
    let v = d.json(&["service", "inspect", name]);
    match v {
        Value::Array(mut a) => a.remove(0),
        v => v,
    }
}

fn task_ips(svc: &Value) -> Vec<String> {
    let mut v: Vec<String> = svc["Tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["IPAddress"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn service_name_and_tasks() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.167.0.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.167.1.0/24", "n2"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    d.ok(&["container", "create", "--network", "n2", "stranger"]);
    d.ok(&[
        "service",
        "create",
        "--network",
        "n1",
        "--replicas",
        "3",
        "api",
        "--",
        "sleep",
        "600",
    ]);
    wait_dns(&d, "client");
    wait_dns(&d, "stranger");
    let svc = service(&d, "api");
    let vip = svc["VirtualIP"].as_str().unwrap().to_string();
    let tasks = task_ips(&svc);
    assert_eq!(tasks.len(), 3, "{svc}");
    for name in ["api", "API", "api.n1"] {
        assert_eq!(short(&d, "client", &[name]), vec![vip.clone()], "{name}");
    }
    assert_eq!(short(&d, "client", &["-x", &vip]), vec!["api.n1."]);
    // tasks.api: every replica, the order rotating between queries.
    let mut firsts = Vec::new();
    for _ in 0..6 {
        let got = short(&d, "client", &["tasks.api"]);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, tasks);
        firsts.push(got[0].clone());
    }
    for ip in &tasks {
        assert_eq!(firsts.iter().filter(|f| *f == ip).count(), 2, "{firsts:?}");
    }
    // Replicas by their container names.
    for (i, ip) in ["api.1", "api.2", "api.3"].iter().enumerate() {
        let got = short(&d, "client", &[ip]);
        assert_eq!(got.len(), 1, "{ip}: {got:?}");
        assert!(tasks.contains(&got[0]), "replica {i}: {got:?}");
    }
    // Scoped like everything else.
    assert_eq!(status(&d, "stranger", &["api"]), "NXDOMAIN");
    assert_eq!(status(&d, "stranger", &["tasks.api"]), "NXDOMAIN");
    assert!(up.saw("tasks.api."));

    // Scaling changes tasks.api at once; removing the service removes both.
    d.ok(&["service", "scale", "api=2"]);
    let svc = service(&d, "api");
    let mut got = short(&d, "client", &["tasks.api"]);
    got.sort();
    assert_eq!(got, task_ips(&svc));
    assert_eq!(got.len(), 2);
    d.ok(&["service", "rm", "api"]);
    assert_eq!(status(&d, "client", &["api"]), "NXDOMAIN");
    assert_eq!(status(&d, "client", &["tasks.api"]), "NXDOMAIN");
}

#[test]
fn service_with_a_joined_container() {
    let (d, _up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.168.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    d.ok(&[
        "service",
        "create",
        "--network",
        "n1",
        "--replicas",
        "0",
        "mine",
    ]);
    wait_dns(&d, "client");
    // A service without replicas: its names are ours, tasks is empty.
    let vip = service(&d, "mine")["VirtualIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(short(&d, "client", &["mine"]), vec![vip]);
    assert_eq!(status(&d, "client", &["tasks.mine"]), "NOERROR");
    assert!(short(&d, "client", &["tasks.mine"]).is_empty());
    d.ok(&[
        "container",
        "create",
        "--network",
        "n1",
        "--service",
        "mine",
        "backend",
    ]);
    let ip = ip_of(&d, "backend", "n1");
    assert_eq!(short(&d, "client", &["tasks.mine"]), vec![ip]);
}

#[test]
fn unused_address_is_nxdomain_from_here() {
    // A PTR for an address of netd's subnets that nobody holds: nobody
    // upstream knows better, and it is not theirs to learn about.
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.169.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");
    assert_eq!(status(&d, "client", &["-x", "10.169.0.77"]), "NXDOMAIN");
    assert!(!up.saw("77.0.169.10.in-addr.arpa."));
}

// ---------------------------------------------------------------------------
// The module on its own: no daemon, a namespace the test makes, a state
// built by hand, and an upstream on the host's loopback (which works
// because the forwarder runs in the host's namespace).

mod standalone {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;
    use std::process::Command;

    use netd::dns::{Dns, DnsConfig, Upstreams};
    use netd::model::{Container, Endpoint, NetMode, Network, State, Subnet};

    use super::*;

    /// A bare namespace with `lo` up, deleted on drop.
    struct Netns(String);

    impl Netns {
        fn new(name: &str) -> Netns {
            let ok = |args: &[&str]| {
                let out = Command::new("ip").args(args).output().unwrap();
                assert!(
                    out.status.success(),
                    "ip {args:?}: {}",
                    common::stderr(&out)
                );
            };
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            ok(&["netns", "add", name]);
            ok(&["-n", name, "link", "set", "lo", "up"]);
            Netns(name.to_string())
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }

    fn state(netns: &str, with_container: bool) -> State {
        let mut s = State::default();
        s.networks.insert(
            "n".repeat(64),
            Arc::new(Network {
                id: "n".repeat(64),
                name: "lan".into(),
                driver: "bridge".into(),
                created: String::new(),
                internal: false,
                attachable: false,
                ipam: Some(Subnet {
                    subnet: "10.170.0.0/24".parse().unwrap(),
                    gateway: Ipv4Addr::new(10, 170, 0, 1),
                    ip_range: None,
                }),
                options: BTreeMap::new(),
                labels: BTreeMap::new(),
                predefined: false,
                index: 7,
            }),
        );
        if with_container {
            s.containers.insert(
                "c".repeat(64),
                Arc::new(Container {
                    id: "c".repeat(64),
                    name: "box".into(),
                    created: String::new(),
                    net: NetMode::Own {
                        netns: netns.into(),
                    },
                    network_mode: "lan".into(),
                    endpoints: vec![Endpoint {
                        id: "e".repeat(64),
                        network_id: "n".repeat(64),
                        ifname: "eth0".into(),
                        host_ifname: "unused".into(),
                        mac: [2, 0x42, 10, 170, 0, 2],
                        ip: Ipv4Addr::new(10, 170, 0, 2),
                        prefix_len: 24,
                        gateway: Ipv4Addr::new(10, 170, 0, 1),
                        aliases: vec!["Alias".into()],
                        static_ip: false,
                    }],
                    process: None,
                    ports: Vec::new(),
                    services: Vec::new(),
                    removing: false,
                    labels: Default::default(),
                }),
            );
        }
        s
    }

    fn dig_in(ns: &str, args: &[&str]) -> Output {
        let mut full = vec!["dig", "+time=5", "+tries=1", "@127.0.0.11"];
        full.extend_from_slice(args);
        in_ns(ns, &full)
    }

    fn wait_answer(ns: &str, name: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = dig_in(ns, &["+short", name]);
            if stdout(&out).trim() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: want {want:?}, got {}{}",
                stdout(&out),
                common::stderr(&out)
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn wait_silent(ns: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while dig_in(ns, &["+short", "box"]).status.success() {
            assert!(Instant::now() < deadline, "listener still answers");
            sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn serves_forwards_counts_and_stops() {
        let name = format!("tdns{}", std::process::id() % 100_000);
        let ns = Netns::new(&name);
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = Upstream::start("", addr("127.0.0.1", port), Mode::Answer);
        let dir = std::env::temp_dir().join(format!("netd-dns-standalone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _entered = rt.enter();
        let mut dns = Dns::new(DnsConfig {
            upstreams: Upstreams::new(vec![addr("127.0.0.1", port)]),
            resolv_dir: dir.clone(),
            netns_prefix: "tdns".into(),
        });
        // A file of "ours" that no container owns (a crash) goes at the
        // first sync.
        std::fs::create_dir_all(dir.join("tdns-stale")).unwrap();
        std::fs::write(
            dir.join("tdns-stale/resolv.conf"),
            "# Generated by netd: old\nnameserver 127.0.0.11\n",
        )
        .unwrap();

        dns.sync(&Arc::new(state(&ns.0, true)));
        assert!(!dir.join("tdns-stale").exists());
        let rc = std::fs::read_to_string(dir.join(&ns.0).join("resolv.conf")).unwrap();
        assert!(rc.contains("nameserver 127.0.0.11\n"), "{rc}");
        wait_answer(&ns.0, "box", "10.170.0.2");
        wait_answer(&ns.0, "alias.lan", "10.170.0.2");
        let out = dig_in(&ns.0, &["+short", "-x", "10.170.0.2"]);
        assert_eq!(stdout(&out).trim(), "box.lan.");
        let out = dig_in(&ns.0, &["+short", "outside.test"]);
        assert_eq!(stdout(&out).trim(), OUTSIDE_TEST, "via a loopback upstream");
        let out = dig_in(&ns.0, &["+short", "+tcp", "tc.test"]);
        assert_eq!(stdout(&out).trim(), TC_TEST);
        let out = dig_in(&ns.0, &["nothing.test"]);
        assert!(
            stdout(&out).contains("status: NXDOMAIN"),
            "{}",
            stdout(&out)
        );
        assert!(up.saw("outside.test.") && !up.saw("box."));
        let stats = dns.counters().read();
        assert!(stats.answered_local >= 3, "{stats:?}");
        assert_eq!(
            (stats.forwarded, stats.nxdomain, stats.failed),
            (2, 1, 0),
            "{stats:?}"
        );

        // The container goes: its listener and its file with it.
        dns.sync(&Arc::new(state(&ns.0, false)));
        assert!(!dir.join(&ns.0).exists());
        wait_silent(&ns.0);
        // Back, then shut down: the listener stops, the file stays.
        dns.sync(&Arc::new(state(&ns.0, true)));
        wait_answer(&ns.0, "box", "10.170.0.2");
        dns.shutdown();
        wait_silent(&ns.0);
        assert!(dir.join(&ns.0).join("resolv.conf").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
