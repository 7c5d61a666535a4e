//! Prerequisites, checked one by one and installed only where missing, so
//! that a fresh machine and a ready one both end in the same state.

use std::env;
use std::ffi::OsString;
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::cmd::{self, find_on_path, probe, say};

/// The LLVM major version of the nightly rustc. bpf-linker must link the
/// same one, or it cannot read the bitcode rustc hands it; the Debian
/// packages and the bpf-linker feature are named after it.
const LLVM_MAJOR: u32 = 22;

/// The bpf-linker release known to build with the stable rustc here and to
/// support `LLVM_MAJOR`.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// What the tests use besides Rust: links and namespaces (`ip`), traffic
/// (`ping`, `iperf3`, `socat` for UDP echo, `python3` for scripted servers), DNS (`dig`), datapath
/// inspection (`bpftool`, `tcpdump`), checksum offload switched off to
/// verify translated checksums on the wire (`ethtool`), the firewall
/// tools whose output proves netd added no rules (`nft`, `iptables-save`),
/// Prometheus and `promtool` (monitoring), the shells the completion
/// scripts are for (`zsh`, `fish`; bash's loader from `bash-completion`),
/// `systemd-analyze` and `deb-systemd-helper` (the unit and the package's
/// scripts), the cluster store the tests start themselves (`etcd`; the
/// package starts no server where systemd is not running, and the tests'
/// servers use their own ports and data directories either way), and the
/// container runtime the CNI plugin is tested under: podman with its CNI
/// backend, the CNI reference plugins (podman's own default network is
/// theirs; the bench measures against them too), runc (crun, podman's
/// default, refuses hybrid cgroup hierarchies) and a static busybox for
/// the containers' root filesystem.
const TEST_PACKAGES: &[&str] = &[
    "etcd-server",
    "iproute2",
    "iputils-ping",
    "iperf3",
    "bind9-dnsutils",
    "bpftool",
    "tcpdump",
    "ethtool",
    "socat",
    "python3",
    "nftables",
    "iptables",
    "prometheus",
    "zsh",
    "fish",
    "bash-completion",
    "systemd",
    "podman",
    "containernetworking-plugins",
    "runc",
    "busybox-static",
];

/// The cargo-deb release known to build with the stable rustc here
/// (`cargo xtask dist`).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// Where maps and programs get pinned; the daemon pins below it.
const BPFFS: &str = "/sys/fs/bpf";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// What building netd needs (its build script builds the eBPF object),
    /// and so what linting it needs.
    Build,
    /// Everything: also what running the daemon and the tests need.
    All,
}

pub fn ensure(scope: Scope) -> Result<()> {
    rust_components()?;
    nightly_llvm()?;
    debian_packages(scope)?;
    bpf_linker()?;
    if scope == Scope::All {
        bpffs()?;
    }
    Ok(())
}

/// Fails with a remedy unless xtask runs as root: `what` needs it, `why`
/// says what for.
pub fn require_root(what: &str, why: &str) -> Result<()> {
    if !is_root()? {
        let again: Vec<String> = env::args().skip(1).collect();
        bail!(
            "{what} needs root ({why}): run it as root, e.g. \
             `sudo -E env \"PATH=$PATH\" cargo xtask {}`",
            again.join(" ")
        );
    }
    Ok(())
}

fn is_root() -> Result<bool> {
    // The second field of `Uid:` is the effective user ID.
    let status = std::fs::read_to_string("/proc/self/status")
        .context("cannot read /proc/self/status to tell whether we are root")?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no effective user ID in /proc/self/status")?;
    Ok(euid == "0")
}

/// Components of the toolchain xtask runs on (lint) and of nightly (the
/// eBPF crate is built with `-Z build-std=core`, which needs `rust-src`).
fn rust_components() -> Result<()> {
    // rustup tells the programs it starts which toolchain it picked.
    let active = env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "default".into());
    components(None, &active, &["clippy", "rustfmt"])?;
    components(Some("nightly"), "nightly", &["rust-src", "clippy"])
}

