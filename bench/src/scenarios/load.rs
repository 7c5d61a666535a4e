//! Scenario 8: the control plane under load. How long netd takes to answer
//! the calls that only read, `/_ping`, `GET /networks` and the Prometheus
//! scrape (`GET /metrics` on `--metrics-addr`), on an idle daemon and
//! during a storm: [`CLIENTS`] clients together create and remove
//! `plan.storm` containers on one network while a container whose process
//! ignores SIGTERM is removed with force (netd waits out its stop grace
//! before SIGKILL, so that `rm -f` takes seconds). And how long the storm
//! takes in all.
//!
//! Only the public HTTP API is used, so the scenario runs unchanged
//! against any engine behind it: it is there to compare an engine whose
//! every request holds one lock with one whose reads do not wait for
//! writes.
//!
//! Readers: a thread per call, each timing one request after the other (a
//! connection each, as a CLI makes) with [`READ_PAUSE`] between them, the
//! same before and during the storm. A reader stuck behind a slow call
//! takes no samples meanwhile, so its percentiles undercount long waits
//! (coordinated omission): the longest wait is reported beside them.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};

use crate::Ctx;
use crate::api::Api;
use crate::cmd::{self, say};
use crate::daemon::Daemon;
use crate::report::{Better, Report};
use crate::stats::percentile;
use crate::topology::System;

/// The storm's network: room for the largest storm (a range no other
/// scenario uses).
const SUBNET: &str = "198.19.40.0/24";
const NETWORK: &str = "load";
/// Clients creating and removing containers at once.
const CLIENTS: usize = 4;
/// Pause between two requests of one reader: about a hundred reads a
/// second each, a load of its own the daemon hardly notices.
const READ_PAUSE: Duration = Duration::from_millis(10);
/// The target for every read, fixed before anything was measured:
/// its p99 under the storm at most `TARGET_FACTOR` × its idle p99 plus
/// `TARGET_SLACK_MS`.
const TARGET_FACTOR: f64 = 2.0;
const TARGET_SLACK_MS: f64 = 5.0;
/// The container whose `rm -f` is slow, and its process: the shell ignores
/// SIGTERM and so does the `sleep` it starts (an ignored signal stays
/// ignored across exec).
const STUBBORN: &str = "stubborn";
const STUBBORN_CMD: &[&str] = &["sh", "-c", "trap '' TERM; sleep 1000"];
/// The process of every storm container, so that removing one stops a
/// process too, as `docker rm -f` of a running container does.
const STORM_CMD: &[&str] = &["sleep", "1000"];
/// Connection tracking entries the full-table scrapes see (the issue's
/// figure: a scrape with 200,000 entries stays in the milliseconds), and
/// the daemon's `--conntrack-max` (flows; two entries each) to hold them:
/// room to spare, since an LRU map evicts before it is completely full
/// (its free lists are per CPU).
const FULL_TABLE: u32 = 200_000;
const CONNTRACK_MAX: &str = "125000";
/// Scrapes timed against the full table.
const FULL_TABLE_SCRAPES: usize = 200;

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let plan = ctx.plan;
    say!(
        "[8] control plane under load: reads idle, then while {CLIENTS} clients create and \
         remove {} containers and one slow rm -f runs",
        plan.storm
    );
    let daemon = Daemon::start_with(&ctx.netd, &ctx.tag, &["--conntrack-max", CONNTRACK_MAX])?;
    // Dropped before the daemon: it still answers then.
    let _leftovers = Leftovers(daemon.api());
    daemon.api().create_network(NETWORK, SUBNET)?;
    let mut met = [0; Read::ALL.len()];
    for rep in 0..plan.reps {
        cmd::check_interrupted()?;
        daemon
            .api()
            .run_container(STUBBORN, NETWORK, &[], &owned(STUBBORN_CMD))?;
        let ((), idle) = sampled(&daemon, || pause(plan.idle_secs))?;
        let (storm, stormy) = sampled(&daemon, || storm(daemon.api(), plan.storm))?;
        let mut line = format!(
            "[8] repetition {}/{}: storm {:.1} s (the slow rm -f {:.1} s); p99 idle → storm:",
            rep + 1,
            plan.reps,
            storm.total.as_secs_f64(),
            storm.slow_rm.as_secs_f64()
        );
        for ((read, mut idle), mut stormy) in Read::ALL.into_iter().zip(idle).zip(stormy) {
            let (idle_p99, storm_p99) = record(report, read, &mut idle, &mut stormy);
            met[read as usize] += usize::from(storm_p99 <= target(idle_p99));
            let _ = write!(
                line,
                " {} {idle_p99:.1} → {storm_p99:.1} ms ({} → {} reads);",
                read.label(),
                idle.len(),
                stormy.len()
            );
        }
        say!("{}", line.trim_end_matches(';'));
        report.add(
            8,
            &format!(
                "storm: {CLIENTS} clients create and remove {} containers, one slow rm -f \
                 meanwhile: total time",
                plan.storm
            ),
            "s",
            Better::Lower,
            System::Netd,
            storm.total.as_secs_f64(),
        );
        report.add(
            8,
            "storm: the slow rm -f alone",
            "s",
            Better::Lower,
            System::Netd,
            storm.slow_rm.as_secs_f64(),
        );
    }
    full_table(
        &daemon,
        report,
        if plan.quick { 20 } else { FULL_TABLE_SCRAPES },
    )?;
    for read in Read::ALL {
        report.note(format!(
            "8. {}: p99 under the storm within its target ({TARGET_FACTOR}× the idle p99 + \
             {TARGET_SLACK_MS} ms) in {} of {} repetition(s)",
            read.label(),
            met[read as usize],
            plan.reps
        ));
    }
    Ok(())
}

