//! The engine as a command loop: reads never wait behind a command in
//! progress, slow waits (a process that ignores SIGTERM) hold up only the
//! caller that asked for them, and a client that goes away mid-command
//! leaves the whole change or none of it, in the store and in the kernel.
//!
//! No assertion here is about time: "did not wait" is shown by order (the
//! reads were answered while the slow removal was still running).

mod common;

use std::process::Child;
use std::thread::sleep;
use std::time::Duration;

use common::{Daemon, eventually};

/// A process that survives SIGTERM: `rm -f` needs its full grace period
/// (5 s) and then SIGKILL.
const STUBBORN: &[&str] = &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"];

fn status(d: &Daemon, name: &str) -> Option<String> {
    let out = d.netd(&["container", "inspect", name]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(v[0]["State"]["Status"].as_str().unwrap().to_string())
}

fn run_stubborn(d: &Daemon, name: &str) {
    let mut args = vec!["container", "run", "--network", "n", name, "--"];
    args.extend_from_slice(STUBBORN);
    d.ok(&args);
}

fn still_running(child: &mut Child) -> bool {
    child.try_wait().unwrap().is_none()
}

#[test]
fn reads_and_other_commands_do_not_wait_for_a_slow_removal() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.232.0.0/24", "n"]);
    run_stubborn(&d, "slow");
    let mut rm = d.spawn_cli(&["container", "rm", "-f", "slow"]);
    eventually("the removal to begin", || {
        status(&d, "slow").as_deref() == Some("removing")
    });
    // Everything below is answered while the process is still being
    // stopped.
    let ls = d.ok(&["network", "ls"]);
    assert!(ls.contains(" n "), "{ls}");
    let inspect = d.json(&["network", "inspect", "n"]);
    assert_eq!(inspect[0]["Name"], "n");
    assert!(d.ping().contains("200 OK"));
    assert!(d.metrics().contains("netd_containers 1"));
    // Another command runs too, and the removed container's address stays
    // taken until its veth is gone.
    d.ok(&["network", "create", "other"]);
    d.ok(&["container", "create", "--network", "n", "next"]);
    let next = d.json(&["container", "inspect", "next"]);
    let slow_ip = d.json(&["container", "inspect", "slow"])[0]["NetworkSettings"]["Networks"]["n"]
        ["IPAddress"]
        .clone();
    assert_ne!(
        next[0]["NetworkSettings"]["Networks"]["n"]["IPAddress"], slow_ip,
        "an address in use by a container being removed was handed out"
    );
    // A second removal of the same container is refused, not queued.
    let err = d.fails(&["container", "rm", "-f", "slow"]);
    assert!(
        err.contains("removal of container slow is already in progress"),
        "{err}"
    );
    assert!(
        still_running(&mut rm),
        "the reads waited for the removal to end"
    );
    assert!(rm.wait().unwrap().success(), "{}", d.log());
    assert_eq!(status(&d, "slow"), None);
    d.assert_consistent(3);
}

#[test]
fn a_client_killed_mid_removal_leaves_it_done() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.233.0.0/24", "n"]);
    run_stubborn(&d, "victim");
    let ns = d.netns("victim");
    let mut rm = d.spawn_cli(&["container", "rm", "-f", "victim"]);
    eventually("the removal to begin", || {
        status(&d, "victim").as_deref() == Some("removing")
    });
    rm.kill().unwrap();
    rm.wait().unwrap();
    eventually("the removal to end", || status(&d, "victim").is_none());
    assert!(!common::netns_exists(&ns), "namespace left behind");
    d.assert_consistent(2);
    // Its address is free again, and only now.
    d.ok(&[
        "container",
        "create",
        "--network",
        "n",
        "--ip",
        "10.233.0.2",
        "again",
    ]);
    d.assert_consistent(2);
}

#[test]
fn a_client_killed_mid_create_leaves_all_or_nothing() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.234.0.0/24", "n"]);
    for (i, pause_ms) in [0u64, 5, 20, 60].into_iter().enumerate() {
        let name = format!("c{i}");
        let mut create = d.spawn_cli(&["container", "create", "--network", "n", &name]);
        sleep(Duration::from_millis(pause_ms));
        create.kill().unwrap();
        create.wait().unwrap();
        // A command sent after the killed one runs after it: once it is
        // answered, the create has finished or never arrived.
        d.ok(&["network", "create", &format!("barrier{i}")]);
        d.assert_consistent(2 + i + 1);
    }
}

#[test]
fn a_client_killed_mid_service_create_leaves_all_or_nothing() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.235.0.0/24", "n"]);
    let mut create = d.spawn_cli(&[
        "service",
        "create",
        "--network",
        "n",
        "--replicas",
        "20",
        "web",
        "--",
        "sleep",
        "1000",
    ]);
    // Answers show a command's whole change only, so its progress is read
    // from the daemon's log.
    eventually("the first replicas", || {
        d.log().contains("container=web.2 ")
    });
    create.kill().unwrap();
    create.wait().unwrap();
    d.ok(&["network", "create", "barrier"]);
    let svc = d.json(&["service", "inspect", "web"]);
    let tasks = svc[0]["Tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 20, "{svc}");
    assert!(tasks.iter().all(|t| t["Running"] == true), "{svc}");
    d.assert_consistent(3);
    d.ok(&["service", "rm", "web"]);
    d.assert_consistent(3);
}

#[test]
fn an_interrupted_removal_is_finished_by_the_next_start() {
    let mut d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.236.0.0/24", "n"]);
    run_stubborn(&d, "half");
    let mut rm = d.spawn_cli(&["container", "rm", "-f", "half"]);
    eventually("the removal to begin", || {
        status(&d, "half").as_deref() == Some("removing")
    });
    // Killed while the process is being stopped: the record says
    // `removing`, the process still runs.
    d.kill9();
    // The client learns that the daemon went away mid-removal.
    assert!(!rm.wait().unwrap().success());
    let half = d
        .stored_container("half")
        .expect("record kept while removing");
    assert_eq!(half["removing"], true);
    d.start_again();
    eventually("the removal to be finished", || {
        status(&d, "half").is_none()
    });
    let pid = half["process"]["pid"].as_u64().unwrap() as i32;
    // SAFETY: signal 0 only asks whether the process exists.
    eventually(
        "the process to be gone",
        || unsafe { libc::kill(pid, 0) } != 0,
    );
    d.assert_consistent(2);
}
