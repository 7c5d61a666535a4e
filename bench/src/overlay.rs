//! The cross-host paths netd's overlay is measured against, built on a
//! [`Cluster`]'s underlay so that every system's encapsulated packets
//! cross the same bridge, each between hosts of its own (namespaces on the
//! underlay, like netd's hosts):
//!
//! - **vxlan-limit**: the limit for encapsulated traffic. Each container's
//!   namespace holds a kernel VXLAN device (made in its host's namespace
//!   and moved in, so its UDP socket stays on the host's underlay), with a
//!   static FDB entry (peer MAC → peer host) and a permanent neighbour
//!   entry for the other container, learning off: no bridge, no veth, no
//!   rule.
//! - **docker-overlay-like**: Docker's overlay data path as its driver
//!   (libnetwork's `overlay`) builds it. Per host and network, a namespace
//!   with a bridge `br0` holding the gateway address and a VXLAN device
//!   (made in the host namespace and moved in; learning, proxy, l2miss,
//!   l3miss, as the driver sets them) enslaved to it; per container a veth
//!   pair from that bridge (MTU of the underlay less 50, MAC 02:42 + the
//!   address); per remote peer a permanent neighbour entry and an FDB entry
//!   pointing at its host. Its iptables rules: Docker's host ruleset (for
//!   `docker_gwbridge`, the bridge overlay containers go out by; with it
//!   conntrack sees the VXLAN packets on the host) and, in every
//!   container, the embedded DNS server's NAT rules (so conntrack runs in
//!   the container too).
//! - **iptables mesh**: Docker's routing mesh (ingress) as it works
//!   without IPVS, which this kernel lacks: on the host that has no
//!   replica, a `DOCKER-INGRESS` DNAT of the published port to the
//!   ingress sandbox (a namespace on `docker_gwbridge` and on the `ingress`
//!   overlay), whose DNAT picks a replica (`-m statistic`, where IPVS would
//!   balance) and SNATs to its own ingress address, so that the replies
//!   come back through it across the VXLAN.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::Result;

use crate::cluster::Cluster;
use crate::cmd::{self, Background};
use crate::netns::Netns;
use crate::pingpong::{CRR_PORT, SELF_EXE};
use crate::topology::{self, Pair, System};

/// The underlay's MTU less the encapsulation, as netd and Docker set it.
pub const OVERLAY_MTU: u32 = 1500 - netd::netlink::VXLAN_OVERHEAD;
/// The baselines' overlay subnets (first three octets; .1 is the gateway).
const LIMIT_NET: &str = "198.19.49";
const DOCKER_NET: &str = "198.19.50";
const INGRESS_NET: &str = "198.19.51";
/// `docker_gwbridge`'s subnet on every docker-like host.
const GWBRIDGE_NET: &str = "198.19.52";
/// VNIs as Docker hands them out (the ingress network gets 4096).
const INGRESS_VNI: u32 = 4096;
const DOCKER_VNI: u32 = 4097;
const LIMIT_VNI: u32 = 4098;
/// How long a replica's echo server may take to listen.
const READY: Duration = Duration::from_secs(10);

/// A cross-host client/server pair and the namespaces it runs through.
pub struct CrossHost {
    pub pair: Pair,
    /// Hosts and per-network namespaces: deleted after the pair's.
    _keep: Vec<Netns>,
}

impl From<Pair> for CrossHost {
    /// A pair whose path needs nothing more of the bench's (netd's: its
    /// hosts belong to the cluster).
    fn from(pair: Pair) -> CrossHost {
        CrossHost {
            pair,
            _keep: Vec::new(),
        }
    }
}

