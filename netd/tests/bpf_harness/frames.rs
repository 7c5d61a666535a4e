//! Crafted frames for BPF_PROG_TEST_RUN: Ethernet + IPv4 around TCP, UDP
//! and ICMP echo with valid checksums, ARP, and the ones' complement sums
//! the checksums (and [`super::checks`]) are made of.

use std::net::Ipv4Addr;

pub use netd_common::nat::{PROTO_ICMP as ICMP, PROTO_TCP as TCP, PROTO_UDP as UDP};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_LLDP: u16 = 0x88cc;

/// The 16-bit ones' complement sum of `data` (odd length padded with 0),
/// folded, not inverted.
pub fn ones_sum(data: &[u8], mut sum: u32) -> u16 {
    for w in data.chunks(2) {
        let word = if w.len() == 2 {
            u16::from_be_bytes([w[0], w[1]])
        } else {
            u16::from_be_bytes([w[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The sum of the TCP/UDP pseudo-header for an L4 segment of `len` bytes.
pub fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    u32::from(ones_sum(&p, 0))
}

/// The L4 bytes of a TCP segment (4 bytes of data) with a valid checksum.
pub fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut s = Vec::with_capacity(24);
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&0x01020304u32.to_be_bytes()); // seq
    s.extend_from_slice(&0x0a0b0c0du32.to_be_bytes()); // ack
    s.extend_from_slice(&[5 << 4, flags]);
    s.extend_from_slice(&64240u16.to_be_bytes()); // window
    s.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    s.extend_from_slice(b"data"); // payload
    let sum = !ones_sum(&s, pseudo_sum(src, dst, TCP, s.len()));
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

/// A UDP datagram with 8 bytes of payload, with a valid checksum or none
/// (0).
pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, checksum: bool) -> Vec<u8> {
    udp_carrying(src, dst, sport, dport, b"payload!", checksum)
}

/// A UDP datagram carrying `payload`, with a valid checksum or none (0).
pub fn udp_carrying(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    checksum: bool,
) -> Vec<u8> {
    let mut s = Vec::with_capacity(8 + payload.len());
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    s.extend_from_slice(&[0, 0]);
    s.extend_from_slice(payload);
    if checksum {
        // A computed 0 is sent as 0xffff: 0 means "no checksum".
        let mut sum = !ones_sum(&s, pseudo_sum(src, dst, UDP, s.len()));
        if sum == 0 {
            sum = 0xffff;
        }
        s[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    s
}

/// An ICMP echo request (or reply) with a valid checksum.
pub fn icmp_echo(request: bool, id: u16, seq: u16) -> Vec<u8> {
    let mut s = vec![if request { 8 } else { 0 }, 0, 0, 0];
    s.extend_from_slice(&id.to_be_bytes());
    s.extend_from_slice(&seq.to_be_bytes());
    s.extend_from_slice(b"0123456789abcdef");
    let sum = !ones_sum(&s, 0);
    s[2..4].copy_from_slice(&sum.to_be_bytes());
    s
}

/// Ethernet + IPv4 (TTL 64, not fragmented, valid checksum) around `l4`.
pub fn frame(
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    frame_with(eth_dst, eth_src, src, dst, proto, l4, 64, 0)
}

/// Ethernet + IPv4 (valid checksum) around `l4`. `frag` is the
/// flags/fragment-offset word.
#[allow(clippy::too_many_arguments)]
pub fn frame_with(
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    l4: &[u8],
    ttl: u8,
    frag: u16,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + l4.len());
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    let mut h = [0u8; 20];
    h[0] = 0x45; // version 4, IHL 5
    h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = !ones_sum(&h, 0);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(l4);
    f
}

/// `f` with four bytes of IPv4 options (three NOPs, end of list) after the
/// fixed header, so that the L4 header is at another offset.
pub fn with_ip_options(f: &[u8]) -> Vec<u8> {
    let mut h = f[14..34].to_vec();
    h[0] = 0x46;
    let len = u16::from_be_bytes([h[2], h[3]]) + 4;
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h[10..12].copy_from_slice(&[0, 0]);
    h.extend_from_slice(&[1, 1, 1, 0]);
    let sum = !ones_sum(&h, 0);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    [&f[..14], &h, &f[34..]].concat()
}

/// An Ethernet/IPv4 ARP frame (42 bytes).
#[allow(clippy::too_many_arguments)]
pub fn arp(
    eth_dst: [u8; 6],
    eth_src: [u8; 6],
    op: u16,
    sha: [u8; 6],
    spa: Ipv4Addr,
    tha: [u8; 6],
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&eth_dst);
    f.extend_from_slice(&eth_src);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&sha);
    f.extend_from_slice(&spa.octets());
    f.extend_from_slice(&tha);
    f.extend_from_slice(&tpa.octets());
    f
}

/// A broadcast "who has `target`? tell `ip`" from `mac`/`ip`.
pub fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    arp([0xff; 6], mac, 1, mac, ip, [0; 6], target)
}
