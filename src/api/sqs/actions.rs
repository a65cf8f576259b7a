//! Queue actions: `CreateQueue`, `GetQueueUrl`, `ListQueues`, `DeleteQueue`,
//! `GetQueueAttributes`, `SetQueueAttributes`, tags, permissions,
//! `ListDeadLetterSourceQueues` and `PurgeQueue`.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_engine::queue::{Change, QueueState};
use sluice_engine::settings::StreamSettings;

use super::attributes::{self, READ_ONLY};
use super::{policy_with, Sqs, SqsError};
use crate::api::kinesis::queues::{Queue, QueueMeta};

/// Longest queue name, characters: 80 (`.fifo` included). Source: Amazon SQS API Reference,
/// CreateQueue.
pub const QUEUE_NAME_CHARS_MAX: usize = 80;

/// Most queue URLs one `ListQueues` page holds: 1,000.
pub const LIST_RESULTS_MAX: usize = 1_000;

/// Most queues a server holds (with SNS's hidden outboxes): 100,000. An idle queue costs
/// no thread and no open file (a shard log opens its files on demand), but each is a folder
/// and an entry in memory.
pub const QUEUES_MAX: usize = 100_000;

/// Most tags a queue holds: 50. Source: Amazon SQS Developer Guide, quotas.
pub const TAGS_MAX: usize = 50;

/// How long after a queue is deleted its name may be taken again, ms: 60 s. Source: Amazon
/// SQS API Reference, DeleteQueue.
const RECREATE_AFTER_MS: u64 = 60_000;

/// One `PurgeQueue` of a queue per this many ms: 60 s. Source: Amazon SQS API Reference.
const PURGE_INTERVAL_MS: u64 = 60_000;

