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

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
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

#[test]
fn a_flipped_byte_in_a_sealed_segment_fails_open_with_file_and_offset() {
    let (dir, options) = closed_log(30);
    let files = segments(dir.path());
    assert!(files.len() >= 3);
    let sealed = &files[1];
    // Byte 10 of the third frame's data.
    let frame_start = (HEADER_BYTES + 2 * FRAME) as u64;
    flip(sealed, frame_start + (FRAME_OVERHEAD_BYTES + 2 + 10) as u64);
    match ShardLog::open(dir.path(), options) {
        Err(OpenError::Corrupt(c)) => {
            assert_eq!(&c.path, sealed);
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
