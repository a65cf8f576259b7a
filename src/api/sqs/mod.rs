//! Amazon SQS on Sluice's engine, over AWS JSON 1.0 (`X-Amz-Target: AmazonSQS.<Action>`).
//!
//! An SQS queue is a Sluice stream of one shard, kept apart from the Kinesis streams
//! (`<data_dir>/sqs/streams/`, named by the queue's incarnation, never by its name), and the
//! delivery state of a Kinesis queue over it ([`crate::api::kinesis::queues::Queue`]:
//! `<data_dir>/sqs/queues/`, journaled before every answer): one implementation of
//! visibility timeouts, receives and acknowledgements for both APIs. Each message is one
//! record, an [`message::Envelope`]. A message moved to a dead-letter queue is appended to
//! that queue's stream, then removed from this one (a crash between the two leaves it in
//! both: at least once, as SQS promises).

mod actions;
mod attributes;
mod error;
mod internal;
mod message;
mod messages;
mod metrics;
mod move_tasks;
pub mod query;

pub use error::SqsError;
pub use internal::{OutboxMessage, Outboxed};
pub use message::{message_size, new_message_id, AttributeValue};
pub use messages::ReceiveRequest;

/// Checks message attributes as `SendMessage` does (SNS's `Publish` takes the same).
pub fn check_message_attributes(attributes: &BTreeMap<String, AttributeValue>) -> Result<(), SqsError> {
    message::check_attributes(attributes, false)
}

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use sluice_engine::streams::{Streams, Throttling};
use sluice_engine::Clock;

use crate::api::kinesis::queues::{Queue, Queues};

/// The `X-Amz-Target` prefix of SQS's JSON protocol.
pub const TARGET_PREFIX: &str = "AmazonSQS";

/// Every SQS operation, as botocore's model `sqs/2012-11-05` names them (23).
pub const OPERATIONS: &[&str] = &[
    "AddPermission",
    "CancelMessageMoveTask",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
    "CreateQueue",
    "DeleteMessage",
    "DeleteMessageBatch",
    "DeleteQueue",
    "GetQueueAttributes",
    "GetQueueUrl",
    "ListDeadLetterSourceQueues",
    "ListMessageMoveTasks",
    "ListQueueTags",
    "ListQueues",
    "PurgeQueue",
    "ReceiveMessage",
    "RemovePermission",
    "SendMessage",
    "SendMessageBatch",
    "SetQueueAttributes",
    "StartMessageMoveTask",
    "TagQueue",
    "UntagQueue",
];

/// The SQS API: its queues, their streams, and what waits on them.
#[derive(Debug)]
pub struct Sqs {
    /// One stream per queue.
    streams: Streams,
    /// The queues: attributes and delivery state.
    queues: Queues,
    /// Region shown in ARNs.
    region: String,
    /// Account shown in ARNs and queue URLs.
    account_id: String,
    /// Time for timestamps, visibility and retention.
    clock: Arc<dyn Clock>,
    /// Bumped when messages of an SNS outbox (a hidden queue) are sent or made visible: the
    /// delivery loop looks again.
    receivers: tokio::sync::watch::Sender<u64>,
    /// Per queue incarnation, bumped when its messages are sent or made visible: its waiting
    /// receives look again (a send to one queue wakes no other queue's receives).
    queue_signals: Mutex<BTreeMap<u64, tokio::sync::watch::Sender<u64>>>,
    /// Message move tasks, newest last.
    move_tasks: Mutex<Vec<move_tasks::MoveTask>>,
    /// FIFO deduplication ids seen within the window, by queue incarnation.
    dedup: Mutex<BTreeMap<u64, DedupIds>>,
    /// The last `PurgeQueue` of each queue incarnation, ms (one a minute is allowed).
    purges: Mutex<BTreeMap<u64, u64>>,
    /// FIFO queues: the message group of pending records looked at, by queue incarnation and
    /// sequence number.
    groups: Mutex<BTreeMap<u64, BTreeMap<u64, String>>>,
    /// Names of queues deleted within the last minute, with when (ms): not created again
    /// before the minute is over, as on SQS.
    deleted: Mutex<BTreeMap<String, u64>>,
    /// FIFO receives by `ReceiveRequestAttemptId` within 5 minutes (queue incarnation, id) to
    /// (when, the answer): a retried receive gets the same messages.
    attempts: Mutex<BTreeMap<(u64, String), (u64, serde_json::Value)>>,
}

