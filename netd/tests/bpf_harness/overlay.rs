//! The lab of the overlay tests: [`Lab`] with overlay networks, a stand-in
//! for the VXLAN device, other hosts of the cluster and their endpoints,
//! and `netd_vxlan_in` run as on what arrives through the tunnel.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netd::dataplane::{
    Direction, DropReason, NatStats, NetworkPolicy, OverlayStats, RemoteEndpoint,
};

use super::addr::{ip, mac_of};
use super::frames::{UDP, frame, udp};
use super::guards::Veth;
use super::lab::{Ep, Lab};
use super::prog::RunResult;
use super::tunnel::Tunnel;

/// The VNIs of the lab's two overlay networks.
pub const VNI1: u32 = 4100;
pub const VNI2: u32 = 4200;
/// Underlay addresses of two other hosts, and of a machine outside the
/// cluster (TEST-NET-1: written to maps, never sent to).
pub const HOST1: &str = "192.0.2.21";
pub const HOST2: &str = "192.0.2.22";
pub const STRANGER: &str = "192.0.2.99";

/// [`Lab`] with its networks 1 and 2 made overlays (VNIs [`VNI1`],
/// [`VNI2`]; network 3 stays a bridge network), a VXLAN device (a veth,
/// down, standing in for it: test runs never transmit), the hosts
/// [`HOST1`] and [`HOST2`], and remote endpoints: `r1` (.12 of network 1
/// on host 1), `r2` (.13 of network 1 on host 2), `r3` (.12 of network 2
/// on host 1).
pub struct Overlay {
    // Field order is drop order: the lab (its data path first), then the
    // VXLAN veth.
    pub lab: Lab,
    pub vxlan: Veth,
    pub vxlan_ifindex: u32,
    pub r1: RemoteEndpoint,
    pub r2: RemoteEndpoint,
    pub r3: RemoteEndpoint,
}

pub fn subnet_of(ep: &Ep) -> Ipv4Net {
    Ipv4Net::new(ep.gw, 24).expect("prefix").trunc()
}

/// `.host` of `ep`'s /24.
pub fn in_subnet_of(ep: &Ep, host: u8) -> Ipv4Addr {
    let [a, b, c, _] = ep.ip.octets();
    Ipv4Addr::new(a, b, c, host)
}

impl Overlay {
    pub fn new() -> Overlay {
        let mut lab = Lab::new(81);
        let (net1, gw1, net2, gw2) = (subnet_of(&lab.a), lab.a.gw, subnet_of(&lab.c), lab.c.gw);
        lab.dp
            .set_overlay_network(1, net1, gw1, NetworkPolicy::OPEN, VNI1)
            .expect("overlay network 1");
        lab.dp
            .set_overlay_network(2, net2, gw2, NetworkPolicy::OPEN, VNI2)
            .expect("overlay network 2");
        let vxlan = Veth::new();
        let vxlan_ifindex = vxlan.ifindex();
        lab.dp
            .attach_vxlan(&vxlan.host, vxlan_ifindex)
            .expect("attach the VXLAN program");
        for host in [HOST1, HOST2] {
            lab.dp.set_overlay_host(ip(host)).expect("overlay host");
        }
        let remote = |ep: &Ep, host_part: u8, net_index, vni, host: &str| RemoteEndpoint {
            ip: in_subnet_of(ep, host_part),
            net_index,
            vni,
            host: ip(host),
        };
        let r1 = remote(&lab.a, 12, 1, VNI1, HOST1);
        let r2 = remote(&lab.a, 13, 1, VNI1, HOST2);
        let r3 = remote(&lab.c, 12, 2, VNI2, HOST1);
        for r in [&r1, &r2, &r3] {
            lab.dp.set_remote_endpoint(r).expect("remote endpoint");
        }
        Overlay {
            lab,
            vxlan,
            vxlan_ifindex,
            r1,
            r2,
            r3,
        }
    }

    /// A shim that runs `netd_vxlan_in` on packets with `vni` from
    /// `outer_src`.
    pub fn tunnel(&self, vni: u32, outer_src: &str) -> Tunnel {
        let program = self.lab.dp.vxlan_program().expect("vxlan program");
        Tunnel::new(program, &self.lab.pins, vni, ip(outer_src))
    }

    /// What `netd_vxlan_in` does with `frame`, arriving with `vni` from
    /// `outer_src`.
    pub fn arrive(&self, vni: u32, outer_src: &str, frame: &[u8]) -> RunResult {
        self.tunnel(vni, outer_src).run(self.vxlan_ifindex, frame)
    }

    /// Asserts that `frame`, arriving with `vni` from `outer_src`, is
    /// dropped for `reason` and that nothing else changed
    /// ([`Lab::assert_drop`]).
    pub fn assert_arrival_dropped(
        &self,
        vni: u32,
        outer_src: &str,
        frame: &[u8],
        reason: DropReason,
        what: &str,
    ) {
        self.lab.assert_drop(
            || self.arrive(vni, outer_src, frame),
            reason,
            Direction::ToEndpoint,
            what,
        );
    }

    pub fn nat_stats(&self) -> NatStats {
        self.lab.dp.nat_stats().expect("nat stats")
    }

    pub fn overlay_stats(&self) -> OverlayStats {
        self.lab
            .dp
            .counters()
            .expect("counters")
            .overlay()
            .expect("overlay counters")
    }
}

/// A UDP frame from `src` (with its netd MAC) to `dst`, Ethernet
/// destination `eth_dst`.
pub fn udp_frame(eth_dst: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    frame(
        eth_dst,
        mac_of(src),
        src,
        dst,
        UDP,
        &udp(src, dst, 40000, 53, true),
    )
}
