//! The names the embedded server answers, built from the state in one pass
//! and swapped in whole after every change.
//!
//! Names live per network: a container asking only ever sees the tables of
//! the user-defined networks it is on itself, which is all the scoping there
//! is (Docker's rule: a name resolves when the asker shares a network with
//! the target). On each network:
//!
//! - every container by its name, its 12-character short id, and `NAME.NETWORK`;
//! - every endpoint alias (`--alias`), also as `ALIAS.NETWORK`;
//! - every service on the network by its name (the virtual IP) and
//!   `NAME.NETWORK`, and `tasks.NAME` (the address of each replica on
//!   that network);
//! - reverse entries: a container address gives `NAME.NETWORK`, a virtual
//!   IP gives `SERVICE.NETWORK`.
//!
//! Names compare case-insensitively (stored in lowercase). When a name has
//! several addresses (a shared alias, `tasks.NAME`, a container on two
//! networks the asker shares) the order rotates from one query to the next,
//! so that clients that take the first address spread out.
//!
//! Besides the names, the records know netd's zones (see `zones`), where a
//! name nobody has is NXDOMAIN instead of forwarded, and which containers
//! may have names forwarded at all (see [`Records::forwards`]).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use ipnet::Ipv4Net;

use super::zones::{self, Reverse};
use crate::model::{NetMode, State};

/// One name on one network.
#[derive(Debug, Default)]
struct Entry {
    addrs: Vec<Ipv4Addr>,
}

/// The names of one user-defined network.
#[derive(Debug, Default)]
struct NetTable {
    /// The network's name, lowercase: the zone of its `NAME.NETWORK` names.
    zone: String,
    names: HashMap<String, Entry>,
    /// Names in the zone that have names under them but no records (the
    /// zone itself, `1.NETWORK` for a container `api.1`): NOERROR, not
    /// NXDOMAIN, which would tell a caching resolver that nothing exists
    /// under them (RFC 8020).
    empty: HashSet<String>,
    /// Reverse: address -> the name PTR answers with.
    ptr: HashMap<Ipv4Addr, String>,
}

impl NetTable {
    fn add(&mut self, name: &str, ip: Ipv4Addr) {
        let e = self.names.entry(name.to_ascii_lowercase()).or_default();
        if !e.addrs.contains(&ip) {
            e.addrs.push(ip);
        }
    }

    /// Fills `empty` once every name is in.
    fn find_empty_names(&mut self) {
        self.empty.insert(self.zone.clone());
        for name in self.names.keys() {
            let mut rest = name.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if !zones::within(parent, &self.zone) {
                    break;
                }
                self.empty.insert(parent.to_string());
                rest = parent;
            }
        }
    }
}

/// Every name the embedded server answers, for every asker.
#[derive(Debug, Default)]
pub struct Records {
    nets: Vec<NetTable>,
    /// Container id -> the tables it sees, in the order of its endpoints
    /// (eth0 first), so the first address answered is on its first network.
    views: HashMap<String, Vec<usize>>,
    /// Every network's subnet: their reverse zones are netd's.
    subnets: Vec<Ipv4Net>,
    /// Containers with an endpoint on a network that is not `--internal`.
    forwarding: HashSet<String>,
    /// Rotates multi-address answers between queries.
    cursor: AtomicUsize,
}

/// What the records say about a name, for one asker.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// A name the asker sees, with these addresses (none: a service
    /// without replicas, for `tasks.NAME`).
    Addrs(Vec<Ipv4Addr>),
    /// The PTR name of an address the asker sees.
    Ptr(&'a str),
    /// A name in netd's zones that has no records of its own (the zone of
    /// a subnet, or a part of it): NOERROR without answers.
    Empty,
    /// A name in netd's zones that does not exist.
    NxDomain,
    /// Not netd's: for the upstream resolvers.
    Forward,
}

