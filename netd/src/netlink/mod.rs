//! Kernel plumbing for containers: network namespaces, bridges, veth pairs,
//! macvlans, addresses, routes, neighbour and FDB entries, over rtnetlink.
//!
//! Bridges never flood: the eBPF programs forward between containers and
//! answer ARP, so every container port has learning and flooding off, a
//! static FDB entry for the container's MAC, and the bridge (the host's
//! gateway address) a permanent neighbour entry for the container's IP, so
//! the host never broadcasts an ARP request either. IPv6 is off in
//! container namespaces and on the links netd makes (no RS/DAD/MLD
//! multicast).
//!
//! Every kernel object is named in the errors, so that a failure surfaces to
//! the user as "failed to create veth pair netdv1234/eth0 in netns c1: File
//! exists (os error 17)" rather than a bare errno.
//!
//! Acting inside a container's namespace needs a netlink socket that belongs
//! to that namespace: a socket is bound to the namespace of the thread that
//! created it. [`netns::connect`] opens one from a short-lived dedicated
//! thread (never a tokio worker, whose namespace must stay the daemon's).

mod links;
pub mod netns;

pub use links::check_ifname;
pub use netns::Netns;
mod sysctl;

use std::io;
use std::net::Ipv4Addr;

use rtnetlink::Handle;
use thiserror::Error;

use links::{link_kind, link_mac, link_peer_index};

/// Failures of the kernel plumbing. Each variant names the object involved;
/// callers match on variants or on [`NetlinkError::raw_os_error`], never on
/// the text.
#[derive(Debug, Error)]
pub enum NetlinkError {
    /// The kernel (or the socket to it) refused an operation. `action` says
    /// what was attempted on which object.
    #[error("failed to {action}: {source}")]
    Kernel {
        action: String,
        #[source]
        source: io::Error,
    },
    /// `netns::create` on a name that is already a namespace.
    #[error("network namespace {0} already exists")]
    NetnsExists(String),
    /// The namespace file is missing (or is not a mounted namespace).
    #[error("network namespace {ns} not found (no namespace mounted at {path})", ns = .0, path = .0.path().display())]
    NetnsNotFound(netns::Netns),
    /// A link that must exist (a bridge to enslave to, an interface to route
    /// through) does not.
    #[error("link {name} not found{context}")]
    LinkNotFound { name: String, context: String },
    /// A link of that name exists but is not the object we would have made,
    /// so adopting it would hijack someone else's device.
    #[error("link {name} already exists and {detail}; remove it or pick another name")]
    LinkConflict { name: String, detail: String },
    /// An IPv4 prefix length above 32.
    #[error("invalid IPv4 prefix length /{0}: must be 0..=32")]
    InvalidPrefix(u8),
    /// A name that the kernel or the filesystem would reject or misread.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
}

impl NetlinkError {
    /// The errno behind a kernel failure, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the failure means "it already exists".
    pub fn is_exists(&self) -> bool {
        matches!(
            self,
            NetlinkError::NetnsExists(_) | NetlinkError::LinkConflict { .. }
        ) || self.raw_os_error() == Some(libc::EEXIST)
    }

    /// True when the failure means "no such object".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            NetlinkError::NetnsNotFound(_) | NetlinkError::LinkNotFound { .. }
        ) || matches!(self.raw_os_error(), Some(libc::ENODEV | libc::ENOENT))
    }

    pub(crate) fn kernel(action: impl Into<String>, source: io::Error) -> Self {
        NetlinkError::Kernel {
            action: action.into(),
            source,
        }
    }
}

/// Turns an rtnetlink error into an `io::Error`, keeping the errno when the
/// kernel sent one so that it prints as "File exists (os error 17)" and can be
/// matched on.
pub(crate) fn nl_io(err: rtnetlink::Error) -> io::Error {
    match err {
        rtnetlink::Error::NetlinkError(msg) if msg.code.is_some() => msg.to_io(),
        other => io::Error::other(other),
    }
}

/// The errno of an rtnetlink error, if the kernel sent one.
pub(crate) fn nl_errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

/// What VXLAN over IPv4 adds to a container's frame on the underlay: the
/// outer IPv4 (20), UDP (8) and VXLAN (8) headers, and the inner frame's
/// Ethernet header (14), which the container's MTU does not count. An
/// overlay endpoint's MTU is the underlay's minus this, so that what it
/// sends fits the underlay unfragmented.
pub const VXLAN_OVERHEAD: u32 = 50;

