//! The container-to-container paths under test, each built the way its
//! system builds it, each a client namespace and a server namespace:
//!
//! - **limit**: one veth pair straight between the two namespaces. No bridge,
//!   no rules: what this machine can do at all.
//! - **docker-like**: a Linux bridge and one veth pair per container, as
//!   Docker's bridge driver makes them, plus the iptables (nft backend)
//!   ruleset Docker writes for a network with one published port:
//!   MASQUERADE, DNAT, the DOCKER-* filter chains, and with them conntrack
//!   and bridge netfilter on every packet. The "host" side (bridge, rules)
//!   sits in a namespace of its own so the real host's firewall is never
//!   touched; the kernel code on the path is the same.
//! - **podman-like**: the same bridge and veths with the nftables ruleset
//!   Podman's netavark writes (native nftables, a verdict map for published
//!   ports, conntrack), the nftables flavour of the same design.
//! - **netd**: two containers on a netd network, made through netd's API,
//!   with netd's eBPF programs on their endpoints.
//!
//! Scenarios 2 and 3 (and 6's NAT figures) cross the host instead
//! ([`Edge`]): one container behind a host, and an "outside" namespace on
//! the far side of the host's uplink (a veth), built as docker-like, podman-like, **routed** (the same
//! bridge with no rule at all: the outside has a route to the container
//! subnet through the host, so nothing is translated) and netd (the real
//! daemon with `--uplink` on the veth, its container's ports published
//! through the API).
//!
//! Addresses come from 198.19.0.0/16 (RFC 2544 benchmarking space; netd's
//! own datapath tests use 198.18.0.0/16).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use anyhow::Result;
use serde_json::json;

use crate::cmd;
use crate::daemon::Daemon;
use crate::netns::{Endpoint, Netns};

/// Which system a figure was measured on: the columns of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum System {
    Netd,
    Limit,
    DockerLike,
    PodmanLike,
    Routed,
    Cni,
    VxlanLimit,
    DockerOverlay,
    IptablesMesh,
}

impl System {
    pub const fn label(self) -> &'static str {
        match self {
            System::Netd => "netd",
            System::Limit => "limit (veth pair)",
            System::DockerLike => "docker-like (bridge+iptables)",
            System::PodmanLike => "podman-like (bridge+nftables)",
            System::Routed => "routed (no NAT)",
            System::Cni => "CNI bridge plugin",
            System::VxlanLimit => "vxlan-limit (kernel VXLAN, static FDB)",
            System::DockerOverlay => "docker-overlay-like (bridge+VXLAN+iptables)",
            System::IptablesMesh => "iptables mesh (DNAT+SNAT over VXLAN)",
        }
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A client and a server namespace with a path between them. Dropping it
/// removes what the bench made for it (netd's containers go with the
/// daemon).
pub struct Pair {
    pub system: System,
    pub client: Netns,
    pub server: Netns,
    pub server_ep: Endpoint,
    /// The namespace playing the host (docker-like's bridge and rules).
    pub host: Option<Netns>,
}

/// The transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// As iptables, nftables and `-p .../udp` spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A container port to publish, written as `-p` writes it (`80`, `9/udp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub number: u16,
    pub proto: Proto,
}

impl Port {
    pub const fn tcp(number: u16) -> Port {
        Port {
            number,
            proto: Proto::Tcp,
        }
    }

    pub const fn udp(number: u16) -> Port {
        Port {
            number,
            proto: Proto::Udp,
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            Proto::Tcp => write!(f, "{}", self.number),
            Proto::Udp => write!(f, "{}/udp", self.number),
        }
    }
}

