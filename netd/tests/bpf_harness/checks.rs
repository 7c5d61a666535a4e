//! Decoding what a program sent on, with every checksum in it verified by
//! recomputing it here.

use std::net::Ipv4Addr;

use super::frames::{ICMP, TCP, UDP, ones_sum, pseudo_sum};
use super::prog::{RunResult, VERDICT_REDIRECT};

/// What a translated frame says, after checking every checksum in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub eth_dst: [u8; 6],
    pub eth_src: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub proto: u8,
    /// Ports; for ICMP echo the identifier is in `sport` and `dport` is 0.
    pub sport: u16,
    pub dport: u16,
    /// The L4 checksum field (to check UDP's "no checksum" stays 0).
    pub l4_check: u16,
    /// ICMP type (0 otherwise).
    pub icmp_type: u8,
}

/// Decodes `f` and asserts that its IPv4 and L4 checksums are valid (a UDP
/// checksum of 0 is "none").
pub fn seen(f: &[u8]) -> Seen {
    assert!(f.len() >= 34, "short frame {f:?}");
    let h = &f[14..34];
    assert_eq!(ones_sum(h, 0), 0xffff, "IPv4 header checksum of {f:02x?}");
    let src = Ipv4Addr::new(h[12], h[13], h[14], h[15]);
    let dst = Ipv4Addr::new(h[16], h[17], h[18], h[19]);
    let proto = h[9];
    let l4 = &f[34..];
    assert_eq!(
        usize::from(u16::from_be_bytes([h[2], h[3]])),
        20 + l4.len(),
        "total length"
    );
    let (sport, dport, l4_check, icmp_type) = match proto {
        TCP => {
            assert_eq!(
                ones_sum(l4, pseudo_sum(src, dst, TCP, l4.len())),
                0xffff,
                "TCP checksum of {f:02x?}"
            );
            (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
                u16::from_be_bytes([l4[16], l4[17]]),
                0,
            )
        }
        UDP => {
            let check = u16::from_be_bytes([l4[6], l4[7]]);
            if check != 0 {
                assert_eq!(
                    ones_sum(l4, pseudo_sum(src, dst, UDP, l4.len())),
                    0xffff,
                    "UDP checksum of {f:02x?}"
                );
            }
            (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
                check,
                0,
            )
        }
        ICMP => {
            assert_eq!(ones_sum(l4, 0), 0xffff, "ICMP checksum of {f:02x?}");
            (
                u16::from_be_bytes([l4[4], l4[5]]),
                0,
                u16::from_be_bytes([l4[2], l4[3]]),
                l4[0],
            )
        }
        other => panic!("unexpected protocol {other}"),
    };
    Seen {
        eth_dst: f[0..6].try_into().expect("6 bytes"),
        eth_src: f[6..12].try_into().expect("6 bytes"),
        src,
        dst,
        ttl: h[8],
        proto,
        sport,
        dport,
        l4_check,
        icmp_type,
    }
}

/// [`seen`] of a translated frame with the options of
/// [`super::frames::with_ip_options`], after checking that they and the
/// header checksum are intact.
pub fn seen_with_options(f: &[u8]) -> Seen {
    assert_eq!(f[14], 0x46, "the header keeps its options: {f:02x?}");
    assert_eq!(&f[34..38], &[1, 1, 1, 0]);
    assert_eq!(ones_sum(&f[14..38], 0), 0xffff, "IPv4 header checksum");
    let mut h = f[14..34].to_vec();
    h[0] = 0x45;
    let len = u16::from_be_bytes([h[2], h[3]]) - 4;
    h[2..4].copy_from_slice(&len.to_be_bytes());
    h[10..12].copy_from_slice(&[0, 0]);
    let sum = !ones_sum(&h, 0);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    seen(&[&f[..14], &h, &f[38..]].concat())
}

/// Asserts that the program redirected the frame, and decodes it.
pub fn redirected(r: &RunResult) -> Seen {
    assert_eq!(r.verdict, VERDICT_REDIRECT, "expected a redirect: {r:02x?}");
    seen(&r.out)
}
