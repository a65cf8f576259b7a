//! The replication channel between nodes (docs/cluster.md, "Write path"): a shard's leader
//! ships each appended batch to the shard's other replicas and answers once a quorum holds
//! it; a node that is not a shard's leader forwards that shard's records to the leader.
//!
//! Requests go over HTTP on the nodes' API port, to `/_sluice/cluster/replicate` and
//! `/_sluice/cluster/append`, with the cluster's token (a random secret kept in etcd) in
//! [`TOKEN_HEADER`]; their bodies are [`super::wire::Batch`]es. A replica answers:
//! - 200 `{"next": n}`: it holds every record below `n`;
//! - 409 `{"next": n}`: it holds records only below `n`, short of the batch's first: the
//!   leader sends it the records from `n` first (catch-up from the leader's log);
//! - 412 `{"epoch": e}`: it has seen a leader of a newer epoch, so this one is fenced;
//! - 404: it has no copy of that stream incarnation yet (made within a catalog pass).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use sluice_engine::{ReadLimits, ShardLog};

use super::catalog::ShardPlacement;
use super::wire::{Batch, WireRecord};

/// The header that carries the cluster's token on requests between nodes.
pub const TOKEN_HEADER: &str = "x-sluice-cluster-token";

/// Path of a leader's batch for a replica.
pub const REPLICATE_PATH: &str = "/_sluice/cluster/replicate";

/// Path of records forwarded to a shard's leader.
pub const APPEND_PATH: &str = "/_sluice/cluster/append";

/// Where a node that holds no replica of a shard sends a read of it (GetShardIterator,
/// GetRecords) to run on a node that does: a JSON body `{"action", "body"}`, answered with
/// the action's JSON answer (200) or its error (`{"__type", "message"}`, the error's status).
pub const READ_PATH: &str = "/_sluice/cluster/read";

/// How long a leader's requests to enough of its shard's replicas keep failing (no answer
/// in between) before it gives the leadership up, the others and itself making no quorum:
/// 10 s (five times a peer request's timeout; a leader probes a replica that missed a
/// batch at each catalog pass).
pub const STEP_DOWN_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a node that stepped down stands back in the shard's elections: 30 s.
pub const REST_AFTER_STEP_DOWN: std::time::Duration = std::time::Duration::from_secs(30);

/// How long one request to another node may take: 2 s. A replica that does not answer in
/// time does not count toward the quorum.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// A shard of a stream incarnation: (incarnation, shard index).
type ShardKey = (u64, u32);

/// How long a replica that reported its end for an election refuses the replaced leader:
/// 10 s, several catalog passes.
pub const FENCE_LIFETIME: Duration = Duration::from_secs(10);

/// Records per catch-up request: 1,000 (bounded also by the read's bytes).
const CATCH_UP_RECORDS: usize = 1_000;

/// Bytes per catch-up request at most: 4 MiB.
const CATCH_UP_BYTES: usize = 4 << 20;

/// What a replica answers (JSON).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ReplicaAnswer {
    /// The replica holds every record below this.
    #[serde(default)]
    pub next: u64,
    /// The newest epoch the replica has seen (when it fences the sender).
    #[serde(default)]
    pub epoch: u64,
}

/// What a leader answers a forward (JSON): where the records landed, or the error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendAnswer {
    /// Sequence number of the first record.
    #[serde(default)]
    pub first: u64,
    /// Arrival time of the records, ms.
    #[serde(default)]
    pub arrival_timestamp_ms: u64,
    /// The error's Kinesis code, when the records were not appended.
    #[serde(default)]
    pub code: Option<String>,
    /// The error's message.
    #[serde(default)]
    pub message: Option<String>,
}

/// A batch on its way to the replicas: owned, so replicas that answer after the quorum
/// still get it.
struct Shipment {
    body: Bytes,
    stream: String,
    incarnation: u64,
    shard: u32,
    epoch: u64,
    first: u64,
    end: u64,
    log: Arc<ShardLog>,
    /// The shard's replicas, the leader included: what its high watermark counts.
    replicas: Arc<[String]>,
    /// This node, the shard's leader.
    leader: String,
}

impl Shipment {
    /// `batch`, encoded, on its way from `leader` to the other `replicas` of its shard,
    /// whose leader's log is `log`.
    fn new(batch: &Batch<'_>, log: Arc<ShardLog>, replicas: Arc<[String]>, leader: String) -> Self {
        Self {
            body: Bytes::from(batch.encode()),
            stream: batch.stream.to_owned(),
            incarnation: batch.incarnation,
            shard: batch.shard,
            epoch: batch.epoch,
            first: batch.first_sequence_number,
            end: batch.first_sequence_number + batch.records.len() as u64,
            log,
            replicas,
            leader,
        }
    }
}

