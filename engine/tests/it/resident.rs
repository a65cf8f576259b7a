//! Mapped segment pages count as the process's memory only while they are being read:
//! appends and recovery leave nothing mapped, reads map pages, a large read unmaps its own
//! when dropped, `release_pages` unmaps what small reads left.

use std::path::Path;
use std::sync::Arc;

use sluice_engine::{Durability, ManualClock, ReadLimits, ShardLog, ShardLogOptions, RELEASE_AFTER_BYTES};

use crate::support::{fill, read_all, small, T0_MS};

/// KiB of this process's resident memory mapped from files under `dir` (`/proc/self/smaps`).
fn mapped_kib(dir: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    let dir = dir.to_str().expect("a UTF-8 temporary path");
    let mut in_dir = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && first.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            in_dir = fields.nth(4).is_some_and(|path| path.starts_with(dir));
        } else if in_dir && first == "Rss:" {
            kib += fields.next().and_then(|n| n.parse::<u64>().ok()).expect("Rss: N kB");
        }
    }
    kib
}

#[test]
fn reads_map_segment_pages_and_release_pages_unmaps_them_without_losing_a_byte() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let options = ShardLogOptions { segment_bytes: 1 << 20, ..small(clock, Durability::Always) };
    let log = ShardLog::open(dir.path(), options.clone()).unwrap();
    fill(&log, 3_000, 1_000);
    assert!(log.bounds().segments >= 3, "3 MB of records in 1 MiB segments roll");
    assert_eq!(mapped_kib(dir.path()), 0, "appends write with pwrite and map nothing");

    // Small reads (100 records, ~100 KB) leave their pages to the housekeeping.
    let mut written = Vec::new();
    let mut from = 0;
    loop {
        let batch = log.read(from, ReadLimits { max_records: 100, ..ReadLimits::default() }).unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.bytes() < RELEASE_AFTER_BYTES);
        written.extend(
            batch
                .iter()
                .map(|r| (r.sequence_number, r.arrival_timestamp_ms, r.partition_key.to_owned(), r.data.to_vec())),
        );
        from = batch.next_sequence_number();
    }
    assert_eq!(written.len(), 3_000);
    let after_read = mapped_kib(dir.path());
    assert!(after_read >= 2_900, "reading ~2.9 MiB of frames mapped only {after_read} KiB");

    log.release_pages().unwrap();
    assert_eq!(mapped_kib(dir.path()), 0);

    // A large read holds its pages while its records are used, and unmaps them when dropped.
    let batch = log.read(0, ReadLimits::default()).unwrap();
    assert!(batch.bytes() >= RELEASE_AFTER_BYTES);
    let held = mapped_kib(dir.path());
    assert!(held >= 900, "a read of {} bytes mapped only {held} KiB", batch.bytes());
    let copied: Vec<Vec<u8>> = batch.iter().map(|r| r.data.to_vec()).collect();
    drop(batch);
    let left = mapped_kib(dir.path());
    assert!(left <= 8, "{left} KiB still mapped after the large read was dropped");
    assert!(copied.iter().zip(&written).all(|(d, w)| *d == w.3), "the large read returned what was written");

    assert_eq!(read_all(&log), written, "the same bytes are read after their pages were unmapped");
    log.release_pages().unwrap();
    drop(log);

    let log = ShardLog::open(dir.path(), options).unwrap();
    assert_eq!(log.recovery().records, 3_000);
    assert_eq!(mapped_kib(dir.path()), 0, "recovery's scan leaves nothing mapped");
    assert_eq!(read_all(&log), written);
}
