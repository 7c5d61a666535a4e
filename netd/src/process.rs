//! The processes netd starts (`sandbox::spawn`) and stops: which process
//! a record names, and stopping that one and no other.
//!
//! A pid alone does not name a process for good: the kernel gives the pid
//! of a process that ended to a later one, and a reboot starts over. So a
//! record keeps the process's start too (`model::Start`), and a process is
//! signalled only through a pidfd opened before the check that it is the
//! recorded one, so it cannot change between check and signal.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::param::clock_ticks_per_second;
use rustix::process::{
    Pid, PidfdFlags, Signal, WaitId, WaitIdOptions, kill_process_group, pidfd_open,
    pidfd_send_signal, test_kill_process_group, waitid,
};

use crate::model::Start;
use crate::netlink::netns;

/// The start of process `pid`, running or exited but not yet reaped.
pub fn start_of(pid: u32) -> Option<Start> {
    Some(Start {
        ticks: Stat::read(pid)?.start_ticks,
        boot_id: boot_id().to_string(),
    })
}

/// Whether the process that has `pid` now is the one that started at
/// `start`, and runs. Without its start, a pid may name a process started
/// since (the kernel reuses the pid of one that ended, and a reboot starts
/// over).
pub fn running(pid: u32, start: &Start) -> bool {
    start.boot_id == boot_id()
        && Stat::read(pid).is_some_and(|s| !s.exited() && s.start_ticks == start.ticks)
}

/// The process `pid` that started at `start`, held by a pidfd, while it
/// runs (as [`running`] says).
pub fn hold(pid: u32, start: &Start) -> Option<Held> {
    Held::open(pid, |pid| running(pid, start))
}

/// How long after its container was created `container run` starts the
/// process, at most: the create command does, once the endpoints are set
/// up (for [`adopt`]).
const ADOPT_WINDOW: Duration = Duration::from_secs(60);
/// How far a clock may be off when [`adopt`] compares a process's start
/// with its container's creation: the two come from different clocks (the
/// boot-relative start, the wall-clock creation), and the wall clock may
/// have been stepped since.
const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// The start of process `pid` if it is, as far as can still be told, the
/// one `container run` started for a container created at `created` whose
/// processes run in the network namespace at `netns` (`None`: the
/// daemon's). For records from before netd kept starts: a pid alone.
///
/// Checked: the process runs, leads its own session (as `sandbox::spawn`
/// makes it), is in that namespace, and started within [`ADOPT_WINDOW`] after
/// the container was created. Assumed: no other process meets all four.
/// For a container with a namespace of its own, only its own processes are
/// in it (a reboot leaves none, as namespaces do not survive one); for
/// `--network host`, a later process with the same pid would also have to
/// lead a session and have started within that window of the creation,
/// i.e. the pid was reused (or the host rebooted) within a minute of it.
pub fn adopt(pid: u32, created: SystemTime, netns: Option<&Path>) -> Option<Start> {
    let stat = Stat::read(pid)?;
    if stat.exited() || stat.session != pid {
        return None;
    }
    if !netns::process_in(pid, netns.unwrap_or(Path::new("/proc/self/ns/net"))) {
        return None;
    }
    // Seconds from the creation to the process's start: the container's age
    // less the process's.
    let container_age = match SystemTime::now().duration_since(created) {
        Ok(age) => age.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    let started_after = container_age - stat.age()?;
    (-CLOCK_SLACK.as_secs_f64()..=ADOPT_WINDOW.as_secs_f64())
        .contains(&started_after)
        .then(|| Start {
            ticks: stat.start_ticks,
            boot_id: boot_id().to_string(),
        })
}

/// This boot's id, read once (empty if `/proc` does not have it, which
/// then compares equal across boots: the start ticks alone decide).
fn boot_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_string())
            .unwrap_or_default()
    })
}

