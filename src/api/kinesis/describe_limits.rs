//! `DescribeLimits`: the shard limit and how much of it is used.

use serde::Deserialize;

use super::{respond, ApiError, Kinesis};

/// On-demand streams an account may have: 50. Source: AWS Kinesis Data Streams quotas.
const ON_DEMAND_STREAM_COUNT_LIMIT: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct Request {}

pub fn run(k: &Kinesis, _: Request) -> Result<Vec<u8>, ApiError> {
    respond(&serde_json::json!({
        "ShardLimit": k.streams.shard_limit(),
        "OpenShardCount": k.streams.open_shards(),
        "OnDemandStreamCount": 0,
        "OnDemandStreamCountLimit": ON_DEMAND_STREAM_COUNT_LIMIT,
    }))
}
