//! Delivery streams of a cluster (docs/cluster.md): CreateDeliveryStream, DeleteDeliveryStream
//! and every change of a definition go through the cluster's catalog in etcd, and each node
//! brings its copies in line with the catalog; which node delivers which source shard is
//! settled by claims ([`crate::cluster::deliveries`]).

use std::sync::Arc;

use sluice_firehose::coordination::ClusterDelivery;
use sluice_firehose::delivery_streams::CreateError;
use sluice_firehose::plan::RecordTransform;
use sluice_firehose::spec::{DeliveryStreamSpec, SourceSpec};

use super::{internal, invalid, Firehose};
use crate::api::error::{ApiError, ErrorKind};
use crate::cluster::deliveries::{self, DeliveryRecord};
use crate::cluster::{ClusterLink, EtcdError};

/// The cluster's streams, as the cluster's `DirectPut` delivery streams keep their records
/// in them (the Kinesis side implements it; see `crate::api::kinesis::direct_put`). Every
/// method blocks on etcd or the replicas: call them off the runtime's threads.
pub trait ClusterStreams: Send + Sync + std::fmt::Debug {
    /// Creates the cluster's stream `name` (one shard). Errors: the API's.
    fn create(&self, name: &str) -> Result<(), ApiError>;
    /// Deletes the cluster's stream `name`, if there is one. Errors: the API's.
    fn delete(&self, name: &str) -> Result<(), ApiError>;
    /// Appends `records` to the one shard of stream `name`, all or none, once a quorum of
    /// its replicas holds them: the sequence number of the first. Errors: the API's.
    fn append(&self, name: &str, records: &[&[u8]])
        -> Result<sluice_engine::sequence_number::SequenceNumber, ApiError>;
}

/// A definition's members, as its JSON object.
fn to_members(spec: &DeliveryStreamSpec) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(spec).expect("a definition serializes") {
        serde_json::Value::Object(members) => members,
        _ => serde_json::Map::new(),
    }
}

/// etcd out of reach or refusing: nothing changed, and the SDKs retry the failure.
fn catalog_error(e: EtcdError) -> ApiError {
    ApiError::new(ErrorKind::InternalFailure, format!("the cluster's catalog cannot be reached: {e}"))
}

fn in_use(f: &Firehose, name: &str) -> ApiError {
    ApiError::new(
        ErrorKind::ResourceInUse,
        format!("Firehose {name} under accountId {} already exists", f.config.account_id),
    )
}

impl Firehose {
    /// Whether a delivery stream of `spec` created on this node of `link`'s cluster is the
    /// cluster's: one whose source is a stream of the cluster. A source that is this node's
    /// own stream (made before it joined) keeps its delivery stream on this node too.
    pub(super) fn of_cluster(&self, link: &ClusterLink, spec: &DeliveryStreamSpec) -> bool {
        match &spec.source {
            SourceSpec::DirectPut => true,
            SourceSpec::KinesisStream { stream_name, .. } => self
                .delivery_streams
                .context()
                .kinesis
                .get(stream_name)
                .is_none_or(|s| s.meta().cluster.as_deref() == Some(link.cluster.as_str())),
        }
    }

