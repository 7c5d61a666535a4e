//! Types shared by the eBPF programs (`netd-ebpf`) and the daemon (`netd`).
//!
//! Everything here is the *wire format* of a BPF map: the kernel side writes
//! these bytes, user space reads them (or the other way round), and pinned maps
//! outlive the daemon, so a layout change is an on-disk format change. Hence:
//! - every map key/value is `#[repr(C)]`, `Copy`, and has explicit padding
//!   fields (the kernel compares hash keys byte for byte, and uninitialised
//!   padding would make two equal keys differ);
//! - no `bool`/`Option`/enums inside map values (not every bit pattern the
//!   kernel can hand back is valid for them); enums travel as `u32`;
//! - map sizes live in [`limits`] so both sides agree, and the layout tests at
//!   the bottom pin the sizes and offsets down.
//!
//! The `user` feature adds `aya::Pod` impls for the daemon; the eBPF build
//! leaves it off so this crate stays `no_std` without aya.
#![no_std]

/// Map sizes, in one place, because the kernel object and the daemon must
/// agree on them and a pinned map keeps the size it was created with.
///
/// Changing a value here makes maps pinned by an older netd incompatible; the
/// daemon detects that on load (see `netd::dataplane`) instead of silently
/// reusing a map of the wrong shape.
pub mod limits {
    /// Most container endpoints (host-side veths) one host can carry. Sizes
    /// `EP_MAP` and `EP_BY_IF`.
    pub const MAX_ENDPOINTS: u32 = 4096;

    /// Entries of the arrays indexed by an endpoint's slot
    /// ([`crate::EndpointInfo::slot`]: `EP_COUNTERS`, `LB_BACKENDS`): one
    /// per endpoint, plus slot 0, which means "none".
    pub const ENDPOINT_SLOTS: u32 = MAX_ENDPOINTS + 1;

    /// Most networks (subnets in `NET_LPM`) one host can carry.
    pub const MAX_NETWORKS: u32 = 1024;

    /// Entries of `NET_BY_INDEX`, the array of networks by their index
    /// ([`crate::EndpointInfo::net_index`]): indexes `1..NET_INDEXES` have
    /// an element (0 means none). Larger than [`MAX_NETWORKS`] because
    /// networks without a subnet entry (`host`, `none`, macvlan) take
    /// indexes too; a network beyond it is found through `NET_LPM` instead.
    pub const NET_INDEXES: u32 = 4096;

    /// Words of the `NET_HINT` bitmap: one bit per /16 of the IPv4 space
    /// (see [`crate::net_hint_bit`]).
    pub const NET_HINT_WORDS: u32 = 65536 / 32;

    /// Index of the `NET_HINT` element that says whether the bitmap is
    /// complete (1) or not yet written (0): the one after the bitmap.
    pub const NET_HINT_READY: u32 = NET_HINT_WORDS;

    /// Entries of `NET_HINT`: the bitmap and its ready flag.
    pub const NET_HINT_ENTRIES: u32 = NET_HINT_WORDS + 1;

    /// Slots reserved per direction in the drop counter array. Larger than
    /// the number of [`crate::DropReason`]s on purpose: adding a reason must
    /// not resize the pinned `DROP_STATS` map.
    pub const DROP_REASON_SLOTS: u32 = 64;

    /// Number of [`crate::Direction`]s.
    pub const DIRECTIONS: u32 = 2;

    /// Entries of the `DROP_STATS` per-CPU array: one counter per
    /// {direction, reason slot}, see [`crate::DropKey::index`].
    pub const DROP_STATS_ENTRIES: u32 = DROP_REASON_SLOTS * DIRECTIONS;

    /// Most published host ports (`PUBLISH` entries) one host can carry:
    /// every {host address, port, protocol} once.
    pub const MAX_PUBLISHED: u32 = 65536;

    /// Default number of translated flows the `NAT_CT` connection tracking
    /// LRU holds before it evicts the least recently used: as many as Linux's
    /// `nf_conntrack_max` on a host with a few GiB, sized for a busy host.
    /// The daemon's `conntrack-max` setting overrides it when it loads the
    /// object (`netd::dataplane::MapSizes`).
    pub const CONNTRACK_FLOWS: u32 = 262144;

    /// `NAT_CT` entries per flow: the forward and the reverse tuple.
    pub const CT_ENTRIES_PER_FLOW: u32 = 2;

    /// Size `NAT_CT` is declared with in the eBPF object: the default.
    pub const NAT_CT_ENTRIES: u32 = CONNTRACK_FLOWS * CT_ENTRIES_PER_FLOW;

    /// Slots of the `NAT_STATS` per-CPU array (more than there are
    /// [`crate::nat::NatCounter`]s, so adding one does not resize it).
    pub const NAT_STATS_SLOTS: u32 = 16;

    /// Most services (virtual IPs) one host can carry: the size of the
    /// `LB_RR` cursor array, so a service index must be below it.
    pub const MAX_SERVICES: u32 = 16384;

    /// Most backends one service can have (slots `1..=MAX_BACKENDS` of
    /// `LB_SVC`).
    pub const MAX_BACKENDS: u32 = 1024;

    /// Entries of `LB_SVC`: every service's slot 0 plus one slot per
    /// backend, summed over all services (e.g. 16384 services with 15
    /// backends each). Not preallocated: memory follows what is written.
    pub const LB_SVC_ENTRIES: u32 = 262144;

    /// Entries of `LB_STATS`: one counter per {service, backend}, as many
    /// as there can be backend slots.
    pub const LB_STATS_ENTRIES: u32 = LB_SVC_ENTRIES;
}

