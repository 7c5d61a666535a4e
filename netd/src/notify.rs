//! systemd's service notifications (`Type=notify`, `WatchdogSec=`): a
//! datagram to `$NOTIFY_SOCKET` for each change of state, and `WATCHDOG=1`
//! at least once per watchdog period while the daemon works.
//!
//! The protocol is one datagram of `KEY=VALUE` lines, so it is written here
//! rather than taken from a crate: the crates read `$NOTIFY_SOCKET` at
//! every call, where [`Notifier`] reads it once and then takes it (and the
//! watchdog's variables) out of the environment, so that the processes
//! `netd container run` starts do not inherit them, and so that tests can
//! aim a notifier at a socket of their own without touching the process's
//! environment.

use std::future::Future;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::warn;

/// Where notifications go; `None` when not started by systemd, which makes
/// every call a no-op.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<std::ffi::OsString>,
    /// Half the watchdog period systemd expects pings within (`None`: no
    /// watchdog for this process).
    watchdog_interval: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`, then
    /// removes them from the environment.
    ///
    /// # Safety
    /// No other thread may run (it changes the environment): call it first
    /// thing in `main`-like code, before any runtime starts.
    pub unsafe fn take_from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        // The watchdog is ours only if systemd meant this process (a
        // variable inherited from a parent that is watched does not count).
        let for_us = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let period = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && for_us)
            .map(Duration::from_micros);
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            // SAFETY: the caller guarantees no other thread runs.
            unsafe { std::env::remove_var(key) };
        }
        Notifier::new(socket, period)
    }

    /// A notifier for `socket` (a path, or `@name` in the abstract
    /// namespace) with a watchdog of `period` (pinged every half period).
    pub fn new(socket: Option<std::ffi::OsString>, period: Option<Duration>) -> Notifier {
        Notifier {
            socket,
            watchdog_interval: period.map(|p| p / 2),
        }
    }

    /// The API is listening and the state is restored (also: a reload is
    /// done).
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=serving the API");
    }

    /// A reload of the configuration began (`systemctl reload`); `ready`
    /// ends it.
    pub fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC={}",
            monotonic_usec()
        ));
    }

    /// Shutdown has begun.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// How often to ping the watchdog, if systemd watches this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog_interval
    }

    /// Pings the watchdog every [`Notifier::watchdog_interval`], but only
    /// after `alive()` has completed within that interval: a daemon whose
    /// engine no longer answers stops pinging, and systemd restarts it once
    /// the period runs out. Returns at once without a watchdog; runs
    /// forever otherwise (abort the task).
    pub async fn keep_watchdog<F, Fut>(&self, alive: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        let Some(interval) = self.watchdog_interval else {
            return;
        };
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match tokio::time::timeout(interval, alive()).await {
                Ok(true) => self.send("WATCHDOG=1"),
                Ok(false) => warn!("the engine has stopped: no watchdog ping"),
                Err(_) => warn!(
                    waited = ?interval,
                    "the engine did not answer in time: no watchdog ping"
                ),
            }
        }
    }

    fn send(&self, message: &str) {
        let Some(path) = &self.socket else {
            return;
        };
        let bytes = path.as_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            // A leading '@' names a socket in the abstract namespace.
            Some(name) => SocketAddr::from_abstract_name(name),
            None => SocketAddr::from_pathname(path),
        };
        let result =
            addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr));
        if let Err(e) = result {
            warn!(error = %e, socket = ?path, "cannot notify systemd");
        }
    }
}

/// `CLOCK_MONOTONIC` in microseconds, which systemd wants beside
/// `RELOADING=1` to tell this reload from an earlier one.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A datagram socket in a fresh directory, as systemd listens.
    struct Listener {
        dir: std::path::PathBuf,
        socket: UnixDatagram,
    }

    impl Listener {
        fn new(name: &str) -> Listener {
            let dir =
                std::env::temp_dir().join(format!("netd-notify-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let socket = UnixDatagram::bind(dir.join("notify.sock")).unwrap();
            socket.set_nonblocking(true).unwrap();
            Listener { dir, socket }
        }

        fn notifier(&self, period: Option<Duration>) -> Notifier {
            Notifier::new(Some(self.dir.join("notify.sock").into()), period)
        }

        /// The datagrams received so far.
        fn received(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut buf = [0u8; 256];
            while let Ok(n) = self.socket.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            out
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn states_reach_the_notify_socket() {
        let l = Listener::new("states");
        let n = l.notifier(None);
        n.ready();
        n.reloading();
        n.stopping();
        let got = l.received();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("READY=1\n"), "{got:?}");
        assert!(got[1].starts_with("RELOADING=1\n"), "{got:?}");
        assert!(got[1].contains("\nMONOTONIC_USEC="), "{got:?}");
        assert_eq!(got[2], "STOPPING=1");
        // Without a socket, nothing is sent and nothing fails.
        Notifier::default().ready();
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_pings_only_while_the_engine_answers() {
        let l = Listener::new("watchdog");
        let n = l.notifier(Some(Duration::from_secs(10)));
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
        let answering = Arc::new(AtomicBool::new(true));
        let engine = answering.clone();
        let task = tokio::spawn(async move {
            n.keep_watchdog(move || {
                let engine = engine.clone();
                async move {
                    if !engine.load(Ordering::SeqCst) {
                        // A loop stuck in a command never answers.
                        std::future::pending::<()>().await;
                    }
                    true
                }
            })
            .await
        });
        // Paused time: every sleep below lets the interval tick exactly.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let pings = l.received();
        assert_eq!(pings, vec!["WATCHDOG=1"; 3], "at 0, 5 and 10 s");
        answering.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            l.received(),
            Vec::<String>::new(),
            "a stuck engine is not pinged for"
        );
        answering.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert!(!l.received().is_empty(), "pings resume once it answers");
        task.abort();
    }

    #[tokio::test]
    async fn no_watchdog_without_a_period() {
        // Returns at once instead of pinging nobody forever.
        Notifier::default().keep_watchdog(|| async { true }).await;
    }
}
