//! Hostile Firehose requests: a `LambdaArn`, a schema's `DatabaseName`/`TableName` or a
//! bucket name that would reach outside Sluice's folders, or name a FIFO, a device, a link or
//! an oversized file, is refused with `InvalidArgumentException` at `CreateDeliveryStream` and
//! `UpdateDestination`, promptly, nothing is created, and the server keeps answering.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_firehose::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_firehose::types as fh;
use sluice_engine::ManualClock;

use crate::firehose_delivery::{delivery_config, destination};
use crate::support::TestServer;

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:";

/// A server over a temporary folder with its own transform, schema and `file://` lake
/// folders, and a folder outside them holding what links point to.
struct World {
    server: TestServer,
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl World {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s);
        for d in ["transforms", "schemas/db", "outside/db", "transforms/folder.wasm"] {
            std::fs::create_dir_all(p(d)).unwrap();
        }
        let schema = br#"{"fields": [{"name": "a", "type": "string"}]}"#;
        std::fs::write(p("outside/x.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
        std::fs::write(p("outside/db/t.json"), schema).unwrap();
        std::fs::write(p("schemas/db/t.json"), schema).unwrap();
        // Over the caps (32 MiB for components, 1 MiB for schemas), valid otherwise.
        std::fs::File::create(p("transforms/big.wasm")).unwrap().set_len((32 << 20) + 1).unwrap();
        let mut big_schema = vec![b' '; (1 << 20) + 1];
        big_schema.extend_from_slice(schema);
        std::fs::write(p("schemas/db/big.json"), big_schema).unwrap();
        for fifo in ["transforms/fifo.wasm", "schemas/db/fifo.json"] {
            assert!(std::process::Command::new("mkfifo").arg(p(fifo)).status().unwrap().success());
        }
        std::os::unix::fs::symlink(p("outside/x.wasm"), p("transforms/link.wasm")).unwrap();
        std::os::unix::fs::symlink(p("outside/db"), p("schemas/escape")).unwrap();
        std::os::unix::fs::symlink(p("outside/db/t.json"), p("schemas/db/link.json")).unwrap();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let clock = Arc::new(ManualClock::new(now));
        let server = TestServer::start_with(&p("data"), clock.clone(), |c| {
            delivery_config(
                c,
                sluice_firehose::LakeConfig { url: format!("file://{}", p("lake").display()), ..Default::default() },
            );
            c.transform_dir = p("transforms");
            c.schema_dir = p("schemas");
        })
        .await;
        Self { server, dir, clock }
    }

    fn path(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }

    /// The delivery streams, asked within 10 s: the server still answers.
    async fn names(&self) -> Vec<String> {
        let list = self.server.firehose().list_delivery_streams().send();
        let out = tokio::time::timeout(Duration::from_secs(10), list).await.expect("the server answers").unwrap();
        out.delivery_stream_names().to_vec()
    }
}

/// The error code and message of a call that must fail within 30 s.
async fn refused<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    what: &str,
    call: impl Future<Output = Result<T, SdkError<E>>>,
) -> (String, String) {
    let Ok(r) = tokio::time::timeout(Duration::from_secs(30), call).await else { panic!("{what}: hung") };
    let e = r.expect_err(what);
    let (code, message) = (e.code().unwrap_or_default().to_owned(), e.message().unwrap_or_default().to_owned());
    assert_eq!(code, "InvalidArgumentException", "{what}: {message}");
    assert!(!message.is_empty(), "{what}");
    (code, message)
}

