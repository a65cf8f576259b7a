//! Replica appends (`ShardLog::append_replica`): a follower fed a leader's records in any
//! chunking, across segment rolls and reopens, holds the leader's shard record for record
//! (sequence numbers, arrival times, keys, data), and refuses gaps, overlaps and times that
//! go back without writing anything.

use std::sync::Arc;

use proptest::prelude::*;
use sluice_engine::{AppendError, Durability, ManualClock, ReadLimits, Record, ShardLog, StartingPosition};

use crate::support::{data, read_all, small, T0_MS};

/// Copies the leader's records after the follower's newest, `chunk` records per batch.
pub fn catch_up(leader: &ShardLog, follower: &ShardLog, chunk: usize) {
    loop {
        let from = follower.bounds().next_sequence_number;
        let batch = leader.read(from, ReadLimits { max_records: chunk, ..ReadLimits::default() }).unwrap();
        if batch.is_empty() {
            return;
        }
        let records: Vec<Record<'_>> =
            batch.iter().map(|r| Record { partition_key: r.partition_key, data: r.data }).collect();
        let times: Vec<u64> = batch.iter().map(|r| r.arrival_timestamp_ms).collect();
        follower.append_replica(from, &records, &times).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_follower_holds_the_leaders_records_in_any_chunking(
        batches in prop::collection::vec((prop::collection::vec(0usize..700, 1..10), 0u64..3_000), 1..40),
        chunks in prop::collection::vec(1usize..25, 1..8),
        reopen_every in 2usize..10,
    ) {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let clock = Arc::new(ManualClock::new(T0_MS));
        let leader = ShardLog::open(ld.path(), small(clock.clone(), Durability::Never)).unwrap();
        // The follower's own clock stands still: every time it holds is the leader's.
        let fclock = Arc::new(ManualClock::new(T0_MS));
        let options = small(fclock, Durability::Never);
        let mut follower = ShardLog::open(fd.path(), options.clone()).unwrap();
        let mut n = 0u64;
        for (round, (lens, advance_ms)) in batches.iter().enumerate() {
            clock.advance(*advance_ms);
            let owned: Vec<(String, Vec<u8>)> = lens.iter().map(|len| {
                n += 1;
                (format!("k{}", n % 7), data(n, *len))
            }).collect();
            let records: Vec<Record<'_>> = owned.iter().map(|(k, d)| Record { partition_key: k, data: d }).collect();
            leader.append(&records).unwrap();
            catch_up(&leader, &follower, chunks[round % chunks.len()]);
            if round % reopen_every == reopen_every - 1 {
                drop(follower);
                follower = ShardLog::open(fd.path(), options.clone()).unwrap();
            }
        }
        let want = read_all(&leader);
        prop_assert_eq!(&read_all(&follower), &want);
        prop_assert_eq!(follower.bounds().next_sequence_number, leader.bounds().next_sequence_number);
        // Seeking by time finds the same record on both (the follower's index holds the
        // leader's times).
        for (_, ts, _, _) in want.iter().step_by(7) {
            prop_assert_eq!(
                follower.position(StartingPosition::AtTimestamp(*ts)).unwrap(),
                leader.position(StartingPosition::AtTimestamp(*ts)).unwrap()
            );
        }
        drop(follower);
        let reopened = ShardLog::open(fd.path(), options).unwrap();
        prop_assert_eq!(read_all(&reopened), want);
    }
}

#[test]
fn gaps_overlaps_and_times_going_back_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = ShardLog::open(dir.path(), small(Arc::new(ManualClock::new(T0_MS)), Durability::Never)).unwrap();
    let r = [Record { partition_key: "k", data: b"a" }, Record { partition_key: "k", data: b"b" }];
    log.append_replica(0, &r, &[T0_MS + 5, T0_MS + 5]).unwrap();
    let before = read_all(&log);
    for (first, times, want) in [
        (3, vec![T0_MS + 6, T0_MS + 6], "gap"),
        (1, vec![T0_MS + 6, T0_MS + 6], "overlap"),
        (2, vec![T0_MS + 7, T0_MS + 6], "times going back"),
        (2, vec![T0_MS + 4, T0_MS + 6], "before the newest"),
        (2, vec![T0_MS + 6], "one time for two records"),
    ] {
        let e = log.append_replica(first, &r, &times).unwrap_err();
        match want {
            "gap" | "overlap" => {
                assert!(matches!(e, AppendError::NotNext { expected: 2, found } if found == first), "{want}: {e}")
            }
            _ => assert!(matches!(e, AppendError::Timestamps), "{want}: {e}"),
        }
        assert_eq!(read_all(&log), before, "{want} wrote something");
    }
    log.append_replica(2, &r, &[T0_MS + 5, T0_MS + 9]).unwrap();
    let times: Vec<u64> = read_all(&log).iter().map(|r| r.1).collect();
    assert_eq!(times, [T0_MS + 5, T0_MS + 5, T0_MS + 5, T0_MS + 9]);
}