/// What netd reads of `/proc/PID/stat`.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// `R`, `S`, `D`...; `Z` (exited, not yet reaped), `X` (dead).
    state: char,
    /// The session id: the pid of the session's leader.
    session: u32,
    /// Clock ticks from boot to the process's start.
    start_ticks: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Format: "pid (comm) S ppid pgrp session ... starttime ...": comm may
    /// contain spaces and parentheses, so fields are counted from the
    /// *last* ')', the state (field 3) first, starttime (field 22) last.
    fn parse(stat: &str) -> Option<Stat> {
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        Some(Stat {
            state: fields.first()?.chars().next()?,
            session: fields.get(6 - 3)?.parse().ok()?,
            start_ticks: fields.get(22 - 3)?.parse().ok()?,
        })
    }

    fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Seconds since the process started. Both figures count from boot on
    /// the same clock (`CLOCK_BOOTTIME`), so suspends do not skew it.
    fn age(&self) -> Option<f64> {
        let uptime = std::fs::read_to_string("/proc/uptime").ok()?;
        let uptime: f64 = uptime.split_whitespace().next()?.parse().ok()?;
        Some(uptime - self.start_ticks as f64 / clock_ticks_per_second() as f64)
    }
}

/// A process held by a pidfd: signals sent through it reach that process
/// and no other, even once it has ended and the kernel has given its pid
/// to another.
#[derive(Debug)]
pub struct Held {
    pid: Pid,
    fd: OwnedFd,
}

impl Held {
    /// Holds process `pid` if `is_it(pid)` accepts it. The check reads
    /// `/proc` by pid, which names a newer process if the held one ended
    /// before it; so the held one must still run after the check: a pid
    /// names one process from its start to its end, so the check was about
    /// the held one.
    pub fn open(pid: u32, is_it: impl FnOnce(u32) -> bool) -> Option<Held> {
        let raw = Pid::from_raw(i32::try_from(pid).ok()?)?;
        let held = Held {
            pid: raw,
            fd: pidfd_open(raw, PidfdFlags::empty()).ok()?,
        };
        (is_it(pid) && !held.exited()).then_some(held)
    }

    pub fn pid(&self) -> u32 {
        self.pid.as_raw_pid().unsigned_abs()
    }

    /// Whether the process has exited (a zombie has): its pidfd polls
    /// readable from then on.
    fn exited(&self) -> bool {
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        poll(&mut fds, Some(&Timespec::default())).map_or(true, |ready| ready > 0)
    }

    /// Whether members of its process group are left, the leader included
    /// until it is reaped.
    fn group_left(&self) -> bool {
        test_kill_process_group(self.pid).is_ok()
    }

    /// Signals the process's group (the process too: it leads it), or the
    /// process alone, through its pidfd, if it leads none. The group is
    /// named by id, the leader's pid, which the kernel gives no new process
    /// while the leader or any member of its group is left: callers check
    /// that just before ([`Held::open`], [`wait_gone`]), and the kernel
    /// hands pids out in turn, so a pid comes back only after all the
    /// others were used.
    fn signal(&self, sig: Signal) {
        if kill_process_group(self.pid, sig).is_err() {
            let _ = pidfd_send_signal(&self.fd, sig);
        }
    }

