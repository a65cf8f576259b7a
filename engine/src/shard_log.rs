//! The shard log: the ordered segments of one shard, with one writer and many readers.
//!
//! Design notes:
//! - Sequence numbers are dense: each record gets the previous one plus one, starting at
//!   the shard's first sequence number. They never repeat, also across restarts.
//! - Arrival timestamps never decrease along a shard (a clock that steps back is held at
//!   the last timestamp), so a seek by timestamp is a binary search.
//! - A batch is validated whole before anything is written, and the segments it needs are
//!   created before its first frame is copied: a refused or failed batch writes nothing.
//! - Readers see a batch only once the writer publishes it, all at once.
//! - Retention deletes whole sealed segments whose newest record is older than the
//!   retention period; the active segment is never deleted.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::durability::{Durability, GroupCommit, NotDurable, SyncWork};
use crate::error::{AppendError, Corruption, IoError, OpenError, SyncError, TrimError, TruncateError};
use crate::frame;
use crate::index::{IndexEntry, IndexSampler, SparseIndex};
use crate::index_file::{self, SegmentSummary};
use crate::limits::{PARTITION_KEY_CHARS_MAX, PARTITION_KEY_CHARS_MIN};
use crate::options::ShardLogOptions;
use crate::segment::{self, ActiveSegment, PreparedSegment, SealedSegment, SegmentMap, TornTail, HEADER_BYTES};

/// One record to append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Partition key, 1 to 256 Unicode characters.
    pub partition_key: &'a str,
    /// Data blob; with the key, at most the log's `max_record_bytes`.
    pub data: &'a [u8],
}

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence number of the batch's first record; the others follow one by one.
    pub first_sequence_number: u64,
    /// Number of records appended.
    pub record_count: u64,
    /// Arrival timestamp given to every record of the batch, ms since the Unix epoch.
    pub arrival_timestamp_ms: u64,
}

impl Appended {
    /// The sequence numbers of the batch's records, in batch order.
    pub fn sequence_numbers(&self) -> std::ops::Range<u64> {
        self.first_sequence_number..self.first_sequence_number + self.record_count
    }
}

/// What [`ShardLog::open`] found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Segment files opened.
    pub segments: usize,
    /// Bytes of frames read and verified: those no valid index file described (see
    /// [`crate::index_file`]). The others are verified by the reads that return them.
    pub bytes_scanned: u64,
    /// Records found.
    pub records: u64,
    /// The torn tail cut from the active segment, if there was one.
    pub torn_tail: Option<TornTail>,
}

/// What [`ShardLog::truncate`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TruncateReport {
    /// Records removed.
    pub records_removed: u64,
    /// Segment files removed whole (the one holding the cut is replaced, not counted).
    pub segments_removed: usize,
}

/// Where a shard stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Oldest retained sequence number (the trim horizon); equals `next_sequence_number`
    /// when the shard holds nothing.
    pub first_sequence_number: u64,
    /// Sequence number the next record will get.
    pub next_sequence_number: u64,
    /// Arrival timestamp of the newest record (ms), if any record was ever appended.
    pub last_arrival_timestamp_ms: Option<u64>,
    /// Segment files, the active one included.
    pub segments: usize,
}

/// What a trim deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrimReport {
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Records they held.
    pub records_deleted: u64,
}

/// A segment as readers see it.
#[derive(Debug)]
pub(crate) struct SegmentView {
    pub map: Arc<SegmentMap>,
    /// What is published of it: frames lie in `HEADER_BYTES..summary.end`.
    pub summary: SegmentSummary,
}

impl SegmentView {
    /// A segment holding no frame yet.
    fn empty(map: Arc<SegmentMap>, first_sequence_number: u64, timestamp_ms: u64) -> Self {
        Self { map, summary: SegmentSummary::empty(first_sequence_number, timestamp_ms) }
    }

    pub fn is_empty(&self) -> bool {
        self.summary.next_sequence_number == self.summary.first_sequence_number
    }
}

#[derive(Debug)]
pub(crate) struct LogState {
    /// Oldest first; never empty; the last is the active segment.
    pub segments: VecDeque<SegmentView>,
    pub last_timestamp_ms: Option<u64>,
}

impl LogState {
    pub fn next_sequence_number(&self) -> u64 {
        self.segments.back().expect("a shard log has an active segment").summary.next_sequence_number
    }

    pub fn first_sequence_number(&self) -> u64 {
        self.segments.front().expect("a shard log has an active segment").summary.first_sequence_number
    }
}

#[derive(Debug)]
struct Writer {
    active: ActiveSegment,
    sampler: IndexSampler,
    next_sequence_number: u64,
    last_timestamp_ms: u64,
    /// The next segment being prepared in the background, and its capacity.
    next_segment: Option<(usize, JoinHandle<Result<PreparedSegment, IoError>>)>,
    /// Sealed segments written since the last sync.
    unsynced: Vec<Arc<SegmentMap>>,
    /// End of the active segment's frames at the last sync.
    active_synced_to: usize,
    /// The shard directory, opened when a segment was created since the last sync: its
    /// entries must be synced. Opened by the append that creates the segment, where failing
    /// (descriptors exhausted) refuses that batch only; a sync that had to open it could
    /// only fail, and a failed sync poisons the log.
    dir_to_sync: Option<std::fs::File>,
    /// Truncations so far ([`ShardLog::truncate`]), as the group commit counts them.
    truncations: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub dir: PathBuf,
    pub options: ShardLogOptions,
    pub state: RwLock<LogState>,
    writer: Mutex<Writer>,
    commit: GroupCommit,
    /// Held by retention and truncation, which both remove segments: one at a time.
    reshape: Mutex<()>,
}

