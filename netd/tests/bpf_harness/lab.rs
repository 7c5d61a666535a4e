//! The lab of the BPF_PROG_TEST_RUN tests: a data path loaded into a
//! private pin directory, with networks, endpoints and an uplink written to
//! its maps.
//!
//! Only map contents: the addresses are configured nowhere, the veths stay
//! down (see [`super::prog::run_program`]), nothing is routed.

use std::{net::Ipv4Addr, ops::RangeInclusive};

use ipnet::Ipv4Net;
use netd::dataplane::{Backend, Dataplane, Direction, DropReason, NetworkPolicy};

use super::addr::{ip, mac_of};
use super::frames::frame;
use super::guards::{PinDir, Veth};
use super::prog::{self, RunResult, VERDICT_DROP};

/// The uplink's address (`HOST_CFG`), once [`Lab::with_uplink`] wrote it.
pub const UPLINK: &str = "192.0.2.10";
/// A client outside.
pub const CLIENT: &str = "203.0.113.5";
/// The MAC frames from outside are addressed to (the uplink's; the program
/// does not care).
pub const UPLINK_MAC: [u8; 6] = [0x02, 0xaa, 0, 0, 0, 0x10];
/// The MAC frames from outside come from.
pub const ROUTER_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x01];

/// An endpoint: a veth (host side attached), and the container side's
/// address, MAC and gateway as written with `set_endpoint`.
pub struct Ep {
    /// Kept for its `Drop`.
    _veth: Veth,
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub gw: Ipv4Addr,
}

impl Ep {
    /// The endpoint as a service's backend on this host.
    pub fn backend(&self) -> Backend {
        Backend::Local {
            ip: self.ip,
            ifindex: self.ifindex,
        }
    }
}

/// A loaded data path with three networks, four endpoints and an uplink;
/// with `n` the second octet [`Lab::new`] is given:
/// - network 1, 10.n.0.0/24 (gateway .1): `a` = .2, `b` = .3, and the
///   `backends` of [`Lab::with_backends`];
/// - network 2, 10.(n+1).0.0/24 (gateway .1): `c` = .2;
/// - network 3, 10.(n+2).0.0/24 (gateway .1, internal): `d` = .2;
/// - a veth for the uplink, in `HOST_CFG` once [`Lab::with_uplink`] wrote
///   it.
pub struct Lab {
    // Field order is drop order: the data path, then the interfaces, then
    // the pins.
    pub dp: Dataplane,
    pub a: Ep,
    pub b: Ep,
    pub c: Ep,
    pub d: Ep,
    pub backends: Vec<Ep>,
    pub uplink: Veth,
    pub uplink_ifindex: u32,
    pub pins: PinDir,
}

impl Lab {
    pub fn new(n: u8) -> Lab {
        let pins = PinDir::new();
        let mut dp = pins.load();
        for net_index in 1..=3 {
            let gateway = Lab::gateway(n, net_index);
            let subnet = Ipv4Net::new(gateway, 24).expect("prefix").trunc();
            dp.set_network(
                net_index,
                subnet,
                gateway,
                if net_index == 3 {
                    NetworkPolicy::INTERNAL
                } else {
                    NetworkPolicy::OPEN
                },
            )
            .expect("set network");
        }
        let a = Lab::endpoint(&mut dp, Lab::gateway(n, 1), 1, 2);
        let b = Lab::endpoint(&mut dp, Lab::gateway(n, 1), 1, 3);
        let c = Lab::endpoint(&mut dp, Lab::gateway(n, 2), 2, 2);
        let d = Lab::endpoint(&mut dp, Lab::gateway(n, 3), 3, 2);
        let uplink = Veth::new();
        let uplink_ifindex = uplink.ifindex();
        Lab {
            dp,
            a,
            b,
            c,
            d,
            backends: Vec::new(),
            uplink,
            uplink_ifindex,
            pins,
        }
    }

    /// Writes network `net_index` (1 to 3) again, with `policy`.
    pub fn set_policy(&mut self, net_index: u32, policy: NetworkPolicy) {
        let gateway = [self.a.gw, self.c.gw, self.d.gw][net_index as usize - 1];
        let subnet = Ipv4Net::new(gateway, 24).expect("prefix").trunc();
        self.dp
            .set_network(net_index, subnet, gateway, policy)
            .expect("set network");
    }

    /// Writes the uplink with address [`UPLINK`] to `HOST_CFG`: traffic to
    /// the outside is masqueraded, published ports are reachable.
    pub fn with_uplink(mut self) -> Lab {
        self.dp
            .set_host(Some((self.uplink_ifindex, ip(UPLINK))), 0)
            .expect("set host");
        self
    }

