//! Delivery streams of a cluster, in etcd (docs/cluster.md): the catalog entry of each
//! (its definition and where its source shards started), and per source shard the claim of
//! the node that delivers it and its checkpoint ([`sluice_firehose::coordination`]).
//!
//! Keys, under `/sluice/<cluster>/`:
//! - `delivery-streams/<name>`: a [`DeliveryRecord`] (JSON);
//! - `deliveries/<name>/<incarnation, 16 hex digits>/claim/<shard index>`: the id of the node
//!   delivering the shard;
//! - `deliveries/<name>/<incarnation>/checkpoint/<shard index>`: a [`StoredCheckpoint`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sluice_firehose::checkpoint::ShardCheckpoint;
use sluice_firehose::coordination::{BoxFuture, Claim, Coordination};
use sluice_firehose::schema::FieldSpec;
use sluice_firehose::spec::DeliveryStreamSpec;

use super::catalog::ClusterLink;
use super::etcd::{Etcd, EtcdError};

/// A delivery stream as the catalog holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Its definition; `spec.cluster` holds the cluster and the incarnation.
    pub spec: DeliveryStreamSpec,
    /// Where delivery of each source shard began (shard index → first sequence number):
    /// LATEST on the node that created it, the same for every node's copy.
    pub start: BTreeMap<u32, u64>,
}

impl DeliveryRecord {
    /// The incarnation of the delivery stream (0 when the definition lacks one).
    pub fn incarnation(&self) -> u64 {
        self.spec.cluster.as_ref().map_or(0, |c| c.incarnation)
    }
}

/// A source shard's checkpoint as etcd holds it, with the incarnation of the source stream
/// it counts in (a source deleted and made again starts over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCheckpoint {
    /// The checkpoint.
    pub checkpoint: ShardCheckpoint,
    /// The source stream's incarnation.
    pub source_incarnation: u64,
}

fn records_prefix(cluster: &str) -> String {
    format!("/sluice/{cluster}/delivery-streams/")
}

fn record_key(cluster: &str, name: &str) -> String {
    format!("{}{name}", records_prefix(cluster))
}

/// The prefix of every claim and checkpoint of delivery stream `name` (all incarnations).
fn state_prefix(cluster: &str, name: &str) -> String {
    format!("/sluice/{cluster}/deliveries/{name}/")
}

fn incarnation_prefix(cluster: &str, name: &str, incarnation: u64) -> String {
    format!("{}{incarnation:016x}/", state_prefix(cluster, name))
}

/// Enters `record` in the catalog unless its name is taken: `Ok(false)` when it is.
pub async fn register(etcd: &Etcd, cluster: &str, record: &DeliveryRecord) -> Result<bool, EtcdError> {
    let value = serde_json::to_vec(record).expect("a delivery record serializes");
    Ok(etcd.create(&record_key(cluster, &record.spec.name), &value, 0).await?.is_none())
}

/// Removes incarnation `incarnation` of delivery stream `name` from the catalog, then its
/// claims and checkpoints (a newer incarnation's stay).
pub async fn unregister(etcd: &Etcd, cluster: &str, name: &str, incarnation: u64) -> Result<(), EtcdError> {
    let key = record_key(cluster, name);
    if let Some(kv) = etcd.range_prefix(&key).await?.into_iter().find(|kv| kv.key == key) {
        let current = serde_json::from_slice::<DeliveryRecord>(&kv.value).map_or(0, |r| r.incarnation());
        if current == incarnation {
            etcd.delete_guarded(&key, kv.mod_revision).await?;
        }
    }
    etcd.delete_prefix(&incarnation_prefix(cluster, name, incarnation)).await.map(|_| ())
}

/// Every delivery stream of the catalog. A value that does not read as one is skipped and
/// logged.
pub async fn records(etcd: &Etcd, cluster: &str) -> Result<Vec<DeliveryRecord>, EtcdError> {
    Ok(etcd
        .range_prefix(&records_prefix(cluster))
        .await?
        .iter()
        .filter_map(|kv| match serde_json::from_slice(&kv.value) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "a catalog entry does not read as a delivery stream; skipped");
                None
            }
        })
        .collect())
}

