//! Resharding a cluster's stream (issue 18): SplitShard, MergeShards and UpdateShardCount,
//! each called on a different node while records keep coming through all three (the split
//! with the closing shard's leader SIGKILLed at once, and back later), reach every node's
//! copy (the same shards, lineage, hash key ranges and ending sequence numbers), and
//! every acknowledged record is read exactly once, in order, from every node, a closed
//! shard read to its end with its children named.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::{ScalingType, Shard};
use serde_json::Value;

use super::{every_node_holds, leaders_of, node, put_round, three_nodes, until, Acked, Killed, ThreeNodes};

/// Every shard of "telemetry" as `k` lists it.
async fn shards(k: &aws_sdk_kinesis::Client) -> Vec<Shard> {
    let out = k.list_shards().stream_name("telemetry").send().await.unwrap();
    out.shards().to_vec()
}

/// Puts rounds through every node until every node lists `total` shards, `open` of them
/// open, and a round through each node in turn fails nothing (30 s at most, a bound, not a
/// timing assertion). Puts to shards being closed fail until the resharding settles, and
/// are not acknowledged.
async fn settle(
    clients: &[aws_sdk_kinesis::Client],
    ids: &[&str],
    (total, open): (usize, usize),
    round: &mut usize,
    acked: &mut Acked,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut clean = 0;
    loop {
        clean = if put_round(clients, round, acked).await == 0 { clean + 1 } else { 0 };
        let mut listed = Vec::new();
        for k in clients {
            let all = shards(k).await;
            let closed = all.iter().filter(|s| s.sequence_number_range().unwrap().ending_sequence_number().is_some());
            listed.push((all.len(), all.len() - closed.count()));
        }
        if listed.iter().all(|n| *n == (total, open)) && clean >= clients.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "(shards, open) on {ids:?}: {listed:?}, want ({total}, {open}) on each; {clean} clean rounds"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads closed shard `shard` on `k` from TRIM_HORIZON until it ends: its children.
async fn children_at_end(k: &aws_sdk_kinesis::Client, shard: &str) -> Vec<String> {
    let mut iterator = Some(crate::support::trim_horizon(k, "telemetry", shard).await);
    for _ in 0..200 {
        let Some(it) = iterator else { break };
        let r = match k.get_records().shard_iterator(&it).send().await {
            Ok(r) => r,
            Err(_) => {
                // Five reads per second per shard: wait and read again.
                tokio::time::sleep(Duration::from_millis(250)).await;
                iterator = Some(it);
                continue;
            }
        };
        if r.next_shard_iterator.is_none() {
            return r.child_shards().iter().map(|c| c.shard_id().to_owned()).collect();
        }
        iterator = r.next_shard_iterator;
    }
    panic!("closed shard {shard} never ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_stream_is_split_merged_and_rescaled_on_any_node_under_ingest_and_every_copy_reads_alike() {
    let Some(ThreeNodes { dir, etcd: _etcd, url, ports, ids, mut nodes, all: _, clients }) = three_nodes("resharding")
    else {
        return;
    };
    let active = |r: &Result<(String, i64, Vec<String>), String>| r.as_ref().is_ok_and(|v| v.0 == "ACTIVE");
    clients[0].create_stream().stream_name("telemetry").shard_count(2).send().await.unwrap();
    for (i, k) in clients.iter().enumerate() {
        until(k, "telemetry", &format!("{}'s copy", ids[i]), active).await.unwrap();
    }
    let (mut round, mut acked) = (0, Acked::default());
    for _ in 0..4 {
        assert_eq!(put_round(&clients, &mut round, &mut acked).await, 0, "puts before any resharding");
    }

    // Split shard 0 (keys below 2^127) at 2^126 on another node than its leader, which is
    // SIGKILLed at once: the shard's next leader fixes its end. Shards 2 and 3 on the
    // survivors; the killed node, back, applies the split too.
    let leader = ids.iter().position(|id| *id == leaders_of(&url, "telemetry")[0].0).unwrap();
    let split = clients[(leader + 1) % 3]
        .split_shard()
        .stream_name("telemetry")
        .shard_to_split("shardId-000000000000")
        .new_starting_hash_key((1u128 << 126).to_string())
        .send()
        .await;
    split.unwrap();
    nodes[leader].0.kill().unwrap();
    nodes[leader].0.wait().unwrap();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (others, other_ids): (Vec<_>, Vec<_>) = survivors.iter().map(|&i| (clients[i].clone(), ids[i])).unzip();
    settle(&others, &other_ids, (4, 3), &mut round, &mut acked).await;
    nodes[leader] = Killed(node(dir.path(), &url, ids[leader], ports[leader]));
    let serving = |r: &Result<(String, i64, Vec<String>), String>| r.is_ok();
    until(&clients[leader], "telemetry", &format!("{} back", ids[leader]), serving).await.unwrap();
    settle(&clients, &ids, (4, 3), &mut round, &mut acked).await;
    // Merge them back, on n3: shard 4.
    let merge = clients[2]
        .merge_shards()
        .stream_name("telemetry")
        .shard_to_merge("shardId-000000000002")
        .adjacent_shard_to_merge("shardId-000000000003")
        .send()
        .await;
    merge.unwrap();
    settle(&clients, &ids, (5, 2), &mut round, &mut acked).await;
    // Three open shards from two, on n1 (splits, then merges of the pieces).
    let update = clients[0]
        .update_shard_count()
        .stream_name("telemetry")
        .target_shard_count(3)
        .scaling_type(ScalingType::UniformScaling)
        .send()
        .await;
    update.unwrap();
    // Shard 4 (keys below 2^127) splits at 1/3 of the key space into 5 and 6, shard 1 at
    // 2/3 into 7 and 8, and 6 and 7 merge into 9: ten shards, 5, 9 and 8 open.
    settle(&clients, &ids, (10, 3), &mut round, &mut acked).await;
    for _ in 0..4 {
        assert_eq!(put_round(&clients, &mut round, &mut acked).await, 0, "puts once the reshardings settled");
    }

    // Every node lists the same shards: ids, parents, ranges, and where closed ones end.
    let listed = shards(&clients[0]).await;
    let open = listed.iter().filter(|s| s.sequence_number_range().unwrap().ending_sequence_number().is_none());
    assert_eq!(open.count(), 3, "open shards after UpdateShardCount: {listed:?}");
    for (i, k) in clients.iter().enumerate().skip(1) {
        assert_eq!(shards(k).await, listed, "{} lists other shards than n1", ids[i]);
    }
    // The catalog holds each resharding with the ends of the shards it closed, and only
    // those (the split closed 0, the merge 2 and 3, the rescale 4 and 1), all fixed.
    let entry =
        super::status_json(&url)["streams"].as_array().unwrap().iter().find(|s| s["name"] == "telemetry").cloned();
    let reshards = entry.unwrap()["reshards"].as_array().unwrap().clone();
    let closed: Vec<Vec<String>> =
        reshards.iter().map(|r| r["ends"].as_object().unwrap().keys().cloned().collect()).collect();
    assert_eq!(closed, [vec!["0"], vec!["2", "3"], vec!["1", "4"]], "{reshards:?}");
    assert!(reshards.iter().all(|r| r["ends"].as_object().unwrap().values().all(Value::is_u64)), "{reshards:?}");
    // No record was acknowledged in a closed shard past the end it was closed at.
    for s in &listed {
        let Some(ending) = s.sequence_number_range().unwrap().ending_sequence_number() else { continue };
        // Decimal numbers of up to 128 bits and more: ordered by length, then digits.
        let order = |n: &str| (n.len(), n.to_owned());
        for (seq, ..) in acked.get(s.shard_id()).into_iter().flatten() {
            assert!(order(seq) <= order(ending), "{seq} acknowledged in {} past its end {ending}", s.shard_id());
        }
    }
    // Every acknowledged record, exactly once and in order, on every node; every closed
    // shard ends, on every node, with its children.
    let shard_ids: Vec<&str> = listed.iter().map(|s| s.shard_id()).collect();
    every_node_holds(&clients, &ids, &shard_ids, &acked, true).await;
    for s in listed.iter().filter(|s| s.sequence_number_range().unwrap().ending_sequence_number().is_some()) {
        let want: Vec<String> = listed
            .iter()
            .filter(|c| c.parent_shard_id() == Some(s.shard_id()) || c.adjacent_parent_shard_id() == Some(s.shard_id()))
            .map(|c| c.shard_id().to_owned())
            .collect();
        for (i, k) in clients.iter().enumerate() {
            let mut children = children_at_end(k, s.shard_id()).await;
            children.sort();
            assert_eq!(children, want, "{} on {}", s.shard_id(), ids[i]);
        }
    }
    drop(nodes);
}
