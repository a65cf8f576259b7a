//! Channels: `CreateChannel`, `DescribeChannel`, `ListChannels`, `UpdateChannel`,
//! `DeleteChannel`. A channel delivers one on-demand stream to one Apache Iceberg table
//! (`S3TablesDestinationConfiguration`) or to objects in a bucket
//! (`S3DestinationConfiguration`), with `DataFreshnessInSeconds` as its buffering interval.
//!
//! A channel runs on the Firehose delivery engine: it is a hidden delivery stream (named
//! `channel:<id>`, which no Firehose name can be) reading the stream from LATEST (AWS: no
//! backfill), so channels and Firehose streams share reading, buffering, conversion, table
//! commits and error output. The channel's own description is kept, opaque to the delivery
//! engine, in the delivery stream's definition.
//!
//! Tables: the table bucket `arn:aws:s3tables:<region>:<account>:bucket/<name>` is the catalog
//! `<name>` (PyIceberg opens it by that name), its files in the lake bucket `<name>` (`_` as
//! `-`); the channel creates the table when missing, with the columns of its first records
//! (AWS reads them from a Glue Schema Registry schema, which Sluice does not have), and
//! `TIME_HOUR` partition fields.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{after_token, epoch_seconds, name_token, no_output, respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_firehose::delivery_streams::{CreateError, DeliveryStreamEntry};
use sluice_firehose::spec::{
    BufferingHints, CatalogConfiguration, DeliveryStreamSpec, DestinationTable, ExtendedS3Destination,
    IcebergDestination, IdentityField, ProcessingConfiguration, Processor, SourceSpec, Switch, TablePartitionSpec,
};

/// `DataFreshnessInSeconds` when absent, s: 300. Source: Kinesis API reference,
/// `S3TablesDestinationConfiguration`.
pub const DATA_FRESHNESS_S_DEFAULT: u32 = 300;
/// `DataFreshnessInSeconds` range, s: 300–900. Source: Kinesis developer guide, data
/// delivery concepts ("between 300 and 900 seconds").
pub const DATA_FRESHNESS_S_RANGE: std::ops::RangeInclusive<u32> = 300..=900;
/// `ListChannels` page size when `MaxResults` is absent, and its cap: 100.
const LIST_MAX: usize = 100;
/// Prefix of the hidden delivery streams behind channels.
const DELIVERY_PREFIX: &str = "channel:";

