//! The engine: the single owner of netd's state. Every change goes through
//! it, one at a time (callers hold it behind a mutex), in three steps:
//! validate against the state, persist the new desired state, then make the
//! kernel match, rolling back on failure. On start it loads the store and
//! reconciles the kernel with it (`reconcile`), which finishes what a crash
//! interrupted and removes what no record owns.

mod kernel;
mod names;
mod ports;
mod reconcile;
mod services;
pub mod spec;
mod taken;
mod traffic;

pub use services::ServiceSpec;
pub use traffic::{EndpointTraffic, Traffic};

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::Ipv4Net;
use tracing::{info, warn};

use crate::dataplane::{self, Dataplane};
use crate::dns::{Dns, DnsConfig, DnsStats};
use crate::error::{EngineError, Result};
use crate::ipam;
use crate::model::{
    Container, Driver, Endpoint, NetMode, Network, Process, State, mac_for, valid_name,
};
use crate::netlink::{Netlink, netns};
use crate::sandbox;
use crate::store::Store;
use crate::uplink::Uplink;
use spec::{ContainerSpec, EndpointSpec, NetworkFilters, NetworkMode, NetworkSpec};
use taken::Taken;

/// How long `rm -f` waits for a container's process after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the engine needs to know about its surroundings.
pub struct EngineConfig {
    /// Prefix of every kernel object name (see `names`).
    pub prefix: String,
    /// Where container process logs go.
    pub log_dir: PathBuf,
    /// The way out; `None` on a host without one.
    pub uplink: Option<Uplink>,
    /// The embedded DNS server's settings.
    pub dns: DnsConfig,
}

pub struct Engine {
    cfg: EngineConfig,
    /// Shared with the DNS server, which answers from the last committed
    /// state; a change works on a copy (`State::clone(&self.state)`).
    state: Arc<State>,
    /// Follows every committed state, so names resolve the moment
    /// containers and services come and go.
    dns: Dns,
    /// Follows every committed state: what new objects must not reuse.
    taken: Taken,
    store: Box<dyn Store>,
    netlink: Netlink,
    dataplane: Dataplane,
}

impl Engine {
    /// Loads the saved state, adds the predefined networks on first start,
    /// and makes the kernel match the state.
    pub async fn start(
        cfg: EngineConfig,
        mut store: Box<dyn Store>,
        netlink: Netlink,
        dataplane: Dataplane,
    ) -> Result<Engine> {
        let state = store
            .load()
            .map_err(|e| EngineError::System(e.to_string()))?;
        std::fs::create_dir_all(&cfg.log_dir).map_err(|e| {
            EngineError::system(format!("cannot create {}", cfg.log_dir.display()), e)
        })?;
        let mut engine = Engine {
            dns: Dns::new(cfg.dns.clone()),
            cfg,
            taken: Taken::of(&state),
            state: Arc::new(state),
            store,
            netlink,
            dataplane,
        };
        engine.attach_host()?;
        engine.ensure_predefined()?;
        engine.reconcile().await;
        engine.sync_host_addresses();
        engine.dns.sync(&engine.state);
        Ok(engine)
    }

    /// The host-wide datapath: the uplink program (masquerade replies and
    /// published ports from outside) and the socket hooks (published ports
    /// from the host itself), attached once per daemon and re-adopted on
    /// restart.
    fn attach_host(&mut self) -> Result<()> {
        let context = "cannot set up the host datapath";
        let cookie = dataplane::host_netns_cookie().map_err(|e| EngineError::system(context, e))?;
        let uplink = self.cfg.uplink.as_ref().map(|u| (u.ifindex, u.addr));
        self.dataplane
            .set_host(uplink, cookie)
            .map_err(|e| EngineError::system(context, e))?;
        if let Some(u) = &self.cfg.uplink {
            self.dataplane
                .attach_uplink(&u.ifname, u.ifindex)
                .map_err(|e| EngineError::system(context, e))?;
        }
        let cgroup = dataplane::cgroup2_root().map_err(|e| EngineError::system(context, e))?;
        self.dataplane
            .attach_socket_hooks(&cgroup)
            .map_err(|e| EngineError::system(context, e))?;
        Ok(())
    }

