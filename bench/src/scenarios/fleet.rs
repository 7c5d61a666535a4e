//! Scenario 10: the cluster's control plane, on a simulated fleet
//! ([`Cluster`]) that grows in steps (5, 10, 20, 35, 50 hosts; quick: 2,
//! 3), each host with its share of containers on one overlay network:
//!
//! - **propagation**: from the API call that creates a container on one
//!   host to its name resolving (netd's embedded DNS) and its address
//!   answering a ping in a container on another host, polled every
//!   [`POLL`] from inside that container ([`probe`]); p50/p99 at every
//!   step, the creating and observing hosts rotating over the fleet;
//! - **withdrawal**: a host dies (its daemon SIGKILLed, its underlay link
//!   down): the time from the kill until the last of the other hosts no
//!   longer resolves its container (the lease expires, etcd deletes its
//!   records, every watch delivers that); and back (link up, daemon
//!   restarted: until every other host resolves it again). At the first
//!   step with every repetition, once more at the largest;
//! - **the fleet** at each step: etcd's key count and the watch events it
//!   sends per container created (all hosts' watches together; etcd's
//!   own counters), the daemons' RSS (mean and largest), and what the
//!   machine's available memory lost per host (daemon, eBPF maps,
//!   namespaces, containers).
//!
//! The fleet stops growing early when the machine cannot hold the next
//! step (it would leave less than [`RESERVE_GIB`] available at the memory
//! a host has cost so far) or a host fails to start; a note says where
//! and why.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::Ctx;
use crate::cluster::{self, Cluster};
use crate::cmd::{self, say};
use crate::netns::Netns;
use crate::probe;
use crate::report::{Better, Report};
use crate::stats::percentile;
use crate::svg::{self, Series, line_chart};
use crate::topology::System;

const NETWORK: &str = "fleet";
/// Room for 50 hosts × 20 containers and the probes.
const SUBNET: &str = "198.19.80.0/20";
const STEPS: &[usize] = &[5, 10, 20, 35, 50];
const QUICK_STEPS: &[usize] = &[2, 3];
/// Containers per host (the 20; quick: a few).
const CONTAINERS: usize = 20;
const QUICK_CONTAINERS: usize = 3;
/// Propagation samples per step (the 100+; quick: a few).
const SAMPLES: usize = 100;
const QUICK_SAMPLES: usize = 10;
/// Memory the fleet leaves available to the rest of the machine.
const RESERVE_GIB: u64 = 4;
/// Pause between two probes of one observer.
const POLL: Duration = Duration::from_millis(2);
/// How long one DNS query or ping may take to be answered.
const PROBE_WAIT: Duration = Duration::from_millis(50);
/// How long a change may take to show before the run fails.
const GIVE_UP: Duration = Duration::from_secs(60);

/// What one step measured.
struct Step {
    hosts: usize,
    propagation_ms: Vec<f64>,
    keys: f64,
    events_per_change: f64,
    rss_mean_mib: f64,
    rss_max_mib: f64,
    mem_per_host_mib: f64,
}

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    let quick = ctx.plan.quick;
    let (steps, containers, samples) = if quick {
        (QUICK_STEPS, QUICK_CONTAINERS, QUICK_SAMPLES)
    } else {
        (STEPS, CONTAINERS, SAMPLES)
    };
    let ttl = netd::cluster::DEFAULT_LEASE_TTL.as_secs();
    say!(
        "[10] cluster control plane: a fleet growing to {} hosts × {containers} containers \
         (lease TTL {ttl} s)",
        steps.last().copied().unwrap_or(0)
    );
    let available_before = mem_available_kib()?;
    let mut cluster = Cluster::start(&ctx.netd, &format!("{}-10", ctx.tag), 0, ttl)?;
    let mut measured: Vec<Step> = Vec::new();
    for (i, &n) in steps.iter().enumerate() {
        cmd::check_interrupted()?;
        if let Some(why) = no_room_for(&cluster, n, available_before)? {
            report.note(format!(
                "10. the fleet stopped at {} hosts: {why}",
                cluster.hosts.len()
            ));
            break;
        }
        if let Err(e) = grow(&mut cluster, n, containers) {
            cmd::check_interrupted()?;
            report.note(format!(
                "10. the fleet stopped at {} hosts: growing to {n} failed: {e:#}",
                cluster.hosts.len()
            ));
            break;
        }
        let step = measure(&cluster, samples, available_before)?;
        say!(
            "[10] {n} hosts: propagation p50 {:.1} ms p99 {:.1} ms; etcd {} keys, {:.1} watch \
             events per change; RSS {:.1} MiB mean, {:.1} max; {:.0} MiB per host",
            percentile(&mut step.propagation_ms.clone(), 50.0),
            percentile(&mut step.propagation_ms.clone(), 99.0),
            step.keys,
            step.events_per_change,
            step.rss_mean_mib,
            step.rss_max_mib,
            step.mem_per_host_mib
        );
        record(report, &step, containers);
        measured.push(step);
        if i == 0 {
            withdrawals(&mut cluster, ctx.plan.reps, ttl, report)?;
        }
    }
    let largest = measured
        .last()
        .context("the fleet never got its first step")?;
    if measured.len() > 1 {
        withdrawals(&mut cluster, 1, ttl, report)?;
    }
    let p99 = percentile(&mut largest.propagation_ms.clone(), 99.0);
    report.note(format!(
        "10. target: propagation p99 ≤ 250 ms with 50 hosts: {:.0} ms with {} hosts ({})",
        p99,
        largest.hosts,
        if largest.hosts < 50 {
            "fewer hosts than the target's: not comparable"
        } else if p99 <= 250.0 {
            "met"
        } else {
            "missed"
        }
    ));
    plots(report, &measured);
    Ok(())
}