/// What a channel keeps: its description as created and updated.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChannelMeta {
    name: String,
    id: String,
    created_ms: u64,
    updated_ms: u64,
    role_arn: String,
    stream_arn: String,
    stream_created_ms: u64,
    record_configuration: Value,
    freshness_s: u32,
    s3: Option<Value>,
    s3_tables: Option<Value>,
    encryption: Option<Value>,
    logging: Value,
    tags: BTreeMap<String, String>,
    #[serde(default)]
    deleting: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateRequest {
    channel_name: String,
    #[serde(rename = "ServiceExecutionRoleARN")]
    service_execution_role_arn: String,
    stream_configuration_list: Vec<StreamConfiguration>,
    s3_destination_configuration: Option<Value>,
    s3_tables_destination_configuration: Option<Value>,
    encryption_configuration: Option<Value>,
    tags: Option<BTreeMap<String, String>>,
    logging_configuration: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamConfiguration {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    record_configuration: Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelTarget {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    stream_filter: Option<Vec<StreamFilter>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamFilter {
    #[serde(rename = "StreamARN")]
    stream_arn: String,
    stream_creation_timestamp: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateRequest {
    #[serde(rename = "ChannelARN")]
    channel_arn: String,
    s3_destination_configuration: Option<Freshness>,
    s3_tables_destination_configuration: Option<Freshness>,
    logging_configuration: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Freshness {
    data_freshness_in_seconds: i64,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidArgument, message)
}

impl Kinesis {
    /// The ARN of channel `id`: `arn:aws:kinesis:<region>:<account>:channel/<id>`.
    pub fn channel_arn(&self, id: &str) -> String {
        format!("arn:aws:kinesis:{}:{}:channel/{id}", self.config.region, self.config.account_id)
    }

    fn deliveries(&self) -> Result<&Arc<sluice_firehose::DeliveryStreams>, ApiError> {
        self.deliveries
            .get()
            .ok_or_else(|| ApiError::new(ErrorKind::InternalFailure, "channels need the Firehose engine"))
    }

    /// Every channel, with its delivery stream.
    fn channels(&self) -> Result<Vec<(ChannelMeta, Arc<DeliveryStreamEntry>)>, ApiError> {
        Ok(self
            .deliveries()?
            .list()
            .into_iter()
            .filter_map(|e| {
                let meta = e.spec().channel.and_then(|v| serde_json::from_value::<ChannelMeta>(v).ok())?;
                Some((meta, e))
            })
            .collect())
    }

    fn channel(&self, arn: &str) -> Result<(ChannelMeta, Arc<DeliveryStreamEntry>), ApiError> {
        self.channels()?
            .into_iter()
            .find(|(m, _)| self.channel_arn(&m.id) == arn)
            .ok_or_else(|| self.channel_not_found(arn))
    }

    fn channel_not_found(&self, arn: &str) -> ApiError {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Channel {arn} under account {} not found.", self.config.account_id),
        )
    }

    /// Whether stream `name` has a channel (it cannot be deleted then, as on AWS).
    pub fn has_channel(&self, name: &str) -> bool {
        let arn = self.stream_arn(name);
        self.channels().is_ok_and(|c| c.iter().any(|(m, _)| m.stream_arn == arn))
    }

    fn channel_status(&self, m: &ChannelMeta) -> &'static str {
        let now = self.clock.now_ms();
        if m.deleting {
            "DELETING"
        } else if now < m.created_ms + self.config.stream_transition_ms {
            "CREATING"
        } else if m.updated_ms > m.created_ms && now < m.updated_ms + self.config.stream_transition_ms {
            "UPDATING"
        } else {
            "ACTIVE"
        }
    }

    fn channel_description(&self, m: &ChannelMeta) -> Value {
        let mut d = json!({
            "ChannelName": m.name,
            "ChannelARN": self.channel_arn(&m.id),
            "ChannelId": m.id,
            "ChannelStatus": self.channel_status(m),
            "ChannelCreationTimestamp": epoch_seconds(m.created_ms),
            "ServiceExecutionRoleARN": m.role_arn,
            "StreamConfigurationList": [{
                "StreamARN": m.stream_arn,
                "StreamCreationTimestamp": epoch_seconds(m.stream_created_ms),
                "RecordConfiguration": m.record_configuration,
            }],
            "LoggingConfiguration": m.logging,
        });
        if let Some(t) = &m.s3_tables {
            let mut t = t.clone();
            t["DataFreshnessInSeconds"] = m.freshness_s.into();
            d["S3TablesDestinationConfiguration"] = t;
        }
        if let Some(s) = &m.s3 {
            let mut s = s.clone();
            s["DataFreshnessInSeconds"] = m.freshness_s.into();
            if s.get("DeadLetterQueueS3Configuration").is_none() {
                let storage = &s["StorageConfiguration"];
                s["DeadLetterQueueS3Configuration"] =
                    json!({"BucketARN": storage["BucketARN"], "ExpectedBucketOwner": storage["ExpectedBucketOwner"]});
            }
            d["S3DestinationConfiguration"] = s;
        }
        if let Some(e) = &m.encryption {
            d["EncryptionConfiguration"] = e.clone();
        }
        d
    }
}

pub fn run_create(k: &Kinesis, r: CreateRequest) -> Result<Vec<u8>, ApiError> {
    let deliveries = k.deliveries()?.clone();
    let (s3, tables) =
        match (r.s3_destination_configuration, r.s3_tables_destination_configuration) {
            (Some(s), None) => (Some(s), None),
            (None, Some(t)) => (None, Some(t)),
            _ => return Err(invalid(
                "You must specify either S3DestinationConfiguration or S3TablesDestinationConfiguration, but not both.",
            )),
        };
    let [stream_config] = r.stream_configuration_list.as_slice() else {
        return Err(invalid("Currently, one stream is supported per channel."));
    };
    let stream = k.stream(&StreamTarget { stream_name: None, stream_arn: Some(stream_config.stream_arn.clone()) })?;
    let stream_name = stream.meta().name.clone();
    if stream.meta().settings.mode != sluice_engine::settings::StreamMode::OnDemand {
        return Err(invalid(format!(
            "Channels are only supported for data streams with the on-demand capacity mode; stream {stream_name} under account {} is provisioned.",
            k.config.account_id
        )));
    }
    let existing = k.channels()?;
    if existing.iter().any(|(m, _)| m.name == r.channel_name) {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Channel {} under account {} already exists.", r.channel_name, k.config.account_id),
        ));
    }
    let kind = if tables.is_some() { "S3_TABLES" } else { "S3" };
    let stream_arn = k.stream_arn(&stream_name);
    if existing.iter().any(|(m, _)| m.stream_arn == stream_arn && destination_type(m) == kind) {
        return Err(ApiError::new(
            ErrorKind::LimitExceeded,
            format!(
                "Stream {stream_name} under account {} already has a channel of destination type {kind}; a stream has at most one of each.",
                k.config.account_id
            ),
        ));
    }
    let format = stream_config.record_configuration["RecordFormatType"].as_str().unwrap_or("").to_owned();
    let freshness_given =
        tables.as_ref().or(s3.as_ref()).and_then(|d| d.get("DataFreshnessInSeconds")).and_then(Value::as_i64);
    let freshness = check_freshness(freshness_given.unwrap_or(i64::from(DATA_FRESHNESS_S_DEFAULT)))?;
    let now = k.clock.now_ms();
    let id = channel_id(&r.channel_name, now);
    let meta = ChannelMeta {
        name: r.channel_name.clone(),
        id: id.clone(),
        created_ms: now,
        updated_ms: now,
        role_arn: r.service_execution_role_arn.clone(),
        stream_arn: stream_arn.clone(),
        stream_created_ms: stream.meta().created_ms,
        record_configuration: stream_config.record_configuration.clone(),
        freshness_s: freshness,
        s3: s3.clone().map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("DataFreshnessInSeconds");
            }
            v
        }),
        s3_tables: tables.clone().map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("DataFreshnessInSeconds");
            }
            v
        }),
        encryption: r.encryption_configuration,
        logging: r.logging_configuration.unwrap_or_else(|| json!({"CloudWatchLogs": {"Enabled": false}})),
        tags: r.tags.unwrap_or_default(),
        deleting: false,
    };
    let role = r.service_execution_role_arn;
    let (destination, iceberg) = match (&tables, &s3) {
        (Some(t), _) => {
            if format != "JSON" {
                return Err(invalid(format!(
                    "RecordFormatType {format} is not supported for streaming table destinations by Sluice; use JSON (GSR_JSON needs the Glue Schema Registry)."
                )));
            }
            let i = table_destination(t, &role, freshness)?;
            (i.delivery(), Some(i))
        }
        (None, Some(s)) => (object_destination(s, &role, freshness, &meta, &stream_name, &format)?, None),
        (None, None) => unreachable!("one destination was checked above"),
    };
    let spec = DeliveryStreamSpec {
        name: format!("{DELIVERY_PREFIX}{id}"),
        created_ms: now,
        updated_ms: now,
        version: 1,
        source: SourceSpec::KinesisStream { stream_name, stream_arn, role_arn: role },
        destination,
        schema: None,
        tags: BTreeMap::new(),
        encryption: None,
        iceberg,
        channel: Some(serde_json::to_value(&meta).map_err(super::internal)?),
        direct_put_throughput_hint_mbs: None,
        cluster: None,
    };
    if let Err(e) = sluice_firehose::plan::build(&spec, None, None) {
        return Err(invalid(e));
    }
    match deliveries.create(spec, None) {
        Ok(_) => {}
        Err(CreateError::Exists(_)) => {
            return Err(ApiError::new(ErrorKind::ResourceInUse, "The channel already exists."))
        }
        Err(CreateError::NoSource(name)) => return Err(k.not_found(&name)),
        Err(e) => return Err(super::internal(e)),
    }
    respond(&json!({ "ChannelDescription": k.channel_description(&meta) }))
}

