//! A real Prometheus (Debian's package; `SLUICE_PROMETHEUS_BIN` names it, and the test fails
//! rather than skips when that names no file) scrapes a Sluice under load from the AWS SDKs,
//! and every PromQL query of the provisioned dashboard (`deploy/grafana/dashboards/sluice.json`)
//! returns series. Also: the stream-level series count what the clients did, and a stream's
//! and a delivery stream's series go with them when they are deleted.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aws_sdk_firehose::types::Record as FirehoseRecord;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use crate::support::{trim_horizon, TestServer};

/// The Prometheus binary, or `None` (test skipped) when there is none and none is required.
fn prometheus_bin() -> Option<std::path::PathBuf> {
    if let Some(bin) = std::env::var_os("SLUICE_PROMETHEUS_BIN") {
        let bin = std::path::PathBuf::from(bin);
        assert!(bin.is_file(), "SLUICE_PROMETHEUS_BIN names no file: {}", bin.display());
        return Some(bin);
    }
    ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].iter().map(std::path::PathBuf::from).find(|p| p.is_file())
}

/// `GET path` on `addr`: status and body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    // Prometheus answers small bodies chunked-free; a chunked one is de-chunked here.
    if text.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, dechunk(&body));
    }
    (status, body)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every PromQL query of the dashboard.
fn dashboard_queries() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboards/sluice.json");
    let dash: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let queries: Vec<String> = dash["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()))
        .collect();
    assert!(queries.len() >= 12, "{queries:?}");
    queries
}

/// The value of one series line of `/metrics`, by its exact name and labels.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_sluice_under_load_and_every_dashboard_query_returns_series() {
    let Some(bin) = prometheus_bin() else {
        eprintln!("skipped: no prometheus binary (apt-get install prometheus, or set SLUICE_PROMETHEUS_BIN)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("sluice")).await;
    let (k, f) = (server.client(), server.firehose());
    k.create_stream().stream_name("clicks").shard_count(2).send().await.unwrap();
    f.create_delivery_stream()
        .delivery_stream_name("lake-feed")
        .extended_s3_destination_configuration(
            crate::firehose_delivery::destination("feed/", "feed-errors/").build().unwrap(),
        )
        .send()
        .await
        .unwrap();

    // Prometheus, scraping every second.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prom: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: sluice\n    static_configs: [{{targets: ['{}']}}]\n",
            server.addr
        ),
    )
    .unwrap();
    let mut prometheus = std::process::Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .unwrap();

    // Load through the SDKs while the queries are asked until each returns series.
    let (mut put_records, mut put_record, mut reads) = (0u64, 0u64, 0u64);
    let mut iterators = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        iterators.push(trim_horizon(&k, "clicks", shard).await);
    }
    let queries = dashboard_queries();
    let mut pending: Vec<String> = queries.clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0u64;
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "dashboard queries with no series after 90 s: {pending:#?}\nprometheus log:\n{}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        round += 1;
        let entries: Vec<PutRecordsRequestEntry> = (0..50)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .partition_key(format!("user-{i}"))
                    .data(Blob::new(format!("{{\"round\":{round},\"i\":{i}}}")))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = k.put_records().stream_name("clicks").set_records(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_record_count, Some(0));
        put_records += 50;
        k.put_record().stream_name("clicks").partition_key("one").data(Blob::new("x")).send().await.unwrap();
        put_record += 1;
        for it in &mut iterators {
            let r = k.get_records().shard_iterator(it.clone()).send().await.unwrap();
            *it = r.next_shard_iterator.unwrap();
            reads += 1;
        }
        f.put_record_batch()
            .delivery_stream_name("lake-feed")
            .records(
                FirehoseRecord::builder().data(aws_sdk_firehose::primitives::Blob::new("{\"a\":1}\n")).build().unwrap(),
            )
            .send()
            .await
            .unwrap();
        // The delivery stream's buffer interval passes on the test's clock.
        server.clock.advance(1_000);
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut still = Vec::new();
        for q in pending {
            let (status, body) = get(prom, &format!("/api/v1/query?query={}", percent_encode(&q))).await;
            let answer: Option<serde_json::Value> = serde_json::from_str(&body).ok();
            let series = answer.as_ref().and_then(|a| a["data"]["result"].as_array()).map_or(0, Vec::len);
            if status == 200 && answer.as_ref().is_some_and(|a| a["status"] == "success") && series > 0 {
                continue;
            }
            if status == 400 {
                panic!("Prometheus refused the dashboard query {q}: {body}");
            }
            still.push(q);
        }
        pending = still;
    }

    // What the series count is what the clients did.
    let (_, metrics) = get(server.addr, "/metrics").await;
    let series = |name: &str| value(&metrics, &format!("sluice_kinesis_{name}{{stream=\"clicks\"}}"));
    assert_eq!(series("put_records_total_records_total"), Some(put_records as f64), "{metrics}");
    assert_eq!(series("put_records_successful_records_total"), Some(put_records as f64));
    assert_eq!(series("put_records_failed_records_total"), Some(0.0));
    assert_eq!(series("put_records_success_total"), Some(round as f64));
    assert_eq!(series("put_record_success_total"), Some(put_record as f64));
    assert_eq!(series("incoming_records_total"), Some((put_records + put_record) as f64));
    assert_eq!(series("get_records_success_total"), Some(reads as f64));
    assert_eq!(series("put_records_latency_seconds_count"), Some(round as f64));
    // Shard-level series only with enhanced monitoring, as on AWS.
    assert!(!metrics.contains("sluice_kinesis_shard_"), "{metrics}");

    // A deleted stream's series go with it.
    k.delete_stream().stream_name("clicks").send().await.unwrap();
    let gone = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = get(server.addr, "/metrics").await;
        if !metrics.contains("stream=\"clicks\"") {
            break;
        }
        assert!(Instant::now() < gone, "the deleted stream's series stayed: {metrics}");
        server.clock.advance(1_000);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And a deleted delivery stream's.
    f.delete_delivery_stream().delivery_stream_name("lake-feed").send().await.unwrap();
    let (_, metrics) = get(server.addr, "/metrics").await;
    assert!(
        !metrics.contains("delivery_stream=\"lake-feed\""),
        "the deleted delivery stream's series stayed: {metrics}"
    );
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    server.stop().await;
}
