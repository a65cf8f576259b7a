//! Cluster membership: each node holds a key under `/sluice/<cluster>/nodes/` attached to an
//! etcd lease it renews; a node that stops renewing (killed, paused, cut off) leaves when the
//! lease expires, and a node id is held by one live node at a time.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::etcd::{Etcd, EtcdError, LeaseId};
use crate::config::ClusterConfig;

/// What a node publishes about itself (the value of its membership key, JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id.
    pub node_id: String,
    /// Where other nodes and clients reach its API (`host:port`).
    pub address: String,
    /// When it joined, ms since the Unix epoch.
    pub joined_ms: u64,
    /// Its Sluice version.
    pub version: String,
}

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// etcd could not be reached or refused.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// Another live node holds this id.
    #[error("node id {node_id} is held by a live node at {address}: node ids are unique in a cluster")]
    Taken {
        /// The id.
        node_id: String,
        /// Where that node is.
        address: String,
    },
}

/// The etcd key prefix of a cluster's members.
pub fn nodes_prefix(cluster: &str) -> String {
    format!("/sluice/{cluster}/nodes/")
}

/// This node's membership, renewed in the background until [`Membership::leave`].
#[derive(Debug)]
pub struct Membership {
    etcd: Etcd,
    lease: Arc<std::sync::atomic::AtomicI64>,
    stop: watch::Sender<bool>,
    renewer: tokio::task::JoinHandle<()>,
}

/// Claims the membership key for `info` under a new lease of `ttl_s`.
///
/// A key held at this node's own address is taken over: the node announces itself only once
/// its port listens, so the holder is an earlier process of this node, killed within its
/// lease (a restart need not wait for the lease to expire).
async fn claim(etcd: &Etcd, key: &str, info: &NodeInfo, ttl_s: u64) -> Result<LeaseId, JoinError> {
    let value = serde_json::to_vec(info).expect("JSON serializes");
    let lease = etcd.grant(ttl_s).await?;
    let taken = match etcd.create(key, &value, lease).await {
        Ok(None) => return Ok(lease),
        Ok(Some(existing)) => existing,
        Err(e) => {
            let _ = etcd.revoke(lease).await;
            return Err(e.into());
        }
    };
    let held: Option<NodeInfo> = serde_json::from_slice(&taken.value).ok();
    if held.as_ref().is_some_and(|h| h.address == info.address) {
        match etcd.replace(key, &value, lease, taken.mod_revision).await {
            Ok(true) => {
                tracing::info!(node_id = %info.node_id, "took over this node's membership from an earlier process at its address");
                return Ok(lease);
            }
            Ok(false) => {}
            Err(e) => {
                let _ = etcd.revoke(lease).await;
                return Err(e.into());
            }
        }
    }
    let _ = etcd.revoke(lease).await;
    Err(JoinError::Taken {
        node_id: info.node_id.clone(),
        address: held.map_or_else(|| "an unknown address".into(), |n| n.address),
    })
}

impl Membership {
    /// Joins the cluster of `cfg` as a node reachable at `address`.
    ///
    /// Errors: etcd unreachable, or [`JoinError::Taken`] when a live node holds the id.
    pub async fn join(cfg: &ClusterConfig, address: String) -> Result<Self, JoinError> {
        let etcd = Etcd::new(&cfg.etcd_endpoints);
        let key = format!("{}{}", nodes_prefix(&cfg.name), cfg.node_id);
        let info = NodeInfo {
            node_id: cfg.node_id.clone(),
            address,
            joined_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let ttl_s = cfg.lease_ttl_s;
        let lease = Arc::new(std::sync::atomic::AtomicI64::new(claim(&etcd, &key, &info, ttl_s).await?));
        tracing::info!(node_id = %cfg.node_id, cluster = %cfg.name, lease = lease.load(std::sync::atomic::Ordering::Relaxed), "joined the cluster");
        let (stop, mut stopped) = watch::channel(false);
        let renewer = {
            let (etcd, lease) = (etcd.clone(), lease.clone());
            // Renewed three times per lease period: one lost renewal does not lose the key.
            let every = Duration::from_millis(ttl_s * 1000 / 3);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(every) => {}
                        _ = stopped.changed() => return,
                    }
                    let id = lease.load(std::sync::atomic::Ordering::Relaxed);
                    match etcd.keep_alive(id).await {
                        Ok(true) => continue,
                        Ok(false) | Err(EtcdError::Refused(_) | EtcdError::Contended(_)) => {}
                        Err(e @ EtcdError::Unreachable(_)) => {
                            tracing::warn!(error = %e, "cannot renew the cluster membership; retrying");
                            continue;
                        }
                    }
                    // The lease expired (etcd was out of reach longer than its TTL): the
                    // membership key went with it, so join again.
                    match claim(&etcd, &key, &info, ttl_s).await {
                        Ok(new) => {
                            lease.store(new, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!(lease = new, "membership lease had expired; joined the cluster again");
                        }
                        Err(e) => tracing::error!(error = %e, "cannot join the cluster again; retrying"),
                    }
                }
            })
        };
        Ok(Self { etcd, lease, stop, renewer })
    }

    /// [`Membership::join`], trying again while etcd is out of reach (it may be starting
    /// beside this node) for up to `patience`, 0.2 s apart at first and 2 s at most.
    ///
    /// Errors: the last failure once `patience` has passed; [`JoinError::Taken`] at once.
    pub async fn join_patiently(cfg: &ClusterConfig, address: String, patience: Duration) -> Result<Self, JoinError> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(200);
        loop {
            match Self::join(cfg, address.clone()).await {
                Err(JoinError::Etcd(e)) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::warn!(error = %e, "cannot reach etcd to join the cluster; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Leaves the cluster at once (the key goes with the revoked lease), rather than when
    /// the lease would expire.
    pub async fn leave(self) {
        let _ = self.stop.send(true);
        let _ = self.renewer.await;
        let id = self.lease.load(std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = self.etcd.revoke(id).await {
            tracing::warn!(error = %e, "cannot revoke the membership lease; the node leaves when it expires");
        }
    }
}

/// The live members of cluster `cluster`, by node id.
pub async fn nodes(etcd: &Etcd, cluster: &str) -> Result<Vec<NodeInfo>, EtcdError> {
    let kvs = etcd.range_prefix(&nodes_prefix(cluster)).await?;
    Ok(kvs.iter().filter_map(|kv| serde_json::from_slice(&kv.value).ok()).collect())
}
