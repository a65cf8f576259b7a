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

/// The tag that sets a cluster's stream's replication factor when given to CreateStream:
/// 1 to 7 replicas per shard (fewer when the cluster has fewer nodes); without it, the
/// cluster's `[cluster] replication_factor`. A tag, so every SDK and the CLI can set it; it
/// stays on the stream as given (changing it later moves nothing).
pub const REPLICATION_FACTOR_TAG: &str = "sluice:replication-factor";

/// Whether `action` changes a stream's settings, tags, retention or consumers: what a
/// cluster's catalog carries to every node's copy.
pub(super) fn changes_stream(action: super::Action) -> bool {
    use super::Action as A;
    matches!(
        action,
        A::IncreaseStreamRetentionPeriod
            | A::DecreaseStreamRetentionPeriod
            | A::AddTagsToStream
            | A::RemoveTagsFromStream
            | A::RegisterStreamConsumer
            | A::DeregisterStreamConsumer
            | A::StartStreamEncryption
            | A::StopStreamEncryption
            | A::EnableEnhancedMonitoring
            | A::DisableEnhancedMonitoring
            | A::UpdateMaxRecordSize
            | A::UpdateStreamMode
            | A::UpdateStreamWarmThroughput
            | A::UpdateStreamRecordDistributionStrategy
            | A::TagResource
            | A::UntagResource
            | A::PutResourcePolicy
            | A::DeleteResourcePolicy
    )
}

/// The stream a request names: `StreamName`, or the stream of `StreamARN`, `ResourceARN` or
/// `ConsumerARN` (`arn:aws:kinesis:<region>:<account>:stream/<name>[/consumer/...]`).
pub(super) fn stream_named_by(body: &serde_json::Value) -> Option<String> {
    if let Some(name) = body.get("StreamName").and_then(|n| n.as_str()) {
        return Some(name.to_owned());
    }
    ["StreamARN", "ResourceARN", "ConsumerARN"].iter().find_map(|member| {
        let arn = body.get(*member)?.as_str()?;
        let (_, rest) = arn.split_once(":stream/")?;
        Some(rest.split('/').next()?.to_owned())
    })
}

/// Brings `current` (a settings member as the catalog holds it) the change an action made
/// from `was` to `now`: a list (consumers, shard-level metrics) element by element (keyed
/// by `name` when its elements have one), so what another node added meanwhile stays; any
/// other member whole.
fn merge_member(current: &mut serde_json::Value, was: Option<&serde_json::Value>, now: &serde_json::Value) {
    let key = |v: &serde_json::Value| v.get("name").cloned().unwrap_or_else(|| v.clone());
    let (Some(list), Some(was), Some(now)) = (current.as_array_mut(), was.and_then(|w| w.as_array()), now.as_array())
    else {
        *current = now.clone();
        return;
    };
    let removed: Vec<serde_json::Value> =
        was.iter().filter(|w| !now.iter().any(|n| key(n) == key(w))).map(key).collect();
    list.retain(|c| !removed.contains(&key(c)));
    for n in now {
        if was.iter().find(|w| key(w) == key(n)) == Some(n) {
            continue;
        }
        match list.iter_mut().find(|c| key(c) == key(n)) {
            Some(slot) => *slot = n.clone(),
            None => list.push(n.clone()),
        }
    }
}

/// A cluster's stream as this node's copy holds it, before an action changes it.
#[derive(Debug)]
pub(super) struct StreamState {
    incarnation: u64,
    settings: serde_json::Value,
    tags: BTreeMap<String, String>,
    retention_hours: u32,
}

/// Takes the catalog's settings, tags and retention of `r` into this node's copy `s` where
/// they differ (a change made on another node).
fn take_changes(s: &Stream, r: &StreamRecord) {
    let differs = {
        let m = s.meta();
        m.settings != r.settings
            || m.tags != r.tags
            || (r.retention_hours != 0 && m.retention_hours != r.retention_hours)
    };
    if !differs {
        return;
    }
    let taken = s.update_meta::<_, sluice_engine::error::IoError>(|m| {
        m.settings = r.settings.clone();
        m.tags = r.tags.clone();
        if r.retention_hours != 0 {
            m.retention_hours = r.retention_hours;
        }
        Ok(())
    });
    match taken {
        Ok(()) => tracing::info!(stream = %r.name, "took a change of the cluster's stream made on another node"),
        Err(e) => tracing::error!(stream = %r.name, error = %e, "cannot take a change of the cluster's stream"),
    }
}

