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
//! frames are the AF_PACKET sender's: 60 bytes, the next hop's MAC, one
//! UDP flow per source port, valid IPv4 and UDP checksums; `clone_skb 0`,
//! because a veth hands the very skb to the peer, which may change it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::pktgen::Args;

const PROC: &str = "/proc/net/pktgen";
/// The first CPU's sending thread.
const THREAD: &str = "kpktgend_0";

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
    write(&thread, &format!("add_device {}", args.ifname))?;
    let result = run(proc, args);
    // Leave the thread empty whatever happened, so that no later run (or
    // the namespace's removal) finds a device of ours still on it.
    let _ = write(&thread, "rem_device_all");
    result
}

fn run(proc: &Path, args: &Args) -> Result<Value> {
    let device = proc.join(&args.ifname);
    for command in device_commands(args) {
        write(&device, &command)?;
    }
    let pgctrl = proc.join("pgctrl");
    let secs = args.secs;
    // `start` returns only once the threads stop: stop them from another
    // thread after the run's time.
    let stopper = {
        let pgctrl = pgctrl.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs));
            write(&pgctrl, "stop")
        })
    };
    let start = Instant::now();
    let started = write(&pgctrl, "start");
    let elapsed = start.elapsed().as_secs_f64();
    let stopped = stopper
        .join()
        .map_err(|_| anyhow::anyhow!("the thread stopping pktgen panicked"))?;
    started?;
    stopped?;
    let status = std::fs::read_to_string(&device)
        .with_context(|| format!("reading {}", device.display()))?;
    let sent = sent(&status)
        .with_context(|| format!("no pkts-sofar in {}: {status}", device.display()))?;
    Ok(json!({
        "sent": sent,
        "secs": elapsed,
        "per_sec": sent as f64 / elapsed,
        "generator": "kernel pktgen",
    }))
}

/// The device's settings, one command per write. `count 0` sends until
/// stopped; source ports run from the first flow's up to (not including)
/// `udp_src_max`, one after the other.
fn device_commands(args: &Args) -> Vec<String> {
    let flows = args.flows.max(1);
    let src_port = crate::pktgen::SRC_PORT;
    let last_port = if flows == 1 {
        src_port
    } else {
        src_port + flows
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
        format!("udp_src_min {src_port}"),
        format!("udp_src_max {last_port}"),
        "flag UDPCSUM".into(),
    ]
}

/// Frames sent so far, from the device file's `pkts-sofar:` field.
fn sent(status: &str) -> Option<u64> {
    let mut words = status.split_whitespace();
    words.find(|w| *w == "pkts-sofar:")?;
    words.next()?.parse().ok()
}

/// One pktgen command: one `write(2)` to its file. pktgen refuses an
/// unknown command or a bad value by failing that write.
fn write(path: &Path, command: &str) -> Result<()> {
    std::fs::write(path, command)
        .with_context(|| format!("pktgen: `{command}` to {}", path.display()))
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
    fn frames_sent_come_from_the_current_counters() {
        let status = "Params: count 0  min_pkt_size: 60  max_pkt_size: 60\n\
                      Current:\n     pkts-sofar: 123456  errors: 0\n     \
                      started: 1us  stopped: 2us idle: 0us\n\
                      Result: OK: 1000000(c999000+d1000) usec, 123456 (60byte,0frags)\n";
        assert_eq!(sent(status), Some(123456));
        assert_eq!(sent("Result: Idle\n"), None);
    }
}
