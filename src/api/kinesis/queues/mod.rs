//! Kinesis queues: SQS-style consumption of streams. A queue reads its streams from a
//! starting position and hands records to competing consumers, each record in flight for a
//! visibility timeout until acknowledged, visible again when not, and moved to the built-in
//! dead-letter area after `MaxReceiveCount` receives.
//!
//! Each queue lives in `<data_dir>/queues/<id>/` (a server-chosen id, never its name):
//! `queue.json` (name, streams, attributes, tags) and `state.json` (the delivery state of
//! [`sluice_engine::queue::QueueState`]: cursors and unresolved records only). The state is
//! written after every change, before the answer: renamed into place (a crash of the process
//! leaves the old or the new state), and synced when the server's `fsync` is `always`.
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
use sluice_engine::queue::QueueState;

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

/// A queue: its description and its delivery state, each behind its own lock.
#[derive(Debug)]
pub struct Queue {
    dir: PathBuf,
    sync: bool,
    /// Description.
    pub meta: RwLock<QueueMeta>,
    /// Delivery state.
    pub state: Mutex<QueueState>,
}

impl Queue {
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

    /// Writes the delivery state `state` (the caller holds its lock).
    pub fn persist_state(&self, state: &QueueState) -> std::io::Result<()> {
        self.write("state.json", &serde_json::to_vec(state)?)
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
                let state: QueueState = match fs::read(path.join("state.json")) {
                    Ok(b) => serde_json::from_slice(&b).map_err(|e| e.to_string())?,
                    Err(_) => QueueState::default(),
                };
                Ok(Queue { dir: path.clone(), sync, meta: RwLock::new(meta), state: Mutex::new(state) })
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
        let q = Arc::new(Queue { dir, sync: self.sync, meta: RwLock::new(meta), state: Mutex::new(state) });
        q.persist_state(&q.state.lock().unwrap_or_else(PoisonError::into_inner))?;
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
