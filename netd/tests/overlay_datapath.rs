//! Overlay data path tests: VXLAN between hosts, as `netd_from_ep`
//! (encapsulation, ARP for remote peers) and `netd_vxlan_in` (the checks
//! and the delivery of what arrives) do it, and as the `Dataplane` API
//! writes it.
//!
//! BPF_PROG_TEST_RUN shows a redirect's verdict and the frame it sends on,
//! not the tunnel metadata nor the target: the real-traffic test at the end
//! shows those, with two "hosts" (namespaces joined by a veth as their
//! underlay), each with its own bridge, endpoint, VXLAN device and
//! `Dataplane`. `netd_vxlan_in` reads tunnel metadata that test runs cannot
//! attach, so it runs behind the harness's shim (`bpf_harness::tunnel`).
//!
//! Needs root. Every test has its own pin directory, interfaces and
//! namespaces, removed by guards even when it panics; the real traffic
//! stays inside the test's namespaces.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    thread,
    time::{Duration, Instant},
};

mod bpf_harness;

use bpf_harness::{
    addr::{ip, mac_of},
    cmd::{ip_json, run, succeeds},
    frames::{UDP, arp, arp_request, frame, udp},
    guards::{Netns, PinDir},
    lab::Ep,
    overlay::{HOST1, HOST2, Overlay, STRANGER, VNI1, VNI2, in_subnet_of, subnet_of, udp_frame},
    prog::{VERDICT_NEXT, VERDICT_REDIRECT, drops, run_program, stats_of},
    servers::{IO_TIMEOUT, Server, tcp_hello},
};
use netd::dataplane::{
    Dataplane, DataplaneError, Direction, DropReason, EndpointStats, NetworkPolicy, OverlayStats,
    RemoteEndpoint,
};
use netd::netlink::{self, EndpointPlumbing, Netlink, NetlinkError, VXLAN_OVERHEAD};

#[test]
fn a_remote_peer_of_the_same_network_is_tunnelled() {
    let ov = Overlay::new();
    let (lab, a) = (&ov.lab, &ov.lab.a);
    // As a's stack sends it after ARP (answered with the peer's MAC), or
    // addressed to the gateway's MAC: the program sets the peer's.
    for eth_dst in [mac_of(ov.r1.ip), mac_of(a.gw)] {
        let f = udp_frame(eth_dst, a.ip, ov.r1.ip);
        let before = ov.overlay_stats();
        let r = lab.send_frame(a, &f);
        assert_eq!(r.verdict, VERDICT_REDIRECT, "to the VXLAN device");
        let mut expected = f.clone();
        expected[0..6].copy_from_slice(&mac_of(ov.r1.ip));
        assert_eq!(r.out, expected, "only the destination MAC changes");
        let after = ov.overlay_stats();
        assert_eq!(after.encap_packets - before.encap_packets, 1);
        assert_eq!(after.encap_bytes - before.encap_bytes, f.len() as u64);
    }
    let sent = stats_of(&lab.dp, a.ifindex).expect("a counted");
    assert_eq!(sent.from_packets, 2, "counted as sent by a: {sent:?}");
    assert_eq!(lab.total_drops(), 0);
}

