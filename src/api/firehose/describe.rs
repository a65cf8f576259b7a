//! `DescribeDeliveryStream` and `ListDeliveryStreams`.

use crate::api::error::ApiError;
use serde::{Deserialize, Serialize};

use super::{epoch_seconds, respond, validate_name, Firehose, DESTINATION_ID};
use sluice_firehose::spec::{ExtendedS3Destination, SourceSpec};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    pub(super) delivery_stream_name: String,
    pub(super) limit: Option<i64>,
    pub(super) exclusive_start_destination_id: Option<String>,
}

/// `S3DestinationDescription`: the plain-S3 view AWS also shows of an Extended S3 destination.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct S3Description {
    #[serde(rename = "RoleARN")]
    role_arn: String,
    #[serde(rename = "BucketARN")]
    bucket_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_output_prefix: Option<String>,
    buffering_hints: Option<sluice_firehose::spec::BufferingHints>,
    compression_format: Option<String>,
    encryption_configuration: Option<serde_json::Value>,
    #[serde(rename = "CloudWatchLoggingOptions")]
    cloud_watch_logging_options: Option<serde_json::Value>,
}

fn s3_view(d: &ExtendedS3Destination) -> S3Description {
    S3Description {
        role_arn: d.role_arn.clone(),
        bucket_arn: d.bucket_arn.clone(),
        prefix: d.prefix.clone(),
        error_output_prefix: d.error_output_prefix.clone(),
        buffering_hints: d.buffering_hints,
        compression_format: d.compression_format.clone(),
        encryption_configuration: d.encryption_configuration.clone(),
        cloud_watch_logging_options: d.cloud_watch_logging_options.clone(),
    }
}

pub fn run(f: &Firehose, r: Request) -> Result<Vec<u8>, ApiError> {
    if let Some(d) = f.deleting(&r.delivery_stream_name) {
        return respond(&serde_json::json!({ "DeliveryStreamDescription": d }));
    }
    respond(&serde_json::json!({ "DeliveryStreamDescription": description(f, r)? }))
}

/// The `DeliveryStreamDescription` of a delivery stream that exists.
pub fn description(f: &Firehose, r: Request) -> Result<serde_json::Value, ApiError> {
    let entry = f.entry(&r.delivery_stream_name)?;
    if let Some(l) = r.limit {
        if !(1..=10_000).contains(&l) {
            return Err(ApiError::validation(l, "limit", "have value between 1 and 10000"));
        }
    }
    let spec = entry.spec();
    let described = spec.destination.described();
    // One destination: a start id at or after it leaves none.
    let destinations = match r.exclusive_start_destination_id.as_deref() {
        Some(id) if id >= DESTINATION_ID => vec![],
        _ => match &spec.iceberg {
            Some(i) => vec![serde_json::json!({
                "DestinationId": DESTINATION_ID,
                "IcebergDestinationDescription": i.described(),
            })],
            None => {
                let mut extended = serde_json::to_value(&described).map_err(super::internal)?;
                if let Some(o) = extended.as_object_mut() {
                    if let Some(b) = &described.s3_backup_configuration {
                        o.remove("S3BackupConfiguration");
                        o.insert(
                            "S3BackupDescription".into(),
                            serde_json::to_value(s3_view(b)).map_err(super::internal)?,
                        );
                    }
                }
                vec![serde_json::json!({
                    "DestinationId": DESTINATION_ID,
                    "ExtendedS3DestinationDescription": extended,
                    "S3DestinationDescription": s3_view(&described),
                })]
            }
        },
    };
    let source = match &spec.source {
        SourceSpec::DirectPut => spec
            .direct_put_throughput_hint_mbs
            .map(|n| serde_json::json!({ "DirectPutSourceDescription": { "ThroughputHintInMBs": n } })),
        SourceSpec::KinesisStream { stream_arn, role_arn, .. } => Some(serde_json::json!({
            "KinesisStreamSourceDescription": {
                "KinesisStreamARN": stream_arn,
                "RoleARN": role_arn,
                "DeliveryStartTimestamp": epoch_seconds(spec.created_ms),
            }
        })),
    };
    let mut d = serde_json::json!({
        "DeliveryStreamName": spec.name,
        "DeliveryStreamARN": f.arn(&spec.name),
        "DeliveryStreamStatus": f.status(spec.created_ms),
        "DeliveryStreamEncryptionConfiguration": f.encryption_shape(&spec),
        "DeliveryStreamType": spec.stream_type(),
        "VersionId": spec.version.to_string(),
        "CreateTimestamp": epoch_seconds(spec.created_ms),
        "Destinations": destinations,
        "HasMoreDestinations": false,
    });
    if spec.version > 1 {
        d["LastUpdateTimestamp"] = serde_json::json!(epoch_seconds(spec.updated_ms));
    }
    if let Some(s) = source {
        d["Source"] = s;
    }
    Ok(d)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    limit: Option<i64>,
    delivery_stream_type: Option<String>,
    exclusive_start_delivery_stream_name: Option<String>,
}

/// `ListDeliveryStreams` returns 10 names when `Limit` is not given. Source: Firehose API reference.
pub const LIST_LIMIT_DEFAULT: usize = 10;

pub fn run_list(f: &Firehose, r: ListRequest) -> Result<Vec<u8>, ApiError> {
    let limit = match r.limit {
        None => LIST_LIMIT_DEFAULT,
        Some(l) if (1..=10_000).contains(&l) => l as usize,
        Some(l) => return Err(ApiError::validation(l, "limit", "have value between 1 and 10000")),
    };
    if let Some(start) = &r.exclusive_start_delivery_stream_name {
        validate_name(start)?;
    }
    let names: Vec<String> = f
        .delivery_streams
        .list()
        .iter()
        .map(|e| e.spec())
        // Kinesis channels run as delivery streams; they are not Firehose streams.
        .filter(|s| s.channel.is_none())
        .filter(|s| r.delivery_stream_type.as_deref().is_none_or(|t| t == s.stream_type()))
        .map(|s| s.name)
        .filter(|n| r.exclusive_start_delivery_stream_name.as_ref().is_none_or(|start| n > start))
        .collect();
    let has_more = names.len() > limit;
    let names: Vec<String> = names.into_iter().take(limit).collect();
    respond(&serde_json::json!({ "DeliveryStreamNames": names, "HasMoreDeliveryStreams": has_more }))
}