/// Addresses of the limit pair.
const LIMIT_NET: &str = "198.19.0";
/// The docker-like network (the bridge takes .1, as docker0 does).
const DOCKER_NET: &str = "198.19.1";
/// The podman-like network.
const PODMAN_NET: &str = "198.19.3";
/// The routed baseline's container network.
const ROUTED_NET: &str = "198.19.4";
/// The netd network of the data-path scenarios.
pub const NETD_SUBNET: &str = "198.19.2.0/24";
/// The netd network of scenarios 2 and 3 (a daemon of its own, so a
/// different subnet keeps the two apart should one outlive its run).
const NETD_EDGE_SUBNET: &str = "198.19.12.0/24";
/// The uplink /24 of each edge topology: the host end takes .1, the
/// outside namespace .2. netd's is in the real host namespace, beside the
/// tests' 100.64.0.0/10 uplinks and never overlapping them.
const NETD_UPLINK_NET: &str = "198.19.10";
const DOCKER_UPLINK_NET: &str = "198.19.11";
const PODMAN_UPLINK_NET: &str = "198.19.13";
const ROUTED_UPLINK_NET: &str = "198.19.14";

pub fn limit(tag: &str) -> Result<Pair> {
    let client = Netns::create(&format!("{tag}-lc"))?;
    let server = Netns::create(&format!("{tag}-ls"))?;
    client.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &server.name,
    ])?;
    for (ns, host) in [(&client, 1), (&server, 2)] {
        ns.ip(&[
            "addr",
            "add",
            &format!("{LIMIT_NET}.{host}/24"),
            "dev",
            "eth0",
        ])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
    }
    finish(System::Limit, client, server, None)
}

pub fn docker_like(tag: &str) -> Result<Pair> {
    let server = format!("{DOCKER_NET}.3");
    bridged(tag, System::DockerLike, "d", DOCKER_NET, |host| {
        cmd::output_with_input(
            &mut host.command("iptables-restore"),
            docker_rules("br0", DOCKER_NET, &server, &[(8080, Port::tcp(80))]).as_bytes(),
        )
    })
}

pub fn podman_like(tag: &str) -> Result<Pair> {
    let server = format!("{PODMAN_NET}.3");
    bridged(tag, System::PodmanLike, "p", PODMAN_NET, |host| {
        cmd::output_with_input(
            host.command("nft").args(["-f", "-"]),
            netavark_rules(PODMAN_NET, &server, &[(8080, Port::tcp(80))]).as_bytes(),
        )
    })
}

/// A bridge in a "host" namespace, two containers on it, and the firewall
/// `rules` installs in the host namespace. Namespaces are `<tag>-<n>h`
/// (host), `<tag>-<n>c` and `<tag>-<n>s`.
fn bridged(
    tag: &str,
    system: System,
    n: &str,
    net: &str,
    rules: impl FnOnce(&Netns) -> Result<String>,
) -> Result<Pair> {
    let host = bridge_host(&format!("{tag}-{n}h"), net)?;
    let client = Netns::create(&format!("{tag}-{n}c"))?;
    plug(&host, &client, "vethc", &format!("{net}.2"), net)?;
    let server = Netns::create(&format!("{tag}-{n}s"))?;
    plug(&host, &server, "veths", &format!("{net}.3"), net)?;
    rules(&host)?;
    finish(system, client, server, Some(host))
}

/// A "host" namespace `name` with a bridge `br0` holding `net`.1/24, as a
/// container engine sets up the host.
fn bridge_host(name: &str, net: &str) -> Result<Netns> {
    let host = Netns::create(name)?;
    // What the container engine does to the host: forwarding on, bridged
    // traffic through the IP hooks (br_netfilter; 1 is the default, but be
    // explicit).
    host.sysctl("net.ipv4.ip_forward", "1")?;
    host.sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
    host.ip(&["link", "add", "br0", "type", "bridge"])?;
    host.ip(&["addr", "add", &format!("{net}.1/24"), "dev", "br0"])?;
    host.ip(&["link", "set", "br0", "up"])?;
    Ok(host)
}

/// Plugs container `ns` into the host's `br0` with a veth (`host_if` on
/// the bridge, `eth0` inside with `addr`/24 and a default route via the
/// bridge), as Docker's bridge driver does.
fn plug(host: &Netns, ns: &Netns, host_if: &str, addr: &str, net: &str) -> Result<()> {
    host.ip(&[
        "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
    ])?;
    host.ip(&["link", "set", host_if, "master", "br0", "up"])?;
    ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    ns.ip(&["route", "add", "default", "via", &format!("{net}.1")])?;
    Ok(())
}

