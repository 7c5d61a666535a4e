//! `GET /stats`: what `netd stats` prints.

use axum::extract::State;
use axum::http::StatusCode;

use super::errors::ApiResult;
use super::wire::{
    ClusterPeerHostJson, ClusterStatsJson, DropJson, EndpointStatsJson, NatJson, OverlayJson,
    StatsResponse,
};
use super::{AppState, json_response};

pub async fn stats(State(app): State<AppState>) -> ApiResult {
    let traffic = app.telemetry.read_fresh().await?;
    let cluster = traffic.cluster.as_ref().map(|c| ClusterStatsJson {
        connected: c.reading.connected,
        revision: c.reading.revision,
        watch_events: c.reading.events,
        lease_renewals: c.reading.lease_renewals,
        hosts: c
            .peers
            .iter()
            .map(|(addr, n)| ClusterPeerHostJson {
                address: addr.to_string(),
                endpoints: *n,
            })
            .collect(),
    });
    let o = &traffic.overlay;
    let overlay = OverlayJson {
        encap_packets: o.encap_packets,
        encap_bytes: o.encap_bytes,
        decap_packets: o.decap_packets,
        decap_bytes: o.decap_bytes,
    };
    let body = StatsResponse {
        overlay,
        cluster,
        endpoints: traffic
            .endpoints
            .into_iter()
            .map(|e| EndpointStatsJson {
                container: e.container,
                network: e.network,
                interface: e.ifname,
                sent_packets: e.stats.from_packets,
                sent_bytes: e.stats.from_bytes,
                received_packets: e.stats.to_packets,
                received_bytes: e.stats.to_bytes,
            })
            .collect(),
        nat: NatJson {
            conntrack_entries: traffic.nat.conntrack_entries,
            conntrack_capacity: traffic.nat.conntrack_capacity,
            masqueraded_flows: traffic.nat.snat_flows,
            published_flows: traffic.nat.dnat_flows,
            hairpin_flows: traffic.nat.hairpin_flows,
        },
        drops: traffic
            .drops
            .into_iter()
            .map(|(reason, direction, packets)| DropJson {
                reason: reason.as_str().into(),
                direction: direction.as_str().into(),
                packets,
            })
            .collect(),
    };
    Ok(json_response(StatusCode::OK, &body))
}
