//! `SubscribeToShard` (enhanced fan-out): an event stream (`application/vnd.amazon.eventstream`)
//! of `SubscribeToShardEvent`s that pushes a shard's records to a registered consumer as they
//! are appended, for up to 5 minutes.
//!
//! The wire, as the AWS SDKs read it: the first message is `initial-response` (an empty
//! object), then events (`:message-type` `event`, `:event-type` `SubscribeToShardEvent`,
//! payload in the request's codec, JSON or CBOR), or one `exception` message, each framed
//! by `aws-smithy-eventstream`. An event comes as soon as records are appended (the engine
//! announces appends; nothing polls) and at least every [`HEARTBEAT_MS`] without records,
//! so clients see `MillisBehindLatest` and a fresh `ContinuationSequenceNumber`. At the end
//! of a closed shard the last event carries `ChildShards` and the stream ends.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::consumers::{ConsumerStatus, ConsumerTarget};
use super::get_records::{child_shards, Records};
use super::get_shard_iterator::resolve_position;
use super::{ApiError, ErrorKind, Kinesis};
use crate::api::{model, Codec};
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::stream::Stream;
use sluice_engine::ReadLimits;

/// How long a subscription lasts by default, ms: 5 minutes. Source: AWS Kinesis API
/// reference, `SubscribeToShard`.
pub const SUBSCRIPTION_LIFETIME_MS_DEFAULT: u64 = 300_000;

/// Longest time without an event, ms: 5 s. An event with no records then tells the consumer
/// the subscription is alive and how far behind it is.
pub const HEARTBEAT_MS: u64 = 5_000;

/// Read throughput of one consumer on one shard, bytes/s: 2 MiB, apart from the shard's
/// shared 2 MiB/s. Source: AWS Kinesis developer guide, enhanced fan-out.
pub const FAN_OUT_BYTES_PER_SEC: u64 = 2 << 20;

/// Least time between two subscriptions of one consumer to one shard, ms: 1 s (when
/// throttling is on; "You can make one call to SubscribeToShard per second per registered
/// consumer per shard"). Source: AWS Kinesis API reference, `SubscribeToShard`.
pub const SUBSCRIBE_INTERVAL_MS: u64 = 1_000;

/// Largest event, bytes of record data: 2 MiB, one second of a consumer's throughput.
const EVENT_BYTES_MAX: usize = 2 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(rename = "ConsumerARN")]
    consumer_arn: String,
    shard_id: String,
    starting_position: Position,
    dry_run: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Position {
    #[serde(rename = "Type")]
    kind: String,
    sequence_number: Option<String>,
    timestamp: Option<f64>,
}

/// Which consumers are subscribed to which shards now, and when each pair last subscribed.
#[derive(Debug, Default)]
pub struct Subscriptions {
    active: Mutex<HashSet<(String, u32)>>,
    last: Mutex<HashMap<(String, u32), u64>>,
}

/// A consumer's hold on a shard; released when the subscription ends.
#[derive(Debug)]
struct Slot {
    registry: Arc<Subscriptions>,
    key: (String, u32),
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.active.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.key);
    }
}

/// An accepted subscription, ready to stream.
#[derive(Debug)]
pub struct Subscription {
    stream: Arc<Stream>,
    consumer: String,
    shard_index: u32,
    position: u64,
    throttled: bool,
    lifetime: Duration,
    /// Set when this node holds no replica of the shard (a cluster of more nodes than the
    /// replication factor): the records are read by GetRecords on a node that does.
    remote: Option<Remote>,
    _slot: Slot,
}

/// A subscription's reads on another node of the cluster.
#[derive(Debug)]
struct Remote {
    link: Arc<crate::cluster::ClusterLink>,
    /// The node that reads the shard (its leader, or a replica).
    node: String,
    /// The shard iterator of the next GetRecords there.
    iterator: String,
}

/// How often a subscription read on another node asks for new records, ms: 200 (that node's
/// appends are not announced here).
const REMOTE_POLL_MS: u64 = 200;

/// Most records a subscription read on another node asks for at once: 1,000, so one read
/// stays near an event's size and the shard's read quota there is not run into debt.
const REMOTE_READ_RECORDS: u32 = 1_000;

