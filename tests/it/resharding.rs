//! Split, merge and UpdateShardCount through the SDK: routing follows the new ranges,
//! closed parents keep their records and end with `ChildShards`, lineage survives a restart.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::Client;
use sluice_engine::hash_key::{hash_key_of, HashKeyRange};

use crate::support::TestServer;

const HALF: u128 = 1 << 127;

/// Reads a shard from TRIM_HORIZON to its end (or to an empty page on an open shard);
/// returns the data and the ids of the children announced at the end.
async fn read_shard(client: &Client, shard: &str) -> (Vec<String>, Vec<String>) {
    let mut it = Some(crate::support::trim_horizon(client, "r", shard).await);
    let mut data = Vec::new();
    while let Some(i) = it {
        let out = client.get_records().shard_iterator(i).send().await.unwrap();
        data.extend(out.records.iter().map(|r| String::from_utf8(r.data.as_ref().to_vec()).unwrap()));
        if let Some(children) = out.child_shards {
            return (data, children.into_iter().map(|c| c.shard_id).collect());
        }
        it = if out.records.is_empty() { None } else { out.next_shard_iterator };
    }
    (data, Vec::new())
}

async fn put(client: &Client, key: &str) -> String {
    client
        .put_record()
        .stream_name("r")
        .partition_key(key)
        .data(Blob::new(key.to_owned()))
        .send()
        .await
        .unwrap()
        .shard_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_merge_and_scaling_keep_every_record_reachable_through_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.client();
    client.create_stream().stream_name("r").shard_count(1).send().await.unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("user-{i}")).collect();
    for k in &keys[..5] {
        assert_eq!(put(&client, k).await, "shardId-000000000000");
    }

    client
        .split_shard()
        .stream_name("r")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key(HALF.to_string())
        .send()
        .await
        .unwrap();
    for k in &keys[5..15] {
        let want = if hash_key_of(k) < HALF { "shardId-000000000001" } else { "shardId-000000000002" };
        assert_eq!(put(&client, k).await, want, "{k}");
    }
    let (parent, children) = read_shard(&client, "shardId-000000000000").await;
    assert_eq!(parent, keys[..5]);
    assert_eq!(children, ["shardId-000000000001", "shardId-000000000002"]);

    client
        .merge_shards()
        .stream_name("r")
        .shard_to_merge("shardId-000000000001")
        .adjacent_shard_to_merge("shardId-000000000002")
        .send()
        .await
        .unwrap();
    for k in &keys[15..20] {
        assert_eq!(put(&client, k).await, "shardId-000000000003");
    }
    let (_, children) = read_shard(&client, "shardId-000000000001").await;
    assert_eq!(children, ["shardId-000000000003"]);
    let d = client.describe_stream().stream_name("r").send().await.unwrap().stream_description.unwrap();
    let merged = &d.shards[3];
    assert_eq!(merged.parent_shard_id.as_deref(), Some("shardId-000000000001"));
    assert_eq!(merged.adjacent_parent_shard_id.as_deref(), Some("shardId-000000000002"));
    assert!(d.shards[0].sequence_number_range.as_ref().unwrap().ending_sequence_number.is_some());
    assert!(merged.sequence_number_range.as_ref().unwrap().ending_sequence_number.is_none());

    // 1 open shard -> 2 -> 3, the key space split as CreateStream would.
    for target in [2, 3] {
        let out = client
            .update_shard_count()
            .stream_name("r")
            .target_shard_count(target)
            .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
            .send()
            .await
            .unwrap();
        assert_eq!(out.target_shard_count, Some(target));
    }
    for k in &keys[20..] {
        put(&client, k).await;
    }
    server.stop().await;

    // After a restart: the open shards are the even 3-way split, and every record is in
    // exactly one shard of the lineage.
    let server = TestServer::start(dir.path()).await;
    let client = server.client();
    let shards = client.list_shards().stream_name("r").send().await.unwrap().shards.unwrap();
    let mut open: Vec<(u128, u128)> = shards
        .iter()
        .filter(|s| s.sequence_number_range.as_ref().unwrap().ending_sequence_number.is_none())
        .map(|s| {
            let r = s.hash_key_range.as_ref().unwrap();
            (r.starting_hash_key.parse().unwrap(), r.ending_hash_key.parse().unwrap())
        })
        .collect();
    open.sort_unstable();
    let even: Vec<(u128, u128)> = HashKeyRange::split_evenly(3).iter().map(|r| (r.starting, r.ending)).collect();
    assert_eq!(open, even);
    let mut all = Vec::new();
    for s in &shards {
        all.extend(read_shard(&client, &s.shard_id).await.0);
    }
    all.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(all, expected);
    server.stop().await;
}

