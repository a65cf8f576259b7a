//! Streams over shard logs: routing, persistence of metadata, retention across streams.

use std::sync::Arc;

use sluice_engine::hash_key::hash_key_of;
use sluice_engine::streams::{Streams, Throttling};
use sluice_engine::{Durability, ManualClock, Record};

use crate::support::{small, T0_MS};

#[test]
fn retention_trims_each_stream_by_its_own_period_and_metadata_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let open =
        || Streams::open(dir.path(), small(clock.clone(), Durability::Never), Throttling::default(), 500).unwrap();
    let streams = open();
    let short = streams.create("short", 1, T0_MS).unwrap();
    let long = streams.create("long", 1, T0_MS).unwrap();
    long.meta_mut().retention_hours = 48;
    long.persist().unwrap();
    let data = vec![7u8; 900];
    for stream in [&short, &long] {
        let log = stream.log(stream.route(hash_key_of("k"))).unwrap();
        for _ in 0..8 {
            log.append(&[Record { partition_key: "k", data: &data }]).unwrap(); // 4 per 4 KiB segment
        }
    }
    clock.advance(25 * 3_600_000);
    for stream in [&short, &long] {
        stream.log(0).unwrap().append(&[Record { partition_key: "k", data: &data }]).unwrap();
    }
    // "short" (24 h) loses its two full old segments; "long" (48 h) keeps everything.
    assert_eq!(streams.trim_expired(), 8);
    assert_eq!(short.log(0).unwrap().bounds().first_sequence_number, 8);
    assert_eq!(long.log(0).unwrap().bounds().first_sequence_number, 0);
    drop((short, long, streams));

    let streams = open();
    assert_eq!(streams.list().len(), 2);
    assert_eq!(streams.get("long").unwrap().meta().retention_hours, 48);
    assert_eq!(streams.get("short").unwrap().log(0).unwrap().bounds().next_sequence_number, 9);
}
