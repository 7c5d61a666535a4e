//! Rewriting IPv4/L4 header fields with incremental checksum updates.
//!
//! The IPv4 header is rewritten with direct packet writes and one
//! incremental update of its checksum computed here (RFC 1624): the IPv4
//! checksum is never offloaded, and a header whose checksum follows its
//! changes keeps the same one's-complement sum, so `skb->csum` stays right
//! under `CHECKSUM_COMPLETE` too. Helper calls are what a translation costs
//! most (each one a call and a return, which the kernel's return-stack
//! mitigations make dear), so the header costs none.
//!
//! The L4 checksum goes through `bpf_l4_csum_replace`, because only the
//! kernel knows the skb's checksum state: `CHECKSUM_PARTIAL` from a
//! container's veth (the field holds only the pseudo-header sum, so an
//! address change must reach it and a port change must not),
//! `CHECKSUM_COMPLETE` from a NIC (`skb->csum` must follow),
//! `CHECKSUM_NONE` in BPF_PROG_TEST_RUN.
//!
//! Verifier note: the helpers invalidate all packet pointers obtained
//! before them (they may unclone the head): direct writes fetch their
//! pointer through `parse::header` after the last helper call before them.
//!
//! Values are passed as stored in the packet (network order, read with
//! `from_ne_bytes`), which is what the helpers expect; the one's-complement
//! sum is the same in either byte order as long as all words are read and
//! written alike.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use netd_common::{
    DropReason,
    nat::{PROTO_TCP, PROTO_UDP},
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::parse;

/// Where the L4 checksum of `proto` lives and how to update it.
#[derive(Clone, Copy)]
pub(crate) struct L4Csum {
    /// Offset of the checksum field in the frame.
    off: usize,
    /// `bpf_l4_csum_replace` flags besides the size.
    flags: u64,
    /// Whether the checksum covers the pseudo header (addresses).
    pseudo: bool,
}

impl L4Csum {
    /// For the L4 header of protocol `proto` at `l4` (offset in the frame).
    #[inline(always)]
    pub(crate) fn new(proto: u8, l4: usize) -> L4Csum {
        match proto {
            PROTO_TCP => L4Csum {
                off: l4 + 16,
                flags: 0,
                pseudo: true,
            },
            // A UDP checksum of 0 means "none" and must stay 0; a computed 0
            // must be sent as 0xffff. BPF_F_MARK_MANGLED_0 does both.
            PROTO_UDP => L4Csum {
                off: l4 + 6,
                flags: BPF_F_MARK_MANGLED_0 as u64,
                pseudo: true,
            },
            // ICMP (the only other protocol translated): no pseudo header.
            _ => L4Csum {
                off: l4 + 2,
                flags: 0,
                pseudo: false,
            },
        }
    }
}

fn fail(_: i64) -> DropReason {
    // The helpers fail only on offsets outside the packet (which parsing
    // excluded) or on memory pressure while uncloning: not the packet's
    // fault and not classifiable.
    DropReason::Unknown
}

/// The IPv4 source and destination of a translated packet, and its TTL
/// before the hop.
pub(crate) struct Ipv4Rewrite {
    pub(crate) old_saddr: u32,
    pub(crate) new_saddr: u32,
    pub(crate) old_daddr: u32,
    pub(crate) new_daddr: u32,
    /// At least 2 (the caller does not translate packets that would expire).
    pub(crate) ttl: u8,
}

/// One's-complement sum of the two 16-bit halves of `v` (as stored).
#[inline(always)]
fn words(v: u32) -> u64 {
    u64::from(v & 0xffff) + u64::from(v >> 16)
}

/// Folds a sum of 16-bit words into 16 bits with end-around carry. Three
/// folds cover any sum of fewer than 65,536 words.
#[inline(always)]
fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// Writes the new addresses and the decremented TTL into the IPv4 header
/// and updates its checksum incrementally: HC' = ~(~HC + ~m + m') for every
/// changed 16-bit word m (RFC 1624, eqn. 3).
#[inline(always)]
pub(crate) fn rewrite_ipv4(ctx: &TcContext, r: &Ipv4Rewrite) -> Result<(), DropReason> {
    let ip = parse::header::<Ipv4Hdr>(ctx, EthHdr::LEN)?.cast_mut();
    // SAFETY: `header` checked that the fixed IPv4 header is in bounds;
    // direct packet writes are allowed for TC programs (the verifier
    // unclones the skb first).
    unsafe {
        let old_check = u16::from_ne_bytes((*ip).check);
        let ttl_word = |ttl: u8| u32::from(u16::from_ne_bytes([ttl, (*ip).proto]));
        let mut sum = u64::from(!old_check);
        sum += words(!r.old_saddr) + words(r.new_saddr);
        sum += words(!r.old_daddr) + words(r.new_daddr);
        sum += u64::from(!ttl_word(r.ttl) & 0xffff) + u64::from(ttl_word(r.ttl - 1));
        (*ip).src_addr = r.new_saddr.to_ne_bytes();
        (*ip).dst_addr = r.new_daddr.to_ne_bytes();
        (*ip).ttl = r.ttl - 1;
        (*ip).check = (!fold(sum)).to_ne_bytes();
    }
    Ok(())
}

