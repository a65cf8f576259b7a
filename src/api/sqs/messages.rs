//! Message actions: `SendMessage(Batch)`, `ReceiveMessage`, `DeleteMessage(Batch)` and
//! `ChangeMessageVisibility(Batch)`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, PoisonError};

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_engine::queue::{Area, Change, EntryError, QueueState, ReceiptHandle};
use sluice_engine::ReadLimits;
use sluice_engine::Record;

use super::actions::is_fifo;
use super::attributes::{self, VISIBILITY_TIMEOUT_S_MAX, WAIT_S_MAX};
use super::message::{self, AttributeValue, Envelope};
use super::{Sqs, SqsAnswer, SqsError};
use crate::api::kinesis::queues::Queue;

/// Most entries of a batch: 10. Source: Amazon SQS API Reference.
pub const BATCH_ENTRIES_MAX: usize = 10;

/// Most messages one receive returns: 10.
pub const RECEIVE_MESSAGES_MAX: i64 = 10;

/// Largest batch of messages, bytes: 1,048,576 (the sum of the messages' sizes).
pub const BATCH_BYTES_MAX: usize = 1_048_576;

/// How long a FIFO queue remembers a deduplication id, ms: 5 minutes. Source: Amazon SQS
/// Developer Guide, "Exactly-once processing".
pub const DEDUP_WINDOW_MS: u64 = 300_000;