/// Everything needed to wire one container endpoint: which namespace, the
/// names on both sides, and the addressing the engine allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPlumbing {
    /// The container's namespace.
    pub netns: Netns,
    /// Host side of the veth pair (at most 15 bytes).
    pub host_ifname: String,
    /// Interface name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// Whether this endpoint carries the container's default route.
    pub default_route: bool,
    /// Bridge to enslave the host side to; `None` leaves it standalone (the
    /// eBPF datapath redirects without a bridge).
    pub bridge: Option<String>,
    pub mtu: Option<u32>,
}

/// Everything needed to give a container a macvlan on a host interface:
/// the container then sits directly on the parent's L2 segment with its own
/// MAC (Docker's `macvlan` driver, mode bridge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvlanPlumbing {
    /// The container's namespace.
    pub netns: Netns,
    /// Host interface the macvlan sits on (`-o parent=IFACE`).
    pub parent: String,
    /// Interface name inside the container (`eth0`, `eth1`, ...).
    pub ifname: String,
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// Whether this endpoint carries the container's default route.
    pub default_route: bool,
    pub mtu: Option<u32>,
    /// The ifindex to give the macvlan in the namespace; `None`: the
    /// kernel's choice.
    pub index: Option<u32>,
}

/// `aa:bb:cc:dd:ee:ff`, for messages.
fn fmt_mac(mac: [u8; 6]) -> String {
    let [a, b, c, d, e, f] = mac;
    format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
}