impl Records {
    pub fn build(state: &State) -> Records {
        let replicas = state.replicas_by_service();
        let mut nets = Vec::new();
        let mut index_of: HashMap<&str, usize> = HashMap::new();
        for net in state
            .networks
            .values()
            .filter(|n| has_embedded_dns(state, &n.id))
        {
            let suffix = net.name.to_ascii_lowercase();
            let mut t = NetTable {
                zone: suffix.clone(),
                ..NetTable::default()
            };
            // A container on its way out answers to its name no more.
            for (c, ep) in state.endpoints_on(&net.id).filter(|(c, _)| !c.removing) {
                t.add(&c.name, ep.ip);
                t.add(&format!("{}.{suffix}", c.name), ep.ip);
                if let Some(short) = c.id.get(..12) {
                    t.add(short, ep.ip);
                }
                for alias in &ep.aliases {
                    t.add(alias, ep.ip);
                    t.add(&format!("{alias}.{suffix}"), ep.ip);
                }
                t.ptr.insert(
                    ep.ip,
                    format!("{}.{}", c.name, net.name).to_ascii_lowercase(),
                );
            }
            // Containers of the network on other hosts of the cluster.
            for p in state.peers.values().filter(|p| p.network_id == net.id) {
                t.add(&p.container_name, p.ip);
                t.add(&format!("{}.{suffix}", p.container_name), p.ip);
                if let Some(short) = p.container_id.get(..12) {
                    t.add(short, p.ip);
                }
                for alias in &p.aliases {
                    t.add(alias, p.ip);
                    t.add(&format!("{alias}.{suffix}"), p.ip);
                }
                t.ptr.insert(
                    p.ip,
                    format!("{}.{}", p.container_name, net.name).to_ascii_lowercase(),
                );
            }
            for svc in state.services.values().filter(|s| s.network_id == net.id) {
                t.add(&svc.name, svc.vip);
                t.add(&format!("{}.{suffix}", svc.name), svc.vip);
                t.ptr.insert(
                    svc.vip,
                    format!("{}.{}", svc.name, net.name).to_ascii_lowercase(),
                );
                let tasks = format!("tasks.{}", svc.name);
                // Present (and empty) even without replicas: the name is
                // ours, so it must not leak to the upstream resolvers.
                t.names.entry(tasks.to_ascii_lowercase()).or_default();
                for replica in replicas
                    .get(svc.id.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|c| !c.removing)
                {
                    for ep in replica.endpoints.iter().filter(|e| e.network_id == net.id) {
                        t.add(&tasks, ep.ip);
                    }
                }
                // Replicas on other hosts of the cluster.
                for p in state
                    .peers
                    .values()
                    .filter(|p| p.services.contains(&svc.id))
                {
                    t.add(&tasks, p.ip);
                }
            }
            t.find_empty_names();
            index_of.insert(&net.id, nets.len());
            nets.push(t);
        }
        let mut views = HashMap::new();
        let mut forwarding = HashSet::new();
        for c in state.containers.values() {
            let tables: Vec<usize> = c
                .endpoints
                .iter()
                .filter_map(|e| index_of.get(e.network_id.as_str()).copied())
                .collect();
            if !tables.is_empty() {
                views.insert(c.id.clone(), tables);
            }
            // A way out: an endpoint on any network (the default bridge and
            // macvlan included) but an `--internal` one.
            let way_out = c.endpoints.iter().any(|e| {
                state
                    .networks
                    .get(&e.network_id)
                    .is_some_and(|n| !n.internal)
            });
            if way_out {
                forwarding.insert(c.id.clone());
            }
        }
        let subnets = state
            .networks
            .values()
            .filter_map(|n| n.ipam.as_ref().map(|s| s.subnet))
            .collect();
        Records {
            nets,
            views,
            subnets,
            forwarding,
            cursor: AtomicUsize::new(0),
        }
    }

