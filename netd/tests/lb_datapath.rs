//! Service load balancing tests: BPF_PROG_TEST_RUN of `netd_from_ep` and
//! `netd_uplink_in` on crafted frames (every checksum recomputed and
//! checked here) for round robin, stickiness, reply translation, services
//! without backends, resizing, counters, ARP for VIPs and published
//! service ports; and one real-traffic test between namespaces (socat
//! TCP servers and UDP server threads answering with their name, a client
//! namespace, and the host itself through the socket hooks).
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN), `ip`, `bridge`,
//! `socat`, cgroup2. Every test uses its own pin directory (so its own
//! maps) and its own interfaces/namespaces, removed by guards even when it
//! panics, so the tests run in parallel with each other and with the other
//! test files.
//!
//! Addresses: the crafted frames use 10.71.0.0/24 to 10.73.0.0/24 and
//! documentation ranges, in the test's maps only. The real-traffic test
//! puts 10.237.x.0/24 (x from the pid) on a bridge it owns; no other test
//! file uses 10.237.

mod bpf_harness;

use std::{
    collections::BTreeMap,
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use bpf_harness::{
    addr::{ip, mac_of, net},
    checks::{self, Seen},
    cmd::run,
    frames::{
        ACK, FIN, ICMP, RST, SYN, TCP, UDP, arp_request, frame, frame_with, icmp_echo, tcp, udp,
    },
    guards::{Bridge, PinDir, Process, Veth, wait_up},
    lab::{CLIENT, Ep, Lab, UPLINK},
    prog::{RunResult, VERDICT_DROP, VERDICT_NEXT, VERDICT_REDIRECT},
    servers::{Server, tcp_hello},
};
use netd::dataplane::{
    Backend, Dataplane, Direction, DropReason, NetworkPolicy, Proto, ServiceEntry, cgroup2_root,
    host_netns_cookie,
};
use netd_common::nat::CT_F_LB;

const VIP: &str = "10.71.0.100";
const SVC: u32 = 7;

/// The lab of the load balancing tests: network 1 is 10.71.0.0/24 with
/// clients `a` = .2 and `b` = .3, backends .11..=.14 and the service's VIP
/// .100; network 2 is 10.72.0.0/24 (`c` = .2), network 3 10.73.0.0/24
/// (internal, unused here); the uplink is 192.0.2.10.
fn lab() -> Lab {
    Lab::new(71).with_uplink().with_backends(11..=14)
}

/// [`checks::redirected`], and more: every datagram this file sends carries
/// a UDP checksum, so a translated one must keep one.
fn redirected(r: &RunResult) -> Seen {
    let s = checks::redirected(r);
    assert!(
        s.proto != UDP || s.l4_check != 0,
        "UDP checksum of {:02x?}",
        r.out
    );
    s
}

impl Lab {
    /// Backends `indexes` (0-based into `backends`).
    fn members(&self, indexes: &[usize]) -> Vec<Backend> {
        indexes
            .iter()
            .map(|i| self.backends[*i].backend())
            .collect()
    }

    /// Writes the service `SVC` at `VIP` with backends `indexes`.
    fn set_service(&mut self, indexes: &[usize]) {
        let members = self.members(indexes);
        self.dp
            .set_service(SVC, ip(VIP), &members)
            .expect("set_service");
    }

    /// A new TCP connection (SYN) from `ep`'s port `sport` to VIP:80: the
    /// backend it was sent to (after checking the whole frame).
    fn connect(&self, ep: &Ep, sport: u16) -> Ipv4Addr {
        let vip = ip(VIP);
        let s = redirected(&self.send(ep, vip, TCP, &tcp(ep.ip, vip, sport, 80, SYN)));
        assert_eq!((s.src, s.sport, s.dport, s.ttl), (ep.ip, sport, 80, 63));
        assert_eq!(s.eth_dst, mac_of(s.dst), "to the backend's MAC");
        assert_eq!(s.eth_src, mac_of(ep.gw), "from the gateway's");
        s.dst
    }

    /// The backend `Ep` with address `addr`.
    fn backend(&self, addr: Ipv4Addr) -> &Ep {
        self.backends
            .iter()
            .find(|b| b.ip == addr)
            .unwrap_or_else(|| panic!("{addr} is not a backend"))
    }

    /// `LB_STATS` of `SVC` as {backend: selections}.
    fn selections(&self) -> BTreeMap<Ipv4Addr, u64> {
        self.dp
            .lb_stats()
            .expect("lb stats")
            .into_iter()
            .filter(|(svc, _, _)| *svc == SVC)
            .map(|(_, b, n)| (b, n))
            .collect()
    }
}

/// How often each address occurs in `hits`.
fn tally(hits: &[Ipv4Addr]) -> BTreeMap<Ipv4Addr, u64> {
    let mut out = BTreeMap::new();
    for h in hits {
        *out.entry(*h).or_default() += 1;
    }
    out
}

fn each(addrs: &[Ipv4Addr], n: u64) -> BTreeMap<Ipv4Addr, u64> {
    addrs.iter().map(|a| (*a, n)).collect()
}

// ---------------------------------------------------------------------------
// Round robin and stickiness.

#[test]
fn new_flows_go_round_robin_exactly() {
    let mut lab = lab();
    lab.set_service(&[0, 1, 2]);
    let members: Vec<Ipv4Addr> = lab.members(&[0, 1, 2]).iter().map(Backend::ip).collect();

    // 3 backends x 5 rounds, from two clients: each backend exactly 5, in
    // slot order (a new service starts at its first backend).
    let hits: Vec<Ipv4Addr> = (0..15u16)
        .map(|i| {
            let ep = if i % 2 == 0 { &lab.a } else { &lab.b };
            lab.connect(ep, 40000 + i)
        })
        .collect();
    assert_eq!(&hits[..3], &members[..], "slot order");
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(*h, members[i % 3], "flow {i}");
    }
    assert_eq!(tally(&hits), each(&members, 5));
    assert_eq!(lab.selections(), each(&members, 5));
    assert_eq!(lab.dp.nat_stats().expect("stats").lb_flows, 15);
    // Deliveries are counted for the backends.
    for m in &members {
        let to = lab
            .dp
            .endpoint_stats()
            .expect("stats")
            .into_iter()
            .find(|(i, _)| *i == lab.backend(*m).ifindex)
            .expect("counted")
            .1
            .to_packets;
        assert_eq!(to, 5, "{m}");
    }

    // UDP and ICMP echo share the cursor: 3 UDP flows and 3 pings (distinct
    // identifiers) continue the rotation, each backend once per kind.
    let vip = ip(VIP);
    let a = &lab.a;
    let udp_hits: Vec<Ipv4Addr> = (0..3u16)
        .map(|i| {
            let s = redirected(&lab.send(a, vip, UDP, &udp(a.ip, vip, 50000 + i, 53, true)));
            assert_eq!((s.src, s.sport, s.dport), (a.ip, 50000 + i, 53));
            s.dst
        })
        .collect();
    assert_eq!(udp_hits, members);
    let ping_hits: Vec<Ipv4Addr> = (0..3u16)
        .map(|i| {
            let s = redirected(&lab.send(a, vip, ICMP, &icmp_echo(true, 900 + i, 1)));
            assert_eq!((s.src, s.sport, s.icmp_type), (a.ip, 900 + i, 8));
            s.dst
        })
        .collect();
    assert_eq!(ping_hits, members);
    assert_eq!(lab.selections(), each(&members, 7));
    assert_eq!(lab.total_drops(), 0);
}

