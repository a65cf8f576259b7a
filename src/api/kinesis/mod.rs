//! The Kinesis Data Streams API (JSON 1.1): one module per action, dispatched from one enum.
//!
//! Each action module parses its request shape (already checked against botocore's model by
//! [`crate::api::validate`]), applies the checks the model cannot express (ranges of hash
//! keys, stream states, limits) with AWS's error names and messages, calls the engine, and
//! builds the response shape. The wire framing (HTTP, `X-Amz-Target`, signatures, JSON or
//! CBOR) belongs to the server; here an action is a name and a JSON body in, a JSON body or
//! an [`ApiError`] out.

mod account;
mod catalog;
mod channels;
mod cluster_reshard;
mod consumers;
mod create_stream;
mod delete_stream;
mod describe_limits;
mod describe_stream;
mod direct_put;
pub(crate) use direct_put::behind_delivery_stream;
mod get_records;
mod get_shard_iterator;
mod list_shards;
mod list_streams;
mod monitoring;
mod on_demand;
mod policy;
mod put_record;
mod put_records;
pub(crate) mod queues;
mod read_forward;
mod rebalance;
mod replicated;
mod reshard;
mod resources;
mod retention;
pub(crate) mod stream_metrics;
mod stream_settings;
pub(crate) mod subscribe;
mod tags;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::api::error::{ApiError, ErrorKind};

use sluice_engine::clock::Clock;
use sluice_engine::queue::Area;
use sluice_engine::settings::ConsumerMeta;
use sluice_engine::stream::{Stream, StreamStatus};
use sluice_engine::streams::Streams;

/// The service prefix of `X-Amz-Target` for Kinesis Data Streams.
pub const TARGET_PREFIX: &str = "Kinesis_20131202";

pub use subscribe::SUBSCRIPTION_LIFETIME_MS_DEFAULT;

/// Default interval between two measurements of on-demand streams, ms: 10 s.
pub const ON_DEMAND_SCALING_INTERVAL_MS_DEFAULT: u64 = 10_000;

/// Dry runs a stream takes per second, shared by `PutRecord`, `PutRecords`, `GetRecords`,
/// `GetShardIterator` and `SubscribeToShard`: 1; more are `ThrottlingException`. Source: AWS
/// Kinesis developer guide, "Test your permissions and request inputs with dry run".
pub const DRY_RUNS_PER_SECOND: f64 = 1.0;

/// Dry runs a stream takes at once after a quiet while: 5. AWS gives the rate, not the burst;
/// Sluice lets a client check its few calls one after another without being refused.
pub const DRY_RUN_BURST: f64 = 5.0;

/// The message of `DryRunOperationException` (EC2's wording of the same answer; the Kinesis
/// guide gives its meaning, not its text).
pub const DRY_RUN_MESSAGE: &str = "Request would have succeeded, but DryRun flag is set.";

/// Default time a stream spends CREATING, UPDATING or DELETING, ms: 100.
pub const STREAM_TRANSITION_MS_DEFAULT: u64 = 100;

/// The actions Sluice serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// `CreateStream`.
    CreateStream,
    /// `DeleteStream`.
    DeleteStream,
    /// `DescribeStream`.
    DescribeStream,
    /// `DescribeStreamSummary`.
    DescribeStreamSummary,
    /// `ListStreams`.
    ListStreams,
    /// `ListShards`.
    ListShards,
    /// `PutRecord`.
    PutRecord,
    /// `PutRecords`.
    PutRecords,
    /// `GetShardIterator`.
    GetShardIterator,
    /// `GetRecords`.
    GetRecords,
    /// `IncreaseStreamRetentionPeriod`.
    IncreaseStreamRetentionPeriod,
    /// `DecreaseStreamRetentionPeriod`.
    DecreaseStreamRetentionPeriod,
    /// `AddTagsToStream`.
    AddTagsToStream,
    /// `RemoveTagsFromStream`.
    RemoveTagsFromStream,
    /// `ListTagsForStream`.
    ListTagsForStream,
    /// `DescribeLimits`.
    DescribeLimits,
    /// `SplitShard`.
    SplitShard,
    /// `MergeShards`.
    MergeShards,
    /// `UpdateShardCount`.
    UpdateShardCount,
    /// `RegisterStreamConsumer`.
    RegisterStreamConsumer,
    /// `DescribeStreamConsumer`.
    DescribeStreamConsumer,
    /// `ListStreamConsumers`.
    ListStreamConsumers,
    /// `DeregisterStreamConsumer`.
    DeregisterStreamConsumer,
    /// `SubscribeToShard`.
    SubscribeToShard,
    /// `StartStreamEncryption`.
    StartStreamEncryption,
    /// `StopStreamEncryption`.
    StopStreamEncryption,
    /// `EnableEnhancedMonitoring`.
    EnableEnhancedMonitoring,
    /// `DisableEnhancedMonitoring`.
    DisableEnhancedMonitoring,
    /// `UpdateMaxRecordSize`.
    UpdateMaxRecordSize,
    /// `UpdateStreamMode`.
    UpdateStreamMode,
    /// `UpdateStreamWarmThroughput`.
    UpdateStreamWarmThroughput,
    /// `UpdateStreamRecordDistributionStrategy`.
    UpdateStreamRecordDistributionStrategy,
    /// `TagResource`.
    TagResource,
    /// `UntagResource`.
    UntagResource,
    /// `ListTagsForResource`.
    ListTagsForResource,
    /// `PutResourcePolicy`.
    PutResourcePolicy,
    /// `GetResourcePolicy`.
    GetResourcePolicy,
    /// `DeleteResourcePolicy`.
    DeleteResourcePolicy,
    /// `DescribeAccountSettings`.
    DescribeAccountSettings,
    /// `UpdateAccountSettings`.
    UpdateAccountSettings,
    /// `CreateQueue`.
    CreateQueue,
    /// `DescribeQueue`.
    DescribeQueue,
    /// `ListQueues`.
    ListQueues,
    /// `UpdateQueue`.
    UpdateQueue,
    /// `DeleteQueue`.
    DeleteQueue,
    /// `ReceiveQueueRecords`.
    ReceiveQueueRecords,
    /// `AcknowledgeQueueRecords`.
    AcknowledgeQueueRecords,
    /// `UpdateQueueRecordsVisibility`.
    UpdateQueueRecordsVisibility,
    /// `ReceiveDeadLetterQueueRecords`.
    ReceiveDeadLetterQueueRecords,
    /// `AcknowledgeDeadLetterQueueRecords`.
    AcknowledgeDeadLetterQueueRecords,
    /// `UpdateDeadLetterQueueRecordsVisibility`.
    UpdateDeadLetterQueueRecordsVisibility,
    /// `RestoreDeadLetterQueueRecords`.
    RestoreDeadLetterQueueRecords,
    /// `CreateChannel`.
    CreateChannel,
    /// `DescribeChannel`.
    DescribeChannel,
    /// `ListChannels`.
    ListChannels,
    /// `UpdateChannel`.
    UpdateChannel,
    /// `DeleteChannel`.
    DeleteChannel,
}