/// Records a receive looks at past the queue's cursor, beyond what it returns: delayed
/// messages and (FIFO) messages of busy groups are stepped over, up to this many.
const SCAN_AHEAD: usize = 256;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendRequest {
    queue_url: String,
    #[serde(flatten)]
    entry: SendEntry,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendEntry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message_body: String,
    delay_seconds: Option<i64>,
    #[serde(default)]
    message_attributes: BTreeMap<String, AttributeValue>,
    #[serde(default)]
    message_system_attributes: BTreeMap<String, AttributeValue>,
    message_deduplication_id: Option<String>,
    message_group_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SendBatchRequest {
    queue_url: String,
    #[serde(default)]
    entries: Vec<SendEntry>,
}

/// `ReceiveMessage`'s input.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceiveRequest {
    pub(super) queue_url: String,
    #[serde(default)]
    attribute_names: Vec<String>,
    #[serde(default)]
    message_system_attribute_names: Vec<String>,
    #[serde(default)]
    message_attribute_names: Vec<String>,
    max_number_of_messages: Option<i64>,
    visibility_timeout: Option<i64>,
    wait_time_seconds: Option<i64>,
    #[serde(default)]
    receive_request_attempt_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandleRequest {
    queue_url: String,
    receipt_handle: String,
    visibility_timeout: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandleEntry {
    id: String,
    receipt_handle: String,
    visibility_timeout: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandleBatchRequest {
    queue_url: String,
    #[serde(default)]
    entries: Vec<HandleEntry>,
}

/// What a queue's attributes say about sends and receives.
struct Settings {
    fifo: bool,
    /// Deduplication ids are per message group (`DeduplicationScope` `messageGroup`).
    group_dedup: bool,
    arn: String,
    stream: String,
    incarnation: u64,
    max_bytes: usize,
    delay_s: u32,
    retention_ms: u64,
    visibility_s: u32,
    wait_s: u32,
    content_dedup: bool,
    redrive: Option<attributes::Redrive>,
}

fn settings(sqs: &Sqs, q: &Queue) -> Settings {
    let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
    let a = &m.attributes;
    Settings {
        group_dedup: a.get("DeduplicationScope").is_some_and(|v| v == "messageGroup"),
        fifo: m.name.ends_with(".fifo"),
        arn: sqs.queue_arn(&m.name),
        stream: Sqs::stream_name(m.incarnation),
        incarnation: m.incarnation,
        max_bytes: attributes::number(a, "MaximumMessageSize") as usize,
        delay_s: attributes::number(a, "DelaySeconds") as u32,
        retention_ms: attributes::number(a, "MessageRetentionPeriod") * 1000,
        visibility_s: m.visibility_timeout_s,
        wait_s: attributes::number(a, "ReceiveMessageWaitTimeSeconds") as u32,
        content_dedup: a.get("ContentBasedDeduplication").is_some_and(|v| v == "true"),
        redrive: a.get("RedrivePolicy").and_then(|p| attributes::redrive(p).ok()),
    }
}

/// Checks one entry of a send and makes its envelope (sent now, by `sender`).
fn envelope(s: &Settings, e: SendEntry, now: u64, sender: &str) -> Result<Envelope, SqsError> {
    message::check_body(&e.message_body)?;
    message::check_attributes(&e.message_attributes, false)?;
    message::check_attributes(&e.message_system_attributes, true)?;
    let delay_s = match e.delay_seconds {
        Some(d) if s.fifo && d != 0 => {
            return Err(SqsError::invalid(format!(
                "Value {d} for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type."
            )))
        }
        // A FIFO queue takes 0, and keeps its own delay.
        Some(0) if s.fifo => s.delay_s,
        Some(d @ 0..=900) => d as u32,
        Some(d) => {
            return Err(SqsError::invalid(format!(
                "Value {d} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."
            )))
        }
        None => s.delay_s,
    };
    let (group, dedup) = if s.fifo {
        let group = e.message_group_id.ok_or_else(|| {
            SqsError::new("MissingParameter", "The request must contain the parameter MessageGroupId.")
        })?;
        check_fifo_id("MessageGroupId", &group)?;
        let dedup = match e.message_deduplication_id {
            Some(d) => {
                check_fifo_id("MessageDeduplicationId", &d)?;
                d
            }
            None if s.content_dedup => {
                use sha2::Digest as _;
                sha2::Sha256::digest(e.message_body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
            }
            None => {
                return Err(SqsError::invalid(
                    "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ))
            }
        };
        (Some(group), Some(dedup))
    } else {
        if e.message_deduplication_id.is_some() {
            return Err(SqsError::invalid(
                "Value for parameter MessageDeduplicationId is invalid. Reason: The request include parameter that is not valid for this queue type.",
            ));
        }
        if let Some(g) = &e.message_group_id {
            check_fifo_id("MessageGroupId", g)?;
        }
        (e.message_group_id, None)
    };
    let env = Envelope {
        id: message::new_message_id(),
        body: e.message_body,
        attributes: e.message_attributes,
        system: e.message_system_attributes,
        sent_ms: now,
        delay_s,
        sender: sender.to_owned(),
        group,
        dedup,
        source_arn: None,
    };
    if env.size() > s.max_bytes {
        return Err(SqsError::invalid(format!(
            "One or more parameters are invalid. Reason: Message must be shorter than {} bytes.",
            s.max_bytes
        )));
    }
    Ok(env)
}

/// A `MessageGroupId` or `MessageDeduplicationId`: 1 to 128 of the printable ASCII characters.
fn check_fifo_id(member: &str, value: &str) -> Result<(), SqsError> {
    if value.is_empty() || value.len() > 128 || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(SqsError::invalid(format!(
            "Value {value} for parameter {member} is invalid. Reason: {member} can only include alphanumeric and punctuation characters. 1 to 128 in length."
        )));
    }
    Ok(())
}

/// The answer of one message sent (or found again by its deduplication id).
fn sent_answer(env: &Envelope, id: Option<&str>, sequence: Option<u64>) -> Value {
    let mut out = json!({ "MessageId": env.id, "MD5OfMessageBody": message::md5_hex(env.body.as_bytes()) });
    if let Some(id) = id {
        out["Id"] = id.into();
    }
    if let Some(md5) = message::md5_of_attributes(&env.attributes) {
        out["MD5OfMessageAttributes"] = md5.into();
    }
    if let Some(md5) = message::md5_of_attributes(&env.system) {
        out["MD5OfMessageSystemAttributes"] = md5.into();
    }
    if let Some(s) = sequence {
        out["SequenceNumber"] = format!("{s:020}").into();
    }
    out
}

/// Appends checked envelopes to queue `q` in one batch; FIFO messages whose deduplication
/// id was seen within 5 minutes are not appended again and answer as the first did.
/// Returns, per envelope, the envelope answered and its sequence number.
fn append(sqs: &Sqs, q: &Queue, s: &Settings, envelopes: Vec<Envelope>) -> Result<Vec<(Envelope, u64)>, SqsError> {
    let log = sqs
        .streams
        .get(&s.stream)
        .and_then(|st| st.log(0))
        .ok_or_else(|| SqsError::internal("the queue's stream is missing"))?;
    if !s.fifo {
        let bytes: Vec<Vec<u8>> = envelopes.iter().map(Envelope::encode).collect();
        let records: Vec<Record<'_>> =
            envelopes.iter().zip(&bytes).map(|(e, b)| Record { partition_key: &e.id, data: b }).collect();
        let first = log.append(&records).map_err(|e| SqsError::internal(e.to_string()))?.first_sequence_number;
        sqs.wake(q);
        return Ok(envelopes.into_iter().enumerate().map(|(k, e)| (e, first + k as u64)).collect());
    }
    // The deduplication lock is held across the append, so two producers of one id cannot
    // both append it.
    let mut dedup = sqs.dedup.lock().unwrap_or_else(PoisonError::into_inner);
    let now = sqs.clock.now_ms();
    let seen = dedup.entry(s.incarnation).or_default();
    seen.retain(|_, (at, _, _)| at.saturating_add(DEDUP_WINDOW_MS) > now);
    /// Where an entry's answer comes from.
    enum Slot {
        /// A message sent before within the window: (its envelope, its sequence number).
        Seen(Envelope, u64),
        /// The k-th record of this append.
        Appended(usize),
        /// A repeat, in this batch, of the k-th record's id.
        Repeat(usize, Envelope),
    }
    let mut slots = Vec::with_capacity(envelopes.len());
    let mut appends: Vec<Envelope> = Vec::new();
    let mut firsts: BTreeMap<String, usize> = BTreeMap::new();
    for env in envelopes {
        let key = env.dedup.as_ref().map(|d| dedup_key(s.group_dedup, env.group.as_deref(), d));
        let Some(d) = key else {
            slots.push(Slot::Appended(appends.len()));
            appends.push(env);
            continue;
        };
        if let Some((_, id, seq)) = seen.get(&d) {
            let mut first = env;
            first.id = id.clone();
            slots.push(Slot::Seen(first, *seq));
        } else if let Some(&k) = firsts.get(&d) {
            slots.push(Slot::Repeat(k, env));
        } else {
            firsts.insert(d, appends.len());
            slots.push(Slot::Appended(appends.len()));
            appends.push(env);
        }
    }
    let mut first_seq = 0;
    if !appends.is_empty() {
        let bytes: Vec<Vec<u8>> = appends.iter().map(Envelope::encode).collect();
        let records: Vec<Record<'_>> =
            appends.iter().zip(&bytes).map(|(e, b)| Record { partition_key: &e.id, data: b }).collect();
        first_seq = log.append(&records).map_err(|e| SqsError::internal(e.to_string()))?.first_sequence_number;
        for (d, &k) in &firsts {
            seen.insert(d.clone(), (now, appends[k].id.clone(), first_seq + k as u64));
        }
    }
    drop(dedup);
    sqs.wake(q);
    Ok(slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Seen(e, seq) => (e, seq),
            Slot::Appended(k) => (appends[k].clone(), first_seq + k as u64),
            Slot::Repeat(k, mut e) => {
                e.id = appends[k].id.clone();
                (e, first_seq + k as u64)
            }
        })
        .collect())
}

/// The key a deduplication id is remembered under: per queue, or per message group with
/// `DeduplicationScope` `messageGroup`.
fn dedup_key(per_group: bool, group: Option<&str>, dedup: &str) -> String {
    match (group, per_group) {
        (Some(g), true) => format!("{g}\u{0}{dedup}"),
        _ => dedup.to_owned(),
    }
}

impl Sqs {
    /// Reads the deduplication ids of a FIFO queue's last 5 minutes back from its stream, so a
    /// restart does not forget them.
    pub(super) fn rebuild_dedup(&self, q: &Queue) {
        if !is_fifo(q) {
            return;
        }
        let (incarnation, per_group) = {
            let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
            (m.incarnation, m.attributes.get("DeduplicationScope").is_some_and(|v| v == "messageGroup"))
        };
        let Some(log) = self.streams.get(&Sqs::stream_name(incarnation)).and_then(|s| s.log(0)) else { return };
        let since = self.clock.now_ms().saturating_sub(DEDUP_WINDOW_MS);
        let Ok(mut at) = log.position(sluice_engine::StartingPosition::AtTimestamp(since)) else { return };
        let end = log.readable_end();
        let mut seen = BTreeMap::new();
        while at < end {
            let Ok(batch) = log.read(at, ReadLimits { max_records: 10_000, ..ReadLimits::default() }) else { break };
            let before = at;
            for r in batch.iter() {
                at = r.sequence_number + 1;
                if let Some(e) = Envelope::decode(r.data) {
                    if let Some(d) = &e.dedup {
                        let key = dedup_key(per_group, e.group.as_deref(), d);
                        seen.insert(key, (r.arrival_timestamp_ms, e.id, r.sequence_number));
                    }
                }
            }
            if at == before {
                break;
            }
        }
        self.dedup.lock().unwrap_or_else(PoisonError::into_inner).insert(incarnation, seen);
    }
}

pub fn send(sqs: &Sqs, r: SendRequest, sender: &str) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    let s = settings(sqs, &q);
    let env = envelope(&s, r.entry, sqs.clock.now_ms(), sender)?;
    let (env, seq) = append(sqs, &q, &s, vec![env])?.pop().expect("one sent");
    Ok(sent_answer(&env, None, s.fifo.then_some(seq)))
}

/// Checks a batch's entry ids: 1 to 10 entries, ids distinct, of letters, digits, `-` and `_`,
/// at most 80 characters.
fn check_batch<'a>(ids: impl ExactSizeIterator<Item = &'a str>, kind: &str) -> Result<(), SqsError> {
    let n = ids.len();
    if n == 0 {
        return Err(SqsError::new("EmptyBatchRequest", format!("There should be at least one {kind} in the request.")));
    }
    if n > BATCH_ENTRIES_MAX {
        return Err(SqsError::new(
            "TooManyEntriesInBatchRequest",
            format!("Maximum number of entries per request are {BATCH_ENTRIES_MAX}. You have sent {n}."),
        ));
    }
    let mut seen = BTreeSet::new();
    for id in ids {
        if id.is_empty() || id.len() > 80 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(SqsError::new(
                "InvalidBatchEntryId",
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
            ));
        }
        if !seen.insert(id) {
            return Err(SqsError::new("BatchEntryIdsNotDistinct", format!("Id {id} repeated.")));
        }
    }
    Ok(())
}

