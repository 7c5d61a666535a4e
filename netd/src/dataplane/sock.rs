//! The cgroup socket hooks: published ports for the host's own processes
//! (`curl localhost:8080`) without a proxy, and `EADDRINUSE` for a host
//! process binding a published port. The kernel side is `netd-ebpf/src/sock.rs`.
//!
//! # Attachment
//! Four programs, attached to the cgroup v2 *root* (so they see every
//! socket on the machine) as cgroup BPF links, next to whatever else is
//! attached there (other netd daemons, other tools). A cgroup link is always
//! a multi-attach (`BPF_F_ALLOW_MULTI`) attachment; the kernel rejects the
//! flag itself in `BPF_LINK_CREATE` (EINVAL), which is why the attach below
//! passes aya's `CgroupAttachMode::Single` (no flags). The programs run in
//! attach order with the others on the hook; each sees the address the
//! previous one left:
//!
//! | hook         | program           | does                                   |
//! |--------------|-------------------|----------------------------------------|
//! | `connect4`   | `netd_connect4`   | destination host addr:port -> container |
//! | `sendmsg4`   | `netd_sendmsg4`   | same for unconnected UDP                |
//! | `recvmsg4`   | `netd_recvmsg4`   | reply source container -> host addr:port |
//! | `post_bind4` | `netd_post_bind4` | bind of a published port: `EADDRINUSE`  |
//!
//! They act only in the network namespace whose cookie is in
//! `HOST_CFG.netns_cookie` (see [`host_netns_cookie`]); until the daemon
//! writes it (`Dataplane::set_host`) they do nothing. Host addresses are
//! 127.0.0.0/8, `HOST_CFG.uplink_addr`, and [`Dataplane::set_host_addresses`].
//!
//! # Pins and restarts
//! The links are pinned at `<pin_dir>/links/cgroup_<hook>` (e.g.
//! `links/cgroup_connect4`), so they survive the daemon like the endpoint
//! links. [`Dataplane::attach_socket_hooks`] re-adopts a pin that is still a
//! cgroup link of the right hook on the same cgroup (switching it to the
//! freshly loaded program with `BPF_LINK_UPDATE`, atomically: no socket call
//! goes unhooked during a restart), and replaces any other pin.
//! [`Dataplane::detach_socket_hooks`] detaches and unpins them;
//! [`Dataplane::remove_pins`] also does.
//!
//! None of the pin names ends in `_from`/`_to`, so
//! [`Dataplane::tcx_endpoint_pins`] never mistakes them for endpoints.
//!
//! # Call order (daemon start)
//! 1. [`Dataplane::load`];
//! 2. `set_host(uplink, host_netns_cookie()?)` and
//!    [`Dataplane::set_host_addresses`] (the hooks need the cookie to act);
//! 3. `set_publish(...)` for every published port (idempotent);
//! 4. [`Dataplane::attach_socket_hooks`]`(&cgroup2_root()?)` (module `cgroup2`).
//!
//! Steps 2-4 may come in any order without harm (a hook without a cookie or
//! a publish entry leaves the call alone), but only after all of them do
//! host connections to published ports work.

use std::{
    collections::HashSet,
    fs::File,
    io,
    mem::size_of,
    net::Ipv4Addr,
    os::{
        fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
};

use aya::{
    maps::{HashMap, MapData},
    programs::{
        CgroupAttachMode, CgroupSock, CgroupSockAddr, Program, ProgramError,
        links::{FdLink, LinkError},
    },
    sys::SyscallError,
};
use netd_common::{
    ipv4_be, map_names,
    sock::{UdpRevKey, UdpRevValue},
};
use tracing::{debug, info, warn};

use super::{
    BPF_ANY, Dataplane, DataplaneError, LinkOpError, compat,
    map_access::{addr, errno, map_error, removed},
    raw_link,
};

/// What aya is told for `BPF_LINK_CREATE`: no flags. A cgroup link is
/// multi-attach by nature (the kernel attaches it with `BPF_F_ALLOW_MULTI`
/// and refuses that flag from user space with EINVAL). aya 0.14 uses
/// `BPF_LINK_CREATE` on Linux >= 5.7; older kernels, where it would fall
/// back to an exclusive `BPF_PROG_ATTACH`, are refused below (their link
/// cannot be pinned) and lack `bpf_set_retval` anyway.
const LINK_MODE: CgroupAttachMode = CgroupAttachMode::Single;

/// One of the four cgroup socket hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SocketHook {
    /// `connect()`: `netd_connect4`.
    Connect4,
    /// `sendto()`/`sendmsg()` with an address: `netd_sendmsg4`.
    Sendmsg4,
    /// `recvfrom()`/`recvmsg()` of UDP: `netd_recvmsg4`.
    Recvmsg4,
    /// after `bind()`: `netd_post_bind4`.
    PostBind4,
}

