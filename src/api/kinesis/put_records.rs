//! `PutRecords`: up to 500 records in one request, each routed to its shard; results per
//! record, in request order.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{internal, respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::hash_key::{hash_key_of, parse_explicit_hash_key, HashKey};
use sluice_engine::limits::{PARTITION_KEY_CHARS_MAX, RECORD_BYTES_DEFAULT};
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::settings::RecordDistribution;
use sluice_engine::stream::{shard_id, Stream};
use sluice_engine::Record;

/// Most records in one `PutRecords`: 500. Source: AWS Kinesis API reference.
pub const PUT_RECORDS_RECORDS_MAX: usize = 500;

/// Most bytes (data plus partition keys) in one `PutRecords`: 5 MiB. Source: AWS Kinesis
/// API reference.
pub const PUT_RECORDS_BYTES_MAX: usize = 5 << 20;

/// A record as `PutRecord` and `PutRecords` take it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    data: String,
    // The model no longer marks it required (records may be spread by the stream's record
    // distribution strategy); Sluice routes by it, so its absence is the old model's error.
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    records: Vec<Entry>,
}

/// A record checked and decoded, ready to route.
pub struct Checked {
    data: Vec<u8>,
    partition_key: String,
    hash_key: HashKey,
}

/// Checks one entry; `member` prefixes the member names in messages (`records.3.member.`);
/// `max_record_bytes` is the stream's record size limit (data plus partition key).
pub fn validate_entry(e: &Entry, member: &str, max_record_bytes: usize) -> Result<Checked, ApiError> {
    let data = base64::engine::general_purpose::STANDARD.decode(&e.data).map_err(|_| {
        ApiError::new(ErrorKind::Serialization, format!("Value of {member}Data is not valid base64 data."))
    })?;
    if data.len() > max_record_bytes && max_record_bytes > RECORD_BYTES_DEFAULT {
        return Err(too_large(max_record_bytes));
    }
    if data.len() > RECORD_BYTES_DEFAULT && max_record_bytes <= RECORD_BYTES_DEFAULT {
        let v = format!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]", n = data.len());
        return Err(ApiError::validation(v, &format!("{member}data"), "have length less than or equal to 1048576"));
    }
    let Some(partition_key) = &e.partition_key else {
        return Err(ApiError::new(
            ErrorKind::Validation,
            format!("1 validation error detected: Value null at '{member}partitionKey' failed to satisfy constraint: Member must not be null"),
        ));
    };
    let chars = partition_key.chars().count();
    if chars < 1 {
        return Err(ApiError::validation(
            partition_key,
            &format!("{member}partitionKey"),
            "have length greater than or equal to 1",
        ));
    }
    if chars > PARTITION_KEY_CHARS_MAX {
        return Err(ApiError::validation(
            partition_key,
            &format!("{member}partitionKey"),
            "have length less than or equal to 256",
        ));
    }
    let hash_key = match &e.explicit_hash_key {
        None => hash_key_of(partition_key),
        Some(h) => {
            let pattern = !h.is_empty()
                && h.len() <= 39
                && h.bytes().all(|b| b.is_ascii_digit())
                && (h == "0" || !h.starts_with('0'));
            if !pattern {
                return Err(ApiError::validation(
                    h,
                    &format!("{member}explicitHashKey"),
                    "satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
                ));
            }
            // 39 digits fit the pattern but can pass 2^128 - 1: AWS answers that apart.
            parse_explicit_hash_key(h).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"),
                )
            })?
        }
    };
    if data.len() + partition_key.len() > max_record_bytes {
        return Err(too_large(max_record_bytes));
    }
    Ok(Checked { data, partition_key: partition_key.clone(), hash_key })
}

fn too_large(max_record_bytes: usize) -> ApiError {
    let limit = match max_record_bytes {
        n if n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n => format!("{} KiB", n >> 10),
    };
    ApiError::new(ErrorKind::InvalidArgument, format!("The record size (data plus partition key) exceeds {limit}."))
}

/// Where one record landed: its shard id and sequence number, as Kinesis shows them.
pub struct Placed {
    pub shard_id: String,
    pub sequence_number: String,
}