/// Fills the daemon's connection tracking table with [`FULL_TABLE`] live
/// entries (written into the pinned map, as flows would), waits for the
/// daemon's census to count them, and times `scrapes` scrapes against it,
/// then one `GET /stats` (which counts the table anew).
fn full_table(daemon: &Daemon, report: &mut Report, scrapes: usize) -> Result<()> {
    use aya::maps::{HashMap, Map, MapData};
    use netd::dataplane::{ConntrackEntry, ConntrackKey};
    say!("[8] {FULL_TABLE} conntrack entries: scrapes and stats");
    let pin = daemon.bpffs().join("maps").join("NAT_CT");
    let data = MapData::from_pin(&pin).with_context(|| format!("cannot open {}", pin.display()))?;
    let mut table: HashMap<MapData, ConntrackKey, ConntrackEntry> =
        HashMap::try_from(Map::LruHashMap(data))?;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let entry = ConntrackEntry {
        last_seen: now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64,
        ..Default::default()
    };
    // Documentation addresses (TEST-NET-2/3) that no flow of the bench
    // uses; UDP, whose entries live for minutes.
    for i in 0..FULL_TABLE {
        let key = ConntrackKey::new(
            u32::from_ne_bytes([198, 51, 100, (i % 250) as u8]),
            u32::from_ne_bytes([203, 0, 113, (i / 250 % 250) as u8]),
            (1024 + i / 62_500) as u16,
            (i % 62_500) as u16,
            17,
        );
        table.insert(key, entry, 0)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.metric("netd_conntrack_entries")? < f64::from(FULL_TABLE) {
        cmd::check_interrupted()?;
        ensure!(
            Instant::now() < deadline,
            "the daemon's census never counted the {FULL_TABLE} entries"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut ms = Vec::with_capacity(scrapes);
    for _ in 0..scrapes {
        let start = Instant::now();
        daemon.scrape()?;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(READ_PAUSE);
    }
    for (what, q) in [("p50", 50.0), ("p99", 99.0)] {
        report.add(
            8,
            &format!("GET /metrics with {FULL_TABLE} conntrack entries: {what}"),
            "ms",
            Better::Lower,
            System::Netd,
            percentile(&mut ms, q),
        );
    }
    let start = Instant::now();
    daemon.api().call("GET", "/stats", None)?;
    report.add(
        8,
        &format!("GET /stats (counts the table) with {FULL_TABLE} conntrack entries"),
        "ms",
        Better::Lower,
        System::Netd,
        start.elapsed().as_secs_f64() * 1000.0,
    );
    Ok(())
}

/// The bound the issue sets for a read's p99 under the storm.
fn target(idle_p99: f64) -> f64 {
    TARGET_FACTOR * idle_p99 + TARGET_SLACK_MS
}

/// One repetition's rows for `read` (it sorts the samples); its p99 idle
/// and under the storm.
fn record(report: &mut Report, read: Read, idle: &mut [f64], storm: &mut [f64]) -> (f64, f64) {
    let idle_p99 = percentile(idle, 99.0);
    let storm_p99 = percentile(storm, 99.0);
    let rows = [
        ("p50, idle", percentile(idle, 50.0)),
        ("p99, idle", idle_p99),
        ("p50, under the storm", percentile(storm, 50.0)),
        ("p99, under the storm", storm_p99),
        ("longest, under the storm", percentile(storm, 100.0)),
    ];
    for (what, ms) in rows {
        let name = format!("{}: {what}", read.label());
        report.add(8, &name, "ms", Better::Lower, System::Netd, ms);
    }
    report.add(
        8,
        &format!(
            "{}: p99 under the storm ÷ its target ({TARGET_FACTOR}× idle p99 + \
             {TARGET_SLACK_MS} ms; ≤ 1 meets it)",
            read.label()
        ),
        "×",
        Better::Lower,
        System::Netd,
        storm_p99 / target(idle_p99),
    );
    (idle_p99, storm_p99)
}

/// The calls that only read, each sampled by a thread of its own.
#[derive(Clone, Copy)]
enum Read {
    Ping,
    Networks,
    Metrics,
}

impl Read {
    const ALL: [Read; 3] = [Read::Ping, Read::Networks, Read::Metrics];

    fn label(self) -> &'static str {
        match self {
            Read::Ping => "/_ping",
            Read::Networks => "GET /networks",
            Read::Metrics => "GET /metrics",
        }
    }

    /// One request; fails unless netd answers it with success.
    fn once(self, daemon: &Daemon) -> Result<()> {
        match self {
            Read::Ping => ensure!(daemon.api().ping(), "netd did not answer /_ping"),
            Read::Networks => drop(daemon.api().call("GET", "/networks", None)?),
            Read::Metrics => drop(daemon.scrape()?),
        }
        Ok(())
    }

    /// Times one request after the other until `stop` is set; each in ms.
    fn sample(self, daemon: &Daemon, stop: &AtomicBool) -> Result<Vec<f64>> {
        let mut ms = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let start = Instant::now();
            self.once(daemon)?;
            ms.push(start.elapsed().as_secs_f64() * 1000.0);
            std::thread::sleep(READ_PAUSE);
        }
        Ok(ms)
    }
}

/// Runs `load` while every [`Read`] samples; what `load` returned and each
/// read's latencies, in the order of [`Read::ALL`].
fn sampled<T>(daemon: &Daemon, load: impl FnOnce() -> Result<T>) -> Result<(T, Vec<Vec<f64>>)> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let stop = &stop;
        let readers = Read::ALL.map(|read| s.spawn(move || read.sample(daemon, stop)));
        let loaded = load();
        stop.store(true, Ordering::SeqCst);
        let latencies: Result<Vec<Vec<f64>>> = readers.into_iter().map(joined).collect();
        Ok((loaded?, latencies?))
    })
}