/// The vxlan-limit pair: client and server namespaces on two hosts of
/// their own, a VXLAN device in each.
pub fn vxlan_limit(cluster: &mut Cluster) -> Result<CrossHost> {
    let hosts = [cluster.attach_other("xh0")?, cluster.attach_other("xh1")?];
    let client = Netns::create(&format!("{}-xc", cluster.tag()))?;
    let server = Netns::create(&format!("{}-xs", cluster.tag()))?;
    let ends = [
        (&hosts[0], &client, format!("{LIMIT_NET}.2")),
        (&hosts[1], &server, format!("{LIMIT_NET}.3")),
    ];
    for (host, ns, ip) in &ends {
        vxlan_into(host, "vx0", LIMIT_VNI, ns, &["nolearning"], &mac_of(ip))?;
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "vx0"])?;
        ns.ip(&["link", "set", "vx0", "up"])?;
    }
    for (here, there) in [(&ends[0], &ends[1]), (&ends[1], &ends[0])] {
        add_peer(here.1, "vx0", &there.2, there.0.endpoint()?.ip)?;
    }
    Ok(CrossHost {
        pair: topology::finish(System::VxlanLimit, client, server, None)?,
        _keep: hosts.into(),
    })
}

/// The docker-overlay-like pair: two docker-like hosts, one overlay
/// network across them, the client container on one, the server on the
/// other.
pub fn docker_overlay(cluster: &mut Cluster) -> Result<CrossHost> {
    let tag = cluster.tag().to_string();
    let hosts = [docker_host(cluster, "dh0")?, docker_host(cluster, "dh1")?];
    let networks = [
        docker_network(&tag, &hosts[0], "dh0o", DOCKER_NET, DOCKER_VNI)?,
        docker_network(&tag, &hosts[1], "dh1o", DOCKER_NET, DOCKER_VNI)?,
    ];
    let (client_ip, server_ip) = (format!("{DOCKER_NET}.2"), format!("{DOCKER_NET}.3"));
    let client = Netns::create(&format!("{tag}-dc"))?;
    plug(&networks[0], &client, "vethc", &client_ip)?;
    let server = Netns::create(&format!("{tag}-ds"))?;
    plug(&networks[1], &server, "veths", &server_ip)?;
    for ns in [&client, &server] {
        cmd::output_with_input(
            &mut ns.command("iptables-restore"),
            format!("{}{EMBEDDED_DNS_CHAINS}", topology::NAT_TABLE).as_bytes(),
        )?;
        short_time_wait(ns)?;
    }
    add_peer(&networks[0], "vxlan0", &server_ip, hosts[1].endpoint()?.ip)?;
    add_peer(&networks[1], "vxlan0", &client_ip, hosts[0].endpoint()?.ip)?;
    let mut keep: Vec<Netns> = networks.into();
    keep.extend(hosts);
    Ok(CrossHost {
        pair: topology::finish(System::DockerOverlay, client, server, None)?,
        _keep: keep,
    })
}

/// The iptables mesh: `replicas` containers running the bench's echo
/// server on one docker-like host's `ingress` overlay, and the other host
/// (with none) publishing `published` for them.
pub struct IptablesMesh {
    /// Where a client dials: the host without a replica, the published port.
    pub dial: SocketAddr,
    /// First: killed before the namespaces go.
    _servers: Vec<Background>,
    _keep: Vec<Netns>,
}