/// Checks a `SubscribeToShard` request and takes the consumer's hold on the shard.
///
/// Errors: `ResourceNotFoundException` (no such consumer, stream or shard),
/// `ResourceInUseException` (consumer not ACTIVE, or already subscribed to this shard),
/// `LimitExceededException` (subscribed to this shard less than 5 s ago, with throttling on),
/// `InvalidArgumentException` (starting position), `DryRunOperationException` (`DryRun`).
pub fn open(k: &Kinesis, r: Request) -> Result<Subscription, ApiError> {
    let found = k.consumer(&ConsumerTarget::by_arn(&r.consumer_arn))?;
    if found.status != ConsumerStatus::Active {
        // AWS's text, as observed (spacing included).
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Consumer {} with creation timestamp {} under stream: {} , account {}. is not in ACTIVE status.",
                found.consumer.name,
                found.consumer.created_ms / 1000,
                found.stream.meta().name,
                k.config.account_id
            ),
        ));
    }
    let stream = found.stream;
    let name = stream.meta().name.clone();
    let stream = k.stream_for_data(&super::StreamTarget { stream_name: Some(name.clone()), stream_arn: None })?;
    let (index, shard) = k.shard_of(&stream, &r.shard_id)?;
    let p = &r.starting_position;
    let (position, remote) = match k.read_elsewhere(&stream, index) {
        None => {
            let position =
                resolve_position(&shard.log, index, &r.shard_id, &p.kind, p.sequence_number.as_deref(), p.timestamp)?;
            (position, None)
        }
        Some((link, node)) => {
            // The starting position is resolved where the records are.
            let mut body =
                serde_json::json!({ "StreamName": name, "ShardId": r.shard_id, "ShardIteratorType": p.kind });
            if let Some(n) = &p.sequence_number {
                body["StartingSequenceNumber"] = n.clone().into();
            }
            if let Some(t) = p.timestamp {
                body["Timestamp"] = t.into();
            }
            let answer: serde_json::Value =
                serde_json::from_slice(&k.read_on(&link, &node, "GetShardIterator", body)?).map_err(super::internal)?;
            let iterator = answer["ShardIterator"].as_str().unwrap_or_default().to_owned();
            let position = k.iterator_position(&iterator)?;
            (position, Some(Remote { link, node, iterator }))
        }
    };
    if r.dry_run == Some(true) {
        return Err(k.dry_run(&stream));
    }
    let throttled = shard.throttle().is_some();
    let key = (r.consumer_arn.clone(), index);
    let registry = k.subscriptions.clone();
    let now = k.clock.now_ms();
    {
        let mut active = registry.active.lock().unwrap_or_else(PoisonError::into_inner);
        if active.contains(&key) {
            return Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Another active subscription exists for this consumer: {}:{name}:{}:{}",
                    k.config.account_id, r.shard_id, found.consumer.name
                ),
            ));
        }
        let mut last = registry.last.lock().unwrap_or_else(PoisonError::into_inner);
        if throttled && last.get(&key).is_some_and(|&t| now < t + SUBSCRIBE_INTERVAL_MS) {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Rate exceeded for consumer {} and shard {} in stream {name} under account {}.",
                    r.consumer_arn, r.shard_id, k.config.account_id
                ),
            ));
        }
        last.retain(|_, t| now < *t + SUBSCRIBE_INTERVAL_MS);
        last.insert(key.clone(), now);
        active.insert(key.clone());
    }
    Ok(Subscription {
        stream,
        consumer: found.consumer.name,
        shard_index: index,
        position,
        throttled,
        lifetime: Duration::from_millis(k.config.subscription_lifetime_ms),
        remote,
        _slot: Slot { registry, key },
    })
}

