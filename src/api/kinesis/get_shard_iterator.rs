//! `GetShardIterator`: a signed token for a position in a shard.

use serde::Deserialize;

use super::{respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::error::ReadError;
use sluice_engine::iterator::IteratorState;
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::stream::shard_id;
use sluice_engine::StartingPosition;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    shard_id: String,
    shard_iterator_type: String,
    starting_sequence_number: Option<String>,
    timestamp: Option<f64>,
    dry_run: Option<bool>,
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    let stream = k.stream_for_data(&r.target)?;
    let name = stream.meta().name.clone();
    let (index, shard) = k.shard_of(&stream, &r.shard_id)?;
    let log = &shard.log;
    let position = resolve_position(
        log,
        index,
        &r.shard_id,
        &r.shard_iterator_type,
        r.starting_sequence_number.as_deref(),
        r.timestamp,
    )?;
    if r.dry_run == Some(true) {
        return Err(k.dry_run(&stream));
    }
    // Only a request that would get an iterator counts against the shard's quota.
    if let Some(mut t) = shard.throttle() {
        if !t.admit_iterator(k.clock.now_ms()) {
            return Err(k.rate_exceeded(&name, index));
        }
    }
    let token = IteratorState {
        stream: name,
        shard_index: index,
        position,
        issued_ms: k.clock.now_ms(),
        incarnation: stream.incarnation(),
    }
    .encode(k.iterator_secret());
    respond(&serde_json::json!({ "ShardIterator": token }))
}

/// The sequence number a read of shard `index` (named `shard` in messages) starts from, for
/// a shard iterator type and its sequence number or timestamp (epoch seconds), with AWS's
/// errors. Shared by `GetShardIterator` and `SubscribeToShard`'s `StartingPosition`.
pub fn resolve_position(
    log: &sluice_engine::ShardLog,
    index: u32,
    shard: &str,
    kind: &str,
    starting_sequence_number: Option<&str>,
    timestamp: Option<f64>,
) -> Result<u64, ApiError> {
    let sequence = |what: &str| -> Result<u64, ApiError> {
        let s = starting_sequence_number.ok_or_else(|| {
            ApiError::new(ErrorKind::InvalidArgument, format!("StartingSequenceNumber must be provided for {what}."))
        })?;
        let sn: SequenceNumber = s.parse().map_err(|_| {
            ApiError::validation(s, "startingSequenceNumber", "satisfy regular expression pattern: 0|([1-9]\\d{0,128})")
        })?;
        if sn.shard_index != index {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "Invalid StartingSequenceNumber. It encodes {}, while it was used in a call to a shard with {}",
                    shard_id(sn.shard_index),
                    shard
                ),
            ));
        }
        Ok(sn.shard_sequence)
    };
    let position = match kind {
        "TRIM_HORIZON" => StartingPosition::TrimHorizon,
        "LATEST" => StartingPosition::Latest,
        "AT_SEQUENCE_NUMBER" => StartingPosition::AtSequenceNumber(sequence("AT_SEQUENCE_NUMBER")?),
        "AFTER_SEQUENCE_NUMBER" => StartingPosition::AfterSequenceNumber(sequence("AFTER_SEQUENCE_NUMBER")?),
        "AT_TIMESTAMP" => {
            let t = timestamp.ok_or_else(|| {
                ApiError::new(ErrorKind::InvalidArgument, "Timestamp must be provided for AT_TIMESTAMP.")
            })?;
            StartingPosition::AtTimestamp((t.max(0.0) * 1000.0) as u64)
        }
        other => return Err(ApiError::validation(
            other,
            "shardIteratorType",
            "satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
        )),
    };
    log.position(position).map_err(|e| match e {
        ReadError::BeyondEnd { .. } => ApiError::new(
            ErrorKind::InvalidArgument,
            format!("Invalid StartingSequenceNumber. It encodes a sequence number beyond the end of {}.", shard),
        ),
        other => ApiError::new(ErrorKind::InternalFailure, other.to_string()),
    })
}
