//! Shell completions and man pages, generated from the clap definitions of
//! [`super::Cli`], so they can never disagree with what the binary parses.
//! The package build (`cargo xtask dist`) runs both on the binary it
//! packages; `netd completion SHELL` also serves users who installed netd
//! some other way.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

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
    let mut cmd = super::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    let mut pending = vec![cmd];
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let page = clap_mangen::Man::new(cmd)
            .section(MAN_SECTION)
            .manual("System Administration");
        written.push(page.generate_to(dir)?);
    }
    written.sort();
    Ok(written)
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
