//! What the programs steer by: endpoints (`EP_MAP`, `EP_BY_IF`), networks
//! (`NET_LPM`, `NET_BY_INDEX`), the `NET_HINT` bitmap over them and the
//! daemon's generation (`EP_GEN`) that tells the programs' copies of them
//! apart.

/// An endpoint as the data path knows it: the value of both `EP_MAP` (keyed
/// by `ip`) and `EP_BY_IF` (keyed by `ifindex`), so that the daemon writes
/// the same 20 bytes twice and the programs read whichever side they have.
/// The `slot` saves the forwarding path two hash lookups a packet: the
/// endpoint's counters and backend mark are array elements.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct EndpointInfo {
    /// The endpoint's address, [`crate::ipv4_be`].
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
    /// [`crate::limits::ENDPOINT_SLOTS`]; 0: none (not counted). Assigned by the
    /// daemon, unique among live endpoints.
    pub slot: u16,
}

/// [`NetworkInfo::flags`]: the network is `--internal` (no traffic leaves
/// it for destinations outside every netd network).
pub const NET_F_INTERNAL: u32 = 1;

/// [`NetworkInfo::flags`]: the network spans hosts (an overlay, see
/// [`crate::overlay`]): a destination in its subnet that is no local
/// endpoint may be one on another host (`OVL_REMOTE`).
pub const NET_F_OVERLAY: u32 = 2;

/// [`NetworkInfo::flags`]: endpoints of the network do not reach each
/// other (Docker's `com.docker.network.bridge.enable_icc=false`); they
/// still reach their gateway, the outside and services.
pub const NET_F_NO_ICC: u32 = 4;

/// [`NetworkInfo::flags`]: what goes outside every netd network is not
/// masqueraded (Docker's `com.docker.network.bridge.enable_ip_masquerade=
/// false`): it is passed to the host with the container's address, for
/// the host's routing to forward.
pub const NET_F_NO_MASQUERADE: u32 = 8;

/// Value of `NET_LPM`: what the programs need to know about a network.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NetworkInfo {
    /// The network's index, as in [`EndpointInfo::net_index`].
    pub net_index: u32,
    /// The gateway (the bridge's address), [`crate::ipv4_be`]. Its MAC is
    /// [`crate::mac_for_ipv4`] of it.
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
    /// The subnet's network address, [`crate::ipv4_be`] (host bits clear).
    pub subnet: u32,
    /// The subnet mask, [`crate::ipv4_be`]: `ip & mask == subnet` for the
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
/// holds `ip_be` ([`crate::ipv4_be`]): the /16 `a.b.0.0` is bit `(a * 256 + b) %
/// 32` of element `(a * 256 + b) / 32`.
pub const fn net_hint_bit(ip_be: u32) -> (u32, u32) {
    let [a, b, _, _] = ip_be.to_ne_bytes();
    let slash16 = (a as u32) << 8 | b as u32;
    (slash16 / 32, 1 << (slash16 % 32))
}

#[cfg(feature = "user")]
mod pod {
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
    use crate::{ipv4_be, limits};

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
}