/// A FIFO queue's deduplication ids: to (sent ms, message id, sequence number).
type DedupIds = BTreeMap<String, (u64, String, u64)>;

/// What an SQS action answers: a JSON body now, or a receive that waits for messages.
pub enum SqsAnswer {
    /// The JSON body (empty for an action without output: `{}` is sent).
    Body(Vec<u8>),
    /// A `ReceiveMessage` that found nothing yet and may wait until `deadline`.
    Wait(Box<ReceiveRequest>, tokio::time::Instant),
}

impl Sqs {
    /// Opens the queues under `<data_dir>/sqs/`; `sync` makes every state write durable
    /// before the answer (the server's `fsync = "always"`).
    ///
    /// Errors: the folders cannot be made or read, or a stream does not open.
    pub fn open(
        data_dir: &Path,
        log_options: sluice_engine::ShardLogOptions,
        sync: bool,
        region: &str,
        account_id: &str,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        let root = data_dir.join("sqs");
        let streams = Streams::open(&root, log_options, Throttling { off: true, ..Throttling::default() }, u32::MAX)
            .map_err(std::io::Error::other)?;
        let queues = Queues::open(&root, sync)?;
        let this = Self {
            streams,
            queues,
            region: region.to_owned(),
            account_id: account_id.to_owned(),
            clock,
            receivers: tokio::sync::watch::Sender::new(0),
            queue_signals: Mutex::new(BTreeMap::new()),
            move_tasks: Mutex::new(Vec::new()),
            dedup: Mutex::new(BTreeMap::new()),
            purges: Mutex::new(BTreeMap::new()),
            groups: Mutex::new(BTreeMap::new()),
            deleted: Mutex::new(BTreeMap::new()),
            attempts: Mutex::new(BTreeMap::new()),
        };
        for q in this.queues.list() {
            this.rebuild_dedup(&q);
        }
        Ok(this)
    }

    /// Deletes expired records of every queue's stream (the server's retention pass).
    pub fn trim_expired(&self) -> u64 {
        self.streams.trim_expired()
    }

    /// Unmaps segment pages readers faulted in (the server's once-a-second pass).
    pub fn release_pages(&self) {
        self.streams.release_pages();
    }

    /// Syncs every queue's journal (under `fsync = "interval"`).
    pub fn sync_journals(&self) {
        self.queues.sync_journals();
    }

