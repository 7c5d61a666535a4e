//! The frames: valid ones of every kind the programs handle, from every
//! place they come from (an endpoint, outside, the tunnel, the macvlan),
//! replies and further packets of the flows the run opened, then mutated
//! (truncated, bad IHL, version and total length, IP options, fragments,
//! VLAN tags, other ether types, spoofed addresses, bad checksums, TCP
//! flags, zero ports, TTL, flipped bytes, trailing garbage).

use std::net::Ipv4Addr;

use crate::bpf_harness::{
    addr::mac_of,
    frames::{
        ACK, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ETH_P_LLDP, FIN, ICMP, RST, SYN, TCP, UDP, arp,
        frame, icmp_echo, ones_sum, tcp, udp, with_ip_options,
    },
    lab::{CLIENT, ROUTER_MAC, UPLINK_MAC},
};
use crate::oracle::{Flows, Tuple, ether_type};
use crate::rng::Rng;
use crate::world::{A, B, C, D, PORTS, REMOTE_EP, Site, TUNNELS, VIP, World, uplink};

const PSH: u8 = 0x08;
const TCP_FLAGS: [u8; 10] = [
    SYN,
    SYN | ACK,
    ACK,
    FIN | ACK,
    RST,
    RST | ACK,
    PSH | ACK,
    0,
    0xff,
    FIN | PSH | 0x20,
];
const ODD_ETHER_TYPES: [u16; 8] = [
    ETH_P_IPV6, ETH_P_LLDP, 0x8100, 0x88a8, 0x8847, 0x0000, 0xffff, 0x0600,
];

/// A frame to run, where, and what it was made as (for the report).
pub struct Case {
    pub site: Site,
    pub frame: Vec<u8>,
    pub kinds: Vec<&'static str>,
}

pub struct Gen<'w> {
    world: &'w World,
    rng: Rng,
    addrs: Vec<Ipv4Addr>,
    macs: Vec<[u8; 6]>,
}