impl SocketHook {
    /// Every hook, in attach order.
    pub const ALL: [SocketHook; 4] = [
        SocketHook::Recvmsg4,
        SocketHook::PostBind4,
        SocketHook::Sendmsg4,
        SocketHook::Connect4,
    ];

    /// The hook's name, as in the pin file `cgroup_<name>` and in the
    /// kernel's section names.
    pub const fn as_str(self) -> &'static str {
        match self {
            SocketHook::Connect4 => "connect4",
            SocketHook::Sendmsg4 => "sendmsg4",
            SocketHook::Recvmsg4 => "recvmsg4",
            SocketHook::PostBind4 => "post_bind4",
        }
    }

    /// The program attached there.
    pub const fn program_name(self) -> &'static str {
        match self {
            SocketHook::Connect4 => "netd_connect4",
            SocketHook::Sendmsg4 => "netd_sendmsg4",
            SocketHook::Recvmsg4 => "netd_recvmsg4",
            SocketHook::PostBind4 => "netd_post_bind4",
        }
    }

    /// `enum bpf_attach_type` value (uapi/linux/bpf.h), as link info
    /// reports it.
    const fn attach_type(self) -> u32 {
        match self {
            SocketHook::Connect4 => 10,  // BPF_CGROUP_INET4_CONNECT
            SocketHook::Sendmsg4 => 14,  // BPF_CGROUP_UDP4_SENDMSG
            SocketHook::Recvmsg4 => 19,  // BPF_CGROUP_UDP4_RECVMSG
            SocketHook::PostBind4 => 12, // BPF_CGROUP_INET4_POST_BIND
        }
    }

    fn pin_name(self) -> String {
        format!("cgroup_{}", self.as_str())
    }
}

/// What a pinned socket hook link is attached to, according to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketHookAttachment {
    /// Which hook the pin is for.
    pub hook: SocketHook,
    /// Kernel link id (stable while the link lives: a re-adopted link keeps
    /// it).
    pub link_id: u32,
    /// Id of the program the link runs.
    pub program_id: u32,
    /// Id of the cgroup it is attached to (the cgroup directory's inode
    /// number); 0 once detached or the cgroup is gone.
    pub cgroup_id: u64,
    /// Whether the link is a cgroup link of this hook's attach type.
    pub matches_hook: bool,
}

/// The cookie of the caller's network namespace (`SO_NETNS_COOKIE`,
/// Linux >= 5.14), what `bpf_get_netns_cookie()` returns for sockets there:
/// the value for `Dataplane::set_host`. Asked of the calling *thread*'s
/// namespace.
pub fn host_netns_cookie() -> io::Result<u64> {
    // SAFETY: plain socket(2); the result is checked below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut cookie: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` is `len` writable bytes; both outlive the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<u64>() || cookie == 0 {
        return Err(io::Error::other(
            "SO_NETNS_COOKIE returned no cookie - netd needs Linux >= 5.14",
        ));
    }
    Ok(cookie)
}

/// How an existing pin relates to the hook being attached.
enum HookPin {
    /// A cgroup link of this hook on this cgroup: keep it.
    Adopt(SocketHookAttachment),
    /// No pin.
    Missing,
    /// Something else was pinned there; it was detached and removed.
    ReplacedStale,
}

