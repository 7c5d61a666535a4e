//! Persistence of the desired state. The engine saves every change after
//! validating it and before touching the kernel, so whatever a crash
//! interrupts, the next start knows the intended state and reconciles the
//! kernel with it.
//!
//! A commit is persisted as what it changed (`Change`: entries put and keys
//! deleted), so it costs what changed, not the size of the whole state.
//! `Store` is the seam for a cluster store: a multi-host backend (etcd) will
//! implement the same two calls, a `Change` becoming one transaction of puts
//! and deletes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use imbl::ordmap::{DiffItem, OrdMap};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::model::{Container, Host, Network, Peer, Service, State};
use crate::state_dir::{FILE_MODE, create_private_dir, replace_file};

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
    #[error(
        "state journal {path} is corrupt at line {line} ({source}); move it aside \
         to start from the last snapshot, losing the changes made since"
    )]
    CorruptJournal {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

pub trait Store: Send + Sync {
    /// The last saved state; an empty state when nothing was ever saved.
    /// Called once, before any `save`.
    fn load(&mut self) -> Result<State, StoreError>;
    /// Persists the commit from `before` (what the last `load` or successful
    /// `save` returned or stored) to `after`, atomically: after a crash,
    /// `load` returns either `before` or `after`, never a mix. A failed
    /// save may or may not have stored `after`; the next save still stores
    /// exactly its own `after`.
    fn save(&mut self, before: &State, after: &State) -> Result<(), StoreError>;
}

/// What one commit changed, map by map.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    #[serde(default, skip_serializing_if = "Diff::is_empty")]
    pub networks: Diff<Arc<Network>>,
    #[serde(default, skip_serializing_if = "Diff::is_empty")]
    pub containers: Diff<Arc<Container>>,
    #[serde(default, skip_serializing_if = "Diff::is_empty")]
    pub services: Diff<Arc<Service>>,
    #[serde(default, skip_serializing_if = "Diff::is_empty")]
    pub peers: Diff<Arc<Peer>>,
    #[serde(default, skip_serializing_if = "Diff::is_empty")]
    pub hosts: Diff<Arc<Host>>,
}

/// The per-key difference of one map: entries that are new or different,
/// and keys that are gone.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
// Serde would add `T: Default` for the `default` fields; none is needed.
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Diff<T> {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub put: BTreeMap<String, T>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delete: Vec<String>,
}

// By hand: the derive would require `T: Default`.
impl<T> Default for Diff<T> {
    fn default() -> Self {
        Diff {
            put: BTreeMap::new(),
            delete: Vec::new(),
        }
    }
}

impl Change {
    pub fn between(before: &State, after: &State) -> Change {
        Change {
            networks: Diff::between(&before.networks, &after.networks),
            containers: Diff::between(&before.containers, &after.containers),
            services: Diff::between(&before.services, &after.services),
            peers: Diff::between(&before.peers, &after.peers),
            hosts: Diff::between(&before.hosts, &after.hosts),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
            && self.containers.is_empty()
            && self.services.is_empty()
            && self.peers.is_empty()
            && self.hosts.is_empty()
    }

    pub fn apply(self, state: &mut State) {
        self.networks.apply(&mut state.networks);
        self.containers.apply(&mut state.containers);
        self.services.apply(&mut state.services);
        self.peers.apply(&mut state.peers);
        self.hosts.apply(&mut state.hosts);
    }
}

impl<T: Clone + PartialEq> Diff<T> {
    /// The maps' own diff, which skips the nodes `before` and `after`
    /// share: O(what changed) for a state derived from the other by a few
    /// changes (`model::Table`).
    fn between(before: &OrdMap<String, T>, after: &OrdMap<String, T>) -> Diff<T> {
        let mut diff = Diff::default();
        for item in before.diff(after) {
            match item {
                DiffItem::Add(k, v) | DiffItem::Update { new: (k, v), .. } => {
                    diff.put.insert(k.clone(), v.clone());
                }
                DiffItem::Remove(k, _) => diff.delete.push(k.clone()),
            }
        }
        diff
    }
}

impl<T: Clone> Diff<T> {
    fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }

    fn apply(self, map: &mut OrdMap<String, T>) {
        for k in &self.delete {
            map.remove(k);
        }
        map.extend(self.put);
    }
}

