//! Firehose delivery end to end on the real Beijing telemetry: Kinesis stream or DirectPut
//! in, Parquet out in a real S3-compatible server (or a folder), read back with
//! `aws-sdk-s3` and `parquet`, rows and values compared with the input.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types as fh;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use sluice::config::{Config, Throttle};
use sluice_engine::{Clock, ManualClock};

use crate::datasets::{beijing, BeijingDigest};
use crate::s3_server::{objects, S3Server, BUCKET};
use crate::support::TestServer;

pub fn schema_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/schemas")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A delivery test's world: an S3-compatible server, and Sluice landing in it with a manual
/// clock. Fields drop in order: the server stops first, the folder goes last.
pub struct Harness {
    pub server: TestServer,
    pub clock: Arc<ManualClock>,
    pub s3: S3Server,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// Starts both; the clock starts at `start_ms` or the real time. `adjust` changes the
    /// delivery settings further.
    pub async fn start(start_ms: Option<u64>, adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s3 = S3Server::start(&dir.path().join("s3")).await;
        let clock = Arc::new(ManualClock::new(start_ms.unwrap_or_else(now_ms)));
        let server = TestServer::start_with(&dir.path().join("data"), clock.clone(), |c| {
            delivery_config(c, s3.lake_config());
            adjust(c);
        })
        .await;
        Self { server, clock, s3, dir }
    }
}

/// Test server settings for delivery: no throttling, schemas from `examples/schemas`.
pub fn delivery_config(c: &mut Config, lake: sluice_firehose::LakeConfig) {
    c.throttle = Throttle::Off;
    c.lake = lake;
    c.schema_dir = schema_dir();
}

/// JSON (OpenX) to Parquet with the schema of `table` (database, table), or inferred from the
/// first buffer when `None`.
pub fn json_to_parquet(table: Option<(&str, &str)>) -> fh::DataFormatConversionConfiguration {
    let schema = table.map(|(database, table)| {
        fh::SchemaConfiguration::builder()
            .database_name(database)
            .table_name(table)
            .role_arn("arn:aws:iam::000000000000:role/firehose")
            .build()
    });
    fh::DataFormatConversionConfiguration::builder()
        .enabled(true)
        .set_schema_configuration(schema)
        .input_format_configuration(
            fh::InputFormatConfiguration::builder()
                .deserializer(
                    fh::Deserializer::builder().open_x_json_ser_de(fh::OpenXJsonSerDe::builder().build()).build(),
                )
                .build(),
        )
        .output_format_configuration(
            fh::OutputFormatConfiguration::builder()
                .serializer(fh::Serializer::builder().parquet_ser_de(fh::ParquetSerDe::builder().build()).build())
                .build(),
        )
        .build()
}

/// The Parquet conversion of the Beijing schema, as `CreateDeliveryStream` takes it.
pub fn beijing_parquet() -> fh::DataFormatConversionConfiguration {
    fh::DataFormatConversionConfiguration::builder()
        .enabled(true)
        .schema_configuration(
            fh::SchemaConfiguration::builder()
                .database_name("beijing")
                .table_name("air_quality")
                .role_arn("arn:aws:iam::000000000000:role/firehose")
                .build(),
        )
        .input_format_configuration(
            fh::InputFormatConfiguration::builder()
                .deserializer(
                    fh::Deserializer::builder().open_x_json_ser_de(fh::OpenXJsonSerDe::builder().build()).build(),
                )
                .build(),
        )
        .output_format_configuration(
            fh::OutputFormatConfiguration::builder()
                .serializer(
                    fh::Serializer::builder()
                        .parquet_ser_de(fh::ParquetSerDe::builder().compression(fh::ParquetCompression::Snappy).build())
                        .build(),
                )
                .build(),
        )
        .build()
}

/// A Kinesis stream source: `stream` of the test account.
pub fn kinesis_source(stream: &str) -> fh::KinesisStreamSourceConfiguration {
    fh::KinesisStreamSourceConfiguration::builder()
        .kinesis_stream_arn(format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}"))
        .role_arn("arn:aws:iam::000000000000:role/firehose")
        .build()
        .unwrap()
}

