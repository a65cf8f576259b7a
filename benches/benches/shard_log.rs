//! Shard log hot paths: append (100 B and 1 KiB records, batches of 1 and 500, each
//! durability policy), sequential read with checksum verification, and a follower's catch-up
//! (read a leader's batch, append it as a replica: what a replica of a cluster shard does).
//!
//! Run: `cargo bench -p sluice-benches --bench shard_log`. Throughput is reported in bytes
//! of record data; records/s is that divided by the record size.
//!
//! Each append sample writes into a fresh log that is deleted afterwards, so it measures the
//! append path (encode, checksum, copy into the page cache, sync) rather than the disk's
//! sustained write-back, whose dirty pages the deletion discards. For sustained figures on
//! one long-lived log see `examples/append_always.rs`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_benches::payloads;
use sluice_engine::{Durability, ReadLimits, Record, ShardLog, ShardLogOptions};

const SIZES: [usize; 2] = [100, 1024];
const BATCHES: [usize; 2] = [1, 500];

fn policies() -> [(&'static str, Durability); 3] {
    [("never", Durability::Never), ("interval", Durability::default()), ("always", Durability::Always)]
}

fn append(c: &mut Criterion) {
    for (name, durability) in policies() {
        let mut group = c.benchmark_group(format!("append/{name}"));
        group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
        for size in SIZES {
            for batch in BATCHES {
                let data = payloads(batch, size);
                let keys: Vec<String> = (0..batch).map(|i| format!("station-{}", i % 12)).collect();
                let records: Vec<Record> =
                    data.iter().zip(&keys).map(|(d, k)| Record { partition_key: k, data: d }).collect();
                group.throughput(Throughput::Bytes((size * batch) as u64));
                group.bench_function(BenchmarkId::new(format!("{size}B"), format!("batch{batch}")), |b| {
                    b.iter_custom(|iters| {
                        // A fresh log per sample keeps disk use bounded; opening it (and
                        // deleting it) stays outside the timed loop.
                        let dir = tempfile::tempdir().unwrap();
                        let log =
                            ShardLog::open(dir.path(), ShardLogOptions { durability, ..Default::default() }).unwrap();
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(log.append(&records).unwrap());
                        }
                        let elapsed = start.elapsed();
                        drop(log);
                        elapsed
                    })
                });
            }
        }
        group.finish();
    }
}

fn sequential_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read/sequential");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    for size in SIZES {
        let dir = tempfile::tempdir().unwrap();
        let log = ShardLog::open(dir.path(), ShardLogOptions { durability: Durability::Never, ..Default::default() })
            .unwrap();
        let data = payloads(500, size);
        let records: Vec<Record> = data.iter().map(|d| Record { partition_key: "station-1", data: d }).collect();
        let total_bytes = 256usize << 20;
        let batches = total_bytes / (size * 500);
        for _ in 0..batches {
            log.append(&records).unwrap();
        }
        group.throughput(Throughput::Bytes((batches * 500 * size) as u64));
        group.bench_function(BenchmarkId::new(format!("{size}B"), "256MiB"), |b| {
            b.iter(|| {
                let mut from = 0;
                let mut seen = 0usize;
                loop {
                    let batch = log.read(from, ReadLimits::default()).unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    for r in batch.iter() {
                        seen += black_box(r.data).len();
                    }
                    from = batch.next_sequence_number();
                }
                assert_eq!(seen, batches * 500 * size);
            })
        });
    }
    group.finish();
}

fn replicate(c: &mut Criterion) {
    let mut group = c.benchmark_group("replicate/interval");
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    for size in SIZES {
        let dir = tempfile::tempdir().unwrap();
        let leader =
            ShardLog::open(dir.path(), ShardLogOptions { durability: Durability::Never, ..Default::default() })
                .unwrap();
        let data = payloads(500, size);
        let keys: Vec<String> = (0..500).map(|i| format!("station-{}", i % 12)).collect();
        let records: Vec<Record> = data.iter().zip(&keys).map(|(d, k)| Record { partition_key: k, data: d }).collect();
        let batches = (64usize << 20) / (size * 500);
        for _ in 0..batches {
            leader.append(&records).unwrap();
        }
        group.throughput(Throughput::Bytes((batches * 500 * size) as u64));
        group.bench_function(BenchmarkId::new(format!("{size}B"), "64MiB"), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let fdir = tempfile::tempdir().unwrap();
                    let follower = ShardLog::open(fdir.path(), ShardLogOptions::default()).unwrap();
                    let start = Instant::now();
                    let mut from = 0;
                    loop {
                        let batch =
                            leader.read(from, ReadLimits { max_records: 500, ..ReadLimits::default() }).unwrap();
                        if batch.is_empty() {
                            break;
                        }
                        let rs: Vec<Record> =
                            batch.iter().map(|r| Record { partition_key: r.partition_key, data: r.data }).collect();
                        let ts: Vec<u64> = batch.iter().map(|r| r.arrival_timestamp_ms).collect();
                        black_box(follower.append_replica(from, &rs, &ts).unwrap());
                        from = batch.next_sequence_number();
                    }
                    elapsed += start.elapsed();
                    drop(follower);
                }
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, append, sequential_read, replicate);
criterion_main!(benches);