    /// CreateDeliveryStream on a node of a cluster: enters the delivery stream in the
    /// catalog (refused there when the name is taken) with the source's LATEST positions
    /// as this node reads them, then makes this node's copy; the other nodes make theirs
    /// from the catalog. A `DirectPut` delivery stream first gets its own stream of the
    /// cluster (one shard, replicated), which its PutRecord(Batch) on any node appends to
    /// and which it reads from its start. An Iceberg destination on the embedded SQLite
    /// catalog is refused: each node keeps that catalog for itself (a REST catalog is
    /// every node's).
    ///
    /// Errors: `InvalidArgumentException` for that or a missing source,
    /// `ResourceInUseException` for a taken name, `InternalFailure` when etcd cannot be
    /// reached (nothing changed).
    pub(super) async fn create_in_cluster(
        &self,
        link: &ClusterLink,
        mut spec: DeliveryStreamSpec,
        transform: Option<Arc<dyn RecordTransform>>,
    ) -> Result<(), ApiError> {
        if spec.iceberg.is_some() && !self.delivery_streams.context().tables.shared_catalog() {
            return Err(invalid(format!(
                "Sluice cluster {}: an Iceberg destination needs a catalog every node shares ([tables] rest_catalog_url); the embedded SQLite catalog is one node's (docs/cluster.md).",
                link.cluster
            )));
        }
        if self.delivery_streams.get(&spec.name).is_some() {
            return Err(in_use(self, &spec.name));
        }
        spec.cluster =
            Some(ClusterDelivery { cluster: link.cluster.clone(), incarnation: sluice_engine::stream::random_u64() });
        let direct_put = match &spec.source {
            SourceSpec::DirectPut => spec.source_stream(),
            SourceSpec::KinesisStream { .. } => None,
        };
        if let Some(stream) = &direct_put {
            // Made before the catalog lock is taken: the stream's own creation takes it.
            self.with_cluster_streams(stream, |streams, name| streams.create(name))?;
        }
        let registered = self.register(link, spec, transform).await;
        if let (Err(_), Some(stream)) = (&registered, &direct_put) {
            if let Err(e) = self.with_cluster_streams(stream, |streams, name| streams.delete(name)) {
                tracing::error!(stream = %stream, error = %e.message, "the stream made for a delivery stream that was not created stays");
            }
        }
        registered
    }

    /// Runs `call` on the cluster's streams with stream `name`, out of the runtime's
    /// context (it blocks on etcd; see `put`).
    fn with_cluster_streams<T>(
        &self,
        name: &str,
        call: impl FnOnce(&dyn ClusterStreams, &str) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let streams = self
            .cluster_streams
            .get()
            .ok_or_else(|| ApiError::new(ErrorKind::InternalFailure, "this node has not joined its cluster yet"))?;
        tokio::task::block_in_place(|| call(streams.as_ref(), name))
    }

    /// The part of [`Firehose::create_in_cluster`] under the catalog lock: the start
    /// positions, the catalog entry, this node's copy.
    async fn register(
        &self,
        link: &ClusterLink,
        spec: DeliveryStreamSpec,
        transform: Option<Arc<dyn RecordTransform>>,
    ) -> Result<(), ApiError> {
        let stream_name = spec.source_stream().expect("a delivery stream of a cluster reads a stream of it");
        let _catalog = link.catalog_lock.lock().await;
        let mut start = self.delivery_streams.latest_positions(&stream_name).ok_or_else(|| {
            invalid(format!("Stream {stream_name} under account {} not found.", self.config.account_id))
        })?;
        match &spec.source {
            // Its own stream, new: every record in it is the delivery stream's.
            SourceSpec::DirectPut => start.values_mut().for_each(|next| *next = 0),
            // Only this node's replicas know where their shards end; every other shard
            // starts at its first record that arrived once the delivery stream existed
            // (each node's copy finds it by arrival time).
            SourceSpec::KinesisStream { .. } => {
                let source = self.delivery_streams.context().kinesis.get(&stream_name);
                let incarnation = source.map_or(0, |s| s.incarnation());
                start.retain(|shard, _| {
                    link.placement(&stream_name, incarnation, *shard)
                        .is_some_and(|p| p.replicas.contains(&link.node_id))
                });
            }
        }
        if self.delivery_streams.get(&spec.name).is_some() {
            return Err(in_use(self, &spec.name));
        }
        let record = DeliveryRecord { spec: spec.clone(), start: start.clone() };
        if !deliveries::register(&link.etcd, &link.cluster, &record).await.map_err(catalog_error)? {
            return Err(in_use(self, &spec.name));
        }
        let (name, incarnation) = (spec.name.clone(), record.incarnation());
        let made = self.delivery_streams.create_from(spec, transform, &start);
        if made.is_err() {
            if let Err(e) = deliveries::unregister(&link.etcd, &link.cluster, &name, incarnation).await {
                tracing::error!(delivery_stream = %name, error = %e, "a delivery stream this node could not make stays in the cluster's catalog");
            }
        }
        match made {
            Ok(_) => Ok(()),
            Err(CreateError::Exists(name)) => Err(in_use(self, &name)),
            Err(CreateError::NoSource(name)) => {
                Err(invalid(format!("Stream {name} under account {} not found.", self.config.account_id)))
            }
            Err(CreateError::Transform(m)) => Err(invalid(m)),
            Err(e @ (CreateError::Io(_) | CreateError::Stream(_))) => Err(internal(e)),
        }
    }