    /// Adds the endpoints `hosts` of network 1 as `backends`.
    pub fn with_backends(mut self, hosts: RangeInclusive<u8>) -> Lab {
        let gateway = self.a.gw;
        self.backends = hosts
            .map(|host| Lab::endpoint(&mut self.dp, gateway, 1, host))
            .collect();
        self
    }

    /// The gateway of network `net_index`, 10.(n + net_index - 1).0.1.
    fn gateway(n: u8, net_index: u32) -> Ipv4Addr {
        Ipv4Addr::new(10, n + net_index as u8 - 1, 0, 1)
    }

    /// The endpoint with address `host` in the /24 of `gateway`, network
    /// `net_index`: written and attached.
    fn endpoint(dp: &mut Dataplane, gateway: Ipv4Addr, net_index: u32, host: u8) -> Ep {
        let [a, b, c, _] = gateway.octets();
        let ip = Ipv4Addr::new(a, b, c, host);
        let veth = Veth::new();
        let ifindex = veth.ifindex();
        dp.set_endpoint(ifindex, ip, mac_of(ip), net_index)
            .expect("set endpoint");
        dp.attach_endpoint(&veth.host, ifindex).expect("attach");
        Ep {
            _veth: veth,
            ifindex,
            ip,
            mac: mac_of(ip),
            gw: gateway,
        }
    }

    /// `netd_from_ep` on a frame `ep` sends (Ethernet addresses as the
    /// container's stack writes them: to its gateway's MAC, which is also
    /// what ARP answers for VIPs).
    pub fn send(&self, ep: &Ep, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> RunResult {
        self.send_frame(ep, &frame(mac_of(ep.gw), ep.mac, ep.ip, dst, proto, l4))
    }

    /// `netd_from_ep` once on `f` as sent by `ep`.
    pub fn send_frame(&self, ep: &Ep, f: &[u8]) -> RunResult {
        prog::test_run(&self.dp, Direction::FromEndpoint, ep.ifindex, f, 1).expect("test run")
    }

    /// `netd_uplink_in` on a frame arriving from outside.
    pub fn arrive(&self, src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> RunResult {
        self.arrive_frame(&frame(UPLINK_MAC, ROUTER_MAC, src, dst, proto, l4))
    }

    pub fn arrive_frame(&self, f: &[u8]) -> RunResult {
        let program = self.dp.uplink_program().expect("uplink program");
        prog::run_program(program, self.uplink_ifindex, f, 1).expect("test run")
    }

    /// Asserts that `frame` from `from` is dropped and counted under
    /// `reason`, and that nothing else changed: no other drop, no traffic.
    pub fn assert_dropped(&self, from: &Ep, frame: &[u8], reason: DropReason, what: &str) {
        self.assert_drop(
            || self.send_frame(from, frame),
            reason,
            Direction::FromEndpoint,
            what,
        );
    }

    /// Asserts that the packet `run` runs a program on is dropped and
    /// counted under {`reason`, `direction`}, and that nothing else
    /// changed: no other drop, no traffic.
    pub fn assert_drop(
        &self,
        run: impl FnOnce() -> RunResult,
        reason: DropReason,
        direction: Direction,
        what: &str,
    ) {
        let before = self.dp.drop_stats().expect("drops");
        let stats_before = self.dp.endpoint_stats().expect("stats");
        let r = run();
        assert_eq!(r.verdict, VERDICT_DROP, "{what}: verdict");
        let after = self.dp.drop_stats().expect("drops");
        for ((r0, d0, n0), (r1, d1, n1)) in before.iter().zip(&after) {
            assert_eq!((r0, d0), (r1, d1));
            let expected = if *r0 == reason && *d0 == direction {
                n0 + 1
            } else {
                *n0
            };
            assert_eq!(*n1, expected, "{what}: drops of {r0:?}/{d0:?}");
        }
        assert_eq!(
            self.dp.endpoint_stats().expect("stats"),
            stats_before,
            "{what}: a dropped packet is no traffic"
        );
    }

    pub fn drops(&self, reason: DropReason, direction: Direction) -> u64 {
        prog::drops(&self.dp, reason, direction)
    }

    pub fn total_drops(&self) -> u64 {
        prog::total_drops(&self.dp)
    }

    /// The packets delivered to `ep`.
    pub fn to_packets(&self, ep: &Ep) -> u64 {
        prog::stats_of(&self.dp, ep.ifindex)
            .expect("endpoint counted")
            .to_packets
    }
}
