//! The set of streams on one server: create, find, list, delete; reopened at start.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use crate::error::IoError;
use crate::options::ShardLogOptions;
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
}

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
        let mut streams = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(|e| IoError::new(&dir, e))? {
            let entry = entry.map_err(|e| IoError::new(&dir, e))?;
            if entry.path().join("stream.json").exists() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let stream = Stream::open(&entry.path(), &log_options, throttling.rates_for(&name))?;
                let name = stream.meta().name.clone();
                streams.insert(name, Arc::new(stream));
            }
        }
        Ok(Self { dir, log_options, throttling, shard_limit, streams: RwLock::new(streams) })
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
        let mut streams = self.streams.write().unwrap_or_else(PoisonError::into_inner);
        if streams.contains_key(name) {
            return Err(CreateStreamError::Exists(name.to_owned()));
        }
        let open: u32 = streams.values().map(|s| s.meta().open_shards()).sum();
        if open + shard_count > self.shard_limit {
            return Err(CreateStreamError::ShardLimit { limit: self.shard_limit, open, requested: shard_count });
        }
        let rates = self.throttling.rates_for(name);
        let stream =
            Arc::new(Stream::create(&self.dir.join(name), name, shard_count, now_ms, &self.log_options, rates)?);
        streams.insert(name.to_owned(), stream.clone());
        Ok(stream)
    }

    /// Deletes a stream and its data; false if there was none of that name.
    pub fn delete(&self, name: &str) -> Result<bool, IoError> {
        let Some(stream) = self.streams.write().unwrap_or_else(PoisonError::into_inner).remove(name) else {
            return Ok(false);
        };
        let dir = stream.dir().to_owned();
        drop(stream);
        fs::remove_dir_all(&dir).map_err(|e| IoError::new(&dir, e))?;
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
