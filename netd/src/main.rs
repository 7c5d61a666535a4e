//! The `netd` binary: the daemon (`netd daemon`) and the CLI in one.

use clap::Parser;

fn main() -> std::process::ExitCode {
    netd::cli::main(netd::cli::Cli::parse())
}
