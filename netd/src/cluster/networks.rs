//! Overlay networks: one name, one subnet and one VNI each, cluster-wide.

use etcd_client::{Compare, CompareOp, DeleteOptions, TxnOp};
use ipnet::Ipv4Net;

use super::keys::{claimed, key_safe};
use super::records::{NetworkRecord, decode, encode};
use super::{Cluster, Get, Result, Retry, absent, now, text, unchanged};
use crate::engine::spec::NetworkSpec;
use crate::error::EngineError;
use crate::ipam;

/// VXLAN network identifiers are handed out from here up, as Docker's
/// overlay driver does (lower ones are left to hand-made VXLAN devices).
pub const FIRST_VNI: u32 = 4096;
/// VNIs are 24 bits.
const LAST_VNI: u32 = (1 << 24) - 1;

impl Cluster {
    /// Creates overlay network `id` as `spec` asks (`spec.driver` is not
    /// looked at): its name must be free, a `--subnet` must not overlap
    /// another overlay's, and without one it gets the next free /24 of
    /// 10.0.0.0/8; the VNI is the lowest free one from `FIRST_VNI`. All of
    /// it is claimed in one transaction, retried when another host won a
    /// race for any of it.
    pub async fn create_network(&self, id: &str, spec: &NetworkSpec) -> Result<NetworkRecord> {
        key_safe("network id", id)?;
        key_safe("network name", &spec.name)?;
        let k = &self.keys;
        let mut retry = Retry::new("creating a network");
        loop {
            let read = self
                .read(vec![
                    Get::Key(k.network_name(&spec.name)),
                    Get::Prefix(k.subnets()),
                    Get::Prefix(k.vnis()),
                ])
                .await?;
            let [name, subnets, vnis] = &read.found[..] else {
                unreachable!("three reads")
            };
            if !name.is_empty() {
                return Err(EngineError::Conflict(format!(
                    "network with name {} already exists",
                    spec.name
                ))
                .into());
            }
            let taken: Vec<Ipv4Net> = claimed(subnets, |key| k.parse_subnet(key))
                .into_iter()
                .collect();
            let ipam =
                ipam::requested_pool(spec.subnet, spec.gateway, spec.ip_range, &taken, || {
                    ipam::pick_global_subnet(&taken)
                })?;
            let used = claimed(vnis, |key| k.parse_vni(key));
            let vni = (FIRST_VNI..=LAST_VNI)
                .find(|v| !used.contains(v))
                .ok_or_else(|| EngineError::Forbidden("no free VXLAN network identifier".into()))?;
            let net = NetworkRecord {
                id: id.to_string(),
                name: spec.name.clone(),
                created: now(),
                vni,
                ipam,
                internal: spec.internal,
                attachable: spec.attachable,
                options: spec.options.clone(),
                labels: spec.labels.clone(),
            };
            let compares = vec![
                absent(k.network(id)),
                absent(k.network_name(&net.name)),
                absent(k.vni(vni)),
                // No subnet was claimed since the read: the overlap check
                // above still holds (a range compare; releases only help).
                Compare::mod_revision(k.subnets(), CompareOp::Less, read.revision + 1)
                    .with_prefix(),
            ];
            let ops = vec![
                TxnOp::put(k.network(id), encode(&net), None),
                TxnOp::put(k.network_name(&net.name), id, None),
                TxnOp::put(k.subnet(&net.ipam.subnet), id, None),
                TxnOp::put(k.vni(vni), id, None),
            ];
            if self.commit(compares, ops).await? {
                return Ok(net);
            }
            retry.lost().await?;
        }
    }

    /// Removes overlay network `id` with its claims. Refused while any
    /// endpoint record (on any host) or service is on it, in the same
    /// transaction that removes it.
    pub async fn remove_network(&self, id: &str) -> Result<()> {
        key_safe("network id", id)?;
        let k = &self.keys;
        let mut retry = Retry::new("removing a network");
        loop {
            let read = self
                .read(vec![
                    Get::Key(k.network(id)),
                    Get::Prefix(k.endpoints_on(id)),
                    Get::Prefix(k.names(id)),
                ])
                .await?;
            let [record, endpoints, names] = &read.found[..] else {
                unreachable!("three reads")
            };
            let Some((kv, net)) = record
                .first()
                .and_then(|kv| decode::<NetworkRecord>(kv.key(), kv.value()).map(|n| (kv, n)))
            else {
                return Err(EngineError::network_not_found(id).into());
            };
            if !endpoints.is_empty() {
                return Err(EngineError::Forbidden(format!(
                    "error while removing network: network {} has active endpoints",
                    net.name
                ))
                .into());
            }
            if let Some(service) = names.iter().find(|c| text(c).starts_with("service:")) {
                let name = String::from_utf8_lossy(service.key());
                let name = name.rsplit('/').next().unwrap_or_default();
                return Err(EngineError::Forbidden(format!(
                    "error while removing network: network {} is used by service {name}",
                    net.name
                ))
                .into());
            }
            let compares = vec![
                unchanged(k.network(id), kv.mod_revision()),
                absent(k.endpoints_on(id)).with_prefix(),
                absent(k.names(id)).with_prefix(),
            ];
            let prefix = Some(DeleteOptions::new().with_prefix());
            let ops = vec![
                TxnOp::delete(k.network(id), None),
                TxnOp::delete(k.network_name(&net.name), None),
                TxnOp::delete(k.subnet(&net.ipam.subnet), None),
                TxnOp::delete(k.vni(net.vni), None),
                TxnOp::delete(k.addresses(id), prefix.clone()),
                TxnOp::delete(k.names(id), prefix),
            ];
            if self.commit(compares, ops).await? {
                return Ok(());
            }
            retry.lost().await?;
        }
    }
}