/// The shard ids ListShards answers for one `ShardFilter`.
async fn listed(client: &Client, filter: aws_sdk_kinesis::types::ShardFilter) -> Vec<String> {
    let out = client.list_shards().stream_name("w").shard_filter(filter).max_results(2).send().await.unwrap();
    let mut ids: Vec<String> = out.shards().iter().map(|s| s.shard_id.clone()).collect();
    let mut next = out.next_token;
    // Later pages keep the first page's filter.
    while let Some(token) = next {
        let page = client.list_shards().next_token(token).max_results(2).send().await.unwrap();
        ids.extend(page.shards().iter().map(|s| s.shard_id.clone()));
        next = page.next_token;
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_filters_keep_the_shards_open_in_their_window() {
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    use aws_sdk_kinesis::primitives::DateTime;
    use aws_sdk_kinesis::types::{ShardFilter, ShardFilterType};
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000u64;
    let clock = std::sync::Arc::new(sluice_engine::ManualClock::new(t0));
    let server = TestServer::start_with_clock(dir.path(), clock.clone()).await;
    let client = server.client();
    client.create_stream().stream_name("w").shard_count(2).send().await.unwrap();
    // t0 + 10 s: shard 0 splits into 2 and 3; t0 + 20 s: 3 and 1 merge into 4.
    clock.advance(10_000);
    client
        .split_shard()
        .stream_name("w")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((HALF / 2).to_string())
        .send()
        .await
        .unwrap();
    clock.advance(10_000);
    client
        .merge_shards()
        .stream_name("w")
        .shard_to_merge("shardId-000000000003")
        .adjacent_shard_to_merge("shardId-000000000001")
        .send()
        .await
        .unwrap();
    let at = |ms: u64| DateTime::from_millis(ms as i64);
    let filter =
        |t: ShardFilterType, ts: Option<DateTime>| ShardFilter::builder().r#type(t).set_timestamp(ts).build().unwrap();
    let ids = |v: &[u32]| v.iter().map(|i| format!("shardId-{i:012}")).collect::<Vec<_>>();
    assert_eq!(listed(&client, filter(ShardFilterType::AtLatest, None)).await, ids(&[2, 4]));
    assert_eq!(listed(&client, filter(ShardFilterType::AtTimestamp, Some(at(t0 + 5_000)))).await, ids(&[0, 1]));
    assert_eq!(listed(&client, filter(ShardFilterType::AtTimestamp, Some(at(t0 + 15_000)))).await, ids(&[1, 2, 3]));
    assert_eq!(
        listed(&client, filter(ShardFilterType::FromTimestamp, Some(at(t0 + 15_000)))).await,
        ids(&[1, 2, 3, 4])
    );
    assert_eq!(listed(&client, filter(ShardFilterType::FromTimestamp, Some(at(t0)))).await, ids(&[0, 1, 2, 3, 4]));
    assert_eq!(listed(&client, filter(ShardFilterType::AtTrimHorizon, None)).await, ids(&[0, 1]));
    assert_eq!(listed(&client, filter(ShardFilterType::FromTrimHorizon, None)).await, ids(&[0, 1, 2, 3, 4]));
    let missing = client
        .list_shards()
        .stream_name("w")
        .shard_filter(filter(ShardFilterType::AtTimestamp, None))
        .send()
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("InvalidArgumentException"), "{missing:?}");
    // A day later (retention 24 h), shards closed before the trim horizon are gone from the
    // default listing; AT_TRIM_HORIZON lists what was open then.
    clock.advance(24 * 3_600_000 + 15_000);
    let all = client.list_shards().stream_name("w").send().await.unwrap();
    let all: Vec<String> = all.shards().iter().map(|s| s.shard_id.clone()).collect();
    assert_eq!(all, ids(&[2, 4]));
    assert_eq!(listed(&client, filter(ShardFilterType::AtTrimHorizon, None)).await, ids(&[2, 4]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_creation_timestamp_names_the_incarnation_and_not_with_next_token() {
    use aws_sdk_kinesis::error::ProvideErrorMetadata;
    use aws_sdk_kinesis::primitives::DateTime;
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_250u64;
    let clock = std::sync::Arc::new(sluice_engine::ManualClock::new(t0));
    let server = TestServer::start_with_clock(dir.path(), clock.clone()).await;
    let client = server.client();
    client.create_stream().stream_name("w").shard_count(3).send().await.unwrap();
    clock.advance(1_000);
    let summary = client.describe_stream_summary().stream_name("w").send().await.unwrap();
    let summary = summary.stream_description_summary().unwrap();
    let (created, arn) = (*summary.stream_creation_timestamp(), summary.stream_arn().to_owned());
    assert_eq!(created.to_millis().unwrap(), t0 as i64);
    client.register_stream_consumer().stream_arn(&arn).consumer_name("c").send().await.unwrap();

    // The time a description gave, and the same second, name this stream; another does not.
    for t in [created, DateTime::from_secs((t0 / 1000) as i64)] {
        let shards = client.list_shards().stream_name("w").stream_creation_timestamp(t).send().await.unwrap();
        assert_eq!(shards.shards().len(), 3);
        let consumers =
            client.list_stream_consumers().stream_arn(&arn).stream_creation_timestamp(t).send().await.unwrap();
        assert_eq!(consumers.consumers().len(), 1);
    }
    let other = DateTime::from_millis(t0 as i64 - 3_600_000);
    let e = client.list_shards().stream_name("w").stream_creation_timestamp(other).send().await.unwrap_err();
    assert_eq!(e.code(), Some("ResourceNotFoundException"), "{e:?}");
    let e = client.list_stream_consumers().stream_arn(&arn).stream_creation_timestamp(other).send().await.unwrap_err();
    assert_eq!(e.code(), Some("ResourceNotFoundException"), "{e:?}");

    // With NextToken, which names the stream already: refused.
    let page = client.list_shards().stream_name("w").max_results(1).send().await.unwrap();
    let token = page.next_token().unwrap().to_owned();
    let e = client.list_shards().next_token(&token).stream_creation_timestamp(created).send().await.unwrap_err();
    assert_eq!(e.code(), Some("InvalidArgumentException"), "{e:?}");
    assert_eq!(client.list_shards().next_token(&token).send().await.unwrap().shards().len(), 2);
    client.register_stream_consumer().stream_arn(&arn).consumer_name("d").send().await.unwrap();
    let page = client.list_stream_consumers().stream_arn(&arn).max_results(1).send().await.unwrap();
    let token = page.next_token().unwrap().to_owned();
    let e = client
        .list_stream_consumers()
        .stream_arn(&arn)
        .next_token(&token)
        .stream_creation_timestamp(created)
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("InvalidArgumentException"), "{e:?}");
    server.stop().await;
}
