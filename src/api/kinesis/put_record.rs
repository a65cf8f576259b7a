//! `PutRecord`: one record, routed by partition key or explicit hash key.

use serde::Deserialize;

use super::put_records::{append_routed, validate_entry, Entry};
use super::{respond, ApiError, Kinesis, StreamTarget};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    #[serde(flatten)]
    entry: Entry,
    #[allow(dead_code)] // Sequence numbers increase per shard whatever the client asks.
    sequence_number_for_ordering: Option<String>,
    dry_run: Option<bool>,
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    let since = std::time::Instant::now();
    let record = validate_entry(r.entry.as_ref(), None, k.max_record_bytes(&r.target))?;
    let stream = k.stream_for_data(&r.target)?;
    if r.dry_run == Some(true) {
        return Err(k.dry_run(&stream));
    }
    let bytes = record.bytes();
    let results = append_routed(k, &stream, vec![record])?;
    let placed = results.into_iter().next().expect("one record in, one result out")?;
    k.stream_metrics.of(&k.streams, &stream).put_record(bytes, since);
    respond(&serde_json::json!({
        "ShardId": placed.shard_id(),
        "SequenceNumber": placed.sequence_number.to_string(),
        "EncryptionType": if stream.meta().settings.kms_key_id.is_some() { "KMS" } else { "NONE" },
    }))
}