/// The idle phase's load: none, for `secs`, stopping early on Ctrl-C.
fn pause(secs: f64) -> Result<()> {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        cmd::check_interrupted()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

/// What one storm took.
struct Storm {
    /// From the start until the last client and the slow `rm -f` were done.
    total: Duration,
    slow_rm: Duration,
}

/// `n` containers created and removed by [`CLIENTS`] clients at once, and
/// the stubborn container removed with force once a quarter of them exist
/// (well inside the storm, whichever engine runs it).
fn storm(api: &Api, n: usize) -> Result<Storm> {
    let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    let created = AtomicUsize::new(0);
    let quarter = (n / 4).max(1);
    // One message when the quarter is reached; closed without one if the
    // clients fail before.
    let (reached, quarter_reached) = mpsc::channel();
    let started = Instant::now();
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let share: Vec<&str> = names
                    .iter()
                    .skip(c)
                    .step_by(CLIENTS)
                    .map(|n| &**n)
                    .collect();
                let (created, reached) = (&created, reached.clone());
                s.spawn(move || client(api, &share, created, quarter, &reached))
            })
            .collect();
        drop(reached);
        let slow = s.spawn(move || -> Result<Option<Duration>> {
            if quarter_reached.recv().is_err() {
                return Ok(None);
            }
            let start = Instant::now();
            api.remove_container(STUBBORN)?;
            Ok(Some(start.elapsed()))
        });
        for client in clients {
            joined(client)?;
        }
        let slow_rm =
            joined(slow)?.context("the clients never made a quarter of the containers")?;
        Ok(Storm {
            total: started.elapsed(),
            slow_rm,
        })
    })
}

