//! netd's CNI plugin under a real runtime: Debian's podman (4.3) with its
//! CNI backend, unmodified, running containers from a busybox root
//! filesystem built here (Debian's busybox-static) on a netd CNI network.
//! Everything podman keeps (storage, run and temporary directories, its
//! configuration, the CNI configuration and plugin directories) is under
//! the test daemon's directory; only libcni's result cache is fixed at
//! /var/lib/cni, and the test removes what it added there. Subnet 10.191
//! is this file's.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Daemon, stderr, stdout};
use serde_json::Value;

/// libcni's cache of ADD results, which podman 4.3 cannot move.
const CNI_CACHE: &str = "/var/lib/cni";

/// A podman of the test's own: its state, configuration and plugin
/// directory in `dir`. Dropping it removes its containers (their CNI DEL
/// reaches the daemon, so drop it before the daemon) and its files.
struct Podman {
    dir: PathBuf,
    /// Whether the test made /var/lib/cni (so it removes it again).
    made_cache: bool,
    /// Whether the test made podman's lock file (so it removes it again).
    made_lock: bool,
}

/// Podman's shared-memory locks: one file for every podman on the host,
/// whatever its `--root`.
const PODMAN_LOCK: &str = "/dev/shm/libpod_lock";

impl Podman {
    /// A podman whose CNI network `cni_name` is the netd network
    /// `network` of daemon `d`, through the built plugin.
    fn new(d: &Daemon, cni_name: &str, network: &str) -> Podman {
        let dir = d.dir.join("podman");
        let made_cache = !Path::new(CNI_CACHE).exists();
        let made_lock = !Path::new(PODMAN_LOCK).exists();
        let podman = Podman {
            dir,
            made_cache,
            made_lock,
        };
        for sub in ["cni-conf", "cni-bin", "storage", "run", "tmp"] {
            std::fs::create_dir_all(podman.dir.join(sub)).unwrap();
        }
        // The plugin as a runtime finds it: a binary named after the type.
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_netd-cni"),
            podman.dir.join("cni-bin/netd"),
        )
        .unwrap();
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": cni_name,
            "plugins": [{
                "type": "netd",
                "network": network,
                "socket": d.socket(),
                "capabilities": {"portMappings": true, "ips": true, "mac": true, "aliases": true}
            }]
        });
        std::fs::write(
            podman.dir.join(format!("cni-conf/{cni_name}.conflist")),
            conflist.to_string(),
        )
        .unwrap();
        let dir = podman.dir.display();
        // No port reservation: podman would bind each published port on
        // the host, which netd refuses (it keeps published ports for
        // itself). cgroupfs and file events: no systemd here. Limits the
        // test's own hard limits allow.
        std::fs::write(
            podman.dir.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
                 [network]\n\
                 network_backend = \"cni\"\n\
                 cni_plugin_dirs = [\"{dir}/cni-bin\"]\n\
                 network_config_dir = \"{dir}/cni-conf\"\n\
                 [engine]\n\
                 enable_port_reservation = false\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = \"{dir}/events.log\"\n"
            ),
        )
        .unwrap();
        busybox_rootfs(&podman.rootfs());
        podman
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn run(&self, args: &[&str]) -> Output {
        let dir = &self.dir;
        Command::new("podman")
            .env("CONTAINERS_CONF", dir.join("containers.conf"))
            .arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            .args(["--storage-driver", "vfs", "--network-backend", "cni"])
            .arg("--cni-config-dir")
            .arg(dir.join("cni-conf"))
            // crun refuses hybrid cgroup hierarchies like this machine's.
            .args(["--runtime", "runc"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("podman is installed (cargo xtask setup installs it)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    fn inspect(&self, container: &str, format: &str) -> String {
        self.ok(&["inspect", container, "--format", format])
            .trim()
            .to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        if self.made_cache {
            let _ = std::fs::remove_dir(Path::new(CNI_CACHE).join("results"));
            let _ = std::fs::remove_dir(CNI_CACHE);
        }
        if self.made_lock {
            let _ = std::fs::remove_file(PODMAN_LOCK);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A root filesystem of Debian's static busybox: the shell and the tools
/// the test runs, and a page for its HTTP server.
fn busybox_rootfs(root: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "www"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .expect("/bin/busybox (cargo xtask setup installs busybox-static)");
    for tool in ["sh", "ping", "wget", "httpd", "sleep", "ip", "seq"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).unwrap();
    }
    std::fs::write(root.join("www/index.html"), "hello from podman\n").unwrap();
}

/// An HTTP GET from the daemon's "outside" namespace.
fn get_from_outside(d: &Daemon, url: &str) -> Output {
    d.outside(&[
        "python3",
        "-c",
        "import sys, urllib.request; \
         sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
        url,
    ])
}

#[test]
fn podman_containers_on_a_netd_cni_network() {
    let d = Daemon::start();
    d.ok(&["network", "create", "--subnet", "10.191.0.0/24", "podnet"]);
    d.ok(&[
        "container",
        "run",
        "--network",
        "podnet",
        "native",
        "--",
        "sleep",
        "1000",
    ]);
    let podman = Podman::new(&d, "podnet", "podnet");
    let rootfs = podman.rootfs().display().to_string();
    let port = common::free_port().to_string();

    let publish = format!("{port}:80");
    podman.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "podnet",
        "-p",
        &publish,
        "--rootfs",
        &rootfs,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    // Its address is netd's: the endpoint netd lists under the attachment's
    // container, which records podman's id.
    let ip = podman.inspect("web", "{{.NetworkSettings.Networks.podnet.IPAddress}}");
    let id = podman.inspect("web", "{{.Id}}");
    assert!(ip.starts_with("10.191.0."), "{ip}");
    let listed = d.containers();
    let record = listed
        .iter()
        .find(|c| c["IPAddress"] == ip.as_str())
        .unwrap_or_else(|| panic!("netd lists no container with {ip}: {listed:?}"));
    let name = record["Name"].as_str().unwrap();
    let inspect = &d.json(&["container", "inspect", name])[0];
    assert_eq!(
        inspect["Config"]["Labels"]["netd.cni.container-id"],
        id.as_str()
    );
    let sandbox = podman.inspect("web", "{{.NetworkSettings.SandboxKey}}");
    assert_eq!(inspect["SandboxKey"], sandbox.as_str());

    // Another podman container reaches it and the netd container by name.
    let client = podman.ok(&[
        "run",
        "--rm",
        "--name",
        "client",
        "--network",
        "podnet",
        "--rootfs",
        &rootfs,
        "sh",
        "-c",
        "ping -c1 -W2 native >/dev/null && ping -c1 -W2 web >/dev/null && \
         for i in $(seq 50); do wget -qO- http://web/ && exit 0; sleep 0.1; done; exit 1",
    ]);
    assert_eq!(client, "hello from podman\n");
    // The netd container resolves the podman container's name.
    let hosts = d.ok(&[
        "container",
        "exec",
        "native",
        "--",
        "getent",
        "hosts",
        "web",
    ]);
    assert!(hosts.starts_with(&format!("{ip} ")), "{hosts}");
    // The published port answers from outside, through netd's uplink.
    let url = format!("http://{}:{port}/", d.uplink_addr);
    let answer = get_from_outside(&d, &url);
    assert_eq!(
        stdout(&answer),
        "hello from podman\n",
        "{}",
        stderr(&answer)
    );

    // `podman rm` leaves nothing: no netd container, veth or published
    // port, no namespace, no cached result.
    podman.ok(&["rm", "--force", "--time", "0", "web"]);
    let left: Vec<Value> = d.containers();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["Name"], "native");
    assert!(!Path::new(&sandbox).exists(), "{sandbox} is left");
    let veth = format!("{}v", d.prefix);
    let veths = d
        .own_links()
        .into_iter()
        .filter(|l| l.starts_with(&veth))
        .count();
    assert_eq!(veths, 1, "only native's veth: {:?}", d.own_links());
    let cached = std::fs::read_dir(Path::new(CNI_CACHE).join("results"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().contains(&id))
        })
        .unwrap_or(false);
    assert!(!cached, "libcni still caches the attachment");
    assert!(
        !get_from_outside(&d, &url).status.success(),
        "the port still answers"
    );
    assert_eq!(podman.ok(&["ps", "--all", "--quiet"]), "");
}