pub fn iptables_mesh(cluster: &mut Cluster, replicas: u8, published: u16) -> Result<IptablesMesh> {
    let tag = cluster.tag().to_string();
    let hosts = [docker_host(cluster, "mh0")?, docker_host(cluster, "mh1")?];
    let vteps = [hosts[0].endpoint()?.ip, hosts[1].endpoint()?.ip];
    let ingress = [
        docker_network(&tag, &hosts[0], "mh0o", INGRESS_NET, INGRESS_VNI)?,
        docker_network(&tag, &hosts[1], "mh1o", INGRESS_NET, INGRESS_VNI)?,
    ];
    // The ingress sandbox of the host without a replica: on its
    // docker_gwbridge (`eth1`, default route) and on the ingress network.
    let sandbox = Netns::create(&format!("{tag}-mis"))?;
    let sandbox_ip = format!("{INGRESS_NET}.2");
    plug(&ingress[1], &sandbox, "vethis", &sandbox_ip)?;
    let gw_ip = format!("{GWBRIDGE_NET}.2");
    hosts[1].ip(&[
        "link",
        "add",
        "vethgw",
        "type",
        "veth",
        "peer",
        "name",
        "eth1",
        "netns",
        &sandbox.name,
    ])?;
    hosts[1].ip(&["link", "set", "vethgw", "master", "docker_gwbridge", "up"])?;
    sandbox.ip(&["addr", "add", &format!("{gw_ip}/24"), "dev", "eth1"])?;
    sandbox.ip(&["link", "set", "eth1", "up"])?;
    sandbox.ip(&[
        "route",
        "add",
        "default",
        "via",
        &format!("{GWBRIDGE_NET}.1"),
    ])?;
    sandbox.sysctl("net.ipv4.ip_forward", "1")?;
    add_peer(&ingress[0], "vxlan0", &sandbox_ip, vteps[1])?;

    let mut keep = Vec::new();
    let mut servers = Vec::new();
    let mut replica_ips = Vec::new();
    for r in 0..replicas {
        let ip = format!("{INGRESS_NET}.{}", 10 + r);
        let ns = Netns::create(&format!("{tag}-mr{r}"))?;
        plug(&ingress[0], &ns, &format!("vethr{r}"), &ip)?;
        add_peer(&ingress[1], "vxlan0", &ip, vteps[0])?;
        let mut server = Background::spawn(ns.command(SELF_EXE).arg("serve"))?;
        server.wait_for_line("ready", READY)?;
        servers.push(server);
        keep.push(ns);
        replica_ips.push(ip);
    }
    cmd::output_with_input(
        hosts[1].command("iptables-restore").arg("--noflush"),
        ingress_host_rules(&gw_ip, published).as_bytes(),
    )?;
    cmd::output_with_input(
        &mut sandbox.command("iptables-restore"),
        ingress_sandbox_rules(&replica_ips, published, &sandbox_ip).as_bytes(),
    )?;
    short_time_wait(&hosts[1])?;
    short_time_wait(&sandbox)?;
    keep.push(sandbox);
    keep.extend(ingress);
    keep.extend(hosts);
    Ok(IptablesMesh {
        dial: SocketAddr::from((vteps[1], published)),
        _servers: servers,
        _keep: keep,
    })
}

/// A docker-like host on the underlay: forwarding and bridge netfilter on,
/// `docker_gwbridge`, and Docker's host ruleset for it (nothing
/// published).
fn docker_host(cluster: &mut Cluster, name: &str) -> Result<Netns> {
    let host = cluster.attach_other(name)?;
    host.sysctl("net.ipv4.ip_forward", "1")?;
    host.sysctl("net.bridge.bridge-nf-call-iptables", "1")?;
    host.ip(&["link", "add", "docker_gwbridge", "type", "bridge"])?;
    host.ip(&[
        "addr",
        "add",
        &format!("{GWBRIDGE_NET}.1/24"),
        "dev",
        "docker_gwbridge",
    ])?;
    host.ip(&["link", "set", "docker_gwbridge", "up"])?;
    cmd::output_with_input(
        &mut host.command("iptables-restore"),
        topology::docker_rules("docker_gwbridge", GWBRIDGE_NET, "", &[]).as_bytes(),
    )?;
    Ok(host)
}

