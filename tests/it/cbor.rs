//! CBOR 1.1 (`application/x-amz-cbor-1.1`), the AWS Java SDKs' default for Kinesis: a
//! request byte for byte as the Java SDK's Jackson CBOR generator writes it, every Kinesis
//! action round-tripped in CBOR, and errors answered in CBOR.

use ciborium::value::{Integer, Value as Cbor};

use crate::support::TestServer;

const CBOR: &str = "application/x-amz-cbor-1.1";

/// Sends one raw HTTP/1.1 request with a CBOR body; returns status, content type, body.
async fn call(addr: std::net::SocketAddr, target: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    crate::support::raw_call(addr, target, CBOR, body).await
}

/// A CBOR map from `(key, value)` pairs.
fn map(fields: Vec<(&str, Cbor)>) -> Cbor {
    Cbor::Map(fields.into_iter().map(|(k, v)| (Cbor::Text(k.into()), v)).collect())
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.into())
}

fn int(i: i64) -> Cbor {
    Cbor::Integer(Integer::from(i))
}

fn get<'a>(value: &'a Cbor, key: &str) -> &'a Cbor {
    value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_text() == Some(key)))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no {key} in {value:?}"))
}

/// Calls `action` with a CBOR body; asserts status 200 and a CBOR answer; returns the
/// decoded answer (`Null` for an empty body).
async fn ok(server: &TestServer, action: &str, body: Cbor) -> Cbor {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(&body, &mut bytes).unwrap();
    let (status, content_type, answer) = call(server.addr, &format!("Kinesis_20131202.{action}"), &bytes).await;
    let decoded = if answer.is_empty() { Cbor::Null } else { ciborium::de::from_reader(answer.as_slice()).unwrap() };
    assert_eq!((status, content_type.as_str()), (200, CBOR), "{action}: {decoded:?}");
    decoded
}

/// Calls `action`; asserts an error answered in CBOR; returns its `__type` and `message`.
async fn err(server: &TestServer, action: &str, body: &[u8]) -> (String, String) {
    let (status, content_type, answer) = call(server.addr, &format!("Kinesis_20131202.{action}"), body).await;
    assert_eq!((status, content_type.as_str()), (400, CBOR));
    let decoded: Cbor = ciborium::de::from_reader(answer.as_slice()).unwrap();
    let field = |k: &str| {
        decoded
            .as_map()
            .unwrap()
            .iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .and_then(|(_, v)| v.as_text().map(str::to_owned))
            .unwrap_or_default()
    };
    // SerializationException carries its text as `Message`, as on AWS.
    (field("__type"), if field("message").is_empty() { field("Message") } else { field("message") })
}

