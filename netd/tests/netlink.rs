//! Kernel plumbing tests: namespaces, bridges, veth endpoints and sandboxed
//! processes, checked against what `ip -j` reports.
//!
//! They need root (they are skipped otherwise) and run in parallel: every
//! object gets a unique name (`nl<pid><n>`) and a guard deletes it even if
//! the test panics. Traffic only goes to addresses on a bridge and
//! namespaces the test itself made (10.231.x.0/24).

use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use netd::netlink::{EndpointPlumbing, Netlink, NetlinkError, netns};
use netd::sandbox;
use serde_json::Value;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, short enough for an interface
/// name (15 bytes): `nl` + pid (at most 7 digits) + a counter.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A /24 in 10.231.0.0/16 unlikely to be used by a concurrent test run:
/// the third octet mixes the pid with a per-process counter.
fn test_subnet() -> u8 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let k = NEXT.fetch_add(1, Ordering::Relaxed) % 8;
    ((std::process::id() % 32) * 8 + k) as u8
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping: this test needs root");
    }
    root
}

/// Deletes what a test made, on success and on panic alike.
#[derive(Default)]
struct Cleanup {
    links: Vec<String>,
    netns: Vec<String>,
    files: Vec<PathBuf>,
    pids: Vec<u32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for pid in &self.pids {
            if sandbox::alive(*pid) {
                sandbox::stop(*pid, Duration::from_millis(100));
            }
        }
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

/// Runs `ip -j ARGS` and parses its output.
fn ip_json(args: &[&str]) -> Value {
    let out = Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip -j {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ip -j prints JSON")
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

fn mac_string(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
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

#[test]
fn netns_create_exists_delete() {
    if !is_root() {
        return;
    }
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
    if !is_root() {
        return;
    }
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

    let br_index = nl.ensure_bridge(&br, gateway, 24).await.expect("bridge");
    assert_eq!(
        nl.ensure_bridge(&br, gateway, 24).await.expect("adopt"),
        br_index,
        "ensure_bridge adopts the existing bridge"
    );
    assert_eq!(nl.link_index(&br).await.unwrap(), Some(br_index));
    let br_link = link_json(None, &br).expect("bridge exists");
    assert!(has_flag(&br_link, "UP"), "{br_link}");
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
        netns: ns.clone(),
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

    // Container side: name, MAC, MTU, address, up.
    let eth0 = ip_json(&["-n", &ns, "addr", "show", "dev", "eth0"]);
    let eth0 = &eth0[0];
    assert_eq!(eth0["address"], mac_string(mac0).as_str(), "{eth0}");
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

    // Re-adoption: same request, same index, nothing changes.
    assert_eq!(
        nl.create_endpoint(&ep0).await.expect("adopt eth0"),
        host0_index
    );

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
    let host1_index = nl.create_endpoint(&ep1).await.expect("create eth1");
    assert_ne!(host1_index, host0_index);
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
    nl.set_default_route(&ns, "eth1", gateway)
        .await
        .expect("default via eth1");
    let routes = ip_json(&["-n", &ns, "route", "show", "default"]);
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!(routes[0]["dev"], "eth1");
    assert_eq!(routes[0]["gateway"], gateway.to_string().as_str());
    let err = nl
        .set_default_route(&ns, "eth9", gateway)
        .await
        .expect_err("no eth9");
    assert!(err.is_not_found(), "{err}");

    let prefixed = nl.links_with_prefix(&host0).await.unwrap();
    assert_eq!(prefixed, vec![host0.clone()]);

    // Removing deletes both ends; removing again is fine.
    nl.remove_endpoint(&host0).await.expect("remove eth0");
    assert!(link_json(None, &host0).is_none());
    assert!(link_json(Some(&ns), "eth0").is_none(), "peer went too");
    assert_eq!(nl.link_index(&host0).await.unwrap(), None);
    nl.remove_endpoint(&host0).await.expect("remove again");
    nl.remove_endpoint(&host1).await.expect("remove eth1");
    assert!(link_json(Some(&ns), "eth1").is_none());

    nl.delete_link(&br).await.expect("delete bridge");
    assert!(link_json(None, &br).is_none());
    nl.delete_link(&br).await.expect("delete missing bridge");
}

#[tokio::test]
async fn endpoint_failures_leave_nothing_behind() {
    if !is_root() {
        return;
    }
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
    nl.ensure_bridge(&br, gateway, 24).await.expect("bridge");

    let ep = EndpointPlumbing {
        netns: ns.clone(),
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
    let out = Command::new("ip")
        .args(["-n", &ns, "link", "add", "eth0", "type", "bridge"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = nl.create_endpoint(&ep).await.expect_err("eth0 taken");
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST), "{err}");
    assert!(err.to_string().contains("File exists"), "{err}");
    assert!(link_json(None, &host).is_none());
    let out = Command::new("ip")
        .args(["-n", &ns, "link", "del", "eth0"])
        .output()
        .unwrap();
    assert!(out.status.success());

    // A host link of that name that is not our veth is not adopted. (The
    // kernel here has no dummy driver; bridges stand in for "some other link".)
    let out = Command::new("ip")
        .args(["link", "add", &host, "type", "bridge"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = nl.create_endpoint(&ep).await.expect_err("not a veth");
    assert!(matches!(err, NetlinkError::LinkConflict { .. }), "{err}");
    assert!(link_json(None, &host).is_some(), "someone else's link kept");
    nl.delete_link(&host).await.unwrap();

    // ensure_bridge refuses to adopt something that is not a bridge (this
    // kernel has no dummy driver, so a veth pair stands in).
    let peer = unique("nlp");
    let out = Command::new("ip")
        .args(["link", "add", &other, "type", "veth", "peer", "name", &peer])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = nl
        .ensure_bridge(&other, gateway, 24)
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
    nl.remove_endpoint(&host).await.unwrap();
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
    if !is_root() {
        return;
    }
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
    let pid = sandbox::spawn(Some(&ns_path), &cmd, &log).expect("spawn");
    cleanup.pids.push(pid);
    assert!(
        wait_until(Duration::from_secs(5), || !sandbox::alive(pid)),
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
    let pid = sandbox::spawn(None, &strings(&["readlink", "/proc/self/ns/net"]), &log)
        .expect("spawn on host");
    cleanup.pids.push(pid);
    assert!(wait_until(Duration::from_secs(5), || !sandbox::alive(pid)));
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
    if !is_root() {
        return;
    }
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
fn sandbox_alive_and_stop() {
    if !is_root() {
        return;
    }
    let mut cleanup = Cleanup::default();
    let log = std::env::temp_dir().join(format!("{}.log", unique("nl")));
    cleanup.files.push(log.clone());

    // A polite process: SIGTERM ends it well within the grace period.
    let pid = sandbox::spawn(None, &strings(&["sleep", "100"]), &log).unwrap();
    cleanup.pids.push(pid);
    assert!(sandbox::alive(pid));
    assert_eq!(
        pgrp_and_session(pid),
        (pid, pid),
        "own process group and session"
    );
    let started = Instant::now();
    sandbox::stop(pid, Duration::from_secs(10));
    assert!(!sandbox::alive(pid));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait out the grace"
    );

    // A stubborn one with a child in its group: both get SIGKILL after the
    // grace period.
    let pid = sandbox::spawn(
        None,
        &strings(&["sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"]),
        &log,
    )
    .unwrap();
    cleanup.pids.push(pid);
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    sandbox::stop(pid, Duration::from_millis(300));
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(!sandbox::alive(pid));
    // SAFETY: kill with signal 0 only probes the group.
    let group_left = unsafe { libc::kill(-(pid as i32), 0) } == 0;
    assert!(!group_left, "nothing left in the process group");

    // A zombie counts as dead.
    let child = Command::new("true").spawn().unwrap();
    let zpid = child.id();
    assert!(wait_until(Duration::from_secs(5), || !sandbox::alive(zpid)));
    assert!(
        Path::new(&format!("/proc/{zpid}")).exists(),
        "still a zombie"
    );
    let mut child = child;
    child.wait().unwrap();

    assert!(!sandbox::alive(0));
    sandbox::stop(0, Duration::from_millis(10));
}
