//! The embedded DNS server against hostile containers: a container that
//! is only on `--internal` networks gets no way out through DNS, one that
//! floods the server with forwarded queries or TCP connections cannot
//! starve the others, and names of netd's own zones (container addresses,
//! `NAME.NETWORK`) never reach the upstream resolver. A real daemon, real
//! namespaces, `dig` inside containers, and an upstream in the daemon's
//! "outside" namespace that counts what reaches it (see `common::dns`).
//! Subnets 10.185-10.188.* are this file's.

mod common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

use common::dns::{
    HOLE, OUTSIDE_TEST, Upstream, counter, daemon_with_upstream, ip_of, short, status, wait_dns,
};
use common::{Daemon, in_ns, spawn_in_netns, stdout};
use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};

/// The embedded server, from inside a container.
const EMBEDDED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);

fn wait_until(what: &str, d: &Daemon, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}\n--- metrics ---\n{}",
            d.metrics()
        );
        sleep(Duration::from_millis(100));
    }
}

fn refused(d: &Daemon, reason: &str) -> u64 {
    counter(d, &format!("netd_dns_refused_total{{reason=\"{reason}\"}}"))
}

fn tcp_rejected(d: &Daemon, reason: &str) -> u64 {
    counter(
        d,
        &format!("netd_dns_tcp_rejected_total{{reason=\"{reason}\"}}"),
    )
}

// ---------------------------------------------------------------------------
// Internal networks.

#[test]
fn internal_only_containers_get_local_names_and_nothing_forwarded() {
    let (d, up) = daemon_with_upstream();
    d.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.185.0.0/24",
        "inside",
    ]);
    d.ok(&["network", "create", "--subnet", "10.185.1.0/24", "lan"]);
    d.ok(&["container", "create", "--network", "inside", "iso"]);
    d.ok(&["container", "create", "--network", "inside", "web"]);
    d.ok(&["container", "create", "--network", "lan", "open"]);
    d.ok(&["container", "create", "--network", "inside", "both"]);
    d.ok(&["network", "connect", "lan", "both"]);
    for c in ["iso", "open", "both"] {
        wait_dns(&d, c);
    }
    let web = ip_of(&d, "web", "inside");

    // Names on its networks resolve; nothing else leaves: SERVFAIL, as
    // Docker answers there, and the upstream never hears of it.
    assert_eq!(short(&d, "iso", &["web"]), vec![web.clone()]);
    assert_eq!(short(&d, "iso", &["-x", &web]), vec!["web.inside."]);
    assert_eq!(status(&d, "iso", &["outside.test"]), "SERVFAIL");
    assert_eq!(status(&d, "iso", &["+tcp", "outside.test"]), "SERVFAIL");
    assert!(
        !up.saw("outside.test."),
        "forwarded from an internal network: {:?}",
        up.seen()
    );
    assert_eq!(refused(&d, "internal_network"), 2);

    // On a normal network, or on both kinds: forwarded.
    assert_eq!(short(&d, "open", &["outside.test"]), vec![OUTSIDE_TEST]);
    assert_eq!(short(&d, "both", &["outside.test"]), vec![OUTSIDE_TEST]);
    assert_eq!(short(&d, "both", &["web"]), vec![web.clone()]);
    let forwarded = up.seen().len();

    // It follows the container's networks.
    d.ok(&["network", "connect", "lan", "iso"]);
    assert_eq!(short(&d, "iso", &["outside.test"]), vec![OUTSIDE_TEST]);
    assert!(up.seen().len() > forwarded);
    d.ok(&["network", "disconnect", "lan", "iso"]);
    let forwarded = up.seen().len();
    assert_eq!(status(&d, "iso", &["outside.test"]), "SERVFAIL");
    assert_eq!(up.seen().len(), forwarded);
    assert_eq!(refused(&d, "internal_network"), 3);
}

// ---------------------------------------------------------------------------
// Floods.

/// What a flood got back.
#[derive(Debug, Default)]
struct FloodStats {
    sent: u64,
    refused: u64,
    other: u64,
}

/// A container sending forwarded queries (distinct ids and names under
/// the blackholed `hole.test`) to its embedded server as fast as the
/// pacing allows, until dropped.
struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<FloodStats>>,
}

