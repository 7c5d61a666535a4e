//! Connection tracking and address translation (masquerade, published
//! ports, hairpin): the `NAT_CT` map's layout and the rules both sides
//! apply to it (timeouts), so that the daemon's view (`nat_stats`) agrees
//! with the programs'.
//!
//! # Entries
//! Every translated flow has two entries, inserted together, each keyed by
//! the tuple of a packet *as it arrives* at the hook that translates it and
//! holding the tuple to rewrite it to. The other entry's key is always the
//! reverse of the translated tuple, so either entry finds its partner:
//! ```text
//! masquerade  C:cp -> R:rp  becomes  U:up -> R:rp   key {C,R,cp,rp}  (netd_from_ep)
//!             R:rp -> U:up  becomes  R:rp -> C:cp   key {R,U,rp,up}  (netd_uplink_in)
//! published   R:rp -> U:hp  becomes  R:rp -> T:tp   key {R,U,rp,hp}  (netd_uplink_in)
//!             T:tp -> R:rp  becomes  U:hp -> R:rp   key {T,R,tp,rp}  (netd_from_ep)
//! hairpin     A:ap -> U:hp  becomes  G:xp -> T:tp   key {A,U,ap,hp}  (netd_from_ep of A)
//!             T:tp -> G:xp  becomes  U:hp -> A:ap   key {T,G,tp,xp}  (netd_from_ep of T)
//! service     C:cp -> V:vp  becomes  C:cp -> B:vp   key {C,V,cp,vp}  (netd_from_ep of C)
//!             B:vp -> C:cp  becomes  V:vp -> C:cp   key {B,C,vp,cp}  (netd_from_ep of B)
//! self        C:cp -> V:vp  becomes  V:xp -> C:vp   key {C,V,cp,vp}  (netd_from_ep of C)
//!             C:vp -> V:xp  becomes  V:vp -> C:cp   key {C,V,vp,xp}  (netd_from_ep of C)
//! host        H:hp -> B:bp  becomes  U:xp -> B:bp   key {H,B,hp,bp}  (netd_bridge_out)
//!             B:bp -> U:xp  becomes  B:bp -> H:hp   key {B,U,bp,xp}  (netd_vxlan_in)
//! mesh        S:sp -> B:bp  stays    S:sp -> B:bp   key {S,B,sp,bp}  (netd_vxlan_in)
//!             B:bp -> S:sp  stays    B:bp -> S:sp   key {B,S,bp,sp}  (netd_from_ep of B)
//! ```
//! (U uplink address, G the target network's gateway, V a service's
//! virtual IP, B the backend the load balancer chose; "self" is a client
//! that the load balancer chose as its own backend: its source becomes the
//! VIP, since a packet from its own address would be a martian to it. A
//! port published to a service is "published" or "hairpin" with T = B.)
//!
//! A backend on another host ([`CT_F_TUNNEL`]): "service" and "published"
//! keep their tuples, the entry towards B goes through the tunnel and the
//! other is looked up by `netd_vxlan_in` when B's host sends the reply
//! back; "hairpin" takes U (the uplink address) as its source instead of G,
//! since B's host cannot send to a gateway address every host shares.
//! "host" is the host itself (H, an address of its own, usually the
//! overlay bridge's) connecting to such a backend (its socket hooks chose
//! B): source NAT to U, the reply handed to the host's stack. On B's host,
//! a client S outside the cluster's networks that another host's mesh
//! (published, hairpin, host) passed on keeps its tuple: "mesh", whose
//! reply entry tunnels back to the host it came from.
//! ICMP echo uses the identifier as the "port": `sport` = id for requests, `dport` = id for
//! replies, the other one 0, so that reversing a tuple works the same way.

/// `IPPROTO_ICMP`.
pub const PROTO_ICMP: u8 = 1;
/// `IPPROTO_TCP`.
pub const PROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const PROTO_UDP: u8 = 17;

