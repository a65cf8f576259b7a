//! Streams: named sets of shards, their metadata on disk, and routing records to shards.
//!
//! On disk: `<data_dir>/streams/<stream-id>/stream.json` (metadata, written atomically:
//! temp file, fsync, rename, fsync of the directory) and one shard log per shard in
//! `<data_dir>/streams/<stream-id>/shardId-<12 digits>/`. The stream id is chosen by the
//! server (16 hex digits); the user's stream name lives only in the metadata, so no name
//! (`.` and `..` are valid Kinesis names) ever becomes a path component.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use crate::error::IoError;
use crate::hash_key::{HashKey, HashKeyRange};
use crate::options::ShardLogOptions;
use crate::routing::RoutingTable;
use crate::segment::sync_dir;
use crate::settings::StreamSettings;
use crate::shard_log::ShardLog;
use crate::throttle::{ShardThrottle, ThrottleRates};
use crate::OpenError;

/// Default retention, hours: 24. Source: AWS Kinesis Data Streams quotas.
pub const RETENTION_HOURS_DEFAULT: u32 = 24;

/// The shard id Kinesis shows for shard `index`: `shardId-` and 12 digits.
pub fn shard_id(index: u32) -> String {
    // Built by hand: `format!` with padding was 3 % of the server's CPU under 100-byte
    // PutRecords, which name the shard of every record (issue 17).
    const DIGITS: usize = 12;
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(index);
    let mut id = String::with_capacity(8 + DIGITS);
    id.push_str("shardId-");
    id.extend(std::iter::repeat_n('0', DIGITS.saturating_sub(digits.len())));
    id.push_str(digits);
    id
}