/// Whether `dev` is administratively up (`ip [-n NS] link show`).
fn admin_up(ns_args: &[&str], dev: &str) -> bool {
    let args: Vec<&str> = ns_args
        .iter()
        .copied()
        .chain(["link", "show", dev])
        .collect();
    ip_json(&args)[0]["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .any(|f| f == "UP")
}

#[test]
fn without_a_vxlan_device_nothing_is_tunnelled() {
    let mut ov = Overlay::new();
    assert!(
        admin_up(&[], &ov.vxlan.host),
        "attach_vxlan set the device up"
    );
    ov.lab.dp.detach_vxlan().expect("detach");
    assert!(
        !admin_up(&[], &ov.vxlan.host),
        "no device up without its program"
    );
    ov.lab.dp.detach_vxlan().expect("twice");
    assert_eq!(ov.lab.dp.vxlan_ifindex().expect("cfg"), None);
    assert!(
        ov.lab
            .dp
            .attachments(&ov.vxlan.host)
            .expect("filters")
            .is_empty(),
        "the filter is gone"
    );
    // The peer is an unused address of the subnet: to the gateway.
    let (lab, a) = (&ov.lab, &ov.lab.a);
    let f = udp_frame(mac_of(a.gw), a.ip, ov.r1.ip);
    let r = lab.send_frame(a, &f);
    assert_eq!(r.verdict, VERDICT_NEXT);
    assert_eq!(r.out, f, "to the gateway, untouched");
    assert_eq!(ov.overlay_stats(), OverlayStats::default());
}

#[test]
fn remote_endpoints_of_other_networks_are_not_reached() {
    let ov = Overlay::new();
    let (lab, a, c, d) = (&ov.lab, &ov.lab.a, &ov.lab.c, &ov.lab.d);
    for (from, dst, what) in [
        (a, ov.r3.ip, "a to a remote endpoint of network 2"),
        (c, ov.r1.ip, "c to a remote endpoint of network 1"),
        (d, ov.r1.ip, "d (bridge network) to a remote endpoint"),
    ] {
        lab.assert_dropped(
            from,
            &udp_frame(mac_of(from.gw), from.ip, dst),
            DropReason::CrossNetwork,
            what,
        );
    }
    assert_eq!(ov.overlay_stats(), OverlayStats::default());
}

#[test]
fn arp_for_a_remote_peer_is_answered_with_its_mac() {
    let ov = Overlay::new();
    let (lab, a) = (&ov.lab, &ov.lab.a);
    for peer in [ov.r1.ip, ov.r2.ip] {
        let r = lab.send_frame(a, &arp_request(a.mac, a.ip, peer));
        assert_eq!(r.verdict, VERDICT_REDIRECT, "back to a");
        assert_eq!(
            r.out,
            arp(a.mac, mac_of(peer), 2, mac_of(peer), peer, a.mac, a.ip),
            "the reply as the peer would have sent it"
        );
    }
    lab.assert_dropped(
        a,
        &arp_request(a.mac, a.ip, ov.r3.ip),
        DropReason::CrossNetwork,
        "a remote endpoint of another network",
    );
    lab.assert_dropped(
        a,
        &arp_request(a.mac, a.ip, in_subnet_of(a, 77)),
        DropReason::ArpUnanswered,
        "an address nobody holds",
    );
}

#[test]
fn a_tunnelled_packet_is_delivered_to_its_endpoint() {
    let ov = Overlay::new();
    let (lab, a) = (&ov.lab, &ov.lab.a);
    // Whatever Ethernet destination the sending host wrote: the program
    // sets a's.
    let f = udp_frame([0xff; 6], ov.r1.ip, a.ip);
    let r = ov.arrive(VNI1, HOST1, &f);
    assert_eq!(r.verdict, VERDICT_REDIRECT, "into a's namespace");
    let mut expected = f.clone();
    expected[0..6].copy_from_slice(&a.mac);
    assert_eq!(r.out, expected, "only the destination MAC changes");
    assert_eq!(
        stats_of(&lab.dp, a.ifindex),
        Some(EndpointStats {
            to_packets: 1,
            to_bytes: f.len() as u64,
            ..Default::default()
        }),
        "redirect_peer skips a's egress program, so the delivery is counted here"
    );
    let stats = ov.overlay_stats();
    assert_eq!(
        (stats.decap_packets, stats.decap_bytes),
        (1, f.len() as u64)
    );
    // From the other host, for the other local endpoint.
    let r = ov.arrive(VNI1, HOST2, &udp_frame(a.mac, ov.r2.ip, lab.b.ip));
    assert_eq!(r.verdict, VERDICT_REDIRECT);
    assert_eq!(&r.out[0..6], &lab.b.mac);
    assert_eq!(lab.total_drops(), 0);
}

#[test]
fn tunnelled_packets_that_do_not_belong_are_dropped_with_their_reason() {
    let ov = Overlay::new();
    let (lab, a, c) = (&ov.lab, &ov.lab.a, &ov.lab.c);
    let to_a = |src| udp_frame(a.mac, src, a.ip);
    let cases: [(u32, &str, Vec<u8>, DropReason, &str); 9] = [
        (
            VNI1,
            STRANGER,
            to_a(ov.r1.ip),
            DropReason::UnknownHost,
            "an outer source outside the cluster",
        ),
        (
            4999,
            HOST1,
            to_a(ov.r1.ip),
            DropReason::VniUnknown,
            "a VNI of no network here",
        ),
        (
            VNI2,
            HOST1,
            to_a(ov.r3.ip),
            DropReason::VniMismatch,
            "network 2's VNI for an endpoint of network 1",
        ),
        (
            VNI1,
            HOST1,
            udp_frame(a.mac, ov.r1.ip, lab.d.ip),
            DropReason::VniMismatch,
            "network 1's VNI for an endpoint of a bridge network",
        ),
        (
            VNI1,
            HOST1,
            udp_frame(a.mac, ov.r1.ip, in_subnet_of(a, 77)),
            DropReason::NoEndpoint,
            "an address no local endpoint holds",
        ),
        (
            VNI1,
            HOST1,
            udp_frame(a.mac, ov.r1.ip, a.gw),
            DropReason::NoEndpoint,
            "the gateway",
        ),
        (
            VNI1,
            HOST1,
            to_a(ov.r2.ip),
            DropReason::SpoofedSource,
            "host 1 sending as an endpoint of host 2",
        ),
        (
            VNI1,
            HOST1,
            to_a(in_subnet_of(a, 88)),
            DropReason::SpoofedSource,
            "host 1 sending from an address nobody holds",
        ),
        (
            VNI1,
            HOST1,
            arp(
                a.mac,
                mac_of(ov.r1.ip),
                1,
                mac_of(ov.r1.ip),
                ov.r1.ip,
                [0; 6],
                a.ip,
            ),
            DropReason::NotIp,
            "ARP (answered on each host, never tunnelled)",
        ),
    ];
    for (vni, outer_src, f, reason, what) in &cases {
        ov.assert_arrival_dropped(*vni, outer_src, f, *reason, what);
    }
    // Network 2's endpoint does not take network 1's remote endpoints
    // either: the source must be of the VNI's network.
    ov.assert_arrival_dropped(
        VNI2,
        HOST1,
        &udp_frame(c.mac, ov.r1.ip, c.ip),
        DropReason::SpoofedSource,
        "network 2's VNI from network 1's remote endpoint",
    );
    // Without tunnel metadata (the program anywhere but on a collect_md
    // device): nobody vouches for the sender.
    lab.assert_drop(
        || {
            let program = lab.dp.vxlan_program().expect("program");
            run_program(program, ov.vxlan_ifindex, &to_a(ov.r1.ip), 1).expect("test run")
        },
        DropReason::UnknownHost,
        Direction::ToEndpoint,
        "no tunnel metadata",
    );
    assert_eq!(ov.overlay_stats(), OverlayStats::default());
}

#[test]
fn remote_endpoints_are_refused_until_what_they_hang_on_is_written() {
    let mut ov = Overlay::new();
    let a = (ov.lab.a.ip, ov.lab.a.gw);
    let dp = &mut ov.lab.dp;
    let good = RemoteEndpoint {
        ip: Ipv4Addr::new(a.0.octets()[0], a.0.octets()[1], 0, 40),
        ..ov.r1
    };
    for (remote, what) in [
        (
            RemoteEndpoint {
                host: ip(STRANGER),
                ..good
            },
            "a host outside the cluster",
        ),
        (
            RemoteEndpoint { vni: VNI2, ..good },
            "another network's VNI",
        ),
        (
            RemoteEndpoint {
                net_index: 3,
                vni: VNI1,
                ..good
            },
            "a bridge network",
        ),
        (
            RemoteEndpoint {
                net_index: 9,
                ..good
            },
            "a network this host does not have",
        ),
        (
            RemoteEndpoint {
                ip: ov.r3.ip,
                ..good
            },
            "outside the subnet",
        ),
        (RemoteEndpoint { ip: a.1, ..good }, "the gateway"),
        (
            RemoteEndpoint {
                ip: Ipv4Addr::BROADCAST,
                ..good
            },
            "a broadcast address",
        ),
    ] {
        assert!(
            matches!(
                dp.set_remote_endpoint(&remote),
                Err(DataplaneError::InvalidRemoteEndpoint { .. })
            ),
            "{what}"
        );
    }
    dp.set_remote_endpoint(&good).expect("all in place");
    dp.set_remote_endpoint(&good).expect("idempotent");
    for vni in [0, 1 << 24] {
        assert!(matches!(
            dp.set_overlay_network(1, subnet_of(&ov.lab.a), a.1, NetworkPolicy::OPEN, vni),
            Err(DataplaneError::InvalidVni { .. })
        ));
    }
    for host in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::LOCALHOST, ip("224.0.0.1")] {
        assert!(matches!(
            dp.set_overlay_host(host),
            Err(DataplaneError::InvalidOverlayHost { .. })
        ));
    }
}

