//! The packet generators: the kernel's pktgen where the kernel has it
//! (module `kpktgen`), else one of our own, since this project's kernels
//! have no pktgen and xdp-trafficgen fails on them (TOOLCHAIN.md). Ours:
//! an AF_PACKET socket sends prebuilt 60-byte Ethernet/IPv4/UDP frames in
//! batches with `sendmmsg`, bypassing the qdisc, so the sender costs little
//! more than the path it feeds. The frames are what the sender's own stack
//! would put on the wire for that destination: the next hop's MAC (from
//! the sender's neighbour table), the destination's IP and UDP port, valid
//! IPv4 and UDP checksums. So every path forwards or translates them like real
//! traffic, and the receiver's device counter says how many arrived.
//! [`measure`] is one such run, as every scenario takes it.

use std::ffi::CString;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::cmd;
use crate::netns::{Netns, parse_mac};
use crate::pingpong::SELF_EXE;

/// Frames handed to the kernel per `sendmmsg`.
const BATCH: usize = 64;
/// Where the frames go when the receiver is addressed directly: discard.
/// Nothing listens there; the device counter is read before the socket
/// lookup, and the kernel's ICMP errors back are rate-limited.
pub const DISCARD_PORT: u16 = 9;
/// The first source port; flow `i` sends from `SRC_PORT + i`.
pub(crate) const SRC_PORT: u16 = 10000;
/// How long each run is preceded by an uncounted one: neighbour entries
/// along the path, connection-tracking entries, caches.
const WARM_UP_SECS: f64 = 0.2;

#[derive(clap::Args)]
pub struct Args {
    /// The interface to send from (in the current namespace).
    pub(crate) ifname: String,
    pub(crate) src_mac: String,
    pub(crate) dst_mac: String,
    pub(crate) src_ip: Ipv4Addr,
    pub(crate) dst_ip: Ipv4Addr,
    pub(crate) secs: f64,
    /// UDP destination port.
    #[arg(long, default_value_t = DISCARD_PORT)]
    pub(crate) dst_port: u16,
    /// Flows, each from its own source port, sent in turn frame by frame.
    #[arg(long, default_value_t = 1)]
    pub(crate) flows: u16,
    /// Send with the kernel's pktgen instead of an AF_PACKET socket.
    #[arg(long)]
    pub(crate) kernel: bool,
}

/// Which generator sends the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generator {
    /// The kernel's pktgen if it has one, else the AF_PACKET sender.
    Auto,
    /// The kernel's pktgen (`/proc/net/pktgen`).
    Kernel,
    /// The bench's own AF_PACKET sender.
    AfPacket,
}

impl Generator {
    /// `Auto` made concrete for this kernel; `Kernel` on a kernel without
    /// pktgen is an error, not a silent switch.
    pub fn resolve(self) -> Result<Generator> {
        Ok(match self {
            Generator::Auto if crate::kpktgen::available() => Generator::Kernel,
            Generator::Auto => Generator::AfPacket,
            Generator::Kernel if !crate::kpktgen::available() => {
                bail!("this kernel has no pktgen (/proc/net/pktgen, module pktgen)")
            }
            other => other,
        })
    }

    /// For the report.
    pub fn describe(self) -> &'static str {
        match self {
            Generator::Kernel => "the kernel's pktgen (one thread, clone_skb 0)",
            Generator::AfPacket | Generator::Auto => {
                "the bench's AF_PACKET sender (sendmmsg, qdisc bypassed)"
            }
        }
    }
}

/// Sends for `args.secs` seconds; reports frames sent and the rate.
pub fn send(args: &Args) -> Result<serde_json::Value> {
    if args.kernel {
        return crate::kpktgen::send(args);
    }
    let (src_mac, dst_mac) = (parse_mac(&args.src_mac)?, parse_mac(&args.dst_mac)?);
    let frames: Vec<Vec<u8>> = (0..args.flows.max(1))
        .map(|i| {
            udp_flow_frame(
                src_mac,
                dst_mac,
                (args.src_ip, SRC_PORT + i),
                (args.dst_ip, args.dst_port),
            )
        })
        .collect();
    let socket = PacketSocket::open(&args.ifname)?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.secs);
    let (mut sent, mut full) = (0u64, 0u64);
    while Instant::now() < deadline {
        match socket.send_batch(&frames) {
            Ok(n) => sent += n as u64,
            // The device queue is full: the path is saturated, which is what
            // we want to see; try again.
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => full += 1,
            Err(e) => return Err(e).context("sendmmsg"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "sent": sent,
        "secs": elapsed,
        "per_sec": sent as f64 / elapsed,
        "queue_full": full,
    }))
}

struct PacketSocket {
    fd: libc::c_int,
}