/// Epoch milliseconds of a CBOR timestamp: tag 1 around an integer, as the Java SDK reads it.
fn millis(value: &Cbor) -> i64 {
    match value {
        Cbor::Tag(1, inner) => i64::try_from(inner.as_integer().expect("integer milliseconds")).unwrap(),
        other => panic!("not a tag-1 timestamp: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_sdk_cbor_request_byte_for_byte_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_unsigned(dir.path()).await;
    ok(&server, "CreateStream", map(vec![("StreamName", text("j")), ("ShardCount", int(1))])).await;
    // PutRecord as the Java SDK v2 writes it with Jackson's CBORGenerator: an
    // indefinite-length map (0xbf ... 0xff), definite text keys, the blob as a byte string.
    let mut fixture = vec![0xbf];
    fixture.extend(b"\x6aStreamName\x61j");
    fixture.extend(b"\x64Data\x45hello");
    fixture.extend(b"\x6cPartitionKey\x63key");
    fixture.push(0xff);
    let (status, content_type, answer) = call(server.addr, "Kinesis_20131202.PutRecord", &fixture).await;
    assert_eq!((status, content_type.as_str()), (200, CBOR));
    let answer: Cbor = ciborium::de::from_reader(answer.as_slice()).unwrap();
    assert_eq!(get(&answer, "ShardId"), &text("shardId-000000000000"));
    let sequence_number = get(&answer, "SequenceNumber").as_text().unwrap().to_owned();
    assert_eq!(sequence_number.len(), 56);

    // GetShardIterator AT_TIMESTAMP with the Java SDK's timestamp: tag 1 (0xc1) around
    // epoch milliseconds (0x1b: a 64-bit integer), an hour before the server's (manual) clock.
    let now_ms: u64 = 1_700_000_000_000;
    let mut fixture = vec![0xbf];
    fixture.extend(b"\x6aStreamName\x61j");
    fixture.extend(b"\x67ShardId\x74shardId-000000000000");
    fixture.extend(b"\x71ShardIteratorType\x6cAT_TIMESTAMP");
    fixture.extend(b"\x69Timestamp\xc1\x1b");
    fixture.extend((now_ms - 3_600_000).to_be_bytes());
    fixture.push(0xff);
    let (status, _, answer) = call(server.addr, "Kinesis_20131202.GetShardIterator", &fixture).await;
    assert_eq!(status, 200);
    let answer: Cbor = ciborium::de::from_reader(answer.as_slice()).unwrap();
    let iterator = get(&answer, "ShardIterator").clone();
    let records = ok(&server, "GetRecords", map(vec![("ShardIterator", iterator)])).await;
    let records = get(&records, "Records").as_array().unwrap().clone();
    assert_eq!(records.len(), 1, "the record written within the hour is at the timestamp");
    assert_eq!(get(&records[0], "Data"), &Cbor::Bytes(b"hello".to_vec()));
    assert_eq!(get(&records[0], "SequenceNumber"), &text(&sequence_number));
    let arrival = millis(get(&records[0], "ApproximateArrivalTimestamp"));
    // The test server's clock is a manual one; the arrival is its time, in milliseconds.
    assert_eq!(arrival, 1_700_000_000_000);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kinesis_action_round_trips_in_cbor_and_errors_come_back_in_cbor() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_unsigned(dir.path()).await;
    let s = || ("StreamName", text("c"));
    assert_eq!(ok(&server, "CreateStream", map(vec![s(), ("ShardCount", int(2))])).await, Cbor::Null);
    let described = ok(&server, "DescribeStream", map(vec![s()])).await;
    let description = get(&described, "StreamDescription");
    assert_eq!(get(description, "StreamStatus"), &text("ACTIVE"));
    assert_eq!(millis(get(description, "StreamCreationTimestamp")), 1_700_000_000_000);
    let summary = ok(&server, "DescribeStreamSummary", map(vec![s()])).await;
    assert_eq!(get(get(&summary, "StreamDescriptionSummary"), "OpenShardCount"), &int(2));
    let listed = ok(&server, "ListStreams", map(vec![])).await;
    assert_eq!(get(&listed, "StreamNames"), &Cbor::Array(vec![text("c")]));
    let shards = ok(&server, "ListShards", map(vec![s()])).await;
    assert_eq!(get(&shards, "Shards").as_array().unwrap().len(), 2);

    let put = ok(
        &server,
        "PutRecord",
        map(vec![s(), ("Data", Cbor::Bytes(vec![0, 1, 2, 255])), ("PartitionKey", text("a"))]),
    )
    .await;
    let shard = get(&put, "ShardId").clone();
    let entries = (0..3).map(|i| map(vec![("Data", Cbor::Bytes(vec![i; 3])), ("PartitionKey", text("a"))])).collect();
    let batch = ok(&server, "PutRecords", map(vec![s(), ("Records", Cbor::Array(entries))])).await;
    assert_eq!(get(&batch, "FailedRecordCount"), &int(0));
    let iterator = ok(
        &server,
        "GetShardIterator",
        map(vec![s(), ("ShardId", shard), ("ShardIteratorType", text("TRIM_HORIZON"))]),
    )
    .await;
    let records =
        ok(&server, "GetRecords", map(vec![("ShardIterator", get(&iterator, "ShardIterator").clone())])).await;
    let data: Vec<Cbor> = get(&records, "Records").as_array().unwrap().iter().map(|r| get(r, "Data").clone()).collect();
    assert_eq!(
        data,
        vec![
            Cbor::Bytes(vec![0, 1, 2, 255]),
            Cbor::Bytes(vec![0; 3]),
            Cbor::Bytes(vec![1; 3]),
            Cbor::Bytes(vec![2; 3])
        ]
    );
    assert_eq!(get(&records, "MillisBehindLatest"), &int(0));

    assert_eq!(
        ok(&server, "IncreaseStreamRetentionPeriod", map(vec![s(), ("RetentionPeriodHours", int(48))])).await,
        Cbor::Null
    );
    assert_eq!(
        ok(&server, "DecreaseStreamRetentionPeriod", map(vec![s(), ("RetentionPeriodHours", int(24))])).await,
        Cbor::Null
    );
    assert_eq!(
        ok(&server, "AddTagsToStream", map(vec![s(), ("Tags", map(vec![("team", text("data"))]))])).await,
        Cbor::Null
    );
    let tags = ok(&server, "ListTagsForStream", map(vec![s()])).await;
    assert_eq!(get(&tags, "Tags"), &Cbor::Array(vec![map(vec![("Key", text("team")), ("Value", text("data"))])]));
    assert_eq!(
        ok(&server, "RemoveTagsFromStream", map(vec![s(), ("TagKeys", Cbor::Array(vec![text("team")]))])).await,
        Cbor::Null
    );
    let limits = ok(&server, "DescribeLimits", map(vec![])).await;
    assert!(get(&limits, "ShardLimit").as_integer().is_some());
    let split = vec![s(), ("ShardToSplit", text("shardId-000000000000")), ("NewStartingHashKey", text("1000"))];
    assert_eq!(ok(&server, "SplitShard", map(split)).await, Cbor::Null);
    let merge = vec![
        s(),
        ("ShardToMerge", text("shardId-000000000002")),
        ("AdjacentShardToMerge", text("shardId-000000000003")),
    ];
    assert_eq!(ok(&server, "MergeShards", map(merge)).await, Cbor::Null);
    let update = vec![s(), ("TargetShardCount", int(4)), ("ScalingType", text("UNIFORM_SCALING"))];
    let updated = ok(&server, "UpdateShardCount", map(update)).await;
    assert_eq!(get(&updated, "TargetShardCount"), &int(4));
    assert_eq!(ok(&server, "DeleteStream", map(vec![s()])).await, Cbor::Null);

    // Errors, in CBOR: from an action, from the model's checks, from the decoder.
    let mut body = Vec::new();
    ciborium::ser::into_writer(&map(vec![("StreamName", text("nope"))]), &mut body).unwrap();
    assert_eq!(
        err(&server, "DescribeStream", &body).await,
        ("ResourceNotFoundException".into(), "Stream nope under account 000000000000 not found.".into())
    );
    body.clear();
    ciborium::ser::into_writer(&map(vec![("StreamName", text("")), ("Data", Cbor::Bytes(vec![1]))]), &mut body)
        .unwrap();
    let (kind, message) = err(&server, "PutRecord", &body).await;
    assert_eq!(kind, "ValidationException");
    assert!(message.starts_with("2 validation errors detected: Value '' at 'streamName'"), "{message}");
    body.clear();
    ciborium::ser::into_writer(&map(vec![("StreamName", Cbor::Bytes(vec![1]))]), &mut body).unwrap();
    let (kind, message) = err(&server, "DescribeStream", &body).await;
    assert_eq!(kind, "SerializationException");
    assert_eq!(message, "class [B can not be converted to an String");
    assert_eq!(err(&server, "DescribeStream", &[0xbf, 0x61]).await, ("SerializationException".into(), String::new()));
    server.stop().await;
}