/// The rules Docker (20.10 to 27, iptables backend) writes for one bridge
/// network `bridge` on `net`.0/24 with a container at `target` publishing
/// `ports` (host port, container port): NAT for outbound and published
/// traffic, and the filter chains every forwarded packet walks. Docker
/// writes one rule per port in each of the `DOCKER` chains and one hairpin
/// MASQUERADE per port.
pub fn docker_rules(bridge: &str, net: &str, target: &str, ports: &[(u16, Port)]) -> String {
    let (mut hairpin, mut dnat, mut accept) = (String::new(), String::new(), String::new());
    for (host_port, port) in ports {
        let (proto, port) = (port.proto.name(), port.number);
        hairpin += &format!(
            "-A POSTROUTING -s {target}/32 -d {target}/32 -p {proto} -m {proto} --dport {port} \
             -j MASQUERADE\n"
        );
        dnat += &format!(
            "-A DOCKER ! -i {bridge} -p {proto} -m {proto} --dport {host_port} -j DNAT \
             --to-destination {target}:{port}\n"
        );
        accept += &format!(
            "-A DOCKER -d {target}/32 ! -i {bridge} -o {bridge} -p {proto} -m {proto} \
             --dport {port} -j ACCEPT\n"
        );
    }
    format!(
        "{NAT_TABLE}:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s {net}.0/24 ! -o {bridge} -j MASQUERADE
{hairpin}-A DOCKER -i {bridge} -j RETURN
{dnat}COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o {bridge} -j DOCKER
-A FORWARD -i {bridge} ! -o {bridge} -j ACCEPT
-A FORWARD -i {bridge} -o {bridge} -j ACCEPT
{accept}-A DOCKER-ISOLATION-STAGE-1 -i {bridge} ! -o {bridge} -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o {bridge} -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"
    )
}

/// The start of an `iptables-restore` input that replaces the nat table:
/// its built-in chains, empty.
pub const NAT_TABLE: &str = "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
";

/// The `-m statistic` match (with a trailing space) that takes choice `k`
/// of `n` with probability 1/(n-k) among those left, and the last one
/// unconditionally (no match): uniform overall, as kube-proxy and Docker's
/// rules pick.
pub fn uniform_pick(k: usize, n: usize) -> String {
    let left = n - k;
    if left > 1 {
        format!(
            "-m statistic --mode random --probability {:.11} ",
            1.0 / left as f64
        )
    } else {
        String::new()
    }
}

/// The nftables ruleset Podman's netavark (1.x, nftables driver) writes for
/// one bridge network on `net`.0/24 with a container at `target` publishing
/// `ports` (host port, container port): published ports through a verdict
/// map (one element per port, whatever the number of ports), masquerade for
/// outbound traffic, conntrack-based forwarding rules.
pub fn netavark_rules(net: &str, target: &str, ports: &[(u16, Port)]) -> String {
    let (mut dnat, mut elements) = (String::new(), Vec::new());
    for (host_port, port) in ports {
        let (proto, port) = (port.proto.name(), port.number);
        dnat += &format!(
            "\t\tip saddr {net}.0/24 ip daddr {target} {proto} dport {host_port} \
             jump NETAVARK-HOSTPORT-SETMARK\n\
             \t\t{proto} dport {host_port} dnat ip to {target}:{port}\n"
        );
        elements.push(format!("{proto} . {host_port} : jump nv_bench_dnat"));
    }
    // nft refuses an empty `elements = { }`: a container publishing nothing
    // gets no element line at all.
    let elements = if elements.is_empty() {
        String::new()
    } else {
        format!("\t\telements = {{ {} }}\n", elements.join(", "))
    };
    format!(
        "table inet netavark {{
\tchain NETAVARK-HOSTPORT-SETMARK {{
\t\tmeta mark set meta mark | 0x2000
\t}}
\tchain nv_bench_dnat {{
{dnat}\t}}
\tchain nv_bench {{
\t\tip daddr {net}.0/24 accept
\t\tip daddr 224.0.0.0/4 accept
\t\tmasquerade
\t}}
\tchain NETAVARK-ISOLATION-1 {{
\t}}
\tmap hostport_dnat {{
\t\ttype inet_proto . inet_service : verdict
{elements}\t}}
\tchain NETAVARK-HOSTPORT-DNAT {{
\t\tmeta l4proto . th dport vmap @hostport_dnat
\t}}
\tchain PREROUTING {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tfib daddr type local jump NETAVARK-HOSTPORT-DNAT
\t}}
\tchain OUTPUT {{
\t\ttype nat hook output priority -100; policy accept;
\t\tfib daddr type local jump NETAVARK-HOSTPORT-DNAT
\t}}
\tchain POSTROUTING {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & 0x2000 == 0x2000 meta mark set meta mark & 0xffffdfff masquerade
\t\tip saddr {net}.0/24 jump nv_bench
\t}}
\tchain FORWARD {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state invalid drop
\t\tjump NETAVARK-ISOLATION-1
\t\tip daddr {net}.0/24 ct state established,related accept
\t\tip saddr {net}.0/24 accept
\t}}
\tchain INPUT {{
\t\ttype filter hook input priority filter; policy accept;
\t\tip saddr {net}.0/24 udp dport 53 accept
\t}}
}}
"
    )
}

