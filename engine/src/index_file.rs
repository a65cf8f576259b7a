//! The index file of a segment: what a scan of its frames up to some end would find, kept
//! beside it so that opening a shard reads a few hundred bytes per segment instead of every
//! retained byte (issue 17: 20 GB in 64 shards must answer within 2 s of a start).
//!
//! Design notes:
//! - Describes a prefix of the segment's frames that is durable under the log's policy, so
//!   it never describes frames the disk may not hold: written by the once-a-second
//!   housekeeping (for the active segment too, as a checkpoint, each time another
//!   [`ACTIVE_STEP_BYTES`] of its frames are durable), at close, and by an open that had to
//!   scan frames. Opening reads and verifies only the frames after that prefix.
//! - Not synced itself: an index file lost or torn by a power cut is missing or fails its
//!   checksum, and the segment is scanned as before.
//! - Opening trusts an index file only after checking it against the segment: its checksum,
//!   its first sequence number and the segment's size, the order and bounds of every entry,
//!   and the frames after its last entry, decoded and verified up to the end it names.
//!   Frames before that are verified lazily, by the reads that return them, which name
//!   file and offset on a bad checksum as an open would have.
//! - Named `<first sequence number, 20 digits>.idx`, like its segment.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size   | field                                                  |
//! |--------|--------|--------------------------------------------------------|
//! | 0      | 8      | magic, `SLUICEIX`                                      |
//! | 8      | 4      | format version (`u32`, 1)                              |
//! | 12     | 4      | entry count `N` (`u32`)                                |
//! | 16     | 8      | segment size, bytes (`u64`)                            |
//! | 24     | 8      | first sequence number (`u64`)                          |
//! | 32     | 8      | one past the last sequence number (`u64`)              |
//! | 40     | 8      | end of the frames, byte offset (`u64`)                 |
//! | 48     | 8      | arrival timestamp of the first frame, ms (`u64`)       |
//! | 56     | 8      | arrival timestamp of the last frame, ms (`u64`)        |
//! | 64     | 20 × N | entries: sequence number `u64`, timestamp `u64`, offset `u32` |
//! | 64+20N | 4      | CRC32 of every byte before it (`u32`)                  |

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::frame::{self, Decoded};
use crate::index::{IndexEntry, SparseIndex};
use crate::segment::HEADER_BYTES;

const MAGIC: [u8; 8] = *b"SLUICEIX";
const VERSION: u32 = 1;
const FIXED_BYTES: usize = 64;
const ENTRY_BYTES: usize = 20;

/// How many more bytes of an active segment's frames must be durable before its index file
/// is written again: 1 MiB bounds what an open reads of it, at one small file per MiB.
pub const ACTIVE_STEP_BYTES: usize = 1 << 20;

/// What a scan of a sealed segment found: where its frames end, the sequence numbers and
/// timestamps they span, and the sparse index over them.
#[derive(Debug, Clone)]
pub struct SegmentSummary {
    /// First sequence number of the segment (its name).
    pub first_sequence_number: u64,
    /// One past the last sequence number it holds.
    pub next_sequence_number: u64,
    /// Byte offset just past the last frame.
    pub end: usize,
    /// Arrival timestamp of the first frame (ms), 0 when there is none.
    pub first_timestamp_ms: u64,
    /// Arrival timestamp of the last frame (ms), 0 when there is none.
    pub last_timestamp_ms: u64,
    /// The sparse index over the frames.
    pub index: SparseIndex,
}

impl SegmentSummary {
    /// A segment named for `first_sequence_number` that holds no frame yet, with both
    /// timestamps at `timestamp_ms`.
    pub fn empty(first_sequence_number: u64, timestamp_ms: u64) -> Self {
        Self {
            first_sequence_number,
            next_sequence_number: first_sequence_number,
            end: HEADER_BYTES,
            first_timestamp_ms: timestamp_ms,
            last_timestamp_ms: timestamp_ms,
            index: SparseIndex::default(),
        }
    }
}

/// The index file of the segment at `segment_path` (`….seg` → `….idx`).
pub fn path_of(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("idx")
}

/// The first sequence number an index file name carries, if it is an index file's name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    crate::segment::parse_numbered_name(name, ".idx")
}

