//! Scenario 3: outbound masquerade. The container connects to a server in
//! the outside namespace, which sees the host's uplink address: netd
//! translates in eBPF (source NAT in `netd_from_ep`, replies in
//! `netd_uplink_in`), docker-like with iptables MASQUERADE, podman-like
//! with netavark's nftables masquerade; the routed baseline is not
//! translated (the outside routes the container subnet back through the
//! host).

use anyhow::Result;

use super::edge::{self, Direction, Figure};
use crate::Ctx;
use crate::cmd::say;
use crate::daemon::Daemon;
use crate::report::Report;
use crate::topology;

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    say!("[3] building the outbound topologies: netd, routed, docker-like, podman-like");
    // Declared in this order so they drop in reverse: the topologies, then
    // the daemon (and its outside namespace with it). Nothing is published:
    // the rulesets are those of a container that only goes out.
    let daemon = Daemon::start(&ctx.netd, &ctx.tag)?;
    let edges = [
        topology::netd_edge(&daemon, &[])?,
        topology::routed_edge(&ctx.tag)?,
        topology::docker_edge(&ctx.tag, &[])?,
        topology::podman_edge(&ctx.tag, &[])?,
    ];
    edge::run(
        ctx,
        3,
        &edges,
        Direction::Outbound,
        &[Figure::Tcp1, Figure::Tcp4, Figure::Crr],
        report,
    )?;
    edge::note_netd(&daemon, 3, &["masquerade"], report)
}
