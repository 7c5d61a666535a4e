//! `macvlan` (Docker's driver, mode bridge): each endpoint is a macvlan on
//! a host interface (`-o parent=IFACE`), with its own MAC, so containers
//! sit directly on the parent's L2 segment. The network has no kernel
//! object of its own; its gateway is a router on that segment.

use async_trait::async_trait;
use tracing::warn;

use super::{Kernel, NetworkDriver, Plugged};
use crate::engine::spec::NetworkSpec;
use crate::error::{EngineError, Result};
use crate::model::{Endpoint, Network, State};
use crate::names;
use crate::netlink::{MacvlanPlumbing, Netns};

/// The option naming a network's parent interface (`-o parent=`).
const PARENT_OPTION: &str = "parent";

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
        let plumbing = MacvlanPlumbing {
            netns: ns.clone(),
            parent: net.options.get(PARENT_OPTION).cloned().unwrap_or_default(),
            ifname: ep.ifname.clone(),
            mac: ep.mac,
            ip: ep.ip,
            prefix_len: ep.prefix_len,
            gateway: ep.gateway,
            default_route,
            mtu: None,
        };
        k.netlink
            .create_macvlan_endpoint(&plumbing)
            .await
            .map_err(|e| {
                EngineError::system(format!("failed to connect to network {}", net.name), e)
            })?;
        Ok(Plugged::default())
    }

    /// A macvlan lives only inside the namespace: deleting the namespace
    /// takes it along, so only a disconnect (`ns` given) deletes it here.
    async fn detach(&self, k: &mut Kernel<'_>, _net: &Network, ep: &Endpoint, ns: Option<&Netns>) {
        if let Some(ns) = ns
            && let Err(e) = k.netlink.remove_link_in_netns(ns, &ep.ifname).await
        {
            warn!(netns = %ns, link = %ep.ifname, error = %e, "cannot delete macvlan");
        }
    }
}
