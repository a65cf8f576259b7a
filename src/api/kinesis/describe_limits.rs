//! `DescribeLimits`: the shard limit and how much of it is used.

use serde::Deserialize;

use super::{respond, ApiError, Kinesis};
use sluice_engine::settings::StreamMode;

/// On-demand streams an account may have: 50. Source: AWS Kinesis Data Streams quotas.
const ON_DEMAND_STREAM_COUNT_LIMIT: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct Request {}

pub fn run(k: &Kinesis, _: Request) -> Result<Vec<u8>, ApiError> {
    respond(&serde_json::json!({
        "ShardLimit": k.streams.shard_limit(),
        "OpenShardCount": k.streams.open_shards(),
        "OnDemandStreamCount": k.streams.list().iter().filter(|s| s.meta().settings.mode == StreamMode::OnDemand).count(),
        "OnDemandStreamCountLimit": ON_DEMAND_STREAM_COUNT_LIMIT,
    }))
}
