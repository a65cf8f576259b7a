//! The load generator: drives any Kinesis endpoint (Sluice, kinesalite, kinesis-mock) with
//! SigV4-signed JSON requests over HTTP/1.1 (hyper; not the AWS SDK, whose overhead would
//! hide the server's), then verifies what it was told.
//!
//! Phases (each prints one JSON line, then a table at the end):
//! - `ingest`: PutRecords of `--record-bytes` records in batches of `--batch`, `--concurrency`
//!   requests in flight, `--keys` distinct partition keys, for `--seconds`;
//! - `latency`: PutRecord round trips, one at a time: p50 / p99;
//! - `e2e`: a record put → seen by a consumer polling GetRecords on every shard: p50 / p99;
//! - `replay`: GetRecords from TRIM_HORIZON on all shards, `--replay-consumers` consumers per
//!   shard at once (default 1); every consumer of a shard must read the same records;
//! - verification: every acknowledged record read back exactly once, in increasing sequence
//!   order per shard, byte-identical, on the shard its partition key's MD5 selects.
//!
//! Run: `cargo run --release -p sluice-benches --example loadgen -- --endpoint http://127.0.0.1:4567`
//! (`--server-pid P` adds the server's CPU time, its RSS, and its peak RSS during ingest and
//! during the replay: `VmHWM`, reset before each phase through `/proc/P/clear_refs`, which
//! needs the server's user or root; without it the peak is the process's lifetime peak).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use md5::Digest as _;
use serde_json::json;
use sluice::client::{KinesisClient, PutEntry};

#[derive(Debug, Clone)]
struct Options {
    endpoint: String,
    stream: String,
    shards: u32,
    record_bytes: usize,
    batch: usize,
    concurrency: usize,
    keys: usize,
    seconds: f64,
    latency_samples: usize,
    server_pid: Option<u32>,
    label: String,
    replay_consumers: usize,
}

