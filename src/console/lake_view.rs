//! What the console shows that no API operation answers: a stream's per-shard counters, a
//! delivery stream's metrics, and the objects and failed records in its lake.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use http::StatusCode;
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use parquet::file::metadata::{FooterTail, ParquetMetaDataReader};
use serde_json::{json, Value};
use sluice_engine::stream::shard_id;
use sluice_firehose::error_output::ERROR_OUTPUT_TYPES;
use sluice_firehose::metrics::{ErrorLabel, Metrics};
use sluice_firehose::prefix::static_part;

use crate::api::kinesis::stream_metrics::shard_counters;
use crate::server::AppState;

/// Objects listed at most per answer: the newest 200.
const OBJECTS_MAX: usize = 200;
/// Objects listed at most under a prefix while the newest are picked: 100,000 (the listing
/// is in key order, so past it newer objects are missed; only [`OBJECTS_MAX`] are held).
const LISTED_MAX: usize = 100_000;
/// A Parquet footer read for its row count is this many bytes at most: 16 MiB.
const FOOTER_BYTES_MAX: u64 = 16 << 20;
/// Error objects read at most for the last failed records: the newest 5, each of 8 MiB at most.
const ERROR_OBJECTS_READ: usize = 5;
const ERROR_OBJECT_BYTES_MAX: u64 = 8 << 20;
/// Failed records shown at most: the newest 50.
const FAILED_RECORDS_MAX: usize = 50;

/// Each shard's counters of stream `name` (not one behind a delivery stream), or `None` when
/// there is no such stream.
pub fn shard_stats(state: &AppState, name: &str) -> Option<Value> {
    if crate::api::kinesis::behind_delivery_stream(name) {
        return None;
    }
    let stream = state.kinesis.streams.get(name)?;
    let shards: Vec<Value> = shard_counters(&stream)
        .into_iter()
        .map(|(index, c)| {
            json!({
                "shardId": shard_id(index),
                "incomingBytes": c.incoming_bytes,
                "incomingRecords": c.incoming_records,
                "outgoingBytes": c.outgoing_bytes,
                "outgoingRecords": c.outgoing_records,
                "writeProvisionedThroughputExceeded": c.write_throttled,
                "readProvisionedThroughputExceeded": c.read_throttled,
                "iteratorAgeMilliseconds": c.iterator_age_ms,
            })
        })
        .collect();
    let history: Vec<Value> = state
        .console
        .history
        .of(name, stream.incarnation())
        .iter()
        .map(|sample| {
            let by_shard: serde_json::Map<String, Value> = sample
                .shards
                .iter()
                .map(|(index, [ib, ir, ob, or])| {
                    let counters =
                        json!({"incomingBytes": ib, "incomingRecords": ir, "outgoingBytes": ob, "outgoingRecords": or});
                    (shard_id(*index), counters)
                })
                .collect();
            json!({"atMs": sample.at_ms, "shards": by_shard})
        })
        .collect();
    Some(json!({"stream": name, "atMs": state.kinesis.clock.now_ms(), "shards": shards, "history": history}))
}

/// Delivery stream `name`'s metrics, or `None` when there is no such delivery stream.
pub fn delivery_stats(state: &AppState, name: &str) -> Option<Value> {
    state.firehose.delivery_streams.get(name)?;
    let m = &state.firehose.delivery_streams.context().metrics;
    let label = Metrics::label(name);
    let failed: serde_json::Map<String, Value> = ERROR_OUTPUT_TYPES
        .iter()
        .map(|t| {
            let l = ErrorLabel { delivery_stream: name.into(), error_output_type: (*t).into() };
            ((*t).to_owned(), m.failed_records.get_or_create(&l).get().into())
        })
        .collect();
    Some(json!({
        "deliveryStream": name,
        "incomingRecords": m.incoming_records.get_or_create(&label).get(),
        "incomingBytes": m.incoming_bytes.get_or_create(&label).get(),
        "deliveredRecords": m.delivered_records.get_or_create(&label).get(),
        "deliveredBytes": m.delivered_bytes.get_or_create(&label).get(),
        "objectsWritten": m.delivery_success.get_or_create(&label).get(),
        "objectWriteFailures": m.delivery_failures.get_or_create(&label).get(),
        "droppedRecords": m.dropped_records.get_or_create(&label).get(),
        "dataFreshnessMilliseconds": m.data_freshness_ms.get_or_create(&label).get(),
        "bufferedBytes": m.buffered_bytes.get_or_create(&label).get(),
        "failedRecords": failed,
    }))
}