/// The shard index a shard id names: the number after its last hyphen, as AWS reads it
/// (`shardId-000000000002`, `shard-2` and `anything-2` all name shard 2). `None` when that
/// part is not a number of at most 12 digits (shard ids have 12).
pub fn parse_shard_id(id: &str) -> Option<u32> {
    let digits = id.rsplit('-').next()?;
    (!digits.is_empty() && digits.len() <= 12 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// One shard as its stream's metadata records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// Index in the stream; the shard id is `shardId-<index, 12 digits>`.
    pub index: u32,
    /// The hash keys the shard owns while open.
    pub hash_key_range: HashKeyRange,
    /// Index of the parent shard, after a split or merge.
    pub parent: Option<u32>,
    /// Index of the second parent, after a merge.
    pub adjacent_parent: Option<u32>,
    /// Whether the shard is closed (split or merged away): it keeps its records and is read
    /// to its end, but takes no more.
    pub closed: bool,
    /// When a split or merge created the shard, ms since the epoch; `None` for the stream's
    /// first shards (created with it: [`StreamMeta::created_ms`]) and in metadata written
    /// before shards kept their times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<u64>,
    /// When a split or merge closed the shard, ms since the epoch; `None` while it is open
    /// and in metadata written before shards kept their times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_ms: Option<u64>,
    /// For a closed shard of a cluster's stream: the sequence number past its last record,
    /// as its leader fixed it when the shard was closed (this copy's log may still be
    /// catching up to it). `None`: the shard ends where its log does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
}

impl ShardMeta {
    /// Whether a reader at `position` (the next sequence number) has read the shard to its
    /// end: it is closed, and `position` is at its fixed end or, without one, at
    /// `readable_end` (its log's).
    pub fn read_to_end(&self, position: u64, readable_end: u64) -> bool {
        self.closed && position >= self.end.unwrap_or(readable_end)
    }

    /// The `n` shards of a new stream: indexes 0 to n − 1 over [`HashKeyRange::split_evenly`],
    /// open, with no parents. `n` ≥ 1.
    pub fn split_evenly(n: u32) -> Vec<Self> {
        HashKeyRange::split_evenly(n)
            .into_iter()
            .enumerate()
            .map(|(i, hash_key_range)| Self {
                index: i as u32,
                hash_key_range,
                parent: None,
                adjacent_parent: None,
                closed: false,
                created_ms: None,
                closed_ms: None,
                end: None,
            })
            .collect()
    }
}

impl StreamMeta {
    /// What resharding step `op` does to the shards as they stand: the shards it closes
    /// and the ones it opens (indexed after the last shard), at `now_ms`.
    ///
    /// Errors: no such shard, a closed shard, a split point not strictly inside the range,
    /// shards that are not adjacent.
    pub fn reshard_step(&self, op: &ReshardOp, now_ms: u64) -> Result<(Vec<u32>, Vec<ShardMeta>), ReshardError> {
        let open = |index: u32| {
            let s = self.shards.get(index as usize).ok_or(ReshardError::NoSuchShard(index))?;
            if s.closed {
                return Err(ReshardError::Closed(index));
            }
            Ok(s.hash_key_range)
        };
        let next = self.shards.len() as u32;
        let child = |index: u32, hash_key_range, parent, adjacent_parent| ShardMeta {
            index,
            hash_key_range,
            parent: Some(parent),
            adjacent_parent,
            closed: false,
            created_ms: Some(now_ms),
            closed_ms: None,
            end: None,
        };
        match *op {
            ReshardOp::Split { shard, ref new_starting_hash_key } => {
                let range = open(shard)?;
                let key: HashKey = new_starting_hash_key.parse().map_err(|_| ReshardError::SplitPointOutside)?;
                if key <= range.starting || key > range.ending {
                    return Err(ReshardError::SplitPointOutside);
                }
                let low = HashKeyRange { starting: range.starting, ending: key - 1 };
                let high = HashKeyRange { starting: key, ending: range.ending };
                Ok((vec![shard], vec![child(next, low, shard, None), child(next + 1, high, shard, None)]))
            }
            ReshardOp::Merge { shard, adjacent } => {
                let (a, b) = (open(shard)?, open(adjacent)?);
                let touching =
                    a.ending.checked_add(1) == Some(b.starting) || b.ending.checked_add(1) == Some(a.starting);
                if !touching || shard == adjacent {
                    return Err(ReshardError::NotAdjacent(shard, adjacent));
                }
                let range = HashKeyRange { starting: a.starting.min(b.starting), ending: a.ending.max(b.ending) };
                Ok((vec![shard, adjacent], vec![child(next, range, shard, Some(adjacent))]))
            }
        }
    }

    /// The shards after `ops`, applied in turn at `now_ms`, without changing anything: how a
    /// resharding is checked before a cluster's catalog takes it.
    pub fn after(&self, ops: &[ReshardOp], now_ms: u64) -> Result<Vec<ShardMeta>, ReshardError> {
        let mut meta = self.clone();
        for op in ops {
            let (parents, children) = meta.reshard_step(op, now_ms)?;
            for p in parents {
                meta.shards[p as usize].closed = true;
                meta.shards[p as usize].closed_ms = Some(now_ms);
            }
            meta.shards.extend(children);
        }
        Ok(meta.shards)
    }

    /// The steps of `UpdateShardCount` with `UNIFORM_SCALING` to `target` open shards: a
    /// split at every new boundary inside an open shard, then merges of the pieces within
    /// each new range, so every shard's lineage is exact (intermediate shards are closed at
    /// once, as on AWS). The indexes are those the steps get applied in order.
    pub fn uniform_scaling(&self, target: u32) -> Vec<ReshardOp> {
        let mut open: Vec<(u32, HashKeyRange)> =
            self.shards.iter().filter(|s| !s.closed).map(|s| (s.index, s.hash_key_range)).collect();
        open.sort_by_key(|(_, r)| r.starting);
        let targets = HashKeyRange::split_evenly(target);
        let mut next = self.shards.len() as u32;
        let (mut ops, mut pieces) = (Vec::new(), Vec::new());
        for (mut index, mut range) in open {
            for t in targets.iter().skip(1) {
                if t.starting > range.starting && t.starting <= range.ending {
                    ops.push(ReshardOp::split(index, t.starting));
                    pieces.push((next, HashKeyRange { starting: range.starting, ending: t.starting - 1 }));
                    index = next + 1;
                    next += 2;
                    range.starting = t.starting;
                }
            }
            pieces.push((index, range));
        }
        for t in &targets {
            let mut within =
                pieces.iter().filter(|(_, r)| r.starting >= t.starting && r.ending <= t.ending).map(|(i, _)| *i);
            let Some(mut acc) = within.next() else { continue };
            for adjacent in within {
                ops.push(ReshardOp::Merge { shard: acc, adjacent });
                acc = next;
                next += 1;
            }
        }
        ops
    }

    /// Metadata of a stream with these shards, of which the open ones cover the hash key space.
    pub fn new(
        name: String,
        created_ms: u64,
        retention_hours: u32,
        shards: Vec<ShardMeta>,
        tags: BTreeMap<String, String>,
    ) -> Self {
        let routes = RoutingTable::new(&shards);
        Self {
            name,
            created_ms,
            retention_hours,
            shards,
            tags,
            settings: StreamSettings::default(),
            cluster: None,
            routes,
        }
    }

    /// The open shard whose hash key range holds `key`.
    pub fn route(&self, key: HashKey) -> u32 {
        self.routes.route(key)
    }

    /// Checks what a `stream.json` read from disk must satisfy before it is used: shard
    /// `i` has index `i`, parents name earlier shards, and the open shards cover the hash
    /// key space exactly once (else routing would have a gap).
    pub fn validate(&self) -> Result<(), String> {
        for (i, s) in self.shards.iter().enumerate() {
            if s.index as usize != i {
                return Err(format!("shard {i} has index {}", s.index));
            }
            if [s.parent, s.adjacent_parent].iter().flatten().any(|&p| p >= s.index) {
                return Err(format!("shard {i} names a parent that is not older"));
            }
            if s.hash_key_range.starting > s.hash_key_range.ending {
                return Err(format!("shard {i} has an empty hash key range"));
            }
        }
        let mut open: Vec<&HashKeyRange> =
            self.shards.iter().filter(|s| !s.closed).map(|s| &s.hash_key_range).collect();
        open.sort_by_key(|r| r.starting);
        let mut next: Option<HashKey> = Some(0);
        for r in open {
            if Some(r.starting) != next {
                return Err("the open shards do not cover the hash key space exactly once".into());
            }
            next = r.ending.checked_add(1);
        }
        if next.is_some() {
            return Err("the open shards do not cover the hash key space".into());
        }
        Ok(())
    }
    /// Shards that take records (not closed by a split or merge).
    pub fn open_shards(&self) -> u32 {
        self.shards.iter().filter(|s| !s.closed).count() as u32
    }
}

/// A stream's metadata, as kept in `stream.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// Stream name.
    pub name: String,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Retention period, hours.
    pub retention_hours: u32,
    /// Every shard the stream ever had, by index.
    pub shards: Vec<ShardMeta>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Mode, limits, encryption, consumers and the rest (defaults when the file predates them).
    #[serde(default)]
    pub settings: StreamSettings,
    /// The cluster whose catalog holds the stream, when it was made from (or entered into)
    /// one; `None` for a stream of this node alone. A stream of a cluster that is no longer
    /// in its catalog was deleted there; a node's own stream is never touched by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Which open shard owns a hash key; derived from `shards`.
    #[serde(skip)]
    routes: RoutingTable,
}

