//! Endpoint programs as classic TC filters: a `clsact` qdisc on the
//! host-side veth and one `cls_bpf` filter (direct action) on each of its
//! hooks, managed over rtnetlink. The VXLAN device's program is one too,
//! and the device is up only while it runs there ([`Rtnl::set_link_up`]).
//!
//! # Why not TCX links
//! Attaching or detaching a TCX program swaps the device's program array
//! and then waits for an RCU grace period (`synchronize_rcu` under RTNL,
//! 13–16 ms each on the bench machine): two of those made up most of the
//! 25 ms it took to give a container a network. Creating or replacing a
//! `cls_bpf` filter does not wait (the replaced program is released after a
//! grace period, asynchronously): both hooks take about 0.2 ms.
//!
//! Filters live as long as their device, like pinned links: a daemon that
//! exits or crashes leaves the programs running, and a deleted veth takes its
//! filters with it, so there is nothing to pin and nothing to go stale when
//! a veth is recreated under the same name.
//!
//! # Replacing in place
//! netd's filter has a fixed place on each hook ([`PRIORITY`], [`HANDLE`]).
//! `RTM_NEWTFILTER` with `NLM_F_CREATE` but without `NLM_F_EXCL` creates it
//! or, if it exists, swaps its program atomically, so a restarted or
//! upgraded daemon takes over endpoints without a moment of unfiltered
//! traffic.
use std::{io, os::fd::RawFd};

use netd_common::Direction;
use rtnetlink::{
    packet_core::{
        NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader,
        NetlinkMessage, NetlinkPayload,
    },
    packet_route::{
        RouteNetlinkMessage,
        tc::{
            TcAttribute, TcBpfFlags, TcFilterBpf, TcFilterBpfOption, TcHandle, TcHeader, TcMessage,
            TcOption,
        },
    },
    sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE},
};

/// Priority of netd's filter on each hook: first, so nothing else sees an
/// endpoint's traffic before netd's policy has.
pub const PRIORITY: u16 = 1;
/// Handle of netd's filter within [`PRIORITY`].
pub const HANDLE: u32 = 1;
/// `ETH_P_ALL`: the filter sees every protocol.
const ETH_P_ALL: u16 = 0x0003;
/// The `clsact` qdisc's handle (`ffff:`).
const CLSACT_HANDLE: u32 = 0xFFFF_0000;

/// A BPF filter on one hook of an interface, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The hook: ingress of the host-side veth is traffic from the endpoint.
    pub direction: Direction,
    pub priority: u16,
    pub handle: u32,
    /// Id of the program the filter runs.
    pub program_id: u32,
    /// The program's name as given when the filter was made.
    pub program_name: String,
}

impl Filter {
    /// Whether this is netd's filter (the one [`set`] manages).
    pub fn is_netd(&self) -> bool {
        self.priority == PRIORITY && self.handle == HANDLE
    }
}

/// A route netlink socket for the requests of one operation.
pub struct Rtnl {
    socket: Socket,
    sequence: u32,
}

