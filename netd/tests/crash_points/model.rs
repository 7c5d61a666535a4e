//! What the client knows: the objects it made, each present, absent or
//! unsure (an operation on it failed or was cut by a kill), and the next
//! operation to try, always a valid one for what it knows (so that a
//! refusal stands out).

use std::collections::BTreeMap;

use netd::model::{Container, Network, Service, State, Table};

use crate::rng::Rng;

/// The host ports `-p` publishes: this file's range.
const PORTS: std::ops::RangeInclusive<u16> = 29100..=29999;
/// The third octets of the random run's subnets, 10.29.x.0/24 (the
/// others are `crash_points.rs`'s own tests').
const SUBNETS: std::ops::RangeInclusive<u8> = 0..=249;
/// At most this many of each at a time, so that a run exercises removals
/// and the checks stay quick.
const MAX_NETWORKS: usize = 4;
const MAX_CONTAINERS: usize = 12;
const MAX_SERVICES: usize = 3;
const MAX_REPLICAS: u32 = 3;
/// What every process runs: longer than any run.
const CMD: [&str; 2] = ["sleep", "3600"];

/// What the client knows of one object or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    Present,
    Absent,
    Unsure,
}

impl Fact {
    /// Resolves an unsure fact with what the store holds (`there`);
    /// whether the object is present, i.e. still worth knowing.
    fn learn(&mut self, there: bool) -> bool {
        if *self == Fact::Unsure {
            *self = if there { Fact::Present } else { Fact::Absent };
        }
        *self == Fact::Present
    }
}

/// How an operation ended for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0: it happened.
    Acked,
    /// Failed or cut by a kill: it may have happened or not.
    Unsure,
}

#[derive(Debug, Clone)]
pub struct NetworkModel {
    pub fact: Fact,
    /// 10.29.{subnet}.0/24.
    pub subnet: u8,
}

#[derive(Debug, Clone)]
pub struct ContainerModel {
    pub fact: Fact,
    /// The network it was created on; the client never disconnects it.
    pub network: String,
    /// Networks connected later.
    pub connected: BTreeMap<String, Fact>,
    /// Created with `run`: its process must run.
    pub running: bool,
    pub port: Option<u16>,
    /// The service it joined at create.
    pub service: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServiceModel {
    pub fact: Fact,
    pub network: String,
    /// `None`: a scale was cut.
    pub replicas: Option<u32>,
    pub port: Option<u16>,
}

#[derive(Debug, Default)]
pub struct Model {
    pub networks: BTreeMap<String, NetworkModel>,
    pub containers: BTreeMap<String, ContainerModel>,
    pub services: BTreeMap<String, ServiceModel>,
    /// Names are never used twice: a number per new object.
    next: usize,
}

#[derive(Debug, Clone)]
pub enum Op {
    NetworkCreate {
        name: String,
        subnet: u8,
    },
    NetworkRm {
        name: String,
    },
    ContainerCreate {
        name: String,
        network: String,
        run: bool,
        port: Option<u16>,
        service: Option<String>,
    },
    ContainerRm {
        name: String,
    },
    Connect {
        network: String,
        container: String,
    },
    Disconnect {
        network: String,
        container: String,
    },
    ServiceCreate {
        name: String,
        network: String,
        replicas: u32,
        port: Option<u16>,
    },
    Scale {
        name: String,
        replicas: u32,
    },
    ServiceRm {
        name: String,
    },
}

impl Op {
    /// The `netd` command line.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |s: &[&str]| a.extend(s.iter().map(|x| x.to_string()));
        match self {
            Op::NetworkCreate { name, subnet } => push(&[
                "network",
                "create",
                "--subnet",
                &format!("10.29.{subnet}.0/24"),
                name,
            ]),
            Op::NetworkRm { name } => push(&["network", "rm", name]),
            Op::ContainerCreate {
                name,
                network,
                run,
                port,
                service,
            } => {
                push(&["container", if *run { "run" } else { "create" }]);
                push(&["--network", network]);
                if let Some(p) = port {
                    push(&["-p", &format!("{p}:80")]);
                }
                if let Some(s) = service {
                    push(&["--service", s]);
                }
                push(&[name]);
                if *run {
                    push(&["--"]);
                    push(&CMD);
                }
            }
            Op::ContainerRm { name } => push(&["container", "rm", "-f", name]),
            Op::Connect { network, container } => push(&["network", "connect", network, container]),
            Op::Disconnect { network, container } => {
                push(&["network", "disconnect", network, container])
            }
            Op::ServiceCreate {
                name,
                network,
                replicas,
                port,
            } => {
                push(&["service", "create", "--network", network]);
                push(&["--replicas", &replicas.to_string()]);
                if let Some(p) = port {
                    push(&["-p", &format!("{p}:80")]);
                }
                push(&[name, "--"]);
                push(&CMD);
            }
            Op::Scale { name, replicas } => {
                push(&["service", "scale", &format!("{name}={replicas}")])
            }
            Op::ServiceRm { name } => push(&["service", "rm", name]),
        }
        a
    }
}

