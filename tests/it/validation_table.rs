//! AWS's validation messages, action by action: for each Kinesis and Firehose action Sluice
//! serves, a request that breaks nothing, then requests with 1, 2 and 3 broken constraints,
//! each answered with AWS's exact `ValidationException` text (violations in the model's
//! member order, values rendered as AWS renders them). Two actions have fewer constrained
//! members than that: DescribeLimits has none, DeleteDeliveryStream one (at most 2
//! violations).

use serde_json::{json, Value};

use crate::support::{raw_request, TestServer};

const NAME: &str = "satisfy regular expression pattern: [a-zA-Z0-9_.-]+";
const LEN1: &str = "have length greater than or equal to 1";
const ARN: &str = "satisfy regular expression pattern: arn:aws.*:kinesis:.*:\\d{12}:stream/\\S+";
const ID: &str = "satisfy regular expression pattern: [a-z0-9]{20}-[a-z0-9]{3}";
const ITERATOR_TYPES: &str =
    "satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON]";
const TAG_KEY: &str = "satisfy regular expression pattern: ^(?!aws:)[\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@%]*$";
const SOURCE_TYPES: &str = "satisfy enum value set: [DirectPut, KinesisStreamAsSource, MSKAsSource, DatabaseAsSource]";

/// One violation: `Value '<value>' at '<path>' failed to satisfy constraint: Member must <must>`
/// (`null` unquoted).
fn v(value: &str, path: &str, must: &str) -> String {
    let value = if value == "null" { value.to_owned() } else { format!("'{value}'") };
    format!("Value {value} at '{path}' failed to satisfy constraint: Member must {must}")
}

fn null(path: &str) -> String {
    v("null", path, "not be null")
}

