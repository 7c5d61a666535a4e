//! What the programs count: traffic per endpoint (`EP_COUNTERS`) and drops
//! per reason and direction (`DROP_STATS`).

use crate::limits;

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
    /// stale. Host connections refused for the same reason count here too,
    /// and packets of a flow to a backend on another host while this host
    /// has no tunnel (it left the cluster).
    NoBackend = 11,
    /// Arrived through the overlay tunnel from an outer source that is not
    /// a host of the cluster (`OVL_HOSTS`), or without tunnel metadata: a
    /// machine outside the cluster cannot inject traffic.
    UnknownHost = 12,
    /// Arrived through the overlay tunnel with a VNI that is none of this
    /// host's overlay networks.
    VniUnknown = 13,
    /// Arrived through the overlay tunnel for a local endpoint of another
    /// network than the VNI's: isolation between networks across hosts.
    VniMismatch = 14,
    /// Arrived through the overlay tunnel for an address no local endpoint
    /// holds (the sending host's view is stale, e.g. the container just
    /// left, or the packet was aimed at the gateway or beyond).
    NoEndpoint = 15,
    /// From an interface the data path has no endpoint for (a veth whose
    /// `EP_BY_IF` entry or a macvlan whose `MV_EP` entry is gone): fail
    /// closed.
    UnknownSender = 16,
    /// A packet that needs a flow and has none, and cannot open one: a TCP
    /// segment other than a SYN to a service's VIP, or one arriving through
    /// the overlay tunnel from a client outside the cluster's networks
    /// (another host's routing mesh); only a connection's opening packet
    /// selects a backend.
    NoFlow = 17,
    /// Between two endpoints of a network created with
    /// `com.docker.network.bridge.enable_icc=false`.
    IccDisabled = 18,
}

impl DropReason {
    /// All reasons, in value order.
    pub const ALL: [DropReason; 19] = [
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
        DropReason::UnknownHost,
        DropReason::VniUnknown,
        DropReason::VniMismatch,
        DropReason::NoEndpoint,
        DropReason::UnknownSender,
        DropReason::NoFlow,
        DropReason::IccDisabled,
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
            12 => Some(DropReason::UnknownHost),
            13 => Some(DropReason::VniUnknown),
            14 => Some(DropReason::VniMismatch),
            15 => Some(DropReason::NoEndpoint),
            16 => Some(DropReason::UnknownSender),
            17 => Some(DropReason::NoFlow),
            18 => Some(DropReason::IccDisabled),
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
            DropReason::UnknownHost => "unknown_host",
            DropReason::VniUnknown => "vni_unknown",
            DropReason::VniMismatch => "vni_mismatch",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::UnknownSender => "unknown_sender",
            DropReason::NoFlow => "no_flow",
            DropReason::IccDisabled => "icc_disabled",
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
        assert_eq!(DropReason::UnknownHost as u32, 12);
        assert_eq!(DropReason::VniUnknown as u32, 13);
        assert_eq!(DropReason::VniMismatch as u32, 14);
        assert_eq!(DropReason::NoEndpoint as u32, 15);
        assert_eq!(DropReason::UnknownSender as u32, 16);
        assert_eq!(DropReason::NoFlow as u32, 17);
        assert_eq!(DropReason::IccDisabled as u32, 18);
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
