//! Error records: what lands under the error output prefix for each failed record, one JSON
//! object per line, in AWS's layout (Firehose developer guide, "Data transformation failure
//! handling" and "Record format conversion error handling").

use base64::Engine as _;
use serde::Serialize;

/// `!{firehose:error-output-type}` of records a transform failed.
pub const PROCESSING_FAILED: &str = "processing-failed";
/// `!{firehose:error-output-type}` of records format conversion refused.
pub const FORMAT_CONVERSION_FAILED: &str = "format-conversion-failed";

/// Every error output type a delivery stream writes.
pub const ERROR_OUTPUT_TYPES: [&str; 3] = [PROCESSING_FAILED, FORMAT_CONVERSION_FAILED, crate::worker::S3_FAILED];

/// Where a failed record came from in a Kinesis stream.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KinesisRecordMetadata {
    /// `shardId-000000000001`.
    pub shard_id: String,
    /// The record's partition key.
    pub partition_key: String,
    /// Arrival time, ms since the Unix epoch.
    pub approximate_arrival_timestamp: u64,
    /// The record's sequence number as Kinesis shows it.
    pub sequence_number: String,
    /// Always 0: Sluice records are not KPL-aggregated.
    pub subsequence_number: u64,
}

/// The failure of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Error output type: [`PROCESSING_FAILED`] or [`FORMAT_CONVERSION_FAILED`].
    pub output_type: &'static str,
    /// AWS's error code, e.g. `DataFormatConversion.ParseError`, `Lambda.MissingRecordId`.
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// Attempts made (transform retries plus one).
    pub attempts: u32,
}

/// Writes one error record line (with its trailing `\n`) into `out`.
#[allow(clippy::too_many_arguments)]
pub fn write_line(
    out: &mut Vec<u8>,
    failure: &Failure,
    raw_data: &[u8],
    arrival_ms: u64,
    attempt_ending_ms: u64,
    kinesis: Option<&KinesisRecordMetadata>,
    lambda_arn: Option<&str>,
) {
    let raw = base64::engine::general_purpose::STANDARD.encode(raw_data);
    let value = if failure.output_type == FORMAT_CONVERSION_FAILED {
        serde_json::json!({
            "attemptsMade": failure.attempts,
            "arrivalTimestamp": arrival_ms,
            "lastErrorCode": failure.code,
            "lastErrorMessage": failure.message,
            "attemptEndingTimestamp": attempt_ending_ms,
            "rawData": raw,
            "sequenceNumber": kinesis.map(|k| k.sequence_number.clone()),
            "subSequenceNumber": serde_json::Value::Null,
            "kinesisRecordMetadata": kinesis,
        })
    } else {
        serde_json::json!({
            "attemptsMade": failure.attempts,
            "arrivalTimestamp": arrival_ms,
            "errorCode": failure.code,
            "errorMessage": failure.message,
            "attemptEndingTimestamp": attempt_ending_ms,
            "rawData": raw,
            "lambdaArn": lambda_arn,
            "kinesisRecordMetadata": kinesis,
        })
    };
    let mut value = value;
    if let Some(map) = value.as_object_mut() {
        // Members that do not apply (no Kinesis source, no transform) are left out.
        map.retain(|_, v| !v.is_null());
    }
    serde_json::to_writer(&mut *out, &value).expect("error records serialize");
    out.push(b'\n');
}
