//! The high watermark (`ShardLog::track_high_watermark`): a replicated shard's copy serves
//! only the records a quorum holds, whatever the position asked for, while its leader still
//! reads past it to catch replicas up; a log that does not track one reads as before.

use std::sync::Arc;

use proptest::prelude::*;
use sluice_engine::{Durability, ManualClock, ReadError, ReadLimits, ShardLog, StartingPosition};

use crate::support::{fill, small, T0_MS};

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn readers_see_records_below_the_watermark_only(
        count in 1u64..120,
        watermark in 0u64..140,
        from in 0u64..140,
        max_records in 1usize..50,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = ShardLog::open(dir.path(), small(Arc::new(ManualClock::new(T0_MS)), Durability::Never)).unwrap();
        log.track_high_watermark();
        fill(&log, count, 100);
        prop_assert_eq!(log.readable_end(), 0);
        prop_assert!(log.read(0, ReadLimits::default()).unwrap().is_empty());
        log.raise_high_watermark(watermark);
        // Never lowered.
        log.raise_high_watermark(watermark / 2);
        prop_assert_eq!(log.high_watermark(), Some(watermark));
        let visible = watermark.min(count);
        prop_assert_eq!(log.readable_end(), visible);

        let limits = ReadLimits { max_records, ..ReadLimits::default() };
        let batch = log.read(from, limits).unwrap();
        let seen: Vec<u64> = batch.iter().map(|r| r.sequence_number).collect();
        let want: Vec<u64> = (from..visible).take(max_records).collect();
        prop_assert_eq!(&seen, &want);
        prop_assert_eq!(batch.next_sequence_number(), from.max(from + want.len() as u64));

        let all: Vec<u64> = log.read_all(from.min(count), limits).unwrap().iter().map(|r| r.sequence_number).collect();
        prop_assert_eq!(all, (from.min(count)..count).take(max_records).collect::<Vec<_>>());

        prop_assert_eq!(log.position(StartingPosition::Latest).unwrap(), visible);
        prop_assert_eq!(log.position(StartingPosition::TrimHorizon).unwrap(), 0);
        // A position up to the watermark is the shard's even where this copy ends earlier.
        let at = log.position(StartingPosition::AtSequenceNumber(from));
        if from <= count.max(watermark) {
            prop_assert_eq!(at.unwrap(), from);
        } else {
            let beyond = matches!(at, Err(ReadError::BeyondEnd { .. }));
            prop_assert!(beyond);
        }
    }
}

#[test]
fn a_log_without_a_watermark_reads_everything_and_refuses_positions_past_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), small(Arc::new(ManualClock::new(T0_MS)), Durability::Never)).unwrap();
    fill(&log, 10, 50);
    assert_eq!(log.high_watermark(), None);
    assert_eq!(log.read(0, ReadLimits::default()).unwrap().len(), 10);
    assert_eq!(log.position(StartingPosition::Latest).unwrap(), 10);
    assert!(matches!(log.read(11, ReadLimits::default()), Err(ReadError::BeyondEnd { .. })));
    // Raising a watermark that is not tracked changes nothing.
    log.raise_high_watermark(3);
    assert_eq!(log.readable_end(), 10);
    // Tracking can be stopped for good.
    log.track_high_watermark();
    assert_eq!(log.readable_end(), 0);
    log.raise_high_watermark(u64::MAX);
    assert_eq!(log.high_watermark(), None);
    assert_eq!(log.read(0, ReadLimits::default()).unwrap().len(), 10);
}

#[tokio::test]
async fn raising_the_watermark_wakes_readers_waiting_for_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), small(Arc::new(ManualClock::new(T0_MS)), Durability::Never)).unwrap();
    log.track_high_watermark();
    fill(&log, 5, 50);
    let mut appends = log.watch_appends();
    appends.borrow_and_update();
    log.raise_high_watermark(5);
    tokio::time::timeout(std::time::Duration::from_secs(5), appends.changed()).await.unwrap().unwrap();
    assert_eq!(log.read(0, ReadLimits::default()).unwrap().len(), 5);
}

#[test]
fn a_cut_lowers_the_watermark_and_timestamps_past_it_resolve_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let log = ShardLog::open(dir.path(), small(clock.clone(), Durability::Never)).unwrap();
    log.track_high_watermark();
    for _ in 0..20 {
        clock.advance(10);
        fill(&log, 1, 40);
    }
    log.raise_high_watermark(15);
    // Record n arrived at T0 + 10 (n + 1) ms: the one at the watermark and any later
    // timestamp resolve to the watermark, earlier ones to their record.
    let at = |ts: u64| log.position(StartingPosition::AtTimestamp(ts)).unwrap();
    assert_eq!(at(T0_MS + 10 * 6), 5);
    assert_eq!(at(T0_MS + 10 * 18), 15);
    assert_eq!(at(T0_MS + 1_000_000), 15);
    log.truncate(10).unwrap();
    assert_eq!(log.high_watermark(), Some(10));
    // The records that take the cut numbers are not served under the old watermark.
    fill(&log, 5, 40);
    assert_eq!(log.readable_end(), 10);
    assert_eq!(log.read(0, ReadLimits::default()).unwrap().len(), 10);
}
