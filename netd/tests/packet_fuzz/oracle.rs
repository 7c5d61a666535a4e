//! What may happen to a frame, decided from its bytes alone (whatever the
//! generator meant it to be), by the rules the README states:
//! - from an endpoint, only IPv4 and Ethernet/IPv4 ARP pass; a header cut
//!   short or impossible is `malformed`, another protocol `not_ip`, a
//!   source IP or MAC (or ARP sender) not the endpoint's `spoofed_source`;
//!   ARP is answered only for the sender's own network;
//! - nothing reaches an endpoint of another network, or leaves an
//!   `--internal` one, but through a published port (a new flow to a host
//!   address) or as a packet of a flow that was itself allowed (its
//!   further packets and its replies, as connection tracking keeps them);
//! - from outside, only published ports and replies of masqueraded flows
//!   reach endpoints, never one of an internal network; everything else
//!   passes untouched to the host;
//! - from the tunnel, only a cluster host's own containers of the VNI's
//!   network reach that network's endpoints; everything else is dropped;
//! - a passed frame is unchanged but for what the program must rewrite.

use std::{collections::HashSet, net::Ipv4Addr};

use netd::dataplane::DropReason;

use crate::bpf_harness::{
    addr::mac_of,
    frames::{ACK, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, ICMP, RST, SYN, TCP, UDP},
};
use crate::world::{
    B, HOST1, HOST2, Member, REMOTE_EP, REMOTE_NET, Site, TUNNELS, VIP, VIP_EMPTY, VNI, World,
    uplink,
};

pub fn ether_type(f: &[u8]) -> u16 {
    u16::from_be_bytes([f[12], f[13]])
}

/// An IPv4 header that `parse::check_ipv4_vihl` accepts: the fixed header
/// is there, version 4, IHL >= 5, the options inside the frame.
pub fn ipv4_ok(f: &[u8]) -> bool {
    let ihl = usize::from(f.get(14).map_or(0, |v| v & 0x0f)) * 4;
    f.len() >= 34 && f[14] >> 4 == 4 && ihl >= 20 && 14 + ihl <= f.len()
}

fn addr(f: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(f[at], f[at + 1], f[at + 2], f[at + 3])
}

/// IPv4 source and destination (the frame has the fixed header).
pub fn src(f: &[u8]) -> Ipv4Addr {
    addr(f, 26)
}

pub fn dst(f: &[u8]) -> Ipv4Addr {
    addr(f, 30)
}

/// A flow's tuple as connection tracking keys it (ICMP echo: the
/// identifier as `sport` of a request, as `dport` of a reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Tuple {
    pub fn reverse(self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

/// What `parse::l4` makes of a frame with a valid IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    /// TCP, UDP or ICMP echo, with the TCP flags (0 otherwise).
    Flow(Tuple, u8),
    /// A fragment other than the first.
    Fragment,
    /// Another protocol or ICMP type.
    Other,
    /// The L4 header it needs is cut short.
    Short,
}

pub fn l4(f: &[u8]) -> L4 {
    if u16::from_be_bytes([f[20], f[21]]) & 0x1fff != 0 {
        return L4::Fragment;
    }
    let at = 14 + usize::from(f[14] & 0x0f) * 4;
    // Through the checksum field, which a translation rewrites.
    let need = match f[23] {
        TCP => 18,
        UDP | ICMP => 8,
        _ => return L4::Other,
    };
    let Some(h) = f.get(at..at + need) else {
        return L4::Short;
    };
    let port = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
    let (sport, dport, flags) = match f[23] {
        TCP => (port(0), port(2), h[13]),
        UDP => (port(0), port(2), 0),
        _ => match (h[0], h[1]) {
            (8, 0) => (port(4), 0, 0),
            (0, 0) => (0, port(4), 0),
            _ => return L4::Other,
        },
    };
    L4::Flow(
        Tuple {
            src: src(f),
            dst: dst(f),
            sport,
            dport,
            proto: f[23],
        },
        flags,
    )
}

/// Whether a packet may start a flow to a published port (`nat::opens_flow`).
fn opens_flow(t: &Tuple, flags: u8) -> bool {
    t.proto != TCP || flags & (SYN | ACK | RST) == SYN
}