impl Flood {
    /// Queries sent per batch, and the pause between batches: about 2,000
    /// queries a second, each holding a forwarding slot for the upstream
    /// timeout (2 s), i.e. four times the daemon's slots.
    const BATCH: u16 = 20;
    const PAUSE: Duration = Duration::from_millis(10);

    fn start(netns: &str) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = spawn_in_netns(netns, move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.connect(EMBEDDED).unwrap();
            sock.set_nonblocking(true).unwrap();
            let mut stats = FloodStats::default();
            let mut id: u16 = 0;
            let mut buf = [0u8; 512];
            while !stopping.load(Ordering::Relaxed) {
                for _ in 0..Flood::BATCH {
                    id = id.wrapping_add(1);
                    let mut q = Message::query();
                    q.metadata.id = id;
                    q.metadata.recursion_desired = true;
                    let name = Name::from_ascii(format!("q{}-{id}.{HOLE}", stats.sent)).unwrap();
                    q.add_query(Query::query(name, RecordType::A));
                    if sock.send(&q.to_vec().unwrap()).is_ok() {
                        stats.sent += 1;
                    }
                }
                loop {
                    match sock.recv(&mut buf) {
                        Ok(n) => match Message::from_vec(&buf[..n]) {
                            Ok(m) if m.metadata.response_code == ResponseCode::Refused => {
                                stats.refused += 1
                            }
                            _ => stats.other += 1,
                        },
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    }
                }
                sleep(Flood::PAUSE);
            }
            stats
        });
        Flood {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> FloodStats {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("flood thread")
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A daemon with containers `flooder`, `victim` and `web` on network `n1`
/// (`subnet`), and web's address.
fn flooder_and_victim(subnet: &str) -> (Daemon, Upstream, String) {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", subnet, "n1"]);
    for c in ["flooder", "victim", "web"] {
        d.ok(&["container", "create", "--network", "n1", c]);
    }
    wait_dns(&d, "flooder");
    wait_dns(&d, "victim");
    let web = ip_of(&d, "web", "n1");
    (d, up, web)
}

#[test]
fn a_query_flood_does_not_starve_other_containers() {
    let (d, up, web) = flooder_and_victim("10.186.0.0/24");
    let flood = Flood::start(&d.netns("flooder"));
    wait_until("the flooder reaches its budget", &d, || {
        refused(&d, "container_budget") > 100
    });
    // While it floods, everybody else's queries are answered, forwarded
    // ones included, and the flooder's own local names too.
    for _ in 0..5 {
        assert_eq!(short(&d, "victim", &["outside.test"]), vec![OUTSIDE_TEST]);
        assert_eq!(
            short(&d, "victim", &["+tcp", "outside.test"]),
            vec![OUTSIDE_TEST]
        );
        assert_eq!(short(&d, "victim", &["web"]), vec![web.clone()]);
        assert_eq!(short(&d, "flooder", &["web"]), vec![web.clone()]);
    }
    let stats = flood.finish();
    assert!(
        stats.refused > 0 && stats.sent > stats.refused,
        "over its budget the flooder gets REFUSED at once: {stats:?}"
    );
    assert_eq!(
        refused(&d, "daemon_budget"),
        0,
        "one container never reaches the daemon's limit"
    );
    assert!(up.seen().iter().any(|(n, _)| n.ends_with(HOLE)));
}

#[test]
fn a_tcp_connection_flood_is_capped_per_container() {
    const CONNECTIONS: usize = 300;
    let (d, _up, web) = flooder_and_victim("10.187.0.0/24");

    // Hundreds of connections, opened and held (the kernel completes the
    // handshakes; the daemon decides which it keeps).
    let stop = Arc::new(AtomicBool::new(false));
    let holding = stop.clone();
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let holder = spawn_in_netns(&d.netns("flooder"), move || {
        let conns: Vec<TcpStream> = (0..CONNECTIONS)
            .filter_map(|_| TcpStream::connect_timeout(&EMBEDDED, Duration::from_secs(30)).ok())
            .collect();
        opened_tx.send(conns.len()).unwrap();
        while !holding.load(Ordering::Relaxed) {
            sleep(Duration::from_millis(50));
        }
        drop(conns);
    });
    let opened = opened_rx
        .recv_timeout(Duration::from_secs(300))
        .expect("connections opened");
    assert_eq!(opened, CONNECTIONS);
    wait_until("the daemon closes what is over the budget", &d, || {
        tcp_rejected(&d, "container_budget") >= (CONNECTIONS - 16) as u64
    });
    // The daemon's ends of the connections it kept (its listener lives in
    // the container's namespace, so they show there).
    let held = in_ns(
        &d.netns("flooder"),
        &["ss", "-Htn", "state", "established", "( sport = :53 )"],
    );
    let held = stdout(&held).lines().count();
    assert!(held <= 16, "{held} connections held for one container");

    // Another container's TCP queries are served meanwhile.
    assert_eq!(short(&d, "victim", &["+tcp", "web"]), vec![web.clone()]);
    assert_eq!(
        short(&d, "victim", &["+tcp", "outside.test"]),
        vec![OUTSIDE_TEST]
    );
    assert_eq!(tcp_rejected(&d, "daemon_budget"), 0);
    stop.store(true, Ordering::Relaxed);
    holder.join().expect("holder thread");
}

// ---------------------------------------------------------------------------
// netd's own zones.

#[test]
fn ptr_and_names_of_netd_zones_never_go_upstream() {
    let (d, up) = daemon_with_upstream();
    d.ok(&["network", "create", "--subnet", "10.188.0.0/24", "n1"]);
    d.ok(&["network", "create", "--subnet", "10.188.1.0/24", "n2"]);
    d.ok(&["container", "create", "--network", "n1", "client"]);
    d.ok(&["container", "create", "--network", "n2", "other"]);
    d.ok(&["container", "create", "legacy"]);
    wait_dns(&d, "client");
    let client = ip_of(&d, "client", "n1");
    let other = ip_of(&d, "other", "n2");
    let legacy = ip_of(&d, "legacy", "bridge");
    let reverse = |ip: &str| {
        let o: Vec<&str> = ip.split('.').collect();
        format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
    };

    let before = up.seen().len();
    // Its own address: the name.
    assert_eq!(short(&d, "client", &["-x", &client]), vec!["client.n1."]);
    // Addresses of netd's subnets it has no name for: NXDOMAIN, from here.
    for ip in ["10.188.0.77", &other, &legacy] {
        assert_eq!(status(&d, "client", &["-x", ip]), "NXDOMAIN", "{ip}");
    }
    // Longer and shorter names in the same reverse zones.
    let long = format!("x.{}", reverse(&client));
    assert_eq!(status(&d, "client", &[&long, "PTR"]), "NXDOMAIN");
    let long = format!("1.{}", reverse("10.188.1.5"));
    assert_eq!(status(&d, "client", &[&long, "PTR"]), "NXDOMAIN");
    assert_eq!(
        status(&d, "client", &["0.188.10.in-addr.arpa", "PTR"]),
        "NOERROR"
    );
    // Names in its networks' zones that are nobody's.
    for name in ["ghost.n1", "client.x.n1", "client.n1.n1", "tasks.ghost.n1"] {
        for qtype in ["A", "AAAA", "PTR"] {
            assert_eq!(
                status(&d, "client", &[name, qtype]),
                "NXDOMAIN",
                "{name} {qtype}"
            );
        }
    }
    assert_eq!(
        up.seen_since(before),
        [],
        "netd's zones leaked to the upstream"
    );

    // The rest still goes there: addresses that are not netd's, and names
    // of networks the asker is not on (another network's name may be a
    // real domain; only its own networks' zones are netd's to answer).
    assert_eq!(status(&d, "client", &["-x", "198.51.100.7"]), "NXDOMAIN");
    assert!(up.saw("7.100.51.198.in-addr.arpa."));
    assert_eq!(
        status(&d, "client", &["10.in-addr.arpa", "SOA"]),
        "NXDOMAIN"
    );
    assert!(up.saw("10.in-addr.arpa."));
    assert_eq!(status(&d, "client", &["ghost.n2"]), "NXDOMAIN");
    assert!(up.saw("ghost.n2."));
}
