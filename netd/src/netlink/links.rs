//! Small rtnetlink helpers shared by the host and in-namespace operations.
//! They return `io::Error` carrying the kernel's errno; the callers add which
//! object and which step failed.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::{NetlinkError, nl_errno, nl_io};

/// Linux's IFNAMSIZ minus the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// Rejects names the kernel would refuse (with a less helpful EINVAL or
/// ERANGE) or that `ip` could not address.
pub(super) fn check_ifname(name: &str) -> Result<(), NetlinkError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_IFNAME_LEN {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        "contains '/', ':', whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(NetlinkError::InvalidName {
        what: "interface",
        name: name.to_string(),
        reason,
    })
}

/// The kinds of link this module cares to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Bridge,
    Veth,
    Other,
}

/// The `IFLA_INFO_KIND` of a link; `None` for links without one (e.g. `lo`,
/// physical NICs).
pub(super) fn link_kind(link: &LinkMessage) -> Option<Kind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(InfoKind::Bridge) => Some(Kind::Bridge),
            LinkInfo::Kind(InfoKind::Veth) => Some(Kind::Veth),
            LinkInfo::Kind(_) => Some(Kind::Other),
            _ => None,
        }),
        _ => None,
    })
}

/// `IFLA_LINK`: for a veth, the ifindex of its peer (in the peer's own
/// namespace).
pub(super) fn link_peer_index(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    })
}

/// The link called `name`, `None` if there is none.
pub(super) async fn get(handle: &Handle, name: &str) -> io::Result<Option<LinkMessage>> {
    let mut replies = handle.link().get().match_name(name).execute();
    match replies.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl_io(e)),
    }
}

/// Names of every link reachable through `handle`.
pub(super) async fn names(handle: &Handle) -> io::Result<Vec<String>> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl_io)?;
    Ok(links
        .iter()
        .filter_map(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })
        })
        .collect())
}

/// Deletes the link called `name` (by name, so there is no lookup/delete
/// race on the index); a missing link is Ok.
pub(super) async fn delete(handle: &Handle, name: &str) -> io::Result<()> {
    match handle
        .link()
        .del_with_message(LinkUnspec::new_with_name(name).build())
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(nl_io(e)),
    }
}

/// `ip addr replace ADDR/LEN dev INDEX`: replace, so that re-applying after a
/// restart is a no-op instead of EEXIST.
pub(super) async fn add_address(
    handle: &Handle,
    index: u32,
    addr: Ipv4Addr,
    prefix_len: u8,
) -> io::Result<()> {
    handle
        .address()
        .add(index, IpAddr::V4(addr), prefix_len)
        .replace()
        .execute()
        .await
        .map_err(nl_io)
}

/// `ip link set INDEX up`.
pub(super) async fn set_up(handle: &Handle, index: u32) -> io::Result<()> {
    handle
        .link()
        .change(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl_io)
}

/// `ip link set INDEX [master BRIDGE] up` in one request.
pub(super) async fn set_host_side_up(
    handle: &Handle,
    index: u32,
    bridge: Option<u32>,
) -> io::Result<()> {
    let mut msg = LinkUnspec::new_with_index(index).up();
    if let Some(br) = bridge {
        msg = msg.controller(br);
    }
    handle
        .link()
        .change(msg.build())
        .execute()
        .await
        .map_err(nl_io)
}

/// `ip route replace default via GATEWAY dev INDEX`: replace, because the
/// namespace may already have a default route through another endpoint.
pub(super) async fn replace_default_route(
    handle: &Handle,
    index: u32,
    gateway: Ipv4Addr,
) -> io::Result<()> {
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(nl_io)
}