pub fn send_batch(sqs: &Sqs, r: SendBatchRequest, sender: &str) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    check_batch(r.entries.iter().map(|e| e.id.as_str()), "SendMessageBatchRequestEntry")?;
    let total: usize = r.entries.iter().map(|e| message::message_size(&e.message_body, &e.message_attributes)).sum();
    if total > BATCH_BYTES_MAX {
        return Err(SqsError::new(
            "BatchRequestTooLong",
            format!("Batch requests cannot be longer than {BATCH_BYTES_MAX} bytes. You have sent {total} bytes."),
        ));
    }
    let s = settings(sqs, &q);
    if s.fifo {
        // A FIFO batch missing a group or deduplication id fails whole, as on AWS.
        if r.entries.iter().any(|e| e.message_group_id.is_none()) {
            return Err(SqsError::invalid("The request must contain the parameter MessageGroupId."));
        }
        if !s.content_dedup && r.entries.iter().any(|e| e.message_deduplication_id.is_none()) {
            return Err(SqsError::invalid(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
            ));
        }
    }
    let now = sqs.clock.now_ms();
    let mut failed = Vec::new();
    let mut ok_ids = Vec::new();
    let mut envelopes = Vec::new();
    for e in r.entries {
        let id = e.id.clone();
        match envelope(&s, e, now, sender) {
            Ok(env) => {
                ok_ids.push(id);
                envelopes.push(env);
            }
            Err(mut err) => {
                // A batch entry's size error reads differently from SendMessage's.
                err.message = err.message.replace(
                    "parameters are invalid. Reason: Message must",
                    "parameters cannot be validated. Reason: Message must",
                );
                failed.push(err.entry(&id));
            }
        }
    }
    let sent = if envelopes.is_empty() { Vec::new() } else { append(sqs, &q, &s, envelopes)? };
    let successful: Vec<Value> =
        sent.iter().zip(&ok_ids).map(|((env, seq), id)| sent_answer(env, Some(id), s.fifo.then_some(*seq))).collect();
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

