//! Map sizes, in one place, because the kernel object and the daemon must
//! agree on them and a pinned map keeps the size it was created with.
//!
//! Changing a value here makes maps pinned by an older netd incompatible; the
//! daemon detects that on load (see `netd::dataplane`) instead of silently
//! reusing a map of the wrong shape.

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

/// Entries of `HOST_ADDRS`: the host addresses the socket hooks know
/// besides loopback and the uplink's.
pub const MAX_HOST_ADDRS: u32 = 1024;

/// Entries of the `SOCK_UDP_REV` LRU: UDP {socket, published port} pairs
/// in use at once.
pub const UDP_REV_ENTRIES: u32 = 65536;

/// Most endpoints on other hosts (`OVL_REMOTE` entries) one host knows:
/// those of every overlay network it carries, cluster-wide.
pub const MAX_REMOTE_ENDPOINTS: u32 = 65536;

/// Most hosts (`OVL_HOSTS` entries) a cluster can have.
pub const MAX_OVERLAY_HOSTS: u32 = 4096;

/// Entries of `OVL_VNI`: one per overlay network, and those are networks.
pub const MAX_OVERLAY_NETWORKS: u32 = MAX_NETWORKS;

/// Slots of the `OVL_STATS` per-CPU array (more than there are
/// [`crate::overlay::OverlayCounter`]s, so adding one does not resize it).
pub const OVL_STATS_SLOTS: u32 = 8;