/// What a leader knows of one shard's replicas under its epoch (Raft's match index): the
/// sequence number below which each has acknowledged holding the leader's records.
#[derive(Debug, Default)]
struct Matched {
    epoch: u64,
    next: HashMap<String, u64>,
    /// The highest watermark a batch or notice has carried to the replicas.
    announced: u64,
    /// A notice of the watermark is on its way.
    notice_pending: bool,
    /// The end a quorum holds: the high watermark this leadership computed.
    committed: u64,
    /// Replicas whose requests from this leadership (batches, probes, notices) have failed
    /// since they last answered one, and since when.
    failing_since: HashMap<String, std::time::Instant>,
}

/// A node's side of the channel: the HTTP client, where the other nodes are, and the
/// newest epoch seen per shard.
#[derive(Debug)]
pub struct Peers {
    http: Client<HttpConnector, Full<Bytes>>,
    token: String,
    /// Node id → `host:port`, from the membership (refreshed with each catalog pass).
    addresses: RwLock<HashMap<String, String>>,
    /// (stream incarnation, shard) → the newest leader epoch this replica appended under.
    epochs: Mutex<HashMap<(u64, u32), u64>>,
    /// Where `epochs` is kept (JSON), when it is kept.
    epochs_file: Option<std::path::PathBuf>,
    /// One lock per (stream incarnation, shard): a replica's epoch check, cut and append,
    /// and a leader's epoch check and append, happen one at a time.
    shard_locks: Mutex<HashMap<ShardKey, Arc<Mutex<()>>>>,
    /// (stream incarnation, shard) → the oldest epoch this replica still takes batches of,
    /// and since when: raised when it reports its end for an election. In memory, and for
    /// [`FENCE_LIFETIME`] only: an election completes within a catalog pass or two, and one
    /// abandoned (the leader came back first) must not shut its leader out for good.
    fences: Mutex<HashMap<(u64, u32), (u64, std::time::Instant)>>,
    /// Replicas of shards this node leads that missed a batch: probed until caught up.
    lagging: Mutex<HashSet<Lag>>,
    /// Per shard this node leads, what each replica holds (its high watermark's source).
    matched: Mutex<HashMap<ShardKey, Matched>>,
    /// Per shard, its replicas as this node last read the catalog: what a quorum is counted
    /// against when an acknowledgment arrives, whatever list the batch was shipped with (a
    /// replica may have left, or joined, since).
    replica_sets: Mutex<HashMap<ShardKey, Arc<[String]>>>,
    /// Shards whose leadership this node gave up because it could not reach a quorum of
    /// their replicas, until when it stands back in their elections.
    resting: Mutex<HashMap<ShardKey, std::time::Instant>>,
    /// The machine restarted since this node last ran: its logs may lack records it had
    /// acknowledged but not synced.
    machine_restarted: std::sync::atomic::AtomicBool,
    /// Where to keep the boot id, and which, once every copy is caught up again.
    boot: Mutex<Option<(std::path::PathBuf, String)>>,
    /// Shards a leader has caught this replica up on since it started (to the leader's
    /// high watermark).
    caught_up: Mutex<HashSet<ShardKey>>,
    /// Counts for `/metrics`.
    counts: Counts,
}

/// What the channel did since the node started, for `/metrics`.
#[derive(Debug, Default)]
struct Counts {
    /// Leader batches a quorum acknowledged.
    quorum: AtomicU64,
    /// Leader batches no quorum acknowledged (their puts failed).
    no_quorum: AtomicU64,
    /// Batches forwarded to another node's shard, answered / failed.
    forwarded: AtomicU64,
    forward_failed: AtomicU64,
    /// Records sent to replicas that were behind.
    caught_up_records: AtomicU64,
    /// Leaderships this node took in an election, and gave up at a start.
    leaderships_won: AtomicU64,
    leaderships_resigned: AtomicU64,
}
/// A replica of a shard this node leads that may lack records.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lag {
    /// Stream name.
    pub stream: String,
    /// Stream incarnation.
    pub incarnation: u64,
    /// Shard index.
    pub shard: u32,
    /// The replica's node id.
    pub node: String,
}

