//! The reprocessing API (`SluiceReprocessing_20261205`) against a real S3-compatible server:
//! what it refuses and with which AWS error, a replay of a `DirectPut` delivery stream, a
//! paced replay cancelled mid-way, and redrives — into the delivery stream after a schema
//! fix and into a Kinesis stream — finished again after a crash between landing and the
//! ledger's `done` (the ledger's `done` lines removed, the server restarted): nothing lands
//! twice. boto3 and the command line, with SIGKILLs, are in `tests/clients/reprocessing.py`.

use std::path::Path;
use std::time::Duration;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types as fh;
use serde_json::{json, Value};
use sluice::client::{ClientError, KinesisClient};

use crate::datasets::{beijing, BeijingDigest};
use crate::firehose_delivery::{destination, wait_for, Harness};
use crate::s3_server::objects;
use crate::support::{raw_request, TestServer, ACCESS_KEY, SECRET_KEY};

const TARGET: &str = "SluiceReprocessing_20261205";

async fn call(addr: std::net::SocketAddr, operation: &str, body: Value) -> Result<Value, (String, String)> {
    let client = KinesisClient::new(&format!("http://{addr}"), "us-east-1", ACCESS_KEY, SECRET_KEY);
    client.call(&format!("{TARGET}.{operation}"), "firehose", &body).await.map_err(|e| match e {
        ClientError::Api { kind, message } => (kind, message),
        other => (other.to_string(), String::new()),
    })
}

