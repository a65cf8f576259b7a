//! Per-shard provisioned throughput, as an SDK client meets it in a burst; and its absence
//! with `throttle = "off"`.

use std::sync::Arc;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_kinesis::Client;
use sluice::config::Throttle;
use sluice_engine::ManualClock;

use crate::support::TestServer;

const THROTTLED: &str = "ProvisionedThroughputExceededException";

async fn put_500(client: &Client) -> aws_sdk_kinesis::operation::put_records::PutRecordsOutput {
    let entries: Vec<_> = (0..500)
        .map(|i| PutRecordsRequestEntry::builder().partition_key(format!("k{i}")).data(Blob::new("x")).build().unwrap())
        .collect();
    client.put_records().stream_name("burst").set_records(Some(entries)).send().await.unwrap()
}

async fn get_iterator(client: &Client) -> Result<String, String> {
    client
        .get_shard_iterator()
        .stream_name("burst")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .map(|o| o.shard_iterator.unwrap())
        .map_err(|e| e.code().unwrap_or_default().to_owned())
}

fn now() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_shard_quota_is_throttled_like_kinesis() {
    let dir = tempfile::tempdir().unwrap();
    // The server's clock stands still, so no bucket refills unless the test moves it.
    let server = TestServer::start_with_clock(dir.path(), now()).await;
    let client = server.client();
    client.create_stream().stream_name("burst").shard_count(1).send().await.unwrap();

    // 1,000 records a second per shard: two full batches pass, the third is refused record by record.
    assert_eq!(put_500(&client).await.failed_record_count, Some(0));
    assert_eq!(put_500(&client).await.failed_record_count, Some(0));
    let third = put_500(&client).await;
    assert_eq!(third.failed_record_count, Some(500));
    assert_eq!(third.records[0].error_code.as_deref(), Some(THROTTLED));
    assert_eq!(
        third.records[0].error_message.as_deref(),
        Some("Rate exceeded for shard shardId-000000000000 in stream burst under account 000000000000.")
    );
    let err =
        client.put_record().stream_name("burst").partition_key("k").data(Blob::new("x")).send().await.unwrap_err();
    assert_eq!(err.code(), Some(THROTTLED));

    // 5 GetShardIterator and 5 GetRecords calls a second.
    let mut iterators = Vec::new();
    for _ in 0..5 {
        iterators.push(get_iterator(&client).await.unwrap());
    }
    assert_eq!(get_iterator(&client).await, Err(THROTTLED.to_owned()));
    for it in &iterators {
        client.get_records().shard_iterator(it).limit(10).send().await.unwrap();
    }
    let err = client.get_records().shard_iterator(&iterators[0]).send().await.unwrap_err();
    assert_eq!(err.code(), Some(THROTTLED));

    // A second later the buckets are full again.
    server.clock.advance(1_000);
    client.put_record().stream_name("burst").partition_key("k").data(Blob::new("x")).send().await.unwrap();
    let records = client.get_records().shard_iterator(&iterators[0]).send().await.unwrap().records;
    assert_eq!(records.len(), 1_001);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_throttling_off_the_same_burst_passes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), now(), |c| c.throttle = Throttle::Off).await;
    let client = server.client();
    client.create_stream().stream_name("burst").shard_count(1).send().await.unwrap();
    for _ in 0..4 {
        assert_eq!(put_500(&client).await.failed_record_count, Some(0));
    }
    let mut it = get_iterator(&client).await.unwrap();
    for _ in 0..9 {
        get_iterator(&client).await.unwrap();
    }
    let mut read = 0;
    for _ in 0..10 {
        let out = client.get_records().shard_iterator(&it).limit(200).send().await.unwrap();
        read += out.records.len();
        it = out.next_shard_iterator.unwrap();
    }
    assert_eq!(read, 2_000);
    server.stop().await;
}
