//! Running commands: printed before they run, failing loudly.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::{env, os::unix::fs::PermissionsExt as _};

use anyhow::{Context as _, Result, bail};

/// Prints one line of progress, prefixed so it stands out from what the
/// commands print. It goes to stderr, like cargo's own progress, so the two
/// interleave in order.
macro_rules! say {
    ($($arg:tt)*) => { eprintln!("xtask: {}", format_args!($($arg)*)) };
}
pub(crate) use say;

/// The cargo that runs xtask (cargo tells its children), in the workspace
/// root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(crate::workspace_root());
    cmd
}

/// Cargo of the nightly toolchain, for what needs `-Z` flags.
pub fn nightly_cargo() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"])
        .current_dir(crate::workspace_root());
    cmd
}

/// The release build of netd and the bench, which the bench runs and the
/// package takes netd from: one command for both, so that neither builds
/// netd's dependencies with other features than the other and rebuilds
/// them.
pub fn release_build() -> Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "netd",
        "--package",
        "bench",
    ]))
}

/// Runs `cmd` with the terminal attached, after printing it; fails unless it
/// exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = show(cmd);
    say!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly, for a check: its stdout if it ran and exited 0.
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The executable `name` that a command started by name would run.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| {
            path.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `cmd` as one would type it: environment settings, then the command line.
/// A PATH that only prepends to ours is shown as `DIR:$PATH`, and cargo by
/// its name rather than its toolchain path.
pub fn show(cmd: &Command) -> String {
    let ours = env::var_os("PATH").unwrap_or_default();
    let mut words = Vec::new();
    for (key, value) in cmd.get_envs() {
        let Some(value) = value else { continue };
        let value = value.to_string_lossy();
        let value = match value.strip_suffix(&*ours.to_string_lossy()) {
            Some(prefix) if key == "PATH" && !ours.is_empty() => format!("{prefix}$PATH"),
            _ => value.into_owned(),
        };
        words.push(format!("{}={value}", key.to_string_lossy()));
    }
    let program = Path::new(cmd.get_program());
    words.push(match program.file_name() {
        Some(name) if name == OsStr::new("cargo") => "cargo".into(),
        _ => program.to_string_lossy().into_owned(),
    });
    words.extend(cmd.get_args().map(|arg| arg.to_string_lossy().into_owned()));
    words.join(" ")
}
