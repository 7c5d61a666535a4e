//! `cargo xtask run`: a development daemon that keeps to `target/`, its own
//! bpffs directory and the `dev` name prefix, so it can run beside an
//! installed netd.

use std::ffi::OsString;
use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::cmd::{self, say};
use crate::setup::{self, Scope};
use crate::target_dir;

pub fn run(daemon_args: &[OsString]) -> Result<()> {
    setup::require_root(
        "`cargo xtask run`",
        "the daemon creates namespaces and links and loads eBPF programs",
    )?;
    setup::ensure(Scope::All)?;
    cmd::run(cmd::cargo().args(["build", "--package", "netd"]))?;

    let target = target_dir();
    let netd = target.join("debug").join("netd");
    let dev = target.join("netd-dev");
    let state = dev.join("state");
    let socket = dev.join("netd.sock");
    let config = dev.join("netd.toml");
    fs::create_dir_all(&state).with_context(|| format!("cannot create {}", state.display()))?;
    // A config file rather than flags, so that flags given to xtask can
    // override any of it (the daemon rejects a flag given twice), and so that
    // /etc/netd/netd.toml, read when no --config is given, stays out of it.
    fs::write(&config, dev_config(&state, &socket)?)
        .with_context(|| format!("cannot write {}", config.display()))?;

    let mut daemon = Command::new(&netd);
    daemon.arg("daemon");
    let own_config = daemon_args
        .iter()
        .any(|arg| arg == "--config" || arg.to_string_lossy().starts_with("--config="));
    if !own_config {
        daemon.arg("--config").arg(&config);
    }
    daemon.args(daemon_args);

    let host = format!("unix://{}", socket.display());
    say!("development daemon: config {}", config.display());
    say!("talk to it from another shell:");
    say!("  NETD_HOST={host} {} network ls", netd.display());
    say!("  DOCKER_HOST={host} docker network ls");
    say!("  curl -s http://{DEV_METRICS}/metrics");
    say!("stop it with Ctrl-C (SIGINT) or SIGTERM");
    say!("$ {}", cmd::show(&daemon));
    // The daemon replaces this process rather than running as its child
    // (cargo run replaces itself with xtask the same way): SIGINT from the
    // terminal and SIGTERM sent to the PID of `cargo xtask run` reach the
    // daemon itself, with nobody in between to forward or lose them, and
    // its exit status is the command's. `exec` returns only on failure.
    let err = daemon.exec();
    Err(err).with_context(|| format!("cannot start {}", netd.display()))
}

const DEV_METRICS: &str = "127.0.0.1:9479";

fn dev_config(state: &Path, socket: &Path) -> Result<String> {
    Ok(format!(
        "# Written by `cargo xtask run` on every start: edit xtask/src/run.rs\n\
         # instead, or pass flags (`cargo xtask run -- --uplink eth0`).\n\
         state-dir = {}\n\
         socket = {}\n\
         bpffs = \"/sys/fs/bpf/netd-dev\"\n\
         metrics-addr = \"{DEV_METRICS}\"\n\
         prefix = \"dev\"\n",
        toml_string(state)?,
        toml_string(socket)?,
    ))
}

fn toml_string(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))?;
    Ok(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}