/// A `MetadataExtraction` processor with `query`.
pub fn partition_by(query: &str) -> fh::ProcessingConfiguration {
    let param = |n, v: &str| fh::ProcessorParameter::builder().parameter_name(n).parameter_value(v).build().unwrap();
    fh::ProcessingConfiguration::builder()
        .enabled(true)
        .processors(
            fh::Processor::builder()
                .r#type(fh::ProcessorType::MetadataExtraction)
                .parameters(param(fh::ProcessorParameterName::MetadataExtractionQuery, query))
                .parameters(param(fh::ProcessorParameterName::JsonParsingEngine, "JQ-1.6"))
                .build()
                .unwrap(),
        )
        .build()
}

/// An Extended S3 destination into [`BUCKET`] flushing at 1 MiB or 1 s.
pub fn destination(prefix: &str, error_prefix: &str) -> fh::builders::ExtendedS3DestinationConfigurationBuilder {
    fh::ExtendedS3DestinationConfiguration::builder()
        .role_arn("arn:aws:iam::000000000000:role/firehose")
        .bucket_arn(format!("arn:aws:s3:::{BUCKET}"))
        .prefix(prefix)
        .error_output_prefix(error_prefix)
        .buffering_hints(fh::BufferingHints::builder().size_in_mbs(1).interval_in_seconds(1).build())
}

