//! What the TC programs return: the verdicts of their own (a redirect's
//! comes from the helper that set it up).

/// Verdict for "we have no objection": continue with the next TCX program,
/// or with the normal stack if we are the last one. Deliberately not
/// `TC_ACT_OK`/`TCX_PASS`, which would end the chain and skip programs other
/// tools attached after ours. Numerically equal to `TC_ACT_UNSPEC`, which has
/// the same meaning for legacy cls_bpf.
pub(crate) const VERDICT_NEXT: i32 = aya_ebpf::bindings::tcx_action_base::TCX_NEXT;
/// Drop the packet (`TCX_DROP`, numerically `TC_ACT_SHOT`, so it also means
/// drop for legacy cls_bpf).
pub(crate) const VERDICT_DROP: i32 = aya_ebpf::bindings::tcx_action_base::TCX_DROP;