/// Where a stream stands, as `StreamStatus` shows it. Source: AWS Kinesis API reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// Just created; takes no records yet.
    Creating,
    /// Resharding; reads and writes go on, other changes wait.
    Updating,
    /// Being deleted; takes nothing.
    Deleting,
    /// Ready for everything.
    Active,
}

impl StreamStatus {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Updating => "UPDATING",
            Self::Deleting => "DELETING",
            Self::Active => "ACTIVE",
        }
    }
}

/// One shard: its log, wrapped in its provisioned-throughput throttle.
#[derive(Debug)]
pub struct Shard {
    /// The shard's records.
    pub log: Arc<ShardLog>,
    throttle: Option<Mutex<ShardThrottle>>,
    /// What readers took and what was refused, counted by the API for metrics.
    pub stats: ShardStats,
}

/// Counters of a shard's reads and refusals since it was opened (appends are counted by
/// its log, [`ShardLog::appended_totals`]).
#[derive(Debug, Default)]
pub struct ShardStats {
    /// Bytes (data plus partition keys) returned to readers.
    pub outgoing_bytes: std::sync::atomic::AtomicU64,
    /// Records returned to readers.
    pub outgoing_records: std::sync::atomic::AtomicU64,
    /// Records refused for the shard's write throughput.
    pub write_throttled: std::sync::atomic::AtomicU64,
    /// Reads refused for the shard's read throughput.
    pub read_throttled: std::sync::atomic::AtomicU64,
    /// Age of the last record returned when it was read, ms.
    pub iterator_age_ms: std::sync::atomic::AtomicU64,
}

