//! The state directory (`--state-dir`): the persisted state, the
//! containers' logs, the cluster host id. It is private to root: the logs
//! hold whatever containers print, the state names every container, address
//! and command. And one daemon at a time uses it: two would each take the
//! other's records for leftovers and overwrite each other's commits.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the directories netd makes in it: root only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files netd writes in it: root only.
pub const FILE_MODE: u32 = 0o600;

/// The file whose lock a daemon holds while it uses the directory; it
/// holds the daemon's pid, for the message another daemon gives.
const LOCK_FILE: &str = "lock";
const LOGS_DIR: &str = "logs";

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error(
        "another netd{} is using the state directory {}: stop it, or give this daemon \
         another --state-dir",
        .pid.as_ref().map(|p| format!(" (pid {p})")).unwrap_or_default(),
        .dir.display()
    )]
    Locked { dir: PathBuf, pid: Option<String> },
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StateDirError {
    let path = path.to_path_buf();
    move |source| StateDirError::Io { op, path, source }
}

/// The state directory, in use by this daemon for as long as this lives.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// The lock: `flock`, which the kernel drops with the last descriptor
    /// of the file, so a daemon that dies in any way (SIGKILL included)
    /// leaves no stale lock.
    _lock: File,
}

impl StateDir {
    /// Creates the directory if needed and takes its lock, refusing when
    /// another daemon holds it; then takes group and other permissions off
    /// everything in it (an older netd left its files world-readable).
    pub fn open(path: &Path) -> Result<StateDir, StateDirError> {
        create_private_dir(path).map_err(io_error("create", path))?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&lock_path)
            .map_err(io_error("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = lock.read_to_string(&mut pid);
                let pid = Some(pid.trim().to_string()).filter(|p| !p.is_empty());
                return Err(StateDirError::Locked {
                    dir: path.to_path_buf(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error("lock", &lock_path)(e)),
        }
        lock.set_len(0)
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .map_err(io_error("write", &lock_path))?;
        fs::metadata(path)
            .and_then(|meta| make_private(path, &meta))
            .map_err(io_error("restrict the permissions of", path))?;
        Ok(StateDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the containers' processes write their output.
    pub fn logs(&self) -> PathBuf {
        self.path.join(LOGS_DIR)
    }
}

/// Creates `path` and its missing parents with [`DIR_MODE`].
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Replaces `dir/name` with `bytes`, all of them or none, also across a
/// crash: written to a temporary file ([`FILE_MODE`]), fsynced, renamed
/// over it, and the directory fsynced, as a rename is durable only once
/// the directory entry is.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)?;
    // A leftover of an older netd may have kept a wider mode.
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Takes group and other permissions (and set-id bits) off `path` and
/// everything under it; symbolic links under it are left alone, not
/// followed.
fn make_private(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & !0o700 != 0 {
        fs::set_permissions(path, Permissions::from_mode(mode & 0o700))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            // Of the entry itself, not of what a link points to.
            let meta = entry.metadata()?;
            if !meta.file_type().is_symlink() {
                make_private(&entry.path(), &meta)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netd-statedir-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_open_directory_is_locked_until_dropped() {
        let dir = tempdir("lock");
        let first = StateDir::open(&dir).unwrap();
        // flock conflicts between two open files, also in one process.
        let e = StateDir::open(&dir).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!(
                "another netd (pid {}) is using the state directory {}",
                std::process::id(),
                dir.display()
            )),
            "{msg}"
        );
        drop(first);
        drop(StateDir::open(&dir).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_an_older_netd_left_readable_is_made_private() {
        let dir = tempdir("modes");
        let logs = dir.join(LOGS_DIR);
        fs::create_dir_all(&logs).unwrap();
        for (path, m) in [
            (&dir, 0o755),
            (&logs, 0o755),
            (&dir.join("state.json"), 0o644),
            (&logs.join("c1.log"), 0o664),
        ] {
            if !path.exists() {
                fs::write(path, b"x").unwrap();
            }
            fs::set_permissions(path, Permissions::from_mode(m)).unwrap();
        }
        std::os::unix::fs::symlink("/etc/hostname", dir.join("link")).unwrap();
        let before = mode(Path::new("/etc/hostname"));
        let state = StateDir::open(&dir).unwrap();
        assert_eq!(state.logs(), logs);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&logs), 0o700);
        assert_eq!(mode(&dir.join("state.json")), 0o600);
        assert_eq!(mode(&logs.join("c1.log")), 0o600);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
        assert_eq!(mode(Path::new("/etc/hostname")), before, "link followed");
        drop(state);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_replaced_file_is_private_and_leaves_no_temp_file() {
        let dir = tempdir("replace");
        create_private_dir(&dir).unwrap();
        // A world-readable leftover temp file and target.
        for name in ["f", "f.tmp"] {
            fs::write(dir.join(name), b"old").unwrap();
            fs::set_permissions(dir.join(name), Permissions::from_mode(0o644)).unwrap();
        }
        replace_file(&dir, "f", b"new").unwrap();
        assert_eq!(fs::read(dir.join("f")).unwrap(), b"new");
        assert_eq!(mode(&dir.join("f")), 0o600);
        assert!(!dir.join("f.tmp").exists());
        assert_eq!(mode(&dir), 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }
}
