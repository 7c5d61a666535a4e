//! What a daemon finds in its state directory when it starts: files private
//! to root (also those an older netd left readable), a lock that keeps a
//! second daemon out, and process records that may no longer name their
//! process (its pid reused while the daemon was away, a record from before
//! netd kept start times, a removal a kill interrupted). A record that
//! does not name its process must never make the daemon signal, or report
//! as the container's, a process that is not.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ChildGuard, Daemon, alive, eventually, free_port, netns_exists};
use netd::model::{Container, State, update_where};
use netd::store::{FileStore, Store as _};
use serde_json::Value;

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn inspect(d: &Daemon, name: &str) -> Value {
    d.json(&["container", "inspect", name])[0].clone()
}

/// Changes the stored records of a stopped daemon's containers named in
/// `names`, as its next start reads them.
fn edit_containers(d: &Daemon, names: &[&str], change: impl FnMut(&mut Container)) {
    let mut store = FileStore::new(&d.state_dir()).unwrap();
    let before = store.load().unwrap();
    let mut after = State::clone(&before);
    update_where(
        &mut after.containers,
        |c| names.contains(&c.name.as_str()),
        change,
    );
    store.save(&before, &after).unwrap();
}

/// Network `n` with `subnet`, and on it a container per name whose
/// process sleeps; their pids.
fn run_sleepers<const N: usize>(d: &Daemon, subnet: &str, names: [&str; N]) -> [u32; N] {
    d.ok(&["network", "create", "--subnet", subnet, "n"]);
    for name in names {
        d.ok(&[
            "container",
            "run",
            "--network",
            "n",
            name,
            "--",
            "sleep",
            "600",
        ]);
    }
    names.map(|name| inspect(d, name)["State"]["Pid"].as_u64().unwrap() as u32)
}

/// A daemon that ran containers per [`run_sleepers`] and was stopped
/// (their processes run on), for its records to be edited; their pids.
fn stopped_with_sleepers<const N: usize>(subnet: &str, names: [&str; N]) -> (Daemon, [u32; N]) {
    let mut d = Daemon::start();
    let pids = run_sleepers(&d, subnet, names);
    d.stop();
    (d, pids)
}

/// SIGKILLs the process group a container's process leads and waits until
/// it has ended.
fn end_process(pid: u32) {
    // SAFETY: signalling the group of a process this test's daemon started.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    eventually("the process to end", || !alive(pid));
}

/// Ends process `pid` and starts one that is none of netd's, for a record
/// to name instead: the pid as good as reused.
fn replaced(pid: u32) -> ChildGuard {
    end_process(pid);
    ChildGuard(Command::new("sleep").arg("600").spawn().unwrap())
}

/// Requires that `p` still runs: nothing signalled it.
fn assert_untouched(p: &mut ChildGuard) {
    assert!(
        p.0.try_wait().unwrap().is_none(),
        "an unrelated process was signalled"
    );
}

