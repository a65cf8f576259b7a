//! `Publish` and `PublishBatch`: a message checked, then appended, before the answer, to
//! every confirmed subscription its filter policy selects (an SQS queue, or an HTTP
//! subscription's outbox); and the subscription confirmations HTTP endpoints get.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use serde_json::{json, Value};

use super::{actions, filter, Caller, Sns, SnsError, Subscription};
use crate::api::query::{element, Params};
use crate::api::sqs::{AttributeValue, OutboxMessage, Sqs};

/// Largest message, bytes: 262,144 (256 KiB, the message and its attributes). Source:
/// Amazon SNS API Reference, Publish.
pub const MESSAGE_BYTES_MAX: usize = 262_144;

/// Longest subject, characters: 100. Source: as above.
pub const SUBJECT_CHARS_MAX: usize = 100;

/// Most entries of a `PublishBatch`: 10. Source: Amazon SNS API Reference, PublishBatch.
pub const BATCH_ENTRIES_MAX: usize = 10;

/// How long a FIFO topic remembers a deduplication id, ms: 5 minutes.
pub const DEDUP_WINDOW_MS: u64 = 300_000;

/// One message to publish, checked.
struct Message {
    id: String,
    /// The message per protocol (`default` and, with `MessageStructure` `json`, others).
    bodies: BTreeMap<String, String>,
    subject: Option<String>,
    attributes: BTreeMap<String, AttributeValue>,
    group: Option<String>,
    dedup: Option<String>,
    /// Sent with `MessageStructure` `json`.
    structured: bool,
}

impl Message {
    fn body_for(&self, protocol: &str) -> &str {
        self.bodies.get(protocol).or_else(|| self.bodies.get("default")).map_or("", String::as_str)
    }
}