/// Two containers on a fresh netd network, through the API.
pub fn netd(daemon: &Daemon) -> Result<Pair> {
    let api = daemon.api();
    api.create_network("bench", NETD_SUBNET)?;
    api.create_container("client", "bench")?;
    api.create_container("server", "bench")?;
    let client = Netns::open(&daemon.netns_name("client"))?;
    let server = Netns::open(&daemon.netns_name("server"))?;
    finish(System::Netd, client, server, None)
}

/// The pair of `client` and `server` on `system`, with the client
/// settings every pair gets.
pub fn finish(system: System, client: Netns, server: Netns, host: Option<Netns>) -> Result<Pair> {
    // Same client-side settings everywhere: a connection-rate run must not
    // run out of ephemeral ports (the server closes first, so TIME_WAIT
    // stays on its side, but a long run wraps the port range anyway).
    client.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
    client.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    let server_ep = server.endpoint()?;
    Ok(Pair {
        system,
        client,
        server,
        server_ep,
        host,
    })
}

/// Scenarios 2, 3 and 6: one container behind a host, and an "outside"
/// namespace on the far side of the host's uplink. Dropping it removes what
/// the bench made for it (netd's outside goes with its daemon).
pub struct Edge {
    pub system: System,
    pub outside: Netns,
    pub container: Netns,
    /// The outside namespace's address: scenario 3's server.
    pub outside_ip: Ipv4Addr,
    /// The host's uplink address, where published ports answer.
    uplink_ip: Ipv4Addr,
    container_ip: Ipv4Addr,
    /// Whether the container's ports are published on the uplink address;
    /// if not (routed), the outside reaches the container's own address.
    published: bool,
    /// The namespace playing the host (the baselines' bridge and rules).
    pub host: Option<Netns>,
}

impl Edge {
    /// Where an outside client connects to reach the container's `port`.
    pub fn dial(&self, port: u16) -> SocketAddr {
        if self.published {
            (self.uplink_ip, host_port(port)).into()
        } else {
            (self.container_ip, port).into()
        }
    }
}

/// The host port container port `port` is published on (`-p HOST:PORT`).
/// A different number, so that the translation rewrites the port as `-p
/// 8080:80` does; 20000 above the bench's ports keeps it below the
/// ephemeral range and away from the ports netd's tests publish (netd's
/// socket hooks apply its published ports to the whole host namespace).
pub fn host_port(port: u16) -> u16 {
    port + 20000
}

/// The `-p` pairs (host port, container port) for `ports`.
fn publish(ports: &[Port]) -> Vec<(u16, Port)> {
    ports.iter().map(|&p| (host_port(p.number), p)).collect()
}

