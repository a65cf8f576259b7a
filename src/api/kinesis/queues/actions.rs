//! The queue actions: `CreateQueue`, `DescribeQueue`, `ListQueues`, `UpdateQueue`,
//! `DeleteQueue`, `ReceiveQueueRecords`, `AcknowledgeQueueRecords`,
//! `UpdateQueueRecordsVisibility`, `ReceiveDeadLetterQueueRecords`,
//! `AcknowledgeDeadLetterQueueRecords`, `UpdateDeadLetterQueueRecordsVisibility` and
//! `RestoreDeadLetterQueueRecords`.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use base64::Engine as _;
use serde::Deserialize;

use super::{Queue, QueueMeta, QueueStream, VISIBILITY_TIMEOUT_S_DEFAULT};
use crate::api::kinesis::{
    after_token, epoch_seconds, name_token, no_output, respond, ApiError, ErrorKind, Kinesis, StreamTarget,
};
use sluice_engine::queue::{Area, Change, EntryError, QueueState, ReceiptHandle, ShardCursor};
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::settings::StreamMode;
use sluice_engine::{ReadLimits, StartingPosition};

/// Most records one receive returns: 10. Source: botocore's model, `ReceiveQueueRecordsInputLimit`.
pub const RECEIVE_RECORDS_MAX: usize = 10;

/// Longest long poll, seconds: 20. Source: botocore's model, `ReceiveQueueRecordsWaitTimeSeconds`.
pub const WAIT_TIME_S_MAX: u32 = 20;

