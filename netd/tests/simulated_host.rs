//! A daemon started with `ip netns exec`, as a simulated host of a
//! multi-host test is: `ip` gives it a mount namespace of its own with /sys
//! remounted for the network namespace, so neither the host's bpffs nor its
//! cgroup2 mount is there. The daemon mounts its own of both and attaches
//! the socket hooks all the same: a published port answers on the simulated
//! host's localhost. Subnets 10.173.* are this file's.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{free_port, random_prefix, require_root, stderr, stdout};

/// A network namespace standing in for a host, and a daemon started in it
/// with `ip netns exec`. Dropping it cleans up inside the daemon's own
/// mount namespace (where its namespaces and pins are), then stops it and
/// removes the host.
struct SimulatedHost {
    netns: String,
    prefix: String,
    dir: PathBuf,
    daemon: Child,
}

impl SimulatedHost {
    fn start() -> SimulatedHost {
        require_root();
        let prefix = random_prefix();
        let netns = format!("h{prefix}");
        let dir = std::env::temp_dir().join(format!("netd-test-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for args in [
            vec!["netns", "add", &netns],
            vec!["-n", &netns, "link", "set", "lo", "up"],
        ] {
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", stderr(&out));
        }
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        let daemon = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                env!("CARGO_BIN_EXE_netd"),
                "daemon",
            ])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(dir.join("netd.sock"))
            .args(["--bpffs", &format!("/sys/fs/bpf/netd-test-{prefix}")])
            .args(["--prefix", &prefix])
            .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .env("NETD_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut host = SimulatedHost {
            netns,
            prefix,
            dir,
            daemon,
        };
        host.wait_ready();
        host
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.netd(&["version"]).status.success() {
            if let Some(status) = self.daemon.try_wait().unwrap() {
                panic!("daemon exited with {status}:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", self.log());
            sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn netd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_netd"))
            .arg("-H")
            .arg(format!("unix://{}", self.dir.join("netd.sock").display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.netd(args);
        assert!(
            out.status.success(),
            "netd {args:?}: {}\n{}",
            stderr(&out),
            self.log()
        );
        stdout(&out)
    }

    /// Runs a command in the simulated host's network namespace.
    fn on_host(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `netd system cleanup --force` in the daemon's mount and network
    /// namespaces, where everything it made is.
    fn cleanup_inside(&self) -> Output {
        let pid = self.daemon.id().to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-m", "-n", "--", env!("CARGO_BIN_EXE_netd")])
            .args(["system", "cleanup", "--force", "--prefix", &self.prefix])
            .arg("--bpffs")
            .arg(format!("/sys/fs/bpf/netd-test-{}", self.prefix))
            .arg("--socket")
            .arg(self.dir.join("netd.sock"))
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .output()
            .unwrap()
    }
}

impl Drop for SimulatedHost {
    fn drop(&mut self) {
        if self.daemon.try_wait().ok().flatten().is_none() {
            let _ = self.cleanup_inside();
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        if std::thread::panicking() {
            eprintln!("daemon log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn a_daemon_under_ip_netns_exec_mounts_cgroup2_and_hooks_sockets() {
    let host = SimulatedHost::start();
    let mount = host.dir.join("cgroup2");
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", host.daemon.id())).unwrap();
    assert!(
        mountinfo
            .lines()
            .any(|l| l.contains(&format!(" {} ", mount.display())) && l.contains(" - cgroup2 ")),
        "cgroup2 mounted at {} in the daemon's mount namespace:\n{mountinfo}",
        mount.display()
    );

    host.ok(&["network", "create", "--subnet", "10.173.0.0/24", "n1"]);
    host.ok(&[
        "container",
        "run",
        "--network",
        "n1",
        "-p",
        "8080:80",
        "web",
        "--",
        "socat",
        "TCP-LISTEN:80,reuseaddr,fork",
        "SYSTEM:echo hello",
    ]);
    // The host's own connection to localhost reaches the container only
    // through the connect4 hook.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = host.on_host(&["socat", "-T", "5", "-", "TCP:127.0.0.1:8080"]);
        if stdout(&out).trim() == "hello" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer through the published port: {}\n{}",
            stderr(&out),
            host.log()
        );
        sleep(Duration::from_millis(200));
    }

    let out = host.cleanup_inside();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("removed cgroup2 mount {}", mount.display())),
        "{}",
        stdout(&out)
    );
}