impl Action {
    /// The action an `X-Amz-Target` action name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "CreateStream" => Self::CreateStream,
            "DeleteStream" => Self::DeleteStream,
            "DescribeStream" => Self::DescribeStream,
            "DescribeStreamSummary" => Self::DescribeStreamSummary,
            "ListStreams" => Self::ListStreams,
            "ListShards" => Self::ListShards,
            "PutRecord" => Self::PutRecord,
            "PutRecords" => Self::PutRecords,
            "GetShardIterator" => Self::GetShardIterator,
            "GetRecords" => Self::GetRecords,
            "IncreaseStreamRetentionPeriod" => Self::IncreaseStreamRetentionPeriod,
            "DecreaseStreamRetentionPeriod" => Self::DecreaseStreamRetentionPeriod,
            "AddTagsToStream" => Self::AddTagsToStream,
            "RemoveTagsFromStream" => Self::RemoveTagsFromStream,
            "ListTagsForStream" => Self::ListTagsForStream,
            "DescribeLimits" => Self::DescribeLimits,
            "SplitShard" => Self::SplitShard,
            "MergeShards" => Self::MergeShards,
            "UpdateShardCount" => Self::UpdateShardCount,
            "RegisterStreamConsumer" => Self::RegisterStreamConsumer,
            "DescribeStreamConsumer" => Self::DescribeStreamConsumer,
            "ListStreamConsumers" => Self::ListStreamConsumers,
            "DeregisterStreamConsumer" => Self::DeregisterStreamConsumer,
            "SubscribeToShard" => Self::SubscribeToShard,
            "StartStreamEncryption" => Self::StartStreamEncryption,
            "StopStreamEncryption" => Self::StopStreamEncryption,
            "EnableEnhancedMonitoring" => Self::EnableEnhancedMonitoring,
            "DisableEnhancedMonitoring" => Self::DisableEnhancedMonitoring,
            "UpdateMaxRecordSize" => Self::UpdateMaxRecordSize,
            "UpdateStreamMode" => Self::UpdateStreamMode,
            "UpdateStreamWarmThroughput" => Self::UpdateStreamWarmThroughput,
            "UpdateStreamRecordDistributionStrategy" => Self::UpdateStreamRecordDistributionStrategy,
            "TagResource" => Self::TagResource,
            "UntagResource" => Self::UntagResource,
            "ListTagsForResource" => Self::ListTagsForResource,
            "PutResourcePolicy" => Self::PutResourcePolicy,
            "GetResourcePolicy" => Self::GetResourcePolicy,
            "DeleteResourcePolicy" => Self::DeleteResourcePolicy,
            "DescribeAccountSettings" => Self::DescribeAccountSettings,
            "UpdateAccountSettings" => Self::UpdateAccountSettings,
            "CreateQueue" => Self::CreateQueue,
            "DescribeQueue" => Self::DescribeQueue,
            "ListQueues" => Self::ListQueues,
            "UpdateQueue" => Self::UpdateQueue,
            "DeleteQueue" => Self::DeleteQueue,
            "ReceiveQueueRecords" => Self::ReceiveQueueRecords,
            "AcknowledgeQueueRecords" => Self::AcknowledgeQueueRecords,
            "UpdateQueueRecordsVisibility" => Self::UpdateQueueRecordsVisibility,
            "ReceiveDeadLetterQueueRecords" => Self::ReceiveDeadLetterQueueRecords,
            "AcknowledgeDeadLetterQueueRecords" => Self::AcknowledgeDeadLetterQueueRecords,
            "UpdateDeadLetterQueueRecordsVisibility" => Self::UpdateDeadLetterQueueRecordsVisibility,
            "RestoreDeadLetterQueueRecords" => Self::RestoreDeadLetterQueueRecords,
            "CreateChannel" => Self::CreateChannel,
            "DescribeChannel" => Self::DescribeChannel,
            "ListChannels" => Self::ListChannels,
            "UpdateChannel" => Self::UpdateChannel,
            "DeleteChannel" => Self::DeleteChannel,
            _ => return None,
        })
    }
}

