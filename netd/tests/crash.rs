//! Crash safety: the daemon is killed with SIGKILL in the middle of a burst
//! of creates and removals, restarted, and must then hold exactly what it
//! acknowledged: every container it confirmed is there with its namespace
//! and veth, nothing it confirmed removing is left, no address is handed out
//! twice, and no namespace or link is leaked.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Daemon, ip_json_in, netns_exists};
use serde_json::Value;

/// What the burst saw acknowledged.
#[derive(Default)]
struct Acked {
    created: BTreeSet<String>,
    /// Removals sent; one cut off by the kill may or may not have happened.
    remove_sent: BTreeSet<String>,
    removed: BTreeSet<String>,
}

fn burst(d: &Daemon, round: usize, stop: &AtomicBool, progress: &AtomicUsize) -> Acked {
    let mut acked = Acked::default();
    for i in 0.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let name = format!("r{round}c{i}");
        if d.netd(&["container", "create", "--network", "n", &name])
            .status
            .success()
        {
            acked.created.insert(name);
            progress.fetch_add(1, Ordering::SeqCst);
        }
        if i % 3 == 2 {
            let victim = format!("r{round}c{}", i - 1);
            acked.remove_sent.insert(victim.clone());
            if d.netd(&["container", "rm", &victim]).status.success() {
                acked.removed.insert(victim);
            }
        }
    }
    acked
}

fn check_consistent(d: &Daemon, acked: &[Acked]) {
    // One JSON object per line, as `docker ps --format json` prints.
    let names: HashSet<String> = d
        .ok(&["container", "ls", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|c| {
            c["Name"]
                .as_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string()
        })
        .collect();
    for a in acked {
        for c in a.created.difference(&a.remove_sent) {
            assert!(names.contains(c), "acknowledged container {c} lost");
        }
        for c in &a.removed {
            assert!(!names.contains(c), "acknowledged removal of {c} undone");
        }
    }

    let mut ips = HashSet::new();
    let mut veths = BTreeSet::new();
    for name in &names {
        let c = d.json(&["container", "inspect", name])[0].clone();
        let ep = &c["NetworkSettings"]["Networks"]["n"];
        let ip = ep["IPAddress"].as_str().unwrap().to_string();
        assert!(ips.insert(ip.clone()), "address {ip} handed out twice");
        let ns = d.netns(name);
        assert!(netns_exists(&ns), "{name} has no namespace");
        let eth0 = &ip_json_in(&ns, &["-4", "addr", "show", "dev", "eth0"])[0];
        assert_eq!(eth0["addr_info"][0]["local"], ip.as_str(), "{name}'s eth0");
        veths.insert(ns);
    }
    // Exactly the namespaces of the containers, nothing leaked.
    let own: BTreeSet<String> = d.own_netns().into_iter().collect();
    assert_eq!(own, veths, "namespaces");
    // Links: netd0, the network's bridge, one veth per container.
    let links = d.own_links();
    assert_eq!(
        links.len(),
        2 + names.len(),
        "links {links:?} for {} containers",
        names.len()
    );
}

#[test]
fn sigkill_during_a_burst_loses_and_leaks_nothing() {
    let mut d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.231.0.0/16", "n"]);
    let mut history = Vec::new();
    // The kill comes once the burst has a few acknowledged creates behind
    // it, after a different short pause each round, so that it lands on a
    // different step of a create or a remove.
    for (round, pause_us) in [0u64, 1500, 4000].into_iter().enumerate() {
        let stop = AtomicBool::new(false);
        let progress = AtomicUsize::new(0);
        let acked = std::thread::scope(|s| {
            let worker = s.spawn(|| burst(&d, round, &stop, &progress));
            while progress.load(Ordering::SeqCst) < 4 {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_micros(pause_us));
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(d.pid() as i32, libc::SIGKILL) };
            stop.store(true, Ordering::SeqCst);
            worker.join().unwrap()
        });
        assert!(acked.created.len() >= 4);
        history.push(acked);
        d.kill9(); // reaps the killed process
        d.start_again();
        check_consistent(&d, &history);
    }
    // And the state still works normally afterwards.
    d.ok(&["container", "create", "--network", "n", "after"]);
    check_consistent(&d, &history);
}
