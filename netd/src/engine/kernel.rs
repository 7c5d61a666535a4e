//! Making the kernel match one record, through the record's driver.
//! "Apply" steps are idempotent so that reconcile can run them again after
//! a crash (and adopt what is already there without disturbing traffic);
//! "remove" steps go on past errors (logging them) because the record is
//! already gone and whatever they leave behind is collected at the next
//! start.

use std::time::{Duration, Instant};

use tracing::warn;

use super::Engine;
use super::command::Done;
use super::snapshot::Link;
use crate::drivers::Leaving;
use crate::error::{EngineError, Result};
use crate::model::{Container, Endpoint, NetMode, Network};
use crate::netlink::{Netlink, Netns, netns};

/// How long a new bridge may take to come up: the kernel applies a bridge's
/// carrier change from its link-watch work, up to a second after the first
/// port comes up.
const CARRIER_WAIT: Duration = Duration::from_secs(3);

impl Engine {
    /// Sets up a network's kernel objects through its driver.
    pub(super) async fn apply_network(&mut self, net: &Network) -> Result<()> {
        let drivers = self.drivers.clone();
        drivers.of(net)?.setup(&mut self.kernel(), net).await
    }

    /// Plumbs one endpoint through its network's driver and records its
    /// host-side link. Returns a link the host reaches it through that is
    /// not up yet, if any.
    pub(super) async fn attach(
        &mut self,
        net: &Network,
        ep: &Endpoint,
        ns: &Netns,
        default_route: bool,
    ) -> Result<Option<String>> {
        let drivers = self.drivers.clone();
        let plugged = drivers
            .of(net)?
            .attach(&mut self.kernel(), net, ep, ns, default_route)
            .await?;
        if let Some(ifindex) = plugged.host_ifindex {
            let slot = self.dataplane.slot_of(ifindex);
            self.links
                .insert(ep.id.clone(), Link { ifindex, slot }.into());
        }
        Ok(plugged.carrier)
    }

    /// Undoes `attach`.
    pub(super) async fn detach(&mut self, net: &Network, ep: &Endpoint, ns: Leaving<'_>) {
        let drivers = self.drivers.clone();
        match drivers.of(net) {
            Ok(driver) => driver.detach(&mut self.kernel(), net, ep, ns).await,
            Err(e) => warn!(endpoint = %ep.id, error = %e, "cannot detach"),
        }
        self.links.remove(&ep.id);
    }

    /// Creates the container's namespace (if netd owns it) and every
    /// endpoint in it. Returns the links the host reaches them through that
    /// are not up yet.
    pub(super) async fn apply_container(&mut self, c: &Container) -> Result<Vec<String>> {
        let ns = match &c.net {
            NetMode::Own { netns: name } => {
                if !netns::exists(name) {
                    netns::create(name).map_err(|e| {
                        EngineError::system(format!("failed to create sandbox for {}", c.name), e)
                    })?;
                }
                Netns::Named(name.clone())
            }
            NetMode::Path { path } => {
                let ns = Netns::Path(path.clone());
                if !ns.exists() {
                    return Err(EngineError::InvalidParameter(format!(
                        "network namespace {} of container {} does not exist",
                        path.display(),
                        c.name
                    )));
                }
                ns
            }
            NetMode::Host | NetMode::Container { .. } => return Ok(Vec::new()),
        };
        let mut carriers = Vec::new();
        for (i, ep) in c.endpoints.iter().enumerate() {
            let net = self.network(&ep.network_id)?.clone();
            carriers.extend(self.attach(&net, ep, &ns, i == 0).await?);
        }
        self.apply_ports(c)?;
        Ok(carriers)
    }

    /// Points every published port of `c` at its first endpoint.
    fn apply_ports(&mut self, c: &Container) -> Result<()> {
        let Some(ep) = c.endpoints.first().filter(|_| !c.ports.is_empty()) else {
            return Ok(());
        };
        let context = || format!("failed to publish ports of {}", c.name);
        let net_index = self.network(&ep.network_id)?.index;
        let link = self
            .links
            .get(&ep.id)
            .ok_or_else(|| EngineError::system(context(), "its endpoint has no host interface"))?;
        let ifindex = link.ifindex;
        for b in &c.ports {
            self.dataplane
                .set_publish(
                    b.host_ip,
                    b.host_port,
                    b.proto,
                    ep.ip,
                    b.container_port,
                    ifindex,
                    net_index,
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
        // A namespace netd owns is deleted below, with what is inside; one
        // a runtime owns stays, so its interfaces are removed here.
        let ns = match &c.net {
            NetMode::Own { netns } => Some(Netns::Named(netns.clone())),
            NetMode::Path { path } => Some(Netns::Path(path.clone())),
            NetMode::Host | NetMode::Container { .. } => None,
        }
        .filter(Netns::exists);
        let leaving = match (&ns, &c.net) {
            (Some(ns), NetMode::Path { .. }) => Leaving::Stays(ns),
            (Some(ns), _) => Leaving::Deleted(ns),
            (None, _) => Leaving::Gone,
        };
        for ep in &c.endpoints {
            match self.state.networks.get(&ep.network_id).cloned() {
                Some(net) => self.detach(&net, ep, leaving).await,
                None => {
                    warn!(container = %c.name, endpoint = %ep.id, "network of endpoint is gone")
                }
            }
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

    /// The answer `value`, once every link in `carriers` is up (or has had
    /// [`CARRIER_WAIT`]), so that a container is reachable from the host the
    /// moment its create returns; other commands go on meanwhile.
    pub(super) fn after_carriers<T: Send + 'static>(
        &self,
        mut carriers: Vec<String>,
        value: T,
    ) -> Done<T> {
        carriers.sort();
        carriers.dedup();
        if carriers.is_empty() {
            return Done::Now(Ok(value));
        }
        let netlink = self.netlink.clone();
        Done::Later(Box::pin(async move {
            for link in carriers {
                wait_for_carrier(&netlink, &link).await;
            }
            Ok(value)
        }))
    }
}

/// Returns once `link` is operationally up. Gives up quietly after
/// [`CARRIER_WAIT`]: the bridge then comes up by itself a little later.
async fn wait_for_carrier(netlink: &Netlink, link: &str) {
    let deadline = Instant::now() + CARRIER_WAIT;
    while Instant::now() < deadline {
        match netlink.oper_up(link).await {
            Ok(Some(false)) => tokio::time::sleep(Duration::from_millis(10)).await,
            // Up, gone, or not to be asked: nothing to wait for.
            _ => return,
        }
    }
    warn!(
        link,
        "bridge is not up yet; the host may not reach new containers for a moment"
    );
}