    /// A receiver woken when messages of an SNS outbox are sent or made visible.
    pub fn watch_outboxes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.receivers.subscribe()
    }

    /// A receiver woken when messages of the queue a receive names are sent or made visible
    /// (`None` when there is no such queue).
    pub fn watch_queue(&self, request: &ReceiveRequest) -> Option<tokio::sync::watch::Receiver<u64>> {
        let q = self.by_url(&request.queue_url).ok()?;
        let incarnation = q.meta.read().unwrap_or_else(PoisonError::into_inner).incarnation;
        let mut signals = self.queue_signals.lock().unwrap_or_else(PoisonError::into_inner);
        Some(signals.entry(incarnation).or_insert_with(|| tokio::sync::watch::Sender::new(0)).subscribe())
    }

    /// Wakes the receives waiting on queue `q` (and, for an outbox, the delivery loop).
    fn wake(&self, q: &Queue) {
        let (name, incarnation) = actions::name_and_incarnation(q);
        if internal::is_hidden(&name) {
            self.receivers.send_modify(|n| *n = n.wrapping_add(1));
        }
        let mut signals = self.queue_signals.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(signal) = signals.get(&incarnation) {
            signal.send_modify(|n| *n = n.wrapping_add(1));
            // Nobody waits on it any more: forgotten, so deleted queues leave nothing behind.
            if signal.receiver_count() == 0 {
                signals.remove(&incarnation);
            }
        }
    }

    /// The ARN of queue `name`.
    pub fn queue_arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{}:{name}", self.region, self.account_id)
    }

    /// The URL of queue `name` for a client that reached the server at `host`
    /// (`http://<host>/<account>/<name>`).
    pub fn queue_url(&self, host: &str, name: &str) -> String {
        format!("http://{host}/{}/{name}", self.account_id)
    }

    /// The queue a `QueueUrl` names (its last path segment; an account segment before it, if
    /// any, must be this account's), or `QueueDoesNotExist`.
    fn by_url(&self, url: &str) -> Result<Arc<Queue>, SqsError> {
        let path = url.split(['?', '#']).next().unwrap_or("");
        let mut parts = path.trim_end_matches('/').rsplit('/');
        let name = parts.next().unwrap_or("");
        if let Some(account) = parts.next() {
            let scheme_only = account.is_empty() || account.ends_with(':');
            if !scheme_only && account.chars().all(|c| c.is_ascii_digit()) && account != self.account_id {
                return Err(SqsError::no_queue());
            }
        }
        self.queues.get(name).filter(|_| internal::reachable(name)).ok_or_else(SqsError::no_queue)
    }

    /// The queue an ARN names, if it is one of this server's.
    fn by_arn(&self, arn: &str) -> Option<Arc<Queue>> {
        let prefix = format!("arn:aws:sqs:{}:{}:", self.region, self.account_id);
        arn.strip_prefix(&prefix).filter(|name| internal::reachable(name)).and_then(|name| self.queues.get(name))
    }

    /// Stream name of a queue's incarnation.
    fn stream_name(incarnation: u64) -> String {
        format!("q{incarnation:016x}")
    }

    /// Answers action `operation` (one of [`OPERATIONS`]) with `body` (JSON), for a client
    /// that reached the server at `host`, sent by `sender` (its `SenderId`: the access key, or
    /// the account without authentication).
    pub fn handle(&self, operation: &str, body: &[u8], host: &str, sender: &str) -> Result<SqsAnswer, SqsError> {
        let body = if body.is_empty() { &b"{}"[..] } else { body };
        let request: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            SqsError::from_api(&crate::api::ApiError::new(crate::api::ErrorKind::Serialization, e.to_string()))
        })?;
        if !request.is_object() {
            return Err(SqsError::from_api(&crate::api::ApiError::new(
                crate::api::ErrorKind::Serialization,
                "Start of structure or map found where not expected.",
            )));
        }
        let answer = match operation {
            "CreateQueue" => actions::create(self, parse(request)?, host),
            "GetQueueUrl" => actions::get_url(self, parse(request)?, host),
            "ListQueues" => actions::list(self, parse(request)?, host),
            "DeleteQueue" => actions::delete(self, parse(request)?),
            "GetQueueAttributes" => actions::get_attributes(self, parse(request)?),
            "SetQueueAttributes" => actions::set_attributes(self, parse(request)?),
            "TagQueue" => actions::tag(self, parse(request)?),
            "UntagQueue" => actions::untag(self, parse(request)?),
            "ListQueueTags" => actions::list_tags(self, parse(request)?),
            "AddPermission" => actions::add_permission(self, parse(request)?),
            "RemovePermission" => actions::remove_permission(self, parse(request)?),
            "ListDeadLetterSourceQueues" => actions::dead_letter_sources(self, parse(request)?, host),
            "PurgeQueue" => actions::purge(self, parse(request)?),
            "SendMessage" => messages::send(self, parse(request)?, sender),
            "SendMessageBatch" => messages::send_batch(self, parse(request)?, sender),
            "ReceiveMessage" => return messages::receive(self, parse(request)?),
            "DeleteMessage" => messages::delete(self, parse(request)?),
            "DeleteMessageBatch" => messages::delete_batch(self, parse(request)?),
            "ChangeMessageVisibility" => messages::change_visibility(self, parse(request)?),
            "ChangeMessageVisibilityBatch" => messages::change_visibility_batch(self, parse(request)?),
            "StartMessageMoveTask" => move_tasks::start(self, parse(request)?),
            "ListMessageMoveTasks" => move_tasks::list(self, parse(request)?),
            "CancelMessageMoveTask" => move_tasks::cancel(self, parse(request)?),
            _ => Err(SqsError::new("InvalidAction", format!("The action {operation} is not valid for this endpoint."))),
        }?;
        check_answer(operation, &answer)?;
        Ok(SqsAnswer::Body(serde_json::to_vec(&answer).map_err(|e| SqsError::internal(e.to_string()))?))
    }

    /// A waiting receive's next look: the messages there now (an empty list when none).
    pub fn receive_now(&self, request: &ReceiveRequest) -> Result<Vec<u8>, SqsError> {
        let answer = messages::receive_answer(self, request)?;
        serde_json::to_vec(&answer).map_err(|e| SqsError::internal(e.to_string()))
    }

    /// When a waiting receive should look again at the latest: the next time a message of
    /// its queue becomes visible.
    pub fn next_visible_ms(&self, request: &ReceiveRequest) -> Option<u64> {
        let q = self.by_url(&request.queue_url).ok()?;
        let now = self.clock.now_ms();
        let state = q.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.next_visible_ms(now, sluice_engine::queue::Area::Main)
    }

    /// The clock's now, ms.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// Reads a request into an action's input; a member of the wrong type is a