/// A netlink connection in the daemon's (host) namespace. Cheap to clone:
/// clones share the connection task.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket in the calling thread's namespace and spawns
    /// its connection task on the current tokio runtime (so it must be called
    /// from within one).
    pub async fn new() -> Result<Netlink, NetlinkError> {
        let (conn, handle, _unsolicited) = rtnetlink::new_connection()
            .map_err(|e| NetlinkError::kernel("open a netlink socket in the host netns", e))?;
        // Dropping the unsolicited-message receiver lets the connection task
        // end once the last handle is dropped.
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// Creates (or adopts if it exists) a Linux bridge `name` with MAC `mac`
    /// carrying `gateway/prefix_len`, and sets it up. The bridge holds the
    /// network's gateway address for the host, as Docker's `br-xxxx` does;
    /// its MAC is set explicitly (and fixed on an adopted bridge) so that
    /// the gateway's MAC is stable and known to the eBPF programs, instead
    /// of following the lowest port MAC. IPv6 is turned off on it (best
    /// effort). Returns its ifindex.
    pub async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix_len: u8,
        mac: [u8; 6],
    ) -> Result<u32, NetlinkError> {
        links::check_ifname(name)?;
        check_prefix(prefix_len)?;
        let link = match links::get(&self.handle, name)
            .await
            .map_err(|e| NetlinkError::kernel(format!("look up bridge {name}"), e))?
        {
            Some(link) => {
                if link_kind(&link) != Some(links::Kind::Bridge) {
                    return Err(NetlinkError::LinkConflict {
                        name: name.to_string(),
                        detail: "is not a bridge".to_string(),
                    });
                }
                link
            }
            None => self.create_bridge(name, mac).await?,
        };
        let index = link.header.index;
        if link_mac(&link) != Some(&mac[..]) {
            links::set_mac(&self.handle, index, mac)
                .await
                .map_err(|e| {
                    NetlinkError::kernel(format!("set MAC {} on bridge {name}", fmt_mac(mac)), e)
                })?;
        }
        // Before it goes up, so it never gets a link-local address. Optional:
        // the bridge works without it.
        if let Err(e) = sysctl::disable_ipv6_on_link(name) {
            tracing::warn!(bridge = name, error = %e, "cannot disable IPv6 on bridge");
        }
        links::add_address(&self.handle, index, gateway, prefix_len)
            .await
            .map_err(|e| {
                NetlinkError::kernel(
                    format!("add address {gateway}/{prefix_len} to bridge {name}"),
                    e,
                )
            })?;
        links::set_up(&self.handle, index)
            .await
            .map_err(|e| NetlinkError::kernel(format!("set bridge {name} up"), e))?;
        Ok(index)
    }

    /// Creates the bridge with its MAC (adopting one a concurrent creator
    /// made) and returns it as the kernel reports it.
    async fn create_bridge(
        &self,
        name: &str,
        mac: [u8; 6],
    ) -> Result<rtnetlink::packet_route::link::LinkMessage, NetlinkError> {
        let res = self
            .handle
            .link()
            .add(
                rtnetlink::LinkBridge::new(name)
                    .address(mac.to_vec())
                    .build(),
            )
            .execute()
            .await;
        match res {
            Ok(()) => {}
            // Lost a race with a concurrent creator: adopt theirs below.
            Err(e) if nl_errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(NetlinkError::kernel(
                    format!("create bridge {name}"),
                    nl_io(e),
                ));
            }
        }
        match links::get(&self.handle, name)
            .await
            .map_err(|e| NetlinkError::kernel(format!("look up bridge {name}"), e))?
        {
            Some(link) if link_kind(&link) == Some(links::Kind::Bridge) => Ok(link),
            Some(_) => Err(NetlinkError::LinkConflict {
                name: name.to_string(),
                detail: "is not a bridge".to_string(),
            }),
            None => Err(NetlinkError::LinkNotFound {
                name: name.to_string(),
                context: " right after creating it (deleted concurrently?)".to_string(),
            }),
        }
    }

    /// Creates (or adopts) the host's collect_md VXLAN device `name` (`ip
    /// link add NAME type vxlan external dstport PORT nolearning`) and
    /// turns IPv6 off on it (best effort: nothing is routed through it).
    /// Returns its ifindex. The device has no VNI and no remote of its own:
    /// the programs give every packet its tunnel (see
    /// `dataplane::overlay`), and the kernel learns nothing. Its UDP socket
    /// lives in the namespace it is made in, the daemon's. A new device
    /// stays down: `Dataplane::attach_vxlan` sets it up once its program
    /// guards it.
    ///
    /// An existing link `name` that is not an external VXLAN device on
    /// `port` is a [`NetlinkError::LinkConflict`].
    pub async fn ensure_vxlan(&self, name: &str, port: u16) -> Result<u32, NetlinkError> {
        links::check_ifname(name)?;
        let lookup = || format!("look up VXLAN device {name}");
        let link = match links::get(&self.handle, name)
            .await
            .map_err(|e| NetlinkError::kernel(lookup(), e))?
        {
            Some(link) => link,
            None => {
                let msg = rtnetlink::LinkMessageBuilder::<rtnetlink::LinkVxlan>::new(name)
                    .collect_metadata(true)
                    .port(port)
                    .learning(false)
                    .build();
                match self.handle.link().add(msg).execute().await {
                    Ok(()) => {}
                    // Lost a race with a concurrent creator: adopt theirs.
                    Err(e) if nl_errno(&e) == Some(libc::EEXIST) => {}
                    Err(e) => {
                        return Err(NetlinkError::kernel(
                            format!("create VXLAN device {name} (external, dstport {port})"),
                            nl_io(e),
                        ));
                    }
                }
                links::get(&self.handle, name)
                    .await
                    .map_err(|e| NetlinkError::kernel(lookup(), e))?
                    .ok_or_else(|| NetlinkError::LinkNotFound {
                        name: name.to_string(),
                        context: " right after creating it (deleted concurrently?)".to_string(),
                    })?
            }
        };
        if link_kind(&link) != Some(links::Kind::Vxlan)
            || links::vxlan_external_port(&link) != (true, Some(port))
        {
            return Err(NetlinkError::LinkConflict {
                name: name.to_string(),
                detail: format!("is not an external VXLAN device on UDP port {port}"),
            });
        }
        if let Err(e) = sysctl::disable_ipv6_on_link(name) {
            tracing::warn!(device = name, error = %e, "cannot disable IPv6 on the VXLAN device");
        }
        Ok(link.header.index)
    }

    /// The MTU of the host link `name`, `None` when there is no such link:
    /// the underlay's, from which an overlay endpoint's is derived
    /// ([`VXLAN_OVERHEAD`]).
    pub async fn link_mtu(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        links::check_ifname(name)?;
        let link = links::get(&self.handle, name)
            .await
            .map_err(|e| NetlinkError::kernel(format!("look up link {name}"), e))?;
        Ok(link.as_ref().and_then(links::link_mtu))
    }

    /// Whether the host link `name` is operationally up (`IF_OPER_UP`);
    /// `None` when there is no such link. Asked through netlink rather than
    /// sysfs, which shows another namespace's links when the daemon was
    /// entered into its namespace with `nsenter`.
    pub async fn oper_up(&self, name: &str) -> Result<Option<bool>, NetlinkError> {
        links::check_ifname(name)?;
        let link = links::get(&self.handle, name)
            .await
            .map_err(|e| NetlinkError::kernel(format!("look up link {name}"), e))?;
        Ok(link.map(|l| {
            l.attributes.iter().any(|a| {
                matches!(
                    a,
                    rtnetlink::packet_route::link::LinkAttribute::OperState(
                        rtnetlink::packet_route::link::State::Up
                    )
                )
            })
        }))
    }

    /// The ifindex of a host link, `None` if there is no such link.
    pub async fn link_index(&self, name: &str) -> Result<Option<u32>, NetlinkError> {
        links::check_ifname(name)?;
        Ok(links::get(&self.handle, name)
            .await
            .map_err(|e| NetlinkError::kernel(format!("look up link {name}"), e))?
            .map(|l| l.header.index))
    }

    /// Deletes a host link by name; a missing link is Ok so that teardown can
    /// be repeated after a crash.
    pub async fn delete_link(&self, name: &str) -> Result<(), NetlinkError> {
        links::check_ifname(name)?;
        links::delete(&self.handle, name)
            .await
            .map_err(|e| NetlinkError::kernel(format!("delete link {name}"), e))
    }

    /// Names of the host links whose name starts with `prefix`, for finding
    /// leftovers (of a crash) that the state no longer knows about.
    pub async fn links_with_prefix(&self, prefix: &str) -> Result<Vec<String>, NetlinkError> {
        let mut names = links::names(&self.handle)
            .await
            .map_err(|e| NetlinkError::kernel("list links in the host netns", e))?;
        names.retain(|n| n.starts_with(prefix));
        names.sort();
        Ok(names)
    }

    /// Creates the veth pair for one container endpoint and wires it.
    ///
    /// The container side is created directly inside the namespace with its
    /// final name, MAC and MTU (`ip link add H type veth peer name eth0
    /// netns NS address MAC`): one atomic kernel operation, so no
    /// temporarily-named peer can be left behind in the host namespace and a
    /// name clash inside the container fails before anything exists. Then:
    /// container side address, up, optional default route; host side with
    /// IPv6 off, and when `p.bridge` is set: enslaved to it, learning and
    /// flooding off on the port, a static FDB entry for `p.mac` on the port,
    /// a permanent neighbour entry `p.ip` → `p.mac` on the bridge; then the
    /// host side up, after `guard` ran with the host ifindex (the data path
    /// attaches the endpoint's programs there: until the host side is up
    /// the pair carries nothing, so the container never sends unchecked).
    /// IPv6 is turned off inside the namespace before anything is created
    /// in it. Returns the host ifindex.
    ///
    /// Re-adoption: if `p.host_ifname` already exists and its peer is
    /// `p.ifname` inside `p.netns`, the configuration steps are re-applied
    /// (they are idempotent and do not disturb established traffic) and the
    /// existing ifindex is returned. This also completes an endpoint whose
    /// creation was cut short by a crash.
    ///
    /// On failure after the pair exists, the host side is deleted (which
    /// deletes the peer and its FDB entry) and the neighbour entry removed
    /// if it points to `p.mac`, before the error is returned.
    pub async fn create_guarded_endpoint(
        &self,
        p: &EndpointPlumbing,
        guard: impl AsyncFnOnce(u32) -> io::Result<()>,
    ) -> Result<u32, NetlinkError> {
        links::check_ifname(&p.host_ifname)?;
        links::check_ifname(&p.ifname)?;
        check_prefix(p.prefix_len)?;
        if let Some(br) = &p.bridge {
            links::check_ifname(br)?;
        }
        let ns_file = p.netns.open()?;
        let ns = netns::connect(&p.netns).await?;
        let what = format!(
            "endpoint {}/{} in netns {}",
            p.host_ifname, p.ifname, p.netns
        );
        self.disable_ipv6_in(&ns_file, &p.netns).await?;

        if let Some(host) = links::get(&self.handle, &p.host_ifname)
            .await
            .map_err(|e| NetlinkError::kernel(format!("look up veth {}", p.host_ifname), e))?
        {
            let host_index = host.header.index;
            let peer = links::get(&ns, &p.ifname).await.map_err(|e| {
                NetlinkError::kernel(format!("look up {} in netns {}", p.ifname, p.netns), e)
            })?;
            let paired = link_kind(&host) == Some(links::Kind::Veth)
                && peer.as_ref().is_some_and(|peer| {
                    link_peer_index(&host) == Some(peer.header.index)
                        && link_peer_index(peer) == Some(host_index)
                });
            if !paired {
                return Err(NetlinkError::LinkConflict {
                    name: p.host_ifname.clone(),
                    detail: format!(
                        "is not a veth paired with {} in netns {}",
                        p.ifname, p.netns
                    ),
                });
            }
            tracing::debug!(host = %p.host_ifname, ifname = %p.ifname, netns = %p.netns, "adopting existing endpoint");
            self.configure_endpoint(&ns, p, host_index, &what, guard)
                .await?;
            return Ok(host_index);
        }

        let mut peer = rtnetlink::LinkUnspec::new_with_name(&p.ifname)
            .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&ns_file))
            .address(p.mac.to_vec());
        let mut host = rtnetlink::LinkVeth::new(&p.host_ifname, &p.ifname);
        if let Some(mtu) = p.mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        let msg = host
            .set_info_data(rtnetlink::packet_route::link::InfoData::Veth(
                rtnetlink::packet_route::link::InfoVeth::Peer(peer.build()),
            ))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| NetlinkError::kernel(format!("create veth pair for {what}"), nl_io(e)))?;
        drop(ns_file);

        let result = async {
            let host_index = links::get(&self.handle, &p.host_ifname)
                .await
                .map_err(|e| NetlinkError::kernel(format!("look up veth {}", p.host_ifname), e))?
                .ok_or_else(|| NetlinkError::LinkNotFound {
                    name: p.host_ifname.clone(),
                    context: " right after creating it (deleted concurrently?)".to_string(),
                })?
                .header
                .index;
            self.configure_endpoint(&ns, p, host_index, &what, guard)
                .await?;
            Ok(host_index)
        }
        .await;
        if result.is_err() {
            if let Err(e) = links::delete(&self.handle, &p.host_ifname).await {
                tracing::warn!(host = %p.host_ifname, error = %e, "failed to roll back half-made endpoint");
            }
            if let Some(br) = &p.bridge
                && let Err(e) = self.delete_neighbour(br, p.ip, Some(p.mac)).await
            {
                tracing::warn!(bridge = %br, ip = %p.ip, error = %e, "failed to roll back neighbour entry");
            }
        }
        result
    }

    /// `sysctl -w net.ipv6.conf.{default,all}.disable_ipv6=1` inside `netns`.
    async fn disable_ipv6_in(
        &self,
        ns_file: &std::fs::File,
        netns: &Netns,
    ) -> Result<(), NetlinkError> {
        let action = || format!("disable IPv6 in netns {netns}");
        let file = ns_file
            .try_clone()
            .map_err(|e| NetlinkError::kernel(action(), e))?;
        sysctl::disable_ipv6_in_netns(file)
            .await
            .map_err(|e| NetlinkError::kernel(action(), e))
    }

    /// Deletes the IPv4 neighbour entry for `ip` on `bridge` (if it points
    /// to `only_mac`, when given). A missing bridge or entry is Ok.
    async fn delete_neighbour(
        &self,
        bridge: &str,
        ip: Ipv4Addr,
        only_mac: Option<[u8; 6]>,
    ) -> Result<(), NetlinkError> {
        let action = || format!("delete neighbour entry {ip} on bridge {bridge}");
        let Some(br) = links::get(&self.handle, bridge)
            .await
            .map_err(|e| NetlinkError::kernel(action(), e))?
        else {
            return Ok(());
        };
        links::delete_neighbour(&self.handle, br.header.index, ip, only_mac)
            .await
            .map_err(|e| NetlinkError::kernel(action(), e))
    }

    /// The idempotent part of endpoint creation, shared by creation and
    /// re-adoption.
    async fn configure_endpoint(
        &self,
        ns: &Handle,
        p: &EndpointPlumbing,
        host_index: u32,
        what: &str,
        guard: impl AsyncFnOnce(u32) -> io::Result<()>,
    ) -> Result<(), NetlinkError> {
        configure_in_netns(
            ns,
            &p.netns,
            &p.ifname,
            (p.ip, p.prefix_len),
            p.default_route.then_some(p.gateway),
            what,
        )
        .await?;
        let bridge = match &p.bridge {
            Some(br) => Some(
                links::get(&self.handle, br)
                    .await
                    .map_err(|e| NetlinkError::kernel(format!("look up bridge {br}"), e))?
                    .ok_or_else(|| NetlinkError::LinkNotFound {
                        name: br.clone(),
                        context: format!(" (bridge for {what})"),
                    })?
                    .header
                    .index,
            ),
            None => None,
        };
        let host = &p.host_ifname;
        sysctl::disable_ipv6_on_link(host)
            .map_err(|e| NetlinkError::kernel(format!("disable IPv6 on {host} for {what}"), e))?;
        // Every step below is a no-op when already in place (same master,
        // same port flags, same entries), so re-adoption never disturbs a
        // running flow. The port is configured before it goes up, so the
        // bridge never learns or floods through it.
        if let (Some(br), Some(br_index)) = (&p.bridge, bridge) {
            links::set_controller(&self.handle, host_index, br_index)
                .await
                .map_err(|e| {
                    NetlinkError::kernel(format!("attach {host} to bridge {br} for {what}"), e)
                })?;
            links::set_port_no_learning_no_flood(&self.handle, host_index)
                .await
                .map_err(|e| {
                    NetlinkError::kernel(
                        format!("turn off learning and flooding on bridge port {host} for {what}"),
                        e,
                    )
                })?;
            links::replace_static_fdb(&self.handle, host_index, p.mac)
                .await
                .map_err(|e| {
                    NetlinkError::kernel(
                        format!(
                            "add static fdb entry {} on {host} for {what}",
                            fmt_mac(p.mac)
                        ),
                        e,
                    )
                })?;
            links::replace_permanent_neighbour(&self.handle, br_index, p.ip, p.mac)
                .await
                .map_err(|e| {
                    NetlinkError::kernel(
                        format!(
                            "add neighbour entry {} lladdr {} on bridge {br} for {what}",
                            p.ip,
                            fmt_mac(p.mac)
                        ),
                        e,
                    )
                })?;
        }
        guard(host_index)
            .await
            .map_err(|e| NetlinkError::kernel(format!("guard {host} for {what}"), e))?;
        links::set_up(&self.handle, host_index)
            .await
            .map_err(|e| NetlinkError::kernel(format!("set {host} up for {what}"), e))?;
        Ok(())
    }

    /// Creates and wires the veth pair for one container endpoint (see
    /// [`Netlink::create_guarded_endpoint`], with nothing to run before the
    /// host side comes up).
    pub async fn create_endpoint(&self, p: &EndpointPlumbing) -> Result<u32, NetlinkError> {
        self.create_guarded_endpoint(p, async |_| Ok(())).await
    }

    /// Removes an endpoint: deleting the host side of a veth pair deletes
    /// the peer inside the container too, and the bridge's FDB entries on
    /// that port. `neighbour` (`(bridge, container IP)`) also removes the
    /// permanent neighbour entry [`Netlink::create_endpoint`] put on the
    /// bridge. Missing links and entries are Ok. Both steps are attempted;
    /// the first failure is returned.
    pub async fn remove_endpoint(
        &self,
        host_ifname: &str,
        neighbour: Option<(&str, Ipv4Addr)>,
    ) -> Result<(), NetlinkError> {
        links::check_ifname(host_ifname)?;
        if let Some((br, _)) = neighbour {
            links::check_ifname(br)?;
        }
        let veth = links::delete(&self.handle, host_ifname)
            .await
            .map_err(|e| NetlinkError::kernel(format!("remove endpoint veth {host_ifname}"), e));
        let neigh = match neighbour {
            Some((br, ip)) => self.delete_neighbour(br, ip, None).await,
            None => Ok(()),
        };
        veth.and(neigh)
    }

    /// Gives a container a macvlan (mode bridge) on host interface
    /// `p.parent` (see [`Netlink::create_guarded_macvlan`], with nothing to
    /// run before it comes up).
    pub async fn create_macvlan_endpoint(&self, p: &MacvlanPlumbing) -> Result<(), NetlinkError> {
        self.create_guarded_macvlan(p, async |_| Ok(())).await
    }

    /// Gives a container a macvlan (mode bridge) on host interface
    /// `p.parent`: created directly inside `p.netns` with its final name,
    /// MAC, MTU and ifindex if `p.index` asks for one (`ip link add link
    /// PARENT name IFNAME netns NS address MAC index N type macvlan mode
    /// bridge`, one atomic operation, so nothing half-named is ever left in
    /// the host), down; then `guard` runs with its ifindex (the data path
    /// attaches its checks there, so the macvlan never sends unchecked);
    /// then address, up and the optional default route. IPv6 is turned off
    /// in the namespace first.
    ///
    /// Re-adoption: an existing `p.ifname` in the namespace that is a
    /// macvlan on `p.parent` (with the ifindex asked for) is reconfigured
    /// idempotently (its MAC fixed if it differs, `guard` run again);
    /// another macvlan on the parent with another ifindex is replaced;
    /// anything else of that name is a [`NetlinkError::LinkConflict`]. A
    /// missing parent is [`NetlinkError::LinkNotFound`]. On failure after
    /// creation the macvlan is deleted before the error is returned.
    pub async fn create_guarded_macvlan(
        &self,
        p: &MacvlanPlumbing,
        guard: impl AsyncFnOnce(u32) -> io::Result<()>,
    ) -> Result<(), NetlinkError> {
        links::check_ifname(&p.parent)?;
        links::check_ifname(&p.ifname)?;
        check_prefix(p.prefix_len)?;
        let what = format!("macvlan {} on {} in netns {}", p.ifname, p.parent, p.netns);
        let parent = links::get(&self.handle, &p.parent)
            .await
            .map_err(|e| {
                NetlinkError::kernel(format!("look up parent {} for {what}", p.parent), e)
            })?
            .ok_or_else(|| NetlinkError::LinkNotFound {
                name: p.parent.clone(),
                context: format!(" (parent for {what})"),
            })?
            .header
            .index;
        let ns_file = p.netns.open()?;
        let ns = netns::connect(&p.netns).await?;
        self.disable_ipv6_in(&ns_file, &p.netns).await?;

        let existing = links::get(&ns, &p.ifname).await.map_err(|e| {
            NetlinkError::kernel(format!("look up {} in netns {}", p.ifname, p.netns), e)
        })?;
        let created = match existing {
            Some(link)
                if link_kind(&link) != Some(links::Kind::MacVlan)
                    || link_peer_index(&link) != Some(parent) =>
            {
                return Err(NetlinkError::LinkConflict {
                    name: p.ifname.clone(),
                    detail: format!("in netns {} is not a macvlan on {}", p.netns, p.parent),
                });
            }
            Some(link) if p.index.is_none_or(|i| i == link.header.index) => {
                tracing::debug!(ifname = %p.ifname, parent = %p.parent, netns = %p.netns, "adopting existing macvlan");
                if link_mac(&link) != Some(&p.mac[..]) {
                    links::set_mac(&ns, link.header.index, p.mac)
                        .await
                        .map_err(|e| {
                            NetlinkError::kernel(format!("set MAC {} on {what}", fmt_mac(p.mac)), e)
                        })?;
                }
                false
            }
            other => {
                if other.is_some() {
                    // An earlier build's macvlan, numbered by the kernel.
                    links::delete(&ns, &p.ifname)
                        .await
                        .map_err(|e| NetlinkError::kernel(format!("replace {what}"), e))?;
                }
                let mut msg = rtnetlink::LinkMacVlan::new(
                    &p.ifname,
                    parent,
                    rtnetlink::packet_route::link::MacVlanMode::Bridge,
                )
                .setns_by_fd(std::os::fd::AsRawFd::as_raw_fd(&ns_file))
                .address(p.mac.to_vec());
                if let Some(mtu) = p.mtu {
                    msg = msg.mtu(mtu);
                }
                if let Some(index) = p.index {
                    msg = msg.index(index);
                }
                self.handle
                    .link()
                    .add(msg.build())
                    .execute()
                    .await
                    .map_err(|e| NetlinkError::kernel(format!("create {what}"), nl_io(e)))?;
                true
            }
        };
        drop(ns_file);

        let result = async {
            let index = links::get(&ns, &p.ifname)
                .await
                .map_err(|e| NetlinkError::kernel(format!("look up {what}"), e))?
                .ok_or_else(|| NetlinkError::LinkNotFound {
                    name: p.ifname.clone(),
                    context: format!(" in netns {} right after creating it", p.netns),
                })?
                .header
                .index;
            guard(index)
                .await
                .map_err(|e| NetlinkError::kernel(format!("guard {what}"), e))?;
            configure_in_netns(
                &ns,
                &p.netns,
                &p.ifname,
                (p.ip, p.prefix_len),
                p.default_route.then_some(p.gateway),
                &what,
            )
            .await
        }
        .await;
        if result.is_err()
            && created
            && let Err(e) = links::delete(&ns, &p.ifname).await
        {
            tracing::warn!(ifname = %p.ifname, netns = %p.netns, error = %e, "failed to roll back half-made macvlan");
        }
        result
    }

    /// The ifindex of link `ifname` inside namespace `netns`, `None` if
    /// there is no such link.
    pub async fn link_index_in_netns(
        &self,
        netns: &Netns,
        ifname: &str,
    ) -> Result<Option<u32>, NetlinkError> {
        links::check_ifname(ifname)?;
        let ns = netns::connect(netns).await?;
        Ok(links::get(&ns, ifname)
            .await
            .map_err(|e| NetlinkError::kernel(format!("look up {ifname} in netns {netns}"), e))?
            .map(|l| l.header.index))
    }

    /// Deletes link `ifname` inside namespace `netns` (e.g. a container's
    /// macvlan on disconnect). A missing link or namespace is Ok.
    pub async fn remove_link_in_netns(
        &self,
        netns: &Netns,
        ifname: &str,
    ) -> Result<(), NetlinkError> {
        links::check_ifname(ifname)?;
        let ns = match netns::connect(netns).await {
            Ok(ns) => ns,
            Err(NetlinkError::NetnsNotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        links::delete(&ns, ifname)
            .await
            .map_err(|e| NetlinkError::kernel(format!("delete {ifname} in netns {netns}"), e))
    }

    /// Sets (or replaces) the default route inside a namespace, used when the
    /// endpoint that had it is disconnected and another one takes over.
    pub async fn set_default_route(
        &self,
        netns: &Netns,
        ifname: &str,
        gateway: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        links::check_ifname(ifname)?;
        let ns = netns::connect(netns).await?;
        let index = links::get(&ns, ifname)
            .await
            .map_err(|e| NetlinkError::kernel(format!("look up {ifname} in netns {netns}"), e))?
            .ok_or_else(|| NetlinkError::LinkNotFound {
                name: ifname.to_string(),
                context: format!(" in netns {netns}"),
            })?
            .header
            .index;
        links::replace_default_route(&ns, index, gateway)
            .await
            .map_err(|e| {
                NetlinkError::kernel(
                    format!("set default route via {gateway} dev {ifname} in netns {netns}"),
                    e,
                )
            })
    }
}

/// What a link inside a namespace is, as far as CNI's CHECK asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    /// Its IPv4 addresses with their prefix lengths.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
}

