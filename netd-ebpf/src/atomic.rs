//! Atomic read-modify-writes of map memory shared between CPUs (or between
//! the socket hooks and the TC programs on one CPU).
//!
//! Each is written as the one instruction it is (`BPF_ATOMIC | BPF_FETCH`,
//! Linux >= 5.12) because LLVM only selects these for cpu v3 and up, and
//! the object is built for rustc's default cpu (`generic`, v1): there LLVM
//! lowers a fetch-and-add whose result is used to the non-fetching
//! `lock xadd` and refuses the program ("Invalid usage of the XADD return
//! value"), and has no fetch-and-or at all; aya-build owns the flags that
//! would raise the cpu. The kernel's verifier accepts the instructions in
//! any program type. On the host (where this crate only compiles for
//! `cargo clippy --workspace`) the atomic types do the same.

/// Defines `$name(p, v)`: the atomic `$op` of `v` into the `u64` at `p`,
/// returning the old value, as the instruction `$insn`.
macro_rules! fetch_op {
    ($(#[$doc:meta])* $name:ident, $insn:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// `p` must be valid for reads and writes of an aligned `u64`.
        #[inline(always)]
        pub(crate) unsafe fn $name(p: *mut u64, v: u64) -> u64 {
            #[cfg(target_arch = "bpf")]
            {
                let mut old = v;
                // SAFETY: `p` is valid for an aligned 8-byte
                // read-modify-write (caller); the instruction touches
                // nothing else and leaves the old value in `old`'s register.
                unsafe {
                    core::arch::asm!(
                        $insn,
                        p = in(reg) p,
                        old = inout(reg) old,
                        options(nostack),
                    );
                }
                old
            }
            #[cfg(not(target_arch = "bpf"))]
            // SAFETY: forwarded from the caller.
            unsafe {
                core::sync::atomic::AtomicU64::from_ptr(p)
                    .$name(v, core::sync::atomic::Ordering::Relaxed)
            }
        }
    };
}

fetch_op!(
    /// `__sync_fetch_and_add(p, v)`.
    fetch_add,
    "{old} = atomic_fetch_add((u64 *)({p} + 0), {old})"
);
fetch_op!(
    /// `__sync_fetch_and_or(p, v)`.
    fetch_or,
    "{old} = atomic_fetch_or((u64 *)({p} + 0), {old})"
);