impl Inner {
    pub fn state(&self) -> RwLockReadGuard<'_, LogState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, LogState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_sync_work(&self) -> SyncWork {
        let mut w = self.writer();
        let mut segments = std::mem::take(&mut w.unsynced);
        let end = w.active.write_offset();
        if end > w.active_synced_to {
            segments.push(w.active.map().clone());
            w.active_synced_to = end;
        }
        let dir = w.dir_to_sync.take().map(|handle| (self.dir.clone(), handle));
        SyncWork { segments, dir, durable_next: w.next_sequence_number }
    }

    pub(crate) fn sync_all(&self) -> Result<(), SyncError> {
        loop {
            let (target, truncations) = {
                let w = self.writer();
                (w.next_sequence_number, w.truncations)
            };
            match self.commit.wait_durable(target, truncations, || self.take_sync_work()) {
                Ok(()) => return Ok(()),
                Err(NotDurable::Failed(e)) => return Err(SyncError(e)),
                // What the log holds now is what must be synced.
                Err(NotDurable::Truncated) => continue,
            }
        }
    }

    /// Whether records were appended since the last sync, and the log has not failed.
    pub(crate) fn needs_sync(&self) -> bool {
        self.commit.failed().is_none() && self.writer().next_sequence_number > self.commit.durable_next()
    }
}

/// The log of one shard: append-only, checksummed, mmap'd segments in one directory.
///
/// `ShardLog` is `Send + Sync`: any number of threads may append and read at once. Appends
/// are serialized by one writer lock (a copy into mapped memory); reads take a shared lock
/// only to find their start, then read the mapped pages with no lock held.
#[derive(Debug)]
pub struct ShardLog {
    pub(crate) inner: Arc<Inner>,
    recovery: RecoveryReport,
    /// The next sequence number, announced after every append is published, so readers
    /// that wait for records (enhanced fan-out) wake as soon as there are some.
    appended: tokio::sync::watch::Sender<u64>,
    /// Bytes (data plus partition keys) and records appended since the log was opened.
    appended_bytes: std::sync::atomic::AtomicU64,
    appended_records: std::sync::atomic::AtomicU64,
    /// Readers see only records below this ([`ShardLog::track_high_watermark`]);
    /// `u64::MAX`: every record.
    high_watermark: std::sync::atomic::AtomicU64,
}

