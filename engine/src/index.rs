//! The sparse index of one segment: every few KiB of frames, the sequence number, arrival
//! timestamp and byte offset of a frame, so a read or a seek jumps near its target instead
//! of scanning the shard.

/// One indexed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Sequence number of the frame.
    pub sequence_number: u64,
    /// Arrival timestamp of the frame, ms since the Unix epoch.
    pub arrival_timestamp_ms: u64,
    /// Byte offset of the frame in its segment.
    pub offset: u32,
}

/// Decides which frames of a segment get an index entry: the first one, then the first
/// after every `interval_bytes` bytes of frames.
#[derive(Debug, Clone, Copy)]
pub struct IndexSampler {
    interval_bytes: usize,
    bytes_since_entry: Option<usize>,
}

impl IndexSampler {
    /// A sampler for a segment with no frames yet.
    pub fn new(interval_bytes: usize) -> Self {
        Self { interval_bytes, bytes_since_entry: None }
    }

    /// A sampler for a segment whose last indexed frame began `since_last_entry` bytes
    /// before its end (`None`: no frame indexed yet).
    pub fn resume(interval_bytes: usize, since_last_entry: Option<usize>) -> Self {
        Self { interval_bytes, bytes_since_entry: since_last_entry }
    }

    /// Notes the next frame, of `len` bytes; true when it is to be indexed.
    pub fn sample(&mut self, len: usize) -> bool {
        let take = self.bytes_since_entry.is_none_or(|b| b >= self.interval_bytes);
        let since = if take { 0 } else { self.bytes_since_entry.unwrap_or(0) };
        self.bytes_since_entry = Some(since + len);
        take
    }
}

/// Index entries of one segment, in frame order; the first frame is always indexed.
///
/// Sequence numbers strictly increase and timestamps never decrease along a segment, so
/// both lookups are binary searches.
#[derive(Debug, Clone, Default)]
pub struct SparseIndex {
    entries: Vec<IndexEntry>,
}

impl SparseIndex {
    /// Adds an entry after the existing ones.
    pub fn push(&mut self, entry: IndexEntry) {
        debug_assert!(self.entries.last().is_none_or(|e| e.sequence_number < entry.sequence_number));
        self.entries.push(entry);
    }

    /// The last entry at or before `sequence_number`.
    pub fn floor_by_sequence(&self, sequence_number: u64) -> Option<IndexEntry> {
        let after = self.entries.partition_point(|e| e.sequence_number <= sequence_number);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The last entry strictly before `timestamp_ms`: the first frame at or after the
    /// timestamp lies after it (equal timestamps may stand before a later entry).
    pub fn floor_before_timestamp(&self, timestamp_ms: u64) -> Option<IndexEntry> {
        let after = self.entries.partition_point(|e| e.arrival_timestamp_ms < timestamp_ms);
        after.checked_sub(1).map(|i| self.entries[i])
    }

    /// The entries, in frame order.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no frame is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, ts: u64, offset: u32) -> IndexEntry {
        IndexEntry { sequence_number: seq, arrival_timestamp_ms: ts, offset }
    }

    #[test]
    fn indexes_the_first_frame_and_then_every_interval() {
        let mut index = SparseIndex::default();
        let mut sampler = IndexSampler::new(100);
        for i in 0..10u32 {
            if sampler.sample(40) {
                index.push(entry(u64::from(i), 0, i * 40));
            }
        }
        // Frames at 0, 120 (after 120 bytes), 240, 360: every third 40-byte frame.
        assert_eq!(index.len(), 4);
        assert_eq!(index.floor_by_sequence(0).unwrap().offset, 0);
        assert_eq!(index.floor_by_sequence(5).unwrap().offset, 120);
        assert_eq!(index.floor_by_sequence(9).unwrap().offset, 360);
    }

    #[test]
    fn floors_by_sequence_and_timestamp() {
        let mut index = SparseIndex::default();
        index.push(entry(10, 100, 32));
        index.push(entry(11, 100, 64));
        index.push(entry(12, 200, 96));
        assert_eq!(index.floor_by_sequence(9), None);
        assert_eq!(index.floor_by_sequence(11).unwrap().offset, 64);
        assert_eq!(index.floor_by_sequence(99).unwrap().offset, 96);
        assert_eq!(index.floor_before_timestamp(100), None);
        assert_eq!(index.floor_before_timestamp(150).unwrap().offset, 64);
        assert_eq!(index.floor_before_timestamp(201).unwrap().offset, 96);
    }
}
