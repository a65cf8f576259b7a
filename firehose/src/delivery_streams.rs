//! The set of delivery streams on one server: definitions under
//! `<data_dir>/firehose/delivery-streams/<id>/` (`delivery.json`, `checkpoints.json`; the id
//! is chosen by the server, the name lives in `delivery.json`: a user's name is never a path
//! component), the internal streams behind `DirectPut` delivery streams under
//! `<data_dir>/firehose/streams/`, and one running worker per delivery stream.
//!
//! - A delete renames the directory to `.deleted-<id>` first (atomic), then removes it; the
//!   next open finishes a delete that a crash cut short.
//! - A definition that cannot be read is quarantined (logged, kept on disk, not served);
//!   the other delivery streams start.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use sluice_engine::error::IoError;
use sluice_engine::stream::{write_atomically, Stream};
use sluice_engine::streams::{CreateStreamError, Streams, Throttling};
use sluice_engine::{AppendError, OpenError, Record, ShardLogOptions};

use crate::checkpoint::{Checkpoints, ShardCheckpoint};
use crate::plan::RecordTransform;
use crate::spec::DeliveryStreamSpec;
use crate::worker::{self, Command, WorkerContext, WorkerHandle};

/// Partition key of records in a `DirectPut` delivery stream's internal stream (Firehose
/// records have none; the shard log wants one).
pub const DIRECT_PUT_PARTITION_KEY: &str = "0";

/// Finds the WASM transform a `Lambda` processor names (implemented by the transform host).
pub trait TransformResolver: Send + Sync + std::fmt::Debug {
    /// The transform for `spec`'s `Lambda` processor, if it has one; an error says why it
    /// cannot be loaded.
    fn resolve(&self, spec: &DeliveryStreamSpec) -> Result<Option<Arc<dyn RecordTransform>>, String>;
}

/// One delivery stream: its definition, its internal stream (`DirectPut`) and its worker.
#[derive(Debug)]
pub struct DeliveryStreamEntry {
    dir: PathBuf,
    name: String,
    spec: RwLock<DeliveryStreamSpec>,
    /// The internal stream behind a `DirectPut` delivery stream.
    pub internal: Option<Arc<Stream>>,
    transform: RwLock<Option<Arc<dyn RecordTransform>>>,
    worker: Mutex<Option<WorkerHandle>>,
}

