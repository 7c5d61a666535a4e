//! `bridge`, Docker's default driver. A Linux bridge per network carries the
//! gateway address for the host (Docker's `docker0`/`br-ID`); each endpoint
//! is a veth pair whose host side carries netd's programs, which forward
//! between the network's containers, isolate networks and translate
//! addresses without the bridge ever forwarding a frame (see `netd-ebpf`).
//!
//! Order matters for the datapath: the network's subnet entry is written
//! before any endpoint on it, and an endpoint's map entries before its
//! programs are attached, so a program never sees an endpoint it cannot
//! classify; removal goes the other way round.

use std::collections::BTreeMap;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use tracing::warn;

use super::{Kernel, Leaving, NetworkDriver, Plugged, Predefined, options};
use crate::engine::spec::NetworkSpec;
use crate::error::{EngineError, Result};
use crate::ipam;
use crate::model::{Endpoint, Network, State, mac_for};
use crate::names;
use crate::netlink::{EndpointPlumbing, Netns};

/// Marks the predefined network, as Docker marks `docker0`'s.
const DEFAULT_BRIDGE_OPTION: &str = "com.docker.network.bridge.default_bridge";

/// Docker's option naming the bridge device. netd names its devices
/// itself (`names`): that is how it finds its own after a crash.
const NAME_OPTION: &str = "com.docker.network.bridge.name";

pub struct Bridge;

#[async_trait]
impl NetworkDriver for Bridge {
    fn name(&self) -> &'static str {
        "bridge"
    }

    fn predefined(&self) -> Option<Predefined> {
        Some(Predefined {
            name: "bridge",
            subnet: Some(ipam::DEFAULT_BRIDGE_SUBNET.parse().expect("valid")),
            options: BTreeMap::from([(DEFAULT_BRIDGE_OPTION.to_string(), "true".to_string())]),
        })
    }

    fn publishes_ports(&self) -> bool {
        true
    }

    fn hosts_services(&self) -> bool {
        true
    }

    /// The options netd implements are checked; the others are refused.
    /// A `--subnet` must not take a route of the host's.
    async fn validate(&self, k: &Kernel<'_>, spec: &NetworkSpec, state: &State) -> Result<()> {
        for (key, value) in &spec.options {
            match key.as_str() {
                options::MTU => {
                    options::parse_mtu(value)?;
                }
                options::HOST_BINDING_IPV4 => {
                    options::parse_host_binding(value)?;
                }
                options::ENABLE_ICC | options::ENABLE_IP_MASQUERADE => {
                    options::parse_bool(key, value)?;
                }
                options::GATEWAY_MODE_IPV4 => options::check_gateway_mode(value)?,
                NAME_OPTION => {
                    return Err(EngineError::InvalidParameter(format!(
                        "-o {NAME_OPTION}: netd names bridge devices itself \
                         ({}-<network id>), so that it can find its own after a crash",
                        k.prefix
                    )));
                }
                other => return Err(options::unsupported(self.name(), other)),
            }
        }
        if let Some(subnet) = spec.subnet.filter(|s| !ipam::is_pool_request(*s)) {
            ipam::check_host_routes(subnet, &ipam::host_routes(), &state.subnets())?;
        }
        Ok(())
    }

    async fn setup(&self, k: &mut Kernel<'_>, net: &Network) -> Result<()> {
        ensure(k, net, None).await
    }

    async fn teardown(&self, k: &mut Kernel<'_>, net: &Network) {
        remove(k, net).await
    }

    async fn attach(
        &self,
        k: &mut Kernel<'_>,
        net: &Network,
        ep: &Endpoint,
        ns: &Netns,
        default_route: bool,
    ) -> Result<Plugged> {
        plug(k, net, ep, ns, default_route, options::mtu(net)?).await
    }

    async fn detach(&self, k: &mut Kernel<'_>, net: &Network, ep: &Endpoint, _ns: Leaving<'_>) {
        unplug(k, net, ep).await
    }

    fn network_links(&self, prefix: &str, net: &Network) -> Vec<String> {
        vec![names::bridge(prefix, net)]
    }

    fn endpoint_link(&self, ep: &Endpoint) -> Option<String> {
        Some(ep.host_ifname.clone())
    }

    fn datapath_subnet(&self, net: &Network) -> Option<Ipv4Net> {
        net.ipam.as_ref().map(|p| p.subnet)
    }
}