/// Map names as they appear in the object file and as pin file names.
///
/// The kernel truncates map names to 15 characters (`BPF_OBJ_NAME_LEN - 1`);
/// keep them short and prefixed with their feature (`EP_` endpoints, `DROP_`
/// drop accounting, later `LB_`, `NAT_`, ...).
pub mod map_names {
    /// Per-CPU array: endpoint slot ([`crate::EndpointInfo::slot`]) ->
    /// [`crate::EndpointStats`].
    pub const EP_COUNTERS: &str = "EP_COUNTERS";
    /// Per-CPU array: [`crate::DropKey::index`] -> packet count (`u64`).
    pub const DROP_STATS: &str = "DROP_STATS";
    /// Hash: endpoint IPv4 address ([`crate::ipv4_be`]) ->
    /// [`crate::EndpointInfo`]. Where to deliver a packet for that address.
    pub const EP_MAP: &str = "EP_MAP";
    /// Hash: host-side ifindex (`u32`) -> [`crate::EndpointInfo`]. Who is
    /// sending on that veth (the anti-spoofing reference).
    pub const EP_BY_IF: &str = "EP_BY_IF";
    /// LPM trie: subnet -> [`crate::NetworkInfo`]. The key is the kernel's
    /// `struct bpf_lpm_trie_key_u8` with four data bytes: `prefix_len: u32`
    /// (host order) then the network address ([`crate::ipv4_be`]), 8 bytes,
    /// built on both sides with aya's `lpm_trie::Key<u32>`.
    pub const NET_LPM: &str = "NET_LPM";
    /// Array: network index ([`crate::EndpointInfo::net_index`]) ->
    /// [`crate::IndexedNetwork`], the values of `NET_LPM` with their
    /// subnets, by the other key; an element whose `info.net_index` is 0
    /// is empty. Lets the programs find a sender's own network, and tell a
    /// destination in it, without a trie lookup.
    pub const NET_BY_INDEX: &str = "NET_BY_INDEX";
    /// Array, one `u64` (index 0), not pinned: the daemon's generation,
    /// which it advances after every change to `EP_MAP`, `EP_BY_IF` and
    /// `NET_LPM` and after removing flows from `NAT_CT` (see
    /// [`crate::next_generation`]). The programs keep per-CPU copies of the
    /// endpoints, networks and flows they looked up and trust a copy only
    /// while the generation it was made in lasts.
    pub const EP_GEN: &str = "EP_GEN";
    /// Array of `u32`: a bitmap with one bit per /16 of the IPv4 space
    /// (element [`crate::net_hint_bit`]), set for every /16 that holds an
    /// address of a `NET_LPM` subnet or an `EP_MAP` endpoint, then the
    /// ready flag ([`crate::limits::NET_HINT_READY`]). A clear bit of a
    /// ready bitmap lets the programs skip both lookups for destinations
    /// outside every netd network (masquerade); a set bit only means
    /// "look".
    pub const NET_HINT: &str = "NET_HINT";
    /// Hash: [`crate::PublishKey`] -> [`crate::PublishTarget`]. Published
    /// ports (DNAT on the uplink, hairpin, socket hooks).
    pub const PUBLISH: &str = "PUBLISH";
    /// Array, one entry (index 0): [`crate::HostConfig`].
    pub const HOST_CFG: &str = "HOST_CFG";
    /// LRU hash: [`crate::nat::CtKey`] -> [`crate::nat::CtEntry`], the NAT
    /// connection tracking table (two entries per flow).
    pub const NAT_CT: &str = "NAT_CT";
    /// Per-CPU array: [`crate::nat::NatCounter`] -> count (`u64`).
    pub const NAT_STATS: &str = "NAT_STATS";
    /// Per-CPU hash: [`crate::PublishKey`] -> flows translated through that
    /// published port (`u64`).
    pub const PUBLISH_STATS: &str = "PUBLISH_STATS";
    /// Hash: [`crate::lb::SvcKey`] -> [`crate::lb::SvcSlot`], the services'
    /// frontends and backends (slot 0 the count, slots 1..=n the backends).
    pub const LB_SVC: &str = "LB_SVC";
    /// Array: service index -> round-robin cursor (`u64`), shared by every
    /// CPU and advanced atomically.
    pub const LB_RR: &str = "LB_RR";
    /// Per-CPU hash: [`crate::lb::LbStatsKey`] -> backend selections
    /// (`u64`).
    pub const LB_STATS: &str = "LB_STATS";
    /// Array: endpoint slot ([`crate::EndpointInfo::slot`]) -> 1 if the
    /// endpoint is a service's backend, so its replies may need translating
    /// back to a virtual IP; 0 otherwise.
    pub const LB_BACKENDS: &str = "LB_BACKENDS";

    /// Maps older netd versions pinned that this one replaced: removed from
    /// the pin directory on load (programs still attached from the older
    /// version keep theirs alive until they are switched over).
    /// `EP_STATS` (per-CPU hash by ifindex) became `EP_COUNTERS`,
    /// `LB_BACKEND` (hash by ifindex) became `LB_BACKENDS`: arrays indexed
    /// by the endpoint's slot, which the programs read without hashing.
    pub const OBSOLETE: [&str; 2] = ["EP_STATS", "LB_BACKEND"];
}

/// An IPv4 address as the maps store it: the four octets in network order,
/// read as a native `u32` (what `u32::from_ne_bytes` of the packet bytes
/// gives the eBPF program, and `u32::from(addr).to_be()` in user space).
/// Comparing two of them is one instruction and needs no byte swap.
pub const fn ipv4_be(octets: [u8; 4]) -> u32 {
    u32::from_ne_bytes(octets)
}

/// The MAC netd gives an IPv4 address: `02:42:` followed by the four octets,
/// as Docker does. Containers get `mac_for_ipv4(their address)`, a network's
/// bridge gets `mac_for_ipv4(gateway)`. The eBPF ARP responder derives the
/// gateway MAC with this function instead of storing it, so this is the one
/// place that fact lives.
pub const fn mac_for_ipv4(octets: [u8; 4]) -> [u8; 6] {
    [0x02, 0x42, octets[0], octets[1], octets[2], octets[3]]
}

