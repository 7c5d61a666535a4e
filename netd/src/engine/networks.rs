//! Networks: create, remove, prune, and connecting and disconnecting a
//! container's endpoints. What a network is in the kernel is its driver's
//! business (`crate::drivers`); here are Docker's rules and the records.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::{info, warn};

use super::command::Done;
use super::snapshot::sandbox_of;
use super::spec::{EndpointSpec, NetworkFilters, NetworkSpec};
use super::{Engine, now, random_id};
use crate::drivers::{Attachment, Leaving};
use crate::error::{EngineError, Result};
use crate::ipam;
use crate::model::{
    Container, Endpoint, NameOf, NetMode, Network, State, check_name, format_mac, mac_for,
};
use crate::names;
use crate::netlink::check_ifname;

impl Engine {
    pub(super) fn network(&self, key: &str) -> Result<&Network> {
        self.state
            .find_network(key)
            .ok_or_else(|| EngineError::network_not_found(key))
    }

    pub(super) fn container(&self, key: &str) -> Result<&Container> {
        self.state
            .find_container(key)
            .ok_or_else(|| EngineError::container_not_found(key))
    }

    pub(super) async fn create_network(&mut self, spec: NetworkSpec) -> Result<Network> {
        check_name(NameOf::Network, &spec.name).map_err(EngineError::InvalidParameter)?;
        if self.state.networks.values().any(|n| n.name == spec.name) {
            return Err(EngineError::Conflict(format!(
                "network with name {} already exists",
                spec.name
            )));
        }
        let drivers = self.drivers.clone();
        let driver = drivers.get(&spec.driver).ok_or_else(|| {
            EngineError::NotFound(format!("plugin \"{}\" not found", spec.driver))
        })?;
        if !driver.user_creatable() {
            return Err(EngineError::Forbidden(format!(
                "only one instance of \"{}\" network is allowed",
                spec.driver
            )));
        }
        let state = self.state.clone();
        driver.validate(&self.kernel(), &spec, &state).await?;
        if driver.cluster_scoped() {
            let net = self.create_cluster_network(&spec).await?;
            info!(network = %net.name, id = %net.id, driver = %net.driver, "cluster network created");
            return Ok(net);
        }
        let taken = self.state.subnets();
        let pool = match spec.subnet {
            Some(subnet)
                if ipam::is_pool_request(subnet)
                    && spec.gateway.is_none()
                    && spec.ip_range.is_none() =>
            {
                ipam::auto_subnet(ipam::pick_subnet_of_size(
                    subnet.prefix_len(),
                    &taken,
                    &ipam::host_routes(),
                )?)
            }
            Some(subnet) => ipam::user_subnet(subnet, spec.gateway, spec.ip_range, &taken)?,
            None if spec.gateway.is_some() || spec.ip_range.is_some() => {
                return Err(EngineError::InvalidParameter(
                    "--gateway and --ip-range need --subnet".into(),
                ));
            }
            None => ipam::auto_subnet(ipam::pick_subnet(&taken, &ipam::host_routes())?),
        };
        let net = Network {
            id: random_id(),
            name: spec.name,
            driver: spec.driver,
            created: now(),
            internal: spec.internal,
            attachable: spec.attachable,
            ipam: Some(pool),
            options: spec.options,
            labels: spec.labels,
            predefined: false,
            index: free_index(&self.state),
        };
        let mut next = State::clone(&self.state);
        next.networks.insert(net.id.clone(), Arc::new(net.clone()));
        self.commit(next)?;
        if let Err(e) = driver.setup(&mut self.kernel(), &net).await {
            let mut back = State::clone(&self.state);
            back.networks.remove(&net.id);
            self.commit(back)?;
            driver.teardown(&mut self.kernel(), &net).await;
            return Err(e);
        }
        self.sync_host_addresses();
        info!(network = %net.name, id = %net.id, driver = %net.driver, "network created");
        Ok(net)
    }