/// What must happen, as far as the frame alone says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Drop(DropReason),
    /// Passed on, unchanged but for the Ethernet destination a sender's
    /// frame gets (its gateway's MAC).
    Next,
    /// An ARP request answered with this MAC.
    ArpReply([u8; 6]),
    /// Delivered to this member (from the tunnel).
    Deliver(usize),
    /// Decided by the flows and the destination: judged after the run.
    Open,
}

pub fn expect(world: &World, site: Site, f: &[u8]) -> Expect {
    match site {
        Site::FromEp(s) => from_endpoint(world, &world.members[s], f),
        Site::Macvlan => macvlan(&world.members[B], f),
        Site::ToEp(_) => to_endpoint(f),
        Site::Uplink => uplink_in(world, f),
        Site::Tunnel(t) => tunnel(world, t, f),
    }
}

fn owns(m: &Member, f: &[u8]) -> bool {
    src(f) == m.ip && f[6..12] == m.mac
}

fn from_endpoint(world: &World, m: &Member, f: &[u8]) -> Expect {
    match ether_type(f) {
        ETH_P_IP if !ipv4_ok(f) => Expect::Drop(DropReason::Malformed),
        ETH_P_IP if !owns(m, f) => Expect::Drop(DropReason::SpoofedSource),
        ETH_P_IP => Expect::Open,
        ETH_P_ARP => arp(world, m, f),
        _ => Expect::Drop(DropReason::NotIp),
    }
}

/// The fields of an Ethernet/IPv4 ARP frame (42 bytes or more).
struct Arp {
    htype: u16,
    ptype: u16,
    hlen: u8,
    plen: u8,
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tpa: Ipv4Addr,
}

fn parse_arp(f: &[u8]) -> Option<Arp> {
    (f.len() >= 42).then(|| Arp {
        htype: u16::from_be_bytes([f[14], f[15]]),
        ptype: u16::from_be_bytes([f[16], f[17]]),
        hlen: f[18],
        plen: f[19],
        op: u16::from_be_bytes([f[20], f[21]]),
        sha: f[22..28].try_into().expect("6 bytes"),
        spa: addr(f, 28),
        tpa: addr(f, 38),
    })
}

fn arp(world: &World, m: &Member, f: &[u8]) -> Expect {
    let Some(a) = parse_arp(f) else {
        return Expect::Drop(DropReason::Malformed);
    };
    if a.htype != 1 || a.ptype != ETH_P_IP {
        return Expect::Drop(DropReason::NotIp);
    }
    if a.hlen != 6 || a.plen != 4 {
        return Expect::Drop(DropReason::Malformed);
    }
    if f[6..12] != m.mac || a.sha != m.mac || a.spa != m.ip {
        return Expect::Drop(DropReason::SpoofedSource);
    }
    if a.op == 2 || (a.op == 1 && a.tpa == m.ip) {
        return Expect::Next;
    }
    if a.op != 1 {
        return Expect::Drop(DropReason::ArpUnanswered);
    }
    if let Some(p) = world.member_by_ip(a.tpa) {
        let peer = &world.members[p];
        return if peer.net == m.net {
            Expect::ArpReply(peer.mac)
        } else {
            Expect::Drop(DropReason::CrossNetwork)
        };
    }
    match world.network_of(a.tpa) {
        Some(net) if net != m.net => Expect::Drop(DropReason::CrossNetwork),
        Some(net) if a.tpa == world.gateway(net) => Expect::ArpReply(mac_of(a.tpa)),
        Some(net) if net == REMOTE_NET && a.tpa == REMOTE_EP => Expect::ArpReply(mac_of(a.tpa)),
        Some(net) if a.tpa == VIP || a.tpa == VIP_EMPTY => {
            Expect::ArpReply(mac_of(world.gateway(net)))
        }
        _ => Expect::Drop(DropReason::ArpUnanswered),
    }
}

fn macvlan(m: &Member, f: &[u8]) -> Expect {
    match ether_type(f) {
        ETH_P_IP if !ipv4_ok(f) => Expect::Drop(DropReason::Malformed),
        ETH_P_IP if !owns(m, f) => Expect::Drop(DropReason::SpoofedSource),
        ETH_P_ARP => match parse_arp(f) {
            None => Expect::Drop(DropReason::Malformed),
            Some(a) if f[6..12] != m.mac || a.sha != m.mac || a.spa != m.ip => {
                Expect::Drop(DropReason::SpoofedSource)
            }
            Some(_) => Expect::Next,
        },
        ETH_P_IP => Expect::Next,
        _ => Expect::Drop(DropReason::NotIp),
    }
}

