//! Addresses as the maps hold them, and the MACs netd derives from them.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
