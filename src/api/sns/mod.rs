//! Amazon SNS over the AWS query protocol (a form-encoded `Action=...` request signed for
//! service `sns`, an XML answer): topics, subscriptions and their confirmation, filter
//! policies, and `Publish(Batch)` fanning out durably.
//!
//! A message published goes, before the answer, to every confirmed subscription its filter
//! policy selects: appended to the subscribed SQS queue (an SQS queue is a Sluice stream; see
//! [`crate::api::sqs`]) or Firehose delivery stream (`firehose`, a `DirectPut` one), or, for
//! an HTTP endpoint, to the subscription's outbox, a hidden SQS
//! queue that the delivery loop ([`delivery`]) drains with POSTs, retrying through the queue's
//! visibility timeout and moving what fails for good to the subscription's dead-letter queue.
//! Topics and subscriptions live in `<data_dir>/sns/state.json`, written whole and renamed
//! into place on each change.
//!
//! The SMS and mobile-push operations are out of scope: they answer `InvalidAction`.

mod actions;
pub mod delivery;
mod filter;
mod publish;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::api::query;
pub use crate::api::query::Params;

/// The XML namespace of SNS's answers.
pub const XMLNS: &str = "http://sns.amazonaws.com/doc/2010-03-31/";

/// The operations Sluice serves: botocore's SNS model (`sns/2010-03-31`) less its SMS and
/// mobile-push operations.
pub const OPERATIONS: &[&str] = &[
    "AddPermission",
    "ConfirmSubscription",
    "CreateTopic",
    "DeleteTopic",
    "GetDataProtectionPolicy",
    "GetSubscriptionAttributes",
    "GetTopicAttributes",
    "ListSubscriptions",
    "ListSubscriptionsByTopic",
    "ListTagsForResource",
    "ListTopics",
    "Publish",
    "PublishBatch",
    "PutDataProtectionPolicy",
    "RemovePermission",
    "SetSubscriptionAttributes",
    "SetTopicAttributes",
    "Subscribe",
    "TagResource",
    "Unsubscribe",
    "UntagResource",
];

/// The operations of botocore's model that are out of scope (SMS and mobile push).
pub const OUT_OF_SCOPE: &[&str] = &[
    "CheckIfPhoneNumberIsOptedOut",
    "CreatePlatformApplication",
    "CreatePlatformEndpoint",
    "CreateSMSSandboxPhoneNumber",
    "DeleteEndpoint",
    "DeletePlatformApplication",
    "DeleteSMSSandboxPhoneNumber",
    "GetEndpointAttributes",
    "GetPlatformApplicationAttributes",
    "GetSMSAttributes",
    "GetSMSSandboxAccountStatus",
    "ListEndpointsByPlatformApplication",
    "ListOriginationNumbers",
    "ListPhoneNumbersOptedOut",
    "ListPlatformApplications",
    "ListSMSSandboxPhoneNumbers",
    "OptInPhoneNumber",
    "SetEndpointAttributes",
    "SetPlatformApplicationAttributes",
    "SetSMSAttributes",
    "VerifySMSSandboxPhoneNumber",
];

/// An SNS error: `<ErrorResponse><Error><Type>Sender</Type><Code>..</Code><Message>..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsError {
    /// The error code (`NotFound`, `InvalidParameter`, ...).
    pub code: &'static str,
    /// HTTP status.
    pub status: u16,
    /// Message.
    pub message: String,
}

impl SnsError {
    /// Error `code` with `status` and `message`.
    pub fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self { code, status, message: message.into() }
    }

    /// `InvalidParameter` (400).
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new("InvalidParameter", 400, message)
    }

    /// `NotFound` (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new("NotFound", 404, message)
    }

    /// `InternalError` (500).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalError", 500, message)
    }

    /// The error of a request the shared front end refused (signature, credentials, body).
    pub fn from_api(e: &crate::api::ApiError) -> Self {
        use crate::api::ErrorKind;
        let code = match e.kind {
            ErrorKind::UnrecognizedClient => "InvalidClientTokenId",
            ErrorKind::InvalidSignature => "SignatureDoesNotMatch",
            ErrorKind::IncompleteSignature => "IncompleteSignature",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationToken",
            ErrorKind::AccessDenied => "AuthorizationError",
            ErrorKind::InternalFailure => "InternalError",
            _ => "InvalidParameter",
        };
        Self::new(code, e.kind.status(), e.message.clone())
    }

    /// The XML body.
    pub fn body(&self, request_id: &str) -> String {
        let kind = if self.status >= 500 { "Receiver" } else { "Sender" };
        format!(
            "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            self.code,
            query::escape(&self.message),
            query::escape(request_id)
        )
    }
}

