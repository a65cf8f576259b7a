//! The set of delivery streams on one server: definitions under
//! `<data_dir>/firehose/delivery-streams/<name>/` (`delivery.json`, `checkpoints.json`),
//! the internal streams behind `DirectPut` delivery streams under
//! `<data_dir>/firehose/streams/`, and one running worker per delivery stream.

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
use crate::spec::{DeliveryStreamSpec, SourceSpec};
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

/// Why a delivery stream could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
}

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
        let this = Self { dir: dir.clone(), internal, ctx, runtime, resolver, entries: RwLock::new(BTreeMap::new()) };
        for e in fs::read_dir(&dir).map_err(|e| IoError::new(&dir, e))? {
            let e = e.map_err(|e| IoError::new(&dir, e))?;
            let path = e.path().join("delivery.json");
            if !path.exists() {
                continue;
            }
            let bytes = fs::read(&path).map_err(|e| IoError::new(&path, e))?;
            let spec: DeliveryStreamSpec = serde_json::from_slice(&bytes)
                .map_err(|err| OpenError::InvalidOptions(format!("{}: {err}", path.display())))?;
            let internal = match spec.source {
                SourceSpec::DirectPut => this.internal.get(&spec.name),
                SourceSpec::KinesisStream { .. } => None,
            };
            let transform = match &this.resolver {
                Some(r) => r.resolve(&spec).unwrap_or_else(|err| {
                    tracing::error!(delivery_stream = %spec.name, error = %err, "transform cannot be loaded; records will fail processing");
                    None
                }),
                None => None,
            };
            let checkpoints = Checkpoints::load(&e.path().join("checkpoints.json"))?;
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
        let dir = self.dir.join(&spec.name);
        fs::create_dir_all(&dir).map_err(|e| IoError::new(&dir, e))?;
        let mut checkpoints = Checkpoints::load(&dir.join("checkpoints.json"))?;
        checkpoints.shards.clear();
        let internal = match &spec.source {
            SourceSpec::DirectPut => {
                // A leftover internal stream of a deleted namesake goes first.
                self.internal.delete(&spec.name)?;
                Some(self.internal.create(&spec.name, 1, spec.created_ms)?)
            }
            SourceSpec::KinesisStream { stream_name, .. } => {
                let stream =
                    self.ctx.kinesis.get(stream_name).ok_or_else(|| CreateError::NoSource(stream_name.clone()))?;
                let meta = stream.meta().clone();
                for s in &meta.shards {
                    let next = stream.log(s.index).map_or(0, |l| l.bounds().next_sequence_number);
                    checkpoints.shards.insert(s.index, ShardCheckpoint { next, pending_last: None, done: s.closed });
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
        if entry.internal.is_some() {
            self.internal.delete(name)?;
        }
        fs::remove_dir_all(&entry.dir).map_err(|e| IoError::new(&entry.dir, e))?;
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

    /// The worker context (lake, metrics, clock).
    pub fn context(&self) -> &WorkerContext {
        &self.ctx
    }
}