    pub(super) async fn remove_network(&mut self, key: &str) -> Result<()> {
        let net = self.network(key)?.clone();
        if net.predefined {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            )));
        }
        if let Some(svc) = self
            .state
            .services
            .values()
            .find(|s| s.network_id == net.id)
        {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} is used by service {}",
                net.name, svc.name
            )));
        }
        if self.state.endpoints_on(&net.id).next().is_some() {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} has active endpoints",
                net.name
            )));
        }
        if self.cluster_scoped(&net) {
            // Refused there while any host has endpoints on it.
            self.remove_cluster_network(&net).await?;
            info!(network = %net.name, "cluster network removed");
            return Ok(());
        }
        let drivers = self.drivers.clone();
        let driver = drivers.of(&net)?;
        let mut next = State::clone(&self.state);
        next.networks.remove(&net.id);
        self.commit(next)?;
        driver.teardown(&mut self.kernel(), &net).await;
        self.sync_host_addresses();
        info!(network = %net.name, "network removed");
        Ok(())
    }

    /// Removes every unused custom network matching the filters; returns the
    /// names removed.
    pub(super) async fn prune_networks(&mut self, f: &NetworkFilters) -> Result<Vec<String>> {
        let unused: Vec<(String, String)> = self
            .view()
            .networks(f)
            .into_iter()
            .filter(|n| !n.predefined && self.state.endpoints_on(&n.id).next().is_none())
            .filter(|n| !self.state.services.values().any(|s| s.network_id == n.id))
            .map(|n| (n.id.clone(), n.name.clone()))
            .collect();
        let mut removed = Vec::new();
        for (id, name) in unused {
            self.remove_network(&id).await?;
            removed.push(name);
        }
        Ok(removed)
    }

    pub(super) async fn connect(
        &mut self,
        network: &str,
        container: &str,
        spec: EndpointSpec,
    ) -> Result<Done<()>> {
        let c = self.container(container)?.clone();
        let net = self.network(network)?.clone();
        check_not_removing(&c)?;
        let drivers = self.drivers.clone();
        let driver = drivers.of(&net)?;
        match driver.attachment() {
            Attachment::Interface => {}
            Attachment::HostNamespace => return Err(host_mode_error()),
            Attachment::Loopback => return Err(none_mode_error()),
        }
        let ns = match &c.net {
            NetMode::Own { .. } if c.network_mode == "none" => return Err(none_mode_error()),
            NetMode::Own { .. } | NetMode::Path { .. } => {
                sandbox_of(&self.state, &c).expect("own namespace")
            }
            NetMode::Host => return Err(host_mode_error()),
            NetMode::Container { .. } => {
                return Err(EngineError::Forbidden(
                    "container sharing network namespace with another container or host \
                     cannot be connected to any other network"
                        .into(),
                ));
            }
        };
        if c.endpoints.iter().any(|e| e.network_id == net.id) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.name, net.name
            )));
        }
        let endpoint = self.new_endpoint(&c, &net, &spec, &c.services).await?;
        let default_route = c.endpoints.is_empty();
        let mut next = State::clone(&self.state);
        Arc::make_mut(next.containers.get_mut(&c.id).expect("container exists"))
            .endpoints
            .push(endpoint.clone());
        self.commit(next)?;
        let carrier = match self.attach(&net, &endpoint, &ns, default_route).await {
            Ok(carrier) => carrier,
            Err(e) => {
                let mut back = State::clone(&self.state);
                if let Some(c) = back.containers.get_mut(&c.id) {
                    Arc::make_mut(c).endpoints.retain(|x| x.id != endpoint.id);
                }
                self.commit(back)?;
                self.detach(&net, &endpoint, Leaving::Stays(&ns)).await;
                self.withdraw(&net, &endpoint).await;
                return Err(e);
            }
        };
        info!(container = %c.name, network = %net.name, ip = %endpoint.ip, "connected");
        Ok(self.after_carriers(carrier.into_iter().collect(), ()))
    }

    pub(super) async fn disconnect(
        &mut self,
        network: &str,
        container: &str,
        _force: bool,
    ) -> Result<()> {
        let c = self.container(container)?.clone();
        let net = self.network(network)?.clone();
        check_not_removing(&c)?;
        let drivers = self.drivers.clone();
        if matches!(c.net, NetMode::Host)
            || drivers.of(&net)?.attachment() == Attachment::HostNamespace
        {
            return Err(host_mode_error());
        }
        let Some(pos) = c.endpoints.iter().position(|e| e.network_id == net.id) else {
            return Err(EngineError::Forbidden(format!(
                "container {} is not connected to network {}",
                c.id, net.name
            )));
        };
        let endpoint = c.endpoints[pos].clone();
        if self.cluster_scoped(&net) {
            // Out of the cluster first: with the store out of reach, the
            // disconnect fails and changes nothing.
            self.member()?
                .remove_endpoint(&net.id, &endpoint.id)
                .await?;
        }
        let mut next = State::clone(&self.state);
        let stored = Arc::make_mut(next.containers.get_mut(&c.id).expect("container exists"));
        stored.endpoints.remove(pos);
        // The first endpoint carries the default route; when it goes, the
        // next one takes over, as Docker moves the gateway.
        let new_default = (pos == 0)
            .then(|| stored.endpoints.first().cloned())
            .flatten();
        self.commit(next)?;
        let ns = sandbox_of(&self.state, &c);
        let leaving = ns.as_ref().map_or(Leaving::Gone, Leaving::Stays);
        self.detach(&net, &endpoint, leaving).await;
        if let (Some(ep), Some(ns)) = (new_default, &ns)
            && let Err(e) = self
                .netlink
                .set_default_route(ns, &ep.ifname, ep.gateway)
                .await
        {
            warn!(container = %c.name, error = %e, "cannot move the default route");
        }
        info!(container = %c.name, network = %net.name, "disconnected");
        Ok(())
    }

    /// Adds each driver's predefined network (`bridge`, `host`, `none`)
    /// the first time the daemon starts.
    pub(super) fn ensure_predefined(&mut self) -> Result<()> {
        let mut next = State::clone(&self.state);
        for driver in self.drivers.all() {
            let Some(pre) = driver.predefined() else {
                continue;
            };
            if next
                .networks
                .values()
                .any(|n| n.predefined && n.name == pre.name)
            {
                continue;
            }
            let ipam = match pre.subnet {
                Some(default) => {
                    let routes = ipam::host_routes();
                    // Like docker0: the usual pool unless the host already
                    // routes it, then the next free default.
                    let subnet = if routes.iter().any(|r| r.contains(&default.network())) {
                        ipam::pick_subnet(&next.subnets(), &routes)?
                    } else {
                        default
                    };
                    Some(ipam::auto_subnet(subnet))
                }
                None => None,
            };
            let index = free_index(&next);
            let id = random_id();
            next.networks.insert(
                id.clone(),
                Arc::new(Network {
                    id,
                    name: pre.name.into(),
                    driver: driver.name().into(),
                    created: now(),
                    internal: false,
                    attachable: false,
                    ipam,
                    options: pre.options,
                    labels: Default::default(),
                    predefined: true,
                    index,
                }),
            );
        }
        if next != *self.state {
            self.commit(next)?;
        }
        Ok(())
    }

    /// A new endpoint for `c` on `net`: the next free ethN, an address from
    /// the pool (or the requested one), and names derived from its id. On
    /// a cluster network the cluster store allocates the address and claims
    /// the name (and announces the endpoint, as a replica of `services`);
    /// a caller that fails later withdraws it ([`Engine::withdraw`]).
    pub(super) async fn new_endpoint(
        &mut self,
        c: &Container,
        net: &Network,
        spec: &EndpointSpec,
        services: &[String],
    ) -> Result<Endpoint> {
        spec.check().map_err(EngineError::InvalidParameter)?;
        let pool = net.ipam.clone().ok_or_else(|| {
            EngineError::InvalidParameter(format!("network {} has no address pool", net.name))
        })?;
        let ifname = match &spec.ifname {
            Some(name) => {
                check_ifname(name).map_err(|e| EngineError::InvalidParameter(e.to_string()))?;
                if c.endpoints.iter().any(|e| &e.ifname == name) {
                    return Err(EngineError::Conflict(format!(
                        "container {} already has an interface named {name}",
                        c.name
                    )));
                }
                name.clone()
            }
            None => (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !c.endpoints.iter().any(|e| &e.ifname == n))
                .expect("an unused ethN exists"),
        };
        if let Some(mac) = spec.mac {
            self.check_static_mac(net, mac)?;
        }
        let id = random_id();
        let ip = if self.cluster_scoped(net) {
            self.announce_endpoint(c, net, &id, spec, services)
                .await?
                .ip
        } else {
            let used = self.taken.address_used(&net.id);
            match spec.ip {
                Some(ip) => ipam::reserve(&pool, ip, used)?,
                None => ipam::allocate(&pool, used, &net.name)?,
            }
        };
        Ok(Endpoint {
            host_ifname: names::host_veth(&self.cfg.prefix, &id),
            id,
            network_id: net.id.clone(),
            ifname,
            mac: spec.mac.unwrap_or_else(|| mac_for(ip)),
            ip,
            prefix_len: pool.subnet.prefix_len(),
            gateway: pool.gateway,
            aliases: spec.aliases.clone(),
            static_ip: spec.ip.is_some(),
        })
    }

    /// Refuses a MAC the caller chose that would not be unique on `net`:
    /// not a unicast address, in the range netd derives from addresses
    /// (`02:42:` + IPv4, so that it could collide with a later container's
    /// derived one), or another endpoint's on the network. Cluster networks
    /// take none: other hosts derive a remote container's MAC from its
    /// address.
    fn check_static_mac(&self, net: &Network, mac: [u8; 6]) -> Result<()> {
        let shown = format_mac(&mac);
        if self.cluster_scoped(net) {
            return Err(EngineError::InvalidParameter(format!(
                "a MAC address cannot be chosen on {} network {}",
                net.driver, net.name
            )));
        }
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return Err(EngineError::InvalidParameter(format!(
                "invalid MAC address {shown}: not a unicast address"
            )));
        }
        if mac[..2] == mac_for(std::net::Ipv4Addr::UNSPECIFIED)[..2] {
            return Err(EngineError::InvalidParameter(format!(
                "invalid MAC address {shown}: {:02x}:{:02x}:... are the MACs netd derives from \
                 container addresses",
                mac[0], mac[1]
            )));
        }
        if let Some((other, _)) = self.state.endpoints_on(&net.id).find(|(_, e)| e.mac == mac) {
            return Err(EngineError::Conflict(format!(
                "MAC address {shown} is already in use on network {} by container {}",
                net.name, other.name
            )));
        }
        Ok(())
    }

    /// Withdraws `ep` from the cluster store when `net` is a cluster
    /// network (a create that failed after [`Engine::new_endpoint`]);
    /// logged, as rollbacks go on past errors.
    pub(super) async fn withdraw(&mut self, net: &Network, ep: &Endpoint) {
        if !self.cluster_scoped(net) {
            return;
        }
        let result = match self.member() {
            Ok(member) => member
                .remove_endpoint(&net.id, &ep.id)
                .await
                .map_err(EngineError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            warn!(endpoint = %ep.id, error = %e, "cannot withdraw the endpoint from the cluster");
        }
    }
}

