//! Enhanced fan-out consumers: `RegisterStreamConsumer`, `DescribeStreamConsumer`,
//! `ListStreamConsumers`, `DeregisterStreamConsumer`. A consumer is CREATING for the server's
//! transition time after it is registered, then ACTIVE; deregistered, it is DELETING for that
//! time, then gone. Consumers are kept in the stream's metadata, so they survive restarts.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::{after_token, epoch_seconds, name_token, no_output, respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::settings::ConsumerMeta;
use sluice_engine::stream::Stream;

/// Most consumers registered to one stream: 20. Source: AWS Kinesis quotas,
/// `RegisterStreamConsumer`.
pub const CONSUMERS_PER_STREAM_MAX: usize = 20;

/// `ListStreamConsumers` page size when `MaxResults` is absent, and its cap: 100 (larger
/// values are taken as 100). Source: AWS Kinesis API reference, `ListStreamConsumers`.
const LIST_MAX: usize = 100;

/// Where a consumer stands, as `ConsumerStatus` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerStatus {
    /// Just registered; cannot subscribe yet.
    Creating,
    /// Ready.
    Active,
    /// Deregistered; gone soon.
    Deleting,
}

impl ConsumerStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Active => "ACTIVE",
            Self::Deleting => "DELETING",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RegisterRequest {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    consumer_name: String,
    tags: Option<BTreeMap<String, String>>,
}

/// A consumer named by its ARN, or by its stream's ARN and its name.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsumerTarget {
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    consumer_name: Option<String>,
    #[serde(rename = "ConsumerARN")]
    consumer_arn: Option<String>,
}

impl ConsumerTarget {
    /// The consumer with ARN `arn`.
    pub fn by_arn(arn: &str) -> Self {
        Self { stream_arn: None, consumer_name: None, consumer_arn: Some(arn.to_owned()) }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    next_token: Option<String>,
    max_results: Option<i64>,
    /// Epoch seconds: which incarnation of the stream (not with `NextToken`).
    stream_creation_timestamp: Option<f64>,
}

/// A consumer found: its stream and its record.
pub struct Found {
    /// The stream it reads.
    pub stream: Arc<Stream>,
    /// Its metadata.
    pub consumer: ConsumerMeta,
    /// Its status now.
    pub status: ConsumerStatus,
}

impl Kinesis {
    /// The ARN of consumer `c` of stream `stream`: the stream's ARN, `/consumer/`, the name,
    /// `:` and the registration time in epoch seconds, as AWS forms it.
    pub fn consumer_arn(&self, stream: &str, c: &ConsumerMeta) -> String {
        format!("{}/consumer/{}:{}", self.stream_arn(stream), c.name, c.created_ms / 1000)
    }

    /// The consumer a request names, with its status. Errors: `ResourceNotFoundException`
    /// when the stream or consumer does not exist (a consumer ARN of an earlier registration
    /// of the same name counts as not existing).
    pub fn consumer(&self, target: &ConsumerTarget) -> Result<Found, ApiError> {
        let (stream_arn, name, created_s) = match (&target.consumer_arn, &target.stream_arn, &target.consumer_name) {
            (Some(arn), _, _) => {
                let (stream_arn, rest) = arn.split_once("/consumer/").ok_or_else(|| self.consumer_not_found(arn))?;
                let (name, ts) = rest.rsplit_once(':').ok_or_else(|| self.consumer_not_found(arn))?;
                (
                    stream_arn.to_owned(),
                    name.to_owned(),
                    Some(ts.parse::<u64>().map_err(|_| self.consumer_not_found(arn))?),
                )
            }
            (None, Some(stream_arn), Some(name)) => (stream_arn.clone(), name.clone(), None),
            _ => {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "Either ConsumerARN or both StreamARN and ConsumerName must be provided.",
                ))
            }
        };
        let stream = self
            .stream(&StreamTarget { stream_name: None, stream_arn: Some(stream_arn.clone()) })
            .map_err(|_| self.consumer_not_found(&format!("{stream_arn}/consumer/{name}")))?;
        let now = self.clock.now_ms();
        let stream_name = stream.meta().name.clone();
        let registered = stream.meta().settings.consumers.iter().find(|c| c.name == name).cloned();
        let found = match registered {
            Some(c) => {
                let status = if now < c.created_ms + self.config.stream_transition_ms {
                    ConsumerStatus::Creating
                } else {
                    ConsumerStatus::Active
                };
                Some((c, status))
            }
            None => self.deleting_consumer(&stream_name, &name, now).map(|c| (c, ConsumerStatus::Deleting)),
        };
        match found {
            Some((c, status)) if created_s.is_none_or(|s| s == c.created_ms / 1000) => {
                Ok(Found { stream, consumer: c, status })
            }
            _ => Err(self.consumer_not_found(&format!("{stream_arn}/consumer/{name}"))),
        }
    }

    fn consumer_not_found(&self, what: &str) -> ApiError {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Consumer {what} under account {} not found.", self.config.account_id),
        )
    }

    fn consumer_shape(&self, stream: &str, c: &ConsumerMeta, status: ConsumerStatus) -> serde_json::Value {
        serde_json::json!({
            "ConsumerName": c.name,
            "ConsumerARN": self.consumer_arn(stream, c),
            "ConsumerStatus": status.as_str(),
            "ConsumerCreationTimestamp": epoch_seconds(c.created_ms),
        })
    }
}

