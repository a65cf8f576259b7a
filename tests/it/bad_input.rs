//! Malformed requests, table-driven: each gets the exact `__type` and message, and none of
//! them writes anything.

use base64::Engine as _;
use serde_json::json;

use crate::support::{raw_request, TestServer};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

const ACCOUNT: &str = "000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_aws_errors_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_unsigned(dir.path()).await;
    let k = |a: &str| format!("Kinesis_20131202.{a}");
    let (status, _) = raw_request(server.addr, &k("CreateStream"), br#"{"StreamName":"s","ShardCount":2}"#).await;
    assert_eq!(status, 200);

    let big = b64(&vec![b'x'; (1 << 20) + 1]);
    let mib = b64(&vec![b'x'; 1 << 20]);
    let long_key = "k".repeat(257);
    let long_name = "n".repeat(129);
    let record = |key: &str| json!({"Data": b64(b"x"), "PartitionKey": key});
    let many: Vec<_> = (0..501).map(|_| record("k")).collect();
    let almost_mib = b64(&vec![b'x'; (1 << 20) - 1]);
    let heavy: Vec<_> = (0..6).map(|_| json!({"Data": almost_mib, "PartitionKey": "k"})).collect();
    let shard1_seq = "49000000000000000000000000000000000018446744073709551616";
    let validation = |value: &str, member: &str, must: &str| {
        format!("1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: Member must {must}")
    };
    let not_found = |s: &str| format!("Stream {s} under account {ACCOUNT} not found.");
    // Patterns are quoted as the current model writes them (anchored since 2024).
    let hash_pattern = "satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$";
    let null_at = |member: &str| {
        format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null")
    };
    // A list of structures prints as Java prints it: class name and identity hash each.
    let entries_501 = format!(
        "[{}]",
        vec![
            format!(
                "com.amazonaws.kinesis.v20131202.PutRecordsRequestEntry@{:08x}",
                crc32fast::hash(record("k").to_string().as_bytes())
            );
            501
        ]
        .join(", ")
    );
    let name_pattern = "satisfy regular expression pattern: [a-zA-Z0-9_.-]+";

    // (action, body, __type, message)
    let cases: Vec<(String, String, &str, String)> = vec![
        (k("Frobnicate"), "{}".into(), "UnknownOperationException", String::new()),
        ("Kinesis_20991231.PutRecord".into(), "{}".into(), "UnknownOperationException", String::new()),
        (String::new(), "{}".into(), "UnknownOperationException", String::new()),
        (k("PutRecord"), "{".into(), "SerializationException", String::new()),
        (k("PutRecord"), "[1,2]".into(), "SerializationException", String::new()),
        (k("PutRecord"), json!({"StreamName":"s","PartitionKey":"k"}).to_string(), "ValidationException", null_at("data")),
        (k("PutRecord"), json!({"StreamName":"s","Data":b64(b"x")}).to_string(), "ValidationException", null_at("partitionKey")),
        (k("PutRecord"), json!({"StreamName":"s","Data":5,"PartitionKey":"k"}).to_string(), "SerializationException", "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to a Blob".into()),
        (k("PutRecord"), json!({"StreamName":"s","Data":"!!!","PartitionKey":"k"}).to_string(), "SerializationException", "'!!!' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 3".into()),
        (k("PutRecord"), json!({"StreamName":"s","Data":big,"PartitionKey":"k"}).to_string(), "ValidationException", validation("java.nio.HeapByteBuffer[pos=0 lim=1048577 cap=1048577]", "data", "have length less than or equal to 1048576")),
        (k("PutRecord"), json!({"StreamName":"s","Data":mib,"PartitionKey":"k"}).to_string(), "InvalidArgumentException", "The record size (data plus partition key) exceeds 1 MiB.".into()),
        (k("PutRecord"), json!({"StreamName":"s","Data":b64(b"x"),"PartitionKey":""}).to_string(), "ValidationException", validation("", "partitionKey", "have length greater than or equal to 1")),
        (k("PutRecord"), json!({"StreamName":"s","Data":b64(b"x"),"PartitionKey":long_key}).to_string(), "ValidationException", validation(&long_key, "partitionKey", "have length less than or equal to 256")),
        (k("PutRecord"), json!({"StreamName":"s","Data":b64(b"x"),"PartitionKey":"k","ExplicitHashKey":"abc"}).to_string(), "ValidationException", validation("abc", "explicitHashKey", hash_pattern)),
        (k("PutRecord"), json!({"StreamName":"s","Data":b64(b"x"),"PartitionKey":"k","ExplicitHashKey":"-1"}).to_string(), "ValidationException", validation("-1", "explicitHashKey", hash_pattern)),
        (k("PutRecord"), json!({"StreamName":"s","Data":b64(b"x"),"PartitionKey":"k","ExplicitHashKey":"01"}).to_string(), "ValidationException", validation("01", "explicitHashKey", hash_pattern)),
        (k("PutRecord"), json!({"StreamName":"s","Data":b64(b"x"),"PartitionKey":"k","ExplicitHashKey":"340282366920938463463374607431768211456"}).to_string(), "InvalidArgumentException", "Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was 340282366920938463463374607431768211456".into()),
        (k("PutRecord"), json!({"StreamName":"nope","Data":b64(b"x"),"PartitionKey":"k"}).to_string(), "ResourceNotFoundException", not_found("nope")),
        (k("PutRecord"), json!({"StreamName":"bad name!","Data":b64(b"x"),"PartitionKey":"k"}).to_string(), "ValidationException", validation("bad name!", "streamName", name_pattern)),
        (k("PutRecord"), json!({"StreamName":long_name,"Data":b64(b"x"),"PartitionKey":"k"}).to_string(), "ValidationException", validation(&long_name, "streamName", "have length less than or equal to 128")),
        (k("PutRecord"), json!({"Data":b64(b"x"),"PartitionKey":"k"}).to_string(), "InvalidArgumentException", "Either StreamName or StreamARN should be provided.".into()),
        (k("PutRecord"), json!({"StreamARN":"arn:aws:kinesis:eu-west-1:111111111111:stream/s","Data":b64(b"x"),"PartitionKey":"k"}).to_string(), "ResourceNotFoundException", "Stream arn:aws:kinesis:eu-west-1:111111111111:stream/s not found.".into()),
        (k("PutRecords"), json!({"StreamName":"s","Records":[]}).to_string(), "ValidationException", validation("[]", "records", "have length greater than or equal to 1")),
        (k("PutRecords"), json!({"StreamName":"s","Records":many}).to_string(), "ValidationException", validation(&entries_501, "records", "have length less than or equal to 500")),
        (k("PutRecords"), json!({"StreamName":"s","Records":[record("a"), record("b"), record("c"), record("")]}).to_string(), "ValidationException", validation("", "records.4.member.partitionKey", "have length greater than or equal to 1")),
        (k("PutRecords"), json!({"StreamName":"s","Records":[record("a"), {"Data":"%%%","PartitionKey":"k"}]}).to_string(), "SerializationException", "'%%%' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 3".into()),
        (k("PutRecords"), json!({"StreamName":"s","Records":heavy}).to_string(), "InvalidArgumentException", "Records size exceeds 5 MB limit".into()),
        (k("PutRecords"), json!({"StreamName":"s"}).to_string(), "ValidationException", null_at("records")),
        (k("PutRecords"), json!({"StreamName":"nope","Records":[record("a")]}).to_string(), "ResourceNotFoundException", not_found("nope")),
        (k("CreateStream"), json!({"StreamName":"t","ShardCount":0}).to_string(), "ValidationException", validation("0", "shardCount", "have value greater than or equal to 1")),
        (k("CreateStream"), json!({"StreamName":"t","ShardCount":-1}).to_string(), "ValidationException", validation("-1", "shardCount", "have value greater than or equal to 1")),
        (k("CreateStream"), json!({"StreamName":"t"}).to_string(), "InvalidArgumentException", "ShardCount is required for streams in PROVISIONED mode.".into()),
        (k("CreateStream"), json!({"StreamName":"t","ShardCount":1,"StreamModeDetails":{"StreamMode":"SOMETIMES"}}).to_string(), "ValidationException", validation("SOMETIMES", "streamModeDetails.streamMode", "satisfy enum value set: [PROVISIONED, ON_DEMAND]")),
        (k("CreateStream"), json!({"StreamName":"s","ShardCount":1}).to_string(), "ResourceInUseException", format!("Stream s under account {ACCOUNT} already exists.")),
        (k("CreateStream"), json!({"StreamName":"t","ShardCount":499}).to_string(), "LimitExceededException", format!("This request would exceed the shard limit for the account {ACCOUNT} in us-east-1. Current limit of shards is 500. Number of shards that would have resulted from this request is 501.")),
        (k("CreateStream"), json!({"StreamName":"","ShardCount":1}).to_string(), "ValidationException", format!("2 validation errors detected: Value '' at 'streamName' failed to satisfy constraint: Member must {name_pattern}; Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1")),
        (k("GetShardIterator"), json!({"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"SOMETIME"}).to_string(), "ValidationException", validation("SOMETIME", "shardIteratorType", "satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]")),
        (k("GetShardIterator"), json!({"StreamName":"s","ShardId":"shardId-000000000009","ShardIteratorType":"LATEST"}).to_string(), "ResourceNotFoundException", format!("Shard shardId-000000000009 in stream s under account {ACCOUNT} does not exist")),
        (k("GetShardIterator"), json!({"StreamName":"s","ShardId":"garbage","ShardIteratorType":"LATEST"}).to_string(), "ResourceNotFoundException", format!("Shard garbage in stream s under account {ACCOUNT} does not exist")),
        (k("GetShardIterator"), json!({"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"AT_SEQUENCE_NUMBER"}).to_string(), "InvalidArgumentException", "StartingSequenceNumber must be provided for AT_SEQUENCE_NUMBER.".into()),
        (k("GetShardIterator"), json!({"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"AT_SEQUENCE_NUMBER","StartingSequenceNumber":"abc"}).to_string(), "ValidationException", validation("abc", "startingSequenceNumber", "satisfy regular expression pattern: ^(0|([1-9]\\d{0,128}))$")),
        (k("GetShardIterator"), json!({"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"AT_SEQUENCE_NUMBER","StartingSequenceNumber":shard1_seq}).to_string(), "InvalidArgumentException", "Invalid StartingSequenceNumber. It encodes shardId-000000000001, while it was used in a call to a shard with shardId-000000000000".into()),
        (k("GetShardIterator"), json!({"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"AT_SEQUENCE_NUMBER","StartingSequenceNumber":"1000"}).to_string(), "InvalidArgumentException", "Invalid StartingSequenceNumber. It encodes a sequence number beyond the end of shardId-000000000000.".into()),
        (k("GetShardIterator"), json!({"StreamName":"s","ShardId":"shardId-000000000000","ShardIteratorType":"AT_TIMESTAMP"}).to_string(), "InvalidArgumentException", "Timestamp must be provided for AT_TIMESTAMP.".into()),
        (k("GetRecords"), json!({"ShardIterator":""}).to_string(), "ValidationException", validation("", "shardIterator", "have length greater than or equal to 1")),
        (k("GetRecords"), json!({"ShardIterator":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}).to_string(), "InvalidArgumentException", "Invalid ShardIterator.".into()),
        (k("GetRecords"), json!({"ShardIterator":"x".repeat(513)}).to_string(), "ValidationException", validation(&"x".repeat(513), "shardIterator", "have length less than or equal to 512")),
        (k("GetRecords"), json!({"ShardIterator":"abc","Limit":0}).to_string(), "ValidationException", validation("0", "limit", "have value greater than or equal to 1")),
        (k("GetRecords"), json!({"ShardIterator":"abc","Limit":10001}).to_string(), "ValidationException", validation("10001", "limit", "have value less than or equal to 10000")),
        (k("DescribeStream"), json!({"StreamName":"s","Limit":0}).to_string(), "ValidationException", validation("0", "limit", "have value greater than or equal to 1")),
        (k("DescribeStream"), json!({"StreamName":"nope"}).to_string(), "ResourceNotFoundException", not_found("nope")),
        (k("ListShards"), json!({"StreamName":"s","NextToken":"abc"}).to_string(), "InvalidArgumentException", "NextToken and StreamName cannot be provided together.".into()),
        (k("ListShards"), json!({"StreamName":"s","ShardFilter":{"Type":"SIDEWAYS"}}).to_string(), "ValidationException", validation("SIDEWAYS", "shardFilter.type", "satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]")),
        (k("ListStreams"), json!({"Limit":0}).to_string(), "ValidationException", validation("0", "limit", "have value greater than or equal to 1")),
        (k("DeleteStream"), json!({"StreamName":"nope"}).to_string(), "ResourceNotFoundException", not_found("nope")),
    ];
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for (target, body, kind, message) in &cases {
        let (status, answer) = raw_request(server.addr, target, body.as_bytes()).await;
        // Coral's deserializer writes its message as `Message`; every other error `message`.
        let member = if *kind == "SerializationException" { "Message" } else { "message" };
        let got = (answer["__type"].as_str().unwrap_or(""), answer[member].as_str().unwrap_or(""));
        if kind.starts_with("UnknownOperation") {
            assert!(answer.get("message").is_none(), "AWS sends no message with {kind}: {answer}");
        }
        let expected_status = if *kind == "InternalFailure" { 500 } else { 400 };
        if got != (*kind, message.as_str()) || status != expected_status {
            let shown: String = body.chars().take(80).collect();
            failures.push(format!("{target} {shown}\n    got {status} {got:?}\n    want {kind} {message:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // Nothing was written: no stream but "s", and every shard of "s" is empty.
    let (_, listed) = raw_request(server.addr, &k("ListStreams"), b"{}").await;
    assert_eq!(listed["StreamNames"], json!(["s"]));
    for shard in ["shardId-000000000000", "shardId-000000000001"] {
        let body = json!({"StreamName":"s","ShardId":shard,"ShardIteratorType":"TRIM_HORIZON"}).to_string();
        let (_, it) = raw_request(server.addr, &k("GetShardIterator"), body.as_bytes()).await;
        let body = json!({"ShardIterator": it["ShardIterator"]}).to_string();
        let (status, records) = raw_request(server.addr, &k("GetRecords"), body.as_bytes()).await;
        assert_eq!(status, 200);
        assert_eq!(records["Records"], json!([]), "{shard} holds records");
    }
    server.stop().await;
}
