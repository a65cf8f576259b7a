//! The cluster's catalog of streams, in etcd: every stream of a cluster, with where its
//! shards' replicas live, which replica leads and under which epoch (docs/cluster.md).
//!
//! A stream is created by entering it here (one create-if-absent transaction, so two nodes
//! creating one name never both succeed) and deleted by removing it; every node then makes
//! its own copy of each stream the catalog holds, with the catalog's incarnation and
//! creation time, and removes the copies of streams the catalog no longer holds
//! ([`crate::api::kinesis::Kinesis::apply_catalog`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_engine::settings::StreamSettings;

use super::etcd::{Etcd, EtcdError};

/// Replicas of each shard when the cluster has that many nodes: 3, as Kinesis stores every
/// record in three availability zones (AWS Kinesis Data Streams FAQ).
pub const REPLICATION_FACTOR_DEFAULT: usize = 3;

/// How often a node reads the catalog to bring its copies in line: 1 s.
pub const CATALOG_POLL: Duration = Duration::from_secs(1);

/// The etcd key prefix of a cluster's streams.
pub fn streams_prefix(cluster: &str) -> String {
    format!("/sluice/{cluster}/streams/")
}

/// Where one shard's replicas live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPlacement {
    /// Node ids holding a replica, the leader first when placed.
    pub replicas: Vec<String>,
    /// The node that assigns the shard's sequence numbers.
    pub leader: String,
    /// The leader's epoch (fencing token): raised by one at each change of leader, so a
    /// replica refuses records from a leader of an older epoch.
    pub epoch: u64,
    /// Every epoch with the sequence number its leader began at, oldest first (epoch 1 at
    /// the shard's start): a replica that held records of an older epoch cuts its log at the
    /// start of the first epoch after its own before following the leader.
    #[serde(default)]
    pub history: Vec<(u64, u64)>,
    /// A replica being moved away (docs/cluster.md, "Rebalancing"): the replica that
    /// replaces it is already among `replicas`; once the leader has caught that one up, this
    /// one leaves `replicas` (and the leadership, if it leads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaving: Option<String>,
    /// The shard is closed by a resharding ([`ReshardRecord`]): its leader appends nothing
    /// more to it, fixes its end once a quorum holds its whole log, and the copies close it
    /// there.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closing: bool,
}

impl ShardPlacement {
    /// Where the epochs after `epoch` began, the lowest: what a replica whose newest records
    /// are of `epoch` keeps below (a later epoch can begin lower than an earlier one when
    /// the earlier one's leader was replaced before any replica held its start). `None`
    /// when no later epoch is recorded.
    pub fn start_after(&self, epoch: u64) -> Option<u64> {
        self.history.iter().filter(|(e, _)| *e > epoch).map(|(_, start)| *start).min()
    }

    /// The epoch of the newest record of a replica that holds the records below `end` and
    /// last took batches of epoch `newest` (Raft's "last log term", for an election): `newest`
    /// once its log reaches where that epoch began, else the epoch whose leader wrote its
    /// last record. A replica that took a new leader's probe without its records yet must
    /// not pass for as up to date as one that holds them.
    pub fn epoch_held(&self, newest: u64, end: u64) -> u64 {
        match self.history.iter().find(|(e, _)| *e == newest) {
            None => newest,
            Some((_, start)) if end >= *start => newest,
            Some(_) => self.history.iter().filter(|(e, s)| *e < newest && *s < end).map(|(e, _)| *e).max().unwrap_or(0),
        }
    }
}

