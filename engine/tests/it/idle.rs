//! What an idle shard costs: no thread of its own, no open file descriptor once idle, and
//! 64 KiB of disk (issue 17: 1,500 shards held 1,510 threads, 1,514 descriptors and 3,000
//! MiB of preallocated segments, and a default `ulimit -n` of 1,024 stopped the server).

use sluice_engine::{Durability, ReadLimits, Record, ShardLog, ShardLogOptions, StartingPosition};

/// Threads of this process named `name` (`/proc/self/task/*/comm`).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

fn bytes_under(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        total += if meta.is_dir() { bytes_under(&e.path()) } else { meta.len() };
    }
    total
}

#[test]
fn idle_shards_hold_no_thread_no_descriptor_and_64_kib_of_disk() {
    const SHARDS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let options = ShardLogOptions {
        durability: Durability::Interval(std::time::Duration::from_millis(20)),
        ..Default::default()
    };
    let logs: Vec<ShardLog> =
        (0..SHARDS).map(|i| ShardLog::open(dir.path().join(format!("shard-{i}")), options.clone()).unwrap()).collect();
    for (i, log) in logs.iter().enumerate() {
        let data = format!("record of shard {i}");
        log.append(&[Record { partition_key: "k", data: data.as_bytes() }]).unwrap();
    }
    // One scheduler thread syncs every log (and up to 8 helpers while several need it), not
    // one thread per log.
    let sync_threads = threads_named("shard-log-sync");
    assert!(sync_threads <= 9, "{sync_threads} sync threads for {SHARDS} logs");

    // Two housekeeping passes: the first marks descriptors unused, the second closes them.
    std::thread::sleep(std::time::Duration::from_millis(100));
    for _ in 0..2 {
        logs.iter().for_each(|l| l.release_pages().unwrap());
    }
    let open: usize = logs.iter().map(ShardLog::open_files).sum();
    assert_eq!(open, 0, "idle logs still hold descriptors");
    let per_shard = bytes_under(dir.path()) / SHARDS as u64;
    assert!(per_shard <= 64 << 10, "an idle shard holds {per_shard} bytes of disk");

    // A closed descriptor is opened again by the next append and sync, and nothing is lost.
    for (i, log) in logs.iter().enumerate() {
        log.append(&[Record { partition_key: "k", data: format!("second of {i}").as_bytes() }]).unwrap();
        log.sync().unwrap();
    }
    drop(logs);
    for i in [0, SHARDS / 2, SHARDS - 1] {
        let log = ShardLog::open(dir.path().join(format!("shard-{i}")), options.clone()).unwrap();
        let from = log.position(StartingPosition::TrimHorizon).unwrap();
        let batch = log.read(from, ReadLimits::default()).unwrap();
        let data: Vec<String> = batch.iter().map(|r| String::from_utf8(r.data.to_vec()).unwrap()).collect();
        assert_eq!(data, [format!("record of shard {i}"), format!("second of {i}")]);
    }
}

/// Found by benches/cost_curves.sh: 1,000 idle streams held 1,013 descriptors. A log that
/// never took a record kept the descriptor its header was written through (waiting for a
/// sync that only records trigger), and under `Never` no sync ever came.
#[test]
fn logs_without_records_or_without_syncs_hold_no_descriptor_once_idle() {
    let dir = tempfile::tempdir().unwrap();
    let interval = ShardLogOptions {
        durability: Durability::Interval(std::time::Duration::from_millis(20)),
        ..Default::default()
    };
    let never = ShardLogOptions { durability: Durability::Never, ..Default::default() };
    let empty: Vec<ShardLog> =
        (0..20).map(|i| ShardLog::open(dir.path().join(format!("empty-{i}")), interval.clone()).unwrap()).collect();
    let unsynced: Vec<ShardLog> =
        (0..20).map(|i| ShardLog::open(dir.path().join(format!("never-{i}")), never.clone()).unwrap()).collect();
    for log in &unsynced {
        log.append(&[Record { partition_key: "k", data: b"under Never" }]).unwrap();
    }
    for _ in 0..2 {
        empty.iter().chain(&unsynced).for_each(|l| l.release_pages().unwrap());
    }
    assert_eq!(empty.iter().map(ShardLog::open_files).sum::<usize>(), 0, "logs that never took a record");
    assert_eq!(unsynced.iter().map(ShardLog::open_files).sum::<usize>(), 0, "logs under Never");
    for log in empty.iter().chain(&unsynced) {
        log.append(&[Record { partition_key: "k", data: b"after the close" }]).unwrap();
    }
    drop((empty, unsynced));
    for name in ["empty-3", "never-3"] {
        let log = ShardLog::open(dir.path().join(name), never.clone()).unwrap();
        let batch = log.read(0, ReadLimits::default()).unwrap();
        assert_eq!(batch.iter().last().unwrap().data, b"after the close", "{name}");
    }
}