fn to_endpoint(f: &[u8]) -> Expect {
    let ok = match ether_type(f) {
        ETH_P_IP => ipv4_ok(f),
        ETH_P_IPV6 => f.len() >= 54 && f[14] >> 4 == 6,
        _ => true,
    };
    if ok {
        Expect::Next
    } else {
        Expect::Drop(DropReason::Malformed)
    }
}

fn uplink_in(world: &World, f: &[u8]) -> Expect {
    if ether_type(f) != ETH_P_IP || f.len() < 34 || dst(f) != uplink() || !ipv4_ok(f) {
        return Expect::Next;
    }
    // A source that is the uplink's own or in a netd network is forged
    // from outside: passed to the host untouched.
    if src(f) == uplink() || world.network_of(src(f)).is_some() {
        return Expect::Next;
    }
    match l4(f) {
        L4::Flow(..) if f[22] > 1 => Expect::Open,
        _ => Expect::Next,
    }
}

fn tunnel(world: &World, t: usize, f: &[u8]) -> Expect {
    let (vni, host) = TUNNELS[t];
    let reason = if host != HOST1 && host != HOST2 {
        DropReason::UnknownHost
    } else if vni != VNI {
        DropReason::VniUnknown
    } else if ether_type(f) != ETH_P_IP {
        DropReason::NotIp
    } else if !ipv4_ok(f) {
        DropReason::Malformed
    } else {
        match world.member_by_ip(dst(f)) {
            None => DropReason::NoEndpoint,
            Some(p) if world.members[p].net != REMOTE_NET => DropReason::VniMismatch,
            Some(p) if src(f) == REMOTE_EP && host == HOST1 => return Expect::Deliver(p),
            // Another host speaks for clients outside every network only
            // within a mesh flow, opened by a TCP SYN or a UDP datagram
            // to a service's backend (`mesh::from_tunnel`); the overlay
            // endpoint backs none.
            Some(_) if !outside_client(world, src(f)) => DropReason::SpoofedSource,
            Some(_) => match l4(f) {
                L4::Short => DropReason::Malformed,
                L4::Fragment => DropReason::NatFragment,
                L4::Flow(t, flags) if f[22] > 1 && t.proto != ICMP && opens_flow(&t, flags) => {
                    DropReason::SpoofedSource
                }
                _ => DropReason::NoFlow,
            },
        }
    };
    Expect::Drop(reason)
}

/// An address another host may tunnel a mesh client from: unicast and
/// in no netd network (`mesh::outside_client`).
fn outside_client(world: &World, ip: Ipv4Addr) -> bool {
    let [first, ..] = ip.octets();
    first != 0 && first != 127 && first < 224 && world.network_of(ip).is_none()
}

/// Who sent or receives a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    Member(usize),
    Outside,
    /// The container of the overlay network on another host.
    Remote,
}

/// The flows the run opened through allowed translations, which connection
/// tracking may carry on: each flow's tuple to where it went, and its
/// reply tuple back to who opened it. A superset of the kernel's table
/// (which closes and evicts): it only makes deliveries allowed. Also the
/// recent ones, for the generator to send replies and further packets.
#[derive(Default)]
pub struct Flows {
    allowed: HashSet<(Tuple, Party)>,
    pub recent: Vec<(Site, Tuple)>,
    learned: usize,
}

/// How many flows the generator picks its replies from.
const RECENT: usize = 512;

impl Flows {
    fn allows(&self, t: Option<Tuple>, to: Party) -> bool {
        t.is_some_and(|t| self.allowed.contains(&(t, to)))
    }

