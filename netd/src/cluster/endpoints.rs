//! Endpoint records: a container's address and name on an overlay network,
//! unique cluster-wide, bound to the lease of the host that runs it.

use std::net::Ipv4Addr;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::keys::{claimed, key_safe};
use super::records::{EndpointRecord, NetworkRecord, ServiceRecord, decode, encode};
use super::{Get, Member, Result, Retry, absent, owner, text, unchanged};
use crate::error::EngineError;
use crate::ipam;
use crate::model::mac_for;

/// What the engine asks for when a container joins an overlay network on
/// this host. The ids are the engine's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRequest {
    pub id: String,
    pub network_id: String,
    pub container_id: String,
    pub container_name: String,
    /// `--ip`; else the lowest free address of the pool (or `--ip-range`).
    pub ip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
    /// Ids of services (on the same network) it is a replica of.
    pub services: Vec<String>,
}

impl Member {
    /// Allocates the endpoint's address (never the gateway, a VIP or
    /// another endpoint's) and claims its container name on the network,
    /// in one transaction with the record, all bound to this host's lease.
    pub async fn create_endpoint(&self, req: &EndpointRequest) -> Result<EndpointRecord> {
        for (what, value) in [
            ("endpoint id", &req.id),
            ("network id", &req.network_id),
            ("container id", &req.container_id),
            ("container name", &req.container_name),
        ] {
            key_safe(what, value)?;
        }
        let k = &self.cluster.keys;
        let mut retry = Retry::new("allocating an address");
        loop {
            let lease = self.current_lease()?;
            let mut gets = vec![
                Get::Key(k.network(&req.network_id)),
                Get::Key(k.endpoint(&req.network_id, &req.id)),
                Get::Key(k.name(&req.network_id, &req.container_name)),
                Get::Prefix(k.addresses(&req.network_id)),
            ];
            gets.extend(req.services.iter().map(|s| Get::Key(k.service(s))));
            let read = self.cluster.read(gets).await?;
            let [network, endpoint, name, addresses, services @ ..] = &read.found[..] else {
                unreachable!("four reads and the services'")
            };
            let (net_kv, net) = network_of(network, &req.network_id)?;
            if !endpoint.is_empty() {
                return Err(EngineError::Conflict(format!(
                    "endpoint {} already exists in network {}",
                    req.id, net.name
                ))
                .into());
            }
            if let Some(holder) = name.first() {
                return Err(name_in_use(&req.container_name, text(holder), &net.name).into());
            }
            for (id, found) in req.services.iter().zip(services) {
                let on_network = found
                    .first()
                    .and_then(|kv| decode::<ServiceRecord>(kv.key(), kv.value()))
                    .is_some_and(|s| s.network_id == net.id);
                if !on_network {
                    return Err(EngineError::NotFound(format!(
                        "service {id} not found on network {}",
                        net.name
                    ))
                    .into());
                }
            }
            let used = claimed(addresses, |key| k.parse_address(&net.id, key));
            let ip = match req.ip {
                Some(ip) => ipam::reserve(&net.ipam, ip, |a| used.contains(&a))?,
                None => ipam::allocate(&net.ipam, |a| used.contains(&a), &net.name)?,
            };
            let record = EndpointRecord {
                id: req.id.clone(),
                network_id: net.id.clone(),
                container_id: req.container_id.clone(),
                container_name: req.container_name.clone(),
                host: self.host.id.clone(),
                ip,
                mac: mac_for(ip),
                aliases: req.aliases.clone(),
                services: req.services.clone(),
            };
            let compares = vec![
                unchanged(k.network(&net.id), net_kv),
                absent(k.endpoint(&net.id, &record.id)),
                absent(k.address(&net.id, ip)),
                absent(k.name(&net.id, &record.container_name)),
            ];
            if self
                .cluster
                .commit(compares, self.puts(&record, lease))
                .await?
            {
                return Ok(record);
            }
            retry.lost().await?;
        }
    }