/// A stream as the catalog holds it: the value of `streams/<name>` (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// Stream name.
    pub name: String,
    /// The stream's incarnation, the same on every node (iterators, StreamCreationTimestamp).
    pub incarnation: u64,
    /// Creation time, ms since the Unix epoch (the creating node's clock).
    pub created_ms: u64,
    /// Shards at creation.
    pub shard_count: u32,
    /// Mode, record size limit, encryption, consumers and the rest, as last changed on any
    /// node.
    pub settings: StreamSettings,
    /// Tags, as last changed on any node.
    pub tags: BTreeMap<String, String>,
    /// Retention period, hours, as last changed on any node (0: never changed, the
    /// default's 24).
    #[serde(default)]
    pub retention_hours: u32,
    /// Shard `i`'s replicas at index `i` (the shards resharding made included).
    pub placement: Vec<ShardPlacement>,
    /// SplitShard, MergeShards and UpdateShardCount, oldest first: every copy applies them
    /// in this order once their closed shards' ends are fixed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reshards: Vec<ReshardRecord>,
}

/// One resharding of a cluster's stream, as its catalog entry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReshardRecord {
    /// The steps, applied in turn by every copy (so the new shards get the same indexes).
    pub ops: Vec<sluice_engine::stream::ReshardOp>,
    /// When, ms since the Unix epoch (the shards' closing and creation time on every copy).
    pub at_ms: u64,
    /// How many shards the stream had before: the first new shard's index.
    pub first_new: u32,
    /// The open shards it closes, each with the sequence number past its last record once
    /// its leader has fixed it (`None` until then).
    pub ends: BTreeMap<u32, Option<u64>>,
}

impl ReshardRecord {
    /// Whether every closed shard's end is fixed: the copies may apply it.
    pub fn sealed(&self) -> bool {
        self.ends.values().all(Option::is_some)
    }
}

/// Places `shard_count` shards on `nodes` (node ids, any order), `replication_factor`
/// replicas each (fewer when there are fewer nodes): shard `i` goes to the nodes following
/// a start that moves one node per shard, from an offset taken from the stream's name, so
/// the leaders of a stream's shards, and of different streams, spread over the nodes.
/// Every shard is led by its first replica at epoch 1.
///
/// Panics if `nodes` is empty (a node places only while it is a member itself).
pub fn place(stream_name: &str, shard_count: u32, nodes: &[String], replication_factor: usize) -> Vec<ShardPlacement> {
    assert!(!nodes.is_empty(), "a stream is placed on at least the node that creates it");
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    let r = replication_factor.clamp(1, nodes.len());
    // FNV-1a: stable across versions and platforms, unlike std's hasher.
    let offset =
        stream_name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (0..u64::from(shard_count))
        .map(|i| {
            let start = (offset.wrapping_add(i) % nodes.len() as u64) as usize;
            let replicas: Vec<String> = (0..r).map(|k| nodes[(start + k) % nodes.len()].clone()).collect();
            ShardPlacement {
                leader: replicas[0].clone(),
                replicas,
                epoch: 1,
                history: vec![(1, 0)],
                leaving: None,
                closing: false,
            }
        })
        .collect()
}

/// Enters `record` in the catalog unless its name is taken: `Ok(false)` when it is.
pub async fn register(etcd: &Etcd, cluster: &str, record: &StreamRecord) -> Result<bool, EtcdError> {
    let key = format!("{}{}", streams_prefix(cluster), record.name);
    let value = serde_json::to_vec(record).expect("a stream record serializes");
    Ok(etcd.create(&key, &value, 0).await?.is_none())
}

/// Removes stream `name` from the catalog; `Ok(false)` when it was not there.
pub async fn unregister(etcd: &Etcd, cluster: &str, name: &str) -> Result<bool, EtcdError> {
    etcd.delete(&format!("{}{name}", streams_prefix(cluster))).await
}

/// The etcd key prefix where the live replicas of a shard whose leader is gone report
/// their log ends.
fn ends_prefix(cluster: &str, stream: &str, incarnation: u64, shard: u32) -> String {
    format!("/sluice/{cluster}/ends/{stream}/{incarnation:016x}/{shard}/")
}

/// One shard of one stream incarnation.
#[derive(Debug, Clone, Copy)]
pub struct ShardOf<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Stream incarnation.
    pub incarnation: u64,
    /// Shard index.
    pub shard: u32,
}

