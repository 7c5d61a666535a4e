//! Scenario 6, through the NAT paths: the bench's packet generator across
//! the host's uplink, on the edges of scenarios 2 and 3 with one UDP port
//! published. Inbound, the outside namespace sends to the published
//! address and port, which each system translates to the container (netd
//! in `netd_uplink_in`, docker-like with iptables DNAT, podman-like with
//! netavark's verdict map); outbound, the container sends to the outside
//! namespace and each system masquerades it (netd in `netd_from_ep`). The
//! routed baseline forwards both untranslated. Frames are counted by the
//! receiving namespace's device, as in the forwarding figures.

use anyhow::Result;

use super::edge::{self, Direction, Figure, PPS_PORT};
use crate::Ctx;
use crate::cmd::say;
use crate::daemon::Daemon;
use crate::report::Report;
use crate::topology;

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    say!("[6] building the NAT packet-rate topologies: netd, routed, docker-like, podman-like");
    // Declared in this order so they drop in reverse: the topologies, then
    // the daemon (and its outside namespace with it).
    let daemon = Daemon::start(&ctx.netd, &ctx.tag)?;
    let ports = [PPS_PORT];
    let edges = [
        topology::netd_edge(&daemon, &ports)?,
        topology::routed_edge(&ctx.tag)?,
        topology::docker_edge(&ctx.tag, &ports)?,
        topology::podman_edge(&ctx.tag, &ports)?,
    ];
    for direction in [Direction::Inbound, Direction::Outbound] {
        edge::run(ctx, 6, &edges, direction, &[Figure::Pps], report)?;
    }
    edge::note_netd(&daemon, 6, &["published", "masquerade"], report)
}