/// Waits (real time, 60 s at most) until task `id` is no longer RUNNING; returns it.
async fn finished(addr: std::net::SocketAddr, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let task = call(addr, "DescribeTask", json!({"TaskId": id})).await.unwrap()["Task"].clone();
        if task["Status"] != "RUNNING" {
            return task;
        }
        assert!(std::time::Instant::now() < deadline, "task {id} still running: {task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn write_schema(dir: &Path, table: &str, o3: &str) {
    let base =
        std::fs::read_to_string(crate::firehose_delivery::schema_dir().join("beijing/air_quality.json")).unwrap();
    let changed = base.replace(r#"{"name": "O3", "type": "double"}"#, &format!(r#"{{"name": "O3", "type": "{o3}"}}"#));
    assert!(o3 == "double" || changed != base, "the schema names O3");
    std::fs::create_dir_all(dir.join("beijing")).unwrap();
    std::fs::write(dir.join("beijing").join(format!("{table}.json")), changed).unwrap();
}

fn conversion(table: &str) -> fh::DataFormatConversionConfiguration {
    let mut c = crate::firehose_delivery::beijing_parquet();
    c.schema_configuration = Some(
        fh::SchemaConfiguration::builder()
            .database_name("beijing")
            .table_name(table)
            .role_arn("arn:aws:iam::000000000000:role/firehose")
            .build(),
    );
    c
}

async fn put(f: &aws_sdk_firehose::Client, name: &str, lines: &[String]) {
    for chunk in lines.chunks(500) {
        let records: Vec<fh::Record> =
            chunk.iter().map(|l| fh::Record::builder().data(Blob::new(l.as_bytes())).build().unwrap()).collect();
        let out = f.put_record_batch().delivery_stream_name(name).set_records(Some(records)).send().await.unwrap();
        assert_eq!(out.failed_put_count, 0);
    }
}

/// Error records under `prefix`.
fn error_lines(objects: &[(String, Vec<u8>)]) -> Vec<Value> {
    objects
        .iter()
        .flat_map(|(_, b)| {
            b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap())
        })
        .collect()
}

/// Drops the `done` lines of every redrive ledger under `data`, and the shards its `begun`
/// lines record as appended: what a crash right after the appends, before the ledger heard
/// of them, leaves.
fn forget_done(data: &Path) -> usize {
    let mut dropped = 0;
    for e in std::fs::read_dir(data.join("firehose/delivery-streams")).unwrap() {
        let path = e.unwrap().path().join(sluice_firehose::redrive::Ledger::FILE);
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let mut kept = String::new();
        for line in text.lines() {
            let mut v: Value = serde_json::from_str(line).unwrap();
            if v["state"] == "done" {
                dropped += 1;
                continue;
            }
            v.as_object_mut().unwrap().remove("appended");
            kept.push_str(&format!("{v}\n"));
        }
        std::fs::write(&path, kept).unwrap();
    }
    dropped
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocessing_refuses_bad_requests_replays_cancels_and_redrives_exactly_once() {
    let schemas = tempfile::tempdir().unwrap();
    write_schema(schemas.path(), "strict", "int");
    let schema_dir = schemas.path().to_owned();
    let h = Harness::start(None, |c| c.schema_dir = schema_dir.clone()).await;
    let addr = h.server.addr;
    let f = h.server.firehose();
    let s3 = h.s3.client();
    let dest = |prefix: &str| {
        destination(prefix, &format!("{}-errors/!{{firehose:error-output-type}}/", prefix.trim_end_matches('/')))
            .data_format_conversion_configuration(conversion("strict"))
            .build()
            .unwrap()
    };
    for (name, prefix) in [("strict", "strict/"), ("strict2", "strict2/")] {
        f.create_delivery_stream()
            .delivery_stream_name(name)
            .extended_s3_destination_configuration(dest(prefix))
            .send()
            .await
            .unwrap();
    }
    // Two buffers' worth (1 MiB each) for the cancelled replay; O3 with a fraction fails.
    let lines = beijing(6000);
    let fractional =
        |l: &String| serde_json::from_str::<Value>(l).unwrap()["O3"].as_f64().is_some_and(|o| o.fract() != 0.0);
    let failing: Vec<String> = lines.iter().filter(|l| fractional(l)).cloned().collect();
    assert!(!failing.is_empty() && failing.len() < lines.len() / 5, "{} of {} fail", failing.len(), lines.len());
    put(&f, "strict", &lines).await;
    put(&f, "strict2", &lines[..1000]).await;
    let clock = h.clock.clone();
    let delivered = async |prefix: &'static str, n: usize| {
        let errors = format!("{}-errors/", prefix.trim_end_matches('/'));
        wait_for(
            &clock,
            async || (objects(&s3, prefix).await, objects(&s3, &errors).await),
            |(ok, bad)| crate::firehose_delivery::rows(ok) + error_lines(bad).len() >= n,
        )
        .await
    };
    let (_, bad) = delivered("strict/", lines.len()).await;
    assert_eq!(error_lines(&bad).len(), failing.len());
    let (_, bad2) = delivered("strict2/", 1000).await;
    let failing2: Vec<&String> = lines[..1000].iter().filter(|l| fractional(l)).collect();
    assert_eq!(error_lines(&bad2).len(), failing2.len());

    // What the API refuses, with AWS's error types.
    let refused = [
        ("StartReplay", json!({"DeliveryStreamName": "nope", "FromTimestampMs": 0}), "ResourceNotFoundException"),
        ("StartReplay", json!({"DeliveryStreamName": "strict"}), "InvalidArgumentException"),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "FromSequenceNumber": "1"}),
            "InvalidArgumentException",
        ),
        ("StartReplay", json!({"DeliveryStreamName": "strict", "FromTimestampMs": -1}), "SerializationException"),
        ("StartReplay", json!({"DeliveryStreamName": "strict", "FromTimestampMs": 1e30}), "SerializationException"),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "Extra": 1}),
            "SerializationException",
        ),
        ("StartReplay", json!({"DeliveryStreamName": "strict", "FromSequenceNumber": "x"}), "InvalidArgumentException"),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "ShardIds": ["shardId-x"]}),
            "InvalidArgumentException",
        ),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "ShardIds": ["shardId-000000000009"]}),
            "ResourceNotFoundException",
        ),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "StreamName": "nope"}),
            "ResourceNotFoundException",
        ),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "Prefix": "a/!{partitionKeyFromQuery:k}/"}),
            "InvalidArgumentException",
        ),
        ("StartReplay", json!({"DeliveryStreamName": "", "FromTimestampMs": 0}), "InvalidArgumentException"),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "LambdaArn": "arn:aws:lambda:us-east-1:000000000000:function:nope"}),
            "InvalidArgumentException",
        ),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "SchemaDatabaseName": "beijing", "SchemaTableName": ".."}),
            "InvalidArgumentException",
        ),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "SchemaTableName": "strict"}),
            "InvalidArgumentException",
        ),
        (
            "StartReplay",
            json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "SchemaDatabaseName": "beijing", "SchemaTableName": "missing"}),
            "InvalidArgumentException",
        ),
        (
            "StartRedrive",
            json!({"DeliveryStreamName": "strict", "ErrorOutputType": "../x"}),
            "InvalidArgumentException",
        ),
        (
            "StartRedrive",
            json!({"DeliveryStreamName": "strict", "ErrorOutputType": "processing-failed", "StreamName": "nope"}),
            "ResourceNotFoundException",
        ),
        ("DescribeTask", json!({"TaskId": "replay-0000000000000000"}), "ResourceNotFoundException"),
        ("DescribeTask", json!({"TaskId": ""}), "InvalidArgumentException"),
        ("CancelTask", json!({}), "SerializationException"),
        ("Nope", json!({}), "UnknownOperationException"),
    ];
    for (operation, body, kind) in refused {
        let got = call(addr, operation, body.clone()).await;
        assert_eq!(got.as_ref().map_err(|e| e.0.as_str()), Err(kind), "{operation} {body}: {got:?}");
    }
    let (status, unsigned) = raw_request(addr, &format!("{TARGET}.ListTasks"), b"{}").await;
    assert_eq!((status, unsigned["__type"].as_str()), (400, Some("MissingAuthenticationTokenException")));

    // The schema fixed; naming the conversion in UpdateDestination reads it again.
    write_schema(schemas.path(), "strict", "double");
    for name in ["strict", "strict2"] {
        let d = f.describe_delivery_stream().delivery_stream_name(name).send().await.unwrap();
        let d = d.delivery_stream_description.unwrap();
        f.update_destination()
            .delivery_stream_name(name)
            .current_delivery_stream_version_id(d.version_id)
            .destination_id("destinationId-000000000001")
            .extended_s3_destination_update(
                fh::ExtendedS3DestinationUpdate::builder()
                    .data_format_conversion_configuration(conversion("strict"))
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }

    // A replay of the DirectPut delivery stream's records into another prefix: all of them,
    // with the fixed schema.
    let task =
        call(addr, "StartReplay", json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "Prefix": "again/"}))
            .await
            .unwrap();
    let id = task["Task"]["TaskId"].as_str().unwrap().to_owned();
    assert_eq!(task["Task"]["Total"], 6000);
    let done = finished(addr, &id).await;
    assert_eq!(done["Status"], "COMPLETED", "{done}");
    assert_eq!(done["Replay"]["Report"]["Delivered"], 6000);
    let (digest, _) = BeijingDigest::of_parquet(&objects(&s3, "again/").await);
    assert_eq!(digest, BeijingDigest::of_json(&lines));

    // A variant: the same range converted with another schema table (O3 an int again).
    write_schema(schemas.path(), "strict_int", "int");
    let variant = call(
        addr,
        "StartReplay",
        json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "Prefix": "variant/",
               "SchemaDatabaseName": "beijing", "SchemaTableName": "strict_int"}),
    )
    .await
    .unwrap();
    let variant = finished(addr, variant["Task"]["TaskId"].as_str().unwrap()).await;
    assert_eq!(variant["Status"], "COMPLETED", "{variant}");
    let report = &variant["Replay"]["Report"];
    assert_eq!(
        (report["Failed"].as_u64(), report["Delivered"].as_u64()),
        (Some(failing.len() as u64), Some((6000 - failing.len()) as u64)),
        "{report}"
    );

    // Paced at 1 record/s, it stops after its first buffer once cancelled.
    let slow = call(
        addr,
        "StartReplay",
        json!({"DeliveryStreamName": "strict", "FromTimestampMs": 0, "Prefix": "slow/", "MaxRecordsPerSecond": 1}),
    )
    .await
    .unwrap();
    let slow_id = slow["Task"]["TaskId"].as_str().unwrap().to_owned();
    let listed = call(addr, "ListTasks", json!({"DeliveryStreamName": "strict"})).await.unwrap();
    assert_eq!(listed["Tasks"][0]["TaskId"], slow_id.as_str(), "newest first: {listed}");
    while call(addr, "DescribeTask", json!({"TaskId": slow_id})).await.unwrap()["Task"]["Replay"]["Report"]["Records"]
        == 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call(addr, "CancelTask", json!({"TaskId": slow_id})).await.unwrap();
    let cancelled = finished(addr, &slow_id).await;
    assert_eq!(cancelled["Status"], "CANCELLED", "{cancelled}");
    assert!(cancelled["Remaining"].as_u64().unwrap() > 0, "{cancelled}");

    // Redrives: into the delivery stream, and strict2's into a Kinesis stream.
    let k = h.server.client();
    k.create_stream().stream_name("back").shard_count(2).send().await.unwrap();
    let redrive = async |body: Value| {
        let t = call(addr, "StartRedrive", body).await.unwrap();
        finished(addr, t["Task"]["TaskId"].as_str().unwrap()).await
    };
    let into_delivery = json!({"DeliveryStreamName": "strict", "ErrorOutputType": "format-conversion-failed"});
    let into_stream =
        json!({"DeliveryStreamName": "strict2", "ErrorOutputType": "format-conversion-failed", "StreamName": "back"});
    let first = redrive(into_delivery.clone()).await;
    assert_eq!(first["Status"], "COMPLETED", "{first}");
    assert_eq!(first["Redrive"]["Report"]["Records"], failing.len());
    assert_eq!(redrive(into_stream.clone()).await["Status"], "COMPLETED");
    let once = BeijingDigest::of_json(&lines);
    assert_eq!(BeijingDigest::of_parquet(&objects(&s3, "strict/").await).0, once);

    // A crash after landing, before `done`: the next redrive lands the same objects again
    // (same keys) and appends nothing twice.
    let data = h.dir.path().join("data");
    let Harness { server, s3: s3_server, dir, .. } = h;
    server.stop().await;
    assert!(forget_done(&data) >= 2);
    let server = TestServer::start_with(&data, clock.clone(), |c| {
        crate::firehose_delivery::delivery_config(c, s3_server.lake_config());
        c.schema_dir = schemas.path().to_owned();
    })
    .await;
    let addr = server.addr;
    let again = {
        let t = call(addr, "StartRedrive", into_delivery).await.unwrap();
        finished(addr, t["Task"]["TaskId"].as_str().unwrap()).await
    };
    assert_eq!(again["Redrive"]["Report"]["Skipped"], 0, "{again}");
    assert_eq!(BeijingDigest::of_parquet(&objects(&s3, "strict/").await).0, once);
    let t = call(addr, "StartRedrive", into_stream).await.unwrap();
    assert_eq!(finished(addr, t["Task"]["TaskId"].as_str().unwrap()).await["Status"], "COMPLETED");
    let k = server.client();
    let mut got = Vec::new();
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let it = crate::support::trim_horizon(&k, "back", shard).await;
        let out = k.get_records().shard_iterator(it).limit(10_000).send().await.unwrap();
        got.extend(out.records.into_iter().map(|r| String::from_utf8(r.data.into_inner()).unwrap()));
    }
    got.sort();
    let mut want: Vec<String> = failing2.into_iter().cloned().collect();
    want.sort();
    assert_eq!(got, want, "each failed record once in the stream");
    // Now done: a third redrive takes nothing.
    let t = call(
        addr,
        "StartRedrive",
        json!({"DeliveryStreamName": "strict", "ErrorOutputType": "format-conversion-failed"}),
    )
    .await
    .unwrap();
    let third = finished(addr, t["Task"]["TaskId"].as_str().unwrap()).await;
    assert_eq!(third["Redrive"]["Report"]["Objects"], 0, "{third}");
    server.stop().await;
    drop(dir);
}
