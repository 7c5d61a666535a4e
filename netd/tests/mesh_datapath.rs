//! Services across hosts and the routing mesh in the data path
//! (BPF_PROG_TEST_RUN): flows to a service's backend on another host from
//! every path that balances (a container's VIP, a published port from
//! outside, hairpin, the host itself through `netd_bridge_out`), their
//! replies as `netd_vxlan_in` translates them, the backend host's side of
//! the mesh, the backend marks, and what a host cannot vouch for.
//!
//! A test run shows the verdict and the frame, not the tunnel metadata: a
//! flow's `NAT_CT` entry towards another host holds the VNI and the host
//! the programs hand to the tunnel as they are (`netd_common::nat`,
//! `CT_F_TUNNEL`), so the tests read the key there; the real traffic is in
//! `overlay_services.rs`.
//!
//! Needs root. Every test has its own pin directory and interfaces,
//! removed by guards even when it panics; nothing is sent anywhere.

use std::net::Ipv4Addr;

mod bpf_harness;

use bpf_harness::{
    addr::{ip, mac_of},
    checks::{Seen, redirected},
    frames::{ACK, ICMP, SYN, TCP, arp, arp_request, frame, icmp_echo, tcp},
    guards::Veth,
    lab::{CLIENT, Ep, UPLINK},
    overlay::{HOST1, HOST2, Overlay, STRANGER, VNI1, in_subnet_of, udp_frame},
    prog::{RunResult, VERDICT_NEXT, VERDICT_REDIRECT, run_program, stats_of},
};
use netd::dataplane::{Backend, ConntrackEntry, ConntrackKey, DropReason, NetworkPolicy, Proto};
use netd_common::nat::{CT_F_MESH, CT_F_TO_HOST, CT_F_TUNNEL, PROTO_TCP};

/// The service of every test, on overlay network 1: its index, its VIP's
/// last octet, and the port it is published on (to port 80).
const SVC: u32 = 5;
const VIP: u8 = 100;
const PORT: u16 = 30080;
/// SYN + ACK.
const SYN_ACK: u8 = SYN | ACK;

/// The overlay lab with an uplink ([`UPLINK`]).
fn overlay() -> Overlay {
    let mut ov = Overlay::new();
    let uplink = ov.lab.uplink_ifindex;
    ov.lab
        .dp
        .set_host(Some((uplink, ip(UPLINK))), 0)
        .expect("uplink");
    ov
}

fn vip(ov: &Overlay) -> Ipv4Addr {
    in_subnet_of(&ov.lab.a, VIP)
}

/// Writes the service with `backends`, published on [`PORT`].
fn serve(ov: &mut Overlay, backends: &[Backend]) {
    let vip = vip(ov);
    ov.lab
        .dp
        .set_service(SVC, vip, backends)
        .expect("set_service");
    ov.lab
        .dp
        .set_service_publish(None, PORT, Proto::Tcp, SVC, vip, 80)
        .expect("publish");
}

/// The lab with the service served by b, an endpoint of this host.
fn served_by_b() -> Overlay {
    let mut ov = overlay();
    let b = ov.lab.b.backend();
    serve(&mut ov, &[b]);
    ov
}

fn remote(ip: Ipv4Addr) -> Backend {
    Backend::Remote { ip }
}

/// A TCP frame from `src` to `dst` with the given ports and flags, from
/// `src`'s netd MAC to `dst`'s.
fn tcp_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    frame(
        mac_of(dst),
        mac_of(src),
        src,
        dst,
        TCP,
        &tcp(src, dst, sport, dport, flags),
    )
}

