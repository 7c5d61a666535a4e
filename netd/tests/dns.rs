//! The embedded DNS server against a real daemon, asked with `dig` from
//! inside containers. Each daemon forwards to a DNS server the test runs in
//! its "outside" namespace (hickory-server on a thread that entered that
//! namespace), which answers `outside.test` (A only), answers `tc.test`
//! only over TCP (truncated over UDP), and says NXDOMAIN to everything
//! else, recording every question it gets and over which transport.
//! Subnets 10.16x.* are this file's, one per test.

mod common;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{Daemon, Launch, stdout};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use serde_json::Value;

const OUTSIDE_TEST: &str = "198.51.100.7";
const TC_TEST: &str = "198.51.100.8";

// ---------------------------------------------------------------------------
// The upstream DNS server in the outside namespace.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// outside.test / tc.test answered, NXDOMAIN for the rest.
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
struct Upstream {
    seen: Seen,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// In namespace `netns` (`""`: the test's own).
    fn start(netns: &str, addr: SocketAddr, mode: Mode) -> Upstream {
        let seen: Seen = Arc::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns = (!netns.is_empty())
            .then(|| std::fs::File::open(format!("/run/netns/{netns}")).unwrap());
        let handler = Handler {
            mode,
            seen: seen.clone(),
        };
        let thread = std::thread::spawn(move || {
            if let Some(ns) = ns {
                // SAFETY: ns is an open namespace file; setns moves only
                // this thread, which runs the server and nothing else.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0);
            }
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
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("upstream DNS server started");
        Upstream {
            seen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<(String, bool)> {
        self.seen.lock().unwrap().clone()
    }

    /// What it got after the first `from` questions, UDP retries of the
    /// same question (hickory resends after 333 ms) counted once.
    fn seen_since(&self, from: usize) -> Vec<(String, bool)> {
        let mut v = self.seen()[from..].to_vec();
        v.dedup();
        v
    }

    fn saw(&self, name: &str) -> bool {
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
fn daemon_with_upstream() -> (Daemon, Upstream) {
    let d = Daemon::start_with(&["--dns", "{outside_addr}:53"]);
    let up = Upstream::start(&d.outside, addr(&d.outside_addr, 53), Mode::Answer);
    (d, up)
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

// ---------------------------------------------------------------------------
// Asking.

fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `dig @127.0.0.11 ARGS` in the container's namespace.
fn dig(d: &Daemon, container: &str, args: &[&str]) -> Output {
    let mut full = vec!["dig", "+time=5", "+tries=1", "@127.0.0.11"];
    full.extend_from_slice(args);
    in_ns(&d.netns(container), &full)
}

/// The answers, one per line (`dig +short`).
fn short(d: &Daemon, container: &str, args: &[&str]) -> Vec<String> {
    let mut full = vec!["+short"];
    full.extend_from_slice(args);
    let out = dig(d, container, &full);
    assert!(
        out.status.success(),
        "dig {args:?} from {container}: {}{}",
        stdout(&out),
        common::stderr(&out)
    );
    stdout(&out).lines().map(str::to_string).collect()
}

/// The response code (`NOERROR`, `NXDOMAIN`, ...).
fn status(d: &Daemon, container: &str, args: &[&str]) -> String {
    let out = dig(d, container, args);
    let text = stdout(&out);
    text.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig output: {text}{}", common::stderr(&out)))
        .to_string()
}

/// Waits until the container's server answers (its listener starts once
/// its namespace exists).
fn wait_dns(d: &Daemon, container: &str) {
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
            common::stderr(&out),
            d.log()
        );
        sleep(Duration::from_millis(100));
    }
}

fn ip_of(d: &Daemon, container: &str, network: &str) -> String {
    let c = &d.json(&["container", "inspect", container])[0];
    c["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("{container} has no address on {network}: {c}"))
        .to_string()
}

fn resolv_conf(d: &Daemon, container: &str) -> String {
    std::fs::read_to_string(format!("/etc/netns/{}/resolv.conf", d.netns(container)))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Names.

#[test]
fn names_aliases_network_names_and_ptr() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.161.0.0/24", "n1"]);
    d.ok(&[
        "container",
        "create",
        "--network",
        "n1",
        "--alias",
        "www",
        "--alias",
        "Front",
        "web",
    ]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");
    let web = ip_of(&d, "web", "n1");
    assert_eq!(web, "10.161.0.2");

    for name in [
        "web", "WEB", "web.", "www", "front", "web.n1", "Web.N1.", "www.n1",
    ] {
        assert_eq!(short(&d, "client", &[name]), vec![web.clone()], "{name}");
    }
    // Its own name, and the short id (the container's hostname in Docker).
    assert_eq!(short(&d, "client", &["client"]), vec!["10.161.0.3"]);
    let id = d.json(&["container", "inspect", "web"])[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(short(&d, "client", &[&id[..12]]), vec![web.clone()]);
    // Reverse: NAME.NETWORK, as Docker answers.
    assert_eq!(short(&d, "client", &["-x", &web]), vec!["web.n1."]);
    assert_eq!(short(&d, "web", &["-x", "10.161.0.3"]), vec!["client.n1."]);
    // The name exists without IPv6: NOERROR and no answer, not forwarded.
    assert_eq!(status(&d, "client", &["AAAA", "web"]), "NOERROR");
    assert!(short(&d, "client", &["AAAA", "web"]).is_empty());
    // Over TCP too.
    assert_eq!(short(&d, "client", &["+tcp", "www"]), vec![web.clone()]);
    assert!(
        !up.saw("web.") && !up.saw("www.") && !up.saw("web.n1."),
        "our names never go upstream: {:?}",
        up.seen()
    );

    // The container's resolv.conf points at the server, for `ip netns
    // exec`, `container exec` and `container run` processes alike, and the
    // C library resolves through it.
    let rc = resolv_conf(&d, "client");
    assert!(rc.contains("nameserver 127.0.0.11\n"), "{rc}");
    assert!(rc.contains("options ndots:0"), "{rc}");
    let out = in_ns(&d.netns("client"), &["cat", "/etc/resolv.conf"]);
    assert_eq!(stdout(&out), rc, "ip netns exec bind-mounts it");
    assert_eq!(
        d.ok(&[
            "container",
            "exec",
            "client",
            "--",
            "cat",
            "/etc/resolv.conf"
        ]),
        rc
    );
    let hosts = d.ok(&[
        "container",
        "exec",
        "client",
        "--",
        "getent",
        "hosts",
        "www",
    ]);
    assert!(hosts.starts_with(&format!("{web} ")), "{hosts}");
    d.ok(&[
        "container",
        "run",
        "--network",
        "n1",
        "runner",
        "--",
        "cat",
        "/etc/resolv.conf",
    ]);
    let runner_id = d.json(&["container", "inspect", "runner"])[0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = d.state_dir().join("logs").join(format!("{runner_id}.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log).unwrap_or_default() != rc {
        assert!(
            Instant::now() < deadline,
            "container run output: {:?}",
            std::fs::read_to_string(&log)
        );
        sleep(Duration::from_millis(50));
    }
    // The host's own resolv.conf is untouched.
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert!(!host.contains("127.0.0.11"), "{host}");
}

#[test]
fn names_are_scoped_to_shared_networks() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.162.0.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.162.1.0/24", "n2"]);
    d.ok(&[
        "container",
        "create",
        "--network",
        "n1",
        "--alias",
        "db",
        "web",
    ]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    d.ok(&["container", "create", "--network", "n2", "other"]);
    // On the default bridge: Docker's behaviour, no embedded server.
    d.ok(&["container", "create", "legacy"]);
    wait_dns(&d, "client");
    wait_dns(&d, "other");

    assert_eq!(short(&d, "client", &["web"]), vec!["10.162.0.2"]);
    // From n2, web is not ours to answer: forwarded, and the upstream
    // says NXDOMAIN, which comes back as is.
    for name in ["web", "db", "web.n1", "client"] {
        assert_eq!(status(&d, "other", &[name]), "NXDOMAIN", "{name}");
        assert!(
            up.saw(&format!("{name}.")),
            "{name} forwarded: {:?}",
            up.seen()
        );
    }
    assert_eq!(status(&d, "other", &["-x", "10.162.0.2"]), "NXDOMAIN");
    assert!(up.saw("2.0.162.10.in-addr.arpa."));
    // n1 does not see n2's names either.
    assert_eq!(status(&d, "client", &["other"]), "NXDOMAIN");

    // Default bridge: the host's resolvers in resolv.conf, no listener,
    // and nobody on a user network resolves it.
    let rc = resolv_conf(&d, "legacy");
    assert!(rc.contains("nameserver"), "{rc}");
    assert!(!rc.contains("127.0.0.11"), "{rc}");
    assert!(
        !rc.contains("nameserver 127."),
        "no loopback resolvers: {rc}"
    );
    assert!(
        !dig(&d, "legacy", &["+short", "web"]).status.success(),
        "nothing listens on 127.0.0.11 on the default bridge"
    );
    assert_eq!(status(&d, "client", &["legacy"]), "NXDOMAIN");
    let inside = d.ok(&[
        "container",
        "exec",
        "legacy",
        "--",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(inside, rc);

    // A container on both networks sees both.
    d.ok(&["network", "connect", "n2", "client"]);
    assert_eq!(short(&d, "client", &["other"]), vec!["10.162.1.2"]);
    assert_eq!(short(&d, "other", &["client"]), vec!["10.162.1.3"]);
    assert_eq!(short(&d, "other", &["client.n2"]), vec!["10.162.1.3"]);
    assert_eq!(status(&d, "other", &["client.n1"]), "NXDOMAIN");
}

#[test]
fn forwarding_over_udp_and_tcp_and_nxdomain() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.163.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");

    assert_eq!(short(&d, "client", &["outside.test"]), vec![OUTSIDE_TEST]);
    assert_eq!(
        up.seen().last(),
        Some(&("outside.test.".to_string(), false)),
        "UDP for a UDP client"
    );
    assert_eq!(
        short(&d, "client", &["+tcp", "outside.test"]),
        vec![OUTSIDE_TEST]
    );
    assert_eq!(
        up.seen().last(),
        Some(&("outside.test.".to_string(), true)),
        "TCP for a TCP client"
    );
    // Truncated over UDP upstream: asked again over TCP, answered over UDP.
    let before = up.seen().len();
    assert_eq!(short(&d, "client", &["tc.test"]), vec![TC_TEST]);
    assert_eq!(
        up.seen_since(before),
        [
            ("tc.test.".to_string(), false),
            ("tc.test.".to_string(), true)
        ]
    );
    // NXDOMAIN passed back, asked once.
    let before = up.seen().len();
    assert_eq!(status(&d, "client", &["nothing.test"]), "NXDOMAIN");
    assert_eq!(
        up.seen_since(before),
        [("nothing.test.".to_string(), false)]
    );
    // And the C library in the container gets there too.
    let hosts = d.ok(&[
        "container",
        "exec",
        "client",
        "--",
        "getent",
        "hosts",
        "outside.test",
    ]);
    assert!(hosts.starts_with(OUTSIDE_TEST), "{hosts}");
}

#[test]
fn failover_between_upstreams() {
    // In order: an address nobody answers on (timeout), a SERVFAIL server,
    // a port nobody listens on, the real one, and one that must never be
    // asked (everything is answered before it, NXDOMAIN included).
    let d = Daemon::start_with(&[
        "--dns",
        "{outside_net}.3:53",
        "--dns",
        "{outside_addr}:5399",
        "--dns",
        "{outside_addr}:5398",
        "--dns",
        "{outside_addr}:53",
        "--dns",
        "{outside_addr}:5397",
    ]);
    let servfail = Upstream::start(&d.outside, addr(&d.outside_addr, 5399), Mode::ServFail);
    let good = Upstream::start(&d.outside, addr(&d.outside_addr, 53), Mode::Answer);
    let last = Upstream::start(&d.outside, addr(&d.outside_addr, 5397), Mode::Answer);
    d.ok(&["network", "create", "--subnet", "10.164.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");

    let started = Instant::now();
    let out = dig(&d, "client", &["+short", "+time=10", "outside.test"]);
    let took = started.elapsed();
    assert_eq!(
        stdout(&out).trim(),
        OUTSIDE_TEST,
        "{}",
        common::stderr(&out)
    );
    assert!(
        took >= Duration::from_millis(1900),
        "the first upstream timed out first: {took:?}"
    );
    assert!(servfail.saw("outside.test."));
    assert!(good.saw("outside.test."));
    assert_eq!(
        status(&d, "client", &["+time=10", "nothing.test"]),
        "NXDOMAIN"
    );
    assert!(good.saw("nothing.test."));
    assert!(last.seen().is_empty(), "never asked: {:?}", last.seen());
}

#[test]
fn all_upstreams_failing_is_servfail() {
    let d = Daemon::start_with(&["--dns", "{outside_addr}:5399"]);
    let _servfail = Upstream::start(&d.outside, addr(&d.outside_addr, 5399), Mode::ServFail);
    d.ok(&["network", "create", "--subnet", "10.165.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");
    assert_eq!(status(&d, "client", &["outside.test"]), "SERVFAIL");
    // Local names do not depend on the upstreams.
    assert_eq!(short(&d, "client", &["client"]), vec!["10.165.0.2"]);
}

#[test]
fn upstreams_follow_a_reload() {
    // First an upstream nobody listens on, from the configuration file.
    let d = Daemon::launch(Launch {
        config: Some("dns = [\"{outside_addr}:5399\"]\n"),
        ..Launch::default()
    });
    let up = Upstream::start(&d.outside, addr(&d.outside_addr, 53), Mode::Answer);
    d.ok(&["network", "create", "--subnet", "10.171.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");
    assert_eq!(status(&d, "client", &["outside.test"]), "SERVFAIL");
    assert!(upstream_failures(&d) >= 1, "counted:\n{}", d.metrics());

    // `systemctl reload` with the live one: no restart, no container
    // touched, and the next query goes there.
    std::fs::write(
        d.config_path(),
        format!("dns = [\"{}:53\"]\n", d.outside_addr),
    )
    .unwrap();
    d.reload();
    let deadline = Instant::now() + Duration::from_secs(30);
    while short(&d, "client", &["outside.test"]) != vec![OUTSIDE_TEST] {
        assert!(Instant::now() < deadline, "no reload:\n{}", d.log());
        sleep(Duration::from_millis(100));
    }
    assert!(up.saw("outside.test."));
}

/// `netd_dns_upstream_failures_total` in the daemon's metrics.
fn upstream_failures(d: &Daemon) -> u64 {
    d.metrics()
        .lines()
        .find_map(|l| l.strip_prefix("netd_dns_upstream_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the metric is exported")
}

#[test]
fn records_follow_containers_and_networks() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.166.0.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.166.1.0/24", "n2"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    d.ok(&["container", "create", "--network", "n1", "web"]);
    wait_dns(&d, "client");
    assert_eq!(short(&d, "client", &["web"]), vec!["10.166.0.3"]);

    // Gone the moment it is removed.
    d.ok(&["container", "rm", "-f", "web"]);
    assert_eq!(status(&d, "client", &["web"]), "NXDOMAIN");
    assert!(up.saw("web."));
    assert!(
        !std::path::Path::new(&format!("/etc/netns/{}", d.netns("web"))).exists(),
        "its resolv.conf went with it"
    );
    // A new one resolves at once.
    d.ok(&["container", "create", "--network", "n1", "late"]);
    assert_eq!(short(&d, "client", &["late"]), vec!["10.166.0.3"]);

    // Connected to a shared network (with an alias): visible at once;
    // disconnected: gone.
    d.ok(&["container", "create", "--network", "n2", "other"]);
    assert_eq!(status(&d, "client", &["other"]), "NXDOMAIN");
    d.ok(&["network", "connect", "--alias", "cache", "n1", "other"]);
    assert_eq!(short(&d, "client", &["other"]), vec!["10.166.0.4"]);
    assert_eq!(short(&d, "client", &["cache"]), vec!["10.166.0.4"]);
    assert_eq!(
        short(&d, "client", &["-x", "10.166.0.4"]),
        vec!["other.n1."]
    );
    d.ok(&["network", "disconnect", "n1", "other"]);
    assert_eq!(status(&d, "client", &["cache"]), "NXDOMAIN");

    // A default-bridge container connected to a user network gets the
    // server, and its resolv.conf is rewritten in place (so processes that
    // already have it mounted see the change).
    d.ok(&["container", "create", "legacy"]);
    let before = resolv_conf(&d, "legacy");
    assert!(!before.contains("127.0.0.11"), "{before}");
    d.ok(&["network", "connect", "n1", "legacy"]);
    assert!(resolv_conf(&d, "legacy").contains("nameserver 127.0.0.11\n"));
    wait_dns(&d, "legacy");
    assert_eq!(short(&d, "legacy", &["client"]), vec!["10.166.0.2"]);
    d.ok(&["network", "disconnect", "n1", "legacy"]);
    assert!(!resolv_conf(&d, "legacy").contains("127.0.0.11"));

    // The server comes back with the daemon after a crash.
    let mut d = d;
    d.restart();
    wait_dns(&d, "client");
    assert_eq!(short(&d, "client", &["late"]), vec!["10.166.0.3"]);
    assert_eq!(short(&d, "client", &["outside.test"]), vec![OUTSIDE_TEST]);
}

// ---------------------------------------------------------------------------
// Services. They need `netd service` (the service engine/API); run with
// `--ignored` until that lands.

fn service(d: &Daemon, name: &str) -> Value {
    let v = d.json(&["service", "inspect", name]);
    match v {
        Value::Array(mut a) => a.remove(0),
        v => v,
    }
}

fn task_ips(svc: &Value) -> Vec<String> {
    let mut v: Vec<String> = svc["Tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["IPAddress"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn service_name_and_tasks() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.167.0.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.167.1.0/24", "n2"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    d.ok(&["container", "create", "--network", "n2", "stranger"]);
    d.ok(&[
        "service",
        "create",
        "--network",
        "n1",
        "--replicas",
        "3",
        "api",
        "--",
        "sleep",
        "600",
    ]);
    wait_dns(&d, "client");
    wait_dns(&d, "stranger");
    let svc = service(&d, "api");
    let vip = svc["VirtualIP"].as_str().unwrap().to_string();
    let tasks = task_ips(&svc);
    assert_eq!(tasks.len(), 3, "{svc}");
    for name in ["api", "API", "api.n1"] {
        assert_eq!(short(&d, "client", &[name]), vec![vip.clone()], "{name}");
    }
    assert_eq!(short(&d, "client", &["-x", &vip]), vec!["api.n1."]);
    // tasks.api: every replica, the order rotating between queries.
    let mut firsts = Vec::new();
    for _ in 0..6 {
        let got = short(&d, "client", &["tasks.api"]);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, tasks);
        firsts.push(got[0].clone());
    }
    for ip in &tasks {
        assert_eq!(firsts.iter().filter(|f| *f == ip).count(), 2, "{firsts:?}");
    }
    // Replicas by their container names.
    for (i, ip) in ["api.1", "api.2", "api.3"].iter().enumerate() {
        let got = short(&d, "client", &[ip]);
        assert_eq!(got.len(), 1, "{ip}: {got:?}");
        assert!(tasks.contains(&got[0]), "replica {i}: {got:?}");
    }
    // Scoped like everything else.
    assert_eq!(status(&d, "stranger", &["api"]), "NXDOMAIN");
    assert_eq!(status(&d, "stranger", &["tasks.api"]), "NXDOMAIN");
    assert!(up.saw("tasks.api."));

    // Scaling changes tasks.api at once; removing the service removes both.
    d.ok(&["service", "scale", "api=2"]);
    let svc = service(&d, "api");
    let mut got = short(&d, "client", &["tasks.api"]);
    got.sort();
    assert_eq!(got, task_ips(&svc));
    assert_eq!(got.len(), 2);
    d.ok(&["service", "rm", "api"]);
    assert_eq!(status(&d, "client", &["api"]), "NXDOMAIN");
    assert_eq!(status(&d, "client", &["tasks.api"]), "NXDOMAIN");
}

#[test]
fn service_with_a_joined_container() {
    let (d, _up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.168.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    d.ok(&[
        "service",
        "create",
        "--network",
        "n1",
        "--replicas",
        "0",
        "mine",
    ]);
    wait_dns(&d, "client");
    // A service without replicas: its names are ours, tasks is empty.
    let vip = service(&d, "mine")["VirtualIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(short(&d, "client", &["mine"]), vec![vip]);
    assert_eq!(status(&d, "client", &["tasks.mine"]), "NOERROR");
    assert!(short(&d, "client", &["tasks.mine"]).is_empty());
    d.ok(&[
        "container",
        "create",
        "--network",
        "n1",
        "--service",
        "mine",
        "backend",
    ]);
    let ip = ip_of(&d, "backend", "n1");
    assert_eq!(short(&d, "client", &["tasks.mine"]), vec![ip]);
}

#[test]
fn unused_address_is_not_answered_as_ours() {
    // A PTR for an address of a shared network that nobody holds is not
    // ours: forwarded.
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.169.0.0/24", "n1"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    wait_dns(&d, "client");
    assert_eq!(status(&d, "client", &["-x", "10.169.0.77"]), "NXDOMAIN");
    assert!(up.saw("77.0.169.10.in-addr.arpa."));
}

// ---------------------------------------------------------------------------
// The module on its own: no daemon, a namespace the test makes, a state
// built by hand, and an upstream on the host's loopback (which works
// because the forwarder runs in the host's namespace).

mod standalone {
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    use netd::dns::{Dns, DnsConfig, Upstreams};
    use netd::model::{Container, Endpoint, NetMode, Network, State, Subnet};

    use super::*;

    /// A bare namespace with `lo` up, deleted on drop.
    struct Netns(String);

    impl Netns {
        fn new(name: &str) -> Netns {
            let ok = |args: &[&str]| {
                let out = Command::new("ip").args(args).output().unwrap();
                assert!(
                    out.status.success(),
                    "ip {args:?}: {}",
                    common::stderr(&out)
                );
            };
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            ok(&["netns", "add", name]);
            ok(&["-n", name, "link", "set", "lo", "up"]);
            Netns(name.to_string())
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        }
    }

    fn state(netns: &str, with_container: bool) -> State {
        let mut s = State::default();
        s.networks.insert(
            "n".repeat(64),
            Arc::new(Network {
                id: "n".repeat(64),
                name: "lan".into(),
                driver: "bridge".into(),
                created: String::new(),
                internal: false,
                attachable: false,
                ipam: Some(Subnet {
                    subnet: "10.170.0.0/24".parse().unwrap(),
                    gateway: Ipv4Addr::new(10, 170, 0, 1),
                    ip_range: None,
                }),
                options: BTreeMap::new(),
                labels: BTreeMap::new(),
                predefined: false,
                index: 7,
            }),
        );
        if with_container {
            s.containers.insert(
                "c".repeat(64),
                Arc::new(Container {
                    id: "c".repeat(64),
                    name: "box".into(),
                    created: String::new(),
                    net: NetMode::Own {
                        netns: netns.into(),
                    },
                    network_mode: "lan".into(),
                    endpoints: vec![Endpoint {
                        id: "e".repeat(64),
                        network_id: "n".repeat(64),
                        ifname: "eth0".into(),
                        host_ifname: "unused".into(),
                        mac: [2, 0x42, 10, 170, 0, 2],
                        ip: Ipv4Addr::new(10, 170, 0, 2),
                        prefix_len: 24,
                        gateway: Ipv4Addr::new(10, 170, 0, 1),
                        aliases: vec!["Alias".into()],
                        static_ip: false,
                    }],
                    process: None,
                    ports: Vec::new(),
                    services: Vec::new(),
                    removing: false,
                    labels: Default::default(),
                }),
            );
        }
        s
    }

    fn dig_in(ns: &str, args: &[&str]) -> Output {
        let mut full = vec!["dig", "+time=5", "+tries=1", "@127.0.0.11"];
        full.extend_from_slice(args);
        in_ns(ns, &full)
    }

    fn wait_answer(ns: &str, name: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = dig_in(ns, &["+short", name]);
            if stdout(&out).trim() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: want {want:?}, got {}{}",
                stdout(&out),
                common::stderr(&out)
            );
            sleep(Duration::from_millis(50));
        }
    }

    fn wait_silent(ns: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while dig_in(ns, &["+short", "box"]).status.success() {
            assert!(Instant::now() < deadline, "listener still answers");
            sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn serves_forwards_counts_and_stops() {
        let name = format!("tdns{}", std::process::id() % 100_000);
        let ns = Netns::new(&name);
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let up = Upstream::start("", addr("127.0.0.1", port), Mode::Answer);
        let dir = std::env::temp_dir().join(format!("netd-dns-standalone-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _entered = rt.enter();
        let mut dns = Dns::new(DnsConfig {
            upstreams: Upstreams::new(vec![addr("127.0.0.1", port)]),
            resolv_dir: dir.clone(),
            netns_prefix: "tdns".into(),
        });
        // A file of "ours" that no container owns (a crash) goes at the
        // first sync.
        std::fs::create_dir_all(dir.join("tdns-stale")).unwrap();
        std::fs::write(
            dir.join("tdns-stale/resolv.conf"),
            "# Generated by netd: old\nnameserver 127.0.0.11\n",
        )
        .unwrap();

        dns.sync(&Arc::new(state(&ns.0, true)));
        assert!(!dir.join("tdns-stale").exists());
        let rc = std::fs::read_to_string(dir.join(&ns.0).join("resolv.conf")).unwrap();
        assert!(rc.contains("nameserver 127.0.0.11\n"), "{rc}");
        wait_answer(&ns.0, "box", "10.170.0.2");
        wait_answer(&ns.0, "alias.lan", "10.170.0.2");
        let out = dig_in(&ns.0, &["+short", "-x", "10.170.0.2"]);
        assert_eq!(stdout(&out).trim(), "box.lan.");
        let out = dig_in(&ns.0, &["+short", "outside.test"]);
        assert_eq!(stdout(&out).trim(), OUTSIDE_TEST, "via a loopback upstream");
        let out = dig_in(&ns.0, &["+short", "+tcp", "tc.test"]);
        assert_eq!(stdout(&out).trim(), TC_TEST);
        let out = dig_in(&ns.0, &["nothing.test"]);
        assert!(
            stdout(&out).contains("status: NXDOMAIN"),
            "{}",
            stdout(&out)
        );
        assert!(up.saw("outside.test.") && !up.saw("box."));
        let stats = dns.counters().read();
        assert!(stats.answered_local >= 3, "{stats:?}");
        assert_eq!(
            (stats.forwarded, stats.nxdomain, stats.failed),
            (2, 1, 0),
            "{stats:?}"
        );

        // The container goes: its listener and its file with it.
        dns.sync(&Arc::new(state(&ns.0, false)));
        assert!(!dir.join(&ns.0).exists());
        wait_silent(&ns.0);
        // Back, then shut down: the listener stops, the file stays.
        dns.sync(&Arc::new(state(&ns.0, true)));
        wait_answer(&ns.0, "box", "10.170.0.2");
        dns.shutdown();
        wait_silent(&ns.0);
        assert!(dir.join(&ns.0).join("resolv.conf").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
