//! How much of the daemon one container's DNS traffic may hold.
//!
//! A container is root in its namespace and may be hostile, and every
//! container's server runs in the daemon. Two things there cost a socket
//! and a task each and last as long as the peer likes: a forwarded query
//! (until an upstream answers or times out, 2 s per upstream) and a TCP
//! connection to 127.0.0.11:53 (until it has been idle for 10 s). Each is
//! limited twice: per container, so that one container cannot take what the
//! others need, and for the whole daemon, so that many containers together
//! cannot take its file descriptors. Past either limit the query or the
//! connection is turned away at once (and counted), never queued: waiting
//! would hold a task per excess query, which is what the limit is for.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Forwarded queries one container may have in flight. Legitimate traffic
/// stays far below: in flight is rate times upstream latency, so 32 is
/// 1,600 queries a second at 20 ms; a resolver with a slow upstream (2 s
/// timeouts) still gets 16 a second, and 32 flooding containers are
/// needed to fill the daemon's slots.
pub const CONTAINER_FORWARDS: usize = 32;

/// Forwarded queries in flight over all containers (Docker's limit too).
pub const DAEMON_FORWARDS: usize = 1024;

/// TCP connections one container may hold to its server. DNS over TCP is
/// for truncated answers and the odd `use-vc` resolver, one query or a few
/// per connection.
pub const CONTAINER_TCP: usize = 16;

/// TCP connections to the embedded servers over all containers.
pub const DAEMON_TCP: usize = 1024;

/// Which limit turned a query or a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The container's own.
    Container,
    /// The daemon's, shared by all containers.
    Daemon,
}

/// How often each limit turned something away.
#[derive(Debug, Default)]
pub struct Refusals {
    container: AtomicU64,
    daemon: AtomicU64,
}

impl Refusals {
    pub fn count(&self, by: Refusal) {
        match by {
            Refusal::Container => &self.container,
            Refusal::Daemon => &self.daemon,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// By the containers' limits, and by the daemon's.
    pub fn read(&self) -> (u64, u64) {
        (
            self.container.load(Ordering::Relaxed),
            self.daemon.load(Ordering::Relaxed),
        )
    }
}

/// One container's share of one of the daemon's pools.
#[derive(Debug, Clone)]
pub struct Budget {
    container: Arc<Semaphore>,
    daemon: Arc<Semaphore>,
}

/// A unit taken from both a container's budget and the daemon's pool;
/// given back to both when dropped.
#[derive(Debug)]
pub struct Slot {
    _container: OwnedSemaphorePermit,
    _daemon: OwnedSemaphorePermit,
}

impl Budget {
    /// A budget of `per_container` units out of `daemon`'s pool.
    pub fn new(daemon: &Arc<Semaphore>, per_container: usize) -> Budget {
        Budget {
            container: Arc::new(Semaphore::new(per_container)),
            daemon: Arc::clone(daemon),
        }
    }

    /// A unit, or which limit is reached. The container's own limit is
    /// checked first: a container at its limit takes nothing from the pool.
    pub fn take(&self) -> Result<Slot, Refusal> {
        let container = Arc::clone(&self.container)
            .try_acquire_owned()
            .map_err(|_| Refusal::Container)?;
        let daemon = Arc::clone(&self.daemon)
            .try_acquire_owned()
            .map_err(|_| Refusal::Daemon)?;
        Ok(Slot {
            _container: container,
            _daemon: daemon,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_is_held_to_its_share_and_all_to_the_pool() {
        let pool = Arc::new(Semaphore::new(5));
        let a = Budget::new(&pool, 3);
        let b = Budget::new(&pool, 3);
        let mut held: Vec<Slot> = (0..3).map(|_| a.take().unwrap()).collect();
        assert_eq!(a.take().unwrap_err(), Refusal::Container);
        assert_eq!(pool.available_permits(), 2, "refusal took nothing");
        // b gets what is left of the pool, then hits the pool's limit
        // before its own.
        held.push(b.take().unwrap());
        held.push(b.take().unwrap());
        assert_eq!(b.take().unwrap_err(), Refusal::Daemon);
        // A slot dropped goes back to both.
        held.remove(0);
        assert_eq!(pool.available_permits(), 1);
        held.push(a.take().unwrap());
        assert_eq!(b.take().unwrap_err(), Refusal::Daemon);
        held.clear();
        assert_eq!(pool.available_permits(), 5);
        let again: Vec<Slot> = (0..3).map(|_| b.take().unwrap()).collect();
        assert_eq!(again.len(), 3);
    }

    #[test]
    fn refusals_are_counted_by_limit() {
        let r = Refusals::default();
        r.count(Refusal::Container);
        r.count(Refusal::Container);
        r.count(Refusal::Daemon);
        assert_eq!(r.read(), (2, 1));
    }
}
