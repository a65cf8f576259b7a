//! Resharding a cluster's stream (docs/cluster.md, "Resharding"): SplitShard, MergeShards and
//! UpdateShardCount on any node enter their steps in the stream's catalog entry, marking the
//! shards they close as closing; each closing shard's leader then appends nothing more to it
//! and, once a quorum holds its whole log, fixes its end in the entry; once every end is
//! fixed, every node applies the steps to its copy (the same new shards, with the same
//! indexes) and closes the shards at those ends, so a copy still catching up reads a closed
//! shard to the same last record as every other.
//!
//! While a resharding settles (a catalog pass or two), puts to the shards it closes fail
//! with `InternalFailure`, which the SDKs and the KPL retry, and reach the new shards once
//! the node that routes them has applied it.

use std::collections::BTreeMap;

use sluice_engine::stream::{ReshardOp, Stream};

use super::reshard::reshard_error;
use super::{ApiError, ErrorKind, Kinesis};
use crate::cluster::catalog::{self, ClusterLink, ReshardRecord, StreamRecord};

fn catalog_error(e: crate::cluster::EtcdError) -> ApiError {
    ApiError::new(ErrorKind::InternalFailure, format!("the cluster's catalog cannot be reached: {e}"))
}

/// How many shards `op` adds: two for a split, one for a merge.
fn added(op: &ReshardOp) -> u32 {
    match op {
        ReshardOp::Split { .. } => 2,
        ReshardOp::Merge { .. } => 1,
    }
}

