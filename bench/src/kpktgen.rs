//! The kernel's packet generator (`pktgen`), driven through its
//! `/proc/net/pktgen` files: the generator the benchmark issue asks for
//! first, used wherever the kernel has it. Kernels built without it (this
//! project's VMs: TOOLCHAIN.md) get the bench's AF_PACKET sender instead
//! (module `pktgen`), and the report says which one ran.
//!
//! pktgen keeps one set of files and one sending thread per CPU in every
//! network namespace, and `/proc/net` shows the namespace of the process
//! that opens it, so the commands run inside the sender's namespace (the
//! `pktgen --kernel` helper). One device on the first CPU's thread, so
//! that the sender takes one core, as the AF_PACKET sender does. The
//! frames match the AF_PACKET sender's where the path looks: 60 bytes, the
//! next hop's MAC, one UDP flow per source port (pktgen's own header fills
//! the payload, TTL 32, no DF). The UDP checksum is left to the device as
//! the stack leaves it on a veth (`CHECKSUM_PARTIAL`), so the receiver does
//! not verify it and the bench's bad-checksum count stays 0 with this
//! generator. `clone_skb 0`, because a veth hands the very skb to its peer,
//! which may change it (veth clears `IFF_TX_SKB_SHARING`; pktgen refuses
//! more).
//!
//! Command syntax follows `samples/pktgen/functions.sh`: one command per
//! write, ending in a newline (kernels before 6.15 strip the last byte of a
//! control command as the newline), and a device command is checked on its
//! file's `Result:` line, where pktgen reports, for example, an unknown
//! flag without failing the write.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::pktgen::Args;

const PROC: &str = "/proc/net/pktgen";
/// The first CPU's sending thread.
const THREAD: &str = "kpktgend_0";
/// How often the stopper polls and repeats `stop`. pktgen's threads look
/// at their control flags about every 100 ms.
const POLL: Duration = Duration::from_millis(50);
/// How long a device may take to show up as running, or to leave the
/// thread after `rem_device_all` (which the thread carries out itself).
const SETTLE: Duration = Duration::from_secs(5);

/// Whether this kernel has pktgen, loading the module if it is one (a
/// kernel without it has neither the files nor the module).
pub fn available() -> bool {
    if !Path::new(PROC).join("pgctrl").exists() {
        let _ = std::process::Command::new("modprobe")
            .args(["-q", "pktgen"])
            .status();
    }
    Path::new(PROC).join("pgctrl").exists()
}

/// Sends for `args.secs` seconds with pktgen; reports what the AF_PACKET
/// sender reports (frames sent, seconds, rate).
pub fn send(args: &Args) -> Result<Value> {
    let proc = Path::new(PROC);
    let thread = proc.join(THREAD);
    write(&thread, "rem_device_all")?;
    add_device(&thread, &args.ifname)?;
    let result = run(proc, args);
    // Leave the thread empty whatever happened, so that no later run (or
    // the namespace's removal) finds a device of ours still on it.
    let _ = write(&thread, "rem_device_all");
    result
}

/// `add_device`, waiting out a previous run's device that the thread has
/// not removed yet (the write fails with EBUSY until it has).
fn add_device(thread: &Path, ifname: &str) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match std::fs::write(thread, format!("add_device {ifname}\n")) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(POLL);
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("pktgen: add_device {ifname} to {}", thread.display())
                });
            }
        }
    }
}

fn run(proc: &Path, args: &Args) -> Result<Value> {
    let device = proc.join(&args.ifname);
    for command in device_commands(args) {
        write(&device, &command)?;
        check_result(&device, &command)?;
    }
    // `start` returns only once the threads stop. Another thread stops them
    // `secs` after the device is seen running, and repeats `stop` until
    // `start` has returned: pktgen drops a stop that comes before its
    // thread has begun the run.
    let returned = Arc::new(AtomicBool::new(false));
    let stopper = {
        let (proc, ifname, returned) = (proc.to_owned(), args.ifname.clone(), returned.clone());
        let secs = Duration::from_secs_f64(args.secs);
        std::thread::spawn(move || -> Result<()> {
            let thread = proc.join(THREAD);
            let deadline = Instant::now() + SETTLE;
            while !returned.load(Ordering::Acquire)
                && !running(&thread, &ifname)?
                && Instant::now() < deadline
            {
                std::thread::sleep(POLL);
            }
            std::thread::sleep(secs);
            while !returned.load(Ordering::Acquire) {
                write(&proc.join("pgctrl"), "stop")?;
                std::thread::sleep(POLL);
            }
            Ok(())
        })
    };
    let started = write(&proc.join("pgctrl"), "start");
    returned.store(true, Ordering::Release);
    let stopped = stopper
        .join()
        .map_err(|_| anyhow::anyhow!("the thread stopping pktgen panicked"))?;
    started?;
    stopped?;
    let status = std::fs::read_to_string(&device)
        .with_context(|| format!("reading {}", device.display()))?;
    let (sent, secs) = counters(&status)
        .with_context(|| format!("no counters in {}: {status}", device.display()))?;
    if secs <= 0.0 {
        bail!("pktgen did not run on {}: {status}", args.ifname);
    }
    Ok(json!({
        "sent": sent,
        "secs": secs,
        "per_sec": sent as f64 / secs,
    }))
}

