//! Truncation (`ShardLog::truncate`): a replica that holds a tail its old leader never got
//! acknowledged cuts it and then holds the new leader's shard record for record, across
//! segment rolls and reopens; reads begun before the cut keep the bytes they read; a cut
//! below the trim horizon or past the end changes nothing.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sluice_engine::{
    Durability, ManualClock, ReadLimits, Record, ShardLog, StartingPosition, TruncateError, TruncateReport,
};

use crate::replica::catch_up;
use crate::support::{data, read_all, small, T0_MS};

/// Appends `count` records of `len` bytes keyed `prefix…`, one batch per 5 records.
fn append_own(log: &ShardLog, prefix: &str, count: u64, len: usize) {
    let owned: Vec<(String, Vec<u8>)> =
        (0..count).map(|n| (format!("{prefix}{}", n % 5), data(n + 1_000, len))).collect();
    for chunk in owned.chunks(5) {
        let records: Vec<Record<'_>> = chunk.iter().map(|(k, d)| Record { partition_key: k, data: d }).collect();
        log.append(&records).unwrap();
    }
}

/// The first sequence numbers of the segment files in `dir`.
fn segment_starts(dir: &std::path::Path) -> Vec<u64> {
    let mut starts: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    starts.sort_unstable();
    starts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_replica_cuts_its_unacknowledged_tail_and_then_holds_the_new_leaders_records(
        batches in prop::collection::vec((prop::collection::vec(0usize..700, 1..8), 0u64..2_000), 2..30),
        shared_fraction in 0.0f64..1.0,
        own_tail in 1u64..60,
        own_len in 0usize..900,
        cut_at_a_segment_start in any::<bool>(),
        reopen_before_cut in any::<bool>(),
        durability in prop::sample::select(vec![Durability::Never, Durability::Always, Durability::Interval(Duration::from_millis(5))]),
    ) {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let clock = Arc::new(ManualClock::new(T0_MS));
        let leader = ShardLog::open(ld.path(), small(clock.clone(), Durability::Never)).unwrap();
        let mut n = 0u64;
        for (lens, advance_ms) in &batches {
            clock.advance(*advance_ms);
            let owned: Vec<(String, Vec<u8>)> = lens.iter().map(|len| {
                n += 1;
                (format!("k{}", n % 7), data(n, *len))
            }).collect();
            let records: Vec<Record<'_>> = owned.iter().map(|(k, d)| Record { partition_key: k, data: d }).collect();
            leader.append(&records).unwrap();
        }
        let end = leader.bounds().next_sequence_number;
        // The replica (an old leader) holds the first `shared` records, then its own tail.
        let shared = ((end as f64) * shared_fraction) as u64;
        let options = small(clock.clone(), durability);
        let mut replica = ShardLog::open(fd.path(), options.clone()).unwrap();
        if shared > 0 {
            let part = ShardLog::open(tempfile::tempdir().unwrap().keep(), small(clock.clone(), Durability::Never)).unwrap();
            let prefix = leader.read(0, ReadLimits { max_records: shared as usize, ..ReadLimits::default() }).unwrap();
            let records: Vec<Record<'_>> = prefix.iter().map(|r| Record { partition_key: r.partition_key, data: r.data }).collect();
            let times: Vec<u64> = prefix.iter().map(|r| r.arrival_timestamp_ms).collect();
            part.append_replica(0, &records, &times).unwrap();
            catch_up(&part, &replica, 13);
        }
        clock.advance(1);
        append_own(&replica, "own", own_tail, own_len);
        if reopen_before_cut {
            drop(replica);
            replica = ShardLog::open(fd.path(), options.clone()).unwrap();
        }
        let before = read_all(&replica);
        // Where the two agree; sometimes a segment boundary inside the replica's own tail
        // is cut instead (more is removed, and catching up redoes it).
        let mut cut = shared;
        if cut_at_a_segment_start {
            if let Some(s) = segment_starts(fd.path()).into_iter().filter(|s| *s <= shared).max() {
                cut = s;
            }
        }
        // A read that began before the cut.
        let early = replica.read(cut, ReadLimits::default()).unwrap();
        let early_records: Vec<(u64, Vec<u8>)> = early.iter().map(|r| (r.sequence_number, r.data.to_vec())).collect();

        let report = replica.truncate(cut).unwrap();
        prop_assert_eq!(report.records_removed, shared + own_tail - cut);
        prop_assert_eq!(replica.bounds().next_sequence_number, cut);
        prop_assert_eq!(read_all(&replica), before[..cut as usize].to_vec());

        catch_up(&leader, &replica, 17);
        let want = read_all(&leader);
        prop_assert_eq!(&read_all(&replica), &want);
        for (_, ts, _, _) in want.iter().step_by(5) {
            prop_assert_eq!(
                replica.position(StartingPosition::AtTimestamp(*ts)).unwrap(),
                leader.position(StartingPosition::AtTimestamp(*ts)).unwrap()
            );
        }
        // The early read still holds what it read, though the same sequence numbers now
        // name the leader's records.
        let still: Vec<(u64, Vec<u8>)> = early.iter().map(|r| (r.sequence_number, r.data.to_vec())).collect();
        prop_assert_eq!(still, early_records);
        // More appends, then a reopen: the cut and the leader's records are what is on disk.
        clock.advance(5);
        append_own(&replica, "after", 7, 100);
        let want = read_all(&replica);
        drop(replica);
        let reopened = ShardLog::open(fd.path(), options).unwrap();
        prop_assert_eq!(read_all(&reopened), want);
    }
}

#[test]
fn a_cut_below_the_trim_horizon_or_past_the_end_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock.clone(), Durability::Never)).unwrap();
    append_own(&log, "k", 40, 300);
    clock.advance(60_000);
    append_own(&log, "k", 40, 300);
    log.trim(Duration::from_secs(30)).unwrap();
    let first = log.bounds().first_sequence_number;
    assert!(first > 0, "retention removed a segment");
    let before = read_all(&log);
    match log.truncate(first - 1) {
        Err(TruncateError::BelowTrimHorizon { requested, first: f }) => assert_eq!((requested, f), (first - 1, first)),
        other => panic!("a cut below the trim horizon: {other:?}"),
    }
    assert_eq!(log.truncate(80).unwrap(), TruncateReport::default());
    assert_eq!(log.truncate(1_000).unwrap(), TruncateReport::default());
    assert_eq!(read_all(&log), before);
    // At the trim horizon itself: nothing is left, and the next record gets that number.
    let report = log.truncate(first).unwrap();
    assert_eq!(report.records_removed, 80 - first);
    assert!(read_all(&log).is_empty());
    append_own(&log, "again", 3, 10);
    assert_eq!(read_all(&log).first().map(|r| r.0), Some(first));
    drop(log);
    let reopened = ShardLog::open(dir.path(), small(clock, Durability::Never)).unwrap();
    assert_eq!(reopened.bounds().first_sequence_number, first);
    assert_eq!(reopened.bounds().next_sequence_number, first + 3);
}

#[test]
fn a_corrupt_frame_before_the_cut_refuses_the_cut_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock, Durability::Never)).unwrap();
    append_own(&log, "k", 6, 100);
    // Damage the data of the second record (the active segment, just past its header).
    let path = dir.path().join(format!("{:020}.seg", 0));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == &data(1_001, 100)[..4]).expect("second record's data");
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    match log.truncate(4) {
        Err(TruncateError::Corrupt(c)) => assert_eq!(c.path, path),
        other => panic!("a cut over a corrupt frame: {other:?}"),
    }
    assert_eq!(log.bounds().next_sequence_number, 6);
}