/// Settings of the Kinesis API.
#[derive(Debug, Clone)]
pub struct KinesisConfig {
    /// Region shown in ARNs (default `us-east-1`).
    pub region: String,
    /// Account id shown in ARNs and messages (default `000000000000`).
    pub account_id: String,
    /// Secret that signs shard iterators; random per process unless given, so iterators
    /// from before a restart are refused (clients then ask for new ones, as on expiry).
    pub iterator_secret: Vec<u8>,
    /// How long a stream stays CREATING, UPDATING (after resharding) or DELETING, ms
    /// (default 100; AWS takes seconds). Clients wait with the SDKs' `StreamExists` waiter.
    pub stream_transition_ms: u64,
    /// How long a `SubscribeToShard` subscription lasts, ms (default 300,000, AWS's 5
    /// minutes; tests shorten it).
    pub subscription_lifetime_ms: u64,
    /// How often on-demand streams are measured and resharded, ms (default 10,000).
    pub on_demand_scaling_interval_ms: u64,
    /// Whether every write of a queue's delivery state is synced before the answer (the
    /// server's `fsync = "always"`); otherwise it is renamed into place, which a crash of the
    /// process does not undo.
    pub sync_queue_state: bool,
    /// Interval between background syncs of the queues' journals, ms (the server's
    /// `fsync_interval_ms` under `fsync = "interval"`; 0: none).
    pub queue_sync_interval_ms: u64,
}

impl Default for KinesisConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            iterator_secret: random_secret(),
            stream_transition_ms: STREAM_TRANSITION_MS_DEFAULT,
            subscription_lifetime_ms: subscribe::SUBSCRIPTION_LIFETIME_MS_DEFAULT,
            on_demand_scaling_interval_ms: ON_DEMAND_SCALING_INTERVAL_MS_DEFAULT,
            sync_queue_state: false,
            queue_sync_interval_ms: 0,
        }
    }
}

fn random_secret() -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS's randomness; four draws give 32 bytes.
    (0..4)
        .flat_map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            h.finish().to_le_bytes()
        })
        .collect()
}

/// The Kinesis API over a set of streams.
#[derive(Debug)]
pub struct Kinesis {
    /// The streams (shared with Firehose delivery, which reads them).
    pub streams: Arc<Streams>,
    /// Settings.
    pub config: KinesisConfig,
    /// Time for timestamps, iterator expiry and retention.
    pub clock: Arc<dyn Clock>,
    /// Deleted streams still shown as DELETING, with the time (ms) they vanish.
    deleting: Mutex<BTreeMap<String, (u64, Arc<Stream>)>>,
    /// Deregistered consumers still shown as DELETING: stream name, consumer, time (ms)
    /// they vanish.
    deleting_consumers: Mutex<Vec<(String, ConsumerMeta, u64)>>,
    /// Enhanced fan-out subscriptions open now.
    subscriptions: Arc<subscribe::Subscriptions>,
    /// Write counters of on-demand streams' shards at the last measurement.
    on_demand_samples: Mutex<on_demand::Samples>,
    /// Kinesis queues.
    pub(crate) queues: queues::Queues,
    /// Bumped when records are appended or made visible: waiting queue receives look again.
    receivers: tokio::sync::watch::Sender<u64>,
    /// The delivery engine channels run on (set once Firehose is open).
    deliveries: std::sync::OnceLock<Arc<sluice_firehose::DeliveryStreams>>,
    /// Dry-run token buckets, by stream incarnation: tokens left and when they were counted (ms).
    dry_runs: Mutex<std::collections::HashMap<u64, (f64, u64)>>,
    /// The cluster this node belongs to, once it has joined (`[cluster]`): streams are then
    /// created and deleted through its catalog.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::ClusterLink>>,
    /// Stream-level operation counters (CloudWatch's basic monitoring).
    pub(crate) stream_metrics: stream_metrics::StreamMetrics,
    /// The SQS API, whose queues live beside the streams (`<data_dir>/sqs/`).
    pub sqs: crate::api::sqs::Sqs,
    /// The SNS API, its topics and subscriptions in `<data_dir>/sns/`.
    pub sns: crate::api::sns::Sns,
}

