//! Scenario 9: overlay networks across hosts, the data path. On a
//! simulated cluster ([`Cluster`]: an underlay bridge, a real etcd, host
//! namespaces with a netd daemon each), container to container across two
//! hosts through netd's overlay (VXLAN in eBPF), against the same on the
//! same underlay through two kernel VXLAN devices straight between the
//! containers (vxlan-limit) and through Docker's overlay data path
//! (docker-overlay-like; both in [`crate::overlay`]): TCP throughput with
//! 1 and 4 streams, request/response p50/p99, new connections per second
//! and the 60-byte packet rate, the figures of scenarios 1 and 6, measured
//! the same way, systems in turn with the order rotating per repetition.
//!
//! Then the routing mesh: new connections per second from an outside
//! namespace on the underlay to a service's published port on a host with
//! no replica (the replicas run on the other host), through netd's mesh
//! and through the iptables mesh (Docker's ingress without IPVS). If
//! netd's mesh does not answer there, its row says so instead of a number.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::c2c::{self, Figure};
use super::{retry, services};
use crate::cluster::{self, Cluster, Host};
use crate::cmd::{self, say};
use crate::netns::Netns;
use crate::overlay::{self, CrossHost};
use crate::pingpong::{self, CRR_PORT, Servers};
use crate::probe;
use crate::report::{Better, Report};
use crate::topology::{self, System};
use crate::{Ctx, stats};

const HOSTS: usize = 2;
const NETWORK: &str = "ov";
const SUBNET: &str = "198.19.80.0/24";
/// Replicas of the mesh's service, all on host 0; clients dial host 1.
const REPLICAS: u8 = 2;
/// As scenario 1: netd's cost over the limit is a few percent, one
/// repetition's ratio swings by ±10%.
const REPS_PER_REP: usize = 2;
/// How long a path may take to carry its first packet once built (netd:
/// the other host learns the endpoint from the store's watch).
const REACHABLE: Duration = Duration::from_secs(20);
const MESH_FIGURE: &str =
    "new TCP connections through the routing mesh (published port, host without a replica)";

pub fn run(ctx: &Ctx, report: &mut Report) -> Result<()> {
    say!(
        "[9] overlay across hosts: a {HOSTS}-host netd cluster, vxlan-limit and \
         docker-overlay-like on its underlay"
    );
    let mut cluster = Cluster::start(
        &ctx.netd,
        &format!("{}-9", ctx.tag),
        HOSTS,
        netd::cluster::DEFAULT_LEASE_TTL.as_secs(),
    )?;
    cluster.create_overlay(NETWORK, SUBNET)?;
    let paths = [
        netd_pair(&cluster)?,
        overlay::vxlan_limit(&mut cluster)?,
        overlay::docker_overlay(&mut cluster)?,
    ];
    let mut servers = Vec::new();
    for path in &paths {
        let pair = &path.pair;
        reachable(&pair.client, pair.server_ep.ip)
            .with_context(|| format!("{}: the server is out of reach", pair.system))?;
        servers.push(
            Servers::start(&pair.server)
                .with_context(|| format!("starting servers on {}", pair.system))?,
        );
    }
    let figures = [
        Figure::Tcp1,
        Figure::Tcp4,
        Figure::Rr,
        Figure::Crr,
        Figure::Pps,
    ];
    let reps = if ctx.plan.quick {
        1
    } else {
        ctx.plan.reps * REPS_PER_REP
    };
    for rep in 0..reps {
        for &figure in &figures {
            for i in 0..paths.len() {
                cmd::check_interrupted()?;
                let k = (i + rep) % paths.len();
                let (pair, server) = (&paths[k].pair, &mut servers[k]);
                server.check_alive()?;
                let rows = retry(|| c2c::measure(ctx, pair, figure))
                    .with_context(|| format!("measuring on {}", pair.system))?;
                for (name, unit, better, value) in rows {
                    say!(
                        "[9] rep {}/{reps} {:<44} {:<40} {:>10} {unit}",
                        rep + 1,
                        pair.system.label(),
                        name,
                        stats::fmt3(value)
                    );
                    report.add(9, name, unit, better, pair.system, value);
                }
            }
        }
    }
    drop(servers);
    mesh(ctx, &mut cluster, report)
}

