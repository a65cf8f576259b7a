//! Streams of a cluster (docs/cluster.md): CreateStream and DeleteStream go through the
//! cluster's catalog in etcd, and each node brings its copies of the streams in line with
//! the catalog.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_engine::settings::StreamSettings;
use sluice_engine::stream::{Stream, StreamStatus};
use sluice_engine::streams::CreateStreamError;

use super::{ApiError, ErrorKind, Kinesis};
use crate::cluster::catalog::{self, ClusterLink, StreamRecord};
use crate::cluster::EtcdError;

/// etcd out of reach or refusing: the action cannot know the catalog, so it changes nothing
/// and answers a failure the SDKs retry.
fn catalog_error(e: EtcdError) -> ApiError {
    ApiError::new(ErrorKind::InternalFailure, format!("the cluster's catalog cannot be reached: {e}"))
}

/// Resharding a cluster's stream would change one node's copy only: refused until the
/// catalog carries shard changes.
pub(super) fn refuse_reshard_in_cluster(stream: &Stream) -> Result<(), ApiError> {
    match &stream.meta().cluster {
        None => Ok(()),
        Some(cluster) => Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!(
                "Stream {} belongs to Sluice cluster {cluster}, whose streams cannot be resharded yet (docs/cluster.md).",
                stream.meta().name
            ),
        )),
    }
}

impl Kinesis {
    /// CreateStream in a cluster: places the shards on the live nodes, enters the stream in
    /// the catalog (refused there when the name is taken, as [`CreateStreamError::Exists`]),
    /// then makes this node's copy; the other nodes make theirs from the catalog. A copy
    /// that cannot be made here takes the stream out of the catalog again.
    ///
    /// Errors: `InternalFailure` when etcd cannot be reached (nothing changed).
    pub(super) fn create_in_cluster(
        &self,
        link: &ClusterLink,
        name: &str,
        shard_count: u32,
        now_ms: u64,
        settings: StreamSettings,
        tags: BTreeMap<String, String>,
    ) -> Result<Result<Arc<Stream>, CreateStreamError>, ApiError> {
        let _catalog = link.catalog_lock.blocking_lock();
        if self.streams.get(name).is_some() {
            return Ok(Err(CreateStreamError::Exists(name.to_owned())));
        }
        let mut nodes: Vec<String> = link
            .block_on(crate::cluster::nodes(&link.etcd, &link.cluster))
            .map_err(catalog_error)?
            .into_iter()
            .map(|n| n.node_id)
            .collect();
        if !nodes.contains(&link.node_id) {
            nodes.push(link.node_id.clone());
        }
        let record = StreamRecord {
            name: name.to_owned(),
            incarnation: sluice_engine::stream::random_u64(),
            created_ms: now_ms,
            shard_count,
            placement: catalog::place(name, shard_count, &nodes, link.replication_factor),
            settings: settings.clone(),
            tags: tags.clone(),
        };
        if !link.block_on(catalog::register(&link.etcd, &link.cluster, &record)).map_err(catalog_error)? {
            return Ok(Err(CreateStreamError::Exists(name.to_owned())));
        }
        link.set_placements(std::slice::from_ref(&record), true);
        let made = self.streams.create_incarnation(
            name,
            record.incarnation,
            shard_count,
            now_ms,
            settings,
            tags,
            &link.cluster,
        );
        if made.is_err() {
            if let Err(e) = link.block_on(catalog::unregister(&link.etcd, &link.cluster, name)) {
                tracing::error!(stream = name, error = %e, "a stream this node could not make stays in the cluster's catalog");
            }
        }
        Ok(made)
    }

    /// DeleteStream of a cluster's stream: takes it out of the catalog, then deletes this
    /// node's copy; the other nodes delete theirs when they read the catalog.
    ///
    /// Errors: `InternalFailure` when etcd cannot be reached (nothing changed).
    pub(super) fn delete_in_cluster(&self, link: &ClusterLink, stream: Arc<Stream>) -> Result<(), ApiError> {
        let _catalog = link.catalog_lock.blocking_lock();
        let name = stream.meta().name.clone();
        link.block_on(catalog::unregister(&link.etcd, &link.cluster, &name)).map_err(catalog_error)?;
        self.delete(stream)
    }

    /// Brings this node's copies in line with the catalog `records` of `cluster`: makes a
    /// copy of each stream it lacks (the catalog's incarnation, creation time, shards,
    /// settings and tags), replaces a copy of an older incarnation, and deletes the copies of
    /// the cluster's streams the catalog no longer holds. A node's own stream (made before
    /// it joined) is never touched; one that has a catalog stream's name is logged.
    /// Call it with the cluster's catalog lock held, on a thread that may block.
    pub fn apply_catalog(&self, cluster: &str, records: &[StreamRecord]) {
        let now = self.clock.now_ms();
        let of_cluster = |s: &Stream| s.meta().cluster.as_deref() == Some(cluster);
        for s in self.streams.list() {
            let current = records.iter().any(|r| r.name == s.meta().name && r.incarnation == s.incarnation());
            if of_cluster(&s) && !current {
                let name = s.meta().name.clone();
                match self.delete(s) {
                    Ok(()) => {
                        tracing::info!(stream = %name, "deleted this node's copy of a stream the cluster deleted")
                    }
                    Err(e) => {
                        tracing::error!(stream = %name, error = %e.message, "cannot delete the copy of a stream the cluster deleted")
                    }
                }
            }
        }
        for r in records {
            match self.streams.get(&r.name) {
                Some(s) if of_cluster(&s) => continue,
                Some(_) => {
                    tracing::warn!(stream = %r.name, "this node's own stream has the name of a stream of the cluster; the node's own is kept");
                    continue;
                }
                None if self.is_deleting(&r.name, now) => continue,
                None => {}
            }
            let made = self.streams.create_incarnation(
                &r.name,
                r.incarnation,
                r.shard_count,
                r.created_ms,
                r.settings.clone(),
                r.tags.clone(),
                cluster,
            );
            match made {
                Ok(stream) => {
                    stream.begin(StreamStatus::Creating, r.created_ms + self.config.stream_transition_ms);
                    tracing::info!(stream = %r.name, shards = r.shard_count, "made this node's copy of a stream of the cluster");
                }
                Err(e) => {
                    tracing::error!(stream = %r.name, error = %e, "cannot make this node's copy of a stream of the cluster")
                }
            }
        }
    }
}