    /// DeleteDeliveryStream of a cluster's delivery stream: out of the catalog (with its
    /// claims and checkpoints) first, then this node's copy; the other nodes delete theirs
    /// when they read the catalog. Errors: `InternalFailure` when etcd cannot be reached
    /// (nothing changed).
    pub(super) async fn delete_in_cluster(&self, link: &ClusterLink, name: &str) -> Result<bool, ApiError> {
        let catalog = link.catalog_lock.lock().await;
        let Some(spec) = self.delivery_streams.get(name).map(|e| e.spec()) else { return Ok(false) };
        let Some(incarnation) = spec.cluster.as_ref().map(|c| c.incarnation) else { return Ok(false) };
        deliveries::unregister(&link.etcd, &link.cluster, name, incarnation).await.map_err(catalog_error)?;
        let deleted = self.delivery_streams.delete(name).await.map_err(internal)?;
        drop(catalog);
        if let (SourceSpec::DirectPut, Some(stream)) = (&spec.source, spec.source_stream()) {
            // Undelivered records go with the delivery stream, as on AWS.
            if let Err(e) = self.with_cluster_streams(&stream, |streams, name| streams.delete(name)) {
                tracing::error!(stream = %stream, error = %e.message, "the stream of a deleted delivery stream stays");
            }
        }
        Ok(deleted)
    }

    /// Writes what an action changed in this node's copy of the cluster's delivery stream
    /// `name` (from `before` to now) into the catalog's definition: only the members that
    /// changed (tags one by one), so a change made meanwhile on another node is kept. A
    /// change of `VersionId` (UpdateDestination) is written only over the version it
    /// started from: another node's update in between is `ConcurrentModificationException`,
    /// as on AWS. Call it with the catalog lock held. Errors: `InternalFailure` when etcd
    /// cannot be reached. After an error the next catalog pass brings this node's copy
    /// back to the catalog's definition.
    pub(super) async fn publish(
        &self,
        link: &ClusterLink,
        name: &str,
        before: &DeliveryStreamSpec,
    ) -> Result<(), ApiError> {
        let Some(after) = self.delivery_streams.get(name).map(|e| e.spec()) else { return Ok(()) };
        if after.cluster.is_none() || after.cluster != before.cluster || after == *before {
            return Ok(());
        }
        let (was, now) = (to_members(before), to_members(&after));
        let mut conflict = None;
        let written = deliveries::change_spec(&link.etcd, &link.cluster, &after, |s| {
            if after.version != before.version && s.version != before.version {
                conflict = Some(s.version);
                return;
            }
            conflict = None;
            let mut members = to_members(s);
            for (member, value) in &now {
                if member != "tags" && was.get(member) != Some(value) {
                    members.insert(member.clone(), value.clone());
                }
            }
            for member in was.keys().filter(|m| !now.contains_key(*m)) {
                members.remove(member);
            }
            if let Ok(merged) = serde_json::from_value::<DeliveryStreamSpec>(serde_json::Value::Object(members)) {
                let tags = std::mem::take(&mut s.tags);
                *s = merged;
                s.tags = tags;
            }
            for (key, value) in &after.tags {
                if before.tags.get(key) != Some(value) {
                    s.tags.insert(key.clone(), value.clone());
                }
            }
            s.tags.retain(|key, _| !before.tags.contains_key(key) || after.tags.contains_key(key));
        })
        .await
        .map_err(catalog_error)?;
        match (written, conflict) {
            (_, Some(version)) => Err(ApiError::new(
                ErrorKind::ConcurrentModification,
                format!(
                    "Cannot update firehose: {name} since the current version id: {version} and specified version id: {} do not match",
                    before.version
                ),
            )),
            (None, None) => Err(ApiError::new(
                ErrorKind::InternalFailure,
                format!("Firehose {name} is no longer in the cluster's catalog."),
            )),
            (Some(_), None) => Ok(()),
        }
    }

