//! In-kernel bridging and isolation with real traffic against a real daemon:
//! forwarding between containers by the eBPF programs (not the Linux
//! bridge), isolation between networks, anti-spoofing, the host through the
//! gateway, internal networks, macvlan, and a data plane that outlives a
//! SIGKILLed daemon. Subnets 10.24x.* are this file's, one per test.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Daemon, in_ns, ip_json};
use serde_json::Value;

fn ping(ns: &str, addr: &str, count: u32) -> bool {
    in_ns(
        ns,
        &[
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            "0.05",
            "-W",
            "2",
            addr,
        ],
    )
    .status
    .success()
}

fn ip_of(d: &Daemon, container: &str, network: &str) -> String {
    d.json(&["container", "inspect", container])[0]["NetworkSettings"]["Networks"][network]
        ["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

fn host_veth(d: &Daemon, container: &str) -> String {
    // The host side is the peer of the container's eth0: its ifindex is the
    // container link's `link_index`.
    let eth0 = &common::ip_json_in(&d.netns(container), &["link", "show", "eth0"])[0];
    let peer = eth0["link_index"].as_u64().unwrap();
    ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifindex"].as_u64() == Some(peer))
        .unwrap()["ifname"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits until something listens on TCP `port` inside `ns` (a server
/// started with `container run` needs a moment).
fn wait_listening(ns: &str, port: u16) {
    for _ in 0..100 {
        let out = in_ns(ns, &["ss", "-Hltn", &format!("sport = :{port}")]);
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on port {port} in {ns}");
}

fn tx_packets(ifname: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/statistics/tx_packets"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn firewall_rules() -> String {
    let nft = Command::new("nft").args(["list", "ruleset"]).output();
    let ipt = Command::new("iptables-save").output();
    let text = |o: std::io::Result<std::process::Output>| {
        o.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!("{}\n{}", text(nft), text(ipt))
}

#[test]
fn containers_on_one_network_talk_through_ebpf_not_the_bridge() {
    let rules_before = firewall_rules();
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.241.0.0/24", "n"]);
    d.ok(&["container", "create", "--network", "n", "a"]);
    d.ok(&[
        "container",
        "run",
        "--network",
        "n",
        "b",
        "--",
        "iperf3",
        "-s",
    ]);
    let a = d.netns("a");
    let b_ip = ip_of(&d, "b", "n");

    // ICMP: redirect_peer delivers straight into b's namespace, so b's host
    // veth never transmits these packets (the bridge path would).
    let b_host = host_veth(&d, "b");
    for (hook, program) in [("ingress", "netd_from_ep"), ("egress", "netd_to_ep")] {
        let filters: Value = serde_json::from_slice(
            &Command::new("tc")
                .args(["-j", "filter", "show", "dev", &b_host, hook])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let bpf: Vec<&Value> = filters
            .as_array()
            .unwrap()
            .iter()
            // A dump also lists each priority's head, without options.
            .filter(|f| f["kind"] == "bpf" && f["options"].is_object())
            .collect();
        assert_eq!(bpf.len(), 1, "one BPF filter on {hook}: {filters}");
        assert_eq!(bpf[0]["options"]["bpf_name"], program, "{filters}");
        assert_eq!(bpf[0]["options"]["direct-action"], true, "{filters}");
    }
    let before = tx_packets(&b_host);
    assert!(ping(&a, &b_ip, 20), "a -> b");
    let through_bridge = tx_packets(&b_host) - before;
    assert!(
        through_bridge < 5,
        "{through_bridge} of 20 echo requests went through the bridge to b"
    );

    // TCP and UDP with iperf3 (the server runs in b).
    wait_listening(&d.netns("b"), 5201);
    let tcp = in_ns(&a, &["iperf3", "-c", &b_ip, "-t", "1", "-J"]);
    assert!(tcp.status.success(), "TCP a -> b: {}", common::stderr(&tcp));
    let r: Value = serde_json::from_slice(&tcp.stdout).unwrap();
    assert!(r["end"]["sum_received"]["bytes"].as_u64().unwrap() > 0);
    let udp = in_ns(
        &a,
        &["iperf3", "-c", &b_ip, "-u", "-b", "10M", "-t", "1", "-J"],
    );
    assert!(udp.status.success(), "UDP a -> b: {}", common::stderr(&udp));
    let r: Value = serde_json::from_slice(&udp.stdout).unwrap();
    assert!(r["end"]["sum"]["packets"].as_u64().unwrap() > 0);

    // The host and the containers reach each other through the gateway.
    assert!(ping(&a, "10.241.0.1", 2), "a -> gateway");
    let host = Command::new("ping")
        .args(["-c", "2", "-i", "0.05", "-W", "2", &b_ip])
        .output()
        .unwrap();
    assert!(host.status.success(), "host -> b");

    // `netd stats` shows what each container sent and received.
    let stats: Value = d.json(&["stats", "--format", "json"]);
    let b_row = stats["Endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Container"] == "b")
        .unwrap()
        .clone();
    assert!(b_row["ReceivedPackets"].as_u64().unwrap() >= 20, "{b_row}");
    let table = d.ok(&["stats"]);
    assert!(
        table.contains("CONTAINER") && table.contains("DROP REASON"),
        "{table}"
    );

    drop(d);
    assert_eq!(firewall_rules(), rules_before, "netd added firewall rules");
}

#[test]
fn networks_are_isolated_and_spoofing_is_dropped() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.242.1.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.242.2.0/24", "n2"]);
    d.ok(&["container", "create", "--network", "n1", "a"]);
    d.ok(&["container", "create", "--network", "n2", "b"]);
    d.ok(&["container", "create", "--network", "n1", "both"]);
    d.ok(&["network", "connect", "n2", "both"]);
    let (a, b, both) = (d.netns("a"), d.netns("b"), d.netns("both"));
    let (a_ip, b_ip) = (ip_of(&d, "a", "n1"), ip_of(&d, "b", "n2"));

    // A container on both networks reaches each through its own interface.
    assert!(ping(&both, &a_ip, 2), "both -> a");
    assert!(ping(&both, &b_ip, 2), "both -> b");

    // a -> b crosses networks: dropped in eBPF and counted, whatever route
    // a uses (its default route goes to n1's gateway, the host).
    let cross_before = d.drops("cross_network");
    assert!(!ping(&a, &b_ip, 3), "a reached b across networks");
    assert!(
        d.drops("cross_network") >= cross_before + 3,
        "cross-network drops were not counted"
    );
    // Also with b's MAC forced as the next hop.
    let b_mac = d.json(&["container", "inspect", "b"])[0]["NetworkSettings"]["Networks"]["n2"]
        ["MacAddress"]
        .as_str()
        .unwrap()
        .to_string();
    in_ns(
        &a,
        &[
            "ip",
            "neigh",
            "replace",
            &b_ip,
            "lladdr",
            &b_mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    );
    in_ns(
        &a,
        &["ip", "route", "add", &format!("{b_ip}/32"), "dev", "eth0"],
    );
    assert!(!ping(&a, &b_ip, 2), "a reached b with b's MAC as next hop");

    // Spoofed source address.
    let spoof_before = d.drops("spoofed_source");
    in_ns(&a, &["ip", "addr", "add", "10.242.1.99/24", "dev", "eth0"]);
    assert!(
        !ping_from_addr(&a, "10.242.1.99", "10.242.1.1"),
        "spoofed IP got through"
    );
    // Spoofed source MAC.
    in_ns(
        &a,
        &["ip", "link", "set", "eth0", "address", "02:42:0a:f2:01:63"],
    );
    assert!(!ping(&a, "10.242.1.1", 2), "spoofed MAC got through");
    assert!(
        d.drops("spoofed_source") >= spoof_before + 3,
        "spoofing not counted"
    );
    // b is untouched by all this.
    assert!(ping(&b, "10.242.2.1", 2), "b -> its gateway");
}

fn ping_from_addr(ns: &str, src: &str, dst: &str) -> bool {
    in_ns(
        ns,
        &["ping", "-c", "2", "-i", "0.05", "-W", "2", "-I", src, dst],
    )
    .status
    .success()
}

#[test]
fn internal_networks_stay_inside() {
    let d = Daemon::start();
    d.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.243.0.0/24",
        "i",
    ]);
    d.ok(&["container", "create", "--network", "i", "x"]);
    d.ok(&["container", "create", "--network", "i", "y"]);
    let x = d.netns("x");
    assert!(
        ping(&x, &ip_of(&d, "y", "i"), 2),
        "x -> y inside the network"
    );
    assert!(ping(&x, "10.243.0.1", 2), "x -> its gateway");
    // "Outside" is a namespace of the test's own behind a host link, so
    // even a datapath that failed to drop could only reach it.
    let outside = Lan::new(&d.prefix, "10.246.0.2/24");
    let run = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success());
    run(&["addr", "add", "10.246.0.1/24", "dev", &outside.parent]);
    let before = d.drops("internal_network");
    assert!(!ping(&x, "10.246.0.2", 2), "x left its internal network");
    assert!(d.drops("internal_network") >= before + 2, "not counted");
}

/// `-o com.docker.network.bridge.enable_icc=false`: containers of the
/// network reach their gateway (the host) but not each other, and the
/// drops are counted as `icc_disabled`.
#[test]
fn a_network_without_icc_keeps_containers_apart() {
    let d = Daemon::start();
    d.ok(&[
        "network",
        "create",
        "--subnet",
        "10.247.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "q",
    ]);
    d.ok(&["container", "create", "--network", "q", "x"]);
    d.ok(&["container", "create", "--network", "q", "y"]);
    let x = d.netns("x");
    let before = d.drops("icc_disabled");
    assert!(!ping(&x, &ip_of(&d, "y", "q"), 2), "x reached its peer y");
    assert!(d.drops("icc_disabled") >= before + 2, "not counted");
    assert!(ping(&x, "10.247.0.1", 2), "x -> its gateway");
}

/// A veth pair the test owns, standing in for a LAN: one end in the host
/// (the macvlan parent), the other in a "lan" namespace.
struct Lan {
    parent: String,
    ns: String,
}

impl Lan {
    fn new(tag: &str, addr: &str) -> Lan {
        let lan = Lan {
            parent: format!("mvp{tag}"),
            ns: format!("mvlan{tag}"),
        };
        let run =
            |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success());
        run(&["netns", "add", &lan.ns]);
        run(&[
            "link",
            "add",
            &lan.parent,
            "type",
            "veth",
            "peer",
            "name",
            "lan0",
            "netns",
            &lan.ns,
        ]);
        run(&["link", "set", &lan.parent, "up"]);
        run(&["-n", &lan.ns, "addr", "add", addr, "dev", "lan0"]);
        run(&["-n", &lan.ns, "link", "set", "lan0", "up"]);
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.parent])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn macvlan_containers_appear_on_the_parent_segment() {
    let d = Daemon::start();
    let lan = Lan::new(&d.prefix, "10.244.0.1/24");
    let missing = d.fails(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=nosuch0",
        "--subnet",
        "10.244.9.0/24",
        "m0",
    ]);
    assert!(
        missing.contains("parent interface was not found on the host: nosuch0"),
        "{missing}"
    );
    d.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        &format!("parent={}", lan.parent),
        "--subnet",
        "10.244.0.0/24",
        "--gateway",
        "10.244.0.1",
        "mv",
    ]);
    d.ok(&["container", "create", "--network", "mv", "m"]);
    let m_ip = ip_of(&d, "m", "mv");
    assert_eq!(m_ip, "10.244.0.2");
    let m = d.netns("m");
    let eth0 = &common::ip_json_in(&m, &["-d", "link", "show", "eth0"])[0];
    assert_eq!(eth0["linkinfo"]["info_kind"], "macvlan");
    assert!(
        ping(&m, "10.244.0.1", 2),
        "container -> peer on the segment"
    );
    assert!(ping(&lan.ns, &m_ip, 2), "peer on the segment -> container");
    // The peer learned the container's own MAC.
    let neigh = common::ip_json_in(&lan.ns, &["neigh", "show", &m_ip]);
    assert_eq!(neigh[0]["lladdr"], "02:42:0a:f4:00:02");
    d.ok(&["container", "rm", "m"]);
    d.ok(&["network", "rm", "mv"]);
}

