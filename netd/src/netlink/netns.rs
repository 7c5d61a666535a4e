//! Named network namespaces, compatible with iproute2 (`ip netns`): a
//! namespace is kept alive by bind-mounting its nsfs file onto
//! `/run/netns/NAME`, so `ip -n NAME ...` and `ip netns exec` see ours and
//! the namespace outlives the daemon.
//!
//! `setns`/`unshare` change the namespace of the calling *thread*, so every
//! operation that needs them runs on a dedicated, short-lived std thread.
//! They must never run on a tokio worker, whose later tasks would silently
//! act in the container's namespace.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rtnetlink::Handle;

use super::NetlinkError;

/// Where iproute2 (and so netd) keeps named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// `statfs` magic of nsfs (linux/magic.h), not exported by the libc crate.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Serialises the one-time "make /run/netns a shared mount" step within the
/// process: two threads racing through it could each bind-mount the
/// directory onto itself and stack two mounts.
static RUN_DIR_LOCK: Mutex<()> = Mutex::new(());

/// Path of the namespace file for `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// A network namespace to plumb links into: one netd made by name (under
/// `/run/netns`), or any namespace file by path, e.g. the one a container
/// runtime made and hands over through CNI (`/var/run/netns/cni-...`,
/// `/proc/PID/ns/net`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Netns {
    Named(String),
    Path(PathBuf),
}

impl Netns {
    /// The namespace file.
    pub fn path(&self) -> PathBuf {
        match self {
            Netns::Named(name) => path(name),
            Netns::Path(p) => p.clone(),
        }
    }

    /// Opens the namespace file, e.g. to pass to `setns` or
    /// `IFLA_NET_NS_FD`; a missing file or one that is not a namespace is
    /// [`NetlinkError::NetnsNotFound`].
    pub(crate) fn open(&self) -> Result<File, NetlinkError> {
        open_file(self)
    }

    /// Whether the namespace is there (a mounted nsfs file).
    pub fn exists(&self) -> bool {
        self.open().is_ok()
    }
}

impl std::fmt::Display for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Netns::Named(name) => f.write_str(name),
            Netns::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

impl From<&str> for Netns {
    fn from(name: &str) -> Netns {
        Netns::Named(name.to_string())
    }
}

impl From<String> for Netns {
    fn from(name: String) -> Netns {
        Netns::Named(name)
    }
}

/// Names that would escape `/run/netns` or be invisible to `ip netns`.
fn check_name(name: &str) -> Result<(), NetlinkError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name.contains('/') || name.contains('\0') {
        "contains '/' or NUL"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(NetlinkError::InvalidName {
        what: "network namespace",
        name: name.to_string(),
        reason,
    })
}

fn c_path(p: &Path) -> CString {
    // Names are checked for NUL bytes, and NETNS_DIR has none.
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// True if `fd` is an nsfs file, i.e. a namespace and not a leftover empty
/// file (a crash between creating the file and mounting onto it).
pub(crate) fn is_nsfs(fd: BorrowedFd<'_>) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fd is a valid open descriptor for the duration of the borrow
    // and `st` points to writable memory of the right size.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // The cast is a no-op on x86_64 glibc, but f_type's type varies by target.
    #[allow(clippy::unnecessary_cast)]
    let fs_type = st.f_type as i64;
    fs_type == NSFS_MAGIC
}

/// Whether `name` is a live named namespace (a mounted nsfs file, not just
/// a file that happens to exist).
pub fn exists(name: &str) -> bool {
    check_name(name).is_ok() && File::open(path(name)).is_ok_and(|f| is_nsfs(f.as_fd()))
}

/// Opens the namespace file of `ns`, refusing a file that is not a
/// namespace (e.g. a leftover empty file of a crash, or a path a careless
/// caller made up).
fn open_file(ns: &Netns) -> Result<File, NetlinkError> {
    if let Netns::Named(name) = ns {
        check_name(name)?;
    }
    let p = ns.path();
    let file = match File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(NetlinkError::NetnsNotFound(ns.clone()));
        }
        Err(e) => {
            return Err(NetlinkError::kernel(
                format!("open network namespace {}", p.display()),
                e,
            ));
        }
    };
    if !is_nsfs(file.as_fd()) {
        return Err(NetlinkError::NetnsNotFound(ns.clone()));
    }
    Ok(file)
}

