//! Faults during delivery: the S3 server goes away and comes back; Sluice itself is killed
//! with SIGKILL and restarted. Every record lands exactly once either way: object keys are
//! derived from what the object holds, and a cut-short delivery is redone with the same
//! range, so retries overwrite instead of duplicating.

use std::time::Duration;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types as fh;

use crate::datasets::{beijing, BeijingDigest};
use crate::firehose_delivery::{beijing_by_station, rows, schema_dir, wait_for, Harness};
use crate::s3_server::{any_object, objects, S3Server, BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY};
use crate::support::{ACCESS_KEY, SECRET_KEY};
use sluice_firehose::worker::DELIVERY_ATTEMPTS_MAX;

async fn put_all(firehose: &aws_sdk_firehose::Client, name: &str, records: &[String]) {
    for chunk in records.chunks(500) {
        let batch =
            chunk.iter().map(|r| fh::Record::builder().data(Blob::new(r.as_bytes())).build().unwrap()).collect();
        let out = firehose.put_record_batch().delivery_stream_name(name).set_records(Some(batch)).send().await.unwrap();
        assert_eq!(out.failed_put_count(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_mid_delivery_then_back_lands_everything_once() {
    let Harness { dir: _dir, s3, clock, server } = Harness::start(None, |_| {}).await;
    let firehose = server.firehose();
    firehose
        .create_delivery_stream()
        .delivery_stream_name("outage")
        .extended_s3_destination_configuration(beijing_by_station(
            "outage/!{partitionKeyFromQuery:station}/",
            "outage-errors/!{firehose:error-output-type}/",
        ))
        .send()
        .await
        .unwrap();
    let input = beijing(12_000);
    let (first, second) = input.split_at(6_000);
    put_all(&firehose, "outage", first).await;
    let s3c = s3.client();
    wait_for(&clock, || objects(&s3c, "outage/"), |o| !o.is_empty()).await;

    s3.stop();
    put_all(&firehose, "outage", second).await;
    // Deliveries fail and back off while the clock runs past several buffering intervals.
    for _ in 0..10 {
        clock.advance(1_000);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    s3.restart().await;

    let landed = wait_for(&clock, || objects(&s3c, "outage/"), |o| rows(o) >= input.len()).await;
    // A short settle: nothing more may arrive (a duplicate would show up here).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let landed = if rows(&landed) == input.len() { objects(&s3c, "outage/").await } else { landed };
    assert_eq!(BeijingDigest::of_parquet(&landed).0, BeijingDigest::of_json(&input), "each reading exactly once");
    assert!(objects(&s3c, "outage-errors/").await.is_empty(), "the outage was shorter than the retry duration");
    let metrics = reqwest_metrics(server.addr).await;
    assert!(metrics.contains("sluice_firehose_delivery_to_s3_failures_total{delivery_stream=\"outage\"}"), "{metrics}");
    server.stop().await;
}

/// `GET /metrics` of a server.
async fn reqwest_metrics(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

/// A `sluice serve` child process.
struct Child {
    process: std::process::Child,
}

impl Child {
    async fn start(config: &std::path::Path, addr: std::net::SocketAddr) -> Self {
        let process = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "sluice did not start listening");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { process }
    }

    fn kill(mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A `sluice serve` config (written under `dir`) with one delivery stream, `name`, landing
/// Beijing readings under `<name>/` (by station when `by_station`: a jq query, whose
/// component the first process compiles at its first delivery and caches in the data
/// directory) and errors under `<name>-errors/` of `s3`.
fn child_config(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    s3: &S3Server,
    name: &str,
    by_station: bool,
) -> std::path::PathBuf {
    let config = dir.join("sluice.toml");
    let partitioning = if by_station {
        "prefix = \"{name}/!{partitionKeyFromQuery:station}/\"\npartition_query = \"{station: .station}\""
            .replace("{name}", name)
    } else {
        format!("prefix = \"{name}/\"")
    };
    std::fs::write(
        &config,
        format!(
            r#"
bind = "{addr}"
data_dir = "{data}"
throttle = "off"
schema_dir = "{schemas}"
[[access_keys]]
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
[lake]
url = "s3://"
endpoint = "http://{s3}"
access_key_id = "{S3_ACCESS_KEY}"
secret_access_key = "{S3_SECRET_KEY}"
[[delivery_streams]]
name = "{name}"
bucket = "{BUCKET}"
{partitioning}
error_output_prefix = "{name}-errors/!{{firehose:error-output-type}}/"
buffer_size_mb = 1
buffer_interval_s = 1
format = "parquet"
schema = "beijing/air_quality"
"#,
            data = dir.join("data").display(),
            schemas = schema_dir().display(),
            s3 = s3.addr,
        ),
    )
    .unwrap();
    config
}

/// A Firehose client of the child listening on `addr`.
fn firehose_client(addr: std::net::SocketAddr) -> aws_sdk_firehose::Client {
    let conf = aws_sdk_firehose::Config::builder()
        .behavior_version(aws_sdk_firehose::config::BehaviorVersion::latest())
        .region(aws_sdk_firehose::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(aws_sdk_firehose::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_firehose::Client::from_conf(conf)
}

fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Waits until everything under `prefix` holds `expected` rows or more, then a short
/// settle (a duplicate would show up there); returns the objects.
async fn landed_rows(s3c: &aws_sdk_s3::Client, prefix: &str, expected: usize) -> Vec<(String, Vec<u8>)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let landed = loop {
        let o = objects(s3c, prefix).await;
        if rows(&o) >= expected {
            break o;
        }
        assert!(std::time::Instant::now() < deadline, "delivery did not finish after the restart");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    if rows(&landed) == expected {
        objects(s3c, prefix).await
    } else {
        landed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_killed_mid_delivery_then_restarted_lands_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let addr = free_addr();
    let config = child_config(dir.path(), addr, &s3, "crash", true);
    let child = Child::start(&config, addr).await;
    let firehose = firehose_client(addr);
    let input = beijing(24_000);
    put_all(&firehose, "crash", &input).await;
    let s3c = s3.client();
    // Kill as soon as the first objects are landing: deliveries are under way, and the last
    // partial buffer waits for its 1 s interval, so not everything has landed yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !any_object(&s3c, "crash/").await {
        assert!(std::time::Instant::now() < deadline, "nothing landed before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill();
    let at_kill = rows(&objects(&s3c, "crash/").await);
    assert!(at_kill < input.len(), "the kill came after delivery finished ({at_kill} rows); the test proves nothing");
    let cache = dir.path().join("data/wasm-cache");
    let cached = compiled_code(&cache);
    assert_eq!(cached.len(), 1, "the jq component's compiled code is cached (no transforms are configured)");

    let child = Child::start(&config, addr).await;
    let landed = landed_rows(&s3c, "crash/", input.len()).await;
    assert_eq!(BeijingDigest::of_parquet(&landed).0, BeijingDigest::of_json(&input), "each reading exactly once");
    assert!(objects(&s3c, "crash-errors/").await.is_empty());
    assert_eq!(compiled_code(&cache), cached, "the restarted server loaded the jq code instead of compiling it again");
    child.kill();
}

/// The compiled-code files of a WASM code cache, with their inodes (a file compiled again
/// is written anew and renamed over the old one).
fn compiled_code(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| (e.path(), e.metadata().unwrap().ino())).collect())
        .unwrap_or_default();
    files.retain(|(p, _)| p.extension().is_some_and(|x| x == "cwasm"));
    files.sort();
    files
}

/// Attempts cut short after their records were planned (here: killed while writing to an
/// S3 that is down) are not the records' fault: more kills than
/// [`DELIVERY_ATTEMPTS_MAX`] must not send a good range to the error output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_while_s3_is_down_send_nothing_to_the_error_output() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let addr = free_addr();
    let config = child_config(dir.path(), addr, &s3, "kills", false);
    let mut child = Child::start(&config, addr).await;
    let firehose = firehose_client(addr);
    s3.stop();
    let input = beijing(3_000);
    put_all(&firehose, "kills", &input).await;
    for _ in 0..DELIVERY_ATTEMPTS_MAX + 3 {
        // Each life of the server plans the pending range and fails to write it.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while write_failures(addr, "kills").await == 0 {
            assert!(std::time::Instant::now() < deadline, "no delivery attempt failed while S3 was down");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill();
        child = Child::start(&config, addr).await;
    }
    s3.restart().await;
    let s3c = s3.client();
    let landed = landed_rows(&s3c, "kills/", input.len()).await;
    assert_eq!(BeijingDigest::of_parquet(&landed).0, BeijingDigest::of_json(&input), "each reading exactly once");
    assert!(
        objects(&s3c, "kills-errors/").await.is_empty(),
        "kills while writing sent good records to the error output"
    );
    child.kill();
}

/// `sluice_firehose_delivery_to_s3_failures_total` of `name` on the server at `addr`.
async fn write_failures(addr: std::net::SocketAddr, name: &str) -> u64 {
    let series = format!("sluice_firehose_delivery_to_s3_failures_total{{delivery_stream=\"{name}\"}} ");
    reqwest_metrics(addr)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}
