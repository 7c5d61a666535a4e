//! The JSON shapes on the socket. Network types follow the Docker Engine
//! API (moby's `api/types/network`) field for field and in Docker's key
//! order, so that the real docker CLI can read them; container types are
//! netd's own but mirror `docker container inspect` where they overlap.
//!
//! The same structs serve the daemon (serialize) and the CLI (deserialize,
//! then re-serialize for `inspect`): going through typed structs keeps
//! Docker's key order in the CLI's output, which a `serde_json::Value`
//! (sorted keys) would lose. Every response field has `#[serde(default)]`
//! so that a CLI can read a daemon that omits fields; request fields the
//! docker CLI may send as `null` are `Option`s.

use std::collections::BTreeMap;

use crate::model::one_or_many;
use serde::{Deserialize, Serialize};

/// `GET /networks/{id}` and the elements of `GET /networks`
/// (Docker's `network.Inspect` / `network.Summary`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkResource {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
    /// RFC 3339 with nanoseconds.
    #[serde(rename = "Created")]
    pub created: String,
    #[serde(rename = "Scope")]
    pub scope: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    #[serde(rename = "Internal")]
    pub internal: bool,
    #[serde(rename = "Attachable")]
    pub attachable: bool,
    #[serde(rename = "Ingress")]
    pub ingress: bool,
    #[serde(rename = "ConfigFrom")]
    pub config_from: ConfigReference,
    #[serde(rename = "ConfigOnly")]
    pub config_only: bool,
    /// Keyed by container id. Empty in list responses, as in Docker since
    /// API 1.28.
    #[serde(rename = "Containers")]
    pub containers: BTreeMap<String, EndpointResource>,
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
}

/// Docker's `network.IPAM`, in responses and in create requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ipam {
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Options", deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "Config", deserialize_with = "null_as_default")]
    pub config: Vec<IpamConfig>,
}

/// One pool of a network. Strings, not parsed types, because requests must
/// be validated with Docker's messages rather than rejected by serde.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IpamConfig {
    #[serde(rename = "Subnet", skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    #[serde(rename = "Gateway", skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    #[serde(
        rename = "AuxiliaryAddresses",
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub aux_addresses: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigReference {
    #[serde(rename = "Network")]
    pub network: String,
}

/// A container's endpoint as a network lists it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointResource {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
    /// `a.b.c.d/len`, empty when the endpoint has no address.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

/// `POST /networks/create` body (Docker's `network.CreateRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkCreateRequest {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Scope", skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(rename = "EnableIPv4", skip_serializing_if = "Option::is_none")]
    pub enable_ipv4: Option<bool>,
    #[serde(rename = "EnableIPv6", skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM", skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(rename = "Internal")]
    pub internal: bool,
    #[serde(rename = "Attachable")]
    pub attachable: bool,
    #[serde(rename = "Ingress")]
    pub ingress: bool,
    #[serde(rename = "ConfigOnly")]
    pub config_only: bool,
    #[serde(rename = "ConfigFrom", skip_serializing_if = "Option::is_none")]
    pub config_from: Option<ConfigReference>,
    #[serde(rename = "Options", deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "Labels", deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Deprecated in Docker (always on); accepted and ignored.
    #[serde(rename = "CheckDuplicate", skip_serializing_if = "Option::is_none")]
    pub check_duplicate: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkCreateResponse {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Warning")]
    pub warning: String,
}

/// `POST /networks/{id}/connect` body (Docker's `network.ConnectOptions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkConnectRequest {
    #[serde(rename = "Container")]
    pub container: String,
    #[serde(rename = "EndpointConfig", skip_serializing_if = "Option::is_none")]
    pub endpoint_config: Option<EndpointConfig>,
}

/// The part of Docker's `network.EndpointSettings` a request may set.
/// Everything else the docker CLI sends (Links, DriverOpts, ...) is ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointConfig {
    #[serde(rename = "IPAMConfig", skip_serializing_if = "Option::is_none")]
    pub ipam_config: Option<EndpointIpamConfig>,
    #[serde(rename = "Aliases", deserialize_with = "null_as_default")]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address", skip_serializing_if = "String::is_empty")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address", skip_serializing_if = "String::is_empty")]
    pub ipv6_address: String,
}

/// `POST /networks/{id}/disconnect` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkDisconnectRequest {
    #[serde(rename = "Container")]
    pub container: String,
    #[serde(rename = "Force")]
    pub force: bool,
}

