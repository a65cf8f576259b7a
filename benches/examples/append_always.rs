//! Appends 1 KiB records in batches of 500 to one log for 3 s (sustained, no trimming) and
//! prints MB/s: a loop to profile (`perf record`) outside criterion. Durability `always` by default.
//!
//! Run: `cargo run --release -p sluice-benches --example append_always [threads] [always|interval|never]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_benches::payloads;
use sluice_engine::{Durability, Record, ShardLog, ShardLogOptions};

fn main() {
    let threads: usize = std::env::args().nth(1).map_or(1, |a| a.parse().expect("thread count"));
    let durability = match std::env::args().nth(2).as_deref() {
        None | Some("always") => Durability::Always,
        Some("interval") => Durability::default(),
        Some("never") => Durability::Never,
        Some(other) => panic!("durability is always, interval or never, not {other}"),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let log = Arc::new(ShardLog::open(dir.path(), ShardLogOptions { durability, ..Default::default() }).expect("open"));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                let data = payloads(500, 1024);
                let records: Vec<Record> =
                    data.iter().map(|d| Record { partition_key: "station-1", data: d }).collect();
                let mut bytes = 0usize;
                while start.elapsed() < Duration::from_secs(3) {
                    log.append(&records).expect("append");
                    bytes += 500 * 1024;
                }
                bytes
            })
        })
        .collect();
    let bytes: usize = handles.into_iter().map(|h| h.join().expect("appender")).sum();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{threads} appender(s): {:.0} MB/s ({:.0} records/s)",
        bytes as f64 / secs / 1e6,
        bytes as f64 / 1024.0 / secs
    );
}