    /// Tells the socket hooks which addresses are "this host" (published
    /// ports answer on all of them); called at start and whenever a network
    /// (and so a gateway address) comes or goes.
    fn sync_host_addresses(&mut self) {
        if let Err(e) = self
            .dataplane
            .set_host_addresses(&crate::uplink::host_addresses())
        {
            warn!(error = %e, "cannot update the host's addresses for published ports");
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    pub fn dns_stats(&self) -> DnsStats {
        self.dns.stats()
    }

    /// Stops serving DNS (daemon shutdown); the data plane stays.
    pub fn shutdown(&mut self) {
        self.dns.shutdown();
    }

    /// Networks matching the filters, in name order.
    pub fn networks(&self, f: &NetworkFilters) -> Vec<&Network> {
        let mut v: Vec<&Network> = self
            .state
            .networks
            .values()
            .filter(|n| matches_filters(n, f))
            .map(|n| &**n)
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn network(&self, key: &str) -> Result<&Network> {
        self.state
            .find_network(key)
            .ok_or_else(|| EngineError::network_not_found(key))
    }

    pub fn container(&self, key: &str) -> Result<&Container> {
        self.state
            .find_container(key)
            .ok_or_else(|| EngineError::container_not_found(key))
    }

    /// The pid of the container's process while it runs.
    pub fn running_pid(&self, c: &Container) -> Option<u32> {
        c.process
            .as_ref()
            .and_then(|p| p.pid)
            .filter(|pid| sandbox::alive(*pid))
    }

    /// Path of the network namespace a container's processes run in, `None`
    /// for `--network host`.
    pub fn sandbox_path(&self, c: &Container) -> Option<PathBuf> {
        match &c.net {
            NetMode::Own { netns: name } => Some(netns::path(name)),
            NetMode::Host => None,
            NetMode::Container { id } => self
                .state
                .containers
                .get(id)
                .and_then(|owner| self.sandbox_path(owner)),
        }
    }

    pub async fn create_network(&mut self, spec: NetworkSpec) -> Result<Network> {
        if !valid_name(&spec.name) {
            return Err(EngineError::InvalidParameter(format!(
                "invalid network name \"{}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                spec.name
            )));
        }
        if self.state.networks.values().any(|n| n.name == spec.name) {
            return Err(EngineError::Conflict(format!(
                "network with name {} already exists",
                spec.name
            )));
        }
        match spec.driver {
            Driver::Host | Driver::Null => {
                return Err(EngineError::Forbidden(format!(
                    "only one instance of \"{}\" network is allowed",
                    spec.driver.as_str()
                )));
            }
            d if !d.available() => {
                return Err(EngineError::InvalidParameter(format!(
                    "the {} driver is not available in this version of netd; use bridge",
                    d.as_str()
                )));
            }
            _ => {}
        }
        if spec.driver == Driver::Macvlan {
            self.check_macvlan_parent(&spec).await?;
        }
        let taken = self.subnets_in_use();
        let pool = match spec.subnet {
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
            index: self.free_network_index(),
        };
        let mut next = State::clone(&self.state);
        next.networks.insert(net.id.clone(), Arc::new(net.clone()));
        self.commit(next)?;
        if let Err(e) = self.apply_network(&net).await {
            let mut back = State::clone(&self.state);
            back.networks.remove(&net.id);
            self.commit(back)?;
            self.remove_network_kernel(&net).await;
            return Err(e);
        }
        self.sync_host_addresses();
        info!(network = %net.name, id = %net.id, "network created");
        Ok(net)
    }

    pub async fn remove_network(&mut self, key: &str) -> Result<()> {
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
        let mut next = State::clone(&self.state);
        next.networks.remove(&net.id);
        self.commit(next)?;
        self.remove_network_kernel(&net).await;
        self.sync_host_addresses();
        info!(network = %net.name, "network removed");
        Ok(())
    }

    /// Removes every unused custom network matching the filters; returns the
    /// names removed.
    pub async fn prune_networks(&mut self, f: &NetworkFilters) -> Result<Vec<String>> {
        let unused: Vec<String> = self
            .networks(f)
            .into_iter()
            .filter(|n| !n.predefined && self.state.endpoints_on(&n.id).next().is_none())
            .map(|n| n.id.clone())
            .collect();
        let mut removed = Vec::new();
        for id in unused {
            let name = self.state.networks[&id].name.clone();
            self.remove_network(&id).await?;
            removed.push(name);
        }
        Ok(removed)
    }

    pub async fn connect(
        &mut self,
        network: &str,
        container: &str,
        ep: EndpointSpec,
    ) -> Result<()> {
        let c = self.container(container)?.clone();
        let net = self.network(network)?.clone();
        let netns_name = match &c.net {
            NetMode::Own { netns } if c.network_mode != "none" => netns.clone(),
            NetMode::Own { .. } => {
                return Err(EngineError::Forbidden(
                    "container cannot be connected to multiple networks with one of the \
                     networks in private (none) mode"
                        .into(),
                ));
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
        let endpoint = self.new_endpoint(&c, &net, &ep)?;
        let default_route = c.endpoints.is_empty();
        let mut next = State::clone(&self.state);
        Arc::make_mut(next.containers.get_mut(&c.id).expect("container exists"))
            .endpoints
            .push(endpoint.clone());
        self.commit(next)?;
        if let Err(e) = self
            .apply_endpoint(&netns_name, &net, &endpoint, default_route)
            .await
        {
            let mut back = State::clone(&self.state);
            if let Some(c) = back.containers.get_mut(&c.id) {
                Arc::make_mut(c).endpoints.retain(|x| x.id != endpoint.id);
            }
            self.commit(back)?;
            self.remove_endpoint_kernel(Some(&netns_name), &endpoint)
                .await;
            return Err(e);
        }
        info!(container = %c.name, network = %net.name, ip = %endpoint.ip, "connected");
        Ok(())
    }

    pub async fn disconnect(&mut self, network: &str, container: &str, _force: bool) -> Result<()> {
        let c = self.container(container)?.clone();
        let net = self.network(network)?.clone();
        if matches!(c.net, NetMode::Host) || net.driver == Driver::Host {
            return Err(host_mode_error());
        }
        let Some(pos) = c.endpoints.iter().position(|e| e.network_id == net.id) else {
            return Err(EngineError::Forbidden(format!(
                "container {} is not connected to network {}",
                c.id, net.name
            )));
        };
        let endpoint = c.endpoints[pos].clone();
        let mut next = State::clone(&self.state);
        let stored = Arc::make_mut(next.containers.get_mut(&c.id).expect("container exists"));
        stored.endpoints.remove(pos);
        // The first endpoint carries the default route; when it goes, the
        // next one takes over, as Docker moves the gateway.
        let new_default = (pos == 0)
            .then(|| stored.endpoints.first().cloned())
            .flatten();
        self.commit(next)?;
        let netns = match &c.net {
            NetMode::Own { netns } => Some(netns.as_str()),
            _ => None,
        };
        self.remove_endpoint_kernel(netns, &endpoint).await;
        if let (Some(ep), NetMode::Own { netns }) = (new_default, &c.net)
            && let Err(e) = self
                .netlink
                .set_default_route(netns, &ep.ifname, ep.gateway)
                .await
        {
            warn!(container = %c.name, error = %e, "cannot move the default route");
        }
        info!(container = %c.name, network = %net.name, "disconnected");
        Ok(())
    }

    pub async fn create_container(&mut self, spec: ContainerSpec) -> Result<Container> {
        if !valid_name(&spec.name) {
            return Err(EngineError::InvalidParameter(format!(
                "Invalid container name ({}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                spec.name
            )));
        }
        if let Some(other) = self.state.containers.values().find(|c| c.name == spec.name) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{}\" is already in use by container \"{}\". \
                 You have to remove (or rename) that container to be able to reuse that name.",
                spec.name, other.id
            )));
        }
        if spec.cmd.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(EngineError::InvalidParameter("no command specified".into()));
        }
        let mut c = Container {
            id: random_id(),
            name: spec.name.clone(),
            created: now(),
            net: NetMode::Host,
            network_mode: String::new(),
            endpoints: Vec::new(),
            process: spec.cmd.clone().map(|cmd| Process { cmd, pid: None }),
            ports: Vec::new(),
            services: Vec::new(),
        };
        let own_netns = NetMode::Own {
            netns: names::netns(&self.cfg.prefix, &spec.name),
        };
        let static_settings = spec.endpoint.ip.is_some() || !spec.endpoint.aliases.is_empty();
        let network = match &spec.network {
            NetworkMode::Network(key) => {
                let net = self.network(key)?.clone();
                match net.driver {
                    Driver::Host => {
                        c.network_mode = "host".into();
                        None
                    }
                    Driver::Null => {
                        c.net = own_netns;
                        c.network_mode = "none".into();
                        None
                    }
                    _ => {
                        c.net = own_netns;
                        c.network_mode = net.name.clone();
                        Some(net)
                    }
                }
            }
            NetworkMode::None => {
                c.net = own_netns;
                c.network_mode = "none".into();
                None
            }
            NetworkMode::Host => {
                c.network_mode = "host".into();
                None
            }
            NetworkMode::Container(key) => {
                let owner = self.container(key)?;
                c.net = match &owner.net {
                    NetMode::Own { .. } => NetMode::Container {
                        id: owner.id.clone(),
                    },
                    shared => shared.clone(),
                };
                c.network_mode = format!("container:{}", owner.id);
                None
            }
        };
        if static_settings && network.is_none() {
            // The API refuses this for `none`/`host`/`container:` already;
            // here it catches a network that resolves to one of them.
            return Err(EngineError::InvalidParameter(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        if let Some(net) = &network {
            let ep = self.new_endpoint(&c, net, &spec.endpoint)?;
            c.endpoints.push(ep);
        }
        c.services = self.services_to_join(&c, &spec.services)?;
        if !spec.ports.is_empty() {
            if network.as_ref().is_none_or(|n| n.driver != Driver::Bridge) {
                return Err(EngineError::InvalidParameter(format!(
                    "published ports need a bridge network; the container's network mode is {}",
                    c.network_mode
                )));
            }
            c.ports = ports::resolve(&spec.ports, &self.state, &ports::HostListeners::read())?;
        }
        let mut next = State::clone(&self.state);
        next.containers.insert(c.id.clone(), Arc::new(c.clone()));
        self.commit(next)?;
        if let Err(e) = self.apply_container(&c).await {
            self.rollback_container(&c).await?;
            return Err(e);
        }
        if let Some(cmd) = spec.cmd {
            let log = self.log_path(&c);
            let pid = match sandbox::spawn(self.sandbox_path(&c).as_deref(), &cmd, &log) {
                Ok(pid) => pid,
                Err(e) => {
                    self.rollback_container(&c).await?;
                    return Err(EngineError::InvalidParameter(format!(
                        "failed to start {:?} in container {}: {e}",
                        cmd[0], c.name
                    )));
                }
            };
            let mut next = State::clone(&self.state);
            let stored = Arc::make_mut(next.containers.get_mut(&c.id).expect("container exists"));
            stored.process = Some(Process {
                cmd,
                pid: Some(pid),
            });
            c = stored.clone();
            self.commit(next)?;
        }
        for svc in &c.services {
            self.sync_service(svc).await?;
        }
        info!(container = %c.name, id = %c.id, mode = %c.network_mode, "container created");
        Ok(c)
    }

    pub async fn remove_container(&mut self, key: &str, force: bool) -> Result<()> {
        let c = self.container(key)?.clone();
        if let Some(user) = self
            .state
            .containers
            .values()
            .find(|o| o.net == (NetMode::Container { id: c.id.clone() }))
        {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"/{}\": its network namespace is used by container \
                 \"/{}\"; remove that container first",
                c.name, user.name
            )));
        }
        let pid = self.running_pid(&c);
        if pid.is_some() && !force {
            return Err(EngineError::Conflict(format!(
                "cannot remove container \"/{}\": container is running: stop the container \
                 before removing or force remove",
                c.name
            )));
        }
        let mut next = State::clone(&self.state);
        next.containers.remove(&c.id);
        self.commit(next)?;
        if let Some(pid) = pid {
            tokio::task::spawn_blocking(move || sandbox::stop(pid, STOP_GRACE))
                .await
                .map_err(|e| EngineError::system("stopping the container process", e))?;
        }
        for svc in &c.services {
            // Out of the rotation before the flows to it are forgotten below.
            if let Err(e) = self.sync_service(svc).await {
                warn!(container = %c.name, error = %e, "cannot update its service");
            }
        }
        self.remove_container_kernel(&c).await;
        let _ = std::fs::remove_file(self.log_path(&c));
        info!(container = %c.name, "container removed");
        Ok(())
    }

