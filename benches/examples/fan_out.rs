//! Enhanced fan-out over HTTP/1.1 on loopback, the server in this process (throttling off,
//! `fsync = "never"`, unsigned requests):
//!
//! 1. Latency: one consumer subscribed to a 1-shard stream; a producer puts single records
//!    (PutRecord) one after another, each carrying the time it was sent; the time from just
//!    before the PutRecord to the record's arrival in a SubscribeToShard event, p50/p99/max.
//! 2. Fan-out: 5 consumers subscribed to every shard of a 4-shard stream while producers put
//!    100 B records (PutRecords of 500) as fast as they go; records delivered per consumer,
//!    and the process's peak RSS (server and clients together).
//!
//! Run: `cargo run --release -p sluice-benches --example fan_out [latency records] [fan-out seconds]`.

mod common;
mod server_allocator;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use common::{call, HttpClient};
use http_body_util::{BodyExt, Full};
use sluice::config::{Auth, Config, Fsync, Throttle};

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Event {
    records: Vec<EventRecord>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventRecord {
    data: String,
}

/// Subscribes `consumer` to `shard` from LATEST and calls `on_records` with each event's
/// records (base64 data) until the subscription ends.
async fn subscribe(
    client: HttpClient,
    addr: String,
    consumer: String,
    shard: String,
    mut on_records: impl FnMut(Vec<EventRecord>),
) {
    let body =
        serde_json::json!({ "ConsumerARN": consumer, "ShardId": shard, "StartingPosition": { "Type": "LATEST" } });
    let req = hyper::Request::post(format!("http://{addr}/"))
        .header("x-amz-target", "Kinesis_20131202.SubscribeToShard")
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client.request(req).await.expect("response");
    assert!(resp.status().is_success(), "SubscribeToShard: {}", resp.status());
    let mut body = resp.into_body();
    let mut decoder = MessageFrameDecoder::new();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.expect("frame").into_data() else { continue };
        buf.extend_from_slice(&data);
        while let DecodedFrame::Complete(m) = decoder.decode_frame(&mut buf).expect("event-stream frame") {
            let event_type = m.headers().iter().find(|h| h.name().as_str() == ":event-type");
            if event_type.and_then(|h| h.value().as_string().ok()).map(|s| s.as_str()) == Some("SubscribeToShardEvent")
            {
                let e: Event = serde_json::from_slice(m.payload()).expect("event JSON");
                on_records(e.records);
            }
        }
        let _ = buf.remaining();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let latency_records: usize = args.next().map_or(2_000, |a| a.parse().expect("records"));
    let seconds: u64 = args.next().map_or(5, |a| a.parse().expect("seconds"));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        auth: Auth::None,
        throttle: Throttle::Off,
        fsync: Fsync::Never,
        stream_transition_ms: 0,
        subscription_lifetime_ms: 3_600_000,
        ..Config::default()
    };
    let (addr, client) = common::start(&config).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let base = Instant::now();

    // 1. Latency.
    call(&client, &addr, "CreateStream", serde_json::json!({ "StreamName": "lat", "ShardCount": 1 })).await;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/lat";
    let c =
        call(&client, &addr, "RegisterStreamConsumer", serde_json::json!({ "StreamARN": arn, "ConsumerName": "c" }))
            .await;
    let consumer = c["Consumer"]["ConsumerARN"].as_str().expect("ARN").to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    tokio::spawn(subscribe(client.clone(), addr.clone(), consumer, "shardId-000000000000".into(), move |records| {
        let now = base.elapsed();
        for r in records {
            let sent: u64 =
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(r.data).expect("base64"))
                    .expect("utf8")
                    .parse()
                    .expect("nanos");
            let _ = tx.send(now.saturating_sub(Duration::from_nanos(sent)));
        }
    }));
    tokio::time::sleep(Duration::from_millis(200)).await; // the subscription is open
    let mut latencies = Vec::with_capacity(latency_records);
    for _ in 0..latency_records {
        let sent = base.elapsed().as_nanos() as u64;
        let body =
            serde_json::json!({ "StreamName": "lat", "PartitionKey": "k", "Data": b64.encode(sent.to_string()) });
        call(&client, &addr, "PutRecord", body).await;
        latencies.push(rx.recv().await.expect("the record arrives"));
    }
    latencies.sort_unstable();
    println!(
        "put -> SubscribeToShard delivery, {} records one at a time: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().expect("records").as_secs_f64() * 1e3
    );

    // 2. Fan-out: 5 consumers x 4 shards.
    call(&client, &addr, "CreateStream", serde_json::json!({ "StreamName": "fan", "ShardCount": 4 })).await;
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/fan";
    let delivered: Arc<Vec<AtomicU64>> = Arc::new((0..5).map(|_| AtomicU64::new(0)).collect());
    for i in 0..5 {
        let c = call(
            &client,
            &addr,
            "RegisterStreamConsumer",
            serde_json::json!({ "StreamARN": arn, "ConsumerName": format!("c{i}") }),
        )
        .await;
        let consumer = c["Consumer"]["ConsumerARN"].as_str().expect("ARN").to_owned();
        for shard in 0..4 {
            let delivered = delivered.clone();
            tokio::spawn(subscribe(
                client.clone(),
                addr.clone(),
                consumer.clone(),
                format!("shardId-{shard:012}"),
                move |records| {
                    delivered[i].fetch_add(records.len() as u64, Ordering::Relaxed);
                },
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bodies: Arc<Vec<serde_json::Value>> = Arc::new(
        (0..16)
            .map(|s| {
                let records: Vec<_> = (0..500)
                    .map(|i| serde_json::json!({ "Data": b64.encode([b'x'; 100]), "PartitionKey": format!("device-{}", (i * 7 + s) % 1000) }))
                    .collect();
                serde_json::json!({ "StreamName": "fan", "Records": records })
            })
            .collect(),
    );
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let (client, addr, bodies) = (client.clone(), addr.clone(), bodies.clone());
            tokio::spawn(async move {
                let mut put = 0u64;
                let mut i = p;
                while Instant::now() < deadline {
                    call(&client, &addr, "PutRecords", bodies[i % bodies.len()].clone()).await;
                    put += 500;
                    i += 1;
                }
                put
            })
        })
        .collect();
    let mut put = 0;
    for p in producers {
        put += p.await.expect("producer");
    }
    // Let the consumers catch up with what was put (bounded wait).
    let catch_up = Instant::now() + Duration::from_secs(30);
    while delivered.iter().any(|d| d.load(Ordering::Relaxed) < put) && Instant::now() < catch_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let per: Vec<u64> = delivered.iter().map(|d| d.load(Ordering::Relaxed)).collect();
    println!(
        "fan-out: {put} records of 100 B put in {seconds} s ({:.0} records/s); 5 consumers x 4 shards received {per:?} ({:.0} records/s per consumer, {:.0} in all); peak RSS {:.0} MiB",
        put as f64 / seconds as f64,
        per[0] as f64 / secs,
        per.iter().sum::<u64>() as f64 / secs,
        peak_rss_mib()
    );
}