/// A TCP segment to a VIP that no flow knows and that opens none (a late
/// ACK, a FIN, a RST of a flow whose entries are gone) is dropped as
/// `no_flow`: it selects no backend, moves no cursor and creates no entry,
/// so the next connection still gets the next backend in turn.
#[test]
fn stray_segments_to_a_vip_select_no_backend() {
    let mut lab = lab();
    lab.set_service(&[0, 1, 2]);
    let members: Vec<Ipv4Addr> = lab.members(&[0, 1, 2]).iter().map(Backend::ip).collect();
    let (a, vip) = (&lab.a, ip(VIP));
    assert_eq!(lab.connect(a, 40000), members[0]);
    for (what, flags) in [
        ("a late ACK", ACK),
        ("a FIN", FIN | ACK),
        ("a RST", RST),
        ("a SYN-ACK", SYN | ACK),
    ] {
        let r = lab.send(a, vip, TCP, &tcp(a.ip, vip, 41000, 80, flags));
        assert_eq!(r.verdict, VERDICT_DROP, "{what}");
    }
    assert_eq!(lab.drops(DropReason::NoFlow, Direction::FromEndpoint), 4);
    let one_selection: BTreeMap<Ipv4Addr, u64> = members
        .iter()
        .map(|m| (*m, u64::from(*m == members[0])))
        .collect();
    assert_eq!(lab.selections(), one_selection, "no selection");
    assert_eq!(lab.dp.conntrack().expect("ct").len(), 2, "one flow");
    assert_eq!(lab.connect(a, 40001), members[1], "the rotation goes on");
}