impl Rtnl {
    pub fn open() -> io::Result<Rtnl> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl {
            socket,
            sequence: 0,
        })
    }

    /// Adds the `clsact` qdisc to `ifindex`; one already there is fine.
    pub fn add_clsact(&mut self, ifindex: u32) -> io::Result<()> {
        let mut msg = TcMessage::with_index(ifindex_i32(ifindex)?);
        msg.header.parent = TcHandle::CLSACT;
        msg.header.handle = TcHandle::from(CLSACT_HANDLE);
        msg.attributes.push(TcAttribute::Kind("clsact".to_string()));
        match self.request(
            RouteNetlinkMessage::NewQueueDiscipline(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Creates netd's filter on the `direction` hook of `ifindex` running
    /// `program_fd`, or atomically switches the existing one to it.
    /// Returns whether it created the filter (a fresh veth, the usual
    /// case, costs one request).
    pub fn set(
        &mut self,
        ifindex: u32,
        direction: Direction,
        program_fd: RawFd,
        program_name: &str,
    ) -> io::Result<bool> {
        let mut msg = filter_message(ifindex, direction, PRIORITY)?;
        msg.header.handle = TcHandle::from(HANDLE);
        msg.attributes
            .push(TcAttribute::Kind(TcFilterBpf::KIND.to_string()));
        msg.attributes.push(TcAttribute::Options(vec![
            TcOption::Bpf(TcFilterBpfOption::ProgFd(fd_u32(program_fd)?)),
            TcOption::Bpf(TcFilterBpfOption::ProgName(program_name.to_string())),
            TcOption::Bpf(TcFilterBpfOption::Flags(TcBpfFlags::DirectAction)),
        ]));
        let create = RouteNetlinkMessage::NewTrafficFilter(msg.clone());
        match self.request(create, NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self
                .request(RouteNetlinkMessage::NewTrafficFilter(msg), NLM_F_CREATE)
                .map(|_| false),
            Err(e) => Err(e),
        }
    }

    /// `ip link set INDEX up` (or `down`).
    pub fn set_link_up(&mut self, ifindex: u32, up: bool) -> io::Result<()> {
        let link = rtnetlink::LinkUnspec::new_with_index(ifindex);
        let link = if up { link.up() } else { link.down() };
        self.request(RouteNetlinkMessage::SetLink(link.build()), 0)
            .map(drop)
    }

    /// Deletes netd's filter from the `direction` hook of `ifindex`. A
    /// missing filter, qdisc or interface is not an error.
    pub fn remove(&mut self, ifindex: u32, direction: Direction) -> io::Result<()> {
        let mut msg = filter_message(ifindex, direction, PRIORITY)?;
        msg.header.handle = TcHandle::from(HANDLE);
        msg.attributes
            .push(TcAttribute::Kind(TcFilterBpf::KIND.to_string()));
        match self.request(RouteNetlinkMessage::DelTrafficFilter(msg), 0) {
            Err(e) if gone(&e) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The BPF filters on the `direction` hook of `ifindex` (netd's and any
    /// other), empty if the interface has no `clsact` qdisc or is gone.
    pub fn filters(&mut self, ifindex: u32, direction: Direction) -> io::Result<Vec<Filter>> {
        let msg = filter_message(ifindex, direction, 0)?;
        let replies = match self.request(RouteNetlinkMessage::GetTrafficFilter(msg), NLM_F_DUMP) {
            Err(e) if gone(&e) => return Ok(Vec::new()),
            other => other?,
        };
        Ok(replies
            .into_iter()
            .filter_map(|reply| match reply {
                RouteNetlinkMessage::NewTrafficFilter(m) => bpf_filter(direction, &m),
                _ => None,
            })
            .collect())
    }

    /// Sends one request and collects the replies up to its acknowledgement
    /// (or the end of a dump). A negative acknowledgement is the error.
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let mut replies = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len.next_multiple_of(4);
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(replies),
                    NetlinkPayload::Error(e) => return Err(e.to_io()),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
        }
    }
}

/// A filter request for a hook of `ifindex`: `priority` 0 addresses all
/// priorities (dumps).
fn filter_message(ifindex: u32, direction: Direction, priority: u16) -> io::Result<TcMessage> {
    let mut msg = TcMessage::with_index(ifindex_i32(ifindex)?);
    msg.header.parent = hook(direction);
    msg.header.info = (u32::from(priority) << 16) | u32::from(ETH_P_ALL.to_be());
    Ok(msg)
}

/// The `clsact` hook for a direction: the endpoint's packets enter the
/// host at the host-side veth's ingress and leave towards it at its egress.
const fn hook(direction: Direction) -> TcHandle {
    TcHandle {
        major: TcHandle::CLSACT.major,
        minor: match direction {
            Direction::FromEndpoint => TcHandle::MIN_INGRESS,
            Direction::ToEndpoint => TcHandle::MIN_EGRESS,
        },
    }
}

/// The filter a dump reply describes, if it is a BPF filter (a dump also
/// lists each priority's classifier head, which has no options).
fn bpf_filter(direction: Direction, msg: &TcMessage) -> Option<Filter> {
    let TcHeader { handle, info, .. } = msg.header;
    let is_bpf = msg
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(k) if k == TcFilterBpf::KIND));
    if !is_bpf {
        return None;
    }
    let (mut program_id, mut program_name) = (None, String::new());
    for attribute in &msg.attributes {
        if let TcAttribute::Options(options) = attribute {
            for option in options {
                match option {
                    TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => program_id = Some(*id),
                    TcOption::Bpf(TcFilterBpfOption::ProgName(name)) => {
                        program_name.clone_from(name);
                    }
                    _ => {}
                }
            }
        }
    }
    Some(Filter {
        direction,
        priority: (info >> 16) as u16,
        handle: u32::from(handle),
        program_id: program_id?,
        program_name,
    })
}

/// Errors that mean there is nothing to remove or list: no such filter,
/// no `clsact` qdisc, or no such interface any more.
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENODEV | libc::EINVAL)
    )
}

fn ifindex_i32(ifindex: u32) -> io::Result<i32> {
    i32::try_from(ifindex).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

fn fd_u32(fd: RawFd) -> io::Result<u32> {
    u32::try_from(fd).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}