/// Updates the L4 checksum for the IPv4 addresses of `r` (pseudo header),
/// if the protocol's checksum covers them: one helper call for both, with
/// the difference summed here (`bpf_l4_csum_replace` with size 0).
#[inline(always)]
pub(crate) fn l4_addrs(ctx: &TcContext, r: &Ipv4Rewrite, l4: L4Csum) -> Result<(), DropReason> {
    if !l4.pseudo || (r.old_saddr == r.new_saddr && r.old_daddr == r.new_daddr) {
        return Ok(());
    }
    let diff = words(!r.old_saddr) + words(r.new_saddr) + words(!r.old_daddr) + words(r.new_daddr);
    ctx.l4_csum_replace(
        l4.off,
        0,
        u64::from(fold(diff)),
        l4.flags | BPF_F_PSEUDO_HDR as u64,
    )
    .map_err(fail)
}

/// Rewrites the TCP/UDP ports (`[source, destination]`, as stored) of the
/// L4 header at `l4_start` from `old` to `new`, with the checksum: both
/// ports are one 32-bit word, so one helper call.
#[inline(always)]
pub(crate) fn set_l4_ports(
    ctx: &TcContext,
    l4_start: usize,
    old: [u16; 2],
    new: [u16; 2],
    l4: L4Csum,
) -> Result<(), DropReason> {
    let word = |p: [u16; 2]| {
        let ([a, b], [c, d]) = (p[0].to_ne_bytes(), p[1].to_ne_bytes());
        [a, b, c, d]
    };
    let (old, new) = (word(old), word(new));
    ctx.l4_csum_replace(
        l4.off,
        u64::from(u32::from_ne_bytes(old)),
        u64::from(u32::from_ne_bytes(new)),
        l4.flags | 4,
    )
    .map_err(fail)?;
    write_l4::<0, 4>(ctx, l4_start, new)
}

/// Rewrites the ICMP echo identifier (as stored) of the ICMP header at
/// `l4_start` from `old` to `new`, with the checksum.
#[inline(always)]
pub(crate) fn set_icmp_id(
    ctx: &TcContext,
    l4_start: usize,
    old: u16,
    new: u16,
    l4: L4Csum,
) -> Result<(), DropReason> {
    ctx.l4_csum_replace(l4.off, u64::from(old), u64::from(new), l4.flags | 2)
        .map_err(fail)?;
    write_l4::<4, 2>(ctx, l4_start, new.to_ne_bytes())
}

/// Offset of the L4 header in a frame whose IPv4 header has no options.
pub(crate) const L4_NO_OPTIONS: usize = EthHdr::LEN + Ipv4Hdr::LEN;

/// Writes `bytes` at `FIELD` bytes into the L4 header at `l4_start`.
///
/// Verifier note: the verifier loses the bounds of a variable packet
/// offset between the check and the write, so a header with IPv4 options
/// is written with `bpf_skb_store_bytes`; the usual one without is written
/// by packet pointer at a constant offset, which saves the helper call.
/// Either way after the checksum helper, which invalidates packet
/// pointers.
#[inline(always)]
fn write_l4<const FIELD: usize, const N: usize>(
    ctx: &TcContext,
    l4_start: usize,
    bytes: [u8; N],
) -> Result<(), DropReason> {
    if l4_start == L4_NO_OPTIONS {
        let field = parse::header::<[u8; N]>(ctx, L4_NO_OPTIONS + FIELD)?.cast_mut();
        // SAFETY: in bounds (checked by `header`); direct packet writes are
        // allowed for TC programs, the verifier unclones the skb first.
        unsafe { *field = bytes };
        return Ok(());
    }
    ctx.store(l4_start + FIELD, &bytes, 0).map_err(fail)
}