/// The outside namespace `name`, joined to `host` (None: the real host
/// namespace, for netd) by a veth: `uplink` on the host side with
/// `{net}.1/24`, `eth0` outside with `{net}.2/24`. Deleting the namespace
/// deletes the pair, the host end included.
pub fn outside(name: &str, host: Option<&Netns>, uplink: &str, net: &str) -> Result<Netns> {
    let outside = Netns::create(name)?;
    let on_host = |args: &[&str]| match host {
        Some(host) => host.ip(args),
        None => cmd::output(Command::new("ip").args(args)),
    };
    on_host(&[
        "link",
        "add",
        uplink,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &outside.name,
    ])?;
    on_host(&["addr", "add", &format!("{net}.1/24"), "dev", uplink])?;
    on_host(&["link", "set", uplink, "up"])?;
    outside.ip(&["addr", "add", &format!("{net}.2/24"), "dev", "eth0"])?;
    outside.ip(&["link", "set", "eth0", "up"])?;
    Ok(outside)
}

/// netd's outside: a veth `<tag>-up` in the real host namespace (the
/// daemon's `--uplink`) to `<tag>-no`. Made before the daemon starts, as
/// the daemon needs its uplink to exist; the daemon owns it from then on.
pub fn netd_outside(tag: &str) -> Result<(Netns, String)> {
    let uplink = format!("{tag}-up");
    let ns = outside(&format!("{tag}-no"), None, &uplink, NETD_UPLINK_NET)?;
    Ok((ns, uplink))
}

/// The docker-like edge: bridge, veth, Docker's iptables rules with
/// `ports` published, and the uplink Docker's MASQUERADE leaves by.
pub fn docker_edge(tag: &str, ports: &[Port]) -> Result<Edge> {
    bridged_edge(
        tag,
        System::DockerLike,
        DOCKER_NET,
        DOCKER_UPLINK_NET,
        |host, target| {
            cmd::output_with_input(
                &mut host.command("iptables-restore"),
                docker_rules("br0", DOCKER_NET, target, &publish(ports)).as_bytes(),
            )
        },
    )
}

/// The podman-like edge: the same, with netavark's nftables ruleset.
pub fn podman_edge(tag: &str, ports: &[Port]) -> Result<Edge> {
    bridged_edge(
        tag,
        System::PodmanLike,
        PODMAN_NET,
        PODMAN_UPLINK_NET,
        |host, target| {
            cmd::output_with_input(
                host.command("nft").args(["-f", "-"]),
                netavark_rules(PODMAN_NET, target, &publish(ports)).as_bytes(),
            )
        },
    )
}

/// The routed edge: the same bridge and veth with no rule at all; the
/// outside routes the container subnet through the host, so packets are
/// forwarded untranslated (and no conntrack is loaded in the host
/// namespace: nothing there asks for it).
pub fn routed_edge(tag: &str) -> Result<Edge> {
    let edge = bridged_edge(
        tag,
        System::Routed,
        ROUTED_NET,
        ROUTED_UPLINK_NET,
        |_, _| Ok(String::new()),
    )?;
    edge.outside.ip(&[
        "route",
        "add",
        &format!("{ROUTED_NET}.0/24"),
        "via",
        &format!("{ROUTED_UPLINK_NET}.1"),
    ])?;
    Ok(Edge {
        published: false,
        ..edge
    })
}

/// A host namespace `<tag>-<x>eh` with a bridge on `net` and an uplink on
/// `uplink_net` to `<tag>-<x>eo`, one container `<tag>-<x>ec` on the
/// bridge (at `net`.2), and the firewall `rules` installs for it.
fn bridged_edge(
    tag: &str,
    system: System,
    net: &str,
    uplink_net: &str,
    rules: impl FnOnce(&Netns, &str) -> Result<String>,
) -> Result<Edge> {
    let x = short(system);
    let host = bridge_host(&format!("{tag}-{x}eh"), net)?;
    let outside = outside(&format!("{tag}-{x}eo"), Some(&host), "uplink", uplink_net)?;
    let container = Netns::create(&format!("{tag}-{x}ec"))?;
    let target = format!("{net}.2");
    plug(&host, &container, "vethc", &target, net)?;
    rules(&host, &target)?;
    edge(
        system,
        outside,
        container,
        Some(host),
        &format!("{uplink_net}.1"),
    )
}