/// Like `ip netns add NAME`, then `ip -n NAME link set lo up` (Docker
/// containers have loopback up). Fails with [`NetlinkError::NetnsExists`] if
/// the namespace exists. Blocks briefly (it joins a helper thread); async
/// callers may call it directly or from `spawn_blocking`.
pub fn create(name: &str) -> Result<(), NetlinkError> {
    check_name(name)?;
    ensure_run_dir()?;
    let p = path(name);
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o444)
        .custom_flags(libc::O_CLOEXEC)
        .open(&p)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if exists(name) {
                return Err(NetlinkError::NetnsExists(name.to_string()));
            }
            // An empty file left by a crash mid-create: nothing uses it.
            tracing::info!(netns = name, "replacing leftover namespace file");
            fs::remove_file(&p).map_err(|e| {
                NetlinkError::kernel(format!("remove leftover file {}", p.display()), e)
            })?;
            return create(name);
        }
        Err(e) => {
            return Err(NetlinkError::kernel(
                format!("create namespace file {}", p.display()),
                e,
            ));
        }
    };
    drop(file);

    let target = c_path(&p);
    let res = std::thread::Builder::new()
        .name("netd-netns-add".into())
        .spawn(move || new_netns_thread(&target))
        .map_err(|e| NetlinkError::kernel("spawn a thread to create a namespace", e))?
        .join()
        .unwrap_or_else(|_| {
            Err((
                "run the namespace thread",
                io::Error::other("thread panicked"),
            ))
        });
    if let Err((step, e)) = res {
        // Undo: unmount if the bind mount happened, then drop the file.
        unmount(&p);
        let _ = fs::remove_file(&p);
        return Err(NetlinkError::kernel(
            format!("{step} for network namespace {name}"),
            e,
        ));
    }
    Ok(())
}

/// Body of the thread that makes a namespace: `unshare` moves this thread
/// (only) into a fresh netns, which the bind mount then pins to `target`.
/// The thread exits afterwards, so no other code ever runs in that netns.
fn new_netns_thread(target: &CString) -> Result<(), (&'static str, io::Error)> {
    // SAFETY: unshare takes no pointers; CLONE_NEWNET affects only the
    // calling thread, which is this dedicated one.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(("unshare(CLONE_NEWNET)", io::Error::last_os_error()));
    }
    // SAFETY: all pointers are valid NUL-terminated strings (or null for
    // data) that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"/proc/thread-self/ns/net".as_ptr(),
            target.as_ptr(),
            c"none".as_ptr(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(("bind-mount the namespace", io::Error::last_os_error()));
    }
    loopback_up().map_err(|e| ("set lo up", e))
}

/// Sets `lo` up in the calling thread's netns with the classic ioctl: it
/// needs no async runtime, and the thread is about to exit anyway.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifru_flags of `req`,
    // which is a valid, exclusively borrowed ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS initialised the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `/run/netns` a shared mount point, as iproute2 does, so that a
/// namespace mounted later propagates to mount namespaces cloned from ours
/// (e.g. `ip netns exec`, systemd services with PrivateTmp) and unmounting
/// it frees the namespace everywhere.
fn ensure_run_dir() -> Result<(), NetlinkError> {
    let _guard = RUN_DIR_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(NETNS_DIR);
    fs::create_dir_all(dir)
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o755)))
        .map_err(|e| NetlinkError::kernel(format!("create {NETNS_DIR}"), e))?;
    let c_dir = c_path(dir);
    let mut bound = false;
    loop {
        // SAFETY: valid NUL-terminated strings; remounting with only
        // propagation flags ignores source, fstype and data.
        let rc = unsafe {
            libc::mount(
                c"".as_ptr(),
                c_dir.as_ptr(),
                c"none".as_ptr(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        // EINVAL: not a mount point yet. Bind it onto itself once, then retry.
        if err.raw_os_error() != Some(libc::EINVAL) || bound {
            return Err(NetlinkError::kernel(
                format!("make {NETNS_DIR} a shared mount"),
                err,
            ));
        }
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c_dir.as_ptr(),
                c_dir.as_ptr(),
                c"none".as_ptr(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(NetlinkError::kernel(
                format!("bind-mount {NETNS_DIR} onto itself"),
                io::Error::last_os_error(),
            ));
        }
        bound = true;
    }
}

/// Lazily unmounts `p`; "not mounted" and "missing" are fine.
fn unmount(p: &Path) -> Option<io::Error> {
    let c = c_path(p);
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return None;
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL | libc::ENOENT) => None,
        _ => Some(err),
    }
}

