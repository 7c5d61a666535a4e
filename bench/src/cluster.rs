//! A cluster of netd hosts on this one machine, built as netd's own
//! cluster tests build theirs: an "underlay" namespace with a bridge, a
//! real etcd in it ([`Etcd`]), and one namespace per host, joined to the
//! bridge by a veth (its `eth0`: the host's uplink and underlay), each
//! running a netd daemon of its own in cluster mode ([`Daemon::start_in`]).
//! Other namespaces join the same underlay with [`Cluster::attach`]: the
//! baselines' hosts and an "outside" client, so that every system's
//! packets cross the same bridge.
//!
//! Names: namespaces `<tag>-<what>` (the bench's sweep removes leftovers),
//! the hosts' daemons `c<p><ii>` (`p` from the bench's pid, `ii` the host's
//! index): four characters like the single daemon's `bd..`, and never a
//! prefix of it. Dropping the cluster stops every daemon, then etcd, then
//! removes the namespaces.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, say};
use crate::daemon::Daemon;
use crate::etcd::Etcd;
use crate::netns::Netns;

/// The underlay's /24 (first three octets); the bridge and etcd take .1.
const UNDERLAY_NET: &str = "198.19.48";
/// Host `i` is at `.HOST_BASE + i`.
const HOST_BASE: u8 = 11;
/// Room for hosts below the addresses [`Cluster::attach`] hands out to
/// other namespaces (`.OTHER_BASE` and up).
pub const MAX_HOSTS: usize = 89;
const OTHER_BASE: u8 = 101;
/// How long a new host may take to join.
const JOIN_WAIT: Duration = Duration::from_secs(60);
/// How long [`via_store`] tries again.
const STORE_WAIT: Duration = Duration::from_secs(30);
/// Calls [`via_store`] had to make again.
static STORE_RETRIES: AtomicUsize = AtomicUsize::new(0);

/// One host: its daemon (which owns the host's namespace) and its
/// underlay address.
pub struct Host {
    pub daemon: Daemon,
    pub addr: Ipv4Addr,
    /// The host's namespace.
    pub netns: String,
}

pub struct Cluster {
    /// First to go: the daemons, each with its host namespace.
    pub hosts: Vec<Host>,
    pub etcd: Etcd,
    /// Namespaces attached with [`Cluster::attach`] live in their owners'
    /// guards; the underlay goes last.
    pub underlay: Netns,
    tag: String,
    netd: PathBuf,
    lease_ttl_secs: u64,
    /// Next free address for [`Cluster::attach`].
    next_other: u8,
}

impl Cluster {
    /// The underlay and etcd, and `hosts` hosts up and joined, whose
    /// leases live `lease_ttl_secs` (`--cluster-lease-ttl`).
    pub fn start(netd: &Path, tag: &str, hosts: usize, lease_ttl_secs: u64) -> Result<Cluster> {
        let underlay = Netns::create(&format!("{tag}-u"))?;
        underlay.ip(&["link", "add", "br0", "type", "bridge"])?;
        underlay.ip(&["addr", "add", &format!("{UNDERLAY_NET}.1/24"), "dev", "br0"])?;
        underlay.ip(&["link", "set", "br0", "up"])?;
        let etcd = Etcd::start(&underlay, format!("{UNDERLAY_NET}.1").parse()?)?;
        let mut cluster = Cluster {
            hosts: Vec::new(),
            etcd,
            underlay,
            tag: tag.to_string(),
            netd: netd.to_path_buf(),
            lease_ttl_secs,
            next_other: OTHER_BASE,
        };
        for _ in 0..hosts {
            cluster.add_host()?;
        }
        Ok(cluster)
    }

    /// One more host, up and joined.
    pub fn add_host(&mut self) -> Result<&Host> {
        let i = self.hosts.len();
        if i >= MAX_HOSTS {
            bail!("the underlay has room for {MAX_HOSTS} hosts");
        }
        let last = HOST_BASE + i as u8;
        let netns = self.attach(&format!("h{i}"), last)?;
        let name = netns.name.clone();
        let pid_char = &cmd::base36(std::process::id() % 36);
        let prefix = format!("c{pid_char}{:0>2}", cmd::base36(i as u32));
        let ttl = self.lease_ttl_secs.to_string();
        let daemon = Daemon::start_in(
            &self.netd,
            netns,
            prefix,
            &[
                "--cluster-store",
                &self.etcd.url(),
                "--cluster-lease-ttl",
                &ttl,
            ],
        )?;
        let host = Host {
            daemon,
            addr: format!("{UNDERLAY_NET}.{last}").parse()?,
            netns: name,
        };
        wait_joined(&host)?;
        self.hosts.push(host);
        Ok(self.hosts.last().expect("just pushed"))
    }

