//! Services on overlay networks: a name unique in the cluster, a VIP from
//! the network's pool (the endpoints' address space), published ports
//! unique in the cluster (the routing mesh answers them on every host).
//! Not bound to a lease: a service outlives any one host.

use std::collections::HashSet;

use etcd_client::TxnOp;

use super::endpoints::{name_in_use, network_of};
use super::keys::{claimed, key_safe};
use super::records::{ServiceRecord, decode, encode};
use super::{Cluster, Get, Result, Retry, absent, now, owner, text, unchanged};
use crate::error::EngineError;
use crate::ipam;
use crate::model::PortBinding;

/// What the engine asks for when a service is created on an overlay
/// network. The id is the engine's; host ports are decided already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRequest {
    pub id: String,
    pub name: String,
    pub network_id: String,
    pub ports: Vec<PortBinding>,
}

impl Cluster {
    /// Creates the service with the lowest free VIP of its network, its
    /// name claimed in the cluster and on the network (DNS), and its
    /// published ports claimed in the cluster, in one transaction.
    pub async fn create_service(&self, req: &ServiceRequest) -> Result<ServiceRecord> {
        key_safe("service id", &req.id)?;
        key_safe("service name", &req.name)?;
        key_safe("network id", &req.network_id)?;
        let mut seen = HashSet::new();
        if let Some(p) = req
            .ports
            .iter()
            .find(|p| !seen.insert((p.proto, p.host_port)))
        {
            return Err(EngineError::InvalidParameter(format!(
                "port {}/{} is published twice",
                p.host_port,
                p.proto.as_str()
            ))
            .into());
        }
        let k = &self.keys;
        let nid = &req.network_id;
        let mut retry = Retry::new("creating a service");
        loop {
            let mut gets = vec![
                Get::Key(k.network(nid)),
                Get::Key(k.service_name(&req.name)),
                Get::Key(k.name(nid, &req.name)),
                Get::Prefix(k.addresses(nid)),
            ];
            gets.extend(
                req.ports
                    .iter()
                    .map(|p| Get::Key(k.port(p.proto, p.host_port))),
            );
            let read = self.read(gets).await?;
            let [network, service_name, name, addresses, ports @ ..] = &read.found[..] else {
                unreachable!("four reads and the ports'")
            };
            let (net_kv, net) = network_of(network, nid)?;
            if !service_name.is_empty() {
                return Err(EngineError::Conflict(format!(
                    "service with name {} already exists",
                    req.name
                ))
                .into());
            }
            if let Some(holder) = name.first() {
                return Err(name_in_use(&req.name, text(holder), &net.name).into());
            }
            if let Some((port, holder)) = req
                .ports
                .iter()
                .zip(ports)
                .find_map(|(p, found)| found.first().map(|kv| (p, kv)))
            {
                return Err(EngineError::Conflict(format!(
                    "port '{}' is already in use by service '{}' as an ingress port",
                    port.host_port,
                    text(holder)
                ))
                .into());
            }
            let used = claimed(addresses, |key| k.parse_address(nid, key));
            let vip = ipam::allocate(&net.ipam, |a| used.contains(&a), &net.name)?;
            let record = ServiceRecord {
                id: req.id.clone(),
                name: req.name.clone(),
                created: now(),
                network_id: nid.clone(),
                vip,
                ports: req.ports.clone(),
            };
            let holder = owner("service", &record.id);
            let mut compares = vec![
                unchanged(k.network(nid), net_kv),
                absent(k.service(&record.id)),
                absent(k.service_name(&record.name)),
                absent(k.name(nid, &record.name)),
                absent(k.address(nid, vip)),
            ];
            let mut ops = vec![
                TxnOp::put(k.service(&record.id), encode(&record), None),
                TxnOp::put(k.service_name(&record.name), record.id.as_str(), None),
                TxnOp::put(k.name(nid, &record.name), holder.as_str(), None),
                TxnOp::put(k.address(nid, vip), holder.as_str(), None),
            ];
            for p in &record.ports {
                compares.push(absent(k.port(p.proto, p.host_port)));
                ops.push(TxnOp::put(
                    k.port(p.proto, p.host_port),
                    record.id.as_str(),
                    None,
                ));
            }
            if self.commit(compares, ops).await? {
                return Ok(record);
            }
            retry.lost().await?;
        }
    }

    /// Removes the service with its claims (VIP, names, ports).
    pub async fn remove_service(&self, id: &str) -> Result<()> {
        key_safe("service id", id)?;
        let k = &self.keys;
        let mut retry = Retry::new("removing a service");
        loop {
            let mut read = self.read(vec![Get::Key(k.service(id))]).await?;
            let Some(kv) = read.found.remove(0).pop() else {
                return Err(EngineError::service_not_found(id).into());
            };
            let Some(s) = decode::<ServiceRecord>(kv.key(), kv.value()) else {
                return Err(EngineError::System(format!(
                    "the record of service {id} in the cluster store does not parse"
                ))
                .into());
            };
            let mut ops = vec![
                TxnOp::delete(k.service(id), None),
                TxnOp::delete(k.service_name(&s.name), None),
                TxnOp::delete(k.name(&s.network_id, &s.name), None),
                TxnOp::delete(k.address(&s.network_id, s.vip), None),
            ];
            ops.extend(
                s.ports
                    .iter()
                    .map(|p| TxnOp::delete(k.port(p.proto, p.host_port), None)),
            );
            if self
                .commit(vec![unchanged(k.service(id), kv.mod_revision())], ops)
                .await?
            {
                return Ok(());
            }
            retry.lost().await?;
        }
    }
}
