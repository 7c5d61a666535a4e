//! What the DNS tests share: an upstream DNS server in the daemon's
//! "outside" namespace (hickory-server on a thread that entered that
//! namespace), which answers `outside.test` (A only), answers `tc.test`
//! only over TCP (truncated over UDP), never answers names under
//! `hole.test` (an upstream that blackholes them), and says NXDOMAIN to
//! everything else, recording every question it gets and over which
//! transport; and `dig` run inside containers.

use std::net::SocketAddr;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::{Daemon, in_ns, spawn_in_netns, stderr, stdout};

pub const OUTSIDE_TEST: &str = "198.51.100.7";
pub const TC_TEST: &str = "198.51.100.8";
/// Names under it are recorded and never answered.
pub const HOLE: &str = "hole.test.";

// ---------------------------------------------------------------------------
// The upstream DNS server.

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// outside.test / tc.test answered, hole.test blackholed, NXDOMAIN for
    /// the rest.
    Answer,
    /// SERVFAIL to everything.
    ServFail,
}

/// Questions an upstream received: (name, over TCP).
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

struct Handler {
    mode: Mode,
    seen: Seen,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let info = request.request_info().expect("one question");
        let name = info.query.name().to_string().to_ascii_lowercase();
        let tcp = request.protocol() == Protocol::Tcp;
        self.seen.lock().unwrap().push((name.clone(), tcp));
        let mut metadata = Metadata::response_from_request(&request.metadata);
        if self.mode == Mode::Answer && name.ends_with(HOLE) {
            // Nothing sent: the server only logs what this returns.
            return ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            });
        }
        metadata.recursion_available = true;
        let builder = MessageResponseBuilder::from_message_request(request);
        let answer = match (self.mode, name.as_str()) {
            (Mode::ServFail, _) => {
                metadata.response_code = ResponseCode::ServFail;
                None
            }
            (Mode::Answer, "outside.test.") => Some(OUTSIDE_TEST),
            (Mode::Answer, "tc.test.") if tcp => Some(TC_TEST),
            (Mode::Answer, "tc.test.") => {
                metadata.truncation = true;
                None
            }
            (Mode::Answer, _) => {
                metadata.response_code = ResponseCode::NXDomain;
                None
            }
        };
        let records: Vec<Record> = answer
            .filter(|_| info.query.query_type() == RecordType::A)
            .into_iter()
            .map(|ip| {
                Record::from_rdata(
                    info.query.original().name().clone(),
                    60,
                    RData::A(A(ip.parse().unwrap())),
                )
            })
            .collect();
        response
            .send_response(builder.build(metadata, records.iter(), [], [], []))
            .await
            .expect("response sent")
    }
}

/// A DNS server on UDP and TCP `addr` inside namespace `netns`, stopped
/// and joined on drop.
pub struct Upstream {
    seen: Seen,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// In namespace `netns` (`""`: the test's own).
    pub fn start(netns: &str, addr: SocketAddr, mode: Mode) -> Upstream {
        let seen: Seen = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handler = Handler {
            mode,
            seen: seen.clone(),
        };
        let serve = move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
                let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
                let mut server = Server::new(handler);
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 16);
                ready_tx.send(()).unwrap();
                tokio::select! {
                    _ = server.block_until_done() => {}
                    _ = stopped => {}
                }
            });
        };
        let thread = if netns.is_empty() {
            std::thread::spawn(serve)
        } else {
            spawn_in_netns(netns, serve)
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("upstream DNS server started");
        Upstream {
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn seen(&self) -> Vec<(String, bool)> {
        self.seen.lock().unwrap().clone()
    }

    /// What it got after the first `from` questions, UDP retries of the
    /// same question (hickory resends after 333 ms) counted once.
    pub fn seen_since(&self, from: usize) -> Vec<(String, bool)> {
        let mut v = self.seen()[from..].to_vec();
        v.dedup();
        v
    }

    pub fn saw(&self, name: &str) -> bool {
        self.seen().iter().any(|(n, _)| n == name)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A daemon forwarding to `{outside_addr}:53`, and the server there.
pub fn daemon_with_upstream() -> (Daemon, Upstream) {
    let d = Daemon::start_with(&["--dns", "{outside_addr}:53"]);
    let up = Upstream::start(&d.outside, addr(&d.outside_addr, 53), Mode::Answer);
    (d, up)
}

pub fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

// ---------------------------------------------------------------------------
// Asking.

/// `dig @127.0.0.11 ARGS` in the container's namespace.
pub fn dig(d: &Daemon, container: &str, args: &[&str]) -> Output {
    let mut full = vec!["dig", "+time=5", "+tries=1", "@127.0.0.11"];
    full.extend_from_slice(args);
    in_ns(&d.netns(container), &full)
}

/// The answers, one per line (`dig +short`).
pub fn short(d: &Daemon, container: &str, args: &[&str]) -> Vec<String> {
    let mut full = vec!["+short"];
    full.extend_from_slice(args);
    let out = dig(d, container, &full);
    assert!(
        out.status.success(),
        "dig {args:?} from {container}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out).lines().map(str::to_string).collect()
}

/// The response code (`NOERROR`, `NXDOMAIN`, ...).
pub fn status(d: &Daemon, container: &str, args: &[&str]) -> String {
    let out = dig(d, container, args);
    let text = stdout(&out);
    text.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig output: {text}{}", stderr(&out)))
        .to_string()
}

/// Waits until the container's server answers (its listener starts once
/// its namespace exists).
pub fn wait_dns(d: &Daemon, container: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = dig(d, container, &["+short", container]);
        if out.status.success() && !stdout(&out).trim().is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no embedded DNS in {container}: {}{}\n--- daemon log ---\n{}",
            stdout(&out),
            stderr(&out),
            d.log()
        );
        sleep(Duration::from_millis(100));
    }
}

pub fn ip_of(d: &Daemon, container: &str, network: &str) -> String {
    let c = &d.json(&["container", "inspect", container])[0];
    c["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("{container} has no address on {network}: {c}"))
        .to_string()
}

pub fn resolv_conf(d: &Daemon, container: &str) -> String {
    std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", d.netns(container)))
        .unwrap_or_default()
}

/// The value of one counter series (`name{labels}` as exported) in the
/// daemon's metrics; 0 when it is not there yet.
pub fn counter(d: &Daemon, series: &str) -> u64 {
    d.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().expect("a counter"))
}