/// An endpoint as the data path knows it: the value of both `EP_MAP` (keyed
/// by `ip`) and `EP_BY_IF` (keyed by `ifindex`), so that the daemon writes
/// the same 20 bytes twice and the programs read whichever side they have.
/// The `slot` saves the forwarding path two hash lookups a packet: the
/// endpoint's counters and backend mark are array elements.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EndpointInfo {
    /// The endpoint's address, [`ipv4_be`].
    pub ip: u32,
    /// Host-side veth ifindex (what the programs are attached to, the target
    /// of `bpf_redirect_peer`).
    pub ifindex: u32,
    /// The network's index (`netd::model::Network::index`); endpoints talk
    /// directly only when these are equal.
    pub net_index: u32,
    /// The container-side MAC (`eth0` in the container).
    pub mac: [u8; 6],
    /// Index of the endpoint's elements in the arrays sized
    /// [`limits::ENDPOINT_SLOTS`]; 0: none (not counted). Assigned by the
    /// daemon, unique among live endpoints.
    pub slot: u16,
}

/// [`NetworkInfo::flags`]: the network is `--internal` (no traffic leaves
/// it for destinations outside every netd network).
pub const NET_F_INTERNAL: u32 = 1;

/// Value of `NET_LPM`: what the programs need to know about a network.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NetworkInfo {
    /// The network's index, as in [`EndpointInfo::net_index`].
    pub net_index: u32,
    /// The gateway (the bridge's address), [`ipv4_be`]. Its MAC is
    /// [`mac_for_ipv4`] of it.
    pub gateway: u32,
    /// `NET_F_*` bits.
    pub flags: u32,
}

/// Value of `NET_BY_INDEX`: a network's `NET_LPM` value and its subnet.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct IndexedNetwork {
    /// As in `NET_LPM`; `info.net_index` 0 marks an empty element.
    pub info: NetworkInfo,
    /// The subnet's network address, [`ipv4_be`] (host bits clear).
    pub subnet: u32,
    /// The subnet mask, [`ipv4_be`]: `ip & mask == subnet` for the
    /// subnet's addresses.
    pub mask: u32,
}

/// The `EP_GEN` value after `generation`: the next number in Gray code,
/// so that exactly one bit (one byte) changes. The daemon's write of the
/// element is a plain copy that a program may read halfway; with one byte
/// changing it reads the old or the new value, never a mix that could
/// equal an older generation.
pub const fn next_generation(generation: u64) -> u64 {
    let mut n = generation;
    let mut shift = 1;
    while shift < 64 {
        n ^= n >> shift;
        shift <<= 1;
    }
    let n = n.wrapping_add(1);
    n ^ (n >> 1)
}

/// The element of the `NET_HINT` bitmap and the bit in it for the /16 that
/// holds `ip_be` ([`ipv4_be`]): the /16 `a.b.0.0` is bit `(a * 256 + b) %
/// 32` of element `(a * 256 + b) / 32`.
pub const fn net_hint_bit(ip_be: u32) -> (u32, u32) {
    let [a, b, _, _] = ip_be.to_ne_bytes();
    let slash16 = (a as u32) << 8 | b as u32;
    (slash16 / 32, 1 << (slash16 % 32))
}

/// Which way a packet travels relative to the container.
///
/// Named from the container's point of view because that is what users ask
/// about ("what did my container send?"). On the host side of the veth the
/// directions are mirrored: a packet *from* the endpoint arrives on TC
/// ingress, a packet *to* the endpoint leaves on TC egress.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Sent by the container (TC ingress of the host-side veth).
    FromEndpoint = 0,
    /// Delivered to the container (TC egress of the host-side veth).
    ToEndpoint = 1,
}

impl Direction {
    /// All directions, in index order.
    pub const ALL: [Direction; limits::DIRECTIONS as usize] =
        [Direction::FromEndpoint, Direction::ToEndpoint];

    /// Decodes a raw value read from a map; `None` for values this build does
    /// not know.
    pub const fn from_u32(value: u32) -> Option<Direction> {
        match value {
            0 => Some(Direction::FromEndpoint),
            1 => Some(Direction::ToEndpoint),
            _ => None,
        }
    }

    /// Stable, lower-case label (metrics, logs).
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::FromEndpoint => "from_endpoint",
            Direction::ToEndpoint => "to_endpoint",
        }
    }
}

/// Why the data path dropped a packet.
///
/// The numeric values are part of the pinned `DROP_STATS` layout: never
/// renumber or reuse a value, only append (up to
/// [`limits::DROP_REASON_SLOTS`]).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// A drop the program could not classify (should stay at zero).
    Unknown = 0,
    /// A header the program needs is shorter than its fixed size or carries
    /// an impossible value (wrong IP version, IHL < 5).
    Malformed = 1,
    /// Not a protocol the data path carries there: from a known endpoint,
    /// anything but IPv4 and Ethernet/IPv4 ARP (IPv6 included, see
    /// `netd_from_ep`).
    NotIp = 2,
    /// Between two endpoints that are not on a common network.
    CrossNetwork = 3,
    /// Source address (IPv4 source, ARP sender, or Ethernet source) not the
    /// one assigned to the sending endpoint.
    SpoofedSource = 4,
    /// An ARP request the data path has no answer for (not the gateway, not
    /// an endpoint of the sender's network). Nothing is flooded instead.
    ArpUnanswered = 5,
    /// From an `--internal` network to a destination outside every netd
    /// network.
    InternalNetwork = 6,
    /// The sending endpoint's network has no `NET_LPM` entry, so the program
    /// cannot tell whether the packet may leave (fail closed). Stays at zero
    /// unless the daemon wrote an endpoint without its network.
    NoNetwork = 7,
    /// Masquerade or hairpin found no free source port for a new flow
    /// (every try of the bounded search was taken).
    NatNoPort = 8,
    /// A new flow's connection tracking entries could not be inserted into
    /// `NAT_CT` (the kernel refused the element, e.g. out of memory).
    CtMapFull = 9,
    /// A packet of a translated flow the program cannot translate: an IPv4
    /// fragment other than the first (no ports to look the flow up by).
    NatFragment = 10,
    /// A new flow to a service (its virtual IP, or a port published to it)
    /// that has no backend right now: dropped rather than sent anywhere
    /// stale. Host connections refused for the same reason count here too.
    NoBackend = 11,
}

impl DropReason {
    /// All reasons, in value order.
    pub const ALL: [DropReason; 12] = [
        DropReason::Unknown,
        DropReason::Malformed,
        DropReason::NotIp,
        DropReason::CrossNetwork,
        DropReason::SpoofedSource,
        DropReason::ArpUnanswered,
        DropReason::InternalNetwork,
        DropReason::NoNetwork,
        DropReason::NatNoPort,
        DropReason::CtMapFull,
        DropReason::NatFragment,
        DropReason::NoBackend,
    ];

