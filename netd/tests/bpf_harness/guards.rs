//! The kernel objects and processes a test makes: pin directories,
//! namespaces, veth pairs, bridges and servers, each removed by its guard
//! on drop, also when the test panics. Names carry the test binary's pid
//! and a counter, so parallel tests (and test binaries) never clash.
//! Making one is the first privileged step of a test, so each checks for
//! root first.

use std::{
    fs::{self, File},
    io,
    net::Ipv4Addr,
    os::fd::AsRawFd as _,
    path::PathBuf,
    process::{Child, Command},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use netd::dataplane::{Dataplane, MapSizes};

use super::addr::{mac_of, mac_str};
use super::cmd::run;
use super::root::require_root;

pub fn next_id() -> u32 {
    static NEXT_ID: AtomicU32 = AtomicU32::new(0);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// A name unique to this process and call: `prefix`, the pid's last five
/// digits (so that interface names stay within 15 bytes) and a counter.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}{}", std::process::id() % 100_000, next_id())
}

/// A private pin directory, removed (detaching the test's links) on drop.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new() -> PinDir {
        require_root();
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

/// A network namespace (with `lo` down), deleted on drop. Its name does
/// not start with `netd-`: a daemon with the default prefix (an installed
/// netd) and `netd system cleanup` take every namespace named so as theirs.
pub struct Netns(pub String);

impl Netns {
    pub fn new(kind: &str) -> Netns {
        require_root();
        let name = format!("nbt{kind}-{}-{}", std::process::id(), next_id());
        run(&["ip", "netns", "add", &name]);
        Netns(name)
    }

    /// Runs `f` on a thread that joined this namespace; sockets created
    /// there stay in it wherever they are used afterwards, and so do the
    /// ifindexes and netlink sockets it looks up or opens.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        thread::scope(|s| {
            s.spawn(move || {
                let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns on a valid namespace fd; it only changes this
                // thread's network namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
                f()
            })
            .join()
            .expect("thread in the namespace")
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A veth pair: `host` in the test's (root) namespace, `peer` in a
/// namespace of its own, like a container endpoint. Deleted on drop
/// (before its namespace, by field order).
pub struct Veth {
    pub host: String,
    pub peer: String,
    pub netns: Netns,
    /// Two addresses for the ends, `host_addr/30` and `peer_addr/30`,
    /// configured nowhere until a test does: a /30 of 198.18.0.0/16 (RFC
    /// 2544 benchmarking space, so they cannot clash with real networks;
    /// the bench uses 198.19.0.0/16). Each veth of a process gets the next
    /// /30 after a random one, so that no two tests share one.
    pub host_addr: Ipv4Addr,
    pub peer_addr: Ipv4Addr,
}

impl Veth {
    pub fn new() -> Veth {
        Veth::with_host_suffix("")
    }

    /// `suffix` is appended to the host-side name (e.g. to test names with
    /// characters bpffs does not allow in pin names).
    pub fn with_host_suffix(suffix: &str) -> Veth {
        static FIRST_NET: OnceLock<u32> = OnceLock::new();
        let first = *FIRST_NET.get_or_init(|| u32::from(u16::from_ne_bytes(random_bytes())));
        let n = next_id();
        let tag = format!("{}{n}", std::process::id() % 100_000);
        let net = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + (first + n) % (1 << 14) * 4;
        let veth = Veth {
            host: format!("bth{tag}{suffix}"),
            peer: format!("btp{tag}"),
            netns: Netns::new("c"),
            host_addr: Ipv4Addr::from(net + 1),
            peer_addr: Ipv4Addr::from(net + 2),
        };
        veth.create_link();
        veth
    }

    /// Creates the pair (again, after a test deleted it).
    pub fn create_link(&self) {
        run(&[
            "ip",
            "link",
            "add",
            &self.host,
            "type",
            "veth",
            "peer",
            "name",
            &self.peer,
            "netns",
            &self.netns.0,
        ]);
    }

    pub fn ifindex(&self) -> u32 {
        fs::read_to_string(format!("/sys/class/net/{}/ifindex", self.host))
            .expect("read ifindex")
            .trim()
            .parse()
            .expect("parse ifindex")
    }

    /// Configures the container side as netd's engine does: IPv6 off, MAC
    /// derived from the address, `ip/24`, up (and `lo`), default route via
    /// `gateway`. The host side only gets IPv6 off, so that it sends
    /// nothing of its own once up.
    pub fn plumb(&self, ip: Ipv4Addr, gateway: Ipv4Addr) {
        let ns = self.netns.0.as_str();
        for key in ["all", "default"] {
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ]);
        }
        run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{}.disable_ipv6=1", self.host),
        ]);
        let peer = self.peer.as_str();
        let mac = mac_str(mac_of(ip));
        run(&["ip", "-n", ns, "link", "set", peer, "address", &mac]);
        let cidr = format!("{ip}/24");
        run(&["ip", "-n", ns, "addr", "add", &cidr, "dev", peer]);
        run(&["ip", "-n", ns, "link", "set", peer, "up"]);
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        let gateway = gateway.to_string();
        run(&["ip", "-n", ns, "route", "add", "default", "via", &gateway]);
    }

    /// Puts `host_addr/30` on the host side and brings it up.
    pub fn address_host_side(&self) {
        let cidr = format!("{}/30", self.host_addr);
        run(&["ip", "addr", "add", &cidr, "dev", &self.host]);
        run(&["ip", "link", "set", &self.host, "up"]);
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting either end deletes the pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
    }
}

/// A Linux bridge carrying a network's gateway, deleted on drop.
pub struct Bridge(pub String);

impl Bridge {
    /// A bridge with `gateway/24` and the MAC netd derives for it, IPv6
    /// off (so that it sends nothing of its own), up.
    pub fn gateway(gateway: Ipv4Addr) -> Bridge {
        require_root();
        let bridge = Bridge(unique("btb"));
        let name = bridge.0.as_str();
        run(&["ip", "link", "add", name, "type", "bridge"]);
        run(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{name}.disable_ipv6=1"),
        ]);
        run(&[
            "ip",
            "link",
            "set",
            name,
            "address",
            &mac_str(mac_of(gateway)),
        ]);
        run(&["ip", "addr", "add", &format!("{gateway}/24"), "dev", name]);
        run(&["ip", "link", "set", name, "up"]);
        bridge
    }

    /// Enslaves the host side of `veth`, whose container has `ip`, as the
    /// engine does: a permanent neighbour entry on the bridge and a static
    /// FDB entry on the port.
    pub fn enslave(&self, veth: &Veth, ip: Ipv4Addr) {
        let mac = mac_str(mac_of(ip));
        run(&["ip", "link", "set", &veth.host, "master", &self.0]);
        run(&[
            "ip",
            "neigh",
            "replace",
            &ip.to_string(),
            "dev",
            &self.0,
            "lladdr",
            &mac,
            "nud",
            "permanent",
        ]);
        run(&[
            "bridge", "fdb", "replace", &mac, "dev", &veth.host, "master", "static",
        ]);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

/// Waits until `dev` is up: the kernel drops what it transmits on a link
/// before linkwatch has seen its carrier (up to ~1 s after it came up; a
/// bridge's qdisc is noop until then).
pub fn wait_up(dev: &str, deadline: Instant) {
    while fs::read_to_string(format!("/sys/class/net/{dev}/operstate"))
        .expect("operstate")
        .trim()
        != "up"
    {
        assert!(Instant::now() < deadline, "{dev} never came up");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A process the test started, killed on drop.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), N, 0) };
    assert_eq!(n, N as isize);
    buf
}
