//! Kernel plumbing tests: namespaces, bridges, veth endpoints and sandboxed
//! processes, checked against what `ip -j` reports.
//!
//! They need root (they fail, saying so, otherwise) and run in parallel:
//! every object gets a unique name (`nl<pid><n>`) and a guard deletes it
//! even if the test panics. Traffic only goes to addresses on a bridge and
//! namespaces the test itself made (10.231.x.0/24), or over a veth pair it
//! made (10.233.x.0/24, macvlan).

use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

mod bpf_harness;

use bpf_harness::{
    addr::{mac_of, mac_str},
    cmd::{ip_json, run},
    guards::unique,
    root::require_root,
};
use netd::model::Start;
use netd::netlink::{EndpointPlumbing, MacvlanPlumbing, Netlink, NetlinkError, Netns, netns};
use netd::{process, sandbox};
use serde_json::Value;

/// A /24 in 10.231.0.0/16 unlikely to be used by a concurrent test run:
/// the third octet mixes the pid with a per-process counter.
fn test_subnet() -> u8 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let k = NEXT.fetch_add(1, Ordering::Relaxed) % 8;
    ((std::process::id() % 32) * 8 + k) as u8
}

/// Deletes what a test made, on success and on panic alike.
#[derive(Default)]
struct Cleanup {
    links: Vec<String>,
    netns: Vec<String>,
    files: Vec<PathBuf>,
    processes: Vec<(u32, Start)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let held = self
            .processes
            .iter()
            .filter_map(|(pid, start)| process::hold(*pid, start))
            .collect();
        process::stop(held, Duration::from_millis(100));
        for link in &self.links {
            let _ = Command::new("ip").args(["link", "del", link]).output();
        }
        for ns in &self.netns {
            let _ = netns::delete(ns);
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// `ip [-n NS] -j link show NAME`, `None` if the link does not exist.
fn link_json(netns: Option<&str>, name: &str) -> Option<Value> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    let out = cmd
        .args(["-j", "link", "show", name])
        .output()
        .expect("run ip");
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
    v.as_array().and_then(|a| a.first().cloned())
}

fn has_flag(link: &Value, flag: &str) -> bool {
    link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == flag))
}

fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `net:[INODE]` as `readlink /proc/self/ns/net` prints it inside `name`.
fn netns_id(name: &str) -> String {
    let ino = std::fs::metadata(netns::path(name))
        .expect("stat netns")
        .ino();
    format!("net:[{ino}]")
}

/// Whether this kernel has IPv6 at all (otherwise there is nothing to turn
/// off, and the IPv6 checks are skipped).
fn has_ipv6() -> bool {
    Path::new("/proc/sys/net/ipv6").exists()
}

/// Runs a command inside `ns` (or on the host) and returns its stdout.
fn run_in(ns: Option<&str>, args: &[&str]) -> String {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]);
            c
        }
        None => Command::new(args[0]),
    };
    let args = if ns.is_some() { args } else { &args[1..] };
    let out = cmd.args(args).output().expect("run command");
    assert!(
        out.status.success(),
        "{args:?} in {ns:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `net.ipv6.conf.KEY.disable_ipv6` as seen inside `ns` (or on the host).
fn disable_ipv6(ns: Option<&str>, key: &str) -> String {
    run_in(
        ns,
        &[
            "cat",
            &format!("/proc/sys/net/ipv6/conf/{key}/disable_ipv6"),
        ],
    )
    .trim()
    .to_string()
}

/// Every IPv6 address inside `ns` (or on link `dev` on the host).
fn ipv6_addrs(ns: Option<&str>, dev: Option<&str>) -> Vec<Value> {
    let mut args = vec![];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    args.extend(["-6", "addr", "show"]);
    if let Some(dev) = dev {
        args.extend(["dev", dev]);
    }
    ip_json(&args)
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// `/sys/class/net/NAME/carrier_changes` on the host: goes up whenever the
/// link bounces.
fn carrier_changes(name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{name}/carrier_changes"))
        .expect("read carrier_changes")
        .trim()
        .parse()
        .unwrap()
}

/// The permanent neighbour entry for `ip` on `bridge`, if any.
fn neighbour(bridge: &str, ip: Ipv4Addr) -> Option<Value> {
    ip_json(&["neigh", "show", "dev", bridge])
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["dst"] == ip.to_string().as_str())
        .cloned()
}

/// Checks what issue 3 asks of a bridged endpoint: the bridge's permanent
/// neighbour entry for the container, the static FDB entry on the port,
/// learning and flooding off on the port, and IPv6 off in the container and
/// on the host side.
fn assert_isolated(ns: &str, bridge: &str, host: &str, ifname: &str, ip: Ipv4Addr, mac: [u8; 6]) {
    let mac_s = mac_str(mac);
    let n = neighbour(bridge, ip).unwrap_or_else(|| panic!("no neighbour entry for {ip}"));
    assert_eq!(n["lladdr"], mac_s.as_str(), "{n}");
    assert_eq!(n["state"], serde_json::json!(["PERMANENT"]), "{n}");

    let out = Command::new("bridge")
        .args(["-j", "fdb", "show", "dev", host])
        .output()
        .expect("run bridge");
    assert!(out.status.success());
    let fdb: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = fdb
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["mac"] == mac_s.as_str() && e["master"] == bridge)
        .unwrap_or_else(|| panic!("no fdb entry for {mac_s} on {host}: {fdb}"));
    assert_eq!(entry["state"], "static", "{entry}");

    let link = ip_json(&["-d", "link", "show", "dev", host]);
    let port = &link[0]["linkinfo"]["info_slave_data"];
    assert_eq!(link[0]["linkinfo"]["info_slave_kind"], "bridge", "{link}");
    for flag in ["learning", "flood", "mcast_flood", "bcast_flood"] {
        assert_eq!(port[flag], false, "{flag} off on {host}: {port}");
    }

    if has_ipv6() {
        for key in ["all", "default", ifname] {
            assert_eq!(disable_ipv6(Some(ns), key), "1", "{key} in {ns}");
        }
        assert_eq!(ipv6_addrs(Some(ns), None), Vec::<Value>::new());
        assert_eq!(disable_ipv6(None, host), "1", "{host}");
        assert_eq!(ipv6_addrs(None, Some(host)), Vec::<Value>::new());
    }
}