    /// Decodes a raw value read from a map; `None` for values this build does
    /// not know (e.g. counted by a newer program still attached).
    pub const fn from_u32(value: u32) -> Option<DropReason> {
        match value {
            0 => Some(DropReason::Unknown),
            1 => Some(DropReason::Malformed),
            2 => Some(DropReason::NotIp),
            3 => Some(DropReason::CrossNetwork),
            4 => Some(DropReason::SpoofedSource),
            5 => Some(DropReason::ArpUnanswered),
            6 => Some(DropReason::InternalNetwork),
            7 => Some(DropReason::NoNetwork),
            8 => Some(DropReason::NatNoPort),
            9 => Some(DropReason::CtMapFull),
            10 => Some(DropReason::NatFragment),
            11 => Some(DropReason::NoBackend),
            _ => None,
        }
    }

    /// Stable, lower-case label (metrics, logs).
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::Unknown => "unknown",
            DropReason::Malformed => "malformed",
            DropReason::NotIp => "not_ip",
            DropReason::CrossNetwork => "cross_network",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::ArpUnanswered => "arp_unanswered",
            DropReason::InternalNetwork => "internal_network",
            DropReason::NoNetwork => "no_network",
            DropReason::NatNoPort => "nat_no_port",
            DropReason::CtMapFull => "ct_map_full",
            DropReason::NatFragment => "nat_fragment",
            DropReason::NoBackend => "no_backend",
        }
    }
}

/// The {reason, direction} a drop is counted under.
///
/// `DROP_STATS` is a per-CPU *array* (no hashing, no insert on the packet
/// path, preallocated), so the key is flattened into an index with
/// [`DropKey::index`]: `direction * DROP_REASON_SLOTS + reason`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DropKey {
    /// A [`DropReason`] as `u32`.
    pub reason: u32,
    /// A [`Direction`] as `u32`.
    pub direction: u32,
}

impl DropKey {
    /// The key a program counts a drop under.
    pub const fn new(reason: DropReason, direction: Direction) -> DropKey {
        DropKey {
            reason: reason as u32,
            direction: direction as u32,
        }
    }

    /// Index into `DROP_STATS`. Always `< DROP_STATS_ENTRIES` for keys built
    /// with [`DropKey::new`].
    pub const fn index(self) -> u32 {
        self.direction * limits::DROP_REASON_SLOTS + self.reason
    }

    /// Inverse of [`DropKey::index`]; `None` past the end of the array.
    pub const fn from_index(index: u32) -> Option<DropKey> {
        if index >= limits::DROP_STATS_ENTRIES {
            return None;
        }
        Some(DropKey {
            reason: index % limits::DROP_REASON_SLOTS,
            direction: index / limits::DROP_REASON_SLOTS,
        })
    }
}

/// Traffic counters of one endpoint (one host-side veth), per CPU in the
/// kernel and summed by the daemon.
///
/// Bytes are `skb->len` as the TC hook sees it: the whole L2 frame including
/// the Ethernet header (no FCS), the same thing the veth's own counters count.
/// Only packets the program passed on are counted here; drops go to
/// `DROP_STATS`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Packets sent by the container.
    pub from_packets: u64,
    /// Bytes sent by the container.
    pub from_bytes: u64,
    /// Packets delivered to the container.
    pub to_packets: u64,
    /// Bytes delivered to the container.
    pub to_bytes: u64,
}