#[test]
fn overlay_entries_go_with_what_they_hang_on_and_survive_a_restart() {
    let ov = Overlay::new();
    let (net1, gw1) = (subnet_of(&ov.lab.a), ov.lab.a.gw);
    let (net2, gw2) = (subnet_of(&ov.lab.c), ov.lab.c.gw);
    let all = vec![ov.r1, ov.r2, ov.r3];
    assert_eq!(ov.lab.dp.remote_endpoints().expect("remotes"), all);
    assert_eq!(
        ov.lab.dp.overlay_networks().expect("vnis"),
        [(VNI1, 1), (VNI2, 2)]
    );
    assert_eq!(
        ov.lab.dp.overlay_hosts().expect("hosts"),
        [ip(HOST1), ip(HOST2)]
    );

    // A restarted daemon finds everything, writes it again (idempotent),
    // and keeps it.
    let pins = &ov.lab.pins;
    let mut dp = pins.load();
    dp.set_overlay_network(1, net1, gw1, NetworkPolicy::OPEN, VNI1)
        .expect("again");
    dp.set_overlay_network(2, net2, gw2, NetworkPolicy::OPEN, VNI2)
        .expect("again");
    dp.attach_vxlan(&ov.vxlan.host, ov.vxlan_ifindex)
        .expect("re-attach in place");
    assert_eq!(
        dp.attachments(&ov.vxlan.host)
            .expect("filters")
            .iter()
            .filter(|f| f.direction == Direction::FromEndpoint)
            .map(|f| f.program_id)
            .collect::<Vec<_>>(),
        [dp.vxlan_program().unwrap().info().unwrap().id()],
        "one filter on the ingress, running the new program"
    );
    for host in [HOST1, HOST2] {
        dp.set_overlay_host(ip(host)).expect("again");
    }
    for r in &all {
        dp.set_remote_endpoint(r).expect("again");
    }
    dp.retain_overlay_hosts(&[ip(HOST1), ip(HOST2)])
        .expect("retain hosts");
    dp.retain_remote_endpoints(&[ov.r1.ip, ov.r2.ip, ov.r3.ip])
        .expect("retain remotes");
    assert_eq!(dp.remote_endpoints().expect("remotes"), all);
    assert_eq!(dp.vxlan_ifindex().expect("cfg"), Some(ov.vxlan_ifindex));

    // A remote endpoint that is no longer wanted.
    dp.retain_remote_endpoints(&[ov.r1.ip, ov.r3.ip])
        .expect("retain");
    assert_eq!(dp.remote_endpoints().unwrap(), [ov.r1, ov.r3]);
    dp.set_remote_endpoint(&ov.r2).expect("back");
    dp.remove_remote_endpoint(ov.r2.ip).expect("remove");
    dp.remove_remote_endpoint(ov.r2.ip).expect("twice");
    assert_eq!(dp.remote_endpoints().unwrap(), [ov.r1, ov.r3]);

    // A lost host takes its endpoints along.
    dp.set_remote_endpoint(&ov.r2).expect("back");
    dp.remove_overlay_host(ip(HOST1)).expect("host 1 lost");
    assert_eq!(dp.remote_endpoints().unwrap(), [ov.r2]);
    assert_eq!(dp.overlay_hosts().unwrap(), [ip(HOST2)]);
    dp.set_overlay_host(ip(HOST1)).expect("back");
    for r in &all {
        dp.set_remote_endpoint(r).expect("back");
    }
    dp.retain_overlay_hosts(&[ip(HOST1)]).expect("retain");
    assert_eq!(dp.remote_endpoints().unwrap(), [ov.r1, ov.r3]);
    dp.set_overlay_host(ip(HOST2)).expect("back");
    dp.set_remote_endpoint(&ov.r2).expect("back");

    // A network written as a local one stops being an overlay: its VNI
    // and remote endpoints go.
    dp.set_network(2, net2, gw2, NetworkPolicy::OPEN)
        .expect("network 2 local");
    assert_eq!(dp.overlay_networks().unwrap(), [(VNI1, 1)]);
    assert_eq!(dp.remote_endpoints().unwrap(), [ov.r1, ov.r2]);
    let c = &ov.lab.c;
    let r = run_as(&dp, c, &udp_frame(mac_of(c.gw), c.ip, ov.r3.ip));
    assert_eq!(r.verdict, VERDICT_NEXT, "an unused address, to the gateway");

    // A VNI moved to another network (a stale binding) takes the remote
    // endpoints of the old one along.
    dp.set_overlay_network(2, net2, gw2, NetworkPolicy::OPEN, VNI1)
        .expect("VNI 1 to network 2");
    assert_eq!(dp.overlay_networks().unwrap(), [(VNI1, 2)]);
    assert_eq!(dp.remote_endpoints().unwrap(), []);

    // A removed network takes its VNI along.
    dp.remove_network(net2).expect("remove network 2");
    assert_eq!(dp.overlay_networks().unwrap(), []);

    // And so does one that a restart no longer knows.
    dp.set_overlay_network(1, net1, gw1, NetworkPolicy::OPEN, VNI1)
        .expect("again");
    dp.set_remote_endpoint(&ov.r1).expect("again");
    let endpoints = [(ov.lab.d.ifindex, ov.lab.d.ip)];
    dp.retain(&[subnet_of(&ov.lab.d)], &endpoints)
        .expect("retain");
    assert_eq!(dp.overlay_networks().unwrap(), []);
    assert_eq!(dp.remote_endpoints().unwrap(), []);
}