/// `state.json`: the whole state, and the generation that journal records
/// must carry to apply on top of it.
#[derive(Serialize, Deserialize)]
struct Snapshot<S> {
    /// Absent from snapshots written before the journal existed: 0.
    #[serde(default)]
    generation: u64,
    #[serde(flatten)]
    state: S,
}

/// One line of `journal.jsonl`: one commit.
#[derive(Serialize, Deserialize)]
struct Record {
    generation: u64,
    change: Change,
}

/// Two files in the state directory:
///
/// - `state.json`, a snapshot (`Snapshot`), replaced with write-to-temp,
///   fsync, rename, fsync-directory (`state_dir::replace_file`);
/// - `journal.jsonl`, one line of JSON per commit since (`Record`),
///   appended and fsynced. A record applies only to the snapshot of its
///   generation: a new snapshot takes the next generation and only then is
///   the journal emptied, so records a crash leaves between the two are
///   ignored. A crash mid-append leaves an unterminated last line, a commit
///   never acknowledged: `load` ignores it. Any other line that does not
///   parse is corruption, reported.
///
/// Compaction: instead of appending, `save` writes a snapshot when the
/// journal would grow past the last snapshot's size (or `JOURNAL_FLOOR`,
/// whichever is larger). Replaying the journal costs about what reading
/// the snapshot does, so a start reads at most about twice the state; and
/// a byte appended pays for at most one byte of snapshot later, so a commit
/// costs O(its change) amortized. The floor keeps a small state from being
/// rewritten every few commits.
///
/// `load` only reads; the first commit after it writes a snapshot, which
/// also discards whatever the journal held (a torn line, stale records).
/// So start-up stays bounded without writing (a full disk does not keep
/// the daemon from starting), and this process only ever appends to a
/// journal it emptied itself. That is also how a failed append or
/// snapshot recovers: the next commit writes a snapshot.
pub struct FileStore {
    dir: PathBuf,
    /// The generation of the snapshot on disk, or above it after a failed
    /// snapshot: a new one always takes the next number.
    generation: u64,
    /// The size of the last snapshot, the compaction bound.
    snapshot_len: u64,
    /// The journal, when the next commit may be appended to it.
    journal: Option<Journal>,
}

struct Journal {
    file: File,
    /// Bytes appended since it was emptied: whole records, nothing else.
    len: u64,
}

const SNAPSHOT_FILE: &str = "state.json";
const JOURNAL_FILE: &str = "journal.jsonl";
const JOURNAL_FLOOR: u64 = 1 << 20;

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// The file's contents, `None` when it does not exist.
fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_error("read", path)(source)),
    }
}

impl FileStore {
    pub fn new(dir: &Path) -> Result<FileStore, StoreError> {
        create_private_dir(dir).map_err(io_error("create state directory", dir))?;
        Ok(FileStore {
            dir: dir.into(),
            generation: 0,
            snapshot_len: 0,
            journal: None,
        })
    }

    /// Replaces the snapshot with `state` and empties the journal.
    fn write_snapshot(&mut self, state: &State) -> Result<(), StoreError> {
        self.generation += 1;
        let path = self.dir.join(SNAPSHOT_FILE);
        let journal_path = self.dir.join(JOURNAL_FILE);
        // Created before the snapshot is replaced, so that the directory
        // fsync that makes the new snapshot durable covers both names.
        let journal = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            .open(&journal_path)
            .map_err(io_error("open", &journal_path))?;
        // Compact, not pretty: indentation makes it a third larger (about
        // 1 MB at 1,000 containers). `jq . state.json` shows it readably.
        let bytes = serde_json::to_vec(&Snapshot {
            generation: self.generation,
            state,
        })
        .expect("state serializes");
        replace_file(&self.dir, SNAPSHOT_FILE, &bytes).map_err(io_error("replace", &path))?;
        self.snapshot_len = bytes.len() as u64;
        journal
            .set_len(0)
            .and_then(|()| journal.sync_all())
            .map_err(io_error("empty", &journal_path))?;
        self.journal = Some(Journal {
            file: journal,
            len: 0,
        });
        Ok(())
    }
}

