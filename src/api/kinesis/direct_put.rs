//! The cluster's streams behind the cluster's `DirectPut` delivery streams (docs/cluster.md):
//! Firehose's PutRecord and PutRecordBatch on any node append to the delivery stream's own
//! stream of the cluster, which is replicated, failed over and read like every other, so a
//! node's loss loses no acknowledged record. Its name
//! ([`sluice_firehose::coordination::ClusterDelivery::direct_put_stream`]) holds a `:`,
//! which no Kinesis request can name: the Kinesis API does not show it.

use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::Record;
use sluice_firehose::delivery_streams::DIRECT_PUT_PARTITION_KEY;

use super::{ApiError, ErrorKind, Kinesis};
use crate::cluster::catalog;
use sluice_engine::streams::CreateStreamError;

/// Whether stream `name` is one of the streams behind delivery streams, which the Kinesis
/// API neither lists nor finds.
pub(crate) fn behind_delivery_stream(name: &str) -> bool {
    name.contains(':')
}

/// How old a stream behind a `DirectPut` delivery stream must be before it is deleted as
/// no delivery stream's, ms: 10 minutes (its delivery stream is entered in the catalog
/// right after it; the margin covers clocks that differ between nodes).
pub const ORPHAN_AFTER_MS: u64 = 600_000;

fn no_cluster() -> ApiError {
    ApiError::new(ErrorKind::InternalFailure, "this node has not joined its cluster yet")
}

impl Kinesis {
    /// Creates the cluster's stream `name` behind a `DirectPut` delivery stream: one shard
    /// (a delivery stream's records keep their order), default settings (24 h retention,
    /// as Firehose keeps undelivered data), not throttled (Firehose's own quotas apply).
    /// Blocks on etcd: call it off the runtime's threads.
    ///
    /// Errors: `ResourceInUseException` when the name is taken, `InternalFailure` when the
    /// catalog cannot be reached.
    pub fn create_direct_put_stream(&self, name: &str) -> Result<(), ApiError> {
        let link = self.cluster.get().ok_or_else(no_cluster)?;
        let now = self.clock.now_ms();
        match self.create_in_cluster(link, name, 1, now, Default::default(), Default::default())? {
            Ok(_) => Ok(()),
            Err(e @ CreateStreamError::Exists(_)) => Err(ApiError::new(ErrorKind::ResourceInUse, e.to_string())),
            Err(e @ CreateStreamError::ShardLimit { .. }) => {
                Err(ApiError::new(ErrorKind::LimitExceeded, format!("The delivery stream's records need a shard: {e}")))
            }
            Err(e) => Err(super::internal(e)),
        }
    }

    /// Deletes the cluster's stream `name` behind a deleted `DirectPut` delivery stream
    /// (none: nothing to do). Blocks on etcd.
    pub fn delete_direct_put_stream(&self, name: &str) -> Result<(), ApiError> {
        let link = self.cluster.get().ok_or_else(no_cluster)?;
        match self.streams.get(name) {
            Some(stream) => self.delete_in_cluster(link, stream),
            // Not made here yet: out of the catalog; every copy goes at its node's next pass.
            None => {
                let _catalog = link.catalog_lock.blocking_lock();
                link.block_on(catalog::unregister(&link.etcd, &link.cluster, name))
                    .map(|_| ())
                    .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))
            }
        }
    }

    /// Deletes the cluster's streams behind `DirectPut` delivery streams that no delivery
    /// stream of `in_use` (the catalog's, as just read) reads and that are older than
    /// [`ORPHAN_AFTER_MS`]: left behind by a node that stopped between making one and
    /// entering its delivery stream, or by a delete that failed half way. Part of the
    /// catalog pass (its lock held), on a thread that may block.
    pub fn remove_orphaned_direct_put_streams(&self, in_use: &std::collections::HashSet<String>) {
        let Some(link) = self.cluster.get() else { return };
        let now = self.clock.now_ms();
        for stream in self.streams.list() {
            let (name, cluster, created_ms) = {
                let m = stream.meta();
                (m.name.clone(), m.cluster.clone(), m.created_ms)
            };
            if !behind_delivery_stream(&name)
                || cluster.as_deref() != Some(link.cluster.as_str())
                || in_use.contains(&name)
                || now.saturating_sub(created_ms) < ORPHAN_AFTER_MS
            {
                continue;
            }
            let removed = link.block_on(catalog::unregister(&link.etcd, &link.cluster, &name));
            match removed.map_err(|e| e.to_string()).and_then(|_| self.delete(stream).map_err(|e| e.message)) {
                Ok(()) => tracing::info!(stream = %name, "deleted a stream no delivery stream of the cluster reads"),
                Err(e) => tracing::warn!(stream = %name, error = %e, "cannot delete a stream no delivery stream reads"),
            }
        }
    }

    /// Appends `records` (data only) to the one shard of the cluster's stream `name`, all or
    /// none, acknowledged once a quorum of its replicas holds them: the sequence number of
    /// the first. Blocks on the replicas.
    ///
    /// Errors: `ResourceNotFoundException` when this node holds no copy of the stream yet,
    /// else the write path's ([`Kinesis::append_to_shard`]).
    pub fn append_direct_put(&self, name: &str, records: &[&[u8]]) -> Result<SequenceNumber, ApiError> {
        let stream = self
            .streams
            .get(name)
            .ok_or_else(|| ApiError::new(ErrorKind::ResourceNotFound, format!("Stream {name} not found.")))?;
        let log = stream
            .log(0)
            .ok_or_else(|| ApiError::new(ErrorKind::InternalFailure, format!("stream {name} has no shard 0")))?;
        let batch: Vec<Record<'_>> =
            records.iter().map(|data| Record { partition_key: DIRECT_PUT_PARTITION_KEY, data }).collect();
        let of_cluster = stream.meta().cluster.is_some();
        let appended = self.append_to_shard(&stream, name, of_cluster, 0, &log, &batch)?;
        self.wake_receivers();
        Ok(SequenceNumber { shard_index: 0, shard_sequence: appended.first_sequence_number })
    }
}

/// The Firehose side reaches the cluster's streams through the server's state, held weakly
/// (the state owns the Firehose side; a strong hold would keep it, and its logs, open).
impl crate::api::firehose::ClusterStreams for std::sync::Weak<crate::server::AppState> {
    fn create(&self, name: &str) -> Result<(), ApiError> {
        self.upgrade().ok_or_else(stopping)?.kinesis.create_direct_put_stream(name)
    }

    fn delete(&self, name: &str) -> Result<(), ApiError> {
        self.upgrade().ok_or_else(stopping)?.kinesis.delete_direct_put_stream(name)
    }

    fn append(&self, name: &str, records: &[&[u8]]) -> Result<SequenceNumber, ApiError> {
        self.upgrade().ok_or_else(stopping)?.kinesis.append_direct_put(name, records)
    }
}

fn stopping() -> ApiError {
    ApiError::new(ErrorKind::InternalFailure, "the server is stopping")
}
