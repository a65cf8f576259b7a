//! A delivery stream with a WASM transform in place of Lambda: the clickstream example on
//! real Wikipedia edits read from a Kinesis stream. Only human edits land, partitioned by the
//! channel the transform returns (`!{partitionKeyFromLambda:channel}`); records the transform
//! fails land in `processing-failed/` with AWS's error record fields.

use std::sync::Arc;

use aws_sdk_firehose::types as fh;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use sluice_engine::ManualClock;

use crate::datasets::lines;
use crate::firehose_delivery::{delivery_config, destination, kinesis_source, wait_for};
use crate::s3_server::{objects, S3Server};
use crate::support::TestServer;

/// The folder of the built guest components (built once per test run).
pub fn guests() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
            sluice_transforms::build_guests(repo, &repo.join("target/wasm-guests")).unwrap()
        })
        .clone()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn param(n: &str, v: &str) -> fh::ProcessorParameter {
    fh::ProcessorParameter::builder()
        .parameter_name(fh::ProcessorParameterName::from(n))
        .parameter_value(v)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickstream_transform_lands_human_edits_by_channel_and_failures_in_processing_failed() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let clock = Arc::new(ManualClock::new(now_ms()));
    let wasm = guests();
    let server = TestServer::start_with(&dir.path().join("data"), clock.clone(), |c| {
        delivery_config(c, s3.lake_config());
        c.transform_dir = wasm;
    })
    .await;
    let kinesis = server.client();
    kinesis.create_stream().stream_name("clicks").shard_count(4).send().await.unwrap();
    server
        .firehose()
        .create_delivery_stream()
        .delivery_stream_name("clicks-lake")
        .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(kinesis_source("clicks"))
        .extended_s3_destination_configuration(
            destination(
                "clicks/channel=!{partitionKeyFromLambda:channel}/",
                "clicks-errors/!{firehose:error-output-type}/",
            )
            .dynamic_partitioning_configuration(fh::DynamicPartitioningConfiguration::builder().enabled(true).build())
            .processing_configuration(
                fh::ProcessingConfiguration::builder()
                    .enabled(true)
                    .processors(
                        fh::Processor::builder()
                            .r#type(fh::ProcessorType::Lambda)
                            .parameters(param(
                                "LambdaArn",
                                "arn:aws:lambda:us-east-1:000000000000:function:clickstream",
                            ))
                            .parameters(param("NumberOfRetries", "1"))
                            .build()
                            .unwrap(),
                    )
                    .processors(
                        fh::Processor::builder().r#type(fh::ProcessorType::AppendDelimiterToRecord).build().unwrap(),
                    )
                    .build(),
            )
            .build()
            .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let mut input = lines("wikiticker-2015-09-12-sampled.json.gz", 3_000);
    let broken = ["{\"channel\": \"#en.wikipedia\", \"delta\": ", "not an edit at all"];
    input.insert(10, broken[0].to_owned());
    input.insert(2_000, broken[1].to_owned());
    for chunk in input.chunks(500) {
        let entries = chunk
            .iter()
            .map(|r| {
                let user = serde_json::from_str::<serde_json::Value>(r)
                    .ok()
                    .and_then(|v| v["user"].as_str().map(str::to_owned));
                PutRecordsRequestEntry::builder()
                    .data(aws_sdk_kinesis::primitives::Blob::new(r.as_bytes()))
                    .partition_key(user.unwrap_or_else(|| "unknown".into()))
                    .build()
                    .unwrap()
            })
            .collect();
        kinesis.put_records().stream_name("clicks").set_records(Some(entries)).send().await.unwrap();
    }
    let humans: Vec<serde_json::Value> = input
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        .filter(|v| v["isRobot"] == false)
        .collect();

    let s3c = s3.client();
    let count =
        |o: &Vec<(String, Vec<u8>)>| o.iter().map(|(_, b)| b.iter().filter(|c| **c == b'\n').count()).sum::<usize>();
    let landed = wait_for(&clock, || objects(&s3c, "clicks/"), |o| count(o) >= humans.len()).await;
    let mut pages = Vec::new();
    for (key, body) in &landed {
        let channel = key.strip_prefix("clicks/channel=").unwrap().split('/').next().unwrap();
        for line in std::str::from_utf8(body).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["isRobot"], false, "bot edits are dropped");
            assert_eq!(v["channel"].as_str().unwrap().trim_start_matches('#'), channel, "{key}");
            assert!(v["edit_size_bucket"].is_string());
            pages.push((v["time"].as_str().unwrap().to_owned(), v["page"].as_str().unwrap().to_owned()));
        }
    }
    let mut expected: Vec<(String, String)> = humans
        .iter()
        .map(|v| (v["time"].as_str().unwrap().to_owned(), v["page"].as_str().unwrap().to_owned()))
        .collect();
    pages.sort();
    expected.sort();
    assert_eq!(pages, expected, "every human edit once");

    let errors = wait_for(&clock, || objects(&s3c, "clicks-errors/"), |o| count(o) >= broken.len()).await;
    let mut raw = Vec::new();
    for (key, body) in &errors {
        assert!(key.starts_with("clicks-errors/processing-failed/"), "{key}");
        for line in std::str::from_utf8(body).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["errorCode"], "Lambda.ProcessingFailedStatus", "{line}");
            assert_eq!(v["lambdaArn"], "arn:aws:lambda:us-east-1:000000000000:function:clickstream");
            assert_eq!(v["kinesisRecordMetadata"]["partitionKey"], "unknown");
            for f in ["attemptsMade", "arrivalTimestamp", "errorMessage", "attemptEndingTimestamp"] {
                assert!(v.get(f).is_some(), "{f} missing: {line}");
            }
            let data =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v["rawData"].as_str().unwrap())
                    .unwrap();
            raw.push(String::from_utf8(data).unwrap());
        }
    }
    raw.sort();
    let mut want: Vec<String> = broken.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    assert_eq!(raw, want);
    server.stop().await;
}