impl EndpointStats {
    /// Adds another CPU's counters (wrapping: these are monotonic counters
    /// that consumers diff, and a u64 of bytes wraps after centuries).
    pub const fn add(self, other: EndpointStats) -> EndpointStats {
        EndpointStats {
            from_packets: self.from_packets.wrapping_add(other.from_packets),
            from_bytes: self.from_bytes.wrapping_add(other.from_bytes),
            to_packets: self.to_packets.wrapping_add(other.to_packets),
            to_bytes: self.to_bytes.wrapping_add(other.to_bytes),
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: `EndpointStats` is `#[repr(C)]`, `Copy`, made only of `u64`s
    // (no padding, every bit pattern valid), as `aya::Pod` requires.
    unsafe impl aya::Pod for super::EndpointStats {}
    // SAFETY: `#[repr(C)]`, `Copy`, `u32`s and byte arrays with the padding
    // spelled out as a field, so every byte is initialised and any bit
    // pattern is valid.
    unsafe impl aya::Pod for super::EndpointInfo {}
    // SAFETY: as above, three `u32`s.
    unsafe impl aya::Pod for super::NetworkInfo {}
    // SAFETY: as above, a `NetworkInfo` then two `u32`s, 20 bytes.
    unsafe impl aya::Pod for super::IndexedNetwork {}
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn endpoint_stats_layout() {
        assert_eq!(size_of::<EndpointStats>(), 32);
        assert_eq!(align_of::<EndpointStats>(), 8);
        assert_eq!(offset_of!(EndpointStats, from_packets), 0);
        assert_eq!(offset_of!(EndpointStats, from_bytes), 8);
        assert_eq!(offset_of!(EndpointStats, to_packets), 16);
        assert_eq!(offset_of!(EndpointStats, to_bytes), 24);
    }

    #[test]
    fn endpoint_and_network_layouts() {
        assert_eq!(size_of::<EndpointInfo>(), 20);
        assert_eq!(align_of::<EndpointInfo>(), 4);
        assert_eq!(offset_of!(EndpointInfo, ip), 0);
        assert_eq!(offset_of!(EndpointInfo, ifindex), 4);
        assert_eq!(offset_of!(EndpointInfo, net_index), 8);
        assert_eq!(offset_of!(EndpointInfo, mac), 12);
        assert_eq!(offset_of!(EndpointInfo, slot), 18);
        assert_eq!(size_of::<NetworkInfo>(), 12);
        assert_eq!(offset_of!(NetworkInfo, net_index), 0);
        assert_eq!(offset_of!(NetworkInfo, gateway), 4);
        assert_eq!(offset_of!(NetworkInfo, flags), 8);
        assert_eq!(size_of::<IndexedNetwork>(), 20);
        assert_eq!(align_of::<IndexedNetwork>(), 4);
        assert_eq!(offset_of!(IndexedNetwork, info), 0);
        assert_eq!(offset_of!(IndexedNetwork, subnet), 12);
        assert_eq!(offset_of!(IndexedNetwork, mask), 16);
    }

    #[test]
    fn generations_change_one_bit_and_never_repeat() {
        let mut seen = [0u64; 1000];
        let mut current = 0;
        for slot in &mut seen {
            let next = next_generation(current);
            assert_eq!(
                (current ^ next).count_ones(),
                1,
                "{current:#x} -> {next:#x}"
            );
            current = next;
            *slot = current;
        }
        let mut sorted = seen;
        sorted.sort_unstable();
        assert!(sorted.windows(2).all(|w| w[0] != w[1]));
        assert!(!seen.contains(&0));
    }

    #[test]
    fn net_hint_bits_are_per_slash16() {
        assert_eq!(net_hint_bit(ipv4_be([0, 0, 0, 0])), (0, 1));
        assert_eq!(net_hint_bit(ipv4_be([0, 31, 255, 255])), (0, 1 << 31));
        assert_eq!(net_hint_bit(ipv4_be([0, 32, 0, 0])), (1, 1));
        assert_eq!(net_hint_bit(ipv4_be([172, 18, 5, 9])), (172 * 8, 1 << 18));
        assert_eq!(
            net_hint_bit(ipv4_be([255, 255, 255, 255])),
            (limits::NET_HINT_WORDS - 1, 1 << 31)
        );
        const {
            assert!(limits::NET_HINT_READY >= limits::NET_HINT_WORDS);
            assert!(limits::NET_HINT_READY < limits::NET_HINT_ENTRIES);
        };
    }

    #[test]
    fn addresses_and_macs() {
        // The bytes in memory are the octets in order, whatever the host's
        // endianness: that is what the packet holds.
        assert_eq!(ipv4_be([172, 18, 0, 1]).to_ne_bytes(), [172, 18, 0, 1]);
        assert_eq!(
            mac_for_ipv4([172, 17, 0, 2]),
            [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]
        );
    }

    #[test]
    fn drop_key_layout() {
        assert_eq!(size_of::<DropKey>(), 8);
        assert_eq!(offset_of!(DropKey, reason), 0);
        assert_eq!(offset_of!(DropKey, direction), 4);
        assert_eq!(size_of::<DropReason>(), 4);
        assert_eq!(size_of::<Direction>(), 4);
    }

    #[test]
    fn drop_reason_values_are_stable() {
        // These numbers are stored in pinned maps: renumbering is a format break.
        assert_eq!(DropReason::Unknown as u32, 0);
        assert_eq!(DropReason::Malformed as u32, 1);
        assert_eq!(DropReason::NotIp as u32, 2);
        assert_eq!(DropReason::CrossNetwork as u32, 3);
        assert_eq!(DropReason::SpoofedSource as u32, 4);
        assert_eq!(DropReason::ArpUnanswered as u32, 5);
        assert_eq!(DropReason::InternalNetwork as u32, 6);
        assert_eq!(DropReason::NoNetwork as u32, 7);
        assert_eq!(DropReason::NatNoPort as u32, 8);
        assert_eq!(DropReason::CtMapFull as u32, 9);
        assert_eq!(DropReason::NatFragment as u32, 10);
        assert_eq!(DropReason::NoBackend as u32, 11);
        assert_eq!(Direction::FromEndpoint as u32, 0);
        assert_eq!(Direction::ToEndpoint as u32, 1);
    }

    #[test]
    fn drop_reasons_fit_their_slots_and_round_trip() {
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as u32, i as u32, "ALL must be in value order");
            assert!((*reason as u32) < limits::DROP_REASON_SLOTS);
            assert_eq!(DropReason::from_u32(*reason as u32), Some(*reason));
        }
        assert_eq!(DropReason::from_u32(DropReason::ALL.len() as u32), None);
        for direction in Direction::ALL {
            assert_eq!(Direction::from_u32(direction as u32), Some(direction));
        }
        assert_eq!(Direction::from_u32(limits::DIRECTIONS), None);
    }

    #[test]
    fn drop_key_index_round_trips_and_stays_in_bounds() {
        for direction in Direction::ALL {
            for reason in DropReason::ALL {
                let key = DropKey::new(reason, direction);
                assert!(key.index() < limits::DROP_STATS_ENTRIES);
                assert_eq!(DropKey::from_index(key.index()), Some(key));
            }
        }
        assert_eq!(DropKey::from_index(limits::DROP_STATS_ENTRIES), None);
        // Distinct keys never share a slot.
        assert_ne!(
            DropKey::new(DropReason::Malformed, Direction::FromEndpoint).index(),
            DropKey::new(DropReason::Malformed, Direction::ToEndpoint).index()
        );
    }

    #[test]
    fn map_names_fit_the_kernel_limit() {
        for name in [
            map_names::EP_COUNTERS,
            map_names::DROP_STATS,
            map_names::EP_MAP,
            map_names::EP_BY_IF,
            map_names::NET_LPM,
            map_names::NET_BY_INDEX,
            map_names::NET_HINT,
            map_names::EP_GEN,
        ] {
            assert!(
                name.len() <= 15,
                "{name} is longer than BPF_OBJ_NAME_LEN - 1"
            );
        }
    }

    #[test]
    fn stats_add_sums_fields() {
        let a = EndpointStats {
            from_packets: 1,
            from_bytes: 2,
            to_packets: 3,
            to_bytes: 4,
        };
        assert_eq!(
            a.add(a),
            EndpointStats {
                from_packets: 2,
                from_bytes: 4,
                to_packets: 6,
                to_bytes: 8
            }
        );
    }
}

/// An IP protocol netd translates, with its IANA number as the value (what
/// [`PublishKey::proto`] and the packet's IPv4 protocol field hold).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP, 6.
    Tcp = 6,
    /// UDP, 17.
    Udp = 17,
}

