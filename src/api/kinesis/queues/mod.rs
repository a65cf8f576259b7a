//! Kinesis queues: SQS-style consumption of streams. A queue reads its streams from a
//! starting position and hands records to competing consumers, each record in flight for a
//! visibility timeout until acknowledged, visible again when not, and moved to the built-in
//! dead-letter area after `MaxReceiveCount` receives.
//!
//! Each queue lives in `<data_dir>/queues/<id>/` (a server-chosen id, never its name):
//! `queue.json` (name, streams, attributes, tags), `state.json` (a snapshot of the delivery
//! state, [`sluice_engine::queue::QueueState`]: cursors and unresolved records only, with its
//! generation G) and `journal-G.jsonl` (the changes since, one JSON line each). Every change is
//! appended to the journal before the answer — written (a crash of the process loses none),
//! and synced when the server's `fsync` is `always` — and every [`SNAPSHOT_EVERY`] lines the
//! state is snapshotted under generation G+1 and the old journal removed. Opening reads the
//! snapshot and replays its journal up to the first torn line.
//! Receipt handles are signed with a secret in `<data_dir>/queues/.secret`, kept across
//! restarts.

mod actions;

pub use actions::*;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use sluice_engine::queue::{Change, QueueState};

/// Default visibility timeout, seconds: 30 (SQS's default).
pub const VISIBILITY_TIMEOUT_S_DEFAULT: u32 = 30;

/// A queue's description as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueMeta {
    /// Queue name.
    pub name: String,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// The streams it reads, with their starting positions, as `CreateQueue` took them.
    pub streams: Vec<QueueStream>,
    /// Visibility timeout of a receive, seconds.
    pub visibility_timeout_s: u32,
    /// `MaxReceiveCount` of the built-in dead-letter area; `None` for target type NONE.
    pub max_receives: Option<u32>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Which incarnation of its name this is (receipt handles carry it).
    pub incarnation: u64,
    /// An SQS queue's attributes as `SetQueueAttributes` took them (checked, by name);
    /// empty for a Kinesis queue.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Last change of the attributes, ms since the Unix epoch (0: at creation).
    #[serde(default)]
    pub modified_ms: u64,
}

/// One stream of a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStream {
    /// Stream name.
    pub name: String,
    /// `TRIM_HORIZON`, `LATEST` or `AT_TIMESTAMP`.
    pub starting_position: String,
    /// The timestamp of `AT_TIMESTAMP`, ms.
    pub timestamp_ms: Option<u64>,
    /// The stream's creation time, ms.
    pub stream_created_ms: u64,
}

/// Journal lines between two snapshots.
pub const SNAPSHOT_EVERY: usize = 20_000;

/// A queue: its description and its delivery state, each behind its own lock (the state's
/// lock is taken before the journal's).
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    sync: bool,
    /// Description.
    pub meta: RwLock<QueueMeta>,
    /// Delivery state.
    pub state: Mutex<QueueState>,
    journal: Mutex<Journal>,
}

/// The journal being appended to.
#[derive(Debug)]
struct Journal {
    generation: u64,
    file: Option<fs::File>,
    lines: usize,
}

/// `state.json`.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    generation: u64,
    state: QueueState,
}

impl Queue {
    fn open(dir: PathBuf, sync: bool, meta: QueueMeta) -> Result<Self, String> {
        let snapshot: Snapshot = match fs::read(dir.join("state.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("state.json: {e}"))?,
            Err(_) => Snapshot { generation: 0, state: QueueState::default() },
        };
        let mut state = snapshot.state;
        let journal = dir.join(format!("journal-{}.jsonl", snapshot.generation));
        let mut lines = 0;
        if let Ok(text) = fs::read(&journal) {
            // A crash may have torn the last line: replay up to it.
            for line in text.split(|b| *b == b'\n') {
                let Ok(change) = serde_json::from_slice::<Change>(line) else { break };
                state.apply(&change);
                lines += 1;
            }
        }
        let q = Self {
            dir,
            sync,
            meta: RwLock::new(meta),
            state: Mutex::new(state),
            journal: Mutex::new(Journal { generation: snapshot.generation, file: None, lines }),
        };
        // A fresh snapshot, so the replayed (and any torn) journal is not appended to.
        let state = q.state.lock().unwrap_or_else(PoisonError::into_inner);
        q.snapshot(&state).map_err(|e| e.to_string())?;
        drop(state);
        Ok(q)
    }

    /// Records `changes` of the state (the caller holds the state's lock): appended to the
    /// journal before the caller answers; a snapshot every [`SNAPSHOT_EVERY`] lines.
    pub fn record(&self, state: &QueueState, changes: &[Change]) -> std::io::Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        if j.file.is_none() {
            let path = self.dir.join(format!("journal-{}.jsonl", j.generation));
            j.file = Some(fs::OpenOptions::new().create(true).append(true).open(path)?);
        }
        let mut text = Vec::with_capacity(changes.len() * 96);
        for c in changes {
            serde_json::to_writer(&mut text, c)?;
            text.push(b'\n');
        }
        let file = j.file.as_mut().expect("opened above");
        file.write_all(&text)?;
        if self.sync {
            file.sync_data()?;
        }
        j.lines += changes.len();
        if j.lines >= SNAPSHOT_EVERY {
            drop(j);
            self.snapshot(state)?;
        }
        Ok(())
    }

