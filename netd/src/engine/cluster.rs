//! The engine's side of the cluster: networks of cluster scope (overlay),
//! the endpoints and services on them, and the other hosts, shared through
//! the cluster store (`crate::cluster`).
//!
//! # Who owns what
//! The cluster store owns overlay networks, services on them, and every
//! host's endpoints on them (bound to that host's lease). This host keeps a
//! mirror of all of it ([`ClusterLink::mirror`]) and derives its own state
//! from the mirror in one place, [`Engine::sync_cluster`]: the overlay
//! networks (with this host's network index), the other hosts' endpoints
//! (`State::peers`) and hosts (`State::hosts`), and the services. Both the
//! changes this host makes and those the watch brings go through it, so a
//! host's view is the same whichever host made a change.
//!
//! A change this host asks for (an overlay network, an endpoint, a service)
//! is made in the cluster store first, in a transaction that checks
//! uniqueness cluster-wide, and applied here only once the store took it.
//! With the store out of reach such calls fail fast (its call timeout) with
//! a clear message and change nothing; the data plane goes on forwarding
//! with what it has, and the mirror catches up from the watch when the
//! store is back.
//!
//! # The agent
//! [`run_agent`] runs beside the engine: it joins the cluster (retrying
//! while the store is out of reach), loads the whole state, then follows
//! the watch, and sends each outcome to the engine as a
//! [`Command::Cluster`]. A compaction of the store's history reloads.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use imbl::ordmap::DiffItem;
use tracing::{info, warn};

use super::Engine;
use super::handle::EngineHandle;
use crate::cluster::{
    Cluster, ClusterState, EndpointRecord, EndpointRequest, Event, HostSpec, LeaseState, Member,
    NetworkRecord, Record, RecordId, ServiceRecord, ServiceRequest, WatchItem,
};
use crate::dataplane::RemoteEndpoint;
use crate::error::{EngineError, Result};
use crate::model::{Container, Endpoint, Host, Network, Peer, Service, State, mac_for};

/// Docker's option that shows an overlay network's VNI in `inspect`; netd
/// keeps the VNI there too.
pub const VNI_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// Pause between attempts to join or load while the store is out of reach.
const RETRY: Duration = Duration::from_secs(1);

/// What the cluster agent tells the engine.
pub enum ClusterUpdate {
    /// This host is a member (its lease is granted).
    Joined(Box<Member>),
    /// The whole state, at a revision: after joining, and after a
    /// compaction of the store's history.
    Loaded(ClusterState),
    /// The changes of one revision.
    Changes { revision: i64, events: Vec<Event> },
    /// The store went out of reach, or came back.
    Connected(bool),
    /// The lease was replaced (the old one expired): every endpoint of
    /// this host must be announced again.
    LeaseReplaced,
}

/// The engine's link to the cluster.
pub(super) struct ClusterLink {
    pub(super) client: Cluster,
    pub(super) host: HostSpec,
    /// Set once the agent has joined.
    member: Option<Member>,
    /// The store's state as last loaded and watched.
    mirror: ClusterState,
    /// Whether the store answers (as the watch last said).
    connected: bool,
}

impl ClusterLink {
    pub(super) fn new(client: Cluster, host: HostSpec) -> ClusterLink {
        ClusterLink {
            client,
            host,
            member: None,
            mirror: ClusterState::default(),
            connected: false,
        }
    }

    /// What `netd info` and the metrics report.
    pub(super) fn status(&self) -> ClusterStatus {
        ClusterStatus {
            host: self.host.id.clone(),
            addr: self.host.addr,
            joined: self.member.is_some(),
            connected: self.connected,
            revision: self.mirror.revision,
            lease: self.member.as_ref().map(|m| m.lease().borrow().clone()),
        }
    }
}

/// The cluster as this host sees it, for readers.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterStatus {
    pub host: String,
    pub addr: Ipv4Addr,
    pub joined: bool,
    pub connected: bool,
    /// The store revision the mirror is at.
    pub revision: i64,
    pub lease: Option<crate::cluster::LeaseStatus>,
}

/// Docker's answer to a cluster-scoped request on a host that is not in a
/// cluster.
fn not_in_cluster() -> EngineError {
    EngineError::Forbidden(
        "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to \
         connect this node to swarm and try again. (netd: start the daemon with \
         --cluster-store etcd://HOST:PORT)"
            .into(),
    )
}

