//! A stream's settings beyond its shards: capacity mode, record size limit, how records are
//! spread, encryption, shard-level metrics, resource policy, and its registered consumers.
//! Kept in `stream.json` with the rest of the metadata; every field has a default, so
//! metadata written by earlier versions reads as a provisioned stream with none of them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::limits::RECORD_BYTES_DEFAULT;

/// How a stream's capacity is managed. Source: AWS Kinesis API reference, `StreamModeDetails`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StreamMode {
    /// The user sets the shard count.
    #[default]
    Provisioned,
    /// The server splits hot shards and merges cold ones.
    OnDemand,
}

/// How records are given to shards. Source: AWS Kinesis API reference,
/// `UpdateStreamRecordDistributionStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RecordDistribution {
    /// By the MD5 of the partition key (or the explicit hash key).
    #[default]
    UserPartitionKey,
    /// Evenly over the open shards, whatever the partition key.
    Auto,
}

/// A consumer registered for enhanced fan-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMeta {
    /// Consumer name, unique in its stream.
    pub name: String,
    /// Registration time, ms since the Unix epoch (its ARN ends with it in seconds).
    pub created_ms: u64,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Resource policy document (JSON text), if one was put.
    #[serde(default)]
    pub policy: Option<String>,
}

/// Settings of a stream; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamSettings {
    /// Capacity mode.
    pub mode: StreamMode,
    /// Largest record (data plus partition key) the stream takes, bytes: 1 MiB by default,
    /// 1 to 10 MiB (`MaxRecordSizeInKiB` 1,024 to 10,240). Source: AWS Kinesis quotas.
    pub max_record_bytes: usize,
    /// How records are spread over shards.
    pub distribution: RecordDistribution,
    /// The KMS key id of server-side encryption, when on.
    pub kms_key_id: Option<String>,
    /// Shard-level metrics turned on (`IncomingBytes`, ...; never `ALL`, which is expanded).
    pub shard_level_metrics: BTreeSet<String>,
    /// Resource policy document (JSON text), if one was put.
    pub policy: Option<String>,
    /// Warm throughput of an on-demand stream, MiB/s (0 when none).
    pub warm_throughput_mibps: u32,
    /// Consumers registered for enhanced fan-out, in registration order.
    pub consumers: Vec<ConsumerMeta>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            mode: StreamMode::Provisioned,
            max_record_bytes: RECORD_BYTES_DEFAULT,
            distribution: RecordDistribution::UserPartitionKey,
            kms_key_id: None,
            shard_level_metrics: BTreeSet::new(),
            policy: None,
            warm_throughput_mibps: 0,
            consumers: Vec::new(),
        }
    }
}
