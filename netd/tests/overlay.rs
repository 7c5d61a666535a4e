//! Overlay networks across hosts, against real daemons in a simulated
//! cluster (`common::cluster`): three host namespaces on an underlay
//! bridge, a real etcd, one netd daemon per host. Every test builds its own
//! cluster and removes it.

mod common;

use std::thread::sleep;
use std::time::{Duration, Instant};

use common::cluster::{LEASE_TTL_SECS, Lab, eventually};

/// One ping from container `name` on `h` to `target`, DF set with
/// `size` bytes of payload when given.
fn ping(h: &common::cluster::Host, name: &str, target: &str, size: Option<u32>) -> bool {
    let mut args = vec!["ping", "-c", "1", "-W", "2"];
    let size = size.map(|s| s.to_string());
    if let Some(s) = &size {
        args.extend(["-M", "do", "-s", s]);
    }
    args.push(target);
    h.exec(name, &args).status.success()
}

fn network_names(h: &common::cluster::Host) -> Vec<String> {
    h.ok(&["network", "ls", "--format", "json"])
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["Name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn an_overlay_spans_hosts_with_names_and_the_underlay_mtu() {
    let lab = Lab::start(3);
    let [h0, h1, h2] = [&lab.hosts[0], &lab.hosts[1], &lab.hosts[2]];
    h0.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.77.1.0/24",
        "ov",
    ]);
    for h in [h1, h2] {
        eventually("the network on every host", Duration::from_secs(10), || {
            network_names(h).contains(&"ov".to_string())
        });
    }
    let inspect = h2.json(&["network", "inspect", "ov"]);
    assert_eq!(inspect[0]["Scope"], "swarm");
    assert_eq!(inspect[0]["Driver"], "overlay");
    assert_eq!(inspect[0]["IPAM"]["Config"][0]["Subnet"], "10.77.1.0/24");
    assert!(
        inspect[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"].is_string(),
        "{inspect}"
    );
    for (i, h) in [h0, h1, h2].into_iter().enumerate() {
        h.ok(&["container", "create", "--network", "ov", &format!("c{i}")]);
    }
    // Names resolve on every host, and packets go across.
    for (from, name) in [(h0, "c0"), (h1, "c1"), (h2, "c2")] {
        for target in ["c0", "c1", "c2", "c0.ov", "c2.ov"] {
            eventually(
                &format!("{name} -> {target}"),
                Duration::from_secs(10),
                || ping(from, name, target, None),
            );
        }
    }
    // Endpoints get the underlay's MTU less the 50 bytes of VXLAN: the
    // largest unfragmented packet crosses, one byte more does not fit.
    let c1 = h1.ip_of("c1", "ov");
    let mtu = common::ip_json_in(&h0.container_netns("c0"), &["link", "show", "eth0"])[0]["mtu"]
        .as_u64()
        .unwrap();
    assert_eq!(mtu, 1450);
    assert!(ping(h0, "c0", &c1, Some(1450 - 28)), "full-size packet");
    assert!(
        !ping(h0, "c0", &c1, Some(1450 - 27)),
        "one byte over the MTU"
    );
    // A large TCP transfer across hosts.
    let server = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &h1.container_netns("c1"),
            "iperf3",
            "-s",
            "-1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut server = common::ChildGuard(server);
    eventually("iperf3 listening", Duration::from_secs(10), || {
        h1.exec("c1", &["ss", "-ltn", "sport = :5201"])
            .stdout
            .windows(4)
            .any(|w| w == b"5201")
    });
    let out = h0.exec("c0", &["iperf3", "-c", &c1, "-n", "50M"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    server.wait();
}

#[test]
fn without_a_cluster_overlay_networks_are_refused_like_dockers() {
    let d = common::Daemon::start();
    let err = d.fails(&["network", "create", "-d", "overlay", "ov"]);
    assert!(err.contains("This node is not a swarm manager"), "{err}");
    assert!(
        d.fails(&["cluster", "ls"])
            .contains("not part of a cluster")
    );
}

#[test]
fn overlays_are_isolated_and_names_unique_across_hosts() {
    let lab = Lab::start(2);
    let [h0, h1] = [&lab.hosts[0], &lab.hosts[1]];
    h0.ok(&["network", "create", "-d", "overlay", "a"]);
    h1.ok(&["network", "create", "-d", "overlay", "b"]);
    for h in [h0, h1] {
        eventually("both networks everywhere", Duration::from_secs(10), || {
            let names = network_names(h);
            names.contains(&"a".to_string()) && names.contains(&"b".to_string())
        });
    }
    h0.ok(&["container", "create", "--network", "a", "x"]);
    h1.ok(&["container", "create", "--network", "b", "y"]);
    h1.ok(&["container", "create", "--network", "a", "z"]);
    let err = h1.fails(&["container", "create", "--network", "a", "x"]);
    assert!(err.contains("is already in use"), "{err}");
    let (y, z) = (h1.ip_of("y", "b"), h1.ip_of("z", "a"));
    eventually(
        "x reaches z on its network",
        Duration::from_secs(10),
        || ping(h0, "x", &z, None),
    );
    assert!(!ping(h0, "x", &y, None), "x reached y on another overlay");
    let drops = |h: &common::cluster::Host, reason: &str| -> u64 {
        h.json(&["stats", "--format", "json"])["Drops"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["Reason"] == reason)
            .map(|d| d["Packets"].as_u64().unwrap())
            .sum()
    };
    assert!(drops(h0, "cross_network") > 0, "not counted");
    // A network with endpoints on any host cannot go.
    let err = h0.fails(&["network", "rm", "b"]);
    assert!(err.contains("has active endpoints"), "{err}");
    h1.ok(&["container", "rm", "y"]);
    h0.ok(&["network", "rm", "b"]);
    eventually("b gone everywhere", Duration::from_secs(10), || {
        !network_names(h1).contains(&"b".to_string())
    });
}

#[test]
fn a_lost_host_leaves_within_its_lease_and_comes_back() {
    let mut lab = Lab::start(3);
    lab.hosts[0].ok(&["network", "create", "-d", "overlay", "ov"]);
    for (i, h) in lab.hosts.iter().enumerate() {
        eventually("the network", Duration::from_secs(10), || {
            network_names(h).contains(&"ov".to_string())
        });
        h.ok(&["container", "create", "--network", "ov", &format!("c{i}")]);
    }
    let h0 = &lab.hosts[0];
    eventually("c2 resolves on h0", Duration::from_secs(10), || {
        ping(h0, "c0", "c2", None)
    });
    // Host 2 dies: its daemon is killed and its link goes down.
    lab.hosts[2].kill9();
    lab.hosts[2].set_link(false);
    let lost = Instant::now();
    let h0 = &lab.hosts[0];
    eventually(
        "h2's endpoint withdrawn on h0",
        Duration::from_secs(LEASE_TTL_SECS + 10),
        || {
            let out = h0.exec("c0", &["getent", "hosts", "c2"]);
            !out.status.success()
        },
    );
    eprintln!("withdrawn after {:?}", lost.elapsed());
    let cluster = h0.json(&["cluster", "ls", "--format", "json"]);
    assert!(
        cluster
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["State"] == "down"),
        "{cluster}"
    );
    // The survivors are undisturbed.
    assert!(ping(&lab.hosts[0], "c0", "c1", None));
    // Back: its containers are announced again without a manual step.
    lab.hosts[2].set_link(true);
    lab.hosts[2].start_again();
    let h0 = &lab.hosts[0];
    eventually("c2 back on h0", Duration::from_secs(15), || {
        ping(h0, "c0", "c2", None)
    });
}

#[test]
fn with_etcd_down_forwarding_goes_on_and_cluster_calls_fail_fast() {
    let mut lab = Lab::start(2);
    lab.hosts[0].ok(&["network", "create", "-d", "overlay", "ov"]);
    for (i, h) in lab.hosts.iter().enumerate() {
        eventually("the network", Duration::from_secs(10), || {
            network_names(h).contains(&"ov".to_string())
        });
        h.ok(&["container", "create", "--network", "ov", &format!("c{i}")]);
    }
    let c1 = lab.hosts[1].ip_of("c1", "ov");
    eventually("c0 -> c1", Duration::from_secs(10), || {
        ping(&lab.hosts[0], "c0", &c1, None)
    });
    lab.etcd.stop();
    assert!(
        ping(&lab.hosts[0], "c0", &c1, None),
        "forwarding stopped with etcd"
    );
    let started = Instant::now();
    let err = lab.hosts[0].fails(&["container", "create", "--network", "ov", "late"]);
    assert!(err.contains("cluster store"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the call hung: {:?}",
        started.elapsed()
    );
    lab.etcd.restart();
    let h0 = &lab.hosts[0];
    eventually("the store back", Duration::from_secs(30), || {
        h0.netd(&["container", "create", "--network", "ov", "late"])
            .status
            .success()
    });
    let late = lab.hosts[0].ip_of("late", "ov");
    eventually(
        "h1 sees the late container",
        Duration::from_secs(10),
        || ping(&lab.hosts[1], "c1", &late, None),
    );
}

/// A VXLAN frame to `dst:4789` carrying an ICMP echo from `inner_src` to
/// `inner_dst` with `vni`, sent with python3 from namespace `from` (no
/// crafting tool of our own: a UDP socket carries the bytes).
fn send_vxlan(from: &str, dst: &str, vni: u32, inner_src: &str, inner_dst: &str) {
    let script = format!(
        r#"
import socket, struct
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return (~s) & 0xffff
src = socket.inet_aton('{inner_src}'); dst = socket.inet_aton('{inner_dst}')
icmp = struct.pack('!BBHHH', 8, 0, 0, 1, 1) + b'netd-test'
icmp = icmp[:2] + struct.pack('!H', csum(icmp)) + icmp[4:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, src, dst)
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
eth = bytes([2, 0x42] + list(dst)) + bytes([2, 0x42] + list(src)) + b'\x08\x00'
vxlan = struct.pack('!II', 0x08000000, {vni} << 8)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    s.sendto(vxlan + eth + ip + icmp, ('{dst}', 4789))
"#
    );
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", from, "python3", "-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
}

fn drops(h: &common::cluster::Host, reason: &str) -> u64 {
    h.json(&["stats", "--format", "json"])["Drops"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["Reason"] == reason)
        .map(|d| d["Packets"].as_u64().unwrap())
        .sum()
}

#[test]
fn tunnelled_traffic_is_checked_against_the_cluster() {
    let lab = Lab::start(2);
    let [h0, h1] = [&lab.hosts[0], &lab.hosts[1]];
    h0.ok(&["network", "create", "-d", "overlay", "ov"]);
    eventually("the network on h1", Duration::from_secs(10), || {
        network_names(h1).contains(&"ov".to_string())
    });
    h0.ok(&["container", "create", "--network", "ov", "a"]);
    h1.ok(&["container", "create", "--network", "ov", "b"]);
    let (a, b) = (h0.ip_of("a", "ov"), h1.ip_of("b", "ov"));
    eventually("a -> b", Duration::from_secs(10), || {
        ping(h0, "a", &b, None)
    });
    let inspect = h1.json(&["network", "inspect", "ov"]);
    let vni: u32 = inspect[0]["Options"]["com.docker.network.driver.overlay.vxlanid_list"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let h1_addr = h1.addr.to_string();
    // A machine outside the cluster cannot inject into it.
    send_vxlan(&lab.outside, &h1_addr, vni, &a, &b);
    eventually("unknown_host counted", Duration::from_secs(5), || {
        drops(h1, "unknown_host") >= 5
    });
    // A host of the cluster with a VNI that is no network's here.
    send_vxlan(&h0.netns, &h1_addr, vni + 1000, &a, &b);
    eventually("vni_unknown counted", Duration::from_secs(5), || {
        drops(h1, "vni_unknown") >= 5
    });
    // Nor can it send as an endpoint it does not hold: b's own address as
    // the source, coming from h0.
    send_vxlan(&h0.netns, &h1_addr, vni, &b, &b);
    eventually("spoofed_source counted", Duration::from_secs(5), || {
        drops(h1, "spoofed_source") >= 5
    });
    // A container cannot send with another's address across hosts either.
    let run = |args: &[&str]| {
        assert!(
            std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap()
                .success()
        )
    };
    let ns = h0.container_netns("a");
    let prefix = inspect[0]["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_string();
    let spoof = format!("{}.250", prefix.rsplit_once('.').unwrap().0);
    run(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{spoof}/24"),
        "dev",
        "eth0",
    ]);
    let before = drops(h0, "spoofed_source");
    assert!(
        !h0.exec("a", &["ping", "-c", "2", "-W", "1", "-I", &spoof, &b])
            .status
            .success()
    );
    assert!(
        drops(h0, "spoofed_source") > before,
        "not counted at the sender"
    );
    // The metrics count the tunnel both ways.
    let m = h0.metrics();
    let encap = m
        .lines()
        .find(|l| l.starts_with("netd_overlay_packets_total{direction=\"encap\"}"))
        .unwrap_or_else(|| panic!("{m}"));
    assert!(!encap.ends_with(" 0"), "{encap}");
    assert!(m.contains("netd_cluster_store_connected 1"), "{m}");
    assert!(m.contains("netd_cluster_peers{host="), "{m}");
}

#[test]
fn a_stream_across_hosts_survives_a_daemon_kill() {
    let mut lab = Lab::start(2);
    lab.hosts[0].ok(&["network", "create", "-d", "overlay", "ov"]);
    eventually("the network on h1", Duration::from_secs(10), || {
        network_names(&lab.hosts[1]).contains(&"ov".to_string())
    });
    lab.hosts[0].ok(&[
        "container",
        "run",
        "--network",
        "ov",
        "srv",
        "--",
        "iperf3",
        "-s",
    ]);
    lab.hosts[1].ok(&["container", "create", "--network", "ov", "cli"]);
    let srv = lab.hosts[0].ip_of("srv", "ov");
    eventually("the server listening", Duration::from_secs(10), || {
        lab.hosts[0]
            .exec("srv", &["ss", "-ltn", "sport = :5201"])
            .stdout
            .windows(4)
            .any(|w| w == b"5201")
    });
    let client = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.hosts[1].container_netns("cli"),
            "iperf3",
            "-c",
            &srv,
            "-t",
            "6",
            "-J",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(1500));
    // Both ends' daemons die and come back under the stream.
    lab.hosts[0].kill9();
    lab.hosts[1].kill9();
    sleep(Duration::from_millis(1500));
    lab.hosts[0].start_again();
    lab.hosts[1].start_again();
    let out = client.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for interval in report["intervals"].as_array().unwrap() {
        let bytes = interval["sum"]["bytes"].as_u64().unwrap();
        assert!(bytes > 0, "a second without traffic: {interval}");
    }
}

#[test]
fn hosts_racing_get_distinct_subnets_addresses_and_names() {
    let lab = Lab::start(2);
    let both = |f: &(dyn Fn(&common::cluster::Host, usize) + Sync)| {
        std::thread::scope(|s| {
            for (i, h) in lab.hosts.iter().enumerate() {
                s.spawn(move || f(h, i));
            }
        });
    };
    both(&|h, i| {
        for n in 0..4 {
            h.ok(&["network", "create", "-d", "overlay", &format!("n{i}{n}")]);
        }
    });
    let h0 = &lab.hosts[0];
    eventually("all eight networks on h0", Duration::from_secs(10), || {
        network_names(h0)
            .iter()
            .filter(|n| n.len() == 3 && n.starts_with('n'))
            .count()
            == 8
    });
    let subnets: std::collections::BTreeSet<String> = (0..2)
        .flat_map(|i| (0..4).map(move |n| format!("n{i}{n}")))
        .map(|n| h0.json(&["network", "inspect", &n])[0]["IPAM"]["Config"][0]["Subnet"].to_string())
        .collect();
    assert_eq!(subnets.len(), 8, "a subnet handed out twice: {subnets:?}");
    both(&|h, i| {
        for c in 0..6 {
            h.ok(&[
                "container",
                "create",
                "--network",
                "n00",
                &format!("c{i}{c}"),
            ]);
        }
    });
    let mut addresses = std::collections::BTreeSet::new();
    for (i, h) in lab.hosts.iter().enumerate() {
        for c in 0..6 {
            assert!(addresses.insert(h.ip_of(&format!("c{i}{c}"), "n00")));
        }
    }
    // The same name from both hosts at once: exactly one wins.
    let wins = std::sync::atomic::AtomicUsize::new(0);
    both(&|h, _| {
        if h.netd(&["container", "create", "--network", "n00", "same"])
            .status
            .success()
        {
            wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    assert_eq!(wins.into_inner(), 1);
}

#[test]
fn overlay_containers_go_out_through_their_own_host_unless_internal() {
    let lab = Lab::start(2);
    let [h0, h1] = [&lab.hosts[0], &lab.hosts[1]];
    h0.ok(&["network", "create", "-d", "overlay", "ov"]);
    h0.ok(&["network", "create", "-d", "overlay", "--internal", "inner"]);
    eventually("both on h1", Duration::from_secs(10), || {
        let names = network_names(h1);
        names.contains(&"ov".to_string()) && names.contains(&"inner".to_string())
    });
    h1.ok(&["container", "create", "--network", "ov", "out"]);
    h1.ok(&["container", "create", "--network", "inner", "shut"]);
    h0.ok(&["container", "create", "--network", "inner", "mate"]);
    let outside = format!("{}.200", lab.net);
    // The outside sees the host's own underlay address (masquerade).
    let capture = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.outside,
            "tcpdump",
            "-n",
            "-i",
            "eth0",
            "-c",
            "1",
            "icmp",
            "and",
            "icmp[icmptype] == icmp-echo",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut capture = common::ChildGuard(capture);
    sleep(Duration::from_millis(500));
    assert!(ping(h1, "out", &outside, None), "no way out");
    capture.wait();
    let mut seen = String::new();
    use std::io::Read as _;
    capture
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    assert!(seen.contains(&format!("{} >", h1.addr)), "{seen}");
    // An internal overlay reaches its peers on other hosts, nothing else.
    let mate = h0.ip_of("mate", "inner");
    eventually("shut -> mate", Duration::from_secs(10), || {
        ping(h1, "shut", &mate, None)
    });
    assert!(
        !ping(h1, "shut", &outside, None),
        "an internal overlay got out"
    );
}