impl Shard {
    /// The shard's token buckets, or `None` when throttling is off.
    pub fn throttle(&self) -> Option<MutexGuard<'_, ShardThrottle>> {
        self.throttle.as_ref().map(|t| t.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A stream: its metadata and its shards.
#[derive(Debug)]
pub struct Stream {
    dir: PathBuf,
    meta: RwLock<StreamMeta>,
    shards: RwLock<Vec<Arc<Shard>>>,
    log_options: ShardLogOptions,
    throttle: Option<ThrottleRates>,
    /// A passing status and the time (ms) it ends; ACTIVE otherwise. Not persisted: a
    /// restart finds every stream ACTIVE.
    transition: Mutex<Option<(StreamStatus, u64)>>,
}

/// One resharding step, as a cluster's catalog records it: every node's copy applies the
/// same steps in the same order, so its new shards get the same indexes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum ReshardOp {
    /// `SplitShard` of `shard` at `new_starting_hash_key` (decimal, as on the wire: a
    /// 128-bit number is no JSON number every reader takes).
    Split {
        /// The shard split.
        shard: u32,
        /// The first hash key of the upper child.
        new_starting_hash_key: String,
    },
    /// `MergeShards` of `shard` with `adjacent`.
    Merge {
        /// The shard merged.
        shard: u32,
        /// The one it is merged with.
        adjacent: u32,
    },
}

impl ReshardOp {
    /// A split of `shard` at `key`.
    pub fn split(shard: u32, key: HashKey) -> Self {
        ReshardOp::Split { shard, new_starting_hash_key: key.to_string() }
    }
}

/// Why a split or merge was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReshardError {
    /// The stream has no such shard.
    #[error("shard {0} does not exist")]
    NoSuchShard(u32),
    /// The shard is closed already.
    #[error("shard {0} is closed")]
    Closed(u32),
    /// The split point is not strictly inside the shard's hash key range.
    #[error("the new starting hash key is not inside the shard's range")]
    SplitPointOutside,
    /// The shards to merge do not touch.
    #[error("shards {0} and {1} are not adjacent")]
    NotAdjacent(u32, u32),
    /// Creating the new shards failed.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Writing the metadata failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Writes `bytes` to `path` atomically: a temp file beside it (a name of its own per call,
/// so concurrent writers never share one), fsync, rename, fsync of the directory. Readers
/// see the old or the new contents, never a mix or an empty file, also after a crash. A
/// failed write removes its temp file and leaves `path` as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file_name = path.file_name().map_or_else(Default::default, |f| f.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}-{n}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(IoError::new(path, e));
    }
    sync_dir(path.parent().expect("metadata lives in a directory"))
}

/// Removes the temp files that [`write_atomically`] calls cut short by a crash left in `dir`
/// (`.<name>.tmp-<pid>-<n>`), so a crash-looping server does not fill the folder. Best
/// effort: a failure is logged.
pub fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            if let Err(err) = fs::remove_file(e.path()) {
                tracing::warn!(file = %e.path().display(), error = %err, "cannot remove a stale temp file");
            }
        }
    }
}

/// A fresh random 64-bit value from the OS's randomness (std's `RandomState` seeds), for
/// ids and secrets that must differ between streams, incarnations and processes.
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish()
}

/// Most threads opening streams, or one stream's shards, at once: opening mostly waits for
/// the disk (the header, index file and last frames of each segment), and a cold start of 64
/// shards took 2.1 s one by one (issue 17).
pub(crate) const OPEN_THREADS: usize = 8;

