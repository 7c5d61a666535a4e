//! Rewriting IPv4/L4 header fields with incremental checksum updates.
//!
//! Helper calls are what a translation costs most (each one a call and a
//! few returns deep, which the kernel's return-thunk mitigations make dear:
//! about 40 ns per `bpf_l4_csum_replace` on the bench machine), so the
//! usual packet costs none:
//!
//! - The IPv4 header is rewritten with direct packet writes and one
//!   incremental update of its checksum computed here (RFC 1624): the IPv4
//!   checksum is never offloaded, and a header whose checksum follows its
//!   changes keeps the same one's-complement sum, so `skb->csum` stays right
//!   under `CHECKSUM_COMPLETE` too.
//! - The L4 checksum depends on the skb's checksum state
//!   (`skb->ip_summed`, read by [`skb::ip_summed`]):
//!   - `CHECKSUM_PARTIAL` (what a container's veth hands over): the field
//!     holds only the pseudo header's sum, so an address change must reach
//!     it and a port change must not;
//!   - `CHECKSUM_NONE`/`CHECKSUM_UNNECESSARY` (BPF_PROG_TEST_RUN, software
//!     checksums, verified by a NIC): the field is the full checksum and
//!     follows every change;
//!   - `CHECKSUM_COMPLETE` (a NIC's sum of the packet in `skb->csum`):
//!     `skb->csum` must follow an address change too, which only the
//!     kernel can write.
//!
//!   The first two are written here, the way `bpf_l4_csum_replace` would
//!   (same arithmetic, same UDP zero rule). `CHECKSUM_COMPLETE`, a header
//!   with IPv4 options (whose variable offset the verifier cannot follow
//!   for writes), and kernels on which the daemon could not bind the read
//!   of `ip_summed` (it then reads as `CHECKSUM_COMPLETE`) go through
//!   `bpf_l4_csum_replace`.
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
    ip_summed::{CHECKSUM_COMPLETE, CHECKSUM_PARTIAL},
    nat::{PROTO_TCP, PROTO_UDP},
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr};

use crate::{
    parse::{self, L4_NO_OPTIONS},
    skb,
};

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

impl Ipv4Rewrite {
    /// Whether the pseudo header (the addresses) changes.
    #[inline(always)]
    fn addrs_change(&self) -> bool {
        self.old_saddr != self.new_saddr || self.old_daddr != self.new_daddr
    }

    /// The one's-complement difference of the addresses (unfolded).
    #[inline(always)]
    fn addrs_diff(&self) -> u64 {
        words(!self.old_saddr)
            + words(self.new_saddr)
            + words(!self.old_daddr)
            + words(self.new_daddr)
    }
}

/// What changes in the L4 header itself (the checksum aside).
pub(crate) enum L4Change {
    Nothing,
    /// TCP/UDP `[source, destination]` ports, as stored.
    Ports {
        old: [u16; 2],
        new: [u16; 2],
    },
    /// The ICMP echo identifier, as stored.
    IcmpId {
        old: u16,
        new: u16,
    },
}

/// One's-complement sum of the two 16-bit halves of `v` (as stored).
#[inline(always)]
fn words(v: u32) -> u64 {
    u64::from(v & 0xffff) + u64::from(v >> 16)
}

/// Both ports as the one 32-bit word they are in the header.
#[inline(always)]
fn port_word(p: [u16; 2]) -> [u8; 4] {
    let ([a, b], [c, d]) = (p[0].to_ne_bytes(), p[1].to_ne_bytes());
    [a, b, c, d]
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
        sum += r.addrs_diff();
        sum += u64::from(!ttl_word(r.ttl) & 0xffff) + u64::from(ttl_word(r.ttl - 1));
        (*ip).src_addr = r.new_saddr.to_ne_bytes();
        (*ip).dst_addr = r.new_daddr.to_ne_bytes();
        (*ip).ttl = r.ttl - 1;
        (*ip).check = (!fold(sum)).to_ne_bytes();
    }
    Ok(())
}

/// Rewrites the L4 header of protocol `proto` at `l4_start` (offset in the
/// frame) for the new addresses of `ip` (its pseudo header) and `change`,
/// with its checksum. Call after [`rewrite_ipv4`].
#[inline(always)]
pub(crate) fn rewrite_l4(
    ctx: &TcContext,
    proto: u8,
    l4_start: usize,
    ip: &Ipv4Rewrite,
    change: L4Change,
) -> Result<(), DropReason> {
    // A header with IPv4 options takes the helpers, as CHECKSUM_COMPLETE
    // does: the verifier cannot follow its variable offset for writes.
    let state = if l4_start == L4_NO_OPTIONS {
        skb::ip_summed(ctx)
    } else {
        CHECKSUM_COMPLETE
    };
    match proto {
        PROTO_TCP => rewrite_l4_as::<16>(ctx, l4_start, ip, change, state, Sum::Tcp),
        PROTO_UDP => rewrite_l4_as::<6>(ctx, l4_start, ip, change, state, Sum::Udp),
        // ICMP, the only other protocol translated.
        _ => rewrite_l4_as::<2>(ctx, l4_start, ip, change, state, Sum::Icmp),
    }
}

/// The rules of an L4 checksum.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sum {
    /// Covers the pseudo header.
    Tcp,
    /// Covers the pseudo header; 0 means "none" and must stay 0, a
    /// computed 0 is sent as 0xffff.
    Udp,
    /// No pseudo header.
    Icmp,
}

