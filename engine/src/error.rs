//! Errors of the shard log, one enum per operation.
//!
//! Each carries what explains it: the file and byte offset of a bad frame, the limit and
//! the value that broke it, the index of the offending record in its batch, and the
//! underlying I/O error as its source.

use std::io;
use std::path::PathBuf;

/// What is wrong with a frame or a segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameDefect {
    /// The stored CRC32 does not match the body.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// CRC32 stored in the frame.
        stored: u32,
        /// CRC32 of the bytes found.
        computed: u32,
    },
    /// The length runs past the end of the segment.
    #[error("frame body of {body_len} bytes runs past the segment ({remaining} bytes left)")]
    LengthOutOfBounds {
        /// Body length stored in the frame, bytes.
        body_len: usize,
        /// Bytes left in the segment after the prefix.
        remaining: usize,
    },
    /// The length is too short for the fixed fields.
    #[error("frame body of {body_len} bytes is shorter than its fixed fields")]
    BodyTooShort {
        /// Body length stored in the frame, bytes.
        body_len: usize,
    },
    /// The partition key length runs past the body.
    #[error("partition key of {key_len} bytes does not fit a body of {body_len} bytes")]
    KeyLengthOutOfBounds {
        /// Key length stored in the frame, bytes.
        key_len: usize,
        /// Body length stored in the frame, bytes.
        body_len: usize,
    },
    /// The partition key is not UTF-8.
    #[error("partition key is not UTF-8")]
    KeyNotUtf8,
    /// The frame's sequence number breaks the shard's order.
    #[error("sequence number {found} where {expected} was expected")]
    UnexpectedSequenceNumber {
        /// The sequence number that belongs here.
        expected: u64,
        /// The sequence number found.
        found: u64,
    },
    /// The segment header's magic, version or checksum is wrong.
    #[error("bad segment header ({0})")]
    BadHeader(&'static str),
    /// The header names a first sequence number other than the file name's.
    #[error("header says first sequence number {header}, file name says {file_name}")]
    HeaderNameMismatch {
        /// First sequence number in the header.
        header: u64,
        /// First sequence number in the file name.
        file_name: u64,
    },
}

/// A bad frame or header at a known place: never skipped, always reported.
#[derive(Debug, thiserror::Error)]
#[error("corrupt segment {}: byte offset {offset}: {defect}", path.display())]
pub struct Corruption {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset of the bad frame or header in the file.
    pub offset: u64,
    /// What is wrong there.
    pub defect: FrameDefect,
}

/// An I/O error on a known file.
#[derive(Debug, thiserror::Error)]
#[error("I/O error on {}: {source}", path.display())]
pub struct IoError {
    /// The file or directory.
    pub path: PathBuf,
    /// The error the operating system returned.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// An error of `source` about `path`.
    pub fn new(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self { path: path.into(), source }
    }
}

/// Why [`crate::ShardLog::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Reading or creating a file failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A sealed segment, or a header, is corrupt.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// Two consecutive segments do not continue each other's sequence numbers.
    #[error("segment {} starts at sequence number {found}, but the shard continues at {expected}", path.display())]
    SequenceGap {
        /// The segment whose start is wrong.
        path: PathBuf,
        /// The sequence number that follows the previous segment.
        expected: u64,
        /// The first sequence number the segment names.
        found: u64,
    },
    /// The options cannot work together.
    #[error("invalid shard log options: {0}")]
    InvalidOptions(String),
}

/// Why [`crate::ShardLog::append`] refused or failed a batch.
///
/// Validation errors leave the log untouched: no record of the batch is written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The batch holds no records.
    #[error("a batch must hold at least one record")]
    EmptyBatch,
    /// A partition key is empty or longer than 256 characters.
    #[error("record {index}: partition key has {chars} characters; it must have 1 to {max}", max = crate::limits::PARTITION_KEY_CHARS_MAX)]
    PartitionKeyLength {
        /// Position of the record in its batch.
        index: usize,
        /// Characters in the key.
        chars: usize,
    },
    /// A record's data plus partition key exceeds the log's maximum record size.
    #[error("record {index}: data plus partition key is {bytes} bytes, over the limit of {limit} bytes")]
    RecordTooLarge {
        /// Position of the record in its batch.
        index: usize,
        /// Data plus partition key, bytes.
        bytes: usize,
        /// The log's `max_record_bytes`.
        limit: usize,
    },
    /// Creating the next segment failed (nothing of the batch was written), or writing the
    /// batch failed (the log then refuses further appends).
    #[error(transparent)]
    Io(std::sync::Arc<IoError>),
    /// A replica append did not start at the log's next sequence number (nothing written).
    #[error("a replica batch starts at sequence number {found}, and the log's next is {expected}")]
    NotNext {
        /// The log's next sequence number.
        expected: u64,
        /// Where the batch starts.
        found: u64,
    },
    /// A replica batch's arrival times are missing, or go back (before each other or the
    /// log's newest record); nothing written.
    #[error("a replica batch's arrival times must be one per record, never going back")]
    Timestamps,
    /// An earlier write or sync failed, so the log refuses appends: the kernel may have
    /// dropped unsynced pages, and a retried sync could falsely succeed. Reopen the log to
    /// recover what reached the disk.
    #[error("an earlier write or sync failed; the shard log refuses appends")]
    Poisoned(#[source] std::sync::Arc<IoError>),
    /// Under `Durability::Always`, the log was truncated ([`crate::ShardLog::truncate`])
    /// while the batch waited for its sync: its records may be gone, so the append is not
    /// acknowledged. Read the log to learn what it holds.
    #[error("the shard log was truncated while the batch waited to be synced")]
    Truncated,
}

/// Why [`crate::ShardLog::truncate`] refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TruncateError {
    /// The cut lies below the oldest retained record: the records between are gone already,
    /// so the log could not continue at the cut without a gap.
    #[error("cannot truncate to sequence number {requested}: the shard's oldest retained record is {first}")]
    BelowTrimHorizon {
        /// The sequence number asked to be the log's next.
        requested: u64,
        /// The log's oldest retained sequence number.
        first: u64,
    },
    /// A frame of the segment holding the cut is corrupt; nothing changed.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// Creating, syncing or removing a file failed. The log then ends at or after the cut,
    /// never before it, and refuses appends until reopened.
    #[error(transparent)]
    Io(std::sync::Arc<IoError>),
    /// An earlier write or sync failed; reopen the log.
    #[error("an earlier write or sync failed; the shard log refuses to change")]
    Poisoned(#[source] std::sync::Arc<IoError>),
}

/// Why [`crate::ShardLog::read`] or a seek failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A frame on the way is corrupt.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
    /// The position lies beyond the next sequence number to be written.
    #[error("sequence number {requested} is beyond the end of the shard (next is {next})")]
    BeyondEnd {
        /// The position asked for.
        requested: u64,
        /// The next sequence number the shard will assign.
        next: u64,
    },
}

/// Why [`crate::ShardLog::trim`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrimError {
    /// Deleting a segment failed; the segments before it are gone, it and later ones stay.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Why [`crate::ShardLog::sync`] failed.
#[derive(Debug, thiserror::Error)]
#[error("sync to disk failed; the shard log refuses further appends")]
pub struct SyncError(#[source] pub std::sync::Arc<IoError>);