pub fn run_describe(k: &Kinesis, r: ChannelTarget) -> Result<Vec<u8>, ApiError> {
    let (meta, _) = k.channel(&r.channel_arn)?;
    respond(&json!({ "ChannelDescription": k.channel_description(&meta) }))
}

pub fn run_list(k: &Kinesis, r: ListRequest) -> Result<Vec<u8>, ApiError> {
    let limit = r.max_results.map_or(LIST_MAX, |n| n.clamp(1, LIST_MAX as i64) as usize);
    let after = after_token(r.next_token.as_deref())?;
    let mut all: Vec<ChannelMeta> = k
        .channels()?
        .into_iter()
        .map(|(m, _)| m)
        .filter(|m| {
            r.stream_filter.as_ref().is_none_or(|fs| {
                fs.iter().any(|f| {
                    f.stream_arn == m.stream_arn
                        && f.stream_creation_timestamp.is_none_or(|t| super::same_creation(t, m.stream_created_ms))
                })
            })
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let rest: Vec<&ChannelMeta> = all.iter().filter(|m| after.as_ref().is_none_or(|a| m.name > *a)).collect();
    let page: Vec<Value> = rest
        .iter()
        .take(limit)
        .map(|m| {
            let d = k.channel_description(m);
            json!({
                "ChannelName": m.name,
                "ChannelARN": d["ChannelARN"],
                "ChannelId": m.id,
                "ChannelStatus": d["ChannelStatus"],
                "ChannelCreationTimestamp": d["ChannelCreationTimestamp"],
                "ChannelDestinationType": destination_type(m),
                "Streams": [{"StreamARN": m.stream_arn, "StreamCreationTimestamp": epoch_seconds(m.stream_created_ms)}],
            })
        })
        .collect();
    let mut body = json!({ "ChannelSummaries": page });
    if rest.len() > limit {
        body["NextToken"] = name_token(&rest[limit - 1].name).into();
    }
    respond(&body)
}

pub fn run_update(k: &Kinesis, r: UpdateRequest) -> Result<Vec<u8>, ApiError> {
    let (mut meta, entry) = k.channel(&r.channel_arn)?;
    let status = k.channel_status(&meta);
    if status != "ACTIVE" {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Channel {} under account {} not ACTIVE, instead in state {status}",
                meta.name, k.config.account_id
            ),
        ));
    }
    let freshness =
        match (&r.s3_destination_configuration, &r.s3_tables_destination_configuration, destination_type(&meta)) {
            (Some(f), None, "S3") | (None, Some(f), "S3_TABLES") => Some(check_freshness(f.data_freshness_in_seconds)?),
            (None, None, _) => None,
            _ => return Err(invalid("The destination update does not match the channel's destination type.")),
        };
    if freshness.is_none() && r.logging_configuration.is_none() {
        return Err(invalid("UpdateChannel needs a destination update or a logging configuration."));
    }
    if let Some(f) = freshness {
        meta.freshness_s = f;
    }
    if let Some(l) = r.logging_configuration {
        meta.logging = l;
    }
    meta.updated_ms = k.clock.now_ms().max(meta.created_ms + 1);
    let value = serde_json::to_value(&meta).map_err(super::internal)?;
    entry
        .update(|s| {
            let hints = BufferingHints { interval_in_seconds: Some(meta.freshness_s), ..hints(meta.freshness_s) };
            s.destination.buffering_hints = Some(hints);
            if let Some(i) = s.iceberg.as_mut() {
                i.buffering_hints = Some(hints);
            }
            s.channel = Some(value);
        })
        .map_err(super::internal)?;
    respond(&json!({ "ChannelDescription": k.channel_description(&meta) }))
}

