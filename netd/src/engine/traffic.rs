//! What the datapath counted, joined with the names users know. Both the
//! `/stats` API (`netd stats`) and the Prometheus endpoint read it, at the
//! moment they are asked, straight from the per-CPU maps.

use netd_common::{Direction, DropReason, EndpointStats};

use super::Engine;
use crate::dataplane::NatStats;
use crate::dns::DnsStats;
use crate::error::{EngineError, Result};

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
    pub lb: Vec<(String, std::net::Ipv4Addr, u64)>,
    /// Queries of the embedded DNS server.
    pub dns: DnsStats,
}

impl Engine {
    pub fn traffic(&self) -> Result<Traffic> {
        let counters = self
            .dataplane
            .endpoint_stats()
            .map_err(|e| EngineError::system("cannot read endpoint counters", e))?;
        let drops = self
            .dataplane
            .drop_stats()
            .map_err(|e| EngineError::system("cannot read drop counters", e))?;
        let nat = self
            .dataplane
            .nat_stats()
            .map_err(|e| EngineError::system("cannot read NAT counters", e))?;
        let lb = self
            .dataplane
            .lb_stats()
            .map_err(|e| EngineError::system("cannot read load-balancer counters", e))?
            .into_iter()
            .filter_map(|(index, backend, n)| {
                let svc = self.state.services.values().find(|s| s.index == index)?;
                Some((svc.name.clone(), backend, n))
            })
            .collect();
        let mut endpoints = Vec::new();
        for c in self.state.containers.values() {
            for ep in &c.endpoints {
                let Some(ifindex) = host_ifindex(&ep.host_ifname) else {
                    continue;
                };
                let Some((_, stats)) = counters.iter().find(|(i, _)| *i == ifindex) else {
                    continue;
                };
                endpoints.push(EndpointTraffic {
                    container: c.name.clone(),
                    network: self
                        .state
                        .networks
                        .get(&ep.network_id)
                        .map(|n| n.name.clone())
                        .unwrap_or_default(),
                    ifname: ep.ifname.clone(),
                    stats: *stats,
                });
            }
        }
        endpoints.sort_by(|a, b| (&a.container, &a.network).cmp(&(&b.container, &b.network)));
        Ok(Traffic {
            endpoints,
            drops,
            nat,
            lb,
            dns: self.dns_stats(),
        })
    }
}

/// The ifindex of a host-side veth, from sysfs (no netlink round trip on a
/// scrape).
fn host_ifindex(ifname: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/ifindex"))
        .ok()?
        .trim()
        .parse()
        .ok()
}
