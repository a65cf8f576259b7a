//! Appends, reads, positions, limits and retention on a real log in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use sluice_engine::limits::PARTITION_KEY_CHARS_MAX;
use sluice_engine::{
    AppendError, Durability, ManualClock, OpenError, ReadError, ReadLimits, Record, ShardLog, ShardLogOptions,
    StartingPosition,
};

use crate::support::{data, fill, read_all, small, T0_MS};

#[test]
fn appends_get_dense_sequence_numbers_and_read_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock.clone(), Durability::Never)).unwrap();
    let a =
        log.append(&[Record { partition_key: "a", data: b"one" }, Record { partition_key: "b", data: b"" }]).unwrap();
    clock.advance(5);
    let b = log.append(&[Record { partition_key: "ключ", data: b"three" }]).unwrap();
    assert_eq!(a.sequence_numbers(), 0..2);
    assert_eq!(a.arrival_timestamp_ms, T0_MS);
    assert_eq!(b.sequence_numbers(), 2..3);
    assert_eq!(
        read_all(&log),
        vec![
            (0, T0_MS, "a".into(), b"one".to_vec()),
            (1, T0_MS, "b".into(), vec![]),
            (2, T0_MS + 5, "ключ".into(), b"three".to_vec()),
        ]
    );
}

#[test]
fn a_new_log_starts_at_the_given_sequence_number_and_reopens_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let options = ShardLogOptions { first_sequence_number: 1_000, ..small(clock, Durability::Always) };
    let log = ShardLog::open(dir.path(), options.clone()).unwrap();
    fill(&log, 40, 300);
    assert!(log.bounds().segments > 2, "300-byte records in 4 KiB segments roll");
    let before = read_all(&log);
    drop(log);
    let log = ShardLog::open(dir.path(), options).unwrap();
    assert_eq!(log.recovery().records, 40);
    assert!(log.recovery().torn_tail.is_none());
    assert_eq!(read_all(&log), before);
    assert_eq!(log.append(&[Record { partition_key: "k", data: b"x" }]).unwrap().first_sequence_number, 1_040);
}

#[test]
fn a_batch_larger_than_a_segment_spans_segments_but_no_record_does() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock, Durability::Always)).unwrap();
    let payloads: Vec<Vec<u8>> = (0..20).map(|n| data(n, 1000)).collect();
    let batch: Vec<Record> = payloads.iter().map(|d| Record { partition_key: "k", data: d }).collect();
    let appended = log.append(&batch).unwrap();
    assert_eq!(appended.sequence_numbers(), 0..20);
    // 1,000-byte records: three fit a 4 KiB segment (4064 bytes after the header).
    assert_eq!(log.bounds().segments, 7);
    let read: Vec<Vec<u8>> = read_all(&log).into_iter().map(|r| r.3).collect();
    assert_eq!(read, payloads);
}

#[test]
fn bad_batches_are_refused_whole_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock, Durability::Never)).unwrap();
    fill(&log, 3, 10);
    let long_key = "é".repeat(PARTITION_KEY_CHARS_MAX + 1);
    let max_key = "é".repeat(PARTITION_KEY_CHARS_MAX);
    let big = vec![0u8; 1024];
    let ok = Record { partition_key: "k", data: b"fine" };
    let cases: Vec<(Vec<Record>, &str)> = vec![
        (vec![], "EmptyBatch"),
        (vec![ok, Record { partition_key: "", data: b"x" }], "PartitionKeyLength { index: 1, chars: 0 }"),
        (vec![ok, ok, Record { partition_key: &long_key, data: b"x" }], "PartitionKeyLength { index: 2, chars: 257 }"),
        (vec![Record { partition_key: "k", data: &big }, ok], "RecordTooLarge { index: 0, bytes: 1025, limit: 1024 }"),
    ];
    for (batch, expected) in cases {
        let err = log.append(&batch).unwrap_err();
        assert_eq!(format!("{err:?}"), expected);
        assert_eq!(log.bounds().next_sequence_number, 3, "{expected} wrote something");
    }
    // A 256-character key of 2-byte characters is 512 bytes, and allowed.
    log.append(&[Record { partition_key: &max_key, data: b"x" }]).unwrap();
    assert!(matches!(
        log.append(&[Record { partition_key: &max_key, data: &big[..600] }]),
        Err(AppendError::RecordTooLarge { bytes: 1112, .. })
    ));
}