/// One client's share of the storm: creates its containers one call at a
/// time, then removes them; tells `reached` when the clients together have
/// created `quarter` containers.
fn client(
    api: &Api,
    share: &[&str],
    created: &AtomicUsize,
    quarter: usize,
    reached: &Sender<()>,
) -> Result<()> {
    let cmd = owned(STORM_CMD);
    for name in share {
        cmd::check_interrupted()?;
        api.run_container(name, NETWORK, &[], &cmd)?;
        if created.fetch_add(1, Ordering::SeqCst) + 1 == quarter {
            // The receiver is only gone if its thread is, which never
            // happens before this message.
            let _ = reached.send(());
        }
    }
    for name in share {
        cmd::check_interrupted()?;
        api.remove_container(name)?;
    }
    Ok(())
}

fn owned(cmd: &[&str]) -> Vec<String> {
    cmd.iter().map(|a| a.to_string()).collect()
}

/// A scoped thread's result; its panic goes on unwinding here.
fn joined<T>(handle: ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Force-removes every container the daemon still has when dropped, since
/// their processes outlive the daemon: nothing after a storm that ran to
/// its end, the rest of one that failed half-way.
struct Leftovers<'d>(&'d Api);

impl Drop for Leftovers<'_> {
    fn drop(&mut self) {
        let Ok(containers) = self.0.call("GET", "/containers/json", None) else {
            return;
        };
        let ids = containers.as_array().into_iter().flatten();
        for id in ids.filter_map(|c| c["Id"].as_str()) {
            let _ = self.0.remove_container(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_twice_the_idle_p99_plus_5_ms() {
        assert_eq!(target(1.5), 8.0);
        assert_eq!(target(0.0), 5.0);
    }

    #[test]
    fn rows_per_read_with_the_target_ratio() {
        let mut report = crate::report::tests::report();
        let mut idle: Vec<f64> = (1..=100).map(f64::from).map(|x| x / 100.0).collect();
        let mut storm: Vec<f64> = (1..=100).map(f64::from).collect();
        let (idle_p99, storm_p99) = record(&mut report, Read::Networks, &mut idle, &mut storm);
        assert_eq!((idle_p99, storm_p99), (0.99, 99.0));
        let rows: Vec<(&str, f64)> = report
            .figures
            .iter()
            .map(|f| (f.name.as_str(), f.samples[&System::Netd][0]))
            .collect();
        assert_eq!(rows[0], ("GET /networks: p50, idle", 0.5));
        assert_eq!(rows[3], ("GET /networks: p99, under the storm", 99.0));
        assert_eq!(rows[4], ("GET /networks: longest, under the storm", 100.0));
        assert_eq!(
            rows[5],
            (
                "GET /networks: p99 under the storm ÷ its target (2× idle p99 + 5 ms; ≤ 1 meets it)",
                99.0 / target(0.99)
            )
        );
    }
}
