//! Builds the kernel object (`netd-ebpf`, bin `netd`) for bpfel-unknown-none
//! with aya-build, so a plain `cargo build -p netd` produces a daemon with
//! its eBPF programs embedded (`$OUT_DIR/netd`, see `dataplane`).
//!
//! Needs the `nightly` toolchain with `rust-src` (for `-Z build-std=core`)
//! and `bpf-linker` in PATH (TOOLCHAIN.md). `AYA_BUILD_SKIP=1` skips the
//! eBPF build (e.g. for `cargo check` on a machine without bpf-linker); the
//! `include_bytes_aligned!` in `dataplane` then fails to find the object, so
//! only use it where nothing needs to compile `dataplane`.
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    // The crates sit next to each other in the workspace; finding them by
    // path keeps the build script free of a cargo_metadata dependency
    // (aya-build 0.2.0 does not re-export it).
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR")
            .ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR not set"))?,
    );
    let workspace = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", manifest_dir.display()))?;
    let ebpf_dir = workspace.join("netd-ebpf");
    let common_dir = workspace.join("netd-common");
    for dir in [&ebpf_dir, &common_dir] {
        if !dir.join("Cargo.toml").is_file() {
            return Err(anyhow!(
                "{} is not a crate - is the workspace complete?",
                dir.display()
            ));
        }
    }
    // aya-build watches the eBPF crate's directory; the object also embeds
    // netd-common (map layouts), which aya-build would only notice through a
    // build-dependency on netd-ebpf. Watch it directly instead.
    println!("cargo:rerun-if-changed={}", common_dir.display());

    // aya-build forwards every stderr line of the nested cargo as a
    // `cargo:warning`, so each "Compiling ..." line would show up as a
    // warning of netd. Quiet drops only those status lines; compiler
    // diagnostics travel as JSON on stdout and are still shown.
    // SAFETY: build scripts are single-threaded here; nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("CARGO_TERM_QUIET", "true") };

    let root_dir = ebpf_dir
        .to_str()
        .context("the netd-ebpf path is not UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "netd-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
    .context("building the eBPF object failed - needs `rustup toolchain install nightly --component rust-src` and bpf-linker in PATH (see TOOLCHAIN.md)")
}
