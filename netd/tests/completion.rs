//! `netd completion SHELL` in the real shells: bash's completion function
//! and fish's `complete -C` answer a partial command line with netd's
//! commands and flags, and zsh completes one typed at an interactive
//! prompt (driven through a pseudo-terminal with zsh's own `zpty`).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{stderr, stdout};

/// A directory holding the completion scripts, removed on drop.
struct Scripts(PathBuf);

impl Scripts {
    fn new(name: &str) -> Scripts {
        let dir =
            std::env::temp_dir().join(format!("netd-completion-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scripts(dir)
    }

    /// Writes `netd completion shell` to `file` in the directory.
    fn write(&self, shell: &str, file: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_netd"))
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let path = self.0.join(file);
        std::fs::write(&path, out.stdout).unwrap();
        path.display().to_string()
    }
}

impl Drop for Scripts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn shell(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (cargo xtask setup installs it): {e}"))
}

/// What bash's `_netd` offers for the words typed so far (the last one
/// being completed).
fn bash_completes(script: &str, words: &[&str]) -> Vec<String> {
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source {script}; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE=\"{line}\"; \
         COMP_POINT=${{#COMP_LINE}}; _netd netd \"{cur}\" \"{prev}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        words = words.join(" "),
        line = words.join(" "),
        cur = words[cword],
    );
    let out = shell("bash", &["-c", &program]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_commands_and_flags() {
    let dir = Scripts::new("bash");
    let script = dir.write("bash", "netd");
    assert_eq!(bash_completes(&script, &["netd", "net"]), vec!["network"]);
    assert_eq!(
        bash_completes(&script, &["netd", "system", "cleanup", "--pr"]),
        vec!["--prefix"]
    );
    let subcommands = bash_completes(&script, &["netd", "container", ""]);
    for want in ["create", "run", "ls", "rm", "exec"] {
        assert!(
            subcommands.iter().any(|s| s == want),
            "{want} in {subcommands:?}"
        );
    }
    assert!(
        !subcommands.iter().any(|s| s == "manpages"),
        "hidden commands are not offered"
    );
}

#[test]
fn fish_completes_commands_with_their_help() {
    let dir = Scripts::new("fish");
    let script = dir.write("fish", "netd.fish");
    let program =
        format!("source {script}; complete -C 'netd net'; complete -C 'netd system cleanup --st'");
    let out = shell("fish", &["--no-config", "-c", &program]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "network\tManage networks".to_string(),
            "--state-dir\tAlso remove this state directory (networks and containers are forgotten)"
                .to_string(),
        ]
    );
}

#[test]
fn zsh_completes_at_an_interactive_prompt() {
    let dir = Scripts::new("zsh");
    dir.write("zsh", "_netd");
    // An interactive zsh on a pseudo-terminal, with the script's directory
    // first on fpath; "netd sys<TAB>" is typed, and `zpty -r` waits until
    // the line shows the completed word (the outer timeout ends a wait
    // that would never succeed).
    let driver = format!(
        "zmodload zsh/zpty\n\
         zpty z 'zsh -f -i'\n\
         zpty -w z 'fpath=({dir} $fpath); autoload -U compinit; compinit -u -D'\n\
         zpty -w -n z $'netd sys\\t'\n\
         zpty -r z line '*netd system*'\n\
         zpty -d z\n\
         print completed\n",
        dir = dir.0.display()
    );
    let script = dir.0.join("drive.zsh");
    std::fs::write(&script, driver).unwrap();
    let out = shell("timeout", &["60", "zsh", "-f", script.to_str().unwrap()]);
    assert!(
        out.status.success() && stdout(&out).trim_end().ends_with("completed"),
        "zsh did not complete `netd sys`: {}{}",
        stdout(&out),
        stderr(&out)
    );
}
