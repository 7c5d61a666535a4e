//! `cargo xtask`: the project's orchestration, and nothing else.
//!
//! - `setup`: install what building and testing netd needs (idempotent);
//! - `lint`: formatting and clippy, the eBPF crate included;
//! - `run`: build and run a development daemon in the foreground;
//! - `test`: setup, lint, build, then every test (as root, privileged ones
//!   included), and a quick benchmark run;
//! - `stress`: the long versions of the stress tests (as root);
//! - `bench`: netd side by side with the alternatives (as root);
//! - `dist`: the Debian package.
//!
//! Every line xtask itself prints starts with `xtask: `, and every command it
//! runs is printed before it runs, so a CI log tells what happened.

mod bench;
mod cmd;
mod dist;
mod lint;
mod run;
mod setup;
mod stress;
mod test;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(bin_name = "cargo xtask", about = "Build, run and test netd")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the prerequisites: nightly rust-src, LLVM and the other Debian
    /// packages, bpf-linker, a mounted bpffs. Installs only what is missing.
    Setup,
    /// Check formatting and clippy lints (host crates and the eBPF crate).
    Lint,
    /// Set up, build, and run a development daemon in the foreground (root).
    Run {
        /// Extra `netd daemon` flags; they override the development config.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        daemon_args: Vec<OsString>,
    },
    /// Set up, lint, build, and run every test, privileged ones included (root).
    Test {
        /// Passed to the test binaries: a name filter, `--nocapture`, ...
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        test_args: Vec<OsString>,
    },
    /// Set up and run the long versions of the stress tests in release mode
    /// (root): a million fuzzed frames through the eBPF programs.
    Stress {
        /// Passed to the test binaries: a name filter, ...
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        test_args: Vec<OsString>,
    },
    /// Set up, build in release mode, and benchmark netd side by side with a
    /// plain veth pair, a Docker-like bridge and the CNI plugins (root).
    Bench {
        /// Smoke run of a few minutes, written to target/bench-quick/.
        #[arg(long)]
        quick: bool,
    },
    /// Build the Debian package (target/debian/netd_VERSION_ARCH.deb): the
    /// release binary, the systemd unit, the default configuration,
    /// completions, man pages, the Prometheus alerts and Grafana dashboard.
    Dist,
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup => setup::ensure(setup::Scope::All),
        Command::Lint => lint::lint(),
        Command::Run { daemon_args } => run::run(&daemon_args),
        Command::Test { test_args } => test::test(&test_args),
        Command::Stress { test_args } => stress::stress(&test_args),
        Command::Bench { quick } => bench::bench(quick),
        Command::Dist => dist::dist().map(drop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: every cargo command runs there, so that the
/// workspace's `default-members` apply.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set (relative to the
/// workspace root, where xtask runs cargo), else `target/`.
fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}
