//! Map names as they appear in the object file and as pin file names.
//!
//! The kernel truncates map names to 15 characters (`BPF_OBJ_NAME_LEN - 1`);
//! keep them short and prefixed with their feature (`EP_` endpoints, `DROP_`
//! drop accounting, later `LB_`, `NAT_`, ...).

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
/// Hash: a macvlan's ifindex ([`crate::macvlan::ifindex`]) ->
/// [`crate::EndpointInfo`]: who may send on that macvlan (the
/// anti-spoofing reference of `netd_mv_out`).
pub const MV_EP: &str = "MV_EP";
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
/// Hash: host address ([`crate::ipv4_be`]) -> `u32` (unused, 0): the
/// host's addresses besides 127.0.0.0/8 and `HOST_CFG.uplink_addr`, which
/// the socket hooks and hairpin treat as "this host" for published ports.
pub const HOST_ADDRS: &str = "HOST_ADDRS";
/// LRU hash: [`crate::sock::UdpRevKey`] -> [`crate::sock::UdpRevValue`],
/// the destination a UDP socket's application used, which
/// `netd_recvmsg4` shows as the source of the replies.
pub const SOCK_UDP_REV: &str = "SOCK_UDP_REV";
/// Hash: endpoint address on another host ([`crate::ipv4_be`]) ->
/// [`crate::overlay::RemoteEndpoint`]: where to tunnel a packet for it,
/// which host may send from it, and whether it backs a service here.
pub const OVL_REMOTE: &str = "OVL_REMOTE";
/// Hash: underlay address of a cluster host ([`crate::ipv4_be`]) -> `u32`
/// (unused, 0): the only outer sources tunnelled packets are accepted
/// from.
pub const OVL_HOSTS: &str = "OVL_HOSTS";
/// Hash: VNI (`u32`) -> the index of the local overlay network with that
/// VNI (`u32`, as [`crate::EndpointInfo::net_index`]).
pub const OVL_VNI: &str = "OVL_VNI";
/// Array, one entry (index 0): [`crate::overlay::OverlayConfig`].
pub const OVL_CFG: &str = "OVL_CFG";
/// Per-CPU array: [`crate::overlay::OverlayCounter`] -> count (`u64`).
pub const OVL_STATS: &str = "OVL_STATS";

/// Maps older netd versions pinned that this one replaced: removed from
/// the pin directory on load (programs still attached from the older
/// version keep theirs alive until they are switched over).
/// `EP_STATS` (per-CPU hash by ifindex) became `EP_COUNTERS`,
/// `LB_BACKEND` (hash by ifindex) became `LB_BACKENDS`: arrays indexed
/// by the endpoint's slot, which the programs read without hashing.
pub const OBSOLETE: [&str; 2] = ["EP_STATS", "LB_BACKEND"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_names_fit_the_kernel_limit() {
        for name in [
            EP_COUNTERS,
            DROP_STATS,
            EP_MAP,
            EP_BY_IF,
            NET_LPM,
            NET_BY_INDEX,
            NET_HINT,
            EP_GEN,
            OVL_REMOTE,
            OVL_HOSTS,
            OVL_VNI,
            OVL_CFG,
            OVL_STATS,
        ] {
            assert!(
                name.len() <= 15,
                "{name} is longer than BPF_OBJ_NAME_LEN - 1"
            );
        }
    }
}