impl Kinesis {
    /// The API over `streams`, with the queues kept beside them (`<data_dir>/queues/`) and
    /// the SQS API's (`<data_dir>/sqs/`).
    ///
    /// Errors: the queues' folder or its secret cannot be made or read.
    pub fn new(streams: Streams, config: KinesisConfig, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let data_dir = streams.dir().parent().map_or_else(|| streams.dir().to_owned(), |p| p.to_owned());
        let queues = queues::Queues::open(&data_dir, config.sync_queue_state)?;
        let sqs = crate::api::sqs::Sqs::open(
            &data_dir,
            streams.log_options().clone(),
            config.sync_queue_state,
            &config.region,
            &config.account_id,
            clock.clone(),
        )?;
        let sns = crate::api::sns::Sns::open(&data_dir, &config.region, &config.account_id)?;
        sns.reconcile(&sqs);
        Ok(Self {
            sqs,
            sns,
            streams: Arc::new(streams),
            config,
            clock,
            deleting: Mutex::new(BTreeMap::new()),
            deleting_consumers: Mutex::new(Vec::new()),
            subscriptions: Arc::default(),
            on_demand_samples: Mutex::default(),
            queues,
            receivers: tokio::sync::watch::Sender::new(0),
            deliveries: std::sync::OnceLock::new(),
            dry_runs: Mutex::default(),
            cluster: std::sync::OnceLock::new(),
            stream_metrics: stream_metrics::StreamMetrics::default(),
        })
    }

    /// The key that signs shard iterators: the cluster's once this node has joined one (so
    /// any node takes an iterator another issued), else this process's.
    pub(crate) fn iterator_secret(&self) -> &[u8] {
        self.cluster.get().map_or(&self.config.iterator_secret, |link| &link.iterator_secret)
    }

    /// The position (shard sequence number of the next record) a shard iterator this
    /// cluster signed stands at. Errors: `InternalFailure` for one that does not decode
    /// (another node's answer, not a client's input).
    pub(crate) fn iterator_position(&self, iterator: &str) -> Result<u64, ApiError> {
        sluice_engine::iterator::IteratorState::decode(iterator, self.iterator_secret())
            .map(|it| it.position)
            .ok_or_else(|| {
                ApiError::new(ErrorKind::InternalFailure, "a replica answered a shard iterator that does not decode")
            })
    }

    /// Gives channels the delivery engine they run on; later calls change nothing.
    pub fn attach_deliveries(&self, deliveries: Arc<sluice_firehose::DeliveryStreams>) {
        self.sns.attach_deliveries(deliveries.clone());
        let _ = self.deliveries.set(deliveries);
    }

    /// Wakes queue receives waiting for records.
    pub fn wake_receivers(&self) {
        self.receivers.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver woken by [`Kinesis::wake_receivers`].
    pub fn watch_receivers(&self) -> tokio::sync::watch::Receiver<u64> {
        self.receivers.subscribe()
    }

    /// Shows `consumer` of stream `stream` as DELETING until `until_ms`.
    fn begin_consumer_deletion(&self, stream: &str, consumer: ConsumerMeta, until_ms: u64) {
        let mut d = self.deleting_consumers.lock().unwrap_or_else(PoisonError::into_inner);
        d.retain(|(s, c, _)| !(s == stream && c.name == consumer.name));
        d.push((stream.to_owned(), consumer, until_ms));
    }

    /// Consumers of stream `stream` still DELETING at `now_ms`.
    fn deleting_consumers_of(&self, stream: &str, now_ms: u64) -> Vec<ConsumerMeta> {
        let mut d = self.deleting_consumers.lock().unwrap_or_else(PoisonError::into_inner);
        d.retain(|(_, _, until)| now_ms < *until);
        d.iter().filter(|(s, _, _)| s == stream).map(|(_, c, _)| c.clone()).collect()
    }

    /// Consumer `name` of stream `stream`, if it is DELETING at `now_ms`.
    fn deleting_consumer(&self, stream: &str, name: &str, now_ms: u64) -> Option<ConsumerMeta> {
        self.deleting_consumers_of(stream, now_ms).into_iter().find(|c| c.name == name)
    }

    /// Deletes stream `name` (its data at once) and shows it as DELETING for a while.
    pub(crate) fn delete(&self, stream: Arc<Stream>) -> Result<(), ApiError> {
        let name = stream.meta().name.clone();
        let until = self.clock.now_ms() + self.config.stream_transition_ms;
        stream.begin(StreamStatus::Deleting, until);
        if !self.streams.delete(&name).map_err(internal)? {
            return Err(self.not_found(&name));
        }
        // A stream's queues go with it.
        self.queues.delete_for_stream(&name);
        let now = self.clock.now_ms();
        let mut deleting = self.deleting.lock().unwrap_or_else(PoisonError::into_inner);
        // Streams past their DELETING time go now, so their mapped segments are released
        // without waiting for a lookup of their name.
        deleting.retain(|_, (until, _)| now < *until);
        if now < until {
            deleting.insert(name, (until, stream));
        }
        Ok(())
    }

    /// Forgets deleted streams whose DELETING time is over, releasing their mapped segments.
    pub fn prune_deleted(&self) {
        let now = self.clock.now_ms();
        self.deleting.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, (until, _)| now < *until);
    }

