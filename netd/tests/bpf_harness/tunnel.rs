//! Running `netd_vxlan_in` on a frame as if a VXLAN device had just
//! decapsulated it, with a VNI and an outer source of the test's choosing.
//!
//! BPF_PROG_TEST_RUN cannot attach tunnel metadata to the skb it makes, so
//! the test runs a shim instead: a program of a few instructions, loaded
//! here by hand, that sets the metadata with `bpf_skb_set_tunnel_key` and
//! tail-calls the program under test, which then reads it with
//! `bpf_skb_get_tunnel_key` as on a real device. The kernel keeps one
//! `ip_tunnel_info` for both: the address set as "local" is what the
//! reader sees as the remote (the outer source of a received packet).

use std::{
    ffi::CString,
    io,
    net::Ipv4Addr,
    os::fd::{AsFd as _, AsRawFd as _, OwnedFd},
};

use aya::programs::{ProgramError, SchedClassifier};

use super::bpf_sys::{BPF_MAP_UPDATE_ELEM, BPF_PROG_LOAD, bpf, bpf_fd, create_map, pin};
use super::guards::{PinDir, next_id};
use super::prog::{RunResult, run_program};

const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_FUNC_TAIL_CALL: i32 = 12;
const BPF_FUNC_SKB_SET_TUNNEL_KEY: i32 = 21;
/// `sizeof(struct bpf_tunnel_key)`.
const TUNNEL_KEY_SIZE: i32 = 44;
/// Offset of `local_ipv4` in `struct bpf_tunnel_key`.
const LOCAL_IPV4_OFFSET: i16 = 28;
/// Where the shim keeps the key: 48 bytes below the frame pointer.
const KEY: i16 = -48;
/// What the shim returns if the tail call fails (no TC verdict has it).
pub const TAIL_CALL_FAILED: u32 = 0x7a11;

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: src << 4 | dst,
        off,
        imm,
    }
}

/// `r<dst> = r<src>` (`BPF_ALU64 | BPF_MOV | BPF_X`).
const fn mov(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}

/// `r<dst> = imm` (`BPF_ALU64 | BPF_MOV | BPF_K`).
const fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}

/// `*(u64 *)(r10 + off) = 0` (`BPF_ST | BPF_MEM | BPF_DW`).
const fn zero_u64(off: i16) -> Insn {
    insn(0x7a, 10, 0, off, 0)
}

/// `*(u32 *)(r10 + off) = imm` (`BPF_ST | BPF_MEM | BPF_W`).
const fn store_u32(off: i16, imm: i32) -> Insn {
    insn(0x62, 10, 0, off, imm)
}

/// `call helper` (`BPF_JMP | BPF_CALL`).
const fn call(helper: i32) -> Insn {
    insn(0x85, 0, 0, 0, helper)
}

/// `bpf_attr` for `BPF_MAP_UPDATE_ELEM`.
#[repr(C)]
struct MapUpdate {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `bpf_attr` for `BPF_PROG_LOAD`, up to `prog_flags` (padding spelled
/// out: see `bpf_sys::bpf`).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// A shim that runs `netd_vxlan_in` as if on packets that arrived with a
/// VNI from an outer source.
pub struct Tunnel {
    shim: SchedClassifier,
    /// The tail call's target; lives as long as the shim may run.
    _prog_array: OwnedFd,
}

impl Tunnel {
    /// A shim that hands `target` packets with the tunnel metadata of
    /// VNI `vni` from `outer_src`; it is pinned in `pins` (and goes with
    /// them).
    pub fn new(target: &SchedClassifier, pins: &PinDir, vni: u32, outer_src: Ipv4Addr) -> Tunnel {
        let prog_array = create_prog_array(target).expect("prog array for the tail call");
        #[rustfmt::skip]
        let insns = [
            mov(6, 1),
            zero_u64(KEY), zero_u64(KEY + 8), zero_u64(KEY + 16),
            zero_u64(KEY + 24), zero_u64(KEY + 32), zero_u64(KEY + 40),
            store_u32(KEY, vni as i32),
            store_u32(KEY + LOCAL_IPV4_OFFSET, u32::from(outer_src) as i32),
            mov(1, 6), mov(2, 10), insn(0x07, 2, 0, 0, i32::from(KEY)),
            mov_imm(3, TUNNEL_KEY_SIZE), mov_imm(4, 0),
            call(BPF_FUNC_SKB_SET_TUNNEL_KEY),
            mov(1, 6),
            // `r2 = map` (`BPF_LD | BPF_IMM | BPF_DW`, `BPF_PSEUDO_MAP_FD`),
            // two instructions.
            insn(0x18, 2, 1, 0, prog_array.as_raw_fd()), insn(0, 0, 0, 0, 0),
            mov_imm(3, 0),
            call(BPF_FUNC_TAIL_CALL),
            mov_imm(0, TAIL_CALL_FAILED as i32),
            insn(0x95, 0, 0, 0, 0),
        ];
        let shim = load_shim(&insns).expect("load the tunnel shim");
        let path = pins.0.join(format!("tunnel_shim{}", next_id()));
        pin(&shim, &path).expect("pin the tunnel shim");
        Tunnel {
            shim: SchedClassifier::from_pin(&path).expect("the pinned shim"),
            _prog_array: prog_array,
        }
    }

    /// The target's verdict and output for `frame` arriving on the device
    /// `ifindex`.
    pub fn run(&self, ifindex: u32, frame: &[u8]) -> RunResult {
        self.try_run(ifindex, frame)
            .expect("test run through the shim")
    }

    /// [`Tunnel::run`], with the error of a run the kernel refused.
    pub fn try_run(&self, ifindex: u32, frame: &[u8]) -> Result<RunResult, ProgramError> {
        run_program(&self.shim, ifindex, frame, 1)
    }
}

/// A one-element program array holding `target`.
fn create_prog_array(target: &SchedClassifier) -> io::Result<OwnedFd> {
    let array = create_map(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 1, "tunnel_shim")?;
    let key = 0u32;
    let value = target.fd().map_err(io::Error::other)?.as_fd().as_raw_fd() as u32;
    let mut update = MapUpdate {
        map_fd: array.as_raw_fd() as u32,
        _pad: 0,
        key: &key as *const u32 as u64,
        value: &value as *const u32 as u64,
        flags: 0,
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut update)?;
    Ok(array)
}

fn load_shim(insns: &[Insn]) -> io::Result<OwnedFd> {
    let license = CString::new("GPL").expect("no NUL");
    let mut log = vec![0u8; 64 * 1024];
    let mut load = ProgLoad {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
    };
    bpf_fd(BPF_PROG_LOAD, &mut load).map_err(|e| {
        let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
        io::Error::new(
            e.kind(),
            format!("{e}: {}", String::from_utf8_lossy(&log[..end])),
        )
    })
}
