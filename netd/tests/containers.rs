//! Container sandboxes against a real daemon: namespaces, veths, addresses,
//! routes, runtime connect/disconnect, the none/host/container: modes, and
//! processes started with `run` and `exec`. Each test uses its own subnet
//! (10.21x.*) so that parallel tests never route the same prefix.

mod common;

use common::{Daemon, ip_json, ip_json_in, netns_exists};
use serde_json::Value;

fn inspect(d: &Daemon, name: &str) -> Value {
    d.json(&["container", "inspect", name])[0].clone()
}

fn addr_of(netns: &str, ifname: &str) -> (String, u64, String) {
    let a = &ip_json_in(netns, &["addr", "show", "dev", ifname])[0];
    let inet = a["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["family"] == "inet")
        .expect("an IPv4 address");
    (
        inet["local"].as_str().unwrap().to_string(),
        inet["prefixlen"].as_u64().unwrap(),
        a["address"].as_str().unwrap().to_string(),
    )
}

fn default_route(netns: &str) -> Option<(String, String)> {
    ip_json_in(netns, &["route", "show", "default"])
        .as_array()
        .unwrap()
        .first()
        .map(|r| {
            (
                r["gateway"].as_str().unwrap().to_string(),
                r["dev"].as_str().unwrap().to_string(),
            )
        })
}

fn ping_from(netns: &str, addr: &str) -> bool {
    std::process::Command::new("ip")
        .args(["netns", "exec", netns, "ping", "-c", "1", "-W", "5", addr])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn container_gets_its_address_route_and_veth() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.211.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "c1"]);

    let c = inspect(&d, "c1");
    let ep = &c["NetworkSettings"]["Networks"]["n1"];
    assert_eq!(ep["IPAddress"], "10.211.0.2");
    assert_eq!(ep["IPPrefixLen"], 24);
    assert_eq!(ep["Gateway"], "10.211.0.1");
    assert_eq!(ep["MacAddress"], "02:42:0a:d3:00:02");

    let ns = d.netns("c1");
    assert!(netns_exists(&ns));
    assert_eq!(c["SandboxKey"], format!("/run/netns/{ns}"));
    let lo = &ip_json_in(&ns, &["link", "show", "lo"])[0];
    assert!(lo["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_eq!(
        addr_of(&ns, "eth0"),
        ("10.211.0.2".into(), 24, "02:42:0a:d3:00:02".into())
    );
    assert_eq!(
        default_route(&ns),
        Some(("10.211.0.1".into(), "eth0".into()))
    );

    // The host side is one of ours, enslaved to the network's bridge, up,
    // and carries the datapath programs.
    let links = d.own_links();
    assert_eq!(
        links.len(),
        3,
        "netd0, the n1 bridge and one veth: {links:?}"
    );
    let veth = links
        .iter()
        .find(|l| l.starts_with(&format!("{}v", d.prefix)))
        .unwrap();
    let host = &ip_json(&["link", "show", "dev", veth])[0];
    assert_eq!(host["operstate"], "UP");
    let bridge = host["master"].as_str().unwrap();
    let gw = &ip_json(&["addr", "show", "dev", bridge])[0]["addr_info"][0];
    assert_eq!(gw["local"], "10.211.0.1");

    // Real packets: the container reaches its gateway (the host) and a
    // second container on the same network, and the datapath counted them.
    d.ok(&["container", "create", "--network", "n1", "c2"]);
    assert_eq!(
        inspect(&d, "c2")["NetworkSettings"]["Networks"]["n1"]["IPAddress"],
        "10.211.0.3"
    );
    assert!(ping_from(&ns, "10.211.0.1"), "container -> gateway");
    assert!(ping_from(&ns, "10.211.0.3"), "container -> container");
    let metrics = d.metrics();
    let sent = metric_value(
        &metrics,
        "netd_endpoint_packets_total{network=\"n1\",container=\"c1\",direction=\"from_endpoint\"}",
    );
    assert!(sent >= 2.0, "c1's packets were counted: {metrics}");

    // Removing a container removes its namespace and veth, and its address
    // goes back to the pool.
    d.ok(&["container", "rm", "c1"]);
    assert!(!netns_exists(&ns));
    assert!(!d.own_links().contains(veth));
    d.ok(&["container", "create", "--network", "n1", "c3"]);
    assert_eq!(
        inspect(&d, "c3")["NetworkSettings"]["Networks"]["n1"]["IPAddress"],
        "10.211.0.2"
    );
}

fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn connect_and_disconnect_at_runtime() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.212.1.0/24", "front"]);
    d.ok(&["network", "create", "--subnet", "10.212.2.0/24", "back"]);
    d.ok(&["container", "create", "--network", "front", "app"]);
    let ns = d.netns("app");

    d.ok(&[
        "network",
        "connect",
        "--ip",
        "10.212.2.50",
        "--alias",
        "db-client",
        "back",
        "app",
    ]);
    assert_eq!(addr_of(&ns, "eth1").0, "10.212.2.50");
    assert_eq!(
        default_route(&ns),
        Some(("10.212.1.1".into(), "eth0".into()))
    );
    let c = inspect(&d, "app");
    assert_eq!(
        c["NetworkSettings"]["Networks"]["back"]["Aliases"][0],
        "db-client"
    );
    let net = d.json(&["network", "inspect", "back"])[0].clone();
    let members = net["Containers"].as_object().unwrap();
    assert_eq!(members.len(), 1);
    let member = members.values().next().unwrap();
    assert_eq!(member["Name"], "app");
    assert_eq!(member["IPv4Address"], "10.212.2.50/24");

    let again = d.fails(&["network", "connect", "back", "app"]);
    assert!(again.contains("already exists in network back"), "{again}");

    // Dropping the network that carried the default route moves it.
    d.ok(&["network", "disconnect", "front", "app"]);
    assert!(
        ip_json_in(&ns, &["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "eth0")
    );
    assert_eq!(
        default_route(&ns),
        Some(("10.212.2.1".into(), "eth1".into()))
    );
    let not = d.fails(&["network", "disconnect", "front", "app"]);
    assert!(not.contains("is not connected to network front"), "{not}");

    // front is unused now, back is not.
    d.ok(&["network", "rm", "front"]);
    let busy = d.fails(&["network", "rm", "back"]);
    assert!(
        busy.contains("error while removing network: network back has active endpoints"),
        "{busy}"
    );
}

#[test]
fn none_host_and_shared_namespaces() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.213.0.0/24", "n"]);

    d.ok(&["container", "create", "--network", "none", "lonely"]);
    let links = ip_json_in(&d.netns("lonely"), &["link", "show"]);
    let names: Vec<_> = links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].clone())
        .collect();
    assert_eq!(names, vec![Value::from("lo")]);
    let refused = d.fails(&["network", "connect", "n", "lonely"]);
    assert!(refused.contains("private (none) mode"), "{refused}");

    d.ok(&["container", "create", "--network", "host", "hosty"]);
    let h = inspect(&d, "hosty");
    assert_eq!(h["SandboxKey"], "");
    assert_eq!(h["NetworkMode"], "host");
    assert!(!netns_exists(&d.netns("hosty")));

    d.ok(&["container", "create", "--network", "n", "owner"]);
    d.ok(&[
        "container",
        "create",
        "--network",
        "container:owner",
        "sidecar",
    ]);
    let owner = inspect(&d, "owner");
    let sidecar = inspect(&d, "sidecar");
    assert_eq!(sidecar["SandboxKey"], owner["SandboxKey"]);
    // A process in the sidecar sees the owner's eth0.
    let seen = d.ok(&[
        "container",
        "exec",
        "sidecar",
        "--",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(seen.contains("10.213.0.2/24"), "{seen}");
    let busy = d.fails(&["container", "rm", "owner"]);
    assert!(busy.contains("sidecar"), "{busy}");
    d.ok(&["container", "rm", "sidecar"]);
    d.ok(&["container", "rm", "owner", "lonely", "hosty"]);
    assert!(d.own_netns().is_empty(), "{:?}", d.own_netns());
}

#[test]
fn run_keeps_a_process_and_exec_runs_attached() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.214.0.0/24", "n"]);
    d.ok(&[
        "container",
        "run",
        "--network",
        "n",
        "srv",
        "--",
        "sh",
        "-c",
        "echo started in $(ip -o -4 addr show eth0 | awk '{print $4}'); exec sleep 600",
    ]);
    let c = inspect(&d, "srv");
    assert_eq!(c["State"]["Running"], true);
    let pid = c["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);
    let log_path = d
        .state_dir()
        .join("logs")
        .join(format!("{}.log", c["Id"].as_str().unwrap()));
    let mut logged = String::new();
    for _ in 0..100 {
        logged = std::fs::read_to_string(&log_path).unwrap_or_default();
        if logged.contains("started") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(logged.contains("started in 10.214.0.2/24"), "{logged:?}");

    let out = d.ok(&[
        "container",
        "exec",
        "srv",
        "--",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(out.contains("10.214.0.2/24"), "{out}");
    let code = d.netd(&["container", "exec", "srv", "--", "sh", "-c", "exit 3"]);
    assert_eq!(code.status.code(), Some(3));

    let running = d.fails(&["container", "rm", "srv"]);
    assert!(running.contains("container is running"), "{running}");
    d.ok(&["container", "rm", "-f", "srv"]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z ")
        }
    );
    assert!(!netns_exists(&d.netns("srv")));
}

#[test]
fn bad_requests_are_refused_and_change_nothing() {
    let d = Daemon::start();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.215.0.0/24",
        "--ip-range",
        "10.215.0.8/30",
        "n",
    ]);
    let before_state = d.state();
    let before_links = d.own_links();
    let long_name = "x".repeat(300);
    let uplink_subnet = format!(
        "{}.128/25",
        d.uplink_addr.rsplit_once('.').expect("dotted quad").0
    );

    let cases: &[(&[&str], &str)] = &[
        (
            &["network", "create", "n"],
            "network with name n already exists",
        ),
        (
            &["network", "create", "--subnet", "10.215.0.128/25", "m"],
            "Pool overlaps with other one on this address space",
        ),
        (
            &["network", "create", "--subnet", "10.300.0.0/16", "m"],
            "10.300.0.0/16",
        ),
        (
            &["network", "create", "--gateway", "10.216.0.1", "m"],
            "subnet",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.216.0.0/24",
                "--gateway",
                "10.217.0.1",
                "m",
            ],
            "10.217.0.1",
        ),
        (
            &["network", "create", "-d", "host", "h2"],
            "only one instance of \"host\" network is allowed",
        ),
        (&["network", "create", "bad name"], "bad name"),
        (
            &["network", "rm", "bridge"],
            "bridge is a pre-defined network and cannot be removed",
        ),
        (&["network", "rm", "nosuch"], "network nosuch not found"),
        (
            &["container", "create", "--network", "nosuch", "c"],
            "network nosuch not found",
        ),
        (
            &[
                "container",
                "create",
                "--network",
                "n",
                "--ip",
                "10.215.0.100",
                "c",
            ],
            "no configured subnet or ip-range contain the IP address 10.215.0.100",
        ),
        (
            &[
                "container",
                "create",
                "--network",
                "none",
                "--ip",
                "10.215.0.9",
                "c",
            ],
            "supported on user defined networks only",
        ),
        (
            &["container", "create", "--network", "container:nosuch", "c"],
            "No such container: nosuch",
        ),
        (&["container", "rm", "nosuch"], "No such container: nosuch"),
        (
            &["network", "connect", "n", "nosuch"],
            "No such container: nosuch",
        ),
        // Names become file and DNS names: bounded, with Docker's 400.
        (
            &["container", "create", "--network", "n", &long_name],
            "at most 128 characters are allowed",
        ),
        (
            &["network", "create", &long_name],
            "at most 128 characters are allowed",
        ),
        // An empty alias would make the bare domain resolve to `c`.
        (
            &["container", "create", "--network", "n", "--alias", "", "c"],
            "invalid alias \"\"",
        ),
        (
            &["network", "connect", "--alias", "a/b", "n", "c0"],
            "invalid alias \"a/b\"",
        ),
        // Ranges no network can use, and a route of the host's (its
        // uplink's): a bridge there would take that traffic.
        (
            &["network", "create", "--subnet", "127.1.0.0/16", "m"],
            "127.0.0.0/8 (loopback)",
        ),
        (
            &["network", "create", "--subnet", "169.254.9.0/24", "m"],
            "link-local",
        ),
        (
            &["network", "create", "--subnet", "224.0.1.0/24", "m"],
            "multicast",
        ),
        (
            &["network", "create", "--subnet", "0.1.0.0/24", "m"],
            "\"this network\"",
        ),
        (
            &["network", "create", "--subnet", &uplink_subnet, "m"],
            "overlaps the host's route",
        ),
        // Driver options are implemented or refused, never ignored.
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.enable_foo=1",
                "m",
            ],
            "option com.docker.network.bridge.enable_foo is not supported by netd's bridge driver",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.driver.mtu=100",
                "m",
            ],
            "invalid MTU",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.enable_icc=maybe",
                "m",
            ],
            "not a boolean",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.gateway_mode_ipv4=routed",
                "m",
            ],
            "only nat",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.name=br9",
                "m",
            ],
            "netd names bridge devices itself",
        ),
        (
            &[
                "network",
                "create",
                "-o",
                "com.docker.network.bridge.host_binding_ipv4=198.51.100.254",
                "m",
            ],
            "198.51.100.254 is no address of this host",
        ),
        // Numbers are checked before anything starts.
        (
            &[
                "service",
                "create",
                "--network",
                "n",
                "--replicas",
                "5000",
                "s",
                "--",
                "sleep",
                "9",
            ],
            "a service can have at most 1024 replicas",
        ),
        // `-p IP:...` binds only addresses the host has.
        (
            &["container", "create", "-p", "198.51.100.254:8080:80", "c"],
            "cannot assign requested address",
        ),
    ];
    for (args, want) in cases {
        let err = d.fails(args);
        assert!(
            err.starts_with("Error response from daemon: "),
            "{args:?}: {err}"
        );
        assert!(err.contains(want), "{args:?}: wanted {want:?} in {err}");
    }
    assert_eq!(
        d.state(),
        before_state,
        "refused requests changed the state"
    );
    assert_eq!(
        d.own_links(),
        before_links,
        "refused requests touched the kernel"
    );

    // The range holds 4 addresses: the fifth container is refused with
    // Docker's message, and nothing of it remains.
    for i in 0..4 {
        d.ok(&["container", "create", "--network", "n", &format!("c{i}")]);
    }
    let taken = d.fails(&[
        "container",
        "create",
        "--network",
        "n",
        "--ip",
        "10.215.0.8",
        "c4",
    ]);
    assert!(taken.contains("Address already in use"), "{taken}");
    let full = d.fails(&["container", "create", "--network", "n", "c4"]);
    assert!(full.contains("no available IPv4 addresses"), "{full}");
    assert!(!netns_exists(&d.netns("c4")));
    let dup = d.fails(&["container", "create", "--network", "n", "c0"]);
    assert!(
        dup.contains("The container name \"/c0\" is already in use"),
        "{dup}"
    );
}