#[test]
fn reads_honour_record_and_byte_limits_and_always_make_progress() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock, Durability::Never)).unwrap();
    fill(&log, 30, 98); // 2-byte keys: 100 bytes a record
    let b = log.read(0, ReadLimits { max_records: 7, max_bytes: usize::MAX }).unwrap();
    assert_eq!((b.len(), b.next_sequence_number(), b.bytes()), (7, 7, 700));
    let b = log.read(7, ReadLimits { max_records: 100, max_bytes: 450 }).unwrap();
    assert_eq!((b.len(), b.next_sequence_number()), (4, 11));
    let b = log.read(11, ReadLimits { max_records: 100, max_bytes: 1 }).unwrap();
    assert_eq!(b.len(), 1, "a record larger than max_bytes still comes alone");
    let b = log.read(30, ReadLimits::default()).unwrap();
    assert!(b.is_empty());
    assert_eq!(b.next_sequence_number(), 30);
    assert!(matches!(log.read(31, ReadLimits::default()), Err(ReadError::BeyondEnd { requested: 31, next: 30 })));
}

#[test]
fn starting_positions_resolve_like_kinesis_iterators() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock.clone(), Durability::Never)).unwrap();
    // Ten batches of three records, 1 s apart: sequence numbers 3t..3t+2 arrive at T0 + t s.
    for t in 0..10u64 {
        let d = data(t, 200);
        let r = Record { partition_key: "k", data: &d };
        log.append(&[r, r, r]).unwrap();
        clock.advance(1_000);
    }
    use StartingPosition::*;
    assert_eq!(log.position(TrimHorizon).unwrap(), 0);
    assert_eq!(log.position(Latest).unwrap(), 30);
    assert_eq!(log.position(AtSequenceNumber(17)).unwrap(), 17);
    assert_eq!(log.position(AfterSequenceNumber(17)).unwrap(), 18);
    assert_eq!(log.position(AfterSequenceNumber(29)).unwrap(), 30);
    assert!(matches!(log.position(AtSequenceNumber(31)), Err(ReadError::BeyondEnd { .. })));
    assert_eq!(log.position(AtTimestamp(0)).unwrap(), 0);
    assert_eq!(log.position(AtTimestamp(T0_MS + 4_000)).unwrap(), 12);
    assert_eq!(log.position(AtTimestamp(T0_MS + 4_001)).unwrap(), 15);
    assert_eq!(log.position(AtTimestamp(T0_MS + 9_000)).unwrap(), 27);
    assert_eq!(log.position(AtTimestamp(T0_MS + 9_001)).unwrap(), 30);
}

#[test]
fn a_clock_that_steps_back_does_not_make_timestamps_decrease() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock.clone(), Durability::Never)).unwrap();
    log.append(&[Record { partition_key: "k", data: b"1" }]).unwrap();
    clock.set(T0_MS - 60_000);
    let a = log.append(&[Record { partition_key: "k", data: b"2" }]).unwrap();
    assert_eq!(a.arrival_timestamp_ms, T0_MS);
}

#[test]
fn retention_deletes_whole_old_segments_and_reads_move_to_the_trim_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock.clone(), Durability::Always)).unwrap();
    fill(&log, 12, 1000); // 3 a segment: segments [0..3) [3..6) [6..9) [9..12)
    clock.advance(3_600_000);
    fill(&log, 3, 1000); // rolls: [12..15) arrives an hour later
    assert_eq!(log.bounds().segments, 5);
    let report = log.trim(Duration::from_secs(1_800)).unwrap();
    assert_eq!((report.segments_deleted, report.records_deleted), (4, 12));
    assert_eq!(log.bounds().first_sequence_number, 12);
    assert_eq!(log.position(StartingPosition::TrimHorizon).unwrap(), 12);
    assert_eq!(log.position(StartingPosition::AtSequenceNumber(3)).unwrap(), 12);
    let b = log.read(0, ReadLimits::default()).unwrap();
    assert_eq!(b.iter().next().unwrap().sequence_number, 12);
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert_eq!(files, 1);
    // The active segment stays, however old.
    clock.advance(10 * 3_600_000);
    assert_eq!(log.trim(Duration::from_secs(1)).unwrap().segments_deleted, 0);
    assert_eq!(log.bounds().first_sequence_number, 12);
}