/// `ReceiveMessage`: the messages there now, or a wait for them (the request's
/// `WaitTimeSeconds`, or the queue's `ReceiveMessageWaitTimeSeconds`).
pub fn receive(sqs: &Sqs, r: ReceiveRequest) -> Result<SqsAnswer, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    if let Some(n) = r.max_number_of_messages.filter(|n| !(1..=RECEIVE_MESSAGES_MAX).contains(n)) {
        return Err(SqsError::invalid(format!(
            "Value {n} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."
        )));
    }
    if let Some(n) = r.wait_time_seconds.filter(|n| !(0..=i64::from(WAIT_S_MAX)).contains(n)) {
        return Err(SqsError::invalid(format!(
            "Value {n} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."
        )));
    }
    if let Some(n) = r.visibility_timeout.filter(|n| !(0..=i64::from(VISIBILITY_TIMEOUT_S_MAX)).contains(n)) {
        return Err(SqsError::invalid(format!(
            "Value {n} for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided."
        )));
    }
    if let Some(id) = &r.receive_request_attempt_id {
        check_fifo_id("ReceiveRequestAttemptId", id)?;
    }
    let wait_s = r.wait_time_seconds.map_or(settings(sqs, &q).wait_s, |w| w as u32);
    let answer = receive_answer(sqs, &r)?;
    let empty = answer.get("Messages").is_none();
    if empty && wait_s > 0 {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(u64::from(wait_s));
        return Ok(SqsAnswer::Wait(Box::new(r), deadline));
    }
    super::check_answer("ReceiveMessage", &answer)?;
    Ok(SqsAnswer::Body(serde_json::to_vec(&answer).map_err(|e| SqsError::internal(e.to_string()))?))
}