    /// Puts an endpoint of this host again, with its address and name, on
    /// the current lease: after the lease was lost (records gone) or on a
    /// restart. A no-op when it is there as it is. Fails with a conflict
    /// when another endpoint took its address or name meanwhile.
    pub async fn restore_endpoint(&self, record: &EndpointRecord) -> Result<()> {
        if record.host != self.host.id {
            return Err(EngineError::Forbidden(format!(
                "endpoint {} belongs to host {}, not to this one ({})",
                record.id, record.host, self.host.id
            ))
            .into());
        }
        let k = &self.cluster.keys;
        let (nid, id) = (&record.network_id, &record.id);
        let mut retry = Retry::new("restoring an endpoint");
        loop {
            let lease = self.current_lease()?;
            let read = self
                .cluster
                .read(vec![
                    Get::Key(k.network(nid)),
                    Get::Key(k.endpoint(nid, id)),
                    Get::Key(k.address(nid, record.ip)),
                    Get::Key(k.name(nid, &record.container_name)),
                ])
                .await?;
            let [network, endpoint, address, name] = &read.found[..] else {
                unreachable!("four reads")
            };
            let (net_kv, net) = network_of(network, nid)?;
            let ours = |found: &[etcd_client::KeyValue], holder: &str| {
                found
                    .first()
                    .is_some_and(|kv| kv.lease() == lease && text(kv) == holder)
            };
            let address_holder = owner("endpoint", id);
            let name_holder = owner("container", &record.container_id);
            let as_is = endpoint
                .first()
                .is_some_and(|kv| kv.lease() == lease && kv.value() == encode(record))
                && ours(address, &address_holder)
                && ours(name, &name_holder);
            if as_is {
                return Ok(());
            }
            if let Some(holder) = address.first().filter(|kv| text(kv) != address_holder) {
                return Err(EngineError::Conflict(format!(
                    "Address already in use: {} (by {} on network {})",
                    record.ip,
                    text(holder),
                    net.name
                ))
                .into());
            }
            if let Some(holder) = name.first().filter(|kv| text(kv) != name_holder) {
                return Err(name_in_use(&record.container_name, text(holder), &net.name).into());
            }
            let revision =
                |found: &[etcd_client::KeyValue]| found.first().map_or(0, |kv| kv.mod_revision());
            let compares = vec![
                unchanged(k.network(nid), net_kv),
                unchanged(k.endpoint(nid, id), revision(endpoint)),
                unchanged(k.address(nid, record.ip), revision(address)),
                unchanged(k.name(nid, &record.container_name), revision(name)),
            ];
            if self
                .cluster
                .commit(compares, self.puts(record, lease))
                .await?
            {
                return Ok(());
            }
            retry.lost().await?;
        }
    }

    /// Removes an endpoint of this host with its claims; nothing to do when
    /// it is gone already (removed, or its lease expired).
    pub async fn remove_endpoint(&self, network_id: &str, id: &str) -> Result<()> {
        let k = &self.cluster.keys;
        let mut retry = Retry::new("removing an endpoint");
        loop {
            let mut read = self
                .cluster
                .read(vec![Get::Key(k.endpoint(network_id, id))])
                .await?;
            let Some(kv) = read.found.remove(0).pop() else {
                return Ok(());
            };
            let mut ops = vec![TxnOp::delete(k.endpoint(network_id, id), None)];
            if let Some(record) = decode::<EndpointRecord>(kv.key(), kv.value()) {
                if record.host != self.host.id {
                    return Err(EngineError::Forbidden(format!(
                        "endpoint {id} belongs to host {}, not to this one ({})",
                        record.host, self.host.id
                    ))
                    .into());
                }
                // Claims go only if they are still this endpoint's.
                for (key, holder) in [
                    (k.address(network_id, record.ip), owner("endpoint", id)),
                    (
                        k.name(network_id, &record.container_name),
                        owner("container", &record.container_id),
                    ),
                ] {
                    ops.push(TxnOp::txn(
                        Txn::new()
                            .when(vec![Compare::value(key.clone(), CompareOp::Equal, holder)])
                            .and_then(vec![TxnOp::delete(key, None)]),
                    ));
                }
            }
            let compares = vec![unchanged(k.endpoint(network_id, id), kv.mod_revision())];
            if self.cluster.commit(compares, ops).await? {
                return Ok(());
            }
            retry.lost().await?;
        }
    }

    /// The record and its claims, bound to `lease`.
    fn puts(&self, record: &EndpointRecord, lease: i64) -> Vec<TxnOp> {
        let k = &self.cluster.keys;
        let bound = || Some(PutOptions::new().with_lease(lease));
        vec![
            TxnOp::put(
                k.endpoint(&record.network_id, &record.id),
                encode(record),
                bound(),
            ),
            TxnOp::put(
                k.address(&record.network_id, record.ip),
                owner("endpoint", &record.id),
                bound(),
            ),
            TxnOp::put(
                k.name(&record.network_id, &record.container_name),
                owner("container", &record.container_id),
                bound(),
            ),
        ]
    }
}

/// The network record read, with its modification revision (what a
/// transaction checks to know it was not removed meanwhile).
pub(super) fn network_of(
    found: &[etcd_client::KeyValue],
    id: &str,
) -> Result<(i64, NetworkRecord)> {
    found
        .first()
        .and_then(|kv| {
            decode::<NetworkRecord>(kv.key(), kv.value()).map(|n| (kv.mod_revision(), n))
        })
        .ok_or_else(|| EngineError::network_not_found(id).into())
}

/// Docker's answer for a name taken on a network: by a container
/// (`container:ID`) or a service (`service:ID`), whose names share the
/// network's DNS.
pub(super) fn name_in_use(name: &str, holder: &str, network: &str) -> EngineError {
    match holder.split_once(':') {
        Some(("service", id)) => EngineError::Conflict(format!(
            "Conflict. The name \"{name}\" is already in use by service \"{id}\" on network \
             {network}: container and service names on an overlay network are unique in the \
             cluster"
        )),
        Some((_, id)) => EngineError::container_name_in_use(name, id),
        None => EngineError::container_name_in_use(name, holder),
    }
}
