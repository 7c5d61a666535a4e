//! The `netd` command line: `netd daemon` runs the daemon; every other
//! command is a client of its HTTP API on the unix socket (`-H` or
//! `NETD_HOST`), printing tables like Docker's and Docker's error lines.
//!
//! Client commands run on a current-thread tokio runtime: they make a few
//! sequential requests, so threads would buy nothing. `container exec`
//! leaves the runtime before running the command, so the command owns the
//! process (stdin, signals) the way `docker exec` does.

pub mod client;
pub mod cluster;
pub mod container;
pub mod generate;
pub mod network;
pub mod output;
pub mod service;
pub mod stats;
pub mod system;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api::wire::{InfoResponse, VersionResponse};
use client::{Client, ClientError, DEFAULT_HOST};
use output::{err, human_bytes, out};

#[derive(Debug, Parser)]
#[command(
    name = "netd",
    version,
    about = "Docker-style container networking with an eBPF datapath",
    long_about = "Docker-style container networking with an eBPF datapath.\n\n\
        `netd daemon` runs the daemon: networks, IP address management, container \
        sandboxes and a Docker-compatible API on a unix socket, with the packet path \
        in eBPF programs that outlive it. Every other command is a client of that API \
        (the docker CLI is another), except `netd system` and `netd completion`, which \
        work without a daemon."
)]
pub struct Cli {
    /// Daemon socket to talk to.
    #[arg(
        short = 'H',
        long,
        global = true,
        env = "NETD_HOST",
        default_value = DEFAULT_HOST,
        value_name = "unix:///PATH"
    )]
    pub host: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Daemon(crate::config::DaemonArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Manage containers (network sandboxes).
    #[command(subcommand)]
    Container(container::ContainerCommand),
    /// Manage services (a virtual IP balanced over replicas).
    #[command(subcommand)]
    Service(service::ServiceCommand),
    /// Show per-endpoint traffic and drops by reason, from the datapath.
    Stats(stats::StatsArgs),
    /// The hosts of the cluster (multi-host mode).
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Show the client and daemon versions.
    Version,
    /// Show daemon-wide information.
    Info,
    /// Host-wide maintenance (run locally, without a daemon).
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Print a shell completion script.
    ///
    /// For example `netd completion bash > /etc/bash_completion.d/netd`;
    /// zsh reads `_netd` from a directory of `$fpath`, fish
    /// `~/.config/fish/completions/netd.fish`. The Debian package installs
    /// all three.
    Completion(generate::CompletionArgs),
    /// Write the man pages (netd(8) and one per subcommand) into DIR: for
    /// packaging.
    #[command(hide = true)]
    Manpages(generate::ManpagesArgs),
}

/// How a client command ended. `Exec` is carried out after the runtime is
/// gone (see the module doc).
pub enum Outcome {
    Exit(u8),
    Exec {
        netns: Option<PathBuf>,
        cmd: Vec<String>,
    },
}

impl From<ClientError> for Outcome {
    /// Prints the error the way Docker does and fails.
    fn from(e: ClientError) -> Self {
        err(&e.to_string());
        Outcome::Exit(1)
    }
}

/// The whole CLI: returns the process's exit code.
pub fn main(cli: Cli) -> ExitCode {
    // The commands that talk to no daemon.
    let command = match cli.command {
        Command::Daemon(args) => {
            return match crate::daemon::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    err(&format!("netd daemon: {e:#}"));
                    ExitCode::FAILURE
                }
            };
        }
        Command::System(cmd) => return system::run(cmd),
        Command::Completion(args) => {
            generate::completion(args.shell, &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Manpages(args) => {
            return match generate::manpages(&args.dir) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    err(&format!(
                        "cannot write man pages to {}: {e}",
                        args.dir.display()
                    ));
                    ExitCode::FAILURE
                }
            };
        }
        other => other,
    };
    let client = match Client::new(&cli.host) {
        Ok(c) => c,
        Err(e) => {
            err(&e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let outcome = rt.block_on(run(&client, command));
    drop(rt);
    match outcome {
        Outcome::Exit(code) => ExitCode::from(code),
        Outcome::Exec { netns, cmd } => match crate::sandbox::exec(netns.as_deref(), &cmd) {
            Ok(status) => ExitCode::from(exit_code(status)),
            Err(e) => {
                err(&format!("cannot run {}: {e}", cmd.join(" ")));
                // Docker's code for "command cannot be invoked".
                ExitCode::from(126)
            }
        },
    }
}

/// The current-thread runtime a client command runs on (see the module
/// doc), or the exit code after saying why there is none.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            err(&format!("cannot start the async runtime: {e}"));
            ExitCode::FAILURE
        })
}