fn not_joined() -> EngineError {
    EngineError::System(
        "this host has not joined the cluster yet: the cluster store is out of reach; try again \
         when it is back"
            .into(),
    )
}

impl Engine {
    fn link(&self) -> Result<&ClusterLink> {
        self.cluster.as_ref().ok_or_else(not_in_cluster)
    }

    pub(super) fn member(&self) -> Result<&Member> {
        self.link()?.member.as_ref().ok_or_else(not_joined)
    }

    /// Whether `net` is one of the cluster's networks.
    pub(super) fn cluster_scoped(&self, net: &Network) -> bool {
        self.drivers
            .get(&net.driver)
            .is_some_and(|d| d.cluster_scoped())
    }

    /// Creates an overlay network in the cluster store (name, subnet and
    /// VNI allocated there), then here.
    pub(super) async fn create_cluster_network(
        &mut self,
        spec: &crate::engine::spec::NetworkSpec,
    ) -> Result<Network> {
        let id = super::random_id();
        let record = self.link()?.client.create_network(&id, spec).await?;
        self.apply_cluster(vec![Event::Put(Record::Network(record))])
            .await?;
        Ok(self.network(&id)?.clone())
    }

    /// Removes an overlay network from the cluster store (refused there
    /// while any host has endpoints on it), then here.
    pub(super) async fn remove_cluster_network(&mut self, net: &Network) -> Result<()> {
        self.link()?.client.remove_network(&net.id).await?;
        self.apply_cluster(vec![Event::Delete(RecordId::Network(net.id.clone()))])
            .await
    }

    /// Allocates the address of `c`'s endpoint `id` on the cluster network
    /// `net` in the cluster store, claiming its name there.
    pub(super) async fn announce_endpoint(
        &mut self,
        c: &Container,
        net: &Network,
        id: &str,
        spec: &crate::engine::spec::EndpointSpec,
        services: &[String],
    ) -> Result<EndpointRecord> {
        let services: Vec<String> = services
            .iter()
            .filter(|s| {
                self.state
                    .services
                    .get(*s)
                    .is_some_and(|svc| svc.network_id == net.id)
            })
            .cloned()
            .collect();
        Ok(self
            .member()?
            .create_endpoint(&EndpointRequest {
                id: id.to_string(),
                network_id: net.id.clone(),
                container_id: c.id.clone(),
                container_name: c.name.clone(),
                ip: spec.ip,
                aliases: spec.aliases.clone(),
                services,
            })
            .await?)
    }

    /// Withdraws the cluster endpoints of `c` from the store.
    pub(super) async fn withdraw_endpoints(&mut self, c: &Container) -> Result<()> {
        for ep in &c.endpoints {
            let cluster_ep = self
                .state
                .networks
                .get(&ep.network_id)
                .is_some_and(|n| self.cluster_scoped(n));
            if cluster_ep {
                self.member()?
                    .remove_endpoint(&ep.network_id, &ep.id)
                    .await?;
            }
        }
        Ok(())
    }

    /// Creates a service on a cluster network in the store (name, VIP and
    /// published ports claimed there), then here.
    pub(super) async fn create_cluster_service(&mut self, req: ServiceRequest) -> Result<Service> {
        let record = self.link()?.client.create_service(&req).await?;
        let id = record.id.clone();
        self.apply_cluster(vec![Event::Put(Record::Service(record))])
            .await?;
        self.state
            .services
            .get(&id)
            .map(|s| (**s).clone())
            .ok_or_else(|| EngineError::service_not_found(&id))
    }

    pub(super) async fn remove_cluster_service(&mut self, id: &str) -> Result<()> {
        self.link()?.client.remove_service(id).await?;
        self.apply_cluster(vec![Event::Delete(RecordId::Service(id.to_string()))])
            .await
    }

