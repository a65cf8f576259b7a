//! `GetRecords`: records from a shard iterator's position, and the iterator for the next call.

use base64::Engine as _;
use serde::Deserialize;

use super::iterator::{IteratorState, ITERATOR_LIFETIME_MS};
use super::{epoch_seconds, respond, ApiError, ErrorKind, Kinesis};
use crate::read::ReadLimits;
use crate::sequence_number::SequenceNumber;
use crate::stream::shard_id;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    shard_iterator: String,
    limit: Option<i64>,
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    if r.shard_iterator.is_empty() || r.shard_iterator.len() > 512 {
        return Err(ApiError::validation(&r.shard_iterator, "shardIterator", "have length between 1 and 512"));
    }
    let limit = match r.limit {
        None => ReadLimits::default().max_records,
        Some(n) if !(1..=10_000).contains(&n) => {
            return Err(ApiError::validation(n, "limit", "have value between 1 and 10000"));
        }
        Some(n) => n as usize,
    };
    let it = IteratorState::decode(&r.shard_iterator, &k.config.iterator_secret)
        .ok_or_else(|| ApiError::new(ErrorKind::InvalidArgument, "Invalid ShardIterator."))?;
    let now = k.clock.now_ms();
    if now.saturating_sub(it.issued_ms) > ITERATOR_LIFETIME_MS {
        return Err(ApiError::new(
            ErrorKind::ExpiredIterator,
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_LIFETIME_MS} milliseconds.",
                it.issued_ms, now
            ),
        ));
    }
    let stream = k.streams.get(&it.stream).ok_or_else(|| k.not_found(&it.stream))?;
    let shard = stream.shard(it.shard_index).ok_or_else(|| k.not_found(&it.stream))?;
    if let Some(mut t) = shard.throttle() {
        if !t.admit_read(now) {
            return Err(k.rate_exceeded(&it.stream, it.shard_index));
        }
    }
    let log = &shard.log;
    let batch = log
        .read(it.position, ReadLimits { max_records: limit, ..ReadLimits::default() })
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut last_ts = None;
    let records: Vec<_> = batch
        .iter()
        .map(|rec| {
            last_ts = Some(rec.arrival_timestamp_ms);
            serde_json::json!({
                "SequenceNumber": SequenceNumber { shard_index: it.shard_index, shard_sequence: rec.sequence_number }.to_string(),
                "ApproximateArrivalTimestamp": epoch_seconds(rec.arrival_timestamp_ms),
                "Data": b64.encode(rec.data),
                "PartitionKey": rec.partition_key,
            })
        })
        .collect();
    if let Some(mut t) = shard.throttle() {
        t.charge_read(batch.bytes(), now);
    }
    let bounds = log.bounds();
    let behind = match last_ts {
        Some(ts) if batch.next_sequence_number() < bounds.next_sequence_number => now.saturating_sub(ts),
        _ => 0,
    };
    let closed = stream.meta().shards.get(it.shard_index as usize).is_some_and(|s| s.closed);
    if closed && batch.next_sequence_number() == bounds.next_sequence_number {
        // The end of a closed shard: no next iterator; the children to continue with.
        let children: Vec<_> = stream
            .children(it.shard_index)
            .iter()
            .map(|c| {
                let parents: Vec<_> = c.parent.iter().chain(c.adjacent_parent.iter()).map(|p| shard_id(*p)).collect();
                serde_json::json!({
                    "ShardId": shard_id(c.index),
                    "ParentShards": parents,
                    "HashKeyRange": {
                        "StartingHashKey": c.hash_key_range.starting.to_string(),
                        "EndingHashKey": c.hash_key_range.ending.to_string(),
                    },
                })
            })
            .collect();
        return respond(&serde_json::json!({ "Records": records, "MillisBehindLatest": 0, "ChildShards": children }));
    }
    let next = IteratorState { position: batch.next_sequence_number(), issued_ms: now, ..it }
        .encode(&k.config.iterator_secret);
    respond(&serde_json::json!({ "Records": records, "NextShardIterator": next, "MillisBehindLatest": behind }))
}
