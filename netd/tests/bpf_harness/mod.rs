//! The one harness of the tests that run netd's programs in the kernel
//! (`datapath`, `nat_datapath`, `lb_datapath`, `overlay_datapath`, `sock`,
//! `packet_fuzz`),
//! also used by the other privileged tests that build kernel objects by
//! hand (`netlink`): crafted frames and their checksums, BPF_PROG_TEST_RUN
//! and the counters, the lab of endpoints written to a private pin
//! directory (and its overlay variant), the raw `bpf(2)` calls aya has no API for, a shim that runs
//! a program as if on tunnelled packets, guards for the pins, namespaces,
//! veths, bridges and processes a test makes, servers for real traffic,
//! and the root check every privileged test makes first (the daemon
//! harness, `common`, includes that one file too).
#![allow(dead_code)] // each test binary uses a different part

pub mod addr;
pub mod bpf_sys;
pub mod checks;
pub mod cmd;
pub mod frames;
pub mod guards;
pub mod lab;
pub mod overlay;
pub mod prog;
pub mod root;
pub mod servers;
pub mod tunnel;