/// The error code of an entry whose receipt handle is not current: malformed, of another
/// queue, or of a receive since superseded (SQS's code for it).
pub const RECEIPT_HANDLE_INVALID: &str = "ReceiptHandleIsInvalid";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRequest {
    queue_name: String,
    stream_configuration_list: Vec<StreamConfiguration>,
    queue_attributes: Option<Attributes>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamConfiguration {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    starting_position: Option<Position>,
    /// In `ListQueues`' `StreamFilter`: epoch seconds, which incarnation of the stream.
    stream_creation_timestamp: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Position {
    #[serde(rename = "Type")]
    kind: String,
    timestamp: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attributes {
    visibility_timeout_seconds: Option<i64>,
    dead_letter_configuration: Option<DeadLetter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeadLetter {
    target_type: String,
    max_receive_count: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueueTarget {
    #[serde(rename = "QueueARN")]
    queue_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateRequest {
    #[serde(rename = "QueueARN")]
    queue_arn: String,
    queue_attributes: Attributes,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    max_results: Option<i64>,
    next_token: Option<String>,
    stream_filter: Option<Vec<StreamConfiguration>>,
}

/// `ReceiveQueueRecords` and `ReceiveDeadLetterQueueRecords`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceiveRequest {
    #[serde(rename = "QueueARN")]
    queue_arn: String,
    limit: Option<i64>,
    wait_time_seconds: Option<i64>,
    visibility_timeout_seconds: Option<i64>,
}

impl ReceiveRequest {
    /// The queue's ARN.
    pub fn queue_arn(&self) -> &str {
        &self.queue_arn
    }

    /// How long the call may wait for a record, ms (0 without `WaitTimeSeconds`).
    pub fn wait_ms(&self) -> u64 {
        self.wait_time_seconds.map_or(0, |s| s.clamp(0, i64::from(WAIT_TIME_S_MAX)) as u64 * 1000)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EntriesRequest {
    #[serde(rename = "QueueARN")]
    queue_arn: String,
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    receipt_handle: String,
    visibility_timeout_seconds: Option<i64>,
}

impl Kinesis {
    /// The ARN of queue `name`.
    pub fn queue_arn(&self, name: &str) -> String {
        format!("arn:aws:kinesis:{}:{}:queue/{name}", self.config.region, self.config.account_id)
    }

    /// The queue an ARN names, or `ResourceNotFoundException`.
    pub fn queue(&self, arn: &str) -> Result<Arc<Queue>, ApiError> {
        let prefix = format!("arn:aws:kinesis:{}:{}:queue/", self.config.region, self.config.account_id);
        arn.strip_prefix(&prefix).and_then(|name| self.queues.get(name)).ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("Queue {arn} under account {} not found.", self.config.account_id),
            )
        })
    }

    fn queue_description(&self, q: &Queue) -> serde_json::Value {
        let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
        let streams: Vec<_> = m
            .streams
            .iter()
            .map(|s| {
                let mut position = serde_json::json!({ "Type": s.starting_position });
                if let Some(ts) = s.timestamp_ms {
                    position["Timestamp"] = epoch_seconds(ts).into();
                }
                serde_json::json!({ "StreamARN": self.stream_arn(&s.name), "StartingPosition": position })
            })
            .collect();
        let dead_letter = match m.max_receives {
            Some(n) => serde_json::json!({ "TargetType": "BUILT_IN", "MaxReceiveCount": n }),
            None => serde_json::json!({ "TargetType": "NONE" }),
        };
        serde_json::json!({
            "QueueName": m.name,
            "QueueARN": self.queue_arn(&m.name),
            "QueueStatus": "ACTIVE",
            "QueueCreationTimestamp": epoch_seconds(m.created_ms),
            "StreamConfigurationList": streams,
            "QueueAttributes": {
                "VisibilityTimeoutSeconds": m.visibility_timeout_s,
                "DeadLetterConfiguration": dead_letter,
            },
        })
    }

    /// Records of `q` for one receive, handed out now (none when there are none yet).
    ///
    /// A record that cannot be read (a bad frame) or is not where the log says stays in the
    /// queue, and nothing after it in its shard goes out in this receive, so no cursor moves
    /// past it; the receive answers the others, or `InternalFailure` when it was all there was.
    /// Every change to the state is journaled before the answer, whatever the answer.
    pub fn receive_now(&self, q: &Queue, area: Area, r: &ReceiveRequest) -> Result<Vec<serde_json::Value>, ApiError> {
        let limit = r.limit.map_or(1, |n| n.clamp(1, RECEIVE_RECORDS_MAX as i64) as usize);
        let (visibility_s, max_receives, streams) = {
            let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
            let v = r.visibility_timeout_seconds.map_or(m.visibility_timeout_s, |v| v.clamp(0, 43_200) as u32);
            (v, m.max_receives, m.streams.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
        };
        let now = self.clock.now_ms();
        let mut state = q.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut candidates = state.visible(now, limit, area);
        if area == Area::Main && candidates.len() < limit {
            candidates.extend(self.new_records(&state, &streams, limit - candidates.len()));
        }
        let mut out = Vec::new();
        let mut changes = Vec::new();
        // Shards with a record that could not be read now: nothing after it is handed out in
        // this receive, so no first delivery moves the shard's cursor past it.
        let mut stalled: Vec<(String, u32)> = Vec::new();
        let mut failure = None;
        for (shard, sequence) in candidates {
            if stalled.contains(&shard) {
                continue;
            }
            let Some(stream) = self.streams.get(&shard.0) else { continue };
            let Some(log) = stream.log(shard.1) else { continue };
            let read = log.read(sequence, ReadLimits { max_records: 1, ..ReadLimits::default() });
            let batch = match read {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(stream = %shard.0, shard = shard.1, sequence, error = %e, "a queue cannot read a record; it stays in the queue");
                    failure = Some(ApiError::new(ErrorKind::InternalFailure, e.to_string()));
                    stalled.push(shard);
                    continue;
                }
            };
            let Some(record) = batch.iter().next().filter(|r| r.sequence_number == sequence) else {
                let first = log.bounds().first_sequence_number;
                if sequence < first {
                    // Trimmed by retention: the queue stops delivering it.
                    if state.drop_below(&shard, first) > 0 {
                        changes.push(Change::DropBelow { shard: shard.clone(), first });
                    }
                } else {
                    tracing::error!(stream = %shard.0, shard = shard.1, sequence, "a queue's record was not where the log said; it stays in the queue");
                    stalled.push(shard);
                }
                continue;
            };
            let handed = state.receive(&shard, sequence, now, u64::from(visibility_s) * 1000, max_receives, area);
            changes.extend(state.changes_for(&shard, sequence));
            let Some(h) = handed else {
                continue; // dead-lettered: received MaxReceiveCount times already
            };
            let handle = ReceiptHandle {
                queue: q.meta.read().unwrap_or_else(PoisonError::into_inner).incarnation,
                area,
                shard: shard.clone(),
                sequence,
                attempt: h.delivery.attempt,
            };
            out.push(serde_json::json!({
                "ReceiptHandle": handle.encode(&self.queues.secret),
                "RecordId": SequenceNumber { shard_index: shard.1, shard_sequence: sequence }.to_string(),
                "PartitionKey": record.partition_key,
                "Data": base64::engine::general_purpose::STANDARD.encode(record.data),
                "ApproximateArrivalTimestamp": epoch_seconds(record.arrival_timestamp_ms),
                "FirstReceiveTimestamp": epoch_seconds(h.delivery.first_receive_ms),
                "ReceiveCount": h.delivery.receives,
            }));
        }
        q.record(&state, &changes).map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
        match failure {
            // Records handed out are answered (they are in flight now); an error only when a
            // bad record is all there was.
            Some(e) if out.is_empty() => Err(e),
            _ => Ok(out),
        }
    }

    /// Up to `n` records never handed out, from the shards of `streams` in turn (from a
    /// random shard, so every shard's records go out interleaved).
    fn new_records(&self, state: &QueueState, streams: &[String], n: usize) -> Vec<((String, u32), u64)> {
        let mut heads: Vec<((String, u32), u64, u64)> = Vec::new();
        for name in streams {
            let Some(stream) = self.streams.get(name) else { continue };
            let shards: Vec<u32> = stream.meta().shards.iter().map(|s| s.index).collect();
            for index in shards {
                let Some(log) = stream.log(index) else { continue };
                // Records past a replicated shard's high watermark are not the shard's yet.
                let (first, end) = (log.bounds().first_sequence_number, log.readable_end());
                let key = (name.clone(), index);
                let cursor = state.shards.get(&key).map_or(0, |c| c.cursor).max(first);
                if cursor < end {
                    heads.push((key, cursor, end));
                }
            }
        }
        if heads.is_empty() {
            return Vec::new();
        }
        let start = sluice_engine::stream::random_u64() as usize % heads.len();
        heads.rotate_left(start);
        let mut out = Vec::with_capacity(n);
        while out.len() < n && heads.iter().any(|(_, c, end)| c < end) {
            for (key, cursor, end) in heads.iter_mut() {
                if out.len() < n && *cursor < *end {
                    out.push((key.clone(), *cursor));
                    *cursor += 1;
                }
            }
        }
        out
    }

    /// When a waiting receive of `q` should look again at the latest: the next visibility
    /// time of a record in flight.
    pub fn next_visible_ms(&self, q: &Queue, area: Area) -> Option<u64> {
        q.state.lock().unwrap_or_else(PoisonError::into_inner).next_visible_ms(self.clock.now_ms(), area)
    }

    /// Applies `apply` to the record of each entry's receipt handle; per-entry results as
    /// AWS lists them (`Successful`, `Failed` with an error code).
    fn entries(
        &self,
        r: EntriesRequest,
        area: Area,
        mut apply: impl FnMut(&mut QueueState, &ReceiptHandle, &Entry, u64) -> Result<(), EntryError>,
    ) -> Result<Vec<u8>, ApiError> {
        let q = self.queue(&r.queue_arn)?;
        let incarnation = q.meta.read().unwrap_or_else(PoisonError::into_inner).incarnation;
        let now = self.clock.now_ms();
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        let mut changes = Vec::new();
        let mut state = q.state.lock().unwrap_or_else(PoisonError::into_inner);
        for e in &r.entries {
            let handle = ReceiptHandle::decode(&e.receipt_handle, &self.queues.secret)
                .filter(|h| h.queue == incarnation && h.area == area);
            let result = match &handle {
                None => Err("The receipt handle is not one of this queue's.".to_owned()),
                Some(h) => apply(&mut state, h, e, now).map_err(|EntryError::Stale| {
                    "The receipt handle is stale: its record was acknowledged, restored or received again since."
                        .to_owned()
                }),
            };
            match result {
                Ok(()) => {
                    let h = handle.as_ref().expect("applied to a handle");
                    changes.extend(state.changes_for(&h.shard, h.sequence));
                    ok.push(serde_json::json!({ "ReceiptHandle": e.receipt_handle }));
                }
                Err(message) => failed.push(serde_json::json!({
                    "ReceiptHandle": e.receipt_handle,
                    "ErrorCode": RECEIPT_HANDLE_INVALID,
                    "ErrorMessage": message,
                })),
            }
        }
        if !ok.is_empty() {
            q.record(&state, &changes).map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
            drop(state);
            // A visibility change may make records visible: waiting receives look again.
            self.wake_receivers();
        }
        respond(&serde_json::json!({ "Successful": ok, "Failed": failed }))
    }
}

fn attributes(a: Option<&Attributes>, into: &mut QueueMeta) -> Result<(), ApiError> {
    let Some(a) = a else { return Ok(()) };
    if let Some(v) = a.visibility_timeout_seconds {
        into.visibility_timeout_s = v.clamp(0, 43_200) as u32;
    }
    if let Some(d) = &a.dead_letter_configuration {
        into.max_receives = match (d.target_type.as_str(), d.max_receive_count) {
            ("BUILT_IN", Some(n)) => Some(n.clamp(1, 1000) as u32),
            ("BUILT_IN", None) => {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "MaxReceiveCount is required when the dead-letter TargetType is BUILT_IN.",
                ))
            }
            _ => None,
        };
    }
    Ok(())
}

pub fn run_create(k: &Kinesis, r: CreateRequest) -> Result<Vec<u8>, ApiError> {
    let mut meta = QueueMeta {
        name: r.queue_name,
        created_ms: k.clock.now_ms(),
        streams: Vec::new(),
        visibility_timeout_s: VISIBILITY_TIMEOUT_S_DEFAULT,
        max_receives: None,
        tags: r.tags.unwrap_or_default(),
        incarnation: sluice_engine::stream::random_u64(),
        attributes: BTreeMap::new(),
        modified_ms: 0,
    };
    attributes(r.queue_attributes.as_ref(), &mut meta)?;
    let mut state = QueueState::default();
    for c in &r.stream_configuration_list {
        let stream = k.stream(&StreamTarget { stream_name: None, stream_arn: Some(c.stream_arn.clone()) })?;
        let (name, mode, created_ms) = {
            let m = stream.meta();
            (m.name.clone(), m.settings.mode, m.created_ms)
        };
        if mode != StreamMode::OnDemand {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "Queues can only be created on streams in ON_DEMAND mode. Stream {name} is in PROVISIONED mode."
                ),
            ));
        }
        let kind = c.starting_position.as_ref().map_or("LATEST", |p| p.kind.as_str()).to_owned();
        let timestamp_ms = c.starting_position.as_ref().and_then(|p| p.timestamp).map(|t| (t.max(0.0) * 1000.0) as u64);
        let position = match (kind.as_str(), timestamp_ms) {
            ("TRIM_HORIZON", _) => StartingPosition::TrimHorizon,
            ("AT_TIMESTAMP", Some(ts)) => StartingPosition::AtTimestamp(ts),
            ("AT_TIMESTAMP", None) => {
                return Err(ApiError::new(ErrorKind::InvalidArgument, "Timestamp must be provided for AT_TIMESTAMP."))
            }
            _ => StartingPosition::Latest,
        };
        for shard in stream.meta().shards.iter().map(|s| s.index).collect::<Vec<_>>() {
            let Some(log) = stream.log(shard) else { continue };
            let cursor =
                log.position(position).map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
            state.shards.insert((name.clone(), shard), ShardCursor { cursor, ..ShardCursor::default() });
        }
        meta.streams.push(QueueStream { name, starting_position: kind, timestamp_ms, stream_created_ms: created_ms });
    }
    let name = meta.name.clone();
    let q = k
        .queues
        .create(meta, state)
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::ResourceInUse,
                format!("Queue {name} under account {} already exists.", k.config.account_id),
            )
        })?;
    respond(&serde_json::json!({ "QueueDescription": k.queue_description(&q) }))
}