/// Changes the catalog's definition of `spec`'s delivery stream (the same incarnation) by
/// `change`, in a compare-and-swap retried while other writers win: the definition as
/// written, or `None` when the catalog no longer holds that incarnation.
/// Errors: etcd's, or five lost swaps in a row.
pub async fn change_spec(
    etcd: &Etcd,
    cluster: &str,
    spec: &DeliveryStreamSpec,
    mut change: impl FnMut(&mut DeliveryStreamSpec),
) -> Result<Option<DeliveryStreamSpec>, EtcdError> {
    let key = record_key(cluster, &spec.name);
    for _ in 0..5 {
        let Some(kv) = etcd.range_prefix(&key).await?.into_iter().find(|kv| kv.key == key) else { return Ok(None) };
        let Ok(mut record) = serde_json::from_slice::<DeliveryRecord>(&kv.value) else { return Ok(None) };
        if record.spec.cluster != spec.cluster {
            return Ok(None);
        }
        let before = record.spec.clone();
        change(&mut record.spec);
        if record.spec == before {
            return Ok(Some(before));
        }
        let value = serde_json::to_vec(&record).expect("a delivery record serializes");
        if etcd.put_guarded(&key, kv.mod_revision, &key, &value).await?.is_some() {
            return Ok(Some(record.spec));
        }
    }
    Err(EtcdError::Contended(key))
}

/// [`Coordination`] over etcd: a source shard is claimed by the node that leads it (from
/// the catalog's placements), and taken over when its holder has left the cluster.
#[derive(Debug)]
pub struct EtcdCoordination {
    link: Arc<ClusterLink>,
    /// The live nodes, as the last catalog pass read them (`None` before the first: no
    /// claim is taken over until the membership is known).
    live: RwLock<Option<Vec<String>>>,
}

impl EtcdCoordination {
    /// Coordination through `link`'s etcd.
    pub fn new(link: Arc<ClusterLink>) -> Self {
        Self { link, live: RwLock::new(None) }
    }

    /// Remembers the live nodes (each catalog pass).
    pub fn set_live(&self, live: &[String]) {
        *self.live.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(live.to_vec());
    }

    /// Whether `node` is a live member (taken to be while the membership is not known yet).
    fn is_live(&self, node: &str) -> bool {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_none_or(|l| l.iter().any(|n| n == node))
    }

    fn prefix(&self, spec: &DeliveryStreamSpec) -> Option<String> {
        let c = spec.cluster.as_ref()?;
        Some(incarnation_prefix(&self.link.cluster, &spec.name, c.incarnation))
    }

