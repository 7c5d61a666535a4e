//! What the BPF_PROG_TEST_RUN test files share: verdicts and header
//! constants, crafted-frame checksum sums, and guards for the pin
//! directories, namespaces and veth pairs a test makes (removed on drop,
//! also when the test panics). Names carry the test binary's name and pid,
//! so parallel tests never clash.
#![allow(dead_code)] // each test binary uses a different part

use std::{
    fs::{self, File},
    io,
    net::Ipv4Addr,
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    thread,
};

use ipnet::Ipv4Net;
use netd::dataplane::{Dataplane, MapSizes};

pub const VERDICT_NEXT: u32 = -1i32 as u32;
pub const VERDICT_DROP: u32 = 2;
/// `TC_ACT_REDIRECT`: what `bpf_redirect_peer`/`bpf_redirect_neigh`/
/// `bpf_redirect` return.
pub const VERDICT_REDIRECT: u32 = 7;
/// Offset of `ifindex` in `struct __sk_buff`.
pub const SKB_IFINDEX_OFFSET: usize = 40;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

pub static NEXT_ID: AtomicU32 = AtomicU32::new(0);

pub fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

pub fn net(s: &str) -> Ipv4Net {
    s.parse().expect("subnet")
}

pub fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    netd_common::mac_for_ipv4(ip.octets())
}

pub fn mac_str(ip: Ipv4Addr) -> String {
    mac_of(ip)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A private pin directory, removed (detaching the test's links) on drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new() -> PinDir {
        PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/netd-{}-{}-{}",
            env!("CARGO_CRATE_NAME"),
            std::process::id(),
            next_id()
        )))
    }

    pub fn load(&self) -> Dataplane {
        self.load_sized(&MapSizes::default())
    }

    pub fn load_sized(&self, sizes: &MapSizes) -> Dataplane {
        Dataplane::load(&self.0, sizes).expect("load the data path")
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = Dataplane::remove_pins(&self.0) {
            eprintln!("cannot remove {}: {e}", self.0.display());
        }
    }
}

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(kind: &str) -> Netns {
        let name = format!("netd-bt{kind}-{}-{}", std::process::id(), next_id());
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    /// Runs `f` on a thread that joined this namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.0);
        thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a valid namespace fd; it only changes this
            // thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in the namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A veth pair: `host` in the root namespace, `peer` in `netns`. Deleted on
/// drop (before its namespace, by field order).
pub struct Veth {
    pub host: String,
    pub peer: String,
    pub netns: Netns,
}

impl Veth {
    pub fn new() -> Veth {
        let tag = format!("{}{}", std::process::id() % 100_000, next_id());
        let veth = Veth {
            host: format!("bth{tag}"),
            peer: format!("btp{tag}"),
            netns: Netns::new("c"),
        };
        run(&[
            "ip",
            "link",
            "add",
            &veth.host,
            "type",
            "veth",
            "peer",
            "name",
            &veth.peer,
            "netns",
            &veth.netns.0,
        ]);
        veth
    }

    pub fn ifindex(&self) -> u32 {
        fs::read_to_string(format!("/sys/class/net/{}/ifindex", self.host))
            .expect("read ifindex")
            .trim()
            .parse()
            .expect("parse ifindex")
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
    }
}

/// The 16-bit ones' complement sum of `data` (odd length padded with 0),
/// folded, not inverted.
pub fn ones_sum(data: &[u8], mut sum: u32) -> u16 {
    for w in data.chunks(2) {
        let word = if w.len() == 2 {
            u16::from_be_bytes([w[0], w[1]])
        } else {
            u16::from_be_bytes([w[0], 0])
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

pub fn pseudo_sum(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u32 {
    let mut p = Vec::with_capacity(12);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, proto]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    u32::from(ones_sum(&p, 0))
}
