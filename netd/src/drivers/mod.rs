//! Network drivers: what a network of each kind is in the kernel, and how a
//! container's endpoint joins one. The engine validates requests, allocates
//! addresses, keeps the records and orders the steps; everything that
//! differs between `bridge`, `macvlan`, `host` and `null` is here, behind
//! [`NetworkDriver`], so the engine and the API never ask which driver a
//! network has, only what it can do.
//!
//! # Adding a driver
//! Write a module in this folder with a type implementing [`NetworkDriver`]
//! (its Docker name, its options checked in `validate`, its kernel objects
//! made in `setup`/`attach` and removed in `teardown`/`detach`, each step
//! idempotent so that a restarted daemon can run it again over what a crash
//! left), and add it to [`Drivers::builtin`]. Records, IPAM, DNS, services,
//! persistence and the API then work for its networks unchanged.

mod bridge;
mod host;
mod macvlan;
mod null;
pub mod options;
mod overlay;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use crate::dataplane::Dataplane;
use crate::engine::spec::NetworkSpec;
use crate::error::{EngineError, Result};
use crate::model::{Endpoint, Network, State};
use crate::netlink::{Netlink, Netns};

pub use bridge::Bridge;
pub use host::Host;
pub use macvlan::Macvlan;
pub use null::Null;
pub use overlay::Overlay;

/// How a container on a network of the driver is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attachment {
    /// Its own namespace with an interface on the network and an address
    /// from the network's pool (bridge, macvlan).
    Interface,
    /// No namespace of its own: it shares the host's (`host`).
    HostNamespace,
    /// Its own namespace with loopback only (`none`).
    Loopback,
}

/// A network every daemon has from its first start (Docker's `bridge`,
/// `host` and `none`).
#[derive(Debug, Clone)]
pub struct Predefined {
    pub name: &'static str,
    /// The subnet it takes when the host does not already route it (else
    /// the next free pool), for drivers whose endpoints have addresses.
    pub subnet: Option<Ipv4Net>,
    pub options: BTreeMap<String, String>,
}

/// What drivers act on: the daemon's kernel handles and naming.
pub struct Kernel<'a> {
    /// Prefix of every kernel object the daemon names (see `names`).
    pub prefix: &'a str,
    pub netlink: &'a Netlink,
    pub dataplane: &'a mut Dataplane,
}

/// The namespace an endpoint is detached from.
#[derive(Debug, Clone, Copy)]
pub enum Leaving<'a> {
    /// It stays (a disconnect, or a runtime's namespace): what the endpoint
    /// has inside must be removed.
    Stays(&'a Netns),
    /// It is deleted right after, taking what is inside with it.
    Deleted(&'a Netns),
    /// It is gone already.
    Gone,
}

impl<'a> Leaving<'a> {
    /// The namespace, while it is there.
    pub fn netns(self) -> Option<&'a Netns> {
        match self {
            Leaving::Stays(ns) | Leaving::Deleted(ns) => Some(ns),
            Leaving::Gone => None,
        }
    }
}

/// What attaching an endpoint left for the engine to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plugged {
    /// The host-side interface that carries the endpoint's programs (a
    /// veth's host end), which published ports and services deliver to.
    pub host_ifindex: Option<u32>,
    /// A link the host reaches the endpoint through that is not up yet
    /// (a new bridge takes up to a second): the engine answers the caller
    /// once it is, without holding up other commands.
    pub carrier: Option<String>,
}

/// One kind of network. Implementations hold no state of their own: the
/// records and the kernel are the state, so a restart loses nothing.
#[async_trait]
pub trait NetworkDriver: Send + Sync {
    /// Docker's name for it (`docker network create -d NAME`).
    fn name(&self) -> &'static str;

