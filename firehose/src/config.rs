//! Delivery streams declared in `sluice.toml` (`[[delivery_streams]]`), created at start
//! when missing, through the same checks as `CreateDeliveryStream`.
//!
//! ```toml
//! [[delivery_streams]]
//! name = "telemetry-lake"
//! kinesis_stream = "telemetry"        # omit for a DirectPut delivery stream
//! bucket = "lake"
//! prefix = "telemetry/station=!{partitionKeyFromQuery:station}/!{timestamp:yyyy/MM}/"
//! error_output_prefix = "errors/telemetry/!{firehose:error-output-type}/"
//! buffer_size_mb = 64
//! buffer_interval_s = 60
//! format = "parquet"                 # or "raw"
//! schema = "beijing/air_quality"     # <schema_dir>/beijing/air_quality.json; omit to infer
//! partition_query = "{station: .station}"
//! ```

use serde::Deserialize;

use crate::spec::{BUFFER_INTERVAL_S_DEFAULT, BUFFER_SIZE_MB_DEFAULT};

/// Output format of a declared delivery stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Records as they are, concatenated (see `compression`, `append_newline`).
    #[default]
    Raw,
    /// JSON records converted to Parquet.
    Parquet,
}

/// One `[[delivery_streams]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryStreamDeclaration {
    /// Delivery stream name.
    pub name: String,
    /// Kinesis stream to read (from LATEST at creation); absent for `DirectPut`.
    pub kinesis_stream: Option<String>,
    /// Bucket of the configured lake.
    pub bucket: String,
    /// Object prefix, with Firehose's expressions.
    pub prefix: Option<String>,
    /// Error output prefix.
    pub error_output_prefix: Option<String>,
    /// Flush size, MiB (1–128; default 5).
    #[serde(default = "size_default")]
    pub buffer_size_mb: u32,
    /// Flush interval, s (0–900; default 60).
    #[serde(default = "interval_default")]
    pub buffer_interval_s: u32,
    /// `raw` (default) or `parquet`.
    #[serde(default)]
    pub format: OutputFormat,
    /// Parquet compression: `SNAPPY` (default), `ZSTD`, `GZIP`, `UNCOMPRESSED`.
    pub parquet_compression: Option<String>,
    /// `<database>/<table>` of a schema file under the schema directory; inferred when absent.
    pub schema: Option<String>,
    /// Raw object compression: `UNCOMPRESSED` (default), `GZIP`, `ZSTD`.
    pub compression: Option<String>,
    /// Adds `\n` after every raw record (`AppendDelimiterToRecord`).
    #[serde(default)]
    pub append_newline: bool,
    /// jq query for `!{partitionKeyFromQuery:k}` (turns on dynamic partitioning).
    pub partition_query: Option<String>,
    /// WASM transform (`Lambda` processor's `LambdaArn`).
    pub transform: Option<String>,
    /// Seconds to retry failed S3 writes (default 300).
    pub retry_duration_s: Option<u32>,
}

fn size_default() -> u32 {
    BUFFER_SIZE_MB_DEFAULT
}

fn interval_default() -> u32 {
    BUFFER_INTERVAL_S_DEFAULT
}

impl DeliveryStreamDeclaration {
    /// The `CreateDeliveryStream` request body this declaration stands for. `region` and
    /// `account_id` make the Kinesis stream's ARN.
    pub fn create_request(&self, region: &str, account_id: &str) -> serde_json::Value {
        let mut processors = Vec::new();
        if let Some(q) = &self.partition_query {
            processors.push(serde_json::json!({"Type": "MetadataExtraction", "Parameters": [
                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": q},
                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}));
        }
        if self.append_newline {
            processors.push(serde_json::json!({"Type": "AppendDelimiterToRecord"}));
        }
        if let Some(t) = &self.transform {
            processors.push(serde_json::json!({"Type": "Lambda", "Parameters": [
                {"ParameterName": "LambdaArn", "ParameterValue": t}]}));
        }
        let mut d = serde_json::json!({
            "RoleARN": format!("arn:aws:iam::{account_id}:role/sluice"),
            "BucketARN": format!("arn:aws:s3:::{}", self.bucket),
            "BufferingHints": {"SizeInMBs": self.buffer_size_mb, "IntervalInSeconds": self.buffer_interval_s},
        });
        if let Some(p) = &self.prefix {
            d["Prefix"] = p.clone().into();
        }
        if let Some(p) = &self.error_output_prefix {
            d["ErrorOutputPrefix"] = p.clone().into();
        }
        if let Some(c) = &self.compression {
            d["CompressionFormat"] = c.clone().into();
        }
        if !processors.is_empty() {
            d["ProcessingConfiguration"] = serde_json::json!({"Enabled": true, "Processors": processors});
        }
        if self.partition_query.is_some() {
            d["DynamicPartitioningConfiguration"] = serde_json::json!({"Enabled": true});
        }
        if let Some(r) = self.retry_duration_s {
            d["DynamicPartitioningConfiguration"]["RetryOptions"] = serde_json::json!({"DurationInSeconds": r});
            if self.partition_query.is_none() {
                d["DynamicPartitioningConfiguration"]["Enabled"] = false.into();
            }
        }
        if self.format == OutputFormat::Parquet {
            let mut schema = serde_json::json!({});
            if let Some((db, table)) = self.schema.as_deref().and_then(|s| s.split_once('/')) {
                schema = serde_json::json!({"DatabaseName": db, "TableName": table});
            }
            let mut serde = serde_json::json!({});
            if let Some(c) = &self.parquet_compression {
                serde["Compression"] = c.clone().into();
            }
            d["DataFormatConversionConfiguration"] = serde_json::json!({
                "Enabled": true,
                "SchemaConfiguration": schema,
                "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
                "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": serde}},
            });
        }
        let mut r = serde_json::json!({
            "DeliveryStreamName": self.name,
            "ExtendedS3DestinationConfiguration": d,
        });
        if let Some(k) = &self.kinesis_stream {
            r["DeliveryStreamType"] = "KinesisStreamAsSource".into();
            r["KinesisStreamSourceConfiguration"] = serde_json::json!({
                "KinesisStreamARN": format!("arn:aws:kinesis:{region}:{account_id}:stream/{k}"),
                "RoleARN": format!("arn:aws:iam::{account_id}:role/sluice"),
            });
        } else {
            r["DeliveryStreamType"] = "DirectPut".into();
        }
        r
    }
}
