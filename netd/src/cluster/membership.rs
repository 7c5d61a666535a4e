//! This host's membership: a lease kept alive by a background task, the
//! host record bound to it, and the listing of every host, up or down.
//!
//! Lease loss (etcd out of reach for longer than the TTL, or a long pause
//! of this process): the task grants a new lease and puts the host record
//! again by itself, and bumps `LeaseStatus::lease`. The endpoint records
//! bound to the old lease are gone by then; the engine re-announces its
//! endpoints with [`Member::restore_endpoint`] whenever it sees `lease`
//! change (`Member::lease` is a watch channel).
//!
//! A restarted daemon takes over its previous lease when that is still
//! alive (the known-hosts record names it), so a restart within the TTL
//! removes nothing and peers see no change.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use etcd_client::{LeaseKeepAliveStream, LeaseKeeper, PutOptions, TxnOp};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::keys::{RecordId, key_safe};
use super::records::{EndpointRecord, Event, HostRecord, KnownHost, decode, encode};
use super::watch::WatchItem;
use super::{Cluster, ClusterError, Get, Result, absent, now, unchanged};

/// Who this host is in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// Stable across restarts (the daemon keeps it in its state directory):
    /// a restart takes over the lease and records of the same id. So it
    /// must be unique per host: two daemons with one id would share a lease
    /// and overwrite each other's host record.
    pub id: String,
    /// Where other hosts send overlay traffic for this one.
    pub addr: Ipv4Addr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed at the last attempt.
    Alive,
    /// The last renewal got no answer; the lease may still be alive in
    /// etcd (which also extends leases when it restarts).
    Unreachable,
    /// etcd said the lease is gone; a new one is being granted.
    Lost,
}

/// The lease as the keep-alive task last saw it, for metrics and for the
/// engine to notice a new lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    pub state: LeaseState,
    /// The lease id records are bound to; changes after a loss.
    pub lease: i64,
    /// Successful renewals since join.
    pub renewals: u64,
    /// Times the lease was found gone.
    pub losses: u64,
}

/// A host as `netd cluster ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    pub id: String,
    pub addr: Ipv4Addr,
    /// Its lease-bound record exists.
    pub up: bool,
    /// When it last joined (RFC 3339).
    pub joined: String,
    /// For a host that is down: when a peer saw its lease go; `None` if no
    /// host was there to see it.
    pub last_seen: Option<String>,
    /// Endpoint records it holds.
    pub endpoints: usize,
}

/// This host, joined. Dropping it stops the keep-alive: its records go
/// when the lease expires (a daemon that stops keeps them through a
/// restart that way, and a host that dies loses them).
pub struct Member {
    pub(super) cluster: Cluster,
    pub(super) host: HostSpec,
    status: watch::Receiver<LeaseStatus>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("host", &self.host)
            .field("lease", &*self.status.borrow())
            .finish()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Member {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn host(&self) -> &HostSpec {
        &self.host
    }

    /// The lease's state, updated by the keep-alive task.
    pub fn lease(&self) -> watch::Receiver<LeaseStatus> {
        self.status.clone()
    }

    /// The lease to bind new records to; none while it is being replaced.
    pub(super) fn current_lease(&self) -> Result<i64> {
        let status = self.status.borrow();
        match status.state {
            LeaseState::Lost => Err(ClusterError::NotMember),
            LeaseState::Alive | LeaseState::Unreachable => Ok(status.lease),
        }
    }
}

impl Cluster {
    /// Joins the cluster as `host`: takes over its previous lease if that
    /// is still alive, else grants one (`lease_ttl`), puts the host record
    /// bound to it and the known-hosts record, and starts the task that
    /// keeps the lease alive (renewing every third of the TTL).
    pub async fn join(&self, host: HostSpec) -> Result<Member> {
        key_safe("host id", &host.id)?;
        let mut read = self
            .read(vec![Get::Key(self.keys.known_host(&host.id))])
            .await?;
        let previous = read
            .found
            .remove(0)
            .first()
            .and_then(|kv| decode::<KnownHost>(kv.key(), kv.value()));
        let mut adopted = None;
        if let Some(known) = previous {
            match self.keep_alive(known.lease).await {
                Ok(stream) => adopted = Some((known.lease, stream)),
                Err(ClusterError::NotMember) => {}
                Err(e) => return Err(e),
            }
        }
        let (lease, stream) = match adopted {
            Some((lease, stream)) => {
                info!(host = %host.id, lease, "took over the previous cluster lease");
                (lease, Some(stream))
            }
            None => (self.grant().await?, None),
        };
        let revision = self.announce(&host, lease).await?;
        let (tx, status) = watch::channel(LeaseStatus {
            state: LeaseState::Alive,
            lease,
            renewals: 0,
            losses: 0,
        });
        let keeper = KeepAlive {
            cluster: self.clone(),
            host: host.clone(),
            stream,
            status: tx,
        };
        let task = tokio::spawn(keeper.run(revision));
        info!(host = %host.id, addr = %host.addr, lease, "joined the cluster");
        Ok(Member {
            cluster: self.clone(),
            host,
            status,
            task,
        })
    }