#[test]
fn netns_create_exists_delete() {
    require_root();
    let name = unique("nl");
    let mut cleanup = Cleanup::default();
    cleanup.netns.push(name.clone());

    assert!(!netns::exists(&name));
    netns::create(&name).expect("create netns");
    assert!(netns::exists(&name));
    assert_eq!(netns::path(&name), Path::new("/run/netns").join(&name));
    assert!(
        netns::list_with_prefix(&name)
            .unwrap()
            .contains(&name.to_string())
    );

    let lo = link_json(Some(&name), "lo").expect("lo exists in the new netns");
    assert!(has_flag(&lo, "UP"), "lo is up: {lo}");
    // A different namespace from ours.
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(ours.to_string_lossy(), netns_id(&name));

    let err = netns::create(&name).expect_err("second create fails");
    assert!(
        matches!(err, NetlinkError::NetnsExists(ref n) if *n == name),
        "{err}"
    );
    assert!(err.is_exists());

    netns::delete(&name).expect("delete netns");
    assert!(!netns::exists(&name));
    assert!(!netns::path(&name).exists());
    assert!(!netns::list_with_prefix(&name).unwrap().contains(&name));
    netns::delete(&name).expect("deleting a missing netns is Ok");

    // A leftover empty file (crash between creating and mounting) is not a
    // namespace, and create replaces it.
    std::fs::write(netns::path(&name), b"").unwrap();
    assert!(!netns::exists(&name));
    netns::create(&name).expect("create over a leftover file");
    assert!(netns::exists(&name));
    netns::delete(&name).unwrap();

    for bad in ["", "..", "a/b"] {
        assert!(matches!(
            netns::create(bad),
            Err(NetlinkError::InvalidName { .. })
        ));
    }
}