/// The largest record of a queue's stream, bytes: a message of 1 MiB in its envelope (JSON
/// escapes at most double a body) with its attributes.
const RECORD_BYTES_MAX: usize = 4 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRequest {
    queue_name: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default, rename = "tags")]
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NameRequest {
    queue_name: String,
    #[serde(default, rename = "QueueOwnerAWSAccountId")]
    owner: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    queue_name_prefix: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UrlRequest {
    pub(super) queue_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PagedUrlRequest {
    queue_url: String,
    next_token: Option<String>,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAttributesRequest {
    queue_url: String,
    #[serde(default)]
    attribute_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SetAttributesRequest {
    queue_url: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagRequest {
    queue_url: String,
    tags: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagRequest {
    queue_url: String,
    tag_keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddPermissionRequest {
    queue_url: String,
    label: String,
    #[serde(rename = "AWSAccountIds")]
    account_ids: Vec<String>,
    actions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemovePermissionRequest {
    queue_url: String,
    label: String,
}

/// Checks a queue name: 1 to 80 characters, letters, digits, `-` and `_`, and `.fifo` at
/// the end of a FIFO queue's. Returns whether it is a FIFO queue's.
fn check_name(name: &str, fifo_attribute: bool) -> Result<bool, SqsError> {
    let fifo = name.ends_with(".fifo");
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    let ok = !stem.is_empty()
        && name.len() <= QUEUE_NAME_CHARS_MAX
        && stem.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(SqsError::invalid(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
        ));
    }
    if fifo != fifo_attribute {
        // A standard queue named `.fifo` is a bad name; a FIFO queue without it, a bad FIFO name.
        return Err(SqsError::invalid(if fifo_attribute {
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length"
        } else {
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        }));
    }
    Ok(fifo)
}

/// Queue `q`'s name and incarnation.
pub(super) fn name_and_incarnation(q: &Queue) -> (String, u64) {
    let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
    (m.name.clone(), m.incarnation)
}

/// Whether queue `q` is a FIFO queue.
pub(super) fn is_fifo(q: &Queue) -> bool {
    q.meta.read().unwrap_or_else(PoisonError::into_inner).name.ends_with(".fifo")
}

/// The stream retention that keeps every message of a queue with `retention_s` for as
/// long: whole hours, one more.
fn retention_hours(retention_s: u64) -> u32 {
    (retention_s.div_ceil(3600) + 1) as u32
}

pub fn create(sqs: &Sqs, r: CreateRequest, host: &str) -> Result<Value, SqsError> {
    let fifo_attribute = r.attributes.get("FifoQueue").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let fifo = check_name(&r.queue_name, fifo_attribute)?;
    if r.tags.len() > TAGS_MAX {
        return Err(SqsError::invalid(format!("Too many tags added for queue {}.", r.queue_name)));
    }
    let attrs = attributes::check(&r.attributes, fifo)?;
    check_redrive_target(sqs, &attrs, fifo, &sqs.queue_arn(&r.queue_name))?;
    if let Some(q) = sqs.queues.get(&r.queue_name) {
        // The same name with the same attributes is the queue that exists; other attributes
        // are refused (SQS's QueueNameExists). Only the attributes sent are compared, as SQS
        // does.
        let existing_fifo = is_fifo(&q);
        let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
        let existing = attributes::shown(&m.attributes, existing_fifo);
        let asked = attributes::shown(&attrs, fifo);
        if let Some(name) = attrs.keys().find(|k| existing.get(*k) != asked.get(*k)) {
            return Err(SqsError::new(
                "QueueNameExists",
                format!("A queue already exists with the same name and a different value for attribute {name}"),
            ));
        }
        return Ok(json!({ "QueueUrl": sqs.queue_url(host, &m.name) }));
    }
    {
        let now = sqs.clock.now_ms();
        let mut deleted = sqs.deleted.lock().unwrap_or_else(PoisonError::into_inner);
        deleted.retain(|_, at| now < *at + RECREATE_AFTER_MS);
        if deleted.contains_key(&r.queue_name) {
            return Err(SqsError::new(
                "QueueDeletedRecently",
                "You must wait 60 seconds after deleting a queue before you can create another with the same name.",
            ));
        }
    }
    make_queue(sqs, &r.queue_name, attrs, r.tags)?;
    Ok(json!({ "QueueUrl": sqs.queue_url(host, &r.queue_name) }))
}

/// Makes queue `name` (checked) with `attrs` (checked) and `tags`: its stream, with the
/// retention its messages need, and its state. A queue of that name made meanwhile by
/// another request stands, and this one's stream goes.
pub(super) fn make_queue(
    sqs: &Sqs,
    name: &str,
    attrs: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
) -> Result<(), SqsError> {
    if sqs.queues.list().len() >= QUEUES_MAX {
        return Err(SqsError::new("OverLimit", format!("This server holds at most {QUEUES_MAX} queues.")));
    }
    let now = sqs.clock.now_ms();
    let incarnation = sluice_engine::stream::random_u64();
    let stream_name = Sqs::stream_name(incarnation);
    let settings = StreamSettings { max_record_bytes: RECORD_BYTES_MAX, ..StreamSettings::default() };
    let stream = sqs
        .streams
        .create_with(&stream_name, 1, now, settings, BTreeMap::new())
        .map_err(|e| SqsError::internal(e.to_string()))?;
    let hours = retention_hours(attributes::number(&attrs, "MessageRetentionPeriod"));
    let made = stream
        .update_meta(|m| -> Result<(), sluice_engine::IoError> {
            m.retention_hours = hours;
            Ok(())
        })
        .map_err(|e| SqsError::internal(e.to_string()))
        .and_then(|()| {
            let meta = QueueMeta {
                name: name.to_owned(),
                created_ms: now,
                streams: Vec::new(),
                visibility_timeout_s: attributes::number(&attrs, "VisibilityTimeout") as u32,
                max_receives: None,
                tags,
                incarnation,
                attributes: attrs,
                modified_ms: now,
            };
            let mut state = QueueState::default();
            state.shards.insert((stream_name.clone(), 0), Default::default());
            sqs.queues.create(meta, state).map_err(|e| SqsError::internal(e.to_string()))
        });
    if !matches!(made, Ok(Some(_))) {
        let _ = sqs.streams.delete(&stream_name);
    }
    made.map(|_| ())
}

/// A redrive policy's target must be an existing queue of the same type, not the queue
/// (`own_arn`) itself.
fn check_redrive_target(
    sqs: &Sqs,
    attrs: &BTreeMap<String, String>,
    fifo: bool,
    own_arn: &str,
) -> Result<(), SqsError> {
    let Some(policy) = attrs.get("RedrivePolicy").filter(|p| !p.is_empty()) else { return Ok(()) };
    let redrive = attributes::redrive(policy).map_err(|m| attributes::redrive_error(policy, &m))?;
    if redrive.target_arn == own_arn {
        return Err(attributes::redrive_error(policy, "A queue cannot be its own dead-letter queue."));
    }
    let Some(target) = sqs.by_arn(&redrive.target_arn) else {
        return Err(attributes::redrive_error(policy, "Dead letter target does not exist."));
    };
    if is_fifo(&target) != fifo {
        // AWS's message ends in two periods.
        return Err(attributes::redrive_error(policy, "Dead-letter queue must be same type of queue as the source.."));
    }
    Ok(())
}

pub fn get_url(sqs: &Sqs, r: NameRequest, host: &str) -> Result<Value, SqsError> {
    if r.owner.as_deref().is_some_and(|o| o != sqs.account_id) {
        return Err(SqsError::no_queue());
    }
    let q = sqs
        .queues
        .get(&r.queue_name)
        .filter(|_| !super::internal::is_hidden(&r.queue_name))
        .ok_or_else(SqsError::no_queue)?;
    let name = q.meta.read().unwrap_or_else(PoisonError::into_inner).name.clone();
    Ok(json!({ "QueueUrl": sqs.queue_url(host, &name) }))
}

/// A page of names after the token's name; the token is the last name given, base64.
fn page(
    names: Vec<String>,
    next_token: Option<&str>,
    max_results: Option<i64>,
) -> Result<(Vec<String>, Option<String>), SqsError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let after = match next_token {
        Some(t) => Some(
            b64.decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SqsError::invalid("Invalid NextToken value."))?,
        ),
        None => None,
    };
    if let Some(n) = max_results {
        if !(1..=LIST_RESULTS_MAX as i64).contains(&n) {
            return Err(SqsError::invalid(
                "Value for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000.",
            ));
        }
    }
    let rest: Vec<String> = names.into_iter().filter(|n| after.as_ref().is_none_or(|a| n > a)).collect();
    let limit = max_results.map_or(LIST_RESULTS_MAX, |n| n as usize);
    // A token only when the caller pages (MaxResults given), as SQS does.
    let token = (max_results.is_some() && rest.len() > limit).then(|| b64.encode(&rest[limit - 1]));
    Ok((rest.into_iter().take(limit).collect(), token))
}

pub fn list(sqs: &Sqs, r: ListRequest, host: &str) -> Result<Value, SqsError> {
    let prefix = r.queue_name_prefix.unwrap_or_default();
    let names: Vec<String> = sqs
        .queues
        .list()
        .iter()
        .map(|q| q.meta.read().unwrap_or_else(PoisonError::into_inner).name.clone())
        .filter(|n| n.starts_with(&prefix) && !super::internal::is_hidden(n))
        .collect();
    let (names, token) = page(names, r.next_token.as_deref(), r.max_results)?;
    let mut out = json!({});
    if !names.is_empty() {
        out["QueueUrls"] = names.iter().map(|n| sqs.queue_url(host, n)).collect::<Vec<_>>().into();
    }
    if let Some(t) = token {
        out["NextToken"] = t.into();
    }
    Ok(out)
}

pub fn delete(sqs: &Sqs, r: UrlRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    let (name, incarnation) = name_and_incarnation(&q);
    sqs.queues.delete(&name);
    if !super::internal::is_hidden(&name) {
        sqs.deleted.lock().unwrap_or_else(PoisonError::into_inner).insert(name.clone(), sqs.clock.now_ms());
    }
    if let Err(e) = sqs.streams.delete(&Sqs::stream_name(incarnation)) {
        tracing::warn!(queue = %name, error = %e, "could not remove a deleted queue's stream");
    }
    sqs.dedup.lock().unwrap_or_else(PoisonError::into_inner).remove(&incarnation);
    Ok(json!({}))
}

/// Message counts of a queue now: visible, in flight, delayed.
pub(super) fn counts(sqs: &Sqs, q: &Queue) -> (u64, u64, u64) {
    let now = sqs.clock.now_ms();
    let state = q.state.lock().unwrap_or_else(PoisonError::into_inner);
    let (mut visible, mut in_flight, mut delayed) = (0u64, 0u64, 0u64);
    for (shard, c) in &state.shards {
        for d in c.pending.values() {
            match (d.visible_at_ms > now, d.receives > 0) {
                (false, _) => visible += 1,
                (true, true) => in_flight += 1,
                (true, false) => delayed += 1,
            }
        }
        // Messages past the cursor were never received; those sent with a delay still
        // running are delayed (looked at up to a bound: the counts are approximate, as SQS's).
        if let Some(log) = sqs.streams.get(&shard.0).and_then(|s| s.log(shard.1)) {
            let end = log.readable_end();
            let start = c.cursor.max(log.bounds().first_sequence_number);
            let mut looked = start;
            if let Ok(batch) = log.read(start, sluice_engine::ReadLimits { max_records: 1_000, ..Default::default() }) {
                for record in batch.iter() {
                    looked = record.sequence_number + 1;
                    match super::message::Envelope::decode(record.data) {
                        Some(e) if e.sent_ms + u64::from(e.delay_s) * 1000 > now => delayed += 1,
                        _ => visible += 1,
                    }
                }
            }
            visible += end.saturating_sub(looked);
        }
    }
    (visible, in_flight, delayed)
}

pub fn get_attributes(sqs: &Sqs, r: GetAttributesRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    for n in &r.attribute_names {
        if !attributes::known(n) {
            return Err(SqsError::new("InvalidAttributeName", format!("Unknown Attribute {n}.")));
        }
    }
    let fifo = is_fifo(&q);
    let all = r.attribute_names.iter().any(|n| n == "All");
    let wanted = |n: &str| all || r.attribute_names.iter().any(|w| w == n);
    let mut out: BTreeMap<String, String> = {
        let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
        let mut shown = attributes::shown(&m.attributes, fifo);
        shown.insert("CreatedTimestamp".into(), (m.created_ms / 1000).to_string());
        shown.insert("LastModifiedTimestamp".into(), (m.modified_ms.max(m.created_ms) / 1000).to_string());
        shown.insert("QueueArn".into(), sqs.queue_arn(&m.name));
        shown
    };
    if READ_ONLY[..3].iter().any(|n| wanted(n)) {
        let (visible, in_flight, delayed) = counts(sqs, &q);
        out.insert("ApproximateNumberOfMessages".into(), visible.to_string());
        out.insert("ApproximateNumberOfMessagesNotVisible".into(), in_flight.to_string());
        out.insert("ApproximateNumberOfMessagesDelayed".into(), delayed.to_string());
    }
    out.retain(|k, _| wanted(k));
    if out.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Attributes": out }))
}

pub fn set_attributes(sqs: &Sqs, r: SetAttributesRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    let fifo = is_fifo(&q);
    if let Some(n) = r.attributes.keys().find(|n| READ_ONLY.contains(&n.as_str())) {
        return Err(SqsError::new("InvalidAttributeName", format!("Unknown Attribute {n}.")));
    }
    let attrs = attributes::check(&r.attributes, fifo)?;
    let own_arn = sqs.queue_arn(&q.meta.read().unwrap_or_else(PoisonError::into_inner).name);
    check_redrive_target(sqs, &attrs, fifo, &own_arn)?;
    let incarnation = {
        let mut m = q.meta.write().unwrap_or_else(PoisonError::into_inner);
        for (k, v) in attrs {
            m.attributes.insert(k, v);
        }
        m.visibility_timeout_s = attributes::number(&m.attributes, "VisibilityTimeout") as u32;
        m.modified_ms = sqs.clock.now_ms();
        m.incarnation
    };
    if r.attributes.contains_key("MessageRetentionPeriod") {
        let hours = retention_hours(attributes::number(&r.attributes, "MessageRetentionPeriod"));
        if let Some(stream) = sqs.streams.get(&Sqs::stream_name(incarnation)) {
            stream
                .update_meta(|m| -> Result<(), sluice_engine::IoError> {
                    m.retention_hours = hours;
                    Ok(())
                })
                .map_err(|e| SqsError::internal(e.to_string()))?;
        }
    }
    q.persist_meta().map_err(|e| SqsError::internal(e.to_string()))?;
    Ok(json!({}))
}

pub fn tag(sqs: &Sqs, r: TagRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    {
        let mut m = q.meta.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = m.tags.clone();
        next.extend(r.tags);
        if next.len() > TAGS_MAX {
            return Err(SqsError::invalid(format!("Too many tags added for queue {}.", m.name)));
        }
        m.tags = next;
    }
    q.persist_meta().map_err(|e| SqsError::internal(e.to_string()))?;
    Ok(json!({}))
}

pub fn untag(sqs: &Sqs, r: UntagRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    q.meta.write().unwrap_or_else(PoisonError::into_inner).tags.retain(|k, _| !r.tag_keys.contains(k));
    q.persist_meta().map_err(|e| SqsError::internal(e.to_string()))?;
    Ok(json!({}))
}

pub fn list_tags(sqs: &Sqs, r: UrlRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    let tags = q.meta.read().unwrap_or_else(PoisonError::into_inner).tags.clone();
    Ok(if tags.is_empty() { json!({}) } else { json!({ "Tags": tags }) })
}

pub fn add_permission(sqs: &Sqs, r: AddPermissionRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    if r.account_ids.is_empty() || r.actions.is_empty() {
        return Err(SqsError::new("MissingParameter", "The request must contain the parameter Actions."));
    }
    {
        let mut m = q.meta.write().unwrap_or_else(PoisonError::into_inner);
        let arn = sqs.queue_arn(&m.name);
        let current = m.attributes.get("Policy").cloned();
        let labelled = current
            .as_deref()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .is_some_and(|p| p["Statement"].as_array().is_some_and(|s| s.iter().any(|s| s["Sid"] == r.label.as_str())));
        if labelled {
            return Err(SqsError::invalid(format!(
                "Value {} for parameter Label is invalid. Reason: Already exists.",
                r.label
            )));
        }
        let principals: Vec<String> = r.account_ids.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect();
        let actions: Vec<String> = r.actions.iter().map(|a| format!("SQS:{a}")).collect();
        let statement = json!({
            "Sid": r.label, "Effect": "Allow", "Principal": { "AWS": principals },
            "Action": actions, "Resource": arn,
        });
        let policy = policy_with(current.as_deref(), &arn, &r.label, Some(statement));
        m.attributes.insert("Policy".into(), policy);
    }
    q.persist_meta().map_err(|e| SqsError::internal(e.to_string()))?;
    Ok(json!({}))
}

pub fn remove_permission(sqs: &Sqs, r: RemovePermissionRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    {
        let mut m = q.meta.write().unwrap_or_else(PoisonError::into_inner);
        let arn = sqs.queue_arn(&m.name);
        let current = m.attributes.get("Policy").cloned();
        let labelled = current
            .as_deref()
            .and_then(|p| serde_json::from_str::<Value>(p).ok())
            .is_some_and(|p| p["Statement"].as_array().is_some_and(|s| s.iter().any(|s| s["Sid"] == r.label.as_str())));
        if !labelled {
            return Err(SqsError::invalid(format!(
                "Value {} for parameter Label is invalid. Reason: can't find label on existing policy.",
                r.label
            )));
        }
        let policy = policy_with(current.as_deref(), &arn, &r.label, None);
        let empty = serde_json::from_str::<Value>(&policy)
            .ok()
            .is_some_and(|p| p["Statement"].as_array().is_some_and(Vec::is_empty));
        if empty {
            m.attributes.remove("Policy");
        } else {
            m.attributes.insert("Policy".into(), policy);
        }
    }
    q.persist_meta().map_err(|e| SqsError::internal(e.to_string()))?;
    Ok(json!({}))
}

pub fn dead_letter_sources(sqs: &Sqs, r: PagedUrlRequest, host: &str) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    let arn = sqs.queue_arn(&q.meta.read().unwrap_or_else(PoisonError::into_inner).name);
    let names: Vec<String> = sqs
        .queues
        .list()
        .iter()
        .filter_map(|s| {
            let m = s.meta.read().unwrap_or_else(PoisonError::into_inner);
            let policy = m.attributes.get("RedrivePolicy").and_then(|p| attributes::redrive(p).ok())?;
            (policy.target_arn == arn).then(|| m.name.clone())
        })
        .collect();
    let (names, token) = page(names, r.next_token.as_deref(), r.max_results)?;
    let mut out = json!({ "queueUrls": names.iter().map(|n| sqs.queue_url(host, n)).collect::<Vec<_>>() });
    if let Some(t) = token {
        out["NextToken"] = t.into();
    }
    Ok(out)
}

/// Deletes every message of the queue: those sent before the purge, in flight or not.
pub fn purge(sqs: &Sqs, r: UrlRequest) -> Result<Value, SqsError> {
    let q = sqs.by_url(&r.queue_url)?;
    let (name, incarnation) = name_and_incarnation(&q);
    {
        let now = sqs.clock.now_ms();
        let mut purges = sqs.purges.lock().unwrap_or_else(PoisonError::into_inner);
        if purges.get(&incarnation).is_some_and(|at| now < at + PURGE_INTERVAL_MS) {
            return Err(SqsError::new(
                "PurgeQueueInProgress",
                format!("Only one PurgeQueue operation on {name} is allowed every 60 seconds."),
            ));
        }
        purges.retain(|_, at| now < *at + PURGE_INTERVAL_MS);
        purges.insert(incarnation, now);
    }
    let mut state = q.state.lock().unwrap_or_else(PoisonError::into_inner);
    let shards: Vec<(String, u32)> = state.shards.keys().cloned().collect();
    let mut changes = Vec::new();
    for shard in shards {
        let Some(log) = sqs.streams.get(&shard.0).and_then(|s| s.log(shard.1)) else { continue };
        let end = log.readable_end();
        state.drop_below(&shard, end);
        changes.push(Change::DropBelow { shard, first: end });
    }
    q.record(&state, &changes).map_err(|e| SqsError::internal(e.to_string()))?;
    Ok(json!({}))
}
