//! Prometheus metrics on `--metrics-addr` at `/metrics`.
//!
//! Long-lived metrics (API request latency) live in a registry updated as
//! requests are served. Datapath counters are not copied anywhere: each
//! scrape reads the per-CPU maps and the engine's latest snapshot
//! (`crate::traffic`), never waiting for the engine, and encodes them, so
//! the numbers are never staler than the scrape and cost nothing between
//! scrapes; the connection tracking occupancy is the background census's,
//! so a scrape never walks that table. Labels are bounded: methods and
//! status codes, and networks, containers and drop reasons, which exist
//! only as long as their objects.
//!
//! Scrapers that ask for OpenMetrics (Prometheus does) get it, as
//! `prometheus_client` encodes it; the others (`promtool check metrics`,
//! curl, older agents) get the Prometheus text format it converts to.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::warn;

use crate::traffic::{Telemetry, Traffic};

const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    status: u16,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            // 100 µs .. ~3 s
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register(
            "netd_api_request_duration_seconds",
            "Time to answer an API request",
            requests.clone(),
        );
        Metrics { registry, requests }
    }

    /// Wraps the API router so that every request's latency is recorded.
    pub fn track_requests(self: &Arc<Self>, router: Router) -> Router {
        let metrics = self.clone();
        router.layer(middleware::from_fn(move |req: Request, next: Next| {
            let metrics = metrics.clone();
            async move {
                let method = req.method().as_str().to_owned();
                let start = Instant::now();
                let response = next.run(req).await;
                metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        method,
                        status: response.status().as_u16(),
                    })
                    .observe(start.elapsed().as_secs_f64());
                response
            }
        }))
    }

    /// The `/metrics` endpoint.
    pub fn router(self: &Arc<Self>, telemetry: Arc<Telemetry>) -> Router {
        Router::new()
            .route("/metrics", get(scrape))
            .with_state((self.clone(), telemetry))
    }
}