pub fn run_describe(k: &Kinesis, r: QueueTarget) -> Result<Vec<u8>, ApiError> {
    let q = k.queue(&r.queue_arn)?;
    respond(&serde_json::json!({ "QueueDescription": k.queue_description(&q) }))
}

pub fn run_list(k: &Kinesis, r: ListRequest) -> Result<Vec<u8>, ApiError> {
    let limit = r.max_results.map_or(100, |n| n.clamp(1, 10_000) as usize);
    let after = after_token(r.next_token.as_deref())?;
    let filter: Option<Vec<(String, Option<f64>)>> = r.stream_filter.map(|f| {
        f.iter()
            .map(|s| (s.stream_arn.rsplit('/').next().unwrap_or("").to_owned(), s.stream_creation_timestamp))
            .collect()
    });
    let queues: Vec<_> = k
        .queues
        .list()
        .into_iter()
        .filter(|q| {
            let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
            after.as_ref().is_none_or(|a| m.name > *a)
                && filter.as_ref().is_none_or(|f| {
                    m.streams.iter().any(|s| {
                        f.iter().any(|(name, t)| {
                            *name == s.name && t.is_none_or(|t| super::super::same_creation(t, s.stream_created_ms))
                        })
                    })
                })
        })
        .collect();
    let page: Vec<_> = queues
        .iter()
        .take(limit)
        .map(|q| {
            let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
            let streams: Vec<_> = m
                .streams
                .iter()
                .map(|s| {
                    serde_json::json!({ "StreamARN": k.stream_arn(&s.name), "StreamCreationTimestamp": epoch_seconds(s.stream_created_ms) })
                })
                .collect();
            serde_json::json!({
                "QueueName": m.name,
                "QueueARN": k.queue_arn(&m.name),
                "QueueStatus": "ACTIVE",
                "QueueCreationTimestamp": epoch_seconds(m.created_ms),
                "Streams": streams,
            })
        })
        .collect();
    let mut body = serde_json::json!({ "QueueSummaries": page });
    if queues.len() > limit {
        let last = queues[limit - 1].meta.read().unwrap_or_else(PoisonError::into_inner).name.clone();
        body["NextToken"] = name_token(&last).into();
    }
    respond(&body)
}

