//! Firehose end to end on the Beijing telemetry: PutRecords over HTTP into a 4-shard Kinesis
//! stream → a delivery stream converting to Parquet (SNAPPY, the Beijing schema, no transform,
//! no partitioning) → files in a local lake. Reports records/s and MB/s from the first put to
//! the last row landed. `benches/firehose_vs_duckdb.sh` runs it next to DuckDB's
//! `read_json` → Parquet on the same file.
//!
//! With `iceberg`, the delivery stream lands the readings in an Iceberg table instead
//! (`IcebergDestinationConfiguration`, identity-partitioned by station, columns inferred from
//! the first buffer), and the report adds data files per partition; records/s then runs to
//! the last row committed. Records/s counts every record until it is landed or in the error
//! prefix (`failed_records` in the report).
//!
//! Run: `cargo run --release -p sluice-benches --example firehose_e2e [records] [iceberg]`.

mod server_allocator;

use std::io::BufRead;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice::client::{KinesisClient, PutEntry};
use sluice::config::{Config, Fsync, Throttle};
use sluice_engine::SystemClock;

#[tokio::main]
async fn main() {
    let limit: usize = std::env::args().nth(1).map_or(usize::MAX, |n| n.parse().expect("a record count"));
    let iceberg = std::env::args().nth(2).as_deref() == Some("iceberg");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = repo.join("examples/data/beijing_multisite_air_quality_2013_2017.jsonl.gz");
    let lines: Vec<Vec<u8>> =
        std::io::BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap()))
            .split(b'\n')
            .take(limit)
            .map(Result::unwrap)
            .collect();
    let keys: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap()["station"].as_str().unwrap().to_owned())
        .collect();
    let bytes: usize = lines.iter().map(Vec::len).sum();

    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        throttle: Throttle::Off,
        fsync: Fsync::Interval,
        stream_transition_ms: 0,
        lake: sluice_firehose::LakeConfig {
            url: format!("file://{}", dir.path().join("lake").display()),
            ..Default::default()
        },
        schema_dir: repo.join("examples/schemas"),
        ..Config::default()
    };
    let state = sluice::open_state(&config, Arc::new(SystemClock)).unwrap();
    let listener = tokio::net::TcpListener::bind(config.bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sluice::server::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let c = KinesisClient::new(&format!("http://{addr}"), "us-east-1", "sluice", "sluice-secret");
    c.kinesis("CreateStream", &json!({"StreamName": "telemetry", "ShardCount": 4})).await.unwrap();
    let mut create = json!({
        "DeliveryStreamName": "telemetry-lake",
        "DeliveryStreamType": "KinesisStreamAsSource",
        "KinesisStreamSourceConfiguration": {"KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/telemetry", "RoleARN": "arn:aws:iam::000000000000:role/r"},
    });
    if iceberg {
        create["IcebergDestinationConfiguration"] = json!({
            "RoleARN": "arn:aws:iam::000000000000:role/r",
            "CatalogConfiguration": {"WarehouseLocation": "s3://lake/warehouse"},
            "S3Configuration": {"RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::lake"},
            "DestinationTableConfigurationList": [{"DestinationDatabaseName": "telemetry", "DestinationTableName": "readings",
                                                   "PartitionSpec": {"Identity": [{"SourceName": "station"}]}}],
            "TableCreationConfiguration": {"Enabled": true},
            "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 1},
        });
    } else {
        create["ExtendedS3DestinationConfiguration"] = json!({
            "RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::lake", "Prefix": "telemetry/",
            "BufferingHints": {"SizeInMBs": 128, "IntervalInSeconds": 1},
            "DataFormatConversionConfiguration": {"Enabled": true, "SchemaConfiguration": {"DatabaseName": "beijing", "TableName": "air_quality"}},
        });
    }
    c.firehose("CreateDeliveryStream", &create).await.unwrap();

    let start = Instant::now();
    let lines = Arc::new(lines);
    let keys = Arc::new(keys);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4usize {
        let (c, lines, keys) = (c.clone(), lines.clone(), keys.clone());
        tasks.spawn(async move {
            for chunk in (0..lines.len()).collect::<Vec<_>>().chunks(500).skip(worker).step_by(4) {
                let entries: Vec<PutEntry<'_>> =
                    chunk.iter().map(|&i| PutEntry { partition_key: &keys[i], data: &lines[i] }).collect();
                let failed = c.put_records("telemetry", &entries).await.unwrap();
                assert!(failed.is_empty(), "throttling is off");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let put_secs = start.elapsed().as_secs_f64();
    let metrics = state.firehose.delivery_streams.context().metrics.clone();
    let label = sluice_firehose::metrics::Metrics::label("telemetry-lake");
    // Every record ends delivered or in the error prefix (a reading that does not fit the
    // columns inferred from the first buffer fails conversion alone).
    let failed = || -> u64 {
        use sluice_firehose::error_output::{FORMAT_CONVERSION_FAILED, PROCESSING_FAILED};
        [FORMAT_CONVERSION_FAILED, PROCESSING_FAILED, sluice_firehose::worker::S3_FAILED]
            .iter()
            .map(|t| {
                let label = sluice_firehose::metrics::ErrorLabel {
                    delivery_stream: "telemetry-lake".into(),
                    error_output_type: (*t).into(),
                };
                metrics.failed_records.get_or_create(&label).get()
            })
            .sum()
    };
    while metrics.delivered_records.get_or_create(&label).get() + failed() < lines.len() as u64 {
        assert!(start.elapsed() < Duration::from_secs(600), "delivery did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let parquet_bytes = metrics.delivered_bytes.get_or_create(&label).get();
    let mut report = json!({"records": lines.len(), "json_bytes": bytes, "put_seconds": put_secs, "seconds": secs,
               "records_per_s": lines.len() as f64 / secs, "mb_per_s": bytes as f64 / secs / 1e6, "parquet_bytes": parquet_bytes,
               "failed_records": failed()});
    if iceberg {
        // Data files per partition folder (`station=<name>`) of the table.
        let data = dir.path().join("lake/lake/warehouse/telemetry.db/readings/data");
        let counts: Vec<usize> =
            std::fs::read_dir(&data).unwrap().map(|p| std::fs::read_dir(p.unwrap().path()).unwrap().count()).collect();
        report["partitions"] = counts.len().into();
        report["files_per_partition_max"] = counts.iter().max().copied().unwrap_or(0).into();
        report["files_per_partition_mean"] = (counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64).into();
    }
    println!("{report}");
    let _ = stop.send(());
    let _ = server.await;
}