    /// Applies what the agent reports.
    pub(super) async fn cluster_update(&mut self, update: ClusterUpdate) {
        let Some(link) = self.cluster.as_mut() else {
            return;
        };
        match update {
            ClusterUpdate::Joined(member) => {
                info!(host = %link.host.id, addr = %link.host.addr, "joined the cluster");
                link.member = Some(*member);
                link.connected = true;
                self.announce_all().await;
            }
            ClusterUpdate::Loaded(state) => {
                link.mirror = state;
                link.connected = true;
                if let Err(e) = self.sync_cluster().await {
                    warn!(error = %e, "cannot apply the cluster's state");
                }
            }
            ClusterUpdate::Changes { revision, events } => {
                link.mirror.apply(revision, &events);
                if let Err(e) = self.sync_cluster().await {
                    warn!(error = %e, "cannot apply the cluster's changes");
                }
            }
            ClusterUpdate::Connected(up) => {
                if up {
                    info!("the cluster store is back");
                } else {
                    warn!(
                        "the cluster store is out of reach; forwarding goes on with what is known"
                    );
                }
                link.connected = up;
            }
            ClusterUpdate::LeaseReplaced => self.announce_all().await,
        }
    }

    /// Applies changes this host made in the store at once, without
    /// waiting for the watch to bring them back (which then changes
    /// nothing).
    async fn apply_cluster(&mut self, events: Vec<Event>) -> Result<()> {
        let link = self.cluster.as_mut().ok_or_else(not_in_cluster)?;
        let revision = link.mirror.revision;
        link.mirror.apply(revision, &events);
        self.sync_cluster().await
    }

    /// Announces every endpoint this host has on cluster networks again:
    /// after joining (a restart), and after the lease was replaced (its
    /// records went with the old one). Unchanged records are not written.
    async fn announce_all(&mut self) {
        let Ok(member) = self.member() else {
            return;
        };
        let host = member.host().id.clone();
        let records: Vec<EndpointRecord> = self
            .state
            .containers
            .values()
            .filter(|c| !c.removing)
            .flat_map(|c| c.endpoints.iter().map(move |ep| (c, ep)))
            .filter(|(_, ep)| {
                self.state
                    .networks
                    .get(&ep.network_id)
                    .is_some_and(|n| self.cluster_scoped(n))
            })
            .map(|(c, ep)| endpoint_record(c, ep, &host))
            .collect();
        let member = self.member().expect("checked above");
        for record in records {
            if let Err(e) = member.restore_endpoint(&record).await {
                warn!(container = %record.container_name, ip = %record.ip, error = %e,
                      "cannot announce the endpoint to the cluster");
            }
        }
    }

    /// Makes the local state and the kernel match the mirror: overlay
    /// networks, the other hosts and their endpoints, services.
    pub(super) async fn sync_cluster(&mut self) -> Result<()> {
        let Some(link) = self.cluster.as_ref() else {
            return Ok(());
        };
        let me = link.host.id.clone();
        let mirror = link.mirror.clone();
        let before = self.state.clone();
        let mut next = State::clone(&self.state);

        // Networks: one local record per cluster network, with this host's
        // index; one that left the cluster goes once nothing here uses it.
        let overlay_driver = self
            .drivers
            .all()
            .find(|d| d.cluster_scoped())
            .map(|d| d.name().to_string());
        for record in mirror.networks.values() {
            let index = next
                .networks
                .get(&record.id)
                .map(|n| n.index)
                .unwrap_or_else(|| super::networks::free_index(&next));
            let Some(driver) = &overlay_driver else {
                break;
            };
            let net = network_of(record, driver, index);
            if next.networks.get(&record.id).map(|n| &**n) != Some(&net) {
                next.networks.insert(net.id.clone(), Arc::new(net));
            }
        }
        let gone: Vec<String> = next
            .networks
            .values()
            .filter(|n| self.cluster_scoped(n) && !mirror.networks.contains_key(&n.id))
            .filter(|n| next.endpoints_on(&n.id).next().is_none())
            .map(|n| n.id.clone())
            .collect();
        for id in &gone {
            next.networks.remove(id);
        }

        // The other hosts, and their endpoints on networks this host has.
        next.hosts = mirror
            .hosts
            .values()
            .filter(|h| h.id != me)
            .map(|h| {
                (
                    h.id.clone(),
                    Arc::new(Host {
                        id: h.id.clone(),
                        addr: h.addr,
                        joined: h.joined.clone(),
                    }),
                )
            })
            .collect();
        next.peers = mirror
            .endpoints
            .values()
            .filter(|e| e.host != me && next.networks.contains_key(&e.network_id))
            .map(|e| (e.id.clone(), Arc::new(peer_of(e))))
            .collect();

        // Services of cluster networks: the VIP and ports are the
        // cluster's, the index this host's.
        for record in mirror.services.values() {
            if !next.networks.contains_key(&record.network_id) {
                continue;
            }
            let existing = next.services.get(&record.id).cloned();
            let index = existing
                .as_ref()
                .map(|s| s.index)
                .unwrap_or_else(|| free_service_index(&next));
            let svc = service_of(record, existing.as_deref(), index);
            if existing.as_deref() != Some(&svc) {
                next.services.insert(svc.id.clone(), Arc::new(svc));
            }
        }
        let stale_services: Vec<Service> = next
            .services
            .values()
            .filter(|s| {
                next.networks
                    .get(&s.network_id)
                    .is_none_or(|n| self.cluster_scoped(n))
                    && !mirror.services.contains_key(&s.id)
            })
            .map(|s| (**s).clone())
            .collect();
        for svc in &stale_services {
            next.services.remove(&svc.id);
            crate::model::update_where(
                &mut next.containers,
                |c| c.backs(&svc.id),
                |c| c.services.retain(|s| *s != svc.id),
            );
        }

        if next == *self.state {
            return Ok(());
        }
        // Names of other hosts' endpoints resolve only once the datapath
        // knows them: a container that looks a new peer up and sends at
        // once would otherwise have its ARP request go unanswered and
        // wait for the kernel's retry, a second later.
        self.save(next)?;
        self.apply_cluster_kernel(&before, &stale_services).await;
        self.dns.sync(&self.state);
        Ok(())
    }

