//! What callers ask the engine for, already parsed into typed values by the
//! API layer. The engine checks the semantic rules (names taken, pools
//! overlapping, addresses in use) against its state before touching the
//! kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::model::{NameOf, Proto, check_name};

/// `network create`.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub name: String,
    /// A registered driver's name (`crate::drivers::Drivers`).
    pub driver: String,
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

/// Per-network options of an attachment (`--ip`, `--alias`, and the
/// interface's name and MAC, which a CNI runtime chooses).
#[derive(Debug, Clone, Default)]
pub struct EndpointSpec {
    pub ip: Option<Ipv4Addr>,
    pub aliases: Vec<String>,
    /// The interface's name inside the container; the first free `ethN`
    /// when absent.
    pub ifname: Option<String>,
    /// The interface's MAC; derived from its address when absent.
    pub mac: Option<[u8; 6]>,
}

impl EndpointSpec {
    /// Aliases become DNS names, so they follow the rule for names: an
    /// empty one would otherwise make the network's bare domain resolve
    /// to the container.
    pub fn check(&self) -> Result<(), String> {
        self.aliases
            .iter()
            .try_for_each(|a| check_name(NameOf::Alias, a))
    }
}

/// One `-p` as the user wrote it, Docker's syntax:
/// `[IP:][HOSTPORT:]PORT[/tcp|/udp]`; no host port means "pick a free one".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// As written: `None` when the spec names no address (the network's
    /// default binding applies), `0.0.0.0` for every address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub proto: Proto,
}

impl PortSpec {
    /// Parses one `-p` value; errors use Docker's wording.
    pub fn parse(s: &str) -> Result<PortSpec, String> {
        let (rest, proto) = match s.rsplit_once('/') {
            Some((r, "tcp")) => (r, Proto::Tcp),
            Some((r, "udp")) => (r, Proto::Udp),
            Some((_, p)) => return Err(format!("invalid proto: {p}")),
            None => (s, Proto::Tcp),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [c] => (None, None, *c),
            [h, c] => (None, Some(*h), *c),
            [i, h, c] => (Some(*i), Some(*h).filter(|h| !h.is_empty()), *c),
            _ => return Err(format!("invalid port format for --publish: {s}")),
        };
        let port = |p: &str, what: &str| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("invalid {what}: {p}")),
        };
        let host_ip = match ip {
            None | Some("") => None,
            Some(i) => {
                let addr: Ipv4Addr = i.parse().map_err(|_| format!("invalid IP address: {i}"))?;
                Some(addr)
            }
        };
        Ok(PortSpec {
            host_ip,
            host_port: host.map(|h| port(h, "hostPort")).transpose()?,
            container_port: port(container, "containerPort")?,
            proto,
        })
    }
}

/// `container create` / `container run`.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub network: NetworkMode,
    /// An existing namespace to plumb the endpoints into (the path a
    /// container runtime hands over through CNI) instead of one netd makes.
    pub netns: Option<std::path::PathBuf>,
    pub endpoint: EndpointSpec,
    pub ports: Vec<PortSpec>,
    /// Started in the background inside the sandbox when present.
    pub cmd: Option<Vec<String>>,
    /// Services (names or ids) to join as a backend (`--service`,
    /// repeatable).
    pub services: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        PortSpec::parse(s).unwrap()
    }

    #[test]
    fn port_specs_follow_dockers_syntax() {
        assert_eq!(
            p("8080:80"),
            PortSpec {
                host_ip: None,
                host_port: Some(8080),
                container_port: 80,
                proto: Proto::Tcp
            }
        );
        assert_eq!(p("53/udp").host_port, None);
        assert_eq!(p("53/udp").proto, Proto::Udp);
        assert_eq!(p("80").container_port, 80);
        let local = p("127.0.0.1:8080:80/tcp");
        assert_eq!(local.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(local.host_port, Some(8080));
        assert_eq!(
            p("127.0.0.1::80").host_port,
            None,
            "ephemeral on one address"
        );
        assert_eq!(
            p("0.0.0.0:8080:80").host_ip,
            Some(Ipv4Addr::UNSPECIFIED),
            "0.0.0.0 given, unlike no address, overrides the network's default"
        );
    }

    #[test]
    fn bad_port_specs_say_what_is_wrong() {
        assert_eq!(
            PortSpec::parse("abc").unwrap_err(),
            "invalid containerPort: abc"
        );
        assert_eq!(PortSpec::parse("x:80").unwrap_err(), "invalid hostPort: x");
        assert_eq!(
            PortSpec::parse("80/sctp").unwrap_err(),
            "invalid proto: sctp"
        );
        assert_eq!(
            PortSpec::parse("1.2.3:8:80").unwrap_err(),
            "invalid IP address: 1.2.3"
        );
        assert!(PortSpec::parse("0").is_err());
        assert!(PortSpec::parse("70000:80").is_err());
        assert!(PortSpec::parse("a:b:c:d").is_err());
    }
}
