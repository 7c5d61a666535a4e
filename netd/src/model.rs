//! The desired state netd owns: networks, containers (network sandboxes) and
//! their endpoints. These are the records the store persists; everything the
//! kernel holds (namespaces, links, addresses, map entries) is derived from
//! them, so a restart can always rebuild or adopt it.
//!
//! Allocated addresses are not stored separately: they are the gateways of
//! the networks plus the addresses of the endpoints, so IPAM state can never
//! disagree with the endpoints that use it.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// The IPv4 pool configuration of a network (Docker's `IPAM.Config[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// Addresses for containers come from here when set (`--ip-range`).
    pub ip_range: Option<Ipv4Net>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// 64 lowercase hex characters, like Docker's.
    pub id: String,
    pub name: String,
    /// The driver's name as Docker spells it (`bridge`, `macvlan`, ...): the
    /// key of its implementation in `drivers::Drivers`.
    pub driver: String,
    /// RFC 3339 with nanoseconds, as Docker prints it.
    pub created: String,
    pub internal: bool,
    pub attachable: bool,
    /// `None` for `host` and `none`, which have no addresses.
    pub ipam: Option<Subnet>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `bridge`, `host` and `none`: created at start, never removed.
    pub predefined: bool,
    /// Small number unique per daemon, carried in datapath maps so that the
    /// programs can tell networks apart without comparing 64-byte ids.
    pub index: u32,
}

/// How a container gets its network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum NetMode {
    /// Its own named namespace under /run/netns, holding its endpoints.
    Own { netns: String },
    /// No namespace of its own: processes run in the host's.
    Host,
    /// Another container's namespace (`container:OTHER`), by container id.
    Container { id: String },
    /// A namespace someone else made and owns (a container runtime through
    /// CNI hands its path): netd plumbs endpoints into it but never creates,
    /// deletes or runs processes in it.
    Path { path: PathBuf },
}

/// One interface of a container on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// 64 hex characters.
    pub id: String,
    pub network_id: String,
    /// Name inside the container: eth0, eth1, ... unless the caller named
    /// it (CNI's `CNI_IFNAME`).
    pub ifname: String,
    /// Name of the host side of the veth pair.
    pub host_ifname: String,
    /// Derived from `ip` ([`mac_for`]) unless the caller gave one.
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub aliases: Vec<String>,
    /// Set when the user asked for this address (`--ip`).
    pub static_ip: bool,
}

/// Transport protocol of a published port: the datapath's own type, stored
/// by name (`tcp`/`udp`).
pub use netd_common::Proto;

mod proto_by_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::Proto;

    pub fn serialize<S: Serializer>(p: &Proto, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Proto, D::Error> {
        match String::deserialize(d)?.as_str() {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            other => Err(D::Error::custom(format!("unknown protocol {other:?}"))),
        }
    }
}

/// A published port (`-p`), with the host port decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// `None`: every host address (`-p 8080:80`); `Some`: only that one
    /// (`-p 127.0.0.1:8080:80`).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    #[serde(with = "proto_by_name")]
    pub proto: Proto,
}

impl PortBinding {
    /// The host side as Docker prints it: `0.0.0.0:8080`.
    pub fn host_side(&self) -> String {
        format!(
            "{}:{}",
            self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            self.host_port
        )
    }

    /// Whether two bindings would claim the same host port.
    pub fn overlaps(&self, other: &PortBinding) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

/// What `container run` started inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Process {
    pub cmd: Vec<String>,
    /// Pid of the process group leader while it runs.
    pub pid: Option<u32>,
    /// When that process started, set with `pid`: a pid alone may name
    /// another process by now (the kernel reuses the pid of one that ended,
    /// and a reboot starts over). Records written before netd kept it have
    /// none; the daemon's start checks those once (`process::adopt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Start>,
}