/// `POST /networks/prune` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworksPruneResponse {
    #[serde(rename = "NetworksDeleted", deserialize_with = "null_as_default")]
    pub networks_deleted: Vec<String>,
}

/// `{"message": ...}`, the body of every error response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorResponse {
    pub message: String,
}

/// `GET /version` (Docker's `types.Version`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VersionResponse {
    #[serde(rename = "Platform")]
    pub platform: Platform,
    #[serde(rename = "Components")]
    pub components: Vec<ComponentVersion>,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "ApiVersion")]
    pub api_version: String,
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    #[serde(rename = "GitCommit")]
    pub git_commit: String,
    #[serde(rename = "GoVersion")]
    pub go_version: String,
    #[serde(rename = "Os")]
    pub os: String,
    #[serde(rename = "Arch")]
    pub arch: String,
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
    #[serde(rename = "BuildTime")]
    pub build_time: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Platform {
    #[serde(rename = "Name")]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComponentVersion {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Details")]
    pub details: BTreeMap<String, String>,
}

/// `GET /info`: the subset of Docker's `system.Info` that means something
/// for netd, plus `Networks`, netd's own count. Fields the docker CLI reads
/// but netd has no use for are present with zero values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InfoResponse {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Containers")]
    pub containers: usize,
    #[serde(rename = "ContainersRunning")]
    pub containers_running: usize,
    #[serde(rename = "ContainersPaused")]
    pub containers_paused: usize,
    #[serde(rename = "ContainersStopped")]
    pub containers_stopped: usize,
    #[serde(rename = "Images")]
    pub images: usize,
    #[serde(rename = "Networks")]
    pub networks: usize,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Plugins")]
    pub plugins: Plugins,
    #[serde(rename = "KernelVersion")]
    pub kernel_version: String,
    #[serde(rename = "OperatingSystem")]
    pub operating_system: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    #[serde(rename = "Architecture")]
    pub architecture: String,
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    #[serde(rename = "MemTotal")]
    pub mem_total: u64,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "ServerVersion")]
    pub server_version: String,
    #[serde(rename = "Swarm")]
    pub swarm: Swarm,
    #[serde(rename = "Warnings", deserialize_with = "null_as_default")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Plugins {
    #[serde(rename = "Volume", deserialize_with = "null_as_default")]
    pub volume: Vec<String>,
    #[serde(rename = "Network", deserialize_with = "null_as_default")]
    pub network: Vec<String>,
    #[serde(rename = "Log", deserialize_with = "null_as_default")]
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Swarm {
    #[serde(rename = "NodeID")]
    pub node_id: String,
    #[serde(rename = "NodeAddr")]
    pub node_addr: String,
    #[serde(rename = "LocalNodeState")]
    pub local_node_state: String,
    #[serde(rename = "ControlAvailable")]
    pub control_available: bool,
    #[serde(rename = "Error")]
    pub error: String,
}

/// `GET /containers/{id}/json` and the elements of `GET /containers/json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerJson {
    #[serde(rename = "Id")]
    pub id: String,
    /// The plain name (Docker prefixes a `/`; netd does not).
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Created")]
    pub created: String,
    /// The `--network` value the container was created with.
    #[serde(rename = "NetworkMode")]
    pub network_mode: String,
    /// Path of the network namespace processes run in; empty for
    /// `--network host`. Also in `NetworkSettings`, where Docker has it.
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
    #[serde(rename = "State")]
    pub state: ContainerState,
    #[serde(rename = "Cmd", deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    /// Where the output of the `run` command goes; empty without one.
    #[serde(rename = "LogPath")]
    pub log_path: String,
    #[serde(rename = "Config")]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig")]
    pub host_config: HostConfig,
    #[serde(rename = "NetworkSettings")]
    pub network_settings: NetworkSettings,
    /// What the container's resolv.conf says (netd's own field): the
    /// embedded server on user-defined networks, the host's resolvers
    /// otherwise. A runtime that writes the container's /etc itself (CNI)
    /// writes this.
    #[serde(rename = "ResolvConf")]
    pub resolv_conf: ResolvConfJson,
}

