//! `cargo xtask lint`: formatting first (seconds), then clippy (minutes).

use anyhow::Result;

use crate::cmd;
use crate::setup::{self, Scope};

pub fn lint() -> Result<()> {
    // Clippy runs netd's build script, which builds the eBPF object.
    setup::ensure(Scope::Build)?;
    checks()
}

/// The checks alone, for callers that have set up already.
pub fn checks() -> Result<()> {
    cmd::run(cmd::cargo().args(["fmt", "--all", "--check"]))?;
    // No `--workspace`: that would take every member, and netd-ebpf builds
    // only for the BPF target; the workspace's default members are the host
    // crates.
    cmd::run(cmd::cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))?;
    cmd::run(cmd::nightly_cargo().args([
        "clippy",
        "--package",
        "netd-ebpf",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--",
        "-D",
        "warnings",
    ]))
}
