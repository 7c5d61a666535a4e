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
    /// `EP_STATS`, `EP_MAP` and `EP_BY_IF`.
    pub const MAX_ENDPOINTS: u32 = 4096;

    /// Most networks (subnets in `NET_LPM`) one host can carry.
    pub const MAX_NETWORKS: u32 = 1024;

    /// Slots reserved per direction in the drop counter array. Larger than
    /// the number of [`crate::DropReason`]s on purpose: adding a reason must
    /// not resize the pinned `DROP_STATS` map.
    pub const DROP_REASON_SLOTS: u32 = 64;

    /// Number of [`crate::Direction`]s.
    pub const DIRECTIONS: u32 = 2;

    /// Entries of the `DROP_STATS` per-CPU array: one counter per
    /// {direction, reason slot}, see [`crate::DropKey::index`].
    pub const DROP_STATS_ENTRIES: u32 = DROP_REASON_SLOTS * DIRECTIONS;
}

/// Map names as they appear in the object file and as pin file names.
///
/// The kernel truncates map names to 15 characters (`BPF_OBJ_NAME_LEN - 1`);
/// keep them short and prefixed with their feature (`EP_` endpoints, `DROP_`
/// drop accounting, later `LB_`, `NAT_`, ...).
pub mod map_names {
    /// Per-CPU hash: host-side ifindex (`u32`) -> [`crate::EndpointStats`].
    pub const EP_STATS: &str = "EP_STATS";
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
    /// Zero.
    pub _pad: [u8; 2],
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
}

impl DropReason {
    /// All reasons, in value order.
    pub const ALL: [DropReason; 8] = [
        DropReason::Unknown,
        DropReason::Malformed,
        DropReason::NotIp,
        DropReason::CrossNetwork,
        DropReason::SpoofedSource,
        DropReason::ArpUnanswered,
        DropReason::InternalNetwork,
        DropReason::NoNetwork,
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
        assert_eq!(offset_of!(EndpointInfo, _pad), 18);
        assert_eq!(size_of::<NetworkInfo>(), 12);
        assert_eq!(offset_of!(NetworkInfo, net_index), 0);
        assert_eq!(offset_of!(NetworkInfo, gateway), 4);
        assert_eq!(offset_of!(NetworkInfo, flags), 8);
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
            map_names::EP_STATS,
            map_names::DROP_STATS,
            map_names::EP_MAP,
            map_names::EP_BY_IF,
            map_names::NET_LPM,
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
