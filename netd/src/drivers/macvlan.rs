//! `macvlan` (Docker's driver, mode bridge): each endpoint is a macvlan on
//! a host interface (`-o parent=IFACE`), with its own MAC, so containers
//! sit directly on the parent's L2 segment. The network has no kernel
//! object of its own; its gateway is a router on that segment.
//!
//! Frames go from the macvlan straight to the segment (or to another
//! macvlan of the parent), past every program of the host, so the
//! sender checks run on the macvlan itself: `netd_mv_out` on its egress,
//! inside the container's namespace, drops what does not carry the
//! endpoint's addresses, as `netd_from_ep` does on a veth.

use async_trait::async_trait;
use tracing::warn;

use super::{Kernel, Leaving, NetworkDriver, Plugged, options};
use crate::engine::spec::NetworkSpec;
use crate::error::{EngineError, Result};
use crate::model::{Endpoint, Network, State};
use crate::names;
use crate::netlink::{MacvlanPlumbing, Netns};

/// The option naming a network's parent interface (`-o parent=`).
const PARENT_OPTION: &str = "parent";
/// Docker's macvlan mode option; `bridge` (its default) is the one netd
/// implements: the endpoints of a parent reach one another directly.
const MODE_OPTION: &str = "macvlan_mode";

pub struct Macvlan;

#[async_trait]
impl NetworkDriver for Macvlan {
    fn name(&self) -> &'static str {
        "macvlan"
    }

    /// The parent must exist, must not be one of netd's own links, and no
    /// other macvlan network may use it (Docker's rule: two networks on one
    /// parent would share its segment without knowing of each other).
    async fn validate(&self, k: &Kernel<'_>, spec: &NetworkSpec, state: &State) -> Result<()> {
        for (key, value) in &spec.options {
            match key.as_str() {
                PARENT_OPTION => {}
                MODE_OPTION if value == "bridge" => {}
                MODE_OPTION => {
                    return Err(EngineError::InvalidParameter(format!(
                        "-o {MODE_OPTION}={value}: netd's macvlan networks are in bridge mode"
                    )));
                }
                options::MTU => {
                    options::parse_mtu(value)?;
                }
                other => return Err(options::unsupported(self.name(), other)),
            }
        }
        let Some(parent) = spec.options.get(PARENT_OPTION) else {
            return Err(EngineError::InvalidParameter(
                "macvlan networks need a parent interface: -o parent=IFACE".into(),
            ));
        };
        let exists = k
            .netlink
            .link_index(parent)
            .await
            .map_err(|e| EngineError::system(format!("cannot look up {parent}"), e))?
            .is_some();
        if !exists || names::is_own_link(k.prefix, parent) {
            return Err(EngineError::InvalidParameter(format!(
                "-o parent interface was not found on the host: {parent}"
            )));
        }
        // Each macvlan is numbered by its address's offset in the subnet
        // (`netd_common::macvlan`).
        if let Some(subnet) = spec.subnet
            && subnet.prefix_len() < 32 - netd_common::macvlan::OFFSET_BITS as u8
        {
            return Err(EngineError::InvalidParameter(format!(
                "macvlan subnets can be at most /{}; {subnet} is larger",
                32 - netd_common::macvlan::OFFSET_BITS
            )));
        }
        if let Some(other) = state
            .networks
            .values()
            .find(|n| n.driver == self.name() && n.options.get(PARENT_OPTION) == Some(parent))
        {
            return Err(EngineError::Forbidden(format!(
                "network {} is already using parent interface {parent}",
                other.name
            )));
        }
        Ok(())
    }

    async fn attach(
        &self,
        k: &mut Kernel<'_>,
        net: &Network,
        ep: &Endpoint,
        ns: &Netns,
        default_route: bool,
    ) -> Result<Plugged> {
        let context = || format!("failed to connect to network {}", net.name);
        let ifindex = ifindex_of(net, ep)?;
        let plumbing = MacvlanPlumbing {
            netns: ns.clone(),
            parent: net.options.get(PARENT_OPTION).cloned().unwrap_or_default(),
            ifname: ep.ifname.clone(),
            mac: ep.mac,
            ip: ep.ip,
            prefix_len: ep.prefix_len,
            gateway: ep.gateway,
            default_route,
            mtu: options::mtu(net)?,
            index: Some(ifindex),
        };
        // The checks are in place before the macvlan comes up, so it never
        // sends unchecked.
        let dataplane = &mut *k.dataplane;
        let netns = ns.open().map_err(|e| EngineError::system(context(), e))?;
        k.netlink
            .create_guarded_macvlan(&plumbing, async |index| {
                dataplane
                    .set_macvlan_endpoint(index, ep.ip, ep.mac, net.index)
                    .and_then(|()| dataplane.attach_macvlan(&netns, index))
                    .map_err(std::io::Error::other)
            })
            .await
            .map_err(|e| EngineError::system(context(), e))?;
        Ok(Plugged::default())
    }

    /// The macvlan's entry goes first (its program then drops whatever it
    /// still sends); the macvlan itself lives only inside the namespace,
    /// so it is deleted here only when the namespace stays.
    async fn detach(&self, k: &mut Kernel<'_>, net: &Network, ep: &Endpoint, ns: Leaving<'_>) {
        match ifindex_of(net, ep) {
            Ok(ifindex) => {
                if let Err(e) = k.dataplane.remove_macvlan_endpoint(ifindex) {
                    warn!(link = %ep.ifname, error = %e, "cannot remove datapath entry");
                }
            }
            Err(e) => warn!(link = %ep.ifname, error = %e, "cannot remove datapath entry"),
        }
        if let Leaving::Stays(ns) = ns
            && let Err(e) = k.netlink.remove_link_in_netns(ns, &ep.ifname).await
        {
            warn!(netns = %ns, link = %ep.ifname, error = %e, "cannot delete macvlan");
        }
    }
}

/// The ifindex netd gives the macvlan of `ep` (`netd_common::macvlan`).
fn ifindex_of(net: &Network, ep: &Endpoint) -> Result<u32> {
    let offset = net
        .ipam
        .as_ref()
        .map(|p| u32::from(ep.ip).wrapping_sub(u32::from(p.subnet.network())));
    offset
        .and_then(|o| netd_common::macvlan::ifindex(net.index, o))
        .ok_or_else(|| {
            EngineError::System(format!(
                "endpoint {} of macvlan network {} has no macvlan number",
                ep.ip, net.name
            ))
        })
}
