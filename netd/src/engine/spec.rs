//! What callers ask the engine for, already parsed into typed values by the
//! API layer. The engine checks the semantic rules (names taken, pools
//! overlapping, addresses in use) against its state before touching the
//! kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::Driver;

/// `network create`.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub name: String,
    pub driver: Driver,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    pub internal: bool,
    pub attachable: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// `network ls` / `network prune` filters (Docker's `filters` query).
#[derive(Debug, Clone, Default)]
pub struct NetworkFilters {
    /// Substring of the name (Docker matches names by substring).
    pub name: Vec<String>,
    /// Id prefix.
    pub id: Vec<String>,
    pub driver: Vec<String>,
    /// `key` or `key=value`.
    pub label: Vec<String>,
    /// `custom` or `builtin`.
    pub kind: Vec<String>,
}

/// The network a container is created on (`--network`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMode {
    /// A bridge/macvlan/... network by name or id; `bridge` when not given.
    Network(String),
    None,
    Host,
    /// `container:OTHER`.
    Container(String),
}

impl NetworkMode {
    /// Parses Docker's `--network` value.
    pub fn parse(s: &str) -> NetworkMode {
        match s {
            "" | "default" => NetworkMode::Network("bridge".into()),
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            other => match other.strip_prefix("container:") {
                Some(c) => NetworkMode::Container(c.to_string()),
                None => NetworkMode::Network(other.to_string()),
            },
        }
    }
}

/// Per-network options of an attachment (`--ip`, `--alias`).
#[derive(Debug, Clone, Default)]
pub struct EndpointSpec {
    pub ip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
}

/// `container create` / `container run`.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub network: NetworkMode,
    pub endpoint: EndpointSpec,
    /// Started in the background inside the sandbox when present.
    pub cmd: Option<Vec<String>>,
}