/// Creates the DirectPut delivery stream `name` landing Beijing readings as Parquet under
/// `prefix`, records that do not convert under `error_prefix`.
pub async fn create_beijing_parquet(firehose: &aws_sdk_firehose::Client, name: &str, prefix: &str, error_prefix: &str) {
    firehose
        .create_delivery_stream()
        .delivery_stream_name(name)
        .delivery_stream_type(fh::DeliveryStreamType::DirectPut)
        .extended_s3_destination_configuration(
            destination(prefix, error_prefix).data_format_conversion_configuration(beijing_parquet()).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// Beijing readings as Parquet under `prefix`, partitioned by station with a jq query
/// (`!{partitionKeyFromQuery:station}` in the prefix); failures under `error_prefix`.
pub fn beijing_by_station(prefix: &str, error_prefix: &str) -> fh::ExtendedS3DestinationConfiguration {
    destination(prefix, error_prefix)
        .dynamic_partitioning_configuration(fh::DynamicPartitioningConfiguration::builder().enabled(true).build())
        .processing_configuration(partition_by("{station: .station}"))
        .data_format_conversion_configuration(beijing_parquet())
        .build()
        .unwrap()
}

/// Waits until `done` says the landed objects are complete, moving the server's clock a
/// second at a time so buffering intervals pass. Panics after 60 s of real time.
pub async fn wait_for<T>(
    clock: &ManualClock,
    mut fetch: impl AsyncFnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        clock.advance(1_000);
        tokio::time::sleep(Duration::from_millis(150)).await;
        let got = fetch().await;
        if done(&got) {
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "delivery did not complete within 60 s");
    }
}

/// Rows of the Beijing digest (for `wait_for`).
pub fn rows(objects: &[(String, Vec<u8>)]) -> usize {
    BeijingDigest::of_parquet(objects).0.readings.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_stream_of_beijing_telemetry_lands_as_partitioned_parquet_in_s3() {
    let Harness { dir: _dir, s3, clock, server } = Harness::start(None, |_| {}).await;
    let kinesis = server.client();
    kinesis.create_stream().stream_name("telemetry").shard_count(4).send().await.unwrap();
    let firehose = server.firehose();
    firehose
        .create_delivery_stream()
        .delivery_stream_name("telemetry-lake")
        .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(kinesis_source("telemetry"))
        .extended_s3_destination_configuration(beijing_by_station(
            "telemetry/station=!{partitionKeyFromQuery:station}/!{timestamp:yyyy/MM/dd}/",
            "errors/!{firehose:error-output-type}/",
        ))
        .send()
        .await
        .unwrap();

    // 2,000 hours of all 12 stations, put with their station as partition key.
    let input = beijing(24_000);
    let put_ms = clock.now_ms();
    for chunk in input.chunks(500) {
        let entries = chunk
            .iter()
            .map(|r| {
                let station =
                    serde_json::from_str::<serde_json::Value>(r).unwrap()["station"].as_str().unwrap().to_owned();
                PutRecordsRequestEntry::builder()
                    .data(aws_sdk_kinesis::primitives::Blob::new(r.as_bytes()))
                    .partition_key(station)
                    .build()
                    .unwrap()
            })
            .collect();
        let out = kinesis.put_records().stream_name("telemetry").set_records(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }

    let s3c = s3.client();
    let landed = wait_for(&clock, || objects(&s3c, "telemetry/"), |o| rows(o) >= input.len()).await;
    let (digest, stations) = BeijingDigest::of_parquet(&landed);
    assert_eq!(digest, BeijingDigest::of_json(&input), "every reading lands once, values intact");
    let day = sluice_firehose::timestamp_pattern::TimestampPattern::parse("yyyy/MM/dd").unwrap();
    for (key, in_object) in &stations {
        let station = key.strip_prefix("telemetry/station=").unwrap().split('/').next().unwrap();
        assert_eq!(in_object, &vec![station.to_owned()], "{key} holds only its partition");
        // The timestamp is the arrival time of the object's oldest record.
        assert!(key.contains(&format!("/{}/telemetry-lake-1-", day.format(put_ms))), "{key}");
        assert!(key.ends_with(".parquet"), "{key}");
    }
    assert_eq!(
        stations.keys().map(|k| k.split('/').nth(1).unwrap()).collect::<std::collections::BTreeSet<_>>().len(),
        12
    );
    assert!(objects(&s3c, "errors/").await.is_empty(), "no record failed");
    server.stop().await;
}

/// A KPL producer aggregates many user records into one Kinesis record; Firehose lands one
/// row per user record, partitioned by the user record's own data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregated_records_land_one_row_per_user_record() {
    let Harness { dir: _dir, s3, clock, server } = Harness::start(None, |_| {}).await;
    let kinesis = server.client();
    kinesis.create_stream().stream_name("kpl").shard_count(2).send().await.unwrap();
    let firehose = server.firehose();
    firehose
        .create_delivery_stream()
        .delivery_stream_name("kpl-lake")
        .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(kinesis_source("kpl"))
        .extended_s3_destination_configuration(beijing_by_station(
            "kpl/station=!{partitionKeyFromQuery:station}/",
            "errors/!{firehose:error-output-type}/",
        ))
        .send()
        .await
        .unwrap();
    // 3,000 readings in aggregated records of 100 user records each, plus one plain record.
    let input = beijing(3_001);
    let (plain, aggregated) = input.split_last().unwrap();
    let mut entries: Vec<PutRecordsRequestEntry> = aggregated
        .chunks(100)
        .enumerate()
        .map(|(i, chunk)| {
            let users: Vec<(&str, &[u8])> = chunk.iter().map(|r| ("reading", r.as_bytes())).collect();
            PutRecordsRequestEntry::builder()
                .data(aws_sdk_kinesis::primitives::Blob::new(sluice_firehose::kpl::aggregate(&users)))
                .partition_key(format!("agg-{i}"))
                .build()
                .unwrap()
        })
        .collect();
    entries.push(
        PutRecordsRequestEntry::builder()
            .data(aws_sdk_kinesis::primitives::Blob::new(plain.as_bytes()))
            .partition_key("plain")
            .build()
            .unwrap(),
    );
    let out = kinesis.put_records().stream_name("kpl").set_records(Some(entries)).send().await.unwrap();
    assert_eq!(out.failed_record_count(), Some(0));
    let s3c = s3.client();
    let landed = wait_for(&clock, || objects(&s3c, "kpl/"), |o| rows(o) >= input.len()).await;
    assert_eq!(BeijingDigest::of_parquet(&landed).0, BeijingDigest::of_json(&input), "one row per user record");
    assert!(objects(&s3c, "errors/").await.is_empty(), "no record failed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_put_batches_land_in_s3_and_in_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let input = beijing(6_000);
    for lake in ["s3", "file"] {
        let clock = Arc::new(ManualClock::new(now_ms()));
        let folder = dir.path().join("folder-lake");
        let config = match lake {
            "s3" => s3.lake_config(),
            _ => sluice_firehose::LakeConfig { url: format!("file://{}", folder.display()), ..Default::default() },
        };
        let server = TestServer::start_with(&dir.path().join(format!("data-{lake}")), clock.clone(), |c| {
            delivery_config(c, config)
        })
        .await;
        let put_ms = clock.now_ms();
        let firehose = server.firehose();
        firehose
            .create_delivery_stream()
            .delivery_stream_name("direct")
            .extended_s3_destination_configuration(
                destination("direct/", "direct-errors/")
                    .data_format_conversion_configuration(beijing_parquet())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        for chunk in input.chunks(500) {
            let records =
                chunk.iter().map(|r| fh::Record::builder().data(Blob::new(r.as_bytes())).build().unwrap()).collect();
            let out = firehose
                .put_record_batch()
                .delivery_stream_name("direct")
                .set_records(Some(records))
                .send()
                .await
                .unwrap();
            assert_eq!(out.failed_put_count(), 0);
            assert_eq!(out.request_responses().len(), chunk.len());
            assert!(out.request_responses().iter().all(|r| r.record_id().is_some()));
        }
        let s3c = s3.client();
        let fetch = async || match lake {
            "s3" => objects(&s3c, "direct/").await,
            _ => local_objects(&folder.join(BUCKET)),
        };
        let landed = wait_for(&clock, fetch, |o| rows(o) >= input.len()).await;
        assert_eq!(BeijingDigest::of_parquet(&landed).0, BeijingDigest::of_json(&input), "{lake}");
        let hour = sluice_firehose::timestamp_pattern::TimestampPattern::parse("yyyy/MM/dd/HH/").unwrap();
        for (key, _) in &landed {
            // No timestamp expression: Firehose's default hourly prefix follows the literal one.
            let rest = key.strip_prefix("direct/").unwrap();
            assert_eq!(rest.matches('/').count(), 4, "{key}");
            assert!(rest.starts_with(&hour.format(put_ms)), "{key}");
        }
        server.stop().await;
    }
}

/// The original records of error objects (all under `prefix`), each checked to carry every
/// field of Firehose's error record and a format conversion error code.
pub fn conversion_failures(errors: &[(String, Vec<u8>)], prefix: &str) -> Vec<String> {
    let mut raw = Vec::new();
    for (key, body) in errors {
        assert!(key.starts_with(prefix), "{key}");
        for line in String::from_utf8(body.clone()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in [
                "attemptsMade",
                "arrivalTimestamp",
                "lastErrorCode",
                "lastErrorMessage",
                "attemptEndingTimestamp",
                "rawData",
            ] {
                assert!(v.get(field).is_some(), "{field} missing in {line}");
            }
            let code = v["lastErrorCode"].as_str().unwrap();
            assert!(
                code == "DataFormatConversion.ParseError" || code == "DataFormatConversion.MalformedData",
                "{code}"
            );
            let data =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v["rawData"].as_str().unwrap())
                    .unwrap();
            raw.push(String::from_utf8(data).unwrap());
        }
    }
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inferred_schema_follows_the_majority_and_fails_only_the_junk() {
    let Harness { dir: _dir, s3, clock, server } = Harness::start(None, |_| {}).await;
    let firehose = server.firehose();
    firehose
        .create_delivery_stream()
        .delivery_stream_name("inferred")
        .extended_s3_destination_configuration(
            destination("good/", "bad/!{firehose:error-output-type}/")
                .data_format_conversion_configuration(json_to_parquet(None))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let good = beijing(6_000);
    // Junk in the first buffer, which the schema is inferred from: a minority of wrong kinds.
    let bad: Vec<String> = vec![
        r#"{"No": "one", "year": 2013, "month": 3, "day": 1, "hour": 0, "station": "X"}"#.into(),
        r#"{"No": 9, "year": 2013, "month": 3, "day": 1, "hour": 0, "PM2.5": "NA", "station": "X"}"#.into(),
        r#"{"No": 10, "year": true, "month": 3, "day": 1, "hour": 0, "station": "X"}"#.into(),
        r#"{"No": 11, "year": 2013, "month": 3, "day": 1, "hour": [1, 2], "station": "X"}"#.into(),
        r#"{"No": 12, "year": 2013, "month": "March", "day": 1, "hour": 0, "station": "X"}"#.into(),
    ];
    let mut mixed: Vec<String> = good.clone();
    for (i, b) in bad.iter().enumerate() {
        mixed.insert(i * 1_000 + 3, b.clone());
    }
    for chunk in mixed.chunks(500) {
        let records =
            chunk.iter().map(|r| fh::Record::builder().data(Blob::new(r.as_bytes())).build().unwrap()).collect();
        firehose.put_record_batch().delivery_stream_name("inferred").set_records(Some(records)).send().await.unwrap();
    }
    let s3c = s3.client();
    let landed = wait_for(&clock, || objects(&s3c, "good/"), |o| rows(o) >= good.len()).await;
    assert_eq!(BeijingDigest::of_parquet(&landed).0, BeijingDigest::of_json(&good), "every good reading, typed");
    let errors = wait_for(
        &clock,
        || objects(&s3c, "bad/"),
        |o| o.iter().map(|(_, b)| b.iter().filter(|c| **c == b'\n').count()).sum::<usize>() >= bad.len(),
    )
    .await;
    let mut raw = conversion_failures(&errors, "bad/format-conversion-failed/");
    raw.sort();
    let mut expected = bad.clone();
    expected.sort();
    assert_eq!(raw, expected, "exactly the junk records in the error prefix");
    server.stop().await;
}

/// Whether `name` is not an object but a file being written: a hidden file, or
/// object_store's `<object>#<n>` before its rename into place.
fn is_temporary(name: &str) -> bool {
    name.starts_with('.')
        || name.rsplit_once('#').is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Every file under `root` that is an object, as (key relative to it, bytes).
pub fn local_objects(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if !is_temporary(&p.file_name().unwrap().to_string_lossy()) {
                out.push((p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_schema_violating_records_land_in_format_conversion_failed_alone() {
    let Harness { dir: _dir, s3, clock, server } = Harness::start(None, |_| {}).await;
    let firehose = server.firehose();
    create_beijing_parquet(&firehose, "mixed", "good/", "bad/!{firehose:error-output-type}/").await;
    let good = beijing(1_000);
    let bad: Vec<String> = vec![
        r#"{"No": 1, "year": 2013, "month": 3"#.into(), // cut short
        "not json at all".into(),                       // not JSON
        r#"{"No": "one", "year": 2013, "month": 3, "day": 1, "hour": 0, "station": "X"}"#.into(), // a string for a bigint
        r#"{"No": 7, "year": 2013, "month": 3, "day": 1, "hour": 0}"#.into(), // station missing (not nullable)
        r#"[1, 2, 3]"#.into(),                                                // not an object
        r#"{"No": 8, "year": 2013, "month": 3, "day": 1, "hour": 0.5, "station": "X"}"#.into(), // a fraction for an int
    ];
    // Bad records spread through the good ones, in one batch.
    let mut mixed: Vec<String> = good.clone();
    for (i, b) in bad.iter().enumerate() {
        mixed.insert(i * 150 + 7, b.clone());
    }
    for chunk in mixed.chunks(500) {
        let records =
            chunk.iter().map(|r| fh::Record::builder().data(Blob::new(r.as_bytes())).build().unwrap()).collect();
        firehose.put_record_batch().delivery_stream_name("mixed").set_records(Some(records)).send().await.unwrap();
    }
    let s3c = s3.client();
    let landed = wait_for(&clock, || objects(&s3c, "good/"), |o| rows(o) >= good.len()).await;
    assert_eq!(BeijingDigest::of_parquet(&landed).0, BeijingDigest::of_json(&good));
    let errors = wait_for(
        &clock,
        || objects(&s3c, "bad/"),
        |o| o.iter().map(|(_, b)| b.iter().filter(|c| **c == b'\n').count()).sum::<usize>() >= bad.len(),
    )
    .await;
    let mut raw = conversion_failures(&errors, "bad/format-conversion-failed/");
    raw.sort();
    let mut expected = bad.clone();
    expected.sort();
    assert_eq!(raw, expected, "exactly the bad records, each once, with their original bytes");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_source_is_followed_through_splits_and_merges_from_latest() {
    let Harness { dir: _dir, s3, clock, server } = Harness::start(None, |_| {}).await;
    let kinesis = server.client();
    kinesis.create_stream().stream_name("events").shard_count(2).send().await.unwrap();
    let put = async |from: usize, to: usize| {
        let entries = (from..to)
            .map(|i| {
                PutRecordsRequestEntry::builder()
                    .data(aws_sdk_kinesis::primitives::Blob::new(format!("event-{i}")))
                    .partition_key(format!("key-{}", i % 37))
                    .build()
                    .unwrap()
            })
            .collect();
        kinesis.put_records().stream_name("events").set_records(Some(entries)).send().await.unwrap();
    };
    // Records from before the delivery stream exists are not delivered (LATEST).
    put(0, 100).await;
    server
        .firehose()
        .create_delivery_stream()
        .delivery_stream_name("events-raw")
        .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(kinesis_source("events"))
        .extended_s3_destination_configuration(
            destination("events/", "events-errors/")
                .processing_configuration(
                    fh::ProcessingConfiguration::builder()
                        .enabled(true)
                        .processors(
                            fh::Processor::builder()
                                .r#type(fh::ProcessorType::AppendDelimiterToRecord)
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .compression_format(fh::CompressionFormat::Gzip)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    put(100, 300).await;
    kinesis
        .split_shard()
        .stream_name("events")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((1u128 << 125).to_string())
        .send()
        .await
        .unwrap();
    put(300, 500).await;
    kinesis
        .merge_shards()
        .stream_name("events")
        .shard_to_merge("shardId-000000000003")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .unwrap();
    put(500, 700).await;
    let s3c = s3.client();
    let lines = |o: &Vec<(String, Vec<u8>)>| -> Vec<String> {
        let mut all = Vec::new();
        for (key, gz) in o {
            assert!(key.ends_with(".gz"), "{key}");
            let mut text = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut text).unwrap();
            all.extend(text.lines().map(str::to_owned));
        }
        all.sort();
        all
    };
    let landed = wait_for(&clock, || objects(&s3c, "events/"), |o| lines(o).len() >= 600).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut expected: Vec<String> = (100..700).map(|i| format!("event-{i}")).collect();
    expected.sort();
    assert_eq!(lines(&landed), expected, "every record since creation once, none from before");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_over_16_mib_are_written_whole_with_a_multipart_upload() {
    let Harness { dir: _dir, s3, clock, server } = Harness::start(None, |_| {}).await;
    let firehose = server.firehose();
    firehose
        .create_delivery_stream()
        .delivery_stream_name("big")
        .extended_s3_destination_configuration(
            destination("big/", "big-errors/")
                .buffering_hints(fh::BufferingHints::builder().size_in_mbs(32).interval_in_seconds(1).build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // 18 records of 1,000,000 bytes: one object of 18 MB, above the multipart threshold.
    let records: Vec<Vec<u8>> = (0..18u8).map(|i| vec![b'a' + i; 1_000_000]).collect();
    for chunk in records.chunks(4) {
        let batch = chunk.iter().map(|r| fh::Record::builder().data(Blob::new(r.clone())).build().unwrap()).collect();
        firehose.put_record_batch().delivery_stream_name("big").set_records(Some(batch)).send().await.unwrap();
    }
    let s3c = s3.client();
    let landed = wait_for(&clock, || objects(&s3c, "big/"), |o| !o.is_empty()).await;
    assert_eq!(landed.len(), 1, "one object");
    assert!(landed[0].1.len() > sluice_firehose::lake::MULTIPART_THRESHOLD_BYTES);
    assert_eq!(landed[0].1, records.concat(), "the object holds every record, in order");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backup_enabled_lands_every_source_record_as_received_beside_the_processed_output() {
    use aws_sdk_firehose::error::ProvideErrorMetadata;
    let Harness { dir: _dir, s3, clock, server } = Harness::start(None, |_| {}).await;
    let firehose = server.firehose();
    let backup = |prefix: &str| {
        fh::S3DestinationConfiguration::builder()
            .role_arn("arn:aws:iam::000000000000:role/firehose")
            .bucket_arn(format!("arn:aws:s3:::{BUCKET}"))
            .prefix(prefix)
            .compression_format(fh::CompressionFormat::Gzip)
            .build()
            .unwrap()
    };
    let newline = fh::ProcessingConfiguration::builder()
        .enabled(true)
        .processors(fh::Processor::builder().r#type(fh::ProcessorType::AppendDelimiterToRecord).build().unwrap())
        .build();
    // Enabled without a backup destination is refused.
    let e = firehose
        .create_delivery_stream()
        .delivery_stream_name("nowhere")
        .extended_s3_destination_configuration(
            destination("x/", "x-errors/").s3_backup_mode(fh::S3BackupMode::Enabled).build().unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidArgumentException"), "{e:?}");
    firehose
        .create_delivery_stream()
        .delivery_stream_name("kept")
        .extended_s3_destination_configuration(
            destination("out/", "out-errors/")
                .processing_configuration(newline)
                .s3_backup_mode(fh::S3BackupMode::Enabled)
                .s3_backup_configuration(backup("raw/"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let d = firehose.describe_delivery_stream().delivery_stream_name("kept").send().await.unwrap();
    let d = d.delivery_stream_description().unwrap();
    let ext = d.destinations()[0].extended_s3_destination_description().unwrap();
    assert_eq!(ext.s3_backup_mode(), Some(&fh::S3BackupMode::Enabled));
    let b = ext.s3_backup_description().expect("S3BackupDescription");
    assert_eq!((b.prefix(), b.compression_format()), (Some("raw/"), &fh::CompressionFormat::Gzip));
    assert_eq!(b.bucket_arn(), format!("arn:aws:s3:::{BUCKET}"));

    let records: Vec<fh::Record> =
        (0..200).map(|i| fh::Record::builder().data(Blob::new(format!("{{\"n\":{i}}}"))).build().unwrap()).collect();
    let out = firehose.put_record_batch().delivery_stream_name("kept").set_records(Some(records)).send().await.unwrap();
    assert_eq!(out.failed_put_count(), 0);
    let s3c = s3.client();
    let gunzip = |o: &Vec<(String, Vec<u8>)>| -> String {
        o.iter()
            .map(|(key, gz)| {
                assert!(key.ends_with(".gz"), "{key}");
                let mut text = String::new();
                std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut text).unwrap();
                text
            })
            .collect()
    };
    let raw = wait_for(&clock, || objects(&s3c, "raw/"), |o| gunzip(o).matches('{').count() >= 200).await;
    let delivered = objects(&s3c, "out/").await;
    // The backup holds the records as put: no delimiter the processing added.
    let expected: String = (0..200).map(|i| format!("{{\"n\":{i}}}")).collect();
    assert_eq!(gunzip(&raw), expected);
    let lines: Vec<String> = delivered
        .iter()
        .flat_map(|(_, b)| String::from_utf8(b.clone()).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert_eq!(lines.len(), 200, "{lines:?}");
    // The backup prefix: `raw/` then AWS's default `YYYY/MM/DD/HH/` of the arrival time.
    let key = &raw[0].0;
    let hour =
        sluice_firehose::timestamp_pattern::TimestampPattern::parse("yyyy/MM/dd/HH/").unwrap().format(clock.now_ms());
    assert!(key.starts_with("raw/") && key[4..].starts_with(&hour[..8]), "{key} vs {hour}");

    // Enabled stays enabled; a backup update changes the prefix.
    let version = d.version_id().to_owned();
    let e = firehose
        .update_destination()
        .delivery_stream_name("kept")
        .current_delivery_stream_version_id(&version)
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(
            fh::ExtendedS3DestinationUpdate::builder().s3_backup_mode(fh::S3BackupMode::Disabled).build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidArgumentException"), "{e:?}");
    firehose
        .update_destination()
        .delivery_stream_name("kept")
        .current_delivery_stream_version_id(&version)
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(
            fh::ExtendedS3DestinationUpdate::builder()
                .s3_backup_update(fh::S3DestinationUpdate::builder().prefix("raw2/").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    let d = firehose.describe_delivery_stream().delivery_stream_name("kept").send().await.unwrap();
    let ext = d.delivery_stream_description().unwrap().destinations()[0].extended_s3_destination_description().unwrap();
    let b = ext.s3_backup_description().unwrap();
    assert_eq!((b.prefix(), b.compression_format()), (Some("raw2/"), &fh::CompressionFormat::Gzip));
    server.stop().await;
}
