//! Helpers shared by the shard log tests.

use std::sync::Arc;

use sluice_engine::{Durability, ManualClock, ReadLimits, Record, ShardLog, ShardLogOptions};

/// 2023-11-14T22:13:20Z, a fixed start for manual clocks.
pub const T0_MS: u64 = 1_700_000_000_000;

/// Options with 4 KiB segments and records of at most 1 KiB, so a few appends roll segments.
pub fn small(clock: Arc<ManualClock>, durability: Durability) -> ShardLogOptions {
    ShardLogOptions {
        segment_bytes: 4096,
        max_record_bytes: 1024,
        durability,
        index_interval_bytes: 256,
        clock,
        ..ShardLogOptions::default()
    }
}

/// Deterministic data for the `n`th record of a test: `len` bytes that differ per record.
pub fn data(n: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (n as usize * 31 + i * 7) as u8).collect()
}

/// Reads the whole retained shard as (sequence number, timestamp, key, data).
pub fn read_all(log: &ShardLog) -> Vec<(u64, u64, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut from = log.bounds().first_sequence_number;
    loop {
        let batch = log.read(from, ReadLimits::default()).expect("read");
        if batch.is_empty() {
            return out;
        }
        out.extend(
            batch
                .iter()
                .map(|r| (r.sequence_number, r.arrival_timestamp_ms, r.partition_key.to_owned(), r.data.to_vec())),
        );
        from = batch.next_sequence_number();
    }
}

/// Appends `count` single-record batches of `len` bytes, keys `k0`..`k4`.
pub fn fill(log: &ShardLog, count: u64, len: usize) {
    for n in 0..count {
        let d = data(n, len);
        let key = format!("k{}", n % 5);
        log.append(&[Record { partition_key: &key, data: &d }]).expect("append");
    }
}