/// The messages of one receive, handed out now; `{}` when there are none.
pub(super) fn receive_answer(sqs: &Sqs, r: &ReceiveRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    let s = settings(sqs, &q);
    // A FIFO receive retried with its ReceiveRequestAttemptId within 5 minutes gets the same
    // messages and handles, as on SQS.
    let attempt = r.receive_request_attempt_id.clone().filter(|_| s.fifo).map(|id| (s.incarnation, id));
    if let Some(key) = &attempt {
        let now = sqs.clock.now_ms();
        let mut attempts = sqs.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if attempts.len() > ATTEMPTS_KEPT {
            attempts.retain(|_, (at, _)| now < *at + DEDUP_WINDOW_MS);
        }
        if let Some((_, answer)) = attempts.get(key).filter(|(at, _)| now < *at + DEDUP_WINDOW_MS) {
            return Ok(answer.clone());
        }
    }
    let answer = receive_now(sqs, &q, &s, r)?;
    if let (Some(key), true) = (attempt, answer.get("Messages").is_some()) {
        sqs.attempts.lock().unwrap_or_else(PoisonError::into_inner).insert(key, (sqs.clock.now_ms(), answer.clone()));
    }
    Ok(answer)
}

/// Receive attempts a server remembers before it drops those past 5 minutes.
const ATTEMPTS_KEPT: usize = 10_000;

/// The messages of one receive of queue `q`, handed out now.
fn receive_now(sqs: &Sqs, q: &Arc<Queue>, s: &Settings, r: &ReceiveRequest) -> Result<Value, SqsError> {
    let limit = r.max_number_of_messages.unwrap_or(1).clamp(1, RECEIVE_MESSAGES_MAX) as usize;
    let visibility_ms = r.visibility_timeout.map_or(u64::from(s.visibility_s), |v| v.max(0) as u64) * 1000;
    let shard = (s.stream.clone(), 0u32);
    let log = sqs
        .streams
        .get(&s.stream)
        .and_then(|st| st.log(0))
        .ok_or_else(|| SqsError::internal("the queue's stream is missing"))?;
    let now = sqs.clock.now_ms();
    let mut state = q.state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut changes: Vec<Change> = Vec::new();
    // Records trimmed from the log by retention are gone from the queue too.
    let first = log.bounds().first_sequence_number;
    if state.shards.get(&shard).is_some_and(|c| c.cursor < first || c.pending.keys().next().is_some_and(|s| *s < first))
    {
        state.drop_below(&shard, first);
        changes.push(Change::DropBelow { shard: shard.clone(), first });
    }
    let candidates = candidates(&state, &shard, &log, now, limit, s.fifo);
    // FIFO: groups with a message in flight, and groups passed over in this receive, hand
    // out nothing more (one group's messages go out in order, one receive at a time).
    let mut busy: BTreeSet<String> =
        if s.fifo { in_flight_groups(sqs, s.incarnation, &state, &shard, &log, now) } else { BTreeSet::new() };
    let mut out = Vec::new();
    for seq in candidates {
        if out.len() >= limit {
            break;
        }
        let env = log
            .read(seq, ReadLimits { max_records: 1, ..ReadLimits::default() })
            .ok()
            .and_then(|b| b.iter().next().filter(|r| r.sequence_number == seq).and_then(|r| Envelope::decode(r.data)));
        let step = match env {
            None => {
                tracing::error!(queue = %s.arn, sequence = seq, "a queue cannot read a message; it stays in the queue");
                if s.fifo {
                    // Its group is unknown: nothing later may overtake it.
                    break;
                }
                None
            }
            Some(env) if env.sent_ms.saturating_add(s.retention_ms) <= now => {
                changes.extend(state.expire(&shard, seq));
                None
            }
            Some(env) if env.group.as_ref().is_some_and(|g| busy.contains(g)) && s.fifo => {
                // Kept back for its group, with its delay if it has one running.
                let due = if is_new(&state, &shard, seq) { env.sent_ms + u64::from(env.delay_s) * 1000 } else { 0 };
                changes.extend(state.defer(&shard, seq, if due > now { due } else { 0 }));
                None
            }
            Some(env) if is_new(&state, &shard, seq) && env.sent_ms + u64::from(env.delay_s) * 1000 > now => {
                changes.extend(state.defer(&shard, seq, env.sent_ms + u64::from(env.delay_s) * 1000));
                if let Some(g) = env.group.as_ref().filter(|_| s.fifo) {
                    busy.insert(g.clone());
                }
                None
            }
            Some(env) => {
                let receives = state.shards.get(&shard).and_then(|c| c.pending.get(&seq)).map_or(0, |d| d.receives);
                match &s.redrive {
                    Some(rd) if receives >= rd.max_receives => {
                        if move_to(sqs, &rd.target_arn, &env, Some(&s.arn)) {
                            changes.extend(state.expire(&shard, seq));
                        } else if let Some(g) = env.group.as_ref().filter(|_| s.fifo) {
                            // It stays at the head of its group: nothing of the group overtakes it.
                            busy.insert(g.clone());
                        }
                        None
                    }
                    _ => {
                        if is_new(&state, &shard, seq) {
                            // Records between the cursor and this one stay in the queue.
                            changes.extend(state.defer(&shard, seq, 0));
                        }
                        match state.receive(&shard, seq, now, visibility_ms, None, Area::Main) {
                            Some(h) => Some((env, h.delivery)),
                            None => None,
                        }
                    }
                }
            }
        };
        if let Some((env, delivery)) = step {
            changes.extend(state.changes_for(&shard, seq));
            let handle = ReceiptHandle {
                queue: s.incarnation,
                area: Area::Main,
                shard: shard.clone(),
                sequence: seq,
                attempt: delivery.attempt,
            };
            out.push(message_answer(r, s, &env, seq, &delivery, &handle.encode(&sqs.queues.secret)));
        }
    }
    q.record(&state, &changes).map_err(|e| SqsError::internal(e.to_string()))?;
    drop(state);
    Ok(if out.is_empty() { json!({}) } else { json!({ "Messages": out }) })
}