    /// Where a container's process output goes.
    pub fn log_path(&self, c: &Container) -> PathBuf {
        self.cfg.log_dir.join(format!("{}.log", c.id))
    }

    async fn rollback_container(&mut self, c: &Container) -> Result<()> {
        let mut back = State::clone(&self.state);
        back.containers.remove(&c.id);
        self.commit(back)?;
        self.remove_container_kernel(c).await;
        Ok(())
    }

    /// Persists `next` and makes it the current state. Nothing is changed
    /// when the store refuses.
    fn commit(&mut self, next: State) -> Result<()> {
        self.store
            .save(&self.state, &next)
            .map_err(|e| EngineError::System(e.to_string()))?;
        self.taken.update(&self.state, &next);
        self.state = Arc::new(next);
        self.dns.sync(&self.state);
        Ok(())
    }

    /// Adds `bridge`, `host` and `none` the first time the daemon starts.
    fn ensure_predefined(&mut self) -> Result<()> {
        let mut next = State::clone(&self.state);
        for (name, driver) in [
            ("bridge", Driver::Bridge),
            ("host", Driver::Host),
            ("none", Driver::Null),
        ] {
            if next
                .networks
                .values()
                .any(|n| n.predefined && n.name == name)
            {
                continue;
            }
            let ipam = match driver {
                Driver::Bridge => {
                    let default: Ipv4Net = ipam::DEFAULT_BRIDGE_SUBNET.parse().expect("valid");
                    let routes = ipam::host_routes();
                    // Like docker0: the usual pool unless the host already
                    // routes it, then the next free default.
                    let subnet = if routes.iter().any(|r| r.contains(&default.network())) {
                        ipam::pick_subnet(&subnets_of(&next), &routes)?
                    } else {
                        default
                    };
                    Some(ipam::auto_subnet(subnet))
                }
                _ => None,
            };
            let mut options = BTreeMap::new();
            if driver == Driver::Bridge {
                options.insert(
                    "com.docker.network.bridge.default_bridge".to_string(),
                    "true".to_string(),
                );
            }
            let index = free_index(&next);
            let id = random_id();
            next.networks.insert(
                id.clone(),
                Arc::new(Network {
                    id,
                    name: name.into(),
                    driver,
                    created: now(),
                    internal: false,
                    attachable: false,
                    ipam,
                    options,
                    labels: BTreeMap::new(),
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

    /// A macvlan network needs an existing parent interface that no other
    /// macvlan network uses and that is not one of netd's own links.
    async fn check_macvlan_parent(&self, spec: &NetworkSpec) -> Result<()> {
        let Some(parent) = spec.options.get(kernel::PARENT_OPTION) else {
            return Err(EngineError::InvalidParameter(
                "macvlan networks need a parent interface: -o parent=IFACE".into(),
            ));
        };
        let exists = self
            .netlink
            .link_index(parent)
            .await
            .map_err(|e| EngineError::system(format!("cannot look up {parent}"), e))?
            .is_some();
        if !exists || names::is_own_link(&self.cfg.prefix, parent) {
            return Err(EngineError::InvalidParameter(format!(
                "-o parent interface was not found on the host: {parent}"
            )));
        }
        if let Some(other) = self.state.networks.values().find(|n| {
            n.driver == Driver::Macvlan && n.options.get(kernel::PARENT_OPTION) == Some(parent)
        }) {
            return Err(EngineError::Forbidden(format!(
                "network {} is already using parent interface {parent}",
                other.name
            )));
        }
        Ok(())
    }

    fn subnets_in_use(&self) -> Vec<Ipv4Net> {
        subnets_of(&self.state)
    }

    fn free_network_index(&self) -> u32 {
        free_index(&self.state)
    }

    /// A new endpoint for `c` on `net`: the next free ethN, an address from
    /// the pool (or the requested one), and names derived from its id.
    fn new_endpoint(&self, c: &Container, net: &Network, spec: &EndpointSpec) -> Result<Endpoint> {
        let pool = net.ipam.as_ref().ok_or_else(|| {
            EngineError::InvalidParameter(format!("network {} has no address pool", net.name))
        })?;
        let used = self.taken.address_used(&net.id);
        let ip = match spec.ip {
            Some(ip) => ipam::reserve(pool, ip, used)?,
            None => ipam::allocate(pool, used, &net.name)?,
        };
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !c.endpoints.iter().any(|e| &e.ifname == n))
            .expect("an unused ethN exists");
        let id = random_id();
        Ok(Endpoint {
            host_ifname: names::host_veth(&self.cfg.prefix, &id),
            id,
            network_id: net.id.clone(),
            ifname,
            mac: mac_for(ip),
            ip,
            prefix_len: pool.subnet.prefix_len(),
            gateway: pool.gateway,
            aliases: spec.aliases.clone(),
            static_ip: spec.ip.is_some(),
        })
    }
}

fn host_mode_error() -> EngineError {
    EngineError::Forbidden(
        "container cannot be disconnected from host network or connected to host network".into(),
    )
}

fn subnets_of(state: &State) -> Vec<Ipv4Net> {
    state
        .networks
        .values()
        .filter_map(|n| n.ipam.as_ref().map(|p| p.subnet))
        .collect()
}

/// The lowest network index not in use (0 is reserved for "no network" in
/// datapath maps).
fn free_index(state: &State) -> u32 {
    let used: HashSet<u32> = state.networks.values().map(|n| n.index).collect();
    (1..)
        .find(|i| !used.contains(i))
        .expect("a free index exists")
}

fn matches_filters(n: &Network, f: &NetworkFilters) -> bool {
    let any = |values: &[String], pred: &dyn Fn(&str) -> bool| {
        values.is_empty() || values.iter().any(|v| pred(v))
    };
    any(&f.name, &|v| n.name.contains(v))
        && any(&f.id, &|v| n.id.starts_with(v))
        && any(&f.driver, &|v| n.driver.as_str() == v)
        && any(&f.kind, &|v| match v {
            "custom" => !n.predefined,
            "builtin" => n.predefined,
            _ => false,
        })
        && f.label.iter().all(|l| match l.split_once('=') {
            Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
            None => n.labels.contains_key(l.as_str()),
        })
}

/// A 64-hex-character id from the kernel's random source, like Docker's.
fn random_id() -> String {
    let mut buf = [0u8; 32];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    assert_eq!(n, buf.len() as isize, "getrandom failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, labels: &[(&str, &str)], predefined: bool) -> Network {
        Network {
            id: format!("{name}0000"),
            name: name.into(),
            driver: Driver::Bridge,
            created: String::new(),
            internal: false,
            attachable: false,
            ipam: None,
            options: BTreeMap::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            predefined,
            index: 1,
        }
    }

    #[test]
    fn filters_combine_like_dockers() {
        let n = net("frontend", &[("env", "prod")], false);
        let f = |name: &[&str], label: &[&str], kind: &[&str]| NetworkFilters {
            name: name.iter().map(|s| s.to_string()).collect(),
            label: label.iter().map(|s| s.to_string()).collect(),
            kind: kind.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(matches_filters(&n, &f(&[], &[], &[])));
        assert!(matches_filters(&n, &f(&["front"], &[], &[])));
        assert!(
            matches_filters(&n, &f(&["x", "end"], &[], &[])),
            "any name matches"
        );
        assert!(!matches_filters(&n, &f(&["back"], &[], &[])));
        assert!(matches_filters(&n, &f(&[], &["env"], &[])));
        assert!(matches_filters(&n, &f(&[], &["env=prod"], &[])));
        assert!(!matches_filters(&n, &f(&[], &["env=dev"], &[])));
        assert!(
            !matches_filters(&n, &f(&[], &["env", "tier"], &[])),
            "all labels must match"
        );
        assert!(matches_filters(&n, &f(&[], &[], &["custom"])));
        assert!(!matches_filters(&n, &f(&[], &[], &["builtin"])));
    }

    #[test]
    fn ids_are_random_hex() {
        let (a, b) = (random_id(), random_id());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn indexes_fill_gaps() {
        let mut s = State::default();
        for (i, name) in [(1, "a"), (3, "b")] {
            let mut n = net(name, &[], false);
            n.index = i;
            s.networks.insert(n.id.clone(), Arc::new(n));
        }
        assert_eq!(free_index(&s), 2);
    }
}
