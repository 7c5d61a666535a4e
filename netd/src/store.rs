//! Persistence of the desired state. The engine saves a whole snapshot after
//! validating a change and before touching the kernel, so whatever a crash
//! interrupts, the next start knows the intended state and reconciles the
//! kernel with it.
//!
//! `Store` is the seam for a cluster store: a multi-host backend (etcd) will
//! implement the same two calls.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::State;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state file {path} is corrupt ({source}); move it aside to start empty, \
         or restore it from a backup"
    )]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub trait Store: Send + Sync {
    /// The last saved state; an empty state when nothing was ever saved.
    fn load(&self) -> Result<State, StoreError>;
    /// Replaces the saved state atomically: after a crash, `load` returns
    /// either the old or the new state, never a mix.
    fn save(&self, state: &State) -> Result<(), StoreError>;
}

/// A JSON file in the state directory, replaced with write-to-temp, fsync,
/// rename, fsync-directory.
pub struct FileStore {
    dir: PathBuf,
}

const STATE_FILE: &str = "state.json";

impl FileStore {
    pub fn new(dir: &Path) -> Result<FileStore, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            op: "create state directory",
            path: dir.into(),
            source,
        })?;
        Ok(FileStore { dir: dir.into() })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
}

impl Store for FileStore {
    fn load(&self) -> Result<State, StoreError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StoreError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { op, path, source }
        };
        // Compact, not pretty: the whole snapshot is rewritten and fsynced
        // on every change, and indentation makes it a third larger (about
        // 1 MB at 1,000 containers). `jq . state.json` shows it readably.
        let bytes = serde_json::to_vec(state).expect("state serializes");
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
        // The rename is only durable once the directory entry is.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", &self.dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Container, NetMode};

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netd-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn empty_when_never_saved_then_round_trips() {
        let dir = tempdir("rt");
        let store = FileStore::new(&dir).unwrap();
        assert_eq!(store.load().unwrap(), State::default());
        let mut s = State::default();
        s.containers.insert(
            "c1".into(),
            Container {
                id: "c1".into(),
                name: "web".into(),
                created: "2026-01-01T00:00:00Z".into(),
                net: NetMode::Own {
                    netns: "netd-web".into(),
                },
                network_mode: "bridge".into(),
                endpoints: vec![],
                process: None,
                ports: vec![],
                services: Vec::new(),
            },
        );
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap(), s);
        assert!(!dir.join("state.json.tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_file_is_reported_not_discarded() {
        let dir = tempdir("bad");
        let store = FileStore::new(&dir).unwrap();
        fs::write(dir.join(STATE_FILE), b"{not json").unwrap();
        let e = store.load().unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }));
        assert!(e.to_string().contains("move it aside"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_leftover_temp_file_does_not_matter() {
        let dir = tempdir("tmp");
        let store = FileStore::new(&dir).unwrap();
        store.save(&State::default()).unwrap();
        // A crash between write and rename leaves the temp file behind.
        fs::write(dir.join("state.json.tmp"), b"partial").unwrap();
        assert_eq!(store.load().unwrap(), State::default());
        store.save(&State::default()).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