impl Dataplane {
    /// Attaches the four socket hooks to `cgroup` (normally
    /// [`super::cgroup2_root`]) as multi-attach cgroup links, pinning them at
    /// `<pin_dir>/links/cgroup_<hook>`.
    ///
    /// Idempotent and restart-safe like [`Dataplane::attach_endpoint`]: a
    /// pin that is still a link of the right hook on `cgroup` is kept and
    /// switched atomically to the program this daemon loaded; any other pin
    /// (another cgroup, a detached link) is replaced. On failure, links
    /// created by this call are detached again; adopted ones are left as
    /// they were.
    ///
    /// Refuses ([`DataplaneError::IncompatiblePinnedMap`]) if the pinned
    /// `HOST_ADDRS`/`SOCK_UDP_REV` maps have another shape than this build's.
    pub fn attach_socket_hooks(&mut self, cgroup: &Path) -> Result<(), DataplaneError> {
        compat::check_socket_hook_maps(&self.pin_dir)?;
        let cgroup_dir = File::open(cgroup)
            .map_err(|e| cgroup_error(SocketHook::Connect4, cgroup, ProgramError::IOError(e)))?;
        let cgroup_id = cgroup_dir
            .metadata()
            .map_err(|e| cgroup_error(SocketHook::Connect4, cgroup, ProgramError::IOError(e)))?
            .ino();
        for hook in SocketHook::ALL {
            self.load_hook(hook)?;
        }

        let mut created = Vec::new();
        let mut adopted = 0;
        let result = (|| {
            for hook in SocketHook::ALL {
                match self.hook_pin_state(hook, cgroup_id)? {
                    HookPin::Adopt(attachment) => {
                        self.update_hook_link(hook, &attachment)?;
                        adopted += 1;
                    }
                    HookPin::Missing | HookPin::ReplacedStale => {
                        created.push(self.attach_hook(hook, &cgroup_dir, cgroup)?);
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for pin in created {
                if let Err(err) = raw_link::detach_and_unpin(&pin) {
                    warn!(pin = %pin.display(), error = %err, "cannot roll back socket hook pin");
                }
            }
            return Err(e);
        }
        info!(
            cgroup = %cgroup.display(),
            cgroup_id,
            readopted = adopted,
            "socket hooks attached"
        );
        Ok(())
    }

    /// Detaches the socket hooks and removes their pins (missing ones are
    /// fine). Goes on past errors and returns the first one.
    pub fn detach_socket_hooks(&mut self) -> Result<(), DataplaneError> {
        let mut first_error = None;
        for hook in SocketHook::ALL {
            let pin = self.hook_pin(hook);
            if let Err(source) = raw_link::detach_and_unpin(&pin) {
                first_error.get_or_insert(DataplaneError::PinDir {
                    action: "detach and remove",
                    path: pin,
                    source,
                });
            }
        }
        debug!("socket hooks detached");
        first_error.map_or(Ok(()), Err)
    }

    /// The pinned socket hook links as the kernel sees them (empty if not
    /// attached), in [`SocketHook::ALL`] order.
    pub fn socket_hook_attachments(&self) -> Result<Vec<SocketHookAttachment>, DataplaneError> {
        let mut out = Vec::new();
        for hook in SocketHook::ALL {
            let pin = self.hook_pin(hook);
            match cgroup_link_info(&pin, hook) {
                Ok(attachment) => out.push(attachment),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(DataplaneError::InspectLink { path: pin, source }),
            }
        }
        Ok(out)
    }

    /// Makes `HOST_ADDRS` exactly `addrs`: the host's addresses (other than
    /// 127.0.0.0/8 and the uplink's, which the hooks know anyway) that
    /// count as "this host" for published ports, e.g. a second NIC's or a
    /// network's gateway address. Idempotent; call it at start and when the
    /// host's addresses change. At most
    /// [`MAX_HOST_ADDRS`](netd_common::limits::MAX_HOST_ADDRS) (beyond that the
    /// insert fails with `E2BIG` and the error is returned, the addresses
    /// written so far staying in place).
    pub fn set_host_addresses(&mut self, addrs: &[Ipv4Addr]) -> Result<(), DataplaneError> {
        let map_err = map_error(map_names::HOST_ADDRS);
        let mut map: HashMap<&mut MapData, u32, u32> =
            self.object_map_mut(map_names::HOST_ADDRS)?;
        let wanted: HashSet<u32> = addrs.iter().map(|a| ipv4_be(a.octets())).collect();
        // Stale ones out first, so that a changed set never needs more room
        // than its final size; the addresses that stay are never missing.
        let stale: Vec<u32> = map
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(&map_err)?
            .into_iter()
            .filter(|k| !wanted.contains(k))
            .collect();
        for key in stale {
            removed(map.remove(&key)).map_err(&map_err)?;
        }
        for key in &wanted {
            map.insert(key, 0, BPF_ANY).map_err(&map_err)?;
        }
        debug!(count = wanted.len(), "host addresses written");
        Ok(())
    }

    /// The addresses in `HOST_ADDRS`, sorted.
    pub fn host_addresses(&self) -> Result<Vec<Ipv4Addr>, DataplaneError> {
        let map: HashMap<&MapData, u32, u32> = self.object_map(map_names::HOST_ADDRS)?;
        let mut out = map
            .keys()
            .map(|k| k.map(addr))
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_error(map_names::HOST_ADDRS))?;
        out.sort();
        Ok(out)
    }

    /// Entries in `SOCK_UDP_REV`: UDP {socket, published port} pairs the
    /// hooks remember (for metrics; LRU, so at most
    /// [`UDP_REV_ENTRIES`](netd_common::limits::UDP_REV_ENTRIES)).
    pub fn udp_reverse_entries(&self) -> Result<usize, DataplaneError> {
        let map: HashMap<&MapData, UdpRevKey, UdpRevValue> =
            self.object_map(map_names::SOCK_UDP_REV)?;
        let mut n = 0;
        for key in map.keys() {
            match key {
                Ok(_) => n += 1,
                // An LRU entry evicted during the walk ends it early.
                Err(e) if errno(&e) == Some(libc::ENOENT) => break,
                Err(e) => return Err(map_error(map_names::SOCK_UDP_REV)(e)),
            }
        }
        Ok(n)
    }

    fn hook_pin(&self, hook: SocketHook) -> PathBuf {
        self.pin_dir.join("links").join(hook.pin_name())
    }

    fn hook_program(&self, hook: SocketHook) -> Result<&Program, DataplaneError> {
        self.ebpf
            .program(hook.program_name())
            .ok_or(DataplaneError::MissingInObject {
                kind: "program",
                name: hook.program_name(),
            })
    }

    /// Loads (verifies) the hook's program unless this `Dataplane` already
    /// did.
    fn load_hook(&mut self, hook: SocketHook) -> Result<(), DataplaneError> {
        let name = hook.program_name();
        let load_err = |source| DataplaneError::LoadProgram {
            program: name,
            source: Box::new(source),
        };
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or(DataplaneError::MissingInObject {
                kind: "program",
                name,
            })?;
        if program.fd().is_ok() {
            return Ok(());
        }
        match hook {
            SocketHook::PostBind4 => {
                let program: &mut CgroupSock = program.try_into().map_err(load_err)?;
                program.load().map_err(load_err)
            }
            SocketHook::Connect4 | SocketHook::Sendmsg4 | SocketHook::Recvmsg4 => {
                let program: &mut CgroupSockAddr = program.try_into().map_err(load_err)?;
                program.load().map_err(load_err)
            }
        }
    }

    /// Classifies the pin of `hook`, removing it if it is not ours to keep.
    fn hook_pin_state(&self, hook: SocketHook, cgroup_id: u64) -> Result<HookPin, DataplaneError> {
        let pin = self.hook_pin(hook);
        let attachment = match cgroup_link_info(&pin, hook) {
            Ok(attachment) => attachment,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HookPin::Missing),
            Err(source) => return Err(DataplaneError::InspectLink { path: pin, source }),
        };
        if attachment.matches_hook && attachment.cgroup_id == cgroup_id {
            return Ok(HookPin::Adopt(attachment));
        }
        info!(
            pin = %pin.display(),
            pinned_cgroup_id = attachment.cgroup_id,
            cgroup_id,
            "replacing stale socket hook pin"
        );
        raw_link::detach_and_unpin(&pin).map_err(|source| DataplaneError::PinDir {
            action: "detach and remove",
            path: pin,
            source,
        })?;
        Ok(HookPin::ReplacedStale)
    }

    /// Creates the hook's cgroup link (`BPF_LINK_CREATE`, multi-attach)
    /// and pins it; returns the pin path.
    fn attach_hook(
        &mut self,
        hook: SocketHook,
        cgroup_dir: &File,
        cgroup: &Path,
    ) -> Result<PathBuf, DataplaneError> {
        let name = hook.program_name();
        let pin = self.hook_pin(hook);
        let attach_err = |source: ProgramError| cgroup_error(hook, cgroup, source);
        let program = self
            .ebpf
            .program_mut(name)
            .ok_or(DataplaneError::MissingInObject {
                kind: "program",
                name,
            })?;
        // Take the link out of the program's bookkeeping so that dropping
        // the `Ebpf` does not detach it; from here on the pin owns it (if
        // pinning fails, dropping `fd_link` detaches it again).
        let fd_link = match hook {
            SocketHook::PostBind4 => {
                let program: &mut CgroupSock = program.try_into().map_err(attach_err)?;
                let id = program.attach(cgroup_dir, LINK_MODE).map_err(attach_err)?;
                let link = program.take_link(id).map_err(attach_err)?;
                FdLink::try_from(link)
            }
            SocketHook::Connect4 | SocketHook::Sendmsg4 | SocketHook::Recvmsg4 => {
                let program: &mut CgroupSockAddr = program.try_into().map_err(attach_err)?;
                let id = program.attach(cgroup_dir, LINK_MODE).map_err(attach_err)?;
                let link = program.take_link(id).map_err(attach_err)?;
                FdLink::try_from(link)
            }
        }
        // Not an fd link: the kernel has no BPF_LINK_CREATE for cgroups
        // (< 5.7), and aya fell back to a plain attach that cannot be pinned.
        .map_err(|e| DataplaneError::Attach {
            program: name,
            ifname: format!("cgroup {}", cgroup.display()),
            source: Box::new(LinkOpError::Link(e)),
        })?;
        fd_link
            .pin(&pin)
            .map_err(|source| DataplaneError::PinLink {
                program: name,
                ifname: format!("cgroup {}", cgroup.display()),
                path: pin.clone(),
                source: Box::new(source),
            })?;
        debug!(hook = hook.as_str(), program = name, pin = %pin.display(), "socket hook attached and pinned");
        Ok(pin)
    }

    /// Points an adopted link at the program this daemon loaded, unless it
    /// already runs it (`BPF_LINK_UPDATE`: atomic, the hook never goes
    /// missing).
    fn update_hook_link(
        &mut self,
        hook: SocketHook,
        attachment: &SocketHookAttachment,
    ) -> Result<(), DataplaneError> {
        let name = hook.program_name();
        let pin = self.hook_pin(hook);
        let program = self.hook_program(hook)?;
        let current = program
            .info()
            .map_err(|source| DataplaneError::ProgramInfo {
                program: name,
                source: Box::new(source),
            })?
            .id();
        if attachment.program_id == current {
            return Ok(());
        }
        let update_err = |io_error| DataplaneError::UpdateLink {
            program: name,
            path: pin.clone(),
            source: Box::new(LinkOpError::Link(LinkError::SyscallError(SyscallError {
                call: "BPF_LINK_UPDATE",
                io_error,
            }))),
        };
        let prog_fd = program.fd().map_err(|source| DataplaneError::ProgramInfo {
            program: name,
            source: Box::new(source),
        })?;
        let link_fd = raw_link::obj_get(&pin).map_err(update_err)?;
        raw_link::link_update(&link_fd, prog_fd.as_fd().as_raw_fd()).map_err(update_err)?;
        info!(
            hook = hook.as_str(),
            program = name,
            old_program_id = attachment.program_id,
            new_program_id = current,
            "re-adopted socket hook switched to the loaded program"
        );
        Ok(())
    }
}

/// An attach failure on `cgroup`, reported with the hook's program.
fn cgroup_error(hook: SocketHook, cgroup: &Path, source: ProgramError) -> DataplaneError {
    DataplaneError::Attach {
        program: hook.program_name(),
        ifname: format!("cgroup {}", cgroup.display()),
        source: Box::new(LinkOpError::Program(source)),
    }
}

/// `BPF_LINK_TYPE_CGROUP`.
const BPF_LINK_TYPE_CGROUP: u32 = 3;

/// Prefix of `struct bpf_link_info`: `type`, `id`, `prog_id`, then the
/// 8-byte aligned union at offset 16, for cgroup links
/// `{ __u64 cgroup_id; __u32 attach_type; }`. The tail is zeroed room for
/// the rest of the union (see `raw_link::LinkInfoPrefix`).
#[repr(C)]
#[derive(Default)]
struct CgroupLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    cgroup_id: u64,
    attach_type: u32,
    _pad2: u32,
    _rest: [u64; 11],
}

/// Reads the link pinned at `path`. `NotFound` if there is no pin.
fn cgroup_link_info(path: &Path, hook: SocketHook) -> io::Result<SocketHookAttachment> {
    let fd = raw_link::obj_get(path)?;
    let mut info = CgroupLinkInfo::default();
    // SAFETY: `CgroupLinkInfo` is a `repr(C)` struct of integers.
    unsafe { raw_link::link_info(&fd, &mut info)? };
    let is_cgroup = info.link_type == BPF_LINK_TYPE_CGROUP;
    Ok(SocketHookAttachment {
        hook,
        link_id: info.id,
        program_id: info.prog_id,
        cgroup_id: if is_cgroup { info.cgroup_id } else { 0 },
        matches_hook: is_cgroup && info.attach_type == hook.attach_type(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_pins_are_not_endpoint_pins() {
        let mut names = HashSet::new();
        for hook in SocketHook::ALL {
            let pin = hook.pin_name();
            assert!(!pin.contains('.'), "{pin}");
            assert!(!pin.ends_with("_from") && !pin.ends_with("_to"), "{pin}");
            assert!(hook.program_name().len() <= 15, "{}", hook.program_name());
            assert!(names.insert(pin));
        }
    }
}