fn lambda(arn: &str) -> fh::ProcessingConfiguration {
    fh::ProcessingConfiguration::builder()
        .enabled(true)
        .processors(
            fh::Processor::builder()
                .r#type(fh::ProcessorType::Lambda)
                .parameters(
                    fh::ProcessorParameter::builder()
                        .parameter_name(fh::ProcessorParameterName::LambdaArn)
                        .parameter_value(arn)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .build()
}

/// JSON to Parquet with the schema of `table` in `database`.
fn parquet(database: &str, table: &str) -> fh::DataFormatConversionConfiguration {
    crate::firehose_delivery::json_to_parquet(Some((database, table)))
}

async fn create(w: &World, name: &str, d: fh::ExtendedS3DestinationConfiguration) -> Result<(), String> {
    let call = w
        .server
        .firehose()
        .create_delivery_stream()
        .delivery_stream_name(name)
        .extended_s3_destination_configuration(d)
        .send();
    match tokio::time::timeout(Duration::from_secs(30), call).await.expect("hung") {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{}: {}", e.code().unwrap_or_default(), e.message().unwrap_or_default())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_arns_naming_anything_but_a_plain_file_of_the_transform_folder_are_refused() {
    let w = World::start().await;
    let f = w.server.firehose();
    // Before this was fixed, the first cases failed harmlessly; `/dev/zero` was read without
    // end and a FIFO blocked a runtime worker for good.
    let cases = [
        ("../outside/x.wasm".to_owned(), "must be arn:aws:lambda"),
        (format!("{ARN}../x"), "must be arn:aws:lambda"),
        ("link.wasm".to_owned(), "symbolic link"),
        (w.path("outside/x.wasm").display().to_string(), "must be arn:aws:lambda"),
        ("../../etc/passwd".to_owned(), "must be arn:aws:lambda"),
        ("/dev/zero".to_owned(), "must be arn:aws:lambda"),
        (format!("{ARN}..%2Fx"), "must be arn:aws:lambda"),
        (format!("{ARN}x/../../outside/x"), "must be arn:aws:lambda"),
        (format!("{ARN}fifo"), "not a regular file"),
        ("fifo.wasm".to_owned(), "not a regular file"),
        ("folder.wasm".to_owned(), "not a regular file"),
        (format!("{ARN}link:$LATEST"), "symbolic link"),
        (format!("{ARN}big"), "33554433 bytes"),
        (format!("{ARN}missing"), "not found"),
        ("..".to_owned(), "must be arn:aws:lambda"),
    ];
    for (arn, says) in &cases {
        let d = destination("raw/", "errors/").processing_configuration(lambda(arn)).build().unwrap();
        let call = f.create_delivery_stream().delivery_stream_name("t").extended_s3_destination_configuration(d).send();
        let (_, message) = refused(arn, call).await;
        assert!(message.contains(says), "{arn}: {message}");
        assert!(w.names().await.is_empty(), "{arn}");
    }

    // UpdateDestination refuses them as well, and the version stays.
    create(&w, "plain", destination("raw/", "errors/").build().unwrap()).await.unwrap();
    for (arn, _) in &cases {
        let call = f
            .update_destination()
            .delivery_stream_name("plain")
            .current_delivery_stream_version_id("1")
            .destination_id("destinationId-000000000001")
            .extended_s3_destination_update(
                fh::ExtendedS3DestinationUpdate::builder().processing_configuration(lambda(arn)).build(),
            )
            .send();
        refused(arn, call).await;
    }
    let d = f.describe_delivery_stream().delivery_stream_name("plain").send().await.unwrap();
    assert_eq!(d.delivery_stream_description().unwrap().version_id(), "1");
    assert_eq!(w.names().await, ["plain"]);
    w.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_names_reaching_outside_the_schema_folder_or_at_no_plain_file_are_refused() {
    let w = World::start().await;
    let f = w.server.firehose();
    // Before this was fixed, `escape/t` was found through the link and `db/fifo` blocked a
    // runtime worker for good.
    let cases = [
        ("escape", "t", "not a folder"),
        ("db", "link", "not a regular file"),
        ("..", "t", "plain names"),
        ("db", "..", "plain names"),
        ("db", "../x", "plain names"),
        ("../outside/db", "t", "plain names"),
        ("db/../../outside/db", "t", "plain names"),
        ("db", "fifo", "not a regular file"),
        ("db", "big", "larger than"),
        ("db", "missing", "not found"),
        ("nodb", "t", "not found"),
    ];
    for (db, table, says) in cases {
        let what = format!("{db}/{table}");
        let d =
            destination("raw/", "errors/").data_format_conversion_configuration(parquet(db, table)).build().unwrap();
        let call = f.create_delivery_stream().delivery_stream_name("t").extended_s3_destination_configuration(d).send();
        let (_, message) = refused(&what, call).await;
        assert!(message.contains(says), "{what}: {message}");
        assert!(w.names().await.is_empty(), "{what}");
    }
    // The schema of a plain file is found.
    let d = destination("raw/", "errors/").data_format_conversion_configuration(parquet("db", "t")).build().unwrap();
    create(&w, "parquet", d).await.unwrap();

    // UpdateDestination refuses them as well.
    create(&w, "plain", destination("raw/", "errors/").build().unwrap()).await.unwrap();
    for (db, table, _) in cases {
        let call = f
            .update_destination()
            .delivery_stream_name("plain")
            .current_delivery_stream_version_id("1")
            .destination_id("destinationId-000000000001")
            .extended_s3_destination_update(
                fh::ExtendedS3DestinationUpdate::builder()
                    .data_format_conversion_configuration(parquet(db, table))
                    .build(),
            )
            .send();
        refused(&format!("update {db}/{table}"), call).await;
    }
    assert_eq!(w.names().await, ["parquet", "plain"]);
    w.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_names_breaking_s3_rules_are_refused_on_a_file_lake() {
    let w = World::start().await;
    let f = w.server.firehose();
    let bad = ["..", ".", "a", "UPPER", "a..b", "-lake", "lake-", "192.168.5.4", "a_b", "has..dots", "x.."];
    let bucket = |b: &str| destination("raw/", "errors/").bucket_arn(format!("arn:aws:s3:::{b}")).build().unwrap();
    for b in bad {
        let call = f
            .create_delivery_stream()
            .delivery_stream_name("t")
            .extended_s3_destination_configuration(bucket(b))
            .send();
        let (_, message) = refused(b, call).await;
        assert!(message.contains("Bucket name"), "{b}: {message}");
        assert!(w.names().await.is_empty(), "{b}");
    }
    create(&w, "plain", bucket("lake.sluice-1")).await.unwrap();
    for b in bad {
        let call = f
            .update_destination()
            .delivery_stream_name("plain")
            .current_delivery_stream_version_id("1")
            .destination_id("destinationId-000000000001")
            .extended_s3_destination_update(
                fh::ExtendedS3DestinationUpdate::builder().bucket_arn(format!("arn:aws:s3:::{b}")).build(),
            )
            .send();
        refused(&format!("update {b}"), call).await;
    }
    // Nothing was made outside the lake, and in it only the good bucket's folder (if any yet).
    let mut top: Vec<String> =
        std::fs::read_dir(w.dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    top.sort();
    assert!(top.iter().all(|n| ["data", "lake", "outside", "schemas", "transforms"].contains(&n.as_str())), "{top:?}");
    if let Ok(lake) = std::fs::read_dir(w.path("lake")) {
        let folders: Vec<String> = lake.map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert!(folders.iter().all(|n| n == "lake.sluice-1"), "{folders:?}");
    }
    assert_eq!(w.names().await, ["plain"]);
    w.server.stop().await;
}

/// Partition key values taken from the data become parts of object keys: values that would
/// climb out of the prefix, hold control characters, or make an empty folder fail alone
/// (`DynamicPartitioning.MetadataExtractionFailed`); a value with `/` makes folders; a
/// value too long for a file name fails as `S3.KeyTooLongError`; the good records land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_key_values_from_the_data_stay_inside_the_prefix() {
    let w = World::start().await;
    let d = destination("p/!{partitionKeyFromQuery:k}/", "errors/!{firehose:error-output-type}/")
        .bucket_arn("arn:aws:s3:::lake-1")
        .dynamic_partitioning_configuration(fh::DynamicPartitioningConfiguration::builder().enabled(true).build())
        .processing_configuration(crate::firehose_delivery::partition_by("{k: .k}"))
        .build()
        .unwrap();
    create(&w, "parts", d).await.unwrap();
    let long = "x".repeat(300);
    let values = [
        ("good", true),
        ("2024/01/02", true),
        ("../../../escape", false),
        ("a/../../b", false),
        ("..", false),
        ("", false),
        ("a//b", false),
        ("tab\there", false),
        ("nul\u{0}x", false),
        (long.as_str(), false),
    ];
    let records: Vec<fh::Record> = values
        .iter()
        .map(|(v, _)| {
            let json = format!("{}\n", serde_json::json!({ "k": v }));
            fh::Record::builder().data(aws_sdk_firehose::primitives::Blob::new(json)).build().unwrap()
        })
        .collect();
    let out = w
        .server
        .firehose()
        .put_record_batch()
        .delivery_stream_name("parts")
        .set_records(Some(records))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_put_count, 0);
    let lake = w.path("lake/lake-1");
    let files = crate::firehose_delivery::wait_for(
        &w.clock,
        async || crate::firehose_delivery::local_objects(&lake),
        |o| o.iter().map(|(_, b)| b.iter().filter(|c| **c == b'\n').count()).sum::<usize>() >= values.len(),
    )
    .await;
    let landed: Vec<&str> = files.iter().filter(|(k, _)| k.starts_with("p/")).map(|(k, _)| k.as_str()).collect();
    assert_eq!(landed.len(), 2, "{landed:?}");
    assert!(landed.iter().any(|k| k.starts_with("p/good/")), "{landed:?}");
    assert!(landed.iter().any(|k| k.starts_with("p/2024/01/02/")), "{landed:?}");
    let mut failed = 0;
    for (key, body) in files.iter().filter(|(k, _)| k.starts_with("errors/")) {
        for line in String::from_utf8(body.clone()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let code = v["errorCode"].as_str().or(v["lastErrorCode"].as_str()).unwrap_or_default().to_owned();
            assert!(
                code == "DynamicPartitioning.MetadataExtractionFailed" || code == "S3.KeyTooLongError",
                "{key}: {line}"
            );
            failed += 1;
        }
    }
    assert_eq!(failed, 8, "every unsafe value failed alone");
    // Nothing under the lake's bucket but the prefix and the error prefix; nothing beside it.
    let top: Vec<String> =
        std::fs::read_dir(&lake).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(top.iter().all(|n| n == "p" || n == "errors"), "{top:?}");
    let beside: Vec<String> =
        std::fs::read_dir(w.path("lake")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(beside, ["lake-1"]);
    w.server.stop().await;
}