/// Like `ip netns delete NAME`: unmount (lazily, so open handles such as a
/// running `ip netns exec` don't block it) and remove the file. The
/// namespace itself goes away once no process or mount uses it. A missing
/// namespace is Ok.
pub fn delete(name: &str) -> Result<(), NetlinkError> {
    check_name(name)?;
    let p = path(name);
    if let Some(e) = unmount(&p) {
        return Err(NetlinkError::kernel(
            format!("unmount network namespace {}", p.display()),
            e,
        ));
    }
    match fs::remove_file(&p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetlinkError::kernel(
            format!("remove network namespace file {}", p.display()),
            e,
        )),
    }
}

/// Names under `/run/netns` starting with `prefix`, sorted. A missing
/// directory means no namespaces.
pub fn list_with_prefix(prefix: &str) -> Result<Vec<String>, NetlinkError> {
    let entries = match fs::read_dir(NETNS_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetlinkError::kernel(format!("list {NETNS_DIR}"), e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NetlinkError::kernel(format!("list {NETNS_DIR}"), e))?;
        if let Some(n) = entry.file_name().to_str()
            && n.starts_with(prefix)
        {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Processes whose network namespace is the named one, as `ip netns pids
/// NAME` finds them: by the identity (device and inode) of each process's
/// `/proc/PID/ns/net`. Processes that end during the walk are skipped.
pub fn pids(name: &str) -> Result<Vec<u32>, NetlinkError> {
    check_name(name)?;
    let p = path(name);
    let ns = fs::metadata(&p)
        .map_err(|e| NetlinkError::kernel(format!("stat network namespace {}", p.display()), e))?;
    let procs = fs::read_dir("/proc").map_err(|e| NetlinkError::kernel("list /proc", e))?;
    let mut found: Vec<u32> = procs
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| same_namespace(*pid, &ns))
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// Whether process `pid` is in the network namespace whose file is at
/// `ns` (`/run/netns/NAME`, `/proc/PID/ns/net`) now.
pub fn process_in(pid: u32, ns: &Path) -> bool {
    fs::metadata(ns).is_ok_and(|ns| same_namespace(pid, &ns))
}

fn same_namespace(pid: u32, ns: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}/ns/net"))
        .is_ok_and(|m| (m.dev(), m.ino()) == (ns.dev(), ns.ino()))
}

/// Opens an rtnetlink connection inside namespace `ns`.
///
/// A netlink socket belongs to the namespace it was created in, so the
/// socket is created on a fresh std thread that first `setns`es into the
/// namespace; the thread then exits. The connection task runs on the
/// current tokio runtime and ends when the returned handle (and its clones)
/// are dropped.
pub(crate) async fn connect(ns: &Netns) -> Result<Handle, NetlinkError> {
    let file = ns.open()?;
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netd-netns-nl".into())
        .spawn(move || {
            let res = (|| {
                // SAFETY: `file` is an open nsfs descriptor; setns affects
                // only this dedicated thread, which exits right after.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(("setns", io::Error::last_os_error()));
                }
                // The socket registers with the runtime's reactor on creation.
                let _enter = runtime.enter();
                rtnetlink::new_connection().map_err(|e| ("open a netlink socket", e))
            })();
            let _ = tx.send(res);
        })
        .map_err(|e| NetlinkError::kernel("spawn a thread to enter a namespace", e))?;
    let (conn, handle, _unsolicited) = rx
        .await
        .unwrap_or_else(|_| {
            Err((
                "run the namespace thread",
                io::Error::other("thread panicked"),
            ))
        })
        .map_err(|(step, e)| {
            NetlinkError::kernel(format!("{step} in network namespace {ns}"), e)
        })?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Runs `f` on a fresh std thread that has first `setns`ed into the
/// namespace `file` refers to, and returns its result. The thread exits
/// afterwards, so nothing else ever runs in that namespace by accident.
/// Blocking work in `f` (e.g. a procfs write) never blocks a tokio worker.
pub(crate) async fn run_in<T, F>(file: File, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netd-netns-run".into())
        .spawn(move || {
            // SAFETY: `file` is an open nsfs descriptor; setns affects only
            // this dedicated thread, which exits right after `f`.
            let res = if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                Err(io::Error::last_os_error())
            } else {
                f()
            };
            let _ = tx.send(res);
        })?;
    rx.await
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
}
