//! The Debian package of `cargo xtask dist`, installed into this machine
//! with dpkg as an operator would: its files with their modes, a unit that
//! `systemd-analyze verify` accepts, a conffile, the state directory the
//! postinst makes; then the installed daemon runs as the unit starts it
//! (`netd daemon`, configured by /etc/netd/netd.toml, which the test edits
//! as an operator would) and is stopped with SIGTERM, which leaves its data
//! plane in place; and a purge leaves nothing: no file, no link, no
//! namespace, no pin, no program on the root cgroup.
//!
//! `cargo xtask test` builds the package and names it in `NETD_DEB`. The
//! test needs a machine without the netd package (it checks first). Its
//! daemon gets a prefix, pin directory, uplink and metrics port of its own
//! through the configuration file, so that it touches nothing of the
//! machine's or of other tests (whose names may start with `netd-`).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{alive, random_prefix, require_root, stderr, stdout};

/// Where `cargo xtask test` puts the package's path.
const PACKAGE_ENV: &str = "NETD_DEB";

const DIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist");

/// Files the package installs, with their modes.
const FILES: [(&str, u32); 10] = [
    ("/usr/bin/netd", 0o755),
    ("/opt/cni/bin/netd", 0o755),
    ("/etc/netd/netd.toml", 0o644),
    ("/usr/lib/systemd/system/netd.service", 0o644),
    ("/usr/share/bash-completion/completions/netd", 0o644),
    ("/usr/share/zsh/vendor-completions/_netd", 0o644),
    ("/usr/share/fish/vendor_completions.d/netd.fish", 0o644),
    ("/usr/share/man/man8/netd.8.gz", 0o644),
    ("/usr/share/netd/prometheus/alerts.yml", 0o644),
    ("/usr/share/netd/grafana/netd.json", 0o644),
];

/// What the package, its scripts or its daemon make besides the files, and
/// what must therefore be gone after a purge.
const MADE: [&str; 5] = [
    "/var/lib/netd",
    "/run/netd",
    "/etc/netd",
    "/usr/share/netd",
    "/etc/systemd/system/multi-user.target.wants/netd.service",
];

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

fn installed() -> bool {
    stdout(&run("dpkg-query", &["-W", "-f=${Status}", "netd"])).contains(" installed")
}

/// The links, namespaces and pins of the test daemon's `prefix`.
fn netd_objects(prefix: &str) -> Vec<String> {
    let links = common::ip_json(&["link", "show"]);
    let mut found: Vec<String> = links
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| netd::names::is_own_link(prefix, n))
        .map(|n| format!("link {n}"))
        .collect();
    if let Ok(dir) = std::fs::read_dir("/run/netns") {
        found.extend(
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{prefix}-")))
                .map(|n| format!("namespace {n}")),
        );
    }
    if Path::new(&bpffs(prefix)).exists() {
        found.push(bpffs(prefix));
    }
    found
}

fn bpffs(prefix: &str) -> String {
    format!("/sys/fs/bpf/netd-pkg-{prefix}")
}

/// Everything of the package and of the test daemon this machine has: a
/// machine without netd has nothing.
fn traces(prefix: &str) -> Vec<String> {
    let mut found = netd_objects(prefix);
    if installed() {
        found.push("the netd package".into());
    }
    for path in FILES.iter().map(|(p, _)| *p).chain(MADE) {
        if Path::new(path).exists() {
            found.push(path.to_string());
        }
    }
    if let Ok(info) = std::fs::read_dir("/var/lib/dpkg/info") {
        found.extend(
            info.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("netd."))
                .map(|n| format!("/var/lib/dpkg/info/{n}")),
        );
    }
    found
}

/// The package installed, a veth standing in for the uplink, and the
/// installed daemon while it runs. Dropping it purges the package and
/// cleans up whatever a failure left.
struct Machine {
    /// The test daemon's prefix: `p` and three random characters, never a
    /// prefix of another test's (`t...`), the bench's (`bd..`) or `netd`.
    prefix: String,
    uplink: String,
    daemon: Option<Child>,
}

impl Machine {
    fn new() -> Machine {
        let prefix = format!("p{}", &random_prefix()[1..]);
        let uplink = format!("u{prefix}");
        let peer = format!("o{prefix}");
        for args in [
            vec![
                "link", "add", &uplink, "type", "veth", "peer", "name", &peer,
            ],
            vec!["addr", "add", "100.127.254.1/24", "dev", &uplink],
            vec!["link", "set", &uplink, "up"],
            vec!["link", "set", &peer, "up"],
        ] {
            let out = run("ip", &args);
            assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
        }
        Machine {
            prefix,
            uplink,
            daemon: None,
        }
    }