/// The bridge options netd implements change what containers get: the MTU
/// of both veth ends, and the address `-p` binds when it names none.
#[test]
fn bridge_options_take_effect() {
    let d = Daemon::start();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.218.0.0/24",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "-o",
        "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
        "n",
    ]);
    d.ok(&[
        "container",
        "create",
        "--network",
        "n",
        "-p",
        "8080:80",
        "-p",
        "0.0.0.0:8081:81",
        "c",
    ]);
    let mtu = |ns: &str, dev: &str| ip_json_in(ns, &["link", "show", "dev", dev])[0]["mtu"].clone();
    assert_eq!(mtu(&d.netns("c"), "eth0"), 1400);
    let c = inspect(&d, "c");
    let veth = c["NetworkSettings"]["Networks"]["n"]["EndpointID"]
        .as_str()
        .unwrap()
        .to_string();
    let host_side = d
        .own_links()
        .into_iter()
        .find(|l| l.starts_with(&format!("{}v{}", d.prefix, &veth[..2])))
        .expect("the host-side veth");
    assert_eq!(
        ip_json(&["link", "show", "dev", &host_side])[0]["mtu"],
        1400
    );
    let ports = &c["NetworkSettings"]["Ports"];
    assert_eq!(ports["80/tcp"][0]["HostIp"], "127.0.0.1", "{ports}");
    assert_eq!(ports["81/tcp"][0]["HostIp"], "0.0.0.0", "{ports}");

    // Docker 28's pool request: a /24 of the default pools, and its
    // gateway mode `nat` (what netd does).
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "0.0.0.0/24",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv4=nat",
        "pooled",
    ]);
    let pooled = d.json(&["network", "inspect", "pooled"]);
    let subnet: ipnet::Ipv4Net = pooled[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(subnet.prefix_len(), 24, "{pooled}");
    assert!(subnet.addr().octets()[0] != 0, "{pooled}");
}