impl Proto {
    /// The IANA protocol number.
    pub const fn number(self) -> u8 {
        self as u8
    }

    /// Decodes an IPv4 protocol number; `None` for anything but TCP/UDP.
    pub const fn from_u8(value: u8) -> Option<Proto> {
        match value {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    /// Stable, lower-case label (`tcp`, `udp`), as in Docker's `80/tcp`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// `PUBLISH` map key: a published host address/port. `addr` 0 = every host
/// address (`-p 8080:80`); 127.0.0.1 = loopback only
/// (`-p 127.0.0.1:8080:80`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PublishKey {
    /// Host IPv4 address, network byte order ([`ipv4_be`]); 0 = any.
    pub addr: u32,
    /// Host port, network byte order (`port.to_be()`).
    pub port: u16,
    /// IP protocol number: 6 TCP, 17 UDP ([`Proto`]).
    pub proto: u8,
    /// Zero.
    pub _pad: u8,
}

/// [`PublishTarget::flags`]: the port is published to a service, not to
/// one container. `addr` is then the service's virtual IP (its `LB_SVC`
/// frontend), `ifindex` is 0 and `net_index` holds the service index; each
/// new flow goes to a backend chosen round-robin (see [`lb`]).
pub const PUBLISH_F_SERVICE: u16 = 1;

/// `PUBLISH` map value: where a published port leads.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PublishTarget {
    /// Container IPv4 address, network byte order ([`ipv4_be`]); with
    /// [`PUBLISH_F_SERVICE`] the service's virtual IP.
    pub addr: u32,
    /// Container port, network byte order.
    pub port: u16,
    /// `PUBLISH_F_*` bits (0 for a container target, which is what a
    /// `PUBLISH` entry of a netd without services holds here).
    pub flags: u16,
    /// The container's host-side veth ifindex; 0 for a service.
    pub ifindex: u32,
    /// The container's network index ([`EndpointInfo::net_index`]); for a
    /// service, the service index.
    pub net_index: u32,
}

impl PublishTarget {
    /// Whether the port leads to a service (balanced) rather than one
    /// container.
    pub const fn is_service(&self) -> bool {
        self.flags & PUBLISH_F_SERVICE != 0
    }
}

/// `HOST_CFG` array map value, one entry (index 0): facts about the host.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HostConfig {
    /// The uplink's ifindex (where masqueraded traffic leaves).
    pub uplink_ifindex: u32,
    /// The uplink's IPv4 address, network byte order; 0 = no uplink (no
    /// masquerade, no DNAT from outside).
    pub uplink_addr: u32,
    /// The daemon's (host) network namespace cookie; the socket hooks act
    /// only there.
    pub netns_cookie: u64,
}

#[cfg(feature = "user")]
mod pod_publish {
    // SAFETY: `#[repr(C)]`, `Copy`, integers only with the padding spelled
    // out as fields (8 bytes, no implicit padding), any bit pattern valid.
    unsafe impl aya::Pod for super::PublishKey {}
    // SAFETY: as above, 16 bytes of integers, no implicit padding.
    unsafe impl aya::Pod for super::PublishTarget {}
    // SAFETY: as above, two `u32`s then a `u64` at offset 8, 16 bytes.
    unsafe impl aya::Pod for super::HostConfig {}
}

#[cfg(test)]
mod publish_tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::*;

    #[test]
    fn publish_layouts() {
        assert_eq!(size_of::<PublishKey>(), 8);
        assert_eq!(offset_of!(PublishKey, addr), 0);
        assert_eq!(offset_of!(PublishKey, port), 4);
        assert_eq!(offset_of!(PublishKey, proto), 6);
        assert_eq!(offset_of!(PublishKey, _pad), 7);
        assert_eq!(size_of::<PublishTarget>(), 16);
        assert_eq!(offset_of!(PublishTarget, addr), 0);
        assert_eq!(offset_of!(PublishTarget, port), 4);
        assert_eq!(offset_of!(PublishTarget, flags), 6);
        assert_eq!(offset_of!(PublishTarget, ifindex), 8);
        assert_eq!(offset_of!(PublishTarget, net_index), 12);
        assert_eq!(size_of::<HostConfig>(), 16);
        assert_eq!(align_of::<HostConfig>(), 8);
        assert_eq!(offset_of!(HostConfig, uplink_ifindex), 0);
        assert_eq!(offset_of!(HostConfig, uplink_addr), 4);
        assert_eq!(offset_of!(HostConfig, netns_cookie), 8);
    }

    #[test]
    fn proto_values_are_iana_numbers() {
        assert_eq!(Proto::Tcp as u8, 6);
        assert_eq!(Proto::Udp as u8, 17);
        assert_eq!(Proto::from_u8(6), Some(Proto::Tcp));
        assert_eq!(Proto::from_u8(17), Some(Proto::Udp));
        assert_eq!(Proto::from_u8(1), None);
        for name in [map_names::PUBLISH, map_names::HOST_CFG] {
            assert!(name.len() <= 15);
        }
    }
}