#[test]
fn macvlan_containers_cannot_spoof() {
    let mut d = Daemon::start();
    let lan = Lan::new(&d.prefix, "10.246.0.1/24");
    d.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        &format!("parent={}", lan.parent),
        "--subnet",
        "10.246.0.0/24",
        "--gateway",
        "10.246.0.1",
        "mv",
    ]);
    d.ok(&["container", "create", "--network", "mv", "m"]);
    let m = d.netns("m");
    assert!(ping(&m, "10.246.0.1", 2), "own address works");
    // Root in the container takes a neighbour's address: not a packet
    // leaves with it.
    let before = d.drops("spoofed_source");
    let run = |args: &[&str]| assert!(Command::new("ip").args(args).status().unwrap().success());
    run(&["-n", &m, "addr", "add", "10.246.0.99/24", "dev", "eth0"]);
    assert!(
        !ping_from_addr(&m, "10.246.0.99", "10.246.0.1"),
        "spoofed source reached the segment"
    );
    assert!(d.drops("spoofed_source") > before, "spoofing not counted");
    // Nor with another MAC.
    run(&["-n", &m, "addr", "del", "10.246.0.99/24", "dev", "eth0"]);
    run(&[
        "-n",
        &m,
        "link",
        "set",
        "eth0",
        "address",
        "02:42:0a:f6:00:63",
    ]);
    run(&["-n", &lan.ns, "neigh", "flush", "dev", "lan0"]);
    assert!(
        !ping(&m, "10.246.0.1", 2),
        "spoofed MAC reached the segment"
    );
    run(&[
        "-n",
        &m,
        "link",
        "set",
        "eth0",
        "address",
        "02:42:0a:f6:00:02",
    ]);
    assert!(ping(&m, "10.246.0.1", 2), "own addresses work again");
    // The guard outlives a killed daemon, and the restarted one keeps it.
    d.restart();
    run(&["-n", &m, "addr", "add", "10.246.0.98/24", "dev", "eth0"]);
    assert!(
        !ping_from_addr(&m, "10.246.0.98", "10.246.0.1"),
        "spoofed source passed after a restart"
    );
    assert!(ping(&m, "10.246.0.1", 2), "own address after a restart");
    d.ok(&["container", "rm", "m"]);
    d.ok(&["network", "rm", "mv"]);
}

