//! Enhanced fan-out through the Rust SDK: consumers, and `SubscribeToShard` event streams
//! read across a split, a merge and the end of subscriptions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{ConsumerStatus, ShardIteratorType, StartingPosition, SubscribeToShardEventStream};
use aws_sdk_kinesis::Client;
use sluice::config::Throttle;
use sluice_engine::ManualClock;

use crate::support::{raw_call, TestServer};

/// What one subscription delivered: records (sequence number, partition key, data), the last
/// continuation, and the child shards if it read its shard to the end.
struct Delivered {
    records: Vec<(String, String, Vec<u8>)>,
    continuation: Option<String>,
    children: Option<Vec<String>>,
}

async fn subscribe(client: &Client, consumer: &str, shard: &str, position: StartingPosition) -> Delivered {
    let mut out = client
        .subscribe_to_shard()
        .consumer_arn(consumer)
        .shard_id(shard)
        .starting_position(position)
        .send()
        .await
        .unwrap();
    let mut d = Delivered { records: Vec::new(), continuation: None, children: None };
    while let Some(event) = out.event_stream.recv().await.unwrap() {
        let SubscribeToShardEventStream::SubscribeToShardEvent(e) = event else { panic!("unexpected {event:?}") };
        for r in e.records {
            d.records.push((r.sequence_number, r.partition_key.unwrap_or_default(), r.data.into_inner()));
        }
        // The last event of a closed shard has none (the SDK reads that as empty).
        if !e.continuation_sequence_number.is_empty() {
            d.continuation = Some(e.continuation_sequence_number);
        }
        if let Some(children) = e.child_shards.filter(|c| !c.is_empty()) {
            d.children = Some(children.into_iter().map(|c| c.shard_id).collect());
        }
    }
    d
}

/// Reads shard `shard` to its end (it must be closed) through as many subscriptions as it
/// takes, each resubscribing after the last continuation; returns the records and children.
async fn read_to_end(client: &Client, consumer: &str, shard: &str) -> (Vec<(String, String, Vec<u8>)>, Vec<String>) {
    let mut records = Vec::new();
    let mut position = position(ShardIteratorType::TrimHorizon, None);
    for _ in 0..50 {
        let d = subscribe(client, consumer, shard, position).await;
        records.extend(d.records);
        if let Some(children) = d.children {
            return (records, children);
        }
        position = self::position(ShardIteratorType::AfterSequenceNumber, d.continuation);
    }
    panic!("shard {shard} never ended");
}

/// A starting position of `kind`, with a sequence number for AT/AFTER_SEQUENCE_NUMBER.
fn position(kind: ShardIteratorType, sequence_number: Option<String>) -> StartingPosition {
    StartingPosition::builder().r#type(kind).set_sequence_number(sequence_number).build().unwrap()
}

/// Creates stream `stream` with `shards` shards and registers consumer `consumer`; its ARN.
async fn stream_with_consumer(client: &Client, stream: &str, shards: i32, consumer: &str) -> String {
    client.create_stream().stream_name(stream).shard_count(shards).send().await.unwrap();
    let arn = format!("arn:aws:kinesis:us-east-1:000000000000:stream/{stream}");
    let c = client.register_stream_consumer().stream_arn(arn).consumer_name(consumer).send().await.unwrap();
    c.consumer.unwrap().consumer_arn
}

async fn put(client: &Client, stream: &str, n: std::ops::Range<u32>) {
    for i in n {
        let key = format!("device-{}", i % 7);
        client
            .put_record()
            .stream_name(stream)
            .partition_key(key)
            .data(Blob::new(format!("reading {i}")))
            .send()
            .await
            .unwrap();
    }
}

