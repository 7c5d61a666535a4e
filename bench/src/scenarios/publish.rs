//! Scenario 2: a published port from an outside client. The outside
//! namespace dials the host's uplink address on the published port, which
//! each system translates to the container: netd in eBPF on the uplink's
//! ingress, docker-like with iptables DNAT, podman-like with netavark's
//! verdict map; the routed baseline dials the container's own address
//! through the host, untranslated.

use anyhow::Result;

use super::edge::{self, Direction, Figure};
use crate::Ctx;
use crate::cmd::say;
use crate::daemon::Daemon;
use crate::pingpong::{CRR_PORT, IPERF_PORT, RR_PORT};
use crate::report::Report;
use crate::topology::{self, Port};

/// The container ports the servers listen on, each published.
const PORTS: [Port; 3] = [
    Port::tcp(IPERF_PORT),
    Port::tcp(RR_PORT),
    Port::tcp(CRR_PORT),
];

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    say!("[2] building the published-port topologies: netd, routed, docker-like, podman-like");
    // Declared in this order so they drop in reverse: the topologies, then
    // the daemon (and its outside namespace with it).
    let daemon = Daemon::start(&ctx.netd, &ctx.tag)?;
    let edges = [
        topology::netd_edge(&daemon, &PORTS)?,
        topology::routed_edge(&ctx.tag)?,
        topology::docker_edge(&ctx.tag, &PORTS)?,
        topology::podman_edge(&ctx.tag, &PORTS)?,
    ];
    edge::run(
        ctx,
        2,
        &edges,
        Direction::Inbound,
        &[Figure::Tcp1, Figure::Tcp4, Figure::Rr, Figure::Crr],
        report,
    )?;
    edge::note_netd(&daemon, 2, &["published"], report)
}
