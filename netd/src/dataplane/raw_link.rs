//! Link operations aya 0.14 does not expose, done with `bpf(2)` directly.
//!
//! - Reading what a pinned TCX link is attached to: aya's `LinkInfo` has the
//!   link and program ids but not the TCX part of `struct bpf_link_info`
//!   (ifindex, attach type), which is what tells a live pin from one left
//!   behind by a deleted or recreated veth.
//! - Detaching a pinned link *now*: unlinking the pin only drops a
//!   reference, and the kernel releases the last one from a workqueue, so
//!   the program stays attached for a moment after the pin is gone (seen in
//!   the tests as a flaky "still attached" right after detach). An explicit
//!   `BPF_LINK_DETACH` makes detaching synchronous.
//! - The same for the socket hooks' cgroup links (module `sock`): reading
//!   one ([`link_info`] with a cgroup-shaped prefix) and switching it to
//!   another program (`BPF_LINK_UPDATE`, [`link_update`]).
use std::{
    ffi::CString,
    io,
    mem::size_of,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

use netd_common::Direction;

/// `enum bpf_cmd` values (uapi/linux/bpf.h).
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_DETACH: libc::c_long = 34;
/// `BPF_LINK_TYPE_TCX`.
const BPF_LINK_TYPE_TCX: u32 = 11;
/// `BPF_TCX_INGRESS` / `BPF_TCX_EGRESS` from `enum bpf_attach_type`.
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;

/// What a pinned link is attached to, according to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    /// Kernel link id; stays the same for as long as the link exists, so
    /// it shows whether a re-attach happened.
    pub link_id: u32,
    /// Id of the program the link currently runs.
    pub program_id: u32,
    /// Whether it is a TCX link at all (anything else is not ours).
    pub is_tcx: bool,
    /// Interface the link is attached to; 0 once that interface is gone
    /// (the kernel keeps the link object but it is defunct).
    pub ifindex: u32,
    /// The direction its hook implies, `None` if not a TCX hook.
    pub direction: Option<Direction>,
}

/// `union bpf_attr` member for `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Default)]
struct ObjGetAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// `union bpf_attr` member for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
#[derive(Default)]
struct InfoByFdAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Prefix of `struct bpf_link_info`: `type`, `id`, `prog_id`, then a union
/// that is 8-byte aligned and so starts at offset 16; for TCX links it holds
/// `{ __u32 ifindex; __u32 attach_type; }`. The tail is room for the rest of
/// the union: the kernel copies `min(info_len, sizeof(info))` bytes and
/// requires bytes past its own size to be zero, so a zeroed buffer of any
/// size works on old and new kernels.
#[repr(C)]
#[derive(Default)]
struct LinkInfoPrefix {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    tcx_ifindex: u32,
    tcx_attach_type: u32,
    _rest: [u64; 12],
}

/// Reads the link pinned at `path`. `NotFound` if there is no pin.
pub(super) fn pinned_link(path: &Path) -> io::Result<Attachment> {
    let fd = obj_get(path)?;
    let mut info = LinkInfoPrefix::default();
    // SAFETY: `LinkInfoPrefix` is a `repr(C)` struct of integers.
    unsafe { link_info(&fd, &mut info)? };
    let is_tcx = info.link_type == BPF_LINK_TYPE_TCX;
    let direction = match (is_tcx, info.tcx_attach_type) {
        (true, BPF_TCX_INGRESS) => Some(Direction::FromEndpoint),
        (true, BPF_TCX_EGRESS) => Some(Direction::ToEndpoint),
        _ => None,
    };
    Ok(Attachment {
        link_id: info.id,
        program_id: info.prog_id,
        is_tcx,
        ifindex: if is_tcx { info.tcx_ifindex } else { 0 },
        direction,
    })
}

/// `union bpf_attr` member for `BPF_LINK_DETACH`.
#[repr(C)]
struct LinkDetachAttr {
    link_fd: u32,
}

/// Detaches the link pinned at `path` (it stays pinned but defunct), then
/// removes the pin. A missing pin is fine. The pin is removed even if the
/// detach fails; the detach error is returned then.
pub(super) fn detach_and_unpin(path: &Path) -> io::Result<()> {
    let fd = match obj_get(path) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut attr = LinkDetachAttr {
        link_fd: fd.as_raw_fd() as u32,
    };
    // SAFETY: `attr` is a properly laid out `bpf_attr` prefix for
    // BPF_LINK_DETACH and outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_DETACH,
            &raw mut attr,
            size_of::<LinkDetachAttr>(),
        )
    };
    let detached = if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    detached
}

/// `BPF_OBJ_GET_INFO_BY_FD` of the link `fd` into `info`, a zeroed
/// prefix of `struct bpf_link_info` (the kernel copies what fits).
///
/// # Safety
/// `T` must be a `#[repr(C)]` struct of integers, so that any bytes the
/// kernel writes make a valid value.
pub(super) unsafe fn link_info<T>(fd: &OwnedFd, info: &mut T) -> io::Result<()> {
    let mut attr = InfoByFdAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: size_of::<T>() as u32,
        info: std::ptr::from_mut(info) as u64,
    };
    // SAFETY: `attr` is a properly laid out `bpf_attr` prefix for this
    // command and `info` points to `info_len` writable bytes; both outlive
    // the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &raw mut attr,
            size_of::<InfoByFdAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `union bpf_attr` member for `BPF_LINK_UPDATE`.
#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// `BPF_LINK_UPDATE`: make the link run `prog_fd` instead.
pub(super) fn link_update(link: &OwnedFd, prog_fd: i32) -> io::Result<()> {
    let mut attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog_fd as u32,
        ..Default::default()
    };
    // SAFETY: `attr` is a properly laid out `bpf_attr` prefix for
    // BPF_LINK_UPDATE and outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_LINK_UPDATE,
            &raw mut attr,
            size_of::<LinkUpdateAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the bpf object pinned at `path`.
pub(super) fn obj_get(path: &Path) -> io::Result<OwnedFd> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut attr = ObjGetAttr {
        pathname: c_path.as_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `attr` is a properly laid out `bpf_attr` prefix for
    // BPF_OBJ_GET and `pathname` points to a NUL-terminated string; both
    // outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &raw mut attr,
            size_of::<ObjGetAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success BPF_OBJ_GET returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}
