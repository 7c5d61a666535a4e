//! What the datapath counted, joined with the names users know. Both the
//! `/stats` API (`netd stats`) and the Prometheus endpoint read it from the
//! engine's latest snapshot and the datapath's counters, without waiting
//! for the engine.
//!
//! The counters are per-CPU maps, read at the moment they are asked. The
//! connection tracking table's occupancy is a census (a batched read of the
//! whole table): the metrics endpoint, which anyone on the host may scrape,
//! shows the last one, at most [`CENSUS_INTERVAL`] old, which a background
//! task keeps fresh; `netd stats`, asked for by an operator on the API
//! socket, counts anew.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netd_common::{Direction, DropReason, EndpointStats};
use tracing::warn;

use crate::dataplane::{Census, Counters, NatStats, OverlayStats};
use crate::dns::DnsStats;
use crate::engine::{ClusterReading, ClusterTelemetry, EngineHandle, Snapshot};
use crate::error::{EngineError, Result};

/// How often the background census counts the connection tracking table.
pub const CENSUS_INTERVAL: Duration = Duration::from_secs(5);

/// Traffic of one container on one network.
#[derive(Debug, Clone)]
pub struct EndpointTraffic {
    pub container: String,
    pub network: String,
    /// Interface name inside the container (eth0, ...).
    pub ifname: String,
    pub stats: EndpointStats,
}

#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// In container, then network order.
    pub endpoints: Vec<EndpointTraffic>,
    /// Every known {reason, direction}, zeros included.
    pub drops: Vec<(DropReason, Direction, u64)>,
    /// Connection tracking and translations (masquerade, published ports).
    pub nat: NatStats,
    /// New flows sent to each service backend: (service, backend, count).
    pub lb: Vec<(String, Ipv4Addr, u64)>,
    /// Queries of the embedded DNS server.
    pub dns: DnsStats,
    /// Networks and containers defined.
    pub networks: usize,
    pub containers: usize,
    /// Traffic through the overlay's tunnel.
    pub overlay: OverlayStats,
    /// In cluster mode: the cluster store link, and the endpoints other
    /// hosts have on this host's overlay networks, by host address.
    pub cluster: Option<ClusterTraffic>,
}

/// The cluster as this host's metrics show it.
#[derive(Debug, Clone, Default)]
pub struct ClusterTraffic {
    pub reading: ClusterReading,
    /// Other hosts up, with the number of their endpoints this host knows
    /// (its remote peers), by underlay address.
    pub peers: Vec<(Ipv4Addr, usize)>,
}

/// Reads traffic for the API and the metrics endpoint.
pub struct Telemetry {
    engine: EngineHandle,
    counters: Counters,
    census: Mutex<Census>,
    /// In cluster mode: what the cluster agent knows.
    cluster: Option<Arc<ClusterTelemetry>>,
}

impl Telemetry {
    /// `counters`: the reader's own handles on the datapath's maps
    /// ([`crate::dataplane::Dataplane::counters`]). Takes a first census.
    pub fn new(
        engine: EngineHandle,
        counters: Counters,
        cluster: Option<Arc<ClusterTelemetry>>,
    ) -> Arc<Telemetry> {
        let census = counters.conntrack_census().unwrap_or_else(|e| {
            warn!(error = %e, "cannot count the connection tracking table");
            Census::default()
        });
        Arc::new(Telemetry {
            engine,
            counters,
            census: Mutex::new(census),
            cluster,
        })
    }

    /// Counts the connection tracking table every [`CENSUS_INTERVAL`] until
    /// the task is aborted.
    pub fn keep_census(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CENSUS_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let counting = this.clone();
                match tokio::task::spawn_blocking(move || counting.count()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %e, "cannot count the connection tracking table"),
                    Err(e) => warn!(error = %e, "connection tracking census failed"),
                }
            }
        })
    }

    /// A census now (blocking: a batched read of the whole table).
    fn count(&self) -> Result<()> {
        let census = self
            .counters
            .conntrack_census()
            .map_err(|e| EngineError::system("cannot count connection tracking entries", e))?;
        *self.census.lock().unwrap_or_else(|e| e.into_inner()) = census;
        Ok(())
    }

    /// Everything counted, with the last census.
    pub fn read(&self) -> Result<Traffic> {
        let snapshot = self.engine.snapshot();
        let census = *self.census.lock().unwrap_or_else(|e| e.into_inner());
        self.read_with(&snapshot, census)
    }

    /// Everything counted, with a census taken now.
    pub async fn read_fresh(self: &Arc<Self>) -> Result<Traffic> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.count())
            .await
            .map_err(|e| EngineError::system("connection tracking census failed", e))??;
        self.read()
    }

    fn read_with(&self, snap: &Snapshot, census: Census) -> Result<Traffic> {
        let state = &snap.state;
        let system = |what: &str, e| EngineError::system(format!("cannot read {what}"), e);
        let drops = self
            .counters
            .drops()
            .map_err(|e| system("drop counters", e))?;
        let mut nat = self.counters.nat().map_err(|e| system("NAT counters", e))?;
        nat.conntrack_entries = census.live;
        nat.conntrack_expired = census.expired;
        let services: HashMap<u32, &str> = state
            .services
            .values()
            .map(|s| (s.index, s.name.as_str()))
            .collect();
        let lb = self
            .counters
            .lb()
            .map_err(|e| system("load-balancer counters", e))?
            .into_iter()
            .filter_map(|(index, backend, n)| Some((services.get(&index)?.to_string(), backend, n)))
            .collect();
        let mut endpoints = Vec::new();
        for c in state.containers.values() {
            for ep in &c.endpoints {
                let Some(slot) = snap.links.get(&ep.id).and_then(|l| l.slot) else {
                    continue;
                };
                let stats = self
                    .counters
                    .endpoint(slot)
                    .map_err(|e| system("endpoint counters", e))?;
                endpoints.push(EndpointTraffic {
                    container: c.name.clone(),
                    network: state
                        .networks
                        .get(&ep.network_id)
                        .map(|n| n.name.clone())
                        .unwrap_or_default(),
                    ifname: ep.ifname.clone(),
                    stats,
                });
            }
        }
        endpoints.sort_by(|a, b| (&a.container, &a.network).cmp(&(&b.container, &b.network)));
        let overlay = self
            .counters
            .overlay()
            .map_err(|e| system("overlay counters", e))?;
        let cluster = self.cluster.as_ref().map(|c| ClusterTraffic {
            reading: c.read(),
            peers: state
                .hosts
                .values()
                .map(|h| {
                    let n = state.peers.values().filter(|p| p.host == h.id).count();
                    (h.addr, n)
                })
                .collect(),
        });
        Ok(Traffic {
            endpoints,
            drops,
            nat,
            lb,
            dns: self.engine.dns_counters().read(),
            networks: state.networks.len(),
            containers: state.containers.len(),
            overlay,
            cluster,
        })
    }
}