impl Stream {
    /// Creates a stream with `shard_count` shards splitting the hash key space evenly, and
    /// these settings and tags.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        dir: &Path,
        name: &str,
        shard_count: u32,
        created_ms: u64,
        log_options: &ShardLogOptions,
        throttle: Option<ThrottleRates>,
        settings: StreamSettings,
        tags: BTreeMap<String, String>,
    ) -> Result<Self, OpenError> {
        fs::create_dir_all(dir).map_err(|e| IoError::new(dir, e))?;
        let shards = ShardMeta::split_evenly(shard_count);
        let mut meta = StreamMeta::new(name.to_owned(), created_ms, RETENTION_HOURS_DEFAULT, shards, tags);
        meta.settings = settings;
        let stream = Self::with_meta(dir, meta, log_options, throttle)?;
        stream.persist()?;
        sync_dir(dir.parent().expect("streams live in a directory"))?;
        Ok(stream)
    }

    /// Opens a stream from its directory; `throttle` gives the rates of a stream by name.
    ///
    /// Errors: unreadable or invalid `stream.json` (naming the file), or a shard log that
    /// does not open (naming the segment file and offset).
    pub fn open(
        dir: &Path,
        log_options: &ShardLogOptions,
        throttle: impl FnOnce(&str) -> Option<ThrottleRates>,
    ) -> Result<Self, OpenError> {
        let path = dir.join("stream.json");
        remove_stale_temp_files(dir);
        let bytes = fs::read(&path).map_err(|e| IoError::new(&path, e))?;
        let mut meta: StreamMeta = serde_json::from_slice(&bytes)
            .map_err(|e| OpenError::InvalidOptions(format!("{}: {e}", path.display())))?;
        meta.validate().map_err(|e| OpenError::InvalidOptions(format!("{}: {e}", path.display())))?;
        meta.routes = RoutingTable::new(&meta.shards);
        let rates = throttle(&meta.name);
        Self::with_meta(dir, meta, log_options, rates)
    }

    fn with_meta(
        dir: &Path,
        meta: StreamMeta,
        log_options: &ShardLogOptions,
        throttle: Option<ThrottleRates>,
    ) -> Result<Self, OpenError> {
        let indexes: Vec<u32> = meta.shards.iter().map(|s| s.index).collect();
        let shards = crate::parallel::in_parallel(&indexes, OPEN_THREADS, "sluice-open", |&index| {
            Self::open_shard(dir, index, log_options, throttle)
        })
        .into_iter()
        .collect::<Result<Vec<Arc<Shard>>, _>>()?;
        if meta.cluster.is_some() {
            shards.iter().for_each(|s| s.log.track_high_watermark());
        }
        Ok(Self {
            dir: dir.to_owned(),
            meta: RwLock::new(meta),
            shards: RwLock::new(shards),
            log_options: log_options.clone(),
            throttle,
            transition: Mutex::new(None),
        })
    }

    fn open_shard(
        dir: &Path,
        index: u32,
        log_options: &ShardLogOptions,
        throttle: Option<ThrottleRates>,
    ) -> Result<Arc<Shard>, OpenError> {
        let log = Arc::new(ShardLog::open(dir.join(shard_id(index)), log_options.clone())?);
        let now = log_options.clock.now_ms();
        let throttle = throttle.map(|rates| Mutex::new(ShardThrottle::new(rates, now)));
        Ok(Arc::new(Shard { log, throttle, stats: ShardStats::default() }))
    }

    /// Adds shards for `children` (closing `parents` first) and makes it durable. Appends
    /// hold the metadata lock while they route and write, so none lands in a closed shard.
    fn reshard(
        &self,
        meta: &mut StreamMeta,
        parents: &[u32],
        children: Vec<ShardMeta>,
        now_ms: u64,
    ) -> Result<Vec<u32>, ReshardError> {
        let mut opened = Vec::new();
        for c in &children {
            let shard = Self::open_shard(&self.dir, c.index, &self.log_options, self.throttle)?;
            // A copy of a replicated stream serves what a quorum holds, new shards too.
            if meta.cluster.is_some() {
                shard.log.track_high_watermark();
            }
            opened.push(shard);
        }
        // The new metadata is written first and applied after: a failed write leaves the
        // stream as it was (the children's empty logs are reopened by a later reshard).
        let mut next = meta.clone();
        for &p in parents {
            next.shards[p as usize].closed = true;
            next.shards[p as usize].closed_ms = Some(now_ms);
        }
        let indexes = children.iter().map(|c| c.index).collect();
        next.shards.extend(children);
        next.routes = RoutingTable::new(&next.shards);
        let bytes = serde_json::to_vec_pretty(&next).expect("metadata serializes");
        write_atomically(&self.dir.join("stream.json"), &bytes)?;
        *meta = next;
        self.shards.write().unwrap_or_else(PoisonError::into_inner).extend(opened);
        Ok(indexes)
    }

    /// Splits open shard `index` at `new_starting_hash_key` into two children: one with the
    /// keys below it, one with the rest. The parent is closed (at `now_ms`, ms since the
    /// epoch, when the children are created) and keeps its records.
    ///
    /// Errors: no such shard, a closed shard, or a split point not strictly inside the range
    /// (it must be above the shard's starting hash key and at most its ending one).
    pub fn split(&self, index: u32, new_starting_hash_key: HashKey, now_ms: u64) -> Result<(u32, u32), ReshardError> {
        let made = self.apply(&ReshardOp::split(index, new_starting_hash_key), now_ms)?;
        Ok((made[0], made[1]))
    }

    /// Merges two open shards with adjacent hash key ranges into one child; both parents
    /// are closed (at `now_ms`, ms since the epoch) and keep their records.
    pub fn merge(&self, index: u32, adjacent: u32, now_ms: u64) -> Result<u32, ReshardError> {
        Ok(self.apply(&ReshardOp::Merge { shard: index, adjacent }, now_ms)?[0])
    }

    /// Applies one resharding step (closing its parents, opening its children at `now_ms`)
    /// and makes it durable: the new shards' indexes.
    pub fn apply(&self, op: &ReshardOp, now_ms: u64) -> Result<Vec<u32>, ReshardError> {
        let mut meta = self.meta_mut();
        let (parents, children) = meta.reshard_step(op, now_ms)?;
        self.reshard(&mut meta, &parents, children, now_ms)
    }

    /// Fixes the end of closed shards (index → sequence number past its last record), as
    /// a cluster's catalog gives them, and makes it durable.
    pub fn set_ends(&self, ends: &BTreeMap<u32, u64>) -> Result<(), IoError> {
        self.update_meta(|m| {
            for (&i, &end) in ends {
                if let Some(s) = m.shards.get_mut(i as usize) {
                    s.end = Some(end);
                }
            }
            Ok(())
        })
    }

    /// The shards created from shard `index` by a split or merge.
    pub fn children(&self, index: u32) -> Vec<ShardMeta> {
        self.meta()
            .shards
            .iter()
            .filter(|s| s.parent == Some(index) || s.adjacent_parent == Some(index))
            .cloned()
            .collect()
    }

    /// Writes the metadata to `stream.json`, atomically.
    pub fn persist(&self) -> Result<(), IoError> {
        let bytes = serde_json::to_vec_pretty(&*self.meta()).expect("metadata serializes");
        write_atomically(&self.dir.join("stream.json"), &bytes)
    }

    /// The metadata, read-locked.
    pub fn meta(&self) -> RwLockReadGuard<'_, StreamMeta> {
        self.meta.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The metadata, write-locked; call [`Stream::persist`] after changing it. Prefer
    /// [`Stream::update_meta`], which writes before it applies.
    pub fn meta_mut(&self) -> RwLockWriteGuard<'_, StreamMeta> {
        self.meta.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts the stream in `status` until `until_ms` (ms since the Unix epoch).
    pub fn begin(&self, status: StreamStatus, until_ms: u64) {
        *self.transition.lock().unwrap_or_else(PoisonError::into_inner) = Some((status, until_ms));
    }

    /// The stream's status at `now_ms`.
    pub fn status(&self, now_ms: u64) -> StreamStatus {
        match *self.transition.lock().unwrap_or_else(PoisonError::into_inner) {
            Some((status, until)) if now_ms < until => status,
            _ => StreamStatus::Active,
        }
    }

    /// Shard `index`, if the stream has it.
    pub fn shard(&self, index: u32) -> Option<Arc<Shard>> {
        self.shards.read().unwrap_or_else(PoisonError::into_inner).get(index as usize).cloned()
    }

    /// The log of shard `index`, if the stream has that shard.
    pub fn log(&self, index: u32) -> Option<Arc<ShardLog>> {
        self.shard(index).map(|s| s.log.clone())
    }

    /// The logs of every shard, closed ones included, in shard order.
    pub fn logs(&self) -> Vec<Arc<ShardLog>> {
        self.shards.read().unwrap_or_else(PoisonError::into_inner).iter().map(|s| s.log.clone()).collect()
    }

    /// The open shard whose hash key range holds `key`. Open shards cover the whole space,
    /// so there always is one.
    pub fn route(&self, key: HashKey) -> u32 {
        Self::route_in(&self.meta(), key)
    }

    /// As [`Stream::route`], under a metadata lock the caller already holds.
    pub fn route_in(meta: &StreamMeta, key: HashKey) -> u32 {
        meta.route(key)
    }

    /// The stream's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the stream's requests are throttled (its shards' quotas, and the API's
    /// per-stream limits such as dry runs); `false` when throttling is off.
    pub fn is_throttled(&self) -> bool {
        self.throttle.is_some()
    }

    /// Which incarnation of its name this stream is: a number taken from its directory (its
    /// server-chosen id), so a stream deleted and created again under the same name is
    /// another incarnation, and tokens issued for the old one (shard iterators) are refused.
    pub fn incarnation(&self) -> u64 {
        let id = self.dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        u64::from_str_radix(&id, 16).unwrap_or_else(|_| {
            // Directories of older versions were named after the stream: hash the name.
            id.bytes().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
        })
    }

    /// Changes the metadata durably: `change` edits a copy, the copy is written to
    /// `stream.json`, and only then does it replace the metadata in memory, so a failed
    /// write changes nothing and what readers see is always what is on disk. Holds the
    /// metadata write lock meanwhile, so concurrent changes apply one after the other.
    pub fn update_meta<R, E: From<IoError>>(
        &self,
        change: impl FnOnce(&mut StreamMeta) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut meta = self.meta_mut();
        let mut next = meta.clone();
        let out = change(&mut next)?;
        next.routes = RoutingTable::new(&next.shards);
        let bytes = serde_json::to_vec_pretty(&next).expect("metadata serializes");
        write_atomically(&self.dir.join("stream.json"), &bytes)?;
        *meta = next;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_ranges(shards: &[ShardMeta]) -> Vec<HashKeyRange> {
        let mut v: Vec<HashKeyRange> = shards.iter().filter(|s| !s.closed).map(|s| s.hash_key_range).collect();
        v.sort_by_key(|r| r.starting);
        v
    }

    #[test]
    fn uniform_scaling_reaches_the_even_split_of_any_count_from_any_count_with_exact_lineage() {
        for from in 1..=12u32 {
            for target in (from.div_ceil(2)).max(1)..=from * 2 {
                let meta = StreamMeta::new("s".into(), 0, 24, ShardMeta::split_evenly(from), BTreeMap::new());
                let ops = meta.uniform_scaling(target);
                let after = meta.after(&ops, 7).unwrap_or_else(|e| panic!("{from} -> {target}: {e}"));
                assert_eq!(open_ranges(&after), HashKeyRange::split_evenly(target), "{from} -> {target}");
                for s in &after[from as usize..] {
                    // Every new shard's parents are older than it and closed, its range
                    // theirs.
                    for p in [s.parent, s.adjacent_parent].into_iter().flatten() {
                        assert!(p < s.index && after[p as usize].closed, "{from} -> {target}: {s:?}");
                    }
                    assert_eq!(s.created_ms, Some(7));
                }
            }
        }
    }

    #[test]
    fn steps_that_do_not_fit_the_shards_are_refused_without_changing_them() {
        let meta = StreamMeta::new("s".into(), 0, 24, ShardMeta::split_evenly(2), BTreeMap::new());
        let half = (1u128 << 127).to_string();
        let bad = [
            (ReshardOp::Split { shard: 2, new_starting_hash_key: "5".into() }, "no such shard"),
            (ReshardOp::Split { shard: 0, new_starting_hash_key: half.clone() }, "outside"),
            (ReshardOp::Split { shard: 0, new_starting_hash_key: "0".into() }, "outside"),
            (ReshardOp::Split { shard: 0, new_starting_hash_key: "x".into() }, "outside"),
            (ReshardOp::Merge { shard: 0, adjacent: 0 }, "not adjacent"),
        ];
        for (op, why) in bad {
            assert!(meta.after(std::slice::from_ref(&op), 0).is_err(), "{op:?}: {why}");
        }
        // A closed shard takes no second step.
        let twice = [ReshardOp::split(0, 5), ReshardOp::split(0, 6)];
        assert!(matches!(meta.after(&twice, 0), Err(ReshardError::Closed(0))));
        assert_eq!(meta.shards.len(), 2);
    }
}
