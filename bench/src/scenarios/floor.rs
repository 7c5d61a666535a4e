//! The floor under every BPF_PROG_TEST_RUN figure: a two-instruction TC
//! program (`r0 = TCX_NEXT; exit`) run exactly like netd's programs. What
//! the kernel reports per run includes building and freeing the test skb;
//! netd's own cost on a path is that path's figure minus this one.
//!
//! Loaded with raw bpf(2) calls because aya only loads programs from ELF
//! objects, and an object for two instructions is not worth a build step.

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{Result, bail};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
/// Large enough for every member of `union bpf_attr` the two commands use.
const ATTR_SIZE: usize = 128;

pub struct EmptyProgram {
    fd: OwnedFd,
}

impl EmptyProgram {
    pub fn load() -> Result<EmptyProgram> {
        // r0 = -1 (BPF_ALU64 | BPF_MOV | BPF_K); exit (BPF_JMP | BPF_EXIT).
        let insns: [u64; 2] = [
            u64::from_le_bytes([0xb7, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
        ];
        let license = c"GPL";
        let mut attr = [0u8; ATTR_SIZE];
        put_u32(&mut attr, 0, BPF_PROG_TYPE_SCHED_CLS);
        put_u32(&mut attr, 4, insns.len() as u32);
        put_u64(&mut attr, 8, insns.as_ptr() as u64);
        put_u64(&mut attr, 16, license.as_ptr() as u64);
        let fd = bpf(BPF_PROG_LOAD, &mut attr)?;
        // SAFETY: BPF_PROG_LOAD returned a new descriptor that we own.
        Ok(EmptyProgram {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Runs the program `repeat` times on `frame` with context `ctx`; the
    /// kernel's average ns per run.
    pub fn test_run(&self, frame: &[u8], ctx: &[u8], repeat: u32) -> Result<f64> {
        let mut out = vec![0u8; frame.len() + 256];
        let mut attr = [0u8; ATTR_SIZE];
        put_u32(&mut attr, 0, self.fd.as_raw_fd() as u32);
        put_u32(&mut attr, 8, frame.len() as u32);
        put_u32(&mut attr, 12, out.len() as u32);
        put_u64(&mut attr, 16, frame.as_ptr() as u64);
        put_u64(&mut attr, 24, out.as_mut_ptr() as u64);
        put_u32(&mut attr, 32, repeat);
        put_u32(&mut attr, 40, ctx.len() as u32);
        put_u64(&mut attr, 48, ctx.as_ptr() as u64);
        bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        let duration = u32::from_ne_bytes(attr[36..40].try_into().expect("4 bytes"));
        Ok(f64::from(duration))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_SIZE]) -> Result<i32> {
    // SAFETY: `attr` is a zero-padded `union bpf_attr` of the size passed;
    // every pointer in it refers to memory that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR_SIZE as u32) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        bail!("bpf({cmd}) failed: {err}");
    }
    Ok(rc as i32)
}

fn put_u32(attr: &mut [u8], offset: usize, value: u32) {
    attr[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
}

fn put_u64(attr: &mut [u8], offset: usize, value: u64) {
    attr[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
}
