//! Kinesis queues over HTTP/1.1 on loopback, the server in this process (throttling off,
//! `fsync = "interval"`, unsigned requests):
//!
//! 1. Throughput: 8 consumers receive (10 at a time) and acknowledge `records` records of
//!    100 B from a 4-shard on-demand stream, 1% of them left unacknowledged so they go to the
//!    dead-letter area (MaxReceiveCount 1, visibility 1 s): records/s acknowledged.
//! 2. The queue's state on disk afterwards (snapshot + journal), bytes, and per million records.
//! 3. Long-poll wake-up: one consumer waits (WaitTimeSeconds 20) on an empty queue; a producer
//!    puts one record; the time from just before the PutRecord to the receive's answer,
//!    p50/p99 over `polls` records.
//!
//! Run: `cargo run --release -p sluice-benches --example queue [records] [polls]`.

mod common;
mod server_allocator;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::call;
use serde_json::{json, Value};
use sluice::config::{Auth, Config, Throttle};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let records: u64 = args.next().map_or(200_000, |a| a.parse().expect("records"));
    let polls: usize = args.next().map_or(500, |a| a.parse().expect("polls"));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        auth: Auth::None,
        throttle: Throttle::Off,
        stream_transition_ms: 0,
        ..Config::default()
    };
    let (addr, client) = common::start(&config).await;
    let b64 = base64::engine::general_purpose::STANDARD;

    // 1. Throughput.
    call(
        &client,
        &addr,
        "CreateStream",
        json!({ "StreamName": "work", "StreamModeDetails": { "StreamMode": "ON_DEMAND" } }),
    )
    .await;
    let mut put = 0u64;
    while put < records {
        let n = (records - put).min(500);
        let entries: Vec<Value> = (put..put + n)
            .map(|i| {
                let mut data = format!("{i:012}").into_bytes();
                data.resize(100, b'x');
                json!({ "Data": b64.encode(&data), "PartitionKey": format!("k{}", i % 1000) })
            })
            .collect();
        call(&client, &addr, "PutRecords", json!({ "StreamName": "work", "Records": entries })).await;
        put += n;
    }
    let queue = call(
        &client,
        &addr,
        "CreateQueue",
        json!({
            "QueueName": "q",
            "StreamConfigurationList": [{ "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/work", "StartingPosition": { "Type": "TRIM_HORIZON" } }],
            "QueueAttributes": { "VisibilityTimeoutSeconds": 1, "DeadLetterConfiguration": { "TargetType": "BUILT_IN", "MaxReceiveCount": 1 } },
        }),
    )
    .await["QueueDescription"]["QueueARN"]
        .as_str()
        .expect("ARN")
        .to_owned();
    let poison = records / 100;
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let consumers: Vec<_> = (0..8)
        .map(|_| {
            let (client, addr, queue, acked) = (client.clone(), addr.clone(), queue.clone(), acked.clone());
            tokio::spawn(async move {
                while acked.load(Ordering::Relaxed) < records - poison {
                    let out = call(
                        &client,
                        &addr,
                        "ReceiveQueueRecords",
                        json!({ "QueueARN": queue, "Limit": 10, "WaitTimeSeconds": 1 }),
                    )
                    .await;
                    let entries: Vec<Value> = out["QueueRecords"]
                        .as_array()
                        .expect("records")
                        .iter()
                        .filter(|r| {
                            let data = base64::engine::general_purpose::STANDARD
                                .decode(r["Data"].as_str().expect("data"))
                                .expect("base64");
                            let n: u64 = std::str::from_utf8(&data[..12]).expect("digits").parse().expect("number");
                            !n.is_multiple_of(100)
                        })
                        .map(|r| json!({ "ReceiptHandle": r["ReceiptHandle"] }))
                        .collect();
                    if entries.is_empty() {
                        continue;
                    }
                    let out = call(
                        &client,
                        &addr,
                        "AcknowledgeQueueRecords",
                        json!({ "QueueARN": queue, "Entries": entries }),
                    )
                    .await;
                    acked.fetch_add(out["Successful"].as_array().expect("list").len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for c in consumers {
        c.await.expect("consumer");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "receive + acknowledge, 8 consumers, {} of {records} records of 100 B acknowledged (1% left to the dead-letter area): {:.1} s, {:.0} records/s",
        acked.load(Ordering::Relaxed),
        secs,
        acked.load(Ordering::Relaxed) as f64 / secs
    );

    // 2. State on disk.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    call(&client, &addr, "ReceiveQueueRecords", json!({ "QueueARN": queue, "Limit": 10 })).await; // dead-letters what is due
    let (mut snapshot, mut journal) = (0u64, 0u64);
    for q in std::fs::read_dir(dir.path().join("queues")).expect("queues").flatten().filter(|e| e.path().is_dir()) {
        for f in std::fs::read_dir(q.path()).expect("queue folder").flatten() {
            let len = f.metadata().map_or(0, |m| m.len());
            match f.file_name().to_string_lossy() {
                n if n == "state.json" => snapshot += len,
                n if n.starts_with("journal-") => journal += len,
                _ => {}
            }
        }
    }
    println!(
        "queue state on disk after {records} records ({poison} dead letters, the rest acknowledged): snapshot {snapshot} bytes ({:.0} bytes per million records), journal {journal} bytes (at most {} lines before the next snapshot), {} bytes in all",
        snapshot as f64 * 1e6 / records as f64,
        20_000,
        dir_bytes(&dir.path().join("queues"))
    );

    // 3. Long-poll wake-up latency.
    call(
        &client,
        &addr,
        "CreateStream",
        json!({ "StreamName": "poll", "StreamModeDetails": { "StreamMode": "ON_DEMAND" } }),
    )
    .await;
    call(
        &client,
        &addr,
        "CreateQueue",
        json!({ "QueueName": "p", "StreamConfigurationList": [{ "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/poll" }] }),
    )
    .await;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:queue/p";
    let mut latencies = Vec::with_capacity(polls);
    for i in 0..polls {
        let (c2, a2) = (client.clone(), addr.clone());
        let waiter = tokio::spawn(async move {
            let out =
                call(&c2, &a2, "ReceiveQueueRecords", json!({ "QueueARN": arn, "Limit": 1, "WaitTimeSeconds": 20 }))
                    .await;
            let answered = Instant::now();
            let handle = out["QueueRecords"][0]["ReceiptHandle"].clone();
            call(
                &c2,
                &a2,
                "AcknowledgeQueueRecords",
                json!({ "QueueARN": arn, "Entries": [{ "ReceiptHandle": handle }] }),
            )
            .await;
            answered
        });
        tokio::time::sleep(Duration::from_millis(5)).await; // the receive is waiting
        let sent = Instant::now();
        call(
            &client,
            &addr,
            "PutRecord",
            json!({ "StreamName": "poll", "PartitionKey": "k", "Data": b64.encode(format!("{i}")) }),
        )
        .await;
        latencies.push(waiter.await.expect("waiter").duration_since(sent));
    }
    latencies.sort_unstable();
    println!(
        "long-poll wake-up after a put (PutRecord round trip included), {polls} records: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().expect("polls").as_secs_f64() * 1e3
    );
}
