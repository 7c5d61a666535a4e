//! The cluster store: the state that hosts share (overlay networks, their
//! endpoints and services, the hosts themselves), kept in etcd v3 and read
//! and written through typed calls.
//!
//! # Keys
//! Everything lives under one prefix (`ClusterConfig::prefix`, default
//! `/netd`), so several clusters can share one etcd. Values are JSON.
//!
//! ```text
//! PREFIX/state/hosts/HOST                  HostRecord      lease  a host that is up
//! PREFIX/state/networks/NETWORK            NetworkRecord          an overlay network (subnet, VNI)
//! PREFIX/state/endpoints/NETWORK/ENDPOINT  EndpointRecord  lease  a container's interface on it
//! PREFIX/state/services/SERVICE            ServiceRecord          a service: VIP, published ports
//! PREFIX/known-hosts/HOST                  (host info)            every host that ever joined: address,
//!                                                                 last join, lease, when it was last seen
//! PREFIX/claims/network-names/NAME         NETWORK                one network per name
//! PREFIX/claims/subnets/A.B.C.D-LEN        NETWORK                one network per subnet
//! PREFIX/claims/vnis/VNI                   NETWORK                one network per VNI
//! PREFIX/claims/addresses/NETWORK/IP       endpoint:ID | service:ID   (lease for endpoints)
//! PREFIX/claims/names/NETWORK/NAME         container:ID | service:ID  (lease for containers)
//! PREFIX/claims/service-names/NAME         SERVICE                one service per name in the cluster
//! PREFIX/claims/ports/PROTO-PORT           SERVICE                one service per published port
//! ```
//!
//! Records (`state/`) are what hosts act on: one watch of `state/` follows
//! them all, and nothing else wakes a watcher. Claims exist only to make
//! uniqueness a compare in a transaction: each change writes its record and
//! claims in one transaction that checks the claims are free, so two hosts
//! creating at the same moment never get the same name, subnet, VNI,
//! address or port; the loser reads again and picks the next free one (or
//! gets Docker's "already exists"). Endpoint records and their claims are
//! bound to the lease of the host that runs them, so they vanish with it.
//!
//! # Calls
//! Every call fails within the configured timeout (default 2 s) when etcd
//! cannot be reached, with `ClusterError::Unavailable`; the client
//! reconnects by itself, and a `Watch` resumes after the last revision it
//! delivered.
//!
//! - [`Cluster`]: connect, networks, services, [`Cluster::load`],
//!   [`Cluster::watch`], [`Cluster::hosts`].
//! - [`Member`] ([`Cluster::join`]): this host's membership (lease, host
//!   record, keep-alive task) and its endpoints.

mod endpoints;
mod error;
mod keys;
mod membership;
mod networks;
mod records;
mod services;
mod url;
mod watch;

pub use endpoints::EndpointRequest;
pub use error::ClusterError;
pub use keys::{DEFAULT_PREFIX, RecordId};
pub use membership::{HostSpec, HostStatus, LeaseState, LeaseStatus, Member};
pub use records::{
    ClusterState, EndpointRecord, Event, HostRecord, NetworkRecord, Record, ServiceRecord,
};
pub use services::ServiceRequest;
pub use url::StoreUrls;
pub use watch::{Watch, WatchItem};

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use etcd_client::{
    Client, Compare, ConnectOptions, GetOptions, KeyValue, KvClient, Txn, TxnOp, TxnOpResponse,
    TxnResponse,
};

use crate::error::EngineError;
use keys::Keys;

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// How to reach the cluster store and how this host takes part.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub store: StoreUrls,
    /// Key prefix, `DEFAULT_PREFIX` unless several clusters share an etcd.
    pub prefix: String,
    /// Time to live of this host's lease: how long after its last renewal
    /// the other hosts drop its endpoints. Whole seconds (etcd's unit),
    /// rounded up.
    pub lease_ttl: Duration,
    /// How long any call may wait for etcd before it fails.
    pub timeout: Duration,
}

pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest answer read, instead of gRPC's default 4 MiB (about 9,000
/// endpoint records).
const MAX_ANSWER: usize = 256 << 20;