/// Whether record `seq` was never handed out (at or past the cursor).
fn is_new(state: &QueueState, shard: &(String, u32), seq: u64) -> bool {
    state.shards.get(shard).is_none_or(|c| seq >= c.cursor)
}

/// The records a receive looks at, in order: for a FIFO queue by sequence number (visible
/// records received before, then new ones, merged), else the visible ones received before,
/// oldest visibility first, then new ones.
fn candidates(
    state: &QueueState,
    shard: &(String, u32),
    log: &sluice_engine::ShardLog,
    now: u64,
    limit: usize,
    fifo: bool,
) -> Vec<u64> {
    let empty = sluice_engine::queue::ShardCursor::default();
    let c = state.shards.get(shard).unwrap_or(&empty);
    let want = limit + SCAN_AHEAD;
    let mut out: Vec<u64> = if fifo {
        // Every visible one: a cut could let a later record of a group overtake an earlier
        // one past it.
        c.pending.iter().filter(|(_, d)| d.visible_at_ms <= now).map(|(s, _)| *s).collect()
    } else {
        state.visible(now, want, Area::Main).into_iter().map(|(_, s)| s).collect()
    };
    let start = c.cursor.max(log.bounds().first_sequence_number);
    let end = log.readable_end();
    out.extend(start..end.min(start + want as u64));
    if fifo {
        out.sort_unstable();
    }
    out
}

/// The groups of a FIFO queue's messages in flight now.
fn in_flight_groups(
    sqs: &Sqs,
    incarnation: u64,
    state: &QueueState,
    shard: &(String, u32),
    log: &sluice_engine::ShardLog,
    now: u64,
) -> BTreeSet<String> {
    let Some(c) = state.shards.get(shard) else { return BTreeSet::new() };
    // Groups of records already looked at are remembered while the records are pending, so
    // a receive reads only the records it has not seen.
    let mut cache = sqs.groups.lock().unwrap_or_else(PoisonError::into_inner);
    let known = cache.entry(incarnation).or_default();
    known.retain(|seq, _| c.pending.contains_key(seq));
    let mut out = BTreeSet::new();
    for (seq, _) in c.pending.iter().filter(|(_, d)| d.visible_at_ms > now) {
        if let Some(g) = known.get(seq) {
            out.insert(g.clone());
            continue;
        }
        let group = log
            .read(*seq, ReadLimits { max_records: 1, ..ReadLimits::default() })
            .ok()
            .and_then(|b| b.iter().next().filter(|r| r.sequence_number == *seq).and_then(|r| Envelope::decode(r.data)))
            .and_then(|e| e.group);
        if let Some(g) = group {
            known.insert(*seq, g.clone());
            out.insert(g);
        }
    }
    out
}

