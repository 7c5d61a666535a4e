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
//! Addresses come from 198.19.0.0/16 (RFC 2544 benchmarking space; netd's
//! own datapath tests use 198.18.0.0/16).

use std::fmt;

use anyhow::Result;

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
    Cni,
}

impl System {
    pub const fn label(self) -> &'static str {
        match self {
            System::Netd => "netd",
            System::Limit => "limit (veth pair)",
            System::DockerLike => "docker-like (bridge+iptables)",
            System::PodmanLike => "podman-like (bridge+nftables)",
            System::Cni => "CNI bridge plugin",
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
    pub client_ep: Endpoint,
    pub server_ep: Endpoint,
    /// The namespace playing the host (docker-like's bridge and rules).
    pub host: Option<Netns>,
}

/// Addresses of the limit pair.
const LIMIT_NET: &str = "198.19.0";
/// The docker-like network (the bridge takes .1, as docker0 does).
const DOCKER_NET: &str = "198.19.1";
/// The podman-like network.
const PODMAN_NET: &str = "198.19.3";
/// The netd network of the data-path scenarios.
pub const NETD_SUBNET: &str = "198.19.2.0/24";

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
    bridged(tag, System::DockerLike, "d", DOCKER_NET, |host| {
        cmd::output_with_input(
            &mut host.command("iptables-restore"),
            docker_rules("br0", DOCKER_NET).as_bytes(),
        )
    })
}

pub fn podman_like(tag: &str) -> Result<Pair> {
    bridged(tag, System::PodmanLike, "p", PODMAN_NET, |host| {
        cmd::output_with_input(
            host.command("nft").args(["-f", "-"]),
            netavark_rules(PODMAN_NET).as_bytes(),
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
    let host = Netns::create(&format!("{tag}-{n}h"))?;
    // What the container engine does to the host: forwarding on, bridged
    // traffic through the IP hooks (br_netfilter; 1 is the default, but be
    // explicit).
    host.sysctl("net.ipv4.ip_forward", "1")?;
    host.sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
    host.ip(&["link", "add", "br0", "type", "bridge"])?;
    host.ip(&["addr", "add", &format!("{net}.1/24"), "dev", "br0"])?;
    host.ip(&["link", "set", "br0", "up"])?;
    let mut ends = Vec::new();
    for (end, addr) in [("c", 2), ("s", 3)] {
        let ns = Netns::create(&format!("{tag}-{n}{end}"))?;
        let host_if = format!("veth{end}");
        host.ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ])?;
        host.ip(&["link", "set", &host_if, "master", "br0", "up"])?;
        ns.ip(&["addr", "add", &format!("{net}.{addr}/24"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["route", "add", "default", "via", &format!("{net}.1")])?;
        ends.push(ns);
    }
    rules(&host)?;
    let server = ends.pop().expect("two ends");
    let client = ends.pop().expect("two ends");
    finish(system, client, server, Some(host))
}

/// The rules Docker (20.10 to 27, iptables backend) writes for one bridge
/// network `bridge` on `net`.0/24 with a container at .3 publishing port 80
/// as 8080: NAT for outbound and published traffic, and the filter chains
/// every forwarded packet walks.
pub fn docker_rules(bridge: &str, net: &str) -> String {
    format!(
        "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s {net}.0/24 ! -o {bridge} -j MASQUERADE
-A POSTROUTING -s {net}.3/32 -d {net}.3/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A DOCKER -i {bridge} -j RETURN
-A DOCKER ! -i {bridge} -p tcp -m tcp --dport 8080 -j DNAT --to-destination {net}.3:80
COMMIT
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
-A DOCKER -d {net}.3/32 ! -i {bridge} -o {bridge} -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i {bridge} ! -o {bridge} -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o {bridge} -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
"
    )
}

/// The nftables ruleset Podman's netavark (1.x, nftables driver) writes for
/// one bridge network on `net`.0/24 with a container at .3 publishing port
/// 80 as 8080: published ports through a verdict map, masquerade for
/// outbound traffic, conntrack-based forwarding rules.
pub fn netavark_rules(net: &str) -> String {
    format!(
        "table inet netavark {{
\tchain NETAVARK-HOSTPORT-SETMARK {{
\t\tmeta mark set meta mark | 0x2000
\t}}
\tchain nv_bench_dnat {{
\t\tip saddr {net}.0/24 ip daddr {net}.3 tcp dport 8080 jump NETAVARK-HOSTPORT-SETMARK
\t\ttcp dport 8080 dnat ip to {net}.3:80
\t}}
\tchain nv_bench {{
\t\tip daddr {net}.0/24 accept
\t\tip daddr 224.0.0.0/4 accept
\t\tmasquerade
\t}}
\tchain NETAVARK-ISOLATION-1 {{
\t}}
\tmap hostport_dnat {{
\t\ttype inet_proto . inet_service : verdict
\t\telements = {{ tcp . 8080 : jump nv_bench_dnat }}
\t}}
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

fn finish(system: System, client: Netns, server: Netns, host: Option<Netns>) -> Result<Pair> {
    // Same client-side settings everywhere: a connection-rate run must not
    // run out of ephemeral ports (the server closes first, so TIME_WAIT
    // stays on its side, but a long run wraps the port range anyway).
    client.sysctl("net.ipv4.ip_local_port_range", "1024 65535")?;
    client.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    let client_ep = client.endpoint()?;
    let server_ep = server.endpoint()?;
    Ok(Pair {
        system,
        client,
        server,
        client_ep,
        server_ep,
        host,
    })
}
