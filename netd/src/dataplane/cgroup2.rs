//! Finding the cgroup v2 hierarchy the socket hooks attach to, and mounting
//! one when the daemon sees none.
//!
//! A daemon started with `ip netns exec` (a simulated host, a test) gets a
//! mount namespace of its own in which /sys is remounted for the network
//! namespace, and the host's cgroup2 mount is gone (TOOLCHAIN.md); a host
//! with only cgroup v1 mounted has none either. The hierarchy itself is
//! still there, so the daemon mounts it under its run directory, as Cilium
//! mounts `/run/cilium/cgroupv2`, and attaches to its root as usual.
//! `netd system cleanup` unmounts it again.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use tracing::info;

/// The mount point the daemon makes under its run directory.
pub fn private_mount(run_dir: &Path) -> PathBuf {
    run_dir.join("cgroup2")
}

/// The cgroup v2 hierarchy's root ([`cgroup2_root`]), or, when none is
/// mounted, a fresh mount of it at [`private_mount`]`(run_dir)`.
pub fn cgroup2_root_or_mount(run_dir: &Path) -> io::Result<PathBuf> {
    match cgroup2_root() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        found => return found,
    }
    let target = private_mount(run_dir);
    std::fs::create_dir_all(&target)?;
    let c_target = CString::new(target.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let fstype = c"cgroup2";
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call; cgroup2 takes no data.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            c_target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!(
                "no cgroup2 filesystem is mounted and mounting one at {} failed: {e}",
                target.display()
            ),
        ));
    }
    info!(path = %target.display(), "no cgroup2 mounted here: mounted one");
    Ok(target)
}

/// Unmounts [`private_mount`]`(run_dir)` if the daemon made it and removes
/// the empty directory; returns whether there was a mount. Nothing there
/// is fine.
pub fn remove_private_mount(run_dir: &Path) -> io::Result<bool> {
    let target = private_mount(run_dir);
    let c_target = CString::new(target.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a NUL-terminated path that outlives the call.
    let unmounted = unsafe { libc::umount2(c_target.as_ptr(), libc::MNT_DETACH) } == 0;
    if !unmounted {
        let e = io::Error::last_os_error();
        // EINVAL: not a mount point; ENOENT: no such directory.
        if !matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) {
            return Err(e);
        }
    }
    match std::fs::remove_dir(&target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(unmounted),
    }
}

/// The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo:
/// `/sys/fs/cgroup` on a unified system, `/sys/fs/cgroup/unified` on a
/// hybrid (v1 + v2) one. `NotFound` if cgroup2 is not mounted.
pub fn cgroup2_root() -> io::Result<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    cgroup2_mount_in(&mountinfo).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup2 filesystem is mounted (see /proc/self/mountinfo) - mount it with `mount -t cgroup2 none /sys/fs/cgroup`",
        )
    })
}

/// The cgroup2 mount point in a mountinfo text, preferring a mount of the
/// hierarchy's root (in a cgroup namespace or a bind mount, the root field
/// is a sub-path).
fn cgroup2_mount_in(mountinfo: &str) -> Option<PathBuf> {
    let mut fallback = None;
    for line in mountinfo.lines() {
        // `id parent major:minor root mount-point options [optional...] - fstype source super-options`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let mut fields = left.split_whitespace();
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        let path = PathBuf::from(unescape_mountinfo(mount_point));
        if root == "/" {
            return Some(path);
        }
        fallback.get_or_insert(path);
    }
    fallback
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(value as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_hybrid_and_unified_systems() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";
        assert_eq!(
            cgroup2_mount_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // A sub-tree bind mount is only a fallback; escapes are decoded.
        let bind_first = "\
50 1 0:24 /system.slice /mnt/sub rw - cgroup2 cgroup2 rw
51 1 0:24 / /mnt/cg\\040root rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount_in(bind_first),
            Some(PathBuf::from("/mnt/cg root"))
        );
        assert_eq!(
            cgroup2_mount_in("50 1 0:24 /x /mnt/sub rw - cgroup2 cgroup2 rw\n"),
            Some(PathBuf::from("/mnt/sub"))
        );
        assert_eq!(
            cgroup2_mount_in("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"),
            None
        );
    }
}
