//! `CreateStream`: a stream of `ShardCount` shards splitting the hash key space evenly.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::stream_settings::WARM_THROUGHPUT_MIBPS_MAX;
use super::tags::TAGS_PER_STREAM_MAX;
use super::{internal, no_output, validate_stream_name, ApiError, ErrorKind, Kinesis};
use sluice_engine::settings::{RecordDistribution, StreamMode, StreamSettings};
use sluice_engine::stream::StreamStatus;
use sluice_engine::streams::CreateStreamError;

/// Shards an `ON_DEMAND` stream starts with: 4. Source: AWS Kinesis Data Streams, on-demand mode.
const ON_DEMAND_SHARDS: u32 = 4;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    stream_name: String,
    shard_count: Option<i64>,
    stream_mode_details: Option<StreamModeDetails>,
    tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "MaxRecordSizeInKiB")]
    max_record_size_in_kib: Option<i64>,
    record_distribution_strategy: Option<String>,
    warm_throughput_mi_bps: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamModeDetails {
    stream_mode: String,
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    validate_stream_name(&r.stream_name)?;
    let on_demand = match r.stream_mode_details.as_ref().map(|m| m.stream_mode.as_str()) {
        None | Some("PROVISIONED") => false,
        Some("ON_DEMAND") => true,
        Some(other) => {
            return Err(ApiError::validation(
                other,
                "streamModeDetails.streamMode",
                "satisfy enum value set: [PROVISIONED, ON_DEMAND]",
            ))
        }
    };
    let shards = match (r.shard_count, on_demand) {
        (Some(n), _) if n < 1 => {
            return Err(ApiError::validation(n, "shardCount", "have value greater than or equal to 1"))
        }
        (Some(n), _) => u32::try_from(n).unwrap_or(u32::MAX),
        (None, true) => ON_DEMAND_SHARDS,
        (None, false) => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "ShardCount is required for streams in PROVISIONED mode.",
            ))
        }
    };
    let tags = r.tags.unwrap_or_default();
    if tags.len() > TAGS_PER_STREAM_MAX {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("A stream cannot have more than {TAGS_PER_STREAM_MAX} tags."),
        ));
    }
    let mut settings = StreamSettings {
        mode: if on_demand { StreamMode::OnDemand } else { StreamMode::Provisioned },
        ..StreamSettings::default()
    };
    if let Some(kib) = r.max_record_size_in_kib {
        // The model's range (1,024 to 10,240) was checked before the action.
        settings.max_record_bytes = usize::try_from(kib).unwrap_or(0) << 10;
    }
    if r.record_distribution_strategy.as_deref() == Some("AUTO") {
        if !on_demand {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "Record distribution strategy AUTO is only supported for streams in ON_DEMAND mode.",
            ));
        }
        settings.distribution = RecordDistribution::Auto;
    }
    if let Some(w) = r.warm_throughput_mi_bps {
        if !on_demand {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "WarmThroughputMiBps can only be set for streams in ON_DEMAND mode.",
            ));
        }
        settings.warm_throughput_mibps = u32::try_from(w.clamp(0, WARM_THROUGHPUT_MIBPS_MAX)).unwrap_or(0);
    }
    let now = k.clock.now_ms();
    if k.is_deleting(&r.stream_name, now) {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Stream {} under account {} is being deleted.", r.stream_name, k.config.account_id),
        ));
    }
    let made = match k.cluster.get() {
        None => k.streams.create_with(&r.stream_name, shards, now, settings, tags),
        Some(link) => k.create_in_cluster(link, &r.stream_name, shards, now, settings, tags)?,
    };
    match made {
        Ok(stream) => {
            stream.begin(StreamStatus::Creating, now + k.config.stream_transition_ms);
            no_output()
        }
        Err(CreateStreamError::Exists(name)) => Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Stream {name} under account {} already exists.", k.config.account_id),
        )),
        Err(CreateStreamError::ShardLimit { limit, open, requested }) => Err(ApiError::new(
            ErrorKind::LimitExceeded,
            format!(
                "This request would exceed the shard limit for the account {} in {}. Current limit of shards is {limit}. Number of shards that would have resulted from this request is {}.",
                k.config.account_id,
                k.config.region,
                u64::from(open) + u64::from(requested)
            ),
        )),
        Err(e) => Err(internal(e)),
    }
}