/// Bodies the API cannot take get Docker's JSON error shape, not axum's
/// plain text, and change nothing.
#[test]
fn oversized_and_malformed_bodies_get_json_errors() {
    let d = Daemon::start();
    let before = d.state();
    let big = format!(
        "{{\"Name\":\"n\",\"Labels\":{{\"x\":\"{}\"}}}}",
        "a".repeat(2 << 20)
    );
    for (body, status, message) in [
        (big.as_bytes(), "413", "request body too large"),
        (&b"{\"Name\":"[..], "400", "invalid JSON"),
        (&b""[..], "400", "got EOF"),
    ] {
        let r = d.http("POST", "/networks/create", body);
        let status_line = r.lines().next().unwrap_or_default();
        assert!(status_line.contains(status), "{status_line}");
        assert!(
            r.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{r}"
        );
        let json = r.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {r}"));
        assert!(
            v["message"].as_str().unwrap_or_default().contains(message),
            "{r}"
        );
    }
    // A query axum cannot parse is JSON too.
    let r = d.http("GET", "/networks?filters=%ZZ", b"");
    assert!(
        r.starts_with("HTTP/1.0 4") || r.starts_with("HTTP/1.1 4"),
        "{r}"
    );
    assert_eq!(d.state(), before);
}

/// A namespace someone else made (as a container runtime does), deleted on
/// drop.
struct ForeignNetns(String);

