//! The records under `state/`, as JSON values, and the typed events and
//! snapshot made of them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::keys::{Keys, RecordId};
use crate::model::{PortBinding, Subnet};

/// A host that is up: bound to its lease, so it disappears when the host
/// stops renewing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub id: String,
    /// Where other hosts send its overlay traffic (`--advertise-addr`).
    pub addr: Ipv4Addr,
    /// When it last joined (RFC 3339).
    pub joined: String,
}

/// Every host that ever joined, not bound to a lease: what `cluster ls`
/// shows for hosts that are down, and which lease a restarted daemon may
/// take over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KnownHost {
    pub addr: Ipv4Addr,
    pub joined: String,
    /// The lease the host's records are bound to.
    pub lease: i64,
    /// When a peer saw its `HostRecord` go (its lease expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// An overlay network, the same on every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The VXLAN network identifier, unique in the cluster.
    pub vni: u32,
    pub ipam: Subnet,
    pub internal: bool,
    pub attachable: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// A container's interface on an overlay network, on the host that runs
/// it; bound to that host's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub id: String,
    pub network_id: String,
    pub container_id: String,
    pub container_name: String,
    /// The host id of the host that runs the container.
    pub host: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub aliases: Vec<String>,
    /// Ids of the services it is a replica of.
    pub services: Vec<String>,
}

/// A service on an overlay network: one VIP and its published ports,
/// cluster-wide. Not bound to a lease: it outlives any one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    pub network_id: String,
    pub vip: Ipv4Addr,
    /// Answered on every host (the routing mesh).
    pub ports: Vec<PortBinding>,
}

/// One record, as a put event or a load carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Host(HostRecord),
    Network(NetworkRecord),
    Endpoint(EndpointRecord),
    Service(ServiceRecord),
}

impl Record {
    pub fn id(&self) -> RecordId {
        match self {
            Record::Host(h) => RecordId::Host(h.id.clone()),
            Record::Network(n) => RecordId::Network(n.id.clone()),
            Record::Endpoint(e) => RecordId::Endpoint {
                network_id: e.network_id.clone(),
                id: e.id.clone(),
            },
            Record::Service(s) => RecordId::Service(s.id.clone()),
        }
    }
}

/// One change of the cluster state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Created or changed.
    Put(Record),
    /// Gone (removed, or its host's lease expired).
    Delete(RecordId),
}

/// All records at one revision: what `Cluster::load` returns and what a
/// watcher keeps up to date with `apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// The etcd revision this state is as of; watch from here.
    pub revision: i64,
    pub hosts: BTreeMap<String, HostRecord>,
    pub networks: BTreeMap<String, NetworkRecord>,
    /// By (network id, endpoint id).
    pub endpoints: BTreeMap<(String, String), EndpointRecord>,
    pub services: BTreeMap<String, ServiceRecord>,
}

impl ClusterState {
    /// Applies the changes of one revision (`WatchItem::Changes`).
    pub fn apply(&mut self, revision: i64, events: &[Event]) {
        for event in events {
            match event {
                Event::Put(Record::Host(h)) => {
                    self.hosts.insert(h.id.clone(), h.clone());
                }
                Event::Put(Record::Network(n)) => {
                    self.networks.insert(n.id.clone(), n.clone());
                }
                Event::Put(Record::Endpoint(e)) => {
                    self.endpoints
                        .insert((e.network_id.clone(), e.id.clone()), e.clone());
                }
                Event::Put(Record::Service(s)) => {
                    self.services.insert(s.id.clone(), s.clone());
                }
                Event::Delete(RecordId::Host(id)) => {
                    self.hosts.remove(id);
                }
                Event::Delete(RecordId::Network(id)) => {
                    self.networks.remove(id);
                }
                Event::Delete(RecordId::Endpoint { network_id, id }) => {
                    self.endpoints.remove(&(network_id.clone(), id.clone()));
                }
                Event::Delete(RecordId::Service(id)) => {
                    self.services.remove(id);
                }
            }
        }
        self.revision = revision;
    }
}

/// A JSON value of the store; `None` (logged) when it does not parse. A
/// record a newer or broken writer left must not stop this host from
/// following the others, so it is skipped, not fatal.
pub(super) fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            warn!(key = %String::from_utf8_lossy(key), error = %e, "skipping a cluster record that does not parse");
            None
        }
    }
}

pub(super) fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("records serialize")
}

/// The record a key/value under `state/` holds. One whose ids disagree
/// with its key is skipped like one that does not parse: the key is what
/// deletes and claims refer to.
pub(super) fn record(keys: &Keys, key: &[u8], value: &[u8]) -> Option<Record> {
    let id = keys.parse(std::str::from_utf8(key).ok()?)?;
    let record = match id {
        RecordId::Host(_) => Record::Host(decode(key, value)?),
        RecordId::Network(_) => Record::Network(decode(key, value)?),
        RecordId::Endpoint { .. } => Record::Endpoint(decode(key, value)?),
        RecordId::Service(_) => Record::Service(decode(key, value)?),
    };
    if record.id() != id {
        warn!(key = %String::from_utf8_lossy(key), "skipping a cluster record whose ids disagree with its key");
        return None;
    }
    Some(record)
}

/// The record a delete event of `key` removed.
pub(super) fn deleted(keys: &Keys, key: &[u8]) -> Option<RecordId> {
    keys.parse(std::str::from_utf8(key).ok()?)
}