/// Masquerade/hairpin source ports are searched in
/// `PORT_MIN..=PORT_MAX` when the original one is taken: above Linux's
/// default ephemeral range (32768-60999), so that a searched port is never
/// one the host picked for a connection of its own.
pub const PORT_MIN: u16 = 61000;
/// See [`PORT_MIN`].
pub const PORT_MAX: u16 = 65535;
/// How many ports a new flow tries (the original, then this many minus
/// one from a random start in the range) before it is dropped with
/// `DropReason::NatNoPort`. Bounded so the verifier accepts the loop
/// and a packet's cost stays bounded.
pub const PORT_TRIES: u32 = 32;

const SECOND: u64 = 1_000_000_000;
/// TCP flow whose reply direction has not been seen yet.
pub const TIMEOUT_TCP_SYN_NS: u64 = 60 * SECOND;
/// TCP flow with traffic both ways.
pub const TIMEOUT_TCP_ESTABLISHED_NS: u64 = 2 * 3600 * SECOND;
/// TCP flow after a FIN in both directions (normally removed at the
/// last ACK already; this covers a lost last ACK).
pub const TIMEOUT_TCP_CLOSING_NS: u64 = 10 * SECOND;
/// UDP flow.
pub const TIMEOUT_UDP_NS: u64 = 60 * SECOND;
/// ICMP echo flow.
pub const TIMEOUT_ICMP_NS: u64 = 30 * SECOND;
/// `last_seen` is only rewritten when it is older than this, so that a
/// busy flow does not write its entry on every packet (the cache line
/// would bounce between CPUs). Timeouts are accurate to this much.
pub const REFRESH_NS: u64 = SECOND;

/// [`CtEntry::flags`]: the entry translates the reply direction (the
/// flow was created by a packet the other entry matches).
pub const CT_F_REPLY: u32 = 1;
/// Traffic was seen in the reply direction.
pub const CT_F_ESTABLISHED: u32 = 1 << 1;
/// TCP FIN seen in the original direction.
pub const CT_F_FIN_ORIG: u32 = 1 << 2;
/// TCP FIN seen in the reply direction.
pub const CT_F_FIN_REPLY: u32 = 1 << 3;
/// TCP FIN seen both ways: the next ACK from the side that sent the first
/// FIN ends the flow (both entries are deleted).
pub const CT_F_CLOSING: u32 = 1 << 4;
/// With [`CT_F_CLOSING`]: the second FIN came from the reply direction.
pub const CT_F_LAST_FIN_REPLY: u32 = 1 << 5;
/// Deliver the translated packet to the uplink
/// (`bpf_redirect_neigh(ifindex)`); otherwise to the endpoint behind the
/// host-side veth `ifindex` (`bpf_redirect_peer`).
pub const CT_F_TO_UPLINK: u32 = 1 << 6;
/// The flow is a masquerade (container to outside).
pub const CT_F_SNAT: u32 = 1 << 7;
/// The flow came in through a published port from outside.
pub const CT_F_DNAT: u32 = 1 << 8;
/// The flow is a container reaching a published port through a host
/// address (hairpin).
pub const CT_F_HAIRPIN: u32 = 1 << 9;
/// The flow's destination was chosen by the load balancer: a container
/// to a service's virtual IP (then alone), or with [`CT_F_DNAT`] /
/// [`CT_F_HAIRPIN`] through a port published to a service.
pub const CT_F_LB: u32 = 1 << 10;
/// Deliver the translated packet through the overlay tunnel (the VXLAN
/// device, `OVL_CFG`): `ifindex` then holds the VNI and `gateway` the
/// underlay address of the host it goes to. For flows to a service's
/// backend on another host, and for the replies of routing-mesh flows
/// ([`CT_F_MESH`]) to the host that passed them on.
pub const CT_F_TUNNEL: u32 = 1 << 11;
/// Deliver the translated packet to the host's own stack, as received on
/// the bridge `ifindex` whose address (and MAC) is `gateway`: the replies
/// of the host's connections to a backend on another host.
pub const CT_F_TO_HOST: u32 = 1 << 12;
/// The flow came through the overlay tunnel from another host of the
/// cluster for a local backend, with a client outside the cluster's
/// networks (the routing mesh: a published port or the host itself over
/// there): the replies go back through the tunnel ([`CT_F_TUNNEL`]).
pub const CT_F_MESH: u32 = 1 << 13;