/// Why the machine cannot hold `n` hosts, if it cannot: the memory a
/// host has cost so far, times the hosts to add, must leave
/// [`RESERVE_GIB`] available.
fn no_room_for(cluster: &Cluster, n: usize, available_before: u64) -> Result<Option<String>> {
    let hosts = cluster.hosts.len();
    if n > cluster::MAX_HOSTS {
        return Ok(Some(format!(
            "the underlay has room for {} hosts",
            cluster::MAX_HOSTS
        )));
    }
    if hosts == 0 {
        return Ok(None);
    }
    let available = mem_available_kib()?;
    let per_host = available_before.saturating_sub(available) / hosts as u64;
    let needed = per_host * (n - hosts) as u64 + (RESERVE_GIB << 20);
    Ok((available < needed).then(|| {
        format!(
            "{n} hosts would leave less than {RESERVE_GIB} GiB available ({} MiB available, \
             about {} MiB per host with its containers)",
            available >> 10,
            per_host >> 10
        )
    }))
}

/// Adds hosts up to `n`, each with `containers` containers on the
/// network (made by host 0 when it first exists).
fn grow(cluster: &mut Cluster, n: usize, containers: usize) -> Result<()> {
    let started = Instant::now();
    while cluster.hosts.len() < n {
        cmd::check_interrupted()?;
        let h = cluster.hosts.len();
        cluster.add_host()?;
        if h == 0 {
            cluster.create_overlay(NETWORK, SUBNET)?;
        }
        let host = &cluster.hosts[h];
        cluster::wait_network(host, NETWORK)?;
        for c in 0..containers {
            host.daemon
                .api()
                .create_container(&fleet_name(h, c), NETWORK)?;
        }
    }
    say!(
        "[10] {n} hosts up with their containers ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Container `c` of host `h` (the first is that host's observer).
fn fleet_name(h: usize, c: usize) -> String {
    format!("f{h}-{c}")
}

/// One step's figures: `samples` propagations, then the fleet's size.
fn measure(cluster: &Cluster, samples: usize, available_before: u64) -> Result<Step> {
    let n = cluster.hosts.len();
    let events_before = cluster.etcd.metric("etcd_debugging_mvcc_events_total")?;
    let mut propagation_ms = Vec::with_capacity(samples);
    let mut probes = Vec::with_capacity(samples);
    for i in 0..samples {
        cmd::check_interrupted()?;
        let (creator, observer) = (i % n, (i + (n / 2).max(1)) % n);
        let name = format!("p{n}x{i}");
        propagation_ms.push(propagation(cluster, creator, observer, &name)?);
        probes.push((creator, name));
    }
    let events = cluster.etcd.metric("etcd_debugging_mvcc_events_total")? - events_before;
    let keys = cluster.etcd.metric("etcd_debugging_mvcc_keys_total")?;
    let mut rss = Vec::with_capacity(n);
    for host in &cluster.hosts {
        rss.push(host.daemon.rss_kib()? as f64 / 1024.0);
    }
    let used = available_before.saturating_sub(mem_available_kib()?);
    // The probes go again, so that every step measures the same fleet
    // (and their removals count in no step's events).
    for (creator, name) in probes {
        cluster.hosts[creator]
            .daemon
            .api()
            .remove_container(&name)?;
    }
    Ok(Step {
        hosts: n,
        propagation_ms,
        keys,
        events_per_change: events / samples as f64,
        rss_mean_mib: rss.iter().sum::<f64>() / n as f64,
        rss_max_mib: rss.iter().copied().fold(0.0, f64::max),
        mem_per_host_mib: used as f64 / 1024.0 / n as f64,
    })
}

/// Milliseconds from creating container `name` on host `creator` until
/// it resolves and answers a ping in host `observer`'s first container.
fn propagation(cluster: &Cluster, creator: usize, observer: usize, name: &str) -> Result<f64> {
    let watcher = Netns::open(
        &cluster.hosts[observer]
            .daemon
            .netns_name(&fleet_name(observer, 0)),
    )?;
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        let seen = s.spawn(|| {
            watcher.in_thread(|| {
                start.wait();
                let ip = until(|| probe::resolve(name, PROBE_WAIT))?;
                let mut seq = 0;
                until(|| {
                    seq += 1;
                    Ok(probe::ping(ip, seq, PROBE_WAIT)?.then_some(()))
                })?;
                Ok(Instant::now())
            })
        });
        start.wait();
        let created = Instant::now();
        let made = cluster.hosts[creator]
            .daemon
            .api()
            .create_container(name, NETWORK);
        let seen = seen
            .join()
            .unwrap_or_else(|_| bail!("the observer thread panicked"));
        made?;
        anyhow::Ok(seen?.duration_since(created).as_secs_f64() * 1000.0)
    })
    .with_context(|| format!("{name} from host {creator} seen on host {observer}"))
}

