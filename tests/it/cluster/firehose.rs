//! Firehose in the cluster (issue 18): a delivery stream created on one node is the
//! cluster's (described, changed and deleted on any node), each source shard is delivered
//! by one node at a time, and when that node is SIGKILLed mid-ingest another takes the
//! shard over from the checkpoint the cluster holds: every acknowledged record lands
//! exactly once (a redo lands on the same object keys), and nothing goes to the error output.
//! The same when a leader is paused past its lease and woken (it may finish a delivery it
//! began, onto the same keys, but moves no checkpoint); two updates of one version on two
//! nodes at once: one wins. A DirectPut delivery stream, fed through every node, keeps its
//! records in its own replicated stream: the same holds for them.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_firehose::error::ProvideErrorMetadata;
use aws_sdk_firehose::types as fh;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::{leaders_of, node, three_nodes, until, Killed, ThreeNodes};
use crate::crash_loop::parquet_ids;
use crate::firehose_delivery::{destination, json_to_parquet, kinesis_source, local_objects};
use crate::s3_server::BUCKET;
use crate::support::firehose_client;

const STREAM: &str = "clicks";
const DELIVERY: &str = "landing";
const DIRECT: &str = "direct";

/// Puts ids `first..first + n` as `{"id": N, "page": "/p/N"}` through `k`: the ids
/// acknowledged (a failed call acknowledges none).
async fn put(k: &aws_sdk_kinesis::Client, first: u64, n: u64) -> Vec<u64> {
    let entries: Vec<PutRecordsRequestEntry> = (first..first + n)
        .map(|id| {
            PutRecordsRequestEntry::builder()
                .partition_key(format!("user-{id}"))
                .data(Blob::new(format!("{{\"id\": {id}, \"page\": \"/p/{id}\"}}")))
                .build()
                .unwrap()
        })
        .collect();
    let Ok(out) = k.put_records().stream_name(STREAM).set_records(Some(entries)).send().await else {
        return Vec::new();
    };
    out.records().iter().zip(first..).filter(|(r, _)| r.sequence_number().is_some()).map(|(_, id)| id).collect()
}

/// Puts ids `first..first + n` as [`put`] does, into DirectPut delivery stream [`DIRECT`]
/// through `f`: the ids acknowledged.
async fn put_direct(f: &aws_sdk_firehose::Client, first: u64, n: u64) -> Vec<u64> {
    let records: Vec<fh::Record> = (first..first + n)
        .map(|id| {
            fh::Record::builder()
                .data(aws_sdk_firehose::primitives::Blob::new(format!("{{\"id\": {id}, \"page\": \"/p/{id}\"}}")))
                .build()
                .unwrap()
        })
        .collect();
    let Ok(out) = f.put_record_batch().delivery_stream_name(DIRECT).set_records(Some(records)).send().await else {
        return Vec::new();
    };
    out.request_responses().iter().zip(first..).filter(|(r, _)| r.record_id().is_some()).map(|(_, id)| id).collect()
}