/// The newest objects a delivery stream landed (`what = "objects"`: key, size, time, and the
/// row count of a Parquet file from its footer) or its newest failed records
/// (`what = "errors"`: from the error objects under its error output prefix).
///
/// Errors: no such delivery stream (404), another `what` (400), the lake cannot be listed (502).
pub async fn lake(state: &AppState, name: &str, what: &str) -> Result<Value, (StatusCode, String)> {
    let entry = state
        .firehose
        .delivery_streams
        .get(name)
        .ok_or_else(|| (StatusCode::NOT_FOUND, "no such delivery stream".to_owned()))?;
    let spec = entry.spec();
    let d = &spec.destination;
    let bucket_name =
        d.bucket().ok_or_else(|| (StatusCode::BAD_REQUEST, "the destination has no bucket".to_owned()))?;
    let bad_gateway = |e: String| (StatusCode::BAD_GATEWAY, e);
    let bucket =
        state.firehose.delivery_streams.context().lake.bucket(bucket_name).map_err(|e| bad_gateway(e.to_string()))?;
    let error_prefix = d.error_output_prefix.as_deref().filter(|p| !p.is_empty());
    let (prefix, errors) = match what {
        "objects" => (static_part(d.prefix.as_deref().unwrap_or("")), false),
        "errors" => (static_part(error_prefix.unwrap_or("")), true),
        _ => return Err((StatusCode::BAD_REQUEST, "what= is objects or errors".into())),
    };
    let listing_prefix = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix.trim_end_matches('/')));
    let error_static = static_part(error_prefix.unwrap_or(""));
    // Error objects are under their type's folder, or under the error prefix's fixed part.
    let is_error = |key: &str| {
        ERROR_OUTPUT_TYPES.iter().any(|t| key.contains(t))
            || (!error_static.is_empty() && key.starts_with(&error_static))
    };
    // The newest OBJECTS_MAX by time, held in a min-heap while the listing streams past.
    let mut newest: BinaryHeap<Reverse<(DateTime<Utc>, String, u64)>> = BinaryHeap::new();
    let mut listing = bucket.list(listing_prefix.as_ref()).take(LISTED_MAX);
    while let Some(o) = listing.try_next().await.map_err(|e| bad_gateway(e.to_string()))? {
        let key = o.location.as_ref().to_owned();
        if is_error(&key) != errors {
            continue;
        }
        newest.push(Reverse((o.last_modified, key, o.size)));
        if newest.len() > OBJECTS_MAX {
            newest.pop();
        }
    }
    let mut listed: Vec<(DateTime<Utc>, String, u64)> = newest.into_iter().map(|Reverse(o)| o).collect();
    listed.sort_by(|a, b| b.cmp(a));
    if !errors {
        let mut objects = Vec::new();
        for (modified, key, size) in &listed {
            let rows = if key.ends_with(".parquet") { parquet_rows(&*bucket, key, *size).await } else { None };
            objects.push(json!({"key": key, "size": size, "lastModified": modified.to_rfc3339(), "rows": rows}));
        }
        return Ok(json!({"bucket": bucket_name, "prefix": prefix, "objects": objects}));
    }
    let mut failed = Vec::new();
    for (_, key, _) in listed.iter().filter(|(_, _, size)| *size <= ERROR_OBJECT_BYTES_MAX).take(ERROR_OBJECTS_READ) {
        let Ok(got) = bucket.get(&object_store::path::Path::from(key.as_str())).await else { continue };
        let Ok(bytes) = got.bytes().await else { continue };
        let kind = ERROR_OUTPUT_TYPES.iter().find(|t| key.contains(*t)).copied();
        for line in bytes.split(|b| *b == b'\n').rev().filter(|l| !l.is_empty()) {
            let Ok(v) = serde_json::from_slice::<Value>(line) else { continue };
            failed.push(failed_record(&v, kind, key));
            if failed.len() == FAILED_RECORDS_MAX {
                break;
            }
        }
        if failed.len() == FAILED_RECORDS_MAX {
            break;
        }
    }
    Ok(json!({"bucket": bucket_name, "prefix": prefix, "failedRecords": failed}))
}

/// One error record as the console shows it: the code and message, and the data as text
/// when it is UTF-8 (base64 otherwise).
fn failed_record(v: &Value, kind: Option<&str>, key: &str) -> Value {
    use base64::Engine as _;
    let code = v.get("errorCode").or_else(|| v.get("lastErrorCode")).cloned().unwrap_or(Value::Null);
    let message = v.get("errorMessage").or_else(|| v.get("lastErrorMessage")).cloned().unwrap_or(Value::Null);
    let raw = v.get("rawData").and_then(Value::as_str).unwrap_or("");
    let decoded = base64::engine::general_purpose::STANDARD.decode(raw).ok();
    let text = decoded.as_deref().and_then(|d| std::str::from_utf8(d).ok());
    json!({
        "errorOutputType": kind, "errorCode": code, "errorMessage": message,
        "arrivalTimestamp": v.get("arrivalTimestamp"), "data": text, "rawData": raw, "object": key,
    })
}

/// The row count of the Parquet object `key` of `size` bytes, from its footer (two ranged
/// reads; a footer over [`FOOTER_BYTES_MAX`] is not read).
async fn parquet_rows(store: &dyn object_store::ObjectStore, key: &str, size: u64) -> Option<i64> {
    let location = object_store::path::Path::from(key);
    let tail = store.get_range(&location, size.checked_sub(8)?..size).await.ok()?;
    let len = FooterTail::try_from(tail.as_ref()).ok()?.metadata_length() as u64;
    if len > FOOTER_BYTES_MAX {
        return None;
    }
    let start = size.checked_sub(8 + len)?;
    let meta = store.get_range(&location, start..size - 8).await.ok()?;
    let meta = ParquetMetaDataReader::decode_metadata(&meta).ok()?;
    Some(meta.file_metadata().num_rows())
}
