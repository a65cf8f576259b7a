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

/// Whether stream `name` is one of the streams behind delivery streams, which the Kinesis
/// API neither lists nor finds.
pub(crate) fn behind_delivery_stream(name: &str) -> bool {
    name.contains(':')
}

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
            Err(e) => Err(ApiError::new(ErrorKind::ResourceInUse, e.to_string())),
        }
    }

    /// Deletes the cluster's stream `name` behind a deleted `DirectPut` delivery stream
    /// (none: nothing to do). Blocks on etcd.
    pub fn delete_direct_put_stream(&self, name: &str) -> Result<(), ApiError> {
        let link = self.cluster.get().ok_or_else(no_cluster)?;
        match self.streams.get(name) {
            Some(stream) => self.delete_in_cluster(link, stream),
            None => Ok(()),
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