async fn server(dir: &std::path::Path, lifetime_ms: u64) -> TestServer {
    TestServer::start_with(dir, Arc::new(ManualClock::new(1_700_000_000_000)), |c| {
        c.subscription_lifetime_ms = lifetime_ms;
        c.throttle = Throttle::Off;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_in_order_across_a_split_a_merge_and_resubscriptions() {
    let dir = tempfile::tempdir().unwrap();
    // Subscriptions end after 300 ms, so reading the lineage takes several of them.
    let server = server(dir.path(), 300).await;
    let client = server.client();
    let consumer = stream_with_consumer(&client, "fan", 1, "app").await;

    put(&client, "fan", 0..40).await;
    let middle = (1u128 << 127).to_string();
    client
        .split_shard()
        .stream_name("fan")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(&middle)
        .send()
        .await
        .unwrap();
    put(&client, "fan", 40..80).await;
    client
        .merge_shards()
        .stream_name("fan")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .unwrap();
    put(&client, "fan", 80..120).await;

    let (mut all, children) = read_to_end(&client, &consumer, "shardId-000000000000").await;
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);
    for child in &children {
        let (records, grandchildren) = read_to_end(&client, &consumer, child).await;
        assert_eq!(grandchildren, ["shardId-000000000003"]);
        all.extend(records);
    }
    // The merged shard is open: read it with subscriptions until its 40 records are in.
    let mut position = self::position(ShardIteratorType::TrimHorizon, None);
    let mut open_records = Vec::new();
    while open_records.len() < 40 {
        let d = subscribe(&client, &consumer, "shardId-000000000003", position).await;
        assert!(d.children.is_none());
        open_records.extend(d.records);
        position = self::position(ShardIteratorType::AfterSequenceNumber, d.continuation);
    }
    all.extend(open_records);

    let data: Vec<String> = all.iter().map(|(_, _, d)| String::from_utf8(d.clone()).unwrap()).collect();
    let unique: BTreeSet<&String> = data.iter().collect();
    assert_eq!(data.len(), 120, "every record once: {data:?}");
    assert_eq!(unique.len(), 120);
    // Per partition key, records come in the order they were put.
    let mut per_key: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for ((_, key, _), d) in all.iter().zip(&data) {
        per_key.entry(key).or_default().push(d.trim_start_matches("reading ").parse().unwrap());
    }
    for (key, seq) in per_key {
        assert!(seq.windows(2).all(|w| w[0] < w[1]), "{key}: {seq:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_pushed_as_they_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), 60_000).await;
    let client = server.client();
    let consumer = stream_with_consumer(&client, "live", 1, "tail").await;
    let mut out = client
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await
        .unwrap();
    // A second subscription of the same consumer to the same shard is refused while this one lives.
    let second = client
        .subscribe_to_shard()
        .consumer_arn(&consumer)
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::Latest, None))
        .send()
        .await
        .unwrap_err();
    assert_eq!(second.code(), Some("ResourceInUseException"), "{second:?}");
    assert!(second.message().unwrap().starts_with(
        "Another active subscription exists for this consumer: 000000000000:live:shardId-000000000000:tail"
    ));
    for i in 0..5 {
        put(&client, "live", i..i + 1).await;
        // Each record arrives on its own: the subscription was waiting, not polling.
        let got = loop {
            match out.event_stream.recv().await.unwrap().unwrap() {
                SubscribeToShardEventStream::SubscribeToShardEvent(e) if !e.records.is_empty() => break e,
                _ => continue,
            }
        };
        assert_eq!(got.records.len(), 1);
        assert_eq!(got.records[0].data.as_ref(), format!("reading {i}").as_bytes());
        assert_eq!(got.continuation_sequence_number, got.records[0].sequence_number);
    }
    drop(out);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_are_registered_listed_described_and_deregistered() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), 1_000).await;
    let client = server.client();
    client.create_stream().stream_name("c").shard_count(1).send().await.unwrap();
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/c";
    let first = client.register_stream_consumer().stream_arn(arn).consumer_name("c00").send().await.unwrap();
    let first = first.consumer.unwrap();
    assert_eq!(first.consumer_arn, "arn:aws:kinesis:us-east-1:000000000000:stream/c/consumer/c00:1700000000");
    assert_eq!(first.consumer_status, ConsumerStatus::Creating);
    let again = client.register_stream_consumer().stream_arn(arn).consumer_name("c00").send().await.unwrap_err();
    assert_eq!(again.code(), Some("ResourceInUseException"));
    for i in 1..20 {
        client.register_stream_consumer().stream_arn(arn).consumer_name(format!("c{i:02}")).send().await.unwrap();
    }
    let over = client.register_stream_consumer().stream_arn(arn).consumer_name("c20").send().await.unwrap_err();
    assert_eq!(over.code(), Some("LimitExceededException"), "{over:?}");

    let by_arn = client.describe_stream_consumer().consumer_arn(&first.consumer_arn).send().await.unwrap();
    let d = by_arn.consumer_description.unwrap();
    assert_eq!((d.consumer_name.as_str(), d.stream_arn.as_str()), ("c00", arn));
    assert_eq!(d.consumer_status, ConsumerStatus::Active);
    let by_name = client.describe_stream_consumer().stream_arn(arn).consumer_name("c07").send().await.unwrap();
    assert_eq!(by_name.consumer_description.unwrap().consumer_name, "c07");

    let page = client.list_stream_consumers().stream_arn(arn).max_results(15).send().await.unwrap();
    assert_eq!(page.consumers().len(), 15);
    let rest =
        client.list_stream_consumers().stream_arn(arn).next_token(page.next_token.unwrap()).send().await.unwrap();
    assert_eq!(rest.consumers().len(), 5);
    assert_eq!(rest.consumers()[4].consumer_name, "c19");
    assert!(rest.next_token.is_none());
    assert_eq!(
        client
            .describe_stream_summary()
            .stream_name("c")
            .send()
            .await
            .unwrap()
            .stream_description_summary
            .unwrap()
            .consumer_count,
        Some(20)
    );

    client.deregister_stream_consumer().consumer_arn(&first.consumer_arn).send().await.unwrap();
    let gone = client.describe_stream_consumer().consumer_arn(&first.consumer_arn).send().await.unwrap_err();
    assert_eq!(gone.code(), Some("ResourceNotFoundException"));
    let sub = client
        .subscribe_to_shard()
        .consumer_arn(&first.consumer_arn)
        .shard_id("shardId-000000000000")
        .starting_position(position(ShardIteratorType::TrimHorizon, None))
        .send()
        .await
        .unwrap_err();
    assert_eq!(sub.code(), Some("ResourceNotFoundException"), "{sub:?}");
    // A registration that fits again after the deregistration; the consumers survive a restart.
    client.register_stream_consumer().stream_arn(arn).consumer_name("c20").send().await.unwrap();
    server.stop().await;
    let server = server_again(dir.path()).await;
    let listed = server.client().list_stream_consumers().stream_arn(arn).send().await.unwrap();
    assert_eq!(listed.consumers().len(), 20);
    let missing_shard = server
        .client()
        .subscribe_to_shard()
        .consumer_arn(listed.consumers()[0].consumer_arn.clone())
        .shard_id("shardId-000000000009")
        .starting_position(position(ShardIteratorType::TrimHorizon, None))
        .send()
        .await
        .unwrap_err();
    assert_eq!(missing_shard.code(), Some("ResourceNotFoundException"), "{missing_shard:?}");
    // A stream with consumers is deleted only with EnforceConsumerDeletion (AWS's text), and
    // its consumers go with it.
    let client = server.client();
    for enforce in [None, Some(false)] {
        let kept = client.delete_stream().stream_name("c").set_enforce_consumer_deletion(enforce).send().await;
        let kept = kept.unwrap_err();
        assert_eq!(kept.code(), Some("ResourceInUseException"), "{kept:?}");
        assert_eq!(
            kept.message(),
            Some("DeleteStream can\u{2019}t delete 000000000000:c because there are consumers associated with this data stream. To delete c anyway, set the EnforceConsumerDeletion parameter to true to force the deletion of all the consumers that are associated with it.")
        );
    }
    assert_eq!(client.list_stream_consumers().stream_arn(arn).send().await.unwrap().consumers().len(), 20);
    client.delete_stream().stream_name("c").enforce_consumer_deletion(true).send().await.unwrap();
    client.create_stream().stream_name("c").shard_count(1).send().await.unwrap();
    assert_eq!(client.list_stream_consumers().stream_arn(arn).send().await.unwrap().consumers().len(), 0);
    server.stop().await;
}