/// Polls `probe` every [`POLL`] until it yields something (or
/// [`GIVE_UP`]).
fn until<T>(mut probe: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        if let Some(found) = probe()? {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("nothing after {GIVE_UP:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// `reps` host losses of the fleet's last host, each timed from the kill
/// to the last other host no longer resolving its first container, and
/// back from the restart to every other host resolving it again.
fn withdrawals(cluster: &mut Cluster, reps: usize, ttl: u64, report: &mut Report) -> Result<()> {
    let n = cluster.hosts.len();
    if n < 2 {
        bail!("a host loss needs another host to notice it");
    }
    let victim = n - 1;
    let name = fleet_name(victim, 0);
    let gone = format!(
        "endpoints withdrawn after a host loss (kill → last of {} hosts updated)",
        n - 1
    );
    let back = format!(
        "endpoints back after the host returns (restart → last of {} hosts updated)",
        n - 1
    );
    let mut met = 0;
    // Every host knows the victim's container before it is lost.
    observed_by_all(cluster, victim, &name, true, |_| Ok(()))?;
    for rep in 0..reps {
        cmd::check_interrupted()?;
        let withdrawn = observed_by_all(cluster, victim, &name, false, |c| {
            c.hosts[victim].daemon.kill();
            c.hosts[victim].set_link(false)
        })?;
        let returned = observed_by_all(cluster, victim, &name, true, |c| {
            c.hosts[victim].set_link(true)?;
            c.hosts[victim].daemon.restart()
        })?;
        met += usize::from(withdrawn <= (ttl + 1) as f64);
        say!(
            "[10] host loss {}/{reps} with {n} hosts: withdrawn everywhere after {withdrawn:.2} s \
             (lease TTL {ttl} s), back {returned:.2} s after the restart",
            rep + 1
        );
        report.add(10, &gone, "s", Better::Lower, System::Netd, withdrawn);
        report.add(10, &back, "s", Better::Lower, System::Netd, returned);
    }
    report.note(format!(
        "10. target: withdrawal ≤ lease TTL + 1 s ({} s) with {n} hosts: met in {met} of {reps} \
         loss(es)",
        ttl + 1
    ));
    Ok(())
}

/// Seconds from `change` until every host but `victim` resolves `name`
/// (`resolves`) or no longer does, each polled from its first container.
fn observed_by_all(
    cluster: &mut Cluster,
    victim: usize,
    name: &str,
    resolves: bool,
    change: impl FnOnce(&mut Cluster) -> Result<()>,
) -> Result<f64> {
    let watchers: Vec<Netns> = (0..cluster.hosts.len())
        .filter(|&h| h != victim)
        .map(|h| Netns::open(&cluster.hosts[h].daemon.netns_name(&fleet_name(h, 0))))
        .collect::<Result<_>>()?;
    let start = Barrier::new(watchers.len() + 1);
    std::thread::scope(|s| {
        let threads: Vec<_> = watchers
            .iter()
            .map(|w| {
                let start = &start;
                s.spawn(move || {
                    w.in_thread(|| {
                        start.wait();
                        until(|| {
                            let now = probe::resolve(name, PROBE_WAIT)?.is_some();
                            Ok((now == resolves).then(Instant::now))
                        })
                    })
                })
            })
            .collect();
        start.wait();
        let changed = Instant::now();
        let made = change(cluster);
        let mut last = changed;
        for thread in threads {
            let seen = thread
                .join()
                .unwrap_or_else(|_| bail!("an observer thread panicked"))?;
            last = last.max(seen);
        }
        made?;
        anyhow::Ok(last.duration_since(changed).as_secs_f64())
    })
    .with_context(|| {
        format!(
            "waiting for every host to {} {name}",
            if resolves { "resolve" } else { "forget" }
        )
    })
}

/// One step's rows.
fn record(report: &mut Report, step: &Step, containers: usize) {
    let n = step.hosts;
    let of = format!("{n} hosts × {containers} containers");
    let mut ms = step.propagation_ms.clone();
    for (name, unit, better, value) in [
        (
            format!(
                "propagation p50 (create on one host → name resolves and ping answers on another), {of}"
            ),
            "ms",
            Better::Lower,
            percentile(&mut ms, 50.0),
        ),
        (
            format!(
                "propagation p99 ({} samples), {of}",
                step.propagation_ms.len()
            ),
            "ms",
            Better::Lower,
            percentile(&mut ms, 99.0),
        ),
        (format!("etcd keys, {of}"), "keys", Better::Lower, step.keys),
        (
            format!("watch events sent per container created (all hosts), {of}"),
            "events",
            Better::Lower,
            step.events_per_change,
        ),
        (
            format!("daemon RSS, mean, {of}"),
            "MiB",
            Better::Lower,
            step.rss_mean_mib,
        ),
        (
            format!("daemon RSS, largest, {of}"),
            "MiB",
            Better::Lower,
            step.rss_max_mib,
        ),
        (
            format!("machine memory per host (available memory lost / hosts), {of}"),
            "MiB",
            Better::Lower,
            step.mem_per_host_mib,
        ),
    ] {
        report.add(10, &name, unit, better, System::Netd, value);
    }
}

fn plots(report: &mut Report, steps: &[Step]) {
    let x = |f: &dyn Fn(&Step) -> f64| -> Vec<(f64, f64)> {
        steps.iter().map(|s| (s.hosts as f64, f(s))).collect()
    };
    let p = |q: f64| move |s: &Step| percentile(&mut s.propagation_ms.clone(), q);
    report.plot(
        "fleet-propagation",
        line_chart(
            "Propagation of a new container to another host as the fleet grows",
            "hosts",
            "milliseconds",
            &[
                Series {
                    name: "p50".into(),
                    points: x(&p(50.0)),
                },
                Series {
                    name: "p99".into(),
                    points: x(&p(99.0)),
                },
            ],
        ),
    );
    // The distribution, step by step: a slow mode (a retry of the
    // kernel's, a stall) shows as a step in the curve that percentiles
    // hide.
    report.plot(
        "fleet-propagation-cdf",
        line_chart(
            "Propagation of a new container to another host (CDF per fleet size)",
            "milliseconds",
            "fraction of samples",
            &steps
                .iter()
                .map(|s| Series {
                    name: format!("{} hosts", s.hosts),
                    points: svg::cdf(&s.propagation_ms),
                })
                .collect::<Vec<_>>(),
        ),
    );
    report.plot(
        "fleet-memory",
        line_chart(
            "Memory as the fleet grows",
            "hosts",
            "MiB",
            &[
                Series {
                    name: "daemon RSS, mean".into(),
                    points: x(&|s| s.rss_mean_mib),
                },
                Series {
                    name: "daemon RSS, largest".into(),
                    points: x(&|s| s.rss_max_mib),
                },
                Series {
                    name: "machine memory per host".into(),
                    points: x(&|s| s.mem_per_host_mib),
                },
            ],
        ),
    );
    report.plot(
        "fleet-etcd",
        line_chart(
            "etcd as the fleet grows",
            "hosts",
            "count",
            &[
                Series {
                    name: "keys".into(),
                    points: x(&|s| s.keys),
                },
                Series {
                    name: "watch events per container created".into(),
                    points: x(&|s| s.events_per_change),
                },
            ],
        ),
    );
}

/// `MemAvailable` of the machine, in KiB.
fn mem_available_kib() -> Result<u64> {
    std::fs::read_to_string("/proc/meminfo")?
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no MemAvailable in /proc/meminfo")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_names_are_unique_per_host_and_container() {
        assert_eq!(fleet_name(12, 0), "f12-0");
        assert_ne!(fleet_name(1, 12), fleet_name(11, 2));
    }
}