pub fn run_delete(k: &Kinesis, r: ChannelTarget) -> Result<Vec<u8>, ApiError> {
    let (mut meta, entry) = k.channel(&r.channel_arn)?;
    if meta.deleting {
        return Err(k.channel_not_found(&r.channel_arn));
    }
    meta.deleting = true;
    let value = serde_json::to_value(&meta).map_err(super::internal)?;
    entry.update(|s| s.channel = Some(value)).map_err(super::internal)?;
    let deliveries = k.deliveries()?.clone();
    let name = entry.name().to_owned();
    // Delivered data stays where it is (AWS: "Data already delivered to the destination is
    // not deleted"); the delivery stream and its buffers go.
    tokio::runtime::Handle::current().spawn(async move {
        if let Err(e) = deliveries.delete(&name).await {
            tracing::error!(channel = %name, error = %e, "deleting the channel's delivery failed");
        }
    });
    no_output()
}

fn destination_type(m: &ChannelMeta) -> &'static str {
    if m.s3_tables.is_some() {
        "S3_TABLES"
    } else {
        "S3"
    }
}

fn check_freshness(s: i64) -> Result<u32, ApiError> {
    match u32::try_from(s) {
        Ok(s) if DATA_FRESHNESS_S_RANGE.contains(&s) => Ok(s),
        _ => Err(invalid(format!(
            "DataFreshnessInSeconds {s} is out of range; it is {} to {} seconds.",
            DATA_FRESHNESS_S_RANGE.start(),
            DATA_FRESHNESS_S_RANGE.end()
        ))),
    }
}