/// Appends records to the shards their hash keys select, one batch per shard, keeping
/// request order within each shard. Returns where each record landed, in request order.
pub fn append_routed(
    k: &Kinesis,
    stream: &Stream,
    records: Vec<Checked>,
) -> Result<Vec<Result<Placed, ApiError>>, ApiError> {
    // The metadata stays read-locked until every record is written, so a split or merge
    // (which write-locks it) never closes a shard under an append routed to it.
    let meta = stream.meta();
    let mut by_shard: Vec<(u32, Vec<usize>)> = Vec::new();
    // Record distribution AUTO: the open shards in turn, from a random one, whatever the keys.
    let open: Vec<u32> = match meta.settings.distribution {
        RecordDistribution::Auto => meta.shards.iter().filter(|s| !s.closed).map(|s| s.index).collect(),
        RecordDistribution::UserPartitionKey => Vec::new(),
    };
    let turn = sluice_engine::stream::random_u64() as usize;
    for (i, r) in records.iter().enumerate() {
        let shard = match open.len() {
            0 => Stream::route_in(&meta, r.hash_key),
            n => open[turn.wrapping_add(i) % n],
        };
        match by_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, v)) => v.push(i),
            None => by_shard.push((shard, vec![i])),
        }
    }
    let mut results: Vec<Option<Result<Placed, ApiError>>> = (0..records.len()).map(|_| None).collect();
    let now = k.clock.now_ms();
    for (shard, indexes) in by_shard {
        let s = stream.shard(shard).ok_or_else(|| internal(format!("shard {shard} has no log")))?;
        // Records over the shard's quota fail alone, with Kinesis' per-record error.
        let indexes: Vec<usize> = match s.throttle() {
            None => indexes,
            Some(mut t) => indexes
                .into_iter()
                .filter(|&i| {
                    let admitted = t.admit_write(records[i].data.len() + records[i].partition_key.len(), now);
                    if !admitted {
                        s.stats.write_throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        results[i] = Some(Err(k.rate_exceeded(&meta.name, shard)));
                    }
                    admitted
                })
                .collect(),
        };
        if indexes.is_empty() {
            continue;
        }
        let log = &s.log;
        let batch: Vec<Record> = indexes
            .iter()
            .map(|&i| Record { partition_key: &records[i].partition_key, data: &records[i].data })
            .collect();
        match log.append(&batch) {
            Ok(a) => {
                for (&i, seq) in indexes.iter().zip(a.sequence_numbers()) {
                    let sn = SequenceNumber { shard_index: shard, shard_sequence: seq };
                    results[i] = Some(Ok(Placed { shard_id: shard_id(shard), sequence_number: sn.to_string() }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, shard, "append failed");
                for &i in &indexes {
                    results[i] = Some(Err(ApiError::new(ErrorKind::InternalFailure, "Internal service failure.")));
                }
            }
        }
    }
    drop(meta);
    // Queues waiting for records look again.
    k.wake_receivers();
    Ok(results.into_iter().map(|r| r.expect("every record routed")).collect())
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    if r.records.is_empty() {
        return Err(ApiError::validation("[]", "records", "have length greater than or equal to 1"));
    }
    if r.records.len() > PUT_RECORDS_RECORDS_MAX {
        return Err(ApiError::validation(
            format!("[{} records]", r.records.len()),
            "records",
            "have length less than or equal to 500",
        ));
    }
    let max_record_bytes = k.max_record_bytes(&r.target);
    let checked = r
        .records
        .iter()
        .enumerate()
        .map(|(i, e)| validate_entry(e, &format!("records.{}.member.", i + 1), max_record_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = checked.iter().map(|c| c.data.len() + c.partition_key.len()).sum();
    if total > PUT_RECORDS_BYTES_MAX {
        return Err(ApiError::new(ErrorKind::InvalidArgument, "Records size exceeds 5 MB limit"));
    }
    let stream = k.stream_for_data(&r.target)?;
    let results = append_routed(k, &stream, checked)?;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let records: Vec<ResultEntry> = results
        .into_iter()
        .map(|r| match r {
            Ok(p) => ResultEntry::Placed { sequence_number: p.sequence_number, shard_id: p.shard_id },
            Err(e) => ResultEntry::Failed { error_code: e.kind.name(), error_message: e.message },
        })
        .collect();
    let encryption = if stream.meta().settings.kms_key_id.is_some() { "KMS" } else { "NONE" };
    respond(&Response { encryption_type: encryption, failed_record_count: failed, records })
}

/// The answer of `PutRecords` (members in the order `serde_json::json!` wrote them, by
/// name), written without building a JSON value per record.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Response {
    encryption_type: &'static str,
    failed_record_count: usize,
    records: Vec<ResultEntry>,
}

/// One record's result: where it landed, or why it did not.
#[derive(Serialize)]
#[serde(untagged, rename_all_fields = "PascalCase")]
enum ResultEntry {
    Placed { sequence_number: String, shard_id: String },
    Failed { error_code: &'static str, error_message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_has_the_members_and_order_of_the_json_it_replaced() {
        let response = Response {
            encryption_type: "NONE",
            failed_record_count: 1,
            records: vec![
                ResultEntry::Placed { sequence_number: "49".into(), shard_id: shard_id(3) },
                ResultEntry::Failed {
                    error_code: ErrorKind::ProvisionedThroughputExceeded.name(),
                    error_message: "Rate exceeded".into(),
                },
            ],
        };
        let expected = serde_json::json!({
            "FailedRecordCount": 1,
            "Records": [
                {"ShardId": "shardId-000000000003", "SequenceNumber": "49"},
                {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"},
            ],
            "EncryptionType": "NONE",
        });
        assert_eq!(respond(&response).unwrap(), serde_json::to_vec(&expected).unwrap());
    }
}