impl Kinesis {
    /// This node's settings, tags and retention of the cluster's stream `name` (`None`:
    /// no such stream of the cluster here), before an action changes them.
    pub(super) fn stream_state(&self, link: &ClusterLink, name: &str) -> Option<StreamState> {
        let stream = self.streams.get(name)?;
        let m = stream.meta();
        (m.cluster.as_deref() == Some(link.cluster.as_str())).then(|| StreamState {
            incarnation: stream.incarnation(),
            settings: serde_json::to_value(&m.settings).expect("settings serialize"),
            tags: m.tags.clone(),
            retention_hours: m.retention_hours,
        })
    }

    /// Writes what an action changed in this node's copy of the cluster's stream `name`
    /// (from `before` to now) into the catalog's entry: only the settings, tags and
    /// retention that changed, so a change made meanwhile on another node (not yet in this
    /// node's copy) is kept. Call it with the catalog lock held, on a thread that may
    /// block. Errors: `InternalFailure` when etcd cannot be reached; the next catalog pass
    /// then brings this node's copy back to the catalog's.
    pub(super) fn publish_stream(&self, link: &ClusterLink, name: &str, before: &StreamState) -> Result<(), ApiError> {
        let Some(after) = self.stream_state(link, name).filter(|a| a.incarnation == before.incarnation) else {
            return Ok(());
        };
        let change = catalog::change_record(&link.etcd, &link.cluster, name, before.incarnation, |r| {
            let mut settings = serde_json::to_value(&r.settings).expect("settings serialize");
            if let (Some(now), Some(was), Some(into)) =
                (after.settings.as_object(), before.settings.as_object(), settings.as_object_mut())
            {
                for (field, value) in now {
                    if was.get(field) != Some(value) {
                        match into.get_mut(field) {
                            Some(current) => merge_member(current, was.get(field), value),
                            None => {
                                into.insert(field.clone(), value.clone());
                            }
                        }
                    }
                }
            }
            let mut changed = false;
            if let Ok(merged) = serde_json::from_value(settings) {
                changed |= r.settings != merged;
                r.settings = merged;
            }
            for (key, value) in &after.tags {
                if before.tags.get(key) != Some(value) {
                    changed |= r.tags.insert(key.clone(), value.clone()).as_ref() != Some(value);
                }
            }
            for key in before.tags.keys().filter(|k| !after.tags.contains_key(*k)) {
                changed |= r.tags.remove(key).is_some();
            }
            if after.retention_hours != before.retention_hours && r.retention_hours != after.retention_hours {
                r.retention_hours = after.retention_hours;
                changed = true;
            }
            changed
        });
        link.block_on(change).map_err(catalog_error)?;
        Ok(())
    }

    /// Puts this node's copy of stream `name` back as it was `before` an action whose change
    /// could not be written to the catalog (a retry then changes it again, and writes it).
    pub(super) fn restore_stream(&self, name: &str, before: &StreamState) {
        let Some(stream) = self.streams.get(name).filter(|s| s.incarnation() == before.incarnation) else { return };
        let Ok(settings) = serde_json::from_value(before.settings.clone()) else { return };
        let restored = stream.update_meta::<_, sluice_engine::error::IoError>(|m| {
            m.settings = settings;
            m.tags = before.tags.clone();
            m.retention_hours = before.retention_hours;
            Ok(())
        });
        if let Err(e) = restored {
            tracing::error!(stream = name, error = %e, "cannot undo a change the cluster's catalog did not take");
        }
    }

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
        // Nothing new goes to a node being drained.
        let draining = link.block_on(catalog::draining(&link.etcd, &link.cluster)).map_err(catalog_error)?;
        let mut nodes: Vec<String> = link
            .block_on(crate::cluster::nodes(&link.etcd, &link.cluster))
            .map_err(catalog_error)?
            .into_iter()
            .map(|n| n.node_id)
            .filter(|n| !draining.contains(n))
            .collect();
        if nodes.is_empty() || (!nodes.contains(&link.node_id) && !draining.contains(&link.node_id)) {
            nodes.push(link.node_id.clone());
        }
        let replication_factor = match tags.get(REPLICATION_FACTOR_TAG) {
            None => link.replication_factor,
            Some(v) => v.parse().ok().filter(|r| (1..=7).contains(r)).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!("Tag {REPLICATION_FACTOR_TAG} must be a number of replicas from 1 to 7, not {v}."),
                )
            })?,
        };
        let record = StreamRecord {
            name: name.to_owned(),
            incarnation: sluice_engine::stream::random_u64(),
            created_ms: now_ms,
            shard_count,
            placement: catalog::place(name, shard_count, &nodes, replication_factor),
            settings: settings.clone(),
            tags: tags.clone(),
            retention_hours: 0,
            reshards: Vec::new(),
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
                Some(s) if of_cluster(&s) && s.incarnation() == r.incarnation => {
                    take_changes(&s, r);
                    continue;
                }
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