impl DeliveryStreamEntry {
    /// The delivery stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its directory (`<data_dir>/firehose/delivery-streams/<id>/`), for files that live
    /// and die with it, such as the redrive ledger.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A copy of the definition.
    pub fn spec(&self) -> DeliveryStreamSpec {
        self.spec.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The loaded transform of the `Lambda` processor.
    pub fn transform(&self) -> Option<Arc<dyn RecordTransform>> {
        self.transform.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Changes the definition and writes it, atomically.
    pub fn update(&self, change: impl FnOnce(&mut DeliveryStreamSpec)) -> Result<(), IoError> {
        let mut spec = self.spec.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = spec.clone();
        change(&mut next);
        write_spec(&self.dir, &next)?;
        *spec = next;
        Ok(())
    }

    /// Appends `records` to the internal stream of a `DirectPut` delivery stream, all or
    /// nothing. Returns the sequence number of the first.
    pub fn put(&self, records: &[&[u8]]) -> Result<sluice_engine::sequence_number::SequenceNumber, AppendError> {
        let stream = self.internal.as_ref().expect("put is only called on DirectPut delivery streams");
        let log = stream.log(0).expect("an internal stream has shard 0");
        let batch: Vec<Record<'_>> =
            records.iter().map(|data| Record { partition_key: DIRECT_PUT_PARTITION_KEY, data }).collect();
        let appended = log.append(&batch)?;
        Ok(sluice_engine::sequence_number::SequenceNumber {
            shard_index: 0,
            shard_sequence: appended.sequence_numbers().start,
        })
    }
}

fn write_spec(dir: &Path, spec: &DeliveryStreamSpec) -> Result<(), IoError> {
    let bytes = serde_json::to_vec_pretty(spec).expect("a definition serializes");
    write_atomically(&dir.join("delivery.json"), &bytes)
}

/// Why a delivery stream could not be created. Exhaustive: the wire layer maps each case
/// to an AWS error.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// One of that name exists.
    #[error("delivery stream {0} already exists")]
    Exists(String),
    /// The source Kinesis stream does not exist.
    #[error("source stream {0} not found")]
    NoSource(String),
    /// The transform could not be loaded.
    #[error("{0}")]
    Transform(String),
    /// Files could not be written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The internal stream could not be created.
    #[error(transparent)]
    Stream(#[from] CreateStreamError),
}

/// Every delivery stream of a server.
#[derive(Debug)]
pub struct DeliveryStreams {
    dir: PathBuf,
    internal: Streams,
    ctx: WorkerContext,
    runtime: tokio::runtime::Handle,
    resolver: Option<Arc<dyn TransformResolver>>,
    entries: RwLock<BTreeMap<String, Arc<DeliveryStreamEntry>>>,
    quarantined: Mutex<Vec<PathBuf>>,
}

/// Prefix of a delivery stream directory being deleted.
const DELETED_PREFIX: &str = ".deleted-";

impl DeliveryStreams {
    /// Opens every delivery stream under `<data_dir>/firehose/` and starts its worker on
    /// `runtime`.
    pub fn open(
        data_dir: &Path,
        log_options: ShardLogOptions,
        ctx: WorkerContext,
        runtime: tokio::runtime::Handle,
        resolver: Option<Arc<dyn TransformResolver>>,
    ) -> Result<Self, OpenError> {
        let root = data_dir.join("firehose");
        let dir = root.join("delivery-streams");
        fs::create_dir_all(&dir).map_err(|e| IoError::new(&dir, e))?;
        let internal = Streams::open(&root, log_options, Throttling { off: true, ..Throttling::default() }, u32::MAX)?;
        let this = Self {
            dir: dir.clone(),
            internal,
            ctx,
            runtime,
            resolver,
            entries: RwLock::new(BTreeMap::new()),
            quarantined: Mutex::new(Vec::new()),
        };
        for e in fs::read_dir(&dir).map_err(|e| IoError::new(&dir, e))? {
            let e = e.map_err(|e| IoError::new(&dir, e))?;
            let file_name = e.file_name().to_string_lossy().into_owned();
            if file_name.starts_with(DELETED_PREFIX) {
                if let Err(err) = fs::remove_dir_all(e.path()) {
                    tracing::warn!(dir = %e.path().display(), error = %err, "could not remove a deleted delivery stream");
                }
                continue;
            }
            let path = e.path().join("delivery.json");
            if file_name.starts_with('.') || !path.exists() {
                continue;
            }
            sluice_engine::stream::remove_stale_temp_files(&e.path());
            let loaded = fs::read(&path)
                .map_err(|err| err.to_string())
                .and_then(|bytes| serde_json::from_slice::<DeliveryStreamSpec>(&bytes).map_err(|err| err.to_string()))
                .and_then(|spec| {
                    let cps = Checkpoints::load(&e.path().join("checkpoints.json")).map_err(|err| err.to_string())?;
                    Ok((spec, cps))
                });
            let (spec, checkpoints) = match loaded {
                Ok(l) => l,
                Err(err) => {
                    tracing::error!(dir = %e.path().display(), error = %err, "delivery stream cannot be opened: quarantined, the others start");
                    this.quarantined.lock().unwrap_or_else(PoisonError::into_inner).push(e.path());
                    continue;
                }
            };
            if this.get(&spec.name).is_some() {
                tracing::error!(dir = %e.path().display(), name = %spec.name, "a second directory for a delivery stream: quarantined");
                this.quarantined.lock().unwrap_or_else(PoisonError::into_inner).push(e.path());
                continue;
            }
            let internal = match spec.source_stream() {
                None => this.internal.get(&spec.name),
                Some(_) => None,
            };
            let transform = match &this.resolver {
                Some(r) => r.resolve(&spec).unwrap_or_else(|err| {
                    tracing::error!(delivery_stream = %spec.name, error = %err, "transform cannot be loaded; records will fail processing");
                    None
                }),
                None => None,
            };
            this.start(e.path(), spec, internal, transform, checkpoints);
        }
        Ok(this)
    }

    fn start(
        &self,
        dir: PathBuf,
        spec: DeliveryStreamSpec,
        internal: Option<Arc<Stream>>,
        transform: Option<Arc<dyn RecordTransform>>,
        checkpoints: Checkpoints,
    ) -> Arc<DeliveryStreamEntry> {
        let name = spec.name.clone();
        let entry = Arc::new(DeliveryStreamEntry {
            dir,
            name: name.clone(),
            spec: RwLock::new(spec),
            internal,
            transform: RwLock::new(transform),
            worker: Mutex::new(None),
        });
        let handle = worker::start(entry.clone(), checkpoints, self.ctx.clone(), &self.runtime);
        *entry.worker.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        self.entries.write().unwrap_or_else(PoisonError::into_inner).insert(name, entry.clone());
        entry
    }

    /// `<data_dir>/firehose/`, where the delivery streams' files are.
    pub fn root(&self) -> &Path {
        self.dir.parent().expect("delivery-streams/ is under firehose/")
    }

    /// The transform `spec`'s `Lambda` processor names, loaded.
    pub fn resolve_transform(&self, spec: &DeliveryStreamSpec) -> Result<Option<Arc<dyn RecordTransform>>, String> {
        match &self.resolver {
            Some(r) => r.resolve(spec),
            None => Ok(None),
        }
    }

    /// Creates a delivery stream (checked already) and starts its worker. A Kinesis source
    /// is read from LATEST: every open shard from its next sequence number.
    pub fn create(
        &self,
        spec: DeliveryStreamSpec,
        transform: Option<Arc<dyn RecordTransform>>,
    ) -> Result<Arc<DeliveryStreamEntry>, CreateError> {
        if self.get(&spec.name).is_some() {
            return Err(CreateError::Exists(spec.name));
        }
        self.create_at(spec, transform, None)
    }

    /// Where a delivery stream created now starts reading Kinesis stream `stream_name`:
    /// each shard's index and the sequence number past its last readable record (LATEST).
    /// `None` when the stream does not exist.
    pub fn latest_positions(&self, stream_name: &str) -> Option<BTreeMap<u32, u64>> {
        let stream = self.ctx.kinesis.get(stream_name)?;
        let meta = stream.meta().clone();
        Some(meta.shards.iter().map(|s| (s.index, stream.log(s.index).map_or(0, |l| l.readable_end()))).collect())
    }

    /// Creates a delivery stream (checked already) whose Kinesis source is read from
    /// `start` (shard index → first sequence number to deliver; a shard not named: from
    /// its first record that arrived at or after the delivery stream's creation), and
    /// starts its worker: how each node makes its copy of a cluster's
    /// delivery stream, at the positions the node that created it chose.
    pub fn create_from(
        &self,
        spec: DeliveryStreamSpec,
        transform: Option<Arc<dyn RecordTransform>>,
        start: &BTreeMap<u32, u64>,
    ) -> Result<Arc<DeliveryStreamEntry>, CreateError> {
        if self.get(&spec.name).is_some() {
            return Err(CreateError::Exists(spec.name));
        }
        self.create_at(spec, transform, Some(start))
    }

    fn create_at(
        &self,
        spec: DeliveryStreamSpec,
        transform: Option<Arc<dyn RecordTransform>>,
        start: Option<&BTreeMap<u32, u64>>,
    ) -> Result<Arc<DeliveryStreamEntry>, CreateError> {
        let dir = self.new_dir()?;
        match self.create_in(&dir, spec, transform, start) {
            Ok(entry) => Ok(entry),
            Err(e) => {
                // Nothing of a delivery stream that failed to be made stays behind.
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    /// Makes the directory of a new delivery stream, named by a fresh random id.
    fn new_dir(&self) -> Result<PathBuf, IoError> {
        loop {
            let dir = self.dir.join(format!("{:016x}", sluice_engine::stream::random_u64()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(IoError::new(&dir, e)),
            }
        }
    }

    fn create_in(
        &self,
        dir: &Path,
        spec: DeliveryStreamSpec,
        transform: Option<Arc<dyn RecordTransform>>,
        start: Option<&BTreeMap<u32, u64>>,
    ) -> Result<Arc<DeliveryStreamEntry>, CreateError> {
        let dir = dir.to_owned();
        let mut checkpoints = Checkpoints::load(&dir.join("checkpoints.json"))?;
        checkpoints.shards.clear();
        let internal = match spec.source_stream() {
            None => {
                // A leftover internal stream of a deleted namesake goes first.
                self.internal.delete(&spec.name)?;
                Some(self.internal.create(&spec.name, 1, spec.created_ms)?)
            }
            Some(stream_name) => {
                let stream =
                    self.ctx.kinesis.get(&stream_name).ok_or_else(|| CreateError::NoSource(stream_name.clone()))?;
                let meta = stream.meta().clone();
                checkpoints.source_incarnation = Some(stream.incarnation());
                for s in &meta.shards {
                    let next = match (start.and_then(|m| m.get(&s.index)), stream.log(s.index)) {
                        (Some(next), _) => *next,
                        (None, None) => 0,
                        (None, Some(l)) if start.is_none() => l.readable_end(),
                        // A shard the creating node held no copy of: from the first record
                        // that arrived once the delivery stream existed.
                        (None, Some(l)) => l
                            .position(sluice_engine::StartingPosition::AtTimestamp(spec.created_ms))
                            .unwrap_or_else(|_| l.readable_end()),
                    };
                    checkpoints
                        .shards
                        .insert(s.index, ShardCheckpoint { next, pending_last: None, done: s.closed, attempts: 0 });
                }
                None
            }
        };
        checkpoints.save()?;
        write_spec(&dir, &spec)?;
        Ok(self.start(dir, spec, internal, transform, checkpoints))
    }

    /// The delivery stream called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<DeliveryStreamEntry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Every delivery stream, by name.
    pub fn list(&self) -> Vec<Arc<DeliveryStreamEntry>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Sets the transform of `entry` (after its configuration changed).
    pub fn set_transform(&self, entry: &DeliveryStreamEntry, transform: Option<Arc<dyn RecordTransform>>) {
        *entry.transform.write().unwrap_or_else(PoisonError::into_inner) = transform;
    }

    /// Deletes a delivery stream: its worker stops without delivering what it buffered (as
    /// on AWS), and its definition, checkpoints and internal stream are removed. False when
    /// there was none of that name.
    pub async fn delete(&self, name: &str) -> Result<bool, IoError> {
        let Some(entry) = self.entries.write().unwrap_or_else(PoisonError::into_inner).remove(name) else {
            return Ok(false);
        };
        let handle = entry.worker.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(h) = handle {
            h.stop(Command::Discard).await;
        }
        self.ctx.metrics.forget(name);
        // The rename is the delete (atomic, durable once the parent is synced); the internal
        // stream and the files go after it, and a crash in between is finished at next open.
        let id = entry.dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let trash = self.dir.join(format!("{DELETED_PREFIX}{id}"));
        fs::rename(&entry.dir, &trash).map_err(|e| IoError::new(&entry.dir, e))?;
        sluice_engine::segment::sync_dir(&self.dir)?;
        if entry.internal.is_some() {
            self.internal.delete(name)?;
        }
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(dir = %trash.display(), error = %e, "removing a deleted delivery stream's files failed; retried at next start");
        }
        Ok(true)
    }

    /// Stops every worker after it delivered what it buffered (server shutdown).
    pub async fn shutdown(&self) {
        let handles: Vec<WorkerHandle> =
            self.list().iter().filter_map(|e| e.worker.lock().unwrap_or_else(PoisonError::into_inner).take()).collect();
        for h in handles {
            h.stop(Command::Flush).await;
        }
    }

    /// Applies retention (24 h, as Firehose keeps undelivered data) to the internal streams
    /// of `DirectPut` delivery streams. Returns how many records went.
    pub fn trim_expired(&self) -> u64 {
        self.internal.trim_expired()
    }

    /// Unmaps the segment pages of the internal streams that readers faulted in; see
    /// [`sluice_engine::Streams::release_pages`].
    pub fn release_pages(&self) {
        self.internal.release_pages();
    }

    /// Delivery stream directories that could not be opened at start (kept on disk, not served).
    pub fn quarantined(&self) -> Vec<PathBuf> {
        self.quarantined.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Kinesis-side stream directories of `DirectPut` delivery streams that could not be opened.
    pub fn quarantined_internal(&self) -> &[sluice_engine::streams::Quarantined] {
        self.internal.quarantined()
    }

    /// The worker context (lake, metrics, clock).
    pub fn context(&self) -> &WorkerContext {
        &self.ctx
    }
}