impl<'w> Gen<'w> {
    pub fn new(world: &'w World, seed: u64) -> Gen<'w> {
        let addrs = world.addresses();
        let mut macs: Vec<[u8; 6]> = addrs.iter().map(|a| mac_of(*a)).collect();
        macs.extend([[0xff; 6], [0; 6], UPLINK_MAC, ROUTER_MAC]);
        Gen {
            world,
            rng: Rng::new(seed),
            addrs,
            macs,
        }
    }

    /// Valid frames of each kind, each cut at every length from the
    /// Ethernet header on, at the place it comes from and on a veth's
    /// egress.
    pub fn truncations(&self) -> Vec<Case> {
        let w = self.world;
        let (a, b, c, d) = (&w.members[A], &w.members[B], &w.members[C], &w.members[D]);
        let client: Ipv4Addr = CLIENT.parse().expect("address");
        let from = |m: &crate::world::Member, dst: Ipv4Addr, proto: u8, l4: Vec<u8>| {
            frame(mac_of(m.gw), m.mac, m.ip, dst, proto, &l4)
        };
        let base = [
            (
                Site::FromEp(A),
                from(a, client, TCP, tcp(a.ip, client, 40000, 443, SYN)),
            ),
            (
                Site::FromEp(A),
                from(a, b.ip, UDP, udp(a.ip, b.ip, 40000, 53, true)),
            ),
            (
                Site::FromEp(A),
                from(a, a.gw, TCP, tcp(a.ip, a.gw, 40001, 8080, SYN)),
            ),
            (Site::FromEp(B), from(b, VIP, ICMP, icmp_echo(true, 7, 1))),
            (
                Site::FromEp(D),
                from(d, client, UDP, udp(d.ip, client, 40000, 53, true)),
            ),
            (
                Site::FromEp(A),
                with_ip_options(&from(a, b.ip, TCP, tcp(a.ip, b.ip, 40002, 80, SYN))),
            ),
            (
                Site::FromEp(A),
                arp([0xff; 6], a.mac, 1, a.mac, a.ip, [0; 6], a.gw),
            ),
            (
                Site::Uplink,
                frame(
                    UPLINK_MAC,
                    ROUTER_MAC,
                    client,
                    uplink(),
                    TCP,
                    &tcp(client, uplink(), 40000, 8080, SYN),
                ),
            ),
            (
                Site::Tunnel(0),
                frame(
                    mac_of(c.ip),
                    mac_of(REMOTE_EP),
                    REMOTE_EP,
                    c.ip,
                    UDP,
                    &udp(REMOTE_EP, c.ip, 40000, 53, true),
                ),
            ),
            (
                Site::Macvlan,
                from(b, b.gw, UDP, udp(b.ip, b.gw, 40000, 53, true)),
            ),
        ];
        let mut cases = Vec::new();
        for (site, f) in base {
            for len in 14..=f.len() {
                for site in [site, Site::ToEp(C)] {
                    cases.push(Case {
                        site,
                        frame: f[..len].to_vec(),
                        kinds: vec!["truncation sweep"],
                    });
                }
            }
        }
        cases
    }

    /// The next random frame; `flows` gives the replies and further
    /// packets to send.
    pub fn case(&mut self, flows: &Flows) -> Case {
        let members = self.world.members.len();
        let roll = self.rng.below(100);
        let (site, frame, kind) = if roll < 52 {
            let s = self.rng.below(members);
            let (f, kind) = self.sent_by(s);
            (Site::FromEp(s), f, kind)
        } else if roll < 70 {
            let (f, kind) = self.sent_from_outside();
            (Site::Uplink, f, kind)
        } else if roll < 80 {
            let t = self.rng.below(TUNNELS.len());
            let (f, kind) = self.tunnelled();
            (Site::Tunnel(t), f, kind)
        } else if roll < 92 && !flows.recent.is_empty() {
            let (site, t) = *self.rng.pick(&flows.recent);
            (site, self.flow_packet(site, t), "flow packet")
        } else if roll < 96 {
            let (f, kind) = self.sent_by(B);
            (Site::Macvlan, f, kind)
        } else {
            let s = self.rng.below(members);
            let (f, kind) = self.sent_by(s);
            (Site::ToEp(self.rng.below(members)), f, kind)
        };
        let mut case = Case {
            site,
            frame,
            kinds: vec![kind],
        };
        if self.rng.chance(50) {
            for _ in 0..self.rng.range(1, 3) {
                let what = self.mutate(&mut case.frame);
                case.kinds.push(what);
            }
        }
        case
    }

    /// A further run of the same frame on a veth's egress, for some.
    pub fn also_to_endpoint(&mut self) -> Option<Site> {
        self.rng
            .chance(15)
            .then(|| Site::ToEp(self.rng.below(self.world.members.len())))
    }

    fn addr(&mut self) -> Ipv4Addr {
        if self.rng.chance(5) {
            Ipv4Addr::from(self.rng.next_u64() as u32)
        } else {
            *self.rng.pick(&self.addrs)
        }
    }

    fn mac(&mut self) -> [u8; 6] {
        if self.rng.chance(10) {
            self.rng.bytes(6).try_into().expect("6 bytes")
        } else {
            *self.rng.pick(&self.macs)
        }
    }

    fn port(&mut self) -> u16 {
        match self.rng.below(12) {
            0 => 80,
            1 => 53,
            2..=5 => self.rng.pick(&PORTS).port,
            6 => 0,
            7 => 65535,
            8 => self.rng.u16(),
            _ => 32768 + self.rng.below(28232) as u16,
        }
    }

    /// An L4 payload from `src` to `dst` (`dport` if given), with valid
    /// checksums: its protocol, bytes and kind.
    fn l4(
        &mut self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        dport: Option<u16>,
    ) -> (u8, Vec<u8>, &'static str) {
        let sport = self.port();
        let dport = dport.unwrap_or_else(|| self.port());
        match self.rng.below(10) {
            0..=3 => {
                let flags = *self.rng.pick(&TCP_FLAGS);
                (TCP, tcp(src, dst, sport, dport, flags), "tcp")
            }
            4..=6 => {
                let checksum = self.rng.chance(80);
                (UDP, udp(src, dst, sport, dport, checksum), "udp")
            }
            7 => {
                let request = self.rng.chance(50);
                (ICMP, icmp_echo(request, sport, 1), "icmp echo")
            }
            8 => (ICMP, icmp_error(dst, src, sport, dport), "icmp error"),
            _ => {
                let proto = *self.rng.pick(&[0, 47, 50, 132, 255]);
                let len = self.rng.below(40);
                (proto, self.rng.bytes(len), "other protocol")
            }
        }
    }

    /// A frame `members[s]` sends: mostly with its own addresses, to any
    /// address; ARP, IPv6 and other ether types too.
    fn sent_by(&mut self, s: usize) -> (Vec<u8>, &'static str) {
        let m = self.world.members[s];
        let (src, smac) = if self.rng.chance(85) {
            (m.ip, m.mac)
        } else {
            self.spoofed(m.ip, m.mac)
        };
        let eth_dst = match self.rng.below(20) {
            0..=15 => mac_of(m.gw),
            16 => [0xff; 6],
            _ => self.mac(),
        };
        match self.rng.below(100) {
            0..=14 => {
                let op = match self.rng.below(10) {
                    0..=6 => 1,
                    7 | 8 => 2,
                    _ => self.rng.u16() % 4,
                };
                let tpa = if self.rng.chance(10) {
                    m.ip
                } else {
                    self.addr()
                };
                let eth_dst = if op == 1 { [0xff; 6] } else { eth_dst };
                let sha = if self.rng.chance(95) {
                    smac
                } else {
                    self.mac()
                };
                (arp(eth_dst, smac, op, sha, src, [0; 6], tpa), "arp")
            }
            15..=18 => (ipv6(eth_dst, smac, &mut self.rng), "ipv6"),
            19..=21 => {
                let mut f = frame(eth_dst, smac, src, m.gw, UDP, &udp(src, m.gw, 1, 2, true));
                f[12..14].copy_from_slice(&self.rng.pick(&ODD_ETHER_TYPES).to_be_bytes());
                (f, "odd ether type")
            }
            _ => {
                let dst = self.addr();
                let (proto, l4, kind) = self.l4(src, dst, None);
                (frame(eth_dst, smac, src, dst, proto, &l4), kind)
            }
        }
    }

    /// Another source than `ip`/`mac`, or another MAC, or both: another
    /// member's, another network's, the gateway's, a VIP, 0.0.0.0,
    /// broadcast, anything.
    fn spoofed(&mut self, ip: Ipv4Addr, mac: [u8; 6]) -> (Ipv4Addr, [u8; 6]) {
        match self.rng.below(3) {
            0 => (self.addr(), mac),
            1 => (ip, self.mac()),
            _ => {
                let other = self.addr();
                (other, mac_of(other))
            }
        }
    }

    /// A frame from outside on the uplink: mostly to the uplink's address
    /// and its published ports, from a client or from addresses it has no
    /// business using.
    fn sent_from_outside(&mut self) -> (Vec<u8>, &'static str) {
        let client: Ipv4Addr = CLIENT.parse().expect("address");
        let src = match self.rng.below(10) {
            0..=5 => client,
            6 => Ipv4Addr::new(203, 0, 113, self.rng.u8()),
            _ => self.addr(),
        };
        let dst = if self.rng.chance(70) {
            uplink()
        } else {
            self.addr()
        };
        match self.rng.below(100) {
            0..=2 => (ipv6(UPLINK_MAC, ROUTER_MAC, &mut self.rng), "ipv6"),
            3..=5 => (
                arp([0xff; 6], ROUTER_MAC, 1, ROUTER_MAC, src, [0; 6], dst),
                "arp",
            ),
            _ => {
                let dport =
                    (dst == uplink() && self.rng.chance(60)).then(|| self.rng.pick(&PORTS).port);
                let (proto, l4, kind) = self.l4(src, dst, dport);
                (frame(UPLINK_MAC, ROUTER_MAC, src, dst, proto, &l4), kind)
            }
        }
    }

    /// What the VXLAN device decapsulated: mostly from the remote
    /// container to `c`.
    fn tunnelled(&mut self) -> (Vec<u8>, &'static str) {
        let src = if self.rng.chance(60) {
            REMOTE_EP
        } else {
            self.addr()
        };
        let dst = if self.rng.chance(50) {
            self.world.members[C].ip
        } else {
            self.addr()
        };
        let eth_dst = if self.rng.chance(80) {
            mac_of(dst)
        } else {
            self.mac()
        };
        if self.rng.chance(5) {
            return (
                arp([0xff; 6], mac_of(src), 1, mac_of(src), src, [0; 6], dst),
                "arp",
            );
        }
        let (proto, l4, kind) = self.l4(src, dst, None);
        (frame(eth_dst, mac_of(src), src, dst, proto, &l4), kind)
    }

    /// A packet of the flow `t` sent at `site` (a reply or a further
    /// packet of a flow the run opened).
    fn flow_packet(&mut self, site: Site, t: Tuple) -> Vec<u8> {
        let (eth_dst, eth_src) = match site {
            Site::FromEp(x) => {
                let m = &self.world.members[x];
                (mac_of(m.gw), m.mac)
            }
            _ => (UPLINK_MAC, ROUTER_MAC),
        };
        let l4 = match t.proto {
            TCP => {
                let flags = *self
                    .rng
                    .pick(&[ACK, ACK, PSH | ACK, SYN | ACK, FIN | ACK, RST, SYN]);
                tcp(t.src, t.dst, t.sport, t.dport, flags)
            }
            UDP => udp(t.src, t.dst, t.sport, t.dport, true),
            _ if t.sport != 0 => icmp_echo(true, t.sport, 2),
            _ => icmp_echo(false, t.dport, 2),
        };
        frame(eth_dst, eth_src, t.src, t.dst, t.proto, &l4)
    }

    /// Applies one mutation to `f` (never shorter than an Ethernet
    /// header); returns its name.
    fn mutate(&mut self, f: &mut Vec<u8>) -> &'static str {
        let ip = ether_type(f) == ETH_P_IP && f.len() >= 34;
        match self.rng.below(19) {
            0 | 1 if f.len() > 14 => {
                f.truncate(self.rng.range(14, f.len() - 1));
                "truncated"
            }
            2 if f.len() > 14 => {
                f[14] = (f[14] & 0xf0) | self.rng.below(16) as u8;
                "bad IHL"
            }
            3 if f.len() > 14 => {
                f[14] = (self.rng.below(16) as u8) << 4 | (f[14] & 0x0f);
                "bad version"
            }
            4 if ip => {
                let len = match self.rng.below(4) {
                    0 => 0,
                    1 => f.len() as u16 - 14 + 1 + self.rng.below(100) as u16,
                    2 => self.rng.below(20) as u16,
                    _ => self.rng.u16(),
                };
                f[16..18].copy_from_slice(&len.to_be_bytes());
                fix_ip_checksum(f);
                "bad total length"
            }
            5 if ip && f[14] == 0x45 => {
                if self.rng.chance(50) {
                    *f = with_ip_options(f);
                } else {
                    let words = self.rng.range(1, 10);
                    let options = self.rng.bytes(words * 4);
                    f.splice(34..34, options);
                    f[14] = 0x45 + words as u8;
                    let len = u16::from_be_bytes([f[16], f[17]]) + words as u16 * 4;
                    f[16..18].copy_from_slice(&len.to_be_bytes());
                    fix_ip_checksum(f);
                }
                "IP options"
            }
            6 if ip => {
                let frag: u16 = match self.rng.below(4) {
                    0 => 0x2000,
                    1 => 0x2000 | (1 + self.rng.below(0x1fff) as u16),
                    2 => 1 + self.rng.below(0x1fff) as u16,
                    _ => 0x4000,
                };
                f[20..22].copy_from_slice(&frag.to_be_bytes());
                fix_ip_checksum(f);
                "fragment"
            }
            7 => {
                let tci = self.rng.u16() & 0x0fff;
                let mut tag = 0x8100u16.to_be_bytes().to_vec();
                tag.extend_from_slice(&tci.to_be_bytes());
                if self.rng.chance(50) {
                    let mut outer = 0x88a8u16.to_be_bytes().to_vec();
                    outer.extend_from_slice(&self.rng.u16().to_be_bytes());
                    tag.splice(0..0, outer);
                    f.splice(12..12, tag);
                    "QinQ tags"
                } else {
                    f.splice(12..12, tag);
                    "802.1Q tag"
                }
            }
            8 => {
                let t = match self.rng.below(4) {
                    0 => ETH_P_ARP,
                    1 => ETH_P_IP,
                    2 => self.rng.u16(),
                    _ => *self.rng.pick(&ODD_ETHER_TYPES),
                };
                f[12..14].copy_from_slice(&t.to_be_bytes());
                "ether type"
            }
            9 => {
                let mac = self.mac();
                f[6..12].copy_from_slice(&mac);
                "spoofed MAC"
            }
            10 if ip => {
                let src = self.addr();
                f[26..30].copy_from_slice(&src.octets());
                fix_ip_checksum(f);
                "spoofed IP"
            }
            11 if ip => {
                let at = if f.len() == 34 || self.rng.chance(50) {
                    24
                } else {
                    self.rng.range(34, f.len() - 1)
                };
                f[at] ^= 1 + self.rng.below(255) as u8;
                "bad checksum"
            }
            12 if ip && f[23] == TCP && f.len() >= 14 + 20 + 14 => {
                let at = 14 + usize::from(f[14] & 0x0f) * 4 + 13;
                if at < f.len() {
                    f[at] = self.rng.u8();
                }
                "TCP flags"
            }
            13 if ip && (f[23] == TCP || f[23] == UDP) => {
                let at = 14 + usize::from(f[14] & 0x0f) * 4;
                let end = (at + 4).min(f.len());
                if at < end {
                    f[at..end].fill(0);
                }
                "zero ports"
            }
            14 if ip => {
                f[22] = self.rng.below(2) as u8;
                fix_ip_checksum(f);
                "TTL 0 or 1"
            }
            15 => {
                let n = self.rng.range(1, 64);
                let garbage = self.rng.bytes(n);
                f.extend_from_slice(&garbage);
                "trailing garbage"
            }
            16 if f.len() >= 22 => {
                let at = self.rng.range(14, 21);
                f[at] = self.rng.u8();
                "ARP or IP header byte"
            }
            17 => {
                let mac = self.mac();
                f[0..6].copy_from_slice(&mac);
                "destination MAC"
            }
            _ => {
                for _ in 0..self.rng.range(1, 4) {
                    let at = self.rng.below(f.len());
                    f[at] = self.rng.u8();
                }
                "flipped bytes"
            }
        }
    }
}