/// [`CtEntry::flags`] above the `CT_F_*` bits: the slot
/// ([`crate::EndpointInfo::slot`]) of the endpoint the entry delivers
/// to, so that counting the delivery costs no `EP_BY_IF` lookup. 0: not
/// recorded (delivery to the uplink, or an entry of an older netd): the
/// programs look the endpoint up by `ifindex`.
pub const CT_SLOT_SHIFT: u32 = 16;

/// The delivery slot recorded in `flags` (see [`CT_SLOT_SHIFT`]).
pub const fn ct_slot(flags: u32) -> u16 {
    (flags >> CT_SLOT_SHIFT) as u16
}

/// The `flags` bits that record the delivery slot `slot`.
pub const fn ct_slot_flags(slot: u16) -> u32 {
    (slot as u32) << CT_SLOT_SHIFT
}

/// `NAT_CT` key: a packet's tuple as it arrives. Addresses and ports in
/// network byte order, as in the packet.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtKey {
    pub saddr: u32,
    pub daddr: u32,
    pub sport: u16,
    pub dport: u16,
    /// `PROTO_TCP`, `PROTO_UDP` or `PROTO_ICMP`.
    pub proto: u8,
    /// Zero.
    pub _pad: [u8; 3],
}

impl CtKey {
    /// The tuple `{saddr, daddr, sport, dport, proto}`, padding zero.
    ///
    /// Built as four words rather than field by field: the zeroed
    /// 3-byte `_pad` array becomes a `memset`, which the BPF backend
    /// emits as a call to a BPF `memset` subprogram, on every packet.
    pub const fn new(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> CtKey {
        let [s0, s1] = sport.to_ne_bytes();
        let [d0, d1] = dport.to_ne_bytes();
        let words = [
            saddr,
            daddr,
            u32::from_ne_bytes([s0, s1, d0, d1]),
            u32::from_ne_bytes([proto, 0, 0, 0]),
        ];
        // SAFETY: `CtKey` is `#[repr(C)]`, 16 bytes of integers without
        // implicit padding, aligned like `u32` (see the layout test), so
        // any 16 bytes are a valid `CtKey`; these are its fields in
        // order, as stored.
        unsafe { core::mem::transmute::<[u32; 4], CtKey>(words) }
    }

    /// The tuple of a packet going the other way.
    pub const fn reversed(self) -> CtKey {
        CtKey::new(self.daddr, self.saddr, self.dport, self.sport, self.proto)
    }
}

/// `NAT_CT` value: how to rewrite and where to send a packet whose tuple
/// is the key.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CtEntry {
    /// `CLOCK_MONOTONIC` nanoseconds of the last packet, to
    /// [`REFRESH_NS`] (read once per kernel tick by the programs, so up
    /// to one tick early).
    pub last_seen: u64,
    /// The tuple after translation.
    pub new_saddr: u32,
    pub new_daddr: u32,
    pub new_sport: u16,
    pub new_dport: u16,
    /// Where the translated packet goes, see [`CT_F_TO_UPLINK`]; with
    /// [`CT_F_TUNNEL`] the VNI.
    pub ifindex: u32,
    /// When delivering to an endpoint: its network's gateway, whose MAC
    /// ([`crate::mac_for_ipv4`]) becomes the Ethernet source; with
    /// [`CT_F_TUNNEL`] the host's underlay address, with [`CT_F_TO_HOST`]
    /// the bridge's address.
    pub gateway: u32,
    /// `CT_F_*`, and the delivery slot ([`CT_SLOT_SHIFT`]).
    pub flags: u32,
}

impl CtEntry {
    /// The key of the flow's other entry.
    pub const fn peer_key(&self, proto: u8) -> CtKey {
        CtKey::new(
            self.new_daddr,
            self.new_saddr,
            self.new_dport,
            self.new_sport,
            proto,
        )
    }
}

