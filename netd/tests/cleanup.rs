//! `netd system cleanup` after a real daemon: what a stopped daemon keeps
//! in the kernel on purpose (pinned maps and links, the uplink's program,
//! the four socket hooks on the root cgroup, bridges, veths and their TC
//! filters, namespaces and their processes, `/etc/netns` entries) is all
//! gone afterwards, as the kernel reports it (`ip`, `bpftool`, the root
//! cgroup's programs through BPF_PROG_QUERY). Subnets 10.172.* are this
//! file's.

mod common;

use std::process::{Command, Output};

use common::{Daemon, alive, stderr, stdout};
use netd::dataplane::{SocketHook, cgroup2_root};
use serde_json::Value;

fn bpftool(args: &[&str]) -> Option<Value> {
    let out = Command::new("bpftool")
        .arg("-j")
        .args(args)
        .output()
        .expect("bpftool runs (cargo xtask setup installs it)");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// The kernel ids of what the daemon pinned: (link id, program id) of the
/// uplink's program and of each socket hook.
fn pinned_links(d: &Daemon) -> Vec<(u64, u64)> {
    let links = d.bpffs.join("links");
    let mut pins: Vec<_> = SocketHook::ALL
        .iter()
        .map(|h| links.join(format!("cgroup_{}", h.as_str())))
        .collect();
    pins.push(links.join(format!("{}_uplink", d.uplink)));
    pins.iter()
        .map(|pin| {
            let link = bpftool(&["link", "show", "pinned", &pin.display().to_string()])
                .unwrap_or_else(|| panic!("{} is pinned", pin.display()));
            (
                link["id"].as_u64().unwrap(),
                link["prog_id"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn link_exists(id: u64) -> bool {
    bpftool(&["link", "show", "id", &id.to_string()]).is_some()
}

/// Programs attached to the root cgroup (BPF_PROG_QUERY, as bpftool asks).
fn root_cgroup_programs() -> Vec<u64> {
    let root = cgroup2_root().expect("cgroup2 is mounted");
    bpftool(&["cgroup", "show", &root.display().to_string()])
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect()
}

fn resolv_dirs(d: &Daemon) -> Vec<String> {
    std::fs::read_dir("/etc/netns")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{}-", d.prefix)))
                .collect()
        })
        .unwrap_or_default()
}

fn cleanup(d: &Daemon, extra: &[&str]) -> Output {
    let bpffs = d.bpffs.display().to_string();
    let socket = d.socket().display().to_string();
    let mut args = vec![
        "system", "cleanup", "--prefix", &d.prefix, "--bpffs", &bpffs, "--socket", &socket,
    ];
    args.extend_from_slice(extra);
    d.netd(&args)
}

/// A daemon with one of everything: a user network and the default one
/// (two bridges), a container with a process and a published port, one
/// without (two namespaces, two veths, resolv.conf files), the uplink's
/// program and the socket hooks. Returns the container process's pid.
/// Each test passes its own subnet: the daemons run side by side in one
/// network namespace, and a daemon refuses a subnet another one routes.
fn populated(subnet: &str) -> (Daemon, u32) {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", subnet, "n1"]);
    d.ok(&[
        "container",
        "run",
        "--network",
        "n1",
        "-p",
        "8080:80",
        "web",
        "--",
        "sleep",
        "1000",
    ]);
    d.ok(&["container", "create", "client"]);
    let web = &d.json(&["container", "inspect", "web"])[0];
    let pid = web["State"]["Pid"].as_u64().expect("web runs") as u32;
    assert!(alive(pid));
    (d, pid)
}

#[test]
fn cleanup_leaves_nothing_of_a_stopped_daemon() {
    let (mut d, pid) = populated("10.172.0.0/24");
    let pinned = pinned_links(&d);

    let refused = cleanup(&d, &[]);
    assert!(!refused.status.success(), "{}", stdout(&refused));
    assert!(
        stderr(&refused).contains("a netd daemon is serving"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(d.own_links().len(), 4, "nothing removed while refused");

    // A clean stop keeps the data plane: that is what needs cleaning up.
    assert!(d.stop().success());
    let links = d.own_links();
    assert_eq!(links.len(), 4, "two bridges, two veths: {links:?}");
    assert_eq!(d.own_netns().len(), 2);
    assert_eq!(resolv_dirs(&d).len(), 2);
    assert!(pinned.iter().all(|(link, _)| link_exists(*link)));
    let attached = root_cgroup_programs();
    for (_, program) in &pinned[..SocketHook::ALL.len()] {
        assert!(
            attached.contains(program),
            "hook {program} on the root cgroup"
        );
    }
    assert!(alive(pid));

    let state_dir = d.state_dir().display().to_string();
    let out = cleanup(&d, &["--state-dir", &state_dir]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let report = stdout(&out);
    for line in [
        "removed link",
        "removed namespace",
        "removed pins",
        "removed state directory",
        "removed processes",
    ] {
        assert!(report.contains(line), "{line} in:\n{report}");
    }

    assert_eq!(d.own_links(), Vec::<String>::new());
    assert_eq!(d.own_netns(), Vec::<String>::new());
    assert_eq!(resolv_dirs(&d), Vec::<String>::new());
    assert!(!d.bpffs.exists(), "pins and maps gone");
    for (link, _) in &pinned {
        assert!(!link_exists(*link), "link {link} detached and released");
    }
    let attached = root_cgroup_programs();
    for (_, program) in &pinned {
        assert!(!attached.contains(program), "{program} off the root cgroup");
    }
    assert!(!alive(pid), "the container's process is stopped");
    assert!(!d.state_dir().exists());
    assert!(!d.socket().exists());
    // The uplink is the test's, not netd's: it stays.
    assert!(
        Command::new("ip")
            .args(["link", "show", &d.uplink])
            .output()
            .unwrap()
            .status
            .success()
    );

    // Nothing left: a second run finds nothing.
    let again = cleanup(&d, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).starts_with("nothing to remove"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn forced_cleanup_under_a_running_daemon() {
    let (d, pid) = populated("10.172.1.0/24");
    let pinned = pinned_links(&d);
    let out = cleanup(&d, &["--force"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(d.own_links(), Vec::<String>::new());
    assert_eq!(d.own_netns(), Vec::<String>::new());
    assert!(!alive(pid));
    for (link, _) in &pinned {
        assert!(!link_exists(*link), "link {link} released");
    }
}