#[test]
fn what_the_daemon_keeps_is_private_to_root_also_after_an_upgrade() {
    let mut d = Daemon::start();
    run_sleepers(&d, "10.226.0.0/24", ["web"]);
    let id = inspect(&d, "web")["Id"].as_str().unwrap().to_string();
    let dir = d.state_dir();
    let logs = dir.join("logs");
    let files = [
        dir.join("state.json"),
        dir.join("journal.jsonl"),
        dir.join("lock"),
        logs.join(format!("{id}.log")),
    ];
    let check = || {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        assert_eq!(mode(&logs), 0o700, "{}", logs.display());
        for f in &files {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
    };
    check();
    // What an older netd left: all of it readable by everyone.
    d.stop();
    for p in [&dir, &logs] {
        chmod(p, 0o755);
    }
    for f in &files {
        chmod(f, 0o644);
    }
    d.start_again();
    check();
    d.ok(&["container", "rm", "-f", "web"]);
}

/// Starts a second daemon on `d`'s state directory, everything else its
/// own, and requires it to refuse, naming `d`'s daemon.
fn assert_second_daemon_refused(d: &Daemon) {
    let log = d.dir.join("second.log");
    let mut second = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_netd"))
            .arg("daemon")
            .arg("--state-dir")
            .arg(d.state_dir())
            .arg("--socket")
            .arg(d.dir.join("second.sock"))
            .arg("--bpffs")
            .arg(d.dir.join("second-bpffs"))
            .arg("--prefix")
            .arg(&d.prefix)
            .arg("--uplink")
            .arg(&d.uplink)
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{}", free_port()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    // A daemon that got past the lock would run on: the limit only turns
    // that into a failure.
    let deadline = Instant::now() + Duration::from_secs(60);
    while second.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the second daemon started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!second.wait().success());
    let stderr = std::fs::read_to_string(&log).unwrap();
    let expected = format!(
        "another netd (pid {}) is using the state directory {}",
        d.pid(),
        d.state_dir().display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_second_daemon_on_the_state_directory_is_refused_by_its_lock() {
    let mut d = Daemon::start();
    assert_second_daemon_refused(&d);
    assert!(d.ping().contains("200 OK"), "the first daemon runs on");
    // SIGKILL leaves no stale lock: the kernel drops it with the process.
    d.kill9();
    d.start_again();
    assert_second_daemon_refused(&d);
}

#[test]
fn a_record_whose_pid_names_another_process_never_signals_it() {
    let names = ["reused", "legacy", "upgraded"];
    let (mut d, [reused, legacy, upgraded]) = stopped_with_sleepers("10.227.0.0/24", names);
    // Two processes end while the daemon is away, and their pids now name
    // processes of someone else's (the test's own).
    let mut others = [replaced(reused), replaced(legacy)];
    let other_pids = others.each_ref().map(|o| o.0.id());
    // `reused` keeps the start of its old process: a pid reused. `legacy`
    // and `upgraded` are records from before netd kept starts: a pid
    // alone, of an unrelated process and of the container's own.
    edit_containers(&d, &["reused"], |c| {
        c.process.as_mut().unwrap().pid = Some(other_pids[0]);
    });
    edit_containers(&d, &["legacy"], |c| {
        let p = c.process.as_mut().unwrap();
        (p.pid, p.started) = (Some(other_pids[1]), None);
    });
    edit_containers(&d, &["upgraded"], |c| {
        c.process.as_mut().unwrap().started = None;
    });
    d.start_again();
    for name in ["reused", "legacy"] {
        let state = &inspect(&d, name)["State"];
        assert_eq!(state["Status"], "exited", "{name}: {state}");
        assert_eq!(state["Pid"], 0, "{name}: {state}");
    }
    let state = &inspect(&d, "upgraded")["State"];
    assert_eq!(state["Status"], "running", "{state}");
    assert_eq!(state["Pid"], upgraded, "{state}");
    // The container's own process got its start back.
    let record = d.stored_container("upgraded").unwrap();
    assert!(record["process"]["started"]["ticks"].is_u64(), "{record}");

    d.ok(&["container", "rm", "-f", "reused", "legacy", "upgraded"]);
    for other in &mut others {
        assert_untouched(other);
    }
    assert!(!alive(upgraded), "the container's own process was stopped");
    d.assert_consistent(2);
}

/// Found by `crash_points`: a kill between `container run` starting the
/// process and recording its pid left a record without one, and the
/// process running on, named by no record, which `rm -f` never stopped.
#[test]
fn a_process_started_just_before_a_kill_is_adopted_and_stopped() {
    let names = ["cut", "ended"];
    let (mut d, [cut, ended]) = stopped_with_sleepers("10.226.1.0/24", names);
    // `ended`'s process ended: its record, without a pid, must stay so.
    end_process(ended);
    edit_containers(&d, &names, |c| {
        let p = c.process.as_mut().unwrap();
        (p.pid, p.started) = (None, None);
    });
    d.start_again();
    let state = &inspect(&d, "cut")["State"];
    assert_eq!(state["Status"], "running", "{state}");
    assert_eq!(state["Pid"], cut, "{state}");
    assert_eq!(inspect(&d, "ended")["State"]["Pid"], 0);
    d.ok(&["container", "rm", "-f", "cut", "ended"]);
    assert!(!alive(cut), "the adopted process was stopped");
    d.assert_consistent(2);
}

#[test]
fn a_removal_interrupted_at_any_point_is_finished_by_the_next_start() {
    let names = ["marked", "stopped", "reused"];
    let (mut d, [marked, stopped, reused]) = stopped_with_sleepers("10.228.0.0/24", names);
    // A daemon killed right after the `removing` mark was committed
    // (`marked`: its process runs), after the process ended (`stopped`),
    // and after that, with the pid since given to another process
    // (`reused`).
    end_process(stopped);
    let mut other = replaced(reused);
    let other_pid = other.0.id();
    edit_containers(&d, &names, |c| {
        c.removing = true;
        if c.name == "reused" {
            c.process.as_mut().unwrap().pid = Some(other_pid);
        }
    });
    d.start_again();
    // The records go first, then their namespaces.
    eventually("the removals to be finished", || {
        d.state()["containers"].as_object().unwrap().is_empty()
            && names.iter().all(|name| !netns_exists(&d.netns(name)))
    });
    assert!(!alive(marked), "the marked container's process was stopped");
    assert_untouched(&mut other);
    d.assert_consistent(2);
}