#[test]
fn concurrent_appenders_under_group_commit_get_disjoint_contiguous_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let options = ShardLogOptions {
        segment_bytes: 64 << 10,
        max_record_bytes: 8 << 10,
        durability: Durability::Always,
        ..Default::default()
    };
    let log = Arc::new(ShardLog::open(dir.path(), options).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for n in 0..50u64 {
                    let d = data(t * 1_000 + n, 100 + (n as usize % 5) * 300);
                    let key = format!("thread-{t}");
                    let a = log
                        .append(&[Record { partition_key: &key, data: &d }, Record { partition_key: &key, data: &d }])
                        .unwrap();
                    got.push((a.first_sequence_number, t * 1_000 + n));
                }
                got
            })
        })
        .collect();
    let mut acked: Vec<(u64, u64)> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    acked.sort_unstable();
    assert_eq!(acked.len(), 400);
    let all = read_all(&log);
    assert_eq!(all.len(), 800);
    for (i, (first, n)) in acked.iter().enumerate() {
        assert_eq!(*first, 2 * i as u64, "ranges are disjoint and contiguous");
        let expected = data(*n, 100 + (n % 1_000) as usize % 5 * 300);
        assert_eq!(all[2 * i].3, expected);
        assert_eq!(all[2 * i + 1].3, expected);
        assert_eq!(all[2 * i].2, format!("thread-{}", n / 1_000));
    }
}

#[test]
fn interval_durability_syncs_in_the_background_and_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let options = ShardLogOptions { durability: Durability::Interval(Duration::from_millis(5)), ..Default::default() };
    let log = ShardLog::open(dir.path(), options.clone()).unwrap();
    fill(&log, 100, 500);
    std::thread::sleep(Duration::from_millis(20));
    log.sync().unwrap();
    drop(log);
    let log = ShardLog::open(dir.path(), options).unwrap();
    assert_eq!(log.bounds().next_sequence_number, 100);
}

#[test]
fn options_that_cannot_work_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ShardLogOptions { segment_bytes: 1 << 20, ..Default::default() },
        ShardLogOptions { max_record_bytes: 0, ..Default::default() },
        ShardLogOptions { max_record_bytes: (10 << 20) + 1, ..Default::default() },
        ShardLogOptions { segment_bytes: (1 << 30) + 1, ..Default::default() },
        ShardLogOptions { durability: Durability::Interval(Duration::ZERO), ..Default::default() },
    ];
    for options in cases {
        assert!(matches!(ShardLog::open(dir.path(), options), Err(OpenError::InvalidOptions(_))));
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "a refused open creates nothing");
}

#[test]
fn segments_start_small_and_double_up_to_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let options = ShardLogOptions {
        segment_bytes: 256 << 10,
        max_record_bytes: 64 << 10,
        durability: Durability::Never,
        ..Default::default()
    };
    let log = ShardLog::open(dir.path(), options).unwrap();
    let big = vec![1u8; 30_000];
    for _ in 0..12 {
        log.append(&[Record { partition_key: "k", data: &big }]).unwrap();
    }
    drop(log);
    let mut sizes: Vec<(String, u64)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| (e.file_name().into_string().unwrap(), e.metadata().unwrap().len()))
        .collect();
    sizes.sort();
    let sizes: Vec<u64> = sizes.into_iter().map(|(_, len)| len >> 10).collect();
    // 64 KiB holds 2 records, 128 KiB holds 4, 256 KiB holds 8: 12 records need 2 + 4 + 8.
    assert_eq!(sizes, [64, 128, 256]);
}

#[test]
fn records_larger_than_the_first_segment_get_segments_that_hold_them() {
    let dir = tempfile::tempdir().unwrap();
    let options = ShardLogOptions { max_record_bytes: 10 << 20, durability: Durability::Never, ..Default::default() };
    let records = [data(1, 5 << 20), data(2, 100), data(3, (10 << 20) - 1)];
    {
        let log = ShardLog::open(dir.path(), options.clone()).unwrap();
        for d in &records {
            log.append(&[Record { partition_key: "k", data: d }]).unwrap();
        }
        assert_eq!(read_all(&log).into_iter().map(|r| r.3).collect::<Vec<_>>(), records);
    }
    let log = ShardLog::open(dir.path(), options).unwrap();
    let back: Vec<Vec<u8>> = read_all(&log).into_iter().map(|r| r.3).collect();
    assert_eq!(back, records, "the records are read back after a reopen");
}
