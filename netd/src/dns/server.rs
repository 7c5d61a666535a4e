//! The request handler behind every listener: answers the names the asking
//! container can see from the current [`Records`], forwards the rest.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use hickory_net::runtime::Time;
use hickory_net::xfer::Protocol;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::debug;

use super::forward::{Forwarder, Question};
use super::records::Records;
use crate::model::State;

/// TTL of our answers, as Docker's embedded server uses.
pub const TTL: u32 = 600;

/// Query outcomes; every query counts in exactly one.
#[derive(Debug, Default)]
pub struct Counters {
    pub answered_local: AtomicU64,
    pub forwarded: AtomicU64,
    pub nxdomain: AtomicU64,
    pub failed: AtomicU64,
}

/// What every listener shares: the records (swapped whole when the state
/// changed), the forwarder and the counters.
#[derive(Debug)]
pub struct Shared {
    records: RwLock<Arc<Records>>,
    /// The state committed last, when its records are not built yet. They
    /// are built by the first query that needs them, not at every commit:
    /// a burst of commits (10,000 services created one by one) then costs
    /// one build instead of one per commit, each of them O(state).
    pending: Mutex<Option<Arc<State>>>,
    pub forwarder: Forwarder,
    pub counters: Counters,
}

impl Shared {
    pub fn new(forwarder: Forwarder) -> Shared {
        Shared {
            records: RwLock::default(),
            pending: Mutex::default(),
            forwarder,
            counters: Counters::default(),
        }
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
pub struct Handler {
    pub container: String,
    pub shared: Arc<Shared>,
}

/// What our own records say about a question.
enum Local {
    /// Ours: these records (possibly none: the name exists, not the type).
    Answer(Vec<Record>),
    /// Not a name this container sees: forward.
    NotOurs,
}

impl Handler {
    fn local(&self, records: &Records, name: &Name, qtype: RecordType, class: DNSClass) -> Local {
        if class != DNSClass::IN {
            return Local::NotOurs;
        }
        let text = name.to_ascii();
        if let Some(addrs) = records.lookup(&self.container, &text) {
            let answers = match qtype {
                RecordType::A | RecordType::ANY => addrs
                    .into_iter()
                    .map(|ip| Record::from_rdata(name.clone(), TTL, RData::A(A(ip))))
                    .collect(),
                // IPv4-only networks: the name exists, without AAAA (or
                // any other type), so NODATA rather than a forwarded
                // NXDOMAIN that would make resolvers give up on the name.
                _ => Vec::new(),
            };
            return Local::Answer(answers);
        }
        let Ok(net) = name.parse_arpa_name() else {
            return Local::NotOurs;
        };
        let IpAddr::V4(ip) = net.addr() else {
            return Local::NotOurs;
        };
        if net.prefix_len() != 32 {
            return Local::NotOurs;
        }
        let Some(target) = records.reverse(&self.container, ip) else {
            return Local::NotOurs;
        };
        let Ok(target) = Name::from_ascii(format!("{target}.")) else {
            return Local::NotOurs;
        };
        Local::Answer(match qtype {
            RecordType::PTR | RecordType::ANY => vec![Record::from_rdata(
                name.clone(),
                TTL,
                RData::PTR(PTR(target)),
            )],
            _ => Vec::new(),
        })
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

        if let Local::Answer(answers) = self.local(
            &records,
            query.name(),
            query.query_type(),
            query.query_class(),
        ) {
            counters.answered_local.fetch_add(1, Ordering::Relaxed);
            let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
            let mut metadata = Metadata::response_from_request(&request.metadata);
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

        let question = Question {
            query,
            recursion_desired: request.metadata.recursion_desired,
            checking_disabled: request.metadata.checking_disabled,
            dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            tcp: request.protocol() == Protocol::Tcp,
        };
        let Some(upstream) = self.shared.forwarder.forward(&question).await else {
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