    /// Whether stream `name` was deleted and is still shown as DELETING at `now_ms`.
    fn is_deleting(&self, name: &str, now_ms: u64) -> bool {
        self.deleting.lock().unwrap_or_else(PoisonError::into_inner).get(name).is_some_and(|(until, _)| now_ms < *until)
    }

    /// The stream, if it may take records or iterators now: not CREATING or DELETING
    /// (such a stream is "not found", as on AWS).
    fn stream_for_data(&self, target: &StreamTarget) -> Result<Arc<Stream>, ApiError> {
        let stream = self.stream(target)?;
        match stream.status(self.clock.now_ms()) {
            StreamStatus::Creating | StreamStatus::Deleting => Err(self.not_found(&stream.meta().name)),
            StreamStatus::Updating | StreamStatus::Active => Ok(stream),
        }
    }

    /// The stream, if it may be deleted now: in any state but DELETING (AWS deletes a stream
    /// that is still CREATING or UPDATING).
    fn stream_for_delete(&self, target: &StreamTarget) -> Result<Arc<Stream>, ApiError> {
        let stream = self.stream(target)?;
        match stream.status(self.clock.now_ms()) {
            StreamStatus::Deleting => Err(self.not_found(&stream.meta().name)),
            StreamStatus::Creating | StreamStatus::Updating | StreamStatus::Active => Ok(stream),
        }
    }

    /// The stream, if it may be changed now: ACTIVE only.
    fn stream_for_change(&self, target: &StreamTarget) -> Result<Arc<Stream>, ApiError> {
        let stream = self.stream(target)?;
        match stream.status(self.clock.now_ms()) {
            StreamStatus::Active => Ok(stream),
            other => Err(ApiError::new(
                ErrorKind::ResourceInUse,
                format!(
                    "Stream {} under account {} not ACTIVE, instead in state {}",
                    stream.meta().name,
                    self.config.account_id,
                    other.as_str()
                ),
            )),
        }
    }

    /// The stream, ACTIVE and PROVISIONED: shard counts of on-demand streams are the
    /// server's to change (`ValidationException`, as AWS answers).
    fn stream_for_provisioned_change(&self, target: &StreamTarget) -> Result<Arc<Stream>, ApiError> {
        let stream = self.stream_for_change(target)?;
        if stream.meta().settings.mode == sluice_engine::settings::StreamMode::OnDemand {
            return Err(ApiError::new(
                ErrorKind::Validation,
                format!(
                    "Request is invalid. Stream {} under account {} is in On-Demand mode.",
                    stream.meta().name,
                    self.config.account_id
                ),
            ));
        }
        Ok(stream)
    }

    /// GetRecords on a request already decoded, returning at most `max_bytes` of data and
    /// partition keys (at least one record when there is one); returns the response body,
    /// already encoded for `codec` (JSON, or CBOR written straight from the frames), and the
    /// bytes of data and partition keys it holds.
    pub fn get_records_within(
        &self,
        body: serde_json::Value,
        max_bytes: usize,
        codec: crate::api::Codec,
    ) -> Result<(Vec<u8>, usize), ApiError> {
        if let Some(answer) = self.cluster.get().and_then(|_| self.forward_read(Action::GetRecords, &body)) {
            let json = answer?;
            let bytes = json.len();
            let body = match codec {
                crate::api::Codec::Json => json,
                crate::api::Codec::Cbor => {
                    crate::api::encode_response(codec, crate::api::model::kinesis(), "GetRecords", json)?
                }
            };
            return Ok((body, bytes));
        }
        get_records::run_within(self, parse(body)?, max_bytes, codec)
    }

    /// `PutRecords` on a JSON body read straight into its shape ([`put_records::Fast`]),
    /// after the resource-policy check for `caller` (an IAM user ARN; `None` without
    /// signatures). `None` when the body does not meet botocore's model in every member: the
    /// caller then takes the general path ([`crate::api::decode_request`], then
    /// [`Kinesis::handle_value`]), which answers the same for any body this one takes, and
    /// AWS's error for the others.
    pub fn put_records_json(&self, body: &[u8], caller: Option<&str>) -> Option<Result<Vec<u8>, ApiError>> {
        let fast = put_records::Fast::parse(body)?;
        let target = fast.target();
        let policy = || match caller {
            None => Ok(()),
            Some(caller) => {
                let mut named = serde_json::Map::new();
                if let Some(name) = &target.stream_name {
                    named.insert("StreamName".into(), name.as_str().into());
                }
                if let Some(arn) = &target.stream_arn {
                    named.insert("StreamARN".into(), arn.as_str().into());
                }
                self.check_policy("PutRecords", &serde_json::Value::Object(named), caller)
            }
        };
        Some(policy().and_then(|()| fast.run(self, &target)))
    }