    /// What `name` is for container `asker`: its own names first, then
    /// netd's zones, else the upstreams'.
    pub fn resolve(&self, asker: &str, name: &str) -> Answer<'_> {
        let name = normalize(name);
        if let Some(addrs) = self.lookup(asker, &name) {
            return Answer::Addrs(addrs);
        }
        if let Some(reverse) = Reverse::parse(&name) {
            if !reverse.within_any(&self.subnets) {
                return Answer::Forward;
            }
            return match reverse.addr() {
                Some(ip) => self
                    .reverse(asker, ip)
                    .map_or(Answer::NxDomain, Answer::Ptr),
                None if reverse.deeper => Answer::NxDomain,
                None => Answer::Empty,
            };
        }
        let mut answer = Answer::Forward;
        for &t in self.views.get(asker).into_iter().flatten() {
            let table = &self.nets[t];
            if table.empty.contains(&name) {
                return Answer::Empty;
            }
            if zones::within(&name, &table.zone) {
                answer = Answer::NxDomain;
            }
        }
        answer
    }

    /// Whether names that are not netd's may be forwarded for `asker`: not
    /// when all its networks are `--internal`. Docker does the same (its
    /// resolver forwards from the host's namespace only for containers
    /// with a gateway); forwarding from the daemon's namespace would be
    /// the way out that an internal network is meant not to have.
    pub fn forwards(&self, asker: &str) -> bool {
        self.forwarding.contains(asker)
    }

    /// The addresses `name` has for container `asker`, rotated; `None` when
    /// the name is not one the asker can see (the caller forwards it).
    /// `Some(empty)` is a name that exists without addresses (a service
    /// with no replica yet, for `tasks.NAME`).
    pub fn lookup(&self, asker: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = normalize(name);
        let mut found = false;
        let mut addrs: Vec<Ipv4Addr> = Vec::new();
        for &t in self.views.get(asker)? {
            if let Some(e) = self.nets[t].names.get(name.as_str()) {
                found = true;
                for ip in &e.addrs {
                    if !addrs.contains(ip) {
                        addrs.push(*ip);
                    }
                }
            }
        }
        if !found {
            return None;
        }
        if addrs.len() > 1 {
            let n = self.cursor.fetch_add(1, Ordering::Relaxed) % addrs.len();
            addrs.rotate_left(n);
        }
        Some(addrs)
    }

    /// The name PTR answers for `ip`, if the asker shares its network.
    fn reverse(&self, asker: &str, ip: Ipv4Addr) -> Option<&str> {
        self.views
            .get(asker)?
            .iter()
            .find_map(|&t| self.nets[t].ptr.get(&ip))
            .map(String::as_str)
    }

    /// Whether `container` has a server of its own (it sees at least one
    /// table).
    pub fn serves(&self, container: &str) -> bool {
        self.views.contains_key(container)
    }
}

/// Whether containers on this network get the embedded server: every
/// network except the predefined ones. The default `bridge` behaves as
/// Docker's (host resolvers, no names: legacy links semantics), and `host`
/// and `none` carry no addresses.
pub fn has_embedded_dns(state: &State, network_id: &str) -> bool {
    state
        .networks
        .get(network_id)
        .is_some_and(|n| !n.predefined && n.ipam.is_some())
}

/// Whether a container has its own namespace and at least one endpoint on
/// a network with the embedded server.
pub fn wants_server(state: &State, container_id: &str) -> bool {
    state.containers.get(container_id).is_some_and(|c| {
        matches!(c.net, NetMode::Own { .. } | NetMode::Path { .. })
            && c.endpoints
                .iter()
                .any(|e| has_embedded_dns(state, &e.network_id))
    })
}

