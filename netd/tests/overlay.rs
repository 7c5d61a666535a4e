//! Overlay networks across hosts, against real daemons in a simulated
//! cluster (`common::cluster`): three host namespaces on an underlay
//! bridge, a real etcd, one netd daemon per host. Every test builds its own
//! cluster and removes it.

mod common;

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
