//! Processes inside a container's network namespace: `netd container run`
//! (background, logged) and `netd container exec` (attached).
//!
//! The namespace is entered with `setns` in a `pre_exec` hook, i.e. in the
//! forked child just before `exec`, where only that single-threaded child is
//! affected; the daemon's own threads never change namespace.
//!
//! Like `ip netns exec NAME`, the child then gets the files of
//! `/etc/netns/NAME/` (the container's resolv.conf, written by `dns`)
//! bind-mounted over their namesakes in `/etc`, in a mount namespace of its
//! own whose mounts are slaves of the host's, so nothing leaks back to the
//! host and `ip netns exec` users see the same files.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use crate::model::Start;
use crate::process::start_of;
use crate::state_dir::FILE_MODE;

/// Starts `cmd` in the background inside `netns` (`None` = the host's),
/// as the leader of its own session and process group so that
/// [`process::stop`](crate::process::stop) can signal everything it starts
/// and a terminal's signals don't reach it.
/// stdin is `/dev/null`; stdout and stderr are appended to `log`.
///
/// The child is not tied to the daemon's life (no `PR_SET_PDEATHSIG`): a
/// daemon crash or restart must not kill containers. While the daemon runs,
/// a small thread reaps the child when it exits so it doesn't linger as a
/// zombie. Returns the pid and the start of the process.
pub fn spawn(netns: Option<&Path>, cmd: &[String], log: &Path) -> io::Result<(u32, Start)> {
    let (program, args) = split_cmd(cmd)?;
    let ns = netns.map(open_netns).transpose()?;
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(log)
        .map_err(|e| with_context(e, format!("open log file {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| with_context(e, format!("open log file {}", log.display())))?;

    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    let mounts = netns.map(etc_mounts).unwrap_or_default();
    prepare_child(
        &mut command,
        ns.as_ref().map(|f| f.as_raw_fd()),
        mounts,
        true,
    );
    let mut child = command.spawn().map_err(|e| exec_error(program, e))?;
    drop(ns);
    let pid = child.id();
    // Before the reaper may reap it: until then even an exited child keeps
    // its entry in /proc.
    let Some(start) = start_of(pid) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::other(format!(
            "cannot read the start of process {pid}"
        )));
    };
    let reaper = std::thread::Builder::new()
        .name(format!("netd-reap-{pid}"))
        .stack_size(64 * 1024)
        .spawn(move || {
            let _ = child.wait();
        });
    if let Err(e) = reaper {
        // Not fatal: the process runs; it may just stay a zombie after exit
        // until `process::stop` reaps it or the daemon exits.
        tracing::warn!(pid, error = %e, "failed to start reaper thread");
    }
    Ok((pid, start))
}

/// Runs `cmd` attached to the caller's stdio inside `netns` (`None` = the
/// host's), waits for it and returns its exit status. Used by the CLI for
/// `netd container exec`.
pub fn exec(netns: Option<&Path>, cmd: &[String]) -> io::Result<ExitStatus> {
    let (program, args) = split_cmd(cmd)?;
    let ns = netns.map(open_netns).transpose()?;
    let mut command = Command::new(program);
    command.args(args);
    let mounts = netns.map(etc_mounts).unwrap_or_default();
    prepare_child(
        &mut command,
        ns.as_ref().map(|f| f.as_raw_fd()),
        mounts,
        false,
    );
    let mut child = command.spawn().map_err(|e| exec_error(program, e))?;
    drop(ns);
    child.wait()
}

fn split_cmd(cmd: &[String]) -> io::Result<(&str, &[String])> {
    match cmd.split_first() {
        Some((program, args)) if !program.is_empty() => Ok((program.as_str(), args)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no command specified",
        )),
    }
}

/// Opens a namespace file, checking it really is one so that a later
/// `setns` failure cannot be mistaken for an exec failure.
fn open_netns(path: &Path) -> io::Result<File> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("network namespace {} not found", path.display()),
            )
        } else {
            with_context(e, format!("open network namespace {}", path.display()))
        }
    })?;
    if !crate::netlink::netns::is_nsfs(file.as_fd()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a network namespace", path.display()),
        ));
    }
    Ok(file)
}

