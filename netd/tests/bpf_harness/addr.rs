//! Addresses as the tests write them: parsed from literals, and the MACs
//! netd derives from IPv4 addresses.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

pub fn net(s: &str) -> Ipv4Net {
    s.parse().expect("subnet")
}

/// The MAC the engine gives the interface with address `ip` (and the data
/// path answers ARP with).
pub fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    netd_common::mac_for_ipv4(ip.octets())
}

/// `mac` as `ip` and `bridge` read and print it (`02:42:0a:...`).
pub fn mac_str(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