    /// The kernel side of [`Engine::sync_cluster`]: what changed between
    /// `before` and the current state.
    async fn apply_cluster_kernel(&mut self, before: &State, stale_services: &[Service]) {
        let after = self.state.clone();
        for item in before.networks.diff(&after.networks) {
            match item {
                DiffItem::Add(_, net) | DiffItem::Update { new: (_, net), .. } => {
                    if let Err(e) = self.apply_network(net).await {
                        warn!(network = %net.name, error = %e, "cannot set up the cluster network");
                    }
                }
                DiffItem::Remove(_, net) => {
                    let drivers = self.drivers.clone();
                    if let Ok(driver) = drivers.of(net) {
                        driver.teardown(&mut self.kernel(), net).await;
                    }
                    info!(network = %net.name, "cluster network removed");
                }
            }
        }
        // Hosts and endpoints that go are removed after the services were
        // written without them: a backend slot never names a remote
        // endpoint the datapath no longer has.
        let mut lost_hosts = Vec::new();
        for item in before.hosts.diff(&after.hosts) {
            let result = match item {
                DiffItem::Add(_, h) | DiffItem::Update { new: (_, h), .. } => {
                    self.dataplane.set_overlay_host(h.addr)
                }
                DiffItem::Remove(_, h) => {
                    lost_hosts.push(h.addr);
                    Ok(())
                }
            };
            if let Err(e) = result {
                warn!(error = %e, "cannot update the cluster's hosts in the datapath");
            }
        }
        let mut gone_peers = Vec::new();
        for item in before.peers.diff(&after.peers) {
            let result = match item {
                DiffItem::Add(_, p) | DiffItem::Update { new: (_, p), .. } => {
                    match self.remote_endpoint(p) {
                        Some(remote) => self.dataplane.set_remote_endpoint(&remote),
                        None => Ok(()),
                    }
                }
                DiffItem::Remove(_, p) => {
                    gone_peers.push(p.ip);
                    Ok(())
                }
            };
            if let Err(e) = result {
                warn!(error = %e, "cannot update a remote endpoint in the datapath");
            }
        }
        for svc in stale_services {
            self.remove_service_datapath(svc);
        }
        let services: Vec<String> = after
            .services
            .values()
            .filter(|s| {
                after
                    .networks
                    .get(&s.network_id)
                    .is_some_and(|n| self.cluster_scoped(n))
            })
            .map(|s| s.id.clone())
            .collect();
        for id in services {
            if let Err(e) = self.sync_service(&id) {
                warn!(service = %id, error = %e, "cannot update the service");
            }
        }
        for ip in gone_peers {
            if let Err(e) = self.dataplane.remove_remote_endpoint(ip) {
                warn!(error = %e, "cannot remove a remote endpoint from the datapath");
            }
        }
        for addr in lost_hosts {
            // Takes the host's remote endpoints along.
            if let Err(e) = self.dataplane.remove_overlay_host(addr) {
                warn!(error = %e, "cannot remove a host from the datapath");
            }
        }
        self.sync_host_addresses();
    }

