//! `cargo xtask stress`: the long versions of the stress tests, in release
//! mode: each test file of [`STRESS_TESTS`] run with `NETD_STRESS=1`, which
//! the file reads to make its run long (`packet_fuzz`: 1,000,000 frames
//! instead of 30,000). `cargo xtask test` runs the same files short.

use std::ffi::OsString;

use anyhow::Result;

use crate::cmd;
use crate::setup::{self, Scope};

/// The test files (`netd/tests/NAME.rs`) that have a long version: each
/// reads [`STRESS_ENV`]. A name whose file is not written yet is skipped.
const STRESS_TESTS: &[&str] = &["packet_fuzz", "crash_points"];

/// Set to `1` for the long versions.
const STRESS_ENV: &str = "NETD_STRESS";

pub fn stress(test_args: &[OsString]) -> Result<()> {
    setup::require_root(
        "`cargo xtask stress`",
        "the stress tests load eBPF programs and create links",
    )?;
    setup::ensure(Scope::All)?;
    let mut cargo_test = cmd::cargo();
    cargo_test
        .args(["test", "--package", "netd", "--release"])
        .env(STRESS_ENV, "1");
    let tests_dir = crate::workspace_root().join("netd").join("tests");
    for test in STRESS_TESTS {
        if tests_dir.join(format!("{test}.rs")).is_file() {
            cargo_test.args(["--test", test]);
        } else {
            cmd::say!("skipping {test}: netd/tests/{test}.rs does not exist yet");
        }
    }
    // The figures each test prints are the point of the run.
    cargo_test.arg("--").arg("--nocapture").args(test_args);
    cmd::run(&mut cargo_test)
}
