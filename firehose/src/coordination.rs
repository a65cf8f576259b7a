//! Delivery streams of a cluster (docs/cluster.md): which node delivers which source shard,
//! and where its checkpoints live, when several nodes run a worker for one delivery stream.
//!
//! Each source shard is delivered by one node at a time, the one that holds the shard's
//! *claim*; the claim and the shard's checkpoint live in the cluster's coordination store
//! (etcd), so a node that takes a shard over goes on from where the last holder stood, and
//! a pending range is redone with exactly the same records (and so the same object keys).
//! A checkpoint is only written while the writer still holds the claim it took: a holder
//! that was paused or cut off and replaced can write objects (the same keys its successor
//! writes, with the same records) but can no longer move the checkpoint.
//!
//! The crate knows nothing of etcd: the server implements [`Coordination`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::checkpoint::ShardCheckpoint;
use crate::schema::FieldSpec;
use crate::spec::DeliveryStreamSpec;

/// A boxed future, as the trait's methods return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How often a worker of a cluster's delivery stream reads its claims again, ms: 1,000 (the
/// cluster's catalog pass). A shard whose holder died is taken over within this plus the
/// node's lease.
pub const CLAIM_REFRESH_MS: u64 = 1_000;

/// What marks a delivery stream as one of a cluster's, in its definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterDelivery {
    /// The cluster's name.
    pub cluster: String,
    /// Random id of this incarnation of the name: a delivery stream deleted and created
    /// again under its name starts with no claims and no checkpoints.
    pub incarnation: u64,
}

impl ClusterDelivery {
    /// The cluster's stream that holds the records of `DirectPut` delivery stream `name` of
    /// this incarnation (one shard, replicated as every stream of the cluster):
    /// `firehose:<name>:<incarnation, 16 hex digits>`. `:` is not among a stream name's
    /// characters (`[a-zA-Z0-9_.-]`, AWS Kinesis API reference), so no Kinesis request can
    /// name it, and a delivery stream made again under its name gets a new one.
    pub fn direct_put_stream(&self, name: &str) -> String {
        format!("firehose:{name}:{:016x}", self.incarnation)
    }
}

/// A claim this node holds on one source shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The store's revision of the claim when this node took it (the fencing token: a
    /// checkpoint is written only while the claim is still at it).
    pub token: i64,
    /// The shard's checkpoint as the store holds it, for the source incarnation asked
    /// about; `None` when none was written yet.
    pub checkpoint: Option<ShardCheckpoint>,
}

/// The cluster's side of delivery, implemented by the server over etcd.
pub trait Coordination: Send + Sync + std::fmt::Debug {
    /// Takes or keeps this node's claims on `shards` (indices) of the source of `spec`,
    /// whose incarnation is `source_incarnation`: a free claim, or one whose holder left the
    /// cluster, is taken by the node that leads the source shard. Returns the shards this
    /// node holds now, each with its claim. Errors: the store cannot be reached.
    fn claim<'a>(
        &'a self,
        spec: &'a DeliveryStreamSpec,
        source_incarnation: u64,
        shards: &'a [u32],
    ) -> BoxFuture<'a, Result<BTreeMap<u32, Claim>, String>>;

    /// Writes `checkpoint` for `shard` if this node still holds the claim at `token`:
    /// `Ok(false)` when the claim was lost (nothing written). Errors: the store cannot be
    /// reached.
    fn save<'a>(
        &'a self,
        spec: &'a DeliveryStreamSpec,
        shard: u32,
        token: i64,
        source_incarnation: u64,
        checkpoint: ShardCheckpoint,
    ) -> BoxFuture<'a, Result<bool, String>>;

    /// Fixes the schema inferred by this node as the delivery stream's, unless another
    /// node fixed one first: returns the schema every node converts with from now on.
    /// Errors: the store cannot be reached.
    fn fix_schema<'a>(
        &'a self,
        spec: &'a DeliveryStreamSpec,
        inferred: Vec<FieldSpec>,
    ) -> BoxFuture<'a, Result<Vec<FieldSpec>, String>>;
}
