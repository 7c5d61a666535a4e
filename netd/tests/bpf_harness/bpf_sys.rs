//! The `bpf(2)` calls the tests make where aya has no API for what they
//! need: maps and links made the way an older netd or another tool made
//! them, programs of a few hand-written instructions, pins of either.

use std::{
    ffi::CString,
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

/// `enum bpf_cmd` values (uapi/linux/bpf.h).
pub const BPF_MAP_CREATE: libc::c_long = 0;
pub const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub const BPF_PROG_LOAD: libc::c_long = 5;
pub const BPF_OBJ_PIN: libc::c_long = 6;
pub const BPF_LINK_CREATE: libc::c_long = 28;

/// `bpf(cmd, attr, sizeof(attr))`: the fd or value it returns.
///
/// `T` must be a `#[repr(C)]` prefix of `union bpf_attr` for `cmd` without
/// implicit padding: the kernel refuses nonzero bytes in fields it does not
/// expect.
pub fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i32> {
    // SAFETY: `attr` is a valid `bpf_attr` prefix for `cmd` of the size
    // passed (see above); the kernel reads, and for some commands writes,
    // only that many bytes.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>() as u32) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as i32)
}

/// `bpf(2)`'s answer as the new fd it is.
pub fn bpf_fd<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    // SAFETY: the command returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `bpf_attr` for `BPF_MAP_CREATE`, up to `map_name`.
#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// A new map of `map_type` (`enum bpf_map_type`) named `name` (at most 15
/// bytes).
pub fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut map_name = [0u8; 16];
    map_name[..name.len()].copy_from_slice(name.as_bytes());
    bpf_fd(
        BPF_MAP_CREATE,
        &mut MapCreate {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_flags: 0,
            inner_map_fd: 0,
            numa_node: 0,
            map_name,
        },
    )
}

/// `bpf_attr` for `BPF_OBJ_PIN`.
#[repr(C)]
struct ObjPin {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// Pins the bpf object `fd` at `path` (on bpffs).
pub fn pin(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    bpf(
        BPF_OBJ_PIN,
        &mut ObjPin {
            pathname: path.as_ptr() as u64,
            bpf_fd: fd.as_raw_fd() as u32,
            file_flags: 0,
        },
    )
    .map(drop)
}
