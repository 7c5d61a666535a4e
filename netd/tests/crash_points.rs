//! Crash points (issue 17): a seeded random sequence of operations through
//! the CLI (networks, containers, connections, services, scaling,
//! published ports) runs on a client thread while the main thread SIGKILLs
//! the daemon at random moments and starts it again. After every restart a
//! checker (`crash_points/checker.rs`) compares what the client saw
//! acknowledged with the store, and the store with the kernel: namespaces,
//! links, addresses, pinned datapath entries, resolv.conf directories and
//! the processes the daemon started. It must find nothing: no acknowledged
//! object lost, no acknowledged removal undone, no address held twice, no
//! leak.
//!
//! An operation the kill cut (or that failed) may have happened or not: its
//! objects are "unsure" until the next check, which learns what became of
//! them. The seed is printed and `NETD_CRASH_SEED=N` replays the same
//! choices (where the kills land depends on timing). By default a run is
//! about 100 operations and 8 kills; `NETD_STRESS=1` makes it 1,000 and
//! about 80 (`cargo xtask stress`). The figures are printed at the end.
//!
//! Subnets 10.29.x.0/24 and host ports 29100-29999 are this file's.

#[path = "crash_points/checker.rs"]
mod checker;
mod common;
#[path = "crash_points/model.rs"]
mod model;
#[allow(dead_code)] // the packet fuzzer's draws, not all used here
#[path = "packet_fuzz/rng.rs"]
mod rng;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Daemon, Launch, random_prefix};
use model::{Model, Op, Outcome};
use rng::Rng;

const SEED_ENV: &str = "NETD_CRASH_SEED";
const STRESS_ENV: &str = "NETD_STRESS";
/// The variable the daemon is started with, inherited by every process it
/// starts: how the checker finds them all, also the ones no record names.
const MARK_ENV: &str = "NETD_CRASH_POINTS";

/// Operations and kills of a run: (default, `NETD_STRESS=1`).
const OPERATIONS: (usize, usize) = (100, 1000);
const KILLS: (usize, usize) = (8, 80);
/// The longest pause before a kill once the round's operations are done:
/// about as long as an operation takes, so kills land on every step.
const MAX_PAUSE_MS: usize = 120;

/// Kills, when dropped, every process the daemon started that is still
/// running (those no record names are not the harness's to find), also
/// when the test failed. Made before the daemon, so dropped after it.
struct Strays(String);

