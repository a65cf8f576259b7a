//! `CreateDeliveryStream`: a `DirectPut` or `KinesisStreamAsSource` delivery stream with one
//! Extended S3 destination. CREATING for `status_transition_ms`, then ACTIVE.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::error::ApiError;
use serde::Deserialize;

use super::{invalid, respond, tags::check_tags, validate_name, Firehose};
use sluice_firehose::delivery_streams::CreateError;
use sluice_firehose::plan::RecordTransform;
use sluice_firehose::spec::{
    DeliveryStreamSpec, ExtendedS3Destination, IcebergDestination, SourceSpec, BUFFER_INTERVAL_S_RANGE,
    BUFFER_SIZE_MB_RANGE,
};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KinesisSource {
    #[serde(rename = "KinesisStreamARN")]
    kinesis_stream_arn: String,
    #[serde(rename = "RoleARN", default)]
    role_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    delivery_stream_name: String,
    delivery_stream_type: Option<String>,
    kinesis_stream_source_configuration: Option<KinesisSource>,
    extended_s3_destination_configuration: Option<ExtendedS3Destination>,
    s3_destination_configuration: Option<ExtendedS3Destination>,
    iceberg_destination_configuration: Option<IcebergDestination>,
    #[serde(default)]
    tags: Vec<super::tags::Tag>,
    /// Other destinations (Redshift, OpenSearch, Splunk, HTTP, ...) and members Sluice does
    /// not act on.
    #[serde(flatten)]
    other: BTreeMap<String, serde_json::Value>,
}

/// Checks the members of a destination that the model constrains: required ARNs, the
/// ranges of the buffering hints, and S3's bucket naming rules. `member` is
/// `extendedS3DestinationConfiguration` or the update's name.
pub fn check_destination(d: &ExtendedS3Destination, member: &str) -> Result<(), ApiError> {
    if d.role_arn.is_empty() {
        return Err(ApiError::validation("null", &format!("{member}.roleARN"), "not be null"));
    }
    if d.bucket_arn.is_empty() {
        return Err(ApiError::validation("null", &format!("{member}.bucketARN"), "not be null"));
    }
    if let Some(h) = &d.buffering_hints {
        // AWS Firehose API reference, BufferingHints: "if you specify a value for one of
        // them, you must also provide a value for the other."
        if h.size_in_mbs.is_some() != h.interval_in_seconds.is_some() {
            return Err(invalid(format!(
                "{member}.bufferingHints: SizeInMBs and IntervalInSeconds must be specified together."
            )));
        }
        if let Some(s) = h.size_in_mbs.filter(|s| !BUFFER_SIZE_MB_RANGE.contains(s)) {
            let c = if s < *BUFFER_SIZE_MB_RANGE.start() {
                "have value greater than or equal to 1"
            } else {
                "have value less than or equal to 128"
            };
            return Err(ApiError::validation(s, &format!("{member}.bufferingHints.sizeInMBs"), c));
        }
        if let Some(i) = h.interval_in_seconds.filter(|i| !BUFFER_INTERVAL_S_RANGE.contains(i)) {
            return Err(ApiError::validation(
                i,
                &format!("{member}.bufferingHints.intervalInSeconds"),
                "have value less than or equal to 900",
            ));
        }
    }
    // AWS Firehose API reference, CloudWatchLoggingOptions: LogGroupName and LogStreamName
    // are "required if CloudWatch logging is enabled" (Sluice keeps them, logs nothing there).
    if let Some(o) = d.cloud_watch_logging_options.as_ref().filter(|o| o["Enabled"] == true) {
        let named = |k: &str| o[k].as_str().is_some_and(|v| !v.is_empty());
        if !named("LogGroupName") || !named("LogStreamName") {
            return Err(invalid(format!(
                "{member}.cloudWatchLoggingOptions: LogGroupName and LogStreamName are required when CloudWatch logging is enabled."
            )));
        }
    }
    let Some(bucket) = d.bucket() else {
        return Err(ApiError::validation(
            &d.bucket_arn,
            &format!("{member}.bucketARN"),
            "satisfy regular expression pattern: arn:.*:s3:::[\\w\\.\\-]{1,255}",
        ));
    };
    // Under a `file://` lake the bucket is a folder: S3's naming rules keep it one plain name.
    sluice_firehose::lake::check_bucket_name(bucket).map_err(invalid)?;
    if let Some(b) = &d.s3_backup_configuration {
        check_destination(b, &format!("{member}.s3BackupConfiguration"))?;
    }
    Ok(())
}

