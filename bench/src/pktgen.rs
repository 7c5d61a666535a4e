//! A packet generator of our own: the kernel here has no pktgen, and
//! xdp-trafficgen fails on it (TOOLCHAIN.md). An AF_PACKET socket sends one
//! prebuilt 60-byte Ethernet/IPv4/UDP frame in batches with `sendmmsg`,
//! bypassing the qdisc, so the sender costs little more than the path it
//! feeds. The frame goes to the receiver's MAC and IP (UDP port 9, discard),
//! so every path forwards it like real traffic; the receiver's device
//! counter says how many arrived.

use std::ffi::CString;
use std::mem::size_of;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::json;

use crate::netns::parse_mac;

/// Frames handed to the kernel per `sendmmsg`.
const BATCH: usize = 64;

#[derive(clap::Args)]
pub struct Args {
    /// The interface to send from (in the current namespace).
    ifname: String,
    src_mac: String,
    dst_mac: String,
    src_ip: Ipv4Addr,
    dst_ip: Ipv4Addr,
    secs: f64,
}

/// Sends for `args.secs` seconds; reports frames sent and the rate.
pub fn send(args: &Args) -> Result<serde_json::Value> {
    let frame = udp_frame(
        parse_mac(&args.src_mac)?,
        parse_mac(&args.dst_mac)?,
        args.src_ip,
        args.dst_ip,
    );
    let socket = PacketSocket::open(&args.ifname)?;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.secs);
    let (mut sent, mut full) = (0u64, 0u64);
    while Instant::now() < deadline {
        match socket.send_batch(&frame) {
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

    /// One `sendmmsg` of `BATCH` copies of `frame`; how many the kernel took.
    fn send_batch(&self, frame: &[u8]) -> std::io::Result<usize> {
        let mut iov = libc::iovec {
            iov_base: frame.as_ptr() as *mut libc::c_void,
            iov_len: frame.len(),
        };
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for msg in &mut msgs {
            msg.msg_hdr.msg_iov = &mut iov;
            msg.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at `iov`, which points at `frame`;
        // both outlive the call, and the kernel only reads them.
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

/// A minimum-size (60 bytes without FCS) Ethernet/IPv4/UDP frame with a
/// valid IPv4 header checksum, so that no stage drops it as malformed.
pub fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    const PAYLOAD: usize = 18;
    let ip_len = 20 + 8 + PAYLOAD;
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
    f.extend_from_slice(&9999u16.to_be_bytes()); // source port
    f.extend_from_slice(&9u16.to_be_bytes()); // discard
    f.extend_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed for IPv4)
    f.extend_from_slice(&[0u8; PAYLOAD]);
    f
}

pub fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_minimum_size_with_a_valid_checksum() {
        let f = udp_frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(198, 19, 0, 1),
            Ipv4Addr::new(198, 19, 0, 2),
        );
        assert_eq!(f.len(), 60);
        // A header with its checksum in place sums to zero.
        assert_eq!(ipv4_checksum(&f[14..34]), 0);
    }
}
