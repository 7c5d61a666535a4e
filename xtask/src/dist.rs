//! `cargo xtask dist`: the Debian package, built with cargo-deb from the
//! release binary and `[package.metadata.deb]` in netd/Cargo.toml.
//!
//! The assets generated from the binary itself, shell completions and man
//! pages (from its clap definitions), are written first under
//! `target/release/dist/`, where the package metadata takes them from.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, say};
use crate::setup::{self, Scope};

/// Completion scripts: `netd completion SHELL` and the file each goes to
/// under `target/release/dist/completions/`.
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "netd.bash"),
    ("zsh", "_netd"),
    ("fish", "netd.fish"),
];

/// Sets up, then builds the package; returns its path.
pub fn dist() -> Result<PathBuf> {
    setup::ensure(Scope::Build)?;
    build()
}

/// For callers that have set up already (`cargo xtask test`).
pub fn build() -> Result<PathBuf> {
    setup::cargo_deb()?;
    cmd::release_build()?;
    let release = crate::target_dir().join("release");
    generate_assets(&release)?;
    let out = crate::target_dir().join("debian");
    fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut cargo_deb = cmd::cargo();
    cargo_deb
        .args(["deb", "--package", "netd", "--no-build", "--output"])
        .arg(&out);
    say!("$ {}", cmd::show(&cargo_deb));
    let built = cargo_deb.output().context("cannot run cargo deb")?;
    if !built.status.success() {
        bail!(
            "cargo deb failed ({}): {}",
            built.status,
            String::from_utf8_lossy(&built.stderr)
        );
    }
    // cargo deb prints the package's path last.
    let stdout = String::from_utf8_lossy(&built.stdout);
    let deb = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo deb named no package: {stdout}"))?;
    say!("package: {}", deb.display());
    Ok(deb)
}

/// Completions and gzipped man pages from the release binary, into
/// `release/dist/` (emptied first, so no page of a removed command stays).
fn generate_assets(release: &Path) -> Result<()> {
    let netd = release.join("netd");
    let dist = release.join("dist");
    if dist.exists() {
        fs::remove_dir_all(&dist).with_context(|| format!("cannot empty {}", dist.display()))?;
    }
    let completions = dist.join("completions");
    fs::create_dir_all(&completions)?;
    for (shell, file) in COMPLETIONS {
        let out = Command::new(&netd)
            .args(["completion", shell])
            .output()
            .with_context(|| format!("cannot run {}", netd.display()))?;
        if !out.status.success() {
            bail!("netd completion {shell} failed ({})", out.status);
        }
        fs::write(completions.join(file), out.stdout)?;
    }
    let man = dist.join("man");
    cmd::run(Command::new(&netd).arg("manpages").arg(&man))?;
    // Debian installs man pages compressed; -n keeps names and times out
    // of the archive, so a rebuild gives the same bytes.
    let pages: Vec<PathBuf> = fs::read_dir(&man)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    cmd::run(Command::new("gzip").args(["-9", "-n", "-f"]).args(&pages))?;
    say!(
        "generated {} completion scripts and {} man pages",
        COMPLETIONS.len(),
        pages.len()
    );
    Ok(())
}
