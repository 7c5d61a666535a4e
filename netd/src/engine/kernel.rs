//! Making the kernel match one record. "Apply" steps are idempotent so that
//! reconcile can run them again after a crash; "remove" steps go on past
//! errors (logging them) because the record is already gone and whatever
//! they leave behind is collected at the next start.

use tracing::warn;

use super::{Engine, names};
use crate::error::{EngineError, Result};
use crate::model::{Container, Driver, Endpoint, NetMode, Network};
use crate::netlink::{EndpointPlumbing, netns};

impl Engine {
    pub(super) async fn apply_network(&self, net: &Network) -> Result<()> {
        let (Driver::Bridge, Some(pool)) = (net.driver, &net.ipam) else {
            return Ok(());
        };
        let name = names::bridge(&self.cfg.prefix, net);
        self.netlink
            .ensure_bridge(&name, pool.gateway, pool.subnet.prefix_len())
            .await
            .map_err(|e| {
                EngineError::system(format!("failed to set up network {}", net.name), e)
            })?;
        Ok(())
    }

    pub(super) async fn remove_network_kernel(&self, net: &Network) {
        if net.driver == Driver::Bridge {
            let name = names::bridge(&self.cfg.prefix, net);
            if let Err(e) = self.netlink.delete_link(&name).await {
                warn!(network = %net.name, link = %name, error = %e, "cannot delete bridge");
            }
        }
    }

    /// Creates the container's namespace (if it has its own) and every
    /// endpoint in it.
    pub(super) async fn apply_container(&mut self, c: &Container) -> Result<()> {
        let NetMode::Own { netns: name } = &c.net else {
            return Ok(());
        };
        if !netns::exists(name) {
            netns::create(name).map_err(|e| {
                EngineError::system(format!("failed to create sandbox for {}", c.name), e)
            })?;
        }
        for (i, ep) in c.endpoints.iter().enumerate() {
            let net = self.network(&ep.network_id)?.clone();
            self.apply_endpoint(name, &net, ep, i == 0).await?;
        }
        Ok(())
    }

    pub(super) async fn remove_container_kernel(&mut self, c: &Container) {
        for ep in &c.endpoints {
            self.remove_endpoint_kernel(ep).await;
        }
        if let NetMode::Own { netns: name } = &c.net
            && let Err(e) = netns::delete(name)
        {
            warn!(container = %c.name, netns = %name, error = %e, "cannot delete namespace");
        }
    }

    /// Plumbs the veth pair and attaches the datapath programs to its host
    /// side.
    pub(super) async fn apply_endpoint(
        &mut self,
        netns_name: &str,
        net: &Network,
        ep: &Endpoint,
        default_route: bool,
    ) -> Result<()> {
        let plumbing = EndpointPlumbing {
            netns: netns_name.to_string(),
            host_ifname: ep.host_ifname.clone(),
            ifname: ep.ifname.clone(),
            mac: ep.mac,
            ip: ep.ip,
            prefix_len: ep.prefix_len,
            gateway: ep.gateway,
            default_route,
            bridge: Some(names::bridge(&self.cfg.prefix, net)),
            mtu: None,
        };
        let context = || format!("failed to connect to network {}", net.name);
        let ifindex = self
            .netlink
            .create_endpoint(&plumbing)
            .await
            .map_err(|e| EngineError::system(context(), e))?;
        self.dataplane
            .attach_endpoint(&ep.host_ifname, ifindex)
            .map_err(|e| EngineError::system(context(), e))?;
        Ok(())
    }

    pub(super) async fn remove_endpoint_kernel(&mut self, ep: &Endpoint) {
        match self.netlink.link_index(&ep.host_ifname).await {
            Ok(Some(ifindex)) => {
                if let Err(e) = self.dataplane.detach_endpoint(&ep.host_ifname, ifindex) {
                    warn!(link = %ep.host_ifname, error = %e, "cannot detach datapath");
                }
            }
            Ok(None) => {}
            Err(e) => warn!(link = %ep.host_ifname, error = %e, "cannot look up link"),
        }
        if let Err(e) = self.netlink.remove_endpoint(&ep.host_ifname).await {
            warn!(link = %ep.host_ifname, error = %e, "cannot delete veth");
        }
    }
}
