//! Forwarding of the names that are not ours to the upstream resolvers,
//! with hickory's UDP and TCP clients.
//!
//! Upstreams are tried in order. Each gets [`UPSTREAM_TIMEOUT`]; a timeout,
//! a network error, SERVFAIL or REFUSED moves on to the next one. Any other
//! answer, NXDOMAIN included, is the answer: passed back as is and never
//! retried elsewhere (another resolver would say the same, slower). A UDP
//! answer with the truncation bit is asked again over TCP of the same
//! upstream; a client that asked over TCP is forwarded over TCP.
//!
//! Every socket here is created on a tokio worker, i.e. in the daemon's own
//! (host) namespace, so upstreams on the host's loopback (a local caching
//! resolver, systemd-resolved's 127.0.0.53) work, which they could not from
//! inside a container.
//!
//! A forwarded query holds a [`Slot`] of its container's budget until its
//! last socket is closed, the background tasks that drive the sockets
//! included, so the budget bounds sockets and tasks, not just queries.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_net::xfer::{DnsExchange, DnsHandle};
use hickory_net::{DnsMultiplexer, NetError};
use hickory_proto::op::{DnsRequest, DnsRequestOptions, Edns, Message, Query, ResponseCode};
use tracing::{debug, info};

use super::ResolvConf;
use super::budget::Slot;

/// How long one upstream gets before the next one is asked.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// EDNS payload size offered upstream (the DNS flag day 2020 value: no IP
/// fragmentation on common paths).
pub const EDNS_PAYLOAD: u16 = 1232;

/// What the client asked, as forwarded.
#[derive(Debug, Clone)]
pub struct Question {
    pub query: Query,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub dnssec_ok: bool,
    /// The client asked over TCP.
    pub tcp: bool,
}

/// The upstream resolvers, shared between the forwarder and whoever may
/// change them while it runs (the daemon, on `systemctl reload`). A query
/// uses the list as it was when the query arrived.
#[derive(Debug, Clone, Default)]
pub struct Upstreams(Arc<RwLock<Arc<[SocketAddr]>>>);

impl Upstreams {
    /// `configured` (`--dns`/`dns`), or the nameservers of the host's
    /// resolv.conf when it is empty (read now).
    pub fn new(configured: Vec<SocketAddr>) -> Upstreams {
        let upstreams = Upstreams::default();
        upstreams.set(configured);
        upstreams
    }

    /// Makes `configured` (or the host's, as [`Upstreams::new`]) the list
    /// for the queries that arrive from now on.
    pub fn set(&self, configured: Vec<SocketAddr>) {
        let list = if configured.is_empty() {
            ResolvConf::host().upstreams()
        } else {
            configured
        };
        info!(upstreams = ?list, "embedded DNS: names not ours go upstream");
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = list.into();
    }

    pub fn get(&self) -> Arc<[SocketAddr]> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Debug)]
pub struct Forwarder {
    upstreams: Upstreams,
    timeout: Duration,
    /// Attempts at an upstream that failed (see [`Forwarder::failures`]).
    failures: AtomicU64,
}

impl Forwarder {
    pub fn new(upstreams: Upstreams, timeout: Duration) -> Forwarder {
        Forwarder {
            upstreams,
            timeout,
            failures: AtomicU64::new(0),
        }
    }

    /// How often an upstream was asked and did not answer usably (timeout,
    /// network error, SERVFAIL, REFUSED), since start: a failing first
    /// upstream costs every forwarded query its timeout even when the next
    /// one answers.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The first usable answer, or `None` when every upstream failed (or
    /// there are none): the caller answers SERVFAIL. `slot` is given back
    /// once nothing of the query is left.
    pub async fn forward(&self, q: &Question, slot: Slot) -> Option<Message> {
        let slot = Arc::new(slot);
        for &upstream in self.upstreams.get().iter() {
            let mut answer = if q.tcp {
                self.tcp(upstream, q, &slot).await
            } else {
                self.udp(upstream, q, &slot).await
            };
            if matches!(&answer, Ok(m) if m.metadata.truncation && !q.tcp) {
                debug!(%upstream, "truncated answer over UDP, asking again over TCP");
                answer = self.tcp(upstream, q, &slot).await;
            }
            match answer {
                Ok(m)
                    if matches!(
                        m.metadata.response_code,
                        ResponseCode::ServFail | ResponseCode::Refused
                    ) =>
                {
                    debug!(%upstream, rcode = %m.metadata.response_code, "upstream failed, trying the next");
                }
                Ok(m) => return Some(m),
                Err(e) => debug!(%upstream, error = %e, "upstream unreachable, trying the next"),
            }
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        None
    }

    fn request(&self, q: &Question) -> DnsRequest {
        // A fresh random id; the clients check it (and the source address
        // and the question) against the answer.
        let mut msg = Message::query();
        msg.metadata.recursion_desired = q.recursion_desired;
        msg.metadata.checking_disabled = q.checking_disabled;
        msg.queries.push(q.query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD)
            .set_dnssec_ok(q.dnssec_ok);
        msg.edns = Some(edns);
        let mut options = DnsRequestOptions::default();
        options.recursion_desired = q.recursion_desired;
        options.edns_payload_len = EDNS_PAYLOAD;
        options.edns_set_dnssec_ok = q.dnssec_ok;
        DnsRequest::new(msg, options)
    }

    async fn udp(
        &self,
        upstream: SocketAddr,
        q: &Question,
        slot: &Arc<Slot>,
    ) -> Result<Message, NetError> {
        let stream = UdpClientStream::builder(upstream, TokioRuntimeProvider::new())
            .with_timeout(Some(self.timeout))
            .build();
        let (exchange, bg) = DnsExchange::<TokioRuntimeProvider>::from_stream(stream);
        self.exchange(exchange, bg, q, slot).await
    }

    async fn tcp(
        &self,
        upstream: SocketAddr,
        q: &Question,
        slot: &Arc<Slot>,
    ) -> Result<Message, NetError> {
        let provider = TokioRuntimeProvider::new();
        let (connect, sender) =
            TcpClientStream::new(upstream, None, Some(self.timeout), provider.clone());
        let stream = tokio::time::timeout(self.timeout, connect)
            .await
            .map_err(|_| NetError::Timeout)??;
        let multiplexer = DnsMultiplexer::new(stream, sender).with_timeout(self.timeout);
        let (exchange, bg) = DnsExchange::<TokioRuntimeProvider>::from_stream(multiplexer);
        self.exchange(exchange, bg, q, slot).await
    }

    async fn exchange<F>(
        &self,
        exchange: DnsExchange<TokioRuntimeProvider>,
        bg: F,
        q: &Question,
        slot: &Arc<Slot>,
    ) -> Result<Message, NetError>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send,
    {
        // The background half drives the socket; it ends once the exchange
        // is dropped, and the timeout bounds it whatever happens. It holds
        // the query's slot until then.
        let limit = self.timeout * 2;
        let slot = Arc::clone(slot);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(limit, bg).await;
            drop(slot);
        });
        let mut responses = exchange.send(self.request(q));
        let first = tokio::time::timeout(self.timeout, responses.next())
            .await
            .map_err(|_| NetError::Timeout)?;
        match first {
            Some(Ok(response)) => Ok(response.into_message()),
            Some(Err(e)) => Err(e),
            None => Err(NetError::from("no response")),
        }
    }
}
