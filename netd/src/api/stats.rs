//! `GET /stats`: what `netd stats` prints.

use axum::extract::State;
use axum::http::StatusCode;

use super::errors::ApiResult;
use super::wire::{DropJson, EndpointStatsJson, NatJson, StatsResponse};
use super::{AppState, json_response};

pub async fn stats(State(app): State<AppState>) -> ApiResult {
    let traffic = app.telemetry.read_fresh().await?;
    let body = StatsResponse {
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