/// How long an entry of protocol `proto` with `flags` lives after its
/// last packet.
pub const fn timeout_ns(proto: u8, flags: u32) -> u64 {
    match proto {
        PROTO_TCP => {
            if flags & CT_F_CLOSING != 0 {
                TIMEOUT_TCP_CLOSING_NS
            } else if flags & CT_F_ESTABLISHED != 0 {
                TIMEOUT_TCP_ESTABLISHED_NS
            } else {
                TIMEOUT_TCP_SYN_NS
            }
        }
        PROTO_ICMP => TIMEOUT_ICMP_NS,
        _ => TIMEOUT_UDP_NS,
    }
}

/// Whether an entry last seen at `last_seen` has timed out at `now`
/// (both `CLOCK_MONOTONIC` nanoseconds). A flow is over when *both* its
/// entries have.
pub const fn expired(last_seen: u64, proto: u8, flags: u32, now: u64) -> bool {
    now > last_seen && now - last_seen > timeout_ns(proto, flags)
}

/// Slots of the `NAT_STATS` per-CPU array. Values are stored in a
/// pinned map: never renumber, only append.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NatCounter {
    /// Masqueraded flows created (container to outside).
    SnatFlows = 0,
    /// Flows created through a published port from outside.
    DnatFlows = 1,
    /// Hairpin flows created (container to a published port through a
    /// host address).
    HairpinFlows = 2,
    /// Flows removed because TCP closed them (RST, or FIN both ways and
    /// the last ACK).
    ClosedFlows = 3,
    /// Flows removed because both entries had timed out when a packet
    /// looked them up again.
    ExpiredFlows = 4,
    /// Source ports found taken during port selection (each try beyond
    /// the first counts one).
    PortCollisions = 5,
    /// Packets translated (every direction).
    TranslatedPackets = 6,
    /// Flows created from a container to a service's virtual IP (the
    /// flows through ports published to services count as `DnatFlows` /
    /// `HairpinFlows`).
    LbFlows = 7,
    /// Flows the host itself opened to a service's backend on another
    /// host (source NAT to the uplink address, through the tunnel).
    HostFlows = 8,
    /// Flows another host of the cluster passed on to a local backend
    /// for a client outside the cluster's networks (the routing mesh).
    MeshFlows = 9,
}

impl NatCounter {
    /// All counters, in value order.
    pub const ALL: [NatCounter; 10] = [
        NatCounter::SnatFlows,
        NatCounter::DnatFlows,
        NatCounter::HairpinFlows,
        NatCounter::ClosedFlows,
        NatCounter::ExpiredFlows,
        NatCounter::PortCollisions,
        NatCounter::TranslatedPackets,
        NatCounter::LbFlows,
        NatCounter::HostFlows,
        NatCounter::MeshFlows,
    ];