    /// The datapath's view of a peer: its network's index and VNI here,
    /// and its host's underlay address; `None` while either is unknown.
    pub(super) fn remote_endpoint(&self, p: &Peer) -> Option<RemoteEndpoint> {
        let net = self.state.networks.get(&p.network_id)?;
        let host = self.state.hosts.get(&p.host)?;
        Some(RemoteEndpoint {
            ip: p.ip,
            net_index: net.index,
            vni: vni_of(net)?,
            host: host.addr,
        })
    }

    /// Writes every cluster host and remote endpoint into the datapath and
    /// drops what is there for no record (start-up).
    pub(super) fn reconcile_cluster_datapath(&mut self) {
        let hosts: Vec<Ipv4Addr> = self.state.hosts.values().map(|h| h.addr).collect();
        for addr in &hosts {
            if let Err(e) = self.dataplane.set_overlay_host(*addr) {
                warn!(host = %addr, error = %e, "cannot restore a cluster host");
            }
        }
        let remotes: Vec<RemoteEndpoint> = self
            .state
            .peers
            .values()
            .filter_map(|p| self.remote_endpoint(p))
            .collect();
        for remote in &remotes {
            if let Err(e) = self.dataplane.set_remote_endpoint(remote) {
                warn!(ip = %remote.ip, error = %e, "cannot restore a remote endpoint");
            }
        }
        let ips: Vec<Ipv4Addr> = remotes.iter().map(|r| r.ip).collect();
        if let Err(e) = self
            .dataplane
            .retain_overlay_hosts(&hosts)
            .and_then(|()| self.dataplane.retain_remote_endpoints(&ips))
        {
            warn!(error = %e, "cannot clean up the cluster's datapath entries");
        }
    }

    pub(super) fn cluster_status(&self) -> Option<ClusterStatus> {
        self.cluster.as_ref().map(ClusterLink::status)
    }
}

/// The lowest service index `state` leaves free (from 1). Services of the
/// cluster arrive several at a time (a load), so this asks the state being
/// built rather than `Taken`, which follows commits.
fn free_service_index(state: &State) -> u32 {
    let used: std::collections::HashSet<u32> = state.services.values().map(|s| s.index).collect();
    (1..)
        .find(|i| !used.contains(i))
        .expect("a free index exists")
}

/// The VNI of a cluster network (kept in Docker's option).
pub(super) fn vni_of(net: &Network) -> Option<u32> {
    net.options.get(VNI_OPTION)?.parse().ok()
}

/// The local record of a cluster network, with this host's `index`.
fn network_of(record: &NetworkRecord, driver: &str, index: u32) -> Network {
    let mut options = record.options.clone();
    options.insert(VNI_OPTION.to_string(), record.vni.to_string());
    Network {
        id: record.id.clone(),
        name: record.name.clone(),
        driver: driver.to_string(),
        created: record.created.clone(),
        internal: record.internal,
        attachable: record.attachable,
        ipam: Some(record.ipam.clone()),
        options,
        labels: record.labels.clone(),
        predefined: false,
        index,
    }
}

fn peer_of(e: &EndpointRecord) -> Peer {
    Peer {
        id: e.id.clone(),
        network_id: e.network_id.clone(),
        container_id: e.container_id.clone(),
        container_name: e.container_name.clone(),
        host: e.host.clone(),
        ip: e.ip,
        mac: e.mac,
        aliases: e.aliases.clone(),
        services: e.services.clone(),
    }
}

/// The local record of a cluster service: the cluster's VIP and ports,
/// this host's index, and the replicas this host runs of it.
fn service_of(record: &ServiceRecord, existing: Option<&Service>, index: u32) -> Service {
    Service {
        id: record.id.clone(),
        name: record.name.clone(),
        created: record.created.clone(),
        network_id: record.network_id.clone(),
        vip: record.vip,
        replicas: existing.map_or(0, |s| s.replicas),
        cmd: existing.map(|s| s.cmd.clone()).unwrap_or_default(),
        ports: record.ports.clone(),
        index,
    }
}