/// Appends a message to the queue `target_arn` names (as a dead letter of `source_arn`, or
/// moved back with `None`); `false` when there is no such queue (the message then stays).
pub(super) fn move_to(sqs: &Sqs, target_arn: &str, env: &Envelope, source_arn: Option<&str>) -> bool {
    let Some(target) = sqs.by_arn(target_arn) else {
        tracing::warn!(target = target_arn, "a dead-letter target queue does not exist; the message stays");
        return false;
    };
    let stream = Sqs::stream_name(target.meta.read().unwrap_or_else(PoisonError::into_inner).incarnation);
    let Some(log) = sqs.streams.get(&stream).and_then(|s| s.log(0)) else { return false };
    let mut moved = env.clone();
    moved.source_arn = source_arn.map(str::to_owned);
    moved.delay_s = 0;
    let bytes = moved.encode();
    match log.append(&[Record { partition_key: &moved.id, data: &bytes }]) {
        Ok(_) => {
            sqs.wake(&target);
            true
        }
        Err(e) => {
            tracing::error!(target = target_arn, error = %e, "cannot move a message; it stays");
            false
        }
    }
}

/// Whether attribute `name` is selected by `names` (`All`, `.*`, `prefix.*` or the name).
fn selected(names: &[String], name: &str) -> bool {
    names.iter().any(|n| {
        n == "All" || n == ".*" || n == name || n.strip_suffix(".*").is_some_and(|p| name.starts_with(&format!("{p}.")))
    })
}

