//! Bounds-checked access to packet headers.
//!
//! Everything that reads packet bytes goes through [`header`], which is the
//! one place that satisfies the verifier's packet-bounds rule and handles
//! non-linear skbs.
use core::mem::size_of;

use aya_ebpf::programs::TcContext;
use netd_common::DropReason;
use network_types::{
    arp::ArpHdr,
    eth::{EthHdr, EtherType},
    ip::{Ipv4Hdr, Ipv6Hdr},
};

/// An Ethernet frame carrying ARP, as one bounds check (42 bytes).
#[repr(C)]
pub(crate) struct EthArp {
    pub(crate) eth: EthHdr,
    pub(crate) arp: ArpHdr,
}

/// An Ethernet frame carrying IPv4, up to the end of the fixed IPv4 header
/// (34 bytes), as one bounds check.
#[repr(C)]
pub(crate) struct EthIpv4 {
    pub(crate) eth: EthHdr,
    pub(crate) ip: Ipv4Hdr,
}

/// Returns a pointer to a `T` at `offset` bytes into the frame.
///
/// `Err(Malformed)` if the packet is shorter than `offset + size_of::<T>()`.
///
/// Direct packet access only sees the linear part of the skb
/// (`data..data_end`). A packet can be long enough yet have the header
/// outside that part (GRO'd or paged skbs), so on a short linear area we
/// `bpf_skb_pull_data` before calling the packet malformed.
///
/// Verifier notes: the `data + end > data_end` comparison must be on the
/// packet pointers themselves (not on a length computed elsewhere) so the
/// verifier learns the accessible range; and `bpf_skb_pull_data` invalidates
/// every packet pointer obtained before it, so callers must not keep
/// pointers from an earlier `header` call across a later one (read the
/// fields you need first).
#[inline(always)]
pub(crate) fn header<T>(ctx: &TcContext, offset: usize) -> Result<*const T, DropReason> {
    let end = offset + size_of::<T>();
    let (mut data, mut data_end) = bounds(ctx);
    if data + end > data_end {
        // Rare (see above): laid out after the hot code, so that the
        // instructions a packet runs share fewer cache lines with these.
        core::hint::cold_path();
        if (ctx.len() as usize) < end {
            return Err(DropReason::Malformed);
        }
        // Failing to pull (-ENOMEM) says nothing about the packet itself.
        ctx.pull_data(end as u32).map_err(|_| DropReason::Unknown)?;
        (data, data_end) = bounds(ctx);
        if data + end > data_end {
            return Err(DropReason::Unknown);
        }
    }
    Ok((data + offset) as *const T)
}

/// `skb->data` and `skb->data_end`, each read as one load from the context
/// pointer itself.
///
/// Verifier note: written as instructions because LLVM may otherwise keep
/// `ctx + offset` in a register (or spill it) and load through that
/// later, which the verifier refuses ("dereference of modified ctx ptr"):
/// it only rewrites context loads at a constant offset from the context
/// pointer. Which code triggers that depends on register pressure
/// anywhere in the program, so no call site is safe by itself.
#[inline(always)]
fn bounds(ctx: &TcContext) -> (usize, usize) {
    #[cfg(target_arch = "bpf")]
    {
        let (data, data_end): (usize, usize);
        // SAFETY: `ctx.skb.skb` is the program's context (`__sk_buff`);
        // both fields are u32 loads the verifier turns into the packet
        // pointers.
        unsafe {
            core::arch::asm!(
                "{d} = *(u32 *)({c} + {off_d})",
                "{e} = *(u32 *)({c} + {off_e})",
                c = in(reg) ctx.skb.skb,
                d = out(reg) data,
                e = out(reg) data_end,
                off_d = const core::mem::offset_of!(aya_ebpf::bindings::__sk_buff, data),
                off_e = const core::mem::offset_of!(aya_ebpf::bindings::__sk_buff, data_end),
                options(nostack, readonly, preserves_flags),
            );
        }
        (data, data_end)
    }
    #[cfg(not(target_arch = "bpf"))]
    (ctx.data(), ctx.data_end())
}

/// The frame's ether type (as stored, i.e. big-endian; compare with
/// `EtherType::X as u16`).
#[inline(always)]
pub(crate) fn ether_type(ctx: &TcContext) -> Result<u16, DropReason> {
    let eth = header::<EthHdr>(ctx, 0)?;
    // SAFETY: `header` checked that the whole EthHdr lies within the packet.
    Ok(unsafe { (*eth).ether_type })
}

/// `Err(Malformed)` unless `vihl` (first byte of an IPv4 header) says
/// version 4 with a header of at least 20 bytes that fits in the packet.
#[inline(always)]
pub(crate) fn check_ipv4_vihl(ctx: &TcContext, vihl: u8) -> Result<(), DropReason> {
    let ihl_bytes = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl_bytes < Ipv4Hdr::LEN || EthHdr::LEN + ihl_bytes > ctx.len() as usize {
        return Err(DropReason::Malformed);
    }
    Ok(())
}

/// Rejects frames whose Ethernet header or fixed IPv4/IPv6 header is cut
/// short or impossible, the headers forwarding will read. Other ether types
/// (ARP, VLAN, ...) pass unexamined. The kernel's own `ip_rcv`/`ipv6_rcv`
/// would drop these packets too; dropping them here just makes the drop
/// visible in `DROP_STATS` and keeps later stages from seeing them.
#[inline(always)]
pub(crate) fn check_headers(ctx: &TcContext) -> Result<(), DropReason> {
    let ether_type = ether_type(ctx)?;
    if ether_type == EtherType::Ipv4 as u16 {
        let ip = header::<Ipv4Hdr>(ctx, EthHdr::LEN)?;
        // SAFETY: `header` checked that the fixed IPv4 header is in bounds.
        let vihl = unsafe { (*ip).vihl };
        check_ipv4_vihl(ctx, vihl)?;
    } else if ether_type == EtherType::Ipv6 as u16 {
        let ip = header::<Ipv6Hdr>(ctx, EthHdr::LEN)?;
        // SAFETY: `header` checked that the fixed IPv6 header is in bounds.
        let version = unsafe { (*ip).vcf[0] } >> 4;
        if version != 6 {
            return Err(DropReason::Malformed);
        }
    }
    Ok(())
}

/// `a == b` for MAC addresses, spelled out byte by byte.
///
/// Verifier/linker note: `[u8; 6] == [u8; 6]` may be lowered to a `bcmp`
/// call, which does not exist in BPF; six byte compares always compile to
/// plain instructions.
#[inline(always)]
pub(crate) fn mac_eq(a: &[u8; 6], b: &[u8; 6]) -> bool {
    a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] && a[5] == b[5]
}

/// The IPv4 address in `octets` as the maps store it (`ipv4_be`).
#[inline(always)]
pub(crate) fn ipv4(octets: [u8; 4]) -> u32 {
    netd_common::ipv4_be(octets)
}

/// `EtherType::Arp`, as stored in the header.
pub(crate) const ETH_P_ARP: u16 = EtherType::Arp as u16;
/// `EtherType::Ipv4`, as stored in the header.
pub(crate) const ETH_P_IP: u16 = EtherType::Ipv4 as u16;
