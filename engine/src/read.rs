//! Reading a shard: from a sequence number, or from where a starting position resolves to.
//!
//! A read takes the shard's shared lock only to find where to start, then decodes and
//! verifies frames straight from the mapped segments with no lock held. The records it
//! returns borrow those mappings: no copy of the data is made.

use std::sync::Arc;

use crate::error::{Corruption, FrameDefect, ReadError};
use crate::frame::{self, Decoded};
use crate::limits::{GET_RECORDS_BYTES_MAX, GET_RECORDS_RECORDS_MAX};
use crate::segment::{SegmentMap, HEADER_BYTES};
use crate::shard_log::{LogState, ShardLog};

/// How much one read returns at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most records (default 10,000, GetRecords' cap).
    pub max_records: usize,
    /// Most bytes of data plus partition keys (default 10 MiB, GetRecords' cap). A read
    /// returns at least one record when one is there, even one larger than this.
    pub max_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self { max_records: GET_RECORDS_RECORDS_MAX, max_bytes: GET_RECORDS_BYTES_MAX }
    }
}

/// Where to start reading a shard, in Kinesis' terms (`ShardIteratorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest retained record.
    TrimHorizon,
    /// Just after the newest record: only records appended from now on.
    Latest,
    /// The record with this sequence number.
    AtSequenceNumber(u64),
    /// The record after this sequence number.
    AfterSequenceNumber(u64),
    /// The first record that arrived at or after this time (ms since the Unix epoch).
    AtTimestamp(u64),
}

/// One record of a [`ReadBatch`], borrowed from the mapped segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Sequence number.
    pub sequence_number: u64,
    /// Arrival timestamp, ms since the Unix epoch.
    pub arrival_timestamp_ms: u64,
    /// Partition key.
    pub partition_key: &'a str,
    /// Data blob.
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Located {
    segment: u32,
    key_start: u32,
    key_len: u16,
    data_len: u32,
    sequence_number: u64,
    arrival_timestamp_ms: u64,
}

/// Records read from a shard, in sequence order, verified against their checksums.
///
/// The batch keeps the segments it read mapped, so its records stay valid even if
/// retention deletes those segments meanwhile.
#[derive(Debug)]
pub struct ReadBatch {
    segments: Vec<ReadSegment>,
    records: Vec<Located>,
    next_sequence_number: u64,
    bytes: usize,
}

/// A segment a batch read from: the mapping, the end published when it was read, and the
/// bytes of the frames the batch returned.
#[derive(Debug)]
struct ReadSegment {
    map: Arc<SegmentMap>,
    end: usize,
    frames: std::ops::Range<usize>,
}

/// A batch that returned at least this many bytes of frames (256 KiB) unmaps their pages
/// when dropped ([`SegmentMap::release_range`]); smaller reads, such as a consumer at the
/// tip, leave theirs to the once-a-second housekeeping, as one `madvise` each would cost
/// more than the pages they hold.
pub const RELEASE_AFTER_BYTES: usize = 256 << 10;

impl Drop for ReadBatch {
    fn drop(&mut self) {
        if self.segments.iter().map(|s| s.frames.len()).sum::<usize>() < RELEASE_AFTER_BYTES {
            return;
        }
        for s in &self.segments {
            // A failed madvise keeps the pages mapped until housekeeping: memory, not data.
            if let Err(e) = s.map.release_range(s.frames.start, s.frames.end) {
                tracing::debug!(error = %e, "cannot unmap the pages a read used");
            }
        }
    }
}