/// `CreateDeliveryStream`; the schema and the transform are loaded on tokio's blocking pool.
pub async fn run(f: &Firehose, r: Request) -> Result<Vec<u8>, ApiError> {
    let spec = check(f, r)?;
    let (spec, transform) = f.load_files(spec, true).await?;
    match f.cluster.get() {
        // Kinesis channels make their delivery streams on the node that serves them.
        Some(link) if spec.channel.is_none() && f.of_cluster(link, &spec) => {
            let name = spec.name.clone();
            super::check_pipeline(&spec, &transform)?;
            if f.deleting(&name).is_some() {
                return Err(in_use(f, &name));
            }
            f.create_in_cluster(link, spec, transform).await?;
            created(f, &name)
        }
        _ => create(f, spec, transform),
    }
}

fn in_use(f: &Firehose, name: &str) -> ApiError {
    ApiError::new(
        crate::api::error::ErrorKind::ResourceInUse,
        format!("Firehose {name} under accountId {} already exists", f.config.account_id),
    )
}

/// `CreateDeliveryStream` on the calling thread (delivery streams declared in the config,
/// created while the server starts).
pub fn run_blocking(f: &Firehose, r: Request) -> Result<Vec<u8>, ApiError> {
    let spec = check(f, r)?;
    let (spec, transform) = super::load_files(&f.config.schema_dir, &f.delivery_streams, spec, true)?;
    create(f, spec, transform)
}

/// The checked definition a request asks for (without its schema).
fn check(f: &Firehose, r: Request) -> Result<DeliveryStreamSpec, ApiError> {
    validate_name(&r.delivery_stream_name)?;
    let destinations: Vec<&String> = r.other.keys().filter(|k| k.ends_with("DestinationConfiguration")).collect();
    let iceberg = r.iceberg_destination_configuration;
    let given = [
        r.extended_s3_destination_configuration.is_some(),
        r.s3_destination_configuration.is_some(),
        iceberg.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count()
        + destinations.len();
    if given > 1 {
        return Err(invalid("Exactly one destination configuration is supported for a Firehose"));
    }
    let destination = match (r.extended_s3_destination_configuration, r.s3_destination_configuration, &iceberg) {
        (Some(d), None, None) | (None, Some(d), None) => d,
        (None, None, Some(i)) => {
            check_iceberg(i)?;
            i.delivery()
        }
        _ => match destinations.first() {
            Some(other) => {
                return Err(invalid(format!(
                    "{other} is not supported by Sluice; use ExtendedS3DestinationConfiguration or IcebergDestinationConfiguration."
                )))
            }
            None => return Err(invalid("A destination configuration must be specified.")),
        },
    };
    let member =
        if iceberg.is_some() { "icebergDestinationConfiguration" } else { "extendedS3DestinationConfiguration" };
    check_destination(&destination, member)?;
    check_tags(&r.tags, 0)?;
    let kind = r.delivery_stream_type.as_deref().unwrap_or("DirectPut");
    // A source configuration belongs to one stream type (AWS refuses the others rather than
    // ignore them).
    for (member, applies_to) in [
        ("DirectPutSourceConfiguration", "DirectPut"),
        ("MSKSourceConfiguration", "MSKAsSource"),
        ("DatabaseSourceConfiguration", "DatabaseAsSource"),
    ] {
        if r.other.contains_key(member) && kind != applies_to {
            return Err(invalid(format!("{member} is only applicable for {applies_to} stream type")));
        }
    }
    let source = match (kind, r.kinesis_stream_source_configuration) {
        ("DirectPut", None) => SourceSpec::DirectPut,
        ("DirectPut", Some(_)) => {
            return Err(invalid("KinesisSourceStreamConfig is only applicable for KinesisStreamAsSource stream type"))
        }
        ("KinesisStreamAsSource", Some(k)) => {
            let stream_name = k
                .kinesis_stream_arn
                .split_once(":stream/")
                .map(|(_, n)| n.to_owned())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    invalid(format!("KinesisStreamARN '{}' is not a Kinesis stream ARN.", k.kinesis_stream_arn))
                })?;
            SourceSpec::KinesisStream { stream_name, stream_arn: k.kinesis_stream_arn, role_arn: k.role_arn }
        }
        ("KinesisStreamAsSource", None) => {
            return Err(invalid("KinesisStreamSourceConfiguration is required for KinesisStreamAsSource stream type"))
        }
        ("MSKAsSource" | "DatabaseAsSource", _) => {
            return Err(invalid("Sluice supports the DirectPut and KinesisStreamAsSource stream types."))
        }
        (other, _) => {
            return Err(ApiError::validation(
                other,
                "deliveryStreamType",
                "satisfy enum value set: [DirectPut, KinesisStreamAsSource, MSKAsSource, DatabaseAsSource]",
            ))
        }
    };
    let direct_put_throughput_hint_mbs = r
        .other
        .get("DirectPutSourceConfiguration")
        .and_then(|c| c.get("ThroughputHintInMBs"))
        .and_then(serde_json::Value::as_u64)
        .map(|n| n.min(u64::from(u32::MAX)) as u32);
    let now = f.clock.now_ms();
    let encryption = match r.other.get("DeliveryStreamEncryptionConfigurationInput") {
        None => None,
        Some(v) => {
            let input: super::encryption::EncryptionInput =
                serde_json::from_value(v.clone()).map_err(|e| invalid(e.to_string()))?;
            Some(super::encryption::started(&input, &source, now)?)
        }
    };
    Ok(DeliveryStreamSpec {
        name: r.delivery_stream_name,
        created_ms: now,
        updated_ms: now,
        version: 1,
        source,
        destination,
        schema: None,
        tags: r.tags.into_iter().map(|t| (t.key, t.value.unwrap_or_default())).collect(),
        encryption,
        iceberg,
        channel: None,
        direct_put_throughput_hint_mbs,
        cluster: None,
    })
}

