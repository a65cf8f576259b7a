//! Crash loop: the real `sluice` binary SIGKILLed at seeded random points, 50 times, while
//! two producers put, a consumer reads and a delivery stream lands Parquet in a folder (and
//! sometimes again while it starts, before it answers; `fsync` drawn per start). After every
//! other restart each acknowledged record is read back exactly once, in the shard and at the
//! sequence number it was acknowledged with, and what has landed decodes whole with no id
//! twice; at the end every stored record (acknowledged or not) has landed exactly once and
//! nothing went to the error output.
//!
//! Replay a failure with the seed it prints: `SLUICE_CRASH_SEED=<seed> cargo test --test it
//! crash_loop` (the seed fixes the kill points, not the timing of the server).
//! `SLUICE_CRASH_ITERATIONS` changes the number of kills; `SLUICE_CRASH_KEEP=1` keeps the
//! data directory, lake and server log of a failed run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use aws_sdk_firehose::types as fh;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};

use crate::firehose_delivery::{destination, kinesis_source, local_objects};
use crate::s3_server::BUCKET;
use crate::support::{Rng, ACCESS_KEY, SECRET_KEY};

const STREAM: &str = "crash";
const DELIVERY: &str = "crash-lake";
const PREFIX: &str = "landed/";
const ERROR_PREFIX: &str = "failed/";
/// Records per PutRecords call.
const BATCH: u64 = 20;
/// Concurrent producers, each pausing [`PAUSE_MS`] between calls (the stream is read back
/// whole again and again: its size is most of the test's time).
const PRODUCERS: usize = 2;
/// Pause of a producer between PutRecords calls, ms.
const PAUSE_MS: u64 = 15;
/// The Kinesis stream is read back whole after every this many restarts (and at the end).
const CHECK_EVERY: usize = 2;

/// Where an acknowledged record is: shard id and sequence number.
type Ack = (String, String);

/// What the producer knows: the next id to use and every id the server acknowledged.
#[derive(Default)]
struct Produced {
    next_id: u64,
    acked: BTreeMap<u64, Ack>,
}

/// The test's world: the data directory, lake and configuration of the child server.
struct World {
    dir: tempfile::TempDir,
    addr: SocketAddr,
    log: PathBuf,
    seed: u64,
    iteration: usize,
}

/// A running `sluice serve`, SIGKILLed when dropped (so a failing test leaves none behind).
struct Server(std::process::Child);

impl Server {
    /// SIGKILLs the server and waits for it to be gone.
    fn kill(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill(); // SIGKILL on Unix
        let _ = self.0.wait();
    }
}

impl World {
    fn new(seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let log = dir.path().join("server.log");
        Self { dir, addr, log, seed, iteration: 0 }
    }

    /// Panics with `what`, the seed, the iteration and the end of the server's log.
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: String =
            log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        panic!(
            "{what}\n(seed {seed}, iteration {i}; replay with SLUICE_CRASH_SEED={seed}, keep the data with SLUICE_CRASH_KEEP=1)\nserver log tail:\n{tail}",
            seed = self.seed,
            i = self.iteration
        );
    }

    /// Writes the configuration, with `fsync` (`always`, `interval` or `never`), and spawns
    /// `sluice serve`, its log appended to `server.log`.
    fn spawn(&self, fsync: &str) -> Server {
        let p = |name: &str| self.dir.path().join(name).display().to_string();
        let config = self.dir.path().join("sluice.toml");
        std::fs::write(
            &config,
            format!(
                r#"bind = "{addr}"
data_dir = "{data}"
fsync = "{fsync}"
throttle = "off"
stream_transition_ms = 0
schema_dir = "{schemas}"
transform_dir = "{wasm}"
auth = "sigv4"
[[access_keys]]
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
[lake]
url = "file://{lake}"
"#,
                addr = self.addr,
                data = p("data"),
                schemas = p("schemas"),
                wasm = p("wasm"),
                lake = p("lake"),
            ),
        )
        .unwrap();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Server(child)
    }

    /// Starts the server and waits until it answers ListStreams.
    async fn start(&self, fsync: &str) -> Server {
        let mut server = self.spawn(fsync);
        let client = kinesis(self.addr, Duration::from_millis(500));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.0.try_wait().unwrap() {
                self.fail(format!("the server exited on start with {status}"));
            }
            if client.list_streams().send().await.is_ok() {
                return server;
            }
            if Instant::now() > deadline {
                self.fail("the server did not answer ListStreams within 30 s of starting");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn lake(&self) -> PathBuf {
        self.dir.path().join("lake").join(BUCKET)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("SLUICE_CRASH_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("crash loop: data kept in {}", self.dir.path().display());
        }
    }
}

/// A Kinesis client for `addr`: no retries, and `timeout` for a whole operation so a killed
/// server does not stall the test.
fn kinesis(addr: SocketAddr, timeout: Duration) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_kinesis::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_timeout(timeout)
                .build(),
        )
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