impl Kinesis {
    /// Enters the resharding `ops` of cluster stream `stream` in its catalog entry: the new
    /// shards placed on the replicas of the shard they come from (led by its leader), the
    /// shards closed marked as closing. Checked against this node's copy first.
    ///
    /// Errors: `ResourceInUseException` while an earlier resharding settles (the stream is
    /// UPDATING, as AWS refuses then), the steps' own (no such shard, not open, split point
    /// outside, not adjacent), `InternalFailure` when etcd cannot be reached.
    pub(super) fn reshard_in_cluster(
        &self,
        link: &ClusterLink,
        stream: &Stream,
        ops: Vec<ReshardOp>,
    ) -> Result<(), ApiError> {
        let _catalog = link.catalog_lock.blocking_lock();
        let local = stream.meta().clone();
        let now = self.clock.now_ms();
        let after = local.after(&ops, now).map_err(reshard_error)?;
        let before = local.shards.len() as u32;
        // The open shards the steps close (not those earlier reshardings closed).
        let closed: Vec<u32> =
            (0..before).filter(|&i| after[i as usize].closed && !local.shards[i as usize].closed).collect();
        let busy = || {
            ApiError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Stream {} under account {} is being resharded; try again once it is ACTIVE.",
                    local.name, self.config.account_id
                ),
            )
        };
        let mut refused = false;
        let change = catalog::change_record(&link.etcd, &link.cluster, &local.name, stream.incarnation(), |r| {
            // This copy must have every earlier resharding applied: the steps' indexes
            // were checked against it.
            refused = r.reshards.iter().any(|x| !x.sealed()) || r.placement.len() != before as usize;
            if refused {
                return false;
            }
            for s in &after[before as usize..] {
                let from = s.parent.expect("a new shard has a parent") as usize;
                let mut p = r.placement[from].clone();
                // A replica on its way out of the parent does not come along (the new
                // shard would keep it for good), nor leads.
                if let Some(leaving) = p.leaving.take() {
                    p.replicas.retain(|n| *n != leaving);
                    if p.leader == leaving {
                        p.leader = p.replicas.first().cloned().unwrap_or_default();
                    }
                }
                // A shard made and closed by the same UpdateShardCount never holds a record.
                (p.epoch, p.history, p.closing) = (1, vec![(1, 0)], s.closed);
                r.placement.push(p);
            }
            for &i in &closed {
                r.placement[i as usize].closing = true;
            }
            r.reshards.push(ReshardRecord {
                ops: ops.clone(),
                at_ms: now,
                first_new: before,
                ends: closed.iter().map(|&i| (i, None)).collect(),
            });
            true
        });
        match link.block_on(change).map_err(catalog_error)? {
            Some(record) => {
                link.set_placements(std::slice::from_ref(&record), true);
                Ok(())
            }
            None if refused => Err(busy()),
            None => Err(self.not_found(&local.name)),
        }
    }

    /// The resharding part of a catalog pass over `records`: fixes the end of each closing
    /// shard this node leads once a quorum holds its whole log, and applies to this node's
    /// copies every resharding whose ends are all fixed, in order. Call it after the pass's
    /// elections, on a thread that may block.
    pub fn settle_reshards(&self, records: &[StreamRecord]) {
        let Some(link) = self.cluster.get() else { return };
        for r in records {
            let Some(stream) = self.streams.get(&r.name).filter(|s| s.incarnation() == r.incarnation) else {
                continue;
            };
            if let Some(pending) = r.reshards.iter().find(|x| !x.sealed()) {
                self.fix_ends(link, &stream, r, pending);
            }
            for x in r.reshards.iter().take_while(|x| x.sealed()) {
                if let Err(e) = apply(&stream, x) {
                    tracing::error!(stream = %r.name, error = %e.message, "cannot apply the cluster's resharding to this node's copy; retrying at the next pass");
                    break;
                }
            }
        }
    }

    /// Fixes, in `record`'s entry, the end of each shard `pending` closes that this node
    /// leads, once the shard's high watermark has reached its log's end (under the shard's
    /// lock, so no append comes after: appends check `closing` under it).
    fn fix_ends(&self, link: &ClusterLink, stream: &Stream, record: &StreamRecord, pending: &ReshardRecord) {
        // A node that restarted leads nothing before it has given up what it led (its log
        // may have lost its tail, and a reopened log's high watermark starts at 0).
        if !link.resigned.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut fixed = BTreeMap::new();
        for (&shard, end) in &pending.ends {
            // The placement as this node knows it now, and an epoch it leads under if any.
            let leads = link.placement(&record.name, record.incarnation, shard).is_some_and(|p| {
                p.leader == link.node_id && link.peers.epoch_of(record.incarnation, shard).is_none_or(|e| e == p.epoch)
            });
            let Some(log) = stream.log(shard).filter(|_| end.is_none() && leads) else { continue };
            let lock = link.peers.shard_lock(record.incarnation, shard);
            let _shard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let end = log.bounds().next_sequence_number;
            if log.readable_end() >= end {
                fixed.insert(shard, end);
            }
        }
        if fixed.is_empty() {
            return;
        }
        let change = catalog::change_record(&link.etcd, &link.cluster, &record.name, record.incarnation, |r| {
            let Some(x) = r.reshards.iter_mut().find(|x| x.first_new == pending.first_new) else { return false };
            let mut changed = false;
            for (shard, end) in &fixed {
                if let Some(slot @ None) = x.ends.get_mut(shard) {
                    *slot = Some(*end);
                    changed = true;
                }
            }
            changed
        });
        match link.block_on(change) {
            Ok(_) => {
                tracing::info!(stream = %record.name, ends = ?fixed, "fixed the ends of shards closed by a resharding")
            }
            Err(e) => tracing::warn!(stream = %record.name, error = %e, "cannot fix the ends of resharded shards yet"),
        }
    }
}

/// Applies resharding `x` to `stream`'s copy if it has not been yet (each step whose new
/// shards the copy lacks): the closed shards' ends first, so no reader of a copy still
/// catching up takes a closed shard's end for its log's.
fn apply(stream: &Stream, x: &ReshardRecord) -> Result<(), ApiError> {
    let ends: BTreeMap<u32, u64> = x.ends.iter().filter_map(|(&i, e)| e.map(|e| (i, e))).collect();
    let unset = {
        let m = stream.meta();
        ends.iter().any(|(&i, &e)| m.shards.get(i as usize).is_some_and(|s| s.end != Some(e)))
    };
    if unset {
        stream.set_ends(&ends).map_err(super::internal)?;
    }
    let mut expected = x.first_new;
    for op in &x.ops {
        expected += added(op);
        if stream.meta().shards.len() as u32 >= expected {
            continue;
        }
        stream.apply(op, x.at_ms).map_err(reshard_error)?;
        tracing::info!(stream = %stream.meta().name, ?op, "applied a resharding of the cluster to this node's copy");
    }
    Ok(())
}
