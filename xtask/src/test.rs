//! `cargo xtask test`: everything CI checks, in the order that fails fastest.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::setup::{self, Scope};
use crate::{bench, cmd, dist, lint};

/// Tells the package test which package to install.
const PACKAGE_ENV: &str = "NETD_DEB";

pub fn test(test_args: &[OsString]) -> Result<()> {
    setup::require_root(
        "`cargo xtask test`",
        "the tests create namespaces and links and load eBPF programs",
    )?;
    setup::ensure(Scope::All)?;
    lint::checks()?;
    // `cargo xtask bench --quick`, so that a change that breaks a benchmark
    // topology fails the tests (it never fails on a measured value). Before
    // the tests, so that their totals are the last thing printed. Not when
    // the tests were filtered: that is someone iterating on one test.
    if test_args.is_empty() {
        bench::run(true)?;
    } else {
        cmd::say!("skipping `cargo xtask bench --quick`: tests were filtered");
    }
    // The package test (netd/tests/package.rs) installs this package. The
    // bench built the release binary already; the package takes seconds.
    let deb = dist::build()?;
    // Tests that start a real daemon run this binary.
    cmd::run(cmd::cargo().args(["build", "--package", "netd"]))?;
    // No `--workspace`, as in lint: the default members are the host crates.
    let mut cargo_test = cmd::cargo();
    cargo_test.arg("test").env(PACKAGE_ENV, &deb);
    if !test_args.is_empty() {
        cargo_test.arg("--").args(test_args);
    }
    run_counting(&mut cargo_test)
}

/// Runs `cargo test`, echoing its output, and ends with one line of totals
/// over every test binary: cargo's own last line is the summary of whichever
/// binary ran last (often doc tests with nothing in them), which hides the
/// real count.
fn run_counting(cargo_test: &mut Command) -> Result<()> {
    println!("xtask: $ {}", cmd::show(cargo_test));
    let mut child = cargo_test
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start cargo test")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut totals = Totals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read cargo test output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait()?;
    println!(
        "xtask: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

#[derive(Debug, Default, PartialEq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds libtest's `test result: ok. 5 passed; 0 failed; 1 ignored; ...`.
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match kind {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_libtest_summaries() {
        let mut t = Totals::default();
        t.add("test result: ok. 83 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.02s");
        t.add("running 5 tests");
        t.add("test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.30s");
        assert_eq!(
            t,
            Totals {
                passed: 87,
                failed: 1,
                ignored: 2
            }
        );
    }
}
