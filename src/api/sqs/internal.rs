//! Queues other parts of the server use: sends to a queue by ARN (SNS's fan-out), and the
//! hidden outbox queues of SNS's HTTP subscriptions, whose names (`~sns-<id>`) no client can
//! give and no list shows.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::message::AttributeValue;
use super::{Sqs, SqsAnswer, SqsError};

/// The prefix of hidden queues' names (`~` is no character of a queue name a client gives).
const HIDDEN_PREFIX: &str = "~sns-";

/// Whether queue `name` is hidden from clients.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('~')
}

thread_local! {
    /// Set while this thread runs a call of the server's own ([`Sqs::call`]): only then are
    /// hidden queues found.
    static INTERNAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether queue `name` may be named by the call this thread runs.
pub fn reachable(name: &str) -> bool {
    !is_hidden(name) || INTERNAL.with(std::cell::Cell::get)
}

/// A message of an SNS subscription's outbox: the HTTP body to POST and what its headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// The body.
    pub body: String,
    /// `x-amz-sns-message-type`: `Notification` or `SubscriptionConfirmation`.
    pub kind: &'static str,
    /// `x-amz-sns-message-id`.
    pub message_id: String,
    /// `x-amz-sns-subscription-arn`.
    pub subscription_arn: String,
    /// Whether the body is the raw message (`x-amz-sns-rawdelivery: true`).
    pub raw: bool,
}

/// An outbox message received for delivery.
#[derive(Debug, Clone)]
pub struct Outboxed {
    /// The message.
    pub message: OutboxMessage,
    /// Its receipt handle.
    pub receipt_handle: String,
    /// Deliveries tried so far, this one included.
    pub attempts: u32,
}

fn string_attribute(value: &str) -> AttributeValue {
    AttributeValue { data_type: "String".into(), string_value: Some(value.to_owned()), binary_value: None }
}

impl Sqs {
    /// A queue URL that names queue `name` to [`Sqs::handle`].
    fn internal_url(&self, name: &str) -> String {
        format!("http://internal/{}/{name}", self.account_id)
    }

    /// Whether `arn` names a queue of this server (not a hidden one).
    pub fn queue_exists(&self, arn: &str) -> bool {
        self.by_arn(arn).is_some() && !arn.rsplit(':').next().is_some_and(is_hidden)
    }

    /// Runs action `operation` with `body` as a client of this server would.
    fn call(&self, operation: &str, body: Value) -> Result<Value, SqsError> {
        let bytes = serde_json::to_vec(&body).map_err(|e| SqsError::internal(e.to_string()))?;
        /// Clears the flag however the call ends (a panic included: the thread serves others).
        struct Internal;
        impl Drop for Internal {
            fn drop(&mut self) {
                INTERNAL.with(|i| i.set(false));
            }
        }
        INTERNAL.with(|i| i.set(true));
        let guard = Internal;
        let answered = self.handle(operation, &bytes, "internal", &self.account_id.clone());
        drop(guard);
        match answered? {
            SqsAnswer::Body(b) => serde_json::from_slice(&b).map_err(|e| SqsError::internal(e.to_string())),
            SqsAnswer::Wait(..) => Err(SqsError::internal("an internal receive waits for nothing")),
        }
    }

    /// Sends a message to the queue `arn` names, checked as `SendMessage` checks it (a FIFO
    /// queue takes `group` and `dedup`); its message id.
    pub fn send_internal(
        &self,
        arn: &str,
        body: String,
        attributes: BTreeMap<String, AttributeValue>,
        group: Option<String>,
        dedup: Option<String>,
    ) -> Result<String, SqsError> {
        let q = self.by_arn(arn).ok_or_else(SqsError::no_queue)?;
        let name = q.meta.read().unwrap_or_else(std::sync::PoisonError::into_inner).name.clone();
        let fifo = name.ends_with(".fifo");
        let mut request = json!({ "QueueUrl": self.internal_url(&name), "MessageBody": body });
        if !attributes.is_empty() {
            request["MessageAttributes"] =
                serde_json::to_value(&attributes).map_err(|e| SqsError::internal(e.to_string()))?;
        }
        if fifo {
            request["MessageGroupId"] = group.unwrap_or_else(|| "default".to_owned()).into();
            if let Some(d) = dedup {
                request["MessageDeduplicationId"] = d.into();
            }
        }
        let out = self.call("SendMessage", request)?;
        Ok(out["MessageId"].as_str().unwrap_or_default().to_owned())
    }