impl Sum {
    #[inline(always)]
    fn pseudo(self) -> bool {
        self != Sum::Icmp
    }

    /// The `bpf_l4_csum_replace` flags besides the size.
    #[inline(always)]
    fn helper_flags(self) -> u64 {
        match self {
            // Does both parts of UDP's zero rule.
            Sum::Udp => BPF_F_MARK_MANGLED_0 as u64,
            Sum::Tcp | Sum::Icmp => 0,
        }
    }
}

/// [`rewrite_l4`] for a checksum `CSUM` bytes into the L4 header, with
/// the rules of `sum`, for a packet in checksum state `state`.
#[inline(always)]
fn rewrite_l4_as<const CSUM: usize>(
    ctx: &TcContext,
    l4_start: usize,
    ip: &Ipv4Rewrite,
    change: L4Change,
    state: u8,
    sum: Sum,
) -> Result<(), DropReason> {
    if state == CHECKSUM_COMPLETE {
        return with_helpers(ctx, l4_start, l4_start + CSUM, ip, change, sum);
    }
    direct::<CSUM>(ctx, ip, change, state == CHECKSUM_PARTIAL, sum)
}

/// The L4 rewrite of a header without IPv4 options and a packet whose
/// checksum state is not `CHECKSUM_COMPLETE`: the fields and the checksum
/// at `CSUM` bytes into the L4 header, by direct writes.
#[inline(always)]
fn direct<const CSUM: usize>(
    ctx: &TcContext,
    ip: &Ipv4Rewrite,
    change: L4Change,
    partial: bool,
    sum: Sum,
) -> Result<(), DropReason> {
    let mut diff = 0;
    let mut changed = false;
    if sum.pseudo() && ip.addrs_change() {
        diff += ip.addrs_diff();
        changed = true;
    }
    match change {
        L4Change::Nothing => {}
        L4Change::Ports { old, new } => {
            let (old, new) = (port_word(old), port_word(new));
            write_l4::<0, 4>(ctx, L4_NO_OPTIONS, new)?;
            // Not under CHECKSUM_PARTIAL: the device sums the ports itself.
            if !partial {
                diff += words(!u32::from_ne_bytes(old)) + words(u32::from_ne_bytes(new));
                changed = true;
            }
        }
        L4Change::IcmpId { old, new } => {
            write_l4::<4, 2>(ctx, L4_NO_OPTIONS, new.to_ne_bytes())?;
            if !partial {
                diff += u64::from(!old) + u64::from(new);
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(());
    }
    let field = parse::header::<[u8; 2]>(ctx, L4_NO_OPTIONS + CSUM)?.cast_mut();
    let udp = sum == Sum::Udp;
    // SAFETY: in bounds (checked by `header`); direct packet writes are
    // allowed for TC programs, the verifier unclones the skb first.
    unsafe {
        let old = u16::from_ne_bytes(*field);
        if udp && old == 0 {
            // No checksum: stays none.
            return Ok(());
        }
        // As `inet_proto_csum_replace4`: under CHECKSUM_PARTIAL the field
        // holds the pseudo header's sum itself, otherwise its complement.
        let mut new = if partial {
            fold(u64::from(old) + diff)
        } else {
            !fold(u64::from(!old) + diff)
        };
        if udp && new == 0 {
            new = 0xffff;
        }
        *field = new.to_ne_bytes();
    }
    Ok(())
}

/// The L4 rewrite through `bpf_l4_csum_replace`, which knows the checksum
/// state: one call for the addresses (their difference summed here, size
/// 0), one for the ports (one 32-bit word) or the ICMP identifier.
#[inline(always)]
fn with_helpers(
    ctx: &TcContext,
    l4_start: usize,
    csum_off: usize,
    ip: &Ipv4Rewrite,
    change: L4Change,
    sum: Sum,
) -> Result<(), DropReason> {
    let flags = sum.helper_flags();
    if sum.pseudo() && ip.addrs_change() {
        ctx.l4_csum_replace(
            csum_off,
            0,
            u64::from(fold(ip.addrs_diff())),
            flags | BPF_F_PSEUDO_HDR as u64,
        )
        .map_err(fail)?;
    }
    match change {
        L4Change::Nothing => Ok(()),
        L4Change::Ports { old, new } => {
            let (old, new) = (port_word(old), port_word(new));
            ctx.l4_csum_replace(
                csum_off,
                u64::from(u32::from_ne_bytes(old)),
                u64::from(u32::from_ne_bytes(new)),
                flags | 4,
            )
            .map_err(fail)?;
            write_l4::<0, 4>(ctx, l4_start, new)
        }
        L4Change::IcmpId { old, new } => {
            ctx.l4_csum_replace(csum_off, u64::from(old), u64::from(new), flags | 2)
                .map_err(fail)?;
            write_l4::<4, 2>(ctx, l4_start, new.to_ne_bytes())
        }
    }
}

/// Writes `bytes` at `FIELD` bytes into the L4 header at `l4_start`.
///
/// Verifier note: the verifier loses the bounds of a variable packet
/// offset between the check and the write, so a header with IPv4 options
/// is written with `bpf_skb_store_bytes`; the usual one without is written
/// by packet pointer at a constant offset, which saves the helper call.
/// Either way after any checksum helper, which invalidates packet
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
