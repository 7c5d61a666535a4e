//! Rewriting IPv4/L4 header fields with incremental checksum updates.
//!
//! Everything goes through the kernel's helpers (`bpf_l3_csum_replace`,
//! `bpf_l4_csum_replace`, `bpf_skb_store_bytes`) rather than through direct
//! packet writes: they keep the skb's checksum state right whatever it is
//! (`CHECKSUM_PARTIAL` from a container's veth, where the L4 field holds
//! only the pseudo-header sum; `CHECKSUM_COMPLETE` from a NIC, where
//! `skb->csum` must follow every change; `CHECKSUM_NONE` in
//! BPF_PROG_TEST_RUN), they work on non-linear skbs, and they take offsets
//! instead of packet pointers, so nothing here has to re-validate pointers
//! after a helper changed the packet.
//!
//! Verifier note: every one of these helpers invalidates all packet
//! pointers obtained before it (they may reallocate the head). Callers read
//! what they need first and do not touch pointers from `parse::header`
//! afterwards.
//!
//! Values are passed as stored in the packet (network order, read with
//! `from_ne_bytes`), which is what the helpers expect.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::TcContext,
};
use netd_common::{
    DropReason,
    nat::{PROTO_TCP, PROTO_UDP},
};
use network_types::eth::EthHdr;

/// Offset of the IPv4 header checksum in the frame.
pub(crate) const IP_CSUM_OFF: usize = EthHdr::LEN + 10;
/// Offset of the IPv4 TTL (followed by the protocol byte).
pub(crate) const IP_TTL_OFF: usize = EthHdr::LEN + 8;
/// Offset of the IPv4 source address.
pub(crate) const IP_SRC_OFF: usize = EthHdr::LEN + 12;
/// Offset of the IPv4 destination address.
pub(crate) const IP_DST_OFF: usize = EthHdr::LEN + 16;

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

/// Replaces the IPv4 address at `field` (`IP_SRC_OFF`/`IP_DST_OFF`) `old`
/// with `new`, fixing the IP checksum and, if it covers the pseudo header,
/// the L4 one.
#[inline(always)]
pub(crate) fn set_addr(
    ctx: &TcContext,
    field: usize,
    old: u32,
    new: u32,
    l4: L4Csum,
) -> Result<(), DropReason> {
    if l4.pseudo {
        ctx.l4_csum_replace(
            l4.off,
            u64::from(old),
            u64::from(new),
            l4.flags | BPF_F_PSEUDO_HDR as u64 | 4,
        )
        .map_err(fail)?;
    }
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old), u64::from(new), 4)
        .map_err(fail)?;
    ctx.store(field, &new, 0).map_err(fail)
}

/// Replaces the 16-bit L4 field at `field` (a port, or the ICMP echo
/// identifier) `old` with `new`, fixing the L4 checksum.
#[inline(always)]
pub(crate) fn set_l4_u16(
    ctx: &TcContext,
    field: usize,
    old: u16,
    new: u16,
    l4: L4Csum,
) -> Result<(), DropReason> {
    ctx.l4_csum_replace(l4.off, u64::from(old), u64::from(new), l4.flags | 2)
        .map_err(fail)?;
    ctx.store(field, &new, 0).map_err(fail)
}

/// Decrements the TTL (`ttl_proto` is the 16-bit word TTL+protocol as
/// stored, `ttl` its first byte, at least 2), fixing the IP checksum.
#[inline(always)]
pub(crate) fn decrement_ttl(ctx: &TcContext, ttl: u8, proto: u8) -> Result<(), DropReason> {
    let old = u16::from_ne_bytes([ttl, proto]);
    let new = u16::from_ne_bytes([ttl - 1, proto]);
    ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old), u64::from(new), 2)
        .map_err(fail)?;
    ctx.store(IP_TTL_OFF, &(ttl - 1), 0).map_err(fail)
}
