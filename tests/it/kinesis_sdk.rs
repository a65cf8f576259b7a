//! The Kinesis API as the official Rust SDK sees it, SigV4 on.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use aws_sdk_kinesis::Client;

use crate::support::TestServer;

async fn iterator(client: &Client, stream: &str, shard: &str, kind: ShardIteratorType, seq: Option<&str>) -> String {
    client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(kind)
        .set_starting_sequence_number(seq.map(str::to_owned))
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap()
}

async fn read_data(client: &Client, it: String) -> (Vec<(String, Vec<u8>)>, String) {
    let out = client.get_records().shard_iterator(it).send().await.unwrap();
    let records = out.records.iter().map(|r| (r.sequence_number.clone(), r.data.as_ref().to_vec())).collect();
    (records, out.next_shard_iterator.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_put_and_read_back_with_every_iterator_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.client();
    client.create_stream().stream_name("clicks").shard_count(4).send().await.unwrap();

    let d = client.describe_stream().stream_name("clicks").send().await.unwrap().stream_description.unwrap();
    assert_eq!(d.shards.len(), 4);
    assert_eq!(d.stream_arn, "arn:aws:kinesis:us-east-1:000000000000:stream/clicks");
    assert_eq!(
        d.shards[1].hash_key_range.as_ref().unwrap().starting_hash_key,
        "85070591730234615865843651857942052864"
    );
    let listed = client.list_streams().send().await.unwrap();
    assert_eq!(listed.stream_names, ["clicks"]);
    let shards = client.list_shards().stream_name("clicks").send().await.unwrap().shards.unwrap();
    assert_eq!(shards.len(), 4);
    let page = client.list_shards().stream_name("clicks").max_results(3).send().await.unwrap();
    assert_eq!(page.shards.unwrap().len(), 3);
    let token = page.next_token.unwrap();
    let rest = client.list_shards().next_token(&token).send().await.unwrap();
    assert_eq!(rest.shards.unwrap()[0].shard_id, "shardId-000000000003");
    assert!(rest.next_token.is_none());

    // "a" hashes to 0x0cc1...: the first quarter of the key space, shard 0.
    let first =
        client.put_record().stream_name("clicks").partition_key("a").data(Blob::new("one")).send().await.unwrap();
    assert_eq!(first.shard_id, "shardId-000000000000");
    let entries: Vec<_> = (0..20)
        .map(|i| {
            PutRecordsRequestEntry::builder().partition_key("a").data(Blob::new(format!("batch-{i}"))).build().unwrap()
        })
        .collect();
    let batch = client.put_records().stream_name("clicks").set_records(Some(entries)).send().await.unwrap();
    assert_eq!(batch.failed_record_count, Some(0));
    assert!(batch.records.iter().all(|r| r.shard_id.as_deref() == Some("shardId-000000000000")));
    // An explicit hash key overrides the partition key: the top of the space is shard 3.
    let top = client
        .put_record()
        .stream_name("clicks")
        .partition_key("a")
        .explicit_hash_key("340282366920938463463374607431768211455")
        .data(Blob::new("top"))
        .send()
        .await
        .unwrap();
    assert_eq!(top.shard_id, "shardId-000000000003");

    let shard = "shardId-000000000000";
    let (all, _) =
        read_data(&client, iterator(&client, "clicks", shard, ShardIteratorType::TrimHorizon, None).await).await;
    assert_eq!(all.len(), 21);
    assert_eq!(all[0], (first.sequence_number.clone(), b"one".to_vec()));
    assert_eq!(all[20].1, b"batch-19");
    // 56 digits, as AWS's (past u128): of one width, so text order is number order.
    let seqs: Vec<&String> = all.iter().map(|(s, _)| s).collect();
    assert!(seqs.iter().all(|s| s.len() == 56 && s.bytes().all(|b| b.is_ascii_digit())), "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "sequence numbers increase");

    let at = iterator(&client, "clicks", shard, ShardIteratorType::AtSequenceNumber, Some(&all[5].0)).await;
    assert_eq!(read_data(&client, at).await.0[0], all[5]);
    let after = iterator(&client, "clicks", shard, ShardIteratorType::AfterSequenceNumber, Some(&all[5].0)).await;
    assert_eq!(read_data(&client, after).await.0[0], all[6]);
    let latest = iterator(&client, "clicks", shard, ShardIteratorType::Latest, None).await;
    let (nothing, next) = read_data(&client, latest).await;
    assert!(nothing.is_empty());
    client.put_record().stream_name("clicks").partition_key("a").data(Blob::new("late")).send().await.unwrap();
    assert_eq!(read_data(&client, next).await.0[0].1, b"late");

    // AT_TIMESTAMP: after moving the clock a minute on, only later records are found.
    server.clock.advance(60_000);
    let ts = DateTime::from_millis(sluice_engine::Clock::now_ms(&*server.clock) as i64);
    client.put_record().stream_name("clicks").partition_key("a").data(Blob::new("after-minute")).send().await.unwrap();
    let it = client
        .get_shard_iterator()
        .stream_name("clicks")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtTimestamp)
        .timestamp(ts)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let (from_ts, _) = read_data(&client, it).await;
    assert_eq!(from_ts.iter().map(|r| r.1.clone()).collect::<Vec<_>>(), [b"after-minute".to_vec()]);

    // A ListShards NextToken lives 5 minutes.
    server.clock.advance(300_001);
    let err = client.list_shards().next_token(&token).send().await.unwrap_err();
    assert_eq!(err.code(), Some("ExpiredNextTokenException"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_at_a_sequence_number_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.client();
    client.create_stream().stream_name("telemetry").shard_count(2).send().await.unwrap();
    let mut seqs = Vec::new();
    for i in 0..10 {
        let out = client
            .put_record()
            .stream_name("telemetry")
            .partition_key("Dongsi")
            .data(Blob::new(format!("r{i}")))
            .send()
            .await
            .unwrap();
        seqs.push((out.shard_id, out.sequence_number));
    }
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let client = server.client();
    let (shard, seq) = &seqs[6];
    let it = iterator(&client, "telemetry", shard, ShardIteratorType::AtSequenceNumber, Some(seq)).await;
    let (records, _) = read_data(&client, it).await;
    assert_eq!(
        records.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        [b"r6".to_vec(), b"r7".to_vec(), b"r8".to_vec(), b"r9".to_vec()]
    );
    let out = client
        .put_record()
        .stream_name("telemetry")
        .partition_key("Dongsi")
        .data(Blob::new("r10"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.sequence_number.len(), seqs[9].1.len());
    assert!(out.sequence_number > seqs[9].1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterators_expire_and_forged_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.client();
    client.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
    let it = iterator(&client, "s", "shardId-000000000000", ShardIteratorType::TrimHorizon, None).await;

    let mut forged = it.clone().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let err = client.get_records().shard_iterator(String::from_utf8(forged).unwrap()).send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidArgumentException"));
    assert_eq!(err.message(), Some("Invalid ShardIterator."));

    // Five minutes and a bit later (the server's clock only; signatures stay fresh).
    server.clock.advance(300_001);
    let err = client.get_records().shard_iterator(it).send().await.unwrap_err();
    assert_eq!(err.code(), Some("ExpiredIteratorException"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let wrong_secret = server.client_with(crate::support::ACCESS_KEY, "not-the-secret");
    let err = wrong_secret.list_streams().send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"));
    let unknown = server.client_with("AKIDUNKNOWN", "whatever");
    let err = unknown.list_streams().send().await.unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    assert!(server.client().list_streams().send().await.is_ok());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_retention_and_limits_persist_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.client();
    client.create_stream().stream_name("t").shard_count(3).send().await.unwrap();
    client.add_tags_to_stream().stream_name("t").tags("team", "data").tags("env", "prod").send().await.unwrap();
    client.remove_tags_from_stream().stream_name("t").tag_keys("env").send().await.unwrap();
    client.increase_stream_retention_period().stream_name("t").retention_period_hours(72).send().await.unwrap();
    let err =
        client.decrease_stream_retention_period().stream_name("t").retention_period_hours(96).send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidArgumentException"));
    let err = client
        .increase_stream_retention_period()
        .stream_name("t")
        .retention_period_hours(9_000)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        Some("Maximum allowed retention period is 8760 hours. Requested retention period (9000 hours) is too long.")
    );
    let limits = client.describe_limits().send().await.unwrap();
    assert_eq!((limits.shard_limit, limits.open_shard_count), (500, 3));
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    let client = server.client();
    let tags = client.list_tags_for_stream().stream_name("t").send().await.unwrap();
    let tags: Vec<_> = tags.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
    assert_eq!(tags, [("team".to_owned(), Some("data".to_owned()))]);
    let summary =
        client.describe_stream_summary().stream_name("t").send().await.unwrap().stream_description_summary.unwrap();
    assert_eq!(summary.retention_period_hours, 72);
    assert_eq!(summary.open_shard_count, 3);
    server.stop().await;
}