    fn learn(&mut self, from: Site, t: Tuple, to: Party, out: Tuple) {
        let origin = match from {
            Site::FromEp(s) => Party::Member(s),
            _ => Party::Outside,
        };
        self.allowed.insert((t, to));
        self.allowed.insert((out.reverse(), origin));
        let back = match to {
            Party::Member(x) => Some(Site::FromEp(x)),
            Party::Outside => Some(Site::Uplink),
            Party::Remote => None,
        };
        let mut remember = |site, tuple| {
            let entry = (site, tuple);
            if self.recent.len() < RECENT {
                self.recent.push(entry);
            } else {
                self.recent[self.learned % RECENT] = entry;
            }
            self.learned += 1;
        };
        remember(from, t);
        if let Some(site) = back {
            remember(site, out.reverse());
        }
    }
}

/// A program's verdict, as the oracle sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Next,
    Drop(DropReason),
    Redirect,
}

/// Judges a run whose `expect` was decided before it: what went wrong,
/// if anything. `counted` is the member whose delivery counter the run
/// moved (the program counts where it redirects to).
#[allow(clippy::too_many_arguments)]
pub fn judge(
    world: &World,
    flows: &mut Flows,
    site: Site,
    f: &[u8],
    expect: Expect,
    verdict: Verdict,
    counted: Option<usize>,
    out: &[u8],
) -> Result<(), String> {
    match (expect, verdict) {
        (Expect::Drop(want), Verdict::Drop(got)) if want == got => Ok(()),
        (Expect::Next, Verdict::Next) => passed(world, site, f, out),
        (Expect::ArpReply(mac), Verdict::Redirect) if counted.is_none() => {
            arp_reply(site, world, f, out, mac)
        }
        (Expect::Deliver(p), Verdict::Redirect) => {
            let mut want = f.to_vec();
            want[0..6].copy_from_slice(&world.members[p].mac);
            if out != want || counted != Some(p) {
                return Err(format!(
                    "delivered to {} as {out:02x?}",
                    world.members[p].name
                ));
            }
            Ok(())
        }
        (Expect::Open, Verdict::Drop(reason)) => explain_drop(world, site, f, reason),
        (Expect::Open, Verdict::Next) => {
            if let Site::FromEp(s) = site {
                let m = &world.members[s];
                let to = world.network_of(dst(f));
                if to.is_some_and(|n| n != m.net) {
                    return Err("passed towards another network".into());
                }
                if m.internal && to.is_none() {
                    return Err("passed out of an internal network".into());
                }
            }
            passed(world, site, f, out)
        }
        (Expect::Open, Verdict::Redirect) => delivery(world, flows, site, f, counted, out),
        (want, got) => Err(format!("expected {want:?}, got {got:?}")),
    }
}

/// A passed frame: unchanged, but a sender's gets its gateway's MAC as
/// destination (the bridge then never forwards or floods it).
fn passed(world: &World, site: Site, f: &[u8], out: &[u8]) -> Result<(), String> {
    let mut want = f.to_vec();
    if let Site::FromEp(s) = site {
        want[0..6].copy_from_slice(&mac_of(world.members[s].gw));
    }
    if out != want {
        return Err(format!("passed as {out:02x?}"));
    }
    Ok(())
}

fn arp_reply(
    site: Site,
    world: &World,
    f: &[u8],
    out: &[u8],
    answer: [u8; 6],
) -> Result<(), String> {
    let Site::FromEp(s) = site else {
        return Err("ARP answered off an endpoint".into());
    };
    let m = &world.members[s];
    let mut want = f.to_vec();
    want[0..6].copy_from_slice(&m.mac);
    want[6..12].copy_from_slice(&answer);
    want[20..22].copy_from_slice(&2u16.to_be_bytes());
    want[22..28].copy_from_slice(&answer);
    want[28..32].copy_from_slice(&f[38..42]);
    want[32..38].copy_from_slice(&m.mac);
    want[38..42].copy_from_slice(&m.ip.octets());
    if out != want {
        return Err(format!("ARP answered as {out:02x?}"));
    }
    Ok(())
}