/// The shell convention: the exit code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

async fn run(client: &Client, command: Command) -> Outcome {
    match command {
        Command::Daemon(_) | Command::System(_) | Command::Completion(_) | Command::Manpages(_) => {
            unreachable!("handled before the runtime starts")
        }
        Command::Network(cmd) => network::run(client, cmd).await,
        Command::Container(cmd) => container::run(client, cmd).await,
        Command::Service(cmd) => service::run(client, cmd).await,
        Command::Stats(args) => stats::run(client, args).await,
        Command::Cluster(cmd) => cluster::run(client, cmd).await,
        Command::Version => version(client).await,
        Command::Info => info(client).await,
    }
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// `netd version`: the client part always, then the daemon's, like
/// `docker version`.
async fn version(client: &Client) -> Outcome {
    out(&format!(
        "Client:\n Version:           {}\n API version:       {}\n OS/Arch:           linux/{}\n Host:              {}\n",
        env!("CARGO_PKG_VERSION"),
        crate::api::API_VERSION,
        go_arch(),
        client.host(),
    ));
    let v: VersionResponse = match client.get("/version").await {
        Ok(v) => v,
        Err(e) => {
            out("\n");
            return e.into();
        }
    };
    out(&format!(
        "\nServer: {}\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  Git commit:       {}\n  Built:            {}\n  OS/Arch:          {}/{}\n  Kernel:           {}\n",
        v.platform.name,
        v.version,
        v.api_version,
        v.min_api_version,
        v.git_commit,
        v.build_time,
        v.os,
        v.arch,
        v.kernel_version,
    ));
    Outcome::Exit(0)
}

/// `netd info`.
async fn info(client: &Client) -> Outcome {
    let i: InfoResponse = match client.get("/info").await {
        Ok(i) => i,
        Err(e) => return e.into(),
    };
    out(&format!(
        "Server:\n Containers: {}\n  Running: {}\n  Stopped: {}\n Networks: {}\n Server Version: {}\n Plugins:\n  Network: {}\n Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}\n CPUs: {}\n Total Memory: {}\n Name: {}\n Daemon: {}\n",
        i.containers,
        i.containers_running,
        i.containers_stopped,
        i.networks,
        i.server_version,
        i.plugins.network.join(" "),
        i.kernel_version,
        i.operating_system,
        i.os_type,
        i.architecture,
        i.ncpu,
        human_bytes(i.mem_total),
        i.name,
        client.host(),
    ));
    for w in &i.warnings {
        err(&format!("WARNING: {w}"));
    }
    Outcome::Exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("netd").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn host_flag_is_global_with_a_default() {
        // The default applies only when NETD_HOST is not set around the tests.
        if std::env::var_os("NETD_HOST").is_none() {
            assert_eq!(parse(&["version"]).host, DEFAULT_HOST);
        }
        assert_eq!(
            parse(&["-H", "unix:///tmp/s", "info"]).host,
            "unix:///tmp/s"
        );
        assert_eq!(
            parse(&["network", "ls", "-H", "unix:///tmp/s"]).host,
            "unix:///tmp/s"
        );
    }

    #[test]
    fn daemon_takes_its_own_flags() {
        let cli = parse(&["daemon", "--socket", "/tmp/d.sock", "--prefix", "t1"]);
        let Command::Daemon(args) = cli.command else {
            panic!("not daemon")
        };
        assert_eq!(args.socket, Some(PathBuf::from("/tmp/d.sock")));
        assert_eq!(args.prefix.as_deref(), Some("t1"));
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
    }
}