impl Peers {
    /// A channel authenticated by the cluster's `token`, keeping the epochs it appends
    /// under in `epochs_file` (read now if it exists; `None`: in memory only).
    ///
    /// Errors: the file exists and cannot be read as epochs.
    pub fn new(token: String, epochs_file: Option<std::path::PathBuf>) -> Result<Self, String> {
        let mut epochs = HashMap::new();
        if let Some(path) = &epochs_file {
            match std::fs::read(path) {
                Ok(bytes) => {
                    let on_disk: std::collections::BTreeMap<String, u64> =
                        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
                    for (key, epoch) in on_disk {
                        let parsed = key
                            .split_once('/')
                            .and_then(|(i, s)| Some((u64::from_str_radix(i, 16).ok()?, s.parse().ok()?)));
                        let key = parsed.ok_or_else(|| format!("{}: bad key {key:?}", path.display()))?;
                        epochs.insert(key, epoch);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", path.display())),
            }
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(PEER_TIMEOUT));
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(connector),
            token,
            addresses: RwLock::default(),
            epochs: Mutex::new(epochs),
            epochs_file,
            shard_locks: Mutex::default(),
            fences: Mutex::default(),
            lagging: Mutex::default(),
            matched: Mutex::default(),
            resting: Mutex::default(),
            replica_sets: Mutex::default(),
            machine_restarted: std::sync::atomic::AtomicBool::new(false),
            boot: Mutex::default(),
            caught_up: Mutex::default(),
            counts: Counts::default(),
        })
    }

    /// Marks this node as started after its machine restarted: `boot` is the file to keep
    /// the new boot id in, and the id, once [`Peers::settle_restart`] finds every copy
    /// caught up.
    pub fn set_machine_restarted(&self, boot: (std::path::PathBuf, String)) {
        *self.boot.lock().unwrap_or_else(PoisonError::into_inner) = Some(boot);
        self.machine_restarted.store(true, Relaxed);
    }