/// A drop whose reason the frame alone did not decide: the reason must
/// fit the frame. `nat_no_port` and `ct_map_full` are the table's state.
fn explain_drop(world: &World, site: Site, f: &[u8], reason: DropReason) -> Result<(), String> {
    let l4 = l4(f);
    let published_nowhere = match l4 {
        L4::Flow(t, _) => world.published(t.proto, t.dport) == Some(&[]),
        _ => false,
    };
    let fits = match (site, reason) {
        (_, DropReason::NatNoPort | DropReason::CtMapFull) => true,
        (Site::Uplink, DropReason::NoBackend) => published_nowhere,
        (Site::FromEp(s), reason) => {
            let m = &world.members[s];
            let to = world.network_of(dst(f));
            match reason {
                DropReason::Malformed => l4 == L4::Short,
                DropReason::CrossNetwork => to.is_some_and(|n| n != m.net),
                DropReason::InternalNetwork => m.internal && to.is_none(),
                // To the outside (masquerade) or to a VIP (balancing): no
                // ports to find the flow by.
                DropReason::NatFragment => {
                    l4 == L4::Fragment
                        && ((!m.internal && to.is_none())
                            || ([VIP, VIP_EMPTY].contains(&dst(f)) && to == Some(m.net)))
                }
                DropReason::NoBackend => dst(f) == VIP_EMPTY || published_nowhere,
                // An echo reply to the outside that answers no request
                // (`nat`), or a TCP segment to a VIP that opens no flow
                // (`lb`).
                DropReason::NoFlow
                    if to.is_none()
                        && !m.internal
                        && f[23] == ICMP
                        && matches!(l4, L4::Flow(..))
                        && f.get(14 + usize::from(f[14] & 0x0f) * 4) == Some(&0) =>
                {
                    true
                }
                DropReason::NoFlow => {
                    [VIP, VIP_EMPTY].contains(&dst(f))
                        && to == Some(m.net)
                        && matches!(l4, L4::Flow(t, flags) if !opens_flow(&t, flags))
                }
                _ => false,
            }
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "dropped as {reason:?}, which does not fit the frame"
        ))
    }
}

/// A redirect of a frame whose fate the flows decide: where it went, and
/// whether the design lets it go there.
fn delivery(
    world: &World,
    flows: &mut Flows,
    site: Site,
    f: &[u8],
    counted: Option<usize>,
    out: &[u8],
) -> Result<(), String> {
    if out.len() != f.len() || ether_type(out) != ETH_P_IP {
        return Err(format!("redirected as {out:02x?}"));
    }
    let to = match counted {
        Some(x) => {
            let m = &world.members[x];
            if dst(out) != m.ip || out[0..6] != m.mac {
                return Err(format!("counted for {} but sent as {out:02x?}", m.name));
            }
            Party::Member(x)
        }
        // Translated out of the uplink.
        None if src(out) == uplink() => Party::Outside,
        None if dst(out) == REMOTE_EP && out[0..6] == mac_of(REMOTE_EP) => Party::Remote,
        None => return Err(format!("redirected to nobody known: {out:02x?}")),
    };
    let (t, flags) = match l4(f) {
        L4::Flow(t, flags) => (Some(t), flags),
        _ => (None, 0),
    };
    let allowed = match (site, to) {
        (Site::FromEp(s), Party::Member(x)) => {
            let (m, peer) = (&world.members[s], &world.members[x]);
            peer.net == m.net
                || flows.allows(t, to)
                || t.is_some_and(|t| {
                    !m.internal
                        && !peer.internal
                        && (world.is_host_addr(t.dst) || t.dst == m.gw)
                        && opens_flow(&t, flags)
                        && world
                            .published(t.proto, t.dport)
                            .is_some_and(|to| to.contains(&x))
                })
        }
        (Site::FromEp(s), Party::Remote) => world.members[s].net == REMOTE_NET,
        (Site::FromEp(s), Party::Outside) => {
            let d = dst(f);
            !world.members[s].internal
                && (flows.allows(t, to)
                    || (world.network_of(d).is_none()
                        && !world.is_host_addr(d)
                        && !d.is_loopback()))
        }
        (Site::Uplink, Party::Member(x)) => {
            !world.members[x].internal
                && (flows.allows(t, to)
                    || t.is_some_and(|t| {
                        opens_flow(&t, flags)
                            && world
                                .published(t.proto, t.dport)
                                .is_some_and(|to| to.contains(&x))
                    }))
        }
        _ => false,
    };
    if !allowed {
        return Err(format!("delivered to {to:?}: {out:02x?}"));
    }
    if let (Some(t), L4::Flow(out_t, _)) = (t, l4(out)) {
        flows.learn(site, t, to, out_t);
    }
    Ok(())
}
