//! The set of streams on one server: create, find, list, delete; reopened at start.
//!
//! - Each stream lives in `streams/<stream-id>/`, the id chosen here (16 hex digits), never
//!   derived from the stream's name: a name is user input and never a path component.
//! - A delete first renames the directory to `.deleted-<stream-id>` (atomic), then removes it;
//!   a crash in between leaves a directory that the next open removes, never half a stream.
//! - A stream that cannot be opened (corrupt metadata or segment) is quarantined: the error,
//!   naming the file and offset, is logged and kept in [`Streams::quarantined`]; the other
//!   streams are served.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::IoError;
use crate::options::ShardLogOptions;
use crate::segment::sync_dir;
use crate::settings::StreamSettings;
use crate::stream::Stream;
use crate::throttle::ThrottleRates;
use crate::OpenError;

/// Why a stream could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateStreamError {
    /// A stream of that name exists.
    #[error("stream {0} already exists")]
    Exists(String),
    /// Creating it would pass the shard limit.
    #[error("shard limit of {limit} exceeded: {open} shards open, {requested} requested")]
    ShardLimit {
        /// The configured limit of open shards across streams.
        limit: u32,
        /// Open shards now.
        open: u32,
        /// Shards asked for.
        requested: u32,
    },
    /// Creating files failed.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Whether shards are throttled, and at which rates.
#[derive(Debug, Clone, Default)]
pub struct Throttling {
    /// Throttling is off: no quotas at all (benchmarks).
    pub off: bool,
    /// Rates of every stream without its own (default: Kinesis' quotas).
    pub rates: ThrottleRates,
    /// Rates of named streams.
    pub per_stream: BTreeMap<String, ThrottleRates>,
}

impl Throttling {
    /// The rates of stream `name`, or `None` when throttling is off.
    pub fn rates_for(&self, name: &str) -> Option<ThrottleRates> {
        (!self.off).then(|| self.per_stream.get(name).copied().unwrap_or(self.rates))
    }
}

/// All streams under `<data_dir>/streams/`.
#[derive(Debug)]
pub struct Streams {
    dir: PathBuf,
    log_options: ShardLogOptions,
    throttling: Throttling,
    shard_limit: u32,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    quarantined: Vec<Quarantined>,
}

/// A stream directory that could not be opened at start, and why. Its files are left as
/// they were, for an operator to inspect; the stream is not served.
#[derive(Debug, Clone)]
pub struct Quarantined {
    /// The stream's directory.
    pub dir: PathBuf,
    /// Why it could not be opened (names the file and, for a corrupt segment, the offset).
    pub error: String,
}

/// Prefix of a stream directory being deleted.
const DELETED_PREFIX: &str = ".deleted-";