fn present<'a, T: 'a>(
    map: &'a BTreeMap<String, T>,
    fact: impl Fn(&T) -> Fact + 'a,
) -> impl Iterator<Item = (&'a String, &'a T)> + 'a {
    map.iter().filter(move |(_, v)| fact(v) == Fact::Present)
}

impl Model {
    fn name(&mut self, kind: &str) -> String {
        self.next += 1;
        format!("{kind}{}", self.next)
    }

    /// Objects the client counts on or may still exist: what limits and
    /// the free ports and subnets take into account.
    fn live<T>(map: &BTreeMap<String, T>, fact: impl Fn(&T) -> Fact) -> usize {
        map.values().filter(|v| fact(v) != Fact::Absent).count()
    }

    fn free_port(&self, rng: &mut Rng) -> Option<u16> {
        let used: Vec<u16> = self
            .containers
            .values()
            .filter(|c| c.fact != Fact::Absent)
            .filter_map(|c| c.port)
            .chain(
                self.services
                    .values()
                    .filter(|s| s.fact != Fact::Absent)
                    .filter_map(|s| s.port),
            )
            .collect();
        let free: Vec<u16> = PORTS.filter(|p| !used.contains(p)).collect();
        (!free.is_empty()).then(|| *rng.pick(&free))
    }

    fn free_subnet(&self, rng: &mut Rng) -> Option<u8> {
        let used: Vec<u8> = self
            .networks
            .values()
            .filter(|n| n.fact != Fact::Absent)
            .map(|n| n.subnet)
            .collect();
        let free: Vec<u8> = SUBNETS.filter(|s| !used.contains(s)).collect();
        (!free.is_empty()).then(|| *rng.pick(&free))
    }

    /// Whether network `n` can go: nothing the client knows of (or is
    /// unsure of) is on it.
    fn removable(&self, n: &str) -> bool {
        let on_it = |c: &ContainerModel| {
            c.network == n || c.connected.get(n).is_some_and(|f| *f != Fact::Absent)
        };
        !self
            .containers
            .values()
            .any(|c| c.fact != Fact::Absent && on_it(c))
            && !self
                .services
                .values()
                .any(|s| s.fact != Fact::Absent && s.network == n)
    }

    /// A random operation that is valid for what the client knows.
    pub fn next_op(&mut self, rng: &mut Rng) -> Op {
        loop {
            if let Some(op) = self.try_op(rng) {
                return op;
            }
        }
    }

    fn try_op(&mut self, rng: &mut Rng) -> Option<Op> {
        let networks: Vec<String> = present(&self.networks, |n| n.fact)
            .map(|(k, _)| k.clone())
            .collect();
        let containers: Vec<String> = present(&self.containers, |c| c.fact)
            .map(|(k, _)| k.clone())
            .collect();
        let services: Vec<String> = present(&self.services, |s| s.fact)
            .map(|(k, _)| k.clone())
            .collect();
        let replicas: usize = self
            .services
            .values()
            .filter(|s| s.fact != Fact::Absent)
            .map(|s| s.replicas.unwrap_or(MAX_REPLICAS) as usize)
            .sum();
        let crowded = Self::live(&self.containers, |c| c.fact) + replicas >= MAX_CONTAINERS;
        // Weights: creations a little below removals' reach, so the numbers
        // move up and down.
        let op = match rng.below(100) {
            0..10 => {
                if Self::live(&self.networks, |n| n.fact) >= MAX_NETWORKS {
                    return None;
                }
                Op::NetworkCreate {
                    subnet: self.free_subnet(rng)?,
                    name: self.name("n"),
                }
            }
            10..16 => {
                let removable: Vec<&String> =
                    networks.iter().filter(|n| self.removable(n)).collect();
                if removable.is_empty() {
                    return None;
                }
                Op::NetworkRm {
                    name: rng.pick(&removable).to_string(),
                }
            }
            16..42 => {
                if crowded || networks.is_empty() {
                    return None;
                }
                let network = rng.pick(&networks).clone();
                let run = rng.chance(60);
                let port = if rng.chance(30) {
                    Some(self.free_port(rng)?)
                } else {
                    None
                };
                let on_network: Vec<&String> = services
                    .iter()
                    .filter(|s| self.services[*s].network == network)
                    .collect();
                let service = (!on_network.is_empty() && rng.chance(50))
                    .then(|| rng.pick(&on_network).to_string());
                Op::ContainerCreate {
                    name: self.name("c"),
                    network,
                    run,
                    port,
                    service,
                }
            }
            42..58 => Op::ContainerRm {
                name: pick(rng, &containers)?,
            },
            58..68 => {
                let container = pick(rng, &containers)?;
                let c = &self.containers[&container];
                let others: Vec<String> = networks
                    .iter()
                    .filter(|n| **n != c.network && !c.connected.contains_key(*n))
                    .cloned()
                    .collect();
                Op::Connect {
                    network: pick(rng, &others)?,
                    container,
                }
            }
            68..76 => {
                let pairs: Vec<(String, String)> = present(&self.containers, |c| c.fact)
                    .flat_map(|(name, c)| {
                        present(&c.connected, |f| *f).map(|(n, _)| (n.clone(), name.clone()))
                    })
                    .collect();
                let (network, container) = pick(rng, &pairs)?;
                Op::Disconnect { network, container }
            }
            76..84 => {
                if Self::live(&self.services, |s| s.fact) >= MAX_SERVICES || crowded {
                    return None;
                }
                let port = if rng.chance(40) {
                    Some(self.free_port(rng)?)
                } else {
                    None
                };
                Op::ServiceCreate {
                    network: pick(rng, &networks)?,
                    replicas: rng.range(0, MAX_REPLICAS as usize) as u32,
                    port,
                    name: self.name("s"),
                }
            }
            84..94 => {
                let name = pick(rng, &services)?;
                let replicas = rng.range(0, MAX_REPLICAS as usize) as u32;
                let now = self.services[&name].replicas.unwrap_or(0);
                if crowded && replicas > now {
                    return None;
                }
                Op::Scale { name, replicas }
            }
            _ => Op::ServiceRm {
                name: pick(rng, &services)?,
            },
        };
        Some(op)
    }