/// Where `ip netns exec` looks for per-namespace files (`NAME/resolv.conf`).
pub const ETC_NETNS: &str = crate::dns::RESOLV_DIR;

/// The bind mounts `ip netns exec` makes for the namespace at `netns`
/// (named by its file name): every file of `/etc/netns/NAME/` over the
/// file of the same name in `/etc`. Read before forking, so the child only
/// makes syscalls.
fn etc_mounts(netns: &Path) -> Vec<(CString, CString)> {
    let Some(name) = netns.file_name() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(Path::new(ETC_NETNS).join(name)) else {
        return Vec::new();
    };
    let mut mounts: Vec<(CString, CString)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let src = CString::new(e.path().as_os_str().as_bytes()).ok()?;
            let dst =
                CString::new(Path::new("/etc").join(e.file_name()).as_os_str().as_bytes()).ok()?;
            Some((src, dst))
        })
        .collect();
    mounts.sort();
    mounts
}

/// Installs the hook that runs in the forked child before exec.
fn prepare_child(
    command: &mut Command,
    netns_fd: Option<RawFd>,
    etc_mounts: Vec<(CString, CString)>,
    new_session: bool,
) {
    let hook = move || {
        if let Some(fd) = netns_fd {
            // SAFETY: fd is the parent's open nsfs descriptor, inherited by
            // this forked, single-threaded child; setns is async-signal-safe.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if !etc_mounts.is_empty() {
            // What `ip netns exec` does: a private mount namespace whose
            // mounts receive the host's but never propagate back, then the
            // namespace's files over /etc's.
            // SAFETY: unshare takes no pointers; it affects only this
            // single-threaded child.
            if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: valid NUL-terminated strings; a propagation change
            // ignores source, fstype and data.
            if unsafe {
                libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_SLAVE | libc::MS_REC,
                    std::ptr::null(),
                )
            } != 0
            {
                return Err(io::Error::last_os_error());
            }
            for (src, dst) in &etc_mounts {
                // Best effort, as `ip netns exec` (which warns): a file that
                // vanished or has no counterpart in /etc is skipped.
                // SAFETY: src and dst are NUL-terminated strings built
                // before the fork and alive for the whole call.
                unsafe {
                    libc::mount(
                        src.as_ptr(),
                        dst.as_ptr(),
                        c"none".as_ptr(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                };
            }
        }
        // SAFETY: setsid takes no arguments; the forked child is not a group
        // leader, so it cannot fail with EPERM.
        if new_session && unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
        // Descriptors the daemon opened without CLOEXEC (netlink sockets,
        // BPF maps of libraries) must not leak into containers. Marking them
        // CLOEXEC rather than closing them keeps std's own exec-error pipe
        // working. Best effort: kernels before 5.11 lack the flag.
        // SAFETY: close_range takes no pointers and only sets flags.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe syscalls (setns,
    // unshare, mount, setsid, close_range) on data prepared before the fork
    // and allocates nothing, as required after fork in a possibly
    // multi-threaded parent.
    unsafe { command.pre_exec(hook) };
}

/// Docker's wording for a command that cannot be started, e.g.
/// `exec: "foo": executable file not found in $PATH`.
fn exec_error(program: &str, e: io::Error) -> io::Error {
    let msg = match e.kind() {
        io::ErrorKind::NotFound if program.contains('/') => {
            format!("exec: \"{program}\": no such file or directory")
        }
        io::ErrorKind::NotFound => {
            format!("exec: \"{program}\": executable file not found in $PATH")
        }
        io::ErrorKind::PermissionDenied => format!("exec: \"{program}\": permission denied"),
        _ => format!("exec: \"{program}\": {e}"),
    };
    io::Error::new(e.kind(), msg)
}

fn with_context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("failed to {what}: {e}"))
}
