//! What scenarios 2 and 3 share: traffic across the host's uplink between
//! an outside namespace and a container, on every [`Edge`] in turn. As in
//! scenario 1, all the topologies exist at once and the order rotates per
//! repetition, so that slow phases of a noisy machine spread over all
//! systems instead of hitting one.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};

use super::{Rows, retry};
use crate::cmd::{self, say};
use crate::daemon::Daemon;
use crate::pingpong::{CRR_PORT, Client, IPERF_PORT, RR_PORT, Servers};
use crate::report::{Better, Report};
use crate::topology::Edge;
use crate::{Ctx, stats};

/// Which way the traffic crosses the host.
#[derive(Clone, Copy)]
pub enum Direction {
    /// An outside client to the container's published ports (scenario 2).
    Inbound,
    /// The container to a server outside (scenario 3).
    Outbound,
}

/// The figures, in the order they run within a repetition.
#[derive(Clone, Copy, PartialEq)]
pub enum Figure {
    Tcp1,
    Tcp4,
    Rr,
    Crr,
}

/// Measures `figures` on every edge, `ctx.plan.reps` times, into
/// `scenario`'s table.
pub fn run(
    ctx: &Ctx,
    scenario: u8,
    edges: &[Edge],
    direction: Direction,
    figures: &[Figure],
    report: &mut Report,
) -> Result<()> {
    let mut servers = Vec::new();
    for edge in edges {
        let side = match direction {
            Direction::Inbound => &edge.container,
            Direction::Outbound => &edge.outside,
        };
        servers.push(
            Servers::start(side).with_context(|| format!("starting servers on {}", edge.system))?,
        );
    }
    let plan = ctx.plan;
    let mut failed = vec![0.0; edges.len()];
    for rep in 0..plan.reps {
        for &figure in figures {
            for i in 0..edges.len() {
                cmd::check_interrupted()?;
                let k = (i + rep) % edges.len();
                let edge = &edges[k];
                servers[k].check_alive()?;
                let rows = retry(|| measure(ctx, edge, direction, figure, &mut failed[k]))
                    .with_context(|| format!("measuring on {}", edge.system))?;
                for (name, unit, better, value) in rows {
                    say!(
                        "[{scenario}] rep {}/{} {:<30} {:<40} {:>10} {unit}",
                        rep + 1,
                        plan.reps,
                        edge.system.label(),
                        name,
                        stats::fmt3(value)
                    );
                    report.add(scenario, name, unit, better, edge.system, value);
                }
            }
        }
    }
    for (edge, failed) in edges.iter().zip(failed) {
        if failed > 0.0 {
            report.note(format!(
                "scenario {scenario}, {}: {failed} connections failed during the \
                 connection-rate runs",
                edge.system
            ));
        }
        // Conntrack is part of the bridged baselines' cost; say how full it
        // got.
        if let Some(host) = &edge.host
            && let Ok(count) = host.read_sysctl("net.netfilter.nf_conntrack_count")
        {
            report.note(format!(
                "scenario {scenario}, {}: {count} conntrack entries in its host namespace \
                 at the end",
                edge.system
            ));
        }
    }
    Ok(())
}

/// netd's own account of a scenario: the flows its NAT created of `kind`
/// (`published`, `masquerade`), which shows the traffic took netd's
/// translation and not some other path, and the connection-tracking
/// entries left at the end, beside the baselines' conntrack counts.
pub fn note_netd(daemon: &Daemon, scenario: u8, kind: &str, report: &mut Report) -> Result<()> {
    let flows = daemon.metric(&format!("netd_nat_flows_total{{kind=\"{kind}\"}}"))?;
    let entries = daemon.metric("netd_conntrack_entries")?;
    report.note(format!(
        "scenario {scenario}, netd: {flows} {kind} flows translated (netd_nat_flows_total), \
         {entries} connection-tracking entries at the end"
    ));
    Ok(())
}

fn measure(
    ctx: &Ctx,
    edge: &Edge,
    direction: Direction,
    figure: Figure,
    failed: &mut f64,
) -> Result<Rows> {
    let plan = ctx.plan;
    let client = Client {
        ns: match direction {
            Direction::Inbound => &edge.outside,
            Direction::Outbound => &edge.container,
        },
    };
    let server = |port| match direction {
        Direction::Inbound => edge.dial(port),
        Direction::Outbound => SocketAddr::from((edge.outside_ip, port)),
    };
    Ok(match figure {
        Figure::Tcp1 => vec![(
            "TCP throughput, 1 stream (iperf3)",
            "Gbit/s",
            Better::Higher,
            client.iperf(server(IPERF_PORT), 1, plan.tcp_secs)?,
        )],
        Figure::Tcp4 => vec![(
            "TCP throughput, 4 streams (iperf3)",
            "Gbit/s",
            Better::Higher,
            client.iperf(server(IPERF_PORT), 4, plan.tcp_secs)?,
        )],
        Figure::Rr => {
            let (p50, p99) = client.rr(server(RR_PORT), plan.rr_secs)?;
            vec![
                (
                    "request/response latency p50 (64 B)",
                    "µs",
                    Better::Lower,
                    p50,
                ),
                (
                    "request/response latency p99 (64 B)",
                    "µs",
                    Better::Lower,
                    p99,
                ),
            ]
        }
        Figure::Crr => {
            let rate = client.crr(server(CRR_PORT), plan.rr_secs)?;
            if rate.failed > 0.0 {
                say!("    {} connections failed on {}", rate.failed, edge.system);
                *failed += rate.failed;
            }
            vec![(
                "new TCP connections (connect, 1 B each way, close)",
                "conn/s",
                Better::Higher,
                rate.per_sec,
            )]
        }
    })
}
