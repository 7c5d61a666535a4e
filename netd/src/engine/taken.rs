//! What a new object must not reuse: each network's addresses (held by
//! endpoints and service VIPs), service names and service indexes.
//!
//! Derived from the state, never stored: built once at start and brought
//! up to date at every commit from the difference between the old and the
//! new state, which the state's persistent maps yield without visiting
//! what the commit left alone. Creating an object then costs no walk over
//! every container and service.
//!
//! Every value is counted by its holders: a commit that hands a value from
//! one object to another may yield the new holder first.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use imbl::ordmap::DiffItem;

use crate::model::{State, Table};

#[derive(Debug, Default, PartialEq)]
pub(super) struct Taken {
    /// Network id -> address -> holders (endpoints and service VIPs).
    addresses: HashMap<String, BTreeMap<Ipv4Addr, u32>>,
    /// Service name -> holders.
    service_names: BTreeMap<String, u32>,
    /// Service index -> holders.
    service_indexes: BTreeMap<u32, u32>,
}

impl Taken {
    pub(super) fn of(state: &State) -> Taken {
        let mut taken = Taken::default();
        taken.update(&State::default(), state);
        taken
    }

    /// Brings `self`, which describes `before`, up to `after`.
    pub(super) fn update(&mut self, before: &State, after: &State) {
        each_change(&before.containers, &after.containers, |c, holds| {
            for e in &c.endpoints {
                self.address(&e.network_id, e.ip, holds);
            }
        });
        each_change(&before.services, &after.services, |s, holds| {
            self.address(&s.network_id, s.vip, holds);
            count(&mut self.service_names, s.name.clone(), holds);
            count(&mut self.service_indexes, s.index, holds);
        });
    }

    /// Whether an endpoint or a VIP on the network `network_id` holds an
    /// address (the network looked up once, for allocations that try
    /// address after address).
    pub(super) fn address_used(&self, network_id: &str) -> impl Fn(Ipv4Addr) -> bool + '_ {
        let held = self.addresses.get(network_id);
        move |ip| held.is_some_and(|held| held.contains_key(&ip))
    }

    pub(super) fn has_service_name(&self, name: &str) -> bool {
        self.service_names.contains_key(name)
    }

    /// The lowest service index from 1 (netd numbers services from 1) that
    /// no service has.
    pub(super) fn free_service_index(&self) -> u32 {
        let indexes = &self.service_indexes;
        let count = indexes.len() as u32 - u32::from(indexes.contains_key(&0));
        // Without gaps (the usual case), the last index tells at once.
        if indexes
            .last_key_value()
            .is_none_or(|(last, _)| *last == count)
        {
            return count + 1;
        }
        (1..)
            .zip(indexes.range(1..))
            .find(|(free, (used, _))| free != *used)
            .map_or(count + 1, |(free, _)| free)
    }

    fn address(&mut self, network_id: &str, ip: Ipv4Addr, holds: bool) {
        match self.addresses.get_mut(network_id) {
            Some(held) => {
                count(held, ip, holds);
                if held.is_empty() {
                    self.addresses.remove(network_id);
                }
            }
            None if holds => {
                self.addresses
                    .insert(network_id.to_string(), BTreeMap::from([(ip, 1)]));
            }
            None => {}
        }
    }
}

/// Calls `f(object, false)` for every object of `before` that `after`
/// replaced or removed, and `f(object, true)` for every object `after`
/// added or replaced.
fn each_change<T>(before: &Table<T>, after: &Table<T>, mut f: impl FnMut(&T, bool))
where
    T: PartialEq,
{
    for item in before.diff(after) {
        match item {
            DiffItem::Add(_, new) => f(new, true),
            DiffItem::Update {
                old: (_, old),
                new: (_, new),
            } => {
                f(old, false);
                f(new, true);
            }
            DiffItem::Remove(_, old) => f(old, false),
        }
    }
}