fn components(toolchain: Option<&str>, label: &str, wanted: &[&str]) -> Result<()> {
    let toolchain_args = toolchain
        .map(|t| vec!["--toolchain", t])
        .unwrap_or_default();
    let installed = probe(
        Command::new("rustup")
            .args(["component", "list", "--installed"])
            .args(&toolchain_args),
    )
    .with_context(|| {
        format!("cannot list the components of the {label} toolchain: are rustup and that toolchain installed?")
    })?;
    let has = |c: &str| {
        installed
            .lines()
            .any(|line| line == c || line.starts_with(&format!("{c}-")))
    };
    let missing: Vec<&str> = wanted.iter().copied().filter(|c| !has(c)).collect();
    if !missing.is_empty() {
        say!(
            "installing {} for the {label} toolchain ...",
            missing.join(" ")
        );
        cmd::run(
            Command::new("rustup")
                .args(["component", "add"])
                .args(&missing)
                .args(&toolchain_args),
        )?;
    }
    say!("{label} toolchain: {} ok", wanted.join(" "));
    Ok(())
}

/// The nightly toolchain compiles the eBPF crate to LLVM bitcode that
/// bpf-linker must read: their LLVM majors must agree.
fn nightly_llvm() -> Result<()> {
    let version = probe(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))
        .context("no nightly toolchain: install it with `rustup toolchain install nightly`")?;
    let llvm = version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .context("`rustc +nightly -vV` names no LLVM version")?
        .trim();
    if llvm.split('.').next() != Some(&LLVM_MAJOR.to_string()) {
        bail!(
            "nightly rustc uses LLVM {llvm}, but xtask sets up bpf-linker for LLVM {LLVM_MAJOR}: \
             change LLVM_MAJOR in xtask/src/setup.rs"
        );
    }
    say!("nightly rustc uses LLVM {llvm} ok");
    Ok(())
}

fn debian_packages(scope: Scope) -> Result<()> {
    // bpf-linker links libLLVM at run time and needs the headers and Polly
    // to build; etcd-client's build script compiles etcd's protobuf files
    // with protoc, which needs the well-known types from libprotobuf-dev.
    let mut wanted = vec![
        format!("llvm-{LLVM_MAJOR}-dev"),
        format!("libpolly-{LLVM_MAJOR}-dev"),
        "protobuf-compiler".to_string(),
        "libprotobuf-dev".to_string(),
    ];
    if scope == Scope::All {
        wanted.extend(TEST_PACKAGES.iter().map(|p| p.to_string()));
        // The tests use only the docker CLI, as a client of netd's socket.
        // Machines of this kind ship it in /usr/local/bin; docker.io brings
        // it elsewhere (with an engine that nothing here starts).
        match find_on_path("docker") {
            Some(path) => say!("docker CLI ok ({})", path.display()),
            None => wanted.push("docker.io".into()),
        }
    }
    if find_on_path("dpkg-query").is_none() {
        bail!(
            "xtask installs with apt-get, and this is not a Debian system: install the equivalents of {} yourself",
            wanted.join(" ")
        );
    }
    let missing: Vec<&str> = wanted
        .iter()
        .map(String::as_str)
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        say!("Debian packages ok: {}", wanted.join(" "));
        return Ok(());
    }
    require_root(&format!("installing {}", missing.join(" ")), "apt-get")?;
    say!("installing {} ...", missing.join(" "));
    // Wait for another apt or dpkg rather than fail on its lock.
    let lock_wait = "DPkg::Lock::Timeout=300";
    cmd::run(Command::new("apt-get").args(["-q", "-o", lock_wait, "update"]))?;
    cmd::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            // needrestart would otherwise scan for, and may restart, services.
            .env("NEEDRESTART_SUSPEND", "1")
            .args([
                "-q",
                "-o",
                lock_wait,
                "install",
                "-y",
                "--no-install-recommends",
            ])
            .args(&missing),
    )?;
    say!("Debian packages ok: {}", wanted.join(" "));
    Ok(())
}

fn dpkg_installed(package: &str) -> bool {
    probe(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim_end().ends_with(" installed"))
}