pub fn run_update(k: &Kinesis, r: UpdateRequest) -> Result<Vec<u8>, ApiError> {
    let q = k.queue(&r.queue_arn)?;
    {
        let mut m = q.meta.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = m.clone();
        attributes(Some(&r.queue_attributes), &mut next)?;
        *m = next;
    }
    q.persist_meta().map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
    respond(&serde_json::json!({ "QueueDescription": k.queue_description(&q) }))
}

pub fn run_delete(k: &Kinesis, r: QueueTarget) -> Result<Vec<u8>, ApiError> {
    let q = k.queue(&r.queue_arn)?;
    let name = q.meta.read().unwrap_or_else(PoisonError::into_inner).name.clone();
    k.queues.delete(&name);
    no_output()
}

/// `ReceiveQueueRecords` or `ReceiveDeadLetterQueueRecords` without waiting: what is there now.
pub fn run_receive(k: &Kinesis, r: &ReceiveRequest, area: Area) -> Result<Vec<u8>, ApiError> {
    let q = k.queue(&r.queue_arn)?;
    let records = k.receive_now(&q, area, r)?;
    respond(&serde_json::json!({ "QueueRecords": records }))
}

pub fn run_acknowledge(k: &Kinesis, r: EntriesRequest, area: Area) -> Result<Vec<u8>, ApiError> {
    k.entries(r, area, |s, h, _, _| s.acknowledge(h.area, &h.shard, h.sequence, h.attempt))
}

pub fn run_visibility(k: &Kinesis, r: EntriesRequest, area: Area) -> Result<Vec<u8>, ApiError> {
    k.entries(r, area, |s, h, e, now| {
        let ms = e.visibility_timeout_seconds.unwrap_or(0).clamp(0, 43_200) as u64 * 1000;
        s.change_visibility(h.area, &h.shard, h.sequence, h.attempt, now, ms)
    })
}

pub fn run_restore(k: &Kinesis, r: EntriesRequest) -> Result<Vec<u8>, ApiError> {
    k.entries(r, Area::DeadLetter, |s, h, _, _| s.restore(&h.shard, h.sequence, h.attempt))
}
