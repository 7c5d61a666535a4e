//! Running a program on a frame with BPF_PROG_TEST_RUN, and reading what it
//! left behind: its verdict, the frame it sent on, the counters.

use aya::programs::{ProgramError, SchedClassifier, TcAttachType, TestRun as _, TestRunOptions};
use netd::dataplane::{Dataplane, Direction, DropReason, EndpointStats};

pub const VERDICT_NEXT: u32 = -1i32 as u32;
pub const VERDICT_DROP: u32 = 2;
/// `TC_ACT_REDIRECT`: what `bpf_redirect_peer`/`bpf_redirect_neigh`/
/// `bpf_redirect` return.
pub const VERDICT_REDIRECT: u32 = 7;
/// Offset of `ifindex` in `struct __sk_buff`.
const SKB_IFINDEX_OFFSET: usize = 40;

#[derive(Debug)]
pub struct RunResult {
    pub verdict: u32,
    pub out: Vec<u8>,
}

/// Runs `dp`'s endpoint program for `direction` `repeat` times on `frame`,
/// as if on the device `ifindex`.
pub fn test_run(
    dp: &Dataplane,
    direction: Direction,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
) -> Result<RunResult, ProgramError> {
    run_program(
        dp.program(direction).expect("program"),
        ifindex,
        frame,
        repeat,
    )
}

/// Runs `prog` `repeat` times on `frame`, as if on the device `ifindex`.
///
/// The kernel only accepts a `ctx_in.ifindex` that names an existing device
/// in the caller's namespace (it sets `skb->dev` from it): a veth of the
/// test's own, left down so that no stray kernel traffic (IPv6 DAD, router
/// solicitations) lands in the counters.
pub fn run_program(
    prog: &SchedClassifier,
    ifindex: u32,
    frame: &[u8],
    repeat: u32,
) -> Result<RunResult, ProgramError> {
    let mut ctx = [0u8; SKB_IFINDEX_OFFSET + 4];
    ctx[SKB_IFINDEX_OFFSET..].copy_from_slice(&ifindex.to_ne_bytes());
    let mut out = vec![0u8; frame.len() + 256];
    let result = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        repeat,
        ..Default::default()
    })?;
    out.truncate(result.data_size_out as usize);
    Ok(RunResult {
        verdict: result.return_value,
        out,
    })
}

/// The errno of a failed BPF_PROG_TEST_RUN.
pub fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(aya::sys::SyscallError { io_error, .. }) => {
            io_error.raw_os_error()
        }
        _ => None,
    }
}

/// The counters of the endpoint `ifindex`, `None` if it has no slot.
pub fn stats_of(dp: &Dataplane, ifindex: u32) -> Option<EndpointStats> {
    dp.endpoint_stats()
        .expect("endpoint stats")
        .into_iter()
        .find(|(i, _)| *i == ifindex)
        .map(|(_, s)| s)
}

pub fn drops(dp: &Dataplane, reason: DropReason, direction: Direction) -> u64 {
    dp.drop_stats()
        .expect("drop stats")
        .into_iter()
        .find(|(r, d, _)| *r == reason && *d == direction)
        .map(|(_, _, n)| n)
        .expect("every known reason/direction is reported")
}

pub fn total_drops(dp: &Dataplane) -> u64 {
    dp.drop_stats()
        .expect("drop stats")
        .iter()
        .map(|(_, _, n)| n)
        .sum()
}

/// The ids of the programs on the TCX hook of `ifname` (netd's endpoints
/// have none: they use TC filters; its uplink has one).
pub fn tcx_program_ids(ifname: &str, attach_type: TcAttachType) -> Vec<u32> {
    SchedClassifier::query_tcx(ifname, attach_type)
        .expect("query tcx")
        .1
        .iter()
        .map(|p| p.id())
        .collect()
}