/// The segment files of `dir`, by first sequence number. Removes what an earlier run left
/// half done: a segment being prepared, and index files whose segment retention deleted.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, IoError> {
    let mut found = Vec::new();
    let mut index_files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| IoError::new(dir, e))? {
        let entry = entry.map_err(|e| IoError::new(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if segment::is_prealloc_name(name) {
            fs::remove_file(entry.path()).map_err(|e| IoError::new(entry.path(), e))?;
        } else if let Some(first) = segment::parse_file_name(name) {
            found.push((first, entry.path()));
        } else if let Some(first) = index_file::parse_file_name(name) {
            index_files.push((first, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(first, _)| *first);
    for (first, path) in index_files {
        if found.binary_search_by_key(&first, |(f, _)| *f).is_err() {
            fs::remove_file(&path).map_err(|e| IoError::new(&path, e))?;
        }
    }
    Ok(found)
}

/// Starts preparing a segment of `capacity` bytes in the background. `None` when no thread
/// can be started (threads or memory exhausted): the next roll then makes the segment
/// itself, and the append that asked has lost nothing.
fn spawn_prepare(dir: &Path, capacity: usize) -> Option<JoinHandle<Result<PreparedSegment, IoError>>> {
    let dir = dir.to_owned();
    match std::thread::Builder::new()
        .name("segment-prepare".into())
        .spawn(move || PreparedSegment::create(&dir, capacity))
    {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a segment preparer thread; the next roll prepares inline");
            None
        }
    }
}

/// What the frames of `view` below sequence number `next` hold: the index entries before it,
/// and the end and last timestamp found by walking frame headers from the nearest entry.
/// `None` if the frames do not lead there (a damaged segment: its index file is not written).
fn durable_prefix(view: &SegmentView, next: u64) -> Option<SegmentSummary> {
    let entries = view.summary.index.entries();
    let kept = entries.partition_point(|e| e.sequence_number < next);
    let from = entries[..kept].last()?;
    // SAFETY: `view.end` was published under the shard lock the caller holds.
    let bytes = unsafe { view.map.published(view.summary.end) };
    let (mut offset, mut last_timestamp_ms) = (from.offset as usize, from.arrival_timestamp_ms);
    loop {
        match frame::decode_header(&bytes[offset..]).ok()? {
            frame::Decoded::Frame(h) if h.sequence_number < next => {
                last_timestamp_ms = h.arrival_timestamp_ms;
                offset += h.len;
            }
            frame::Decoded::Frame(h) if h.sequence_number == next => break,
            _ => return None,
        }
    }
    let mut index = SparseIndex::default();
    entries[..kept].iter().for_each(|e| index.push(*e));
    Some(SegmentSummary {
        first_sequence_number: view.summary.first_sequence_number,
        next_sequence_number: next,
        end: offset,
        first_timestamp_ms: view.summary.first_timestamp_ms,
        last_timestamp_ms,
        index,
    })
}

impl ShardLog {
    /// Opens the shard log in `dir`, creating the directory and an empty log if needed.
    ///
    /// Recovery: every sealed segment is read and verified, and must continue the previous
    /// one's sequence numbers; a bad frame there is an error naming the file and offset.
    /// The active (last) segment is read up to its first bad frame, and everything from that
    /// frame on is a torn tail, zeroed and reported in [`ShardLog::recovery`].
    ///
    /// Errors: [`OpenError`] for I/O, corruption, a sequence gap, or options that cannot work.
    pub fn open(dir: impl AsRef<Path>, options: ShardLogOptions) -> Result<Self, OpenError> {
        options.validate()?;
        let dir = dir.as_ref().to_owned();
        fs::create_dir_all(&dir).map_err(|e| IoError::new(&dir, e))?;
        let found = list_segments(&dir)?;
        let mut recovery = RecoveryReport { segments: found.len(), ..RecoveryReport::default() };
        let mut segments = VecDeque::with_capacity(found.len().max(1));
        let mut expected: Option<u64> = None;
        let check_gap = |expected: Option<u64>, first: u64, path: &Path| match expected {
            Some(e) if e != first => Err(OpenError::SequenceGap { path: path.to_owned(), expected: e, found: first }),
            _ => Ok(()),
        };
        let (active, sampler) = match found.split_last() {
            None => {
                let active = PreparedSegment::create(&dir, options.first_segment_bytes())?
                    .activate(&dir, options.first_sequence_number)?;
                segment::sync_dir(&dir)?;
                (active, IndexSampler::new(options.index_interval_bytes))
            }
            Some(((last_first, last_path), sealed)) => {
                for (first, path) in sealed {
                    check_gap(expected, *first, path)?;
                    let sealed = SealedSegment::open(path, *first, options.index_interval_bytes)?;
                    recovery.bytes_scanned += sealed.scanned_bytes as u64;
                    let view = SegmentView { map: sealed.map, summary: sealed.summary };
                    recovery.records += view.summary.next_sequence_number - view.summary.first_sequence_number;
                    expected = Some(view.summary.next_sequence_number);
                    segments.push_back(view);
                }
                check_gap(expected, *last_first, last_path)?;
                let (active, scan, torn) =
                    ActiveSegment::recover(last_path, *last_first, options.index_interval_bytes)?;
                if let Some(t) = &torn {
                    tracing::warn!(path = %t.path.display(), offset = t.offset, bytes = t.discarded_bytes,
                        defect = ?t.defect, "truncated a torn tail of the active segment");
                }
                recovery.torn_tail = torn;
                recovery.bytes_scanned += scan.scanned_bytes as u64;
                let sampler = scan.sampler;
                let scanned_bytes = scan.scanned_bytes;
                let view = SegmentView { map: active.map().clone(), summary: scan.summary(*last_first) };
                // Recovery synced what it kept: a checkpoint spares the next open this scan.
                if scanned_bytes >= index_file::ACTIVE_STEP_BYTES {
                    active.map().write_index(&view.summary);
                }
                recovery.records += view.summary.next_sequence_number - view.summary.first_sequence_number;
                segments.push_back(view);
                (active, sampler)
            }
        };
        if found.is_empty() {
            segments.push_back(SegmentView::empty(active.map().clone(), active.first_sequence_number(), 0));
        }
        let last_timestamp_ms = segments.iter().rev().find(|s| !s.is_empty()).map(|s| s.summary.last_timestamp_ms);
        let next_sequence_number = segments.back().expect("active segment").summary.next_sequence_number;
        let active_synced_to = active.write_offset();
        let writer = Writer {
            active,
            sampler,
            next_sequence_number,
            last_timestamp_ms: last_timestamp_ms.unwrap_or(0),
            next_segment: None,
            unsynced: Vec::new(),
            active_synced_to,
            dir_to_sync: None,
            truncations: 0,
        };
        let inner = Arc::new(Inner {
            dir,
            state: RwLock::new(LogState { segments, last_timestamp_ms }),
            writer: Mutex::new(writer),
            commit: GroupCommit::new(next_sequence_number),
            reshape: Mutex::new(()),
            options,
        });
        if let Durability::Interval(every) = inner.options.durability {
            crate::syncer::register(&inner, every).map_err(|e| IoError::new(&inner.dir, e))?;
        }
        let appended = tokio::sync::watch::Sender::new(next_sequence_number);
        Ok(Self {
            inner,
            recovery,
            appended,
            appended_bytes: Default::default(),
            appended_records: Default::default(),
            high_watermark: std::sync::atomic::AtomicU64::new(u64::MAX),
        })
    }

    /// From now on, readers ([`ShardLog::read`], [`ShardLog::position`]) see only records
    /// below the high watermark, which starts at 0 and rises with
    /// [`ShardLog::raise_high_watermark`]: what a replicated shard's copy does, where
    /// records past the last one a quorum of replicas holds may still be cut (Kafka's high
    /// watermark; docs/cluster.md). No effect when already tracking.
    pub fn track_high_watermark(&self) {
        use std::sync::atomic::Ordering::AcqRel;
        let _ = self.high_watermark.compare_exchange(u64::MAX, 0, AcqRel, std::sync::atomic::Ordering::Acquire);
    }

    /// Raises the high watermark to `next` (sequence number: readers see records below
    /// it) and wakes readers waiting for records ([`ShardLog::watch_appends`]). Never
    /// lowers it; `u64::MAX` stops tracking.
    pub fn raise_high_watermark(&self, next: u64) {
        let before = self.high_watermark.fetch_max(next, std::sync::atomic::Ordering::AcqRel);
        if before < next {
            let end = self.inner.state().next_sequence_number();
            self.appended.send_replace(end);
        }
    }

    /// The sequence number after the last record readers see: the next sequence number,
    /// or the high watermark when it is lower.
    pub fn readable_end(&self) -> u64 {
        let next = self.inner.state().next_sequence_number();
        self.high_watermark().map_or(next, |w| w.min(next))
    }

    /// Lowers a tracked high watermark to `next` if it is above (a truncation's cut: what
    /// is past it is not the records the watermark counted).
    fn lower_high_watermark(&self, next: u64) {
        use std::sync::atomic::Ordering::{AcqRel, Acquire};
        let _ = self.high_watermark.fetch_update(AcqRel, Acquire, |w| (w != u64::MAX && w > next).then_some(next));
    }

    /// The high watermark, when the log tracks one.
    pub fn high_watermark(&self) -> Option<u64> {
        let w = self.high_watermark.load(std::sync::atomic::Ordering::Acquire);
        (w != u64::MAX).then_some(w)
    }

    /// A receiver that sees the log's next sequence number change each time an append is
    /// published (readable by [`ShardLog::read`]). Waiting on it costs no polling.
    pub fn watch_appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Bytes (data plus partition keys) and records appended since the log was opened: what
    /// rates of incoming data are measured from.
    pub fn appended_totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.appended_bytes.load(Relaxed), self.appended_records.load(Relaxed))
    }

    /// What opening found and repaired.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The directory holding the segments.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &ShardLogOptions {
        &self.inner.options
    }

    /// Where the shard stands: trim horizon, next sequence number, newest arrival time.
    pub fn bounds(&self) -> Bounds {
        let state = self.inner.state();
        Bounds {
            first_sequence_number: state.first_sequence_number(),
            next_sequence_number: state.next_sequence_number(),
            last_arrival_timestamp_ms: state.last_timestamp_ms,
            segments: state.segments.len(),
        }
    }

    fn validate(&self, records: &[Record<'_>]) -> Result<(), AppendError> {
        if records.is_empty() {
            return Err(AppendError::EmptyBatch);
        }
        let limit = self.inner.options.max_record_bytes;
        for (index, r) in records.iter().enumerate() {
            // Counting characters is only needed when the byte length leaves doubt.
            let key_bytes = r.partition_key.len();
            if !(PARTITION_KEY_CHARS_MIN..=PARTITION_KEY_CHARS_MAX).contains(&key_bytes) {
                let chars = r.partition_key.chars().count();
                if !(PARTITION_KEY_CHARS_MIN..=PARTITION_KEY_CHARS_MAX).contains(&chars) {
                    return Err(AppendError::PartitionKeyLength { index, chars });
                }
            }
            let bytes = key_bytes + r.data.len();
            if bytes > limit {
                return Err(AppendError::RecordTooLarge { index, bytes, limit });
            }
        }
        Ok(())
    }

    /// Appends a batch of records and returns the sequence numbers it got.
    ///
    /// All records of a batch get consecutive sequence numbers and one arrival timestamp
    /// (the clock's now, or the previous batch's if the clock stepped back). What the
    /// return promises depends on the log's [`Durability`]:
    /// - `Always`: the records are synced to disk (`fdatasync`) before this returns;
    ///   concurrent appenders share one sync (group commit).
    /// - `Interval(d)` (default 100 ms): the records are in the page cache and readable at
    ///   once, and a background sync writes them to disk within about `d`.
    /// - `Never`: in the page cache only, until the kernel writes them back.
    ///
    /// Errors: an empty batch, a partition key outside 1 to 256 characters, or a record
    /// over `max_record_bytes` (data plus key; 1 MiB by default) refuse the whole batch, and
    /// nothing is written. [`AppendError::Io`] when a new segment cannot be created (nothing
    /// written either). [`AppendError::Poisoned`] once a write or sync has failed: the log then
    /// refuses all appends.
    pub fn append(&self, records: &[Record<'_>]) -> Result<Appended, AppendError> {
        self.append_stamped(records, Stamps::Now)
    }

    /// Appends records another log (a shard's leader) assigned: the first at
    /// `first_sequence_number`, which must be this log's next, each with its arrival time
    /// from `arrival_timestamps_ms` (ms, one per record, never decreasing, none before this
    /// log's newest). The frames written are the leader's byte for byte: same sequence
    /// numbers, times, keys, data and checksums. Durability as for [`ShardLog::append`].
    ///
    /// Errors: as [`ShardLog::append`]; [`AppendError::NotNext`] when `first_sequence_number`
    /// is not this log's next (a gap or an overlap: nothing written);
    /// [`AppendError::Timestamps`] for a time that is missing or goes back.
    pub fn append_replica(
        &self,
        first_sequence_number: u64,
        records: &[Record<'_>],
        arrival_timestamps_ms: &[u64],
    ) -> Result<Appended, AppendError> {
        if arrival_timestamps_ms.len() != records.len() || arrival_timestamps_ms.windows(2).any(|w| w[1] < w[0]) {
            return Err(AppendError::Timestamps);
        }
        self.append_stamped(records, Stamps::Given { first_sequence_number, arrival_timestamps_ms })
    }

    fn append_stamped(&self, records: &[Record<'_>], stamps: Stamps<'_>) -> Result<Appended, AppendError> {
        self.validate(records)?;
        let inner = &*self.inner;
        let mut w = inner.writer();
        if let Some(e) = inner.commit.failed() {
            return Err(AppendError::Poisoned(e));
        }
        let first = w.next_sequence_number;
        // One time for the whole batch (the clock's, never before the newest record), or the
        // leader's time of each record.
        let (now_ms, given) = match stamps {
            Stamps::Now => (inner.options.clock.now_ms().max(w.last_timestamp_ms), None),
            Stamps::Given { first_sequence_number, arrival_timestamps_ms } => {
                if first_sequence_number != first {
                    return Err(AppendError::NotNext { expected: first, found: first_sequence_number });
                }
                if arrival_timestamps_ms.first().is_some_and(|t| *t < w.last_timestamp_ms) {
                    return Err(AppendError::Timestamps);
                }
                (0, Some(arrival_timestamps_ms))
            }
        };
        let stamp = |i: usize| given.map_or(now_ms, |g| g[i]);
        // Held to the end of the batch: an active segment idle long enough had its descriptor
        // closed, and failing to open it now writes nothing and poisons nothing.
        let _file = w.active.map().open_file().map_err(|e| AppendError::Io(Arc::new(e)))?;

        // Plan where each record lands, and create every segment the batch needs before
        // writing anything, so a failure to create one leaves the log as it was.
        if let Some(r) = records.first() {
            let len = frame::frame_len(r.partition_key.len(), r.data.len());
            if w.active.write_offset() == HEADER_BYTES && len > w.active.remaining() {
                self.replace_empty_active(&mut w, len).map_err(|e| AppendError::Io(Arc::new(e)))?;
            }
        }
        let mut starts = Vec::new();
        let mut free = w.active.remaining();
        let mut capacity = w.next_segment.as_ref().map_or_else(|| w.active.map().capacity(), |(c, _)| *c);
        for (i, r) in records.iter().enumerate() {
            let len = frame::frame_len(r.partition_key.len(), r.data.len());
            if len > free {
                if !(starts.is_empty() && w.next_segment.is_some()) {
                    capacity = inner.options.grown_segment_bytes(capacity);
                }
                // A record larger than the grown size gets a segment that holds it.
                capacity = capacity.max(HEADER_BYTES + len);
                starts.push((i, capacity));
                free = capacity - HEADER_BYTES;
            }
            free -= len;
        }
        if !starts.is_empty() {
            self.open_dir_to_sync(&mut w).map_err(|e| AppendError::Io(Arc::new(e)))?;
        }
        let mut fresh = Vec::with_capacity(starts.len());
        for &(i, capacity) in &starts {
            match self.next_segment(&mut w, first + i as u64, capacity) {
                Ok(s) => fresh.push(s),
                Err(e) => {
                    for s in fresh {
                        let _ = fs::remove_file(s.map().path());
                    }
                    return Err(AppendError::Io(Arc::new(e)));
                }
            }
        }

        // Copy the frames, noting what readers must be shown.
        let mut published = vec![Publish::new(&w.active, first, stamp(0))];
        let mut fresh = fresh.into_iter();
        let mut starts = starts.into_iter().map(|(i, _)| i).peekable();
        for (i, r) in records.iter().enumerate() {
            let seq = first + i as u64;
            if starts.next_if_eq(&i).is_some() {
                let next = fresh.next().expect("one fresh segment per start");
                let sealed = std::mem::replace(&mut w.active, next);
                let mut sealed = sealed;
                if let Err(e) = sealed.write_pending() {
                    return Err(self.poison(e));
                }
                w.unsynced.push(sealed.seal());
                w.active_synced_to = 0;
                w.sampler = IndexSampler::new(inner.options.index_interval_bytes);
                published.push(Publish::new(&w.active, seq, stamp(i)));
            }
            let ts = stamp(i);
            let key = r.partition_key.as_bytes();
            let offset = w.active.append(seq, ts, key, r.data).expect("the plan made room");
            let len = frame::frame_len(key.len(), r.data.len());
            let p = published.last_mut().expect("one publish per segment");
            if w.sampler.sample(len) {
                p.index.push(IndexEntry { sequence_number: seq, arrival_timestamp_ms: ts, offset: offset as u32 });
            }
            p.end = offset + len;
            p.next_sequence_number = seq + 1;
            p.last_timestamp_ms = ts;
        }
        if let Err(e) = w.active.write_pending() {
            return Err(self.poison(e));
        }
        // Prepare the next segment as soon as a segment rolls (a shard that fills segments
        // needs the whole segment's time to prepare the next: pre-faulting 64 MiB takes
        // 25-70 ms here, filling it 20 ms at full speed), or once a shard's first segment is
        // half full, so a shard that never rolls holds one small segment only.
        let rolled = published.len() > 1;
        let half_full = w.active.remaining() < w.active.map().capacity() / 2;
        if w.next_segment.is_none() && (rolled || half_full) {
            let capacity = inner.options.grown_segment_bytes(w.active.map().capacity());
            w.next_segment = spawn_prepare(&inner.dir, capacity).map(|handle| (capacity, handle));
        }
        let next = first + records.len() as u64;
        let ts = stamp(records.len() - 1);
        w.next_sequence_number = next;
        w.last_timestamp_ms = ts;
        self.publish(published);
        let truncations = w.truncations;
        drop(w);
        self.appended.send_replace(next);
        let bytes: usize = records.iter().map(|r| r.partition_key.len() + r.data.len()).sum();
        self.appended_bytes.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        self.appended_records.fetch_add(records.len() as u64, std::sync::atomic::Ordering::Relaxed);

        if inner.options.durability == Durability::Always {
            inner.commit.wait_durable(next, truncations, || inner.take_sync_work()).map_err(|e| match e {
                NotDurable::Failed(e) => AppendError::Poisoned(e),
                NotDurable::Truncated => AppendError::Truncated,
            })?;
        }
        Ok(Appended { first_sequence_number: first, record_count: records.len() as u64, arrival_timestamp_ms: ts })
    }

    /// Puts an empty active segment large enough for a frame of `len` bytes in place of the
    /// empty one, under the same name (the first segments are small, 64 KiB, and a stream's
    /// record size limit may rise to 10 MiB later). An empty segment is never sealed, since
    /// its successor would take its name. A failure leaves the log as it was.
    fn replace_empty_active(&self, w: &mut Writer, len: usize) -> Result<(), IoError> {
        let inner = &*self.inner;
        let capacity = inner.options.grown_segment_bytes(w.active.map().capacity()).max(HEADER_BYTES + len);
        let first = w.active.first_sequence_number();
        self.open_dir_to_sync(w)?;
        let fresh = self.next_segment(w, first, capacity)?;
        w.active = fresh;
        w.active_synced_to = 0;
        w.sampler = IndexSampler::new(inner.options.index_interval_bytes);
        let mut state = inner.state_mut();
        let view = state.segments.back_mut().expect("active segment");
        view.map = w.active.map().clone();
        view.summary.end = HEADER_BYTES;
        Ok(())
    }

    /// Opens the shard directory for the next sync, unless it is open already: a segment is
    /// about to be created.
    fn open_dir_to_sync(&self, w: &mut Writer) -> Result<(), IoError> {
        if w.dir_to_sync.is_none() {
            let dir = &self.inner.dir;
            w.dir_to_sync = Some(std::fs::File::open(dir).map_err(|e| IoError::new(dir, e))?);
        }
        Ok(())
    }

    /// Marks the log failed after a write error: frames past the published end may be half
    /// written, and appending after them could leave a gap that recovery reads as the end.
    fn poison(&self, e: IoError) -> AppendError {
        let e = Arc::new(e);
        self.inner.commit.poison(e.clone());
        AppendError::Io(e)
    }

    /// Takes the segment prepared in the background if it has `capacity` (waiting for it if
    /// need be), or makes one here, and gives it its first sequence number.
    fn next_segment(
        &self,
        w: &mut Writer,
        first_sequence_number: u64,
        capacity: usize,
    ) -> Result<ActiveSegment, IoError> {
        self.take_prepared(w, capacity)?.activate(&self.inner.dir, first_sequence_number)
    }

    /// The segment prepared in the background if it has `capacity` (waiting for it if need
    /// be), or one made here. Either way the preparer thread is done with its file.
    fn take_prepared(&self, w: &mut Writer, capacity: usize) -> Result<PreparedSegment, IoError> {
        let dir = &self.inner.dir;
        match w.next_segment.take() {
            Some((c, handle)) if c == capacity => match handle.join() {
                Ok(Ok(prepared)) => Ok(prepared),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "background segment preparation failed; retrying inline");
                    PreparedSegment::create(dir, capacity)
                }
                Err(_) => PreparedSegment::create(dir, capacity),
            },
            Some((_, handle)) => {
                // Not the size wanted: let it finish (it owns the prealloc file), then redo.
                let _ = handle.join();
                PreparedSegment::create(dir, capacity)
            }
            None => PreparedSegment::create(dir, capacity),
        }
    }

    fn publish(&self, published: Vec<Publish>) {
        let mut state = self.inner.state_mut();
        let mut newest = None;
        for (i, p) in published.into_iter().enumerate() {
            if i > 0 {
                state.segments.push_back(SegmentView::empty(p.map, p.first_sequence_number, p.first_timestamp_ms));
            }
            let view = state.segments.back_mut().expect("active segment");
            if p.next_sequence_number == view.summary.next_sequence_number {
                continue;
            }
            if view.is_empty() {
                view.summary.first_timestamp_ms = p.first_timestamp_ms;
            }
            view.summary.end = p.end;
            view.summary.next_sequence_number = p.next_sequence_number;
            view.summary.last_timestamp_ms = p.last_timestamp_ms;
            newest = Some(p.last_timestamp_ms);
            for e in p.index {
                view.summary.index.push(e);
            }
        }
        if newest.is_some() {
            state.last_timestamp_ms = newest;
        }
    }

    /// Syncs everything appended so far to disk, whatever the durability policy. Call it
    /// before a planned shutdown.
    ///
    /// Errors: the sync failed; the log then refuses appends (see [`AppendError::Poisoned`]).
    pub fn sync(&self) -> Result<(), SyncError> {
        self.inner.sync_all()
    }

    /// Deletes sealed segments, oldest first, whose newest record arrived more than
    /// `retention` before the clock's now. Whole segments only: a record may outlive the
    /// retention period by up to one segment's worth of time, never the other way round.
    /// The active segment and the newest record are always kept.
    ///
    /// Errors: deleting a file failed; segments before it are gone.
    pub fn trim(&self, retention: Duration) -> Result<TrimReport, TrimError> {
        let cutoff =
            self.inner.options.clock.now_ms().saturating_sub(retention.as_millis().min(u128::from(u64::MAX)) as u64);
        let _reshape = self.inner.reshape.lock().unwrap_or_else(PoisonError::into_inner);
        let mut doomed = Vec::new();
        let mut report = TrimReport::default();
        {
            let mut state = self.inner.state_mut();
            while state.segments.len() > 1 {
                let oldest = state.segments.front().expect("more than one segment");
                if !oldest.is_empty() && oldest.summary.last_timestamp_ms >= cutoff {
                    break;
                }
                // Keep the newest record even when it is old: it carries the shard's last
                // arrival timestamp across a restart.
                if !oldest.is_empty() && state.segments.iter().skip(1).all(SegmentView::is_empty) {
                    break;
                }
                let gone = state.segments.pop_front().expect("more than one segment");
                report.records_deleted += gone.summary.next_sequence_number - gone.summary.first_sequence_number;
                doomed.push(gone.map.path().to_owned());
            }
        }
        for path in &doomed {
            // The index file first: one left without its segment is removed by the next
            // open, while a segment left without its index file is only scanned.
            let index_path = index_file::path_of(path);
            match fs::remove_file(&index_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(IoError::new(&index_path, e).into()),
                _ => {}
            }
            fs::remove_file(path).map_err(|e| IoError::new(path, e))?;
            report.segments_deleted += 1;
        }
        if !doomed.is_empty() && self.inner.options.durability != Durability::Never {
            segment::sync_dir(&self.inner.dir)?;
        }
        Ok(report)
    }

    /// Removes every record from sequence number `next` on, so that the log's next record
    /// gets `next`: what a replica does with the tail an old leader wrote but never had
    /// acknowledged, before it appends the new leader's records (Kafka's truncation to the
    /// leader epoch's end). Nothing happens when `next` is at or past the log's end.
    ///
    /// Frames a reader may hold mapped are never written over: segments past the cut are
    /// deleted, newest first, and the segment holding the cut is replaced by a new file with
    /// its frames before the cut (a copy of at most one segment, verified against their
    /// checksums first), synced and renamed into place. A crash at any point leaves a log
    /// that ends at or after the cut, with no gap; the directory is synced before this
    /// returns, under every durability policy, so a power cut cannot bring the tail back.
    /// A read that began before the call may still return records past the cut; appends
    /// waiting for a sync under `Durability::Always` get [`AppendError::Truncated`]. A high
    /// watermark above the cut is lowered to it.
    ///
    /// Errors: [`TruncateError::BelowTrimHorizon`] when `next` is below the oldest retained
    /// record; [`TruncateError::Corrupt`] when a frame before the cut in its segment fails
    /// its checks (nothing changed); [`TruncateError::Io`] when a file could not be
    /// removed, written or synced: the log then ends at or after the cut and refuses
    /// appends until it is reopened.
    pub fn truncate(&self, next: u64) -> Result<TruncateReport, TruncateError> {
        let inner = &*self.inner;
        let _reshape = inner.reshape.lock().unwrap_or_else(PoisonError::into_inner);
        let mut w = inner.writer();
        if let Some(e) = inner.commit.failed() {
            return Err(TruncateError::Poisoned(e));
        }
        if next >= w.next_sequence_number {
            return Ok(TruncateReport::default());
        }
        // With the writer and retention held off, only this call changes the segments.
        let (replaced, removed, kept) = {
            let state = inner.state();
            let first = state.first_sequence_number();
            if next < first {
                return Err(TruncateError::BelowTrimHorizon { requested: next, first });
            }
            // Segments starting before the cut; the last of them holds records before it,
            // unless the cut falls on a segment boundary.
            let before = state.segments.partition_point(|v| v.summary.first_sequence_number < next);
            let keeps_some = before > 0 && state.segments[before - 1].summary.next_sequence_number > next;
            let r = if keeps_some { before - 1 } else { before };
            let view = &state.segments[r];
            let kept = if keeps_some {
                let corrupt = |offset, defect| Corruption { path: view.map.path().to_owned(), offset, defect };
                let prefix = durable_prefix(view, next).ok_or_else(|| {
                    corrupt(HEADER_BYTES as u64, crate::FrameDefect::BadHeader("frames do not lead to the cut"))
                })?;
                // SAFETY: `summary.end` was published, and the writer lock is held.
                let bytes = unsafe { view.map.published(prefix.end) };
                let scan =
                    segment::scan(bytes, view.summary.first_sequence_number, inner.options.index_interval_bytes, None);
                if let Some((offset, defect)) = scan.defect {
                    return Err(corrupt(offset as u64, defect).into());
                }
                Some((prefix.end, scan))
            } else {
                None
            };
            let removed: Vec<Arc<SegmentMap>> = state.segments.iter().skip(r + 1).map(|v| v.map.clone()).collect();
            ((view.map.clone(), view.summary.first_sequence_number), removed, kept)
        };
        let (replaced_map, replaced_first) = replaced;
        let report = TruncateReport {
            records_removed: w.next_sequence_number - next,
            segments_removed: removed.len() + usize::from(kept.is_none()),
        };
        // From here on, a failure leaves files and memory apart: the log refuses appends
        // until reopened, and the reopen finds a log ending at or after the cut.
        let fail = |e: IoError| {
            let e = Arc::new(e);
            inner.commit.poison(e.clone());
            TruncateError::Io(e)
        };
        for map in removed.iter().rev() {
            map.retire().map_err(fail)?;
            match fs::remove_file(map.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(IoError::new(map.path(), e))),
                _ => {}
            }
            // One at a time: POSIX does not order unlinks, and a newer segment surviving an
            // older one's removal would be a gap at the next open.
            segment::sync_dir(&inner.dir).map_err(fail)?;
        }
        replaced_map.retire().map_err(fail)?;
        let prepared = self.take_prepared(&mut w, replaced_map.capacity()).map_err(fail)?;
        let frames = match &kept {
            // SAFETY: published below `end`; the mapping lives while `replaced_map` does.
            Some((end, _)) => unsafe { &replaced_map.published(*end)[HEADER_BYTES..] },
            None => &[][..],
        };
        let active = prepared.install(&inner.dir, replaced_first, frames).map_err(fail)?;
        segment::sync_dir(&inner.dir).map_err(fail)?;

        let (summary, sampler) = match kept {
            Some((_, mut scan)) => {
                let sampler = std::mem::replace(&mut scan.sampler, IndexSampler::new(1));
                (scan.summary(replaced_first), sampler)
            }
            None => (SegmentSummary::empty(next, 0), IndexSampler::new(inner.options.index_interval_bytes)),
        };
        let gone = |m: &Arc<SegmentMap>| Arc::ptr_eq(m, &replaced_map) || removed.iter().any(|r| Arc::ptr_eq(m, r));
        w.unsynced.retain(|m| !gone(m));
        w.active_synced_to = active.write_offset();
        w.sampler = sampler;
        w.next_sequence_number = next;
        w.truncations += 1;
        inner.commit.truncate(next);
        let last_timestamp_ms = {
            let mut state = inner.state_mut();
            let r = state.segments.len() - 1 - removed.len();
            state.segments.truncate(r);
            state.segments.push_back(SegmentView { map: active.map().clone(), summary });
            let newest = state.segments.iter().rev().find(|s| !s.is_empty()).map(|s| s.summary.last_timestamp_ms);
            state.last_timestamp_ms = newest;
            newest
        };
        w.last_timestamp_ms = last_timestamp_ms.unwrap_or(0);
        w.active = active;
        // Before the next append: records written at the cut must not be served under
        // the old watermark.
        self.lower_high_watermark(next);
        drop(w);
        self.appended.send_replace(next);
        Ok(report)
    }

    /// Unmaps the segment pages readers faulted in since the last call, so the process's
    /// resident memory holds recently read pages only, not every stored byte; see
    /// [`SegmentMap::release_pages`]. Also closes the file descriptors no write or sync used
    /// since the last call ([`SegmentMap::close_idle_file`]), so an idle shard holds none.
    /// Nothing is lost or waited for: a reader maps the pages it needs again, a writer opens
    /// the file again. Meant to run about once a second.
    ///
    /// Errors: `madvise` failed on a segment; later segments are left as they were.
    pub fn release_pages(&self) -> Result<(), IoError> {
        self.write_index_files(index_file::ACTIVE_STEP_BYTES);
        // Outside the lock: unmapping pages other cores used interrupts them, and appends
        // must not wait for that.
        let maps: Vec<Arc<SegmentMap>> = self.inner.state().segments.iter().map(|s| s.map.clone()).collect();
        let syncs_come = self.inner.options.durability != Durability::Never;
        maps.iter().try_for_each(|m| {
            m.close_idle_file(syncs_come);
            m.release_pages()
        })
    }

    /// Writes index files (see [`crate::index_file`]) describing the durable frames of each
    /// segment: once for a sealed segment, and for the active one each time another
    /// `active_step` bytes of its frames are durable. Part of [`ShardLog::release_pages`]
    /// (step [`index_file::ACTIVE_STEP_BYTES`]) and of closing the log (step 0).
    fn write_index_files(&self, active_step: usize) {
        let pending: Vec<(Arc<SegmentMap>, SegmentSummary)> = {
            let state = self.inner.state();
            // Read under the state lock: a truncation lowers it before it changes the
            // segments, so segments seen here are never paired with a durable end from
            // before a truncation (which could describe unsynced frames as durable).
            let durable_next = match self.inner.options.durability {
                Durability::Never => u64::MAX,
                _ => self.inner.commit.durable_next(),
            };
            let active = state.segments.len() - 1;
            state
                .segments
                .iter()
                .enumerate()
                .filter_map(|(i, view)| {
                    let covered = view.map.indexed_to();
                    let durable_to = durable_next.min(view.summary.next_sequence_number);
                    if durable_to <= view.summary.first_sequence_number || covered == view.summary.end {
                        return None;
                    }
                    let summary = if durable_to == view.summary.next_sequence_number {
                        view.summary.clone()
                    } else {
                        durable_prefix(view, durable_to)?
                    };
                    let due =
                        if i < active { summary.end == view.summary.end } else { summary.end >= covered + active_step };
                    due.then(|| (view.map.clone(), summary))
                })
                .collect()
        };
        for (map, summary) in pending {
            map.write_index(&summary);
        }
    }

    /// Open file descriptors the log holds now (0 for a log idle since two
    /// [`ShardLog::release_pages`] calls).
    pub fn open_files(&self) -> usize {
        self.inner.state().segments.iter().filter(|s| s.map.has_open_file()).count()
    }
}

/// What one append shows readers of one segment.
struct Publish {
    map: Arc<SegmentMap>,
    first_sequence_number: u64,
    end: usize,
    next_sequence_number: u64,
    index: Vec<IndexEntry>,
    /// Arrival time of the first and newest record the batch put in this segment, ms.
    first_timestamp_ms: u64,
    last_timestamp_ms: u64,
}

impl Publish {
    /// Nothing new yet in `active`, whose next frame gets `next_sequence_number` at
    /// `timestamp_ms`.
    fn new(active: &ActiveSegment, next_sequence_number: u64, timestamp_ms: u64) -> Self {
        Self {
            map: active.map().clone(),
            first_sequence_number: active.first_sequence_number(),
            end: active.write_offset(),
            next_sequence_number,
            index: Vec::new(),
            first_timestamp_ms: timestamp_ms,
            last_timestamp_ms: timestamp_ms,
        }
    }
}

/// Where a batch's sequence numbers and arrival times come from.
enum Stamps<'a> {
    /// The next sequence numbers and the clock's now (never before the newest record).
    Now,
    /// A leader's: its first sequence number and every record's time.
    Given { first_sequence_number: u64, arrival_timestamps_ms: &'a [u64] },
}

impl Drop for ShardLog {
    fn drop(&mut self) {
        // The preparer writes `next.seg.prealloc` in this directory: let it finish so a
        // reopen does not race it.
        if let Some((_, h)) = self.inner.writer().next_segment.take() {
            let _ = h.join();
        }
        if self.inner.options.durability != Durability::Never && self.inner.commit.failed().is_none() {
            if let Err(e) = self.inner.sync_all() {
                tracing::error!(error = %e, "final sync of a shard log failed");
            }
        }
        self.write_index_files(0);
    }
}
