//! The maps the fuzzer runs frames against, and the places it runs them:
//! the harness's [`Lab`] (three networks, the third `--internal`, and an
//! uplink) with more of everything a program looks up, so that every path
//! of every program is reachable:
//! - network 1 (10.51.0.0/24): `a` .2, `b` .3, backends .11 and .12 of the
//!   service at [`VIP`], and [`VIP_EMPTY`], a service without backends;
//!   `b` is also a macvlan endpoint (`netd_mv_out` keys it by ifindex);
//! - network 2 (10.52.0.0/24): `c` .2; an overlay network (VNI [`VNI`])
//!   with the remote endpoint [`REMOTE_EP`] on host [`HOST1`], a VXLAN
//!   device (a veth standing in) and the hosts [`HOST1`] and [`HOST2`];
//! - network 3 (10.53.0.0/24, internal): `d` .2;
//! - published ports on every host address: TCP 8080 to `c`:80, UDP 5353
//!   to `a`:53, TCP 8081 to the service, TCP 8082 to `d`:80 (internal: the
//!   data path must refuse it), UDP 8083 to the service without backends;
//!   [`HOST_ADDR`] is a host address besides the uplink's.

use std::net::Ipv4Addr;

use aya::programs::ProgramError;
use netd::dataplane::{Backend, Direction, NetworkPolicy, Proto, RemoteEndpoint};

use crate::bpf_harness::{
    frames::{TCP, UDP},
    guards::Veth,
    lab::{Ep, Lab, UPLINK},
    prog::{self, RunResult},
    tunnel::Tunnel,
};

/// The second octet of network 1 (networks 2 and 3 follow).
const N: u8 = 51;
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, N, 0, 100);
pub const VIP_EMPTY: Ipv4Addr = Ipv4Addr::new(10, N, 0, 101);
const SVC: u32 = 7;
const SVC_EMPTY: u32 = 8;
/// A host address besides the uplink's (`HOST_ADDRS`).
pub const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const VNI: u32 = 5200;
/// A VNI none of this host's networks has.
pub const VNI_UNKNOWN: u32 = 5999;
/// Hosts of the cluster, and a machine outside it (TEST-NET-1, in maps
/// only).
pub const HOST1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 21);
pub const HOST2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 22);
pub const STRANGER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// The container of network 2 on [`HOST1`].
pub const REMOTE_EP: Ipv4Addr = Ipv4Addr::new(10, N + 1, 0, 12);
/// The network of [`REMOTE_EP`].
pub const REMOTE_NET: u32 = 2;

/// An endpoint of the lab, as the oracle needs it.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    pub name: &'static str,
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    pub gw: Ipv4Addr,
    pub net: u32,
    pub internal: bool,
}

/// Where a published port leads.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// A member (index into [`World::members`]).
    Member(usize),
    /// A service's backends (members).
    Service(&'static [usize]),
}

/// A port published on every host address.
#[derive(Clone, Copy, Debug)]
pub struct Port {
    pub proto: u8,
    pub port: u16,
    pub target: Target,
}

/// Indexes of the members, in [`World::members`] order.
pub const A: usize = 0;
pub const B: usize = 1;
pub const C: usize = 2;
pub const D: usize = 3;
const BACKENDS: [usize; 2] = [4, 5];
/// A member's index as a `'static` one-element slice of targets.
static INDEXES: [usize; 4] = [A, B, C, D];

pub const PORTS: [Port; 5] = [
    Port {
        proto: TCP,
        port: 8080,
        target: Target::Member(C),
    },
    Port {
        proto: UDP,
        port: 5353,
        target: Target::Member(A),
    },
    Port {
        proto: TCP,
        port: 8081,
        target: Target::Service(&BACKENDS),
    },
    Port {
        proto: TCP,
        port: 8082,
        target: Target::Member(D),
    },
    Port {
        proto: UDP,
        port: 8083,
        target: Target::Service(&[]),
    },
];