fn hints(freshness_s: u32) -> BufferingHints {
    BufferingHints { size_in_mbs: Some(128), interval_in_seconds: Some(freshness_s) }
}

/// A channel id: 16 hex digits from the name, the time and the process's randomness.
fn channel_id(name: &str, now_ms: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(name.as_bytes());
    h.write_u64(now_ms);
    format!("{:016x}", h.finish())
}

/// The bucket name of `arn:...:s3:::<bucket>`.
fn bucket_of(arn: &str) -> Result<String, ApiError> {
    arn.split_once(":s3:::")
        .map(|(_, b)| b.to_owned())
        .ok_or_else(|| invalid(format!("{arn} is not an S3 bucket ARN.")))
}

fn table_destination(t: &Value, role: &str, freshness: u32) -> Result<IcebergDestination, ApiError> {
    let list = t["S3TablesConfigurationList"].as_array().cloned().unwrap_or_default();
    let [table] = list.as_slice() else {
        return Err(invalid("Currently, one table is supported per channel."));
    };
    let table_bucket_arn = table["TableBucketARN"].as_str().unwrap_or("");
    let table_bucket = table_bucket_arn
        .split_once(":bucket/")
        .map(|(_, b)| b.to_owned())
        .ok_or_else(|| invalid(format!("{table_bucket_arn} is not a table bucket ARN.")))?;
    let dlq = &t["DeadLetterQueueS3Configuration"];
    let dlq_bucket = bucket_of(dlq["BucketARN"].as_str().unwrap_or(""))?;
    let hour: Vec<IdentityField> = table["PartitionSpec"]["PartitionFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["Transform"] == "TIME_HOUR")
        .filter_map(|f| f["SourceName"].as_str().map(|s| IdentityField { source_name: s.to_owned() }))
        .collect();
    let lake_bucket = table_bucket.replace('_', "-");
    sluice_firehose::lake::check_bucket_name(&lake_bucket).map_err(invalid)?;
    sluice_firehose::lake::check_bucket_name(&dlq_bucket).map_err(invalid)?;
    Ok(IcebergDestination {
        destination_table_configuration_list: vec![DestinationTable {
            destination_table_name: table["TableName"].as_str().unwrap_or("").to_owned(),
            destination_database_name: table["Namespace"].as_str().unwrap_or("").to_owned(),
            unique_keys: None,
            partition_spec: Some(TablePartitionSpec { identity: Vec::new(), time_hour: hour }),
            s3_error_output_prefix: None,
        }],
        schema_evolution_configuration: None,
        table_creation_configuration: Some(Switch { enabled: true }),
        buffering_hints: Some(hints(freshness)),
        role_arn: role.to_owned(),
        append_only: Some(true),
        catalog_configuration: CatalogConfiguration {
            catalog_arn: Some(table_bucket_arn.to_owned()),
            warehouse_location: Some(format!("s3://{lake_bucket}")),
        },
        s3_configuration: ExtendedS3Destination {
            role_arn: role.to_owned(),
            bucket_arn: format!("arn:aws:s3:::{dlq_bucket}"),
            error_output_prefix: Some(
                dlq["ErrorOutputPrefix"].as_str().map_or_else(|| "errors/".to_owned(), str::to_owned)
                    + "!{firehose:error-output-type}/",
            ),
            ..ExtendedS3Destination::default()
        },
        compression: table["CompressionType"].as_str().map(str::to_owned),
        ..IcebergDestination::default()
    })
}

/// Objects in a general purpose bucket: records as they are (JSON and STRING one per line),
/// under the key template's folders (its variables `!{channel-name}`, `!{channel-id}`,
/// `!{stream-name}`, `!{yyyy}`, `!{yy}`, `!{MM}`, `!{dd}`, `!{HH}`, `!{mm}`); the object names
/// are Sluice's.
fn object_destination(
    s: &Value,
    role: &str,
    freshness: u32,
    meta: &ChannelMeta,
    stream_name: &str,
    format: &str,
) -> Result<ExtendedS3Destination, ApiError> {
    if format == "GSR_JSON" {
        return Err(invalid("General purpose Amazon S3 buckets do not support the GSR_JSON format."));
    }
    let storage = &s["StorageConfiguration"];
    let bucket = bucket_of(storage["BucketARN"].as_str().unwrap_or(""))?;
    sluice_firehose::lake::check_bucket_name(&bucket).map_err(invalid)?;
    let template = storage["OutputKeyTemplate"].as_str().unwrap_or(
        "kinesis-channel/!{channel-name}/!{channel-id}/!{yyyy}/!{MM}/!{dd}/!{HH}/!{channel-name}-!{channel-id}",
    );
    let folders = template.rsplit_once('/').map_or("", |(f, _)| f);
    let mut prefix = folders
        .replace("!{channel-name}", &meta.name)
        .replace("!{channel-id}", &meta.id)
        .replace("!{stream-name}", stream_name);
    for (var, pattern) in [("yyyy", "yyyy"), ("yy", "yy"), ("MM", "MM"), ("dd", "dd"), ("HH", "HH"), ("mm", "mm")] {
        prefix = prefix.replace(&format!("!{{{var}}}"), &format!("!{{timestamp:{pattern}}}"));
    }
    if !prefix.is_empty() {
        prefix.push('/');
    }
    let compression = match storage["CompressionType"].as_str().unwrap_or("NONE") {
        "GZIP" => "GZIP",
        "ZSTD" => "ZSTD",
        _ => "UNCOMPRESSED",
    };
    let processors = if format == "BYTE_ARRAY" {
        Vec::new()
    } else {
        vec![Processor { kind: "AppendDelimiterToRecord".into(), parameters: Vec::new() }]
    };
    let dlq = &s["DeadLetterQueueS3Configuration"];
    let error_prefix = match dlq["ErrorOutputPrefix"].as_str() {
        Some(p) => format!("{p}!{{firehose:error-output-type}}/"),
        None => format!("kinesis-channel-errors/{}/!{{firehose:error-output-type}}/", meta.name),
    };
    let error_bucket = match dlq["BucketARN"].as_str() {
        Some(arn) => bucket_of(arn)?,
        None => bucket.clone(),
    };
    if error_bucket != bucket {
        return Err(invalid(
            "Sluice writes a channel's dead letters to its destination bucket; use the same BucketARN.",
        ));
    }
    Ok(ExtendedS3Destination {
        role_arn: role.to_owned(),
        bucket_arn: format!("arn:aws:s3:::{bucket}"),
        prefix: Some(prefix),
        error_output_prefix: Some(error_prefix),
        buffering_hints: Some(hints(freshness)),
        compression_format: Some(compression.into()),
        processing_configuration: Some(ProcessingConfiguration { enabled: Some(true), processors }),
        ..ExtendedS3Destination::default()
    })
}
