//! Reads of a cluster's shard on a node that holds no replica of it (a cluster of more
//! nodes than a stream's replication factor): GetShardIterator and GetRecords run on a node
//! that holds one, the shard's leader first, and their answers come back as they are. The
//! SDKs do not follow redirects, so every node answers for every shard (docs/cluster.md).

use std::cell::Cell;
use std::sync::Arc;

use sluice_engine::stream::Stream;

use super::{Action, ApiError, ErrorKind, Kinesis};
use crate::cluster::ClusterLink;

thread_local! {
    /// Set while this thread runs a read another node forwarded: it is never forwarded on.
    static SERVING_FORWARDED: Cell<bool> = const { Cell::new(false) };
}

impl Kinesis {
    /// Where to read shard `index` of `stream` when this node holds no replica of it: the
    /// cluster link and the node (the leader, or the first replica while there is none).
    /// `None` when this node reads it itself.
    pub(super) fn read_elsewhere(&self, stream: &Stream, index: u32) -> Option<(Arc<ClusterLink>, String)> {
        if SERVING_FORWARDED.get() {
            return None;
        }
        let link = self.cluster.get()?;
        let m = stream.meta();
        if m.cluster.as_deref() != Some(link.cluster.as_str()) {
            return None;
        }
        let p = link.placement(&m.name, stream.incarnation(), index)?;
        if p.replicas.contains(&link.node_id) {
            return None;
        }
        let node = if p.leader.is_empty() { p.replicas.first()?.clone() } else { p.leader.clone() };
        Some((link.clone(), node))
    }

    /// GetShardIterator or GetRecords (`action`, its request `body`) of a cluster's shard
    /// this node holds no replica of: run on a node that does. `None` when this node reads
    /// it itself (or the request names no shard it knows: the action then answers why).
    pub(super) fn forward_read(&self, action: Action, body: &serde_json::Value) -> Option<Result<Vec<u8>, ApiError>> {
        let (stream, shard, name) = match action {
            Action::GetShardIterator => (
                super::catalog::stream_named_by(body)?,
                sluice_engine::stream::parse_shard_id(body.get("ShardId")?.as_str()?)?,
                "GetShardIterator",
            ),
            Action::GetRecords => {
                let iterator = body.get("ShardIterator")?.as_str()?;
                let it = sluice_engine::iterator::IteratorState::decode(iterator, self.iterator_secret())?;
                (it.stream, it.shard_index, "GetRecords")
            }
            _ => return None,
        };
        let stream = self.streams.get(&stream)?;
        let (link, node) = self.read_elsewhere(&stream, shard)?;
        Some(self.read_on(&link, &node, name, body.clone()))
    }

    /// Runs read `action` with request `body` on `node`: its JSON answer, or its error.
    /// Errors: the node's own, or `InternalFailure` when it cannot be reached.
    pub(super) fn read_on(
        &self,
        link: &ClusterLink,
        node: &str,
        action: &str,
        body: serde_json::Value,
    ) -> Result<Vec<u8>, ApiError> {
        link.block_on(read_on_async(link, node, action, body))
    }

    /// A read another node forwarded ([`crate::cluster::replication::READ_PATH`] body): run
    /// here (never forwarded on). Returns the status and body to answer: the action's JSON
    /// answer, or its error.
    pub fn read_forwarded(&self, request: &[u8]) -> (u16, Vec<u8>) {
        let refuse = |message: &str| {
            let e = ApiError::new(ErrorKind::InvalidArgument, message);
            (e.kind.status(), e.body())
        };
        let Ok(request) = serde_json::from_slice::<serde_json::Value>(request) else {
            return refuse("a forwarded read is JSON");
        };
        let action = match request["action"].as_str() {
            Some("GetRecords") => Action::GetRecords,
            Some("GetShardIterator") => Action::GetShardIterator,
            _ => return refuse("only GetRecords and GetShardIterator are forwarded"),
        };
        /// Clears the flag however the read ends (a panic included): the thread serves
        /// clients' reads next.
        struct Serving;
        impl Drop for Serving {
            fn drop(&mut self) {
                SERVING_FORWARDED.set(false);
            }
        }
        SERVING_FORWARDED.set(true);
        let serving = Serving;
        let answer = self.handle_value(action, request["body"].clone());
        drop(serving);
        match answer {
            Ok(body) => (200, body),
            Err(e) => (e.kind.status(), e.body()),
        }
    }
}

/// As [`Kinesis::read_on`], awaited (for a task of the runtime, such as a subscription's).
pub(super) async fn read_on_async(
    link: &ClusterLink,
    node: &str,
    action: &str,
    body: serde_json::Value,
) -> Result<Vec<u8>, ApiError> {
    let (status, answer) = link.peers.read(node, action, &body).await.map_err(|e| {
        ApiError::new(ErrorKind::InternalFailure, format!("the shard's replicas cannot be reached: {e}"))
    })?;
    if status == 200 {
        return Ok(answer.to_vec());
    }
    let error: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    let kind = error["__type"].as_str().and_then(ErrorKind::from_name).unwrap_or(ErrorKind::InternalFailure);
    Err(ApiError::new(kind, error["message"].as_str().unwrap_or("the shard's replica failed the read")))
}