/// The tunnels frames arrive through (VNI, outer source): the known one,
/// a known host that does not hold [`REMOTE_EP`], a stranger, an unknown
/// VNI.
pub const TUNNELS: [(u32, Ipv4Addr); 4] = [
    (VNI, HOST1),
    (VNI, HOST2),
    (VNI, STRANGER),
    (VNI_UNKNOWN, HOST1),
];

/// A program and the device it runs as if on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Site {
    /// `netd_from_ep` on a member's host-side veth.
    FromEp(usize),
    /// `netd_to_ep` on a member's host-side veth.
    ToEp(usize),
    /// `netd_uplink_in`.
    Uplink,
    /// `netd_vxlan_in` behind [`TUNNELS`]`[i]`.
    Tunnel(usize),
    /// `netd_mv_out` on the macvlan of member `b`.
    Macvlan,
}

impl Site {
    pub fn program(self) -> &'static str {
        match self {
            Site::FromEp(_) => "netd_from_ep",
            Site::ToEp(_) => "netd_to_ep",
            Site::Uplink => "netd_uplink_in",
            Site::Tunnel(_) => "netd_vxlan_in",
            Site::Macvlan => "netd_mv_out",
        }
    }

    /// The direction its drops are counted under.
    pub fn direction(self) -> Direction {
        match self {
            Site::FromEp(_) | Site::Macvlan => Direction::FromEndpoint,
            Site::ToEp(_) | Site::Uplink | Site::Tunnel(_) => Direction::ToEndpoint,
        }
    }
}

pub struct World {
    // Field order is drop order: the shims, the lab (its data path first,
    // then its pins), then the VXLAN veth.
    tunnels: Vec<Tunnel>,
    pub lab: Lab,
    _vxlan: Veth,
    pub members: Vec<Member>,
}

impl World {
    pub fn new() -> World {
        let mut lab = Lab::new(N).with_uplink().with_backends(11..=12);
        let (gw2, net2) = (lab.c.gw, ipnet::Ipv4Net::new(lab.c.gw, 24).expect("prefix"));
        lab.dp
            .set_overlay_network(2, net2.trunc(), gw2, NetworkPolicy::OPEN, VNI)
            .expect("overlay network");
        let vxlan = Veth::new();
        lab.dp
            .attach_vxlan(&vxlan.host, vxlan.ifindex())
            .expect("attach the VXLAN program");
        for host in [HOST1, HOST2] {
            lab.dp.set_overlay_host(host).expect("overlay host");
        }
        lab.dp
            .set_remote_endpoint(&RemoteEndpoint {
                ip: REMOTE_EP,
                net_index: REMOTE_NET,
                vni: VNI,
                host: HOST1,
            })
            .expect("remote endpoint");
        lab.dp
            .set_host_addresses(&[HOST_ADDR])
            .expect("host addresses");
        lab.dp
            .set_macvlan_endpoint(lab.b.ifindex, lab.b.ip, lab.b.mac, 1)
            .expect("macvlan endpoint");

        let member = |name, ep: &Ep, net| Member {
            name,
            ifindex: ep.ifindex,
            ip: ep.ip,
            mac: ep.mac,
            gw: ep.gw,
            net,
            internal: net == 3,
        };
        let mut members = vec![
            member("a", &lab.a, 1),
            member("b", &lab.b, 1),
            member("c", &lab.c, 2),
            member("d", &lab.d, 3),
        ];
        for (i, ep) in lab.backends.iter().enumerate() {
            members.push(member(["s1", "s2"][i], ep, 1));
        }
        let backends: Vec<Backend> = BACKENDS
            .iter()
            .map(|i| Backend::Local {
                ip: members[*i].ip,
                ifindex: members[*i].ifindex,
            })
            .collect();
        lab.dp.set_service(SVC, VIP, &backends).expect("service");
        lab.dp
            .set_service(SVC_EMPTY, VIP_EMPTY, &[])
            .expect("service without backends");
        for port in PORTS {
            let proto = if port.proto == TCP {
                Proto::Tcp
            } else {
                Proto::Udp
            };
            match port.target {
                Target::Member(i) => {
                    let m = members[i];
                    lab.dp
                        .set_publish(None, port.port, proto, m.ip, 80, m.ifindex, m.net)
                        .expect("publish");
                }
                Target::Service(backends) => {
                    let (svc, vip) = if backends.is_empty() {
                        (SVC_EMPTY, VIP_EMPTY)
                    } else {
                        (SVC, VIP)
                    };
                    lab.dp
                        .set_service_publish(None, port.port, proto, svc, vip, 80)
                        .expect("publish a service");
                }
            }
        }
        let tunnels = TUNNELS
            .iter()
            .map(|(vni, host)| {
                let program = lab.dp.vxlan_program().expect("vxlan program");
                Tunnel::new(program, &lab.pins, *vni, *host)
            })
            .collect();
        World {
            tunnels,
            lab,
            _vxlan: vxlan,
            members,
        }
    }

