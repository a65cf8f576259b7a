//! `SplitShard`, `MergeShards` and `UpdateShardCount`: resharding with lineage. Closed
//! parents keep their records; readers reach the children through `ChildShards`.

use serde::Deserialize;

use super::{internal, no_output, respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::hash_key::parse_explicit_hash_key;
use sluice_engine::stream::{parse_shard_id, shard_id, ReshardError, ReshardOp, Stream, StreamStatus};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SplitRequest {
    #[serde(flatten)]
    target: StreamTarget,
    shard_to_split: String,
    new_starting_hash_key: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MergeRequest {
    #[serde(flatten)]
    target: StreamTarget,
    shard_to_merge: String,
    adjacent_shard_to_merge: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateRequest {
    #[serde(flatten)]
    target: StreamTarget,
    target_shard_count: i64,
    scaling_type: String,
}

fn shard_arg(k: &Kinesis, stream: &Stream, id: &str) -> Result<u32, ApiError> {
    parse_shard_id(id).filter(|i| (*i as usize) < stream.meta().shards.len()).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!(
                "Could not find shard {id} in stream {} under account {}.",
                stream.meta().name,
                k.config.account_id
            ),
        )
    })
}

pub(super) fn reshard_error(e: ReshardError) -> ApiError {
    match e {
        ReshardError::NoSuchShard(i) => {
            ApiError::new(ErrorKind::ResourceNotFound, format!("Could not find shard {}.", shard_id(i)))
        }
        ReshardError::Closed(i) => ApiError::new(
            ErrorKind::InvalidArgument,
            format!("Shard {} is not open: it was split or merged already.", shard_id(i)),
        ),
        ReshardError::SplitPointOutside => ApiError::new(
            ErrorKind::InvalidArgument,
            "NewStartingHashKey must be greater than the shard's StartingHashKey and at most its EndingHashKey.",
        ),
        ReshardError::NotAdjacent(a, b) => ApiError::new(
            ErrorKind::InvalidArgument,
            format!("Shards {} and {} are not adjacent: their hash key ranges must touch.", shard_id(a), shard_id(b)),
        ),
        other => internal(other),
    }
}

/// Shows the stream as UPDATING for a while after a reshard, as AWS does.
fn updating(k: &Kinesis, stream: &Stream) {
    stream.begin(StreamStatus::Updating, k.clock.now_ms() + k.config.stream_transition_ms);
}

fn check_limit(k: &Kinesis, more_open: i64) -> Result<(), ApiError> {
    let open = i64::from(k.streams.open_shards());
    let limit = i64::from(k.streams.shard_limit());
    if open + more_open > limit {
        return Err(ApiError::new(
            ErrorKind::LimitExceeded,
            format!(
                "This request would exceed the shard limit for the account {} in {}. Current limit of shards is {limit}. Number of shards that would have resulted from this request is {}.",
                k.config.account_id,
                k.config.region,
                open + more_open
            ),
        ));
    }
    Ok(())
}

pub fn run_split(k: &Kinesis, r: SplitRequest) -> Result<Vec<u8>, ApiError> {
    let key = parse_explicit_hash_key(&r.new_starting_hash_key).ok_or_else(|| {
        ApiError::validation(
            &r.new_starting_hash_key,
            "newStartingHashKey",
            "satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
        )
    })?;
    let stream = k.stream_for_provisioned_change(&r.target)?;
    let index = shard_arg(k, &stream, &r.shard_to_split)?;
    check_limit(k, 1)?;
    reshard(k, &stream, vec![ReshardOp::split(index, key)])?;
    no_output()
}

pub fn run_merge(k: &Kinesis, r: MergeRequest) -> Result<Vec<u8>, ApiError> {
    let stream = k.stream_for_provisioned_change(&r.target)?;
    let a = shard_arg(k, &stream, &r.shard_to_merge)?;
    let b = shard_arg(k, &stream, &r.adjacent_shard_to_merge)?;
    reshard(k, &stream, vec![ReshardOp::Merge { shard: a, adjacent: b }])?;
    no_output()
}

/// Applies the resharding `ops` to `stream`: on this node, or for a cluster's stream
/// through the cluster's catalog (every copy applies them once the closed shards' ends are
/// fixed). The stream shows UPDATING for a while, as on AWS.
fn reshard(k: &Kinesis, stream: &Stream, ops: Vec<ReshardOp>) -> Result<(), ApiError> {
    let link = k.cluster.get().filter(|l| stream.meta().cluster.as_deref() == Some(l.cluster.as_str()));
    match link {
        Some(link) => k.reshard_in_cluster(link, stream, ops)?,
        None => {
            let now = k.clock.now_ms();
            for op in &ops {
                stream.apply(op, now).map_err(reshard_error)?;
            }
        }
    }
    updating(k, stream);
    Ok(())
}

/// Reaches `target` open shards splitting the key space evenly
/// ([`sluice_engine::stream::StreamMeta::uniform_scaling`]).
pub fn run_update(k: &Kinesis, r: UpdateRequest) -> Result<Vec<u8>, ApiError> {
    if r.scaling_type != "UNIFORM_SCALING" {
        return Err(ApiError::validation(&r.scaling_type, "scalingType", "satisfy enum value set: [UNIFORM_SCALING]"));
    }
    if !(1..=10_000).contains(&r.target_shard_count) {
        return Err(ApiError::validation(r.target_shard_count, "targetShardCount", "have value between 1 and 10000"));
    }
    let stream = k.stream_for_provisioned_change(&r.target)?;
    let target = r.target_shard_count;
    let current = i64::from(stream.meta().open_shards());
    if target > current * 2 || target * 2 < current {
        return Err(ApiError::new(
            ErrorKind::LimitExceeded,
            format!("UpdateShardCount can scale to between half and double the current {current} open shards; {target} was requested."),
        ));
    }
    check_limit(k, target - current)?;
    let ops = stream.meta().uniform_scaling(target as u32);
    reshard(k, &stream, ops)?;
    let name = stream.meta().name.clone();
    respond(&serde_json::json!({
        "StreamName": name,
        "StreamARN": k.stream_arn(&name),
        "CurrentShardCount": current,
        "TargetShardCount": target,
    }))
}