/// One letter per system for namespace names.
fn short(system: System) -> &'static str {
    match system {
        System::Netd => "n",
        System::Limit => "l",
        System::DockerLike => "d",
        System::PodmanLike => "p",
        System::Routed => "r",
        System::Cni => "c",
        System::VxlanLimit => "x",
        System::DockerOverlay => "o",
        System::IptablesMesh => "m",
    }
}

/// netd's edge: a network and one container on it, with `ports` published
/// (`netd container create --network edge -p HOST:PORT[/udp] ...`), through
/// the API of a daemon (whose `--uplink` is [`netd_outside`]'s veth).
pub fn netd_edge(daemon: &Daemon, ports: &[Port]) -> Result<Edge> {
    let api = daemon.api();
    api.create_network("edge", NETD_EDGE_SUBNET)?;
    let published: Vec<String> = publish(ports)
        .iter()
        .map(|(host, port)| format!("{host}:{port}"))
        .collect();
    api.call(
        "POST",
        "/containers/create?name=edge",
        Some(&json!({"NetworkMode": "edge", "Ports": published})),
    )?;
    let outside = daemon.outside();
    let container = Netns::open(&daemon.netns_name("edge"))?;
    edge(
        System::Netd,
        Netns::open(&outside.name)?,
        container,
        None,
        &format!("{NETD_UPLINK_NET}.1"),
    )
}

fn edge(
    system: System,
    outside: Netns,
    container: Netns,
    host: Option<Netns>,
    uplink_ip: &str,
) -> Result<Edge> {
    // Either side may be the client (2: outside, 3: the container): the
    // same client settings as scenario 1 on both.
    for ns in [&outside, &container] {
        ns.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
        ns.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    }
    Ok(Edge {
        system,
        outside_ip: outside.endpoint()?.ip,
        uplink_ip: uplink_ip.parse()?,
        container_ip: container.endpoint()?.ip,
        published: true,
        outside,
        container,
        host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rulesets_translate_each_published_port() {
        let ports = publish(&[Port::tcp(5201), Port::tcp(7001)]);
        assert_eq!(ports, [(25201, Port::tcp(5201)), (27001, Port::tcp(7001))]);
        let docker = docker_rules("br0", "198.19.1", "198.19.1.2", &ports);
        assert_eq!(docker.matches(" -j DNAT ").count(), 2);
        assert!(docker.contains(
            "-A DOCKER ! -i br0 -p tcp -m tcp --dport 27001 -j DNAT \
             --to-destination 198.19.1.2:7001\n"
        ));
        assert!(docker.contains(
            "-A DOCKER -d 198.19.1.2/32 ! -i br0 -o br0 -p tcp -m tcp --dport 5201 -j ACCEPT\n"
        ));
        let podman = netavark_rules("198.19.3", "198.19.3.2", &ports);
        assert!(podman.contains(
            "elements = { tcp . 25201 : jump nv_bench_dnat, tcp . 27001 : jump nv_bench_dnat }"
        ));
        assert!(podman.contains("tcp dport 27001 dnat ip to 198.19.3.2:7001\n"));
        // Nothing published: no DNAT at all, and no empty element list
        // (which nft refuses).
        assert!(!docker_rules("br0", "198.19.1", "198.19.1.2", &[]).contains("DNAT"));
        assert!(!netavark_rules("198.19.3", "198.19.3.2", &[]).contains("elements"));
    }

    #[test]
    fn udp_ports_are_published_as_udp() {
        let ports = publish(&[Port::udp(9)]);
        assert_eq!(ports[0].1.to_string(), "9/udp");
        let docker = docker_rules("br0", "198.19.1", "198.19.1.2", &ports);
        assert!(docker.contains(
            "-A DOCKER ! -i br0 -p udp -m udp --dport 20009 -j DNAT \
             --to-destination 198.19.1.2:9\n"
        ));
        assert!(!docker.contains("-p tcp"));
        let podman = netavark_rules("198.19.3", "198.19.3.2", &ports);
        assert!(podman.contains("elements = { udp . 20009 : jump nv_bench_dnat }"));
        assert!(podman.contains("udp dport 20009 dnat ip to 198.19.3.2:9\n"));
    }
}
