//! `PutRecord` and `PutRecordBatch`: records into a `DirectPut` delivery stream's internal
//! stream, durable as the server's fsync setting says before the call returns.

use crate::api::error::{ApiError, ErrorKind};
use base64::Engine as _;
use serde::Deserialize;

use super::{invalid, respond, Firehose};
use sluice_firehose::metrics::Metrics;
use sluice_firehose::spec::SourceSpec;

/// Largest record, bytes of data: 1,024,000 (1,000 KiB). Source: Firehose API reference.
pub const RECORD_BYTES_MAX: usize = 1_024_000;
/// Most records in one `PutRecordBatch`: 500. Source: Firehose API reference.
pub const BATCH_RECORDS_MAX: usize = 500;
/// Most bytes of data in one `PutRecordBatch`: 4 MiB. Source: Firehose quotas.
pub const BATCH_BYTES_MAX: usize = 4 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    data: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    delivery_stream_name: String,
    record: Entry,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchRequest {
    delivery_stream_name: String,
    records: Vec<Entry>,
}

fn decode(e: &Entry, member: &str) -> Result<Vec<u8>, ApiError> {
    let data = base64::engine::general_purpose::STANDARD.decode(&e.data).map_err(|_| {
        ApiError::new(ErrorKind::Serialization, format!("Value of {member}Data is not valid base64 data."))
    })?;
    if data.len() > RECORD_BYTES_MAX {
        let v = format!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]", n = data.len());
        return Err(ApiError::validation(v, &format!("{member}data"), "have length less than or equal to 1024000"));
    }
    Ok(data)
}

/// Appends `records` to delivery stream `name`, all or none: to its internal stream, or
/// for a delivery stream of a cluster to the cluster's stream behind it (acknowledged once
/// a quorum of its replicas holds them). The record id of each.
///
/// Errors: `InvalidArgumentException` for a `KinesisStreamAsSource` delivery stream,
/// `ServiceUnavailableException` when the records could not be stored (nothing was
/// acknowledged; the SDKs retry it).
async fn put(f: &Firehose, name: &str, records: Vec<Vec<u8>>) -> Result<Vec<String>, ApiError> {
    let entry = f.entry(name)?;
    let spec = entry.spec();
    if matches!(spec.source, SourceSpec::KinesisStream { .. }) {
        return Err(invalid("This operation is not permitted on KinesisStreamAsSource delivery stream type."));
    }
    let slow_down = |e: String| ApiError::new(ErrorKind::ServiceUnavailable, format!("Slow down. ({e})"));
    let (first, records) = match (spec.source_stream(), f.cluster_streams.get()) {
        (Some(stream), Some(streams)) => {
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            // Blocks on the replicas: this thread (a request's, of the blocking pool) leaves
            // the runtime's context meanwhile rather than wait for another pool thread,
            // which a pool full of such requests would never give.
            let first = tokio::task::block_in_place(|| streams.append(&stream, &refs));
            drop(refs);
            (first, records)
        }
        (Some(stream), None) => {
            return Err(slow_down(format!("stream {stream} of the cluster cannot be reached from this node yet")))
        }
        (None, _) => {
            let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
            (entry.put(&refs).map_err(|e| slow_down(e.to_string())), records)
        }
    };
    // Not stored: the SDKs retry a ServiceUnavailableException.
    let first = first.map_err(|e| match e.kind {
        ErrorKind::ServiceUnavailable => e,
        _ => slow_down(e.message),
    })?;
    let label = Metrics::label(name);
    let metrics = &f.delivery_streams.context().metrics;
    metrics.incoming_records.get_or_create(&label).inc_by(records.len() as u64);
    metrics.incoming_bytes.get_or_create(&label).inc_by(records.iter().map(|r| r.len() as u64).sum());
    Ok((0..records.len() as u64)
        .map(|i| {
            sluice_engine::sequence_number::SequenceNumber { shard_sequence: first.shard_sequence + i, ..first }
                .to_string()
        })
        .collect())
}

pub async fn run_one(f: &Firehose, r: Request) -> Result<Vec<u8>, ApiError> {
    super::validate_name(&r.delivery_stream_name)?;
    let data = decode(&r.record, "record.")?;
    let ids = put(f, &r.delivery_stream_name, vec![data]).await?;
    respond(&serde_json::json!({ "RecordId": ids[0], "Encrypted": false }))
}

pub async fn run_batch(f: &Firehose, r: BatchRequest) -> Result<Vec<u8>, ApiError> {
    super::validate_name(&r.delivery_stream_name)?;
    if r.records.is_empty() {
        return Err(ApiError::validation("[]", "records", "have length greater than or equal to 1"));
    }
    if r.records.len() > BATCH_RECORDS_MAX {
        return Err(ApiError::validation("[...]", "records", "have length less than or equal to 500"));
    }
    let records = r
        .records
        .iter()
        .enumerate()
        .map(|(i, e)| decode(e, &format!("records.{}.member.", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if records.iter().map(Vec::len).sum::<usize>() > BATCH_BYTES_MAX {
        return Err(invalid("Records size exceeds 4 MB limit"));
    }
    let ids = put(f, &r.delivery_stream_name, records).await?;
    let request_responses = ids.into_iter().map(|record_id| BatchResponseEntry { record_id }).collect();
    respond(&BatchResponse { encrypted: false, failed_put_count: 0, request_responses })
}

/// The answer of `PutRecordBatch` (members by name, as `serde_json::json!` wrote them),
/// written without building a JSON value per record.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResponse {
    encrypted: bool,
    failed_put_count: usize,
    request_responses: Vec<BatchResponseEntry>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchResponseEntry {
    record_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_answer_is_the_json_it_replaced() {
        let ids = ["a".to_owned(), "b".to_owned()];
        let request_responses = ids.iter().map(|id| BatchResponseEntry { record_id: id.clone() }).collect();
        let expected = serde_json::json!({
            "FailedPutCount": 0, "Encrypted": false, "RequestResponses": [{"RecordId": "a"}, {"RecordId": "b"}],
        });
        let got = respond(&BatchResponse { encrypted: false, failed_put_count: 0, request_responses }).unwrap();
        assert_eq!(got, serde_json::to_vec(&expected).unwrap());
    }
}
