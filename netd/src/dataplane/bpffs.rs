//! Making sure pins land on a bpf filesystem.
//!
//! Pinning only works on bpffs, and a fresh machine may not have it mounted
//! at /sys/fs/bpf (TOOLCHAIN.md). Pinning onto a plain directory fails with
//! a confusing EPERM, so check and mount up front.
use std::{
    ffi::CString, io, mem::MaybeUninit, os::unix::ffi::OsStrExt as _, path::Path, sync::Mutex,
};

use super::DataplaneError;

/// `BPF_FS_MAGIC` from linux/magic.h (not exported by the libc crate).
const BPF_FS_MAGIC: u32 = 0xcafe_4a11;

/// Where bpffs is expected, as libbpf, bpftool and aya assume.
const BPFFS_ROOT: &str = "/sys/fs/bpf";

/// Serialises check-then-mount within the process: tests load several
/// data paths in parallel, and two threads mounting at once would stack two
/// bpffs instances on /sys/fs/bpf, hiding the first one's pins.
static MOUNT_LOCK: Mutex<()> = Mutex::new(());

/// Mounts bpffs at /sys/fs/bpf unless a bpffs is already mounted there.
pub(super) fn ensure_mounted() -> Result<(), DataplaneError> {
    let root = Path::new(BPFFS_ROOT);
    let mount_err = |source| DataplaneError::MountBpffs {
        path: root.to_path_buf(),
        source,
    };
    let _guard = MOUNT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if is_bpffs(root).map_err(mount_err)? {
        return Ok(());
    }
    let target = CString::new(BPFFS_ROOT).expect("no NUL in a literal");
    let fstype = CString::new("bpf").expect("no NUL in a literal");
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the
    // call; `data` may be NULL for bpffs.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(mount_err(io::Error::last_os_error()));
    }
    tracing::info!(path = BPFFS_ROOT, "mounted bpffs");
    Ok(())
}

/// Whether `path` is on a bpf filesystem (statfs magic).
pub(super) fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut buf = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `buf` is large enough for a
    // `struct statfs`, which statfs(2) fills on success.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), buf.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so it initialised `buf`.
    let buf = unsafe { buf.assume_init() };
    // `f_type` is a signed word whose width depends on the architecture;
    // the magic is compared on its low 32 bits, as the kernel defines it.
    Ok(buf.f_type as u32 == BPF_FS_MAGIC)
}