/// A replica's log end, reported for an election.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedEnd {
    /// The reporting node.
    pub node: String,
    /// The epoch whose leader is gone.
    pub epoch: u64,
    /// The replica's next sequence number, or where an epoch after its last began if
    /// earlier (what it holds past that a replaced leader wrote).
    pub end: u64,
    /// The newest epoch the replica appended under.
    #[serde(default)]
    pub last_epoch: u64,
    /// The replica may have lost records it acknowledged (its machine restarted since it
    /// last ran, under a durability that does not sync each append, and no leader has
    /// caught it up since): its end may be short of acknowledged records.
    #[serde(default)]
    pub unsure: bool,
    /// When it was reported (ms since the Unix epoch): each live replica reports again at
    /// each catalog pass, and an election counts only reports younger than
    /// [`REPORT_LIFETIME_MS`], made while the reporter's fence still holds (a report left
    /// from an election abandoned when the old leader came back is stale).
    #[serde(default)]
    pub at_ms: u64,
    /// The reporter gave up this shard's leadership for want of a quorum a moment ago: it
    /// wins only with a log longer than every other voter's.
    #[serde(default)]
    pub resting: bool,
}

/// How long a reported end counts in an election: 5 s, half the fence a report raises
/// ([`super::replication::FENCE_LIFETIME`]), so clocks a few seconds apart stay safe.
pub const REPORT_LIFETIME_MS: u64 = 5_000;

/// Reports this replica's log `end` for the election of shard `shard`'s next leader, and
/// returns every end reported for that epoch.
pub async fn report_end(
    etcd: &Etcd,
    cluster: &str,
    of: ShardOf<'_>,
    mine: &ReportedEnd,
) -> Result<Vec<ReportedEnd>, EtcdError> {
    let prefix = ends_prefix(cluster, of.stream, of.incarnation, of.shard);
    let value = serde_json::to_vec(mine).expect("an end serializes");
    let key = format!("{prefix}{}", mine.node);
    let existing = etcd.range_prefix(&key).await?.into_iter().find(|kv| kv.key == key);
    match existing {
        None => {
            etcd.create(&key, &value, 0).await?;
        }
        Some(kv) if kv.value != value => {
            etcd.replace(&key, &value, 0, kv.mod_revision).await?;
        }
        Some(_) => {}
    }
    let kvs = etcd.range_prefix(&prefix).await?;
    Ok(kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice::<ReportedEnd>(&kv.value).ok())
        .filter(|r| r.epoch == mine.epoch)
        .collect())
}

/// Makes `me` the leader of shard `of` at epoch `epoch + 1`, starting at sequence number
/// `start`, if the catalog still shows epoch `epoch` with a leader other than `me` (one
/// transaction on the stream's entry, so two claimants never both win). Returns the
/// updated record when this node won.
pub async fn claim_leadership(
    etcd: &Etcd,
    cluster: &str,
    of: ShardOf<'_>,
    me: &str,
    epoch: u64,
    start: u64,
) -> Result<Option<StreamRecord>, EtcdError> {
    let claimed = change_record(etcd, cluster, of.stream, of.incarnation, |record| {
        let Some(p) = record.placement.get_mut(of.shard as usize) else { return false };
        if p.epoch != epoch || p.leader == me || !p.replicas.iter().any(|r| r == me) {
            return false;
        }
        p.leader = me.to_owned();
        p.epoch = epoch + 1;
        p.history.push((epoch + 1, start));
        true
    })
    .await?;
    if claimed.is_some() {
        let _ = etcd.delete_prefix(&ends_prefix(cluster, of.stream, of.incarnation, of.shard)).await;
    }
    Ok(claimed)
}