/// netd's pair: a container on host 0 and one on host 1, on the overlay.
fn netd_pair(cluster: &Cluster) -> Result<CrossHost> {
    let [h0, h1] = [&cluster.hosts[0], &cluster.hosts[1]];
    cluster::via_store(|| h0.daemon.api().create_container("client", NETWORK))?;
    cluster::via_store(|| h1.daemon.api().create_container("server", NETWORK))?;
    let client = Netns::open(&h0.daemon.netns_name("client"))?;
    let server = Netns::open(&h1.daemon.netns_name("server"))?;
    Ok(topology::finish(System::Netd, client, server, None)?.into())
}

/// Until `client` gets an answer to a ping of `ip`.
fn reachable(client: &Netns, ip: std::net::Ipv4Addr) -> Result<()> {
    client.in_thread(|| {
        let mut seq = 0;
        cmd::wait_until(&format!("{ip} answering"), REACHABLE, || {
            seq += 1;
            probe::ping(ip, seq, Duration::from_millis(200)).unwrap_or(false)
        })
    })
}

/// The routing mesh rows: netd's (if its mesh answers on a host without a
/// replica) and the iptables mesh's, in turn, from one outside client.
fn mesh(ctx: &Ctx, cluster: &mut Cluster, report: &mut Report) -> Result<()> {
    say!("[9] routing mesh: netd vs iptables DNAT+SNAT over VXLAN, {REPLICAS} replicas");
    let published = topology::host_port(CRR_PORT);
    let outside = cluster.attach_other("out")?;
    services::client_settings(&outside)?;
    let baseline = overlay::iptables_mesh(cluster, REPLICAS, published)?;
    let _netd = NetdMesh::start(&cluster.hosts[0], published)?;
    let netd_dial = SocketAddr::from((cluster.hosts[1].addr, published));
    // The service reaches host 1 through the store: a few seconds at most.
    let answers = outside.in_thread(|| {
        let mut last = Ok(());
        cmd::wait_until("netd's mesh answering", Duration::from_secs(10), || {
            last = pingpong::one_connection(netd_dial);
            last.is_ok()
        })
        .map_err(|timeout| last.err().unwrap_or(timeout))
    });
    let mut systems = vec![(System::IptablesMesh, baseline.dial)];
    match &answers {
        Ok(()) => systems.push((System::Netd, netd_dial)),
        Err(e) => say!("[9] netd's routing mesh does not answer on {netd_dial}: {e:#}"),
    }
    for rep in 0..ctx.plan.reps {
        for i in 0..systems.len() {
            cmd::check_interrupted()?;
            let (system, dial) = systems[(i + rep) % systems.len()];
            let rate = c2c::connection_rate(&outside, dial, ctx.plan.rr_secs, system)
                .with_context(|| format!("measuring the mesh on {system}"))?;
            say!(
                "[9] rep {}/{} {:<44} mesh {:>10} conn/s",
                rep + 1,
                ctx.plan.reps,
                system.label(),
                stats::fmt3(rate)
            );
            report.add(9, MESH_FIGURE, "conn/s", Better::Higher, system, rate);
        }
    }
    if let Err(e) = answers {
        report.not_yet(
            9,
            "routing mesh, netd: new TCP connections through a published port on a host \
             without a replica",
            &format!(
                "netd's published service port does not answer on a host without a local \
                 replica on this branch ({e:#}); the iptables mesh was measured"
            ),
        );
    }
    Ok(())
}

/// netd's side of the mesh: a service on the overlay publishing
/// `published` → [`CRR_PORT`], its replicas (the bench's echo server) on
/// one host. Dropping it removes the replicas through the API (their
/// processes would outlive the daemon).
struct NetdMesh<'h> {
    host: &'h Host,
}

impl<'h> NetdMesh<'h> {
    fn start(host: &'h Host, published: u16) -> Result<NetdMesh<'h>> {
        let api = host.daemon.api();
        let service =
            api.create_published_service("web", NETWORK, &[format!("{published}:{CRR_PORT}")])?;
        let mesh = NetdMesh { host };
        let serve = pingpong::serve_command()?;
        for r in 0..REPLICAS {
            let name = format!("web{r}");
            cluster::via_store(|| {
                api.run_container(&name, NETWORK, std::slice::from_ref(&service), &serve)
            })?;
            services::wait_listening(&Netns::open(&host.daemon.netns_name(&name))?)?;
        }
        Ok(mesh)
    }
}

impl Drop for NetdMesh<'_> {
    fn drop(&mut self) {
        for r in 0..REPLICAS {
            let _ = self.host.daemon.api().remove_container(&format!("web{r}"));
        }
    }
}