/// The start of a process: with its pid, it names that process and no
/// other, ever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// `starttime` of `/proc/PID/stat`: clock ticks from boot to the start.
    pub ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` of the boot it started in, which
    /// `ticks` count from.
    pub boot_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub created: String,
    pub net: NetMode,
    /// The network named at create time (`--network`), Docker's
    /// `HostConfig.NetworkMode`.
    pub network_mode: String,
    pub endpoints: Vec<Endpoint>,
    pub process: Option<Process>,
    /// Published ports, translated to the first endpoint.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    /// The ids of the services this container is a replica (backend) of.
    /// Several, as a Kubernetes pod backs every service whose selector
    /// matches it. Snapshots written before that have `service` (one id or
    /// null).
    #[serde(default, alias = "service", deserialize_with = "one_or_many")]
    pub services: Vec<String>,
    /// Set when `rm -f` began: the record stays (its name and addresses
    /// stay taken, it is out of DNS and of every service's rotation) while
    /// its process is stopped, and a daemon that restarts finishes the
    /// removal.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removing: bool,
    /// The caller's key/value metadata (Docker's `Config.Labels`): a CNI
    /// attachment records its runtime's container id and interface here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Container {
    /// Whether this container is a backend of service `service_id`.
    pub fn backs(&self, service_id: &str) -> bool {
        self.services.iter().any(|s| s == service_id)
    }
}

/// Reads a list of strings that may also be written as one string or as
/// null: the older, single-valued form of a field that became a list (the
/// store's `service`, the API's `Service`) keeps loading.
pub fn one_or_many<'de, D>(d: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// A service (`netd service create`): a virtual IP on one network whose
/// new connections are balanced round-robin over its replicas, on every
/// TCP/UDP port. Replicas are containers whose `services` list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// 64 hex characters.
    pub id: String,
    pub name: String,
    pub created: String,
    pub network_id: String,
    /// The virtual IP, from the network's pool.
    pub vip: Ipv4Addr,
    /// Replicas netd runs itself (`NAME.1`..`NAME.N`); containers that join
    /// with `--service` come on top.
    pub replicas: u32,
    /// What each replica runs; empty for a service of user containers only.
    pub cmd: Vec<String>,
    /// Published ports (`-p HOST:PORT`), answered on the host and balanced.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
    /// Small number unique per daemon, used by the datapath's tables.
    pub index: u32,
}

/// One kind of object of the state, by id. A persistent map: the copy of
/// the state a change starts from shares every node with the current one,
/// so copying costs O(1), each change O(log n), and what a commit changed
/// is found without visiting the shared nodes (the store's journal, the
/// engine's `Taken`).
pub type Table<T> = imbl::OrdMap<String, Arc<T>>;

/// Changes the objects of `table` that `pick` selects: copies of those
/// only, the others stay shared with earlier states.
pub fn update_where<T: Clone>(
    table: &mut Table<T>,
    pick: impl Fn(&T) -> bool,
    mut change: impl FnMut(&mut T),
) {
    let picked: Vec<String> = table
        .iter()
        .filter(|(_, v)| pick(v))
        .map(|(k, _)| k.clone())
        .collect();
    for id in picked {
        if let Some(v) = table.get_mut(&id) {
            change(Arc::make_mut(v));
        }
    }
}

/// A container's endpoint on another host of the cluster, as the cluster
/// store announced it: what this host needs to reach it, name it and
/// balance to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The endpoint's id (64 hex characters).
    pub id: String,
    pub network_id: String,
    pub container_id: String,
    pub container_name: String,
    /// The id of the host that runs it.
    pub host: String,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub aliases: Vec<String>,
    /// Ids of the services it is a replica of.
    pub services: Vec<String>,
}

/// Another host of the cluster that is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub id: String,
    /// Its underlay address: where its overlay traffic goes.
    pub addr: Ipv4Addr,
    /// When it last joined (RFC 3339).
    pub joined: String,
}

/// Everything the store persists, as one consistent snapshot.
///
/// `peers` and `hosts` mirror the cluster store (the endpoints and hosts
/// other hosts announced): kept here too so that a daemon that restarts
/// while the cluster store is out of reach goes on forwarding to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub networks: Table<Network>,
    pub containers: Table<Container>,
    #[serde(default)]
    pub services: Table<Service>,
    #[serde(default)]
    pub peers: Table<Peer>,
    #[serde(default)]
    pub hosts: Table<Host>,
}

impl State {
    /// Finds a network the way Docker does: full id, then exact name, then
    /// unique id prefix.
    pub fn find_network(&self, key: &str) -> Option<&Network> {
        if let Some(n) = self.networks.get(key) {
            return Some(n);
        }
        if let Some(n) = self.networks.values().find(|n| n.name == key) {
            return Some(n);
        }
        let mut by_prefix = self.networks.values().filter(|n| n.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(n), None) if !key.is_empty() => Some(n),
            _ => None,
        }
    }

    /// Same lookup order for containers.
    pub fn find_container(&self, key: &str) -> Option<&Container> {
        if let Some(c) = self.containers.get(key) {
            return Some(c);
        }
        if let Some(c) = self.containers.values().find(|c| c.name == key) {
            return Some(c);
        }
        let mut by_prefix = self.containers.values().filter(|c| c.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(c), None) if !key.is_empty() => Some(c),
            _ => None,
        }
    }

    /// Finds a service by id, name, then unique id prefix.
    pub fn find_service(&self, key: &str) -> Option<&Service> {
        if let Some(s) = self.services.get(key) {
            return Some(s);
        }
        if let Some(s) = self.services.values().find(|s| s.name == key) {
            return Some(s);
        }
        let mut by_prefix = self.services.values().filter(|s| s.id.starts_with(key));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(s), None) if !key.is_empty() => Some(s),
            _ => None,
        }
    }

    /// The containers backing a service, in name order.
    pub fn replicas_of<'a>(&'a self, service_id: &'a str) -> Vec<&'a Container> {
        let mut v: Vec<&Container> = self
            .containers
            .values()
            .filter(|c| c.backs(service_id))
            .map(|c| &**c)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The backends of every service at once (service id -> containers in
    /// name order), in one pass over the containers: what a caller that
    /// needs them all uses instead of `replicas_of` per service, which
    /// would cost services x backends.
    pub fn replicas_by_service(&self) -> HashMap<&str, Vec<&Container>> {
        let mut by: HashMap<&str, Vec<&Container>> = HashMap::new();
        for c in self.containers.values() {
            for s in &c.services {
                by.entry(s.as_str()).or_default().push(c);
            }
        }
        for v in by.values_mut() {
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }
        by
    }

    /// The subnets of every network that has addresses.
    pub fn subnets(&self) -> Vec<Ipv4Net> {
        self.networks
            .values()
            .filter_map(|n| n.ipam.as_ref().map(|p| p.subnet))
            .collect()
    }

    /// Endpoints attached to a network, with the container each belongs to.
    pub fn endpoints_on<'a>(
        &'a self,
        network_id: &'a str,
    ) -> impl Iterator<Item = (&'a Container, &'a Endpoint)> + 'a {
        self.containers.values().flat_map(move |c| {
            c.endpoints
                .iter()
                .filter(move |e| e.network_id == network_id)
                .map(move |e| (&**c, e))
        })
    }
}

/// The longest name of a container, network or service, and the longest
/// alias. Docker sets no limit, but netd's names become file names (a
/// container's namespace is `/run/netns/{prefix}-{name}`, and a file name
/// has at most 255 bytes) and DNS names (`name.network` at most 253
/// bytes): 128 fits both with room for the prefix and the network.
pub const NAME_MAX: usize = 128;

/// Docker's rule for container and network names,
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, with netd's length limit.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= NAME_MAX
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// What a checked name names; the messages differ as Docker's do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameOf {
    Container,
    Network,
    Service,
    Alias,
}

/// Checks a name against [`valid_name`], with the message for the user:
/// Docker's wording for containers, netd's (in Docker's style) for the rest.
pub fn check_name(of: NameOf, name: &str) -> Result<(), String> {
    if valid_name(name) {
        return Ok(());
    }
    let problem = if name.len() > NAME_MAX {
        format!("at most {NAME_MAX} characters are allowed")
    } else {
        "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed".to_string()
    };
    Err(match of {
        NameOf::Container => format!("Invalid container name ({name}), {problem}"),
        NameOf::Network => format!("invalid network name \"{name}\": {problem}"),
        NameOf::Service => format!("invalid service name \"{name}\": {problem}"),
        NameOf::Alias => format!("invalid alias \"{name}\": {problem}"),
    })
}

/// Docker derives a container's MAC from its IPv4 address (02:42 + the
/// address), which keeps MACs unique per network without storing a counter.
/// The datapath derives the gateway's MAC the same way, from the same
/// function, so the two can never disagree.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    netd_common::mac_for_ipv4(ip.octets())
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads `aa:bb:cc:dd:ee:ff` (either case), the form [`format_mac`] writes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        assert!(valid_name("web"));
        assert!(valid_name("a.b_c-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("a b"));
        assert!(valid_name(&"a".repeat(NAME_MAX)));
        assert!(!valid_name(&"a".repeat(NAME_MAX + 1)));
    }

    #[test]
    fn name_errors_say_what_is_wrong() {
        assert_eq!(
            check_name(NameOf::Container, "a/b").unwrap_err(),
            "Invalid container name (a/b), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
        let long = "x".repeat(300);
        assert_eq!(
            check_name(NameOf::Container, &long).unwrap_err(),
            format!("Invalid container name ({long}), at most 128 characters are allowed")
        );
        assert_eq!(
            check_name(NameOf::Alias, "").unwrap_err(),
            "invalid alias \"\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
        assert!(check_name(NameOf::Network, "front-end_1.x").is_ok());
    }

    #[test]
    fn macs_read_back_what_is_written() {
        let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
        assert_eq!(parse_mac(&format_mac(&mac)), Some(mac));
        assert_eq!(
            parse_mac("0A:0b:0C:0d:0E:0f"),
            Some([10, 11, 12, 13, 14, 15])
        );
        for bad in [
            "",
            "02:42:ac:11:00",
            "02:42:ac:11:00:02:03",
            "2:42:ac:11:00:02",
            "02-42-ac-11-00-02",
            "02:42:ac:11:00:gg",
            "+2:42:ac:11:00:02",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn mac_comes_from_ip() {
        assert_eq!(
            format_mac(&mac_for(Ipv4Addr::new(172, 17, 0, 2))),
            "02:42:ac:11:00:02"
        );
    }

    #[test]
    fn lookup_by_id_name_then_unique_prefix() {
        let mut s = State::default();
        for (id, name) in [("abc123", "one"), ("abd456", "two")] {
            s.networks.insert(
                id.into(),
                Arc::new(Network {
                    id: id.into(),
                    name: name.into(),
                    driver: "bridge".into(),
                    created: String::new(),
                    internal: false,
                    attachable: false,
                    ipam: None,
                    options: BTreeMap::new(),
                    labels: BTreeMap::new(),
                    predefined: false,
                    index: 1,
                }),
            );
        }
        assert_eq!(s.find_network("abc123").unwrap().name, "one");
        assert_eq!(s.find_network("two").unwrap().id, "abd456");
        assert_eq!(s.find_network("abc").unwrap().name, "one");
        assert!(s.find_network("ab").is_none(), "ambiguous prefix");
        assert!(s.find_network("").is_none());
    }

    fn container_json(service: &str) -> String {
        format!(
            r#"{{"id":"c","name":"c","created":"","net":{{"mode":"host"}},"network_mode":"host",
                "endpoints":[],"process":null{service}}}"#
        )
    }

    #[test]
    fn snapshots_with_one_service_still_load() {
        let services = |json: String| serde_json::from_str::<Container>(&json).unwrap().services;
        assert_eq!(services(container_json("")), Vec::<String>::new());
        assert_eq!(
            services(container_json(r#","service":null"#)),
            Vec::<String>::new()
        );
        assert_eq!(services(container_json(r#","service":"s1""#)), ["s1"]);
        assert_eq!(
            services(container_json(r#","services":["s1","s2"]"#)),
            ["s1", "s2"]
        );
    }

    #[test]
    fn a_process_recorded_without_its_start_loads() {
        let old = r#"{"cmd":["sleep","9"],"pid":42}"#;
        let p: Process = serde_json::from_str(old).unwrap();
        assert_eq!((p.pid, p.started), (Some(42), None));
        let p = Process {
            started: Some(Start {
                ticks: 7,
                boot_id: "b".into(),
            }),
            ..p
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Process>(&json).unwrap(), p);
    }

    #[test]
    fn replicas_of_every_service_in_one_pass() {
        let mut s = State::default();
        for (id, services) in [("b", &["s1", "s2"][..]), ("a", &["s1"][..]), ("x", &[][..])] {
            let c: Container = serde_json::from_str(&container_json("")).unwrap();
            s.containers.insert(
                id.into(),
                Arc::new(Container {
                    id: id.into(),
                    name: id.into(),
                    services: services.iter().map(|s| s.to_string()).collect(),
                    ..c
                }),
            );
        }
        let by = s.replicas_by_service();
        let names = |id: &str| by[id].iter().map(|c| c.name.as_str()).collect::<Vec<_>>();
        assert_eq!(names("s1"), ["a", "b"]);
        assert_eq!(names("s2"), ["b"]);
        assert_eq!(by.len(), 2);
        assert_eq!(
            s.replicas_of("s1")
                .iter()
                .map(|c| &c.name)
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