fn options() -> Options {
    let mut o = Options {
        endpoint: "http://127.0.0.1:4567".into(),
        stream: format!("loadgen-{}", std::process::id()),
        shards: 4,
        record_bytes: 100,
        batch: 500,
        concurrency: 8,
        keys: 10_000,
        seconds: 5.0,
        latency_samples: 500,
        server_pid: None,
        label: "sluice".into(),
        replay_consumers: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let (k, v) = (pair[0].as_str(), pair.get(1).map(String::as_str).unwrap_or_default());
        match k {
            "--endpoint" => o.endpoint = v.into(),
            "--stream" => o.stream = v.into(),
            "--shards" => o.shards = v.parse().expect("--shards N"),
            "--record-bytes" => o.record_bytes = v.parse().expect("--record-bytes N"),
            "--batch" => o.batch = v.parse().expect("--batch N"),
            "--concurrency" => o.concurrency = v.parse().expect("--concurrency N"),
            "--keys" => o.keys = v.parse().expect("--keys N"),
            "--seconds" => o.seconds = v.parse().expect("--seconds S"),
            "--latency-samples" => o.latency_samples = v.parse().expect("--latency-samples N"),
            "--server-pid" => o.server_pid = Some(v.parse().expect("--server-pid P")),
            "--label" => o.label = v.into(),
            "--replay-consumers" => o.replay_consumers = v.parse().expect("--replay-consumers N"),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// The data of record `n` of producer `p`: an id the verifier parses back, padded to size
/// with bytes derived from the id, so a corrupted byte anywhere is caught. Seven letters per
/// step of the generator: one per step made this function a third of the client's CPU.
fn record_data(p: usize, n: u64, bytes: usize) -> Vec<u8> {
    let mut d = Vec::with_capacity(bytes + 8);
    record_data_into(p, n, bytes, &mut d);
    d
}

/// [`record_data`] into `d` (cleared first), reusing its allocation.
fn record_data_into(p: usize, n: u64, bytes: usize, d: &mut Vec<u8>) {
    use std::io::Write as _;
    d.clear();
    write!(d, "{p}:{n}:").expect("a Vec takes writes");
    let mut x = (p as u64) << 40 ^ n;
    while d.len() < bytes {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        d.extend((x >> 8).to_le_bytes()[..7].iter().map(|b| b'a' + b % 26));
    }
    d.truncate(bytes);
}

thread_local! {
    /// A buffer per thread for the records a replay checks.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn key_of(p: usize, n: u64, keys: usize) -> String {
    format!("key-{}", key_number(p, n, keys))
}

fn key_number(p: usize, n: u64, keys: usize) -> usize {
    (n as usize * 7919 + p * 104_729) % keys
}

/// What a replay read, per shard, in read order.
type ReadBack = HashMap<String, Vec<ReadRecord>>;

/// A record a replay read, checked as it was read (its bytes are not kept: a replay of
/// gigabytes would make the client's memory, not the server, the limit).
#[derive(Debug)]
struct ReadRecord {
    sequence: Seq,
    /// The producer and record number its data names, when it is a load record.
    id: Option<(usize, u64)>,
    /// Whether its data and partition key are exactly what that producer put.
    intact: bool,
    data_bytes: usize,
}

impl ReadRecord {
    fn check(o: &Options, sequence_number: &str, partition_key: &str, data: &[u8]) -> Self {
        let id = std::str::from_utf8(&data[..data.len().min(48)]).ok().and_then(|text| {
            let mut parts = text.splitn(3, ':');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        });
        let intact = id.is_some_and(|(p, n)| {
            data.len() == o.record_bytes
                && partition_key.strip_prefix("key-").and_then(|k| k.parse().ok()) == Some(key_number(p, n, o.keys))
                && SCRATCH.with_borrow_mut(|expected| {
                    record_data_into(p, n, o.record_bytes, expected);
                    data == expected.as_slice()
                })
        });
        Self { sequence: Seq::parse(sequence_number), id, intact, data_bytes: data.len() }
    }
}

/// A sequence number: a decimal string of up to 56 digits (AWS's length), held as its
/// digits before and in the last 38 (each fits a u128), so it orders numerically and costs
/// no allocation per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Seq(u128, u128);

impl Seq {
    fn parse(s: &str) -> Self {
        let digits = s.trim_start_matches('0');
        assert!(digits.len() <= 76 && digits.bytes().all(|b| b.is_ascii_digit()), "a sequence number: {s}");
        // In runs of at most 19 digits, each fitting a u64 (std's u128 parse was a tenth of
        // the client's CPU in a 100 B replay).
        let number = |d: &[u8]| {
            d.rchunks(19).rev().fold(0u128, |acc, run| {
                let value = run.iter().fold(0u64, |v, b| v * 10 + u64::from(b - b'0'));
                acc * 10u128.pow(run.len() as u32) + u128::from(value)
            })
        };
        let (high, low) = digits.as_bytes().split_at(digits.len().saturating_sub(38));
        Self(number(high), number(low))
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => write!(f, "{}", self.1),
            high => write!(f, "{high}{:038}", self.1),
        }
    }
}

/// The parts of a PutRecords answer the generator keeps, borrowed from the body.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutOut<'a> {
    #[serde(borrow)]
    records: Vec<PutOutEntry<'a>>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutOutEntry<'a> {
    shard_id: Option<&'a str>,
    sequence_number: Option<&'a str>,
}

/// The parts of a GetRecords answer the replay keeps, borrowed from the body.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page<'a> {
    #[serde(borrow)]
    records: Vec<PageRecord<'a>>,
    next_shard_iterator: Option<&'a str>,
    millis_behind_latest: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PageRecord<'a> {
    sequence_number: &'a str,
    partition_key: &'a str,
    data: &'a str,
}

/// A record the server acknowledged.
#[derive(Debug, Clone)]
struct Acked {
    producer: usize,
    n: u64,
    shard: Arc<str>,
    sequence: Seq,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// (user + system CPU seconds, RSS bytes) of a process, from /proc.
fn process_usage(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((ticks / 100.0, status_bytes(pid, "VmRSS:")?))
}

/// CPU seconds (user + system) the server and this client spend in one phase: what a
/// gigabyte costs each, whoever is the limit on shared cores.
struct PhaseCpu {
    server_pid: Option<u32>,
    server: Option<f64>,
    client: Option<f64>,
}

impl PhaseCpu {
    fn start(server_pid: Option<u32>) -> Self {
        let cpu = |pid: Option<u32>| pid.and_then(process_usage).map(|u| u.0);
        Self { server_pid, server: cpu(server_pid), client: cpu(Some(std::process::id())) }
    }

    /// (server, client) CPU seconds since [`PhaseCpu::start`].
    fn end(self) -> (Option<f64>, Option<f64>) {
        let since =
            |before: Option<f64>, pid: Option<u32>| before.zip(pid.and_then(process_usage)).map(|(a, b)| b.0 - a);
        (since(self.server, self.server_pid), since(self.client, Some(std::process::id())))
    }
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Starts a new peak-RSS window for `pid` (`echo 5 > /proc/<pid>/clear_refs`, Linux ≥ 4.0);
/// false when not allowed, and then `VmHWM` stays the lifetime peak.
fn reset_peak_rss(pid: Option<u32>) -> bool {
    pid.is_some_and(|p| std::fs::write(format!("/proc/{p}/clear_refs"), "5").is_ok())
}

/// The server's peak RSS since the last [`reset_peak_rss`], bytes.
fn peak_rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| status_bytes(p, "VmHWM:"))
}

async fn wait_active(c: &KinesisClient, stream: &str) {
    for _ in 0..200 {
        if let Ok(d) = c.kinesis("DescribeStreamSummary", &json!({"StreamName": stream})).await {
            if d["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE" {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {stream} did not become ACTIVE");
}

async fn ingest(c: &KinesisClient, o: &Options) -> (Vec<Acked>, f64) {
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..o.concurrency {
        let (c, o) = (c.clone(), o.clone());
        tasks.spawn(async move {
            let mut acked = Vec::new();
            // Shard ids as answered, each kept once and shared by its records.
            let mut shards: Vec<Arc<str>> = Vec::new();
            let mut n: u64 = 0;
            while Instant::now() < deadline {
                // The body is written by hand and the answer read into borrowed fields: a
                // JSON tree per request would make the client, not the server, the limit.
                let mut body = format!("{{\"StreamName\":\"{}\",\"Records\":[", o.stream).into_bytes();
                for i in n..n + o.batch as u64 {
                    if i > n {
                        body.push(b',');
                    }
                    body.extend_from_slice(b"{\"PartitionKey\":\"");
                    body.extend_from_slice(key_of(p, i, o.keys).as_bytes());
                    body.extend_from_slice(b"\",\"Data\":\"");
                    base64_simd::STANDARD.encode_append(record_data(p, i, o.record_bytes), &mut body);
                    body.extend_from_slice(b"\"}");
                }
                body.extend_from_slice(b"]}");
                let out = c.call_raw("Kinesis_20131202.PutRecords", "kinesis", body).await.expect("PutRecords");
                let out: PutOut<'_> = serde_json::from_slice(&out).expect("a PutRecords answer");
                for (i, r) in (n..).zip(out.records) {
                    if let (Some(shard), Some(seq)) = (r.shard_id, r.sequence_number) {
                        let shard = match shards.iter().find(|s| &***s == shard) {
                            Some(known) => known.clone(),
                            None => {
                                shards.push(Arc::from(shard));
                                shards[shards.len() - 1].clone()
                            }
                        };
                        acked.push(Acked { producer: p, n: i, shard, sequence: Seq::parse(seq) });
                    }
                }
                n += o.batch as u64;
            }
            acked
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r.expect("producer"));
    }
    (all, start.elapsed().as_secs_f64())
}

async fn latency(c: &KinesisClient, o: &Options) -> Vec<f64> {
    let mut ms = Vec::with_capacity(o.latency_samples);
    for i in 0..o.latency_samples {
        let t = Instant::now();
        let data = format!("latency-{i}");
        let entry = [PutEntry { partition_key: "latency", data: data.as_bytes() }];
        c.put_records(&o.stream, &entry).await.expect("put");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    ms
}

async fn shard_ids(c: &KinesisClient, stream: &str) -> Vec<(String, u128, u128)> {
    let out = c.kinesis("ListShards", &json!({"StreamName": stream})).await.expect("ListShards");
    out["Shards"]
        .as_array()
        .expect("Shards")
        .iter()
        .map(|s| {
            let r = &s["HashKeyRange"];
            (
                s["ShardId"].as_str().unwrap().to_owned(),
                r["StartingHashKey"].as_str().unwrap().parse().unwrap(),
                r["EndingHashKey"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

async fn iterator(c: &KinesisClient, stream: &str, shard: &str, kind: &str) -> String {
    let out = c
        .kinesis("GetShardIterator", &json!({"StreamName": stream, "ShardId": shard, "ShardIteratorType": kind}))
        .await
        .expect("GetShardIterator");
    out["ShardIterator"].as_str().expect("iterator").to_owned()
}

/// Put → visible latencies: a consumer polls every shard from LATEST while one record at a
/// time is put with its send time inside.
async fn e2e(c: &KinesisClient, o: &Options) -> Vec<f64> {
    let shards = shard_ids(c, &o.stream).await;
    let start = Instant::now();
    let seen = Arc::new(std::sync::Mutex::new(HashMap::<u64, f64>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut consumers = tokio::task::JoinSet::new();
    for (id, _, _) in &shards {
        let mut it = iterator(c, &o.stream, id, "LATEST").await;
        let (c, seen, stop) = (c.clone(), seen.clone(), stop.clone());
        consumers.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(out) = c.kinesis("GetRecords", &json!({"ShardIterator": it})).await else { continue };
                let now = start.elapsed().as_secs_f64() * 1e3;
                for r in out["Records"].as_array().into_iter().flatten() {
                    let d = base64::engine::general_purpose::STANDARD
                        .decode(r["Data"].as_str().unwrap_or_default())
                        .unwrap_or_default();
                    if let Some(n) =
                        std::str::from_utf8(&d).ok().and_then(|s| s.strip_prefix("e2e-")).and_then(|s| s.parse().ok())
                    {
                        seen.lock().unwrap().insert(n, now);
                    }
                }
                it = out["NextShardIterator"].as_str().unwrap_or_default().to_owned();
            }
        });
    }
    let mut sent = Vec::new();
    for n in 0..o.latency_samples as u64 / 2 {
        let data = format!("e2e-{n}");
        sent.push((n, start.elapsed().as_secs_f64() * 1e3));
        c.put_records(&o.stream, &[PutEntry { partition_key: &format!("e2e-{}", n % 16), data: data.as_bytes() }])
            .await
            .expect("put");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while consumers.join_next().await.is_some() {}
    let seen = seen.lock().unwrap();
    let mut ms: Vec<f64> = sent.iter().filter_map(|(n, t)| seen.get(n).map(|s| s - t)).collect();
    assert_eq!(ms.len(), sent.len(), "every e2e record was seen");
    ms.sort_by(f64::total_cmp);
    ms
}

/// Reads every shard from TRIM_HORIZON (`--replay-consumers` consumers per shard) and
/// returns, per shard, every record as the first consumer read and checked it, in order.
async fn replay(c: &KinesisClient, o: &Options) -> (ReadBack, f64, u64, Vec<String>) {
    let shards = shard_ids(c, &o.stream).await;
    let mut iterators = Vec::new();
    for (id, _, _) in &shards {
        for consumer in 0..o.replay_consumers {
            iterators.push((id.clone(), consumer, iterator(c, &o.stream, id, "TRIM_HORIZON").await));
        }
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (id, consumer, it) in iterators {
        let (c, o) = (c.clone(), o.clone());
        tasks.spawn(async move {
            let mut it = it;
            // The first consumer of a shard keeps what it read for the verification; the
            // others keep a digest of it, compared with the first one's.
            let mut got = Vec::new();
            let mut digest = md5::Md5::default();
            let mut count = 0u64;
            loop {
                let body = serde_json::to_vec(&json!({"ShardIterator": it, "Limit": 10_000})).expect("JSON");
                let bytes = c.call_raw("Kinesis_20131202.GetRecords", "kinesis", body).await.expect("GetRecords");
                let page: Page<'_> = serde_json::from_slice(&bytes).expect("a GetRecords answer");
                let n = page.records.len();
                for r in page.records {
                    let data = base64_simd::STANDARD.decode_to_vec(r.data).expect("base64");
                    // Only to compare consumers of one shard: with one, it would cost the
                    // client more than its whole check.
                    if o.replay_consumers > 1 {
                        digest_record(&mut digest, r.sequence_number, r.partition_key, &data);
                    }
                    count += 1;
                    if consumer == 0 {
                        got.push(ReadRecord::check(&o, r.sequence_number, r.partition_key, &data));
                    }
                }
                if n == 0 || page.millis_behind_latest == Some(0) && n < 10_000 {
                    break;
                }
                it = page.next_shard_iterator.expect("an open shard has a next iterator").to_owned();
            }
            (id, consumer, got, count, digest.finalize())
        });
    }
    let mut all = HashMap::new();
    let mut digests: HashMap<String, Vec<(usize, u64, _)>> = HashMap::new();
    while let Some(r) = tasks.join_next().await {
        let (id, consumer, got, count, digest) = r.expect("consumer");
        digests.entry(id.clone()).or_default().push((consumer, count, digest));
        if consumer == 0 {
            all.insert(id, got);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let one_pass: u64 = all.values().flatten().map(|r| r.data_bytes as u64).sum();
    let mut problems = Vec::new();
    for (id, mut d) in digests {
        d.sort_by_key(|(consumer, _, _)| *consumer);
        for (consumer, count, digest) in &d[1..] {
            if (count, digest) != (&d[0].1, &d[0].2) {
                problems.push(format!("{id}: consumer {consumer} read {count} records unlike consumer 0 ({})", d[0].1));
            }
        }
    }
    (all, seconds, one_pass * o.replay_consumers as u64, problems)
}

fn digest_record(digest: &mut md5::Md5, sequence_number: &str, partition_key: &str, data: &[u8]) {
    for part in [sequence_number.as_bytes(), partition_key.as_bytes(), data] {
        digest.update((part.len() as u64).to_le_bytes());
        digest.update(part);
    }
}

/// Checks the replay against the acknowledgements; returns the problems found.
fn verify(o: &Options, acked: &[Acked], read: &ReadBack, shards: &[(String, u128, u128)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_sequence: HashMap<(&str, &Seq), (&ReadRecord, usize)> = HashMap::new();
    for (shard, records) in read {
        if records.windows(2).any(|w| w[0].sequence >= w[1].sequence) {
            problems.push(format!("{shard}: sequence numbers not increasing"));
        }
        for r in records {
            by_sequence.entry((shard.as_str(), &r.sequence)).or_insert((r, 0)).1 += 1;
        }
    }
    for a in acked {
        let key = key_of(a.producer, a.n, o.keys);
        match by_sequence.get(&(&*a.shard, &a.sequence)) {
            None => problems
                .push(format!("acked record {}:{} ({}, {}) was not read back", a.producer, a.n, a.shard, a.sequence)),
            Some((r, count)) => {
                if *count != 1 {
                    problems.push(format!("record {} read {count} times", a.sequence));
                }
                if r.id != Some((a.producer, a.n)) || !r.intact {
                    problems.push(format!("record {}:{} differs from what was put", a.producer, a.n));
                }
                let hash = u128::from_be_bytes(md5::Md5::digest(key.as_bytes()).into());
                let owner = shards.iter().find(|(_, lo, hi)| (*lo..=*hi).contains(&hash)).map(|(id, _, _)| id.as_str());
                if owner != Some(&*a.shard) {
                    problems.push(format!("key {key} landed on {} but its MD5 selects {owner:?}", a.shard));
                }
            }
        }
        if problems.len() > 20 {
            problems.push("…".into());
            break;
        }
    }
    problems
}

#[tokio::main]
async fn main() {
    let o = options();
    let c = KinesisClient::new(&o.endpoint, "us-east-1", "sluice", "sluice-secret");
    let _ = c.kinesis("DeleteStream", &json!({"StreamName": o.stream})).await;
    c.kinesis("CreateStream", &json!({"StreamName": o.stream, "ShardCount": o.shards})).await.expect("CreateStream");
    wait_active(&c, &o.stream).await;
    let server_before = o.server_pid.and_then(process_usage);
    let client_before = process_usage(std::process::id());

    let peak_windows = reset_peak_rss(o.server_pid);
    let phase = PhaseCpu::start(o.server_pid);
    let (acked, secs) = ingest(&c, &o).await;
    let ingest_rps = acked.len() as f64 / secs;
    let ingest_mbs = ingest_rps * o.record_bytes as f64 / 1e6;
    let (server_cpu, client_cpu) = phase.end();
    let gb = (acked.len() * o.record_bytes) as f64 / 1e9;
    println!(
        "{}",
        json!({"label": o.label, "phase": "ingest", "records": acked.len(), "seconds": secs, "records_per_s": ingest_rps, "mb_per_s": ingest_mbs, "record_bytes": o.record_bytes, "batch": o.batch, "concurrency": o.concurrency, "server_peak_rss_bytes": peak_rss(o.server_pid), "peak_since_phase_start": peak_windows, "server_cpu_s": server_cpu, "client_cpu_s": client_cpu, "server_core_s_per_gb": server_cpu.map(|s| s / gb), "client_core_s_per_gb": client_cpu.map(|s| s / gb)})
    );
    let lat = latency(&c, &o).await;
    println!(
        "{}",
        json!({"label": o.label, "phase": "latency", "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99), "samples": lat.len()})
    );
    let e = e2e(&c, &o).await;
    println!(
        "{}",
        json!({"label": o.label, "phase": "e2e", "p50_ms": percentile(&e, 0.5), "p99_ms": percentile(&e, 0.99), "samples": e.len()})
    );
    let peak_windows = reset_peak_rss(o.server_pid);
    let phase = PhaseCpu::start(o.server_pid);
    let (read, rsecs, rbytes, mut problems) = replay(&c, &o).await;
    let nread = read.values().map(Vec::len).sum::<usize>() * o.replay_consumers;
    let (server_cpu, client_cpu) = phase.end();
    let gb = rbytes as f64 / 1e9;
    println!(
        "{}",
        json!({"label": o.label, "phase": "replay", "records": nread, "consumers_per_shard": o.replay_consumers, "seconds": rsecs, "records_per_s": nread as f64 / rsecs, "mb_per_s": rbytes as f64 / rsecs / 1e6, "server_peak_rss_bytes": peak_rss(o.server_pid), "peak_since_phase_start": peak_windows, "server_cpu_s": server_cpu, "client_cpu_s": client_cpu, "server_core_s_per_gb": server_cpu.map(|s| s / gb), "client_core_s_per_gb": client_cpu.map(|s| s / gb)})
    );
    let shards = shard_ids(&c, &o.stream).await;
    problems.extend(verify(&o, &acked, &read, &shards));
    let server_after = o.server_pid.and_then(process_usage);
    let client_after = process_usage(std::process::id());
    let cpu = |a: Option<(f64, u64)>, b: Option<(f64, u64)>| a.zip(b).map(|(a, b)| b.0 - a.0);
    println!(
        "{}",
        json!({"label": o.label, "phase": "verify", "acked": acked.len(), "problems": problems.len(), "client_cpu_s": cpu(client_before, client_after), "server_cpu_s": cpu(server_before, server_after), "server_rss_bytes": server_after.map(|s| s.1)})
    );
    eprintln!(
        "\n{:<10} {:>14} {:>10} {:>12} {:>12} {:>14} {:>10}\n{:<10} {:>14.0} {:>10.1} {:>12.2} {:>12.2} {:>14.0} {:>10}",
        "server", "ingest rec/s", "MB/s", "put p99 ms", "e2e p99 ms", "replay rec/s", "verified",
        o.label, ingest_rps, ingest_mbs, percentile(&lat, 0.99), percentile(&e, 0.99), nread as f64 / rsecs,
        if problems.is_empty() { "yes" } else { "NO" }
    );
    for p in &problems {
        eprintln!("  {p}");
    }
    let _ = c.kinesis("DeleteStream", &json!({"StreamName": o.stream})).await;
    if !problems.is_empty() {
        std::process::exit(1);
    }
}