impl ForeignNetns {
    fn new(d: &Daemon) -> ForeignNetns {
        let name = format!("x{}", d.prefix);
        let ok = std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        ForeignNetns(name)
    }
}

impl Drop for ForeignNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[test]
fn endpoints_join_a_namespace_given_by_path() {
    let mut d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.216.0.0/24", "n"]);
    d.ok(&["container", "create", "--network", "n", "peer"]);
    let foreign = ForeignNetns::new(&d);
    let path = format!("/run/netns/{}", foreign.0);
    let bad = d.fails(&[
        "container",
        "create",
        "--network",
        "n",
        "--netns",
        "/nonexistent",
        "x",
    ]);
    assert!(
        bad.contains("/nonexistent is not a network namespace"),
        "{bad}"
    );
    let rel = d.fails(&[
        "container",
        "create",
        "--network",
        "n",
        "--netns",
        "rel/path",
        "x",
    ]);
    assert!(rel.contains("must be absolute"), "{rel}");
    assert!(
        d.fails(&["container", "inspect", "x"])
            .contains("No such container")
    );

    d.ok(&[
        "container",
        "create",
        "--network",
        "n",
        "--netns",
        &path,
        "ext",
    ]);
    let c = inspect(&d, "ext");
    assert_eq!(c["SandboxKey"], path.as_str());
    let (addr, _, _) = addr_of(&foreign.0, "eth0");
    assert_eq!(addr, "10.216.0.3");
    assert!(ping_from(&foreign.0, "10.216.0.2"), "ext -> peer");
    assert!(ping_from(&d.netns("peer"), "10.216.0.3"), "peer -> ext");
    // netd never deletes the namespace, nor counts it as its own.
    assert!(!d.own_netns().contains(&foreign.0));
    d.restart();
    assert!(ping_from(&foreign.0, "10.216.0.2"), "after a restart");
    d.ok(&["container", "rm", "ext"]);
    assert!(
        netns_exists(&foreign.0),
        "the runtime's namespace was deleted"
    );
    let links = ip_json_in(&foreign.0, &["link", "show"]);
    assert_eq!(
        links.as_array().unwrap().len(),
        1,
        "only lo is left: {links}"
    );
}