impl ClusterConfig {
    /// The defaults for the members named by a `--cluster-store` value.
    pub fn new(store: &str) -> Result<ClusterConfig, EngineError> {
        Ok(ClusterConfig {
            store: StoreUrls::parse(store)?,
            prefix: DEFAULT_PREFIX.into(),
            lease_ttl: DEFAULT_LEASE_TTL,
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

/// A client of one cluster's state. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    /// The client's KV service, allowed larger answers: a load reads every
    /// record at once.
    kv: KvClient,
    keys: Arc<Keys>,
    cfg: Arc<ClusterConfig>,
}

/// What one consistent read returns: the revision it was made at and, for
/// each key or prefix asked for, the key-values found.
struct Read {
    revision: i64,
    found: Vec<Vec<KeyValue>>,
}

/// A key, or every key under a prefix, to read.
enum Get {
    Key(String),
    Prefix(String),
}

impl Cluster {
    /// Sets up the client. Connecting is lazy: this fails only on a bad
    /// configuration, and the first call that needs etcd reports it
    /// unreachable, so a daemon can start (and serve its local networks)
    /// while etcd is down.
    pub async fn connect(cfg: ClusterConfig) -> Result<Cluster> {
        let keys = Keys::new(&cfg.prefix)?;
        let options = ConnectOptions::new()
            .with_connect_timeout(cfg.timeout)
            // HTTP/2 pings find a dead connection (a host or etcd gone
            // without closing it) within the timeout, so a watch or a
            // keep-alive stream fails over instead of waiting forever.
            .with_keep_alive(Duration::from_secs(1), cfg.timeout)
            .with_keep_alive_while_idle(true);
        let client = Client::connect(&cfg.store.endpoints, Some(options))
            .await
            .map_err(|e| ClusterError::from_etcd(&cfg.store.shown, e))?;
        Ok(Cluster {
            kv: client.kv_client().max_decoding_message_size(MAX_ANSWER),
            client,
            keys: Arc::new(keys),
            cfg: Arc::new(cfg),
        })
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Runs one etcd call, failing after the timeout: the client's own
    /// balancer waits for a reachable member without limit.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.cfg.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ClusterError::from_etcd(&self.cfg.store.shown, e)),
            Err(_) => Err(ClusterError::timed_out(
                &self.cfg.store.shown,
                self.cfg.timeout,
            )),
        }
    }

    /// Reads keys and prefixes at one revision (a transaction of gets).
    async fn read(&self, gets: Vec<Get>) -> Result<Read> {
        let ops: Vec<TxnOp> = gets
            .into_iter()
            .map(|g| match g {
                Get::Key(k) => TxnOp::get(k, None),
                Get::Prefix(p) => TxnOp::get(p, Some(GetOptions::new().with_prefix())),
            })
            .collect();
        let resp = self.txn(Txn::new().and_then(ops)).await?;
        let found = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(mut g) => g.take_kvs(),
                _ => unreachable!("a transaction of gets answers with gets"),
            })
            .collect();
        Ok(Read {
            revision: revision_of(resp.header()),
            found,
        })
    }

    /// Applies `ops` if every compare holds; whether it did.
    async fn commit(&self, compares: Vec<Compare>, ops: Vec<TxnOp>) -> Result<bool> {
        let resp = self.txn(Txn::new().when(compares).and_then(ops)).await?;
        Ok(resp.succeeded())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let mut kv = self.kv.clone();
        self.call(kv.txn(txn)).await
    }

    /// Every record and the revision they are as of: what a host starts
    /// from, and reloads after a compaction.
    pub async fn load(&self) -> Result<ClusterState> {
        let mut read = self.read(vec![Get::Prefix(self.keys.state())]).await?;
        let events: Vec<Event> = read
            .found
            .remove(0)
            .iter()
            .filter_map(|kv| records::record(&self.keys, kv.key(), kv.value()).map(Event::Put))
            .collect();
        let mut state = ClusterState::default();
        state.apply(read.revision, &events);
        Ok(state)
    }
}

fn revision_of(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

/// Optimistic transactions: read, decide, commit if nothing changed, else
/// again. Every round has a winner, so a round is lost only to real
/// progress; the bound turns a livelock bug into an error.
struct Retry {
    what: &'static str,
    attempts: u32,
}

const MAX_ATTEMPTS: u32 = 200;

impl Retry {
    fn new(what: &'static str) -> Retry {
        Retry { what, attempts: 0 }
    }

    /// After a lost race: fails once the bound is reached, else waits a
    /// little, at random, so that racers spread out.
    async fn lost(&mut self) -> Result<()> {
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            return Err(ClusterError::Contended {
                what: self.what,
                attempts: self.attempts,
            });
        }
        let mut jitter = [0u8; 1];
        // SAFETY: getrandom writes at most jitter.len() bytes into jitter.
        unsafe { libc::getrandom(jitter.as_mut_ptr().cast(), jitter.len(), 0) };
        let max_ms = u64::from(self.attempts.min(10));
        tokio::time::sleep(Duration::from_millis(u64::from(jitter[0]) % (max_ms + 1))).await;
        Ok(())
    }
}

/// The claims of addresses and names say who holds them.
fn owner(kind: &str, id: &str) -> String {
    format!("{kind}:{id}")
}

/// A key that must not exist (compare on creation revision 0).
fn absent(key: impl Into<Vec<u8>>) -> Compare {
    Compare::create_revision(key, etcd_client::CompareOp::Equal, 0)
}

/// A key that must be as read: unchanged, or still absent if it was.
fn unchanged(key: impl Into<Vec<u8>>, mod_revision: i64) -> Compare {
    Compare::mod_revision(key, etcd_client::CompareOp::Equal, mod_revision)
}

/// The value of a key-value as text (claims hold ids).
fn text(kv: &KeyValue) -> &str {
    std::str::from_utf8(kv.value()).unwrap_or("")
}

/// Creation times as the records carry them (RFC 3339, like Docker's).
fn now() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}
