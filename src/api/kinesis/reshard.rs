//! `SplitShard`, `MergeShards` and `UpdateShardCount`: resharding with lineage. Closed
//! parents keep their records; readers reach the children through `ChildShards`.

use serde::Deserialize;

use super::{internal, no_output, respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::hash_key::{parse_explicit_hash_key, HashKeyRange};
use sluice_engine::stream::{parse_shard_id, shard_id, ReshardError, Stream, StreamStatus};

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

fn reshard_error(e: ReshardError) -> ApiError {
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
    stream.split(index, key, k.clock.now_ms()).map_err(reshard_error)?;
    updating(k, &stream);
    no_output()
}

pub fn run_merge(k: &Kinesis, r: MergeRequest) -> Result<Vec<u8>, ApiError> {
    let stream = k.stream_for_provisioned_change(&r.target)?;
    let a = shard_arg(k, &stream, &r.shard_to_merge)?;
    let b = shard_arg(k, &stream, &r.adjacent_shard_to_merge)?;
    stream.merge(a, b, k.clock.now_ms()).map_err(reshard_error)?;
    updating(k, &stream);
    no_output()
}

/// Reaches `target` open shards splitting the key space evenly, through splits at every new
/// boundary inside an open shard and then merges of the pieces within each new range, so
/// every shard's lineage is exact (intermediate shards are closed at once, as on AWS).
pub fn run_update(k: &Kinesis, r: UpdateRequest) -> Result<Vec<u8>, ApiError> {
    if r.scaling_type != "UNIFORM_SCALING" {
        return Err(ApiError::validation(&r.scaling_type, "scalingType", "satisfy enum value set: [UNIFORM_SCALING]"));
    }
    if !(1..=10_000).contains(&r.target_shard_count) {
        return Err(ApiError::validation(r.target_shard_count, "targetShardCount", "have value between 1 and 10000"));
    }
    let stream = k.stream_for_provisioned_change(&r.target)?;
    let target = r.target_shard_count;
    let open: Vec<(u32, HashKeyRange)> = {
        let meta = stream.meta();
        let mut v: Vec<_> = meta.shards.iter().filter(|s| !s.closed).map(|s| (s.index, s.hash_key_range)).collect();
        v.sort_by_key(|(_, r)| r.starting);
        v
    };
    let current = open.len() as i64;
    if target > current * 2 || target * 2 < current {
        return Err(ApiError::new(
            ErrorKind::LimitExceeded,
            format!("UpdateShardCount can scale to between half and double the current {current} open shards; {target} was requested."),
        ));
    }
    check_limit(k, target - current)?;
    let targets = HashKeyRange::split_evenly(target as u32);
    let now = k.clock.now_ms();
    let mut pieces = Vec::new();
    for (mut index, mut range) in open {
        for t in targets.iter().skip(1) {
            if t.starting > range.starting && t.starting <= range.ending {
                let (lo, hi) = stream.split(index, t.starting, now).map_err(reshard_error)?;
                pieces.push((lo, HashKeyRange { starting: range.starting, ending: t.starting - 1 }));
                index = hi;
                range.starting = t.starting;
            }
        }
        pieces.push((index, range));
    }
    for t in &targets {
        let mut within =
            pieces.iter().filter(|(_, r)| r.starting >= t.starting && r.ending <= t.ending).map(|(i, _)| *i);
        let Some(mut acc) = within.next() else { continue };
        for next in within {
            acc = stream.merge(acc, next, now).map_err(reshard_error)?;
        }
    }
    updating(k, &stream);
    let name = stream.meta().name.clone();
    respond(&serde_json::json!({
        "StreamName": name,
        "StreamARN": k.stream_arn(&name),
        "CurrentShardCount": current,
        "TargetShardCount": target,
    }))
}