    /// Runs `action` on a JSON `body`; returns the JSON response body.
    pub fn handle(&self, action: Action, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        self.handle_value(action, parse_body(body)?)
    }

    /// Runs `action` on a request already decoded (and checked against the model by the
    /// server); returns the JSON response body.
    pub fn handle_value(&self, action: Action, body: serde_json::Value) -> Result<Vec<u8>, ApiError> {
        if let Some(link) = self.cluster.get().filter(|_| catalog::changes_stream(action)) {
            // A change of a cluster's stream is written to the catalog before it is
            // answered, and no catalog pass of this node runs in between (it would take the
            // catalog's older settings back).
            let _catalog = link.catalog_lock.blocking_lock();
            let named = catalog::stream_named_by(&body);
            let before = named.as_deref().and_then(|name| Some((name, self.stream_state(link, name)?)));
            let answer = self.run(action, body)?;
            if let Some((name, before)) = before {
                if let Err(e) = self.publish_stream(link, name, &before) {
                    self.restore_stream(name, &before);
                    return Err(e);
                }
            }
            return Ok(answer);
        }
        self.run(action, body)
    }

    fn run(&self, action: Action, body: serde_json::Value) -> Result<Vec<u8>, ApiError> {
        match action {
            Action::CreateStream => create_stream::run(self, parse(body)?),
            Action::DeleteStream => delete_stream::run(self, parse(body)?),
            Action::DescribeStream => describe_stream::run(self, parse(body)?),
            Action::DescribeStreamSummary => describe_stream::run_summary(self, parse(body)?),
            Action::ListStreams => list_streams::run(self, parse(body)?),
            Action::ListShards => list_shards::run(self, parse(body)?),
            Action::PutRecord => put_record::run(self, parse(body)?),
            Action::PutRecords => put_records::run(self, parse(body)?),
            Action::GetShardIterator | Action::GetRecords if self.cluster.get().is_some() => {
                match self.forward_read(action, &body) {
                    Some(answer) => answer,
                    None if action == Action::GetRecords => get_records::run(self, parse(body)?),
                    None => get_shard_iterator::run(self, parse(body)?),
                }
            }
            Action::GetShardIterator => get_shard_iterator::run(self, parse(body)?),
            Action::GetRecords => get_records::run(self, parse(body)?),
            Action::IncreaseStreamRetentionPeriod => retention::run_increase(self, parse(body)?),
            Action::DecreaseStreamRetentionPeriod => retention::run_decrease(self, parse(body)?),
            Action::AddTagsToStream => tags::run_add(self, parse(body)?),
            Action::RemoveTagsFromStream => tags::run_remove(self, parse(body)?),
            Action::ListTagsForStream => tags::run_list(self, parse(body)?),
            Action::DescribeLimits => describe_limits::run(self, parse(body)?),
            Action::SplitShard => reshard::run_split(self, parse(body)?),
            Action::MergeShards => reshard::run_merge(self, parse(body)?),
            Action::UpdateShardCount => reshard::run_update(self, parse(body)?),
            Action::RegisterStreamConsumer => consumers::run_register(self, parse(body)?),
            Action::DescribeStreamConsumer => consumers::run_describe(self, parse(body)?),
            Action::ListStreamConsumers => consumers::run_list(self, parse(body)?),
            Action::DeregisterStreamConsumer => consumers::run_deregister(self, parse(body)?),
            Action::StartStreamEncryption => stream_settings::run_start_encryption(self, parse(body)?),
            Action::StopStreamEncryption => stream_settings::run_stop_encryption(self, parse(body)?),
            Action::EnableEnhancedMonitoring => stream_settings::run_enable_monitoring(self, parse(body)?),
            Action::DisableEnhancedMonitoring => stream_settings::run_disable_monitoring(self, parse(body)?),
            Action::UpdateMaxRecordSize => stream_settings::run_max_record_size(self, parse(body)?),
            Action::UpdateStreamMode => stream_settings::run_mode(self, parse(body)?),
            Action::UpdateStreamWarmThroughput => stream_settings::run_warm_throughput(self, parse(body)?),
            Action::UpdateStreamRecordDistributionStrategy => stream_settings::run_distribution(self, parse(body)?),
            Action::TagResource => resources::run_tag(self, parse(body)?),
            Action::UntagResource => resources::run_untag(self, parse(body)?),
            Action::ListTagsForResource => resources::run_list_tags(self, parse(body)?),
            Action::PutResourcePolicy => resources::run_put_policy(self, parse(body)?),
            Action::GetResourcePolicy => resources::run_get_policy(self, parse(body)?),
            Action::DeleteResourcePolicy => resources::run_delete_policy(self, parse(body)?),
            Action::DescribeAccountSettings => account::run_describe(self, parse(body)?),
            Action::UpdateAccountSettings => account::run_update(self, parse(body)?),
            Action::CreateQueue => queues::run_create(self, parse(body)?),
            Action::DescribeQueue => queues::run_describe(self, parse(body)?),
            Action::ListQueues => queues::run_list(self, parse(body)?),
            Action::UpdateQueue => queues::run_update(self, parse(body)?),
            Action::DeleteQueue => queues::run_delete(self, parse(body)?),
            Action::ReceiveQueueRecords => queues::run_receive(self, &parse(body)?, Area::Main),
            Action::AcknowledgeQueueRecords => queues::run_acknowledge(self, parse(body)?, Area::Main),
            Action::UpdateQueueRecordsVisibility => queues::run_visibility(self, parse(body)?, Area::Main),
            Action::ReceiveDeadLetterQueueRecords => queues::run_receive(self, &parse(body)?, Area::DeadLetter),
            Action::AcknowledgeDeadLetterQueueRecords => queues::run_acknowledge(self, parse(body)?, Area::DeadLetter),
            Action::UpdateDeadLetterQueueRecordsVisibility => {
                queues::run_visibility(self, parse(body)?, Area::DeadLetter)
            }
            Action::RestoreDeadLetterQueueRecords => queues::run_restore(self, parse(body)?),
            Action::CreateChannel => channels::run_create(self, parse(body)?),
            Action::DescribeChannel => channels::run_describe(self, parse(body)?),
            Action::ListChannels => channels::run_list(self, parse(body)?),
            Action::UpdateChannel => channels::run_update(self, parse(body)?),
            Action::DeleteChannel => channels::run_delete(self, parse(body)?),
            // A subscription answers with an event stream, which the server drives.
            Action::SubscribeToShard => Err(ApiError::new(
                ErrorKind::InternalFailure,
                "SubscribeToShard is served as an event stream by the server.",
            )),
        }
    }