/// Docker's refusal to change a container whose removal has begun.
pub(super) fn check_not_removing(c: &Container) -> Result<()> {
    if c.removing {
        return Err(EngineError::Conflict(format!(
            "container {} is marked for removal and cannot be connected or disconnected to the \
             network",
            c.name
        )));
    }
    Ok(())
}

fn host_mode_error() -> EngineError {
    EngineError::Forbidden(
        "container cannot be disconnected from host network or connected to host network".into(),
    )
}

fn none_mode_error() -> EngineError {
    EngineError::Forbidden(
        "container cannot be connected to multiple networks with one of the networks in private \
         (none) mode"
            .into(),
    )
}

/// The lowest network index not in use (0 is reserved for "no network" in
/// datapath maps).
pub(super) fn free_index(state: &State) -> u32 {
    let used: HashSet<u32> = state.networks.values().map(|n| n.index).collect();
    (1..)
        .find(|i| !used.contains(i))
        .expect("a free index exists")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn indexes_fill_gaps() {
        let mut s = State::default();
        for (i, name) in [(1, "a"), (3, "b")] {
            let n = Network {
                id: format!("{name}0000"),
                name: name.into(),
                driver: "bridge".into(),
                created: String::new(),
                internal: false,
                attachable: false,
                ipam: None,
                options: BTreeMap::new(),
                labels: BTreeMap::new(),
                predefined: false,
                index: i,
            };
            s.networks.insert(n.id.clone(), Arc::new(n));
        }
        assert_eq!(free_index(&s), 2);
    }
}
