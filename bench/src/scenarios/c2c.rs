//! Scenarios 1 and 6 (its forwarding figures; the NAT ones are in
//! `natpps`): container to container on one network, through netd,
//! a plain veth pair (the limit), a Docker-like bridge with its iptables
//! rules and a Podman-like one with nftables. All the topologies exist at
//! once and every figure is measured on each in turn, the order rotating
//! per repetition, so that slow phases of a noisy machine spread over all
//! systems instead of hitting one.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{Rows, retry};
use crate::cmd::{self, say};
use crate::daemon::Daemon;
use crate::netns::Netns;
use crate::pingpong::{CRR_PORT, IPERF_PORT, RR_PORT, Servers};
use crate::pktgen::{self, DISCARD_PORT};
use crate::report::{Better, Report};
use crate::topology::{self, Pair, System};
use crate::{Ctx, stats};

/// Repetitions of this scenario per repetition of the plan. netd's cost
/// over the bare veth pair here is a few percent (the host-side veth's
/// ingress pass), while one repetition's ratio swings by ±10% on a shared
/// host: the median needs more repetitions than the other scenarios' to
/// say which side of a 0.9× target it is on.
const REPS_PER_REP: usize = 2;

/// The figures, in the order they run within a repetition.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Figure {
    Tcp1,
    Tcp4,
    Rr,
    Crr,
    Pps,
}

pub fn run(ctx: &Ctx, tcp: bool, pps: bool, report: &mut Report) -> Result<()> {
    say!(
        "[1,6] building the container-to-container topologies: netd, limit, docker-like, podman-like"
    );
    // Declared in this order so they drop in reverse: servers, then the
    // topologies, then the daemon.
    let daemon = Daemon::start(&ctx.netd, &ctx.tag)?;
    let pairs = [
        topology::netd(&daemon)?,
        topology::limit(&ctx.tag)?,
        topology::docker_like(&ctx.tag)?,
        topology::podman_like(&ctx.tag)?,
    ];
    let mut servers = Vec::new();
    for pair in &pairs {
        servers.push(
            Servers::start(&pair.server)
                .with_context(|| format!("starting servers on {}", pair.system))?,
        );
    }
    let mut figures = Vec::new();
    if tcp {
        figures.extend([Figure::Tcp1, Figure::Tcp4, Figure::Rr, Figure::Crr]);
    }
    if pps {
        figures.push(Figure::Pps);
    }
    let plan = ctx.plan;
    let reps = plan.reps * REPS_PER_REP;
    for rep in 0..reps {
        for &figure in &figures {
            for i in 0..pairs.len() {
                cmd::check_interrupted()?;
                let k = (i + rep) % pairs.len();
                let (pair, server) = (&pairs[k], &mut servers[k]);
                server.check_alive()?;
                let rows = retry(|| measure(ctx, pair, figure))
                    .with_context(|| format!("measuring on {}", pair.system))?;
                let scenario = if figure == Figure::Pps { 6 } else { 1 };
                for (name, unit, better, value) in rows {
                    say!(
                        "[{scenario}] rep {}/{} {:<30} {:<40} {:>10} {unit}",
                        rep + 1,
                        reps,
                        pair.system.label(),
                        name,
                        stats::fmt3(value)
                    );
                    report.add(scenario, name, unit, better, pair.system, value);
                }
            }
        }
    }
    // netd's bridge and veths live in the real host namespace, so whatever
    // firewall the host runs is on netd's path too: record it.
    let host_rules = cmd::output(std::process::Command::new("nft").args(["list", "ruleset"]))
        .map_or(0, |rules| {
            rules.lines().filter(|l| !l.trim().is_empty()).count()
        });
    report.note(format!(
        "host namespace (netd's path): {host_rules} lines of nftables/iptables-nft ruleset"
    ));
    // Conntrack is part of the bridged baselines' cost; say how full it got.
    for pair in &pairs {
        if let Some(host) = &pair.host
            && let Ok(count) = host.read_sysctl("net.netfilter.nf_conntrack_count")
        {
            report.note(format!(
                "{}: {count} conntrack entries in its host namespace at the end of \
                 scenarios 1/6",
                pair.system
            ));
        }
    }
    Ok(())
}