/// Docker's `Config`, the part netd has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    #[serde(rename = "Labels", deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// A resolv.conf as data (the CNI result's `dns` has the same parts).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResolvConfJson {
    #[serde(rename = "Nameservers", deserialize_with = "null_as_default")]
    pub nameservers: Vec<String>,
    #[serde(rename = "Search", deserialize_with = "null_as_default")]
    pub search: Vec<String>,
    #[serde(rename = "Options", deserialize_with = "null_as_default")]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerState {
    /// `created` (no command), `running` or `exited`.
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Running")]
    pub running: bool,
    /// 0 when not running, as in Docker.
    #[serde(rename = "Pid")]
    pub pid: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostConfig {
    #[serde(rename = "NetworkMode")]
    pub network_mode: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetworkSettings {
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
    /// Keyed by network name.
    #[serde(rename = "Networks")]
    pub networks: BTreeMap<String, EndpointSettings>,
    /// Docker's shape: `"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]`.
    #[serde(rename = "Ports", deserialize_with = "null_as_default")]
    pub ports: BTreeMap<String, Vec<PortBindingJson>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortBindingJson {
    #[serde(rename = "HostIp")]
    pub host_ip: String,
    #[serde(rename = "HostPort")]
    pub host_port: String,
}

/// A container's attachment to one network (Docker's
/// `network.EndpointSettings`, the fields netd has).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointSettings {
    /// Set when the address was asked for (`--ip`), as in Docker.
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpamConfig>,
    #[serde(rename = "Aliases", deserialize_with = "null_as_default")]
    pub aliases: Vec<String>,
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Gateway")]
    pub gateway: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub ip_prefix_len: u8,
    /// The interface's name inside the container (netd's own field).
    #[serde(rename = "IfName", skip_serializing_if = "String::is_empty")]
    pub ifname: String,
    /// The host side of the endpoint's link, where the driver has one (a
    /// veth's host end; netd's own field).
    #[serde(rename = "HostIfName", skip_serializing_if = "String::is_empty")]
    pub host_ifname: String,
}

/// `POST /containers/create?name=NAME` body. netd's flat shape; Docker's
/// `HostConfig.NetworkMode` is accepted too when `NetworkMode` is absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerCreateRequest {
    /// Used when the `name` query parameter is absent.
    #[serde(rename = "Name", skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `bridge` (default), `none`, `host`, `container:X` or a network.
    #[serde(rename = "NetworkMode", skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// Static IPv4 address on that network.
    #[serde(rename = "IPAddress", skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(
        rename = "Aliases",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub aliases: Vec<String>,
    /// Started in the background inside the sandbox (`container run`).
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Published ports in `-p` syntax: `[IP:][HOSTPORT:]PORT[/udp]`.
    #[serde(
        rename = "Ports",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub ports: Vec<String>,
    /// Services to join as a backend (names or ids). `Service` with one
    /// name, what clients sent before a container could back several, is
    /// read too.
    #[serde(
        rename = "Services",
        alias = "Service",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub services: Vec<String>,
    #[serde(rename = "HostConfig", skip_serializing_if = "Option::is_none")]
    pub host_config: Option<HostConfigRequest>,
    /// An existing network namespace (absolute path) to plumb the
    /// container's endpoints into instead of one netd makes: a container
    /// runtime's, handed over through CNI.
    #[serde(rename = "NetNs", skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The interface's name inside the container; `ethN` when absent.
    #[serde(rename = "IfName", skip_serializing_if = "Option::is_none")]
    pub ifname: Option<String>,
    /// The interface's MAC; derived from its address when absent.
    #[serde(rename = "MacAddress", skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(
        rename = "Labels",
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostConfigRequest {
    #[serde(rename = "NetworkMode", skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerCreateResponse {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Warnings", deserialize_with = "null_as_default")]
    pub warnings: Vec<String>,
}

/// Go encodes nil maps and slices as `null`; treat that as empty.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One host of `GET /cluster/hosts` (netd's own; `netd cluster ls`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterHostJson {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Address")]
    pub address: String,
    /// `up` or `down`.
    #[serde(rename = "State")]
    pub state: String,
    /// When it last joined (RFC 3339).
    #[serde(rename = "Joined")]
    pub joined: String,
    /// For a host that is down: when another host saw it go; empty if none
    /// did.
    #[serde(rename = "LastSeen")]
    pub last_seen: String,
    /// Its endpoints on overlay networks.
    #[serde(rename = "Endpoints")]
    pub endpoints: usize,
    /// The host that answered.
    #[serde(rename = "Self")]
    pub is_self: bool,
}

