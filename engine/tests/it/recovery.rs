//! What opening does with damage: torn tails are cut, corruption elsewhere is reported
//! with its file and offset, and reads report corruption that appears later.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_engine::frame::{frame_len, FRAME_OVERHEAD_BYTES};
use sluice_engine::segment::{file_name, HEADER_BYTES};
use sluice_engine::{
    Durability, FrameDefect, ManualClock, OpenError, ReadError, ReadLimits, Record, ShardLog, ShardLogOptions,
};

use crate::support::{data, fill, read_all, small, T0_MS};

/// The files of `dir` named `*.<extension>`, sorted.
fn files_named(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    v.sort();
    v
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    files_named(dir, "seg")
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, offset).unwrap();
}

fn flip(path: &Path, offset: u64) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], offset).unwrap();
}

/// 300-byte records under key "kN": 326 + 2 bytes a frame, 12 frames a 4 KiB segment.
const LEN: usize = 300;
const FRAME: usize = FRAME_OVERHEAD_BYTES + 2 + LEN;

/// A closed log of `records` records of `LEN` bytes, with the options to reopen it.
fn closed_log(records: u64) -> (tempfile::TempDir, ShardLogOptions) {
    let dir = tempfile::tempdir().unwrap();
    let options = small(Arc::new(ManualClock::new(T0_MS)), Durability::Always);
    let log = ShardLog::open(dir.path(), options.clone()).unwrap();
    fill(&log, records, LEN);
    drop(log);
    (dir, options)
}

#[test]
fn a_torn_tail_in_the_active_segment_is_cut_and_appends_continue() {
    let (dir, options) = closed_log(5);
    // A power cut mid-copy: the last frame's data is half written (garbage in its body).
    let active = segments(dir.path()).pop().unwrap();
    let last = (HEADER_BYTES + 4 * FRAME) as u64;
    write_at(&active, last + 100, &[0xAB; 50]);
    let log = ShardLog::open(dir.path(), options.clone()).unwrap();
    let torn = log.recovery().torn_tail.clone().expect("torn tail reported");
    assert_eq!(torn.path, active);
    assert_eq!(torn.offset, last);
    assert!(matches!(torn.defect, Some(FrameDefect::Checksum { .. })));
    assert_eq!(log.recovery().records, 4);
    assert_eq!(log.bounds().next_sequence_number, 4);
    let d = data(99, 10);
    assert_eq!(log.append(&[Record { partition_key: "new", data: &d }]).unwrap().first_sequence_number, 4);
    drop(log);
    let log = ShardLog::open(dir.path(), options).unwrap();
    assert!(log.recovery().torn_tail.is_none(), "the cut tail was zeroed, not left to confuse the next open");
    let all = read_all(&log);
    assert_eq!(all.len(), 5);
    assert_eq!(all[4].3, d);
}

#[test]
fn stray_bytes_after_a_clean_end_are_zeroed() {
    let (dir, options) = closed_log(2);
    // A page written back ahead of the one before it: a complete old frame past the end.
    let active = segments(dir.path()).pop().unwrap();
    let mut frame = vec![0u8; FRAME];
    sluice_engine::frame::encode(&mut frame, 3, T0_MS, b"k3", &data(3, LEN));
    write_at(&active, (HEADER_BYTES + 3 * FRAME) as u64, &frame);
    let log = ShardLog::open(dir.path(), options).unwrap();
    let torn = log.recovery().torn_tail.clone().expect("stale bytes reported");
    assert_eq!(torn.offset, (HEADER_BYTES + 2 * FRAME) as u64);
    assert_eq!(torn.defect, None);
    // Record 2 now lands where the gap was; the stale frame 3 must not appear after it.
    log.append(&[Record { partition_key: "k2", data: &data(2, LEN) }]).unwrap();
    assert_eq!(read_all(&log).len(), 3);
}

fn index_files(dir: &Path) -> Vec<PathBuf> {
    files_named(dir, "idx")
}