fn bpf_linker() -> Result<()> {
    match check_bpf_linker() {
        Ok(found) => {
            say!("bpf-linker ok ({found})");
            return Ok(());
        }
        Err(problem) => say!(
            "bpf-linker {problem}: installing bpf-linker {BPF_LINKER_VERSION} for LLVM {LLVM_MAJOR} ..."
        ),
    }
    // bpf-linker's build script finds libLLVM through LLVM_PREFIX, and
    // llvm-sys finds llvm-config on PATH; Debian keeps both under
    // /usr/lib/llvm-N, and its /usr/bin/llvm-config is not versioned.
    let prefix = format!("/usr/lib/llvm-{LLVM_MAJOR}");
    let mut path = OsString::from(format!("{prefix}/bin:"));
    path.push(env::var_os("PATH").unwrap_or_default());
    cmd::run(
        cmd::cargo()
            .env("LLVM_PREFIX", &prefix)
            .env("PATH", path)
            .args(["install", "bpf-linker", "--locked", "--force"])
            .args(["--version", BPF_LINKER_VERSION, "--no-default-features"])
            .args(["--features", &format!("llvm-{LLVM_MAJOR}")]),
    )?;
    // cargo installs into $CARGO_INSTALL_ROOT/bin or $CARGO_HOME/bin; rustc
    // runs whichever bpf-linker PATH finds first, so check that one.
    match check_bpf_linker() {
        Ok(found) => {
            say!("bpf-linker ok ({found})");
            Ok(())
        }
        Err(problem) => bail!(
            "bpf-linker was installed, but the bpf-linker on PATH {problem}: put cargo's bin \
             directory ($CARGO_HOME/bin, usually ~/.cargo/bin) first on PATH"
        ),
    }
}

/// What the `bpf-linker` on PATH is if it runs and links `LLVM_MAJOR`, or
/// what is wrong with it.
fn check_bpf_linker() -> Result<String, String> {
    let path = find_on_path("bpf-linker").ok_or("is not on PATH")?;
    let shown = path.display();
    let version = probe(Command::new(&path).arg("--version"))
        .ok_or_else(|| format!("at {shown} does not run"))?;
    let version = version.trim();
    // The default build links libLLVM dynamically (Debian names it
    // libLLVM.so.N.M, upstream libLLVM-N.so); a static one can't be asked.
    let ldd = probe(Command::new("ldd").arg(&path)).unwrap_or_default();
    let llvm: Vec<&str> = ldd
        .lines()
        .map(str::trim)
        .filter(|line| line.contains("libLLVM"))
        .collect();
    let wanted = [
        format!("libLLVM.so.{LLVM_MAJOR}."),
        format!("libLLVM-{LLVM_MAJOR}."),
    ];
    match llvm.as_slice() {
        [] => Ok(format!(
            "{version} at {shown}, statically linked: trusted to be LLVM {LLVM_MAJOR}"
        )),
        [line] if wanted.iter().any(|w| line.contains(w.as_str())) => {
            Ok(format!("{version} at {shown}, LLVM {LLVM_MAJOR}"))
        }
        _ => Err(format!(
            "at {shown} links {} instead of LLVM {LLVM_MAJOR}",
            llvm.join(", ")
        )),
    }
}

/// cargo-deb, for `cargo xtask dist`: installed (about three minutes)
/// unless this version is on PATH.
pub fn cargo_deb() -> Result<()> {
    let found = probe(Command::new("cargo-deb").arg("--version")).unwrap_or_default();
    if found.split_whitespace().last() == Some(CARGO_DEB_VERSION) {
        say!("cargo-deb {CARGO_DEB_VERSION} ok");
        return Ok(());
    }
    say!("installing cargo-deb {CARGO_DEB_VERSION} ...");
    cmd::run(cmd::cargo().args([
        "install",
        "cargo-deb",
        "--locked",
        "--force",
        "--version",
        CARGO_DEB_VERSION,
    ]))
}

fn bpffs() -> Result<()> {
    let fs_type = probe(Command::new("stat").args(["-f", "-c", "%T", BPFFS])).unwrap_or_default();
    if fs_type.trim() == "bpf_fs" {
        say!("bpffs at {BPFFS} ok");
        return Ok(());
    }
    require_root(&format!("mounting bpffs at {BPFFS}"), "mount")?;
    say!("mounting bpffs at {BPFFS} ...");
    cmd::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
}
