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
    long.update_meta(|m| {
        m.retention_hours = 48;
        Ok::<_, sluice_engine::error::IoError>(())
    })
    .unwrap();
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

/// Names are never paths: `.` and `..` are valid Kinesis stream names, and creating and
/// deleting them touches nothing but their own directories.
#[test]
fn dot_names_are_streams_like_any_other_and_deleting_them_keeps_everything_else() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let open =
        || Streams::open(dir.path(), small(clock.clone(), Durability::Never), Throttling::default(), 500).unwrap();
    let streams = open();
    let keep = streams.create("keep", 1, T0_MS).unwrap();
    keep.log(0).unwrap().append(&[Record { partition_key: "k", data: b"precious" }]).unwrap();
    for name in [".", "..", "...", "-", "_"] {
        let s = streams.create(name, 1, T0_MS).unwrap();
        assert!(s.dir().starts_with(dir.path().join("streams")), "{name}: {}", s.dir().display());
        assert_ne!(s.dir().file_name().unwrap().to_string_lossy(), name);
        s.log(0).unwrap().append(&[Record { partition_key: "k", data: name.as_bytes() }]).unwrap();
    }
    drop(keep);
    assert!(streams.delete("..").unwrap());
    assert!(streams.delete(".").unwrap());
    assert!(!streams.delete("..").unwrap());
    assert!(dir.path().join("streams").is_dir());
    drop(streams);
    let streams = open();
    let names: Vec<String> = streams.list().iter().map(|s| s.meta().name.clone()).collect();
    assert_eq!(names, ["-", "...", "_", "keep"]);
    let keep = streams.get("keep").unwrap();
    let batch = keep.log(0).unwrap().read(0, sluice_engine::ReadLimits::default()).unwrap();
    assert_eq!(batch.iter().next().unwrap().data, b"precious");
}

/// A delete cut short by a crash (directory renamed, files not yet removed) is finished at
/// the next open; a stream whose metadata is corrupt is quarantined and the rest is served.
#[test]
fn interrupted_deletes_finish_and_a_corrupt_stream_is_quarantined_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let open =
        || Streams::open(dir.path(), small(clock.clone(), Durability::Never), Throttling::default(), 500).unwrap();
    let streams = open();
    let good = streams.create("good", 1, T0_MS).unwrap();
    let bad = streams.create("bad", 1, T0_MS).unwrap();
    let gone = streams.create("gone", 1, T0_MS).unwrap();
    let (bad_dir, gone_dir) = (bad.dir().to_owned(), gone.dir().to_owned());
    good.log(0).unwrap().append(&[Record { partition_key: "k", data: b"x" }]).unwrap();
    drop((good, bad, gone, streams));
    std::fs::write(bad_dir.join("stream.json"), b"{\"name\": \"bad\", \"created_ms\": ").unwrap();
    let trash = gone_dir.with_file_name(format!(".deleted-{}", gone_dir.file_name().unwrap().to_string_lossy()));
    std::fs::rename(&gone_dir, &trash).unwrap();
    // A metadata write that a crash cut short left its temp file.
    let good_dir = std::fs::read_dir(dir.path().join("streams"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p != &bad_dir && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let stale = good_dir.join(".stream.json.tmp-4242-7");
    std::fs::write(&stale, b"{").unwrap();

    let streams = open();
    let names: Vec<String> = streams.list().iter().map(|s| s.meta().name.clone()).collect();
    assert_eq!(names, ["good"]);
    assert_eq!(streams.quarantined().len(), 1);
    assert_eq!(streams.quarantined()[0].dir, bad_dir);
    assert!(streams.quarantined()[0].error.contains("stream.json"), "{}", streams.quarantined()[0].error);
    assert!(!trash.exists(), "the interrupted delete was finished");
    assert!(!stale.exists(), "a crashed write's temp file is removed at open");
    assert!(bad_dir.join("stream.json").exists(), "a quarantined stream's files are kept for inspection");
}

/// Metadata changes are written before they are applied, and concurrent writers never share
/// a temp file: the file on disk always parses and equals what readers see.
#[test]
fn concurrent_metadata_changes_leave_valid_metadata_that_matches_memory() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let streams =
        Streams::open(dir.path(), small(clock.clone(), Durability::Never), Throttling::default(), 500).unwrap();
    let s = streams.create("tags", 1, T0_MS).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..25 {
                    s.update_meta(|m| {
                        m.tags.insert(format!("t{t}-{i}"), "v".into());
                        Ok::<_, sluice_engine::error::IoError>(())
                    })
                    .unwrap();
                }
            });
        }
    });
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.dir().join("stream.json")).unwrap()).unwrap();
    assert_eq!(on_disk["tags"].as_object().unwrap().len(), 100);
    assert_eq!(s.meta().tags.len(), 100);
    let leftovers: Vec<_> = std::fs::read_dir(s.dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