impl PacketSocket {
    fn open(ifname: &str) -> Result<PacketSocket> {
        let name = CString::new(ifname)?;
        // SAFETY: `name` is NUL-terminated and outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            bail!("no interface {ifname} in this namespace");
        }
        // Protocol 0: send only; nothing is queued to us for reading.
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("AF_PACKET socket (needs root)");
        }
        let socket = PacketSocket { fd };
        let one: libc::c_int = 1;
        // Straight to the driver: no qdisc between us and the path.
        // SAFETY: `one` is a c_int that outlives the call, as the option
        // expects.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("PACKET_QDISC_BYPASS");
        }
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        // SAFETY: `addr` is a valid sockaddr_ll of the length given.
        let rc = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("bind to the interface");
        }
        Ok(socket)
    }

    /// One `sendmmsg` of `BATCH` frames, taken from `frames` in turn; how
    /// many the kernel took. (A batch that is not a multiple of the flows
    /// starts the next one at the first flow again: the flows' shares
    /// differ by at most one frame per batch.)
    fn send_batch(&self, frames: &[Vec<u8>]) -> std::io::Result<usize> {
        let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|i| {
            let frame = &frames[i % frames.len()];
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            }
        });
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (msg, iov) in msgs.iter_mut().zip(&mut iovs) {
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at its own `iov`, which points at one
        // of `frames`; all outlive the call, and the kernel only reads them.
        let n = unsafe { libc::sendmmsg(self.fd, msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.fd) };
    }
}

/// A minimum-size (60 bytes without FCS) Ethernet/IPv4/UDP frame from
/// port 9999 to port 9 with a valid IPv4 header checksum and no UDP
/// checksum (0, allowed for IPv4): the frames scenario 5 feeds to the
/// programs directly.
pub fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    frame(src_mac, dst_mac, (src, 9999), (dst, DISCARD_PORT), false)
}

/// The same frame for one flow, with a valid UDP checksum as well, so that
/// the receiver's stack accepts it as it would real traffic (a translation
/// that got the checksum wrong shows up as `InCsumErrors` there), and a NAT
/// on the path has a checksum to update, as it has with real traffic
/// (`bpf_l4_csum_replace` skips a zero one).
pub fn udp_flow_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
) -> Vec<u8> {
    frame(src_mac, dst_mac, src, dst, true)
}

fn frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, sport): (Ipv4Addr, u16),
    (dst, dport): (Ipv4Addr, u16),
    udp_checksum: bool,
) -> Vec<u8> {
    const PAYLOAD: usize = 18;
    let udp_len = 8 + PAYLOAD;
    let ip_len = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + ip_len);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = libc::IPPROTO_UDP as u8;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let checksum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&sport.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&[0u8; PAYLOAD]);
    if !udp_checksum {
        f.extend_from_slice(&udp);
        return f;
    }
    // Over the pseudo-header and the datagram; a computed 0 goes out as
    // 0xffff (0 would mean "no checksum").
    let mut summed = Vec::with_capacity(12 + udp_len);
    summed.extend_from_slice(&src.octets());
    summed.extend_from_slice(&dst.octets());
    summed.extend_from_slice(&[0, libc::IPPROTO_UDP as u8]);
    summed.extend_from_slice(&(udp_len as u16).to_be_bytes());
    summed.extend_from_slice(&udp);
    let checksum = match ipv4_checksum(&summed) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
    f.extend_from_slice(&udp);
    f
}

/// The Internet checksum (RFC 1071) of `data`.
pub fn ipv4_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What one generator run gave, in packets per second.
pub struct Rate {
    /// Sent by the generator (what the kernel took from it).
    pub offered: f64,
    /// Counted by the receiving namespace's device.
    pub received: f64,
    /// Datagrams the receiver's UDP stack refused for a bad checksum
    /// (`InCsumErrors`) during the run: a translation that broke them.
    pub csum_errors: u64,
}

