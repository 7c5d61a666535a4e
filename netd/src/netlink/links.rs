//! Small rtnetlink helpers shared by the host and in-namespace operations.
//! They return `io::Error` carrying the kernel's errno; the callers add which
//! object and which step failed.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::{Handle, LinkBridgePort, LinkUnspec, RouteMessageBuilder};

use super::{NetlinkError, nl_errno, nl_io};

/// Linux's IFNAMSIZ minus the terminating NUL.
const MAX_IFNAME_LEN: usize = 15;

/// Rejects names the kernel would refuse (with a less helpful EINVAL or
/// ERANGE) or that `ip` could not address.
pub fn check_ifname(name: &str) -> Result<(), NetlinkError> {
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
    MacVlan,
    Vxlan,
    Other,
}

/// The `IFLA_INFO_KIND` of a link; `None` for links without one (e.g. `lo`,
/// physical NICs).
pub(super) fn link_kind(link: &LinkMessage) -> Option<Kind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(InfoKind::Bridge) => Some(Kind::Bridge),
            LinkInfo::Kind(InfoKind::Veth) => Some(Kind::Veth),
            LinkInfo::Kind(InfoKind::MacVlan) => Some(Kind::MacVlan),
            LinkInfo::Kind(InfoKind::Vxlan) => Some(Kind::Vxlan),
            LinkInfo::Kind(_) => Some(Kind::Other),
            _ => None,
        }),
        _ => None,
    })
}

/// `IFLA_LINK`: for a veth, the ifindex of its peer (in the peer's own
/// namespace); for a macvlan, the ifindex of its parent (in the parent's
/// namespace).
pub(super) fn link_peer_index(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    })
}

/// For a VXLAN link: whether it is a collect_md ("external") device, and
/// its UDP port (`IFLA_VXLAN_COLLECT_METADATA`, `IFLA_VXLAN_PORT`).
pub(super) fn vxlan_external_port(link: &LinkMessage) -> (bool, Option<u16>) {
    let data = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vxlan(data)) => Some(data),
            _ => None,
        }),
        _ => None,
    });
    let (mut external, mut port) = (false, None);
    for info in data.into_iter().flatten() {
        match info {
            InfoVxlan::CollectMetadata(on) => external = *on,
            InfoVxlan::Port(p) => port = Some(*p),
            _ => {}
        }
    }
    (external, port)
}

/// `IFLA_MTU`.
pub(super) fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

/// `IFLA_ADDRESS`: the link's MAC.
pub(super) fn link_mac(link: &LinkMessage) -> Option<&[u8]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(mac) => Some(mac.as_slice()),
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

/// The IPv4 addresses (with prefix lengths) on link `index`.
pub(super) async fn ipv4_addresses(handle: &Handle, index: u32) -> io::Result<Vec<(Ipv4Addr, u8)>> {
    let messages: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl_io)?;
    Ok(messages
        .iter()
        // The filter is a hint some kernels ignore on dumps.
        .filter(|m| m.header.index == index)
        .flat_map(|m| {
            m.attributes.iter().filter_map(move |a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some((*ip, m.header.prefix_len)),
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

/// `ip link set INDEX address MAC`.
pub(super) async fn set_mac(handle: &Handle, index: u32, mac: [u8; 6]) -> io::Result<()> {
    handle
        .link()
        .change(
            LinkUnspec::new_with_index(index)
                .address(mac.to_vec())
                .build(),
        )
        .execute()
        .await
        .map_err(nl_io)
}

/// `ip link set INDEX master BRIDGE`. Setting the master a port already has
/// is a no-op in the kernel (the port is not re-added).
pub(super) async fn set_controller(handle: &Handle, index: u32, bridge: u32) -> io::Result<()> {
    handle
        .link()
        .change(LinkUnspec::new_with_index(index).controller(bridge).build())
        .execute()
        .await
        .map_err(nl_io)
}

/// `ip link set INDEX type bridge_slave learning off flood off mcast_flood
/// off bcast_flood off`: the bridge never learns a MAC on this port nor
/// floods unknown unicast, multicast or broadcast to it (frames the bridge
/// device itself sends still go out). Needs `RTM_NEWLINK` with
/// `IFLA_INFO_SLAVE_DATA`, and the link must already be a bridge port.
pub(super) async fn set_port_no_learning_no_flood(handle: &Handle, index: u32) -> io::Result<()> {
    let msg = LinkBridgePort::new(index)
        .learning(false)
        .flood(false)
        .mcast_flood(false)
        .bcast_flood(false)
        .build();
    handle.link().set_port(msg).execute().await.map_err(nl_io)
}

/// `bridge fdb replace MAC dev PORT master static`: a static entry in the
/// bridge's forwarding database. iproute2's "static" is `NUD_NOARP` (without
/// `NUD_PERMANENT`, which would make it a "local" entry, i.e. delivered to
/// the bridge itself); `NTF_MASTER` addresses the bridge's table rather than
/// the port's own.
pub(super) async fn replace_static_fdb(handle: &Handle, port: u32, mac: [u8; 6]) -> io::Result<()> {
    handle
        .neighbours()
        .add_bridge(port, &mac)
        .state(NeighbourState::Noarp)
        .flags(NeighbourFlags::Controller)
        .replace()
        .execute()
        .await
        .map_err(nl_io)
}

/// `ip neigh replace IP lladdr MAC dev INDEX nud permanent`.
pub(super) async fn replace_permanent_neighbour(
    handle: &Handle,
    index: u32,
    ip: Ipv4Addr,
    mac: [u8; 6],
) -> io::Result<()> {
    handle
        .neighbours()
        .add(index, IpAddr::V4(ip))
        .state(NeighbourState::Permanent)
        .link_layer_address(&mac)
        .replace()
        .execute()
        .await
        .map_err(nl_io)
}

/// The IPv4 neighbour entry for `ip` on link `index`, if any.
async fn find_neighbour(
    handle: &Handle,
    index: u32,
    ip: Ipv4Addr,
) -> io::Result<Option<NeighbourMessage>> {
    let mut dump = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute();
    while let Some(n) = dump.try_next().await.map_err(nl_io)? {
        let dst_matches = n.attributes.iter().any(
            |a| matches!(a, NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) if *d == ip),
        );
        if n.header.ifindex == index && dst_matches {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// `ip neigh del IP dev INDEX`; a missing entry (or link) is Ok. With
/// `only_mac`, the entry is left alone unless it points to that MAC (so a
/// rollback never removes an entry someone else wrote).
pub(super) async fn delete_neighbour(
    handle: &Handle,
    index: u32,
    ip: Ipv4Addr,
    only_mac: Option<[u8; 6]>,
) -> io::Result<()> {
    if let Some(mac) = only_mac {
        let Some(n) = find_neighbour(handle, index, ip).await? else {
            return Ok(());
        };
        let ours = n
            .attributes
            .iter()
            .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(l) if l.as_slice() == mac));
        if !ours {
            return Ok(());
        }
    }
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.ifindex = index;
    msg.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
    match handle.neighbours().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(nl_errno(&e), Some(libc::ENOENT | libc::ENODEV)) => Ok(()),
        Err(e) => Err(nl_io(e)),
    }
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