    /// Makes the hidden outbox queue of subscription `id`; its name.
    pub fn create_outbox(&self, id: &str) -> Result<String, SqsError> {
        let name = format!("{HIDDEN_PREFIX}{id}");
        super::actions::make_queue(self, &name, BTreeMap::new(), BTreeMap::new())?;
        Ok(name)
    }

    /// Deletes hidden queue `name` and its messages.
    pub fn delete_internal(&self, name: &str) {
        if let Err(e) = self.call("DeleteQueue", json!({ "QueueUrl": self.internal_url(name) })) {
            tracing::warn!(queue = name, error = %e.message, "could not delete a hidden queue");
        }
    }

    /// Appends `m` to outbox `name`.
    pub fn send_outbox(&self, name: &str, m: OutboxMessage) -> Result<(), SqsError> {
        let attributes = BTreeMap::from([
            ("kind".to_owned(), string_attribute(m.kind)),
            ("id".to_owned(), string_attribute(&m.message_id)),
            ("subscription".to_owned(), string_attribute(&m.subscription_arn)),
            ("raw".to_owned(), string_attribute(if m.raw { "true" } else { "false" })),
        ]);
        self.call(
            "SendMessage",
            json!({ "QueueUrl": self.internal_url(name), "MessageBody": m.body, "MessageAttributes": attributes }),
        )
        .map(|_| ())
    }

    /// Up to 10 messages of outbox `name` due for delivery, each in flight for `retry_s`
    /// (when its delivery fails it comes again after that).
    pub fn receive_outbox(&self, name: &str, retry_s: u32) -> Result<Vec<Outboxed>, SqsError> {
        let out = self.call(
            "ReceiveMessage",
            json!({
                "QueueUrl": self.internal_url(name), "MaxNumberOfMessages": 10, "VisibilityTimeout": retry_s,
                "MessageAttributeNames": ["All"], "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
            }),
        )?;
        let text =
            |m: &Value, k: &str| m["MessageAttributes"][k]["StringValue"].as_str().unwrap_or_default().to_owned();
        Ok(out["Messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|m| Outboxed {
                message: OutboxMessage {
                    body: m["Body"].as_str().unwrap_or_default().to_owned(),
                    kind: if text(m, "kind") == "SubscriptionConfirmation" {
                        "SubscriptionConfirmation"
                    } else {
                        "Notification"
                    },
                    message_id: text(m, "id"),
                    subscription_arn: text(m, "subscription"),
                    raw: text(m, "raw") == "true",
                },
                receipt_handle: m["ReceiptHandle"].as_str().unwrap_or_default().to_owned(),
                attempts: m["Attributes"]["ApproximateReceiveCount"].as_str().and_then(|c| c.parse().ok()).unwrap_or(1),
            })
            .collect())
    }

    /// Removes a delivered (or given up) message from outbox `name`.
    pub fn delete_outbox(&self, name: &str, receipt_handle: &str) -> Result<(), SqsError> {
        self.call("DeleteMessage", json!({ "QueueUrl": self.internal_url(name), "ReceiptHandle": receipt_handle }))
            .map(|_| ())
    }

    /// The names of every hidden queue.
    pub fn hidden_queues(&self) -> Vec<String> {
        self.queues
            .list()
            .iter()
            .map(|q| q.meta.read().unwrap_or_else(std::sync::PoisonError::into_inner).name.clone())
            .filter(|n| is_hidden(n))
            .collect()
    }
}
