//! The write path of a cluster's streams (docs/cluster.md): a shard's records are appended
//! by its leader and acknowledged once a quorum of its replicas holds them; a node that is
//! not the leader forwards them. Also the two requests nodes send each other: a leader's
//! batch for a replica, and records forwarded to a leader.

use std::sync::Arc;

use sluice_engine::stream::Stream;
use sluice_engine::{AppendError, Appended, Record, ShardLog};

use super::{ApiError, ErrorKind, Kinesis};
use crate::cluster::replication::{AppendAnswer, ReplicaAnswer};
use crate::cluster::wire::{Batch, WireRecord};

fn failure(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InternalFailure, message)
}

/// A JSON answer to another node.
fn json<T: serde::Serialize>(status: u16, value: &T) -> (u16, Vec<u8>) {
    (status, serde_json::to_vec(value).expect("an answer serializes"))
}

impl Kinesis {
    /// Appends `records` to shard `shard` of `stream`, whose log is `log`: on a single node,
    /// or for a stream of this node alone, to the log; for a cluster's stream, on the
    /// shard's leader, acknowledged once a quorum of the shard's replicas holds the records
    /// (forwarded to the leader when this node is not it). `name` and `of_cluster` (whether
    /// the stream is a cluster's) come from the caller, which holds the stream's metadata.
    ///
    /// Errors: the append's own (records refused, I/O), or `InternalFailure` when no quorum
    /// acknowledged or the leader cannot be reached (the records may still be in the
    /// leader's log: a retried put can store them twice, as on Kinesis).
    pub(crate) fn append_to_shard(
        &self,
        stream: &Stream,
        name: &str,
        of_cluster: bool,
        shard: u32,
        log: &Arc<ShardLog>,
        records: &[Record<'_>],
    ) -> Result<Appended, ApiError> {
        let link = match (of_cluster, self.cluster.get()) {
            (true, Some(link)) => link,
            _ => return log.append(records).map_err(append_failure),
        };
        let incarnation = stream.incarnation();
        let placement = link.placement(name, incarnation, shard).ok_or_else(|| {
            failure(format!("shard {shard} of stream {name} has no placement in the cluster's catalog yet"))
        })?;
        if placement.leader != link.node_id {
            let batch = Batch {
                stream: name,
                incarnation,
                shard,
                epoch: 0,
                first_sequence_number: 0,
                committed: 0,
                records: records
                    .iter()
                    .map(|r| WireRecord { arrival_timestamp_ms: 0, partition_key: r.partition_key, data: r.data })
                    .collect(),
            };
            let answer = link.block_on(link.peers.forward(&placement.leader, &batch)).map_err(|(code, message)| {
                let kind = if code == ErrorKind::ResourceNotFound.name() {
                    ErrorKind::ResourceNotFound
                } else {
                    ErrorKind::InternalFailure
                };
                ApiError::new(kind, message)
            })?;
            return Ok(Appended {
                first_sequence_number: answer.first,
                record_count: records.len() as u64,
                arrival_timestamp_ms: answer.arrival_timestamp_ms,
            });
        }
        if !link.resigned.load(std::sync::atomic::Ordering::Acquire) {
            return Err(failure(format!(
                "shard {shard} of stream {name} is getting a new leader after this node's restart; retry"
            )));
        }
        let appended = {
            let lock = link.peers.shard_lock(incarnation, shard);
            let _shard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // This node is giving the leadership up (it reported its end for an election,
            // or stepped down): nothing more under this epoch.
            if link.peers.fenced_below(incarnation, shard) > placement.epoch {
                return Err(failure(format!("shard {shard} of stream {name} is getting a new leader; retry")));
            }
            // Closed by a resharding: its end is being fixed (read under this lock, which
            // the fixing takes too). The records go to the new shards once routed again.
            if link.placement(name, incarnation, shard).is_some_and(|p| p.closing) {
                return Err(failure(format!("shard {shard} of stream {name} is being resharded; retry")));
            }
            // A placement older than the epoch this node appends under: another leader has
            // been elected since this node read the catalog.
            if link.peers.epoch_of(incarnation, shard) != Some(placement.epoch) {
                link.peers
                    .set_epoch(incarnation, shard, placement.epoch)
                    .map_err(|e| failure(format!("this node is no longer the shard's leader: {e}")))?;
            }
            log.append(records).map_err(append_failure)?
        };
        let batch = Batch {
            stream: name,
            incarnation,
            shard,
            epoch: placement.epoch,
            first_sequence_number: appended.first_sequence_number,
            committed: link.peers.committed(incarnation, shard, placement.epoch),
            records: records
                .iter()
                .map(|r| WireRecord {
                    arrival_timestamp_ms: appended.arrival_timestamp_ms,
                    partition_key: r.partition_key,
                    data: r.data,
                })
                .collect(),
        };
        link.block_on(link.peers.replicate(&link.node_id, &placement, &batch, log)).map_err(|e| {
            tracing::warn!(stream = name, shard, error = %e, "records not acknowledged by a quorum of replicas");
            failure(format!("The records were not stored on a quorum of replicas: {e}"))
        })?;
        Ok(appended)
    }

    /// Catches up the replicas of shards this node leads that missed batches (down, cut
    /// off, slow), with [`crate::cluster::replication::Peers::probe`]; `every` probes every
    /// replica of every shard this node leads (now and then: a probe also carries the high
    /// watermark to a replica that restarted while its shard was idle). Replicas still behind stay marked for the next call. Runs the probes
    /// at once and returns when all have answered; call it from a thread that may block.
    pub fn repair_replicas(&self, every: bool) {
        use crate::cluster::replication::Lag;
        let Some(link) = self.cluster.get() else { return };
        let mut lagging = link.peers.take_lagging();
        if every {
            for stream in self.streams.list() {
                let (name, incarnation) = (stream.meta().name.clone(), stream.incarnation());
                for shard in 0..stream.meta().shards.len() as u32 {
                    let Some(p) = link.placement(&name, incarnation, shard) else { continue };
                    if p.leader != link.node_id {
                        continue;
                    }
                    for node in p.replicas.iter().filter(|r| **r != link.node_id) {
                        lagging.push(Lag { stream: name.clone(), incarnation, shard, node: node.clone() });
                    }
                }
            }
        }
        let mut probes = tokio::task::JoinSet::new();
        for lag in lagging {
            let Some(stream) = self.streams.get(&lag.stream).filter(|s| s.incarnation() == lag.incarnation) else {
                continue;
            };
            let (Some(log), Some(p)) = (stream.log(lag.shard), link.placement(&lag.stream, lag.incarnation, lag.shard))
            else {
                continue;
            };
            if p.leader != link.node_id || !p.replicas.contains(&lag.node) {
                continue;
            }
            let (peers, me) = (link.peers.clone(), link.node_id.clone());
            probes.spawn_on(
                async move {
                    if let Err(e) = peers.probe(&me, &lag, &p, log).await {
                        tracing::debug!(stream = %lag.stream, shard = lag.shard, node = %lag.node, error = %e, "a replica is still behind");
                        peers.mark(lag);
                    }
                },
                link.runtime(),
            );
        }
        link.block_on(async { while probes.join_next().await.is_some() {} });
    }

    /// Gives up the leadership of every shard the catalog `records` show this node leading
    /// (its first catalog pass after a start: see
    /// [`crate::cluster::catalog::resign_leadership`]); the replicas, this node among them,
    /// elect the next leaders. When a leadership could not be given up (etcd failed), call
    /// it again at the next pass; until all are given up this node leads nothing. No
    /// effect after that.
    pub fn resign_leaderships(&self, records: &[crate::cluster::StreamRecord]) {
        use crate::cluster::catalog::{resign_leadership, ShardOf};
        use std::sync::atomic::Ordering::{Acquire, Release};
        let Some(link) = self.cluster.get() else { return };
        if link.resigned.load(Acquire) {
            return;
        }
        let mut done = true;
        for r in records {
            for (shard, p) in r.placement.iter().enumerate().filter(|(_, p)| p.leader == link.node_id) {
                let of = ShardOf { stream: &r.name, incarnation: r.incarnation, shard: shard as u32 };
                match link.block_on(resign_leadership(&link.etcd, &link.cluster, of, &link.node_id, p.epoch)) {
                    Ok(Some(record)) => {
                        link.set_placements(std::slice::from_ref(&record), true);
                        link.peers.count_leader_change(false);
                        tracing::info!(stream = %r.name, shard, epoch = p.epoch, "gave up a shard's leadership at start; its replicas elect the next leader");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        done = false;
                        tracing::warn!(stream = %r.name, shard, error = %e, "cannot give up a shard's leadership at start");
                    }
                }
            }
        }
        link.resigned.store(done, Release);
    }

    /// Gives up the leadership of the shards this node leads whose replicas have not
    /// answered it, a quorum of them, for [`crate::cluster::replication::STEP_DOWN_AFTER`]
    /// (cut off from the other nodes while it still reaches etcd, it keeps its membership,
    /// so no election would start): it first cuts its log back to its high watermark (what
    /// is past it was acknowledged to no one), then leaves the leadership in the catalog,
    /// and stands back in the election that follows unless its log is the longest.
    pub fn step_down_when_cut_off(&self, records: &[crate::cluster::StreamRecord]) {
        use crate::cluster::catalog::{resign_leadership, ShardOf};
        let Some(link) = self.cluster.get() else { return };
        let me = &link.node_id;
        for r in records {
            let Some(stream) = self.streams.get(&r.name).filter(|s| s.incarnation() == r.incarnation) else { continue };
            for (shard, p) in r.placement.iter().enumerate().filter(|(_, p)| &p.leader == me) {
                let shard = shard as u32;
                if !link.peers.cut_off(r.incarnation, shard, p.epoch, &p.replicas, me) {
                    continue;
                }
                let Some(log) = stream.log(shard) else { continue };
                let lock = link.peers.shard_lock(r.incarnation, shard);
                let _shard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // No append under this epoch from here on, and nothing past what a quorum
                // acknowledged stays.
                link.peers.fence(r.incarnation, shard, p.epoch + 1);
                let keep = log.readable_end();
                if log.bounds().next_sequence_number > keep {
                    if let Err(e) = log.truncate(keep) {
                        tracing::error!(stream = %r.name, shard, error = %e, "cannot cut what no quorum acknowledged before stepping down");
                        continue;
                    }
                }
                let of = ShardOf { stream: &r.name, incarnation: r.incarnation, shard };
                match link.block_on(resign_leadership(&link.etcd, &link.cluster, of, me, p.epoch)) {
                    Ok(Some(record)) => {
                        link.peers.rest(r.incarnation, shard);
                        link.set_placements(std::slice::from_ref(&record), true);
                        link.peers.count_leader_change(false);
                        tracing::warn!(stream = %r.name, shard, epoch = p.epoch, "gave up a shard's leadership: no quorum of its replicas answered");
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(stream = %r.name, shard, error = %e, "cannot give up a shard's leadership")
                    }
                }
            }
        }
    }

    /// After a restart of this node's machine: keeps the new boot id once every shard of the
    /// catalog `records` this node replicates is caught up by its leader or led by this node
    /// under an epoch it won (see [`crate::cluster::replication::Peers::settle_restart`]).
    pub fn settle_restart(&self, records: &[crate::cluster::StreamRecord]) {
        let Some(link) = self.cluster.get() else { return };
        // The leaderships held before the restart are given up first: only one won since
        // counts.
        if !link.resigned.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        link.peers.settle_restart(|caught_up| {
            records.iter().all(|r| {
                (0..r.placement.len() as u32).all(|shard| {
                    let Some(p) = link.placement(&r.name, r.incarnation, shard) else { return false };
                    !p.replicas.contains(&link.node_id)
                        || caught_up(r.incarnation, shard)
                        || (p.leader == link.node_id && link.peers.epoch_of(r.incarnation, shard) == Some(p.epoch))
                })
            })
        });
    }

    /// Serves every record of the shards with one replica: a record there is acknowledged
    /// once this node holds it, so nothing waits for a high watermark.
    pub fn serve_unreplicated(&self, records: &[crate::cluster::StreamRecord]) {
        for r in records {
            let Some(stream) = self.streams.get(&r.name).filter(|s| s.incarnation() == r.incarnation) else { continue };
            for (shard, _) in r.placement.iter().enumerate().filter(|(_, p)| p.replicas.len() == 1) {
                if let Some(log) = stream.log(shard as u32).filter(|l| l.high_watermark().is_some()) {
                    log.raise_high_watermark(u64::MAX);
                }
            }
        }
    }

    /// Elects new leaders for the shards this node replicates whose leader has left the
    /// cluster (`live`: the members now), one step per catalog pass (docs/cluster.md,
    /// "Failover"): this replica reports its log end; once a majority of the shard's
    /// replicas have reported theirs, the one with the longest log (ties: lowest node id)
    /// claims leadership at the next epoch in one transaction. Acknowledged records are on
    /// a majority, so the longest log of any majority holds every one of them.
    pub fn elect_leaders(&self, records: &[crate::cluster::StreamRecord], live: &[String]) {
        use crate::cluster::catalog::{claim_leadership, report_end, ReportedEnd, ShardOf};
        use crate::cluster::replication::Lag;
        let Some(link) = self.cluster.get() else { return };
        let me = &link.node_id;
        for r in records {
            let Some(stream) = self.streams.get(&r.name).filter(|s| s.incarnation() == r.incarnation) else { continue };
            for (shard, p) in r.placement.iter().enumerate() {
                let shard = shard as u32;
                if live.contains(&p.leader) || !p.replicas.contains(me) {
                    continue;
                }
                let Some(log) = stream.log(shard) else { continue };
                // What this replica holds that a leader may have had acknowledged: records of
                // the newest epoch it appended under, up to where a later epoch began (Raft's
                // "up to date": last epoch first, then length).
                let lock = link.peers.shard_lock(r.incarnation, shard);
                let held = {
                    let _shard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    // Reporting fences: from now on this replica takes nothing from the
                    // leader being replaced, so the end it reports stays true.
                    link.peers.fence(r.incarnation, shard, p.epoch + 1);
                    let newest = link.peers.epoch_of(r.incarnation, shard).unwrap_or(1);
                    let end = log.bounds().next_sequence_number.min(p.start_after(newest).unwrap_or(u64::MAX));
                    (p.epoch_held(newest, end), end)
                };
                let synced_each = log.options().durability == sluice_engine::Durability::Always;
                let unsure = link.peers.may_lack_acknowledged(r.incarnation, shard, synced_each);
                let now = self.clock.now_ms();
                let mine = ReportedEnd {
                    node: me.clone(),
                    epoch: p.epoch,
                    end: held.1,
                    last_epoch: held.0,
                    unsure,
                    at_ms: now,
                    resting: link.peers.resting(r.incarnation, shard),
                };
                let of = ShardOf { stream: &r.name, incarnation: r.incarnation, shard };
                let reported = link.block_on(report_end(&link.etcd, &link.cluster, of, &mine));
                let ends = match reported {
                    Ok(ends) => ends,
                    Err(e) => {
                        tracing::warn!(stream = %r.name, shard, error = %e, "cannot report this replica's end for an election");
                        continue;
                    }
                };
                let fresh = |e: &&ReportedEnd| e.at_ms + crate::cluster::catalog::REPORT_LIFETIME_MS >= now;
                let voters: Vec<&ReportedEnd> = ends
                    .iter()
                    .filter(|e| live.contains(&e.node) && p.replicas.contains(&e.node))
                    .filter(fresh)
                    .collect();
                // A majority of replicas sure of their logs holds every acknowledged record;
                // short of one, only all replicas together hold what survived.
                let sure = voters.iter().filter(|e| !e.unsure).count();
                if sure < p.replicas.len() / 2 + 1 && voters.len() < p.replicas.len() {
                    continue;
                }
                // Ties: a replica that did not just step down, then the lowest node id.
                let best = voters.iter().max_by(|a, b| {
                    (a.last_epoch, a.end, !a.resting).cmp(&(b.last_epoch, b.end, !b.resting)).then(b.node.cmp(&a.node))
                });
                if best.is_none_or(|b| &b.node != me) {
                    continue;
                }
                let _shard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // The new epoch starts where this replica's valid records end: a tail past
                // that (a replaced leader's) goes first.
                let start = held.1;
                if log.bounds().next_sequence_number > start {
                    if let Err(e) = log.truncate(start) {
                        tracing::error!(stream = %r.name, shard, error = %e, "cannot cut a replaced leader's tail before leading");
                        continue;
                    }
                }
                let claimed = link.block_on(claim_leadership(&link.etcd, &link.cluster, of, me, p.epoch, start));
                match claimed {
                    Ok(Some(record)) => {
                        // From now on the old leader's batches are refused here.
                        if let Err(e) = link.peers.set_epoch(r.incarnation, shard, p.epoch + 1) {
                            tracing::error!(stream = %r.name, shard, error = %e, "cannot keep the new epoch");
                        }
                        link.set_placements(std::slice::from_ref(&record), true);
                        link.peers.count_leader_change(true);
                        for node in p.replicas.iter().filter(|n| *n != me) {
                            link.peers.mark(Lag {
                                stream: r.name.clone(),
                                incarnation: r.incarnation,
                                shard,
                                node: node.clone(),
                            });
                        }
                        tracing::warn!(stream = %r.name, shard, epoch = p.epoch + 1, start, old_leader = %p.leader,
                            "became the shard's leader: its leader left the cluster");
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(stream = %r.name, shard, error = %e, "cannot claim a shard's leadership"),
                }
            }
        }
    }

    /// A leader's batch for this replica: appended after the records it holds (what it
    /// holds already is skipped), refused when the sender's epoch is older than one seen.
    /// Returns the HTTP status and JSON body ([`crate::cluster::replication`] lists them).
    pub fn apply_replica(&self, batch: &Batch<'_>) -> (u16, Vec<u8>) {
        let Some(link) = self.cluster.get() else { return (404, Vec::new()) };
        // Leaders' epochs start at 1: 0 marks a forward, never a leader's batch.
        if batch.epoch == 0 {
            return (400, b"a replica batch needs its leader's epoch".to_vec());
        }
        let stream = match self.streams.get(batch.stream) {
            Some(s) if s.incarnation() == batch.incarnation => s,
            _ => return (404, Vec::new()),
        };
        let Some(log) = stream.log(batch.shard) else { return (404, Vec::new()) };
        let Some(placement) = link.placement(batch.stream, batch.incarnation, batch.shard) else {
            return (404, Vec::new());
        };
        let lock = link.peers.shard_lock(batch.incarnation, batch.shard);
        let _shard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A leader of an epoch this node's catalog does not show yet: the leader asks again
        // once the next catalog pass has brought its history.
        if batch.epoch > placement.epoch {
            return (404, Vec::new());
        }
        let mine = link.peers.epoch_of(batch.incarnation, batch.shard);
        let fence = link.peers.fenced_below(batch.incarnation, batch.shard);
        let newest = placement.epoch.max(mine.unwrap_or(0)).max(fence);
        if batch.epoch < newest {
            return json(412, &ReplicaAnswer { next: log.bounds().next_sequence_number, epoch: newest });
        }
        if mine != Some(batch.epoch) {
            // The first batch of a newer leader: records past the start of the first epoch
            // after this replica's own came from a replaced leader and are on no quorum.
            let cut = match mine {
                Some(m) => placement.start_after(m),
                None if batch.epoch == 1 => None,
                None => placement.history.iter().find(|(e, _)| *e == batch.epoch).map(|(_, start)| *start),
            };
            if let Some(cut) = cut.filter(|c| *c < log.bounds().next_sequence_number) {
                match log.truncate(cut) {
                    Ok(r) => tracing::warn!(
                        stream = batch.stream,
                        shard = batch.shard,
                        cut,
                        removed = r.records_removed,
                        epoch = batch.epoch,
                        "cut records a replaced leader wrote"
                    ),
                    Err(e) => return (500, format!("cannot cut the log at {cut}: {e}").into_bytes()),
                }
            }
            if let Err(e) = link.peers.set_epoch(batch.incarnation, batch.shard, batch.epoch) {
                return (500, format!("cannot keep the epoch: {e}").into_bytes());
            }
        }
        // Records below the leader's watermark are on a quorum: this replica may serve
        // them (its log agrees with the leader's from here on).
        log.raise_high_watermark(batch.committed);
        let next = log.bounds().next_sequence_number;
        if batch.first_sequence_number > next {
            return json(409, &ReplicaAnswer { next, epoch: batch.epoch });
        }
        // Caught up once this replica holds what the leader began its epoch with (all that
        // survived the election) and the leader's watermark.
        let epoch_start = placement.history.iter().find(|(e, _)| *e == batch.epoch).map_or(0, |(_, s)| *s);
        let caught_up_at = batch.committed.max(epoch_start);
        let skip = (next - batch.first_sequence_number) as usize;
        if skip >= batch.records.len() {
            if next >= caught_up_at {
                link.peers.caught_up(batch.incarnation, batch.shard);
            }
            return json(200, &ReplicaAnswer { next, epoch: batch.epoch });
        }
        let rest = &batch.records[skip..];
        let records: Vec<Record<'_>> =
            rest.iter().map(|r| Record { partition_key: r.partition_key, data: r.data }).collect();
        let times: Vec<u64> = rest.iter().map(|r| r.arrival_timestamp_ms).collect();
        match log.append_replica(next, &records, &times) {
            Ok(a) => {
                let next = a.first_sequence_number + a.record_count;
                if next >= caught_up_at {
                    link.peers.caught_up(batch.incarnation, batch.shard);
                }
                json(200, &ReplicaAnswer { next, epoch: batch.epoch })
            }
            Err(AppendError::NotNext { expected, .. }) => {
                json(409, &ReplicaAnswer { next: expected, epoch: batch.epoch })
            }
            Err(e) => {
                tracing::error!(stream = batch.stream, shard = batch.shard, error = %e, "a replica append failed");
                (500, e.to_string().into_bytes())
            }
        }
    }

    /// Records another node forwarded to this node as the shard's leader: appended and
    /// replicated as a put of this node's own. Returns the HTTP status and JSON body.
    pub fn append_forwarded(&self, batch: &Batch<'_>) -> (u16, Vec<u8>) {
        let refuse = |status, kind: ErrorKind, message: String| {
            json(
                status,
                &AppendAnswer {
                    first: 0,
                    arrival_timestamp_ms: 0,
                    code: Some(kind.name().into()),
                    message: Some(message),
                },
            )
        };
        let stream = match self.streams.get(batch.stream) {
            Some(s) if s.incarnation() == batch.incarnation => s,
            _ => {
                return refuse(
                    404,
                    ErrorKind::ResourceNotFound,
                    format!("Stream {} not found on the shard's leader.", batch.stream),
                )
            }
        };
        let Some(log) = stream.log(batch.shard) else {
            // A shard a resharding made, which this copy has not made yet: soon.
            return refuse(
                503,
                ErrorKind::InternalFailure,
                format!("Shard {} is not made yet on the shard's leader; retry.", batch.shard),
            );
        };
        let records: Vec<Record<'_>> =
            batch.records.iter().map(|r| Record { partition_key: r.partition_key, data: r.data }).collect();
        match self.append_to_shard(&stream, batch.stream, true, batch.shard, &log, &records) {
            Ok(a) => json(
                200,
                &AppendAnswer {
                    first: a.first_sequence_number,
                    arrival_timestamp_ms: a.arrival_timestamp_ms,
                    code: None,
                    message: None,
                },
            ),
            Err(e) => refuse(500, e.kind, e.message),
        }
    }
}

/// A failed append as the API reports it: the records were checked before, so what is
/// left is the server's failure.
fn append_failure(e: AppendError) -> ApiError {
    tracing::error!(error = %e, "append failed");
    failure("Internal service failure.")
}
