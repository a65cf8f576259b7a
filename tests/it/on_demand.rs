//! On-demand streams under a load ramp: the server splits hot shards and merges them back
//! when the load is gone, and every record is read back once, in order per partition key,
//! across the lineage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamMode, StreamModeDetails};
use aws_sdk_kinesis::Client;
use sluice::config::Throttle;
use sluice_engine::ManualClock;

use crate::support::TestServer;

async fn open_shards(client: &Client) -> i32 {
    client
        .describe_stream_summary()
        .stream_name("od")
        .send()
        .await
        .unwrap()
        .stream_description_summary
        .unwrap()
        .open_shard_count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_ramp_scales_shards_up_and_back_down_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), Arc::new(ManualClock::new(1_700_000_000_000)), |c| {
        c.on_demand_scaling_interval_ms = 200;
        c.throttle = Throttle::Off;
    })
    .await;
    let client = server.client();
    let mode = StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().unwrap();
    client.create_stream().stream_name("od").stream_mode_details(mode).send().await.unwrap();
    assert_eq!(open_shards(&client).await, 4);

    // The ramp: PutRecords of 500 as fast as they go, 50 partition keys, until the stream
    // has split (a bound, not a timing assertion: the loop ends as soon as it scaled).
    let mut sent: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut n = 0u64;
    let mut peak = 4;
    let deadline = Instant::now() + Duration::from_secs(60);
    while peak < 8 && Instant::now() < deadline {
        let entries: Vec<_> = (0..500)
            .map(|_| {
                n += 1;
                let key = format!("key-{}", n % 50);
                sent.entry(key.clone()).or_default().push(n);
                PutRecordsRequestEntry::builder().partition_key(key).data(Blob::new(n.to_string())).build().unwrap()
            })
            .collect();
        let out = client.put_records().stream_name("od").set_records(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_record_count, Some(0));
        peak = peak.max(open_shards(&client).await);
    }
    assert!(peak >= 8, "the stream scaled up under load: {peak} open shards");

    // No load: cold shards are merged back down to the 4 a stream starts with.
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_shards(&client).await > 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open_shards(&client).await, 4, "merged back down once the load stopped");

    // Every shard ever, parents before children (children have higher indexes): each key's
    // records come back once, in the order they were put.
    let shards = client.list_shards().stream_name("od").send().await.unwrap().shards.unwrap();
    assert!(shards.len() > 8, "{} shards in the lineage", shards.len());
    let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for shard in &shards {
        let mut it = client
            .get_shard_iterator()
            .stream_name("od")
            .shard_id(&shard.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(i) = it {
            let out = client.get_records().shard_iterator(i).send().await.unwrap();
            for r in &out.records {
                let v: u64 = std::str::from_utf8(r.data.as_ref()).unwrap().parse().unwrap();
                got.entry(r.partition_key.clone().unwrap()).or_default().push(v);
            }
            it = if out.records.is_empty() && out.millis_behind_latest == Some(0) {
                None
            } else {
                out.next_shard_iterator
            };
        }
    }
    assert_eq!(got, sent, "every record once, in order per partition key");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_throughput_splits_ahead_of_any_load() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), Arc::new(ManualClock::new(1_700_000_000_000)), |c| {
        c.on_demand_scaling_interval_ms = 100;
    })
    .await;
    let client = server.client();
    let mode = StreamModeDetails::builder().stream_mode(StreamMode::OnDemand).build().unwrap();
    client.create_stream().stream_name("od").stream_mode_details(mode).send().await.unwrap();
    let warm = client.update_stream_warm_throughput().stream_name("od").warm_throughput_mibps(8).send().await.unwrap();
    assert_eq!(warm.warm_throughput.unwrap().target_mibps, Some(8));
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_shards(&client).await < 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open_shards(&client).await, 8, "one shard per MiB/s of warm throughput, with no load");
    // Idle, it stays at its warm size: cold shards are not merged below it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(open_shards(&client).await, 8);
    server.stop().await;
}