impl Store for FileStore {
    fn load(&mut self) -> Result<State, StoreError> {
        let path = self.dir.join(SNAPSHOT_FILE);
        let (mut state, generation, snapshot_len) = match read_if_exists(&path)? {
            Some(bytes) => {
                let s: Snapshot<State> = serde_json::from_slice(&bytes)
                    .map_err(|source| StoreError::Corrupt { path, source })?;
                (s.state, s.generation, bytes.len() as u64)
            }
            None => (State::default(), 0, 0),
        };
        let path = self.dir.join(JOURNAL_FILE);
        let journal = read_if_exists(&path)?.unwrap_or_default();
        for (i, line) in journal.split_inclusive(|&b| b == b'\n').enumerate() {
            if !line.ends_with(b"\n") {
                warn!(
                    path = %path.display(),
                    "ignoring the unterminated last line of the journal, a commit \
                     that a crash interrupted"
                );
                break;
            }
            let record: Record =
                serde_json::from_slice(line).map_err(|source| StoreError::CorruptJournal {
                    path: path.clone(),
                    line: i + 1,
                    source,
                })?;
            if record.generation == generation {
                record.change.apply(&mut state);
            }
        }
        self.generation = generation;
        self.snapshot_len = snapshot_len;
        self.journal = None;
        Ok(state)
    }

