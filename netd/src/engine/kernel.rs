//! Making the kernel match one record. "Apply" steps are idempotent so that
//! reconcile can run them again after a crash (and adopt what is already
//! there without disturbing traffic); "remove" steps go on past errors
//! (logging them) because the record is already gone and whatever they
//! leave behind is collected at the next start.
//!
//! Order matters for the datapath: a network's subnet entry is written
//! before any endpoint on it, and an endpoint's map entries before its
//! programs are attached, so a program never sees an endpoint it cannot
//! classify; removal goes the other way round.

use std::time::{Duration, Instant};

use tracing::warn;

use super::{Engine, names};
use crate::error::{EngineError, Result};
use crate::model::{Container, Driver, Endpoint, NetMode, Network, mac_for};
use crate::netlink::{EndpointPlumbing, MacvlanPlumbing, netns};

/// The option naming a macvlan network's parent interface (`-o parent=`).
pub(super) const PARENT_OPTION: &str = "parent";

impl Engine {
    pub(super) async fn apply_network(&mut self, net: &Network) -> Result<()> {
        let (Driver::Bridge, Some(pool)) = (net.driver, &net.ipam) else {
            return Ok(());
        };
        let context = || format!("failed to set up network {}", net.name);
        let name = names::bridge(&self.cfg.prefix, net);
        // The gateway's MAC is derived like a container's, so the eBPF ARP
        // responder knows it without asking the kernel.
        self.netlink
            .ensure_bridge(
                &name,
                pool.gateway,
                pool.subnet.prefix_len(),
                mac_for(pool.gateway),
            )
            .await
            .map_err(|e| EngineError::system(context(), e))?;
        self.dataplane
            .set_network(net.index, pool.subnet, pool.gateway, net.internal)
            .map_err(|e| EngineError::system(context(), e))?;
        Ok(())
    }