/// Ends the move of a replica off shard `of` (its `leaving` node, `leaving`), as its leader
/// `me` under `epoch` does once the replicas left hold the shard's acknowledged records:
/// `leaving` leaves the replicas, and the leadership too when it is `me` (its replicas
/// then elect the next leader). Returns the updated record when it changed.
pub async fn complete_move(
    etcd: &Etcd,
    cluster: &str,
    of: ShardOf<'_>,
    me: &str,
    epoch: u64,
    leaving: &str,
) -> Result<Option<StreamRecord>, EtcdError> {
    let done = change_record(etcd, cluster, of.stream, of.incarnation, |record| {
        let Some(p) = record.placement.get_mut(of.shard as usize) else { return false };
        if p.epoch != epoch || p.leader != me || p.leaving.as_deref() != Some(leaving) {
            return false;
        }
        p.replicas.retain(|n| n != leaving);
        p.leaving = None;
        if leaving == me {
            p.leader = String::new();
        }
        true
    })
    .await?;
    if done.is_some() && leaving == me {
        etcd.delete_prefix(&ends_prefix(cluster, of.stream, of.incarnation, of.shard)).await?;
    }
    Ok(done)
}

/// Changes the catalog's entry of stream `name`'s incarnation `incarnation` by `change`
/// (which says whether it changed anything), in a compare-and-swap on the entry read again
/// whenever another writer won (the entry holds every shard of the stream: other shards
/// changing leaders, other nodes changing settings). Returns the entry as written, or
/// `None` when the catalog no longer holds that incarnation or `change` changed nothing.
/// Errors: etcd's, or five lost swaps in a row.
pub async fn change_record(
    etcd: &Etcd,
    cluster: &str,
    name: &str,
    incarnation: u64,
    mut change: impl FnMut(&mut StreamRecord) -> bool,
) -> Result<Option<StreamRecord>, EtcdError> {
    let key = format!("{}{name}", streams_prefix(cluster));
    for _ in 0..5 {
        let Some(kv) = etcd.range_prefix(&key).await?.into_iter().find(|kv| kv.key == key) else { return Ok(None) };
        let Ok(mut record) = serde_json::from_slice::<StreamRecord>(&kv.value) else { return Ok(None) };
        if record.incarnation != incarnation || !change(&mut record) {
            return Ok(None);
        }
        let value = serde_json::to_vec(&record).expect("a stream record serializes");
        if etcd.put_guarded(&key, kv.mod_revision, &key, &value).await?.is_some() {
            return Ok(Some(record));
        }
    }
    Err(EtcdError::Contended(key))
}

/// Gives up `me`'s leadership of shard `of` at epoch `epoch` (the catalog then shows no
/// leader, and the replicas elect one at the next epoch), if the catalog still shows `me`
/// leading at that epoch. What a node does with the shards it led when it starts again: a
/// crash may have lost records it had not synced, and leading on under the same epoch
/// would give their sequence numbers to other records while a replica still holds the
/// first ones. Returns the updated record when it changed.
/// Errors: etcd's, or the entry kept changing under the transaction (other shards of the
/// stream changing leaders) five times in a row.
pub async fn resign_leadership(
    etcd: &Etcd,
    cluster: &str,
    of: ShardOf<'_>,
    me: &str,
    epoch: u64,
) -> Result<Option<StreamRecord>, EtcdError> {
    let resigned = change_record(etcd, cluster, of.stream, of.incarnation, |record| {
        let Some(p) = record.placement.get_mut(of.shard as usize) else { return false };
        if p.epoch != epoch || p.leader != me {
            return false;
        }
        p.leader = String::new();
        true
    })
    .await?;
    if resigned.is_some() {
        // The election this starts must not count ends reported for an earlier one.
        etcd.delete_prefix(&ends_prefix(cluster, of.stream, of.incarnation, of.shard)).await?;
    }
    Ok(resigned)
}

/// Every stream of the catalog. A value that does not read as a record is skipped and
/// logged (written by a newer version, or by hand).
pub async fn records(etcd: &Etcd, cluster: &str) -> Result<Vec<StreamRecord>, EtcdError> {
    let kvs = etcd.range_prefix(&streams_prefix(cluster)).await?;
    Ok(kvs
        .iter()
        .filter_map(|kv| match serde_json::from_slice(&kv.value) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "a catalog entry does not read as a stream; skipped");
                None
            }
        })
        .collect())
}

/// The etcd key prefix of the nodes being drained (`sluice cluster drain`).
fn draining_prefix(cluster: &str) -> String {
    format!("/sluice/{cluster}/draining/")
}