    /// Puts this node's copy of delivery stream `name` back to `before` (its definition
    /// and transform), after a change the catalog did not take.
    pub(super) fn restore(&self, name: &str, before: DeliveryStreamSpec) {
        let Some(entry) = self.delivery_streams.get(name) else { return };
        if entry.spec().destination.processing_configuration != before.destination.processing_configuration {
            if let Ok(t) = self.delivery_streams.resolve_transform(&before) {
                self.delivery_streams.set_transform(&entry, t);
            }
        }
        if let Err(e) = entry.update(|s| *s = before) {
            tracing::error!(delivery_stream = name, error = %e, "cannot undo a change the cluster's catalog did not take");
        }
    }

    /// Brings this node's copies of the cluster's delivery streams in line with the catalog
    /// `records`: makes the missing ones (from the positions the creating node chose),
    /// takes each changed definition (loading its transform again when its processing
    /// changed), and deletes the copies of delivery streams the catalog no longer holds (or
    /// holds under a new incarnation). A node's own delivery stream is never touched.
    /// Call it with the catalog lock held, on a thread that may block.
    pub fn apply_catalog(&self, link: &ClusterLink, records: &[DeliveryRecord]) {
        let of_cluster = |s: &DeliveryStreamSpec| s.cluster.as_ref().is_some_and(|c| c.cluster == link.cluster);
        for entry in self.delivery_streams.list() {
            let spec = entry.spec();
            let current = records.iter().any(|r| r.spec.name == spec.name && r.spec.cluster == spec.cluster);
            if of_cluster(&spec) && !current {
                match link.block_on(self.delivery_streams.delete(&spec.name)) {
                    Ok(_) => {
                        tracing::info!(delivery_stream = %spec.name, "deleted this node's copy of a delivery stream the cluster deleted")
                    }
                    Err(e) => {
                        tracing::error!(delivery_stream = %spec.name, error = %e, "cannot delete the copy of a delivery stream the cluster deleted")
                    }
                }
            }
        }
        for r in records {
            match self.delivery_streams.get(&r.spec.name) {
                Some(entry) if entry.spec().cluster == r.spec.cluster => {
                    let spec = entry.spec();
                    if spec == r.spec {
                        continue;
                    }
                    if spec.destination.processing_configuration != r.spec.destination.processing_configuration {
                        match self.delivery_streams.resolve_transform(&r.spec) {
                            Ok(t) => self.delivery_streams.set_transform(&entry, t),
                            Err(e) => {
                                tracing::error!(delivery_stream = %r.spec.name, error = %e, "the transform of the cluster's definition cannot be loaded; keeping this node's");
                                continue;
                            }
                        }
                    }
                    if let Err(e) = entry.update(|s| *s = r.spec.clone()) {
                        tracing::error!(delivery_stream = %r.spec.name, error = %e, "cannot take the cluster's definition of a delivery stream");
                    }
                }
                Some(entry) if !of_cluster(&entry.spec()) => {
                    tracing::warn!(delivery_stream = %r.spec.name, "this node's own delivery stream has the name of one of the cluster; the node's own is kept");
                }
                Some(_) => {} // an older incarnation: deleted above, made at the next pass
                None if self.deleting(&r.spec.name).is_some() => {}
                None => {
                    let transform = match self.delivery_streams.resolve_transform(&r.spec) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!(delivery_stream = %r.spec.name, error = %e, "cannot load the transform of a delivery stream of the cluster");
                            continue;
                        }
                    };
                    match self.delivery_streams.create_from(r.spec.clone(), transform, &r.start) {
                        Ok(_) => {
                            tracing::info!(delivery_stream = %r.spec.name, "made this node's copy of a delivery stream of the cluster")
                        }
                        Err(e) => {
                            tracing::warn!(delivery_stream = %r.spec.name, error = %e, "cannot make this node's copy of a delivery stream of the cluster yet")
                        }
                    }
                }
            }
        }
    }
}
