//! Kinesis queues over the JSON protocol (aws-sdk-kinesis 1.130 has no queue operations yet;
//! boto3 drives them in `tests/clients/operations.py`): competing receives, acknowledgements,
//! visibility timeouts, the dead-letter area and its restore, long polling, and state that
//! survives a restart.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sluice::config::{Auth, Throttle};
use sluice_engine::ManualClock;

use crate::support::{raw_request, TestServer};

const QUEUE: &str = "arn:aws:kinesis:us-east-1:000000000000:queue/work";
const STREAM: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/jobs";

async fn call(server: &TestServer, action: &str, body: Value) -> Value {
    let (status, answer) =
        raw_request(server.addr, &format!("Kinesis_20131202.{action}"), body.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{action}: {answer}");
    answer
}

async fn start(dir: &std::path::Path, clock: Arc<ManualClock>) -> TestServer {
    TestServer::start_with(dir, clock, |c| {
        c.auth = Auth::None;
        c.throttle = Throttle::Off;
    })
    .await
}

/// Receives up to 10; (record data, receipt handle, receive count).
async fn receive(server: &TestServer, action: &str, extra: Value) -> Vec<(String, String, u64)> {
    let mut body = json!({ "QueueARN": QUEUE, "Limit": 10 });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let out = call(server, action, body).await;
    out["QueueRecords"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let data = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, r["Data"].as_str().unwrap())
                .unwrap();
            (
                String::from_utf8(data).unwrap(),
                r["ReceiptHandle"].as_str().unwrap().to_owned(),
                r["ReceiveCount"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn acknowledge(server: &TestServer, action: &str, handles: &[&str]) -> (usize, Vec<Value>) {
    let entries: Vec<Value> = handles.iter().map(|h| json!({ "ReceiptHandle": h })).collect();
    let out = call(server, action, json!({ "QueueARN": QUEUE, "Entries": entries })).await;
    (out["Successful"].as_array().unwrap().len(), out["Failed"].as_array().unwrap().clone())
}

async fn put(server: &TestServer, range: std::ops::Range<u32>) {
    for chunk in range.collect::<Vec<_>>().chunks(100) {
        let records: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({ "Data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("job {i}")), "PartitionKey": format!("k{i}") })
            })
            .collect();
        let out = call(server, "PutRecords", json!({ "StreamName": "jobs", "Records": records })).await;
        assert_eq!(out["FailedRecordCount"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_acknowledged_redelivered_dead_lettered_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let server = start(dir.path(), clock.clone()).await;
    call(&server, "CreateStream", json!({ "StreamName": "jobs", "StreamModeDetails": { "StreamMode": "ON_DEMAND" } }))
        .await;
    put(&server, 0..50).await;
    let created = call(
        &server,
        "CreateQueue",
        json!({
            "QueueName": "work",
            "StreamConfigurationList": [{ "StreamARN": STREAM, "StartingPosition": { "Type": "TRIM_HORIZON" } }],
            "QueueAttributes": { "VisibilityTimeoutSeconds": 30, "DeadLetterConfiguration": { "TargetType": "BUILT_IN", "MaxReceiveCount": 2 } },
        }),
    )
    .await;
    assert_eq!(created["QueueDescription"]["QueueARN"], QUEUE);

    // Every record once across receives (all 4 shards interleaved); 45 acknowledged.
    let mut got = Vec::new();
    loop {
        let batch = receive(&server, "ReceiveQueueRecords", json!({})).await;
        if batch.is_empty() {
            break;
        }
        got.extend(batch);
    }
    let data: BTreeSet<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!((got.len(), data.len()), (50, 50));
    let keep: Vec<&str> = got.iter().filter(|g| !g.0.ends_with('7')).map(|g| g.1.as_str()).collect();
    for chunk in keep.chunks(10) {
        assert_eq!(acknowledge(&server, "AcknowledgeQueueRecords", chunk).await.0, chunk.len());
    }
    // The 5 unacknowledged come back after the visibility timeout, received a second time.
    clock.advance(31_000);
    let again = receive(&server, "ReceiveQueueRecords", json!({})).await;
    assert_eq!(again.len(), 5);
    assert!(again.iter().all(|g| g.0.ends_with('7') && g.2 == 2), "{again:?}");
    // The first receive's handles are stale now.
    let stale: Vec<&str> = got.iter().filter(|g| g.0.ends_with('7')).map(|g| g.1.as_str()).collect();
    let (ok, failed) = acknowledge(&server, "AcknowledgeQueueRecords", &stale).await;
    assert_eq!((ok, failed.len()), (0, 5));
    assert_eq!(failed[0]["ErrorCode"], "ReceiptHandleIsInvalid");
    // Past MaxReceiveCount they go to the dead-letter area, not to receivers.
    clock.advance(31_000);
    assert!(receive(&server, "ReceiveQueueRecords", json!({})).await.is_empty());

    let (_, metrics) = crate::support::head_of(
        server.addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr),
    )
    .await;
    assert!(metrics.contains("sluice_kinesis_queue_dead_letter_records{queue=\"work\"} 5\n"), "{metrics}");
    assert!(metrics.contains("sluice_kinesis_queue_in_flight_records{queue=\"work\"} 0\n"), "{metrics}");
    let summary = call(&server, "DescribeStreamSummary", json!({ "StreamName": "jobs" })).await;
    assert_eq!(summary["StreamDescriptionSummary"]["QueueCount"], 1);
    // The state survives a restart: nothing acknowledged comes back.
    server.stop().await;
    let server = start(dir.path(), clock.clone()).await;
    assert!(receive(&server, "ReceiveQueueRecords", json!({})).await.is_empty());
    let dead = receive(&server, "ReceiveDeadLetterQueueRecords", json!({ "VisibilityTimeoutSeconds": 5 })).await;
    assert_eq!(dead.len(), 5);
    let handles: Vec<&str> = dead.iter().map(|g| g.1.as_str()).collect();
    let (ok, _) = acknowledge(&server, "RestoreDeadLetterQueueRecords", &handles).await;
    assert_eq!(ok, 5);
    let restored = receive(&server, "ReceiveQueueRecords", json!({})).await;
    assert_eq!(restored.len(), 5);
    assert!(restored.iter().all(|g| g.2 == 1), "received afresh: {restored:?}");
    let handles: Vec<&str> = restored.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(acknowledge(&server, "AcknowledgeQueueRecords", &handles).await.0, 5);
    clock.advance(120_000);
    assert!(receive(&server, "ReceiveQueueRecords", json!({})).await.is_empty(), "all done");
    assert!(receive(&server, "ReceiveDeadLetterQueueRecords", json!({})).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_return_when_a_record_arrives_and_queues_are_described_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let server = start(dir.path(), clock.clone()).await;
    call(&server, "CreateStream", json!({ "StreamName": "jobs", "StreamModeDetails": { "StreamMode": "ON_DEMAND" } }))
        .await;
    call(&server, "CreateQueue", json!({ "QueueName": "work", "StreamConfigurationList": [{ "StreamARN": STREAM }] }))
        .await;
    // LATEST by default: a record put now is the first delivered. The receive waits up to
    // 20 s and returns when it arrives (the bound is the test's, not a timing assertion).
    let addr = server.addr;
    let waiting = tokio::spawn(async move {
        let body = json!({ "QueueARN": QUEUE, "WaitTimeSeconds": 20 }).to_string();
        raw_request(addr, "Kinesis_20131202.ReceiveQueueRecords", body.as_bytes()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "an empty queue holds the receive");
    put(&server, 0..1).await;
    let (status, out) = tokio::time::timeout(Duration::from_secs(15), waiting).await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(out["QueueRecords"].as_array().unwrap().len(), 1, "{out}");

    let d = call(&server, "DescribeQueue", json!({ "QueueARN": QUEUE })).await;
    assert_eq!(d["QueueDescription"]["QueueAttributes"]["VisibilityTimeoutSeconds"], 30);
    let u = call(
        &server,
        "UpdateQueue",
        json!({ "QueueARN": QUEUE, "QueueAttributes": { "VisibilityTimeoutSeconds": 60 } }),
    )
    .await;
    assert_eq!(u["QueueDescription"]["QueueAttributes"]["VisibilityTimeoutSeconds"], 60);
    let l = call(&server, "ListQueues", json!({})).await;
    assert_eq!(l["QueueSummaries"][0]["Streams"][0]["StreamARN"], STREAM);
    // A StreamFilter's StreamCreationTimestamp names one incarnation of the stream.
    let created = l["QueueSummaries"][0]["Streams"][0]["StreamCreationTimestamp"].as_f64().unwrap();
    for (t, n) in [(created, 1), (created - 3600.0, 0)] {
        let filter = json!({ "StreamFilter": [{ "StreamARN": STREAM, "StreamCreationTimestamp": t }] });
        assert_eq!(call(&server, "ListQueues", filter).await["QueueSummaries"].as_array().unwrap().len(), n, "{t}");
    }
    let (status, again) = raw_request(
        server.addr,
        "Kinesis_20131202.CreateQueue",
        json!({ "QueueName": "work", "StreamConfigurationList": [{ "StreamARN": STREAM }] }).to_string().as_bytes(),
    )
    .await;
    assert_eq!((status, again["__type"].as_str()), (400, Some("ResourceInUseException")));
    // A provisioned stream takes no queue (AWS: queues need on-demand streams).
    call(&server, "CreateStream", json!({ "StreamName": "fixed", "ShardCount": 1 })).await;
    let (status, refused) = raw_request(
        server.addr,
        "Kinesis_20131202.CreateQueue",
        json!({ "QueueName": "q2", "StreamConfigurationList": [{ "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/fixed" }] })
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!((status, refused["__type"].as_str()), (400, Some("InvalidArgumentException")));
    // A stream with queues is not deleted, EnforceConsumerDeletion or not (AWS: delete its
    // queues with DeleteQueue first); then it is.
    for enforce in [false, true] {
        let (status, refused) = raw_request(
            server.addr,
            "Kinesis_20131202.DeleteStream",
            json!({ "StreamName": "jobs", "EnforceConsumerDeletion": enforce }).to_string().as_bytes(),
        )
        .await;
        assert_eq!((status, refused["__type"].as_str()), (400, Some("ResourceInUseException")), "{refused}");
    }
    call(&server, "DescribeQueue", json!({ "QueueARN": QUEUE })).await;
    call(&server, "DeleteQueue", json!({ "QueueARN": QUEUE })).await;
    call(&server, "DeleteStream", json!({ "StreamName": "jobs" })).await;
    let l = call(&server, "ListQueues", json!({})).await;
    assert_eq!(l["QueueSummaries"].as_array().unwrap().len(), 0);
    server.stop().await;
}

/// Where `needle` lies in the data directory's files: (file, offset); exactly one place.
fn find_bytes(dir: &std::path::Path, needle: &[u8]) -> (std::path::PathBuf, u64) {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let path = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let at = bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle);
                found.extend(at.map(|(at, _)| (path.clone(), at as u64)));
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

fn overwrite(path: &std::path::Path, offset: u64, byte: u8) {
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new().write(true).open(path).unwrap().write_all_at(&[byte], offset).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_cannot_be_read_stays_in_the_queue_and_holds_back_only_its_shard() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let server = start(dir.path(), clock.clone()).await;
    call(&server, "CreateStream", json!({ "StreamName": "jobs", "StreamModeDetails": { "StreamMode": "ON_DEMAND" } }))
        .await;
    put(&server, 0..40).await;
    call(
        &server,
        "CreateQueue",
        json!({
            "QueueName": "work",
            "StreamConfigurationList": [{ "StreamARN": STREAM, "StartingPosition": { "Type": "TRIM_HORIZON" } }],
            "QueueAttributes": { "VisibilityTimeoutSeconds": 30 },
        }),
    )
    .await;
    // One record's data changes on disk under the server: its frame's CRC-32 no longer holds.
    let (file, at) = find_bytes(dir.path(), b"job 17");
    overwrite(&file, at + 5, b'x');

    // Receives answer every record they can read; the bad one and what follows it in its
    // shard stay in the queue, and once nothing else is left the receive is the error.
    let mut got = Vec::new();
    let refused = loop {
        let body = json!({ "QueueARN": QUEUE, "Limit": 10 }).to_string();
        let (status, out) = raw_request(server.addr, "Kinesis_20131202.ReceiveQueueRecords", body.as_bytes()).await;
        if status != 200 {
            break (status, out);
        }
        let records = out["QueueRecords"].as_array().unwrap().clone();
        assert!(!records.is_empty(), "the bad record never refused: {got:?}");
        got.extend(records);
        assert!(got.len() <= 40);
    };
    assert_eq!(refused.0, 500, "{refused:?}");
    assert_eq!(refused.1["__type"], "InternalFailure", "{refused:?}");
    let data = |r: &Value| {
        String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, r["Data"].as_str().unwrap()).unwrap(),
        )
        .unwrap()
    };
    assert!(got.iter().all(|r| data(r) != "job 17" && data(r) != "job 1x"), "{got:?}");
    let first_pass = got.len();
    assert!(first_pass < 39, "records after the bad one in its shard were held back");
    let handles: Vec<&str> = got.iter().map(|r| r["ReceiptHandle"].as_str().unwrap()).collect();
    for chunk in handles.chunks(10) {
        assert_eq!(acknowledge(&server, "AcknowledgeQueueRecords", chunk).await.0, chunk.len());
    }

    // Repaired, across a restart: the held-back records come, each once; nothing acknowledged
    // comes again.
    overwrite(&file, at + 5, b'7');
    server.stop().await;
    let server = start(dir.path(), clock.clone()).await;
    loop {
        let batch = receive(&server, "ReceiveQueueRecords", json!({})).await;
        if batch.is_empty() {
            break;
        }
        let handles: Vec<&str> = batch.iter().map(|g| g.1.as_str()).collect();
        assert_eq!(acknowledge(&server, "AcknowledgeQueueRecords", &handles).await.0, handles.len());
        got.extend(
            batch
                .iter()
                .map(|g| json!({ "Data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &g.0) })),
        );
    }
    let all: BTreeSet<String> = got.iter().map(data).collect();
    let want: BTreeSet<String> = (0..40).map(|i| format!("job {i}")).collect();
    assert_eq!((got.len(), all), (40, want), "every record once");
    server.stop().await;
}
