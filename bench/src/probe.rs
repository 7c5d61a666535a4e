//! What a container on another host sees of a change in the cluster: does
//! a name resolve (one query to netd's embedded DNS server at
//! 127.0.0.11:53), and does an address answer a ping (one ICMP echo).
//! Both run on the calling thread, which must have entered the
//! container's namespace; a probe takes a fraction of a millisecond, so a
//! tight loop of them times a change to the millisecond without a process
//! start in the way.

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{Context as _, Result};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::pktgen::ipv4_checksum;

/// netd's embedded DNS server, inside every container (as Docker's).
const EMBEDDED_DNS: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    Ipv4Addr::new(127, 0, 0, 11),
    53,
));
/// ICMP types.
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;

/// The address `name` resolves to in this namespace, if it does within
/// `timeout` (netd forwards a name it does not know, so "not yet" may be
/// an error answer, a timeout, or no address).
pub fn resolve(name: &str, timeout: Duration) -> Result<Option<Ipv4Addr>> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("no loopback in this namespace")?;
    socket.set_read_timeout(Some(timeout))?;
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    let id = query.metadata.id;
    socket.send_to(&query.to_vec()?, EMBEDDED_DNS)?;
    let mut buf = [0u8; 1500];
    loop {
        let Ok(n) = socket.recv(&mut buf) else {
            return Ok(None);
        };
        // An answer to an earlier query that timed out: not ours.
        let Ok(answer) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if answer.metadata.id != id {
            continue;
        }
        return Ok(answer.answers.iter().find_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        }));
    }
}

/// Whether `ip` answers one ICMP echo within `timeout`. A raw socket
/// (root), so that the identifier is ours to match replies with.
pub fn ping(ip: Ipv4Addr, seq: u16, timeout: Duration) -> Result<bool> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .context("cannot open a raw ICMP socket")?;
    socket.set_read_timeout(Some(timeout))?;
    let id = (std::process::id() & 0xffff) as u16;
    let mut echo = [0u8; 16];
    echo[0] = ECHO_REQUEST;
    echo[4..6].copy_from_slice(&id.to_be_bytes());
    echo[6..8].copy_from_slice(&seq.to_be_bytes());
    let checksum = ipv4_checksum(&echo);
    echo[2..4].copy_from_slice(&checksum.to_be_bytes());
    socket.send_to(&echo, &SockAddr::from(SocketAddr::from((ip, 0))))?;
    let mut buf = [0u8; 1500];
    // A raw socket sees every ICMP message of the namespace: read until
    // ours comes back or the wait is over.
    while let Ok(n) = (&socket).read(&mut buf) {
        let header = usize::from(buf[0] & 0x0f) * 4;
        let Some(icmp) = buf[..n].get(header..header + 8) else {
            continue;
        };
        let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
        if from == ip
            && icmp[0] == ECHO_REPLY
            && icmp[4..6] == id.to_be_bytes()
            && icmp[6..8] == seq.to_be_bytes()
        {
            return Ok(true);
        }
    }
    Ok(false)
}