/// The namespace `<tag>-<name>` of one overlay network on `host`, as
/// Docker's driver sets it up: `br0` with the gateway address (VLAN
/// default PVID 0) and the network's VXLAN device `vxlan0` on it.
fn docker_network(tag: &str, host: &Netns, name: &str, net: &str, vni: u32) -> Result<Netns> {
    let ns = Netns::create(&format!("{tag}-{name}"))?;
    ns.ip(&[
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "vlan_default_pvid",
        "0",
    ])?;
    ns.ip(&["addr", "add", &format!("{net}.1/24"), "dev", "br0"])?;
    ns.ip(&["link", "set", "br0", "up"])?;
    let mac = mac_of(&format!("{net}.1"));
    vxlan_into(
        host,
        "vxlan0",
        vni,
        &ns,
        &["proxy", "l2miss", "l3miss"],
        &mac,
    )?;
    ns.ip(&["link", "set", "vxlan0", "master", "br0", "up"])?;
    Ok(ns)
}

/// Plugs `ns` into the overlay network namespace `network`: a veth pair,
/// `host_if` on its `br0`, `eth0` inside with `ip`/24, Docker's MAC and the
/// overlay MTU.
fn plug(network: &Netns, ns: &Netns, host_if: &str, ip: &str) -> Result<()> {
    let mtu = OVERLAY_MTU.to_string();
    network.ip(&[
        "link", "add", host_if, "mtu", &mtu, "type", "veth", "peer", "name", "eth0", "mtu", &mtu,
        "netns", &ns.name,
    ])?;
    network.ip(&["link", "set", host_if, "master", "br0", "up"])?;
    ns.ip(&["link", "set", "eth0", "address", &mac_of(ip)])?;
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    Ok(())
}

/// A VXLAN device `name` made in `host` (so its socket is on the host's
/// underlay) with `flags`, the overlay MTU and `mac`, then moved into `to`.
fn vxlan_into(
    host: &Netns,
    name: &str,
    vni: u32,
    to: &Netns,
    flags: &[&str],
    mac: &str,
) -> Result<()> {
    let (vni, mtu) = (vni.to_string(), OVERLAY_MTU.to_string());
    let mut args = vec![
        "link", "add", name, "address", mac, "mtu", &mtu, "type", "vxlan", "id", &vni, "dstport",
        "4789",
    ];
    args.extend_from_slice(flags);
    host.ip(&args)?;
    host.ip(&["link", "set", name, "netns", &to.name])?;
    Ok(())
}

/// A remote peer on `dev` in `ns`, as Docker's driver adds one: a
/// permanent neighbour entry for its address and an FDB entry sending its
/// MAC to its host `vtep`.
fn add_peer(ns: &Netns, dev: &str, ip: &str, vtep: Ipv4Addr) -> Result<()> {
    let mac = mac_of(ip);
    ns.ip(&[
        "neigh",
        "add",
        ip,
        "lladdr",
        &mac,
        "dev",
        dev,
        "nud",
        "permanent",
    ])?;
    cmd::output(ns.command("bridge").args([
        "fdb",
        "add",
        &mac,
        "dev",
        dev,
        "dst",
        &vtep.to_string(),
        "self",
        "permanent",
    ]))?;
    Ok(())
}

/// Expires conntrack's TIME_WAIT entries in `ns` after a second instead
/// of two minutes: a connection-rate run leaves thousands a second, the
/// table is shared by every namespace, and the repetitions would fill it
/// and start dropping (scenario 4 does the same). Their count does not
/// change what a new connection costs (a hash lookup).
fn short_time_wait(ns: &Netns) -> Result<()> {
    ns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1")
}

/// Docker's MAC for an address: 02:42 and the address's four bytes.
fn mac_of(ip: &str) -> String {
    let octets = ip.parse::<Ipv4Addr>().map_or([0; 4], |ip| ip.octets());
    format!(
        "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
        octets[0], octets[1], octets[2], octets[3]
    )
}