    /// Configures the installed netd as an operator would, in
    /// /etc/netd/netd.toml: the test's prefix, pin directory, uplink and a
    /// free metrics port.
    fn configure(&self) {
        let shipped = std::fs::read_to_string("/etc/netd/netd.toml").unwrap();
        std::fs::write(
            "/etc/netd/netd.toml",
            format!(
                "{shipped}\nprefix = \"{}\"\nbpffs = \"{}\"\nuplink = \"{}\"\nmetrics-addr = \"127.0.0.1:{}\"\n",
                self.prefix,
                bpffs(&self.prefix),
                self.uplink,
                common::free_port()
            ),
        )
        .unwrap();
    }

    /// Starts `/usr/bin/netd daemon` as the unit does, and waits until the
    /// installed CLI reaches it on the default socket.
    fn start_daemon(&mut self) {
        let log =
            std::fs::File::create(std::env::temp_dir().join("netd-package-daemon.log")).unwrap();
        let child = Command::new("/usr/bin/netd")
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !run("/usr/bin/netd", &["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "daemon not ready:\n{}",
                daemon_log()
            );
            sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as `systemctl stop netd`.
    fn stop_daemon(&mut self) {
        let mut child = self.daemon.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert!(child.wait().unwrap().success(), "{}", daemon_log());
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if installed() {
            let _ = run("dpkg", &["--purge", "netd"]);
        }
        if !netd_objects(&self.prefix).is_empty() {
            let _ = run(
                env!("CARGO_BIN_EXE_netd"),
                &[
                    "system",
                    "cleanup",
                    "--force",
                    "--prefix",
                    &self.prefix,
                    "--bpffs",
                    &bpffs(&self.prefix),
                    "--state-dir",
                    "/var/lib/netd",
                ],
            );
        }
        let _ = run("ip", &["link", "del", &self.uplink]);
        if std::thread::panicking() {
            eprintln!("daemon log kept in {}", daemon_log_path().display());
        } else {
            let _ = std::fs::remove_file(daemon_log_path());
        }
    }
}

fn daemon_log_path() -> PathBuf {
    std::env::temp_dir().join("netd-package-daemon.log")
}

fn daemon_log() -> String {
    std::fs::read_to_string(daemon_log_path()).unwrap_or_default()
}

fn mode(path: &str) -> u32 {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "{path} is root's");
    meta.permissions().mode() & 0o7777
}

/// The ids of the links the daemon pinned for the socket hooks and its
/// uplink, as bpftool reads the pins.
fn pinned_link_ids(prefix: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(format!("{}/links", bpffs(prefix))).unwrap() {
        let pin = entry.unwrap().path();
        let out = run(
            "bpftool",
            &["-j", "link", "show", "pinned", pin.to_str().unwrap()],
        );
        let link: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(link["id"].as_u64().unwrap());
    }
    ids
}

#[test]
fn install_run_and_purge_the_debian_package() {
    require_root();
    let deb = PathBuf::from(std::env::var_os(PACKAGE_ENV).unwrap_or_else(|| {
        panic!(
            "{PACKAGE_ENV} names no package: run this test through `cargo xtask test`, \
             or build one with `cargo xtask dist` and set {PACKAGE_ENV} to its path"
        )
    }));
    assert!(deb.exists(), "{}", deb.display());
    assert!(
        !Path::new("/run/systemd/system").exists(),
        "this test plays systemd's part (it starts and stops the installed daemon); \
         where systemd runs, the package's postinst would start the daemon itself"
    );
    let mut machine = Machine::new();
    let prefix = machine.prefix.clone();
    let before = traces(&prefix);
    assert!(
        before.is_empty(),
        "this test installs netd into the machine, which already has some: {before:?}"
    );

    let out = run("dpkg", &["--install", deb.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "dpkg -i: {}{}",
        stdout(&out),
        stderr(&out)
    );
    for (path, want) in FILES {
        assert_eq!(mode(path), want, "mode of {path}");
    }
    assert_eq!(
        mode("/var/lib/netd"),
        0o700,
        "the state directory is private"
    );
    let conffiles = stdout(&run("dpkg-query", &["-W", "-f=${Conffiles}", "netd"]));
    assert!(conffiles.contains("/etc/netd/netd.toml"), "{conffiles}");
    for (installed, shipped) in [
        ("/etc/netd/netd.toml", "netd.toml"),
        ("/usr/lib/systemd/system/netd.service", "netd.service"),
        (
            "/usr/share/netd/prometheus/alerts.yml",
            "prometheus/alerts.yml",
        ),
    ] {
        assert_eq!(
            std::fs::read_to_string(installed).unwrap(),
            std::fs::read_to_string(Path::new(DIST).join(shipped)).unwrap(),
            "{installed}"
        );
    }
    // Completions where each shell looks, as the installed binary writes
    // them; a man page for every command.
    for (shell, path) in [
        ("bash", FILES[4].0),
        ("zsh", FILES[5].0),
        ("fish", FILES[6].0),
    ] {
        let generated = run("/usr/bin/netd", &["completion", shell]);
        assert_eq!(
            std::fs::read(path).unwrap(),
            generated.stdout,
            "{path} is `netd completion {shell}`"
        );
    }
    // The CNI plugin answers where runtimes look for it.
    let mut plugin = Command::new("/opt/cni/bin/netd")
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut plugin.stdin.take().unwrap(),
        br#"{"cniVersion": "1.0.0"}"#,
    )
    .unwrap();
    let version = plugin.wait_with_output().unwrap();
    assert!(
        stdout(&version).contains(r#""supportedVersions":["0.4.0","1.0.0","1.1.0"]"#),
        "{}",
        stdout(&version)
    );
    // Each shell finds its script where it was installed, by itself.
    let bash = run(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/bash_completion; __load_completion netd; complete -p netd",
        ],
    );
    assert!(
        stdout(&bash).contains("-F _netd"),
        "{}{}",
        stdout(&bash),
        stderr(&bash)
    );
    let zsh = run(
        "zsh",
        &[
            "-f",
            "-c",
            "autoload -U compinit; compinit -u -D; print -r -- $_comps[netd]",
        ],
    );
    assert_eq!(stdout(&zsh).trim(), "_netd", "{}", stderr(&zsh));
    let fish = run("fish", &["-c", "complete -C 'netd net'"]);
    assert_eq!(
        stdout(&fish).trim(),
        "network\tManage networks",
        "{}",
        stderr(&fish)
    );
    let pages: Vec<String> = std::fs::read_dir("/usr/share/man/man8")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("netd"))
        .collect();
    for page in ["netd.8.gz", "netd-daemon.8.gz", "netd-system-cleanup.8.gz"] {
        assert!(pages.iter().any(|p| p == page), "{page} in {pages:?}");
    }
    let roff = run(
        "gzip",
        &["-dc", "/usr/share/man/man8/netd-system-cleanup.8.gz"],
    );
    assert!(
        stdout(&roff).contains(".TH netd-system-cleanup 8"),
        "{}",
        stdout(&roff)
    );
    // Enabled (the symlink), and a unit systemd accepts.
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/netd.service").exists(),
        "the unit is enabled"
    );
    let verify = run(
        "systemd-analyze",
        &["verify", "--man=no", "/usr/lib/systemd/system/netd.service"],
    );
    assert!(
        verify.status.success() && !stderr(&verify).contains("netd.service"),
        "systemd-analyze verify: {}",
        stderr(&verify)
    );

    // The installed daemon makes its data plane, which outlives it.
    machine.configure();
    machine.start_daemon();
    for args in [
        vec!["network", "create", "--subnet", "10.175.0.0/24", "n1"],
        vec![
            "container",
            "run",
            "--network",
            "n1",
            "web",
            "--",
            "sleep",
            "1000",
        ],
    ] {
        let out = run("/usr/bin/netd", &args);
        assert!(out.status.success(), "netd {args:?}: {}", stderr(&out));
    }
    let inspect = run("/usr/bin/netd", &["container", "inspect", "web"]);
    let web: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let pid = web[0]["State"]["Pid"].as_u64().expect("web runs");
    machine.stop_daemon();
    let links = pinned_link_ids(&prefix);
    assert_eq!(links.len(), 5, "four socket hooks and the uplink's program");
    let objects = netd_objects(&prefix);
    assert!(
        objects.contains(&format!("namespace {prefix}-web")) && objects.len() >= 4,
        "a namespace, a bridge, a veth and the pins at least: {objects:?}"
    );

    let out = run("dpkg", &["--purge", "netd"]);
    assert!(
        out.status.success(),
        "dpkg --purge: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains(&format!("removed namespace {prefix}-web")),
        "the prerm cleaned up with the configured prefix: {}",
        stdout(&out)
    );
    assert_eq!(
        traces(&prefix),
        Vec::<String>::new(),
        "left behind by the purge"
    );
    for id in links {
        assert!(
            !run("bpftool", &["link", "show", "id", &id.to_string()])
                .status
                .success(),
            "link {id} released"
        );
    }
    assert!(!alive(pid as u32), "the container's process ended");
    drop(machine);
}