/// One packet-generator run (`generator`, resolved): `flows` UDP flows
/// from `sender` to `dst` for `secs` (after an uncounted warm-up of the
/// same flows), the frames built as `sender`'s own stack would send them to
/// `dst`, counted on arrival by the device of `receiver` that has its
/// address.
pub fn measure(
    generator: Generator,
    sender: &Netns,
    receiver: &Netns,
    dst: SocketAddr,
    flows: u16,
    secs: f64,
) -> Result<Rate> {
    let SocketAddr::V4(dst) = dst else {
        bail!("the packet generator sends IPv4 only, not to {dst}");
    };
    let hop = next_hop(sender, *dst.ip())?;
    let run = |secs: f64| -> Result<Value> {
        cmd::json(
            sender
                .command(SELF_EXE)
                .args([
                    "pktgen",
                    &hop.ifname,
                    &fmt_mac(hop.src_mac),
                    &fmt_mac(hop.dst_mac),
                    &hop.src_ip.to_string(),
                    &dst.ip().to_string(),
                    &secs.to_string(),
                    "--dst-port",
                    &dst.port().to_string(),
                    "--flows",
                    &flows.to_string(),
                ])
                .args((generator == Generator::Kernel).then_some("--kernel"))
                .env_remove("RUST_BACKTRACE"),
        )
    };
    run(WARM_UP_SECS)?;
    let rx_if = receiver.endpoint()?.ifname;
    // Let the receiver drain the warm-up's backlog before the first count,
    // and the run's before the second.
    std::thread::sleep(Duration::from_millis(100));
    let (before, csum_before) = (receiver.rx_packets(&rx_if)?, udp_csum_errors(receiver)?);
    let out = run(secs)?;
    std::thread::sleep(Duration::from_millis(100));
    let received = receiver.rx_packets(&rx_if)? - before;
    let csum_errors = udp_csum_errors(receiver)? - csum_before;
    let num = |key: &str| {
        out[key]
            .as_f64()
            .with_context(|| format!("packet generator output has no {key}: {out}"))
    };
    Ok(Rate {
        offered: num("per_sec")?,
        received: received as f64 / num("secs")?,
        csum_errors,
    })
}

/// `Udp: InCsumErrors` of `ns` (from its `/proc/net/snmp`, which shows the
/// namespace of the process reading it).
fn udp_csum_errors(ns: &Netns) -> Result<u64> {
    let snmp = cmd::output(ns.command("cat").arg("/proc/net/snmp"))?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        bail!("no Udp lines in /proc/net/snmp of {}", ns.name);
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "InCsumErrors")
        .and_then(|(_, value)| value.parse().ok())
        .with_context(|| format!("no Udp InCsumErrors in /proc/net/snmp of {}", ns.name))
}

/// How `ns` sends to a destination: out of which interface, from which
/// MAC and address, to which MAC.
struct Hop {
    ifname: String,
    src_mac: [u8; 6],
    src_ip: Ipv4Addr,
    dst_mac: [u8; 6],
}

/// How `ns` (its one endpoint) reaches `dst`: its routing table says
/// through which neighbour (the gateway if `dst` is off-link, `dst`
/// itself otherwise), its neighbour table that neighbour's MAC. One ping
/// resolves the neighbour first; whether it is answered does not matter
/// (the ARP exchange is what counts).
fn next_hop(ns: &Netns, dst: Ipv4Addr) -> Result<Hop> {
    let ep = ns.endpoint()?;
    let dst_text = dst.to_string();
    let _ = ns
        .command("ping")
        .args(["-q", "-n", "-c", "1", "-W", "1", &dst_text])
        .output();
    let route: Value = serde_json::from_str(&ns.ip(&["-j", "route", "get", &dst_text])?)?;
    let route = &route[0];
    let ifname = ep.ifname.as_str();
    if route["dev"].as_str() != Some(ifname) {
        bail!(
            "{} routes {dst} elsewhere than out of {ifname}: {route}",
            ns.name
        );
    }
    let neighbour = route["gateway"].as_str().unwrap_or(&dst_text);
    let neigh: Value =
        serde_json::from_str(&ns.ip(&["-j", "neigh", "show", "to", neighbour, "dev", ifname])?)?;
    let dst_mac = neigh[0]["lladdr"].as_str().with_context(|| {
        format!(
            "{} has no neighbour entry for {neighbour} on {ifname} (towards {dst})",
            ns.name
        )
    })?;
    Ok(Hop {
        dst_mac: parse_mac(dst_mac)?,
        ifname: ep.ifname,
        src_mac: ep.mac,
        src_ip: ep.ip,
    })
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_minimum_size_with_valid_checksums() {
        let (src, dst) = (Ipv4Addr::new(198, 19, 0, 1), Ipv4Addr::new(198, 19, 0, 2));
        let plain = udp_frame([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], src, dst);
        assert_eq!(plain.len(), 60);
        assert_eq!(ipv4_checksum(&plain[14..34]), 0);
        assert_eq!(&plain[34..42], &[0x27, 0x0f, 0, 9, 0, 26, 0, 0]);
        let f = udp_flow_frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            (src, 10000),
            (dst, 20009),
        );
        assert_eq!(f.len(), 60);
        assert_eq!(&f[34..38], &[0x27, 0x10, 0x4e, 0x29]);
        // A header with its checksum in place sums to zero.
        assert_eq!(ipv4_checksum(&f[14..34]), 0);
        // So does the pseudo-header plus the datagram, checksum included.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.octets());
        pseudo.extend_from_slice(&dst.octets());
        pseudo.extend_from_slice(&[0, 17, 0, 26]);
        pseudo.extend_from_slice(&f[34..]);
        assert_ne!(&f[40..42], &[0, 0]);
        assert_eq!(ipv4_checksum(&pseudo), 0);
    }
}