/// The rules Docker's embedded DNS server adds to every container on a
/// user-defined network (overlays included), with the ports it listens
/// on in the container: queries to 127.0.0.11:53 go to them. After
/// [`topology::NAT_TABLE`].
const EMBEDDED_DNS_CHAINS: &str = ":DOCKER_OUTPUT - [0:0]
:DOCKER_POSTROUTING - [0:0]
-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT
-A POSTROUTING -d 127.0.0.11/32 -j DOCKER_POSTROUTING
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p tcp -m tcp --dport 53 -j DNAT --to-destination 127.0.0.11:41269
-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:50361
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p tcp -m tcp --sport 41269 -j SNAT --to-source :53
-A DOCKER_POSTROUTING -s 127.0.0.11/32 -p udp -m udp --sport 50361 -j SNAT --to-source :53
COMMIT
";

/// What Docker adds on every host for a port published through the
/// ingress: the `DOCKER-INGRESS` chains, DNAT to the ingress sandbox's
/// address on `docker_gwbridge` (`sandbox`), and the forwarding accepts.
/// For `iptables-restore --noflush` on top of [`topology::docker_rules`].
fn ingress_host_rules(sandbox: &str, published: u16) -> String {
    format!(
        "*nat
:DOCKER-INGRESS - [0:0]
-I PREROUTING -m addrtype --dst-type LOCAL -j DOCKER-INGRESS
-I OUTPUT -m addrtype --dst-type LOCAL -j DOCKER-INGRESS
-A DOCKER-INGRESS -p tcp -m tcp --dport {published} -j DNAT --to-destination {sandbox}:{published}
-A DOCKER-INGRESS -j RETURN
COMMIT
*filter
:DOCKER-INGRESS - [0:0]
-I FORWARD -j DOCKER-INGRESS
-A DOCKER-INGRESS -p tcp -m tcp --dport {published} -j ACCEPT
-A DOCKER-INGRESS -p tcp -m state --state RELATED,ESTABLISHED -m tcp --sport {published} -j ACCEPT
-A DOCKER-INGRESS -j RETURN
COMMIT
"
    )
}

/// The ingress sandbox's NAT without IPVS: DNAT of the published port to
/// one of `replicas` (port [`CRR_PORT`]), each taken with equal
/// probability, and SNAT of what goes to the ingress network to the
/// sandbox's own address there (`own`), as Docker's sandbox does after
/// IPVS.
fn ingress_sandbox_rules(replicas: &[String], published: u16, own: &str) -> String {
    let mut dnat = String::new();
    for (k, replica) in replicas.iter().enumerate() {
        let pick = topology::uniform_pick(k, replicas.len());
        dnat += &format!(
            "-A PREROUTING -p tcp -m tcp --dport {published} {pick}-j DNAT \
             --to-destination {replica}:{CRR_PORT}\n"
        );
    }
    format!(
        "{}{dnat}-A POSTROUTING -d {INGRESS_NET}.0/24 -j SNAT --to-source {own}\nCOMMIT\n",
        topology::NAT_TABLE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_macs_carry_the_address() {
        assert_eq!(mac_of("198.19.50.3"), "02:42:c6:13:32:03");
    }

    #[test]
    fn the_sandbox_spreads_over_every_replica_and_snats_to_itself() {
        let ips = ["198.19.51.10".to_string(), "198.19.51.11".to_string()];
        let rules = ingress_sandbox_rules(&ips, 27002, "198.19.51.2");
        assert!(rules.contains(
            "-A PREROUTING -p tcp -m tcp --dport 27002 -m statistic --mode random \
             --probability 0.50000000000 -j DNAT --to-destination 198.19.51.10:7002\n"
        ));
        assert!(rules.contains(
            "-A PREROUTING -p tcp -m tcp --dport 27002 -j DNAT --to-destination \
             198.19.51.11:7002\n"
        ));
        assert!(rules.contains("-j SNAT --to-source 198.19.51.2\n"));
        let host = ingress_host_rules("198.19.52.2", 27002);
        assert!(host.contains("--dport 27002 -j DNAT --to-destination 198.19.52.2:27002\n"));
    }
}
