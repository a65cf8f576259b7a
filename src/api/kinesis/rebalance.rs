//! Rebalancing a cluster's replicas (docs/cluster.md, "Rebalancing"): replicas move off the
//! nodes being drained (`sluice cluster drain`), and from the most loaded node to the least
//! loaded one when they differ by two or more (a node that joined gets its share).
//!
//! A move is two steps, each one transaction on the stream's catalog entry, so the replica
//! set only ever changes by one node at a time (Raft's single-server changes): the live
//! member with the lowest id adds the new replica and names the one leaving; the shard's
//! leader, which knows what each replica holds, removes the leaving one once the replicas
//! that stay hold every acknowledged record (every live one of them, and a majority).
//! While both are replicas, a quorum is a majority of four.

use std::collections::BTreeMap;

use super::Kinesis;
use crate::cluster::catalog::{change_record, complete_move, ShardOf};
use crate::cluster::replication::Lag;
use crate::cluster::StreamRecord;

/// Moves under way at most (shards with a replica leaving): 4.
pub const MOVES_AT_ONCE: usize = 4;

impl Kinesis {
    /// One step of rebalancing, when this node is the live member with the lowest id: a
    /// replica on a node of `draining` moves to the live, not draining node with the fewest
    /// replicas that lacks the shard; without one, a replica of the most loaded such node
    /// moves to the least loaded when they differ by two or more. At most one new move per
    /// call, and none while [`MOVES_AT_ONCE`] are under way. Call it with the catalog lock
    /// held, on a thread that may block.
    pub fn rebalance(&self, records: &[StreamRecord], live: &[String], draining: &[String]) {
        let Some(link) = self.cluster.get() else { return };
        if live.iter().min() != Some(&link.node_id) {
            return;
        }
        let mut load: BTreeMap<&str, usize> =
            live.iter().filter(|n| !draining.contains(n)).map(|n| (n.as_str(), 0)).collect();
        let mut moving = 0;
        for p in records.iter().flat_map(|r| &r.placement) {
            moving += usize::from(p.leaving.is_some());
            // A replica on its way out counts no more: its node's load is what stays.
            for n in p.replicas.iter().filter(|n| p.leaving.as_ref() != Some(*n)) {
                if let Some(c) = load.get_mut(n.as_str()) {
                    *c += 1;
                }
            }
        }
        if moving >= MOVES_AT_ONCE || load.is_empty() {
            return;
        }
        let least_loaded_lacking = |replicas: &[String]| {
            load.iter()
                .filter(|(n, _)| !replicas.iter().any(|r| r == *n))
                .min_by_key(|(n, c)| (**c, **n))
                .map(|(n, _)| *n)
        };
        let mut pick = None;
        'drain: for r in records {
            for (shard, p) in r.placement.iter().enumerate().filter(|(_, p)| p.leaving.is_none()) {
                let Some(from) = p.replicas.iter().find(|n| draining.contains(n)) else { continue };
                if let Some(to) = least_loaded_lacking(&p.replicas) {
                    pick = Some((r, shard, from.clone(), to.to_owned()));
                    break 'drain;
                }
            }
        }
        if pick.is_none() {
            let most = load.iter().max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n))).map(|(n, c)| (*n, *c));
            let least = load.iter().min_by_key(|(n, c)| (**c, **n)).map(|(n, c)| (*n, *c));
            if let (Some((from, high)), Some((to, low))) = (most, least) {
                if high >= low + 2 {
                    pick = records.iter().find_map(|r| {
                        r.placement
                            .iter()
                            .position(|p| {
                                p.leaving.is_none()
                                    && p.replicas.iter().any(|n| n == from)
                                    && !p.replicas.iter().any(|n| n == to)
                            })
                            .map(|shard| (r, shard, from.to_owned(), to.to_owned()))
                    });
                }
            }
        }
        let Some((r, shard, from, to)) = pick else { return };
        let started = link.block_on(change_record(&link.etcd, &link.cluster, &r.name, r.incarnation, |record| {
            let Some(p) = record.placement.get_mut(shard) else { return false };
            if p.leaving.is_some() || p.replicas.contains(&to) || !p.replicas.contains(&from) {
                return false;
            }
            p.replicas.push(to.clone());
            p.leaving = Some(from.clone());
            true
        }));
        match started {
            Ok(Some(record)) => {
                link.set_placements(std::slice::from_ref(&record), true);
                tracing::info!(stream = %r.name, shard, from = %from, to = %to, "moving a replica");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(stream = %r.name, shard, error = %e, "cannot start moving a replica"),
        }
    }

    /// Ends the moves of replicas off the shards this node leads whose replicas that stay
    /// hold every acknowledged record (up to this node's high watermark): every live one of
    /// them, and a majority; the others are marked for catching up. Call it with the catalog
    /// lock held, on a thread that may block.
    pub fn complete_moves(&self, records: &[StreamRecord], live: &[String]) {
        let Some(link) = self.cluster.get() else { return };
        let me = &link.node_id;
        for r in records {
            let Some(stream) = self.streams.get(&r.name).filter(|s| s.incarnation() == r.incarnation) else { continue };
            for (shard, p) in r.placement.iter().enumerate() {
                let (Some(leaving), true) = (&p.leaving, &p.leader == me) else { continue };
                let shard = shard as u32;
                let Some(log) = stream.log(shard) else { continue };
                let need = log.readable_end();
                let ends = link.peers.replica_ends(r.incarnation, shard, p.epoch);
                let holds = |n: &String| n == me || ends.iter().any(|(node, end)| node == n && *end >= need);
                let staying: Vec<&String> = p.replicas.iter().filter(|n| *n != leaving).collect();
                let behind: Vec<&String> = staying.iter().copied().filter(|n| !holds(n)).collect();
                let held = staying.len() - behind.len();
                if behind.iter().any(|n| live.contains(n)) || held < staying.len() / 2 + 1 {
                    for node in behind {
                        link.peers.mark(Lag {
                            stream: r.name.clone(),
                            incarnation: r.incarnation,
                            shard,
                            node: node.clone(),
                        });
                    }
                    continue;
                }
                let of = ShardOf { stream: &r.name, incarnation: r.incarnation, shard };
                match link.block_on(complete_move(&link.etcd, &link.cluster, of, me, p.epoch, leaving)) {
                    Ok(Some(record)) => {
                        link.set_placements(std::slice::from_ref(&record), true);
                        if leaving == me {
                            link.peers.count_leader_change(false);
                        }
                        tracing::info!(stream = %r.name, shard, leaving = %leaving, "a replica moved");
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(stream = %r.name, shard, error = %e, "cannot end a replica's move"),
                }
            }
        }
    }
}