    /// The TTL in etcd's unit, whole seconds, rounded up.
    fn lease_ttl_secs(&self) -> i64 {
        self.cfg.lease_ttl.as_secs_f64().ceil().max(1.0) as i64
    }

    async fn grant(&self) -> Result<i64> {
        let mut client = self.client.clone();
        let ttl = self.lease_ttl_secs();
        Ok(self.call(client.lease_grant(ttl, None)).await?.id())
    }

    /// Puts the host record (bound to `lease`) and the known-hosts record;
    /// the revision it was written at.
    async fn announce(&self, host: &HostSpec, lease: i64) -> Result<i64> {
        let joined = now();
        let alive = HostRecord {
            id: host.id.clone(),
            addr: host.addr,
            joined: joined.clone(),
        };
        let known = KnownHost {
            addr: host.addr,
            joined,
            lease,
            last_seen: None,
        };
        let txn = etcd_client::Txn::new().and_then(vec![
            TxnOp::put(
                self.keys.host(&host.id),
                encode(&alive),
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(self.keys.known_host(&host.id), encode(&known), None),
        ]);
        let resp = self.txn(txn).await?;
        Ok(super::revision_of(resp.header()))
    }

    /// Opens a keep-alive stream of `lease`, which renews it once;
    /// `NotMember` when the lease is gone.
    async fn keep_alive(&self, lease: i64) -> Result<(LeaseKeeper, LeaseKeepAliveStream)> {
        let mut client = self.client.clone();
        self.call(client.lease_keep_alive(lease)).await
    }

    /// Every host that ever joined, up or down, by id.
    pub async fn hosts(&self) -> Result<Vec<HostStatus>> {
        let k = &self.keys;
        let read = self
            .read(vec![
                Get::Prefix(k.known_hosts()),
                Get::Prefix(k.hosts()),
                Get::Prefix(k.endpoints()),
            ])
            .await?;
        let [known, alive, endpoints] = &read.found[..] else {
            unreachable!("three reads")
        };
        let up: BTreeMap<String, HostRecord> = alive
            .iter()
            .filter_map(|kv| decode::<HostRecord>(kv.key(), kv.value()))
            .map(|h| (h.id.clone(), h))
            .collect();
        let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
        for e in endpoints
            .iter()
            .filter_map(|kv| decode::<EndpointRecord>(kv.key(), kv.value()))
        {
            *per_host.entry(e.host).or_default() += 1;
        }
        let mut hosts: BTreeMap<String, HostStatus> = BTreeMap::new();
        for kv in known {
            let id = String::from_utf8_lossy(kv.key());
            let Some(id) = id.strip_prefix(&k.known_hosts()) else {
                continue;
            };
            if let Some(h) = decode::<KnownHost>(kv.key(), kv.value()) {
                hosts.insert(
                    id.to_string(),
                    HostStatus {
                        id: id.to_string(),
                        addr: h.addr,
                        up: false,
                        joined: h.joined,
                        last_seen: h.last_seen,
                        endpoints: 0,
                    },
                );
            }
        }
        // The lease-bound record is the truth about being up (a known-hosts
        // record may be missing if someone deleted it by hand).
        for (id, h) in up {
            hosts.insert(
                id.clone(),
                HostStatus {
                    id,
                    addr: h.addr,
                    up: true,
                    joined: h.joined,
                    last_seen: None,
                    endpoints: 0,
                },
            );
        }
        for h in hosts.values_mut() {
            h.endpoints = per_host.get(&h.id).copied().unwrap_or(0);
        }
        Ok(hosts.into_values().collect())
    }

    /// Notes on a peer's known-hosts record when its lease went, unless it
    /// is back already or another host noted it first.
    async fn note_gone(&self, id: &str) -> Result<()> {
        let k = &self.keys;
        let read = self
            .read(vec![Get::Key(k.known_host(id)), Get::Key(k.host(id))])
            .await?;
        let [known, alive] = &read.found[..] else {
            unreachable!("two reads")
        };
        let Some(kv) = known.first() else {
            return Ok(());
        };
        let Some(mut record) = decode::<KnownHost>(kv.key(), kv.value()) else {
            return Ok(());
        };
        if !alive.is_empty() || record.last_seen.is_some() {
            return Ok(());
        }
        record.last_seen = Some(now());
        self.commit(
            vec![
                unchanged(k.known_host(id), kv.mod_revision()),
                absent(k.host(id)),
            ],
            vec![TxnOp::put(k.known_host(id), encode(&record), None)],
        )
        .await?;
        Ok(())
    }
}

/// The background task of a member: renews the lease, replaces it when it
/// is gone, and notes when peers go.
struct KeepAlive {
    cluster: Cluster,
    host: HostSpec,
    stream: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    status: watch::Sender<LeaseStatus>,
}

impl KeepAlive {
    async fn run(mut self, joined_at: i64) {
        // A third of the TTL: two renewals may be lost before the lease is.
        let ttl = Duration::from_secs(self.cluster.lease_ttl_secs() as u64);
        let mut tick = tokio::time::interval(ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; the join just renewed.
        tick.tick().await;
        let mut peers = self.cluster.watch_hosts(joined_at);
        loop {
            tokio::select! {
                _ = tick.tick() => self.renew().await,
                item = peers.next() => match item {
                    WatchItem::Changes { events, .. } => self.peers_changed(&events).await,
                    WatchItem::Compacted { .. } => {
                        // Departures in the gap go unnoted; follow from now.
                        if let Ok(read) = self.cluster.read(vec![]).await {
                            peers = self.cluster.watch_hosts(read.revision);
                        }
                    }
                    WatchItem::Disconnected(_) | WatchItem::Reconnected => {}
                },
            }
        }
    }

    async fn renew(&mut self) {
        let lease = self.status.borrow().lease;
        if self.status.borrow().state == LeaseState::Lost {
            return self.replace().await;
        }
        let renewed = match self.stream.take() {
            // Opening a stream renews once.
            None => self.cluster.keep_alive(lease).await.map(|s| {
                self.stream = Some(s);
            }),
            Some((mut keeper, mut stream)) => {
                let answer = self
                    .cluster
                    .call(async {
                        keeper.keep_alive().await?;
                        stream.message().await
                    })
                    .await;
                match answer {
                    Ok(Some(resp)) if resp.ttl() > 0 => {
                        self.stream = Some((keeper, stream));
                        Ok(())
                    }
                    Ok(Some(_)) => Err(ClusterError::NotMember),
                    Ok(None) => Err(ClusterError::Unavailable {
                        store: self.cluster.cfg.store.shown.clone(),
                        cause: "etcd closed the keep-alive stream".into(),
                    }),
                    Err(e) => Err(e),
                }
            }
        };
        match renewed {
            Ok(()) => self.status.send_modify(|s| {
                s.state = LeaseState::Alive;
                s.renewals += 1;
            }),
            Err(ClusterError::NotMember) => {
                warn!(
                    lease,
                    "the cluster lease expired: this host's records are gone; rejoining"
                );
                self.status.send_modify(|s| {
                    s.state = LeaseState::Lost;
                    s.losses += 1;
                });
                self.replace().await;
            }
            Err(e) => {
                if self.status.borrow().state == LeaseState::Alive {
                    warn!(error = %e, "cannot renew the cluster lease");
                }
                self.status
                    .send_modify(|s| s.state = LeaseState::Unreachable);
            }
        }
    }

    /// Grants a new lease and announces the host again on it.
    async fn replace(&mut self) {
        let joined = async {
            let lease = self.cluster.grant().await?;
            self.cluster.announce(&self.host, lease).await?;
            Ok::<_, ClusterError>(lease)
        };
        match joined.await {
            Ok(lease) => {
                info!(lease, "rejoined the cluster with a new lease");
                self.stream = None;
                self.status.send_modify(|s| {
                    s.state = LeaseState::Alive;
                    s.lease = lease;
                });
            }
            Err(e) => warn!(error = %e, "cannot rejoin the cluster yet"),
        }
    }

    async fn peers_changed(&self, events: &[Event]) {
        for event in events {
            if let Event::Delete(RecordId::Host(id)) = event
                && *id != self.host.id
                && let Err(e) = self.cluster.note_gone(id).await
            {
                warn!(host = %id, error = %e, "cannot note when a host went");
            }
        }
    }
}