async fn server_again(dir: &std::path::Path) -> TestServer {
    server(dir, 1_000).await
}

/// The body of a chunked HTTP/1.1 response.
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line + 2..line + 2 + size]);
        raw = &raw[line + 2 + size + 2..];
    }
}

/// Reads the event-stream messages of a whole response body.
fn messages(body: &[u8]) -> Vec<aws_smithy_types::event_stream::Message> {
    let body = dechunk(body);
    let mut body = &body[..];
    let mut out = Vec::new();
    while !body.is_empty() {
        out.push(aws_smithy_eventstream::frame::read_message_from(&mut body).unwrap());
    }
    out
}

fn header<'a>(m: &'a aws_smithy_types::event_stream::Message, name: &str) -> &'a str {
    m.headers().iter().find(|h| h.name().as_str() == name).unwrap().value().as_string().unwrap().as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_speak_cbor_to_cbor_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), Arc::new(ManualClock::new(1_700_000_000_000)), |c| {
        c.subscription_lifetime_ms = 300;
        c.auth = sluice::config::Auth::None;
    })
    .await;
    let client = server.client();
    let consumer = stream_with_consumer(&client, "cb", 1, "java").await;
    put(&client, "cb", 0..3).await;
    // A CBOR body as the Java SDKs write it.
    let request = ciborium::value::Value::Map(vec![
        ("ConsumerARN".into(), consumer.as_str().into()),
        ("ShardId".into(), "shardId-000000000000".into()),
        ("StartingPosition".into(), ciborium::value::Value::Map(vec![("Type".into(), "TRIM_HORIZON".into())])),
    ]);
    let mut body = Vec::new();
    ciborium::ser::into_writer(&request, &mut body).unwrap();
    let (status, content_type, answer) =
        raw_call(server.addr, "Kinesis_20131202.SubscribeToShard", "application/x-amz-cbor-1.1", &body).await;
    assert_eq!((status, content_type.as_str()), (200, "application/vnd.amazon.eventstream"));
    let messages = messages(&answer);
    assert_eq!(header(&messages[0], ":event-type"), "initial-response");
    let event = &messages[1];
    assert_eq!(header(event, ":event-type"), "SubscribeToShardEvent");
    assert_eq!(header(event, ":content-type"), "application/x-amz-cbor-1.1");
    let payload: ciborium::value::Value = ciborium::de::from_reader(&event.payload()[..]).unwrap();
    let records =
        payload.as_map().unwrap().iter().find(|(k, _)| k.as_text() == Some("Records")).unwrap().1.as_array().unwrap();
    assert_eq!(records.len(), 3);
    let data = records[0].as_map().unwrap().iter().find(|(k, _)| k.as_text() == Some("Data")).unwrap();
    assert_eq!(data.1.as_bytes().unwrap().as_slice(), b"reading 0", "Data is a CBOR byte string");
    server.stop().await;
}
