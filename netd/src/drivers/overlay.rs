//! `overlay`: one network spanning every host of the cluster. On each host
//! it is a bridge network (its gateway on a local bridge, its local
//! endpoints on veths, outbound traffic masqueraded through this host's
//! uplink) whose endpoints also reach the network's endpoints on the other
//! hosts: `netd_from_ep` tunnels their packets through the host's one
//! VXLAN device with the network's VNI, and `netd_vxlan_in` on that device
//! checks and delivers what comes back (see `dataplane::overlay`).
//!
//! The network itself, its addresses and its VNI belong to the cluster
//! (`cluster_scoped`): the engine allocates them in the cluster store, and
//! every host sets the network up from the store's record.
//!
//! Its bridge carries `netd_bridge_out` on its egress, through which the
//! host's own connections reach services' backends on other hosts.
//!
//! MTU: the encapsulation takes [`VXLAN_OVERHEAD`] bytes of the underlay's
//! MTU, so endpoints get the underlay interface's MTU minus that (detected
//! at attach), or `-o com.docker.network.driver.mtu=N`, so that a full-size
//! packet is never dropped for its size on the way (no black hole for path
//! MTU discovery to fall into).

use async_trait::async_trait;

use super::{Kernel, Leaving, NetworkDriver, Plugged};
use super::{bridge, options};
use crate::engine::VNI_OPTION;
use crate::engine::spec::NetworkSpec;
use crate::error::{EngineError, Result};
use crate::model::{Endpoint, Network, State};
use crate::names;
use crate::netlink::{Netns, VXLAN_OVERHEAD};

/// Docker's option asking for an encrypted overlay.
const ENCRYPTED_OPTION: &str = "encrypted";
/// The underlay MTU assumed when its interface is unknown.
const DEFAULT_UNDERLAY_MTU: u32 = 1500;

pub struct Overlay {
    /// UDP port of the VXLAN traffic between hosts.
    port: u16,
    /// The interface other hosts are reached through (the one holding the
    /// advertise address), whose MTU the endpoints' is derived from.
    underlay: Option<String>,
}

impl Overlay {
    pub fn new(port: u16, underlay: Option<String>) -> Overlay {
        Overlay { port, underlay }
    }

    /// The MTU of `net`'s endpoints: the option, else the underlay's less
    /// the encapsulation.
    async fn mtu(&self, k: &Kernel<'_>, net: &Network) -> Result<u32> {
        if let Some(mtu) = options::mtu(net)? {
            return Ok(mtu);
        }
        let underlay = match &self.underlay {
            Some(name) => k.netlink.link_mtu(name).await.ok().flatten(),
            None => None,
        };
        Ok(underlay.unwrap_or(DEFAULT_UNDERLAY_MTU) - VXLAN_OVERHEAD)
    }
}

#[async_trait]
impl NetworkDriver for Overlay {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn scope(&self) -> &'static str {
        "swarm"
    }

    fn cluster_scoped(&self) -> bool {
        true
    }

    fn publishes_ports(&self) -> bool {
        true
    }

    fn hosts_services(&self) -> bool {
        true
    }

    /// Options netd does not implement are refused, never ignored.
    async fn validate(&self, _k: &Kernel<'_>, spec: &NetworkSpec, _state: &State) -> Result<()> {
        for (key, value) in &spec.options {
            match key.as_str() {
                options::MTU => {
                    options::parse_mtu(value)?;
                }
                ENCRYPTED_OPTION => {
                    return Err(EngineError::InvalidParameter(
                        "netd's overlay is not encrypted: run it over a network you trust, or \
                         under WireGuard or IPsec between the hosts"
                            .into(),
                    ));
                }
                VNI_OPTION => {
                    return Err(EngineError::InvalidParameter(format!(
                        "-o {VNI_OPTION}: the cluster allocates VNIs"
                    )));
                }
                other => return Err(options::unsupported(self.name(), other)),
            }
        }
        Ok(())
    }

    /// The host's VXLAN device (made once, shared by every overlay
    /// network), then the network as on a bridge, with its VNI.
    async fn setup(&self, k: &mut Kernel<'_>, net: &Network) -> Result<()> {
        let context = || format!("failed to set up network {}", net.name);
        let vni = net
            .options
            .get(VNI_OPTION)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| EngineError::system(context(), "the network has no VNI"))?;
        let vxlan = names::vxlan(k.prefix);
        let ifindex = k
            .netlink
            .ensure_vxlan(&vxlan, self.port)
            .await
            .map_err(|e| EngineError::system(context(), e))?;
        k.dataplane
            .attach_vxlan(&vxlan, ifindex)
            .map_err(|e| EngineError::system(context(), e))?;
        bridge::ensure(k, net, Some(vni)).await?;
        // The host's own connections to services' backends on other hosts
        // leave through the bridge (see `dataplane::overlay`).
        let name = names::bridge(k.prefix, net);
        let bridge = k
            .netlink
            .link_index(&name)
            .await
            .map_err(|e| EngineError::system(context(), e))?
            .ok_or_else(|| EngineError::system(context(), format!("bridge {name} is missing")))?;
        k.dataplane
            .attach_bridge(&name, bridge)
            .map_err(|e| EngineError::system(context(), e))
    }

    async fn teardown(&self, k: &mut Kernel<'_>, net: &Network) {
        bridge::remove(k, net).await
    }

    async fn attach(
        &self,
        k: &mut Kernel<'_>,
        net: &Network,
        ep: &Endpoint,
        ns: &Netns,
        default_route: bool,
    ) -> Result<Plugged> {
        let mtu = self.mtu(k, net).await?;
        bridge::plug(k, net, ep, ns, default_route, Some(mtu)).await
    }

    async fn detach(&self, k: &mut Kernel<'_>, net: &Network, ep: &Endpoint, _ns: Leaving<'_>) {
        bridge::unplug(k, net, ep).await
    }

    fn network_links(&self, prefix: &str, net: &Network) -> Vec<String> {
        vec![names::bridge(prefix, net), names::vxlan(prefix)]
    }

    fn endpoint_link(&self, ep: &Endpoint) -> Option<String> {
        Some(ep.host_ifname.clone())
    }

    fn datapath_subnet(&self, net: &Network) -> Option<ipnet::Ipv4Net> {
        net.ipam.as_ref().map(|p| p.subnet)
    }
}
