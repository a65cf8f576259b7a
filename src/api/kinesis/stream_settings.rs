//! Actions that change one setting of a stream: `StartStreamEncryption`,
//! `StopStreamEncryption`, `EnableEnhancedMonitoring`, `DisableEnhancedMonitoring`,
//! `UpdateMaxRecordSize`, `UpdateStreamMode`, `UpdateStreamWarmThroughput` and
//! `UpdateStreamRecordDistributionStrategy`. Each needs an ACTIVE stream and, where AWS
//! takes time to apply the change, shows the stream UPDATING for the server's transition time.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{no_output, respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::settings::{RecordDistribution, StreamMode};
use sluice_engine::stream::{StreamMeta, StreamStatus};

/// The shard-level metrics of enhanced monitoring; `ALL` names every one. Source: AWS
/// Kinesis API reference, `EnableEnhancedMonitoring`.
pub const SHARD_LEVEL_METRICS: [&str; 7] = [
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionRequest {
    #[serde(flatten)]
    target: StreamTarget,
    encryption_type: String,
    key_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MonitoringRequest {
    #[serde(flatten)]
    target: StreamTarget,
    shard_level_metrics: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MaxRecordSizeRequest {
    #[serde(flatten)]
    target: StreamTarget,
    #[serde(rename = "MaxRecordSizeInKiB")]
    max_record_size_in_kib: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModeRequest {
    #[serde(flatten)]
    target: StreamTarget,
    stream_mode_details: ModeDetails,
    warm_throughput_mi_bps: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModeDetails {
    pub stream_mode: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WarmThroughputRequest {
    #[serde(flatten)]
    target: StreamTarget,
    warm_throughput_mi_bps: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DistributionRequest {
    #[serde(flatten)]
    target: StreamTarget,
    record_distribution_strategy: String,
}

/// Warm throughput an on-demand stream may ask for, MiB/s: up to 10,240. Source: AWS Kinesis
/// developer guide, on-demand warm throughput.
pub const WARM_THROUGHPUT_MIBPS_MAX: i64 = 10_240;

/// `InvalidArgumentException` unless the stream of `meta` is ON_DEMAND; `what` starts the
/// message (`Warm throughput can only be set`).
fn on_demand_only(k: &Kinesis, meta: &StreamMeta, what: &str) -> Result<(), ApiError> {
    if meta.settings.mode == StreamMode::OnDemand {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::InvalidArgument,
        format!(
            "{what} for streams in ON_DEMAND mode. Stream {} under account {} is in PROVISIONED mode.",
            meta.name, k.config.account_id
        ),
    ))
}

fn encryption(k: &Kinesis, r: EncryptionRequest, start: bool) -> Result<Vec<u8>, ApiError> {
    if r.encryption_type != "KMS" {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("Encryption type {} is not supported. Only KMS is.", r.encryption_type),
        ));
    }
    let stream = k.stream_for_change(&r.target)?;
    stream.update_meta(|meta| {
        if !start && meta.settings.kms_key_id.is_none() {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!("Stream {} under account {} is not encrypted.", meta.name, k.config.account_id),
            ));
        }
        meta.settings.kms_key_id = start.then(|| r.key_id.clone());
        Ok(())
    })?;
    stream.begin(StreamStatus::Updating, k.clock.now_ms() + k.config.stream_transition_ms);
    no_output()
}

/// `StartStreamEncryption`: records the KMS key; the stream reports `EncryptionType: KMS`.
/// Sluice does not encrypt segment files (the README says so); the key id is shown back.
pub fn run_start_encryption(k: &Kinesis, r: EncryptionRequest) -> Result<Vec<u8>, ApiError> {
    encryption(k, r, true)
}

/// `StopStreamEncryption`.
pub fn run_stop_encryption(k: &Kinesis, r: EncryptionRequest) -> Result<Vec<u8>, ApiError> {
    encryption(k, r, false)
}

fn monitoring(k: &Kinesis, r: MonitoringRequest, enable: bool) -> Result<Vec<u8>, ApiError> {
    let mut named = BTreeSet::new();
    for m in &r.shard_level_metrics {
        match m.as_str() {
            "ALL" => named.extend(SHARD_LEVEL_METRICS.iter().map(|s| s.to_string())),
            m if SHARD_LEVEL_METRICS.contains(&m) => {
                named.insert(m.to_owned());
            }
            // The model's enum check refuses other names before the action runs.
            other => return Err(ApiError::new(ErrorKind::InvalidArgument, format!("Unknown metric {other}."))),
        }
    }
    let stream = k.stream_for_change(&r.target)?;
    let (current, desired) = stream.update_meta(|meta| {
        let current = meta.settings.shard_level_metrics.clone();
        if enable {
            meta.settings.shard_level_metrics.extend(named.iter().cloned());
        } else {
            meta.settings.shard_level_metrics.retain(|m| !named.contains(m));
        }
        Ok::<_, ApiError>((current, meta.settings.shard_level_metrics.clone()))
    })?;
    stream.begin(StreamStatus::Updating, k.clock.now_ms() + k.config.stream_transition_ms);
    let name = stream.meta().name.clone();
    respond(&serde_json::json!({
        "StreamName": name,
        "CurrentShardLevelMetrics": current,
        "DesiredShardLevelMetrics": desired,
        "StreamARN": k.stream_arn(&name),
    }))
}

/// `EnableEnhancedMonitoring`: the named shard-level metrics (or `ALL`) appear per shard
/// in `/metrics` from now on.
pub fn run_enable_monitoring(k: &Kinesis, r: MonitoringRequest) -> Result<Vec<u8>, ApiError> {
    monitoring(k, r, true)
}

/// `DisableEnhancedMonitoring`.
pub fn run_disable_monitoring(k: &Kinesis, r: MonitoringRequest) -> Result<Vec<u8>, ApiError> {
    monitoring(k, r, false)
}

/// `UpdateMaxRecordSize`: records up to `MaxRecordSizeInKiB` (1,024 to 10,240, the model's
/// range) from now on. Larger records get segments of their own size in the shard logs.
pub fn run_max_record_size(k: &Kinesis, r: MaxRecordSizeRequest) -> Result<Vec<u8>, ApiError> {
    let kib = usize::try_from(r.max_record_size_in_kib).unwrap_or(0);
    let stream = k.stream_for_change(&r.target)?;
    stream.update_meta(|meta| {
        meta.settings.max_record_bytes = kib << 10;
        Ok::<_, ApiError>(())
    })?;
    no_output()
}

/// `UpdateStreamMode`: PROVISIONED or ON_DEMAND (capacity managed by the server).
pub fn run_mode(k: &Kinesis, r: ModeRequest) -> Result<Vec<u8>, ApiError> {
    let mode = parse_mode(&r.stream_mode_details.stream_mode)?;
    if r.warm_throughput_mi_bps.is_some() && mode != StreamMode::OnDemand {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            "WarmThroughputMiBps can only be set for streams in ON_DEMAND mode.",
        ));
    }
    let warm = warm_mibps(r.warm_throughput_mi_bps)?;
    let stream = k.stream_for_change(&r.target)?;
    stream.update_meta(|meta| {
        if meta.settings.mode == mode {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "Stream {} under account {} is already in {} mode.",
                    meta.name,
                    k.config.account_id,
                    mode_name(mode)
                ),
            ));
        }
        meta.settings.mode = mode;
        if let Some(w) = warm {
            meta.settings.warm_throughput_mibps = w;
        }
        Ok(())
    })?;
    stream.begin(StreamStatus::Updating, k.clock.now_ms() + k.config.stream_transition_ms);
    no_output()
}