#[tokio::test]
async fn bridge_and_endpoints() {
    require_root();
    let mut cleanup = Cleanup::default();
    let ns = unique("nl");
    let br = unique("nlb");
    let host0 = unique("nlv");
    let host1 = unique("nlv");
    cleanup
        .links
        .extend([host0.clone(), host1.clone(), br.clone()]);
    cleanup.netns.push(ns.clone());
    let x = test_subnet();
    let gateway = Ipv4Addr::new(10, 231, x, 1);

    let nl = Netlink::new().await.expect("netlink");
    netns::create(&ns).expect("create netns");

    let gw_mac = mac_of(gateway);
    let br_index = nl
        .ensure_bridge(&br, gateway, 24, gw_mac)
        .await
        .expect("bridge");
    assert_eq!(
        nl.ensure_bridge(&br, gateway, 24, gw_mac)
            .await
            .expect("adopt"),
        br_index,
        "ensure_bridge adopts the existing bridge"
    );
    assert_eq!(nl.link_index(&br).await.unwrap(), Some(br_index));
    let br_link = link_json(None, &br).expect("bridge exists");
    assert!(has_flag(&br_link, "UP"), "{br_link}");
    assert_eq!(br_link["address"], mac_str(gw_mac).as_str(), "{br_link}");
    let br_addrs = ip_json(&["addr", "show", "dev", &br]);
    assert!(
        br_addrs[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == gateway.to_string().as_str() && a["prefixlen"] == 24),
        "bridge carries the gateway: {br_addrs}"
    );

    let mac0 = [0x02, 0x42, 10, 231, x, 2];
    let ep0 = EndpointPlumbing {
        netns: Netns::from(ns.as_str()),
        host_ifname: host0.clone(),
        ifname: "eth0".into(),
        mac: mac0,
        ip: Ipv4Addr::new(10, 231, x, 2),
        prefix_len: 24,
        gateway,
        default_route: true,
        bridge: Some(br.clone()),
        mtu: Some(1400),
    };
    let host0_index = nl.create_endpoint(&ep0).await.expect("create eth0");
    assert_eq!(nl.link_index(&host0).await.unwrap(), Some(host0_index));
    assert_isolated(&ns, &br, &host0, "eth0", ep0.ip, mac0);
    // Enslaving a port does not move the bridge's MAC off the gateway's.
    assert_eq!(
        link_json(None, &br).unwrap()["address"],
        mac_str(gw_mac).as_str()
    );

    // Container side: name, MAC, MTU, address, up.
    let eth0 = ip_json(&["-n", &ns, "addr", "show", "dev", "eth0"]);
    let eth0 = &eth0[0];
    assert_eq!(eth0["address"], mac_str(mac0).as_str(), "{eth0}");
    assert_eq!(eth0["mtu"], 1400);
    assert!(has_flag(eth0, "UP"), "{eth0}");
    assert!(
        eth0["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == format!("10.231.{x}.2").as_str() && a["prefixlen"] == 24),
        "{eth0}"
    );
    // Default route via the gateway on eth0.
    let routes = ip_json(&["-n", &ns, "route", "show", "default"]);
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!(routes[0]["gateway"], gateway.to_string().as_str());
    assert_eq!(routes[0]["dev"], "eth0");
    // Host side: enslaved to the bridge, up, same MTU.
    let h0 = link_json(None, &host0).expect("host veth exists");
    assert_eq!(h0["master"], br.as_str(), "{h0}");
    assert!(has_flag(&h0, "UP"), "{h0}");
    assert_eq!(h0["mtu"], 1400);

    // Traffic: the namespace reaches the gateway through veth + bridge.
    let gw = gateway.to_string();
    let pinged = (0..5).any(|_| {
        Command::new("ip")
            .args(["netns", "exec", &ns, "ping", "-c", "1", "-W", "1", &gw])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(pinged, "ping from {ns} to the gateway {gw}");

    // Re-adoption: same request, same index, nothing changes, and a flow
    // running meanwhile loses nothing (no link is bounced).
    let carrier_before = carrier_changes(&host0);
    let flow = Command::new("ip")
        .args([
            "netns", "exec", &ns, "ping", "-c", "30", "-i", "0.05", "-W", "1", &gw,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start ping");
    cleanup
        .processes
        .push((flow.id(), process::start_of(flow.id()).unwrap()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        assert_eq!(
            nl.create_endpoint(&ep0).await.expect("adopt eth0"),
            host0_index
        );
        assert_eq!(
            nl.ensure_bridge(&br, gateway, 24, gw_mac)
                .await
                .expect("adopt bridge"),
            br_index
        );
    }
    let flow = tokio::task::spawn_blocking(move || flow.wait_with_output())
        .await
        .unwrap()
        .expect("ping finishes");
    let flow_out = String::from_utf8_lossy(&flow.stdout);
    assert!(
        flow.status.success() && flow_out.contains(" 0% packet loss"),
        "no loss while re-adopting: {flow_out}"
    );
    assert_eq!(carrier_changes(&host0), carrier_before, "host0 not bounced");
    assert_isolated(&ns, &br, &host0, "eth0", ep0.ip, mac0);

    // A second endpoint, without the default route.
    let ep1 = EndpointPlumbing {
        host_ifname: host1.clone(),
        ifname: "eth1".into(),
        mac: [0x02, 0x42, 10, 231, x, 3],
        ip: Ipv4Addr::new(10, 231, x, 3),
        default_route: false,
        mtu: None,
        ..ep0.clone()
    };
    // The guard (where the datapath attaches) runs while the host side is
    // still down, so the pair carries nothing unchecked; a failing one
    // leaves nothing behind.
    let err = nl
        .create_guarded_endpoint(&ep1, async |_| Err(io::Error::other("refused")))
        .await
        .expect_err("guard refused");
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(link_json(None, &host1).is_none(), "veth left behind");
    let seen = std::sync::Mutex::new(None);
    let host1_index = nl
        .create_guarded_endpoint(&ep1, async |index| {
            let host = link_json(None, &host1).unwrap();
            *seen.lock().unwrap() = Some((index, has_flag(&host, "UP")));
            Ok(())
        })
        .await
        .expect("create eth1");
    assert_eq!(*seen.lock().unwrap(), Some((host1_index, false)));
    assert!(has_flag(&link_json(None, &host1).unwrap(), "UP"));
    assert_ne!(host1_index, host0_index);
    assert_isolated(&ns, &br, &host1, "eth1", ep1.ip, ep1.mac);
    let eth1 = ip_json(&["-n", &ns, "addr", "show", "dev", "eth1"]);
    assert!(
        eth1[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == format!("10.231.{x}.3").as_str()),
        "{eth1}"
    );
    let routes = ip_json(&["-n", &ns, "route", "show", "default"]);
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!(routes[0]["dev"], "eth0", "eth1 took no default route");
    assert_eq!(
        link_json(None, &host1).expect("host1")["master"],
        br.as_str()
    );

    // Adopting under the wrong container-side name is refused.
    let wrong = EndpointPlumbing {
        ifname: "eth7".into(),
        ..ep1.clone()
    };
    let err = nl.create_endpoint(&wrong).await.expect_err("not our pair");
    assert!(matches!(err, NetlinkError::LinkConflict { .. }), "{err}");
    assert!(link_json(None, &host1).is_some(), "existing link untouched");

    // Moving the default route when eth0 goes away.
    nl.set_default_route(&Netns::from(ns.as_str()), "eth1", gateway)
        .await
        .expect("default via eth1");
    let routes = ip_json(&["-n", &ns, "route", "show", "default"]);
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!(routes[0]["dev"], "eth1");
    assert_eq!(routes[0]["gateway"], gateway.to_string().as_str());
    let err = nl
        .set_default_route(&Netns::from(ns.as_str()), "eth9", gateway)
        .await
        .expect_err("no eth9");
    assert!(err.is_not_found(), "{err}");

    let prefixed = nl.links_with_prefix(&host0).await.unwrap();
    assert_eq!(prefixed, vec![host0.clone()]);

    // Removing deletes both ends and the neighbour entry (and only that
    // one); removing again is fine.
    nl.remove_endpoint(&host0, Some((&br, ep0.ip)))
        .await
        .expect("remove eth0");
    assert!(link_json(None, &host0).is_none());
    assert!(link_json(Some(&ns), "eth0").is_none(), "peer went too");
    assert_eq!(nl.link_index(&host0).await.unwrap(), None);
    assert!(neighbour(&br, ep0.ip).is_none(), "neighbour entry removed");
    assert!(neighbour(&br, ep1.ip).is_some(), "eth1's entry kept");
    nl.remove_endpoint(&host0, Some((&br, ep0.ip)))
        .await
        .expect("remove again");
    nl.remove_endpoint(&host1, Some((&br, ep1.ip)))
        .await
        .expect("remove eth1");
    assert!(link_json(Some(&ns), "eth1").is_none());
    assert!(neighbour(&br, ep1.ip).is_none());
    let gone = unique("nlx");
    nl.remove_endpoint(&host1, Some((&gone, ep1.ip)))
        .await
        .expect("missing bridge is fine");

    nl.delete_link(&br).await.expect("delete bridge");
    assert!(link_json(None, &br).is_none());
    nl.delete_link(&br).await.expect("delete missing bridge");
}

#[tokio::test]
async fn bridge_mac_is_set_and_fixed() {
    require_root();
    let mut cleanup = Cleanup::default();
    let br = unique("nlb");
    cleanup.links.push(br.clone());
    let x = test_subnet();
    let gateway = Ipv4Addr::new(10, 231, x, 1);
    let mac = mac_of(gateway);
    let nl = Netlink::new().await.expect("netlink");

    let index = nl
        .ensure_bridge(&br, gateway, 24, mac)
        .await
        .expect("bridge");
    let link = link_json(None, &br).unwrap();
    assert_eq!(link["address"], mac_str(mac).as_str(), "{link}");
    if has_ipv6() {
        assert_eq!(disable_ipv6(None, &br), "1");
        assert_eq!(ipv6_addrs(None, Some(&br)), Vec::<Value>::new());
    }

    // Someone changed it (or an older netd let it follow its ports): the
    // next ensure_bridge puts the gateway MAC back, on the same bridge.
    run(&["ip", "link", "set", &br, "address", "02:42:0a:e7:00:63"]);
    assert_eq!(
        nl.ensure_bridge(&br, gateway, 24, mac)
            .await
            .expect("re-adopt"),
        index
    );
    let link = link_json(None, &br).unwrap();
    assert_eq!(link["address"], mac_str(mac).as_str(), "{link}");
    assert!(has_flag(&link, "UP"), "{link}");

    // A bridge made without a MAC (e.g. by an older netd) is adopted too.
    nl.delete_link(&br).await.unwrap();
    run(&["ip", "link", "add", &br, "type", "bridge"]);
    nl.ensure_bridge(&br, gateway, 24, mac)
        .await
        .expect("adopt a plain bridge");
    let link = link_json(None, &br).unwrap();
    assert_eq!(link["address"], mac_str(mac).as_str(), "{link}");

    // The kernel's refusal (a multicast MAC) names the bridge and the step.
    let err = nl
        .ensure_bridge(&br, gateway, 24, [0x03, 0, 0, 0, 0, 1])
        .await
        .expect_err("multicast MAC");
    assert!(
        err.to_string().contains(&br) && err.to_string().contains("03:00:00:00:00:01"),
        "{err}"
    );
}

/// A "LAN" for macvlan tests: a veth pair whose host end is the macvlan
/// parent and whose other end sits in its own namespace with `.1`.
struct Lan {
    parent: String,
    ns: String,
    router: Ipv4Addr,
    x: u8,
}

fn make_lan(cleanup: &mut Cleanup) -> Lan {
    let parent = unique("nlm");
    let ns = unique("nl");
    cleanup.links.push(parent.clone());
    cleanup.netns.push(ns.clone());
    let x = test_subnet();
    let router = Ipv4Addr::new(10, 233, x, 1);
    netns::create(&ns).expect("create lan netns");
    run(&[
        "ip", "link", "add", &parent, "type", "veth", "peer", "name", "lan0", "netns", &ns,
    ]);
    run(&["ip", "link", "set", &parent, "up"]);
    let cidr = format!("{router}/24");
    run(&["ip", "-n", &ns, "addr", "add", &cidr, "dev", "lan0"]);
    run(&["ip", "-n", &ns, "link", "set", "lan0", "up"]);
    Lan {
        parent,
        ns,
        router,
        x,
    }
}

fn ping_from(ns: &str, dst: Ipv4Addr) -> bool {
    let dst = dst.to_string();
    (0..5).any(|_| {
        Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "1", &dst])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[tokio::test]
async fn macvlan_endpoint() {
    require_root();
    let mut cleanup = Cleanup::default();
    let lan = make_lan(&mut cleanup);
    let ns = unique("nl");
    cleanup.netns.push(ns.clone());
    netns::create(&ns).expect("create netns");
    let nl = Netlink::new().await.expect("netlink");
    assert!(nl.link_index(&lan.parent).await.unwrap().is_some());

    let ip = Ipv4Addr::new(10, 233, lan.x, 2);
    let p = MacvlanPlumbing {
        netns: Netns::from(ns.as_str()),
        parent: lan.parent.clone(),
        ifname: "eth0".into(),
        mac: mac_of(ip),
        ip,
        prefix_len: 24,
        gateway: lan.router,
        default_route: true,
        mtu: Some(1400),
        index: None,
    };
    nl.create_macvlan_endpoint(&p)
        .await
        .expect("create macvlan");

    let eth0 = ip_json(&["-n", &ns, "-d", "addr", "show", "dev", "eth0"]);
    let eth0 = &eth0[0];
    assert_eq!(eth0["linkinfo"]["info_kind"], "macvlan", "{eth0}");
    assert_eq!(eth0["linkinfo"]["info_data"]["mode"], "bridge", "{eth0}");
    assert_eq!(eth0["address"], mac_str(p.mac).as_str(), "{eth0}");
    assert_eq!(eth0["mtu"], 1400);
    assert!(has_flag(eth0, "UP"), "{eth0}");
    assert!(
        eth0["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["local"] == ip.to_string().as_str() && a["prefixlen"] == 24),
        "{eth0}"
    );
    let routes = ip_json(&["-n", &ns, "route", "show", "default"]);
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!(routes[0]["gateway"], lan.router.to_string().as_str());
    assert_eq!(routes[0]["dev"], "eth0");
    if has_ipv6() {
        for key in ["all", "default", "eth0"] {
            assert_eq!(disable_ipv6(Some(&ns), key), "1", "{key}");
        }
        assert_eq!(ipv6_addrs(Some(&ns), None), Vec::<Value>::new());
    }
    // Nothing of it shows up in the host namespace.
    assert!(link_json(None, "eth0").is_none_or(|l| l["address"] != mac_str(p.mac).as_str()));

    // Traffic over the parent to the LAN's router, both ways.
    assert!(ping_from(&ns, lan.router), "ping {} from {ns}", lan.router);
    assert!(ping_from(&lan.ns, ip), "ping {ip} from the lan");

    // Re-adoption is idempotent and fixes a changed MAC.
    nl.create_macvlan_endpoint(&p).await.expect("adopt");
    run(&[
        "ip",
        "-n",
        &ns,
        "link",
        "set",
        "eth0",
        "address",
        "02:42:0a:e9:00:63",
    ]);
    nl.create_macvlan_endpoint(&p).await.expect("adopt again");
    let eth0 = link_json(Some(&ns), "eth0").unwrap();
    assert_eq!(eth0["address"], mac_str(p.mac).as_str(), "{eth0}");
    assert!(ping_from(&ns, lan.router), "ping after re-adoption");

    // Asked for an ifindex of its own, it is replaced by one that has it,
    // and `guard` runs before it comes up.
    let numbered = MacvlanPlumbing {
        index: Some((1 << 30) | 7),
        ..p.clone()
    };
    let seen = std::sync::Mutex::new(None);
    nl.create_guarded_macvlan(&numbered, async |index| {
        *seen.lock().unwrap() = Some((
            index,
            has_flag(&link_json(Some(&ns), "eth0").unwrap(), "UP"),
        ));
        Ok(())
    })
    .await
    .expect("numbered");
    assert_eq!(*seen.lock().unwrap(), Some(((1 << 30) | 7, false)));
    assert_eq!(
        link_json(Some(&ns), "eth0").unwrap()["ifindex"],
        (1 << 30) | 7
    );
    assert!(ping_from(&ns, lan.router), "ping after renumbering");
    // A failing guard leaves no macvlan behind.
    nl.remove_link_in_netns(&Netns::from(ns.as_str()), "eth0")
        .await
        .expect("remove");
    let err = nl
        .create_guarded_macvlan(&numbered, async |_| Err(io::Error::other("refused")))
        .await
        .expect_err("guard refused");
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(
        link_json(Some(&ns), "eth0").is_none(),
        "macvlan left behind"
    );
    nl.create_macvlan_endpoint(&p).await.expect("create again");

    // Removing it, then again, then in a missing namespace: all fine.
    nl.remove_link_in_netns(&Netns::from(ns.as_str()), "eth0")
        .await
        .expect("remove");
    assert!(link_json(Some(&ns), "eth0").is_none());
    nl.remove_link_in_netns(&Netns::from(ns.as_str()), "eth0")
        .await
        .expect("remove again");
    nl.remove_link_in_netns(&Netns::from(unique("nl")), "eth0")
        .await
        .expect("missing netns");
    assert!(link_json(None, &lan.parent).is_some(), "parent kept");
}

#[tokio::test]
async fn macvlan_failures_leave_nothing_behind() {
    require_root();
    let mut cleanup = Cleanup::default();
    let lan = make_lan(&mut cleanup);
    let ns = unique("nl");
    cleanup.netns.push(ns.clone());
    let nl = Netlink::new().await.expect("netlink");
    let ip = Ipv4Addr::new(10, 233, lan.x, 2);
    let p = MacvlanPlumbing {
        netns: Netns::from(ns.as_str()),
        parent: lan.parent.clone(),
        ifname: "eth0".into(),
        mac: mac_of(ip),
        ip,
        prefix_len: 24,
        gateway: lan.router,
        default_route: true,
        mtu: None,
        index: None,
    };
    let only_lo = |ns: &str| {
        let links = ip_json(&["-n", ns, "link", "show"]);
        links
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] == "lo")
    };

    // Namespace missing.
    let err = nl.create_macvlan_endpoint(&p).await.expect_err("no netns");
    assert!(matches!(err, NetlinkError::NetnsNotFound(_)), "{err}");
    netns::create(&ns).expect("create netns");

    // Parent missing: named in the error, nothing created.
    let missing = MacvlanPlumbing {
        parent: unique("nlx"),
        ..p.clone()
    };
    let err = nl
        .create_macvlan_endpoint(&missing)
        .await
        .expect_err("no parent");
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains(&missing.parent), "{err}");
    assert!(only_lo(&ns));

    // Fails half-way (gateway off-link, refused after the macvlan exists):
    // rolled back.
    let unreachable = MacvlanPlumbing {
        gateway: Ipv4Addr::new(10, 234, lan.x, 1),
        ..p.clone()
    };
    let err = nl
        .create_macvlan_endpoint(&unreachable)
        .await
        .expect_err("gateway off-link");
    assert!(
        err.to_string().contains("default route") && err.to_string().contains("macvlan eth0"),
        "{err}"
    );
    assert!(err.raw_os_error().is_some(), "{err:?}");
    assert!(only_lo(&ns), "macvlan rolled back");

    // The kernel refuses the create (MTU above the parent's): nothing made.
    let too_big = MacvlanPlumbing {
        mtu: Some(9000),
        ..p.clone()
    };
    let err = nl
        .create_macvlan_endpoint(&too_big)
        .await
        .expect_err("mtu above parent");
    assert!(err.raw_os_error().is_some(), "{err:?}");
    assert!(only_lo(&ns));

    // The name is taken by something that is not our macvlan: refused and
    // left alone (a bridge stands in; this kernel has no dummy driver).
    run(&["ip", "-n", &ns, "link", "add", "eth0", "type", "bridge"]);
    let err = nl
        .create_macvlan_endpoint(&p)
        .await
        .expect_err("eth0 taken");
    assert!(matches!(err, NetlinkError::LinkConflict { .. }), "{err}");
    assert!(link_json(Some(&ns), "eth0").is_some(), "kept");
    nl.remove_link_in_netns(&Netns::from(ns.as_str()), "eth0")
        .await
        .unwrap();

    // A macvlan of that name on another parent is not ours either.
    let other = make_lan(&mut cleanup);
    let on_other = MacvlanPlumbing {
        parent: other.parent.clone(),
        ..p.clone()
    };
    nl.create_macvlan_endpoint(&on_other)
        .await
        .expect("macvlan on the other parent");
    let err = nl
        .create_macvlan_endpoint(&p)
        .await
        .expect_err("other parent");
    assert!(matches!(err, NetlinkError::LinkConflict { .. }), "{err}");
    nl.remove_link_in_netns(&Netns::from(ns.as_str()), "eth0")
        .await
        .unwrap();

    // Invalid names are refused up front.
    let bad = MacvlanPlumbing {
        ifname: "a-name-longer-than-15".into(),
        ..p.clone()
    };
    assert!(matches!(
        nl.create_macvlan_endpoint(&bad).await,
        Err(NetlinkError::InvalidName { .. })
    ));

    // And after all that, a clean create still works.
    nl.create_macvlan_endpoint(&p)
        .await
        .expect("create after failures");
    assert!(ping_from(&ns, lan.router));
}

#[tokio::test]
async fn endpoint_failures_leave_nothing_behind() {
    require_root();
    let mut cleanup = Cleanup::default();
    let ns = unique("nl");
    let br = unique("nlb");
    let host = unique("nlv");
    let other = unique("nlw");
    cleanup
        .links
        .extend([host.clone(), br.clone(), other.clone()]);
    cleanup.netns.push(ns.clone());
    let x = test_subnet();
    let gateway = Ipv4Addr::new(10, 231, x, 1);
    let nl = Netlink::new().await.expect("netlink");
    nl.ensure_bridge(&br, gateway, 24, mac_of(gateway))
        .await
        .expect("bridge");

    let ep = EndpointPlumbing {
        netns: Netns::from(ns.as_str()),
        host_ifname: host.clone(),
        ifname: "eth0".into(),
        mac: [0x02, 0x42, 10, 231, x, 2],
        ip: Ipv4Addr::new(10, 231, x, 2),
        prefix_len: 24,
        gateway,
        default_route: true,
        bridge: Some(br.clone()),
        mtu: None,
    };

    // Namespace missing: fails before creating anything.
    let err = nl.create_endpoint(&ep).await.expect_err("no netns");
    assert!(matches!(err, NetlinkError::NetnsNotFound(_)), "{err}");
    assert!(err.to_string().contains(&ns), "{err}");
    assert!(link_json(None, &host).is_none(), "no host veth left");

    netns::create(&ns).expect("create netns");

    // Fails half-way (the default route's gateway is not on the link, so the
    // kernel refuses it after the pair exists): everything is rolled back.
    let unreachable = EndpointPlumbing {
        gateway: Ipv4Addr::new(10, 232, x, 1),
        ..ep.clone()
    };
    let err = nl
        .create_endpoint(&unreachable)
        .await
        .expect_err("gateway off-link");
    assert!(
        err.to_string().contains("default route") && err.to_string().contains(&host),
        "error names the step and the endpoint: {err}"
    );
    assert!(err.raw_os_error().is_some(), "{err:?}");
    assert!(link_json(None, &host).is_none(), "host veth rolled back");
    assert!(link_json(Some(&ns), "eth0").is_none(), "peer rolled back");
    assert!(neighbour(&br, ep.ip).is_none(), "no neighbour entry left");

    // Missing bridge: also after the pair exists, also rolled back.
    let no_bridge = EndpointPlumbing {
        bridge: Some(unique("nlx")),
        ..ep.clone()
    };
    let err = nl.create_endpoint(&no_bridge).await.expect_err("no bridge");
    assert!(err.is_not_found(), "{err}");
    assert!(link_json(None, &host).is_none(), "host veth rolled back");
    assert!(link_json(Some(&ns), "eth0").is_none(), "peer rolled back");

    // The container-side name is taken inside the namespace: the atomic
    // create fails and no host veth appears.
    run(&["ip", "-n", &ns, "link", "add", "eth0", "type", "bridge"]);
    let err = nl.create_endpoint(&ep).await.expect_err("eth0 taken");
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
    assert!(err.to_string().contains("File exists"), "{err}");
    assert!(link_json(None, &host).is_none());
    run(&["ip", "-n", &ns, "link", "del", "eth0"]);

    // A host link of that name that is not our veth is not adopted. (The
    // kernel here has no dummy driver; bridges stand in for "some other link".)
    run(&["ip", "link", "add", &host, "type", "bridge"]);
    let err = nl.create_endpoint(&ep).await.expect_err("not a veth");
    assert!(matches!(err, NetlinkError::LinkConflict { .. }), "{err}");
    assert!(link_json(None, &host).is_some(), "someone else's link kept");
    nl.delete_link(&host).await.unwrap();

    // ensure_bridge refuses to adopt something that is not a bridge (this
    // kernel has no dummy driver, so a veth pair stands in).
    let peer = unique("nlp");
    run(&[
        "ip", "link", "add", &other, "type", "veth", "peer", "name", &peer,
    ]);
    let err = nl
        .ensure_bridge(&other, gateway, 24, mac_of(gateway))
        .await
        .expect_err("not a bridge");
    assert!(matches!(err, NetlinkError::LinkConflict { .. }), "{err}");

    // Names the kernel would reject are refused up front.
    let long = EndpointPlumbing {
        host_ifname: "a-name-longer-than-15".into(),
        ..ep.clone()
    };
    assert!(matches!(
        nl.create_endpoint(&long).await,
        Err(NetlinkError::InvalidName { .. })
    ));

    // And after all that, a clean create still works.
    nl.create_endpoint(&ep)
        .await
        .expect("create after failures");
    assert!(neighbour(&br, ep.ip).is_some());
    nl.remove_endpoint(&host, Some((&br, ep.ip))).await.unwrap();
}

/// Reads `pgrp` and `session` from /proc/PID/stat.
fn pgrp_and_session(pid: u32) -> (u32, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .collect();
    // state ppid pgrp session ...
    (rest[2].parse().unwrap(), rest[3].parse().unwrap())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn sandbox_spawn_logs_inside_netns() {
    require_root();
    let mut cleanup = Cleanup::default();
    let ns = unique("nl");
    cleanup.netns.push(ns.clone());
    let log = std::env::temp_dir().join(format!("{}.log", unique("nl")));
    cleanup.files.push(log.clone());
    netns::create(&ns).unwrap();
    let ns_path = netns::path(&ns);

    let cmd = strings(&[
        "sh",
        "-c",
        "ip -o addr show; readlink /proc/self/ns/net; echo to-stderr >&2",
    ]);
    let (pid, start) = sandbox::spawn(Some(&ns_path), &cmd, &log).expect("spawn");
    cleanup.processes.push((pid, start.clone()));
    assert!(
        wait_until(Duration::from_secs(5), || !process::running(pid, &start)),
        "command finished"
    );
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(out.contains(&netns_id(&ns)), "ran inside {ns}: {out}");
    assert!(out.contains("127.0.0.1"), "sees its own lo: {out}");
    // The namespace has only lo: no host interface shows up.
    let iface_lines = out.lines().filter(|l| l.contains(" inet")).count();
    assert!(
        out.lines()
            .filter(|l| l.contains(" inet"))
            .all(|l| l.contains(" lo ")),
        "{iface_lines} address lines, all on lo: {out}"
    );
    assert!(out.contains("to-stderr"), "stderr goes to the log: {out}");

    // The log is appended to, and None means the host namespace.
    let (pid, start) = sandbox::spawn(None, &strings(&["readlink", "/proc/self/ns/net"]), &log)
        .expect("spawn on host");
    cleanup.processes.push((pid, start.clone()));
    assert!(wait_until(Duration::from_secs(5), || !process::running(
        pid, &start
    )));
    let out = std::fs::read_to_string(&log).unwrap();
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert!(out.contains(&netns_id(&ns)), "first run still there: {out}");
    assert!(
        out.contains(&*ours.to_string_lossy()),
        "second run on the host: {out}"
    );

    // Errors name the problem like Docker does.
    let err = sandbox::spawn(Some(&ns_path), &strings(&["nl-no-such-binary"]), &log)
        .expect_err("missing binary");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        "exec: \"nl-no-such-binary\": executable file not found in $PATH"
    );
    let err = sandbox::spawn(None, &[], &log).expect_err("empty command");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let missing = netns::path(&unique("nl"));
    let err = sandbox::spawn(Some(&missing), &strings(&["true"]), &log).expect_err("missing netns");
    assert!(err.to_string().contains("not found"), "{err}");
}

#[test]
fn sandbox_exec_returns_status() {
    require_root();
    let mut cleanup = Cleanup::default();
    let ns = unique("nl");
    cleanup.netns.push(ns.clone());
    netns::create(&ns).unwrap();
    let ns_path = netns::path(&ns);

    let status = sandbox::exec(Some(&ns_path), &strings(&["sh", "-c", "exit 3"])).unwrap();
    assert_eq!(status.code(), Some(3));
    let check = format!(
        "test \"$(readlink /proc/self/ns/net)\" = '{}'",
        netns_id(&ns)
    );
    let status = sandbox::exec(Some(&ns_path), &strings(&["sh", "-c", &check])).unwrap();
    assert!(status.success(), "exec runs inside the namespace");
    let status = sandbox::exec(None, &strings(&["sh", "-c", &check])).unwrap();
    assert!(!status.success(), "None runs in the host namespace");

    let err = sandbox::exec(Some(&ns_path), &strings(&["nl-no-such-binary", "x"]))
        .expect_err("missing binary");
    assert!(
        err.to_string()
            .contains("executable file not found in $PATH"),
        "{err}"
    );
    let err = sandbox::exec(None, &strings(&["/nonexistent/bin"])).expect_err("missing path");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(matches!(sandbox::exec(None, &[]), Err(e) if e.kind() == io::ErrorKind::InvalidInput));
}

#[test]
fn sandbox_running_and_stop() {
    require_root();
    let mut cleanup = Cleanup::default();
    let log = std::env::temp_dir().join(format!("{}.log", unique("nl")));
    cleanup.files.push(log.clone());

    // A polite process: SIGTERM ends it well within the grace period.
    let (pid, start) = sandbox::spawn(None, &strings(&["sleep", "100"]), &log).unwrap();
    cleanup.processes.push((pid, start.clone()));
    assert!(process::running(pid, &start));
    assert_eq!(
        pgrp_and_session(pid),
        (pid, pid),
        "own process group and session"
    );
    let started = Instant::now();
    process::stop(
        vec![process::hold(pid, &start).unwrap()],
        Duration::from_secs(10),
    );
    assert!(!process::running(pid, &start));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait out the grace"
    );

    // A stubborn one with a child in its group: both get SIGKILL after the
    // grace period.
    let (pid, start) = sandbox::spawn(
        None,
        &strings(&["sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"]),
        &log,
    )
    .unwrap();
    cleanup.processes.push((pid, start.clone()));
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    process::stop(
        vec![process::hold(pid, &start).unwrap()],
        Duration::from_millis(300),
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!process::running(pid, &start));
    // SAFETY: kill with signal 0 only probes the group.
    let group_left = unsafe { libc::kill(-(pid as i32), 0) } == 0;
    assert!(!group_left, "nothing left in the process group");

    // A zombie counts as dead, and cannot be held.
    let child = Command::new("true").spawn().unwrap();
    let zpid = child.id();
    let zstart = process::start_of(zpid).unwrap();
    assert!(wait_until(Duration::from_secs(5), || !process::running(
        zpid, &zstart
    )));
    assert!(
        Path::new(&format!("/proc/{zpid}")).exists(),
        "still a zombie"
    );
    assert!(process::hold(zpid, &zstart).is_none());
    let mut child = child;
    child.wait().unwrap();

    assert!(!process::running(0, &zstart));
    assert!(process::hold(0, &zstart).is_none());
    process::stop(Vec::new(), Duration::from_millis(10));
}
