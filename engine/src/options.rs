//! How a shard log is opened: segment size, record limit, durability, clock.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::durability::Durability;
use crate::error::OpenError;
use crate::limits::{
    segment_bytes_min, INDEX_INTERVAL_BYTES_DEFAULT, RECORD_BYTES_DEFAULT, RECORD_BYTES_MAX, SEGMENT_BYTES_DEFAULT,
    SEGMENT_BYTES_MAX,
};

/// Size of a new shard's first segment, bytes, unless limits say otherwise: 64 KiB, so an
/// idle shard holds 64 KiB of disk (issue 17); a busy one reaches 64 MiB segments after 10
/// rolls.
const FIRST_SEGMENT_BYTES: usize = 64 << 10;

/// Options of [`crate::ShardLog::open`]. `Default` gives Sluice's defaults.
#[derive(Debug, Clone)]
pub struct ShardLogOptions {
    /// Largest size of a segment file, bytes (default 64 MiB, at most 1 GiB, at least what
    /// holds one record of `max_record_bytes`). A shard's segments start at 64 KiB and double
    /// up to this. Existing segments keep their size.
    pub segment_bytes: usize,
    /// Largest record accepted, data plus partition key, bytes (default 1 MiB, at most
    /// 10 MiB; AWS Kinesis quotas).
    pub max_record_bytes: usize,
    /// When acknowledged appends reach the disk (default: synced every 100 ms).
    pub durability: Durability,
    /// Sequence number of the first record of a new, empty shard (default 0). Ignored when
    /// the shard already exists. Lets a child shard start past its parents.
    pub first_sequence_number: u64,
    /// Bytes of frames between two sparse-index entries (default 64 KiB).
    pub index_interval_bytes: usize,
    /// Source of arrival timestamps and of "now" for retention (default: the system clock).
    pub clock: Arc<dyn Clock>,
}

impl Default for ShardLogOptions {
    fn default() -> Self {
        Self {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            max_record_bytes: RECORD_BYTES_DEFAULT,
            durability: Durability::default(),
            first_sequence_number: 0,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            clock: Arc::new(SystemClock),
        }
    }
}

impl ShardLogOptions {
    /// Size of a new shard's first segment, bytes: 64 KiB, or less when `segment_bytes` is
    /// smaller. Segments then double up to `segment_bytes`, so an idle shard holds 64 KiB,
    /// not 64 MiB, of disk and page cache; a record larger than a segment's size gets a segment
    /// sized for it (at most `segment_bytes`, which holds any record of `max_record_bytes`).
    pub fn first_segment_bytes(&self) -> usize {
        FIRST_SEGMENT_BYTES.min(self.segment_bytes)
    }

    /// Size of the segment after one of `capacity` bytes: double, up to `segment_bytes`.
    pub fn grown_segment_bytes(&self, capacity: usize) -> usize {
        capacity.saturating_mul(2).clamp(self.first_segment_bytes(), self.segment_bytes)
    }

    pub(crate) fn validate(&self) -> Result<(), OpenError> {
        if self.max_record_bytes == 0 || self.max_record_bytes > RECORD_BYTES_MAX {
            return Err(OpenError::InvalidOptions(format!(
                "max_record_bytes is {}; it must be 1 to {RECORD_BYTES_MAX}",
                self.max_record_bytes
            )));
        }
        let min = segment_bytes_min(self.max_record_bytes);
        if self.segment_bytes < min || self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(OpenError::InvalidOptions(format!(
                "segment_bytes is {}; with max_record_bytes {} it must be {min} to {SEGMENT_BYTES_MAX}",
                self.segment_bytes, self.max_record_bytes
            )));
        }
        if let Durability::Interval(every) = self.durability {
            if every.is_zero() {
                return Err(OpenError::InvalidOptions("the sync interval must be above zero".into()));
            }
        }
        Ok(())
    }
}