    /// Runs the program of `site` once on `frame`.
    pub fn run(&self, site: Site, frame: &[u8]) -> Result<RunResult, ProgramError> {
        let dp = &self.lab.dp;
        match site {
            Site::FromEp(i) => prog::test_run(
                dp,
                Direction::FromEndpoint,
                self.members[i].ifindex,
                frame,
                1,
            ),
            Site::ToEp(i) => {
                prog::test_run(dp, Direction::ToEndpoint, self.members[i].ifindex, frame, 1)
            }
            Site::Uplink => prog::run_program(
                dp.uplink_program().expect("uplink program"),
                self.lab.uplink_ifindex,
                frame,
                1,
            ),
            Site::Tunnel(t) => self.tunnels[t].try_run(self.vxlan_ifindex(), frame),
            Site::Macvlan => prog::run_program(
                dp.macvlan_program().expect("macvlan program"),
                self.members[B].ifindex,
                frame,
                1,
            ),
        }
    }

    fn vxlan_ifindex(&self) -> u32 {
        self.lab
            .dp
            .vxlan_ifindex()
            .expect("vxlan ifindex")
            .expect("attached")
    }

    /// The index of the member holding `ip`.
    pub fn member_by_ip(&self, ip: Ipv4Addr) -> Option<usize> {
        self.members.iter().position(|m| m.ip == ip)
    }

    /// The netd network whose subnet holds `ip`.
    pub fn network_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let [a, b, c, _] = ip.octets();
        (a == 10 && (N..N + 3).contains(&b) && c == 0).then(|| u32::from(b - N) + 1)
    }

    pub fn gateway(&self, net: u32) -> Ipv4Addr {
        Ipv4Addr::new(10, N + net as u8 - 1, 0, 1)
    }

    pub fn is_host_addr(&self, ip: Ipv4Addr) -> bool {
        ip == uplink() || ip == HOST_ADDR
    }

    /// The members a new flow to the published `proto`/`port` may go to.
    pub fn published(&self, proto: u8, port: u16) -> Option<&'static [usize]> {
        PORTS
            .iter()
            .find(|p| p.proto == proto && p.port == port)
            .map(|p| match p.target {
                Target::Member(i) => std::slice::from_ref(&INDEXES[i]),
                Target::Service(backends) => backends,
            })
    }

    /// Every address a frame may be aimed at or claim to come from.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = self.members.iter().map(|m| m.ip).collect();
        for net in 1..=3 {
            let [a, b, c, _] = self.gateway(net).octets();
            out.extend([
                self.gateway(net),
                Ipv4Addr::new(a, b, c, 77),
                Ipv4Addr::new(a, b, c, 255),
            ]);
        }
        out.extend([
            VIP,
            VIP_EMPTY,
            uplink(),
            HOST_ADDR,
            REMOTE_EP,
            Ipv4Addr::new(203, 0, 113, 5),
            Ipv4Addr::new(203, 0, 113, 77),
            Ipv4Addr::new(198, 51, 100, 200),
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(224, 0, 0, 251),
            Ipv4Addr::BROADCAST,
            Ipv4Addr::UNSPECIFIED,
        ]);
        out
    }
}

pub fn uplink() -> Ipv4Addr {
    UPLINK.parse().expect("address")
}
