//! The daemon as systemd runs it (systemd is not PID 1 on the machines the
//! tests run on, so the test plays its part): notifications go to a
//! `NOTIFY_SOCKET` the test listens on, with a watchdog period in
//! `WATCHDOG_USEC`; `systemctl reload` is a SIGHUP, `systemctl stop` a
//! SIGTERM. Also: `systemd-analyze verify` accepts the shipped unit.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, Launch, stderr};

/// How long the test waits for a notification before it gives up.
const WAIT: Duration = Duration::from_secs(60);

/// The test's side of `NOTIFY_SOCKET`.
struct NotifySocket {
    dir: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = std::env::temp_dir().join(format!("netd-systemd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = UnixDatagram::bind(dir.join("notify")).unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        NotifySocket { dir, socket }
    }

    fn path(&self) -> String {
        self.dir.join("notify").display().to_string()
    }

    /// The next notification.
    fn next(&self) -> String {
        let mut buf = [0u8; 512];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification from the daemon");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Skips notifications until one starts with `state`; returns those
    /// skipped.
    fn wait_for(&self, state: &str) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let message = self.next();
            if message.starts_with(state) {
                return skipped;
            }
            assert!(Instant::now() < deadline, "no {state} after {skipped:?}");
            skipped.push(message);
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Log lines of `/_ping` requests, which the API logs at debug level.
fn debug_pings(d: &Daemon) -> usize {
    d.log()
        .lines()
        .filter(|l| l.contains(" DEBUG ") && l.contains("path=/_ping"))
        .count()
}

#[test]
fn readiness_watchdog_reload_and_stop() {
    let notify = NotifySocket::new();
    let socket = notify.path();
    let mut d = Daemon::launch(Launch {
        config: Some("log-level = \"info\"\n"),
        env: &[
            ("NOTIFY_SOCKET", Some(&socket)),
            // A short period, so that pings come every 0.25 s.
            ("WATCHDOG_USEC", Some("500000")),
            // The log level comes from the file, which a reload re-reads.
            ("NETD_LOG", None),
        ],
        ..Launch::default()
    });
    let first = notify.next();
    assert!(first.starts_with("READY=1\n"), "{first}");
    for _ in 0..3 {
        assert_eq!(
            notify.next(),
            "WATCHDOG=1",
            "pings while the engine answers"
        );
    }
    d.ping();
    assert_eq!(debug_pings(&d), 0, "info level:\n{}", d.log());

    // `systemctl reload` after a change the daemon applies (the log level)
    // and one it cannot (the connection tracking table's size).
    std::fs::write(
        d.config_path(),
        "log-level = \"debug\"\nconntrack-max = 4096\n",
    )
    .unwrap();
    d.reload();
    notify.wait_for("RELOADING=1\n");
    let between = notify.wait_for("READY=1\n");
    assert!(
        between.iter().all(|m| m == "WATCHDOG=1"),
        "only pings between RELOADING and READY: {between:?}"
    );
    d.ping();
    assert_eq!(
        debug_pings(&d),
        1,
        "debug level after the reload:\n{}",
        d.log()
    );
    let log = d.log();
    let restart = log
        .lines()
        .find(|l| l.contains("only a restart applies them"))
        .unwrap_or_else(|| panic!("the log says what needs a restart:\n{log}"));
    assert!(restart.contains("conntrack-max"), "{restart}");
    assert!(!restart.contains("log-level"), "{restart}");
    assert!(
        log.contains("reload: log level changed"),
        "the log says what changed:\n{log}"
    );

    // An invalid file changes nothing, and the daemon keeps serving.
    std::fs::write(d.config_path(), "log-level = \"info\"\nno-such-key = 1\n").unwrap();
    d.reload();
    notify.wait_for("RELOADING=1\n");
    notify.wait_for("READY=1\n");
    assert!(
        d.log()
            .contains("the configuration is not valid; nothing changed")
    );
    d.ping();
    assert_eq!(debug_pings(&d), 2, "still at debug level");

    let status = d.stop();
    assert!(status.success(), "{status}");
    notify.wait_for("STOPPING=1");
}

#[test]
fn the_shipped_unit_verifies() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/netd.service");
    let text = std::fs::read_to_string(unit).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(text.contains(line), "{line} in the unit");
    }
    // `verify` checks that ExecStart's binary exists: point a copy of the
    // unit at the binary under test.
    let dir = std::env::temp_dir().join(format!("netd-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("netd.service");
    std::fs::write(
        &copy,
        text.replace("/usr/bin/netd", env!("CARGO_BIN_EXE_netd")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success() && !stderr(&out).contains("netd.service"),
        "systemd-analyze verify: {}",
        stderr(&out)
    );
}