/// Marks node `node` as being drained (`drain`) or not: the cluster moves every replica
/// it holds to other nodes and places nothing new on it.
pub async fn set_draining(etcd: &Etcd, cluster: &str, node: &str, drain: bool) -> Result<(), EtcdError> {
    let key = format!("{}{node}", draining_prefix(cluster));
    if drain {
        etcd.put_guarded(&key, 0, &key, b"1").await.map(|_| ())
    } else {
        etcd.delete(&key).await.map(|_| ())
    }
}

/// The nodes being drained, by id.
pub async fn draining(etcd: &Etcd, cluster: &str) -> Result<Vec<String>, EtcdError> {
    let prefix = draining_prefix(cluster);
    Ok(etcd
        .range_prefix(&prefix)
        .await?
        .into_iter()
        .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_owned))
        .collect())
}

/// The etcd key of a cluster's token, which nodes present to each other.
fn token_key(cluster: &str) -> String {
    format!("/sluice/{cluster}/token")
}

/// The secret kept at `key`, made (64 random hex digits) by the first node that asks.
async fn shared_secret(etcd: &Etcd, key: &str) -> Result<String, EtcdError> {
    let r = || sluice_engine::stream::random_u64();
    let fresh = format!("{:016x}{:016x}{:016x}{:016x}", r(), r(), r(), r());
    Ok(match etcd.create(key, fresh.as_bytes(), 0).await? {
        None => fresh,
        Some(existing) => String::from_utf8_lossy(&existing.value).into_owned(),
    })
}

/// Whether the machine restarted since the node's copies were last known whole: the
/// kernel's boot id (`/proc/sys/kernel/random/boot_id`; `SLUICE_BOOT_ID` when set, which
/// tests use to stand for a reboot) differs from the one kept in
/// `<data_dir>/cluster-boot-id`. A process that was killed loses nothing the kernel holds;
/// a machine that restarted may have lost every record not yet synced. The file is written
/// at a first start, and after a restart only once a leader has caught up every copy
/// ([`super::replication::Peers::settle_restart`]): a process restarted again meanwhile
/// is still unsure. `None` when not restarted (or no boot id is known); else the file and
/// the boot id to write then.
fn machine_restarted(data_dir: &std::path::Path) -> Option<(std::path::PathBuf, String)> {
    let now = std::env::var("SLUICE_BOOT_ID")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok())
        .map(|s| s.trim().to_owned());
    let now = now.filter(|s| !s.is_empty())?;
    let path = data_dir.join("cluster-boot-id");
    match std::fs::read_to_string(&path).ok().map(|s| s.trim().to_owned()) {
        Some(before) if before == now => None,
        Some(_) => Some((path, now)),
        None => {
            if let Err(e) = sluice_engine::stream::write_atomically(&path, now.as_bytes()) {
                tracing::warn!(path = %path.display(), error = %e, "cannot keep the machine's boot id");
            }
            None
        }
    }
}

/// This node's link to its cluster, for the API's actions: etcd, names, the replication
/// channel, the placements of the catalog's shards, and a lock that keeps a create or
/// delete from crossing a catalog pass of this node.
#[derive(Debug)]
pub struct ClusterLink {
    /// The cluster's etcd.
    pub etcd: Etcd,
    /// The cluster's name (its etcd key prefix).
    pub cluster: String,
    /// This node's id.
    pub node_id: String,
    /// Replicas per shard of a new stream.
    pub replication_factor: usize,
    /// Held by a create or delete of this node and by each catalog pass: a pass that read
    /// the catalog before a create entered a stream must not remove the stream's copy.
    pub catalog_lock: Arc<tokio::sync::Mutex<()>>,
    /// The key that signs shard iterators, the same on every node, so an iterator one node
    /// issued is taken by any other (clients behind a load balancer).
    pub iterator_secret: Vec<u8>,
    /// Requests to the other nodes, and the epochs this node has seen.
    pub peers: Arc<super::replication::Peers>,
    /// Set once this node has given up the leaderships it held before it started
    /// ([`resign_leadership`]); until then it leads nothing.
    pub resigned: std::sync::atomic::AtomicBool,
    /// (stream name, incarnation) → its shards' placements, from the last catalog read.
    placements: std::sync::RwLock<HashMap<(String, u64), Vec<ShardPlacement>>>,
    runtime: tokio::runtime::Handle,
}