/// Waits (up to 60 s, a bound and not a timing assertion) until every id of `acked` has
/// landed under `landed`, then checks that no id landed twice and every landed id was put.
fn wait_landed(landed: &std::path::Path, acked: &BTreeSet<u64>, put: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ids, stray) = parquet_ids(landed).unwrap_or_else(|e| panic!("{what}: {e}"));
        for (id, keys) in &ids {
            assert_eq!(keys.len(), 1, "{what}: id {id} landed in {keys:?}");
            assert!(*id < put, "{what}: id {id} landed but was never put");
        }
        let missing: Vec<&u64> = acked.iter().filter(|id| !ids.contains_key(id)).collect();
        if missing.is_empty() {
            assert!(stray.iter().all(|s| s.starts_with('.')), "{what}: files that are not objects: {stray:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} acknowledged ids never landed, first {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_stream_of_the_cluster_lands_every_record_once_across_a_node_killed_mid_ingest() {
    let Some(ThreeNodes { dir, etcd: _etcd, url, ports, ids, mut nodes, all: _, clients }) = three_nodes("firehose")
    else {
        return;
    };
    let lake = dir.path().join("lake").join(BUCKET);
    std::fs::create_dir_all(&lake).unwrap();
    let firehoses: Vec<aws_sdk_firehose::Client> =
        ports.iter().map(|p| firehose_client(([127, 0, 0, 1], *p).into())).collect();
    let active = |r: &Result<(String, i64, Vec<String>), String>| r.as_ref().is_ok_and(|v| v.0 == "ACTIVE");
    clients[0].create_stream().stream_name(STREAM).shard_count(3).send().await.unwrap();
    for (i, k) in clients.iter().enumerate() {
        until(k, STREAM, &format!("{}'s copy becomes ACTIVE", ids[i]), active).await.unwrap();
    }

    // A DirectPut delivery stream, created on n3: its records go to its own stream of the
    // cluster, which the Kinesis API does not show.
    firehoses[2]
        .create_delivery_stream()
        .delivery_stream_name(DIRECT)
        .extended_s3_destination_configuration(
            destination("direct/", "failed/")
                .data_format_conversion_configuration(json_to_parquet(None))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // Created on n2 (Parquet, schema inferred): every node describes it, and the name is taken.
    firehoses[1]
        .create_delivery_stream()
        .delivery_stream_name(DELIVERY)
        .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(kinesis_source(STREAM))
        .extended_s3_destination_configuration(
            destination("landed/", "failed/!{firehose:error-output-type}/")
                .data_format_conversion_configuration(json_to_parquet(None))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    for (i, f) in firehoses.iter().enumerate() {
        for name in [DELIVERY, DIRECT] {
            let deadline = Instant::now() + Duration::from_secs(30);
            while f.describe_delivery_stream().delivery_stream_name(name).send().await.is_err() {
                assert!(Instant::now() < deadline, "{} never describes {name}", ids[i]);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let listed = clients[i].list_streams().send().await.unwrap();
        assert_eq!(listed.stream_names(), [STREAM], "{} lists streams it should not", ids[i]);
    }
    let again = firehoses[2]
        .create_delivery_stream()
        .delivery_stream_name(DELIVERY)
        .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(kinesis_source(STREAM))
        .extended_s3_destination_configuration(destination("x/", "y/").build().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("ResourceInUseException"), "{again:?}");

    // Records put through every node land once each.
    let landed = lake.join("landed");
    let mut acked = BTreeSet::new();
    let mut next = 0u64;
    let (direct, mut direct_acked) = (lake.join("direct"), BTreeSet::new());
    for round in 0..12 {
        acked.extend(put(&clients[round % 3], next, 50).await);
        direct_acked.extend(put_direct(&firehoses[round % 3], next, 50).await);
        next += 50;
    }
    assert!(acked.len() >= 500, "only {} of 600 acknowledged with every node up", acked.len());
    assert!(direct_acked.len() >= 500, "only {} of 600 DirectPut records acknowledged", direct_acked.len());
    wait_landed(&landed, &acked, next, "every node up");
    wait_landed(&direct, &direct_acked, next, "DirectPut, every node up");

    // The leader of shard 1 paused past its lease (SIGSTOP) while records keep coming:
    // its shard and its claim go to another node; woken, it may finish a delivery it had
    // begun (onto the same keys) but moves no checkpoint.
    let paused = ids.iter().position(|id| *id == leaders_of(&url, STREAM)[1].0).unwrap();
    let pid = nodes[paused].0.id() as i32;
    // SAFETY: signals to a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let others: Vec<usize> = (0..3).filter(|i| *i != paused).collect();
    for round in 0..25 {
        acked.extend(put(&clients[others[round % 2]], next, 20).await);
        next += 20;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    for round in 0..6 {
        acked.extend(put(&clients[round % 3], next, 20).await);
        next += 20;
    }
    wait_landed(&landed, &acked, next, &format!("after {} was paused past its lease", ids[paused]));

    // SIGKILLed mid-ingest, in turn: the leader of shard 0 (which delivers it), then, once
    // that node is back, the leader of the DirectPut delivery stream's own stream. Each
    // shard gets a new leader, which takes the delivery over from the cluster's checkpoint.
    let status = super::status_json(&url);
    let hidden = status["streams"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned());
    let hidden: Vec<String> = hidden.filter(|n| n.starts_with(&format!("firehose:{DIRECT}:"))).collect();
    assert_eq!(hidden.len(), 1, "the DirectPut delivery stream's own stream in the catalog: {status}");
    let (mut victim, mut survivors) = (0, Vec::new());
    for (turn, of) in [STREAM, hidden[0].as_str()].into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(30);
        victim = loop {
            let leader = leaders_of(&url, of)[0].0.clone();
            if let Some(i) = ids.iter().position(|id| *id == leader) {
                break i;
            }
            assert!(Instant::now() < deadline, "{of} has no leader");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        survivors = (0..3).filter(|i| *i != victim).collect();
        for round in 0..30 {
            if round == 3 {
                nodes[victim].0.kill().unwrap();
                nodes[victim].0.wait().unwrap();
            }
            let via = if round < 3 { round % 3 } else { survivors[round % 2] };
            acked.extend(put(&clients[via], next, 50).await);
            direct_acked.extend(put_direct(&firehoses[via], next, 50).await);
            next += 50;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let what = format!("after {} (leading {of}) was killed", ids[victim]);
        wait_landed(&landed, &acked, next, &what);
        wait_landed(&direct, &direct_acked, next, &format!("DirectPut, {what}"));
        if turn == 0 {
            nodes[victim] = Killed(node(dir.path(), &url, ids[victim], ports[victim]));
            let serving = |r: &Result<(String, i64, Vec<String>), String>| r.is_ok();
            until(&clients[victim], STREAM, &format!("{} back", ids[victim]), serving).await.unwrap();
        }
    }
    assert!(local_objects(&lake.join("failed")).is_empty(), "records went to the error output");

    // A change on one node is the cluster's; the killed node, back, deletes its copy of a
    // delivery stream deleted while it was down.
    let version = |d: &aws_sdk_firehose::operation::describe_delivery_stream::DescribeDeliveryStreamOutput| {
        d.delivery_stream_description().unwrap().version_id().to_owned()
    };
    let (a, b) = (&firehoses[survivors[0]], &firehoses[survivors[1]]);
    let before = a.describe_delivery_stream().delivery_stream_name(DELIVERY).send().await.unwrap();
    let update = |f: &aws_sdk_firehose::Client, seconds: i32| {
        f.update_destination()
            .delivery_stream_name(DELIVERY)
            .current_delivery_stream_version_id(version(&before))
            .destination_id("destinationId-000000000001")
            .extended_s3_destination_update(
                fh::ExtendedS3DestinationUpdate::builder()
                    .buffering_hints(fh::BufferingHints::builder().size_in_mbs(2).interval_in_seconds(seconds).build())
                    .build(),
            )
            .send()
    };
    // Two updates of one version on two nodes at once: one wins, as on AWS.
    let (first, second) = tokio::join!(update(a, 2), update(b, 3));
    let lost = match (&first, &second) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
        _ => panic!("two updates of version {} both answered alike: {first:?} {second:?}", version(&before)),
    };
    assert_eq!(lost.code(), Some("ConcurrentModificationException"), "{lost:?}");
    a.tag_delivery_stream()
        .delivery_stream_name(DELIVERY)
        .tags(fh::Tag::builder().key("team").value("data").build().unwrap())
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = b.describe_delivery_stream().delivery_stream_name(DELIVERY).send().await.unwrap();
        let tags = b.list_tags_for_delivery_stream().delivery_stream_name(DELIVERY).send().await.unwrap();
        if version(&d) == "2" && tags.tags().iter().any(|t| t.key() == "team" && t.value() == Some("data")) {
            break;
        }
        assert!(Instant::now() < deadline, "the change on one node never reached the other: {d:?} {tags:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.delete_delivery_stream().delivery_stream_name(DELIVERY).send().await.unwrap();
    nodes[victim] = Killed(node(dir.path(), &url, ids[victim], ports[victim]));
    for i in [survivors[0], victim] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match firehoses[i].describe_delivery_stream().delivery_stream_name(DELIVERY).send().await {
                Err(e) if e.code() == Some("ResourceNotFoundException") => break,
                other => assert!(Instant::now() < deadline, "{} still has {DELIVERY}: {other:?}", ids[i]),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(nodes);
}
