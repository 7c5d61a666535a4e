//! Fields of the kernel's `struct sk_buff` that the `__sk_buff` context does
//! not expose. The layout of the read, and why the daemon rewrites it before
//! loading, is documented with the values in [`netd_common::ip_summed`].
use aya_ebpf::programs::TcContext;
#[cfg(target_arch = "bpf")]
use netd_common::ip_summed::MARKER;

/// `skb->ip_summed` (`netd_common::ip_summed::CHECKSUM_*`), or
/// `CHECKSUM_COMPLETE` when the daemon could not bind the read to this
/// kernel.
///
/// No helper call: bound, the kfunc call is a register move and the read
/// one load; unbound, the four instructions are moves and ALU.
#[inline(always)]
pub(crate) fn ip_summed(ctx: &TcContext) -> u8 {
    #[cfg(target_arch = "bpf")]
    {
        let state: u64;
        // SAFETY: as built, moves and ALU on r0 only. As bound by the
        // daemon, a call of `bpf_cast_to_kern_ctx(r1)` (a kfunc the
        // verifier inlines to `r0 = r1`) and a byte load inside the
        // `sk_buff` the verifier checked against the kernel's BTF. The
        // call's clobbers (r1-r5) are declared either way.
        unsafe {
            core::arch::asm!(
                "r0 = {marker}",
                "r0 = r0",
                "r0 >>= 0",
                "r0 &= 3",
                marker = const MARKER,
                inout("r1") ctx.skb.skb => _,
                lateout("r0") state,
                lateout("r2") _,
                lateout("r3") _,
                lateout("r4") _,
                lateout("r5") _,
                options(nostack, readonly),
            );
        }
        state as u8
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        let _ = ctx;
        netd_common::ip_summed::CHECKSUM_COMPLETE
    }
}