    /// After a machine restart: once `settled` says every shard this node replicates is
    /// caught up (or led by it under an epoch it won), keeps the new boot id, so that the
    /// next start of the process on this boot votes again. Errors are logged; the node then
    /// stays unsure until the next call.
    pub fn settle_restart(&self, settled: impl FnOnce(&dyn Fn(u64, u32) -> bool) -> bool) {
        if !self.machine_restarted.load(Relaxed) {
            return;
        }
        let caught_up = |incarnation: u64, shard: u32| {
            self.caught_up.lock().unwrap_or_else(PoisonError::into_inner).contains(&(incarnation, shard))
        };
        if !settled(&caught_up) {
            return;
        }
        let mut boot = self.boot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((path, id)) = boot.as_ref() {
            match sluice_engine::stream::write_atomically(path, id.as_bytes()) {
                Ok(()) => {
                    tracing::info!("every copy is caught up since the machine restarted: this node votes again");
                    *boot = None;
                    self.machine_restarted.store(false, Relaxed);
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot keep the machine's boot id"),
            }
        }
    }

    /// Notes that a leader has caught this replica up on a shard, to the leader's high
    /// watermark at least.
    pub fn caught_up(&self, incarnation: u64, shard: u32) {
        if self.machine_restarted.load(Relaxed) {
            self.caught_up.lock().unwrap_or_else(PoisonError::into_inner).insert((incarnation, shard));
        }
    }

    /// Whether this replica's copy of a shard may lack records it acknowledged: its machine
    /// restarted since it last ran, appends were not synced each (`synced_each`: the
    /// stream's `fsync = "always"`), and no leader has caught it up since. Such a replica's
    /// end does not count toward an election's majority (docs/cluster.md, "Failover").
    pub fn may_lack_acknowledged(&self, incarnation: u64, shard: u32, synced_each: bool) -> bool {
        self.machine_restarted.load(Relaxed)
            && !synced_each
            && !self.caught_up.lock().unwrap_or_else(PoisonError::into_inner).contains(&(incarnation, shard))
    }

    /// The channel's counters and the replicas marked lagging, as OpenMetrics text.
    pub fn render_metrics(&self) -> String {
        let c = &self.counts;
        let lagging = self.lagging.lock().unwrap_or_else(PoisonError::into_inner).len();
        format!(
            "# TYPE sluice_cluster_replicated_batches counter\n\
             # HELP sluice_cluster_replicated_batches Batches this node appended as a shard's leader, by whether a quorum of replicas acknowledged them.\n\
             sluice_cluster_replicated_batches_total{{outcome=\"quorum\"}} {}\n\
             sluice_cluster_replicated_batches_total{{outcome=\"no_quorum\"}} {}\n\
             # TYPE sluice_cluster_forwarded_batches counter\n\
             # HELP sluice_cluster_forwarded_batches Batches this node forwarded to another node leading their shard, by outcome.\n\
             sluice_cluster_forwarded_batches_total{{outcome=\"appended\"}} {}\n\
             sluice_cluster_forwarded_batches_total{{outcome=\"failed\"}} {}\n\
             # TYPE sluice_cluster_caught_up_records counter\n\
             # HELP sluice_cluster_caught_up_records Records this node sent, as a leader, to replicas that were behind.\n\
             sluice_cluster_caught_up_records_total {}\n\
             # TYPE sluice_cluster_lagging_replicas gauge\n\
             # HELP sluice_cluster_lagging_replicas Replicas of shards this node leads that missed records and are being caught up.\n\
             sluice_cluster_lagging_replicas {lagging}\n\
             # TYPE sluice_cluster_leader_changes counter\n\
             # HELP sluice_cluster_leader_changes Shard leaderships this node took in an election, or gave up when it started.\n\
             sluice_cluster_leader_changes_total{{change=\"won\"}} {}\n\
             sluice_cluster_leader_changes_total{{change=\"resigned\"}} {}\n",
            c.quorum.load(Relaxed),
            c.no_quorum.load(Relaxed),
            c.forwarded.load(Relaxed),
            c.forward_failed.load(Relaxed),
            c.caught_up_records.load(Relaxed),
            c.leaderships_won.load(Relaxed),
            c.leaderships_resigned.load(Relaxed),
        )
    }

    /// Counts a leadership this node took in an election (`won`) or gave up at a start.
    pub fn count_leader_change(&self, won: bool) {
        let c = if won { &self.counts.leaderships_won } else { &self.counts.leaderships_resigned };
        c.fetch_add(1, Relaxed);
    }

    /// Whether this node, leading shard (`incarnation`, `shard`) under `epoch` with
    /// `replicas`, is cut off from them: so many of the others have failed every request
    /// for [`STEP_DOWN_AFTER`] that the rest and itself make no quorum. Cut off from the
    /// other nodes while it still reaches etcd, it would keep a leadership under which
    /// nothing can be acknowledged.
    pub fn cut_off(&self, incarnation: u64, shard: u32, epoch: u64, replicas: &[String], me: &str) -> bool {
        let now = std::time::Instant::now();
        let all = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(m) = all.get(&(incarnation, shard)).filter(|m| m.epoch == epoch) else { return false };
        let failing = replicas
            .iter()
            .filter(|r| *r != me)
            .filter(|r| m.failing_since.get(*r).is_some_and(|since| now.duration_since(*since) >= STEP_DOWN_AFTER))
            .count();
        replicas.len() - failing < replicas.len() / 2 + 1
    }

    /// Notes that a request of this node's leadership of shard (`incarnation`, `shard`)
    /// under `epoch` to replica `node` failed.
    fn failed(&self, incarnation: u64, shard: u32, epoch: u64, node: &str) {
        let mut all = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
        let m = all.entry((incarnation, shard)).or_default();
        if m.epoch > epoch {
            return;
        }
        if m.epoch < epoch {
            *m = Matched { epoch, ..Matched::default() };
        }
        m.failing_since.entry(node.to_owned()).or_insert_with(std::time::Instant::now);
    }

    /// Notes the replicas of shard (`incarnation`, `shard`) as the catalog now lists them.
    pub fn set_replicas(&self, incarnation: u64, shard: u32, replicas: &[String]) {
        let mut all = self.replica_sets.lock().unwrap_or_else(PoisonError::into_inner);
        if all.get(&(incarnation, shard)).is_none_or(|r| **r != *replicas) {
            all.insert((incarnation, shard), replicas.to_vec().into());
        }
    }

    /// The replicas of shard (`incarnation`, `shard`) as last noted, else `fallback`.
    fn replicas_of(&self, incarnation: u64, shard: u32, fallback: &Arc<[String]>) -> Arc<[String]> {
        let all = self.replica_sets.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(&(incarnation, shard)).cloned().unwrap_or_else(|| fallback.clone())
    }

    /// Notes that this node gave up the leadership of shard (`incarnation`, `shard`) for
    /// want of a quorum: in its elections for [`REST_AFTER_STEP_DOWN`] it wins only with a
    /// log longer than every other voter's, so a replica as up to date is preferred.
    pub fn rest(&self, incarnation: u64, shard: u32) {
        let until = std::time::Instant::now() + REST_AFTER_STEP_DOWN;
        self.resting.lock().unwrap_or_else(PoisonError::into_inner).insert((incarnation, shard), until);
    }

    /// Whether this node stands back in shard (`incarnation`, `shard`)'s elections ([`Peers::rest`]).
    pub fn resting(&self, incarnation: u64, shard: u32) -> bool {
        let mut all = self.resting.lock().unwrap_or_else(PoisonError::into_inner);
        let now = std::time::Instant::now();
        all.retain(|_, until| *until > now);
        all.contains_key(&(incarnation, shard))
    }

    /// What each replica of a shard acknowledged holding, as this node's leadership under
    /// `epoch` counts it: (node id, the end of its records). Empty when this node does not
    /// lead the shard under that epoch.
    pub fn replica_ends(&self, incarnation: u64, shard: u32, epoch: u64) -> Vec<(String, u64)> {
        let all = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(&(incarnation, shard))
            .filter(|m| m.epoch == epoch)
            .map(|m| m.next.iter().map(|(n, e)| (n.clone(), *e)).collect())
            .unwrap_or_default()
    }

    /// Whether a request's token is the cluster's (compared in constant time).
    pub fn token_matches(&self, given: &[u8]) -> bool {
        let want = self.token.as_bytes();
        given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// Where the nodes are now.
    pub fn set_addresses(&self, addresses: HashMap<String, String>) {
        *self.addresses.write().unwrap_or_else(PoisonError::into_inner) = addresses;
    }

    fn address(&self, node: &str) -> Option<String> {
        self.addresses.read().unwrap_or_else(PoisonError::into_inner).get(node).cloned()
    }

    /// The lock of a shard's writes on this node (see `shard_locks`).
    pub fn shard_lock(&self, incarnation: u64, shard: u32) -> Arc<Mutex<()>> {
        let mut locks = self.shard_locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry((incarnation, shard)).or_default().clone()
    }

    /// Takes no more batches of an epoch older than `epoch` for the shard, for
    /// [`FENCE_LIFETIME`].
    pub fn fence(&self, incarnation: u64, shard: u32, epoch: u64) {
        let mut fences = self.fences.lock().unwrap_or_else(PoisonError::into_inner);
        let f = fences.entry((incarnation, shard)).or_insert((epoch, std::time::Instant::now()));
        *f = (f.0.max(epoch), std::time::Instant::now());
    }

    /// The oldest epoch the replica still takes batches of (0: any).
    pub fn fenced_below(&self, incarnation: u64, shard: u32) -> u64 {
        let fences = self.fences.lock().unwrap_or_else(PoisonError::into_inner);
        match fences.get(&(incarnation, shard)) {
            Some((epoch, since)) if since.elapsed() < FENCE_LIFETIME => *epoch,
            _ => 0,
        }
    }

    /// The newest epoch this replica appended a shard's records under, if it has one.
    pub fn epoch_of(&self, incarnation: u64, shard: u32) -> Option<u64> {
        self.epochs.lock().unwrap_or_else(PoisonError::into_inner).get(&(incarnation, shard)).copied()
    }

    /// Records that this node now appends a shard's records under `epoch`, durably (the
    /// file beside the streams is rewritten and synced): after a restart the replica still
    /// refuses older leaders.
    ///
    /// Errors: the file could not be written (the epoch is not taken).
    pub fn set_epoch(&self, incarnation: u64, shard: u32, epoch: u64) -> Result<(), String> {
        let mut epochs = self.epochs.lock().unwrap_or_else(PoisonError::into_inner);
        match epochs.get(&(incarnation, shard)) {
            Some(e) if *e == epoch => return Ok(()),
            // Never back: a stale leader's append must not undo a newer epoch.
            Some(e) if *e > epoch => return Err(format!("this node appends under epoch {e} already, not {epoch}")),
            _ => {}
        }
        let mut next = epochs.clone();
        next.insert((incarnation, shard), epoch);
        if let Some(path) = &self.epochs_file {
            let on_disk: std::collections::BTreeMap<String, u64> =
                next.iter().map(|((i, s), e)| (format!("{i:016x}/{s}"), *e)).collect();
            let bytes = serde_json::to_vec_pretty(&on_disk).expect("a map serializes");
            sluice_engine::stream::write_atomically(path, &bytes).map_err(|e| e.to_string())?;
        }
        *epochs = next;
        Ok(())
    }

    async fn post(&self, node: &str, path: &str, body: Bytes) -> Result<(u16, Bytes), String> {
        let address = self.address(node).ok_or_else(|| format!("node {node} is not a member"))?;
        let request = hyper::Request::post(format!("http://{address}{path}"))
            .header(TOKEN_HEADER, &self.token)
            .header("content-type", "application/octet-stream")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(PEER_TIMEOUT, async {
            let response = self.http.request(request).await.map_err(|e| format!("node {node}: {e}"))?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.map_err(|e| format!("node {node}: {e}"))?.to_bytes();
            Ok::<_, String>((status, bytes))
        })
        .await;
        answer.unwrap_or_else(|_| Err(format!("node {node} did not answer within {PEER_TIMEOUT:?}")))
    }

    /// Ships `batch`, just appended to the leader's `log`, to the shard's other replicas and
    /// returns once a quorum of the shard's replicas (this node included) holds it: once
    /// the high watermark, counted against the replicas the catalog lists when each answer
    /// arrives, covers the batch (a replica set changed by a move meanwhile counts as it is
    /// now, never as it was when the batch left). A replica
    /// that is behind is first sent what it lacks, read from `log`. Replicas that have not
    /// answered when the quorum is reached are still sent the batch, in the background, so
    /// every live replica keeps up.
    ///
    /// Errors: no quorum within [`PEER_TIMEOUT`] per request (each replica's failure named).
    pub async fn replicate(
        self: &Arc<Self>,
        me: &str,
        placement: &ShardPlacement,
        batch: &Batch<'_>,
        log: &Arc<ShardLog>,
    ) -> Result<(), String> {
        let listed: Arc<[String]> = placement.replicas.clone().into();
        let replicas = self.replicas_of(batch.incarnation, batch.shard, &listed);
        let needed = replicas.len() / 2;
        let end = batch.first_sequence_number + batch.records.len() as u64;
        if needed == 0 {
            log.raise_high_watermark(end);
            return Ok(());
        }
        let shipment = Arc::new(Shipment::new(batch, log.clone(), replicas.clone(), me.to_owned()));
        self.announced(&shipment, batch.committed);
        let mut pending: tokio::task::JoinSet<(String, Result<u64, String>)> = tokio::task::JoinSet::new();
        for follower in replicas.iter().filter(|r| *r != me) {
            let (peers, shipment, follower) = (self.clone(), shipment.clone(), follower.clone());
            pending.spawn(async move {
                let r = peers.ship_to(&follower, &shipment).await;
                (follower, r)
            });
        }
        let (mut acks, mut failures) = (0, Vec::new());
        while let Some(result) = pending.join_next().await {
            let Ok((node, result)) = result else { continue };
            match result {
                Ok(next) => {
                    acks += 1;
                    self.matched(&shipment, &node, next);
                    if self.committed(batch.incarnation, batch.shard, batch.epoch) >= end {
                        self.counts.quorum.fetch_add(1, Relaxed);
                        // The others finish on their own; one that fails is probed later.
                        let (peers, s) = (self.clone(), shipment.clone());
                        tokio::spawn(async move {
                            while let Some(Ok((node, result))) = pending.join_next().await {
                                match result {
                                    Ok(next) => peers.matched(&s, &node, next),
                                    Err(_) => peers.mark_lagging(&s, node),
                                }
                            }
                        });
                        return Ok(());
                    }
                }
                Err(e) => {
                    self.mark_lagging(&shipment, node);
                    failures.push(e);
                }
            }
        }
        // Other batches' answers may have carried the watermark past this one meanwhile.
        if self.committed(batch.incarnation, batch.shard, batch.epoch) >= end {
            self.counts.quorum.fetch_add(1, Relaxed);
            return Ok(());
        }
        self.counts.no_quorum.fetch_add(1, Relaxed);
        Err(format!("{acks} of the {needed} other replicas a quorum needs acknowledged: {}", failures.join("; ")))
    }

    /// Notes that replica `node` holds the leader's records below `next` (under the
    /// shipment's epoch) and raises the log's high watermark to what a quorum holds; when
    /// it rose, the other replicas are told soon after unless a batch tells them first.
    /// Answers of an epoch this node no longer appends under count for nothing: its log
    /// may follow another leader's by now.
    fn matched(self: &Arc<Self>, s: &Arc<Shipment>, node: &str, next: u64) {
        if self.epoch_of(s.incarnation, s.shard) != Some(s.epoch) {
            return;
        }
        let replicas = self.replicas_of(s.incarnation, s.shard, &s.replicas);
        let notify = {
            let mut all = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
            let m = all.entry((s.incarnation, s.shard)).or_default();
            if m.epoch > s.epoch {
                return;
            }
            if m.epoch < s.epoch {
                // Another leadership's acknowledgments say nothing of this one's records.
                *m = Matched { epoch: s.epoch, ..Matched::default() };
            }
            let own = s.log.bounds().next_sequence_number;
            m.failing_since.remove(node);
            let held = m.next.entry(node.to_owned()).or_insert(0);
            *held = (*held).max(next.min(own));
            // The leader holds its whole log.
            let mut ends: Vec<u64> = replicas
                .iter()
                .map(|r| if *r == s.leader { own } else { m.next.get(r).copied().unwrap_or(0) })
                .collect();
            ends.sort_unstable_by(|a, b| b.cmp(a));
            m.committed = m.committed.max(ends[replicas.len() / 2]);
            // Raised under the lock, so a notice that reads it under the lock never sends
            // less than was raised before it ran.
            s.log.raise_high_watermark(m.committed);
            let notify = m.committed > m.announced && !m.notice_pending;
            m.notice_pending |= notify;
            notify
        };
        if notify {
            let (peers, s) = (self.clone(), s.clone());
            tokio::spawn(async move { peers.notice(&s).await });
        }
    }

    /// The high watermark this node computed as the shard's leader under `epoch` (0 when it
    /// has not led under that epoch): what its batches carry. Never the log's own, which
    /// another leader may have raised.
    pub fn committed(&self, incarnation: u64, shard: u32, epoch: u64) -> u64 {
        let all = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(&(incarnation, shard)).filter(|m| m.epoch == epoch).map_or(0, |m| m.committed)
    }

    /// Notes that a batch carried the high watermark `committed` to the replicas.
    fn announced(&self, s: &Shipment, committed: u64) {
        let mut all = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = all.get_mut(&(s.incarnation, s.shard)).filter(|m| m.epoch == s.epoch) {
            m.announced = m.announced.max(committed);
        }
    }

    /// Tells the replicas of `s`'s shard the leader's high watermark, so they serve the
    /// newest records too, unless a batch sent meanwhile carried it: an empty batch at the
    /// watermark, sent a millisecond after it rose, so that under load the next batch
    /// carries it instead.
    async fn notice(self: &Arc<Self>, s: &Arc<Shipment>) {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let committed = {
            let mut all = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(m) = all.get_mut(&(s.incarnation, s.shard)).filter(|m| m.epoch == s.epoch) else { return };
            m.notice_pending = false;
            if m.committed <= m.announced || self.epoch_of(s.incarnation, s.shard) != Some(s.epoch) {
                return;
            }
            m.announced = m.committed;
            m.committed
        };
        let batch = Batch {
            stream: &s.stream,
            incarnation: s.incarnation,
            shard: s.shard,
            epoch: s.epoch,
            first_sequence_number: committed,
            committed,
            records: Vec::new(),
        };
        let notice = Arc::new(Shipment::new(&batch, s.log.clone(), s.replicas.clone(), s.leader.clone()));
        let mut sent = tokio::task::JoinSet::new();
        for node in notice.replicas.iter().filter(|r| **r != notice.leader).cloned() {
            let (peers, notice) = (self.clone(), notice.clone());
            sent.spawn(async move {
                match peers.ship_to(&node, &notice).await {
                    Ok(next) => peers.matched(&notice, &node, next),
                    Err(_) => peers.mark_lagging(&notice, node),
                }
            });
        }
        while sent.join_next().await.is_some() {}
    }

    fn mark_lagging(&self, s: &Shipment, node: String) {
        self.failed(s.incarnation, s.shard, s.epoch, &node);
        let lag = Lag { stream: s.stream.clone(), incarnation: s.incarnation, shard: s.shard, node };
        self.lagging.lock().unwrap_or_else(PoisonError::into_inner).insert(lag);
    }

    /// Marks a replica as possibly lacking records (probed by [`Peers::probe`] later).
    pub fn mark(&self, lag: Lag) {
        self.lagging.lock().unwrap_or_else(PoisonError::into_inner).insert(lag);
    }

    /// The replicas marked as lagging, forgotten here (mark again those still behind).
    pub fn take_lagging(&self) -> Vec<Lag> {
        self.lagging.lock().unwrap_or_else(PoisonError::into_inner).drain().collect()
    }

    /// Brings replica `lag.node` up to the end of the leader's `log`: an empty batch at the
    /// log's end, which a replica that is behind answers with 409, and then the records it
    /// lacks. How a replica that missed batches (down, cut off, slow) catches up without
    /// waiting for the next put.
    ///
    /// Errors: the replica could not be reached or refused (it stays lagging).
    pub async fn probe(
        self: &Arc<Self>,
        me: &str,
        lag: &Lag,
        placement: &ShardPlacement,
        log: Arc<ShardLog>,
    ) -> Result<(), String> {
        let next = log.bounds().next_sequence_number;
        let batch = Batch {
            stream: &lag.stream,
            incarnation: lag.incarnation,
            shard: lag.shard,
            epoch: placement.epoch,
            first_sequence_number: next,
            committed: self.committed(lag.incarnation, lag.shard, placement.epoch),
            records: Vec::new(),
        };
        let shipment = Arc::new(Shipment::new(&batch, log, placement.replicas.clone().into(), me.to_owned()));
        self.announced(&shipment, batch.committed);
        let held = match self.ship_to(&lag.node, &shipment).await {
            Ok(held) => held,
            Err(e) => {
                self.failed(lag.incarnation, lag.shard, placement.epoch, &lag.node);
                return Err(e);
            }
        };
        self.matched(&shipment, &lag.node, held);
        Ok(())
    }

    /// One replica: the batch, after the records it lacks when it answers 409.
    /// Returns where the replica's records end: it holds the leader's below that.
    async fn ship_to(&self, node: &str, s: &Shipment) -> Result<u64, String> {
        let (mut not_yet_made, mut catch_ups) = (0, 0);
        loop {
            let (status, raw) = self.post(node, REPLICATE_PATH, s.body.clone()).await?;
            let answer: ReplicaAnswer = serde_json::from_slice(&raw).unwrap_or(ReplicaAnswer { next: 0, epoch: 0 });
            match status {
                200 => return Ok(answer.next),
                409 if answer.next >= s.end => return Ok(answer.next),
                // Concurrent batches can leave a replica behind again; a replica that
                // stays behind after a few catch-ups is left for the next probe.
                409 if catch_ups < 4 => {
                    catch_ups += 1;
                    self.catch_up(node, s, answer.next).await?;
                }
                412 => return Err(format!("node {node} has seen epoch {}: this leader is fenced", answer.epoch)),
                // The replica makes its copy at its next catalog pass.
                404 if not_yet_made < 8 => {
                    not_yet_made += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                _ => {
                    return Err(format!(
                        "node {node} answered {status}: {}",
                        String::from_utf8_lossy(&raw[..raw.len().min(200)])
                    ))
                }
            }
        }
    }

    /// Sends replica `node` the leader's records from `from` up to the shipment's first.
    async fn catch_up(&self, node: &str, s: &Shipment, mut from: u64) -> Result<(), String> {
        while from < s.first {
            let body = {
                let limits = ReadLimits { max_records: CATCH_UP_RECORDS, max_bytes: CATCH_UP_BYTES };
                let read = s.log.read_all(from, limits).map_err(|e| format!("catch-up read for node {node}: {e}"))?;
                // A read from below the trim horizon starts at the horizon: those records
                // would land under the wrong sequence numbers.
                if read.iter().next().is_some_and(|r| r.sequence_number != from) {
                    return Err(format!("node {node} needs records from {from}, which the leader no longer holds"));
                }
                let records: Vec<WireRecord<'_>> = read
                    .iter()
                    .take_while(|r| r.sequence_number < s.first)
                    .map(|r| WireRecord {
                        arrival_timestamp_ms: r.arrival_timestamp_ms,
                        partition_key: r.partition_key,
                        data: r.data,
                    })
                    .collect();
                if records.is_empty() {
                    return Err(format!("node {node} needs records from {from}, which the leader no longer holds"));
                }
                let chunk = Batch {
                    stream: &s.stream,
                    incarnation: s.incarnation,
                    shard: s.shard,
                    epoch: s.epoch,
                    first_sequence_number: from,
                    committed: self.committed(s.incarnation, s.shard, s.epoch),
                    records,
                };
                from += chunk.records.len() as u64;
                self.counts.caught_up_records.fetch_add(chunk.records.len() as u64, Relaxed);
                Bytes::from(chunk.encode())
            };
            let (status, answer) = self.post(node, REPLICATE_PATH, body).await?;
            if status != 200 {
                return Err(format!("node {node} refused catch-up records ({status})"));
            }
            let answer: ReplicaAnswer = serde_json::from_slice(&answer).map_err(|e| e.to_string())?;
            if answer.next < from {
                return Err(format!(
                    "node {node} answered that it holds records only below {}, not {from}",
                    answer.next
                ));
            }
            from = answer.next;
        }
        Ok(())
    }

    /// Runs read `action` (its request `body`) on `node` ([`READ_PATH`]): the status and
    /// body it answered. Errors: the node cannot be reached or did not answer.
    pub async fn read(&self, node: &str, action: &str, body: &serde_json::Value) -> Result<(u16, Bytes), String> {
        let request = serde_json::to_vec(&serde_json::json!({ "action": action, "body": body })).expect("JSON");
        self.post(node, READ_PATH, Bytes::from(request)).await
    }

    /// Forwards records of one shard to its leader `node`, which appends and replicates them.
    ///
    /// Errors: the leader's own error (Kinesis code and message), or why it could not be asked.
    pub async fn forward(&self, node: &str, batch: &Batch<'_>) -> Result<AppendAnswer, (String, String)> {
        let answered = self.post(node, APPEND_PATH, Bytes::from(batch.encode())).await;
        let counter = if answered.as_ref().is_ok_and(|(status, _)| *status == 200) {
            &self.counts.forwarded
        } else {
            &self.counts.forward_failed
        };
        counter.fetch_add(1, Relaxed);
        let (status, answer) = answered
            .map_err(|e| ("InternalFailure".to_owned(), format!("the shard's leader cannot be reached: {e}")))?;
        let answer: AppendAnswer = serde_json::from_slice(&answer).map_err(|_| {
            ("InternalFailure".to_owned(), format!("the shard's leader answered {status} without a result"))
        })?;
        match (&answer.code, status) {
            (None, 200) => Ok(answer),
            _ => Err((
                answer.code.clone().unwrap_or_else(|| "InternalFailure".into()),
                answer.message.clone().unwrap_or_default(),
            )),
        }
    }
}