/// Connection tracking and address translation (masquerade, published
/// ports, hairpin): the `NAT_CT` map's layout and the rules both sides
/// apply to it (timeouts), so that the daemon's view (`nat_stats`) agrees
/// with the programs'.
///
/// # Entries
/// Every translated flow has two entries, inserted together, each keyed by
/// the tuple of a packet *as it arrives* at the hook that translates it and
/// holding the tuple to rewrite it to. The other entry's key is always the
/// reverse of the translated tuple, so either entry finds its partner:
/// ```text
/// masquerade  C:cp -> R:rp  becomes  U:up -> R:rp   key {C,R,cp,rp}  (netd_from_ep)
///             R:rp -> U:up  becomes  R:rp -> C:cp   key {R,U,rp,up}  (netd_uplink_in)
/// published   R:rp -> U:hp  becomes  R:rp -> T:tp   key {R,U,rp,hp}  (netd_uplink_in)
///             T:tp -> R:rp  becomes  U:hp -> R:rp   key {T,R,tp,rp}  (netd_from_ep)
/// hairpin     A:ap -> U:hp  becomes  G:xp -> T:tp   key {A,U,ap,hp}  (netd_from_ep of A)
///             T:tp -> G:xp  becomes  U:hp -> A:ap   key {T,G,tp,xp}  (netd_from_ep of T)
/// service     C:cp -> V:vp  becomes  C:cp -> B:vp   key {C,V,cp,vp}  (netd_from_ep of C)
///             B:vp -> C:cp  becomes  V:vp -> C:cp   key {B,C,vp,cp}  (netd_from_ep of B)
/// self        C:cp -> V:vp  becomes  V:xp -> C:vp   key {C,V,cp,vp}  (netd_from_ep of C)
///             C:vp -> V:xp  becomes  V:vp -> C:cp   key {C,V,vp,xp}  (netd_from_ep of C)
/// ```
/// (U uplink address, G the target network's gateway, V a service's
/// virtual IP, B the backend the load balancer chose; "self" is a client
/// that the load balancer chose as its own backend: its source becomes the
/// VIP, since a packet from its own address would be a martian to it. A
/// port published to a service is "published" or "hairpin" with T = B.)
/// ICMP echo uses the identifier as the "port": `sport` = id for requests, `dport` = id for
/// replies, the other one 0, so that reversing a tuple works the same way.
pub mod nat {
    /// `IPPROTO_ICMP`.
    pub const PROTO_ICMP: u8 = 1;
    /// `IPPROTO_TCP`.
    pub const PROTO_TCP: u8 = 6;
    /// `IPPROTO_UDP`.
    pub const PROTO_UDP: u8 = 17;

    /// Masquerade/hairpin source ports are searched in
    /// `PORT_MIN..=PORT_MAX` (Linux's default ephemeral range) when the
    /// original one is taken.
    pub const PORT_MIN: u16 = 32768;
    /// See [`PORT_MIN`].
    pub const PORT_MAX: u16 = 60999;
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
        /// Where the translated packet goes, see [`CT_F_TO_UPLINK`].
        pub ifindex: u32,
        /// When delivering to an endpoint: its network's gateway, whose MAC
        /// ([`crate::mac_for_ipv4`]) becomes the Ethernet source.
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
    }

    impl NatCounter {
        /// All counters, in value order.
        pub const ALL: [NatCounter; 8] = [
            NatCounter::SnatFlows,
            NatCounter::DnatFlows,
            NatCounter::HairpinFlows,
            NatCounter::ClosedFlows,
            NatCounter::ExpiredFlows,
            NatCounter::PortCollisions,
            NatCounter::TranslatedPackets,
            NatCounter::LbFlows,
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
            }
        }
    }
}

#[cfg(feature = "user")]
mod pod_nat {
    // SAFETY: `#[repr(C)]`, `Copy`, integers with the padding spelled out
    // (16 bytes, no implicit padding), any bit pattern valid.
    unsafe impl aya::Pod for super::nat::CtKey {}
    // SAFETY: as above: a `u64` then `u32`/`u16` fields filling 32 bytes
    // with no implicit padding.
    unsafe impl aya::Pod for super::nat::CtEntry {}
}

#[cfg(test)]
mod nat_tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::nat::*;
    use super::*;

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
        const { assert!(CT_F_LB < 1 << CT_SLOT_SHIFT) };
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

/// `skb->ip_summed`, the checksum state of a packet, which the `__sk_buff`
/// context does not expose but which decides how a translated packet's L4
/// checksum must change (see `netd-ebpf`'s `csum`).
///
/// The programs read it through the `bpf_cast_to_kern_ctx` kfunc (since
/// Linux 6.3; the verifier turns the call into a register move) and one byte
/// load from the `struct sk_buff` it returns. aya 0.14 cannot relocate
/// kfunc calls, and the byte's offset depends on the kernel's build, so the
/// object carries a placeholder that the daemon rewrites before loading
/// (`netd::dataplane::kfunc`), four instructions as built and as bound:
///
/// ```text
/// r0 = MARKER            ->  call bpf_cast_to_kern_ctx   (r1: the context)
/// r0 = r0                ->  r0 = *(u8 *)(r0 + byte)     (byte of ip_summed)
/// r0 >>= 0               ->  r0 >>= shift                (its first bit)
/// r0 &= 3                    (kept)
/// ```
///
/// Left as built (no kernel BTF, an older kernel), the sequence yields
/// [`CHECKSUM_COMPLETE`](ip_summed::CHECKSUM_COMPLETE), the one state in
/// which the programs always update checksums through the kernel's
/// helpers: correct everywhere, only slower.
pub mod ip_summed {
    /// The packet's checksum was neither computed nor verified.
    pub const CHECKSUM_NONE: u8 = 0;
    /// A device (or the stack) verified the checksums.
    pub const CHECKSUM_UNNECESSARY: u8 = 1;
    /// `skb->csum` holds the sum of the packet from the network header on.
    pub const CHECKSUM_COMPLETE: u8 = 2;
    /// The L4 checksum field holds only the pseudo header's sum; the
    /// device (or the stack) completes it on transmit.
    pub const CHECKSUM_PARTIAL: u8 = 3;
    /// Immediate of the placeholder's first instruction: unique in the
    /// object, and its low two bits are [`CHECKSUM_COMPLETE`].
    pub const MARKER: i32 = 0x4e44_4b02;
    const _: () = assert!(MARKER & 3 == CHECKSUM_COMPLETE as i32);
}