/// Recomputes the IPv4 header checksum, when the header is there to sum.
fn fix_ip_checksum(f: &mut [u8]) {
    let end = 14 + usize::from(f[14] & 0x0f) * 4;
    if end < 34 || end > f.len() {
        return;
    }
    f[24..26].fill(0);
    let sum = !ones_sum(&f[14..end], 0);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
}

/// An ICMP "port unreachable" about the UDP datagram `src`:`sport` ->
/// `dst`:`dport` (from `dst` back to `src`).
fn icmp_error(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let inner = frame(
        [0; 6],
        [0; 6],
        src,
        dst,
        UDP,
        &udp(src, dst, sport, dport, false),
    );
    let mut s = vec![3, 3, 0, 0, 0, 0, 0, 0];
    s.extend_from_slice(&inner[14..14 + 28]);
    let sum = !ones_sum(&s, 0);
    s[2..4].copy_from_slice(&sum.to_be_bytes());
    s
}

/// An IPv6 UDP frame between random addresses.
fn ipv6(eth_dst: [u8; 6], eth_src: [u8; 6], rng: &mut Rng) -> Vec<u8> {
    let mut f = eth_dst.to_vec();
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&ETH_P_IPV6.to_be_bytes());
    f.extend_from_slice(&[0x60, 0, 0, 0, 0, 16, UDP, 64]);
    f.extend_from_slice(&rng.bytes(32));
    f.extend_from_slice(&rng.bytes(16));
    f
}