async fn scrape(
    State((metrics, telemetry)): State<(Arc<Metrics>, Arc<Telemetry>)>,
    headers: HeaderMap,
) -> Response {
    let snapshot = Snapshot::read(&telemetry);
    let mut body = String::new();
    let encoded = encode_registry(&mut body, &metrics.registry)
        .and_then(|_| {
            let mut per_scrape = Registry::default();
            per_scrape.register_collector(Box::new(snapshot));
            encode_registry(&mut body, &per_scrape)
        })
        .and_then(|_| encode_eof(&mut body));
    let openmetrics = headers.get_all(ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    });
    match encoded {
        Ok(()) if openmetrics => ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], body).into_response(),
        Ok(()) => (
            [(CONTENT_TYPE, CONTENT_TYPE_PROMETHEUS)],
            to_prometheus_text(&body),
        )
            .into_response(),
        Err(e) => {
            warn!(error = %e, "cannot encode metrics");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// OpenMetrics text in the Prometheus text format (0.0.4). For what netd
/// exports they differ only in three ways: OpenMetrics ends with `# EOF`,
/// may have `# UNIT` lines, and names a counter's family without the
/// `_total` its samples carry, where the Prometheus format names a family
/// like its samples (`promtool check metrics` otherwise reads the samples
/// as a family of their own, without help).
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 256);
    // A HELP line waits for its TYPE line, which tells whether it is a
    // counter's.
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some(earlier) = help.replace(rest) {
                out.push_str(&format!("# HELP {earlier}\n"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let family = match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            };
            if let Some(pending) = help.take() {
                match pending.split_once(' ') {
                    Some((of, text)) if of == name => {
                        out.push_str(&format!("# HELP {family} {text}\n"));
                    }
                    _ => out.push_str(&format!("# HELP {pending}\n")),
                }
            }
            out.push_str(&format!("# TYPE {family} {kind}\n"));
            continue;
        }
        if let Some(pending) = help.take() {
            out.push_str(&format!("# HELP {pending}\n"));
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// What the engine's snapshot and the datapath maps hold at scrape time.
#[derive(Debug, Default)]
struct Snapshot {
    traffic: Traffic,
}

impl Snapshot {
    fn read(telemetry: &Telemetry) -> Snapshot {
        Snapshot {
            traffic: telemetry.read().unwrap_or_else(|e| {
                warn!(error = %e, "cannot read datapath counters");
                Traffic::default()
            }),
        }
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = |enc: &mut DescriptorEncoder, name, help, v: usize| {
            ConstGauge::new(v as i64).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)
        };
        gauge(
            &mut enc,
            "netd_networks",
            "Networks defined",
            self.traffic.networks,
        )?;
        gauge(
            &mut enc,
            "netd_containers",
            "Containers defined",
            self.traffic.containers,
        )?;

        for (name, help, pick) in [
            (
                "netd_endpoint_packets",
                "Packets through an endpoint, by direction seen from the container",
                (|s: &netd_common::EndpointStats| (s.from_packets, s.to_packets))
                    as fn(&netd_common::EndpointStats) -> (u64, u64),
            ),
            (
                "netd_endpoint_bytes",
                "Bytes through an endpoint, by direction seen from the container",
                |s: &netd_common::EndpointStats| (s.from_bytes, s.to_bytes),
            ),
        ] {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ep in &self.traffic.endpoints {
                let (from, to) = pick(&ep.stats);
                for (direction, v) in [("from_endpoint", from), ("to_endpoint", to)] {
                    let labels = vec![
                        ("network", ep.network.as_str()),
                        ("container", ep.container.as_str()),
                        ("direction", direction),
                    ];
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }

        let nat = &self.traffic.nat;
        for (name, help, v) in [
            (
                "netd_conntrack_entries",
                "Connection tracking entries of live flows (two per flow)",
                nat.conntrack_entries,
            ),
            (
                "netd_conntrack_expired_entries",
                "Timed-out entries not reclaimed yet",
                nat.conntrack_expired,
            ),
            (
                "netd_conntrack_capacity",
                "Size of the connection tracking table",
                nat.conntrack_capacity,
            ),
        ] {
            ConstGauge::new(v as i64).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        let mut flows = enc.encode_descriptor(
            "netd_nat_flows",
            "Translated flows created, by kind",
            None,
            MetricType::Counter,
        )?;
        for (kind, v) in [
            ("masquerade", nat.snat_flows),
            ("published", nat.dnat_flows),
            ("hairpin", nat.hairpin_flows),
        ] {
            ConstCounter::new(v).encode(flows.encode_family(&vec![("kind", kind)])?)?;
        }
        for (name, help, v) in [
            (
                "netd_nat_flows_ended",
                "Translated flows removed (closed by TCP or timed out)",
                nat.closed_flows + nat.expired_flows,
            ),
            (
                "netd_nat_port_collisions",
                "Source ports found taken while masquerading",
                nat.port_collisions,
            ),
            (
                "netd_nat_translated_packets",
                "Packets whose addresses were translated",
                nat.translated_packets,
            ),
        ] {
            ConstCounter::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        let mut per_port = enc.encode_descriptor(
            "netd_published_port_flows",
            "Flows translated through a published port (from outside and hairpin)",
            None,
            MetricType::Counter,
        )?;
        for p in &nat.published {
            let address = p.host_addr.map_or("0.0.0.0".to_string(), |a| a.to_string());
            let port = format!("{}/{}", p.host_port, p.proto.as_str());
            let labels = vec![("address", address.as_str()), ("port", port.as_str())];
            ConstCounter::new(p.flows).encode(per_port.encode_family(&labels)?)?;
        }

        let mut lb = enc.encode_descriptor(
            "netd_lb_selections",
            "New flows the load balancer sent to each service backend",
            None,
            MetricType::Counter,
        )?;
        for (service, backend, n) in &self.traffic.lb {
            let backend = backend.to_string();
            let labels = vec![("service", service.as_str()), ("backend", backend.as_str())];
            ConstCounter::new(*n).encode(lb.encode_family(&labels)?)?;
        }
        let d = &self.traffic.dns;
        let refused = [
            ("internal_network", d.refused_internal),
            ("container_budget", d.refused_container_budget),
            ("daemon_budget", d.refused_daemon_budget),
        ];
        let queries = [
            ("answered", d.answered_local),
            ("forwarded", d.forwarded),
            ("nxdomain", d.nxdomain),
            ("failed", d.failed),
            ("refused", refused.iter().map(|(_, n)| n).sum()),
        ];
        let tcp_rejected = [
            ("container_budget", d.tcp_rejected_container_budget),
            ("daemon_budget", d.tcp_rejected_daemon_budget),
        ];
        for (name, help, label, values) in [
            (
                "netd_dns_queries",
                "Queries to the embedded DNS server, by outcome",
                "outcome",
                &queries[..],
            ),
            (
                "netd_dns_refused",
                "Queries the embedded DNS server did not forward, by reason",
                "reason",
                &refused[..],
            ),
            (
                "netd_dns_tcp_rejected",
                "TCP connections to the embedded DNS server closed at once, by the budget spent",
                "reason",
                &tcp_rejected[..],
            ),
        ] {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for &(value, n) in values {
                ConstCounter::new(n).encode(family.encode_family(&vec![(label, value)])?)?;
            }
        }
        ConstCounter::new(d.upstream_failures).encode(enc.encode_descriptor(
            "netd_dns_upstream_failures",
            "Upstream resolvers asked that did not answer usably (timeout, error, SERVFAIL, REFUSED)",
            None,
            MetricType::Counter,
        )?)?;

        let mut drops = enc.encode_descriptor(
            "netd_drops",
            "Packets dropped by the datapath, by reason",
            None,
            MetricType::Counter,
        )?;
        for (reason, direction, n) in &self.traffic.drops {
            let labels = vec![
                ("reason", reason.as_str()),
                ("direction", direction.as_str()),
            ];
            ConstCounter::new(*n).encode(drops.encode_family(&labels)?)?;
        }

        let o = &self.traffic.overlay;
        for (name, help, encap, decap) in [
            (
                "netd_overlay_packets",
                "Packets through the overlay's tunnel: encapsulated to other hosts, decapsulated from them",
                o.encap_packets,
                o.decap_packets,
            ),
            (
                "netd_overlay_bytes",
                "Bytes (inner frames) through the overlay's tunnel",
                o.encap_bytes,
                o.decap_bytes,
            ),
        ] {
            let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (direction, v) in [("encap", encap), ("decap", decap)] {
                ConstCounter::new(v)
                    .encode(family.encode_family(&vec![("direction", direction)])?)?;
            }
        }
        if let Some(c) = &self.traffic.cluster {
            self.encode_cluster(&mut enc, c)?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// The cluster store link and the other hosts (cluster mode only).
    fn encode_cluster(
        &self,
        enc: &mut DescriptorEncoder,
        c: &crate::traffic::ClusterTraffic,
    ) -> Result<(), std::fmt::Error> {
        let r = &c.reading;
        for (name, help, v) in [
            (
                "netd_cluster_store_connected",
                "Whether the cluster store answers (1) or is out of reach (0)",
                i64::from(r.connected),
            ),
            (
                "netd_cluster_joined",
                "Whether this host holds a lease in the cluster",
                i64::from(r.joined),
            ),
            (
                "netd_cluster_revision",
                "The cluster store revision this host has applied",
                r.revision,
            ),
        ] {
            ConstGauge::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        for (name, help, v) in [
            (
                "netd_cluster_watch_events",
                "Changes of the cluster's state applied from the watch",
                r.events,
            ),
            (
                "netd_cluster_reloads",
                "Full loads of the cluster's state (at join, and after a compaction)",
                r.reloads,
            ),
            (
                "netd_cluster_lease_renewals",
                "Renewals of this host's lease",
                r.lease_renewals,
            ),
            (
                "netd_cluster_lease_losses",
                "Times this host's lease was found expired and replaced",
                r.lease_losses,
            ),
        ] {
            ConstCounter::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Counter,
            )?)?;
        }
        ConstGauge::new(c.peers.len() as i64).encode(enc.encode_descriptor(
            "netd_cluster_hosts",
            "Other hosts of the cluster that are up",
            None,
            MetricType::Gauge,
        )?)?;
        let mut peers = enc.encode_descriptor(
            "netd_cluster_peers",
            "Endpoints of other hosts on this host's overlay networks, by host",
            None,
            MetricType::Gauge,
        )?;
        for (host, n) in &c.peers {
            let host = host.to_string();
            ConstGauge::new(*n as i64)
                .encode(peers.encode_family(&vec![("host", host.as_str())])?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_becomes_the_prometheus_text_format() {
        let openmetrics = "\
# HELP netd_networks Networks defined.
# TYPE netd_networks gauge
netd_networks 3
# HELP netd_drops Packets dropped by the datapath, by reason.
# TYPE netd_drops counter
netd_drops_total{reason=\"not_ip\"} 0
# HELP netd_api_request_duration_seconds Time to answer an API request.
# TYPE netd_api_request_duration_seconds histogram
# UNIT netd_api_request_duration_seconds seconds
netd_api_request_duration_seconds_sum 0.5
# EOF
";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "\
# HELP netd_networks Networks defined.
# TYPE netd_networks gauge
netd_networks 3
# HELP netd_drops_total Packets dropped by the datapath, by reason.
# TYPE netd_drops_total counter
netd_drops_total{reason=\"not_ip\"} 0
# HELP netd_api_request_duration_seconds Time to answer an API request.
# TYPE netd_api_request_duration_seconds histogram
netd_api_request_duration_seconds_sum 0.5
"
        );
    }
}
