//! The check after each restart: what the client saw acknowledged against
//! the store, and the store against the kernel. Each finding is a
//! violation, described for the report; none is expected.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use aya::maps::{HashMap, LpmTrie, Map, MapData};
use netd::model::{Container, NetMode, State};
use netd_common::lb::{SLOT_FRONTEND, SvcKey, SvcSlot};
use netd_common::{EndpointInfo, NetworkInfo, PublishKey, PublishTarget, map_names};

use crate::common::{Daemon, alive, ip_json};
use crate::model::{Fact, Model, named};

/// How long removals a restart resumed may take to finish (their
/// processes get SIGTERM, which `sleep` obeys at once).
const SETTLE: Duration = Duration::from_secs(60);

pub fn check(d: &Daemon, model: &Model, mark: &str) -> Vec<String> {
    let state = match settle(d) {
        Ok(state) => state,
        Err(e) => return vec![e],
    };
    let bridges = state
        .networks
        .values()
        .filter(|n| n.driver == "bridge")
        .count();
    let mut found = acknowledged(model, &state);
    found.extend(d.inconsistencies(bridges));
    found.extend(replicas(&state));
    found.extend(processes(d, &state, mark));
    found.extend(resolv_dirs(d, &state));
    found.extend(datapath(d, &state));
    found
}

