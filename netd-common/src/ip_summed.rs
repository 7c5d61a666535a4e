//! `skb->ip_summed`, the checksum state of a packet, which the `__sk_buff`
//! context does not expose but which decides how a translated packet's L4
//! checksum must change (see `netd-ebpf`'s `csum`).
//!
//! The programs read it through the `bpf_cast_to_kern_ctx` kfunc (since
//! Linux 6.3; the verifier turns the call into a register move) and one byte
//! load from the `struct sk_buff` it returns. aya 0.14 cannot relocate
//! kfunc calls, and the byte's offset depends on the kernel's build, so the
//! object carries a placeholder that the daemon rewrites before loading
//! (`netd::dataplane::kfunc`), four instructions as built and as bound:
//!
//! ```text
//! r0 = MARKER            ->  call bpf_cast_to_kern_ctx   (r1: the context)
//! r0 = r0                ->  r0 = *(u8 *)(r0 + byte)     (byte of ip_summed)
//! r0 >>= 0               ->  r0 >>= shift                (its first bit)
//! r0 &= 3                    (kept)
//! ```
//!
//! Left as built (no kernel BTF, an older kernel), the sequence yields
//! [`CHECKSUM_COMPLETE`], the one state in
//! which the programs always update checksums through the kernel's
//! helpers: correct everywhere, only slower.

/// The packet's checksum was neither computed nor verified.
pub const CHECKSUM_NONE: u8 = 0;
/// A device (or the stack) verified the checksums.
pub const CHECKSUM_UNNECESSARY: u8 = 1;
/// `skb->csum` holds the sum of the packet from the network header on.
pub const CHECKSUM_COMPLETE: u8 = 2;
/// The L4 checksum field holds only the pseudo header's sum; the
/// device (or the stack) completes it on transmit.
pub const CHECKSUM_PARTIAL: u8 = 3;
/// Immediate of the placeholder's first instruction: unique in the
/// object, and its low two bits are [`CHECKSUM_COMPLETE`].
pub const MARKER: i32 = 0x4e44_4b02;
const _: () = assert!(MARKER & 3 == CHECKSUM_COMPLETE as i32);
