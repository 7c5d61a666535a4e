//! Shell completions and man pages, generated from the clap definitions of
//! [`super::Cli`], so they can never disagree with what the binary parses.
//! The package build (`cargo xtask dist`) runs both on the binary it
//! packages; `netd completion SHELL` also serves users who installed netd
//! some other way.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::config::{DEFAULT_CONFIG, Settings};

/// Section of every page: netd is a system administration command.
pub const MAN_SECTION: &str = "8";

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Writes the completion script for `shell` to `out`.
pub fn completion(shell: Shell, out: &mut dyn Write) {
    let mut cmd = super::Cli::command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// Writes `netd.8` and one page per subcommand, nested ones included
/// (`netd-network-ls.8`), into `dir`; returns the files written, sorted.
pub fn manpages(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    // As `clap_mangen::generate_to`, but in section 8: building the
    // command gives every subcommand its full display name
    // (`netd-network-ls`), which titles and names its page.
    let mut top = super::Cli::command().disable_help_subcommand(true);
    top.build();
    let source = format!("netd {}", env!("CARGO_PKG_VERSION"));
    let mut written = Vec::new();
    let mut pending = vec![top.clone()];
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let is_top = cmd.get_name() == top.get_name();
        let page = clap_mangen::Man::new(cmd)
            .section(MAN_SECTION)
            .source(&source)
            .manual("System Administration");
        let mut roff = Vec::new();
        page.render(&mut roff)?;
        if is_top {
            roff.extend(top_page_sections(&top).into_bytes());
        }
        let path = dir.join(page.get_filename());
        std::fs::write(&path, roff)?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

/// What netd(8) adds to what clap knows of the command: the files the
/// daemon uses (from the defaults the configuration documents), the
/// environment variables (from the arguments that read one), and related
/// pages.
fn top_page_sections(top: &clap::Command) -> String {
    use roff::{Roff, bold, roman};
    let defaults = Settings::default();
    let mut r = Roff::new();
    r.control("SH", ["FILES"]);
    for (path, what) in [
        (
            DEFAULT_CONFIG.to_string(),
            "The daemon's configuration; every setting is documented in it. \
             `systemctl reload netd` applies log-level and dns at once.",
        ),
        (
            defaults.socket.display().to_string(),
            "The API socket (also for the docker CLI, with DOCKER_HOST).",
        ),
        (
            defaults.state_dir.display().to_string(),
            "The state: networks, containers, their processes' logs.",
        ),
        (
            defaults.bpffs.display().to_string(),
            "Pinned eBPF maps and links: the data plane, which outlives the daemon \
             (netd-system-cleanup(8) removes it).",
        ),
    ] {
        r.control("TP", []).text([bold(path)]).text([roman(what)]);
    }
    r.control("SH", ["ENVIRONMENT"]);
    let mut pending = vec![top.clone()];
    let mut seen = std::collections::BTreeMap::new();
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().cloned());
        for arg in cmd.get_arguments() {
            if let (Some(env), Some(help)) = (arg.get_env(), arg.get_help()) {
                let flag = arg
                    .get_long()
                    .map_or(String::new(), |l| format!(" (--{l})"));
                seen.entry(env.to_string_lossy().into_owned())
                    .or_insert(format!("{help}{flag}"));
            }
        }
    }
    for (env, help) in seen {
        r.control("TP", []).text([bold(env)]).text([roman(help)]);
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(
        "netd-daemon(8), netd-system-cleanup(8), systemctl(1), docker(1), ip-netns(8), bpftool(8)",
    )]);
    r.to_roff()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_command_gets_a_page() {
        let dir = std::env::temp_dir().join(format!("netd-man-{}", std::process::id()));
        let written = manpages(&dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for page in [
            "netd.8",
            "netd-daemon.8",
            "netd-network.8",
            "netd-network-ls.8",
            "netd-container-run.8",
            "netd-system-cleanup.8",
            "netd-completion.8",
        ] {
            assert!(names.iter().any(|n| n == page), "{page} in {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("manpages") || n.contains("help")),
            "hidden commands and help get no page: {names:?}"
        );
        let top = std::fs::read_to_string(dir.join("netd.8")).unwrap();
        assert!(
            top.starts_with(".ie"),
            "roff: {}",
            &top[..40.min(top.len())]
        );
        assert!(top.contains(".TH netd 8"), "section 8 title");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn completion_scripts_name_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            completion(shell, &mut out);
            let script = String::from_utf8(out).unwrap();
            for word in ["network", "container", "cleanup", "prefix"] {
                assert!(script.contains(word), "{shell}: {word}");
            }
        }
    }
}