impl Drop for Strays {
    fn drop(&mut self) {
        for pid in checker::marked_processes(&self.0) {
            // SAFETY: signalling a process our daemon started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

impl Strays {
    /// A mark (`NAME=VALUE`) of its own, and a daemon whose processes
    /// carry it in their environment.
    fn marked_daemon() -> (Strays, Daemon) {
        let strays = Strays(format!("{MARK_ENV}={}", random_prefix()));
        let (key, value) = strays.0.split_once('=').unwrap();
        let d = Daemon::launch(Launch {
            env: &[(key, Some(value))],
            ..Launch::default()
        });
        (strays, d)
    }
}

/// The figures of a run.
#[derive(Default)]
struct Figures {
    operations: usize,
    acked: usize,
    refused: usize,
    cut: usize,
    kills: usize,
    restarts: usize,
    checks: usize,
    violations: Vec<String>,
}

#[test]
fn sigkill_at_random_points_loses_and_leaks_nothing() {
    let seed = rng::seed(SEED_ENV);
    let stress = std::env::var_os(STRESS_ENV).is_some_and(|v| v == "1");
    let (operations, kills) = if stress {
        (OPERATIONS.1, KILLS.1)
    } else {
        (OPERATIONS.0, KILLS.0)
    };
    println!(
        "crash_points: seed {seed} ({SEED_ENV}={seed} replays its choices), \
         {operations} operations, about {kills} kills"
    );
    // The daemon goes first (the reverse order), then what it left.
    let (strays, mut d) = Strays::marked_daemon();
    let mark = strays.0.clone();
    let mut model = Model::default();
    let mut ops = Rng::new(seed);
    let mut timing = Rng::new(seed ^ 0x6b69_6c6c);
    let mut figures = Figures::default();
    let per_round = operations / kills;
    let started = Instant::now();

    while figures.operations < operations {
        // The kill comes once the round's operations are done, after a
        // pause, so it lands in the middle of the next one (or between
        // two): on average a round is `per_round` operations with that one.
        let round = timing.range(1, (2 * per_round).saturating_sub(3).max(1));
        let pause = Duration::from_millis(timing.range(0, MAX_PAUSE_MS) as u64);
        let stop = AtomicBool::new(false);
        let done = AtomicUsize::new(0);
        let killed_at = Mutex::new(None);
        let tally = std::thread::scope(|s| {
            let client = s.spawn(|| {
                let mut tally = Figures::default();
                while !stop.load(Ordering::SeqCst) {
                    let op = model.next_op(&mut ops);
                    let out = d.netd(&strs(&op.args()));
                    let outcome = if out.status.success() {
                        tally.acked += 1;
                        Outcome::Acked
                    } else if killed_at.lock().unwrap().is_none() {
                        // Failed before any kill: refused, so nothing
                        // happened, but it is not counted on.
                        tally.refused += 1;
                        println!(
                            "refused: netd {}: {}",
                            op.args().join(" "),
                            String::from_utf8_lossy(&out.stderr).trim()
                        );
                        Outcome::Unsure
                    } else {
                        tally.cut += 1;
                        Outcome::Unsure
                    };
                    model.apply(&op, outcome);
                    tally.operations += 1;
                    done.fetch_add(1, Ordering::SeqCst);
                }
                tally
            });
            while done.load(Ordering::SeqCst) < round && !client.is_finished() {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(pause);
            *killed_at.lock().unwrap() = Some(Instant::now());
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(d.pid() as i32, libc::SIGKILL) };
            stop.store(true, Ordering::SeqCst);
            client.join().unwrap()
        });
        figures.operations += tally.operations;
        figures.acked += tally.acked;
        figures.refused += tally.refused;
        figures.cut += tally.cut;
        figures.kills += 1;
        d.kill9(); // reaps the killed process
        d.start_again();
        figures.restarts += 1;
        check(&d, &mut model, &mark, &mut figures);
    }
    // The state still works normally afterwards.
    let op = model.next_op(&mut ops);
    d.ok(&strs(&op.args()));
    model.apply(&op, Outcome::Acked);
    figures.operations += 1;
    figures.acked += 1;
    check(&d, &mut model, &mark, &mut figures);

    println!(
        "crash_points figures (seed {seed}, {:.0} s): {} operations, {} acknowledged, \
         {} refused, {} cut by a kill, {} kills, {} restarts, {} checks, {} violations",
        started.elapsed().as_secs_f64(),
        figures.operations,
        figures.acked,
        figures.refused,
        figures.cut,
        figures.kills,
        figures.restarts,
        figures.checks,
        figures.violations.len()
    );
    assert!(
        figures.violations.is_empty(),
        "{} violations (seed {seed}):\n{}",
        figures.violations.len(),
        figures.violations.join("\n")
    );
}

/// Found by the random run: `service scale` down and `service rm` each
/// committed twice (the count or the service, then the replicas out of
/// it) before marking the replicas for removal, so a kill between the
/// commits left replicas running as containers of no service, for good.
/// Kills swept over the length of each operation.
#[test]
fn scale_down_and_service_rm_cut_by_a_kill_leave_no_replica() {
    const SWEEP: u32 = 6;
    // The daemon goes first (the reverse order), then what it left.
    let (strays, mut d) = Strays::marked_daemon();
    let mark = strays.0.clone();
    d.ok(&["network", "create", "--subnet", "10.29.254.0/24", "n"]);
    let mut figures = Figures::default();
    let create = |name: &str| Op::ServiceCreate {
        name: name.to_string(),
        network: "n".into(),
        replicas: 3,
        port: None,
    };
    for (i, scale) in [true, false].into_iter().enumerate() {
        let cut = |name: &str| match scale {
            true => Op::Scale {
                name: name.to_string(),
                replicas: 0,
            },
            false => Op::ServiceRm {
                name: name.to_string(),
            },
        };
        // How long the operation takes when nothing cuts it.
        let name = format!("whole{i}");
        d.ok(&strs(&create(&name).args()));
        let started = Instant::now();
        d.ok(&strs(&cut(&name).args()));
        let whole = started.elapsed();
        for k in 0..SWEEP {
            let name = format!("cut{i}.{k}");
            d.ok(&strs(&create(&name).args()));
            let mut client = common::ChildGuard(d.spawn_cli(&strs(&cut(&name).args())));
            std::thread::sleep(whole * k / SWEEP);
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(d.pid() as i32, libc::SIGKILL) };
            client.wait();
            d.kill9();
            d.start_again();
            figures.kills += 1;
            check(&d, &mut Model::default(), &mark, &mut figures);
        }
    }
    assert!(
        figures.violations.is_empty(),
        "{} violations:\n{}",
        figures.violations.len(),
        figures.violations.join("\n")
    );
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// One check: the model against the store, the store against the kernel;
/// then what was unsure is learned from the store.
fn check(d: &Daemon, model: &mut Model, mark: &str, figures: &mut Figures) {
    // A leak found once is found again by every later check: counted once.
    for v in checker::check(d, model, mark) {
        if !figures.violations.contains(&v) {
            println!("violation after kill {}: {v}", figures.kills);
            figures.violations.push(v);
        }
    }
    figures.checks += 1;
    if let Ok(state) = d.persisted() {
        model.learn(&state);
    }
}