/// The cluster record of a local endpoint.
pub(super) fn endpoint_record(c: &Container, ep: &Endpoint, host: &str) -> EndpointRecord {
    EndpointRecord {
        id: ep.id.clone(),
        network_id: ep.network_id.clone(),
        container_id: c.id.clone(),
        container_name: c.name.clone(),
        host: host.to_string(),
        ip: ep.ip,
        mac: mac_for(ep.ip),
        aliases: ep.aliases.clone(),
        services: c.services.clone(),
    }
}

/// What the agent knows of the cluster store, for the metrics: kept here
/// rather than in snapshots, since the lease is renewed without any
/// command.
#[derive(Default)]
pub struct ClusterTelemetry {
    lease: std::sync::Mutex<Option<tokio::sync::watch::Receiver<crate::cluster::LeaseStatus>>>,
    connected: std::sync::atomic::AtomicBool,
    revision: std::sync::atomic::AtomicI64,
    events: std::sync::atomic::AtomicU64,
    reloads: std::sync::atomic::AtomicU64,
}

/// A reading of [`ClusterTelemetry`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterReading {
    pub joined: bool,
    pub connected: bool,
    /// The last store revision applied.
    pub revision: i64,
    /// Changes (events) applied from the watch.
    pub events: u64,
    /// Full loads (the first, and after a compaction).
    pub reloads: u64,
    pub lease_renewals: u64,
    pub lease_losses: u64,
}

impl ClusterTelemetry {
    pub fn read(&self) -> ClusterReading {
        use std::sync::atomic::Ordering::Relaxed;
        let lease = self
            .lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|rx| rx.borrow().clone());
        ClusterReading {
            joined: lease.is_some(),
            connected: self.connected.load(Relaxed),
            revision: self.revision.load(Relaxed),
            events: self.events.load(Relaxed),
            reloads: self.reloads.load(Relaxed),
            lease_renewals: lease.as_ref().map_or(0, |l| l.renewals),
            lease_losses: lease.as_ref().map_or(0, |l| l.losses),
        }
    }
}

/// Joins the cluster, loads it, follows it, and tells `engine`; runs until
/// the engine stops. Keeps `telemetry` up to date.
pub async fn run_agent(
    client: Cluster,
    host: HostSpec,
    engine: EngineHandle,
    telemetry: Arc<ClusterTelemetry>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let member = loop {
        match client.join(host.clone()).await {
            Ok(member) => break member,
            Err(e) => {
                warn!(error = %e, "cannot join the cluster yet; retrying");
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    let mut lease = member.lease();
    let mut current_lease = lease.borrow().lease;
    *telemetry.lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(member.lease());
    telemetry.connected.store(true, Relaxed);
    if !engine
        .cluster(ClusterUpdate::Joined(Box::new(member)))
        .await
    {
        return;
    }
    'reload: loop {
        let state = loop {
            match client.load().await {
                Ok(state) => break state,
                Err(e) => {
                    warn!(error = %e, "cannot load the cluster's state yet; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        };
        let mut watch = client.watch(state.revision);
        telemetry.revision.store(state.revision, Relaxed);
        telemetry.reloads.fetch_add(1, Relaxed);
        telemetry.connected.store(true, Relaxed);
        if !engine.cluster(ClusterUpdate::Loaded(state)).await {
            return;
        }
        loop {
            tokio::select! {
                item = watch.next() => {
                    let update = match item {
                        WatchItem::Changes { revision, events } => {
                            telemetry.revision.store(revision, Relaxed);
                            telemetry.events.fetch_add(events.len() as u64, Relaxed);
                            ClusterUpdate::Changes { revision, events }
                        }
                        WatchItem::Disconnected(e) => {
                            warn!(error = %e, "lost the cluster store's watch");
                            telemetry.connected.store(false, Relaxed);
                            ClusterUpdate::Connected(false)
                        }
                        WatchItem::Reconnected => {
                            telemetry.connected.store(true, Relaxed);
                            ClusterUpdate::Connected(true)
                        }
                        WatchItem::Compacted { .. } => continue 'reload,
                    };
                    if !engine.cluster(update).await {
                        return;
                    }
                }
                changed = lease.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let status = lease.borrow().clone();
                    if status.state == LeaseState::Alive && status.lease != current_lease {
                        current_lease = status.lease;
                        if !engine.cluster(ClusterUpdate::LeaseReplaced).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}