/// Services: a virtual IP (VIP) balanced round-robin over backends, in the
/// kernel. The layout of `LB_SVC`, `LB_RR`, `LB_STATS` and `LB_BACKENDS`.
///
/// # `LB_SVC`: frontend and backend slots in one hash
/// A service is a run of entries with the same `{vip, port, proto}` and
/// `slot` = 0..=n:
/// ```text
/// {vip, 0, 0, slot 0}  ->  {count: n, svc_index, ...}        the frontend
/// {vip, 0, 0, slot i}  ->  {backend: B_i, ifindex: I_i, ...}  1 <= i <= n
/// ```
/// `port`/`proto` 0 mean every port and protocol (the only frontends netd
/// writes today; the key has room for per-port frontends later). A new
/// flow costs the slot 0 lookup, one atomic add on the service's `LB_RR`
/// cursor `c`, and the lookup of slot `c % n + 1`: no loop over services or
/// backends, whatever their number.
///
/// # Write order (the programs read whatever is there)
/// The daemon writes the backends' bookkeeping (`LB_STATS`, `LB_BACKENDS`)
/// first, then slots 1..=n, then slot 0 with the count; when shrinking,
/// slots beyond the new count are deleted after the count went down.
/// Removing a service deletes slot 0 first. So every slot a program can
/// reach through the count it read is a complete backend; the one race left
/// (the count read just before a shrink, the slot deleted just after) is a
/// missed lookup, which the program retries once with the count read again.
/// A count of 0 is a service without backends: its new flows are dropped
/// (`DropReason::NoBackend`).
///
/// # Round robin
/// `LB_RR[svc_index]` is a `u64` shared by every CPU (an array, not per
/// CPU) advanced with an atomic fetch-and-add, so N*k new flows in sequence
/// hit each of N backends exactly k times, also after the backend list
/// changed (any N*k consecutive cursor values cover every residue mod N k
/// times). The chosen backend is recorded in `NAT_CT` (flag
/// [`crate::nat::CT_F_LB`]), so a flow stays on it.
pub mod lb {
    /// [`SvcKey::slot`] of the frontend entry (the count).
    pub const SLOT_FRONTEND: u32 = 0;

    /// `LB_SVC` key. `vip` and `port` in network byte order.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct SvcKey {
        /// The service's virtual IP, [`crate::ipv4_be`].
        pub vip: u32,
        /// Frontend port, network byte order; 0 = every port.
        pub port: u16,
        /// IP protocol number; 0 = every protocol (TCP, UDP, ICMP echo).
        pub proto: u8,
        /// Zero.
        pub _pad: u8,
        /// 0: the frontend (count); 1..=count: the backends.
        pub slot: u32,
    }

    impl SvcKey {
        /// The key of slot `slot` of the every-port frontend of `vip`.
        pub const fn new(vip: u32, slot: u32) -> SvcKey {
            SvcKey {
                vip,
                port: 0,
                proto: 0,
                _pad: 0,
                slot,
            }
        }
    }

    /// `LB_SVC` value; which fields mean something depends on the slot.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
    pub struct SvcSlot {
        /// Slots >= 1: the backend's address ([`crate::ipv4_be`]); slot 0: 0.
        pub backend: u32,
        /// Slots >= 1: the backend's host-side veth ifindex (where
        /// `bpf_redirect_peer` delivers); slot 0: 0.
        pub ifindex: u32,
        /// Slot 0: the number of backends (slots 1..=count); others: 0.
        pub count: u32,
        /// The service index (`LB_RR` index, `LB_STATS` key), in every slot.
        pub svc_index: u32,
        /// Slots >= 1: the backend's port, network byte order; 0 = the
        /// port the flow was sent to (the only value written today).
        pub port: u16,
        /// Zero.
        pub _pad: u16,
        /// Reserved, 0.
        pub flags: u32,
    }

    /// `LB_STATS` key: one backend of one service.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct LbStatsKey {
        /// The service index.
        pub svc_index: u32,
        /// The backend's address, [`crate::ipv4_be`].
        pub backend: u32,
    }
}

#[cfg(feature = "user")]
mod pod_lb {
    // SAFETY: `#[repr(C)]`, `Copy`, integers only with the padding spelled
    // out (12 bytes, no implicit padding), any bit pattern valid.
    unsafe impl aya::Pod for super::lb::SvcKey {}
    // SAFETY: as above, 24 bytes of integers, no implicit padding.
    unsafe impl aya::Pod for super::lb::SvcSlot {}
    // SAFETY: as above, two `u32`s.
    unsafe impl aya::Pod for super::lb::LbStatsKey {}
}

#[cfg(test)]
mod lb_tests {
    use core::mem::{align_of, offset_of, size_of};

    use super::lb::*;
    use super::*;

    #[test]
    fn lb_layouts() {
        assert_eq!(size_of::<SvcKey>(), 12);
        assert_eq!(align_of::<SvcKey>(), 4);
        assert_eq!(offset_of!(SvcKey, vip), 0);
        assert_eq!(offset_of!(SvcKey, port), 4);
        assert_eq!(offset_of!(SvcKey, proto), 6);
        assert_eq!(offset_of!(SvcKey, _pad), 7);
        assert_eq!(offset_of!(SvcKey, slot), 8);
        assert_eq!(size_of::<SvcSlot>(), 24);
        assert_eq!(offset_of!(SvcSlot, backend), 0);
        assert_eq!(offset_of!(SvcSlot, ifindex), 4);
        assert_eq!(offset_of!(SvcSlot, count), 8);
        assert_eq!(offset_of!(SvcSlot, svc_index), 12);
        assert_eq!(offset_of!(SvcSlot, port), 16);
        assert_eq!(offset_of!(SvcSlot, _pad), 18);
        assert_eq!(offset_of!(SvcSlot, flags), 20);
        assert_eq!(size_of::<LbStatsKey>(), 8);
        assert_eq!(offset_of!(LbStatsKey, svc_index), 0);
        assert_eq!(offset_of!(LbStatsKey, backend), 4);
    }

    #[test]
    fn lb_names_and_sizes_fit() {
        for name in [
            map_names::LB_SVC,
            map_names::LB_RR,
            map_names::LB_STATS,
            map_names::LB_BACKENDS,
        ] {
            assert!(name.len() <= 15);
        }
        const {
            assert!(limits::MAX_SERVICES * 2 <= limits::LB_SVC_ENTRIES);
            assert!(limits::MAX_BACKENDS < limits::LB_SVC_ENTRIES);
        };
        let key = SvcKey::new(ipv4_be([10, 0, 0, 9]), 3);
        assert_eq!((key.port, key.proto, key._pad, key.slot), (0, 0, 0, 3));
        assert!(
            PublishTarget {
                flags: PUBLISH_F_SERVICE,
                ..PublishTarget::default()
            }
            .is_service()
        );
        assert!(!PublishTarget::default().is_service());
    }
}