    fn save(&mut self, before: &State, after: &State) -> Result<(), StoreError> {
        let change = Change::between(before, after);
        if change.is_empty() {
            return Ok(());
        }
        let bound = self.snapshot_len.max(JOURNAL_FLOOR);
        // Taken: it is put back only once the record is durable.
        match self.journal.take() {
            Some(mut journal) => {
                let mut line = serde_json::to_vec(&Record {
                    generation: self.generation,
                    change,
                })
                .expect("state serializes");
                line.push(b'\n');
                if journal.len + line.len() as u64 > bound {
                    return self.write_snapshot(after);
                }
                let path = self.dir.join(JOURNAL_FILE);
                journal
                    .file
                    .write_all(&line)
                    .map_err(io_error("append to", &path))?;
                // fdatasync covers the new length, all a reader needs.
                journal.file.sync_data().map_err(io_error("fsync", &path))?;
                journal.len += line.len() as u64;
                self.journal = Some(journal);
                Ok(())
            }
            None => self.write_snapshot(after),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NetMode;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("netd-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn container(id: &str, created: &str) -> Container {
        Container {
            id: id.into(),
            name: format!("name-{id}"),
            created: created.into(),
            net: NetMode::Own {
                netns: format!("netd-{id}"),
            },
            network_mode: "bridge".into(),
            endpoints: vec![],
            process: None,
            ports: vec![],
            services: Vec::new(),
            removing: false,
            labels: Default::default(),
        }
    }

    fn service(id: &str) -> Service {
        Service {
            id: id.into(),
            name: format!("name-{id}"),
            created: "2026-01-01T00:00:00Z".into(),
            network_id: "n1".into(),
            vip: "10.0.0.2".parse().unwrap(),
            replicas: 0,
            cmd: vec![],
            ports: vec![],
            index: 1,
        }
    }

    /// `before` with container `id` added.
    fn with(before: &State, id: &str) -> State {
        let mut s = before.clone();
        s.containers
            .insert(id.into(), Arc::new(container(id, "2026-01-01T00:00:00Z")));
        s
    }

    /// Commits adding containers `ids` one by one, starting from `from`:
    /// every state on the way, `from` first.
    fn saved(store: &mut FileStore, from: &State, ids: &[&str]) -> Vec<State> {
        let mut states = vec![from.clone()];
        for id in ids {
            let next = with(states.last().unwrap(), id);
            store.save(states.last().unwrap(), &next).unwrap();
            states.push(next);
        }
        states
    }

    fn opened(dir: &Path) -> (FileStore, State) {
        let mut store = FileStore::new(dir).unwrap();
        let state = store.load().unwrap();
        (store, state)
    }

    fn journal_lines(dir: &Path) -> usize {
        fs::read_to_string(dir.join(JOURNAL_FILE))
            .unwrap()
            .lines()
            .count()
    }

    fn snapshot_generation(dir: &Path) -> u64 {
        let bytes = fs::read(dir.join(SNAPSHOT_FILE)).unwrap();
        serde_json::from_slice::<Snapshot<State>>(&bytes)
            .unwrap()
            .generation
    }

    #[test]
    fn a_change_between_large_states_is_exactly_what_differs() {
        // Thousands of entries, so that the maps' own difference skips
        // shared nodes; checked against a walk over both maps.
        let mut before = State::default();
        for i in 0..5000 {
            before = with(&before, &format!("c{i:05}"));
        }
        let mut after = with(&before, "c99999");
        after.containers.remove("c02500");
        let mut changed = container("c04000", "2026-02-02T00:00:00Z");
        changed.name = "renamed".into();
        after.containers.insert("c04000".into(), Arc::new(changed));
        // Replaced by an equal copy: no change.
        after.containers.insert(
            "c00007".into(),
            Arc::new(container("c00007", "2026-01-01T00:00:00Z")),
        );
        let change = Change::between(&before, &after);
        let put: Vec<&str> = change.containers.put.keys().map(String::as_str).collect();
        assert_eq!(put, ["c04000", "c99999"]);
        assert_eq!(change.containers.delete, ["c02500"]);
        let mut replayed = before.clone();
        change.apply(&mut replayed);
        assert_eq!(replayed, after);
    }

    #[test]
    fn commits_round_trip_through_a_reload() {
        let dir = tempdir("rt");
        let (mut store, s0) = opened(&dir);
        assert_eq!(s0, State::default());
        let s1 = with(&s0, "c1");
        let s2 = with(&s1, "c2");
        let mut s3 = with(&s2, "c3");
        s3.services.insert("v1".into(), Arc::new(service("v1")));
        store.save(&s0, &s1).unwrap();
        store.save(&s1, &s2).unwrap();
        store.save(&s2, &s3).unwrap();
        // The first commit of a process writes a snapshot, the others append.
        assert_eq!(snapshot_generation(&dir), 1);
        assert_eq!(journal_lines(&dir), 2);
        assert!(!dir.join("state.json.tmp").exists());
        assert_eq!(opened(&dir).1, s3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_files_are_private_to_root() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir("modes");
        let (mut store, s0) = opened(&dir);
        saved(&mut store, &s0, &["c1", "c2"]);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(SNAPSHOT_FILE)), 0o600);
        assert_eq!(mode(&dir.join(JOURNAL_FILE)), 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn deletes_of_keys_are_replayed() {
        let dir = tempdir("del");
        let (mut store, s0) = opened(&dir);
        let mut s1 = with(&with(&s0, "c1"), "c2");
        s1.services.insert("v1".into(), Arc::new(service("v1")));
        s1.services.insert("v2".into(), Arc::new(service("v2")));
        store.save(&s0, &s1).unwrap();
        let mut s2 = s1.clone();
        s2.containers.remove("c1");
        s2.services.remove("v2");
        Arc::make_mut(s2.containers.get_mut("c2").unwrap()).network_mode = "host".into();
        assert_eq!(
            Change::between(&s1, &s2),
            Change {
                networks: Diff::default(),
                containers: Diff {
                    put: BTreeMap::from([("c2".into(), s2.containers["c2"].clone())]),
                    delete: vec!["c1".into()],
                },
                services: Diff {
                    put: BTreeMap::new(),
                    delete: vec!["v2".into()],
                },
                peers: Diff::default(),
                hosts: Diff::default(),
            }
        );
        store.save(&s1, &s2).unwrap();
        assert_eq!(journal_lines(&dir), 1);
        assert_eq!(opened(&dir).1, s2);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_commit_that_changes_nothing_writes_nothing() {
        let dir = tempdir("noop");
        let (mut store, s0) = opened(&dir);
        store.save(&s0, &s0).unwrap();
        assert!(!dir.join(SNAPSHOT_FILE).exists());
        let s2 = saved(&mut store, &s0, &["c1", "c2"]).pop().unwrap();
        let files = |dir: &Path| {
            [SNAPSHOT_FILE, JOURNAL_FILE].map(|f| {
                let m = fs::metadata(dir.join(f)).unwrap();
                (m.len(), m.modified().unwrap())
            })
        };
        let before = files(&dir);
        store.save(&s2, &s2.clone()).unwrap();
        assert_eq!(files(&dir), before);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_large_journal_is_compacted_into_a_snapshot() {
        let dir = tempdir("compact");
        let (mut store, s0) = opened(&dir);
        let blob = "x".repeat(JOURNAL_FLOOR as usize / 3);
        let mut states = vec![s0];
        for i in 0..5 {
            let mut next = states.last().unwrap().clone();
            next.containers.insert(
                format!("c{i}"),
                Arc::new(container(&format!("c{i}"), &blob)),
            );
            store.save(states.last().unwrap(), &next).unwrap();
            states.push(next);
        }
        // A snapshot (c0), two records (c1, c2: the journal stays under the
        // floor), a snapshot (c3, the third record would pass it), a record
        // (c4: smaller than that snapshot).
        assert_eq!(snapshot_generation(&dir), 2);
        assert_eq!(journal_lines(&dir), 1);
        assert_eq!(opened(&dir).1, states[5]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_ignored_then_discarded() {
        let dir = tempdir("torn");
        let (mut store, s0) = opened(&dir);
        let states = saved(&mut store, &s0, &["c1", "c2", "c3"]);
        let s2 = &states[2];
        // A crash in the middle of appending the last record.
        let path = dir.join(JOURNAL_FILE);
        let bytes = fs::read(&path).unwrap();
        let last = bytes[..bytes.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap();
        fs::write(&path, &bytes[..last + 1 + (bytes.len() - last) / 2]).unwrap();
        let (mut store, loaded) = opened(&dir);
        assert_eq!(&loaded, s2);
        let s4 = with(s2, "c4");
        store.save(s2, &s4).unwrap();
        store.save(&s4, &s4.clone()).unwrap();
        let s5 = with(&s4, "c5");
        store.save(&s4, &s5).unwrap();
        assert_eq!(opened(&dir).1, s5);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_of_an_older_generation_are_ignored() {
        let dir = tempdir("stale");
        let (mut store, s0) = opened(&dir);
        saved(&mut store, &s0, &["c1", "c2"]);
        let stale = fs::read(dir.join(JOURNAL_FILE)).unwrap();
        let (mut store, loaded) = opened(&dir);
        let mut s3 = loaded.clone();
        s3.containers.remove("c2");
        store.save(&loaded, &s3).unwrap();
        // A crash after the new snapshot's rename, before the journal was
        // emptied: its record (put c2) must not come back.
        fs::write(dir.join(JOURNAL_FILE), &stale).unwrap();
        assert_eq!(opened(&dir).1, s3);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_reported() {
        let dir = tempdir("midbad");
        let (mut store, s0) = opened(&dir);
        saved(&mut store, &s0, &["c1", "c2", "c3"]);
        let path = dir.join(JOURNAL_FILE);
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        fs::write(&path, format!("{}\n{{not json\n{}\n", lines[0], lines[1])).unwrap();
        let e = FileStore::new(&dir).unwrap().load().unwrap_err();
        assert!(
            matches!(e, StoreError::CorruptJournal { line: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("move it aside"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_snapshot_without_generation_loads() {
        let dir = tempdir("old");
        let mut s = with(&State::default(), "c1");
        s.services.insert("v1".into(), Arc::new(service("v1")));
        // What the store wrote before the journal: the bare state.
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(SNAPSHOT_FILE), serde_json::to_vec(&s).unwrap()).unwrap();
        let (mut store, loaded) = opened(&dir);
        assert_eq!(loaded, s);
        let next = with(&s, "c2");
        store.save(&s, &next).unwrap();
        assert_eq!(opened(&dir).1, next);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_file_is_reported_not_discarded() {
        let dir = tempdir("bad");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(SNAPSHOT_FILE), b"{not json").unwrap();
        let e = FileStore::new(&dir).unwrap().load().unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }));
        assert!(e.to_string().contains("move it aside"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_leftover_temp_file_does_not_matter() {
        let dir = tempdir("tmp");
        let (mut store, s0) = opened(&dir);
        let s1 = with(&s0, "c1");
        store.save(&s0, &s1).unwrap();
        // A crash between write and rename leaves the temp file behind.
        fs::write(dir.join("state.json.tmp"), b"partial").unwrap();
        let (mut store, loaded) = opened(&dir);
        assert_eq!(loaded, s1);
        store.save(&s1, &s0).unwrap();
        assert_eq!(opened(&dir).1, s0);
        fs::remove_dir_all(&dir).unwrap();
    }
}
