//! What readers see: the state as of the last command the engine finished,
//! immutable, shared by reference. `ls`, `inspect`, stats and metrics take
//! the latest one and never wait for the engine; a command in progress
//! publishes the next one when it is done.

use std::path::PathBuf;
use std::sync::Arc;

use crate::drivers::Drivers;
use crate::error::{EngineError, Result};
use crate::model::{Container, NetMode, Network, Service, Start, State, Table};
use crate::netlink::Netns;
use crate::process;

use super::spec::NetworkFilters;

/// The host-side interface of an endpoint (a veth's host end), as the
/// kernel numbers it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    /// The element of the datapath's per-endpoint arrays (its counters).
    pub slot: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: Arc<State>,
    /// Endpoint id -> its host-side interface, for endpoints that have one.
    pub links: Table<Link>,
    pub drivers: Arc<Drivers>,
    log_dir: PathBuf,
    /// This host's part in the cluster, in cluster mode.
    pub cluster: Option<super::ClusterStatus>,
}

impl Snapshot {
    pub(super) fn new(
        state: Arc<State>,
        links: Table<Link>,
        drivers: Arc<Drivers>,
        log_dir: PathBuf,
        cluster: Option<super::ClusterStatus>,
    ) -> Snapshot {
        Snapshot {
            state,
            links,
            drivers,
            log_dir,
            cluster,
        }
    }

    /// A snapshot of `state` with this build's drivers, for tests of what
    /// reads snapshots.
    #[cfg(test)]
    pub(crate) fn of_state(state: State) -> Snapshot {
        Snapshot::new(
            Arc::new(state),
            Table::new(),
            Arc::new(Drivers::builtin()),
            PathBuf::new(),
            None,
        )
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

    pub fn service(&self, key: &str) -> Result<&Service> {
        self.state
            .find_service(key)
            .ok_or_else(|| EngineError::service_not_found(key))
    }

    /// Docker's scope of a network (`local`, `swarm`).
    pub fn scope(&self, n: &Network) -> &'static str {
        self.drivers.get(&n.driver).map_or("local", |d| d.scope())
    }

    /// The pid of the container's process while it runs.
    pub fn running_pid(&self, c: &Container) -> Option<u32> {
        running_pid(c)
    }

    /// Path of the network namespace a container's processes run in, `None`
    /// for `--network host`.
    pub fn sandbox_path(&self, c: &Container) -> Option<PathBuf> {
        sandbox_of(&self.state, c).map(|ns| ns.path())
    }

    /// Where a container's process output goes.
    pub fn log_path(&self, c: &Container) -> PathBuf {
        log_path(&self.log_dir, c)
    }

    /// Docker's `State.Status` of a container.
    pub fn status(&self, c: &Container) -> &'static str {
        if c.removing {
            "removing"
        } else if self.running_pid(c).is_some() {
            "running"
        } else if c.process.is_some() {
            "exited"
        } else {
            "created"
        }
    }
}

/// The pid of the container's process while it runs: the recorded pid
/// still names the process it started (`process::running`). A record
/// without its start names no running process (`reconcile` gives the
/// daemon's start a chance to add it).
pub(super) fn running_pid(c: &Container) -> Option<u32> {
    let (pid, start) = recorded(c)?;
    process::running(pid, start).then_some(pid)
}

/// The container's process, held by a pidfd, while it runs.
pub(super) fn hold(c: &Container) -> Option<process::Held> {
    let (pid, start) = recorded(c)?;
    process::hold(pid, start)
}

fn recorded(c: &Container) -> Option<(u32, &Start)> {
    let p = c.process.as_ref()?;
    Some((p.pid?, p.started.as_ref()?))
}

/// The namespace a container's interfaces and processes live in; `None` for
/// `--network host`.
pub(super) fn sandbox_of(state: &State, c: &Container) -> Option<Netns> {
    match &c.net {
        NetMode::Own { netns } => Some(Netns::Named(netns.clone())),
        NetMode::Path { path } => Some(Netns::Path(path.clone())),
        NetMode::Host => None,
        NetMode::Container { id } => state
            .containers
            .get(id)
            .and_then(|owner| sandbox_of(state, owner)),
    }
}

pub(super) fn log_path(log_dir: &std::path::Path, c: &Container) -> PathBuf {
    log_dir.join(format!("{}.log", c.id))
}

fn matches_filters(n: &Network, f: &NetworkFilters) -> bool {
    let any = |values: &[String], pred: &dyn Fn(&str) -> bool| {
        values.is_empty() || values.iter().any(|v| pred(v))
    };
    any(&f.name, &|v| n.name.contains(v))
        && any(&f.id, &|v| n.id.starts_with(v))
        && any(&f.driver, &|v| n.driver == v)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn net(name: &str, labels: &[(&str, &str)], predefined: bool) -> Network {
        Network {
            id: format!("{name}0000"),
            name: name.into(),
            driver: "bridge".into(),
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
}