#[test]
fn concurrent_new_flows_still_split_exactly() {
    let mut lab = lab();
    lab.set_service(&[0, 1, 2]);
    let members: Vec<Ipv4Addr> = lab.members(&[0, 1, 2]).iter().map(Backend::ip).collect();
    // Two threads (on whatever CPUs they land) open 150 flows each: the
    // shared cursor is advanced atomically, so the 300 flows split exactly.
    let hits: Vec<Ipv4Addr> = thread::scope(|s| {
        let workers: Vec<_> = [(&lab.a, 20000u16), (&lab.b, 30000u16)]
            .into_iter()
            .map(|(ep, base)| {
                let lab = &lab;
                s.spawn(move || {
                    (0..150u16)
                        .map(|i| lab.connect(ep, base + i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    assert_eq!(tally(&hits), each(&members, 100));
    assert_eq!(lab.selections(), each(&members, 100));
    assert_eq!(lab.total_drops(), 0);
}

#[test]
fn an_existing_flow_stays_on_its_backend() {
    let mut lab = lab();
    lab.set_service(&[0, 1, 2]);
    let vip = ip(VIP);
    let first = lab.connect(&lab.a, 41000);
    // Other flows move the cursor on...
    let second = lab.connect(&lab.b, 41001);
    let third = lab.connect(&lab.b, 41002);
    assert_ne!(first, second);
    assert_ne!(second, third);
    // ...but every further packet of the first flow goes where its SYN
    // went, and is not a new selection.
    let a = &lab.a;
    for flags in [ACK, ACK, ACK] {
        let s = redirected(&lab.send(a, vip, TCP, &tcp(a.ip, vip, 41000, 80, flags)));
        assert_eq!((s.dst, s.sport, s.dport), (first, 41000, 80));
    }
    // A retransmitted SYN of the same tuple too.
    assert_eq!(lab.connect(a, 41000), first);
    assert_eq!(lab.selections().values().sum::<u64>(), 3);
    // The flow is in NAT_CT, marked as balanced: two entries.
    let ct = lab.dp.conntrack().expect("ct");
    let lb_entries = ct.iter().filter(|(_, e)| e.flags & CT_F_LB != 0).count();
    assert_eq!(lb_entries, 6, "{ct:?}");
    // The next new flow continues the rotation where it was.
    assert_eq!(lab.connect(a, 41003), first);
}

#[test]
fn replies_come_back_from_the_vip() {
    let mut lab = lab();
    lab.set_service(&[0, 1]);
    let (vip, a) = (ip(VIP), &lab.a);

    let backend = lab.backend(lab.connect(a, 42000));
    // The backend answers the client directly (a peer on its network);
    // netd_from_ep of the backend finds the flow and puts the VIP back.
    let r = lab.send(
        backend,
        a.ip,
        TCP,
        &tcp(backend.ip, a.ip, 80, 42000, SYN | ACK),
    );
    let s = redirected(&r);
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport, s.ttl),
        (vip, 80, a.ip, 42000, 63)
    );
    assert_eq!(s.eth_dst, a.mac, "to the client's MAC");
    assert_eq!(
        s.eth_src,
        mac_of(a.gw),
        "from the gateway's (what ARP said the VIP has)"
    );

    // UDP and ICMP echo replies as well.
    let u = lab.backend(redirected(&lab.send(a, vip, UDP, &udp(a.ip, vip, 42001, 53, true))).dst);
    let s = redirected(&lab.send(u, a.ip, UDP, &udp(u.ip, a.ip, 53, 42001, true)));
    assert_eq!((s.src, s.sport, s.dst, s.dport), (vip, 53, a.ip, 42001));
    let p = lab.backend(redirected(&lab.send(a, vip, ICMP, &icmp_echo(true, 77, 1))).dst);
    let s = redirected(&lab.send(p, a.ip, ICMP, &icmp_echo(false, 77, 1)));
    assert_eq!((s.src, s.dst, s.sport, s.icmp_type), (vip, a.ip, 77, 0));

    // Traffic of a backend that is not a reply goes to its peer untouched
    // (only the Ethernet destination is set, as for any peer).
    let f = frame(
        mac_of(a.gw),
        backend.mac,
        backend.ip,
        a.ip,
        TCP,
        &tcp(backend.ip, a.ip, 5555, 6666, SYN),
    );
    let r = lab.send_frame(backend, &f);
    assert_eq!(r.verdict, VERDICT_REDIRECT);
    assert_eq!(&r.out[..6], &a.mac);
    assert_eq!(&r.out[6..], &f[6..], "not translated");
    assert_eq!(lab.total_drops(), 0);

    // A RST from the client ends the flow; the backend's next packet is
    // no reply any more and goes out as itself.
    redirected(&lab.send(a, vip, TCP, &tcp(a.ip, vip, 42000, 80, RST)));
    let s = redirected(&lab.send(backend, a.ip, TCP, &tcp(backend.ip, a.ip, 80, 42000, ACK)));
    assert_eq!(s.src, backend.ip);
}

#[test]
fn a_client_balanced_to_itself_talks_through_the_vip() {
    let mut lab = lab();
    let me = lab.a.backend();
    lab.dp.set_service(SVC, ip(VIP), &[me]).expect("service");
    let (vip, a) = (ip(VIP), &lab.a);
    // To itself, from the VIP (its own address as source would be a
    // martian to its stack).
    let s = redirected(&lab.send(a, vip, TCP, &tcp(a.ip, vip, 43000, 80, SYN)));
    assert_eq!((s.src, s.dst, s.dport, s.eth_dst), (vip, a.ip, 80, a.mac));
    let xp = s.sport;
    // Its server answers the VIP; that comes back as the VIP's answer to
    // the client port.
    let s = redirected(&lab.send(a, vip, TCP, &tcp(a.ip, vip, 80, xp, SYN | ACK)));
    assert_eq!((s.src, s.sport, s.dst, s.dport), (vip, 80, a.ip, 43000));
    // Client and server port equal: the two entries still get distinct
    // keys.
    let s = redirected(&lab.send(a, vip, TCP, &tcp(a.ip, vip, 80, 80, SYN)));
    assert_eq!((s.src, s.dst), (vip, a.ip));
    assert_ne!(s.sport, 80);
    let s = redirected(&lab.send(a, vip, TCP, &tcp(a.ip, vip, 80, s.sport, SYN | ACK)));
    assert_eq!((s.src, s.sport, s.dst, s.dport), (vip, 80, a.ip, 80));
    assert_eq!(lab.total_drops(), 0);
}

#[test]
fn only_a_vip_drops_what_it_cannot_balance() {
    let mut lab = lab();
    lab.set_service(&[0, 1]);
    let (vip, unused, a) = (ip(VIP), ip("10.71.0.200"), &lab.a);
    // A fragment other than the first, and a TCP header cut short.
    let fragment = |dst| frame_with(mac_of(a.gw), a.mac, a.ip, dst, UDP, &[0u8; 16], 64, 0x0010);
    let cut_short = |dst| frame(mac_of(a.gw), a.mac, a.ip, dst, TCP, &[0u8; 8]);

    for (f, reason) in [
        (fragment(vip), DropReason::NatFragment),
        (cut_short(vip), DropReason::Malformed),
    ] {
        assert_eq!(lab.send_frame(a, &f).verdict, VERDICT_DROP, "{reason:?}");
        assert_eq!(lab.drops(reason, Direction::FromEndpoint), 1, "{reason:?}");
    }
    // To an address of the subnet that is no VIP: the host decides, as for
    // any unused address.
    for f in [fragment(unused), cut_short(unused)] {
        let r = lab.send_frame(a, &f);
        assert_eq!(r.verdict, VERDICT_NEXT);
        assert_eq!(&r.out[14..], &f[14..]);
    }
    let r = lab.send(a, unused, TCP, &tcp(a.ip, unused, 43000, 80, SYN));
    assert_eq!(
        r.verdict, VERDICT_NEXT,
        "no flow, no VIP: nothing to balance"
    );
    assert_eq!(lab.total_drops(), 2);
}

// ---------------------------------------------------------------------------
// Changing and removing services.

#[test]
fn a_service_without_backends_drops_new_flows_and_counts_them() {
    let mut lab = lab();
    lab.set_service(&[0, 1]);
    let vip = ip(VIP);
    let kept_ip = lab.connect(&lab.a, 44000);

    lab.set_service(&[]);
    let (a, kept) = (&lab.a, lab.backend(kept_ip));
    assert_eq!(
        lab.dp.services().expect("services"),
        [ServiceEntry {
            index: SVC,
            vip,
            backends: vec![]
        }]
    );
    for (proto, l4) in [
        (TCP, tcp(a.ip, vip, 44001, 80, SYN)),
        (UDP, udp(a.ip, vip, 44002, 53, true)),
        (ICMP, icmp_echo(true, 5, 1)),
    ] {
        let r = lab.send(a, vip, proto, &l4);
        assert_eq!(r.verdict, VERDICT_DROP, "not to a stale backend");
    }
    assert_eq!(lab.drops(DropReason::NoBackend, Direction::FromEndpoint), 3);
    assert!(lab.selections().is_empty(), "the counters went with them");
    // The flow that was established keeps its backend both ways.
    let s = redirected(&lab.send(a, vip, TCP, &tcp(a.ip, vip, 44000, 80, ACK)));
    assert_eq!(s.dst, kept.ip);
    let s = redirected(&lab.send(kept, a.ip, TCP, &tcp(kept.ip, a.ip, 80, 44000, ACK)));
    assert_eq!(s.src, vip);
    // The backend's reply mark stays while it has balanced flows, and goes
    // with them.
    assert!(
        lab.dp
            .lb_backend_marks()
            .expect("marks")
            .contains(&kept.ifindex)
    );
    lab.dp.remove_flows_of(kept.ip).expect("remove flows");
    assert_eq!(lab.dp.lb_backend_marks().expect("marks"), Vec::<u32>::new());

    // Removed altogether, the VIP is just an unused address of the subnet:
    // to the host, untranslated, nothing dropped.
    lab.dp.remove_service(SVC, vip).expect("remove");
    assert_eq!(lab.dp.services().expect("services"), []);
    let f = frame(
        mac_of(a.gw),
        a.mac,
        a.ip,
        vip,
        TCP,
        &tcp(a.ip, vip, 44003, 80, SYN),
    );
    let r = lab.send_frame(a, &f);
    assert_eq!(r.verdict, VERDICT_NEXT);
    assert_eq!(r.out, f);
    assert_eq!(lab.drops(DropReason::NoBackend, Direction::FromEndpoint), 3);
}

#[test]
fn shrinking_and_growing_keep_the_distribution_exact() {
    let mut lab = lab();
    lab.set_service(&[0, 1, 2]);
    let b: Vec<Ipv4Addr> = lab.backends.iter().map(|e| e.ip).collect();
    let mut port = 45000u16;
    let mut connect = |lab: &Lab, n: usize| -> Vec<Ipv4Addr> {
        (0..n)
            .map(|_| {
                port += 1;
                lab.connect(&lab.a, port)
            })
            .collect()
    };
    // One flow, so the cursor is not at a multiple of anything.
    assert_eq!(connect(&lab, 1), [b[0]]);

    // Shrink to two (b[1] leaves): 2 x 4 flows, each exactly 4, b[1]
    // never again.
    lab.set_service(&[0, 2]);
    assert_eq!(tally(&connect(&lab, 8)), each(&[b[0], b[2]], 4));
    // Grow to four: 4 x 3 flows, each exactly 3.
    lab.set_service(&[0, 2, 1, 3]);
    assert_eq!(tally(&connect(&lab, 12)), each(&b, 3));
    // Replace the whole set at the same size.
    lab.set_service(&[3, 2, 1, 0]);
    assert_eq!(tally(&connect(&lab, 8)), each(&b, 2));

    // Counters: b[1] lost its counter when it left and started again from
    // 0 when it came back (3 + 2); the others kept theirs.
    let mut expected = BTreeMap::new();
    expected.insert(b[0], 1 + 4 + 3 + 2);
    expected.insert(b[1], 3 + 2);
    expected.insert(b[2], 4 + 3 + 2);
    expected.insert(b[3], 3 + 2);
    assert_eq!(lab.selections(), expected);
    assert_eq!(
        lab.dp.services().expect("services")[0].backends,
        lab.members(&[3, 2, 1, 0])
    );
    assert_eq!(lab.total_drops(), 0);

    // Writing the same service again changes nothing (idempotent: the
    // cursor and the counters carry on).
    lab.set_service(&[3, 2, 1, 0]);
    assert_eq!(tally(&connect(&lab, 4)), each(&b, 1));
    assert_eq!(lab.selections().values().sum::<u64>(), 29 + 4);
}

#[test]
fn services_are_retained_removed_and_isolated() {
    let mut lab = lab();
    lab.set_service(&[0, 1]);
    let vip = ip(VIP);
    let vip2 = ip("10.71.0.101");
    let other = lab.members(&[2, 3]);
    lab.dp.set_service(8, vip2, &other).expect("second service");
    let first = lab.connect(&lab.a, 46000);
    let a = &lab.a;
    let s = redirected(&lab.send(a, vip2, TCP, &tcp(a.ip, vip2, 46001, 80, SYN)));
    assert_eq!(s.dst, other[0].ip(), "each service has its own cursor");
    assert_eq!(first, lab.backends[0].ip);

    // A container of another network cannot use the VIP (nor resolve it).
    let c = &lab.c;
    let r = lab.send(c, vip, TCP, &tcp(c.ip, vip, 46002, 80, SYN));
    assert_eq!(r.verdict, VERDICT_DROP);
    assert_eq!(
        lab.drops(DropReason::CrossNetwork, Direction::FromEndpoint),
        1
    );

    // Restart-style garbage collection: only service 8 is kept; the two
    // others go in one removal.
    let vip3 = ip("10.71.0.102");
    lab.dp.set_service(9, vip3, &other).expect("third service");
    lab.dp.retain_services(&[(8, vip2)]).expect("retain");
    let services = lab.dp.services().expect("services");
    assert_eq!(services.len(), 1);
    assert_eq!((services[0].index, services[0].vip), (8, vip2));
    assert!(
        lab.dp
            .lb_stats()
            .expect("lb stats")
            .iter()
            .all(|(svc, _, _)| *svc == 8)
    );
    // The removed service's flows are gone with it; the other's stay.
    let ct = lab.dp.conntrack().expect("ct");
    let (vip_be, first_be) = (
        u32::from_ne_bytes(vip.octets()),
        u32::from_ne_bytes(first.octets()),
    );
    assert!(
        ct.iter()
            .all(|(k, _)| k.daddr != vip_be && k.saddr != first_be)
    );
    assert_eq!(ct.len(), 2, "{ct:?}");
    // Its backends are no backends any more: no reply marks left for them.
    let marks = lab.dp.lb_backend_marks().expect("marks");
    assert!(!marks.contains(&lab.backends[0].ifindex), "{marks:?}");
    assert!(!marks.contains(&lab.backends[1].ifindex), "{marks:?}");

    // Invalid definitions are refused before anything is written.
    assert!(lab.dp.set_service(1 << 20, vip, &[]).is_err());
    assert!(
        lab.dp
            .set_service(
                9,
                vip,
                &[Backend::Local {
                    ip: vip,
                    ifindex: 3
                }]
            )
            .is_err()
    );
    assert!(
        lab.dp
            .set_service(
                9,
                vip,
                &[Backend::Remote {
                    ip: ip("10.71.0.77")
                }]
            )
            .is_err(),
        "a remote backend that is no remote endpoint"
    );
    assert_eq!(lab.dp.services().expect("services").len(), 1);
}

// ---------------------------------------------------------------------------
// ARP, published service ports.

#[test]
fn arp_for_a_vip_is_answered_with_the_gateway_mac() {
    let mut lab = lab();
    lab.set_service(&[0]);
    let (vip, a) = (ip(VIP), &lab.a);
    let r = lab.send_frame(a, &arp_request(a.mac, a.ip, vip));
    assert_eq!(r.verdict, VERDICT_REDIRECT, "answered");
    let gw_mac = mac_of(a.gw);
    assert_eq!(&r.out[0..6], &a.mac);
    assert_eq!(&r.out[6..12], &gw_mac);
    assert_eq!(&r.out[20..22], &[0, 2], "a reply");
    assert_eq!(&r.out[22..28], &gw_mac, "sender MAC");
    assert_eq!(&r.out[28..32], &vip.octets(), "sender IP");
    // Another network's container: not its network.
    let r = lab.send_frame(&lab.c, &arp_request(lab.c.mac, lab.c.ip, vip));
    assert_eq!(r.verdict, VERDICT_DROP);
    // An unused address of the subnet stays unanswered.
    let r = lab.send_frame(a, &arp_request(a.mac, a.ip, ip("10.71.0.200")));
    assert_eq!(r.verdict, VERDICT_DROP);
    assert_eq!(
        lab.drops(DropReason::ArpUnanswered, Direction::FromEndpoint),
        1
    );
}

#[test]
fn a_port_published_to_a_service_is_balanced_from_outside_and_hairpin() {
    let mut lab = lab();
    lab.set_service(&[0, 1, 2]);
    let (vip, uplink, client) = (ip(VIP), ip(UPLINK), ip(CLIENT));
    lab.dp
        .set_service_publish(None, 8080, Proto::Tcp, SVC, vip, 80)
        .expect("publish");
    let published = lab.dp.published().expect("published");
    assert_eq!(published.len(), 1);
    assert!(published[0].service);
    assert_eq!(
        (
            published[0].target,
            published[0].target_port,
            published[0].target_ifindex
        ),
        (vip, 80, 0)
    );
    let members: Vec<Ipv4Addr> = lab.members(&[0, 1, 2]).iter().map(Backend::ip).collect();

    // From outside: 3 x 2 new connections, each backend twice; the client's
    // address is kept.
    let mut hits = Vec::new();
    for i in 0..6u16 {
        let s = redirected(&lab.arrive(
            client,
            uplink,
            TCP,
            &tcp(client, uplink, 5000 + i, 8080, SYN),
        ));
        assert_eq!((s.src, s.sport, s.dport), (client, 5000 + i, 80));
        assert_eq!(s.eth_dst, mac_of(s.dst));
        hits.push(s.dst);
    }
    assert_eq!(hits[..3], members[..]);
    assert_eq!(tally(&hits), each(&members, 2));
    // The reply leaves from the published address.
    let be = lab.backend(hits[1]);
    let s = redirected(&lab.send(be, client, TCP, &tcp(be.ip, client, 80, 5001, SYN | ACK)));
    assert_eq!(
        (s.src, s.sport, s.dst, s.dport),
        (uplink, 8080, client, 5001)
    );
    // A packet of an established flow stays on its backend.
    let s = redirected(&lab.arrive(client, uplink, TCP, &tcp(client, uplink, 5001, 8080, ACK)));
    assert_eq!(s.dst, hits[1]);

    // Hairpin from a container of another network, through the uplink
    // address: the rotation goes on, the source is the target network's
    // gateway.
    let c = &lab.c;
    let s = redirected(&lab.send(c, uplink, TCP, &tcp(c.ip, uplink, 7000, 8080, SYN)));
    assert_eq!((s.src, s.dst, s.dport), (ip("10.71.0.1"), members[0], 80));
    assert_eq!(lab.selections(), {
        let mut m = each(&members, 2);
        *m.get_mut(&members[0]).expect("member") += 1;
        m
    });
    let stats = lab.dp.nat_stats().expect("stats");
    assert_eq!((stats.dnat_flows, stats.hairpin_flows), (6, 1), "{stats:?}");
    assert_eq!(stats.published[0].flows, 7);

    // Without backends the published port drops new flows too (counted).
    lab.set_service(&[]);
    let r = lab.arrive(client, uplink, TCP, &tcp(client, uplink, 5100, 8080, SYN));
    assert_eq!(r.verdict, VERDICT_DROP);
    assert_eq!(lab.drops(DropReason::NoBackend, Direction::ToEndpoint), 1);

    // Unpublishing ends the flows through the port.
    lab.dp
        .remove_publish(None, 8080, Proto::Tcp)
        .expect("unpublish");
    assert!(
        lab.dp
            .conntrack()
            .expect("ct")
            .iter()
            .all(|(k, _)| k.dport != 8080u16.to_be())
    );
}

// ---------------------------------------------------------------------------
// Real traffic.

/// `socat` answering every TCP connection on `listen` in a namespace with
/// `name`.
fn socat(netns: &str, listen: &str, name: &str) -> Process {
    Process(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                netns,
                "socat",
                listen,
                // One argv word, so no shell quoting (socat runs the
                // command with `sh -c`).
                &format!("SYSTEM:echo {name}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start socat"),
    )
}

/// One "container": a namespace behind a veth with the netd programs on
/// the host side, the netd MAC for its address, IPv6 off.
fn container(dp: &mut Dataplane, addr: Ipv4Addr, x: u32) -> (Veth, u32) {
    let veth = Veth::new();
    veth.plumb(addr, ip(&format!("10.237.{x}.1")));
    run(&["ip", "link", "set", &veth.host, "up"]);
    let ifindex = veth.ifindex();
    dp.set_endpoint(ifindex, addr, mac_of(addr), 1)
        .expect("endpoint");
    dp.attach_endpoint(&veth.host, ifindex)
        .expect("attach endpoint");
    (veth, ifindex)
}

/// Three backend namespaces running `socat` (TCP) and a UDP server thread
/// that answer with their names,
/// a client namespace, all on network 10.237.x.0/24 (gateway .1 on a
/// bridge the test owns, which only the host's own traffic uses), a
/// service with VIP .100. 6 sequential connections from the client to
/// VIP:80 get each name exactly twice; 6 from the host (through
/// `netd_connect4`) too; 6 UDP datagrams from the host (through
/// `netd_sendmsg4`/`netd_recvmsg4`) too, each answered from the VIP.
#[test]
fn real_connections_to_a_vip_are_balanced_round_robin() {
    let pins = PinDir::new();
    let x = std::process::id() % 250 + 1;
    let gw = ip(&format!("10.237.{x}.1"));
    let vip = ip(&format!("10.237.{x}.100"));
    let mut dp = pins.load();
    dp.set_network(1, net(&format!("10.237.{x}.0/24")), gw, NetworkPolicy::OPEN)
        .expect("network");

    // The gateway: a bridge with the gateway's address and MAC, for the
    // host's own connections to the backends.
    let bridge = Bridge::gateway(gw);

    let names = ["alpha", "bravo", "charlie"];
    let mut backends = Vec::new();
    let mut servers = Vec::new();
    let mut udp_servers = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let addr = ip(&format!("10.237.{x}.{}", 11 + i));
        let (veth, ifindex) = container(&mut dp, addr, x);
        bridge.enslave(&veth, addr);
        servers.push(socat(&veth.netns.0, "TCP-LISTEN:80,fork,reuseaddr", name));
        let socket = veth
            .netns
            .run(move || UdpSocket::bind((addr, 53)).expect("bind in the namespace"));
        udp_servers.push(Server::udp(socket, move |_| format!("{name}\n")));
        backends.push((addr, ifindex, veth));
    }
    let client_addr = ip(&format!("10.237.{x}.2"));
    let (client, _) = container(&mut dp, client_addr, x);
    let deadline = Instant::now() + Duration::from_secs(10);
    wait_up(&bridge.0, deadline);
    for (_, _, veth) in &backends {
        wait_up(&veth.host, deadline);
    }
    wait_up(&client.host, deadline);
    // The servers listen (asked from inside each backend, not through the
    // VIP, so the rotation is untouched).
    for (addr, _, veth) in &backends {
        let addr = *addr;
        veth.netns.run(move || {
            while tcp_hello(addr, 80).is_err() {
                assert!(Instant::now() < deadline, "socat on {addr} never answered");
                thread::sleep(Duration::from_millis(50));
            }
        });
    }

    let members: Vec<Backend> = backends
        .iter()
        .map(|(ip, ifindex, _)| Backend::Local {
            ip: *ip,
            ifindex: *ifindex,
        })
        .collect();
    dp.set_service(3, vip, &members).expect("service");
    let expected: BTreeMap<String, u64> = names.iter().map(|n| (n.to_string(), 2)).collect();
    let count = |answers: Vec<String>| -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for a in answers {
            *out.entry(a).or_default() += 1;
        }
        out
    };

    // From the client container (netd_from_ep), sequentially.
    let answers = client.netns.run(move || {
        (0..6)
            .map(|_| tcp_hello(vip, 80).expect("connect to the VIP from the container"))
            .collect::<Vec<_>>()
    });
    assert_eq!(answers[..3], names.map(String::from), "in slot order");
    assert_eq!(count(answers), expected, "from the container");

    // From the host (netd_connect4 rewrites the destination).
    dp.set_host(None, host_netns_cookie().expect("netns cookie"))
        .expect("set_host");
    dp.attach_socket_hooks(&cgroup2_root().expect("cgroup2"))
        .expect("socket hooks");
    let answers: Vec<String> = (0..6)
        .map(|_| tcp_hello(vip, 80).expect("connect to the VIP from the host"))
        .collect();
    assert_eq!(count(answers), expected, "from the host");

    // UDP from the host: each datagram of an unconnected socket is a new
    // selection, and every reply shows the VIP as its source.
    let sock = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let to = SocketAddr::V4(SocketAddrV4::new(vip, 53));
    let mut answers = Vec::new();
    for _ in 0..6 {
        sock.send_to(b"hi\n", to).expect("send");
        let mut buf = [0u8; 64];
        let (n, from) = sock.recv_from(&mut buf).expect("udp reply");
        assert_eq!(from, to, "the reply comes from the VIP");
        answers.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    assert_eq!(count(answers), expected, "UDP from the host");

    // Every selection was counted: 6 + 6 + 6 over three backends.
    let stats: Vec<u64> = dp
        .lb_stats()
        .expect("lb stats")
        .into_iter()
        .map(|(svc, _, n)| {
            assert_eq!(svc, 3);
            n
        })
        .collect();
    assert_eq!(stats, [6, 6, 6]);

    // Scaled to nothing: the host's connection is refused at once, the
    // container's is dropped (counted), never sent to a stale backend.
    dp.set_service(3, vip, &[]).expect("no backends");
    let err = tcp_hello(vip, 80).expect_err("no backend");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    let before = dp
        .drop_stats()
        .expect("drops")
        .iter()
        .filter(|(r, _, _)| *r == DropReason::NoBackend)
        .map(|(_, _, n)| n)
        .sum::<u64>();
    assert!(before >= 1, "the refused connect is counted");
    let from_container = client.netns.run(move || {
        let to = SocketAddr::V4(SocketAddrV4::new(vip, 80));
        TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_ok()
    });
    assert!(!from_container, "nothing answers a VIP without backends");
    let after = dp
        .drop_stats()
        .expect("drops")
        .iter()
        .filter(|(r, _, _)| *r == DropReason::NoBackend)
        .map(|(_, _, n)| n)
        .sum::<u64>();
    assert!(
        after > before,
        "the container's SYNs are dropped and counted"
    );

    // Nothing else was dropped along the way.
    for (reason, _, n) in dp.drop_stats().expect("drops") {
        if reason != DropReason::NoBackend {
            assert_eq!(n, 0, "{reason:?}");
        }
    }
    drop(servers);
    drop(udp_servers);
    drop(dp);
    drop(pins);
    drop(client);
    drop(backends);
    drop(bridge);
}