/// A topic as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    /// Name (`.fifo` at the end for a FIFO topic).
    pub name: String,
    /// Attributes set (`DisplayName`, `Policy`, `DeliveryPolicy`, `FifoTopic`,
    /// `ContentBasedDeduplication`, ...).
    pub attributes: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// `PutDataProtectionPolicy`'s document, if one was put.
    #[serde(default)]
    pub data_protection_policy: Option<String>,
}

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Its ARN (`<topic arn>:<uuid>`).
    pub arn: String,
    /// The topic's ARN.
    pub topic_arn: String,
    /// `sqs`, `http` or `https`.
    pub protocol: String,
    /// The queue's ARN or the endpoint's URL.
    pub endpoint: String,
    /// Attributes set (`FilterPolicy`, `FilterPolicyScope`, `RawMessageDelivery`,
    /// `RedrivePolicy`, `DeliveryPolicy`).
    pub attributes: BTreeMap<String, String>,
    /// Whether the endpoint confirmed it (SQS subscriptions of this account are at once).
    pub confirmed: bool,
    /// The token a confirmation must give.
    pub token: String,
    /// The hidden SQS queue HTTP deliveries go through, if any.
    #[serde(default)]
    pub outbox: Option<String>,
}

/// Every topic and subscription.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct State {
    /// By name.
    topics: BTreeMap<String, Topic>,
    /// By ARN.
    subscriptions: BTreeMap<String, Subscription>,
}

/// The SNS API.
#[derive(Debug)]
pub struct Sns {
    path: PathBuf,
    state: RwLock<State>,
    region: String,
    account_id: String,
    /// The key that signs messages.
    pub signer: delivery::Signer,
    /// FIFO topics: the next sequence number and the deduplication ids seen within the
    /// window, by topic ARN.
    fifo: Mutex<BTreeMap<String, FifoTopic>>,
    /// The delivery streams `firehose` subscriptions put to (set once Firehose is open).
    deliveries: std::sync::OnceLock<std::sync::Arc<sluice_firehose::DeliveryStreams>>,
}

/// A FIFO topic's sequence counter and its deduplication ids: to (sent ms, message id,
/// sequence number).
type FifoTopic = (u64, BTreeMap<String, (u64, String, String)>);

/// What a client needs from the request to be answered: where it reached the server (for the
/// URLs in messages) and who signed it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `http://<host>` as the client reached the server.
    pub base_url: String,
    /// The request id of the answer.
    pub request_id: String,
}