/// `netd_from_ep` of `dp` on `f` as sent by `ep`.
fn run_as(dp: &Dataplane, ep: &Ep, f: &[u8]) -> bpf_harness::prog::RunResult {
    bpf_harness::prog::test_run(dp, Direction::FromEndpoint, ep.ifindex, f, 1).expect("test run")
}

// ---------------------------------------------------------------------------
// The VXLAN device, and real traffic between two hosts.

/// The UDP port of the test's VXLAN devices: the standard one, free in
/// every namespace the tests make.
const VXLAN_PORT: u16 = 4789;
/// The VXLAN device's name in a host namespace.
const VXLAN_DEV: &str = "vx0";

/// Runs `f` with a netlink connection opened in `ns` (on a thread in it,
/// with a runtime of its own).
fn with_netlink<T: Send>(ns: &Netns, f: impl AsyncFnOnce(&Netlink) -> T + Send) -> T {
    ns.run(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                let nl = Netlink::new().await.expect("netlink in the namespace");
                f(&nl).await
            })
    })
}

#[test]
fn the_vxlan_device_is_made_once_and_adopted() {
    let host = Netns::new("h");
    run(&["ip", "-n", &host.0, "link", "add", "br9", "type", "bridge"]);
    run(&[
        "ip", "-n", &host.0, "link", "add", "mt9", "mtu", "9000", "type", "veth", "peer", "name",
        "mt9p",
    ]);
    with_netlink(&host, async |nl| {
        let index = nl
            .ensure_vxlan(VXLAN_DEV, VXLAN_PORT)
            .await
            .expect("create");
        assert_eq!(
            nl.ensure_vxlan(VXLAN_DEV, VXLAN_PORT).await.expect("adopt"),
            index,
            "adopted, not made again"
        );
        assert!(
            matches!(
                nl.ensure_vxlan(VXLAN_DEV, 4790).await,
                Err(NetlinkError::LinkConflict { .. })
            ),
            "another port"
        );
        assert!(
            matches!(
                nl.ensure_vxlan("br9", VXLAN_PORT).await,
                Err(NetlinkError::LinkConflict { .. })
            ),
            "a bridge of that name"
        );
        assert_eq!(nl.link_mtu("mt9").await.expect("mtu"), Some(9000));
        assert_eq!(nl.link_mtu("nothing9").await.expect("mtu"), None);
    });
    let link = ip_json(&["-n", &host.0, "-d", "link", "show", VXLAN_DEV])[0].clone();
    let data = &link["linkinfo"]["info_data"];
    assert_eq!(link["linkinfo"]["info_kind"], "vxlan", "{link}");
    assert_eq!(data["external"], true, "{link}");
    assert_eq!(data["port"], VXLAN_PORT, "{link}");
    assert_eq!(data["learning"], false, "{link}");
    assert!(
        !admin_up(&["-n", &host.0], VXLAN_DEV),
        "down until its program is attached: {link}"
    );
    // A VXLAN device of the same name that is not external is not ours.
    run(&["ip", "-n", &host.0, "link", "del", VXLAN_DEV]);
    run(&[
        "ip", "-n", &host.0, "link", "add", VXLAN_DEV, "type", "vxlan", "id", "7", "dstport",
        "4789",
    ]);
    with_netlink(&host, async |nl| {
        assert!(matches!(
            nl.ensure_vxlan(VXLAN_DEV, VXLAN_PORT).await,
            Err(NetlinkError::LinkConflict { .. })
        ));
    });
}