    /// Reaps the process if it is our exited child (not ours: nothing, its
    /// parent or init reaps it).
    fn reap(&self) {
        let _ = waitid(
            WaitId::PidFd(self.fd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        );
    }
}

/// Stops processes started by `sandbox::spawn`: SIGTERM to each and its
/// process group, up to `grace` for them to exit, then SIGKILL to whatever
/// is left, and a short wait for that to take effect. Blocks for up to
/// `grace` plus about two seconds; async callers should use
/// `spawn_blocking`. Returns the pids of those whose group is still there
/// (a process in uninterruptible sleep outlives even SIGKILL for a while).
pub fn stop(procs: Vec<Held>, grace: Duration) -> Vec<u32> {
    for p in &procs {
        p.signal(Signal::TERM);
    }
    let left = wait_gone(procs, grace);
    // Leaders that ignored SIGTERM, or left children behind in their group.
    for p in &left {
        p.signal(Signal::KILL);
    }
    let left = wait_gone(left, Duration::from_secs(2));
    for p in &left {
        tracing::warn!(pid = p.pid(), "process group still present after SIGKILL");
    }
    left.iter().map(Held::pid).collect()
}

/// Polls until every process and every member of their groups are gone,
/// or `timeout` passes. Returns those whose group is still there.
fn wait_gone(mut procs: Vec<Held>, timeout: Duration) -> Vec<Held> {
    let deadline = Instant::now() + timeout;
    loop {
        procs.retain(|p| {
            p.reap();
            // The group's members not yet reaped count too, which init
            // reaps promptly once their parent is gone.
            !p.exited() || p.group_left()
        });
        let now = Instant::now();
        if procs.is_empty() || now >= deadline {
            return procs;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process `sandbox::spawn` started (so it leads its own session), stopped
    /// on drop.
    struct Spawned {
        pid: u32,
        start: Start,
        log: std::path::PathBuf,
    }

    impl Spawned {
        fn sleep(tag: &str) -> Spawned {
            let log =
                std::env::temp_dir().join(format!("netd-sandbox-{tag}-{}.log", std::process::id()));
            let (pid, start) =
                crate::sandbox::spawn(None, &["sleep".into(), "600".into()], &log).unwrap();
            Spawned { pid, start, log }
        }
    }

    impl Drop for Spawned {
        fn drop(&mut self) {
            stop(
                hold(self.pid, &self.start).into_iter().collect(),
                Duration::ZERO,
            );
            let _ = std::fs::remove_file(&self.log);
        }
    }

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        // A name with spaces and parentheses, as a process may give itself.
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 200 18446744073709551615\n";
        assert_eq!(
            Stat::parse(stat),
            Some(Stat {
                state: 'S',
                session: 4242,
                start_ticks: 987654,
            })
        );
        let zombie = "7 (sh) Z 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0\n";
        assert!(Stat::parse(zombie).unwrap().exited());
        assert_eq!(Stat::parse("7 (sh) S 1 7 7"), None, "truncated");
        assert_eq!(Stat::parse("7 sh S"), None);
        let own = Stat::read(std::process::id()).unwrap();
        assert!(!own.exited());
        assert!(own.age().unwrap() >= 0.0);
    }

    #[test]
    fn a_process_runs_and_is_held_under_its_own_start_only() {
        let p = Spawned::sleep("identity");
        assert_eq!(start_of(p.pid), Some(p.start.clone()));
        assert!(running(p.pid, &p.start));
        // Records of another process that had this pid: one that started
        // earlier, or at the same tick of another boot.
        let earlier = Start {
            ticks: p.start.ticks - 1,
            ..p.start.clone()
        };
        let other_boot = Start {
            boot_id: "another boot".into(),
            ..p.start.clone()
        };
        for stale in [earlier, other_boot] {
            assert!(!running(p.pid, &stale));
            // Not held, so there is nothing to signal.
            assert!(hold(p.pid, &stale).is_none());
        }
        assert!(running(p.pid, &p.start), "still running");
        let left = stop(vec![hold(p.pid, &p.start).unwrap()], Duration::from_secs(5));
        assert_eq!(left, Vec::<u32>::new());
        assert!(!running(p.pid, &p.start));
        assert!(hold(p.pid, &p.start).is_none());
    }

    #[test]
    fn a_pid_alone_is_adopted_only_when_everything_matches() {
        let p = Spawned::sleep("adopt");
        let now = SystemTime::now();
        assert_eq!(adopt(p.pid, now, None), Some(p.start.clone()));
        assert_eq!(
            adopt(p.pid, now, Some(Path::new("/proc/self/ns/net"))),
            Some(p.start.clone())
        );
        // Created an hour before the process started: the pid was reused
        // (or the host rebooted) since.
        let hour = Duration::from_secs(3600);
        assert_eq!(adopt(p.pid, now - hour, None), None);
        // Created after it started.
        assert_eq!(adopt(p.pid, now + ADOPT_WINDOW, None), None);
        // Not in the container's namespace (a namespace file it is not in).
        assert_eq!(
            adopt(p.pid, now, Some(Path::new("/proc/self/ns/uts"))),
            None
        );
        // Not leading a session, as no process `spawn` starts does.
        let mut plain = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let adopted = adopt(plain.id(), now, None);
        plain.kill().unwrap();
        plain.wait().unwrap();
        assert_eq!(adopted, None);
    }
}