pub fn run_register(k: &Kinesis, r: RegisterRequest) -> Result<Vec<u8>, ApiError> {
    let target = StreamTarget { stream_name: None, stream_arn: Some(r.stream_arn) };
    let stream = k.stream_for_change(&target)?;
    let now = k.clock.now_ms();
    let name = stream.meta().name.clone();
    if k.deleting_consumer(&name, &r.consumer_name, now).is_some() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Consumer {} under stream {name} is being deleted.", r.consumer_name),
        ));
    }
    let consumer = stream.update_meta(|meta| {
        if meta.settings.consumers.iter().any(|c| c.name == r.consumer_name) {
            return Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Consumer {} under stream {} already exists for account {}.",
                    r.consumer_name, meta.name, k.config.account_id
                ),
            ));
        }
        if meta.settings.consumers.len() >= CONSUMERS_PER_STREAM_MAX {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Consumer limit of {CONSUMERS_PER_STREAM_MAX} exceeded for stream {} under account {}.",
                    meta.name, k.config.account_id
                ),
            ));
        }
        let c = ConsumerMeta {
            name: r.consumer_name.clone(),
            created_ms: now,
            tags: r.tags.clone().unwrap_or_default(),
            policy: None,
        };
        meta.settings.consumers.push(c.clone());
        Ok(c)
    })?;
    respond(&serde_json::json!({ "Consumer": k.consumer_shape(&name, &consumer, ConsumerStatus::Creating) }))
}

pub fn run_describe(k: &Kinesis, r: ConsumerTarget) -> Result<Vec<u8>, ApiError> {
    let found = k.consumer(&r)?;
    let stream = found.stream.meta().name.clone();
    let mut d = k.consumer_shape(&stream, &found.consumer, found.status);
    d["StreamARN"] = k.stream_arn(&stream).into();
    respond(&serde_json::json!({ "ConsumerDescription": d }))
}

pub fn run_list(k: &Kinesis, r: ListRequest) -> Result<Vec<u8>, ApiError> {
    let limit = r.max_results.map_or(LIST_MAX, |n| n.clamp(1, LIST_MAX as i64) as usize);
    if r.next_token.is_some() && r.stream_creation_timestamp.is_some() {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "NextToken and StreamCreationTimestamp cannot be provided together.",
        ));
    }
    let stream = k.stream(&StreamTarget { stream_name: None, stream_arn: Some(r.stream_arn) })?;
    let stream = k.of_incarnation(stream, r.stream_creation_timestamp)?;
    let after = after_token(r.next_token.as_deref())?;
    let now = k.clock.now_ms();
    let name = stream.meta().name.clone();
    let mut all: Vec<(ConsumerMeta, ConsumerStatus)> = stream
        .meta()
        .settings
        .consumers
        .iter()
        .map(|c| {
            let creating = now < c.created_ms + k.config.stream_transition_ms;
            (c.clone(), if creating { ConsumerStatus::Creating } else { ConsumerStatus::Active })
        })
        .collect();
    all.extend(k.deleting_consumers_of(&name, now).into_iter().map(|c| (c, ConsumerStatus::Deleting)));
    all.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let rest: Vec<_> = all.iter().filter(|(c, _)| after.as_ref().is_none_or(|a| c.name > *a)).collect();
    let page: Vec<_> = rest.iter().take(limit).map(|(c, s)| k.consumer_shape(&name, c, *s)).collect();
    let mut body = serde_json::json!({ "Consumers": page });
    if rest.len() > limit {
        let last = &rest[limit - 1].0.name;
        body["NextToken"] = name_token(last).into();
    }
    respond(&body)
}

pub fn run_deregister(k: &Kinesis, r: ConsumerTarget) -> Result<Vec<u8>, ApiError> {
    let found = k.consumer(&r)?;
    if found.status == ConsumerStatus::Deleting {
        return Err(k.consumer_not_found(&k.consumer_arn(&found.stream.meta().name, &found.consumer)));
    }
    let name = found.consumer.name.clone();
    found.stream.update_meta(|meta| {
        meta.settings.consumers.retain(|c| c.name != name);
        Ok::<_, ApiError>(())
    })?;
    let stream = found.stream.meta().name.clone();
    k.begin_consumer_deletion(&stream, found.consumer, k.clock.now_ms() + k.config.stream_transition_ms);
    no_output()
}
