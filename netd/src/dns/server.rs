//! The request handler behind every listener: answers the names the asking
//! container can see and netd's zones from the current [`Records`],
//! forwards the rest within the container's budget, unless the container
//! has no way out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hickory_net::runtime::Time;
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::Semaphore;
use tracing::debug;

use super::budget::{self, Budget, Refusals};
use super::forward::{Forwarder, Question};
use super::records::{Answer, Records};
use crate::model::State;

/// TTL of our answers, as Docker's embedded server uses.
pub const TTL: u32 = 600;

/// Query outcomes (every query counts once: in one of the first four,
/// `refused_internal` or `forwards_refused`), and TCP connections turned
/// away.
#[derive(Debug, Default)]
pub struct Counters {
    pub answered_local: AtomicU64,
    pub forwarded: AtomicU64,
    pub nxdomain: AtomicU64,
    pub failed: AtomicU64,
    /// Not forwarded: the asker has no way out.
    pub refused_internal: AtomicU64,
    /// Not forwarded: a forwarding budget is spent.
    pub forwards_refused: Refusals,
    pub tcp_rejected: Refusals,
}

/// What every listener shares: the records (swapped whole when the state
/// changed), the forwarder, the daemon's pools and the counters.
#[derive(Debug)]
pub struct Shared {
    records: RwLock<Arc<Records>>,
    /// The state committed last, when its records are not built yet. They
    /// are built by the first query that needs them, not at every commit:
    /// a burst of commits (10,000 services created one by one) then costs
    /// one build instead of one per commit, each of them O(state).
    pending: Mutex<Option<Arc<State>>>,
    pub forwarder: Forwarder,
    /// The daemon's forwarding slots and TCP connections (see `budget`).
    forward_pool: Arc<Semaphore>,
    tcp_pool: Arc<Semaphore>,
    pub counters: Counters,
}

impl Shared {
    pub fn new(forwarder: Forwarder) -> Shared {
        Shared {
            records: RwLock::default(),
            pending: Mutex::default(),
            forwarder,
            forward_pool: Arc::new(Semaphore::new(budget::DAEMON_FORWARDS)),
            tcp_pool: Arc::new(Semaphore::new(budget::DAEMON_TCP)),
            counters: Counters::default(),
        }
    }

    /// A new container's share of the daemon's TCP connections.
    pub fn tcp_budget(&self) -> Budget {
        Budget::new(&self.tcp_pool, budget::CONTAINER_TCP)
    }

    /// The records of the last committed state. Queries arriving while
    /// they are built wait for them, so no query ever sees an older state
    /// than the one committed before it arrived.
    pub fn records(&self) -> Arc<Records> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(state) = pending.take() {
            let records = Arc::new(Records::build(&state));
            *self.records.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&records);
            return records;
        }
        drop(pending);
        self.records
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `state` the one queries are answered from.
    pub fn set_state(&self, state: &Arc<State>) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(state));
    }
}

/// The handler of one container's listener. The socket lives in that
/// container's namespace, so every query it gets comes from that container.
#[derive(Clone)]
pub struct Handler {
    container: String,
    shared: Arc<Shared>,
    /// The container's share of the daemon's forwarding slots.
    forwards: Budget,
}

impl Handler {
    pub fn new(container: String, shared: Arc<Shared>) -> Handler {
        let forwards = Budget::new(&shared.forward_pool, budget::CONTAINER_FORWARDS);
        Handler {
            container,
            shared,
            forwards,
        }
    }

    /// The response code and answers when the question is netd's to
    /// answer, `None` when it is for the upstreams.
    fn local(
        &self,
        records: &Records,
        name: &Name,
        qtype: RecordType,
        class: DNSClass,
    ) -> Option<(ResponseCode, Vec<Record>)> {
        if class != DNSClass::IN {
            return None;
        }
        // A name that exists answers NOERROR, without records for other
        // types: NODATA rather than NXDOMAIN, which would make resolvers
        // give up on the name (IPv4-only networks get AAAA queries).
        let answers = match records.resolve(&self.container, &name.to_ascii()) {
            Answer::Forward => return None,
            Answer::NxDomain => return Some((ResponseCode::NXDomain, Vec::new())),
            Answer::Empty => Vec::new(),
            Answer::Addrs(addrs) => match qtype {
                RecordType::A | RecordType::ANY => addrs
                    .into_iter()
                    .map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip))))
                    .collect(),
                _ => Vec::new(),
            },
            Answer::Ptr(target) => match (qtype, Name::from_ascii(format!("{target}."))) {
                (RecordType::PTR | RecordType::ANY, Ok(target)) => {
                    vec![Record::from_rdata(
                        name.clone(),
                        TTL,
                        RData::PTR(PTR(target)),
                    )]
                }
                // A name too long for DNS (63-byte labels) has no PTR to
                // give, and is ours all the same.
                _ => Vec::new(),
            },
        };
        Some((ResponseCode::NoError, answers))
    }
}

