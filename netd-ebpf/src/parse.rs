//! Bounds-checked access to packet headers, and the headers the programs
//! read: Ethernet, ARP and IPv4 (L2/L3), and the TCP/UDP/ICMP echo tuple of
//! a packet to translate (L4, [`l4`]).
//!
//! Everything that reads packet bytes by pointer goes through [`header`],
//! which is the one place that satisfies the verifier's packet-bounds rule
//! and handles non-linear skbs.
use core::mem::size_of;

use aya_ebpf::programs::TcContext;
use netd_common::{
    DropReason,
    nat::{CtKey, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
};
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

/// Bits of the TCP flags byte (byte 13 of the header, [`Packet::tcp_flags`]).
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;

/// Offset of the L4 header in a frame whose IPv4 header has no options.
pub(crate) const L4_NO_OPTIONS: usize = EthHdr::LEN + Ipv4Hdr::LEN;

const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;
/// `IP_MF | IP_OFFSET` in host order: set on every fragment.
const IP_OFFSET_MASK: u16 = 0x1fff;

/// A packet NAT or a service can translate: an IPv4 packet of TCP, UDP or
/// ICMP echo.
pub(crate) struct Packet {
    /// Its tuple (ICMP echo: the identifier as `sport` for requests, as
    /// `dport` for replies).
    pub(crate) key: CtKey,
    /// Offset of the L4 header in the frame.
    pub(crate) l4: usize,
    /// TCP flags byte (0 for other protocols).
    pub(crate) tcp_flags: u8,
    pub(crate) ttl: u8,
    /// ICMP echo request (the identifier is `key.sport`).
    pub(crate) icmp_request: bool,
}

/// What [`l4`] found.
pub(crate) enum Parsed {
    Packet(Packet),
    /// A fragment other than the first: no L4 header.
    Fragment,
    /// A protocol (or ICMP type) NAT does not translate.
    Other,
}

/// Reads the tuple of the IPv4 packet in the frame. `Err` only for headers
/// that are cut short or impossible.
///
/// The L4 header must hold everything a translation rewrites, its
/// checksum field included (TCP: 18 bytes, UDP and ICMP: 8): a packet cut
/// before it is `Malformed` here, before a flow is created for it, rather
/// than after (which left the flow's entries behind and counted the drop
/// as `Unknown` when the header has options).
#[inline(always)]
pub(crate) fn l4(ctx: &TcContext) -> Result<Parsed, DropReason> {
    let frame = header::<EthIpv4>(ctx, 0)?;
    // SAFETY: `header` checked that the 34 bytes are in the packet; the
    // values are copied out before any helper runs.
    let (vihl, frags, ttl, proto, src, dst) = unsafe {
        let f = &*frame;
        (
            f.ip.vihl,
            f.ip.frags,
            f.ip.ttl,
            f.ip.proto,
            f.ip.src_addr,
            f.ip.dst_addr,
        )
    };
    check_ipv4_vihl(ctx, vihl)?;
    if u16::from_be_bytes(frags) & IP_OFFSET_MASK != 0 {
        return Ok(Parsed::Fragment);
    }
    let l4 = EthHdr::LEN + usize::from(vihl & 0x0f) * 4;
    let (mut sport, mut dport, mut tcp_flags, mut icmp_request) = (0, 0, 0, false);
    match proto {
        PROTO_TCP => {
            let h: [u8; 18] = l4_header(ctx, l4)?;
            sport = u16::from_ne_bytes([h[0], h[1]]);
            dport = u16::from_ne_bytes([h[2], h[3]]);
            tcp_flags = h[13];
        }
        PROTO_UDP => {
            let h: [u8; 8] = l4_header(ctx, l4)?;
            sport = u16::from_ne_bytes([h[0], h[1]]);
            dport = u16::from_ne_bytes([h[2], h[3]]);
        }
        PROTO_ICMP => {
            let h: [u8; 8] = l4_header(ctx, l4)?;
            let id = u16::from_ne_bytes([h[4], h[5]]);
            match h[0] {
                ICMP_ECHO_REQUEST if h[1] == 0 => {
                    sport = id;
                    icmp_request = true;
                }
                ICMP_ECHO_REPLY if h[1] == 0 => dport = id,
                _ => return Ok(Parsed::Other),
            }
        }
        _ => return Ok(Parsed::Other),
    }
    Ok(Parsed::Packet(Packet {
        key: CtKey::new(ipv4(src), ipv4(dst), sport, dport, proto),
        l4,
        tcp_flags,
        ttl,
        icmp_request,
    }))
}

/// The first `N` bytes of the L4 header at `l4` (offset in the frame).
///
/// Verifier note: the offset depends on the IHL, and the verifier loses
/// the bounds of a variable packet offset, so a header with options is
/// read with `bpf_skb_load_bytes` (bounds checked by the helper). The
/// usual header without options is read by packet pointer at a constant
/// offset, which saves the helper call.
#[inline(always)]
fn l4_header<const N: usize>(ctx: &TcContext, l4: usize) -> Result<[u8; N], DropReason> {
    if l4 == L4_NO_OPTIONS {
        let h = header::<[u8; N]>(ctx, L4_NO_OPTIONS)?;
        // SAFETY: `header` checked that the `N` bytes are in the packet.
        return Ok(unsafe { *h });
    }
    ctx.load(l4).map_err(|_| DropReason::Malformed)
}