/// The overlay network of the real-traffic test, the same on both hosts
/// (only inside the test's namespaces).
const SUBNET: &str = "10.98.0.0/24";
const GATEWAY: &str = "10.98.0.1";
const VNI: u32 = 98;

/// Host `n`'s underlay address: 10.99.0.0/24 joins the host namespaces.
fn underlay(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, n)
}

/// A "host": a namespace with the underlay link `ul`, a bridge carrying
/// the overlay network's gateway, one endpoint (in a container namespace
/// of its own) and the VXLAN device, all made by netd's own `Netlink`
/// inside the namespace, and a data path of its own with the network and
/// the endpoint written and its programs attached, as the engine will.
struct Host {
    // Field order is drop order: the data path, then the namespaces (the
    // host's deletion takes its links along), then the pins.
    dp: Dataplane,
    container: Netns,
    ns: Netns,
    underlay: Ipv4Addr,
    /// The endpoint's address.
    ip: Ipv4Addr,
    /// The endpoint's MTU: the underlay's minus [`VXLAN_OVERHEAD`].
    mtu: u32,
    /// Kept for its `Drop`.
    _pins: PinDir,
}

impl Host {
    /// Host `n` (underlay .n, set up by the caller) with endpoint
    /// 10.98.0.(n + 1).
    fn new(ns: Netns, n: u8) -> Host {
        let container = Netns::new("c");
        let ip = Ipv4Addr::new(10, 98, 0, n + 1);
        let gateway = self::ip(GATEWAY);
        let plumbing = |mtu| EndpointPlumbing {
            netns: netlink::Netns::from(container.0.as_str()),
            host_ifname: "ep".into(),
            ifname: "eth0".into(),
            mac: mac_of(ip),
            ip,
            prefix_len: 24,
            gateway,
            default_route: true,
            bridge: Some("ovbr".into()),
            mtu: Some(mtu),
        };
        let (mtu, ep_ifindex, vxlan_ifindex) = with_netlink(&ns, async |nl| {
            let underlay_mtu = nl.link_mtu("ul").await.expect("mtu").expect("underlay");
            let mtu = underlay_mtu - VXLAN_OVERHEAD;
            nl.ensure_bridge("ovbr", gateway, 24, mac_of(gateway))
                .await
                .expect("bridge");
            let ep = nl.create_endpoint(&plumbing(mtu)).await.expect("endpoint");
            let vxlan = nl
                .ensure_vxlan(VXLAN_DEV, VXLAN_PORT)
                .await
                .expect("vxlan device");
            (mtu, ep, vxlan)
        });
        let pins = PinDir::new();
        let mut dp = pins.load();
        let subnet = SUBNET.parse().expect("subnet");
        // Attaching looks the interfaces up by name: from inside the host.
        ns.run(|| {
            dp.set_overlay_network(1, subnet, gateway, NetworkPolicy::OPEN, VNI)
                .expect("overlay network");
            dp.set_endpoint(ep_ifindex, ip, mac_of(ip), 1)
                .expect("endpoint");
            dp.attach_endpoint("ep", ep_ifindex).expect("attach");
            dp.attach_vxlan(VXLAN_DEV, vxlan_ifindex)
                .expect("attach the VXLAN device");
        });
        Host {
            dp,
            container,
            ns,
            underlay: underlay(n),
            ip,
            mtu,
            _pins: pins,
        }
    }

