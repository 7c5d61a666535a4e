//! `cargo xtask bench [--quick]`: netd side by side with the alternatives.
//!
//! Sets up like `test` does, installs the tools only the benchmarks use,
//! builds netd and the bench in release mode (debug builds would measure
//! the compiler's settings, not the design), then runs `target/release/bench`.
//! A full run writes `bench/results/<date>-<host>.{md,json,svg}`; a quick
//! run (the smoke run `cargo xtask test` does) writes to
//! `target/bench-quick/` so that CI leaves the results directory alone.

use std::process::Command;

use anyhow::Result;

use crate::cmd::{self, probe, say};
use crate::setup::{self, Scope};
use crate::{target_dir, workspace_root};

/// Debian packages of the baselines and the traffic tools: iptables (nft
/// backend) for the Docker-like rules, nftables, iperf3, and the CNI
/// reference plugins.
const BENCH_PACKAGES: &[&str] = &[
    "iptables",
    "nftables",
    "iperf3",
    "containernetworking-plugins",
];

/// Everything: setup, packages, release build, run.
pub fn bench(quick: bool) -> Result<()> {
    setup::require_root(
        "`cargo xtask bench`",
        "the benchmarks create namespaces and links, load eBPF programs and run netd",
    )?;
    setup::ensure(Scope::All)?;
    run(quick)
}

/// For callers that have set up already (`cargo xtask test`).
pub fn run(quick: bool) -> Result<()> {
    packages()?;
    cmd::release_build()?;
    let release = target_dir().join("release");
    let out = if quick {
        target_dir().join("bench-quick")
    } else {
        workspace_root().join("bench").join("results")
    };
    let mut bench = Command::new(release.join("bench"));
    bench
        .current_dir(workspace_root())
        .arg("--netd")
        .arg(release.join("netd"))
        .arg("--out")
        .arg(&out);
    if quick {
        bench.arg("--quick");
    }
    cmd::run(&mut bench)
}

fn packages() -> Result<()> {
    let missing: Vec<&str> = BENCH_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_some_and(|s| s.trim_end().ends_with(" installed"))
        })
        .collect();
    if missing.is_empty() {
        say!("bench packages ok: {}", BENCH_PACKAGES.join(" "));
        return Ok(());
    }
    say!("installing {} ...", missing.join(" "));
    // As setup does: wait for another apt rather than fail on its lock.
    let lock_wait = "DPkg::Lock::Timeout=300";
    cmd::run(Command::new("apt-get").args(["-q", "-o", lock_wait, "update"]))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("NEEDRESTART_SUSPEND", "1")
            .args([
                "-q",
                "-o",
                lock_wait,
                "install",
                "-y",
                "--no-install-recommends",
            ])
            .args(&missing),
    )
}