    async fn claim_shards(
        &self,
        spec: &DeliveryStreamSpec,
        source_incarnation: u64,
        shards: &[u32],
    ) -> Result<BTreeMap<u32, Claim>, EtcdError> {
        let mut held = BTreeMap::new();
        let (Some(prefix), Some(stream_name)) = (self.prefix(spec), spec.source_stream()) else {
            return Ok(held);
        };
        // A delivery stream deleted (or made again) is claimed no more: its worker stops
        // at this node's next pass, and claims made meanwhile would outlive it.
        let key = record_key(&self.link.cluster, &spec.name);
        let entry = self.link.etcd.range_prefix(&key).await?.into_iter().find(|kv| kv.key == key);
        let current = entry.and_then(|kv| serde_json::from_slice::<DeliveryRecord>(&kv.value).ok());
        if current.is_none_or(|r| r.spec.cluster != spec.cluster) {
            return Ok(held);
        }
        let kvs: HashMap<String, super::etcd::KeyValue> =
            self.link.etcd.range_prefix(&prefix).await?.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
        let me = self.link.node_id.as_str();
        let stored = |kv: &super::etcd::KeyValue| {
            serde_json::from_slice::<StoredCheckpoint>(&kv.value)
                .ok()
                .filter(|c| c.source_incarnation == source_incarnation)
                .map(|c| c.checkpoint)
        };
        for &shard in shards {
            let claim_key = format!("{prefix}claim/{shard}");
            let checkpoint_key = format!("{prefix}checkpoint/{shard}");
            let mut checkpoint = kvs.get(&checkpoint_key).and_then(stored);
            let existing = kvs.get(&claim_key);
            let placement = self.link.placement(&stream_name, source_incarnation, shard);
            // A claim is held by a replica of the shard: a node whose replica moved away
            // reads a copy that no longer grows.
            let replica =
                |node: &[u8]| placement.as_ref().is_some_and(|p| p.replicas.iter().any(|r| r.as_bytes() == node));
            let token = match existing {
                Some(kv) if kv.value == me.as_bytes() && replica(&kv.value) => Some(kv.mod_revision),
                Some(kv) if kv.value == me.as_bytes() => {
                    self.link.etcd.delete_guarded(&claim_key, kv.mod_revision).await?;
                    None
                }
                Some(kv) if self.is_live(&String::from_utf8_lossy(&kv.value)) && replica(&kv.value) => None,
                _ => {
                    // Free, or its holder left: the shard's leader reads the freshest copy.
                    if placement.as_ref().is_none_or(|p| p.leader != me) {
                        continue;
                    }
                    let at = existing.map_or(0, |kv| kv.mod_revision);
                    let taken = self.link.etcd.put_guarded(&claim_key, at, &claim_key, me.as_bytes()).await?;
                    if taken.is_some() {
                        // The holder may have moved the checkpoint after it was read above
                        // and before the claim changed hands; from now on it cannot.
                        let now = self.link.etcd.range_prefix(&checkpoint_key).await?;
                        checkpoint = now.iter().find(|kv| kv.key == checkpoint_key).and_then(stored);
                    }
                    taken
                }
            };
            if let Some(token) = token {
                held.insert(shard, Claim { token, checkpoint });
            }
        }
        Ok(held)
    }
}

impl Coordination for EtcdCoordination {
    fn claim<'a>(
        &'a self,
        spec: &'a DeliveryStreamSpec,
        source_incarnation: u64,
        shards: &'a [u32],
    ) -> BoxFuture<'a, Result<BTreeMap<u32, Claim>, String>> {
        Box::pin(async move { self.claim_shards(spec, source_incarnation, shards).await.map_err(|e| e.to_string()) })
    }

    fn save<'a>(
        &'a self,
        spec: &'a DeliveryStreamSpec,
        shard: u32,
        token: i64,
        source_incarnation: u64,
        checkpoint: ShardCheckpoint,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let Some(prefix) = self.prefix(spec) else { return Ok(false) };
            let value = serde_json::to_vec(&StoredCheckpoint { checkpoint, source_incarnation })
                .expect("a checkpoint serializes");
            let claim_key = format!("{prefix}claim/{shard}");
            let written = self
                .link
                .etcd
                .put_guarded(&claim_key, token, &format!("{prefix}checkpoint/{shard}"), &value)
                .await
                .map_err(|e| e.to_string())?;
            Ok(written.is_some())
        })
    }

    fn fix_schema<'a>(
        &'a self,
        spec: &'a DeliveryStreamSpec,
        inferred: Vec<FieldSpec>,
    ) -> BoxFuture<'a, Result<Vec<FieldSpec>, String>> {
        Box::pin(async move {
            let written = change_spec(&self.link.etcd, &self.link.cluster, spec, |s| {
                if s.schema.is_none() {
                    s.schema = Some(inferred.clone());
                }
            })
            .await
            .map_err(|e| e.to_string())?;
            written
                .and_then(|s| s.schema)
                .ok_or_else(|| format!("delivery stream {} is no longer in the cluster's catalog", spec.name))
        })
    }
}