/// `GET /stats` (netd's own): the datapath counters, by endpoint and by
/// drop reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsResponse {
    #[serde(rename = "Endpoints")]
    pub endpoints: Vec<EndpointStatsJson>,
    #[serde(rename = "Drops")]
    pub drops: Vec<DropJson>,
    #[serde(rename = "Nat")]
    pub nat: NatJson,
    /// Traffic through the overlay's tunnel (zeros without overlays).
    #[serde(rename = "Overlay", default)]
    pub overlay: OverlayJson,
    /// The cluster, in cluster mode.
    #[serde(rename = "Cluster", default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStatsJson>,
}

/// Packets and bytes (inner frames) through the overlay's tunnel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverlayJson {
    #[serde(rename = "EncapPackets")]
    pub encap_packets: u64,
    #[serde(rename = "EncapBytes")]
    pub encap_bytes: u64,
    #[serde(rename = "DecapPackets")]
    pub decap_packets: u64,
    #[serde(rename = "DecapBytes")]
    pub decap_bytes: u64,
}

/// The cluster store link and the other hosts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatsJson {
    #[serde(rename = "Connected")]
    pub connected: bool,
    #[serde(rename = "Revision")]
    pub revision: i64,
    #[serde(rename = "WatchEvents")]
    pub watch_events: u64,
    #[serde(rename = "LeaseRenewals")]
    pub lease_renewals: u64,
    /// Other hosts up: underlay address and how many of their endpoints
    /// this host knows.
    #[serde(rename = "Hosts")]
    pub hosts: Vec<ClusterPeerHostJson>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterPeerHostJson {
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Endpoints")]
    pub endpoints: usize,
}

/// Connection tracking and translation counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NatJson {
    #[serde(rename = "ConntrackEntries")]
    pub conntrack_entries: u64,
    #[serde(rename = "ConntrackCapacity")]
    pub conntrack_capacity: u64,
    #[serde(rename = "MasqueradedFlows")]
    pub masqueraded_flows: u64,
    #[serde(rename = "PublishedFlows")]
    pub published_flows: u64,
    #[serde(rename = "HairpinFlows")]
    pub hairpin_flows: u64,
}

/// Traffic of one container on one network, seen from the container:
/// `Sent` left it, `Received` was delivered to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointStatsJson {
    #[serde(rename = "Container")]
    pub container: String,
    #[serde(rename = "Network")]
    pub network: String,
    #[serde(rename = "Interface")]
    pub interface: String,
    #[serde(rename = "SentPackets")]
    pub sent_packets: u64,
    #[serde(rename = "SentBytes")]
    pub sent_bytes: u64,
    #[serde(rename = "ReceivedPackets")]
    pub received_packets: u64,
    #[serde(rename = "ReceivedBytes")]
    pub received_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DropJson {
    #[serde(rename = "Reason")]
    pub reason: String,
    /// `from_endpoint` (sent by a container) or `to_endpoint`.
    #[serde(rename = "Direction")]
    pub direction: String,
    #[serde(rename = "Packets")]
    pub packets: u64,
}

/// `POST /services/create` (netd's own).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceCreateRequest {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Network")]
    pub network: String,
    #[serde(rename = "Replicas")]
    pub replicas: u32,
    /// `-p` syntax, e.g. `8080:80`.
    #[serde(rename = "Ports", deserialize_with = "null_as_default")]
    pub ports: Vec<String>,
    #[serde(rename = "Cmd", deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceCreateResponse {
    #[serde(rename = "ID")]
    pub id: String,
}

/// A service as `service inspect` / `service ls --format json` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceJson {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    #[serde(rename = "Network")]
    pub network: String,
    #[serde(rename = "VirtualIP")]
    pub virtual_ip: String,
    /// Replicas netd runs (desired).
    #[serde(rename = "Replicas")]
    pub replicas: u32,
    /// Backends in the rotation (netd's replicas and joined containers).
    #[serde(rename = "Tasks", deserialize_with = "null_as_default")]
    pub tasks: Vec<ServiceTaskJson>,
    #[serde(rename = "Ports", deserialize_with = "null_as_default")]
    pub ports: BTreeMap<String, Vec<PortBindingJson>>,
    #[serde(rename = "Cmd", deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceTaskJson {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    #[serde(rename = "Running")]
    pub running: bool,
}