/// The device's settings, one command per write. `count 0` sends until
/// stopped; source ports run from the first flow's up to (not including)
/// `udp_src_max`, one after the other (equal bounds: one port).
fn device_commands(args: &Args) -> Vec<String> {
    let first_port = u32::from(crate::pktgen::SRC_PORT);
    let flows = u32::from(args.flows.max(1));
    let end_port = if flows == 1 {
        first_port
    } else {
        first_port + flows
    };
    vec![
        "count 0".into(),
        "clone_skb 0".into(),
        "delay 0".into(),
        "pkt_size 60".into(),
        format!("dst_mac {}", args.dst_mac),
        format!("src_mac {}", args.src_mac),
        format!("dst_min {}", args.dst_ip),
        format!("dst_max {}", args.dst_ip),
        format!("src_min {}", args.src_ip),
        format!("src_max {}", args.src_ip),
        format!("udp_dst_min {}", args.dst_port),
        format!("udp_dst_max {}", args.dst_port),
        format!("udp_src_min {first_port}"),
        format!("udp_src_max {end_port}"),
        "flag UDPCSUM".into(),
    ]
}

/// Whether the thread file lists `ifname` as running.
fn running(thread: &Path, ifname: &str) -> Result<bool> {
    let status =
        std::fs::read_to_string(thread).with_context(|| format!("reading {}", thread.display()))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Running:"))
        .is_some_and(|names| names.split_whitespace().any(|n| n == ifname)))
}

/// Frames sent and seconds sent for, from the device file's `Current:`
/// section (`pkts-sofar: N`, `started: Xus  stopped: Yus`): the thread's
/// own times, free of the polling around `start` and `stop`.
fn counters(status: &str) -> Option<(u64, f64)> {
    let field = |name: &str| -> Option<u64> {
        let mut words = status.split_whitespace();
        words.find(|w| *w == name)?;
        words.next()?.trim_end_matches("us").parse().ok()
    };
    let sent = field("pkts-sofar:")?;
    let (started, stopped) = (field("started:")?, field("stopped:")?);
    Some((sent, stopped.saturating_sub(started) as f64 / 1e6))
}

/// One pktgen command: one `write(2)` of the command and its newline.
/// pktgen refuses an unknown command or a bad value by failing the write.
fn write(path: &Path, command: &str) -> Result<()> {
    std::fs::write(path, format!("{command}\n"))
        .with_context(|| format!("pktgen: `{command}` to {}", path.display()))
}

/// A device command's outcome, from its file's `Result:` line.
fn check_result(device: &Path, command: &str) -> Result<()> {
    let status =
        std::fs::read_to_string(device).with_context(|| format!("reading {}", device.display()))?;
    match status.lines().find_map(|l| l.strip_prefix("Result: ")) {
        Some(result) if result.starts_with("OK") => Ok(()),
        other => bail!("pktgen: `{command}` to {}: {other:?}", device.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(flows: u16) -> Args {
        Args {
            ifname: "eth0".into(),
            src_mac: "02:00:00:00:00:01".into(),
            dst_mac: "02:00:00:00:00:02".into(),
            src_ip: "198.19.0.1".parse().unwrap(),
            dst_ip: "198.19.0.2".parse().unwrap(),
            secs: 1.0,
            dst_port: 9,
            flows,
            kernel: true,
        }
    }

    #[test]
    fn one_flow_is_one_source_port_and_flows_rotate_over_as_many() {
        let one = device_commands(&args(1));
        assert!(one.contains(&"udp_src_min 10000".to_string()));
        assert!(one.contains(&"udp_src_max 10000".to_string()));
        let eight = device_commands(&args(8));
        assert!(eight.contains(&"udp_src_max 10008".to_string()));
        for expected in [
            "count 0",
            "clone_skb 0",
            "pkt_size 60",
            "dst_mac 02:00:00:00:00:02",
            "dst_min 198.19.0.2",
            "udp_dst_max 9",
            "flag UDPCSUM",
        ] {
            assert!(eight.contains(&expected.to_string()), "{expected}");
        }
    }

    #[test]
    fn frames_and_seconds_come_from_the_current_counters() {
        let status = "Params: count 0  min_pkt_size: 60  max_pkt_size: 60\n\
                      Current:\n     pkts-sofar: 123456  errors: 0\n     \
                      started: 5000000us  stopped: 7500000us idle: 10us\n\
                      Result: OK: 2500000(c2499990+d10) usec, 123456 (60byte,0frags)\n";
        assert_eq!(counters(status), Some((123456, 2.5)));
        assert_eq!(counters("Result: Idle\n"), None);
    }

    #[test]
    fn a_device_is_running_when_its_thread_lists_it() {
        let dir = std::env::temp_dir().join(format!("kpktgen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let thread = dir.join(THREAD);
        std::fs::write(
            &thread,
            "Running: eth1 eth0 \nStopped: \nResult: OK: add_device=eth0\n",
        )
        .unwrap();
        let listed = running(&thread, "eth0").unwrap();
        std::fs::write(&thread, "Running: \nStopped: eth0 \nResult: NA\n").unwrap();
        let stopped = running(&thread, "eth0").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(listed);
        assert!(!stopped);
    }
}