/// Lowercase, without the trailing dot of a fully qualified name.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::model::{Container, Endpoint, Network, Service, Subnet};

    fn net(id: &str, name: &str, predefined: bool) -> Network {
        Network {
            id: id.into(),
            name: name.into(),
            driver: "bridge".into(),
            created: String::new(),
            internal: false,
            attachable: false,
            ipam: Some(Subnet {
                subnet: "10.0.0.0/8".parse().unwrap(),
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                ip_range: None,
            }),
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            predefined,
            index: 1,
        }
    }

    fn ep(network_id: &str, ip: [u8; 4], aliases: &[&str]) -> Endpoint {
        Endpoint {
            id: format!("ep-{network_id}-{ip:?}"),
            network_id: network_id.into(),
            ifname: "eth0".into(),
            host_ifname: "x".into(),
            mac: [0; 6],
            ip: ip.into(),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 0, 1),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            static_ip: false,
        }
    }

    fn container(id: &str, name: &str, endpoints: Vec<Endpoint>) -> Container {
        Container {
            id: id.into(),
            name: name.into(),
            created: String::new(),
            net: NetMode::Own {
                netns: format!("netd-{name}"),
            },
            network_mode: String::new(),
            endpoints,
            process: None,
            ports: Vec::new(),
            services: Vec::new(),
            removing: false,
            labels: Default::default(),
        }
    }

    /// front: web (10.1.0.2, alias "www"), client (10.1.0.3), svc "api"
    /// (VIP 10.1.0.100, replicas api.1 .. api.3);
    /// back: db (10.2.0.2), web again (10.2.0.3);
    /// bridge (predefined): legacy (172.17.0.2);
    /// client2 on back only; loner on the default bridge only.
    fn state() -> State {
        let mut s = State::default();
        for n in [
            net("n-front", "front", false),
            net("n-back", "Back", false),
            net("n-bridge", "bridge", true),
        ] {
            s.networks.insert(n.id.clone(), Arc::new(n));
        }
        let mut cs = vec![
            container(
                "111111111111aaaa",
                "web",
                vec![
                    ep("n-front", [10, 1, 0, 2], &["www"]),
                    ep("n-back", [10, 2, 0, 3], &[]),
                ],
            ),
            container(
                "222222222222bbbb",
                "client",
                vec![ep("n-front", [10, 1, 0, 3], &[])],
            ),
            container("c-db", "db", vec![ep("n-back", [10, 2, 0, 2], &["DATA"])]),
            container(
                "c-client2",
                "client2",
                vec![ep("n-back", [10, 2, 0, 4], &[])],
            ),
            container(
                "c-loner",
                "loner",
                vec![ep("n-bridge", [172, 17, 0, 2], &[])],
            ),
            container(
                "c-legacy",
                "legacy",
                vec![
                    ep("n-bridge", [172, 17, 0, 3], &[]),
                    ep("n-front", [10, 1, 0, 9], &[]),
                ],
            ),
        ];
        for i in 1..=3u8 {
            let mut c = container(
                &format!("c-api{i}"),
                &format!("api.{i}"),
                vec![ep("n-front", [10, 1, 0, 10 + i], &[])],
            );
            c.services = vec!["s-api".into()];
            cs.push(c);
        }
        for c in cs {
            s.containers.insert(c.id.clone(), Arc::new(c));
        }
        s.services.insert(
            "s-api".into(),
            Arc::new(Service {
                id: "s-api".into(),
                name: "api".into(),
                created: String::new(),
                network_id: "n-front".into(),
                vip: Ipv4Addr::new(10, 1, 0, 100),
                replicas: 3,
                cmd: vec!["sleep".into()],
                ports: Vec::new(),
                index: 1,
            }),
        );
        s
    }

    fn ips(v: &[[u8; 4]]) -> Vec<Ipv4Addr> {
        v.iter().map(|o| Ipv4Addr::from(*o)).collect()
    }

    #[test]
    fn names_aliases_and_network_qualified_names() {
        let r = Records::build(&state());
        let client = "222222222222bbbb";
        assert_eq!(r.lookup(client, "web"), Some(ips(&[[10, 1, 0, 2]])));
        assert_eq!(r.lookup(client, "WeB."), Some(ips(&[[10, 1, 0, 2]])));
        assert_eq!(r.lookup(client, "www"), Some(ips(&[[10, 1, 0, 2]])));
        assert_eq!(r.lookup(client, "web.front"), Some(ips(&[[10, 1, 0, 2]])));
        assert_eq!(r.lookup(client, "www.front."), Some(ips(&[[10, 1, 0, 2]])));
        // Docker's short id (the hostname).
        assert_eq!(
            r.lookup(client, "111111111111"),
            Some(ips(&[[10, 1, 0, 2]]))
        );
        // The asker's own name resolves too.
        assert_eq!(r.lookup(client, "client"), Some(ips(&[[10, 1, 0, 3]])));
        // Aliases are case-insensitive and scoped: DATA is on back only.
        assert_eq!(r.lookup("c-client2", "data"), Some(ips(&[[10, 2, 0, 2]])));
        assert_eq!(
            r.lookup("c-client2", "db.back"),
            Some(ips(&[[10, 2, 0, 2]]))
        );
        assert_eq!(r.lookup(client, "data"), None);
        assert_eq!(r.lookup(client, "db"), None);
        assert_eq!(r.lookup(client, "db.back"), None);
        // A name that is not ours at all.
        assert_eq!(r.lookup(client, "example.com"), None);
    }

    #[test]
    fn scoping_follows_shared_networks() {
        let r = Records::build(&state());
        // client2 shares only `back` with web: it gets web's back address.
        assert_eq!(r.lookup("c-client2", "web"), Some(ips(&[[10, 2, 0, 3]])));
        assert_eq!(r.lookup("c-client2", "www"), None, "alias is front-only");
        assert_eq!(r.lookup("c-client2", "client"), None);
        assert_eq!(r.lookup("c-client2", "api"), None);
        // web is on both: it sees both networks, front (eth0) first.
        assert_eq!(
            r.lookup("111111111111aaaa", "db"),
            Some(ips(&[[10, 2, 0, 2]]))
        );
        assert_eq!(
            r.lookup("111111111111aaaa", "client"),
            Some(ips(&[[10, 1, 0, 3]]))
        );
        // Default bridge: no embedded names, neither for those only on it
        // nor about its addresses.
        assert!(!r.serves("c-loner"));
        assert_eq!(r.lookup("c-loner", "web"), None);
        assert_eq!(r.lookup("222222222222bbbb", "loner"), None);
        assert_eq!(
            r.lookup("222222222222bbbb", "legacy"),
            Some(ips(&[[10, 1, 0, 9]])),
            "only its user-defined network's address"
        );
        assert!(r.serves("c-legacy"));
        // An unknown asker sees nothing.
        assert_eq!(r.lookup("nobody", "web"), None);
    }

    #[test]
    fn reverse_lookups_are_scoped_too() {
        let r = Records::build(&state());
        let client = "222222222222bbbb";
        assert_eq!(r.reverse(client, [10, 1, 0, 2].into()), Some("web.front"));
        assert_eq!(r.reverse(client, [10, 1, 0, 100].into()), Some("api.front"));
        assert_eq!(
            r.reverse(client, [10, 1, 0, 11].into()),
            Some("api.1.front")
        );
        assert_eq!(r.reverse(client, [10, 2, 0, 2].into()), None);
        assert_eq!(r.reverse("c-db", [10, 2, 0, 3].into()), Some("web.back"));
        assert_eq!(r.reverse(client, [172, 17, 0, 2].into()), None);
    }

    #[test]
    fn netd_zones_are_answered_not_forwarded() {
        use Answer::{Addrs, Empty, Forward, NxDomain, Ptr};
        let r = Records::build(&state());
        let client = "222222222222bbbb";
        // Reverse zones of every subnet (all of 10/8 here).
        assert_eq!(
            r.resolve(client, "2.0.1.10.in-addr.arpa."),
            Ptr("web.front")
        );
        assert_eq!(
            r.resolve(client, "2.0.2.10.in-addr.arpa"),
            NxDomain,
            "db's: not on a shared network"
        );
        assert_eq!(r.resolve(client, "77.0.1.10.in-addr.arpa"), NxDomain);
        assert_eq!(r.resolve(client, "x.2.0.1.10.in-addr.arpa"), NxDomain);
        assert_eq!(r.resolve(client, "1.10.in-addr.arpa"), Empty);
        assert_eq!(r.resolve(client, "in-addr.arpa"), Forward);
        assert_eq!(r.resolve(client, "2.17.172.in-addr.arpa"), Forward);
        // The zones of its own networks.
        assert_eq!(
            r.resolve(client, "Web.Front."),
            Addrs(ips(&[[10, 1, 0, 2]]))
        );
        assert_eq!(r.resolve(client, "ghost.front"), NxDomain);
        assert_eq!(r.resolve(client, "x.web.front"), NxDomain);
        assert_eq!(r.resolve(client, "front"), Empty);
        assert_eq!(r.resolve(client, "1.front"), Empty, "api.1.front is below");
        assert_eq!(r.resolve(client, "ghost.back"), Forward, "not its network");
        assert_eq!(r.resolve("c-client2", "ghost.back"), NxDomain);
        assert_eq!(r.resolve(client, "example.com"), Forward);
        assert_eq!(r.resolve("nobody", "ghost.front"), Forward);
    }

    #[test]
    fn only_containers_with_a_way_out_forward() {
        let mut s = state();
        let mut back = (*s.networks["n-back"]).clone();
        back.internal = true;
        s.networks.insert(back.id.clone(), Arc::new(back));
        let r = Records::build(&s);
        assert!(
            !r.forwards("c-db") && !r.forwards("c-client2"),
            "internal only"
        );
        assert!(r.forwards("111111111111aaaa"), "web is on front too");
        assert!(r.forwards("c-loner"), "the default bridge leads out");
        assert!(!r.forwards("nobody"));
        assert!(Records::build(&state()).forwards("c-db"));
    }

    #[test]
    fn services_and_rotating_tasks() {
        let r = Records::build(&state());
        let client = "222222222222bbbb";
        assert_eq!(r.lookup(client, "api"), Some(ips(&[[10, 1, 0, 100]])));
        assert_eq!(r.lookup(client, "API.front"), Some(ips(&[[10, 1, 0, 100]])));
        assert_eq!(r.lookup("c-db", "api"), None);
        assert_eq!(r.lookup("c-db", "tasks.api"), None);
        let all = ips(&[[10, 1, 0, 11], [10, 1, 0, 12], [10, 1, 0, 13]]);
        let mut firsts = Vec::new();
        for _ in 0..6 {
            let got = r.lookup(client, "tasks.api").unwrap();
            let mut sorted = got.clone();
            sorted.sort();
            assert_eq!(sorted, all, "every replica, every time");
            // A rotation of the replica list, never a shuffle.
            let start = all.iter().position(|ip| *ip == got[0]).unwrap();
            let mut expect = all.clone();
            expect.rotate_left(start);
            assert_eq!(got, expect);
            firsts.push(got[0]);
        }
        for ip in &all {
            assert_eq!(
                firsts.iter().filter(|f| *f == ip).count(),
                2,
                "each replica comes first equally often: {firsts:?}"
            );
        }
        // Replicas by name.
        assert_eq!(r.lookup(client, "api.2"), Some(ips(&[[10, 1, 0, 12]])));
    }

    #[test]
    fn a_service_without_replicas_is_ours_and_empty() {
        let mut s = state();
        s.containers = s
            .containers
            .into_iter()
            .filter(|(_, c)| c.services.is_empty())
            .collect();
        let r = Records::build(&s);
        assert_eq!(r.lookup("222222222222bbbb", "tasks.api"), Some(vec![]));
    }

    #[test]
    fn who_gets_a_server() {
        let mut s = state();
        assert!(wants_server(&s, "222222222222bbbb"));
        assert!(wants_server(&s, "c-legacy"));
        assert!(!wants_server(&s, "c-loner"), "default bridge only");
        assert!(!wants_server(&s, "gone"));
        let mut shared = container("c-side", "side", vec![]);
        shared.net = NetMode::Container {
            id: "222222222222bbbb".into(),
        };
        s.containers.insert(shared.id.clone(), Arc::new(shared));
        assert!(
            !wants_server(&s, "c-side"),
            "served by its namespace's owner"
        );
    }
}