/// Flips byte 10 of the data of the third frame of the second segment; returns the
/// segment and the frame's offset.
fn damage_second_segment(dir: &Path) -> (PathBuf, u64) {
    let files = segments(dir);
    assert!(files.len() >= 3);
    let frame_start = (HEADER_BYTES + 2 * FRAME) as u64;
    flip(&files[1], frame_start + (FRAME_OVERHEAD_BYTES + 2 + 10) as u64);
    (files[1].clone(), frame_start)
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_without_index_file_fails_open_with_file_and_offset() {
    let (dir, options) = closed_log(30);
    for f in index_files(dir.path()) {
        std::fs::remove_file(f).unwrap();
    }
    let (sealed, frame_start) = damage_second_segment(dir.path());
    match ShardLog::open(dir.path(), options) {
        Err(OpenError::Corrupt(c)) => {
            assert_eq!(c.path, sealed);
            assert_eq!(c.offset, frame_start);
            assert!(matches!(c.defect, FrameDefect::Checksum { .. }));
            let message = c.to_string();
            assert!(
                message.contains(&sealed.display().to_string()) && message.contains("byte offset 688"),
                "{message}"
            );
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn sealed_segments_open_from_their_index_files_and_a_bad_frame_fails_the_read_that_meets_it() {
    let (dir, options) = closed_log(30);
    let before = read_all(&ShardLog::open(dir.path(), options.clone()).unwrap());
    // Closing wrote an index file for each segment (two of 12 records, the active one of 6).
    assert_eq!(index_files(dir.path()).len(), segments(dir.path()).len());
    let (sealed, frame_start) = damage_second_segment(dir.path());
    let log = ShardLog::open(dir.path(), options).unwrap();
    assert_eq!(log.recovery().bytes_scanned, 0, "no frame is read at open");
    assert_eq!((log.recovery().records, log.bounds().next_sequence_number), (30, 30));
    // Record 14 is the damaged one (second segment, third frame).
    match log.read(12, ReadLimits::default()).unwrap_err() {
        ReadError::Corrupt(c) => {
            assert_eq!((c.path, c.offset), (sealed, frame_start));
            assert!(matches!(c.defect, FrameDefect::Checksum { .. }));
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let first_two = log.read(12, ReadLimits { max_records: 2, ..Default::default() }).unwrap();
    let got: Vec<_> = first_two.iter().map(|r| r.data.to_vec()).collect();
    assert_eq!(got, vec![before[12].3.clone(), before[13].3.clone()]);
    let after: Vec<_> = log.read(15, ReadLimits::default()).unwrap().iter().map(|r| r.data.to_vec()).collect();
    assert!(after == before[15..].iter().map(|r| r.3.clone()).collect::<Vec<_>>(), "records after the damage differ");
}

#[test]
fn a_damaged_or_lying_index_file_is_not_trusted_and_is_rewritten() {
    let (dir, options) = closed_log(30);
    let before = read_all(&ShardLog::open(dir.path(), options.clone()).unwrap());
    let idx = index_files(dir.path());
    // A torn index file, and one that claims a record its segment does not hold.
    flip(&idx[0], 30);
    let mut lying = std::fs::read(&idx[1]).unwrap();
    let next = u64::from_le_bytes(lying[32..40].try_into().unwrap());
    lying[32..40].copy_from_slice(&(next + 1).to_le_bytes());
    let body = lying.len() - 4;
    let crc = crc32fast::hash(&lying[..body]);
    lying[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&idx[1], &lying).unwrap();
    let log = ShardLog::open(dir.path(), options.clone()).unwrap();
    assert_eq!(log.recovery().bytes_scanned, 24 * FRAME as u64, "both sealed segments scanned, not the active one");
    assert!(read_all(&log) == before, "records differ after the reopen");
    drop(log);
    let log = ShardLog::open(dir.path(), options).unwrap();
    assert_eq!(log.recovery().bytes_scanned, 0, "the scans wrote good index files");
    assert!(read_all(&log) == before, "records differ after the reopen");
}

#[test]
fn index_files_go_with_their_segments() {
    let clock = Arc::new(ManualClock::new(T0_MS));
    let dir = tempfile::tempdir().unwrap();
    let options = small(clock.clone(), Durability::Interval(std::time::Duration::from_secs(3600)));
    let log = ShardLog::open(dir.path(), options.clone()).unwrap();
    fill(&log, 30, LEN);
    // Not durable yet under the interval policy: no index file may describe those frames.
    log.release_pages().unwrap();
    assert!(index_files(dir.path()).is_empty());
    log.sync().unwrap();
    log.release_pages().unwrap();
    assert_eq!(index_files(dir.path()).len(), 2);
    clock.advance(10_000);
    log.append(&[Record { partition_key: "k", data: &data(30, LEN) }]).unwrap();
    let trimmed = log.trim(std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(trimmed.segments_deleted, 2);
    assert!(index_files(dir.path()).is_empty(), "retention deleted the index files with their segments");
    drop(log);
    // An index file whose segment is gone (a crash between the two deletions) is removed.
    std::fs::write(dir.path().join("00000000000000000000.idx"), b"stale").unwrap();
    let log = ShardLog::open(dir.path(), options).unwrap();
    let active = segments(dir.path()).pop().unwrap();
    assert_eq!(index_files(dir.path()), vec![active.with_extension("idx")], "closing indexed the active segment");
    assert_eq!(log.bounds().first_sequence_number, 24);
}

#[test]
fn corruption_after_open_is_reported_by_the_read_that_meets_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock, Durability::Always)).unwrap();
    fill(&log, 30, LEN);
    let first = segments(dir.path()).remove(0);
    let frame_start = (HEADER_BYTES + 5 * FRAME) as u64;
    flip(&first, frame_start + 40);
    let err = log.read(0, ReadLimits::default()).unwrap_err();
    match err {
        ReadError::Corrupt(c) => {
            assert_eq!(c.path, first);
            assert_eq!(c.offset, frame_start);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Records before the damage still read; so do later segments.
    assert_eq!(log.read(0, ReadLimits { max_records: 5, ..Default::default() }).unwrap().len(), 5);
    assert_eq!(log.read(12, ReadLimits::default()).unwrap().iter().next().unwrap().data, &data(12, LEN)[..]);
}

#[test]
fn a_missing_segment_is_a_sequence_gap() {
    let (dir, options) = closed_log(30);
    let files = segments(dir.path());
    std::fs::remove_file(&files[1]).unwrap();
    match ShardLog::open(dir.path(), options) {
        Err(OpenError::SequenceGap { path, expected, found }) => {
            assert_eq!(path, files[2]);
            assert_eq!((expected, found), (12, 24));
        }
        other => panic!("expected a gap, got {other:?}"),
    }
}

#[test]
fn a_header_never_written_back_is_rebuilt_from_the_file_name() {
    let (dir, options) = closed_log(13); // 12 fill the first segment; the 13th rolls
    let active = segments(dir.path()).pop().unwrap();
    assert!(active.ends_with(file_name(12)));
    write_at(&active, 0, &[0u8; HEADER_BYTES + FRAME]);
    let log = ShardLog::open(dir.path(), options).unwrap();
    assert_eq!(log.bounds().next_sequence_number, 12);
    assert_eq!(frame_len(2, LEN), FRAME);
}

#[test]
fn the_active_segment_is_checkpointed_at_its_durable_end_and_an_open_reads_only_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let options = ShardLogOptions {
        durability: Durability::Interval(std::time::Duration::from_secs(3600)),
        clock: Arc::new(ManualClock::new(T0_MS)),
        ..ShardLogOptions::default()
    };
    let log = ShardLog::open(dir.path(), options.clone()).unwrap();
    let d: Vec<Vec<u8>> = (0..100).map(|n| data(n, 1000)).collect();
    let batch: Vec<Record> = d.iter().map(|d| Record { partition_key: "k", data: d }).collect();
    // 6 MB durable, the active segment (4 MiB) about half full; then 300 records not yet durable.
    for _ in 0..60 {
        log.append(&batch).unwrap();
    }
    log.sync().unwrap();
    for _ in 0..3 {
        log.append(&batch).unwrap();
    }
    log.release_pages().unwrap();
    let active = segments(dir.path()).pop().unwrap();
    assert!(active.with_extension("idx").exists(), "the active segment has a checkpoint");
    let expected = read_all(&log);
    // A crash: nothing runs at close.
    std::mem::forget(log);
    let log = ShardLog::open(dir.path(), options).unwrap();
    assert_eq!(log.recovery().bytes_scanned, 300 * frame_len(1, 1000) as u64, "only frames past the durable end");
    assert_eq!(log.bounds().next_sequence_number, 6300);
    assert!(read_all(&log) == expected, "records differ after the reopen");
}