#[test]
fn the_data_plane_outlives_a_killed_daemon() {
    let mut d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.245.0.0/24", "n"]);
    d.ok(&[
        "container",
        "run",
        "--network",
        "n",
        "srv",
        "--",
        "iperf3",
        "-s",
    ]);
    d.ok(&["container", "create", "--network", "n", "cli"]);
    let srv_ip = ip_of(&d, "srv", "n");
    let cli_ns = d.netns("cli");
    let links_before = ip_json(&["link", "show"]);
    wait_listening(&d.netns("srv"), 5201);

    // A 6-second TCP stream; the daemon is killed and restarted under it.
    let client = Command::new("ip")
        .args([
            "netns", "exec", &cli_ns, "iperf3", "-c", &srv_ip, "-t", "6", "-i", "1", "-J",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    d.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    d.start_again();
    let out = client.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "iperf3 failed: {}",
        common::stderr(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (i, interval) in r["intervals"].as_array().unwrap().iter().enumerate() {
        let bytes = interval["sum"]["bytes"].as_u64().unwrap();
        assert!(bytes > 0, "interval {i} moved nothing: the stream stalled");
    }

    // The restarted daemon adopted the kernel state instead of rebuilding:
    // the same links with the same indexes.
    let own = |links: &Value| {
        let mut v: Vec<(String, u64)> = links
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["ifname"].as_str().unwrap().starts_with(&d.prefix))
            .map(|l| {
                (
                    l["ifname"].as_str().unwrap().into(),
                    l["ifindex"].as_u64().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(own(&ip_json(&["link", "show"])), own(&links_before));

    // A clean stop leaves the network working too.
    assert!(d.stop().success());
    assert!(ping(&cli_ns, &srv_ip, 2), "traffic after SIGTERM");
    d.start_again();
    // Removal takes the programs, map entries and links away.
    d.ok(&["container", "rm", "-f", "srv", "cli"]);
    d.ok(&["network", "rm", "n"]);
    assert_eq!(
        d.own_links().len(),
        1,
        "only the default bridge is left: {:?}",
        d.own_links()
    );
    // Only the host-wide attachments (uplink, socket hooks) stay pinned.
    let endpoint_pins: Vec<String> = std::fs::read_dir(d.bpffs.join("links"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&d.prefix))
        .collect();
    assert!(
        endpoint_pins.is_empty(),
        "pinned links left behind: {endpoint_pins:?}"
    );
}