impl ReadBatch {
    /// The records, in sequence order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RecordRef<'_>> + '_ {
        self.records.iter().map(|r| {
            let ReadSegment { map, end, .. } = &self.segments[r.segment as usize];
            // SAFETY: `end` was published when the batch was read, and published bytes are
            // never written again; the Arc keeps the mapping alive as long as `self`.
            let bytes = unsafe { map.published(*end) };
            let key_start = r.key_start as usize;
            let data_start = key_start + r.key_len as usize;
            // SAFETY: the key was checked to be UTF-8 when the frame was decoded.
            let partition_key = unsafe { std::str::from_utf8_unchecked(&bytes[key_start..data_start]) };
            RecordRef {
                sequence_number: r.sequence_number,
                arrival_timestamp_ms: r.arrival_timestamp_ms,
                partition_key,
                data: &bytes[data_start..data_start + r.data_len as usize],
            }
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the read found nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Where the next read continues: one past the last record returned, or where this
    /// read started (moved up to the trim horizon) when it returned nothing.
    pub fn next_sequence_number(&self) -> u64 {
        self.next_sequence_number
    }

    /// Bytes of data plus partition keys returned.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// A segment to read, copied out from under the shard's lock.
struct Span {
    map: Arc<SegmentMap>,
    start: usize,
    end: usize,
}

fn corrupt(map: &SegmentMap, offset: usize, defect: FrameDefect) -> ReadError {
    Corruption { path: map.path().to_owned(), offset: offset as u64, defect }.into()
}

/// The segment holding `sequence_number` (which must be retained and below the end), and
/// the offset of an indexed frame at or before it.
fn locate(state: &LogState, sequence_number: u64) -> Span {
    let i = state.segments.partition_point(|s| s.summary.first_sequence_number <= sequence_number).saturating_sub(1);
    let s = &state.segments[i];
    let start = s.summary.index.floor_by_sequence(sequence_number).map_or(HEADER_BYTES, |e| e.offset as usize);
    Span { map: s.map.clone(), start, end: s.summary.end }
}

/// Walks frame headers (without checksums) from `offset` to the frame for which `stop`
/// holds; returns its offset and sequence number.
fn skip(span: &Span, mut offset: usize, stop: impl Fn(&frame::FrameHeader) -> bool) -> Result<(usize, u64), ReadError> {
    // SAFETY: `span.end` was published under the shard lock.
    let bytes = unsafe { span.map.published(span.end) };
    loop {
        match frame::decode_header(&bytes[offset..]).map_err(|d| corrupt(&span.map, offset, d))? {
            Decoded::Frame(h) if !stop(&h) => offset += h.len,
            Decoded::Frame(h) => return Ok((offset, h.sequence_number)),
            Decoded::End => {
                return Err(corrupt(
                    &span.map,
                    offset,
                    FrameDefect::BadHeader("published frames end before the position sought"),
                ))
            }
        }
    }
}

/// Where one read stops: its limits, and the sequence number it reads below (the high
/// watermark, or `u64::MAX`).
#[derive(Debug, Clone, Copy)]
struct Bound {
    limits: ReadLimits,
    stop: u64,
}

impl ShardLog {
    /// Resolves a starting position to the sequence number a read should start from.
    ///
    /// `AtSequenceNumber` of a trimmed record resolves to the trim horizon, as Kinesis
    /// serves the oldest retained record. A timestamp after the newest record resolves to
    /// the end (like `Latest`). Under a high watermark ([`ShardLog::track_high_watermark`])
    /// `Latest` is the watermark, and a sequence number up to it is a position even when
    /// this log has not received its record yet.
    ///
    /// Errors: a sequence number beyond the end ([`ReadError::BeyondEnd`]); corruption met
    /// while seeking a timestamp.
    pub fn position(&self, position: StartingPosition) -> Result<u64, ReadError> {
        let watermark = self.high_watermark();
        let state = self.inner.state();
        let (first, next) = (state.first_sequence_number(), state.next_sequence_number());
        // A replica may be behind the watermark its leader announced: positions up to it
        // are the shard's, and read nothing until the records arrive.
        let end = watermark.map_or(next, |w| w.max(next));
        let at = |s: u64| {
            if s > end {
                Err(ReadError::BeyondEnd { requested: s, next })
            } else {
                Ok(s.max(first))
            }
        };
        match position {
            StartingPosition::TrimHorizon => Ok(first),
            // Under a high watermark, the records past it are not yet the shard's.
            StartingPosition::Latest => Ok(watermark.map_or(next, |w| w.clamp(first, next))),
            StartingPosition::AtSequenceNumber(s) => at(s),
            StartingPosition::AfterSequenceNumber(s) => at(s.saturating_add(1)),
            StartingPosition::AtTimestamp(ts) => {
                // Under a high watermark, no further than it: an iterator taken inside an
                // unacknowledged tail would skip the records that replace it.
                let visible = watermark.map_or(next, |w| w.clamp(first, next));
                let Some(s) = state.segments.iter().find(|s| !s.is_empty() && s.summary.last_timestamp_ms >= ts) else {
                    return Ok(visible);
                };
                let span = Span {
                    map: s.map.clone(),
                    start: s.summary.index.floor_before_timestamp(ts).map_or(HEADER_BYTES, |e| e.offset as usize),
                    end: s.summary.end,
                };
                drop(state);
                skip(&span, span.start, |h| h.arrival_timestamp_ms >= ts).map(|(_, seq)| seq.min(visible))
            }
        }
    }

    /// Reads records from `from` on (moved up to the trim horizon if trimmed), within
    /// `limits`, verifying each frame's checksum. Under a high watermark
    /// ([`ShardLog::track_high_watermark`]) only records below it are read, and a `from`
    /// past it or past the end reads nothing.
    ///
    /// Errors: `from` beyond the next sequence number, without a high watermark
    /// ([`ReadError::BeyondEnd`]); a bad
    /// frame on the way ([`ReadError::Corrupt`], naming file and offset).
    pub fn read(&self, from: u64, limits: ReadLimits) -> Result<ReadBatch, ReadError> {
        self.read_below(from, limits, self.high_watermark())
    }

    /// As [`ShardLog::read`], past the high watermark too: what a shard's leader reads to
    /// send its replicas the records they lack.
    ///
    /// Errors: as [`ShardLog::read`] without a high watermark.
    pub fn read_all(&self, from: u64, limits: ReadLimits) -> Result<ReadBatch, ReadError> {
        self.read_below(from, limits, None)
    }

    fn read_below(&self, from: u64, limits: ReadLimits, watermark: Option<u64>) -> Result<ReadBatch, ReadError> {
        let mut batch = ReadBatch { segments: Vec::new(), records: Vec::new(), next_sequence_number: from, bytes: 0 };
        let stop = watermark.unwrap_or(u64::MAX);
        loop {
            let span = {
                let state = self.inner.state();
                let (first, next) = (state.first_sequence_number(), state.next_sequence_number());
                if batch.next_sequence_number > next && watermark.is_none() {
                    return Err(ReadError::BeyondEnd { requested: batch.next_sequence_number, next });
                }
                batch.next_sequence_number = batch.next_sequence_number.max(first);
                // Under a high watermark, a position past it (or past this replica's end)
                // reads nothing yet: the records are on their way.
                if batch.next_sequence_number >= next.min(stop) {
                    return Ok(batch);
                }
                locate(&state, batch.next_sequence_number)
            };
            let want = batch.next_sequence_number;
            let (start, _) = skip(&span, span.start, |h| h.sequence_number >= want)?;
            if !self.read_span(&span, start, Bound { limits, stop }, &mut batch)? {
                return Ok(batch);
            }
        }
    }

    /// Decodes frames of one segment into `batch`; false once a limit is reached.
    fn read_span(
        &self,
        span: &Span,
        mut offset: usize,
        bound: Bound,
        batch: &mut ReadBatch,
    ) -> Result<bool, ReadError> {
        // SAFETY: `span.end` was published under the shard lock.
        let bytes = unsafe { span.map.published(span.end) };
        let segment = batch.segments.len() as u32;
        batch.segments.push(ReadSegment { map: span.map.clone(), end: span.end, frames: offset..offset });
        let more = self.decode_frames(bytes, span, &mut offset, bound, batch);
        batch.segments[segment as usize].frames.end = offset;
        more
    }

    /// Decodes the frames of `bytes` (a segment's published bytes) from `offset` on into
    /// `batch`, moving `offset` past each; false once a limit is reached.
    fn decode_frames(
        &self,
        bytes: &[u8],
        span: &Span,
        offset: &mut usize,
        Bound { limits, stop }: Bound,
        batch: &mut ReadBatch,
    ) -> Result<bool, ReadError> {
        let segment = batch.segments.len() as u32 - 1;
        while *offset < span.end {
            if batch.records.len() >= limits.max_records || batch.next_sequence_number >= stop {
                return Ok(false);
            }
            let f = match frame::decode(&bytes[*offset..]).map_err(|d| corrupt(&span.map, *offset, d))? {
                Decoded::Frame(f) => f,
                Decoded::End => break,
            };
            let expected = batch.next_sequence_number;
            if f.sequence_number != expected {
                let defect = FrameDefect::UnexpectedSequenceNumber { expected, found: f.sequence_number };
                return Err(corrupt(&span.map, *offset, defect));
            }
            let size = f.partition_key.len() + f.data.len();
            if !batch.records.is_empty() && batch.bytes + size > limits.max_bytes {
                return Ok(false);
            }
            batch.records.push(Located {
                segment,
                key_start: (*offset + frame::FRAME_OVERHEAD_BYTES) as u32,
                key_len: f.partition_key.len() as u16,
                data_len: f.data.len() as u32,
                sequence_number: f.sequence_number,
                arrival_timestamp_ms: f.arrival_timestamp_ms,
            });
            batch.bytes += size;
            batch.next_sequence_number += 1;
            *offset += f.len;
        }
        Ok(true)
    }
}