/// One more (`up`) or one fewer holder of `key`; a key nobody holds goes.
fn count<K: Ord>(counts: &mut BTreeMap<K, u32>, key: K, up: bool) {
    if up {
        *counts.entry(key).or_default() += 1;
    } else if let Some(n) = counts.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{Container, Endpoint, NetMode, Service};

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    fn container(id: &str, addresses: &[u8]) -> Arc<Container> {
        let endpoint = |last: &u8| Endpoint {
            id: format!("ep-{id}-{last}"),
            network_id: "n1".into(),
            ifname: "eth0".into(),
            host_ifname: format!("veth{id}"),
            mac: [2, 0, 0, 0, 0, *last],
            ip: ip(*last),
            prefix_len: 24,
            gateway: ip(1),
            aliases: vec![],
            static_ip: false,
        };
        Arc::new(Container {
            id: id.into(),
            name: format!("name-{id}"),
            created: "2026-01-01T00:00:00Z".into(),
            net: NetMode::Own {
                netns: format!("netd-{id}"),
            },
            network_mode: "n1".into(),
            endpoints: addresses.iter().map(endpoint).collect(),
            process: None,
            ports: vec![],
            services: Vec::new(),
            removing: false,
            labels: Default::default(),
        })
    }

    fn service(id: &str, vip: u8, index: u32) -> Arc<Service> {
        Arc::new(Service {
            id: id.into(),
            name: format!("name-{id}"),
            created: "2026-01-01T00:00:00Z".into(),
            network_id: "n1".into(),
            vip: ip(vip),
            replicas: 0,
            cmd: vec![],
            ports: vec![],
            index,
        })
    }

    /// Follows `states` commit by commit, checking at each that the
    /// updated record is the one built from scratch.
    fn follow(states: &[State]) -> Taken {
        let mut taken = Taken::of(&states[0]);
        for pair in states.windows(2) {
            taken.update(&pair[0], &pair[1]);
            assert_eq!(taken, Taken::of(&pair[1]));
        }
        taken
    }

    #[test]
    fn follows_adds_replacements_and_removals() {
        let s0 = State::default();
        let mut s1 = s0.clone();
        s1.containers.insert("c1".into(), container("c1", &[2, 3]));
        s1.services.insert("s1".into(), service("s1", 4, 1));
        s1.services.insert("s2".into(), service("s2", 5, 2));
        let mut s2 = s1.clone();
        s2.containers.insert("c1".into(), container("c1", &[6]));
        s2.services.remove("s1");
        let taken = follow(&[s0, s1, s2]);
        for (last, held) in [(2, false), (3, false), (4, false), (5, true), (6, true)] {
            assert_eq!(taken.address_used("n1")(ip(last)), held, "10.0.0.{last}");
        }
        assert!(!taken.address_used("n2")(ip(5)));
        assert!(taken.has_service_name("name-s2"));
        assert!(!taken.has_service_name("name-s1"));
        assert_eq!(taken.free_service_index(), 1);
    }

    #[test]
    fn follows_small_changes_to_large_states() {
        // Thousands of entries: the maps' difference skips shared nodes
        // of many levels, unlike in the one-node states above.
        let mut s0 = State::default();
        for i in 0..3000u32 {
            let id = format!("s{i:05}");
            let vip = Ipv4Addr::from(0x0a01_0000 + i);
            let mut svc = Service::clone(&service(&id, 0, i + 1));
            svc.vip = vip;
            s0.services.insert(id, Arc::new(svc));
        }
        for i in 0..250u8 {
            let id = format!("c{i:03}");
            s0.containers.insert(id.clone(), container(&id, &[i]));
        }
        let mut s1 = s0.clone();
        s1.services.remove("s01500");
        s1.services
            .insert("s99999".into(), service("s99999", 254, 1501));
        s1.containers
            .insert("c100".into(), container("c100", &[255]));
        let mut s2 = s1.clone();
        s2.services.remove("s00000");
        s2.containers.remove("c249");
        let taken = follow(&[State::default(), s0, s1, s2]);
        assert_eq!(taken.free_service_index(), 1);
        assert!(!taken.address_used("n1")(ip(100)));
        assert!(!taken.address_used("n1")(ip(249)));
        assert!(taken.address_used("n1")(ip(255)));
        assert!(!taken.has_service_name("name-s01500"));
    }

    #[test]
    fn an_address_handed_over_in_one_commit_stays_held() {
        // The new holder sorts before the old one, so the difference
        // yields its claim first.
        let mut s0 = State::default();
        s0.containers.insert("c9".into(), container("c9", &[7]));
        let mut s1 = s0.clone();
        s1.containers.remove("c9");
        s1.containers.insert("c1".into(), container("c1", &[7]));
        let taken = follow(&[s0, s1]);
        assert!(taken.address_used("n1")(ip(7)));
    }

    #[test]
    fn the_lowest_free_service_index_fills_gaps_first() {
        let mut s = State::default();
        assert_eq!(Taken::of(&s).free_service_index(), 1);
        for (id, index) in [("a", 1), ("b", 2), ("c", 4)] {
            s.services
                .insert(id.into(), service(id, 10 + index as u8, index));
        }
        assert_eq!(Taken::of(&s).free_service_index(), 3);
        s.services.insert("d".into(), service("d", 13, 3));
        assert_eq!(Taken::of(&s).free_service_index(), 5);
        // An index 0 (not netd's own numbering) takes nothing from 1 up.
        s.services.insert("e".into(), service("e", 14, 0));
        assert_eq!(Taken::of(&s).free_service_index(), 5);
        s.services.remove("b");
        assert_eq!(Taken::of(&s).free_service_index(), 2);
    }
}