impl Streams {
    /// Opens every stream under `<data_dir>/streams/`, creating the folder if needed.
    /// `shard_limit` caps open shards across all streams (Kinesis' account quota is 500).
    pub fn open(
        data_dir: &Path,
        log_options: ShardLogOptions,
        throttling: Throttling,
        shard_limit: u32,
    ) -> Result<Self, OpenError> {
        let dir = data_dir.join("streams");
        fs::create_dir_all(&dir).map_err(|e| IoError::new(&dir, e))?;
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| IoError::new(&dir, e))? {
            let entry = entry.map_err(|e| IoError::new(&dir, e))?;
            let path = entry.path();
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with(DELETED_PREFIX) {
                // A delete that a crash interrupted: finish it.
                if let Err(e) = fs::remove_dir_all(&path) {
                    tracing::warn!(dir = %path.display(), error = %e, "could not remove a deleted stream's directory");
                }
                continue;
            }
            if file_name.starts_with('.') || !path.join("stream.json").exists() {
                continue;
            }
            found.push(path);
        }
        // Streams open in parallel, like a stream's shards: a cold start of 1,000 streams of
        // 2 shards took 2.0 s one stream after another.
        let opened = crate::parallel::in_parallel(&found, crate::stream::OPEN_THREADS, "sluice-open", |path| {
            Stream::open(path, &log_options, |name| throttling.rates_for(name))
        });
        let mut streams: BTreeMap<String, Arc<Stream>> = BTreeMap::new();
        let mut quarantined = Vec::new();
        for (path, opened) in found.into_iter().zip(opened) {
            match opened {
                Ok(stream) => {
                    let name = stream.meta().name.clone();
                    if streams.contains_key(&name) {
                        let error = format!("a second directory for stream {name}");
                        tracing::error!(dir = %path.display(), %error, "stream quarantined");
                        quarantined.push(Quarantined { dir: path, error });
                        continue;
                    }
                    streams.insert(name, Arc::new(stream));
                }
                Err(e) => quarantine(&mut quarantined, path, &e),
            }
        }
        Ok(Self { dir, log_options, throttling, shard_limit, streams: RwLock::new(streams), quarantined })
    }

    /// The options every shard log of these streams opens with.
    pub fn log_options(&self) -> &ShardLogOptions {
        &self.log_options
    }

    /// The folder holding every stream's directory (`<data_dir>/streams`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stream directories that could not be opened at start.
    pub fn quarantined(&self) -> &[Quarantined] {
        &self.quarantined
    }

    /// The stream called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Stream>> {
        self.streams.read().unwrap_or_else(PoisonError::into_inner).get(name).cloned()
    }

    /// Every stream, by name.
    pub fn list(&self) -> Vec<Arc<Stream>> {
        self.streams.read().unwrap_or_else(PoisonError::into_inner).values().cloned().collect()
    }

    /// Open shards across all streams.
    pub fn open_shards(&self) -> u32 {
        self.list().iter().map(|s| s.meta().open_shards()).sum()
    }

    /// Creates a stream of `shard_count` shards.
    pub fn create(&self, name: &str, shard_count: u32, now_ms: u64) -> Result<Arc<Stream>, CreateStreamError> {
        self.create_with(name, shard_count, now_ms, StreamSettings::default(), BTreeMap::new())
    }

    /// As [`Streams::create`], with the stream's settings and tags given.
    pub fn create_with(
        &self,
        name: &str,
        shard_count: u32,
        now_ms: u64,
        settings: StreamSettings,
        tags: BTreeMap<String, String>,
    ) -> Result<Arc<Stream>, CreateStreamError> {
        self.create_in(name, None, shard_count, now_ms, settings, tags, None)
    }

    /// As [`Streams::create_with`], for a stream of a cluster's catalog: the stream gets the
    /// catalog's `incarnation` (so [`Stream::incarnation`] is the same on every node, and so
    /// are the tokens it signs) and its creation time, and is marked as the `cluster`'s;
    /// its shard logs serve only records below their high watermark
    /// ([`crate::ShardLog::track_high_watermark`]), as they do when reopened.
    ///
    /// Errors: as [`Streams::create_with`]; [`CreateStreamError::Exists`] also when a
    /// stream of this incarnation is still on disk.
    #[allow(clippy::too_many_arguments)]
    pub fn create_incarnation(
        &self,
        name: &str,
        incarnation: u64,
        shard_count: u32,
        created_ms: u64,
        settings: StreamSettings,
        tags: BTreeMap<String, String>,
        cluster: &str,
    ) -> Result<Arc<Stream>, CreateStreamError> {
        self.create_in(name, Some(incarnation), shard_count, created_ms, settings, tags, Some(cluster))
    }

    #[allow(clippy::too_many_arguments)]
    fn create_in(
        &self,
        name: &str,
        incarnation: Option<u64>,
        shard_count: u32,
        now_ms: u64,
        settings: StreamSettings,
        tags: BTreeMap<String, String>,
        cluster: Option<&str>,
    ) -> Result<Arc<Stream>, CreateStreamError> {
        let mut streams = self.streams.write().unwrap_or_else(PoisonError::into_inner);
        if streams.contains_key(name) {
            return Err(CreateStreamError::Exists(name.to_owned()));
        }
        let open: u32 = streams.values().map(|s| s.meta().open_shards()).sum();
        // In u64: a ShardCount from the wire near u32::MAX must not wrap past the limit.
        if u64::from(open) + u64::from(shard_count) > u64::from(self.shard_limit) || shard_count == 0 {
            return Err(CreateStreamError::ShardLimit { limit: self.shard_limit, open, requested: shard_count });
        }
        let rates = self.throttling.rates_for(name);
        let dir = match incarnation {
            None => self.new_stream_dir()?,
            Some(id) => {
                let dir = self.dir.join(format!("{id:016x}"));
                match fs::create_dir(&dir) {
                    Ok(()) => dir,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Err(CreateStreamError::Exists(name.to_owned()))
                    }
                    Err(e) => return Err(OpenError::from(IoError::new(&dir, e)).into()),
                }
            }
        };
        let made = Stream::create(&dir, name, shard_count, now_ms, &self.log_options, rates, settings, tags).and_then(
            |stream| match cluster {
                None => Ok(stream),
                Some(c) => {
                    // A copy of a replicated stream serves what a quorum holds.
                    (0..shard_count).filter_map(|i| stream.log(i)).for_each(|log| log.track_high_watermark());
                    stream.meta_mut().cluster = Some(c.to_owned());
                    stream.persist().map(|()| stream).map_err(OpenError::from)
                }
            },
        );
        match made {
            Ok(stream) => {
                let stream = Arc::new(stream);
                streams.insert(name.to_owned(), stream.clone());
                Ok(stream)
            }
            Err(e) => {
                // Nothing of a stream that failed to be made stays behind.
                let _ = fs::remove_dir_all(&dir);
                Err(e.into())
            }
        }
    }

    /// Makes the directory of a new stream, named by a fresh random id.
    fn new_stream_dir(&self) -> Result<PathBuf, OpenError> {
        loop {
            let dir = self.dir.join(format!("{:016x}", crate::stream::random_u64()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(IoError::new(&dir, e).into()),
            }
        }
    }

    /// Deletes a stream and its data; false if there was none of that name.
    pub fn delete(&self, name: &str) -> Result<bool, IoError> {
        let Some(stream) = self.streams.write().unwrap_or_else(PoisonError::into_inner).remove(name) else {
            return Ok(false);
        };
        let dir = stream.dir().to_owned();
        drop(stream);
        let id = dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let trash = self.dir.join(format!("{DELETED_PREFIX}{id}"));
        // The rename is the delete: atomic, and durable once the parent is synced. Removing
        // the files after it can fail or be cut short by a crash; the next open finishes it.
        fs::rename(&dir, &trash).map_err(|e| IoError::new(&dir, e))?;
        sync_dir(&self.dir)?;
        if let Err(e) = fs::remove_dir_all(&trash) {
            tracing::warn!(dir = %trash.display(), error = %e, "removing a deleted stream's files failed; retried at next start");
        }
        Ok(true)
    }

    /// Deletes, in every shard of every stream, the sealed segments whose records are all
    /// older than the stream's retention period. Returns how many records went; a failure on
    /// one shard is logged and the others are still trimmed.
    pub fn trim_expired(&self) -> u64 {
        let mut records = 0;
        for stream in self.list() {
            let (name, hours, shards) = {
                let m = stream.meta();
                (m.name.clone(), m.retention_hours, m.shards.iter().map(|s| s.index).collect::<Vec<_>>())
            };
            let retention = std::time::Duration::from_secs(u64::from(hours) * 3600);
            for index in shards {
                let Some(log) = stream.log(index) else { continue };
                match log.trim(retention) {
                    Ok(r) => records += r.records_deleted,
                    Err(e) => tracing::error!(stream = %name, shard = index, error = %e, "retention trim failed"),
                }
            }
        }
        records
    }

    /// Unmaps the segment pages readers faulted in, in every shard of every stream, so the
    /// server's resident memory follows what is being read rather than what is stored (see
    /// [`crate::ShardLog::release_pages`]). A failure is logged; the other shards go on.
    pub fn release_pages(&self) {
        for stream in self.list() {
            for log in stream.logs() {
                if let Err(e) = log.release_pages() {
                    tracing::warn!(error = %e, "releasing mapped segment pages failed");
                }
            }
        }
    }

    /// The configured shard limit.
    pub fn shard_limit(&self) -> u32 {
        self.shard_limit
    }
}

fn quarantine(list: &mut Vec<Quarantined>, dir: PathBuf, e: &OpenError) {
    tracing::error!(dir = %dir.display(), error = %e, "stream cannot be opened: quarantined, the other streams are served");
    list.push(Quarantined { dir, error: e.to_string() });
}
