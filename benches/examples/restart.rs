//! How long a restart takes with much data retained: fills a data directory with one stream
//! of N shards and G GB of 1 KiB records, then times opening it (`Streams::open`, what
//! `sluice serve` does before it answers), warm or with the page cache dropped.
//!
//! Run:
//! - `cargo run --release -p sluice-benches --example restart -- fill <data_dir> [shards=64] [GB=20]`
//! - `cargo run --release -p sluice-benches --example restart -- open <data_dir> [--cold] [--no-index]`
//!
//! `--cold` syncs and drops the page cache first (needs root); `--no-index` deletes the
//! segments' index files first, which is what every open cost before they existed (the
//! open writes them again).

use std::path::Path;
use std::time::Instant;

use sluice_benches::payloads;
use sluice_engine::streams::{Streams, Throttling};
use sluice_engine::{Clock, Durability, Record, ShardLogOptions};

const STREAM: &str = "restart";

fn options() -> ShardLogOptions {
    ShardLogOptions { durability: Durability::Never, ..ShardLogOptions::default() }
}

fn open(dir: &Path) -> Streams {
    Streams::open(dir, options(), Throttling { off: true, ..Throttling::default() }, 100_000).expect("open data dir")
}

fn fill(dir: &Path, shards: u32, gb: f64) {
    let streams = open(dir);
    let stream = streams.create(STREAM, shards, sluice_engine::SystemClock.now_ms()).expect("create stream");
    let per_shard = (gb * 1e9 / f64::from(shards)) as usize;
    let start = Instant::now();
    std::thread::scope(|s| {
        for worker in 0..2u32 {
            let stream = &stream;
            s.spawn(move || {
                let data = payloads(500, 1024);
                let records: Vec<Record> = data.iter().map(|d| Record { partition_key: "k", data: d }).collect();
                for index in (worker..shards).step_by(2) {
                    let log = stream.log(index).expect("shard");
                    let mut written = 0;
                    while written < per_shard {
                        log.append(&records).expect("append");
                        written += 500 * 1024;
                    }
                }
            });
        }
    });
    println!("filled {shards} shards with {gb} GB in {:.1} s", start.elapsed().as_secs_f64());
}

fn reopen(dir: &Path, cold: bool, no_index: bool) {
    if no_index {
        let mut removed = 0;
        for stream in std::fs::read_dir(dir.join("streams")).expect("streams dir") {
            for shard in std::fs::read_dir(stream.expect("entry").path()).into_iter().flatten() {
                for file in std::fs::read_dir(shard.expect("entry").path()).into_iter().flatten() {
                    let path = file.expect("entry").path();
                    if path.extension().is_some_and(|e| e == "idx") {
                        std::fs::remove_file(path).expect("remove index file");
                        removed += 1;
                    }
                }
            }
        }
        println!("removed {removed} index files");
    }
    if cold {
        // SAFETY: plain syscall.
        unsafe { libc::sync() };
        std::fs::write("/proc/sys/vm/drop_caches", "3").expect("drop caches (root only)");
    }
    let start = Instant::now();
    let streams = open(dir);
    let elapsed = start.elapsed();
    let logs = streams.get(STREAM).expect("stream").logs();
    let segments: usize = logs.iter().map(|l| l.recovery().segments).sum();
    let scanned: u64 = logs.iter().map(|l| l.recovery().bytes_scanned).sum();
    let records: u64 = logs.iter().map(|l| l.recovery().records).sum();
    println!(
        "opened {} shards, {records} records, {segments} segments, {:.1} MB of frames read and verified, in {} ms ({})",
        logs.len(),
        scanned as f64 / 1e6,
        elapsed.as_millis(),
        if cold { "page cache dropped" } else { "warm" }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(command), Some(dir)) = (positional.first(), positional.get(1)) else {
        eprintln!("usage: restart fill <data_dir> [shards] [GB] | restart open <data_dir> [--cold] [--no-index]");
        std::process::exit(2);
    };
    let dir = Path::new(dir.as_str());
    match command.as_str() {
        "fill" => {
            let shards = positional.get(2).map_or(64, |s| s.parse().expect("shard count"));
            let gb = positional.get(3).map_or(20.0, |s| s.parse().expect("GB"));
            fill(dir, shards, gb);
        }
        "open" => reopen(dir, flag("--cold"), flag("--no-index")),
        other => panic!("unknown command {other}"),
    }
}