/// `UpdateStreamWarmThroughput`: warm capacity of an on-demand stream, MiB/s.
pub fn run_warm_throughput(k: &Kinesis, r: WarmThroughputRequest) -> Result<Vec<u8>, ApiError> {
    let target = warm_mibps(Some(r.warm_throughput_mi_bps))?.unwrap_or(0);
    let stream = k.stream_for_change(&r.target)?;
    let name = stream.update_meta(|meta| {
        on_demand_only(k, meta, "Warm throughput can only be set")?;
        meta.settings.warm_throughput_mibps = target;
        Ok::<_, ApiError>(meta.name.clone())
    })?;
    stream.begin(StreamStatus::Updating, k.clock.now_ms() + k.config.stream_transition_ms);
    respond(&serde_json::json!({
        "StreamARN": k.stream_arn(&name),
        "StreamName": name,
        "WarmThroughput": { "TargetMiBps": target, "CurrentMiBps": target },
    }))
}

/// `UpdateStreamRecordDistributionStrategy`: USER_PARTITION_KEY routes by the MD5 of the
/// partition key; AUTO spreads records evenly over the open shards, whatever their keys.
pub fn run_distribution(k: &Kinesis, r: DistributionRequest) -> Result<Vec<u8>, ApiError> {
    let strategy = match r.record_distribution_strategy.as_str() {
        "AUTO" => RecordDistribution::Auto,
        _ => RecordDistribution::UserPartitionKey,
    };
    let stream = k.stream_for_change(&r.target)?;
    stream.update_meta(|meta| {
        if strategy == RecordDistribution::Auto {
            on_demand_only(k, meta, "Record distribution strategy AUTO is only supported")?;
        }
        meta.settings.distribution = strategy;
        Ok::<_, ApiError>(())
    })?;
    no_output()
}

fn warm_mibps(value: Option<i64>) -> Result<Option<u32>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if (0..=WARM_THROUGHPUT_MIBPS_MAX).contains(&v) => Ok(Some(v as u32)),
        Some(v) => Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("WarmThroughputMiBps {v} is out of range. It must be between 0 and {WARM_THROUGHPUT_MIBPS_MAX}."),
        )),
    }
}

/// The mode a `StreamModeDetails.StreamMode` names (the model's checks allow only these two).
pub fn parse_mode(name: &str) -> Result<StreamMode, ApiError> {
    match name {
        "PROVISIONED" => Ok(StreamMode::Provisioned),
        "ON_DEMAND" => Ok(StreamMode::OnDemand),
        other => Err(ApiError::validation(
            other,
            "streamModeDetails.streamMode",
            "satisfy enum value set: [PROVISIONED, ON_DEMAND]",
        )),
    }
}

/// The API's name of a mode.
pub fn mode_name(mode: StreamMode) -> &'static str {
    match mode {
        StreamMode::Provisioned => "PROVISIONED",
        StreamMode::OnDemand => "ON_DEMAND",
    }
}

/// The API's name of a distribution strategy.
pub fn distribution_name(d: RecordDistribution) -> &'static str {
    match d {
        RecordDistribution::Auto => "AUTO",
        RecordDistribution::UserPartitionKey => "USER_PARTITION_KEY",
    }
}