/// `SerializationException`, as AWS's front end answers, a required one left out
/// `MissingParameter`.
fn parse<T: DeserializeOwned>(request: serde_json::Value) -> Result<T, SqsError> {
    serde_json::from_value(request).map_err(|e| {
        let text = e.to_string();
        // A member left out is SQS's MissingParameter, named as the client named it.
        if let Some(name) = text.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            return SqsError::new("MissingParameter", format!("The request must contain the parameter {name}."));
        }
        SqsError::from_api(&crate::api::ApiError::new(crate::api::ErrorKind::Serialization, text))
    })
}

/// Debug builds (every test) check each answer against SQS's output shape, as the Kinesis
/// and Firehose answers are checked.
fn check_answer(operation: &str, answer: &serde_json::Value) -> Result<(), SqsError> {
    #[cfg(debug_assertions)]
    {
        let model = crate::api::model::sqs();
        if let Some(shape) = model.operation(operation).and_then(|op| op.output) {
            crate::api::validate::conforms(model, shape, answer, operation)
                .map_err(|e| SqsError::internal(format!("answer off the model: {e}")))?;
        }
    }
    let _ = (operation, answer);
    Ok(())
}

/// The `Policy` a queue gets from `AddPermission` statements.
fn policy_with(current: Option<&str>, arn: &str, label: &str, statement: Option<serde_json::Value>) -> String {
    let mut policy: serde_json::Value = current.and_then(|p| serde_json::from_str(p).ok()).unwrap_or_else(
        || serde_json::json!({ "Version": "2012-10-17", "Id": format!("{arn}/SQSDefaultPolicy"), "Statement": [] }),
    );
    let statements = policy["Statement"].as_array_mut().map(std::mem::take).unwrap_or_default();
    let mut kept: Vec<serde_json::Value> = statements.into_iter().filter(|s| s["Sid"] != label).collect();
    kept.extend(statement);
    policy["Statement"] = kept.into();
    policy.to_string()
}