/// The `NAT_CT` entry of the TCP tuple `{src, dst, sport, dport}`.
fn flow(ov: &Overlay, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> ConntrackEntry {
    let key = ConntrackKey::new(
        u32::from_ne_bytes(src.octets()),
        u32::from_ne_bytes(dst.octets()),
        sport.to_be(),
        dport.to_be(),
        PROTO_TCP,
    );
    ov.lab
        .dp
        .conntrack()
        .expect("conntrack")
        .into_iter()
        .find(|(k, _)| *k == key)
        .unwrap_or_else(|| panic!("no flow {src}:{sport} -> {dst}:{dport}"))
        .1
}

/// Asserts that `e` delivers through the tunnel with `vni` to `host`.
fn assert_tunnel(e: &ConntrackEntry, vni: u32, host: &str) {
    assert_eq!(
        (e.flags & CT_F_TUNNEL, e.ifindex, e.gateway),
        (CT_F_TUNNEL, vni, u32::from_ne_bytes(ip(host).octets())),
        "{e:?}"
    );
}

fn tuple(s: &Seen) -> (Ipv4Addr, Ipv4Addr, u16, u16) {
    (s.src, s.dst, s.sport, s.dport)
}

#[test]
fn vip_flows_to_remote_backends_are_tunnelled_and_their_replies_come_from_the_vip() {
    let mut ov = overlay();
    let (r1, r2) = (ov.r1.ip, ov.r2.ip);
    serve(&mut ov, &[remote(r1), remote(r2)]);
    let (vip, a, b) = (vip(&ov), &ov.lab.a, &ov.lab.b);

    // Round robin over the two, each through the tunnel to its own host.
    for (sport, backend, host) in [(41000, r1, HOST1), (41001, r2, HOST2)] {
        let before = ov.overlay_stats();
        let s = redirected(&ov.lab.send(a, vip, TCP, &tcp(a.ip, vip, sport, 80, SYN)));
        assert_eq!(tuple(&s), (a.ip, backend, sport, 80), "DNAT, client kept");
        assert_eq!((s.ttl, s.eth_dst), (63, mac_of(backend)));
        assert_tunnel(&flow(&ov, a.ip, vip, sport, 80), VNI1, host);
        assert_eq!(ov.overlay_stats().encap_packets - before.encap_packets, 1);
    }
    let s = redirected(&ov.lab.send(a, vip, TCP, &tcp(a.ip, vip, 41000, 80, ACK)));
    assert_eq!(s.dst, r1, "the flow stays on its backend");

    // r1's reply, from its host: from the VIP, into a.
    let before = ov.overlay_stats();
    let r = ov.arrive(VNI1, HOST1, &tcp_frame(r1, a.ip, 80, 41000, SYN_ACK));
    let s = redirected(&r);
    assert_eq!(tuple(&s), (vip, a.ip, 80, 41000));
    assert_eq!((s.eth_dst, s.eth_src), (a.mac, mac_of(a.gw)));
    assert_eq!(ov.overlay_stats().decap_packets - before.decap_packets, 1);
    assert_eq!(stats_of(&ov.lab.dp, a.ifindex).unwrap().to_packets, 1);

    // The same reply claimed by the other host: r1 is not its container.
    let f = tcp_frame(r1, a.ip, 80, 41000, SYN_ACK);
    ov.assert_arrival_dropped(VNI1, HOST2, &f, DropReason::SpoofedSource, "r1 from host 2");
    // A remote backend's other traffic is delivered as before.
    let f = udp_frame(b.mac, r1, b.ip);
    let r = ov.arrive(VNI1, HOST1, &f);
    assert_eq!((r.verdict, r.out), (VERDICT_REDIRECT, f));
    assert_eq!(ov.lab.total_drops(), 1);
}

#[test]
fn published_ports_reach_remote_backends_from_outside_and_hairpin() {
    let mut ov = overlay();
    let r1 = ov.r1.ip;
    serve(&mut ov, &[remote(r1)]);
    let (client, up, a) = (ip(CLIENT), ip(UPLINK), &ov.lab.a);

    // From outside: DNAT to r1 with the client's address kept, tunnelled.
    let s = redirected(
        &ov.lab
            .arrive(client, up, TCP, &tcp(client, up, 42000, PORT, SYN)),
    );
    assert_eq!(tuple(&s), (client, r1, 42000, 80));
    assert_tunnel(&flow(&ov, client, up, 42000, PORT), VNI1, HOST1);
    // r1's host sends the answer back: from the published port, to the
    // client (through the uplink).
    let r = ov.arrive(VNI1, HOST1, &tcp_frame(r1, client, 80, 42000, SYN_ACK));
    assert_eq!(tuple(&redirected(&r)), (up, client, PORT, 42000));

    // Hairpin from a: the source becomes the uplink address (r1's host
    // could not answer a gateway address, which every host has).
    let s = redirected(&ov.lab.send(a, up, TCP, &tcp(a.ip, up, 43000, PORT, SYN)));
    assert_eq!((s.src, s.dst, s.dport), (up, r1, 80));
    assert_tunnel(&flow(&ov, a.ip, up, 43000, PORT), VNI1, HOST1);
    let r = ov.arrive(VNI1, HOST1, &tcp_frame(r1, up, 80, s.sport, SYN_ACK));
    let back = redirected(&r);
    assert_eq!(tuple(&back), (up, a.ip, PORT, 43000));
    assert_eq!(back.eth_dst, a.mac);

    let stats = ov.nat_stats();
    assert_eq!((stats.dnat_flows, stats.hairpin_flows), (1, 1), "{stats:?}");
    assert_eq!(ov.lab.total_drops(), 0);
}

#[test]
fn the_hosts_own_connections_to_remote_backends_leave_through_the_bridge() {
    let mut ov = overlay();
    let (r1, r2) = (ov.r1.ip, ov.r2.ip);
    serve(&mut ov, &[remote(r1)]);
    let (up, gw, b) = (ip(UPLINK), ov.lab.a.gw, &ov.lab.b);
    // A veth stands in for the overlay network's bridge.
    let bridge = Veth::new();
    let program = ov.lab.dp.bridge_program().expect("bridge program");
    let host_sends =
        |f: &[u8]| -> RunResult { run_program(program, bridge.ifindex(), f, 1).expect("test run") };

    // The host's ARP for r1 (its socket hooks chose it) is answered, back
    // into the bridge.
    let r = host_sends(&arp_request(mac_of(gw), gw, r1));
    assert_eq!(r.verdict, VERDICT_REDIRECT);
    assert_eq!(
        r.out,
        arp(mac_of(gw), mac_of(r1), 2, mac_of(r1), r1, mac_of(gw), gw)
    );

    // Its connection: from the uplink address, through the tunnel.
    let s = redirected(&host_sends(&tcp_frame(gw, r1, 44000, 80, SYN)));
    assert_eq!((s.src, s.dst, s.dport), (up, r1, 80));
    assert_tunnel(&flow(&ov, gw, r1, 44000, 80), VNI1, HOST1);
    // The answer goes to the host's stack as if the bridge had received
    // it, to the connection's own address and port.
    let reply = flow(&ov, r1, up, 80, s.sport);
    assert_eq!(
        (reply.flags & CT_F_TO_HOST, reply.ifindex),
        (CT_F_TO_HOST, bridge.ifindex())
    );
    let r = ov.arrive(VNI1, HOST1, &tcp_frame(r1, up, 80, s.sport, SYN_ACK));
    let back = redirected(&r);
    assert_eq!(tuple(&back), (r1, gw, 80, 44000));
    assert_eq!((back.eth_dst, back.eth_src), (mac_of(gw), mac_of(r1)));
    assert_eq!(ov.nat_stats().host_flows, 1);

    // Everything else goes on to the bridge untouched: the host's
    // containers, a remote endpoint that backs nothing, ARP for it, and
    // what the host forwards rather than sends.
    for (f, what) in [
        (tcp_frame(gw, b.ip, 44001, 80, SYN), "a local endpoint"),
        (tcp_frame(gw, r2, 44002, 80, SYN), "a remote non-backend"),
        (arp_request(mac_of(gw), gw, r2), "ARP for a non-backend"),
        (
            tcp_frame(ip(CLIENT), r1, 44003, 80, SYN),
            "forwarded from elsewhere",
        ),
    ] {
        let r = host_sends(&f);
        assert_eq!((r.verdict, &r.out), (VERDICT_NEXT, &f), "{what}");
    }
    assert_eq!(ov.lab.total_drops(), 0);
}

#[test]
fn a_local_backend_serves_the_mesh_of_other_hosts_and_answers_through_the_tunnel() {
    let ov = served_by_b();
    let (client, b) = (ip(CLIENT), &ov.lab.b);

    // Host 1 passes on an outside client's connection: delivered with the
    // client's address.
    let before = ov.overlay_stats();
    let s = redirected(&ov.arrive(VNI1, HOST1, &tcp_frame(client, b.ip, 45000, 80, SYN)));
    assert_eq!(tuple(&s), (client, b.ip, 45000, 80));
    assert_eq!((s.eth_dst, s.eth_src), (b.mac, mac_of(b.gw)));
    assert_eq!(ov.overlay_stats().decap_packets - before.decap_packets, 1);
    assert_eq!(ov.lab.to_packets(b), 1);

    // b's answer goes back through the tunnel to host 1, unchanged (not
    // masqueraded out of this host's uplink).
    let s = redirected(
        &ov.lab
            .send(b, client, TCP, &tcp(b.ip, client, 80, 45000, SYN_ACK)),
    );
    assert_eq!(tuple(&s), (b.ip, client, 80, 45000));
    let reply = flow(&ov, b.ip, client, 80, 45000);
    assert_eq!(reply.flags & CT_F_MESH, CT_F_MESH);
    assert_tunnel(&reply, VNI1, HOST1);
    let stats = ov.nat_stats();
    assert_eq!((stats.mesh_flows, stats.snat_flows), (1, 0), "{stats:?}");
    // And the flow goes on.
    let s = redirected(&ov.arrive(VNI1, HOST1, &tcp_frame(client, b.ip, 45000, 80, ACK)));
    assert_eq!(s.dst, b.ip);
    assert_eq!(ov.lab.total_drops(), 0);
}

#[test]
fn only_what_a_host_can_vouch_for_crosses() {
    let ov = served_by_b();
    let (client, a, b, c) = (ip(CLIENT), &ov.lab.a, &ov.lab.b, &ov.lab.c);
    let syn = |src: Ipv4Addr, to: &Ep| tcp_frame(src, to.ip, 46000, 80, SYN);
    let echo = frame(
        b.mac,
        mac_of(client),
        client,
        b.ip,
        ICMP,
        &icmp_echo(true, 7, 1),
    );
    // Sources no host may vouch for, whatever the destination.
    let forged = [
        (
            client,
            a,
            "an outside client for a container that backs nothing",
        ),
        (c.ip, b, "an address of another network of this host"),
        (
            in_subnet_of(a, 77),
            b,
            "an unused address of the overlay network",
        ),
        (Ipv4Addr::LOCALHOST, b, "loopback"),
        (ip("224.0.0.9"), b, "multicast"),
        (Ipv4Addr::BROADCAST, b, "broadcast"),
        (ip("0.1.2.3"), b, "this network"),
    ]
    .map(|(src, to, what)| (HOST1, syn(src, to), DropReason::SpoofedSource, what));
    let others = [
        (
            HOST1,
            tcp_frame(client, b.ip, 46001, 80, ACK),
            DropReason::NoFlow,
            "not the opening packet of a connection",
        ),
        (HOST1, echo, DropReason::NoFlow, "not TCP or UDP"),
        (
            STRANGER,
            syn(client, b),
            DropReason::UnknownHost,
            "a machine outside the cluster",
        ),
    ];
    let cases: Vec<_> = forged.into_iter().chain(others).collect();
    for (host, f, reason, what) in &cases {
        ov.assert_arrival_dropped(VNI1, host, f, *reason, what);
    }

    // A flow between two local endpoints (a balanced to b) cannot be
    // reached from the tunnel with a forged source.
    let vip = vip(&ov);
    redirected(&ov.lab.send(a, vip, TCP, &tcp(a.ip, vip, 46100, 80, SYN)));
    let forged = tcp_frame(b.ip, a.ip, 80, 46100, SYN_ACK);
    ov.assert_arrival_dropped(
        VNI1,
        HOST1,
        &forged,
        DropReason::SpoofedSource,
        "b's reply to a, from a host",
    );
    // A container cannot put another source into the tunnel: dropped
    // where it sends it.
    let r1 = ov.r1.ip;
    ov.lab.assert_dropped(
        a,
        &frame(
            mac_of(a.gw),
            a.mac,
            client,
            r1,
            TCP,
            &tcp(client, r1, 46200, 80, SYN),
        ),
        DropReason::SpoofedSource,
        "a container sending as an outside client",
    );
    assert_eq!(ov.nat_stats().mesh_flows, 0);
}

#[test]
fn remote_backends_are_marked_while_they_serve() {
    let mut ov = overlay();
    let (r1, r2) = (ov.r1.ip, ov.r2.ip);
    serve(&mut ov, &[remote(r1), remote(r2)]);
    let marks = |ov: &Overlay| ov.lab.dp.remote_backend_marks().expect("marks");
    assert_eq!(marks(&ov), [r1, r2]);
    // Written again (the engine does on every change of the endpoint):
    // still marked.
    let again = ov.r1;
    ov.lab.dp.set_remote_endpoint(&again).expect("again");
    assert_eq!(marks(&ov), [r1, r2]);

    // r1 leaves the service with a flow open: marked until it ends (its
    // replies still need translating).
    let (vip, a) = (vip(&ov), &ov.lab.a);
    let s = redirected(&ov.lab.send(a, vip, TCP, &tcp(a.ip, vip, 47000, 80, SYN)));
    assert_eq!(s.dst, r1);
    serve(&mut ov, &[remote(r2)]);
    assert_eq!(marks(&ov), [r1, r2]);
    ov.lab.dp.remove_flows_of(r1).expect("flows of r1");
    assert_eq!(marks(&ov), [r2]);
    // Without a flow, unmarked at once.
    serve(&mut ov, &[]);
    assert!(marks(&ov).is_empty());
}

#[test]
fn internal_overlay_networks_stay_closed_to_the_mesh() {
    let mut ov = overlay();
    let (r1, b) = (ov.r1.ip, ov.lab.b.backend());
    serve(&mut ov, &[b, remote(r1)]);
    // Network 1 becomes `--internal` (written again as such).
    let (net1, gw) = (bpf_harness::overlay::subnet_of(&ov.lab.a), ov.lab.a.gw);
    ov.lab
        .dp
        .set_overlay_network(1, net1, gw, NetworkPolicy::INTERNAL, VNI1)
        .expect("internal");
    let (client, b) = (ip(CLIENT), &ov.lab.b);
    let f = tcp_frame(client, b.ip, 48000, 80, SYN);
    ov.assert_arrival_dropped(
        VNI1,
        HOST1,
        &f,
        DropReason::InternalNetwork,
        "an outside client for a replica on an internal network",
    );
    // The host is outside it too: its connection to r1 is not tunnelled.
    let bridge = Veth::new();
    let program = ov.lab.dp.bridge_program().expect("bridge program");
    let f = tcp_frame(gw, r1, 48001, 80, SYN);
    let r = run_program(program, bridge.ifindex(), &f, 1).expect("test run");
    assert_eq!((r.verdict, r.out), (VERDICT_NEXT, f));
    assert_eq!(ov.nat_stats().host_flows, 0);
}