    /// The ARN of stream `name`.
    pub fn stream_arn(&self, name: &str) -> String {
        format!("arn:aws:kinesis:{}:{}:stream/{name}", self.config.region, self.config.account_id)
    }

    /// The stream a request names by `StreamName` or `StreamARN`.
    fn stream(&self, target: &StreamTarget) -> Result<Arc<Stream>, ApiError> {
        let name = match (&target.stream_name, &target.stream_arn) {
            (Some(name), _) => {
                validate_stream_name(name)?;
                name.clone()
            }
            (None, Some(arn)) => {
                let prefix = format!("arn:aws:kinesis:{}:{}:stream/", self.config.region, self.config.account_id);
                match arn.strip_prefix(&prefix) {
                    Some(name) if !direct_put::behind_delivery_stream(name) => name.to_owned(),
                    _ => return Err(ApiError::new(ErrorKind::ResourceNotFound, format!("Stream {arn} not found."))),
                }
            }
            (None, None) => {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "Either StreamName or StreamARN should be provided.",
                ))
            }
        };
        if let Some(s) = self.streams.get(&name) {
            return Ok(s);
        }
        let now = self.clock.now_ms();
        let mut deleting = self.deleting.lock().unwrap_or_else(PoisonError::into_inner);
        deleting.retain(|_, (until, _)| now < *until);
        deleting.get(&name).map(|(_, s)| s.clone()).ok_or_else(|| self.not_found(&name))
    }

    /// The record size limit (data plus partition key, bytes) of the stream a request names:
    /// its `MaxRecordSizeInKiB`, or the default 1 MiB when there is no such stream (the
    /// request then fails on the stream after its records are checked, as on AWS).
    fn max_record_bytes(&self, target: &StreamTarget) -> usize {
        self.stream(target).map_or(sluice_engine::limits::RECORD_BYTES_DEFAULT, |s| s.meta().settings.max_record_bytes)
    }

    /// Shard `shard_id` (`shardId-000000000003`) of `stream`, with its index, or AWS's
    /// `ResourceNotFoundException` naming it.
    fn shard_of(&self, stream: &Stream, shard_id: &str) -> Result<(u32, Arc<sluice_engine::stream::Shard>), ApiError> {
        let missing = || {
            ApiError::new(
                ErrorKind::ResourceNotFound,
                format!(
                    "Shard {shard_id} in stream {} under account {} does not exist",
                    stream.meta().name,
                    self.config.account_id
                ),
            )
        };
        let index = sluice_engine::stream::parse_shard_id(shard_id).ok_or_else(missing)?;
        let shard = stream.shard(index).ok_or_else(missing)?;
        Ok((index, shard))
    }

    /// The answer to a request with `DryRun: true` that passed every check the request
    /// itself would meet (model, resource policy, stream, shard, iterator, record sizes):
    /// `DryRunOperationException`, nothing read or written and no shard quota used — or
    /// `ThrottlingException` past the stream's dry-run rate ([`DRY_RUNS_PER_SECOND`],
    /// [`DRY_RUN_BURST`]; only when the stream is throttled at all).
    fn dry_run(&self, stream: &Stream) -> ApiError {
        if stream.is_throttled() {
            let now = self.clock.now_ms();
            let mut buckets = self.dry_runs.lock().unwrap_or_else(PoisonError::into_inner);
            // Full buckets hold nothing a new one would not: dropped once there are many (streams
            // deleted and created again would otherwise leave one each).
            if buckets.len() >= 1024 {
                let full_after_ms = (DRY_RUN_BURST / DRY_RUNS_PER_SECOND * 1000.0) as u64;
                buckets.retain(|_, (_, at)| now.saturating_sub(*at) < full_after_ms);
            }
            let (tokens, at) = buckets.entry(stream.incarnation()).or_insert((DRY_RUN_BURST, now));
            *tokens = (*tokens + now.saturating_sub(*at) as f64 / 1000.0 * DRY_RUNS_PER_SECOND).min(DRY_RUN_BURST);
            *at = now;
            if *tokens < 1.0 {
                return ApiError::new(ErrorKind::Throttling, "Rate exceeded");
            }
            *tokens -= 1.0;
        }
        ApiError::new(ErrorKind::DryRunOperation, DRY_RUN_MESSAGE)
    }

    /// Kinesis' throttling error for shard `index` of stream `name`.
    fn rate_exceeded(&self, name: &str, index: u32) -> ApiError {
        ApiError::new(
            ErrorKind::ProvisionedThroughputExceeded,
            format!(
                "Rate exceeded for shard {} in stream {name} under account {}.",
                sluice_engine::stream::shard_id(index),
                self.config.account_id
            ),
        )
    }

    /// `stream` if it is the incarnation a request's `StreamCreationTimestamp` (epoch seconds)
    /// names, or when it names none; `ResourceNotFoundException` otherwise (the stream of
    /// that name and time was deleted). Source: AWS Kinesis API reference, `ListShards`.
    fn of_incarnation(&self, stream: Arc<Stream>, created: Option<f64>) -> Result<Arc<Stream>, ApiError> {
        let meta = stream.meta();
        if created.is_some_and(|t| !same_creation(t, meta.created_ms)) {
            return Err(self.not_found(&meta.name));
        }
        drop(meta);
        Ok(stream)
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Stream {name} under account {} not found.", self.config.account_id),
        )
    }
}

