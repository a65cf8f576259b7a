//! End-to-end Kinesis API throughput over HTTP/1.1 on loopback: PutRecords (500 records of
//! 100 B per request) from concurrent connections, then GetRecords replay of 1 KiB records
//! from TRIM_HORIZON. The server runs in this process with throttling off and
//! `fsync = "never"` (the emulators it is compared with neither throttle nor sync); requests
//! are unsigned (`auth = "none"`) so the figure is the server's, not a signer's.
//!
//! Run: `cargo run --release -p sluice-benches --example kinesis_http [seconds] [connections]`.

mod common;
mod server_allocator;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::{call_bytes, call_raw};
use sluice::config::{Auth, Config, Fsync, Throttle};

/// The parts of a GetRecords answer the replay needs; record contents are skipped unparsed.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page {
    records: Vec<serde::de::IgnoredAny>,
    next_shard_iterator: String,
}

fn put_records_body(stream: &str, count: usize, size: usize, salt: usize) -> Bytes {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<_> = (0..count)
        .map(|i| {
            let mut data = format!("{{\"n\":{i},\"s\":{salt},\"pad\":\"").into_bytes();
            data.resize(size, b'x');
            serde_json::json!({ "Data": b64.encode(&data), "PartitionKey": format!("device-{}", (i * 7 + salt) % 1000) })
        })
        .collect();
    Bytes::from(serde_json::to_vec(&serde_json::json!({ "StreamName": stream, "Records": records })).expect("JSON"))
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("seconds"));
    let connections: usize = args.next().map_or(8, |a| a.parse().expect("connections"));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        auth: Auth::None,
        throttle: Throttle::Off,
        fsync: Fsync::Never,
        stream_transition_ms: 0,
        ..Config::default()
    };
    let (addr, client) = common::start(&config).await;

    for (stream, shards) in [("ingest", 4), ("replay", 1)] {
        let body = serde_json::json!({ "StreamName": stream, "ShardCount": shards }).to_string();
        call_bytes(&client, &addr, "CreateStream", Bytes::from(body)).await;
    }

    // Ingest: 100 B records, 500 per request, `connections` requests in flight.
    let bodies: Arc<Vec<Bytes>> = Arc::new((0..16).map(|s| put_records_body("ingest", 500, 100, s)).collect());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (client, addr, bodies) = (client.clone(), addr.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut records = 0usize;
                let mut i = c;
                while Instant::now() < deadline {
                    let out = call_bytes(&client, &addr, "PutRecords", bodies[i % bodies.len()].clone()).await;
                    assert_eq!(out["FailedRecordCount"], 0);
                    records += 500;
                    i += 1;
                }
                records
            })
        })
        .collect();
    let mut records = 0;
    for t in tasks {
        records += t.await.expect("task");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "PutRecords: {records} records of 100 B in {secs:.1} s over {connections} connections: {:.0} records/s ({:.1} MB/s of data)",
        records as f64 / secs,
        records as f64 * 100.0 / secs / 1e6
    );

    // Replay: fill one shard with 256 MiB of 1 KiB records, then read it back from TRIM_HORIZON.
    let fill: Vec<Bytes> = (0..8).map(|s| put_records_body("replay", 500, 1024, s)).collect();
    let batches = (256usize << 20) / (500 * 1024);
    for i in 0..batches {
        call_bytes(&client, &addr, "PutRecords", fill[i % fill.len()].clone()).await;
    }
    let body = serde_json::json!({"StreamName": "replay", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"});
    let mut it =
        call_bytes(&client, &addr, "GetShardIterator", Bytes::from(body.to_string())).await["ShardIterator"].clone();
    let start = Instant::now();
    let (mut read, mut bytes) = (0usize, 0usize);
    loop {
        let body = Bytes::from(serde_json::json!({ "ShardIterator": it }).to_string());
        let out: Page = serde_json::from_slice(&call_raw(&client, &addr, "GetRecords", body).await).expect("JSON");
        if out.records.is_empty() {
            break;
        }
        read += out.records.len();
        bytes += out.records.len() * 1024;
        it = out.next_shard_iterator.into();
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(read, batches * 500);
    println!(
        "GetRecords replay: {read} records of 1 KiB in {secs:.2} s: {:.0} records/s, {:.2} GB/s of data",
        read as f64 / secs,
        bytes as f64 / secs / 1e9
    );
}