    /// Stable, lower-case label (metrics).
    pub const fn as_str(self) -> &'static str {
        match self {
            NatCounter::SnatFlows => "snat_flows",
            NatCounter::DnatFlows => "dnat_flows",
            NatCounter::HairpinFlows => "hairpin_flows",
            NatCounter::ClosedFlows => "closed_flows",
            NatCounter::ExpiredFlows => "expired_flows",
            NatCounter::PortCollisions => "port_collisions",
            NatCounter::TranslatedPackets => "translated_packets",
            NatCounter::LbFlows => "lb_flows",
            NatCounter::HostFlows => "host_flows",
            NatCounter::MeshFlows => "mesh_flows",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `#[repr(C)]`, `Copy`, integers with the padding spelled out
    // (16 bytes, no implicit padding), any bit pattern valid.
    unsafe impl aya::Pod for super::CtKey {}
    // SAFETY: as above: a `u64` then `u32`/`u16` fields filling 32 bytes
    // with no implicit padding.
    unsafe impl aya::Pod for super::CtEntry {}
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;
    use crate::{limits, map_names};

    #[test]
    fn conntrack_layouts() {
        assert_eq!(size_of::<CtKey>(), 16);
        assert_eq!(offset_of!(CtKey, saddr), 0);
        assert_eq!(offset_of!(CtKey, daddr), 4);
        assert_eq!(offset_of!(CtKey, sport), 8);
        assert_eq!(offset_of!(CtKey, dport), 10);
        assert_eq!(offset_of!(CtKey, proto), 12);
        assert_eq!(offset_of!(CtKey, _pad), 13);
        assert_eq!(size_of::<CtEntry>(), 32);
        assert_eq!(align_of::<CtEntry>(), 8);
        assert_eq!(offset_of!(CtEntry, last_seen), 0);
        assert_eq!(offset_of!(CtEntry, new_saddr), 8);
        assert_eq!(offset_of!(CtEntry, new_daddr), 12);
        assert_eq!(offset_of!(CtEntry, new_sport), 16);
        assert_eq!(offset_of!(CtEntry, new_dport), 18);
        assert_eq!(offset_of!(CtEntry, ifindex), 20);
        assert_eq!(offset_of!(CtEntry, gateway), 24);
        assert_eq!(offset_of!(CtEntry, flags), 28);
    }

    #[test]
    fn peer_keys_reverse_the_translation() {
        let key = CtKey {
            saddr: 1,
            daddr: 2,
            sport: 3,
            dport: 4,
            proto: PROTO_TCP,
            _pad: [0; 3],
        };
        assert_eq!(key.reversed().reversed(), key);
        assert_eq!(CtKey::new(1, 2, 3, 4, PROTO_TCP), key);
        let entry = CtEntry {
            new_saddr: 9,
            new_daddr: 2,
            new_sport: 7,
            new_dport: 4,
            ..CtEntry::default()
        };
        let peer = entry.peer_key(PROTO_TCP);
        assert_eq!(
            (peer.saddr, peer.daddr, peer.sport, peer.dport),
            (2, 9, 4, 7)
        );
    }

    #[test]
    fn timeouts_follow_the_tcp_state() {
        assert_eq!(timeout_ns(PROTO_TCP, 0), TIMEOUT_TCP_SYN_NS);
        assert_eq!(
            timeout_ns(PROTO_TCP, CT_F_ESTABLISHED),
            TIMEOUT_TCP_ESTABLISHED_NS
        );
        assert_eq!(
            timeout_ns(PROTO_TCP, CT_F_ESTABLISHED | CT_F_CLOSING),
            TIMEOUT_TCP_CLOSING_NS
        );
        assert_eq!(timeout_ns(PROTO_UDP, 0), TIMEOUT_UDP_NS);
        assert_eq!(timeout_ns(PROTO_ICMP, 0), TIMEOUT_ICMP_NS);
        assert!(!expired(100, PROTO_UDP, 0, 100 + TIMEOUT_UDP_NS));
        assert!(expired(100, PROTO_UDP, 0, 101 + TIMEOUT_UDP_NS));
        // A clock reading older than the entry (another CPU refreshed it
        // meanwhile) is not expiry.
        assert!(!expired(100, PROTO_UDP, 0, 50));
    }

    #[test]
    fn the_delivery_slot_stays_clear_of_the_flags() {
        let flags = CT_F_LB | CT_F_REPLY | CT_F_ESTABLISHED;
        const { assert!(CT_F_MESH < 1 << CT_SLOT_SHIFT) };
        let with = flags | ct_slot_flags(u16::MAX);
        assert_eq!(ct_slot(with), u16::MAX);
        assert_eq!(with & ((1 << CT_SLOT_SHIFT) - 1), flags);
        assert_eq!(ct_slot(flags), 0);
        const { assert!(limits::ENDPOINT_SLOTS - 1 <= u16::MAX as u32) };
    }

    #[test]
    fn nat_counters_are_stable_and_fit() {
        for (i, c) in NatCounter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32);
            assert!((*c as u32) < limits::NAT_STATS_SLOTS);
        }
        for name in [
            map_names::NAT_CT,
            map_names::NAT_STATS,
            map_names::PUBLISH_STATS,
        ] {
            assert!(name.len() <= 15);
        }
        const { assert!(PORT_MIN < PORT_MAX) };
    }
}