    pub(super) async fn remove_network_kernel(&mut self, net: &Network) {
        if let (Driver::Bridge, Some(pool)) = (net.driver, &net.ipam) {
            if let Err(e) = self.dataplane.remove_network(pool.subnet) {
                warn!(network = %net.name, error = %e, "cannot remove datapath entry");
            }
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
        self.apply_ports(c).await
    }

    /// Points every published port of `c` at its first endpoint.
    async fn apply_ports(&mut self, c: &Container) -> Result<()> {
        let Some(ep) = c.endpoints.first().filter(|_| !c.ports.is_empty()) else {
            return Ok(());
        };
        let context = || format!("failed to publish ports of {}", c.name);
        let net = self.network(&ep.network_id)?.clone();
        let ifindex = self
            .netlink
            .link_index(&ep.host_ifname)
            .await
            .map_err(|e| EngineError::system(context(), e))?
            .ok_or_else(|| EngineError::system(context(), "its veth is gone"))?;
        for b in &c.ports {
            self.dataplane
                .set_publish(
                    b.host_ip,
                    b.host_port,
                    b.proto,
                    ep.ip,
                    b.container_port,
                    ifindex,
                    net.index,
                )
                .map_err(|e| EngineError::system(context(), e))?;
        }
        Ok(())
    }

    pub(super) async fn remove_container_kernel(&mut self, c: &Container) {
        for b in &c.ports {
            if let Err(e) = self
                .dataplane
                .remove_publish(b.host_ip, b.host_port, b.proto)
            {
                warn!(container = %c.name, port = %b.host_side(), error = %e, "cannot unpublish");
            }
        }
        // Deleting the namespace below takes macvlan endpoints with it.
        for ep in &c.endpoints {
            self.remove_endpoint_kernel(None, ep).await;
            // A later container with this address must not inherit flows.
            if let Err(e) = self.dataplane.remove_flows_of(ep.ip) {
                warn!(container = %c.name, error = %e, "cannot forget tracked flows");
            }
        }
        if let NetMode::Own { netns: name } = &c.net
            && let Err(e) = netns::delete(name)
        {
            warn!(container = %c.name, netns = %name, error = %e, "cannot delete namespace");
        }
    }

    /// Plumbs one endpoint: a veth pair whose host side carries the
    /// datapath programs (bridge networks), or a macvlan on the parent.
    pub(super) async fn apply_endpoint(
        &mut self,
        netns_name: &str,
        net: &Network,
        ep: &Endpoint,
        default_route: bool,
    ) -> Result<()> {
        let context = || format!("failed to connect to network {}", net.name);
        if net.driver == Driver::Macvlan {
            let plumbing = MacvlanPlumbing {
                netns: netns_name.to_string(),
                parent: net.options.get(PARENT_OPTION).cloned().unwrap_or_default(),
                ifname: ep.ifname.clone(),
                mac: ep.mac,
                ip: ep.ip,
                prefix_len: ep.prefix_len,
                gateway: ep.gateway,
                default_route,
                mtu: None,
            };
            return self
                .netlink
                .create_macvlan_endpoint(&plumbing)
                .await
                .map_err(|e| EngineError::system(context(), e));
        }
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
        let ifindex = self
            .netlink
            .create_endpoint(&plumbing)
            .await
            .map_err(|e| EngineError::system(context(), e))?;
        self.dataplane
            .set_endpoint(ifindex, ep.ip, ep.mac, net.index)
            .map_err(|e| EngineError::system(context(), e))?;
        self.dataplane
            .attach_endpoint(&ep.host_ifname, ifindex)
            .map_err(|e| EngineError::system(context(), e))?;
        if let Some(bridge) = &plumbing.bridge {
            wait_for_carrier(bridge).await;
        }
        Ok(())
    }

    /// Undoes `apply_endpoint`. A macvlan endpoint lives only inside the
    /// namespace: `netns` names it when the namespace stays (disconnect).
    pub(super) async fn remove_endpoint_kernel(&mut self, netns: Option<&str>, ep: &Endpoint) {
        let net = self.state.networks.get(&ep.network_id).cloned();
        if net.as_ref().is_some_and(|n| n.driver == Driver::Macvlan) {
            if let Some(ns) = netns
                && let Err(e) = self.netlink.remove_link_in_netns(ns, &ep.ifname).await
            {
                warn!(netns = %ns, link = %ep.ifname, error = %e, "cannot delete macvlan");
            }
            return;
        }
        if let Err(e) = self.dataplane.detach_endpoint(&ep.host_ifname) {
            warn!(link = %ep.host_ifname, error = %e, "cannot detach datapath");
        }
        match self.netlink.link_index(&ep.host_ifname).await {
            // 0: the veth is already gone; the entries of vanished
            // interfaces with this address go.
            Ok(ifindex) => {
                if let Err(e) = self.dataplane.remove_endpoint(ifindex.unwrap_or(0), ep.ip) {
                    warn!(link = %ep.host_ifname, error = %e, "cannot remove datapath entry");
                }
            }
            Err(e) => warn!(link = %ep.host_ifname, error = %e, "cannot look up link"),
        }
        let bridge = net.map(|n| names::bridge(&self.cfg.prefix, &n));
        if let Err(e) = self
            .netlink
            .remove_endpoint(&ep.host_ifname, bridge.as_deref().map(|b| (b, ep.ip)))
            .await
        {
            warn!(link = %ep.host_ifname, error = %e, "cannot delete veth");
        }
    }
}

/// How long a new bridge may take to come up: the kernel applies a bridge's
/// carrier change from its link-watch work, up to a second after the first
/// port comes up, and drops what the host sends through it until then.
const CARRIER_WAIT: Duration = Duration::from_secs(3);

/// Returns once `bridge` is operationally up, so that `container create`
/// returns a container the host can already reach (only the first endpoint
/// of a network ever waits). Gives up quietly after `CARRIER_WAIT`: the
/// bridge then comes up by itself a little later.
async fn wait_for_carrier(bridge: &str) {
    let operstate = format!("/sys/class/net/{bridge}/operstate");
    let deadline = Instant::now() + CARRIER_WAIT;
    while Instant::now() < deadline {
        match std::fs::read_to_string(&operstate) {
            Ok(s) if s.trim() == "up" => return,
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(_) => return,
        }
    }
    warn!(
        bridge,
        "bridge is not up yet; the host may not reach new containers for a moment"
    );
}