    /// What an operation's outcome tells: acknowledged, its effect holds;
    /// otherwise its objects are unsure until the next check.
    pub fn apply(&mut self, op: &Op, outcome: Outcome) {
        let done = |yes: Fact| match outcome {
            Outcome::Acked => yes,
            Outcome::Unsure => Fact::Unsure,
        };
        match op {
            Op::NetworkCreate { name, subnet } => {
                self.networks.insert(
                    name.clone(),
                    NetworkModel {
                        fact: done(Fact::Present),
                        subnet: *subnet,
                    },
                );
            }
            Op::NetworkRm { name } => {
                self.networks.get_mut(name).unwrap().fact = done(Fact::Absent)
            }
            Op::ContainerCreate {
                name,
                network,
                run,
                port,
                service,
            } => {
                self.containers.insert(
                    name.clone(),
                    ContainerModel {
                        fact: done(Fact::Present),
                        network: network.clone(),
                        connected: BTreeMap::new(),
                        running: *run,
                        port: *port,
                        service: service.clone(),
                    },
                );
            }
            Op::ContainerRm { name } => {
                self.containers.get_mut(name).unwrap().fact = done(Fact::Absent)
            }
            Op::Connect { network, container } => {
                let c = self.containers.get_mut(container).unwrap();
                c.connected.insert(network.clone(), done(Fact::Present));
            }
            Op::Disconnect { network, container } => {
                let c = self.containers.get_mut(container).unwrap();
                c.connected.insert(network.clone(), done(Fact::Absent));
            }
            Op::ServiceCreate {
                name,
                network,
                replicas,
                port,
            } => {
                self.services.insert(
                    name.clone(),
                    ServiceModel {
                        fact: done(Fact::Present),
                        network: network.clone(),
                        replicas: Some(*replicas),
                        port: *port,
                    },
                );
            }
            Op::Scale { name, replicas } => {
                let s = self.services.get_mut(name).unwrap();
                s.replicas = (outcome == Outcome::Acked).then_some(*replicas);
            }
            Op::ServiceRm { name } => {
                self.services.get_mut(name).unwrap().fact = done(Fact::Absent)
            }
        }
    }

    /// After a check: what was unsure is what the store holds, and what is
    /// absent (checked) is forgotten.
    pub fn learn(&mut self, state: &State) {
        let network_name = |id: &str| state.networks.get(id).map(|n| n.name.clone());
        self.networks
            .retain(|name, n| n.fact.learn(named(&state.networks, name).is_some()));
        self.services.retain(|name, s| {
            let stored = named(&state.services, name);
            if let Some(stored) = stored {
                s.replicas = Some(stored.replicas);
            }
            s.fact.learn(stored.is_some())
        });
        self.containers.retain(|name, c| {
            let Some(stored) = named(&state.containers, name) else {
                return c.fact.learn(false);
            };
            if c.fact == Fact::Unsure {
                // A cut `run` may have left the record without its
                // process: what is there is what counts from now on.
                c.running = stored.process.as_ref().is_some_and(|p| p.pid.is_some());
            }
            let on: Vec<String> = stored
                .endpoints
                .iter()
                .filter_map(|ep| network_name(&ep.network_id))
                .collect();
            c.connected.retain(|n, f| f.learn(on.contains(n)));
            c.fact.learn(true)
        });
    }
}

/// What the stored objects are looked up by here.
pub trait Named {
    fn name(&self) -> &str;
}

impl Named for Network {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for Container {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for Service {
    fn name(&self) -> &str {
        &self.name
    }
}

/// The object of `table` named `name`. By name only: the state's `find_*`
/// also take a unique id prefix, which a name like `c7` can be.
pub fn named<'a, T: Named>(table: &'a Table<T>, name: &str) -> Option<&'a T> {
    table.values().find(|o| o.name() == name).map(|o| &**o)
}

fn pick<T: Clone>(rng: &mut Rng, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| rng.pick(items).clone())
}