fn firehose(addr: SocketAddr) -> aws_sdk_firehose::Client {
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(aws_sdk_firehose::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_firehose::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(500))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    aws_sdk_firehose::Client::from_conf(config)
}

/// Sequence numbers are decimal strings without leading zeros: longer is larger.
fn seq_key(s: &str) -> (usize, &str) {
    (s.len(), s)
}

fn id_of(data: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(data).ok()?["id"].as_u64()
}

/// The stream and, reading it from LATEST, the delivery stream (Parquet, schema inferred).
async fn create_streams(world: &World) {
    let k = kinesis(world.addr, Duration::from_secs(10));
    k.create_stream().stream_name(STREAM).shard_count(2).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = k.describe_stream_summary().stream_name(STREAM).send().await.unwrap();
        if d.stream_description_summary.unwrap().stream_status == aws_sdk_kinesis::types::StreamStatus::Active {
            break;
        }
        assert!(Instant::now() < deadline, "the stream did not become ACTIVE within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No TableName: the schema is inferred from the first buffer and then fixed.
    let parquet = crate::firehose_delivery::json_to_parquet(None);
    firehose(world.addr)
        .create_delivery_stream()
        .delivery_stream_name(DELIVERY)
        .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(kinesis_source(STREAM))
        .extended_s3_destination_configuration(
            destination(PREFIX, &format!("{ERROR_PREFIX}!{{firehose:error-output-type}}/"))
                .data_format_conversion_configuration(parquet)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Puts batches of `{"id": N, "pad": ...}` until `stop`, recording what was acknowledged.
async fn produce(addr: SocketAddr, produced: Arc<Mutex<Produced>>, stop: Arc<AtomicBool>, seed: u64) {
    let client = kinesis(addr, Duration::from_secs(5));
    let mut rng = Rng(seed);
    while !stop.load(Ordering::Relaxed) {
        let first = {
            let mut p = produced.lock().unwrap();
            let first = p.next_id;
            p.next_id += BATCH;
            first
        };
        let ids: Vec<u64> = (first..first + BATCH).collect();
        let entries = ids
            .iter()
            .map(|id| {
                let pad = "x".repeat(rng.range(10, 400) as usize);
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(format!(r#"{{"id": {id}, "pad": "{pad}"}}"#)))
                    .partition_key(format!("key-{}", rng.next() % 1000))
                    .build()
                    .unwrap()
            })
            .collect();
        match client.put_records().stream_name(STREAM).set_records(Some(entries)).send().await {
            Ok(out) => {
                assert_eq!(out.records.len(), ids.len(), "PutRecords answers one result per record");
                {
                    let mut p = produced.lock().unwrap();
                    for (id, r) in ids.iter().zip(&out.records) {
                        if let (Some(shard), Some(seq)) = (&r.shard_id, &r.sequence_number) {
                            p.acked.insert(*id, (shard.clone(), seq.clone()));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(PAUSE_MS)).await;
            }
            // The server is being killed, or is gone: these records may or may not be stored.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Follows every shard from LATEST until `stop`, checking sequence numbers increase. Errors
/// (the kill) are ignored. Returns what went wrong, if anything.
async fn consume(addr: SocketAddr, stop: Arc<AtomicBool>) -> Result<usize, String> {
    let client = kinesis(addr, Duration::from_secs(5));
    let mut iterators: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    let mut read = 0;
    while !stop.load(Ordering::Relaxed) {
        if iterators.is_empty() {
            match client.list_shards().stream_name(STREAM).send().await {
                Ok(out) => iterators = out.shards().iter().map(|s| (s.shard_id.clone(), None)).collect(),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        for (shard, it) in iterators.iter_mut() {
            let current = match it.take() {
                Some(i) => i,
                None => {
                    let kind = if last.contains_key(shard) {
                        ShardIteratorType::AfterSequenceNumber
                    } else {
                        ShardIteratorType::Latest
                    };
                    let got = client
                        .get_shard_iterator()
                        .stream_name(STREAM)
                        .shard_id(shard)
                        .shard_iterator_type(kind)
                        .set_starting_sequence_number(last.get(shard).cloned())
                        .send()
                        .await;
                    match got.ok().and_then(|o| o.shard_iterator) {
                        Some(i) => i,
                        None => continue,
                    }
                }
            };
            let Ok(out) = client.get_records().shard_iterator(current).send().await else { continue };
            for r in out.records() {
                if let Some(prev) = last.get(shard) {
                    if seq_key(&r.sequence_number) <= seq_key(prev) {
                        return Err(format!("{shard}: GetRecords gave {} after {prev}", r.sequence_number));
                    }
                }
                last.insert(shard.clone(), r.sequence_number.clone());
                read += 1;
            }
            *it = out.next_shard_iterator;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(read)
}

/// Reads every shard from TRIM_HORIZON to its end: shard id -> (sequence number, id) in order.
async fn read_all(world: &World) -> BTreeMap<String, Vec<(String, u64)>> {
    let client = kinesis(world.addr, Duration::from_secs(20));
    let shards = client
        .list_shards()
        .stream_name(STREAM)
        .send()
        .await
        .unwrap_or_else(|e| world.fail(format!("ListShards: {e:?}")));
    let mut out = BTreeMap::new();
    for s in shards.shards() {
        let mut it = client
            .get_shard_iterator()
            .stream_name(STREAM)
            .shard_id(&s.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap_or_else(|e| world.fail(format!("GetShardIterator: {e:?}")))
            .shard_iterator;
        let mut records = Vec::new();
        while let Some(i) = it {
            let got = client
                .get_records()
                .shard_iterator(i)
                .send()
                .await
                .unwrap_or_else(|e| world.fail(format!("GetRecords: {e:?}")));
            for r in got.records() {
                let id = id_of(r.data.as_ref())
                    .unwrap_or_else(|| world.fail(format!("{}: record {} is not ours", s.shard_id, r.sequence_number)));
                records.push((r.sequence_number.clone(), id));
            }
            if got.records().is_empty() && got.millis_behind_latest() == Some(0) {
                break;
            }
            it = got.next_shard_iterator;
        }
        out.insert(s.shard_id.clone(), records);
    }
    out
}

/// Every acknowledged record is in the stream once, in its shard at its sequence number;
/// sequence numbers increase in every shard; no id is there twice. Returns the stored ids.
async fn check_stream(world: &World, produced: &Produced) -> BTreeSet<u64> {
    let shards = read_all(world).await;
    let mut seen: BTreeMap<u64, Ack> = BTreeMap::new();
    for (shard, records) in &shards {
        for w in records.windows(2) {
            if seq_key(&w[1].0) <= seq_key(&w[0].0) {
                world.fail(format!("{shard}: sequence number {} follows {}", w[1].0, w[0].0));
            }
        }
        for (seq, id) in records {
            if *id >= produced.next_id {
                world.fail(format!("{shard}: id {id} at {seq} was never put"));
            }
            if let Some(first) = seen.insert(*id, (shard.clone(), seq.clone())) {
                world.fail(format!("id {id} is stored twice: {first:?} and ({shard}, {seq})"));
            }
        }
    }
    for (id, ack) in &produced.acked {
        match seen.get(id) {
            None => world.fail(format!(
                "acknowledged id {id} ({ack:?}) is lost: {} of {} acknowledged records are readable",
                produced.acked.keys().filter(|i| seen.contains_key(i)).count(),
                produced.acked.len()
            )),
            Some(at) if at != ack => world.fail(format!("id {id} was acknowledged at {ack:?} but is read at {at:?}")),
            Some(_) => {}
        }
    }
    seen.into_keys().collect()
}

/// The ids in the lake's Parquet objects under [`PREFIX`] (each must decode whole), and
/// the files that are not objects (leftovers of interrupted writes).
fn landed_ids(world: &World) -> (LandedIds, Vec<String>) {
    parquet_ids(&world.lake().join(PREFIX)).unwrap_or_else(|e| world.fail(e))
}

/// Each landed id with the keys of the objects holding it.
pub type LandedIds = BTreeMap<u64, Vec<String>>;

/// The `id` column of every Parquet object under the folder `root`: each id with the keys
/// of the objects holding it, and the files that are not `.parquet` objects. Errors: an
/// object that does not decode whole, or has no bigint `id`.
pub fn parquet_ids(root: &std::path::Path) -> Result<(LandedIds, Vec<String>), String> {
    let mut ids: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stray = Vec::new();
    for (key, bytes) in local_objects(root) {
        if !key.ends_with(".parquet") {
            stray.push(key);
            continue;
        }
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .map_err(|e| format!("{key} is not Parquet: {e}"))?
            .build()
            .map_err(|e| format!("{key}: {e}"))?;
        for batch in reader {
            let batch = batch.map_err(|e| format!("{key} does not decode whole: {e}"))?;
            let column = batch.column_by_name("id").ok_or_else(|| format!("{key} has no id column"))?;
            let column = column.as_primitive_opt::<Int64Type>().ok_or_else(|| format!("{key}: id is not bigint"))?;
            for i in 0..column.len() {
                ids.entry(column.value(i) as u64).or_default().push(key.clone());
            }
        }
    }
    Ok((ids, stray))
}

/// No id landed twice, and every landed id is in the stream.
fn check_landed(world: &World, landed: &BTreeMap<u64, Vec<String>>, stored: &BTreeSet<u64>) {
    for (id, keys) in landed {
        if keys.len() > 1 {
            world.fail(format!("id {id} landed {} times: {keys:?}", keys.len()));
        }
        if !stored.contains(id) {
            world.fail(format!("id {id} landed but is not in the stream"));
        }
    }
}

/// Mid-run: every object landed so far decodes whole, and [`check_landed`] holds. (Files
/// that are not objects may be writes under way.)
fn check_lake(world: &World, stored: &BTreeSet<u64>) {
    let (landed, _) = landed_ids(world);
    check_landed(world, &landed, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_at_random_points_the_server_loses_and_duplicates_nothing() {
    let seed =
        std::env::var("SLUICE_CRASH_SEED").ok().map(|s| s.parse().expect("SLUICE_CRASH_SEED is a u64")).unwrap_or_else(
            || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
        );
    let iterations: usize =
        std::env::var("SLUICE_CRASH_ITERATIONS").ok().map(|s| s.parse().expect("a number")).unwrap_or(50);
    println!("crash loop: seed {seed} (SLUICE_CRASH_SEED={seed} replays it), {iterations} iterations");
    let started = Instant::now();
    let mut world = World::new(seed);
    let mut rng = Rng(seed);
    let produced = Arc::new(Mutex::new(Produced::default()));
    let mut consumed = 0;
    let mut early_kills = 0;
    for iteration in 0..iterations {
        world.iteration = iteration;
        let fsync = ["always", "interval", "never"][rng.range(0, 2) as usize];
        if iteration > 0 && rng.range(0, 4) == 0 {
            // Killed while it opens its logs and checkpoints, before it answers.
            let server = world.spawn(fsync);
            tokio::time::sleep(Duration::from_millis(rng.range(0, 150))).await;
            server.kill();
            early_kills += 1;
        }
        let server = world.start(fsync).await;
        if iteration == 0 {
            create_streams(&world).await;
        } else if iteration % CHECK_EVERY == 0 {
            let snapshot = {
                let p = produced.lock().unwrap();
                Produced { next_id: p.next_id, acked: p.acked.clone() }
            };
            let stored = check_stream(&world, &snapshot).await;
            check_lake(&world, &stored);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|_| tokio::spawn(produce(world.addr, produced.clone(), stop.clone(), rng.next())))
            .collect();
        let consumer = tokio::spawn(consume(world.addr, stop.clone()));
        // Deliveries wait for 1 s of buffering after a start, so kills come before, during
        // and after the first ones.
        tokio::time::sleep(Duration::from_millis(rng.range(150, 1_800))).await;
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for p in producers {
            p.await.unwrap();
        }
        consumed += consumer.await.unwrap().unwrap_or_else(|e| world.fail(e));
    }

    world.iteration = iterations;
    let server = world.start("interval").await;
    let produced = Arc::try_unwrap(produced).ok().unwrap().into_inner().unwrap();
    // Every stored record lands, acknowledged or not (the delivery reads from before the first put).
    let stored = check_stream(&world, &produced).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (landed, stray) = loop {
        let (landed, stray) = landed_ids(&world);
        if stored.iter().all(|id| landed.contains_key(id)) {
            break (landed, stray);
        }
        if Instant::now() > deadline {
            let missing: Vec<_> = stored.iter().filter(|id| !landed.contains_key(id)).collect();
            world.fail(format!(
                "{} stored records (acknowledged or not) did not land within 60 s; the first: {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    check_landed(&world, &landed, &stored);
    let errors: Vec<String> = local_objects(&world.lake().join(ERROR_PREFIX)).into_iter().map(|(k, _)| k).collect();
    if !errors.is_empty() {
        world.fail(format!("records went to the error output: {errors:?}"));
    }
    if !stray.is_empty() {
        world.fail(format!("files under {PREFIX} that are not objects: {stray:?}"));
    }
    server.kill();
    let objects = BTreeSet::<&String>::from_iter(landed.values().flatten()).len();
    println!(
        "crash loop: {iterations} kills ({early_kills} more while starting), {} acknowledged of {} put, {consumed} read live, {} landed in {objects} objects, {:.1} s",
        produced.acked.len(),
        produced.next_id,
        landed.len(),
        started.elapsed().as_secs_f64()
    );
}