fn encode(summary: &SegmentSummary, segment_bytes: usize) -> Vec<u8> {
    let entries = summary.index.entries();
    let mut out = Vec::with_capacity(FIXED_BYTES + ENTRY_BYTES * entries.len() + 4);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for v in [
        segment_bytes as u64,
        summary.first_sequence_number,
        summary.next_sequence_number,
        summary.end as u64,
        summary.first_timestamp_ms,
        summary.last_timestamp_ms,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for e in entries {
        out.extend_from_slice(&e.sequence_number.to_le_bytes());
        out.extend_from_slice(&e.arrival_timestamp_ms.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Writes the index file of a sealed segment of `segment_bytes` bytes. Not synced (see the
/// module notes); a failure leaves at most a file the next open refuses.
///
/// Errors: the write failed.
pub fn write(segment_path: &Path, summary: &SegmentSummary, segment_bytes: usize) -> io::Result<()> {
    fs::write(path_of(segment_path), encode(summary, segment_bytes))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Decodes an index file and checks it against the segment it describes: `segment` is the
/// whole mapped segment, named for `first_sequence_number`. `Err` says why it is not to be
/// trusted (the caller scans the segment instead).
pub fn decode(bytes: &[u8], first_sequence_number: u64, segment: &[u8]) -> Result<SegmentSummary, &'static str> {
    if bytes.len() < FIXED_BYTES + 4 || bytes[..8] != MAGIC {
        return Err("not an index file");
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if u32_at(crc, 0) != crc32fast::hash(body) {
        return Err("checksum mismatch");
    }
    if u32_at(body, 8) != VERSION {
        return Err("unknown version");
    }
    let count = u32_at(body, 12) as usize;
    if body.len() != FIXED_BYTES + count * ENTRY_BYTES {
        return Err("entry count does not match the length");
    }
    if u64_at(body, 16) != segment.len() as u64 {
        return Err("the segment's size changed");
    }
    let summary_first = u64_at(body, 24);
    let next = u64_at(body, 32);
    let end = u64_at(body, 40);
    let (first_ts, last_ts) = (u64_at(body, 48), u64_at(body, 56));
    if summary_first != first_sequence_number {
        return Err("first sequence number differs from the file name");
    }
    if next < first_sequence_number || end < HEADER_BYTES as u64 || end > segment.len() as u64 || first_ts > last_ts {
        return Err("bounds out of range");
    }
    let end = end as usize;
    let mut index = SparseIndex::default();
    let mut previous: Option<IndexEntry> = None;
    for chunk in body[FIXED_BYTES..].chunks_exact(ENTRY_BYTES) {
        let e = IndexEntry {
            sequence_number: u64_at(chunk, 0),
            arrival_timestamp_ms: u64_at(chunk, 8),
            offset: u32_at(chunk, 16),
        };
        let in_bounds = (first_sequence_number..next).contains(&e.sequence_number)
            && (first_ts..=last_ts).contains(&e.arrival_timestamp_ms)
            && (HEADER_BYTES..end).contains(&(e.offset as usize));
        let ordered = previous.is_none_or(|p| {
            p.sequence_number < e.sequence_number
                && p.arrival_timestamp_ms <= e.arrival_timestamp_ms
                && p.offset < e.offset
        });
        if !in_bounds || !ordered {
            return Err("an entry is out of order or out of bounds");
        }
        index.push(e);
        previous = Some(e);
    }
    let holds_records = next > first_sequence_number;
    let first_entry_right = index.entries().first().is_some_and(|e| {
        e.sequence_number == first_sequence_number
            && e.offset as usize == HEADER_BYTES
            && e.arrival_timestamp_ms == first_ts
    });
    if holds_records != first_entry_right || (!holds_records && end != HEADER_BYTES) {
        return Err("the first entry is not the first frame");
    }
    let summary = SegmentSummary {
        first_sequence_number,
        next_sequence_number: next,
        end,
        first_timestamp_ms: first_ts,
        last_timestamp_ms: last_ts,
        index,
    };
    check_tail(&summary, segment)?;
    Ok(summary)
}

/// Verifies the frames after the last index entry: they must run, checksums good, to the
/// end and the last sequence number and timestamp the summary names. This is what a crash
/// between writing frames and writing the index could have left inconsistent; it costs at
/// most one index interval of decoding. Frames after that end are the opener's to scan.
fn check_tail(summary: &SegmentSummary, segment: &[u8]) -> Result<(), &'static str> {
    let end = summary.end;
    let Some(last) = summary.index.entries().last() else {
        return Ok(());
    };
    let (mut offset, mut expected) = (last.offset as usize, last.sequence_number);
    let mut last_ts = None;
    while offset < end {
        let Ok(Decoded::Frame(f)) = frame::decode(&segment[offset..end]) else {
            return Err("a frame after the last entry does not verify");
        };
        if f.sequence_number != expected {
            return Err("a frame after the last entry has an unexpected sequence number");
        }
        last_ts = Some(f.arrival_timestamp_ms);
        offset += f.len;
        expected += 1;
    }
    if offset != end || expected != summary.next_sequence_number || last_ts != Some(summary.last_timestamp_ms) {
        return Err("the frames after the last entry do not reach the end it names");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_with(frames: &[(u64, u64, &[u8])], size: usize) -> (Vec<u8>, SegmentSummary) {
        let mut seg = vec![0u8; size];
        let mut offset = HEADER_BYTES;
        let mut index = SparseIndex::default();
        for &(seq, ts, data) in frames {
            let len = frame::frame_len(1, data.len());
            frame::encode(&mut seg[offset..offset + len], seq, ts, b"k", data);
            if seq % 2 == 0 {
                index.push(IndexEntry { sequence_number: seq, arrival_timestamp_ms: ts, offset: offset as u32 });
            }
            offset += len;
        }
        let summary = SegmentSummary {
            first_sequence_number: frames[0].0,
            next_sequence_number: frames.last().unwrap().0 + 1,
            end: offset,
            first_timestamp_ms: frames[0].1,
            last_timestamp_ms: frames.last().unwrap().1,
            index,
        };
        (seg, summary)
    }

    #[test]
    fn round_trips_and_refuses_every_damaged_byte() {
        let (seg, summary) = segment_with(&[(10, 5, b"a"), (11, 6, b"bb"), (12, 6, b"ccc"), (13, 9, b"d")], 512);
        let bytes = encode(&summary, seg.len());
        let back = decode(&bytes, 10, &seg).unwrap();
        assert_eq!((back.next_sequence_number, back.end, back.last_timestamp_ms), (14, summary.end, 9));
        assert_eq!(back.index.entries(), summary.index.entries());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, 10, &seg).is_err(), "damage at byte {i} went unnoticed");
        }
        assert!(decode(&bytes, 11, &seg).is_err(), "another segment's name");
        assert!(decode(&bytes, 10, &seg[..256]).is_err(), "another size");
    }

    #[test]
    fn refuses_a_summary_the_frames_do_not_bear_out() {
        let (seg, summary) = segment_with(&[(0, 1, b"a"), (1, 1, b"b"), (2, 2, b"c")], 512);
        // Claims one record more than the segment holds, as if written before a lost write.
        let mut longer = summary.clone();
        longer.next_sequence_number += 1;
        assert!(decode(&encode(&longer, seg.len()), 0, &seg).is_err());
        // Claims an end short of the last frame.
        let mut shorter = summary.clone();
        shorter.end -= 1;
        assert!(decode(&encode(&shorter, seg.len()), 0, &seg).is_err());
        // A damaged frame after the last entry.
        let mut damaged = seg.clone();
        damaged[summary.end - 1] ^= 1;
        assert!(decode(&encode(&summary, seg.len()), 0, &damaged).is_err());
        // Frames written after the end it names are the opener's to scan, not a defect.
        let (grown, _) = segment_with(&[(0, 1, b"a"), (1, 1, b"b"), (2, 2, b"c"), (3, 2, b"d")], 512);
        assert_eq!(decode(&encode(&summary, seg.len()), 0, &grown).unwrap().end, summary.end);
    }

    #[test]
    fn names_pair_with_segments() {
        let seg = Path::new("/d/00000000000000000042.seg");
        assert_eq!(path_of(seg), Path::new("/d/00000000000000000042.idx"));
        assert_eq!(parse_file_name("00000000000000000042.idx"), Some(42));
        assert_eq!(parse_file_name("42.idx"), None);
    }
}