/// Makes the network's bridge (the gateway address for the host) and its
/// datapath entry; `vni`: the network is an overlay with that VNI
/// (`drivers::overlay`). Idempotent.
pub(super) async fn ensure(k: &mut Kernel<'_>, net: &Network, vni: Option<u32>) -> Result<()> {
    let Some(pool) = &net.ipam else {
        return Ok(());
    };
    let context = || format!("failed to set up network {}", net.name);
    // The gateway's MAC is derived like a container's, so the eBPF ARP
    // responder knows it without asking the kernel.
    k.netlink
        .ensure_bridge(
            &names::bridge(k.prefix, net),
            pool.gateway,
            pool.subnet.prefix_len(),
            mac_for(pool.gateway),
        )
        .await
        .map_err(|e| EngineError::system(context(), e))?;
    let written = match vni {
        Some(vni) => k.dataplane.set_overlay_network(
            net.index,
            pool.subnet,
            pool.gateway,
            options::policy(net),
            vni,
        ),
        None => k
            .dataplane
            .set_network(net.index, pool.subnet, pool.gateway, options::policy(net)),
    };
    written.map_err(|e| EngineError::system(context(), e))
}

/// Undoes [`ensure`], going on past errors.
pub(super) async fn remove(k: &mut Kernel<'_>, net: &Network) {
    if let Some(pool) = &net.ipam
        && let Err(e) = k.dataplane.remove_network(pool.subnet)
    {
        warn!(network = %net.name, error = %e, "cannot remove datapath entry");
    }
    let name = names::bridge(k.prefix, net);
    if let Err(e) = k.netlink.delete_link(&name).await {
        warn!(network = %net.name, link = %name, error = %e, "cannot delete bridge");
    }
}

/// Plumbs `ep` as a veth pair whose host side carries the endpoint's
/// programs, enslaved to the network's bridge; `mtu` for both ends
/// (`None`: the kernel's default).
pub(super) async fn plug(
    k: &mut Kernel<'_>,
    net: &Network,
    ep: &Endpoint,
    ns: &Netns,
    default_route: bool,
    mtu: Option<u32>,
) -> Result<Plugged> {
    let context = || format!("failed to connect to network {}", net.name);
    let bridge = names::bridge(k.prefix, net);
    let plumbing = EndpointPlumbing {
        netns: ns.clone(),
        host_ifname: ep.host_ifname.clone(),
        ifname: ep.ifname.clone(),
        mac: ep.mac,
        ip: ep.ip,
        prefix_len: ep.prefix_len,
        gateway: ep.gateway,
        default_route,
        bridge: Some(bridge.clone()),
        mtu,
    };
    // The entry and the programs are in place before the host side comes
    // up: the pair carries nothing before, so the container never sends
    // past them.
    let dataplane = &mut *k.dataplane;
    let ifindex = k
        .netlink
        .create_guarded_endpoint(&plumbing, async |ifindex| {
            dataplane
                .set_endpoint(ifindex, ep.ip, ep.mac, net.index)
                .and_then(|()| dataplane.attach_endpoint(&ep.host_ifname, ifindex))
                .map_err(std::io::Error::other)
        })
        .await
        .map_err(|e| EngineError::system(context(), e))?;
    // The kernel brings a new bridge up from its link-watch work, up to a
    // second after its first port, and drops what the host sends through
    // it until then.
    let up = !matches!(k.netlink.oper_up(&bridge).await, Ok(Some(false)));
    Ok(Plugged {
        host_ifindex: Some(ifindex),
        carrier: (!up).then_some(bridge),
    })
}

/// Undoes [`plug`], going on past errors.
pub(super) async fn unplug(k: &mut Kernel<'_>, net: &Network, ep: &Endpoint) {
    if let Err(e) = k.dataplane.detach_endpoint(&ep.host_ifname) {
        warn!(link = %ep.host_ifname, error = %e, "cannot detach datapath");
    }
    match k.netlink.link_index(&ep.host_ifname).await {
        // 0: the veth is already gone; the entries of vanished interfaces
        // with this address go.
        Ok(ifindex) => {
            if let Err(e) = k.dataplane.remove_endpoint(ifindex.unwrap_or(0), ep.ip) {
                warn!(link = %ep.host_ifname, error = %e, "cannot remove datapath entry");
            }
        }
        Err(e) => warn!(link = %ep.host_ifname, error = %e, "cannot look up link"),
    }
    let bridge = names::bridge(k.prefix, net);
    if let Err(e) = k
        .netlink
        .remove_endpoint(&ep.host_ifname, Some((&bridge, ep.ip)))
        .await
    {
        warn!(link = %ep.host_ifname, error = %e, "cannot delete veth");
    }
}
