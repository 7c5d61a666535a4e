//! `netd stats`: the datapath's counters. Traffic per endpoint (seen from the
//! container), totals per network, and drops by reason: the first place to
//! look when "container A cannot reach B" (was it dropped, and why?).

use std::collections::BTreeMap;

use clap::Args;

use super::Outcome;
use super::client::Client;
use super::output::{err, out, pretty_json, table};
use crate::api::wire::StatsResponse;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// `table` (default) or `json`.
    #[arg(long)]
    pub format: Option<String>,
    /// Also list drop reasons that counted nothing.
    #[arg(short, long)]
    pub all: bool,
}

pub async fn run(client: &Client, args: StatsArgs) -> Outcome {
    let format = args.format.as_deref().unwrap_or("table");
    if format != "table" && format != "json" {
        err(&format!(
            "unsupported --format {format:?}: use \"table\" or \"json\""
        ));
        return Outcome::Exit(1);
    }
    let stats: StatsResponse = match client.get("/stats").await {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    if format == "json" {
        out(&pretty_json(&stats));
    } else {
        out(&render(&stats, args.all));
    }
    Outcome::Exit(0)
}

fn render(s: &StatsResponse, all: bool) -> String {
    let endpoints: Vec<Vec<String>> = s
        .endpoints
        .iter()
        .map(|e| {
            vec![
                e.container.clone(),
                e.network.clone(),
                e.interface.clone(),
                e.sent_packets.to_string(),
                e.sent_bytes.to_string(),
                e.received_packets.to_string(),
                e.received_bytes.to_string(),
            ]
        })
        .collect();
    let mut per_network: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
    for e in &s.endpoints {
        let t = per_network.entry(&e.network).or_default();
        t[0] += e.sent_packets;
        t[1] += e.sent_bytes;
        t[2] += e.received_packets;
        t[3] += e.received_bytes;
    }
    let networks: Vec<Vec<String>> = per_network
        .into_iter()
        .map(|(n, t)| {
            std::iter::once(n.to_string())
                .chain(t.iter().map(u64::to_string))
                .collect()
        })
        .collect();
    let drops: Vec<Vec<String>> = s
        .drops
        .iter()
        .filter(|d| all || d.packets > 0)
        .map(|d| vec![d.reason.clone(), d.direction.clone(), d.packets.to_string()])
        .collect();
    let counters = ["SENT PACKETS", "SENT BYTES", "RECV PACKETS", "RECV BYTES"];
    let mut endpoint_headers = vec!["CONTAINER", "NETWORK", "INTERFACE"];
    endpoint_headers.extend(counters);
    let mut network_headers = vec!["NETWORK"];
    network_headers.extend(counters);
    let n = &s.nat;
    let mut text = format!(
        "{}\n{}\n{}\nNAT: {} of {} conntrack entries in use; flows: {} masqueraded, {} published, {} hairpin\n",
        table(&endpoint_headers, &endpoints),
        table(&network_headers, &networks),
        table(&["DROP REASON", "DIRECTION", "PACKETS"], &drops),
        n.conntrack_entries,
        n.conntrack_capacity,
        n.masqueraded_flows,
        n.published_flows,
        n.hairpin_flows,
    );
    let o = &s.overlay;
    if let Some(c) = &s.cluster {
        text.push_str(&format!(
            "Overlay: {} packets ({} bytes) to other hosts, {} packets ({} bytes) from them\n\
             Cluster: store {}, revision {}; {} other host(s) up: {}\n",
            o.encap_packets,
            o.encap_bytes,
            o.decap_packets,
            o.decap_bytes,
            if c.connected {
                "connected"
            } else {
                "out of reach"
            },
            c.revision,
            c.hosts.len(),
            c.hosts
                .iter()
                .map(|h| format!("{} ({} endpoints)", h.address, h.endpoints))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{DropJson, EndpointStatsJson};

    #[test]
    fn tables_sum_networks_and_hide_zero_drops() {
        let ep = |c: &str, n: &str, p: u64| EndpointStatsJson {
            container: c.into(),
            network: n.into(),
            interface: "eth0".into(),
            sent_packets: p,
            sent_bytes: p * 100,
            received_packets: p,
            received_bytes: p * 100,
        };
        let s = StatsResponse {
            endpoints: vec![ep("a", "n1", 2), ep("b", "n1", 3), ep("c", "n2", 1)],
            drops: vec![
                DropJson {
                    reason: "cross_network".into(),
                    direction: "from_endpoint".into(),
                    packets: 4,
                },
                DropJson {
                    reason: "malformed".into(),
                    direction: "from_endpoint".into(),
                    packets: 0,
                },
            ],
            ..Default::default()
        };
        let text = render(&s, false);
        assert!(text.contains("n1        5              500"), "{text}");
        assert!(text.contains("cross_network"));
        assert!(!text.contains("malformed"));
        assert!(render(&s, true).contains("malformed"));
    }
}