    /// Docker's scope: `local`, or `swarm` for networks spanning hosts.
    fn scope(&self) -> &'static str {
        "local"
    }

    /// Whether its networks belong to the cluster (the cluster store
    /// allocates their subnets, addresses and service VIPs, and every host
    /// of the cluster has them) rather than to this host.
    fn cluster_scoped(&self) -> bool {
        false
    }

    fn attachment(&self) -> Attachment {
        Attachment::Interface
    }

    /// The network of this driver every daemon has, if any.
    fn predefined(&self) -> Option<Predefined> {
        None
    }

    /// Whether users may create networks of it; drivers with only their
    /// predefined instance (`host`, `none`) refuse, as Docker does.
    fn user_creatable(&self) -> bool {
        true
    }

    /// Whether `-p` works for containers whose first network is of this
    /// driver: the datapath translates to an endpoint on a host-side
    /// interface of netd's.
    fn publishes_ports(&self) -> bool {
        false
    }

    /// Whether services (a virtual IP balanced in the datapath) can live on
    /// networks of this driver.
    fn hosts_services(&self) -> bool {
        false
    }

    /// Checks the driver's options of a new network against the host and
    /// the other networks, before anything is written.
    async fn validate(&self, _k: &Kernel<'_>, _spec: &NetworkSpec, _state: &State) -> Result<()> {
        Ok(())
    }

    /// Makes the network's kernel objects (idempotent: also adopts them
    /// after a restart).
    async fn setup(&self, _k: &mut Kernel<'_>, _net: &Network) -> Result<()> {
        Ok(())
    }

    /// Removes the network's kernel objects; goes on past errors (logging
    /// them): the record is gone, and leftovers are collected at start.
    async fn teardown(&self, _k: &mut Kernel<'_>, _net: &Network) {}

    /// Plumbs `ep` into the namespace `ns` (idempotent: adopts what a
    /// crash left). `default_route`: the endpoint carries the namespace's
    /// default route. Drivers with [`Attachment::Interface`] must implement
    /// it; the engine calls it for no other.
    async fn attach(
        &self,
        _k: &mut Kernel<'_>,
        net: &Network,
        _ep: &Endpoint,
        _ns: &Netns,
        _default_route: bool,
    ) -> Result<Plugged> {
        Err(EngineError::System(format!(
            "the {} driver has no endpoints to attach (network {})",
            self.name(),
            net.name
        )))
    }

    /// Undoes `attach`, going on past errors.
    async fn detach(&self, _k: &mut Kernel<'_>, _net: &Network, _ep: &Endpoint, _ns: Leaving<'_>) {}

    /// Host links the network itself owns (not its endpoints'), so that
    /// start-up garbage collection keeps them.
    fn network_links(&self, _prefix: &str, _net: &Network) -> Vec<String> {
        Vec::new()
    }

    /// The host link an endpoint owns, if any.
    fn endpoint_link(&self, _ep: &Endpoint) -> Option<String> {
        None
    }

    /// The subnet the datapath steers for this network (its `NET_LPM`
    /// entry), so that stale entries can be told from live ones.
    fn datapath_subnet(&self, _net: &Network) -> Option<Ipv4Net> {
        None
    }
}

/// The drivers a daemon knows, by name.
#[derive(Clone)]
pub struct Drivers {
    by_name: BTreeMap<&'static str, Arc<dyn NetworkDriver>>,
}

impl Drivers {
    /// Every driver of this build.
    pub fn builtin() -> Drivers {
        Drivers::empty()
            .with(Arc::new(Bridge))
            .with(Arc::new(Host))
            .with(Arc::new(Null))
            .with(Arc::new(Macvlan))
    }

    /// No driver at all (tests build their own registry).
    pub fn empty() -> Drivers {
        Drivers {
            by_name: BTreeMap::new(),
        }
    }

    /// Registers `driver` (replacing one of the same name).
    pub fn with(mut self, driver: Arc<dyn NetworkDriver>) -> Drivers {
        self.by_name.insert(driver.name(), driver);
        self
    }

    pub fn get(&self, name: &str) -> Option<&dyn NetworkDriver> {
        self.by_name.get(name).map(|d| &**d)
    }

    /// The driver of `net`. Records only ever name registered drivers (a
    /// create checks), so a missing one is a store written by another
    /// build: a clear error rather than a panic.
    pub fn of(&self, net: &Network) -> Result<&dyn NetworkDriver> {
        self.get(&net.driver).ok_or_else(|| {
            EngineError::System(format!(
                "network {} uses driver {}, which this build of netd does not have",
                net.name, net.driver
            ))
        })
    }

    /// Names in order, for `docker info`'s plugin list.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    pub fn all(&self) -> impl Iterator<Item = &dyn NetworkDriver> + '_ {
        self.by_name.values().map(|d| &**d)
    }

    /// The network whose containers share the host's namespace, or have
    /// loopback only: Docker lists such containers under it.
    pub fn network_for<'s>(&self, state: &'s State, kind: Attachment) -> Option<&'s Network> {
        state
            .networks
            .values()
            .find(|n| self.get(&n.driver).is_some_and(|d| d.attachment() == kind))
            .map(|n| &**n)
    }
}

impl std::fmt::Debug for Drivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}