/// `StreamName` or `StreamARN`, as every stream action takes.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamTarget {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

/// Parses a JSON 1.1 request body (empty means `{}`); a body that is not JSON is AWS's
/// `SerializationException`.
pub fn parse_body(body: &[u8]) -> Result<serde_json::Value, ApiError> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| serialization(&e))
}

/// Takes a decoded request into an action's request shape; a body that does not fit is AWS's
/// `SerializationException`. Shared by the Kinesis and Firehose APIs.
pub fn parse<T: DeserializeOwned>(body: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|e| serialization(&e))
}

fn serialization(e: &serde_json::Error) -> ApiError {
    // serde names our Rust types and byte positions; clients need neither.
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message);
    ApiError::new(ErrorKind::Serialization, message.replace("expected struct Request", "expected a JSON object"))
}

/// Serializes an action's response shape as the JSON body.
pub fn respond<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::with_capacity(4096);
    serde_json::to_writer(&mut out, value).map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
    Ok(out)
}

/// The answer of an action without an output shape (CreateStream, DeleteStream, tags,
/// retention, SplitShard, MergeShards): an empty body, as AWS sends (botocore's model gives
/// these operations no `output`).
fn no_output() -> Result<Vec<u8>, ApiError> {
    Ok(Vec::new())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::InternalFailure, e.to_string())
}

/// A page size from a request: `default` when absent, else 1 to `max`, or AWS's validation
/// error naming `member`.
fn page_limit(value: Option<i64>, member: &str, max: i64, default: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::validation(n, member, &format!("have value between 1 and {max}"))),
    }
}

/// The `NextToken` of a page of named things (consumers, queues) that ends at `last`.
fn name_token(last: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

/// The name after which a page starts, from its `NextToken` (`None` for the first page);
/// `InvalidArgumentException` for a token Sluice did not make.
fn after_token(token: Option<&str>) -> Result<Option<String>, ApiError> {
    use base64::Engine as _;
    let Some(t) = token else { return Ok(None) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .map(Some)
        .ok_or_else(|| ApiError::new(ErrorKind::InvalidArgument, "Invalid NextToken."))
}

/// Stream names: 1 to 128 characters of `[a-zA-Z0-9_.-]`. Source: AWS Kinesis API reference.
fn validate_stream_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::validation(name, "streamName", "have length greater than or equal to 1"));
    }
    if name.chars().count() > 128 {
        return Err(ApiError::validation(name, "streamName", "have length less than or equal to 128"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(ApiError::validation(name, "streamName", "satisfy regular expression pattern: [a-zA-Z0-9_.-]+"));
    }
    Ok(())
}

/// Epoch seconds with millisecond fraction, as the JSON protocol writes timestamps.
fn epoch_seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Whether a request's `StreamCreationTimestamp` (epoch seconds, as SDKs send it back from a
/// description) names a stream created at `created_ms`: the same second, as descriptions give
/// it to the millisecond and some clients keep whole seconds only.
pub(crate) fn same_creation(timestamp_s: f64, created_ms: u64) -> bool {
    timestamp_s.is_finite() && timestamp_s >= 0.0 && timestamp_s as u64 == created_ms / 1000
}