/// One figure on `pair`: its rows.
pub(super) fn measure(ctx: &Ctx, pair: &Pair, figure: Figure) -> Result<Rows> {
    let plan = ctx.plan;
    let server_ip = pair.server_ep.ip;
    Ok(match figure {
        Figure::Tcp1 | Figure::Tcp4 => {
            let streams = if figure == Figure::Tcp1 { 1 } else { 4 };
            let out = cmd::json(pair.client.command("iperf3").args([
                "-c",
                &server_ip.to_string(),
                "-p",
                &IPERF_PORT.to_string(),
                "-t",
                &plan.tcp_secs.to_string(),
                "-P",
                &streams.to_string(),
                "-J",
            ]))?;
            let bps = out["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .with_context(|| format!("iperf3 reported no throughput: {}", out["error"]))?;
            let name = if streams == 1 {
                "TCP throughput, 1 stream (iperf3)"
            } else {
                "TCP throughput, 4 streams (iperf3)"
            };
            vec![(name, "Gbit/s", Better::Higher, bps / 1e9)]
        }
        Figure::Rr => {
            let addr = SocketAddr::from((server_ip, RR_PORT));
            let out = helper(
                &pair.client,
                &["rr", &addr.to_string(), &plan.rr_secs.to_string()],
            )?;
            vec![
                (
                    "request/response latency p50 (64 B)",
                    "µs",
                    Better::Lower,
                    num(&out, "p50_us")?,
                ),
                (
                    "request/response latency p99 (64 B)",
                    "µs",
                    Better::Lower,
                    num(&out, "p99_us")?,
                ),
            ]
        }
        Figure::Crr => vec![(
            "new TCP connections (connect, 1 B each way, close)",
            "conn/s",
            Better::Higher,
            connection_rate(
                &pair.client,
                SocketAddr::from((server_ip, CRR_PORT)),
                plan.rr_secs,
                pair.system,
            )?,
        )],
        Figure::Pps => {
            let dst = SocketAddr::from((server_ip, DISCARD_PORT));
            let rate = pktgen::measure(
                ctx.generator,
                &pair.client,
                &pair.server,
                dst,
                1,
                plan.pps_secs,
            )?;
            if rate.csum_errors > 0 {
                say!(
                    "    {} datagrams with a bad UDP checksum on {}",
                    rate.csum_errors,
                    pair.system
                );
            }
            vec![
                (
                    "packet rate received (60 B UDP)",
                    "Mpps",
                    Better::Higher,
                    rate.received / 1e6,
                ),
                (
                    "packet rate offered by the sender (same run)",
                    "Mpps",
                    Better::Higher,
                    rate.offered / 1e6,
                ),
            ]
        }
    })
}

/// New connections per second from `client` to `addr` (an echo server's
/// [`CRR_PORT`], or a port that leads there) for `secs`, one after the
/// other: connect, 1 byte each way, the server closes, the client closes.
pub(super) fn connection_rate(
    client: &Netns,
    addr: SocketAddr,
    secs: f64,
    system: System,
) -> Result<f64> {
    let out = helper(client, &["crr", &addr.to_string(), &secs.to_string()])?;
    let failed = num(&out, "failed")?;
    if failed > 0.0 {
        say!("    {} connections failed on {}", failed, system);
    }
    num(&out, "per_sec")
}

/// Runs a hidden subcommand of this binary in the client namespace.
fn helper(client: &Netns, args: &[&str]) -> Result<Value> {
    cmd::json(
        client
            .command(crate::pingpong::SELF_EXE)
            .args(args)
            .env_remove("RUST_BACKTRACE"),
    )
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("helper output has no {key}: {v}"))
}
