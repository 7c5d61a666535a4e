//! What scenarios 2, 3 and 6 (its NAT figures) share: traffic across the
//! host's uplink between an outside namespace and a container, on every
//! [`Edge`] in turn. As in
//! scenario 1, all the topologies exist at once and the order rotates per
//! repetition, so that slow phases of a noisy machine spread over all
//! systems instead of hitting one.

use std::net::SocketAddr;

use anyhow::{Context as _, Result};

use super::{Rows, retry};
use crate::cmd::{self, say};
use crate::daemon::Daemon;
use crate::pingpong::{CRR_PORT, Client, IPERF_PORT, RR_PORT, Servers};
use crate::pktgen::{self, DISCARD_PORT};
use crate::report::{Better, Report};
use crate::topology::{Edge, Port};
use crate::{Ctx, stats};

/// The container port the packet generator's frames go to (published as
/// UDP, so that the DNAT path translates them), whichever the direction.
pub const PPS_PORT: Port = Port::udp(DISCARD_PORT);
/// UDP flows the packet generator sends, frame by frame in turn: each
/// system translates (and tracks) several connections, not one.
const PPS_FLOWS: u16 = 8;

/// Which way the traffic crosses the host.
#[derive(Clone, Copy)]
pub enum Direction {
    /// An outside client to the container's published ports (scenario 2).
    Inbound,
    /// The container to a server outside (scenario 3).
    Outbound,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// The figures, in the order they run within a repetition.
#[derive(Clone, Copy, PartialEq)]
pub enum Figure {
    Tcp1,
    Tcp4,
    Rr,
    Crr,
    /// Packet rate of the bench's generator (UDP to [`PPS_PORT`]).
    Pps,
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
    // The packet generator needs no server: its frames are counted by the
    // receiving device.
    let mut servers = Vec::new();
    if figures.iter().any(|&f| f != Figure::Pps) {
        for edge in edges {
            let side = match direction {
                Direction::Inbound => &edge.container,
                Direction::Outbound => &edge.outside,
            };
            servers.push(
                Servers::start(side)
                    .with_context(|| format!("starting servers on {}", edge.system))?,
            );
        }
    }
    let plan = ctx.plan;
    let mut failed = vec![0.0; edges.len()];
    let mut csum_errors = vec![0; edges.len()];
    for rep in 0..plan.reps {
        for &figure in figures {
            for i in 0..edges.len() {
                cmd::check_interrupted()?;
                let k = (i + rep) % edges.len();
                let edge = &edges[k];
                if let Some(servers) = servers.get_mut(k) {
                    servers.check_alive()?;
                }
                let rows = retry(|| {
                    measure(
                        ctx,
                        edge,
                        direction,
                        figure,
                        &mut failed[k],
                        &mut csum_errors[k],
                    )
                })
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
    let dir = direction.label();
    for ((edge, failed), csum_errors) in edges.iter().zip(failed).zip(csum_errors) {
        if failed > 0.0 {
            report.note(format!(
                "scenario {scenario} ({dir}), {}: {failed} connections failed during the \
                 connection-rate runs",
                edge.system
            ));
        }
        if csum_errors > 0 {
            report.note(format!(
                "scenario {scenario} ({dir}), {}: {csum_errors} of the packet generator's \
                 datagrams arrived with a bad UDP checksum (InCsumErrors at the receiver)",
                edge.system
            ));
        }
        // Conntrack is part of the bridged baselines' cost; say how full it
        // got.
        if let Some(host) = &edge.host
            && let Ok(count) = host.read_sysctl("net.netfilter.nf_conntrack_count")
        {
            report.note(format!(
                "scenario {scenario} ({dir}), {}: {count} conntrack entries in its host \
                 namespace at the end",
                edge.system
            ));
        }
    }
    Ok(())
}

/// netd's own account of a scenario: the flows its NAT created of each of
/// `kinds` (`published`, `masquerade`), which shows the traffic took netd's
/// translation and not some other path, and the connection-tracking
/// entries left at the end, beside the baselines' conntrack counts.
pub fn note_netd(daemon: &Daemon, scenario: u8, kinds: &[&str], report: &mut Report) -> Result<()> {
    let mut flows = Vec::new();
    for kind in kinds {
        let n = daemon.metric(&format!("netd_nat_flows_total{{kind=\"{kind}\"}}"))?;
        flows.push(format!("{n} {kind}"));
    }
    let entries = daemon.metric("netd_conntrack_entries")?;
    report.note(format!(
        "scenario {scenario}, netd: {} flows translated (netd_nat_flows_total), \
         {entries} connection-tracking entries at the end",
        flows.join(", ")
    ));
    Ok(())
}

fn measure(
    ctx: &Ctx,
    edge: &Edge,
    direction: Direction,
    figure: Figure,
    failed: &mut f64,
    csum_errors: &mut u64,
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
        Figure::Pps => {
            let (sender, receiver) = match direction {
                Direction::Inbound => (&edge.outside, &edge.container),
                Direction::Outbound => (&edge.container, &edge.outside),
            };
            let rate = pktgen::measure(
                ctx.generator,
                sender,
                receiver,
                server(PPS_PORT.number),
                PPS_FLOWS,
                plan.pps_secs,
            )?;
            if rate.csum_errors > 0 {
                say!(
                    "    {} datagrams with a bad UDP checksum on {}",
                    rate.csum_errors,
                    edge.system
                );
                *csum_errors += rate.csum_errors;
            }
            let (received, offered) = pps_rows(direction);
            vec![
                (received, "Mpps", Better::Higher, rate.received / 1e6),
                (offered, "Mpps", Better::Higher, rate.offered / 1e6),
            ]
        }
    })
}

/// The packet-rate figures of `direction`: (received, offered). The routed
/// baseline's cells are the same path, untranslated.
fn pps_rows(direction: Direction) -> (&'static str, &'static str) {
    match direction {
        Direction::Inbound => (
            "packet rate received, outside to published UDP port (DNAT, 8 flows)",
            "packet rate offered, outside to published UDP port (same run)",
        ),
        Direction::Outbound => (
            "packet rate received, container to outside (masquerade, 8 flows)",
            "packet rate offered, container to outside (same run)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pps_rows_name_the_flows_sent() {
        for direction in [Direction::Inbound, Direction::Outbound] {
            let (received, _) = pps_rows(direction);
            assert!(received.contains(&format!(", {PPS_FLOWS} flows)")));
        }
    }
}