/// Checks what Sluice's Iceberg delivery needs of an `IcebergDestinationConfiguration`
/// beyond the model: one table (routing records to several by metadata is not supported),
/// appends only, a warehouse in the lake.
pub fn check_iceberg(d: &IcebergDestination) -> Result<(), ApiError> {
    match d.destination_table_configuration_list.len() {
        0 => return Err(invalid("DestinationTableConfigurationList must name the destination table.")),
        1 => {}
        _ => {
            return Err(invalid(
                "Sluice delivers to one table per Firehose stream; give one DestinationTableConfiguration.",
            ))
        }
    }
    let t = &d.destination_table_configuration_list[0];
    // Names become namespace levels (split at dots) and folders of the table's location.
    for (what, name) in
        [("DestinationDatabaseName", &t.destination_database_name), ("DestinationTableName", &t.destination_table_name)]
    {
        if name.split('.').any(|part| part.is_empty()) {
            return Err(invalid(format!(
                "{what} '{name}' must not start or end with a dot or have two dots in a row."
            )));
        }
    }
    if t.destination_table_name.contains('.') {
        return Err(invalid(format!("DestinationTableName '{}' must not contain a dot.", t.destination_table_name)));
    }
    if t.unique_keys.as_ref().is_some_and(|k| !k.is_empty()) && d.append_only != Some(true) {
        return Err(invalid("UniqueKeys (updates and deletes) are not supported by Sluice; set AppendOnly to true."));
    }
    if let Some(w) = &d.catalog_configuration.warehouse_location {
        let Some(rest) = w.strip_prefix("s3://") else {
            return Err(invalid(format!("WarehouseLocation '{w}' must start with s3://")));
        };
        let mut parts = rest.trim_end_matches('/').split('/');
        sluice_firehose::lake::check_bucket_name(parts.next().unwrap_or("")).map_err(invalid)?;
        if parts.any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(invalid(format!("WarehouseLocation '{w}' has an empty, '.' or '..' folder.")));
        }
    }
    Ok(())
}

/// Creates the delivery stream of `spec` (checked, with its schema) and `transform`.
fn create(
    f: &Firehose,
    spec: DeliveryStreamSpec,
    transform: Option<Arc<dyn RecordTransform>>,
) -> Result<Vec<u8>, ApiError> {
    let name = spec.name.clone();
    super::check_pipeline(&spec, &transform)?;
    // A delivery stream still DELETING holds its name (names are unique per account and
    // Region; AWS Firehose API reference, CreateDeliveryStream).
    if f.deleting(&name).is_some() {
        return Err(in_use(f, &name));
    }
    match f.delivery_streams.create(spec, transform) {
        Ok(_) => {}
        Err(CreateError::Exists(name)) => return Err(in_use(f, &name)),
        Err(CreateError::NoSource(name)) => {
            return Err(invalid(format!("Stream {name} under account {} not found.", f.config.account_id)))
        }
        Err(CreateError::Transform(m)) => return Err(invalid(m)),
        Err(e @ (CreateError::Io(_) | CreateError::Stream(_))) => return Err(super::internal(e)),
    }
    created(f, &name)
}

/// The answer to a CreateDeliveryStream that created `name`.
fn created(f: &Firehose, name: &str) -> Result<Vec<u8>, ApiError> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Response {
        #[serde(rename = "DeliveryStreamARN")]
        delivery_stream_arn: String,
    }
    respond(&Response { delivery_stream_arn: f.arn(name) })
}
