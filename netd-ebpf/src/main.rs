//! netd's kernel programs. Only entry points live here; the logic is in one
//! module per concern so forwarding, NAT, ... can be added beside it.
//!
//! Programs (attached by `netd::dataplane` with TCX to the *host* side of each
//! container veth):
//! - `netd_from_ep`: TC ingress, sees what the container sends;
//! - `netd_to_ep`: TC egress, sees what is delivered to the container.
// The object only means something for the BPF target; on the host the crate
// still compiles (with an empty `main`) so that `cargo check/clippy
// --workspace` work.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod maps;
mod parse;
mod stats;

use aya_ebpf::{macros::classifier, programs::TcContext};
use netd_common::{Direction, DropReason};

/// Verdict for "we have no objection": continue with the next TCX program,
/// or with the normal stack if we are the last one. Deliberately not
/// `TC_ACT_OK`/`TCX_PASS`, which would end the chain and skip programs other
/// tools attached after ours. Numerically equal to `TC_ACT_UNSPEC`, which has
/// the same meaning for legacy cls_bpf.
const VERDICT_NEXT: i32 = aya_ebpf::bindings::tcx_action_base::TCX_NEXT;
/// Drop the packet (`TCX_DROP`, numerically `TC_ACT_SHOT`, so it also means
/// drop for legacy cls_bpf).
const VERDICT_DROP: i32 = aya_ebpf::bindings::tcx_action_base::TCX_DROP;

#[classifier]
pub fn netd_from_ep(ctx: TcContext) -> i32 {
    match try_netd_from_ep(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason, Direction::FromEndpoint),
    }
}

#[classifier]
pub fn netd_to_ep(ctx: TcContext) -> i32 {
    match try_netd_to_ep(&ctx) {
        Ok(verdict) => verdict,
        Err(reason) => drop_packet(reason, Direction::ToEndpoint),
    }
}

/// Packet sent by the container: validate the headers later stages will
/// read, then count it.
fn try_netd_from_ep(ctx: &TcContext) -> Result<i32, DropReason> {
    parse::check_headers(ctx)?;
    stats::count_endpoint(ctx, Direction::FromEndpoint);
    Ok(VERDICT_NEXT)
}

/// Packet about to be delivered to the container: same checks, other counter.
fn try_netd_to_ep(ctx: &TcContext) -> Result<i32, DropReason> {
    parse::check_headers(ctx)?;
    stats::count_endpoint(ctx, Direction::ToEndpoint);
    Ok(VERDICT_NEXT)
}

/// Every drop goes through here so that none is left uncounted.
#[inline(always)]
fn drop_packet(reason: DropReason, direction: Direction) -> i32 {
    stats::count_drop(reason, direction);
    VERDICT_DROP
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // no_std requires a handler. Any panic path that survives optimisation
    // ends in this infinite loop, which the verifier rejects at load time,
    // so a program that loaded cannot panic.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

/// GPL-compatible so that GPL-only helpers stay available as the programs grow.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