    /// Writes `other` as a host of the cluster and its endpoint as a
    /// remote one.
    fn knows(&mut self, other: &Host) {
        self.dp
            .set_overlay_host(other.underlay)
            .expect("overlay host");
        self.dp
            .set_remote_endpoint(&RemoteEndpoint {
                ip: other.ip,
                net_index: 1,
                vni: VNI,
                host: other.underlay,
            })
            .expect("remote endpoint");
    }

    fn drops(&self, reason: DropReason) -> u64 {
        drops(&self.dp, reason, Direction::ToEndpoint)
    }

    fn overlay_stats(&self) -> OverlayStats {
        self.dp
            .counters()
            .expect("counters")
            .overlay()
            .expect("overlay counters")
    }

    /// `ping` from this host's container; whether every echo came back.
    fn ping(&self, args: &[&str], target: Ipv4Addr) -> bool {
        let target = target.to_string();
        let mut cmd = vec!["ip", "netns", "exec", &self.container.0, "ping", "-W", "2"];
        cmd.extend(args);
        cmd.push(&target);
        succeeds(&cmd)
    }
}

/// A VXLAN packet's UDP payload: the header (flags: VNI present) and the
/// inner frame.
fn vxlan_payload(vni: u32, inner: &[u8]) -> Vec<u8> {
    let [_, a, b, c] = vni.to_be_bytes();
    [&[0x08, 0, 0, 0, a, b, c, 0][..], inner].concat()
}