/// The state once the removals the restart resumed (containers marked
/// `removing` whose process still ran) are done: none is marked any more,
/// and the daemon lists what the store holds (it answers from the state
/// of the last command that finished, kernel work included).
fn settle(d: &Daemon) -> Result<State, String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let state = d
            .persisted()
            .map_err(|e| format!("the state does not load: {e}"))?;
        let removing: Vec<&str> = state
            .containers
            .values()
            .filter(|c| c.removing)
            .map(|c| c.name.as_str())
            .collect();
        let listed: BTreeSet<String> = d
            .containers()
            .iter()
            .filter_map(|c| Some(c["Name"].as_str()?.trim_start_matches('/').to_string()))
            .collect();
        let stored: BTreeSet<String> = state.containers.values().map(|c| c.name.clone()).collect();
        if removing.is_empty() && listed == stored {
            return Ok(state);
        }
        if Instant::now() > deadline {
            return Err(format!("removals never finished: {removing:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every acknowledged creation is there, every acknowledged removal is not.
fn acknowledged(model: &Model, state: &State) -> Vec<String> {
    let mut found = Vec::new();
    let mut expect = |what: String, fact: Fact, there: bool| match (fact, there) {
        (Fact::Present, false) => found.push(format!("acknowledged {what} lost")),
        (Fact::Absent, true) => found.push(format!("acknowledged removal of {what} undone")),
        _ => {}
    };
    for (name, n) in &model.networks {
        expect(
            format!("network {name}"),
            n.fact,
            named(&state.networks, name).is_some(),
        );
    }
    for (name, s) in &model.services {
        let stored = named(&state.services, name);
        expect(format!("service {name}"), s.fact, stored.is_some());
        let (Some(stored), Fact::Present) = (stored, s.fact) else {
            continue;
        };
        if let Some(r) = s.replicas
            && stored.replicas != r
        {
            expect(format!("scale of {name} to {r}"), Fact::Present, false);
        }
        if let Some(p) = s.port {
            expect(
                format!("port {p} of service {name}"),
                Fact::Present,
                stored.ports.iter().any(|b| b.host_port == p),
            );
        }
    }
    for (name, c) in &model.containers {
        let stored = named(&state.containers, name);
        expect(format!("container {name}"), c.fact, stored.is_some());
        let (Some(stored), Fact::Present) = (stored, c.fact) else {
            continue;
        };
        let on = |network: &str| {
            named(&state.networks, network)
                .is_some_and(|n| stored.endpoints.iter().any(|ep| ep.network_id == n.id))
        };
        expect(
            format!("endpoint of {name} on {}", c.network),
            Fact::Present,
            on(&c.network),
        );
        for (network, fact) in &c.connected {
            expect(
                format!("connection of {name} to {network}"),
                *fact,
                on(network),
            );
        }
        if c.running {
            expect(
                format!("process of {name}"),
                Fact::Present,
                running(stored).is_some(),
            );
        }
        if let Some(p) = c.port {
            expect(
                format!("port {p} of {name}"),
                Fact::Present,
                stored.ports.iter().any(|b| b.host_port == p),
            );
        }
        if let Some(service) = &c.service
            && let Some(svc) = named(&state.services, service)
        {
            expect(
                format!("membership of {name} in {service}"),
                Fact::Present,
                stored.backs(&svc.id),
            );
        }
    }
    found
}

/// The recorded process of `c`, if it is the one that runs.
fn running(c: &Container) -> Option<u32> {
    let p = c.process.as_ref()?;
    let pid = p.pid?;
    netd::process::running(pid, p.started.as_ref()?).then_some(pid)
}

/// Every service has exactly its replicas `NAME.1`..`NAME.N`, running, in
/// its rotation; no container named like a replica (only replicas have a
/// `.` in their names here) outlives its service or its count.
fn replicas(state: &State) -> Vec<String> {
    let mut found = Vec::new();
    for s in state.services.values() {
        for i in 1..=s.replicas {
            let name = format!("{}.{i}", s.name);
            match named(&state.containers, &name) {
                None => found.push(format!("replica {name} is missing")),
                Some(c) if !c.backs(&s.id) => {
                    found.push(format!("replica {name} is out of its service"))
                }
                Some(c) if running(c).is_none() => {
                    found.push(format!("replica {name} does not run"))
                }
                Some(_) => {}
            }
        }
    }
    for c in state.containers.values() {
        let Some((service, i)) = c.name.rsplit_once('.') else {
            continue;
        };
        let count = named(&state.services, service).map_or(0, |s| s.replicas);
        if i.parse::<u32>().is_ok_and(|i| i > count) {
            found.push(format!(
                "container {} is left over from service {service} (now {count} replicas)",
                c.name
            ));
        }
    }
    found
}

/// Every process the daemon started (they all carry `mark` in their
/// environment) is the recorded process of a container, and every
/// recorded process runs.
fn processes(d: &Daemon, state: &State, mark: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut recorded = BTreeSet::new();
    for c in state.containers.values() {
        match (running(c), c.process.as_ref().and_then(|p| p.pid)) {
            (Some(pid), _) => {
                recorded.insert(pid);
            }
            (None, Some(pid)) => found.push(format!("the process {pid} of {} ended", c.name)),
            (None, None) => {}
        }
    }
    for pid in marked_processes(mark) {
        if pid != d.pid() && alive(pid) && !recorded.contains(&pid) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            found.push(format!(
                "process {pid} ({}) belongs to no container",
                String::from_utf8_lossy(&cmdline).replace('\0', " ").trim()
            ));
        }
    }
    found
}

/// The pids whose environment holds `mark` (`NAME=VALUE`).
pub fn marked_processes(mark: &str) -> Vec<u32> {
    let needle = format!("{mark}\0");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// No container's resolv.conf directory (`/etc/netns/NETNS`) outlives it.
fn resolv_dirs(d: &Daemon, state: &State) -> Vec<String> {
    let namespaces: BTreeSet<&str> = state
        .containers
        .values()
        .filter_map(|c| match &c.net {
            NetMode::Own { netns } => Some(netns.as_str()),
            _ => None,
        })
        .collect();
    let own = format!("{}-", d.prefix);
    std::fs::read_dir("/etc/netns")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&own) && !namespaces.contains(n.as_str()))
                .map(|n| format!("/etc/netns/{n} belongs to no container"))
                .collect()
        })
        .unwrap_or_default()
}