    /// Writes `state` as the snapshot of the next generation and starts its journal.
    fn snapshot(&self, state: &QueueState) -> std::io::Result<()> {
        let mut j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        let next = j.generation + 1;
        let bytes = serde_json::to_vec(&Snapshot { generation: next, state: state.clone() })?;
        self.write("state.json", &bytes)?;
        let old = self.dir.join(format!("journal-{}.jsonl", j.generation));
        *j = Journal { generation: next, file: None, lines: 0 };
        let _ = fs::remove_file(old);
        Ok(())
    }

    fn write(&self, file: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join(file);
        if self.sync {
            return sluice_engine::stream::write_atomically(&path, bytes).map_err(std::io::Error::other);
        }
        // Renamed into place: a crash of the process leaves the old or the new file whole.
        let tmp = self.dir.join(format!(".{file}.tmp"));
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        fs::rename(&tmp, &path)
    }

    /// Writes the description.
    pub fn persist_meta(&self) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&*self.meta.read().unwrap_or_else(PoisonError::into_inner))?;
        self.write("queue.json", &bytes)
    }
}

/// Every queue, by name.
#[derive(Debug)]
pub struct Queues {
    dir: PathBuf,
    sync: bool,
    /// The secret receipt handles are signed with.
    pub secret: Vec<u8>,
    queues: RwLock<BTreeMap<String, Arc<Queue>>>,
}

impl Queues {
    /// Opens the queues under `<data_dir>/queues/`; `sync` makes every state write durable
    /// before the answer (the server's `fsync = "always"`). A queue whose files do not read
    /// is skipped with an error in the log.
    pub fn open(data_dir: &Path, sync: bool) -> std::io::Result<Self> {
        let dir = data_dir.join("queues");
        fs::create_dir_all(&dir)?;
        let secret_path = dir.join(".secret");
        let secret = match fs::read(&secret_path) {
            Ok(s) if s.len() == 32 => s,
            _ => {
                let s: Vec<u8> = (0..4).flat_map(|_| sluice_engine::stream::random_u64().to_le_bytes()).collect();
                sluice_engine::stream::write_atomically(&secret_path, &s).map_err(std::io::Error::other)?;
                s
            }
        };
        let mut queues = BTreeMap::new();
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if !path.join("queue.json").exists() {
                continue;
            }
            let read = || -> Result<Queue, String> {
                let meta: QueueMeta =
                    serde_json::from_slice(&fs::read(path.join("queue.json")).map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                Queue::open(path.clone(), sync, meta)
            };
            match read() {
                Ok(q) => {
                    let name = q.meta.read().unwrap_or_else(PoisonError::into_inner).name.clone();
                    queues.insert(name, Arc::new(q));
                }
                Err(error) => tracing::error!(dir = %path.display(), %error, "queue skipped: its files do not read"),
            }
        }
        Ok(Self { dir, sync, secret, queues: RwLock::new(queues) })
    }

    /// Queue `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Every queue, by name.
    pub fn list(&self) -> Vec<Arc<Queue>> {
        self.queues.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Creates queue `meta.name` with `state`; `false` if one of that name exists.
    pub fn create(&self, meta: QueueMeta, state: QueueState) -> std::io::Result<Option<Arc<Queue>>> {
        let mut queues = self.queues.write().unwrap_or_else(PoisonError::into_inner);
        if queues.contains_key(&meta.name) {
            return Ok(None);
        }
        let dir = self.dir.join(format!("{:016x}", meta.incarnation));
        fs::create_dir_all(&dir)?;
        let name = meta.name.clone();
        let q = Arc::new(Queue {
            dir,
            sync: self.sync,
            meta: RwLock::new(meta),
            state: Mutex::new(state),
            journal: Mutex::new(Journal { generation: 0, file: None, lines: 0 }),
        });
        q.snapshot(&q.state.lock().unwrap_or_else(PoisonError::into_inner))?;
        q.persist_meta()?;
        queues.insert(name, q.clone());
        Ok(Some(q))
    }

    /// Deletes queue `name` and its files; `false` if there was none.
    pub fn delete(&self, name: &str) -> bool {
        let Some(q) = self.queues.write().unwrap_or_else(PoisonError::into_inner).remove(name) else { return false };
        if let Err(e) = fs::remove_dir_all(&q.dir) {
            tracing::warn!(dir = %q.dir.display(), error = %e, "could not remove a deleted queue's folder");
        }
        true
    }

    /// Syncs every queue's journal (the server calls it every `fsync_interval_ms` under
    /// `fsync = "interval"`, as the shard logs are synced). Failures are logged.
    pub fn sync_journals(&self) {
        for q in self.list() {
            let j = q.journal.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(f) = &j.file {
                if let Err(e) = f.sync_data() {
                    tracing::error!(dir = %q.dir.display(), error = %e, "cannot sync a queue's journal");
                }
            }
        }
    }

    /// Queues reading stream `stream` (each counts as a registered consumer of it, as on AWS).
    pub fn count_for_stream(&self, stream: &str) -> usize {
        self.list()
            .iter()
            .filter(|q| q.meta.read().unwrap_or_else(PoisonError::into_inner).streams.iter().any(|s| s.name == stream))
            .count()
    }

    /// Deletes every queue reading stream `stream` (its stream was deleted).
    pub fn delete_for_stream(&self, stream: &str) {
        let names: Vec<String> = self
            .list()
            .iter()
            .filter_map(|q| {
                let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
                m.streams.iter().any(|s| s.name == stream).then(|| m.name.clone())
            })
            .collect();
        for n in names {
            self.delete(&n);
        }
    }
}