/// Waits until `counter()` is above `before` (the packet took a moment to
/// cross the underlay), and fails after 10 s.
fn wait_for_count(what: &str, before: u64, counter: impl Fn() -> u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter() <= before {
        assert!(Instant::now() < deadline, "{what}: never counted");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Two hosts joined by a veth (the underlay, MTU 1500), one container each
/// on the overlay network: the containers reach each other by ping and TCP,
/// a large transfer and pings with DF set at the largest size fit the
/// endpoints' reduced MTU, and packets a host did not vouch for (outer
/// source outside the cluster, a VNI of no network, a source address that
/// is not the sending host's) are dropped and counted by the receiver.
#[test]
fn real_traffic_crosses_hosts_through_the_tunnel() {
    let (ns1, ns2) = (Netns::new("h"), Netns::new("h"));
    run(&[
        "ip", "link", "add", "ul", "netns", &ns1.0, "type", "veth", "peer", "name", "ul", "netns",
        &ns2.0,
    ]);
    for (ns, n) in [(&ns1, 1), (&ns2, 2)] {
        let cidr = format!("{}/24", underlay(n));
        run(&["ip", "-n", &ns.0, "addr", "add", &cidr, "dev", "ul"]);
        run(&["ip", "-n", &ns.0, "link", "set", "ul", "up"]);
    }
    // A second address on host 2 that no host record names.
    let stranger = underlay(9);
    run(&[
        "ip",
        "-n",
        &ns2.0,
        "addr",
        "add",
        &format!("{stranger}/24"),
        "dev",
        "ul",
    ]);
    let mut h1 = Host::new(ns1, 1);
    let mut h2 = Host::new(ns2, 2);
    h1.knows(&h2);
    h2.knows(&h1);
    assert_eq!(h1.mtu, 1450, "the underlay's 1500 minus 50");

    // Ping both ways (ARP for the peer answered on each side).
    assert!(h1.ping(&["-c", "3", "-i", "0.2"], h2.ip), "1 cannot ping 2");
    assert!(h2.ping(&["-c", "3", "-i", "0.2"], h1.ip), "2 cannot ping 1");

    // TCP.
    let listener = h2
        .container
        .run(|| TcpListener::bind((h2.ip, 7001)).expect("listen"));
    let _server = Server::tcp(listener, "over the overlay");
    let said = h1
        .container
        .run(|| tcp_hello(h2.ip, 7001).expect("connect"));
    assert_eq!(said, "over the overlay");

    // A large transfer: full-size segments of the reduced MTU.
    const BULK: usize = 32 << 20;
    let listener = h2
        .container
        .run(|| TcpListener::bind((h2.ip, 7002)).expect("listen"));
    let receiver = thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match s.read(&mut buf).expect("read") {
                0 => return total,
                n => total += n,
            }
        }
    });
    let to = SocketAddrV4::new(h2.ip, 7002);
    h1.container.run(|| {
        let mut s = TcpStream::connect_timeout(&to.into(), IO_TIMEOUT).expect("connect");
        s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let chunk = vec![0x5au8; 1 << 16];
        for _ in 0..BULK / chunk.len() {
            s.write_all(&chunk).expect("write");
        }
    });
    assert_eq!(
        receiver.join().expect("receiver"),
        BULK,
        "every byte arrived"
    );

    // DF set: the largest ICMP payload the endpoint's MTU allows crosses
    // (the outer packet is then exactly the underlay's 1500); one byte more
    // does not even leave the container.
    let largest = (h1.mtu - 28).to_string();
    let too_large = (h1.mtu - 27).to_string();
    assert!(
        h1.ping(&["-c", "2", "-i", "0.2", "-M", "do", "-s", &largest], h2.ip),
        "a full-size packet with DF set"
    );
    assert!(!h1.ping(&["-c", "1", "-M", "do", "-s", &too_large], h2.ip));

    let (s1, s2) = (h1.overlay_stats(), h2.overlay_stats());
    for (what, stats) in [("host 1", s1), ("host 2", s2)] {
        assert!(
            stats.encap_packets >= 5 && stats.decap_packets >= 5,
            "{what}: {stats:?}"
        );
    }
    assert!(s2.decap_bytes >= BULK as u64, "{s2:?}");
    let ep1 = h1.dp.endpoint_stats().expect("stats")[0].1;
    assert!(ep1.to_packets >= 5 && ep1.from_packets >= 5, "{ep1:?}");

    // Packets host 1 must not deliver, sent to its VXLAN port from host 2.
    let to_h1 = (h1.underlay, VXLAN_PORT);
    let from_h2 = |src: Ipv4Addr, payload: Vec<u8>| {
        h2.ns.run(|| {
            let socket = UdpSocket::bind((src, 0)).expect("bind");
            socket.send_to(&payload, to_h1).expect("send");
        })
    };
    let inner = |src: Ipv4Addr| {
        frame(
            mac_of(h1.ip),
            mac_of(src),
            src,
            h1.ip,
            UDP,
            &udp(src, h1.ip, 40000, 9, true),
        )
    };
    for (outer_src, vni, inner_src, reason) in [
        (stranger, VNI, h2.ip, DropReason::UnknownHost),
        (h2.underlay, 4999, h2.ip, DropReason::VniUnknown),
        (
            h2.underlay,
            VNI,
            Ipv4Addr::new(10, 98, 0, 50),
            DropReason::SpoofedSource,
        ),
    ] {
        let before = h1.drops(reason);
        from_h2(outer_src, vxlan_payload(vni, &inner(inner_src)));
        wait_for_count(&format!("{reason:?}"), before, || h1.drops(reason));
    }
    // The traffic itself was never dropped.
    for host in [&h1, &h2] {
        for reason in [
            DropReason::VniMismatch,
            DropReason::NoEndpoint,
            DropReason::CrossNetwork,
            DropReason::ArpUnanswered,
        ] {
            for direction in Direction::ALL {
                assert_eq!(drops(&host.dp, reason, direction), 0, "{reason:?}");
            }
        }
    }
    drop((h1, h2));
}
