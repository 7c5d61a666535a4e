//! Following the cluster state: a watch of the records that reconnects by
//! itself and resumes after the last revision it delivered, so no change is
//! missed or delivered twice across an etcd restart.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchStream};

use super::records::{self, Event};
use super::{Cluster, ClusterError, Result};

/// What `Watch::next` yields.
#[derive(Debug)]
pub enum WatchItem {
    /// The changes of one revision (one transaction), in order; revisions
    /// come in increasing order.
    Changes { revision: i64, events: Vec<Event> },
    /// The watch broke (etcd unreachable); `next` keeps trying and says
    /// `Reconnected` once it resumed. Reported once per outage.
    Disconnected(ClusterError),
    /// Resumed after `Disconnected`, from where it stopped.
    Reconnected,
    /// etcd compacted history past the last revision delivered: changes
    /// were lost. Load the state again and watch from its revision.
    Compacted { revision: i64 },
}

/// The longest wait between attempts to reach etcd again.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// A watch of every key under one prefix, as typed events.
pub struct Watch {
    cluster: Cluster,
    prefix: String,
    /// The last revision delivered (or the one the watch started after).
    delivered: i64,
    /// The last revision received, delivered or not (a revision whose
    /// records were all skipped delivers nothing): where to resume, once
    /// everything received was delivered.
    received: i64,
    stream: Option<WatchStream>,
    /// Whether the last attempt worked; a failure is reported only when it
    /// did.
    up: bool,
    backoff: Duration,
    ready: VecDeque<WatchItem>,
}

impl Cluster {
    /// Watches every record, from the first revision after `after` (the
    /// revision of a `load`, or the last one applied).
    pub fn watch(&self, after: i64) -> Watch {
        Watch::new(self.clone(), self.keys.state(), after)
    }

    /// Watches host records only (the membership task's own watch).
    pub(super) fn watch_hosts(&self, after: i64) -> Watch {
        Watch::new(self.clone(), self.keys.hosts(), after)
    }
}

impl Watch {
    fn new(cluster: Cluster, prefix: String, after: i64) -> Watch {
        Watch {
            cluster,
            prefix,
            delivered: after,
            received: after,
            stream: None,
            up: true,
            backoff: MIN_BACKOFF,
            ready: VecDeque::new(),
        }
    }

    /// The last revision delivered: where a new watch would resume.
    pub fn revision(&self) -> i64 {
        self.delivered
    }

    /// The next item. Waits for changes as long as there are none, and
    /// while etcd is out of reach (after saying so once). Cancel-safe: a
    /// call dropped unfinished (a `select!` that took another branch) loses
    /// nothing.
    pub async fn next(&mut self) -> WatchItem {
        loop {
            if let Some(item) = self.ready.pop_front() {
                if let WatchItem::Changes { revision, .. } = &item {
                    self.delivered = *revision;
                }
                return item;
            }
            if self.stream.is_none() {
                match self.open().await {
                    Ok(stream) => {
                        self.stream = Some(stream);
                        self.backoff = MIN_BACKOFF;
                        if !self.up {
                            self.up = true;
                            return WatchItem::Reconnected;
                        }
                    }
                    Err(e) => {
                        if let Some(item) = self.failed(e) {
                            return item;
                        }
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                }
            }
            let stream = self.stream.as_mut().expect("opened above");
            match stream.message().await {
                Ok(Some(resp)) if resp.compact_revision() > 0 => {
                    self.stream = None;
                    return WatchItem::Compacted {
                        revision: resp.compact_revision(),
                    };
                }
                Ok(Some(resp)) if resp.canceled() => {
                    let e = self.unavailable(format!(
                        "etcd cancelled the watch: {}",
                        resp.cancel_reason()
                    ));
                    self.stream = None;
                    if let Some(item) = self.failed(e) {
                        return item;
                    }
                }
                Ok(Some(resp)) => self.queue(resp.events()),
                Ok(None) => {
                    self.stream = None;
                    let e = self.unavailable("etcd closed the watch".into());
                    if let Some(item) = self.failed(e) {
                        return item;
                    }
                }
                Err(e) => {
                    self.stream = None;
                    let e = ClusterError::from_etcd(&self.cluster.cfg.store.shown, e);
                    if let Some(item) = self.failed(e) {
                        return item;
                    }
                }
            }
        }
    }

    async fn open(&self) -> Result<WatchStream> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.received + 1);
        let mut client = self.cluster.client.clone();
        self.cluster
            .call(client.watch(self.prefix.as_str(), Some(options)))
            .await
    }

    /// Notes a failure; the item to report, the first time.
    fn failed(&mut self, e: ClusterError) -> Option<WatchItem> {
        std::mem::replace(&mut self.up, false).then_some(WatchItem::Disconnected(e))
    }

    fn unavailable(&self, cause: String) -> ClusterError {
        ClusterError::Unavailable {
            store: self.cluster.cfg.store.shown.clone(),
            cause,
        }
    }

    /// Turns one response's events into one item per revision. etcd sends a
    /// revision's events in one response (without fragmenting, which this
    /// watch does not ask for).
    fn queue(&mut self, events: &[etcd_client::Event]) {
        let keys = &self.cluster.keys;
        for e in events {
            let Some(kv) = e.kv() else { continue };
            let revision = kv.mod_revision();
            let event = match e.event_type() {
                EventType::Put => records::record(keys, kv.key(), kv.value()).map(Event::Put),
                EventType::Delete => records::deleted(keys, kv.key()).map(Event::Delete),
            };
            if let Some(event) = event {
                match self.ready.back_mut() {
                    Some(WatchItem::Changes {
                        revision: r,
                        events,
                    }) if *r == revision => events.push(event),
                    _ => self.ready.push_back(WatchItem::Changes {
                        revision,
                        events: vec![event],
                    }),
                }
            }
            self.received = self.received.max(revision);
        }
    }
}