impl ClusterLink {
    /// The link `cfg` describes, whose calls run on `runtime`: reads the cluster's token and
    /// iterator key from etcd, making them if this is the cluster's first node. The epochs
    /// this node appends under are kept in `<data_dir>/cluster-epochs.json`.
    ///
    /// Errors: etcd cannot be reached, or the epochs file cannot be read.
    pub async fn connect(
        cfg: &crate::config::ClusterConfig,
        data_dir: &std::path::Path,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, String> {
        let etcd = Etcd::new(&cfg.etcd_endpoints);
        let token = shared_secret(&etcd, &token_key(&cfg.name)).await.map_err(|e| e.to_string())?;
        let iterator_secret = shared_secret(&etcd, &format!("/sluice/{}/iterator-secret", cfg.name))
            .await
            .map_err(|e| e.to_string())?
            .into_bytes();
        let peers = super::replication::Peers::new(token, Some(data_dir.join("cluster-epochs.json")))?;
        if let Some(boot) = machine_restarted(data_dir) {
            tracing::warn!("this machine restarted since the node's copies were last known whole: records it had not synced may be lost, so it takes part in no election until a leader has caught it up (or every replica takes part)");
            peers.set_machine_restarted(boot);
        }
        Ok(Self {
            iterator_secret,
            etcd,
            cluster: cfg.name.clone(),
            node_id: cfg.node_id.clone(),
            replication_factor: cfg.replication_factor,
            catalog_lock: Arc::new(tokio::sync::Mutex::new(())),
            peers: Arc::new(peers),
            resigned: std::sync::atomic::AtomicBool::new(false),
            placements: std::sync::RwLock::default(),
            runtime,
        })
    }

    /// The runtime the node's requests run on.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Runs `f` to completion from an action's blocking thread (never from async code).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The placement of shard `shard` of stream `name`'s incarnation `incarnation`, as the
    /// catalog last read (or this node's create) said.
    pub fn placement(&self, name: &str, incarnation: u64, shard: u32) -> Option<ShardPlacement> {
        let placements = self.placements.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        placements.get(&(name.to_owned(), incarnation))?.get(shard as usize).cloned()
    }

    /// Remembers the placements of `records` (all of them: a stream left out is forgotten
    /// unless `merge`).
    pub fn set_placements(&self, records: &[StreamRecord], merge: bool) {
        let mut placements = self.placements.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !merge {
            placements.clear();
        }
        for r in records {
            for (shard, p) in r.placement.iter().enumerate() {
                self.peers.set_replicas(r.incarnation, shard as u32, &p.replicas);
            }
            placements.insert((r.name.clone(), r.incarnation), r.placement.clone());
        }
    }
}

/// Reads the catalog and the membership every [`CATALOG_POLL`] and hands them to `apply`
/// (the records and the live node ids; on a blocking thread, with the catalog lock held)
/// until `stop` turns true. A failed read changes nothing: a
/// copy is deleted only after a catalog that was read lacks its stream.
pub async fn keep_copies<F>(link: Arc<ClusterLink>, apply: F, mut stop: tokio::sync::watch::Receiver<bool>)
where
    F: Fn(&[StreamRecord], &[String]) + Send + Sync + 'static,
{
    let apply = Arc::new(apply);
    let mut failing = false;
    loop {
        {
            let guard = link.catalog_lock.clone().lock_owned().await;
            let read = async {
                let nodes = super::membership::nodes(&link.etcd, &link.cluster).await?;
                Ok::<_, EtcdError>((nodes, records(&link.etcd, &link.cluster).await?))
            };
            match read.await {
                Ok((nodes, records)) => {
                    let live: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).collect();
                    link.peers.set_addresses(nodes.into_iter().map(|n| (n.node_id, n.address)).collect());
                    link.set_placements(&records, false);
                    if std::mem::take(&mut failing) {
                        tracing::info!("the cluster's catalog can be read again");
                    }
                    let apply = apply.clone();
                    let done = tokio::task::spawn_blocking(move || {
                        apply(&records, &live);
                        drop(guard);
                    });
                    if let Err(e) = done.await {
                        tracing::error!(error = %e, "applying the cluster's catalog failed");
                    }
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cannot read the cluster's catalog; this node's copies stay as they are");
                }
                Err(_) => {}
            }
        }
        tokio::select! {
            () = tokio::time::sleep(CATALOG_POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn shards_get_distinct_replicas_and_leaders_spread_over_the_nodes() {
        let nodes = ids(5);
        let placed = place("clicks", 10, &nodes, 3);
        assert_eq!(placed.len(), 10);
        for p in &placed {
            let mut r = p.replicas.clone();
            r.sort();
            r.dedup();
            assert_eq!(r.len(), 3, "{p:?}");
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.epoch, 1);
        }
        // Ten shards on five nodes: each node leads two.
        for n in &nodes {
            assert_eq!(placed.iter().filter(|p| &p.leader == n).count(), 2, "{n}");
        }
        // The order the nodes are given in does not matter.
        let mut reversed = nodes.clone();
        reversed.reverse();
        assert_eq!(place("clicks", 10, &reversed, 3), placed);
    }

    #[test]
    fn fewer_nodes_than_replicas_place_one_replica_per_node() {
        let placed = place("s", 4, &ids(2), 3);
        assert!(placed.iter().all(|p| p.replicas.len() == 2));
        let placed = place("s", 1, &ids(1), 3);
        assert_eq!(placed[0].replicas, ["n1"]);
    }

    #[test]
    fn a_replica_counts_the_epoch_of_its_newest_record_and_cuts_at_the_lowest_later_start() {
        // Epoch 2's leader began at 100 and was replaced before any replica held that far;
        // epoch 3 began at 50.
        let p = ShardPlacement {
            replicas: ids(3),
            leader: "n2".into(),
            epoch: 3,
            history: vec![(1, 0), (2, 100), (3, 50)],
            leaving: None,
            closing: false,
        };
        assert_eq!(p.start_after(1), Some(50));
        assert_eq!(p.start_after(2), Some(50));
        assert_eq!(p.start_after(3), None);
        // Took epoch 2's probe but holds epoch 1's records only.
        assert_eq!(p.epoch_held(2, 50), 1);
        assert_eq!(p.epoch_held(2, 100), 2);
        assert_eq!(p.epoch_held(3, 50), 3);
        assert_eq!(p.epoch_held(1, 0), 1);
        assert_eq!(p.epoch_held(2, 0), 0);
        // A placement without history (written before epochs had one) keeps the epoch.
        let old = ShardPlacement { history: Vec::new(), ..p };
        assert_eq!(old.epoch_held(2, 10), 2);
    }

    #[test]
    fn a_record_round_trips_through_its_json() {
        let record = StreamRecord {
            name: "s".into(),
            incarnation: u64::MAX - 7,
            created_ms: 1_700_000_000_123,
            shard_count: 2,
            settings: StreamSettings::default(),
            tags: BTreeMap::from([("team".into(), "data".into())]),
            retention_hours: 48,
            placement: place("s", 2, &ids(3), 3),
            reshards: vec![ReshardRecord {
                ops: vec![
                    sluice_engine::stream::ReshardOp::split(0, u128::MAX / 4),
                    sluice_engine::stream::ReshardOp::Merge { shard: 3, adjacent: 1 },
                ],
                at_ms: 1_700_000_000_456,
                first_new: 2,
                ends: BTreeMap::from([(0, Some(17)), (1, None)]),
            }],
        };
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(serde_json::from_slice::<StreamRecord>(&json).unwrap(), record);
    }
}