/// The pinned maps hold exactly the state's entries: endpoints (by
/// address and by host-side ifindex), subnets, published ports and
/// services with their backends.
fn datapath(d: &Daemon, state: &State) -> Vec<String> {
    let mut found = Vec::new();
    let mut compare = |what: &str, pinned: Result<BTreeSet<String>, String>, want| match pinned {
        Err(e) => found.push(format!("cannot read {what}: {e}")),
        Ok(pinned) if pinned != want => {
            let extra: Vec<_> = pinned.difference(&want).collect();
            let missing: Vec<_> = want.difference(&pinned).collect();
            found.push(format!("{what}: extra {extra:?}, missing {missing:?}"));
        }
        Ok(_) => {}
    };
    let ifindexes: BTreeMap<String, u64> = ip_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["ifname"].as_str().unwrap().to_string(),
                l["ifindex"].as_u64().unwrap(),
            )
        })
        .collect();
    let endpoints: Vec<_> = state
        .containers
        .values()
        .flat_map(|c| &c.endpoints)
        .collect();
    compare(
        map_names::EP_MAP,
        keys::<u32, EndpointInfo>(d, map_names::EP_MAP).map(|k| k.into_iter().map(addr).collect()),
        endpoints.iter().map(|ep| ep.ip.to_string()).collect(),
    );
    compare(
        map_names::EP_BY_IF,
        keys::<u32, EndpointInfo>(d, map_names::EP_BY_IF)
            .map(|k| k.iter().map(u32::to_string).collect()),
        endpoints
            .iter()
            .map(|ep| {
                ifindexes
                    .get(&ep.host_ifname)
                    .map_or_else(|| format!("no link {}", ep.host_ifname), u64::to_string)
            })
            .collect(),
    );
    compare(
        map_names::NET_LPM,
        subnets(d),
        state
            .networks
            .values()
            .filter(|n| n.driver == "bridge")
            .filter_map(|n| Some(n.ipam.as_ref()?.subnet.to_string()))
            .collect(),
    );
    compare(
        map_names::PUBLISH,
        keys::<PublishKey, PublishTarget>(d, map_names::PUBLISH).map(|k| {
            k.iter()
                .map(|k| format!("{}:{}/{}", addr(k.addr), u16::from_be(k.port), k.proto))
                .collect()
        }),
        state
            .containers
            .values()
            .flat_map(|c| &c.ports)
            .chain(state.services.values().flat_map(|s| &s.ports))
            .map(|b| format!("{}/{}", b.host_side(), b.proto.number()))
            .collect(),
    );
    compare(
        map_names::LB_SVC,
        services(d),
        state
            .services
            .values()
            .flat_map(|s| {
                let backends = state
                    .replicas_of(&s.id)
                    .iter()
                    .filter(|c| c.endpoints.iter().any(|ep| ep.network_id == s.network_id))
                    .count();
                (1..=backends)
                    .map(move |slot| format!("{}#{slot}", s.vip))
                    .chain([format!("{} with {backends} backends", s.vip)])
            })
            .collect(),
    );
    found
}

fn addr(be: u32) -> String {
    Ipv4Addr::from(be.to_ne_bytes()).to_string()
}

fn pinned(d: &Daemon, name: &str) -> Result<Map, String> {
    let data = MapData::from_pin(d.bpffs.join("maps").join(name)).map_err(|e| e.to_string())?;
    Map::from_map_data(data).map_err(|e| e.to_string())
}

/// The keys of the pinned hash map `name`.
fn keys<K: aya::Pod, V: aya::Pod>(d: &Daemon, name: &str) -> Result<Vec<K>, String> {
    let map: HashMap<MapData, K, V> =
        HashMap::try_from(pinned(d, name)?).map_err(|e| e.to_string())?;
    map.keys()
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// `NET_LPM`'s subnets.
fn subnets(d: &Daemon) -> Result<BTreeSet<String>, String> {
    let trie: LpmTrie<MapData, u32, NetworkInfo> =
        LpmTrie::try_from(pinned(d, map_names::NET_LPM)?).map_err(|e| e.to_string())?;
    trie.keys()
        .map(|k| {
            k.map(|k| format!("{}/{}", addr(k.data()), k.prefix_len()))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// `LB_SVC`'s every-port entries: `VIP with N backends` for a frontend
/// (its count), `VIP#SLOT` for a backend.
fn services(d: &Daemon) -> Result<BTreeSet<String>, String> {
    let map: HashMap<MapData, SvcKey, SvcSlot> =
        HashMap::try_from(pinned(d, map_names::LB_SVC)?).map_err(|e| e.to_string())?;
    map.iter()
        .map(|kv| {
            let (k, v) = kv.map_err(|e| e.to_string())?;
            Ok(match k.slot {
                SLOT_FRONTEND => format!("{} with {} backends", addr(k.vip), v.count),
                slot => format!("{}#{slot}", addr(k.vip)),
            })
        })
        .collect()
}