impl Sns {
    /// Opens the topics and subscriptions of `<data_dir>/sns/state.json`.
    ///
    /// Errors: the folder cannot be made, or the file does not read.
    pub fn open(data_dir: &Path, region: &str, account_id: &str) -> std::io::Result<Self> {
        let dir = data_dir.join("sns");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("state.json");
        let state = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            state: RwLock::new(state),
            region: region.to_owned(),
            account_id: account_id.to_owned(),
            signer: delivery::Signer::open(&dir)?,
            fifo: Mutex::new(BTreeMap::new()),
            deliveries: std::sync::OnceLock::new(),
        })
    }

    /// The ARN of topic `name`.
    pub fn topic_arn(&self, name: &str) -> String {
        format!("arn:aws:sns:{}:{}:{name}", self.region, self.account_id)
    }

    /// The name of the topic an ARN names, if it is one of this account's.
    fn topic_name<'a>(&self, arn: &'a str) -> Option<&'a str> {
        arn.strip_prefix(&format!("arn:aws:sns:{}:{}:", self.region, self.account_id)).filter(|n| !n.contains(':'))
    }

    /// Changes the state and writes it; the change is kept only when the write succeeds.
    fn update<R>(&self, change: impl FnOnce(&mut State) -> Result<R, SnsError>) -> Result<R, SnsError> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = state.clone();
        let out = change(&mut next)?;
        let bytes = serde_json::to_vec(&next).map_err(|e| SnsError::internal(e.to_string()))?;
        sluice_engine::stream::write_atomically(&self.path, &bytes).map_err(|e| SnsError::internal(e.to_string()))?;
        *state = next;
        Ok(out)
    }

    /// Gives `firehose` subscriptions the delivery streams they put to; later calls change
    /// nothing.
    pub fn attach_deliveries(&self, deliveries: std::sync::Arc<sluice_firehose::DeliveryStreams>) {
        let _ = self.deliveries.set(deliveries);
    }

    /// Puts `record` to the delivery stream `arn` names (a `DirectPut` one of this
    /// account). `Ok(false)` when it refuses it for good (no such delivery stream, or one
    /// fed by a Kinesis stream): the delivery is dropped.
    fn put_to_firehose(&self, arn: &str, record: &[u8]) -> Result<bool, SnsError> {
        let prefix = format!("arn:aws:firehose:{}:{}:deliverystream/", self.region, self.account_id);
        let Some(entry) = arn.strip_prefix(&prefix).and_then(|name| self.deliveries.get()?.get(name)) else {
            return Ok(false);
        };
        if entry.spec().source_stream().is_some() {
            return Ok(false);
        }
        match entry.put(&[record]) {
            Ok(_) => Ok(true),
            Err(e) => Err(SnsError::internal(format!("delivery stream {arn}: {e}"))),
        }
    }

    /// Deletes the outboxes no subscription has (left by a crash between a subscription's
    /// outbox and its state, or between an unsubscription's state and its outbox).
    pub fn reconcile(&self, sqs: &crate::api::sqs::Sqs) {
        let kept: std::collections::BTreeSet<String> =
            self.subscriptions().into_iter().filter_map(|s| s.outbox).collect();
        for name in sqs.hidden_queues() {
            if !kept.contains(&name) {
                tracing::info!(queue = %name, "an SNS outbox of no subscription is deleted");
                sqs.delete_internal(&name);
            }
        }
    }

    /// A copy of the subscriptions of topic `topic_arn` (only those are cloned: a publish
    /// costs its topic's subscriptions, not the server's).
    pub fn subscriptions_of(&self, topic_arn: &str) -> Vec<Subscription> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.subscriptions.values().filter(|s| s.topic_arn == topic_arn).cloned().collect()
    }

    /// A copy of every subscription.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.state.read().unwrap_or_else(PoisonError::into_inner).subscriptions.values().cloned().collect()
    }

    /// Answers `params` (an `Action` and its parameters) for `caller`: status and XML body.
    pub fn handle(&self, sqs: &crate::api::sqs::Sqs, params: &Params, caller: &Caller) -> (u16, String) {
        let action = params.get("Action").unwrap_or("");
        let answered = match action {
            "" => Err(SnsError::new("MissingAction", 400, "Missing Action")),
            a if OUT_OF_SCOPE.contains(&a) => Err(SnsError::new(
                "InvalidAction",
                400,
                format!("The action {a} is not valid for this endpoint: Sluice serves no SMS or mobile push."),
            )),
            a if OPERATIONS.contains(&a) => self.run(sqs, a, params, caller),
            a => Err(SnsError::new("InvalidAction", 400, format!("The action {a} is not valid for this endpoint."))),
        };
        match answered {
            Ok(result) => (200, query::response(XMLNS, action, result.as_deref(), &caller.request_id)),
            Err(e) => (e.status, e.body(&caller.request_id)),
        }
    }

    fn run(
        &self,
        sqs: &crate::api::sqs::Sqs,
        action: &str,
        p: &Params,
        caller: &Caller,
    ) -> Result<Option<String>, SnsError> {
        match action {
            "CreateTopic" => actions::create_topic(self, p).map(Some),
            "DeleteTopic" => actions::delete_topic(self, sqs, p).map(|()| None),
            "ListTopics" => actions::list_topics(self, p).map(Some),
            "GetTopicAttributes" => actions::get_topic_attributes(self, p).map(Some),
            "SetTopicAttributes" => actions::set_topic_attributes(self, p).map(|()| None),
            "AddPermission" => actions::add_permission(self, p).map(|()| None),
            "RemovePermission" => actions::remove_permission(self, p).map(|()| None),
            "TagResource" => actions::tag(self, p).map(|()| Some(String::new())),
            "UntagResource" => actions::untag(self, p).map(|()| Some(String::new())),
            "ListTagsForResource" => actions::list_tags(self, p).map(Some),
            "GetDataProtectionPolicy" => actions::get_data_protection_policy(self, p).map(Some),
            "PutDataProtectionPolicy" => actions::put_data_protection_policy(self, p).map(|()| None),
            "Subscribe" => actions::subscribe(self, sqs, p, caller).map(Some),
            "ConfirmSubscription" => actions::confirm(self, p).map(Some),
            "Unsubscribe" => actions::unsubscribe(self, sqs, p).map(|()| None),
            "ListSubscriptions" => actions::list_subscriptions(self, p, None).map(Some),
            "ListSubscriptionsByTopic" => {
                let topic = p.required("TopicArn")?.to_owned();
                actions::list_subscriptions(self, p, Some(&topic)).map(Some)
            }
            "GetSubscriptionAttributes" => actions::get_subscription_attributes(self, p).map(Some),
            "SetSubscriptionAttributes" => actions::set_subscription_attributes(self, sqs, p).map(|()| None),
            "Publish" => publish::publish(self, sqs, p, caller).map(Some),
            "PublishBatch" => publish::publish_batch(self, sqs, p, caller).map(Some),
            _ => {
                Err(SnsError::new("InvalidAction", 400, format!("The action {action} is not valid for this endpoint.")))
            }
        }
    }
}