/// The EDNS record of our response: present when the client sent one, with
/// the client's payload size (hickory truncates UDP answers to it).
fn response_edns(request: &Request) -> Option<Edns> {
    request.edns.as_ref().map(|e| {
        let mut out = Edns::new();
        out.set_max_payload(e.max_payload().max(512))
            .set_dnssec_ok(e.flags().dnssec_ok);
        out
    })
}

fn failed_info(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

async fn send_error<R: ResponseHandler>(
    request: &Request,
    mut response: R,
    code: ResponseCode,
) -> ResponseInfo {
    let edns = response_edns(request);
    let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = code;
    metadata.recursion_available = true;
    match response
        .send_response(builder.build_no_records(metadata))
        .await
    {
        Ok(info) => info,
        Err(e) => {
            debug!(error = %e, "cannot send a DNS response");
            failed_info(request, code)
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let counters = &self.shared.counters;
        if request.metadata.op_code != OpCode::Query {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            return send_error(request, response, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            return send_error(request, response, ResponseCode::FormErr).await;
        };
        let query = info.query.original().clone();
        let records = self.shared.records();
        let edns = response_edns(request);

        if let Some((code, answers)) = self.local(
            &records,
            query.name(),
            query.query_type(),
            query.query_class(),
        ) {
            counters.answered_local.fetch_add(1, Ordering::Relaxed);
            let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = code;
            metadata.authoritative = true;
            metadata.recursion_available = true;
            return match response
                .send_response(builder.build(metadata, answers.iter(), [], [], []))
                .await
            {
                Ok(info) => info,
                Err(e) => {
                    debug!(error = %e, "cannot send a DNS response");
                    failed_info(request, ResponseCode::ServFail)
                }
            };
        }

        if !records.forwards(&self.container) {
            // What a Docker container on internal networks only gets:
            // its resolver tries no upstream and answers SERVFAIL.
            counters.refused_internal.fetch_add(1, Ordering::Relaxed);
            return send_error(request, response, ResponseCode::ServFail).await;
        }
        drop(records);
        let slot = match self.forwards.take() {
            Ok(slot) => slot,
            Err(by) => {
                // REFUSED, as Docker's resolver answers when its slots are
                // all taken: a policy answer at once, not SERVFAIL, which
                // stands for failing upstreams (and their alert). Stub
                // resolvers treat both alike and cache neither.
                counters.forwards_refused.count(by);
                return send_error(request, response, ResponseCode::Refused).await;
            }
        };
        let question = Question {
            query,
            recursion_desired: request.metadata.recursion_desired,
            checking_disabled: request.metadata.checking_disabled,
            dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            tcp: request.protocol() == Protocol::Tcp,
        };
        let Some(upstream) = self.shared.forwarder.forward(&question, slot).await else {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            return send_error(request, response, ResponseCode::ServFail).await;
        };
        if upstream.metadata.response_code == ResponseCode::NXDomain {
            counters.nxdomain.fetch_add(1, Ordering::Relaxed);
        } else {
            counters.forwarded.fetch_add(1, Ordering::Relaxed);
        }
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = upstream.metadata.response_code;
        metadata.authoritative = upstream.metadata.authoritative;
        metadata.recursion_available = upstream.metadata.recursion_available;
        metadata.authentic_data = upstream.metadata.authentic_data;
        match response
            .send_response(builder.build(
                metadata,
                upstream.answers.iter(),
                upstream.authorities.iter(),
                [],
                upstream.additionals.iter(),
            ))
            .await
        {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, "cannot send a DNS response");
                failed_info(request, ResponseCode::ServFail)
            }
        }
    }
}