    /// The start of the names of this cluster's namespaces.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// A namespace `<tag>-<name>` on the underlay, with the next free
    /// address above the hosts'.
    pub fn attach_other(&mut self, name: &str) -> Result<Netns> {
        let last = self.next_other;
        if last == u8::MAX {
            bail!("no address left on the underlay");
        }
        self.next_other += 1;
        self.attach(name, last)
    }

    /// A namespace `<tag>-<name>` joined to the underlay bridge by a veth
    /// (`p<last>` on the bridge, `eth0` inside with `.last`/24).
    fn attach(&self, name: &str, last: u8) -> Result<Netns> {
        let ns = Netns::create(&format!("{}-{name}", self.tag))?;
        let port = format!("p{last}");
        self.underlay.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ])?;
        self.underlay
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{UNDERLAY_NET}.{last}/24"),
            "dev",
            "eth0",
        ])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        Ok(ns)
    }

    /// Creates overlay network `name` on `subnet` through host 0 and waits
    /// until every host has it.
    pub fn create_overlay(&self, name: &str, subnet: &str) -> Result<()> {
        let first = self.hosts.first().context("a cluster without hosts")?;
        via_store(|| first.daemon.api().create_overlay(name, subnet))?;
        for host in &self.hosts {
            wait_network(host, name)?;
        }
        Ok(())
    }
}

/// `call` (an API call that goes through the cluster store), made again
/// while the daemon answers that the store is out of reach, for at most
/// [`STORE_WAIT`]. A daemon drops its connection to etcd when an HTTP/2
/// ping goes unanswered for its call timeout, which a machine busy with
/// traffic can cause, and fails the calls made before it has reconnected
/// by itself; the bench counts those ([`store_retries`]) rather than end
/// the run.
pub fn via_store<T>(mut call: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + STORE_WAIT;
    loop {
        match call() {
            Err(e) if format!("{e:#}").contains("cluster store") && Instant::now() < deadline => {
                STORE_RETRIES.fetch_add(1, Ordering::Relaxed);
                say!("    the cluster store was out of reach, again in a moment: {e:#}");
                cmd::check_interrupted()?;
                std::thread::sleep(Duration::from_millis(500));
            }
            result => return result,
        }
    }
}

/// How many calls [`via_store`] made again so far in this run.
pub fn store_retries() -> usize {
    STORE_RETRIES.load(Ordering::Relaxed)
}

/// Until `host` has network `name` (from the store's watch).
pub fn wait_network(host: &Host, name: &str) -> Result<()> {
    let api = host.daemon.api();
    cmd::wait_until(
        &format!("network {name} on {}", host.netns),
        JOIN_WAIT,
        || {
            api.request("GET", &format!("/networks/{name}"), None)
                .is_ok_and(|(s, _)| s == 200)
        },
    )
}

/// Until `host`'s daemon is a member of the cluster (`netd cluster ls`
/// shows it up).
fn wait_joined(host: &Host) -> Result<()> {
    let api = host.daemon.api();
    cmd::wait_until(&format!("{} joining", host.netns), JOIN_WAIT, || {
        api.call("GET", "/cluster/hosts", None).is_ok_and(|hosts| {
            hosts
                .as_array()
                .into_iter()
                .flatten()
                .any(|h| h["Self"].as_bool() == Some(true) && h["State"].as_str() == Some("up"))
        })
    })?;
    say!("{} joined the cluster at {}", host.netns, host.addr);
    Ok(())
}

impl Host {
    /// Takes the host's underlay link down or up (a host lost from the
    /// network, or back).
    pub fn set_link(&self, up: bool) -> Result<()> {
        cmd::output(Command::new("ip").args([
            "-n",
            &self.netns,
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]))?;
        Ok(())
    }
}
