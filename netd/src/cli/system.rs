//! `netd system ...`: host-wide maintenance, run locally (not through the
//! API: its job is what is left when no daemon runs).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::{err, out};
use crate::cleanup::{self, Target};
use crate::config::{DaemonArgs, Settings};

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Remove everything a stopped daemon left in the kernel and on disk.
    ///
    /// A stopped daemon keeps its data plane, so that a restart loses no
    /// traffic. This removes it: the processes in its namespaces, its
    /// links (with their TC filters), namespaces and /etc/netns entries,
    /// every pinned program and map (the uplink's program and the cgroup
    /// socket hooks included), its own cgroup2 mount and the socket; with
    /// --state-dir, the state too. Where to look comes from the daemon's
    /// configuration file, overridden by the flags. Processes of `--network
    /// host` containers are left alone: only a pid that may have been reused
    /// ties them to netd.
    Cleanup(CleanupArgs),
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Clean up even though a daemon serves the socket.
    #[arg(long)]
    pub force: bool,
    /// The daemon's TOML configuration file (default: /etc/netd/netd.toml
    /// if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Prefix of the links and namespaces to remove.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Pin directory to remove.
    #[arg(long, value_name = "DIR")]
    pub bpffs: Option<PathBuf>,
    /// The daemon's API socket (checked, then removed).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Also remove this state directory (networks and containers are
    /// forgotten).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

pub fn run(cmd: SystemCommand) -> ExitCode {
    let SystemCommand::Cleanup(args) = cmd;
    let settings = match Settings::resolve(&DaemonArgs {
        config: args.config,
        prefix: args.prefix,
        bpffs: args.bpffs,
        socket: args.socket,
        ..DaemonArgs::default()
    }) {
        Ok(s) => s,
        Err(e) => {
            err(&format!("netd system cleanup: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let target = Target {
        prefix: settings.prefix,
        bpffs: settings.bpffs,
        socket: settings.socket,
        state_dir: args.state_dir,
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(cleanup::run(&target, args.force)) {
        Ok(removed) => {
            for line in &removed {
                out(&format!("removed {line}\n"));
            }
            if removed.is_empty() {
                out(&format!(
                    "nothing to remove for prefix {:?} and {}\n",
                    target.prefix,
                    target.bpffs.display()
                ));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            err(&format!("netd system cleanup: {e}"));
            ExitCode::FAILURE
        }
    }
}