/// Reads and checks one message's parameters (`p`, with the names `Publish` gives them).
fn message(p: &Params, fifo: bool, content_dedup: bool) -> Result<Message, SnsError> {
    let invalid = |reason: &str| SnsError::invalid_parameter(format!("Invalid parameter: {reason}"));
    let text = p.get("Message").ok_or_else(|| invalid("Message"))?;
    if text.is_empty() {
        return Err(invalid("Empty message"));
    }
    let attributes = p.message_attributes("MessageAttributes");
    crate::api::sqs::check_message_attributes(&attributes)
        .map_err(|e| SnsError::new("ParameterValueInvalid", 400, e.message))?;
    let size = crate::api::sqs::message_size(text, &attributes);
    if size > MESSAGE_BYTES_MAX {
        return Err(invalid("Message too long"));
    }
    let subject = p.get("Subject").map(str::to_owned);
    if let Some(s) = &subject {
        let ok = !s.is_empty()
            && s.chars().count() <= SUBJECT_CHARS_MAX
            && s.chars().all(|c| (' '..='~').contains(&c) || (c as u32) > 127);
        if !ok {
            return Err(invalid("Subject"));
        }
    }
    let mut bodies = BTreeMap::new();
    match p.get("MessageStructure") {
        Some("json") => {
            let v: Value = serde_json::from_str(text)
                .map_err(|_| invalid("Message Structure - JSON message body failed to parse"))?;
            let Value::Object(map) = v else {
                return Err(invalid("Message Structure - JSON message body failed to parse"));
            };
            if !map.get("default").is_some_and(Value::is_string) {
                return Err(invalid("Message Structure - No default entry in JSON message body"));
            }
            for (k, v) in map {
                if let Value::String(s) = v {
                    bodies.insert(k, s);
                }
            }
        }
        Some(other) => return Err(invalid(&format!("MessageStructure Reason: {other} is not json"))),
        None => {
            bodies.insert("default".to_owned(), text.to_owned());
        }
    }
    let group = p.get("MessageGroupId").map(str::to_owned);
    let mut dedup = p.get("MessageDeduplicationId").map(str::to_owned);
    if fifo {
        if group.is_none() {
            return Err(invalid("The MessageGroupId parameter is required for FIFO topics"));
        }
        if dedup.is_none() {
            if !content_dedup {
                return Err(invalid(
                    "The topic should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                ));
            }
            use sha2::Digest as _;
            dedup = Some(sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect());
        }
    } else if dedup.is_some() {
        return Err(invalid("MessageDeduplicationId Reason: The request includes MessageDeduplicationId parameter that is not valid for this topic type"));
    }
    for (name, v) in [("MessageGroupId", &group), ("MessageDeduplicationId", &dedup)] {
        if let Some(v) =
            v.as_deref().filter(|v| v.is_empty() || v.len() > 128 || !v.chars().all(|c| c.is_ascii_graphic()))
        {
            return Err(invalid(&format!("{name} Reason: {v} is not 1 to 128 alphanumeric or punctuation characters")));
        }
    }
    let structured = p.get("MessageStructure") == Some("json");
    Ok(Message { id: crate::api::sqs::new_message_id(), bodies, subject, attributes, group, dedup, structured })
}

/// An ISO 8601 time in ms, UTC, as SNS writes `Timestamp`.
fn timestamp(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

/// The JSON document SNS delivers for a message (not raw): `Type` `Notification`, the
/// message, its attributes as `{"Type": ..., "Value": ...}`, and the URLs to unsubscribe and
/// to fetch the signing certificate.
fn notification(
    sns: &Sns,
    sub: &Subscription,
    m: &Message,
    seq: Option<&str>,
    now_ms: u64,
    caller: &Caller,
    signatures: &mut BTreeMap<String, String>,
) -> String {
    let mut doc = json!({
        "Type": "Notification",
        "MessageId": m.id,
        "TopicArn": sub.topic_arn,
        "Message": m.body_for(&sub.protocol),
        "Timestamp": timestamp(now_ms),
        "SignatureVersion": "2",
        "SigningCertURL": format!("{}{}", caller.base_url, super::delivery::CERT_PATH),
        "UnsubscribeURL": format!("{}/?Action=Unsubscribe&SubscriptionArn={}", caller.base_url, urlencode(&sub.arn)),
    });
    if let Some(s) = &m.subject {
        doc["Subject"] = s.clone().into();
    }
    if let Some(s) = seq {
        doc["SequenceNumber"] = s.into();
    }
    // With MessageStructure json, SNS leaves the attributes out.
    if !m.attributes.is_empty() && !m.structured {
        let attrs: serde_json::Map<String, Value> = m
            .attributes
            .iter()
            .map(|(k, v)| {
                let value = v.string_value.clone().or_else(|| v.binary_value.clone()).unwrap_or_default();
                (k.clone(), json!({ "Type": v.data_type, "Value": value }))
            })
            .collect();
        doc["MessageAttributes"] = Value::Object(attrs);
    }
    let key = super::delivery::canonical(&doc);
    let signature = signatures.entry(key).or_insert_with(|| sns.signer.sign(&doc)).clone();
    doc["Signature"] = signature.into();
    doc.to_string()
}

/// Percent-encodes a query parameter value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether subscription `sub`'s filter policy selects message `m`.
fn selected(sub: &Subscription, m: &Message) -> bool {
    let Some(policy) = sub.attributes.get("FilterPolicy").filter(|p| !p.is_empty()) else { return true };
    let Ok(policy) = serde_json::from_str::<Value>(policy) else { return false };
    if policy.as_object().is_some_and(serde_json::Map::is_empty) {
        return true;
    }
    match sub.attributes.get("FilterPolicyScope").map(String::as_str) {
        Some("MessageBody") => serde_json::from_str::<Value>(m.body_for(&sub.protocol))
            .is_ok_and(|body| filter::matches_body(&policy, &body)),
        _ => filter::matches_attributes(&policy, &m.attributes),
    }
}

/// Appends message `m` (sequence number `seq` on a FIFO topic) to every confirmed
/// subscription of `topic_arn` that selects it. A delivery the subscriber refuses for good (its
/// queue deleted, or the message not one it takes: over its size, too many attributes for a
/// raw delivery) is dropped with a warning, as SNS drops it; only a failure of the server's
/// own (a write) fails the publish, and its retry may deliver twice to the subscribers before
/// (at least once).
fn fan_out(
    sns: &Sns,
    sqs: &Sqs,
    topic_arn: &str,
    m: &Message,
    seq: Option<&str>,
    caller: &Caller,
) -> Result<(), SnsError> {
    let now = sqs.now_ms();
    // The signature covers what every subscriber of one protocol's body gets alike: one per body.
    let mut signatures: BTreeMap<String, String> = BTreeMap::new();
    for sub in sns.subscriptions_of(topic_arn).iter().filter(|s| s.confirmed) {
        if !selected(sub, m) {
            continue;
        }
        let raw = sub.attributes.get("RawMessageDelivery").is_some_and(|v| v == "true");
        let body = if raw {
            m.body_for(&sub.protocol).to_owned()
        } else {
            notification(sns, sub, m, seq, now, caller, &mut signatures)
        };
        if sub.protocol == "firehose" {
            if !sns.put_to_firehose(&sub.endpoint, body.as_bytes())? {
                tracing::warn!(subscription = %sub.arn, endpoint = %sub.endpoint, "a subscribed delivery stream takes no put; the delivery is dropped");
            }
            continue;
        }
        let sent = match &sub.outbox {
            Some(outbox) => sqs.send_outbox(
                outbox,
                OutboxMessage {
                    body,
                    kind: "Notification",
                    message_id: m.id.clone(),
                    subscription_arn: sub.arn.clone(),
                    raw,
                },
            ),
            None => {
                let attributes = if raw { m.attributes.clone() } else { BTreeMap::new() };
                let dedup = m.dedup.clone().or_else(|| m.group.as_ref().map(|_| m.id.clone()));
                sqs.send_internal(&sub.endpoint, body, attributes, m.group.clone(), dedup).map(|_| ())
            }
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.status < 500 => {
                tracing::warn!(subscription = %sub.arn, endpoint = %sub.endpoint, error = %e.message, "a delivery was refused; it is dropped");
            }
            Err(e) => return Err(SnsError::internal(format!("delivery to {} failed: {}", sub.endpoint, e.message))),
        }
    }
    Ok(())
}

impl Sns {
    /// Publishes one checked message to topic `topic_arn`; its message id and, on a FIFO
    /// topic, its sequence number. A FIFO topic holds its lock from the sequence number to
    /// the last delivery, so subscribers get its messages in sequence order, and remembers a
    /// deduplication id only once its message was delivered (a failed publish retried is
    /// delivered, not taken for a duplicate).
    fn publish_one(
        &self,
        sqs: &Sqs,
        topic_arn: &str,
        fifo: bool,
        mut m: Message,
        caller: &Caller,
    ) -> Result<(String, Option<String>), SnsError> {
        if !fifo {
            fan_out(self, sqs, topic_arn, &m, None, caller)?;
            return Ok((m.id, None));
        }
        let now = sqs.now_ms();
        let dedup = m.dedup.clone().unwrap_or_else(|| m.id.clone());
        m.dedup = Some(dedup.clone());
        let mut topics = self.fifo.lock().unwrap_or_else(PoisonError::into_inner);
        let (next, seen) = topics.entry(topic_arn.to_owned()).or_insert_with(|| (now << 16, BTreeMap::new()));
        if seen.len() > DEDUP_PRUNE_AT {
            seen.retain(|_, (at, _, _)| at.saturating_add(DEDUP_WINDOW_MS) > now);
        }
        if let Some((at, id, seq)) = seen.get(&dedup).filter(|(at, ..)| at.saturating_add(DEDUP_WINDOW_MS) > now) {
            // Seen within the window: accepted, not delivered again.
            let _ = at;
            return Ok((id.clone(), Some(seq.clone())));
        }
        let n = (*next + 1).max(now << 16);
        let seq = format!("{n:020}");
        fan_out(self, sqs, topic_arn, &m, Some(&seq), caller)?;
        *next = n;
        seen.insert(dedup, (now, m.id.clone(), seq.clone()));
        Ok((m.id, Some(seq)))
    }
}

/// Deduplication ids a FIFO topic keeps before it drops those past the window.
const DEDUP_PRUNE_AT: usize = 10_000;

pub fn publish(sns: &Sns, sqs: &Sqs, p: &Params, caller: &Caller) -> Result<String, SnsError> {
    if p.get("PhoneNumber").is_some() {
        return Err(SnsError::invalid_parameter("Invalid parameter: PhoneNumber Reason: Sluice sends no SMS"));
    }
    let topic_arn = p
        .get("TopicArn")
        .or_else(|| p.get("TargetArn"))
        .ok_or_else(|| {
            SnsError::invalid_parameter(
                "Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter",
            )
        })?
        .to_owned();
    let t = actions::topic(sns, &topic_arn)?;
    let fifo = t.name.ends_with(".fifo");
    let m = message(p, fifo, t.attributes.get("ContentBasedDeduplication").is_some_and(|v| v == "true"))?;
    let (id, seq) = sns.publish_one(sqs, &topic_arn, fifo, m, caller)?;
    Ok(format!("{}{}", element("MessageId", &id), seq.map_or(String::new(), |s| element("SequenceNumber", &s))))
}

pub fn publish_batch(sns: &Sns, sqs: &Sqs, p: &Params, caller: &Caller) -> Result<String, SnsError> {
    let topic_arn = p.required("TopicArn")?.to_owned();
    let t = actions::topic(sns, &topic_arn)?;
    let entries = p.members("PublishBatchRequestEntries");
    if entries.is_empty() {
        return Err(SnsError::new("EmptyBatchRequest", 400, "The batch request doesn't contain any entries."));
    }
    if entries.len() > BATCH_ENTRIES_MAX {
        return Err(SnsError::new(
            "TooManyEntriesInBatchRequest",
            400,
            "The batch request contains more entries than permissible.",
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    for e in &entries {
        let id = e.get("Id").unwrap_or("");
        if id.is_empty() || id.len() > 80 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(SnsError::new(
                "InvalidBatchEntryId",
                400,
                "The Id of a batch entry in a batch request doesn't abide by the specification.",
            ));
        }
        if !ids.insert(id) {
            return Err(SnsError::new(
                "BatchEntryIdsNotDistinct",
                400,
                "Two or more batch entries in the request have the same Id.",
            ));
        }
    }
    let total: usize = entries.iter().map(|e| e.get("Message").map_or(0, str::len)).sum();
    if total > MESSAGE_BYTES_MAX {
        return Err(SnsError::new(
            "BatchRequestTooLong",
            400,
            "The length of all the messages put together is more than the limit.",
        ));
    }
    let fifo = t.name.ends_with(".fifo");
    let content_dedup = t.attributes.get("ContentBasedDeduplication").is_some_and(|v| v == "true");
    let (mut ok, mut failed) = (String::new(), String::new());
    for e in &entries {
        let id = e.get("Id").unwrap_or("");
        match message(e, fifo, content_dedup).and_then(|m| sns.publish_one(sqs, &topic_arn, fifo, m, caller)) {
            Ok((message_id, seq)) => {
                ok.push_str(&format!(
                    "<member>{}{}{}</member>",
                    element("Id", id),
                    element("MessageId", &message_id),
                    seq.map_or(String::new(), |s| element("SequenceNumber", &s))
                ));
            }
            Err(err) => failed.push_str(&format!(
                "<member>{}{}{}{}</member>",
                element("Id", id),
                element("Code", err.code),
                element("Message", &err.message),
                element("SenderFault", if err.status < 500 { "true" } else { "false" })
            )),
        }
    }
    Ok(format!("<Successful>{ok}</Successful><Failed>{failed}</Failed>"))
}

/// Sends subscription `sub` its `SubscriptionConfirmation` through its outbox.
pub(super) fn send_confirmation(
    sns: &Sns,
    sqs: &Sqs,
    sub: &Subscription,
    outbox: &str,
    caller: &Caller,
) -> Result<(), SnsError> {
    let id = crate::api::sqs::new_message_id();
    let subscribe_url = format!(
        "{}/?Action=ConfirmSubscription&TopicArn={}&Token={}",
        caller.base_url,
        urlencode(&sub.topic_arn),
        sub.token
    );
    let mut doc = json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": id,
        "Token": sub.token,
        "TopicArn": sub.topic_arn,
        "Message": format!("You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.", sub.topic_arn),
        "SubscribeURL": subscribe_url,
        "Timestamp": timestamp(sqs.now_ms()),
        "SignatureVersion": "2",
        "SigningCertURL": format!("{}{}", caller.base_url, super::delivery::CERT_PATH),
    });
    doc["Signature"] = sns.signer.sign(&doc).into();
    sqs.send_outbox(
        outbox,
        OutboxMessage {
            body: doc.to_string(),
            kind: "SubscriptionConfirmation",
            message_id: id,
            subscription_arn: sub.arn.clone(),
            raw: false,
        },
    )
    .map_err(|e| SnsError::internal(e.message))
}
