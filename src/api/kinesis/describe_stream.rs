//! `DescribeStream` and `DescribeStreamSummary`.

use serde::{Deserialize, Serialize};

use super::stream_settings::{distribution_name, mode_name};
use super::{epoch_seconds, page_limit, respond, ApiError, Kinesis, StreamTarget};
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::settings::StreamMode;
use sluice_engine::stream::{parse_shard_id, shard_id, ShardMeta, Stream};

/// Most shards one `DescribeStream` returns: 100. Source: AWS Kinesis API reference.
const DESCRIBE_SHARDS_MAX: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    limit: Option<i64>,
    exclusive_start_shard_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryRequest {
    #[serde(flatten)]
    target: StreamTarget,
}

/// A shard as Kinesis describes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardShape {
    shard_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_shard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    adjacent_parent_shard_id: Option<String>,
    hash_key_range: HashKeyRangeShape,
    sequence_number_range: SequenceNumberRangeShape,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct HashKeyRangeShape {
    starting_hash_key: String,
    ending_hash_key: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SequenceNumberRangeShape {
    starting_sequence_number: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ending_sequence_number: Option<String>,
}

/// The shape of one shard of `stream`.
pub fn shard_shape(stream: &Stream, s: &ShardMeta) -> ShardShape {
    let ending = s.closed.then(|| {
        let next = s.end.unwrap_or_else(|| stream.log(s.index).map_or(0, |l| l.bounds().next_sequence_number));
        SequenceNumber { shard_index: s.index, shard_sequence: next.saturating_sub(1) }.to_string()
    });
    ShardShape {
        shard_id: shard_id(s.index),
        parent_shard_id: s.parent.map(shard_id),
        adjacent_parent_shard_id: s.adjacent_parent.map(shard_id),
        hash_key_range: HashKeyRangeShape {
            starting_hash_key: s.hash_key_range.starting.to_string(),
            ending_hash_key: s.hash_key_range.ending.to_string(),
        },
        sequence_number_range: SequenceNumberRangeShape {
            starting_sequence_number: SequenceNumber { shard_index: s.index, shard_sequence: 0 }.to_string(),
            ending_sequence_number: ending,
        },
    }
}

fn common(k: &Kinesis, stream: &Stream) -> serde_json::Map<String, serde_json::Value> {
    let meta = stream.meta();
    let settings = &meta.settings;
    let mut v = serde_json::json!({
        "StreamName": meta.name,
        "StreamARN": k.stream_arn(&meta.name),
        "StreamStatus": stream.status(k.clock.now_ms()).as_str(),
        "StreamModeDetails": { "StreamMode": mode_name(settings.mode) },
        "RetentionPeriodHours": meta.retention_hours,
        "StreamCreationTimestamp": epoch_seconds(meta.created_ms),
        "EnhancedMonitoring": [{ "ShardLevelMetrics": settings.shard_level_metrics }],
        "EncryptionType": if settings.kms_key_id.is_some() { "KMS" } else { "NONE" },
    });
    if let Some(key) = &settings.kms_key_id {
        v["KeyId"] = key.clone().into();
    }
    match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    }
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    let stream = k.stream(&r.target)?;
    let limit = page_limit(r.limit, "limit", 10_000, DESCRIBE_SHARDS_MAX)?.min(DESCRIBE_SHARDS_MAX);
    let after = r.exclusive_start_shard_id.as_deref().and_then(parse_shard_id);
    let shards: Vec<ShardShape> = {
        let meta = stream.meta();
        meta.shards.iter().filter(|s| after.is_none_or(|a| s.index > a)).map(|s| shard_shape(&stream, s)).collect()
    };
    let has_more = shards.len() > limit;
    let mut d = common(k, &stream);
    d.insert("Shards".into(), serde_json::to_value(&shards[..shards.len().min(limit)]).expect("shards serialize"));
    d.insert("HasMoreShards".into(), has_more.into());
    respond(&serde_json::json!({ "StreamDescription": d }))
}

pub fn run_summary(k: &Kinesis, r: SummaryRequest) -> Result<Vec<u8>, ApiError> {
    let stream = k.stream(&r.target)?;
    let open = stream.meta().open_shards();
    let mut d = common(k, &stream);
    d.insert("OpenShardCount".into(), open.into());
    let meta = stream.meta();
    let settings = &meta.settings;
    let queues = k.queues.count_for_stream(&meta.name);
    d.insert("ConsumerCount".into(), (settings.consumers.len() + queues).into());
    d.insert("QueueCount".into(), queues.into());
    d.insert("MaxRecordSizeInKiB".into(), (settings.max_record_bytes >> 10).into());
    d.insert("RecordDistributionStrategy".into(), distribution_name(settings.distribution).into());
    if settings.mode == StreamMode::OnDemand {
        let warm = settings.warm_throughput_mibps;
        d.insert("WarmThroughput".into(), serde_json::json!({ "TargetMiBps": warm, "CurrentMiBps": warm }));
    }
    drop(meta);
    respond(&serde_json::json!({ "StreamDescriptionSummary": d }))
}