/// The whole message for `violations`, or `None` for a request that must pass validation.
fn msg(violations: &[String]) -> Option<String> {
    match violations.len() {
        0 => None,
        1 => Some(format!("1 validation error detected: {}", violations[0])),
        n => Some(format!("{n} validation errors detected: {}", violations.join("; "))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_answers_0_to_3_violations_with_awss_exact_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_unsigned(dir.path()).await;
    let k = |a: &str| format!("Kinesis_20131202.{a}");
    let f = |a: &str| format!("Firehose_20150804.{a}");
    let (status, _) = raw_request(server.addr, &k("CreateStream"), br#"{"StreamName":"vt","ShardCount":1}"#).await;
    assert_eq!(status, 200);
    let long_key = "k".repeat(129);
    let long_value = "v".repeat(257);
    let shard = "shardId-000000000000";

    // (target, body, violations in order; empty: must pass validation)
    let cases: Vec<(String, Value, Vec<String>)> = vec![
        (k("CreateStream"), json!({"StreamName": "vt2", "ShardCount": 1}), vec![]),
        (k("CreateStream"), json!({"StreamName": "a b", "ShardCount": 1}), vec![v("a b", "streamName", NAME)]),
        (k("CreateStream"), json!({"StreamName": "", "ShardCount": 1}), vec![v("", "streamName", NAME), v("", "streamName", LEN1)]),
        (k("CreateStream"), json!({"StreamName": "", "ShardCount": 0}), vec![v("", "streamName", NAME), v("", "streamName", LEN1), v("0", "shardCount", "have value greater than or equal to 1")]),
        (k("DeleteStream"), json!({"StreamName": "nope"}), vec![]),
        (k("DeleteStream"), json!({"StreamName": "a b"}), vec![v("a b", "streamName", NAME)]),
        (k("DeleteStream"), json!({"StreamName": "a b", "StreamARN": "x"}), vec![v("a b", "streamName", NAME), v("x", "streamARN", ARN)]),
        (k("DeleteStream"), json!({"StreamName": "", "StreamARN": "x"}), vec![v("", "streamName", NAME), v("", "streamName", LEN1), v("x", "streamARN", ARN)]),
        (k("DescribeStream"), json!({"StreamName": "vt"}), vec![]),
        (k("DescribeStream"), json!({"StreamName": "vt", "Limit": 0}), vec![v("0", "limit", "have value greater than or equal to 1")]),
        (k("DescribeStream"), json!({"StreamName": "vt", "Limit": 0, "ExclusiveStartShardId": "a b"}), vec![v("0", "limit", "have value greater than or equal to 1"), v("a b", "exclusiveStartShardId", NAME)]),
        (k("DescribeStream"), json!({"StreamName": "a b", "Limit": 10001, "ExclusiveStartShardId": "a b"}), vec![v("a b", "streamName", NAME), v("10001", "limit", "have value less than or equal to 10000"), v("a b", "exclusiveStartShardId", NAME)]),
        (k("DescribeStreamSummary"), json!({"StreamName": "vt"}), vec![]),
        (k("DescribeStreamSummary"), json!({"StreamName": "a b"}), vec![v("a b", "streamName", NAME)]),
        (k("DescribeStreamSummary"), json!({"StreamName": "a b", "StreamId": "x"}), vec![v("a b", "streamName", NAME), v("x", "streamId", ID)]),
        (k("DescribeStreamSummary"), json!({"StreamName": "", "StreamId": "x"}), vec![v("", "streamName", NAME), v("", "streamName", LEN1), v("x", "streamId", ID)]),
        (k("ListStreams"), json!({}), vec![]),
        (k("ListStreams"), json!({"Limit": 0}), vec![v("0", "limit", "have value greater than or equal to 1")]),
        (k("ListStreams"), json!({"Limit": 0, "ExclusiveStartStreamName": "a b"}), vec![v("0", "limit", "have value greater than or equal to 1"), v("a b", "exclusiveStartStreamName", NAME)]),
        (k("ListStreams"), json!({"Limit": 0, "ExclusiveStartStreamName": "a b", "NextToken": ""}), vec![v("0", "limit", "have value greater than or equal to 1"), v("a b", "exclusiveStartStreamName", NAME), v("", "nextToken", LEN1)]),
        (k("ListShards"), json!({"StreamName": "vt"}), vec![]),
        (k("ListShards"), json!({"StreamName": "vt", "MaxResults": 0}), vec![v("0", "maxResults", "have value greater than or equal to 1")]),
        (k("ListShards"), json!({"StreamName": "vt", "MaxResults": 0, "ExclusiveStartShardId": "a b"}), vec![v("a b", "exclusiveStartShardId", NAME), v("0", "maxResults", "have value greater than or equal to 1")]),
        (k("ListShards"), json!({"StreamName": "a b", "MaxResults": 0, "ExclusiveStartShardId": "a b"}), vec![v("a b", "streamName", NAME), v("a b", "exclusiveStartShardId", NAME), v("0", "maxResults", "have value greater than or equal to 1")]),
        (k("PutRecord"), json!({"StreamName": "vt", "Data": "eA==", "PartitionKey": "k"}), vec![]),
        (k("PutRecord"), json!({"StreamName": "vt", "Data": "eA==", "PartitionKey": ""}), vec![v("", "partitionKey", LEN1)]),
        (k("PutRecord"), json!({"StreamName": "vt", "PartitionKey": ""}), vec![null("data"), v("", "partitionKey", LEN1)]),
        (k("PutRecord"), json!({"StreamName": "a b", "PartitionKey": ""}), vec![v("a b", "streamName", NAME), null("data"), v("", "partitionKey", LEN1)]),
        (k("PutRecords"), json!({"StreamName": "vt", "Records": [{"Data": "eA==", "PartitionKey": "k"}]}), vec![]),
        (k("PutRecords"), json!({"StreamName": "vt", "Records": []}), vec![v("[]", "records", LEN1)]),
        (k("PutRecords"), json!({"StreamName": "a b", "Records": []}), vec![v("[]", "records", LEN1), v("a b", "streamName", NAME)]),
        (k("PutRecords"), json!({"StreamName": "a b", "Records": [{"PartitionKey": ""}]}), vec![null("records.1.member.data"), v("", "records.1.member.partitionKey", LEN1), v("a b", "streamName", NAME)]),
        (k("GetShardIterator"), json!({"StreamName": "vt", "ShardId": shard, "ShardIteratorType": "LATEST"}), vec![]),
        (k("GetShardIterator"), json!({"StreamName": "vt", "ShardId": shard, "ShardIteratorType": "X"}), vec![v("X", "shardIteratorType", ITERATOR_TYPES)]),
        (k("GetShardIterator"), json!({"StreamName": "vt", "ShardIteratorType": "X"}), vec![null("shardId"), v("X", "shardIteratorType", ITERATOR_TYPES)]),
        (k("GetShardIterator"), json!({"StreamName": "a b", "ShardIteratorType": "X"}), vec![v("a b", "streamName", NAME), null("shardId"), v("X", "shardIteratorType", ITERATOR_TYPES)]),
        (k("GetRecords"), json!({"ShardIterator": "AAAAAAAAAAAAAAAA"}), vec![]),
        (k("GetRecords"), json!({"ShardIterator": ""}), vec![v("", "shardIterator", LEN1)]),
        (k("GetRecords"), json!({"ShardIterator": "", "Limit": 0}), vec![v("", "shardIterator", LEN1), v("0", "limit", "have value greater than or equal to 1")]),
        (k("GetRecords"), json!({"ShardIterator": "", "Limit": 0, "StreamARN": "x"}), vec![v("", "shardIterator", LEN1), v("0", "limit", "have value greater than or equal to 1"), v("x", "streamARN", ARN)]),
        (k("IncreaseStreamRetentionPeriod"), json!({"StreamName": "vt", "RetentionPeriodHours": 48}), vec![]),
        (k("IncreaseStreamRetentionPeriod"), json!({"StreamName": "vt"}), vec![null("retentionPeriodHours")]),
        (k("IncreaseStreamRetentionPeriod"), json!({"StreamName": "a b"}), vec![v("a b", "streamName", NAME), null("retentionPeriodHours")]),
        (k("IncreaseStreamRetentionPeriod"), json!({"StreamName": ""}), vec![v("", "streamName", NAME), v("", "streamName", LEN1), null("retentionPeriodHours")]),
        (k("DecreaseStreamRetentionPeriod"), json!({"StreamName": "vt", "RetentionPeriodHours": 24}), vec![]),
        (k("DecreaseStreamRetentionPeriod"), json!({"StreamName": "vt"}), vec![null("retentionPeriodHours")]),
        (k("DecreaseStreamRetentionPeriod"), json!({"StreamName": "a b"}), vec![v("a b", "streamName", NAME), null("retentionPeriodHours")]),
        (k("DecreaseStreamRetentionPeriod"), json!({"StreamName": ""}), vec![v("", "streamName", NAME), v("", "streamName", LEN1), null("retentionPeriodHours")]),
        (k("AddTagsToStream"), json!({"StreamName": "vt", "Tags": {"a": "b"}}), vec![]),
        (k("AddTagsToStream"), json!({"StreamName": "vt", "Tags": {}}), vec![v("{}", "tags", LEN1)]),
        (k("AddTagsToStream"), json!({"StreamName": "vt", "Tags": {long_key.clone(): "1", "k": long_value.clone()}}), vec![
            format!("Value '{{k={long_value}, {long_key}=1}}' at 'tags' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"),
            format!("Value '{{k={long_value}, {long_key}=1}}' at 'tags' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to 256, Member must have length greater than or equal to 0]"),
        ]),
        (k("AddTagsToStream"), json!({"StreamName": "", "Tags": {}}), vec![v("", "streamName", NAME), v("", "streamName", LEN1), v("{}", "tags", LEN1)]),
        (k("RemoveTagsFromStream"), json!({"StreamName": "vt", "TagKeys": ["a"]}), vec![]),
        (k("RemoveTagsFromStream"), json!({"StreamName": "vt", "TagKeys": []}), vec![v("[]", "tagKeys", LEN1)]),
        (k("RemoveTagsFromStream"), json!({"StreamName": "a b", "TagKeys": []}), vec![v("a b", "streamName", NAME), v("[]", "tagKeys", LEN1)]),
        (k("RemoveTagsFromStream"), json!({"StreamName": "a b", "TagKeys": ["x", ""], "StreamARN": "x"}), vec![
            v("a b", "streamName", NAME),
            v("[x, ]", "tagKeys", "satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"),
            v("x", "streamARN", ARN),
        ]),
        (k("ListTagsForStream"), json!({"StreamName": "vt"}), vec![]),
        (k("ListTagsForStream"), json!({"StreamName": "vt", "Limit": 0}), vec![v("0", "limit", "have value greater than or equal to 1")]),
        (k("ListTagsForStream"), json!({"StreamName": "vt", "Limit": 51, "ExclusiveStartTagKey": ""}), vec![v("", "exclusiveStartTagKey", LEN1), v("51", "limit", "have value less than or equal to 50")]),
        (k("ListTagsForStream"), json!({"StreamName": "a b", "Limit": 0, "ExclusiveStartTagKey": ""}), vec![v("a b", "streamName", NAME), v("", "exclusiveStartTagKey", LEN1), v("0", "limit", "have value greater than or equal to 1")]),
        (k("DescribeLimits"), json!({}), vec![]),
        (k("SplitShard"), json!({"StreamName": "nope", "ShardToSplit": shard, "NewStartingHashKey": "1"}), vec![]),
        (k("SplitShard"), json!({"StreamName": "nope", "ShardToSplit": shard, "NewStartingHashKey": "x"}), vec![v("x", "newStartingHashKey", "satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$")]),
        (k("SplitShard"), json!({"StreamName": "nope", "NewStartingHashKey": "01"}), vec![null("shardToSplit"), v("01", "newStartingHashKey", "satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$")]),
        (k("SplitShard"), json!({"StreamName": "a b", "NewStartingHashKey": "01"}), vec![v("a b", "streamName", NAME), null("shardToSplit"), v("01", "newStartingHashKey", "satisfy regular expression pattern: ^(0|([1-9]\\d{0,38}))$")]),
        (k("MergeShards"), json!({"StreamName": "nope", "ShardToMerge": shard, "AdjacentShardToMerge": "shardId-000000000001"}), vec![]),
        (k("MergeShards"), json!({"StreamName": "nope", "ShardToMerge": "a b", "AdjacentShardToMerge": "shardId-000000000001"}), vec![v("a b", "shardToMerge", NAME)]),
        (k("MergeShards"), json!({"StreamName": "nope"}), vec![null("shardToMerge"), null("adjacentShardToMerge")]),
        (k("MergeShards"), json!({"StreamName": "a b"}), vec![v("a b", "streamName", NAME), null("shardToMerge"), null("adjacentShardToMerge")]),
        (k("UpdateShardCount"), json!({"StreamName": "nope", "TargetShardCount": 2, "ScalingType": "UNIFORM_SCALING"}), vec![]),
        (k("UpdateShardCount"), json!({"StreamName": "nope", "TargetShardCount": 2, "ScalingType": "X"}), vec![v("X", "scalingType", "satisfy enum value set: [UNIFORM_SCALING]")]),
        (k("UpdateShardCount"), json!({"StreamName": "nope", "TargetShardCount": 0, "ScalingType": "X"}), vec![v("0", "targetShardCount", "have value greater than or equal to 1"), v("X", "scalingType", "satisfy enum value set: [UNIFORM_SCALING]")]),
        (k("UpdateShardCount"), json!({"StreamName": "a b", "TargetShardCount": 0, "ScalingType": "X"}), vec![v("a b", "streamName", NAME), v("0", "targetShardCount", "have value greater than or equal to 1"), v("X", "scalingType", "satisfy enum value set: [UNIFORM_SCALING]")]),
        (f("CreateDeliveryStream"), json!({"DeliveryStreamName": "vt-d"}), vec![]),
        (f("CreateDeliveryStream"), json!({"DeliveryStreamName": "a b"}), vec![v("a b", "deliveryStreamName", NAME)]),
        (f("CreateDeliveryStream"), json!({"DeliveryStreamName": ""}), vec![v("", "deliveryStreamName", NAME), v("", "deliveryStreamName", LEN1)]),
        (f("CreateDeliveryStream"), json!({"DeliveryStreamName": "", "DeliveryStreamType": "X"}), vec![v("", "deliveryStreamName", NAME), v("", "deliveryStreamName", LEN1), v("X", "deliveryStreamType", SOURCE_TYPES)]),
        (f("DescribeDeliveryStream"), json!({"DeliveryStreamName": "nope"}), vec![]),
        (f("DescribeDeliveryStream"), json!({"DeliveryStreamName": "nope", "Limit": 0}), vec![v("0", "limit", "have value greater than or equal to 1")]),
        (f("DescribeDeliveryStream"), json!({"DeliveryStreamName": "nope", "Limit": 0, "ExclusiveStartDestinationId": "a b"}), vec![v("0", "limit", "have value greater than or equal to 1"), v("a b", "exclusiveStartDestinationId", "satisfy regular expression pattern: [a-zA-Z0-9-]+")]),
        (f("DescribeDeliveryStream"), json!({"DeliveryStreamName": "a b", "Limit": 0, "ExclusiveStartDestinationId": "a b"}), vec![v("a b", "deliveryStreamName", NAME), v("0", "limit", "have value greater than or equal to 1"), v("a b", "exclusiveStartDestinationId", "satisfy regular expression pattern: [a-zA-Z0-9-]+")]),
        (f("ListDeliveryStreams"), json!({}), vec![]),
        (f("ListDeliveryStreams"), json!({"Limit": 0}), vec![v("0", "limit", "have value greater than or equal to 1")]),
        (f("ListDeliveryStreams"), json!({"Limit": 0, "DeliveryStreamType": "X"}), vec![v("0", "limit", "have value greater than or equal to 1"), v("X", "deliveryStreamType", SOURCE_TYPES)]),
        (f("ListDeliveryStreams"), json!({"Limit": 0, "DeliveryStreamType": "X", "ExclusiveStartDeliveryStreamName": "a b"}), vec![v("0", "limit", "have value greater than or equal to 1"), v("X", "deliveryStreamType", SOURCE_TYPES), v("a b", "exclusiveStartDeliveryStreamName", NAME)]),
        (f("DeleteDeliveryStream"), json!({"DeliveryStreamName": "nope"}), vec![]),
        (f("DeleteDeliveryStream"), json!({}), vec![null("deliveryStreamName")]),
        (f("DeleteDeliveryStream"), json!({"DeliveryStreamName": ""}), vec![v("", "deliveryStreamName", NAME), v("", "deliveryStreamName", LEN1)]),
        (f("UpdateDestination"), json!({"DeliveryStreamName": "nope", "CurrentDeliveryStreamVersionId": "1", "DestinationId": "destinationId-000000000001"}), vec![]),
        (f("UpdateDestination"), json!({"DeliveryStreamName": "nope", "CurrentDeliveryStreamVersionId": "x", "DestinationId": "destinationId-000000000001"}), vec![v("x", "currentDeliveryStreamVersionId", "satisfy regular expression pattern: [0-9]+")]),
        (f("UpdateDestination"), json!({"DeliveryStreamName": "nope", "CurrentDeliveryStreamVersionId": "x", "DestinationId": "a b"}), vec![v("x", "currentDeliveryStreamVersionId", "satisfy regular expression pattern: [0-9]+"), v("a b", "destinationId", "satisfy regular expression pattern: [a-zA-Z0-9-]+")]),
        (f("UpdateDestination"), json!({}), vec![null("deliveryStreamName"), null("currentDeliveryStreamVersionId"), null("destinationId")]),
        (f("PutRecord"), json!({"DeliveryStreamName": "nope", "Record": {"Data": "eA=="}}), vec![]),
        (f("PutRecord"), json!({"DeliveryStreamName": "nope", "Record": {}}), vec![null("record.data")]),
        (f("PutRecord"), json!({"DeliveryStreamName": "a b"}), vec![v("a b", "deliveryStreamName", NAME), null("record")]),
        (f("PutRecord"), json!({"DeliveryStreamName": ""}), vec![v("", "deliveryStreamName", NAME), v("", "deliveryStreamName", LEN1), null("record")]),
        (f("PutRecordBatch"), json!({"DeliveryStreamName": "nope", "Records": [{"Data": "eA=="}]}), vec![]),
        (f("PutRecordBatch"), json!({"DeliveryStreamName": "nope", "Records": []}), vec![v("[]", "records", LEN1)]),
        (f("PutRecordBatch"), json!({"DeliveryStreamName": "a b", "Records": []}), vec![v("a b", "deliveryStreamName", NAME), v("[]", "records", LEN1)]),
        (f("PutRecordBatch"), json!({"DeliveryStreamName": "", "Records": []}), vec![v("", "deliveryStreamName", NAME), v("", "deliveryStreamName", LEN1), v("[]", "records", LEN1)]),
        (f("TagDeliveryStream"), json!({"DeliveryStreamName": "nope", "Tags": [{"Key": "a", "Value": "b"}]}), vec![]),
        (f("TagDeliveryStream"), json!({"DeliveryStreamName": "nope", "Tags": []}), vec![v("[]", "tags", LEN1)]),
        (f("TagDeliveryStream"), json!({"DeliveryStreamName": "a b", "Tags": [{"Key": "aws:x"}]}), vec![v("a b", "deliveryStreamName", NAME), v("aws:x", "tags.1.member.key", TAG_KEY)]),
        (f("TagDeliveryStream"), json!({"DeliveryStreamName": "", "Tags": [{"Key": ""}]}), vec![v("", "deliveryStreamName", NAME), v("", "deliveryStreamName", LEN1), v("", "tags.1.member.key", LEN1)]),
        (f("UntagDeliveryStream"), json!({"DeliveryStreamName": "nope", "TagKeys": ["a"]}), vec![]),
        (f("UntagDeliveryStream"), json!({"DeliveryStreamName": "nope", "TagKeys": []}), vec![v("[]", "tagKeys", LEN1)]),
        (f("UntagDeliveryStream"), json!({"DeliveryStreamName": "a b", "TagKeys": ["aws:x"]}), vec![
            v("a b", "deliveryStreamName", NAME),
            v("[aws:x]", "tagKeys", &format!("satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1, Member must {TAG_KEY}]")),
        ]),
        (f("UntagDeliveryStream"), json!({"DeliveryStreamName": "", "TagKeys": []}), vec![v("", "deliveryStreamName", NAME), v("", "deliveryStreamName", LEN1), v("[]", "tagKeys", LEN1)]),
        (f("ListTagsForDeliveryStream"), json!({"DeliveryStreamName": "nope"}), vec![]),
        (f("ListTagsForDeliveryStream"), json!({"DeliveryStreamName": "nope", "Limit": 0}), vec![v("0", "limit", "have value greater than or equal to 1")]),
        (f("ListTagsForDeliveryStream"), json!({"DeliveryStreamName": "nope", "Limit": 0, "ExclusiveStartTagKey": "aws:x"}), vec![v("aws:x", "exclusiveStartTagKey", TAG_KEY), v("0", "limit", "have value greater than or equal to 1")]),
        (f("ListTagsForDeliveryStream"), json!({"DeliveryStreamName": "a b", "Limit": 0, "ExclusiveStartTagKey": "aws:x"}), vec![v("a b", "deliveryStreamName", NAME), v("aws:x", "exclusiveStartTagKey", TAG_KEY), v("0", "limit", "have value greater than or equal to 1")]),
    ];
    let mut failures = Vec::new();
    for (target, body, violations) in &cases {
        let (status, answer) = raw_request(server.addr, target, body.to_string().as_bytes()).await;
        let kind = answer["__type"].as_str().unwrap_or("");
        let message = answer["message"].as_str().unwrap_or("");
        let ok = match msg(violations) {
            None => kind != "ValidationException" && kind != "SerializationException",
            Some(want) => status == 400 && kind == "ValidationException" && message == want,
        };
        if !ok {
            failures
                .push(format!("{target} {body}\n    got {status} {kind}: {message}\n    want {:?}", msg(violations)));
        }
    }
    // Every action served has its rows.
    let actions: std::collections::BTreeSet<&str> = cases.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(actions.len(), 19 + 10, "{actions:?}");
    assert!(failures.is_empty(), "{} of {} rows wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
    server.stop().await;
}