/// One message of a receive's answer.
fn message_answer(
    r: &ReceiveRequest,
    s: &Settings,
    env: &Envelope,
    seq: u64,
    d: &sluice_engine::queue::Delivery,
    handle: &str,
) -> Value {
    let mut out = json!({
        "MessageId": env.id,
        "ReceiptHandle": handle,
        "MD5OfBody": message::md5_hex(env.body.as_bytes()),
        "Body": env.body,
    });
    // MessageSystemAttributeNames, when given, replaces the older AttributeNames (as on AWS).
    let system_names = if r.message_system_attribute_names.is_empty() {
        &r.attribute_names
    } else {
        &r.message_system_attribute_names
    };
    let mut system = BTreeMap::new();
    let mut put = |name: &str, value: String| {
        if selected(system_names, name) {
            system.insert(name.to_owned(), value);
        }
    };
    put("SenderId", env.sender.clone());
    put("SentTimestamp", env.sent_ms.to_string());
    put("ApproximateReceiveCount", d.receives.to_string());
    put("ApproximateFirstReceiveTimestamp", d.first_receive_ms.to_string());
    if let Some(t) = env.system.get("AWSTraceHeader").and_then(|v| v.string_value.clone()) {
        put("AWSTraceHeader", t);
    }
    if let Some(src) = &env.source_arn {
        put("DeadLetterQueueSourceArn", src.clone());
    }
    if s.fifo {
        put("SequenceNumber", format!("{seq:020}"));
        if let Some(dd) = &env.dedup {
            put("MessageDeduplicationId", dd.clone());
        }
    }
    if let Some(g) = &env.group {
        put("MessageGroupId", g.clone());
    }
    if !system.is_empty() {
        out["Attributes"] = json!(system);
    }
    let attributes: BTreeMap<String, AttributeValue> = env
        .attributes
        .iter()
        .filter(|(k, _)| selected(&r.message_attribute_names, k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(md5) = message::md5_of_attributes(&attributes) {
        out["MD5OfMessageAttributes"] = md5.into();
        out["MessageAttributes"] = json!(attributes);
    }
    out
}

/// The queue's handle, checked: of this queue's incarnation, signed by this server.
fn decode_handle(sqs: &Sqs, q: &Queue, text: &str) -> Result<ReceiptHandle, SqsError> {
    let incarnation = q.meta.read().unwrap_or_else(PoisonError::into_inner).incarnation;
    ReceiptHandle::decode(text, &sqs.queues.secret)
        .filter(|h| h.queue == incarnation && h.area == Area::Main)
        .ok_or_else(|| {
            SqsError::new(
                "ReceiptHandleIsInvalid",
                format!("The input receipt handle \"{text}\" is not a valid receipt handle."),
            )
        })
}

/// Deletes the message of `handle`; a handle of an earlier receive, or of a message deleted
/// already, deletes nothing and succeeds, as on SQS.
fn delete_one(
    sqs: &Sqs,
    q: &Queue,
    text: &str,
    changes: &mut Vec<Change>,
    state: &mut QueueState,
) -> Result<(), SqsError> {
    let h = decode_handle(sqs, q, text)?;
    if is_fifo(q) {
        // A FIFO queue's handle lasts as long as its visibility timeout.
        let now = sqs.clock.now_ms();
        let expired = state
            .shards
            .get(&h.shard)
            .and_then(|c| c.pending.get(&h.sequence))
            .is_some_and(|d| d.attempt != h.attempt || d.visible_at_ms <= now);
        if expired {
            return Err(SqsError::invalid(format!(
                "Value {text} for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."
            )));
        }
    }
    // On a standard queue an earlier receive's handle deletes the message too, as on SQS.
    let attempt = if is_fifo(q) {
        h.attempt
    } else {
        state.shards.get(&h.shard).and_then(|c| c.pending.get(&h.sequence)).map_or(h.attempt, |d| d.attempt)
    };
    match state.acknowledge(Area::Main, &h.shard, h.sequence, attempt) {
        Ok(()) => changes.extend(state.changes_for(&h.shard, h.sequence)),
        Err(EntryError::Stale) => {}
    }
    Ok(())
}

/// Sets the visibility of the message of `handle` to `seconds` from now; `MessageNotInflight`
/// unless it is in flight under this handle.
fn change_one(
    sqs: &Sqs,
    q: &Queue,
    text: &str,
    seconds: Option<i64>,
    changes: &mut Vec<Change>,
    state: &mut QueueState,
) -> Result<(), SqsError> {
    let seconds = seconds.ok_or_else(|| {
        SqsError::new("MissingParameter", "The request must contain the parameter VisibilityTimeout.")
    })?;
    if !(0..=i64::from(VISIBILITY_TIMEOUT_S_MAX)).contains(&seconds) {
        return Err(SqsError::invalid(format!(
            "Value {seconds} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200, if provided."
        )));
    }
    let h = decode_handle(sqs, q, text)?;
    let now = sqs.clock.now_ms();
    // A message deleted, or received again since, is not this handle's any more; one whose
    // visibility ran out is still (AWS changes it).
    state.change_visibility(Area::Main, &h.shard, h.sequence, h.attempt, now, seconds as u64 * 1000).map_err(|_| {
        SqsError::invalid(format!(
            "Value {text} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change."
        ))
    })?;
    changes.extend(state.changes_for(&h.shard, h.sequence));
    Ok(())
}

/// Runs `one` on each handle under the queue's state lock, journals the changes, and wakes
/// waiting receives (a visibility change may make messages visible).
fn on_handles<T>(
    sqs: &Sqs,
    q: &Arc<Queue>,
    mut one: impl FnMut(&mut Vec<Change>, &mut QueueState) -> T,
) -> Result<T, SqsError> {
    let mut state = q.state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut changes = Vec::new();
    let out = one(&mut changes, &mut state);
    q.record(&state, &changes).map_err(|e| SqsError::internal(e.to_string()))?;
    drop(state);
    if !changes.is_empty() {
        sqs.wake(q);
    }
    Ok(out)
}

pub fn delete(sqs: &Sqs, r: HandleRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    on_handles(sqs, &q, |changes, state| delete_one(sqs, &q, &r.receipt_handle, changes, state))??;
    Ok(json!({}))
}

pub fn change_visibility(sqs: &Sqs, r: HandleRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    on_handles(sqs, &q, |changes, state| {
        change_one(sqs, &q, &r.receipt_handle, r.visibility_timeout, changes, state)
    })??;
    Ok(json!({}))
}

pub fn delete_batch(sqs: &Sqs, r: HandleBatchRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    check_batch(r.entries.iter().map(|e| e.id.as_str()), "DeleteMessageBatchRequestEntry")?;
    batch(sqs, &q, &r.entries, |e, changes, state| delete_one(sqs, &q, &e.receipt_handle, changes, state))
}

pub fn change_visibility_batch(sqs: &Sqs, r: HandleBatchRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    check_batch(r.entries.iter().map(|e| e.id.as_str()), "ChangeMessageVisibilityBatchRequestEntry")?;
    batch(sqs, &q, &r.entries, |e, changes, state| {
        change_one(sqs, &q, &e.receipt_handle, e.visibility_timeout.or(Some(0)), changes, state)
    })
}

fn batch(
    sqs: &Sqs,
    q: &Arc<Queue>,
    entries: &[HandleEntry],
    mut one: impl FnMut(&HandleEntry, &mut Vec<Change>, &mut QueueState) -> Result<(), SqsError>,
) -> Result<Value, SqsError> {
    on_handles(sqs, q, |changes, state| {
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for e in entries {
            match one(e, changes, state) {
                Ok(()) => ok.push(json!({ "Id": e.id })),
                Err(err) => failed.push(err.entry(&e.id)),
            }
        }
        json!({ "Successful": ok, "Failed": failed })
    })
}