/// The state of link `ifname` in namespace `netns`; `None` if there is no
/// such link. A namespace that is gone is [`NetlinkError::NetnsNotFound`].
pub async fn link_state_in_netns(
    netns: &Netns,
    ifname: &str,
) -> Result<Option<LinkState>, NetlinkError> {
    links::check_ifname(ifname)?;
    let ns = netns::connect(netns).await?;
    let what = || format!("look up {ifname} in netns {netns}");
    let Some(link) = links::get(&ns, ifname)
        .await
        .map_err(|e| NetlinkError::kernel(what(), e))?
    else {
        return Ok(None);
    };
    let ipv4 = links::ipv4_addresses(&ns, link.header.index)
        .await
        .map_err(|e| NetlinkError::kernel(what(), e))?;
    Ok(Some(LinkState {
        mac: link_mac(&link).and_then(|m| m.try_into().ok()),
        up: link
            .header
            .flags
            .contains(rtnetlink::packet_route::link::LinkFlags::Up),
        ipv4,
    }))
}

/// Address, up and optional default route for a link inside a
/// namespace; all idempotent.
async fn configure_in_netns(
    ns: &Handle,
    netns: &Netns,
    ifname: &str,
    (ip, prefix_len): (Ipv4Addr, u8),
    default_via: Option<Ipv4Addr>,
    what: &str,
) -> Result<(), NetlinkError> {
    let index = links::get(ns, ifname)
        .await
        .map_err(|e| NetlinkError::kernel(format!("look up {ifname} for {what}"), e))?
        .ok_or_else(|| NetlinkError::LinkNotFound {
            name: ifname.to_string(),
            context: format!(" in netns {netns}"),
        })?
        .header
        .index;
    links::add_address(ns, index, ip, prefix_len)
        .await
        .map_err(|e| NetlinkError::kernel(format!("add address {ip}/{prefix_len} to {what}"), e))?;
    links::set_up(ns, index)
        .await
        .map_err(|e| NetlinkError::kernel(format!("set {ifname} up for {what}"), e))?;
    if let Some(gateway) = default_via {
        links::replace_default_route(ns, index, gateway)
            .await
            .map_err(|e| {
                NetlinkError::kernel(format!("add default route via {gateway} for {what}"), e)
            })?;
    }
    Ok(())
}

fn check_prefix(prefix_len: u8) -> Result<(), NetlinkError> {
    if prefix_len > 32 {
        return Err(NetlinkError::InvalidPrefix(prefix_len));
    }
    Ok(())
}