/// One event-stream message, framed.
fn message(headers: &[(&'static str, String)], payload: Vec<u8>) -> Bytes {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let mut m = Message::new(payload);
    for (name, value) in headers {
        m = m.add_header(Header::new(*name, HeaderValue::String(value.clone().into())));
    }
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&m, &mut out).expect("messages of Sluice's sizes frame");
    Bytes::from(out)
}

/// The `initial-response` message that opens the stream.
pub fn initial_response(codec: Codec) -> Bytes {
    let empty = match codec {
        Codec::Json => b"{}".to_vec(),
        Codec::Cbor => vec![0xa0],
    };
    message(
        &[
            (":message-type", "event".into()),
            (":event-type", "initial-response".into()),
            (":content-type", codec.content_type().into()),
        ],
        empty,
    )
}

/// An `exception` message ending the stream with `error`.
pub fn exception(codec: Codec, error: &ApiError) -> Bytes {
    message(
        &[
            (":message-type", "exception".into()),
            (":exception-type", error.kind.name().into()),
            (":content-type", codec.content_type().into()),
        ],
        codec.error_body(error),
    )
}

impl Subscription {
    /// Streams events into `tx` until the lifetime ends, the shard is read to its end, the
    /// client goes away (`tx` closed), the consumer or stream is deleted, or `closing`
    /// turns true (server shutdown).
    pub async fn pump(
        mut self,
        k: &Kinesis,
        codec: Codec,
        tx: tokio::sync::mpsc::Sender<Bytes>,
        mut closing: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(shard) = self.stream.shard(self.shard_index) else { return };
        let mut appends = shard.log.watch_appends();
        let started = tokio::time::Instant::now();
        let deadline = started + self.lifetime;
        // When the next event may be sent under the consumer's 2 MiB/s.
        let mut next_send = started;
        let mut last_event: Option<tokio::time::Instant> = None;
        loop {
            if *closing.borrow() || tokio::time::Instant::now() >= deadline {
                return;
            }
            if let Some(error) = self.gone(k) {
                let _ = tx.send(exception(codec, &error)).await;
                return;
            }
            if self.throttled {
                tokio::time::sleep_until(next_send.min(deadline)).await;
            }
            appends.borrow_and_update();
            let event = match self.remote.is_some() {
                true => self.remote_event(k, codec).await,
                false => self.event(k, codec),
            };
            let event = match event {
                Ok(e) => e,
                Err(error) => {
                    let _ = tx.send(exception(codec, &error)).await;
                    return;
                }
            };
            let heartbeat_due = last_event.is_none_or(|t| t.elapsed() >= Duration::from_millis(HEARTBEAT_MS));
            if event.records > 0 || event.end || heartbeat_due {
                // A client that stops reading holds its slot until the lifetime ends, no longer.
                match tokio::time::timeout_at(deadline, tx.send(event.bytes)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return,
                }
                let now = tokio::time::Instant::now();
                last_event = Some(now);
                next_send = now.max(next_send)
                    + Duration::from_micros(event.data_bytes as u64 * 1_000_000 / FAN_OUT_BYTES_PER_SEC);
                if event.end {
                    return;
                }
                if event.more {
                    continue;
                }
            }
            let mut heartbeat = last_event.map_or(deadline, |t| t + Duration::from_millis(HEARTBEAT_MS));
            if self.remote.is_some() {
                heartbeat = heartbeat.min(tokio::time::Instant::now() + Duration::from_millis(REMOTE_POLL_MS));
            }
            tokio::select! {
                changed = appends.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(heartbeat.min(deadline)) => {}
                _ = closing.changed() => return,
                () = tx.closed() => return,
            }
        }
    }

    /// Why the subscription must end now, if it must: its consumer was deregistered or its
    /// stream deleted.
    fn gone(&self, k: &Kinesis) -> Option<ApiError> {
        let name = self.stream.meta().name.clone();
        let current = k.streams.get(&name);
        if !current.is_some_and(|s| Arc::ptr_eq(&s, &self.stream)) {
            return Some(k.not_found(&name));
        }
        let registered = self.stream.meta().settings.consumers.iter().any(|c| c.name == self.consumer);
        (!registered).then(|| {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!("Consumer {} of stream {name} was deregistered.", self.consumer),
            )
        })
    }

    /// Reads the next records and frames them as one event; advances the position.
    fn event(&mut self, k: &Kinesis, codec: Codec) -> Result<Event, ApiError> {
        let shard = self.shard_index;
        let log = self.stream.log(shard).ok_or_else(|| k.not_found(&self.stream.meta().name))?;
        let batch = log
            .read(self.position, ReadLimits { max_bytes: EVENT_BYTES_MAX, ..ReadLimits::default() })
            .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
        let now = k.clock.now_ms();
        let next = log.readable_end();
        let more = batch.next_sequence_number() < next;
        let behind = match batch.iter().last() {
            Some(r) if more => now.saturating_sub(r.arrival_timestamp_ms),
            _ => 0,
        };
        if let Some(s) = self.stream.shard(shard) {
            use std::sync::atomic::Ordering::Relaxed;
            s.stats.outgoing_bytes.fetch_add(batch.bytes() as u64, Relaxed);
            s.stats.outgoing_records.fetch_add(batch.len() as u64, Relaxed);
        }
        self.position = batch.next_sequence_number();
        let continuation =
            SequenceNumber { shard_index: shard, shard_sequence: self.position.saturating_sub(1) }.to_string();
        let end = self.stream.meta().shards.get(shard as usize).is_some_and(|s| s.read_to_end(self.position, next));
        let mut json = Vec::with_capacity(batch.bytes() * 4 / 3 + batch.len() * 110 + 256);
        json.extend_from_slice(b"{\"Records\":");
        Records { batch: &batch, shard_index: shard }.write_json(&mut json);
        self.close_event(&mut json, &continuation, behind, end, None);
        let (records, data_bytes) = (batch.len(), batch.bytes());
        frame(json, codec, Event { bytes: Bytes::new(), records, data_bytes, more, end })
    }

    /// Ends an event's JSON after its `Records`: the continuation (none at the end of a
    /// closed shard: clients, the KCL, Flink, Beam, take its absence as the shard's end, as
    /// AWS sends it), `MillisBehindLatest`, and at the end the child shards.
    /// `children`: as the node that read the shard answered them (else this copy's).
    fn close_event(
        &self,
        json: &mut Vec<u8>,
        continuation: &str,
        behind: u64,
        end: bool,
        children: Option<&serde_json::Value>,
    ) {
        if !end {
            json.extend_from_slice(b",\"ContinuationSequenceNumber\":");
            serde_json::to_writer(&mut *json, continuation).expect("a string serializes");
        }
        json.extend_from_slice(format!(",\"MillisBehindLatest\":{behind}").as_bytes());
        if end {
            json.extend_from_slice(b",\"ChildShards\":");
            let written = match children {
                Some(c) => serde_json::to_writer(&mut *json, c),
                None => serde_json::to_writer(&mut *json, &child_shards(&self.stream, self.shard_index)),
            };
            written.expect("JSON values serialize");
        }
        json.push(b'}');
    }

    /// As [`Subscription::event`], for a shard read on another node: one GetRecords there
    /// of at most [`REMOTE_READ_RECORDS`]. That node charges the shard's read quota; a read
    /// it throttles makes an event without records (the next one is asked for
    /// [`REMOTE_POLL_MS`] later), not the subscription's end.
    async fn remote_event(&mut self, k: &Kinesis, codec: Codec) -> Result<Event, ApiError> {
        // The shard's placement may have changed since the last event: a new leader, or a
        // replica moved onto this node (read here from then on; the iterator's position is
        // the same on every node).
        let Some((link, node)) = k.read_elsewhere(&self.stream, self.shard_index) else {
            self.remote = None;
            return self.event(k, codec);
        };
        let remote = self.remote.as_mut().expect("a remote subscription");
        (remote.link, remote.node) = (link, node);
        let body = serde_json::json!({ "ShardIterator": remote.iterator, "Limit": REMOTE_READ_RECORDS });
        let answer = match super::read_forward::read_on_async(&remote.link, &remote.node, "GetRecords", body).await {
            Ok(a) => serde_json::from_slice(&a).map_err(super::internal)?,
            Err(e) if e.kind == ErrorKind::ProvisionedThroughputExceeded => serde_json::json!({
                "Records": [], "NextShardIterator": remote.iterator, "MillisBehindLatest": 0,
            }),
            Err(e) => return Err(e),
        };
        let empty = Vec::new();
        let records = answer["Records"].as_array().unwrap_or(&empty);
        let behind = answer["MillisBehindLatest"].as_u64().unwrap_or(0);
        let end = answer.get("NextShardIterator").is_none_or(serde_json::Value::is_null);
        if let Some(next) = answer["NextShardIterator"].as_str() {
            remote.iterator = next.to_owned();
            self.position = k.iterator_position(next)?;
        }
        let continuation =
            SequenceNumber { shard_index: self.shard_index, shard_sequence: self.position.saturating_sub(1) }
                .to_string();
        let data_bytes = records.iter().map(|r| r["Data"].as_str().map_or(0, |d| d.len() * 3 / 4)).sum();
        let mut json = b"{\"Records\":".to_vec();
        serde_json::to_writer(&mut json, records).expect("JSON values serialize");
        self.close_event(&mut json, &continuation, behind, end, answer.get("ChildShards"));
        let more = !records.is_empty() && behind > 0;
        frame(json, codec, Event { bytes: Bytes::new(), records: records.len(), data_bytes, more, end })
    }
}

/// Frames an event's JSON `json` in `codec` into `event.bytes`.
fn frame(json: Vec<u8>, codec: Codec, mut event: Event) -> Result<Event, ApiError> {
    let m = model::kinesis();
    let shape = m.shape_id("SubscribeToShardEvent");
    #[cfg(debug_assertions)]
    if let (Some(shape), false) = (shape, event.end) {
        let value: serde_json::Value = serde_json::from_slice(&json).map_err(super::internal)?;
        crate::api::validate::conforms(m, shape, &value, "SubscribeToShardEvent")
            .map_err(|e| ApiError::new(ErrorKind::InternalFailure, format!("event off the model: {e}")))?;
    }
    let payload = codec.encode(m, shape, json)?;
    event.bytes = message(
        &[
            (":message-type", "event".into()),
            (":event-type", "SubscribeToShardEvent".into()),
            (":content-type", codec.content_type().into()),
        ],
        payload,
    );
    Ok(event)
}

/// One framed event and what it held.
struct Event {
    bytes: Bytes,
    records: usize,
    data_bytes: usize,
    /// More records are waiting after it.
    more: bool,
    /// The shard is closed and read to its end: the last event.
    end: bool,
}
