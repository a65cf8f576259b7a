//! Limits of the shard log, each a named constant with its unit last and its source.
//!
//! Relations between limits are checked at compile time, so a change that breaks one
//! (a segment too small for the largest record, an offset that no longer fits in `u32`)
//! does not build.

use crate::frame::FRAME_OVERHEAD_BYTES;
use crate::segment::HEADER_BYTES;

/// Largest record a stream takes by default, counting data plus partition key, in bytes:
/// 1 MiB. Source: AWS Kinesis Data Streams quotas ("The maximum size of a data blob (the
/// data payload before Base64-encoding) plus the partition key is 1 MiB").
pub const RECORD_BYTES_DEFAULT: usize = 1 << 20;

/// Largest record a stream can be configured to take (`MaxRecordSizeInKiB`), in bytes:
/// 10 MiB. Source: AWS Kinesis Data Streams quotas (large records).
pub const RECORD_BYTES_MAX: usize = 10 << 20;

/// Fewest characters in a partition key: 1. Source: AWS Kinesis API reference, `PutRecord`.
pub const PARTITION_KEY_CHARS_MIN: usize = 1;

/// Most Unicode characters in a partition key: 256. Source: AWS Kinesis API reference,
/// `PutRecord` ("Partition keys are Unicode strings with a maximum length limit of 256
/// characters").
pub const PARTITION_KEY_CHARS_MAX: usize = 256;

/// Most bytes a partition key can take in UTF-8: 256 characters of at most 4 bytes each.
pub const PARTITION_KEY_BYTES_MAX: usize = PARTITION_KEY_CHARS_MAX * 4;

/// Default maximum size of one segment file, in bytes: 64 MiB. Sluice's choice: large enough
/// that the per-segment costs (a file, a mapping, a rename) vanish next to the copying, small
/// enough that retention frees disk in steps of seconds to minutes of traffic.
pub const SEGMENT_BYTES_DEFAULT: usize = 64 << 20;

/// Largest segment file, in bytes: 1 GiB. Frame offsets inside a segment are stored as `u32`.
pub const SEGMENT_BYTES_MAX: usize = 1 << 30;

/// Default distance between two entries of a segment's sparse index, in bytes of frames:
/// 64 KiB. A seek decodes at most this many bytes of frame headers after its index lookup,
/// and the index costs 24 bytes per 64 KiB stored (about 0.04 %).
pub const INDEX_INTERVAL_BYTES_DEFAULT: usize = 64 << 10;

/// Default interval between two background syncs under [`crate::Durability::Interval`], in ms.
pub const SYNC_INTERVAL_MS_DEFAULT: u64 = 100;

/// Smallest segment that holds a record of `max_record_bytes` (data plus partition key).
pub const fn segment_bytes_min(max_record_bytes: usize) -> usize {
    HEADER_BYTES + FRAME_OVERHEAD_BYTES + max_record_bytes
}

const _: () = assert!(PARTITION_KEY_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(RECORD_BYTES_MAX <= u32::MAX as usize - FRAME_OVERHEAD_BYTES);
const _: () = assert!(SEGMENT_BYTES_DEFAULT >= segment_bytes_min(RECORD_BYTES_MAX));
const _: () = assert!(SEGMENT_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(RECORD_BYTES_DEFAULT <= RECORD_BYTES_MAX);

/// Most records one GetRecords call returns: 10,000. Source: AWS Kinesis API reference,
/// `GetRecords`.
pub const GET_RECORDS_RECORDS_MAX: usize = 10_000;

/// Most bytes one GetRecords call returns: 10 MiB. Source: AWS Kinesis API reference,
/// `GetRecords`.
pub const GET_RECORDS_BYTES_MAX: usize = 10 << 20;
