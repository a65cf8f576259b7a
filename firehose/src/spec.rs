//! Firehose's configuration shapes as the API takes and shows them (PascalCase JSON), and a
//! delivery stream's persisted definition (`firehose/<name>/delivery.json`).
//!
//! Shapes and defaults follow the botocore service model `firehose/2015-08-04`; members
//! Sluice does not act on (encryption, CloudWatch logging, S3 backup) are kept and shown back
//! as given.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schema::FieldSpec;

/// `BufferingHints.SizeInMBs` default, MiB: 5. Source: Firehose API reference.
pub const BUFFER_SIZE_MB_DEFAULT: u32 = 5;
/// `BufferingHints.SizeInMBs` range, MiB: 1–128. Source: Firehose API reference.
pub const BUFFER_SIZE_MB_RANGE: std::ops::RangeInclusive<u32> = 1..=128;
/// `BufferingHints.IntervalInSeconds` default, s: 60 (Sluice's default; AWS's is 300).
pub const BUFFER_INTERVAL_S_DEFAULT: u32 = 60;
/// `BufferingHints.IntervalInSeconds` range, s: 0–900. Source: Firehose API reference.
pub const BUFFER_INTERVAL_S_RANGE: std::ops::RangeInclusive<u32> = 0..=900;
/// How long failed S3 writes are retried before the records go to the error output prefix,
/// s: 300 (`RetryOptions.DurationInSeconds`, range 0–7,200; AWS Firehose API reference).
pub const RETRY_DURATION_S_DEFAULT: u32 = 300;

/// `BufferingHints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BufferingHints {
    /// Flush when the buffer holds this many MiB (1–128).
    #[serde(rename = "SizeInMBs", skip_serializing_if = "Option::is_none")]
    pub size_in_mbs: Option<u32>,
    /// Flush when the oldest buffered record has waited this many seconds (0–900).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_in_seconds: Option<u32>,
}

impl Default for BufferingHints {
    fn default() -> Self {
        Self { size_in_mbs: Some(BUFFER_SIZE_MB_DEFAULT), interval_in_seconds: Some(BUFFER_INTERVAL_S_DEFAULT) }
    }
}

impl BufferingHints {
    /// Each member given, or its default: what a description shows.
    pub fn filled(self) -> Self {
        let d = Self::default();
        Self {
            size_in_mbs: self.size_in_mbs.or(d.size_in_mbs),
            interval_in_seconds: self.interval_in_seconds.or(d.interval_in_seconds),
        }
    }

    /// Flush size, bytes.
    pub fn size_bytes(&self) -> usize {
        (self.size_in_mbs.unwrap_or(BUFFER_SIZE_MB_DEFAULT) as usize) << 20
    }

    /// Flush interval, ms.
    pub fn interval_ms(&self) -> u64 {
        u64::from(self.interval_in_seconds.unwrap_or(BUFFER_INTERVAL_S_DEFAULT)) * 1000
    }
}

/// `ProcessorParameter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessorParameter {
    /// `LambdaArn`, `NumberOfRetries`, `MetadataExtractionQuery`, `JsonParsingEngine`, `Delimiter`, ...
    pub parameter_name: String,
    /// Its value.
    pub parameter_value: String,
}

/// `Processor`: one step of the processing configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Processor {
    /// `Lambda`, `MetadataExtraction`, `AppendDelimiterToRecord`, ...
    #[serde(rename = "Type")]
    pub kind: String,
    /// Its parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<ProcessorParameter>,
}

impl Processor {
    /// The value of parameter `name`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.iter().find(|p| p.parameter_name == name).map(|p| p.parameter_value.as_str())
    }
}

/// `ProcessingConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessingConfiguration {
    /// Whether processing runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The processors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processors: Vec<Processor>,
}

impl ProcessingConfiguration {
    /// The enabled processors of `kind`.
    pub fn processors_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Processor> + 'a {
        self.processors.iter().filter(move |p| self.enabled.unwrap_or(false) && p.kind == kind)
    }
}

/// `SchemaConfiguration`: where the schema of format conversion comes from. In Sluice the
/// Glue Data Catalog is a folder: `DatabaseName` and `TableName` name the file
/// `<schema_dir>/<DatabaseName>/<TableName>.json` (or `.toml`). Without a `TableName` the
/// schema is inferred from the first buffer and then fixed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SchemaConfiguration {
    /// Role (kept, not used).
    #[serde(rename = "RoleARN", skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// Catalog id (kept, not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_id: Option<String>,
    /// Folder under the schema directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_name: Option<String>,
    /// Schema file name, without extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_name: Option<String>,
    /// Region (kept, not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Version (kept; `LATEST`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

/// `ParquetSerDe`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ParquetSerDe {
    /// Row group size target, bytes (AWS: at least 64 MiB, default 256 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size_bytes: Option<u64>,
    /// Page size, bytes (AWS: at least 64 KiB, default 1 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size_bytes: Option<u64>,
    /// `SNAPPY` (default), `GZIP`, `UNCOMPRESSED`; Sluice adds `ZSTD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Dictionary encoding (default on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_dictionary_compression: Option<bool>,
    /// Padding (kept, not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_padding_bytes: Option<u64>,
    /// `V1` (default) or `V2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writer_version: Option<String>,
}

/// `Serializer`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Serializer {
    /// Parquet output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parquet_ser_de: Option<ParquetSerDe>,
    /// ORC output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orc_ser_de: Option<OrcSerDe>,
}

/// `OrcSerDe`: ORC output settings (AWS Firehose API reference, OrcSerDe). Which of them
/// Sluice's ORC writer honours is [`crate::convert::check_orc`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OrcSerDe {
    /// Stripe size target, bytes (AWS: at least 8 MiB, default 64 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stripe_size_bytes: Option<u64>,
    /// HDFS block size for padding, bytes (AWS: at least 64 MiB, default 256 MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size_bytes: Option<u64>,
    /// Rows between row index entries (AWS: at least 1,000, default 10,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub row_index_stride: Option<u64>,
    /// Pad stripes to HDFS block boundaries (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_padding: Option<bool>,
    /// Padding tolerance, a fraction of the stripe size (default 0.05).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padding_tolerance: Option<f64>,
    /// `NONE`, `ZLIB` or `SNAPPY` (AWS's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// Columns to write bloom filters for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bloom_filter_columns: Option<Vec<String>>,
    /// Bloom filter false positive probability (default 0.05).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bloom_filter_false_positive_probability: Option<f64>,
    /// Fraction of non-null rows under which a column is dictionary encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dictionary_key_threshold: Option<f64>,
    /// `V0_11` or `V0_12` (default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format_version: Option<String>,
}

/// `OutputFormatConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OutputFormatConfiguration {
    /// The serializer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serializer: Option<Serializer>,
}

/// `DataFormatConversionConfiguration`: JSON records to Parquet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DataFormatConversionConfiguration {
    /// Whether conversion runs (default true when the configuration is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Where the schema comes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_configuration: Option<SchemaConfiguration>,
    /// Input format (JSON; kept as given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_format_configuration: Option<serde_json::Value>,
    /// Output format (Parquet or ORC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_format_configuration: Option<OutputFormatConfiguration>,
}

impl DataFormatConversionConfiguration {
    /// Whether records are converted to Parquet.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The Parquet settings (defaults when none are given).
    pub fn parquet(&self) -> ParquetSerDe {
        self.output_format_configuration
            .as_ref()
            .and_then(|o| o.serializer.as_ref())
            .and_then(|s| s.parquet_ser_de.clone())
            .unwrap_or_default()
    }

    /// The ORC settings, when the output is ORC (`OrcSerDe` given).
    pub fn orc(&self) -> Option<&OrcSerDe> {
        self.output_format_configuration.as_ref()?.serializer.as_ref()?.orc_ser_de.as_ref()
    }
}

/// `RetryOptions`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RetryOptions {
    /// Seconds to retry (0–7,200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_in_seconds: Option<u32>,
}

/// `DynamicPartitioningConfiguration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DynamicPartitioningConfiguration {
    /// Retry settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_options: Option<RetryOptions>,
    /// Whether records are partitioned by key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `ExtendedS3DestinationConfiguration` (create), also the stored destination and, with
/// defaults filled in, `ExtendedS3DestinationDescription`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtendedS3Destination {
    /// IAM role (kept; Sluice's object store credentials come from its config).
    #[serde(rename = "RoleARN", default)]
    pub role_arn: String,
    /// `arn:aws:s3:::<bucket>`: a bucket of the configured object store.
    #[serde(rename = "BucketARN", default)]
    pub bucket_arn: String,
    /// Object key prefix, with expressions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Prefix of failed records, with expressions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_output_prefix: Option<String>,
    /// When to flush.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffering_hints: Option<BufferingHints>,
    /// `UNCOMPRESSED` (default), `GZIP`; Sluice adds `ZSTD`. Raw output only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression_format: Option<String>,
    /// Encryption (kept, not applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_configuration: Option<serde_json::Value>,
    /// Logging (kept, not applied).
    #[serde(rename = "CloudWatchLoggingOptions", skip_serializing_if = "Option::is_none")]
    pub cloud_watch_logging_options: Option<serde_json::Value>,
    /// Processors: `Lambda` (WASM transforms), `MetadataExtraction`, `AppendDelimiterToRecord`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_configuration: Option<ProcessingConfiguration>,
    /// `Disabled` (default) or `Enabled`: every source record, as received (before any
    /// transform), also lands in [`Self::s3_backup_configuration`]. Enabled stays enabled
    /// (AWS Firehose API reference, `ExtendedS3DestinationUpdate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3_backup_mode: Option<String>,
    /// `S3BackupConfiguration` (create) or `S3BackupUpdate` (update), an
    /// `S3DestinationConfiguration`: the backup's bucket, prefix (`YYYY/MM/DD/HH/` by default)
    /// and compression; its buffering hints are kept (backups go with each delivery).
    #[serde(
        rename = "S3BackupConfiguration",
        alias = "S3BackupUpdate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub s3_backup_configuration: Option<Box<ExtendedS3Destination>>,
    /// JSON to Parquet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_format_conversion_configuration: Option<DataFormatConversionConfiguration>,
    /// Partitioning by record content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_partitioning_configuration: Option<DynamicPartitioningConfiguration>,
    /// Overrides the object extension (`.parquet`, `.gz`, `.zst`, or none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_extension: Option<String>,
    /// Time zone of timestamps in keys; only `UTC` is supported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_time_zone: Option<String>,
}

impl ExtendedS3Destination {
    /// The bucket name of `BucketARN`.
    pub fn bucket(&self) -> Option<&str> {
        let name = self.bucket_arn.strip_prefix("arn:")?.split_once(":s3:::")?.1;
        (!name.is_empty()
            && name.len() <= 255
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')))
        .then_some(name)
    }

    /// The backup destination, when `S3BackupMode` is `Enabled`.
    pub fn backup(&self) -> Option<&ExtendedS3Destination> {
        (self.s3_backup_mode.as_deref() == Some("Enabled")).then_some(self.s3_backup_configuration.as_deref()).flatten()
    }

    /// Whether records are partitioned by key.
    pub fn dynamic_partitioning(&self) -> bool {
        self.dynamic_partitioning_configuration.and_then(|d| d.enabled).unwrap_or(false)
    }

    /// The format conversion settings, when conversion is on.
    pub fn conversion(&self) -> Option<&DataFormatConversionConfiguration> {
        self.data_format_conversion_configuration.as_ref().filter(|c| c.is_enabled())
    }

    /// The processing configuration (empty when none).
    pub fn processing(&self) -> ProcessingConfiguration {
        self.processing_configuration.clone().unwrap_or_default()
    }

    /// How long S3 failures are retried, ms.
    pub fn retry_ms(&self) -> u64 {
        let s = self
            .dynamic_partitioning_configuration
            .and_then(|d| d.retry_options)
            .and_then(|r| r.duration_in_seconds)
            .unwrap_or(RETRY_DURATION_S_DEFAULT);
        u64::from(s) * 1000
    }

    /// The description AWS shows: defaults filled in.
    pub fn described(&self) -> Self {
        let mut d = self.clone();
        d.buffering_hints = Some(d.buffering_hints.unwrap_or_default().filled());
        d.compression_format.get_or_insert_with(|| "UNCOMPRESSED".into());
        d.encryption_configuration.get_or_insert_with(|| serde_json::json!({"NoEncryptionConfig": "NoEncryption"}));
        d.cloud_watch_logging_options.get_or_insert_with(|| serde_json::json!({"Enabled": false}));
        d.s3_backup_mode.get_or_insert_with(|| "Disabled".into());
        d.s3_backup_configuration = d.s3_backup_configuration.map(|b| Box::new(b.described()));
        // "Defaults to true" (AWS Firehose API reference, DataFormatConversionConfiguration).
        if let Some(c) = d.data_format_conversion_configuration.as_mut() {
            c.enabled.get_or_insert(true);
        }
        d
    }

    /// Applies an `ExtendedS3DestinationUpdate`: members it gives replace ours.
    pub fn merge(&mut self, update: ExtendedS3DestinationUpdate) {
        let u = update.0;
        macro_rules! take {
            ($($f:ident),*) => { $( if u.$f.is_some() { self.$f = u.$f; } )* };
        }
        if !u.role_arn.is_empty() {
            self.role_arn = u.role_arn;
        }
        if !u.bucket_arn.is_empty() {
            self.bucket_arn = u.bucket_arn;
        }
        match (&mut self.s3_backup_configuration, u.s3_backup_configuration) {
            (Some(b), Some(update)) => b.merge(ExtendedS3DestinationUpdate(*update)),
            (b @ None, update) => *b = update,
            (Some(_), None) => {}
        }
        // Members of DynamicPartitioningConfiguration an update leaves out keep their values
        // (AWS Firehose API reference, UpdateDestination).
        let dynamic = match (self.dynamic_partitioning_configuration, u.dynamic_partitioning_configuration) {
            (Some(old), Some(new)) => Some(DynamicPartitioningConfiguration {
                retry_options: new.retry_options.or(old.retry_options),
                enabled: new.enabled.or(old.enabled),
            }),
            (old, new) => new.or(old),
        };
        self.dynamic_partitioning_configuration = dynamic;
        take!(
            prefix,
            error_output_prefix,
            buffering_hints,
            compression_format,
            encryption_configuration,
            cloud_watch_logging_options,
            processing_configuration,
            s3_backup_mode,
            data_format_conversion_configuration,
            file_extension,
            custom_time_zone
        );
    }
}

/// `ExtendedS3DestinationUpdate`: the same members, none required.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct ExtendedS3DestinationUpdate(pub ExtendedS3Destination);

/// `Enabled` of `SchemaEvolutionConfiguration` and `TableCreationConfiguration`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Switch {
    /// On or off.
    #[serde(default)]
    pub enabled: bool,
}

/// `PartitionField` of a destination table's `PartitionSpec`: an identity partition on
/// `SourceName`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdentityField {
    /// The column.
    pub source_name: String,
}

/// `PartitionSpec` of a destination table (used when Sluice creates the table).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TablePartitionSpec {
    /// Identity partition fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity: Vec<IdentityField>,
    /// Hour partition fields of a timestamp column (Kinesis channels' `TIME_HOUR`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_hour: Vec<IdentityField>,
}

/// `DestinationTableConfiguration`: one table of an Iceberg destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationTable {
    /// The table (1–255 of `[a-zA-Z0-9._]`).
    pub destination_table_name: String,
    /// Its namespace ("database").
    pub destination_database_name: String,
    /// Columns identifying a row, for updates and deletes (kept; Sluice only appends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_keys: Option<Vec<String>>,
    /// Partitioning of a table Sluice creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_spec: Option<TablePartitionSpec>,
    /// Error prefix of this table's failed records (else `S3Configuration.ErrorOutputPrefix`).
    #[serde(rename = "S3ErrorOutputPrefix", default, skip_serializing_if = "Option::is_none")]
    pub s3_error_output_prefix: Option<String>,
}

/// `CatalogConfiguration`: Sluice's catalog stands in for the Glue Data Catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CatalogConfiguration {
    /// `arn:aws:glue:<region>:<account>:catalog` (kept).
    #[serde(rename = "CatalogARN", default, skip_serializing_if = "Option::is_none")]
    pub catalog_arn: Option<String>,
    /// `s3://<bucket>/<path>`: where tables Sluice creates keep their files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warehouse_location: Option<String>,
}

/// `IcebergDestinationConfiguration` (create), also the stored destination and, with
/// defaults filled in, `IcebergDestinationDescription`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IcebergDestination {
    /// The tables; Sluice writes to one table per delivery stream.
    #[serde(default)]
    pub destination_table_configuration_list: Vec<DestinationTable>,
    /// Whether new fields of records become new (nullable) columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_evolution_configuration: Option<Switch>,
    /// Whether a missing table is created (schema from `SchemaConfiguration` files or
    /// inferred from the first buffer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_creation_configuration: Option<Switch>,
    /// When to flush.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffering_hints: Option<BufferingHints>,
    /// Logging (kept, not applied).
    #[serde(rename = "CloudWatchLoggingOptions", default, skip_serializing_if = "Option::is_none")]
    pub cloud_watch_logging_options: Option<serde_json::Value>,
    /// Processors: `Lambda` (WASM transforms), `AppendDelimiterToRecord`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_configuration: Option<ProcessingConfiguration>,
    /// `FailedDataOnly` (default) or `AllData` (kept; failed records always go to the error
    /// prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_backup_mode: Option<String>,
    /// How long failed commits are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_options: Option<RetryOptions>,
    /// IAM role (kept).
    #[serde(rename = "RoleARN", default)]
    pub role_arn: String,
    /// Append only (Sluice only appends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append_only: Option<bool>,
    /// The catalog.
    #[serde(default)]
    pub catalog_configuration: CatalogConfiguration,
    /// The bucket of error (and backup) objects.
    #[serde(rename = "S3Configuration", default)]
    pub s3_configuration: ExtendedS3Destination,
    /// Data file compression (`ZSTD` when absent; Kinesis channels' `CompressionType`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
}

impl IcebergDestination {
    /// The destination the pipeline runs with: the S3 configuration's bucket and error
    /// prefix, this destination's buffering and processing.
    pub fn delivery(&self) -> ExtendedS3Destination {
        let s3 = &self.s3_configuration;
        let table = self.destination_table_configuration_list.first();
        ExtendedS3Destination {
            role_arn: self.role_arn.clone(),
            bucket_arn: s3.bucket_arn.clone(),
            prefix: s3.prefix.clone(),
            error_output_prefix: table
                .and_then(|t| t.s3_error_output_prefix.clone())
                .filter(|p| !p.is_empty())
                .or_else(|| s3.error_output_prefix.clone()),
            buffering_hints: self.buffering_hints,
            processing_configuration: self.processing_configuration.clone(),
            dynamic_partitioning_configuration: self
                .retry_options
                .map(|r| DynamicPartitioningConfiguration { retry_options: Some(r), enabled: Some(false) }),
            ..ExtendedS3Destination::default()
        }
    }

    /// Applies an `IcebergDestinationUpdate`: members it gives replace ours (the table list
    /// and catalog too; the tables' data stays where it is).
    pub fn merge(&mut self, u: IcebergDestination) {
        macro_rules! take {
            ($($f:ident),*) => { $( if u.$f.is_some() { self.$f = u.$f; } )* };
        }
        take!(
            schema_evolution_configuration,
            table_creation_configuration,
            buffering_hints,
            cloud_watch_logging_options,
            processing_configuration,
            s3_backup_mode,
            retry_options,
            append_only
        );
        if !u.destination_table_configuration_list.is_empty() {
            self.destination_table_configuration_list = u.destination_table_configuration_list;
        }
        if !u.role_arn.is_empty() {
            self.role_arn = u.role_arn;
        }
        if u.catalog_configuration != CatalogConfiguration::default() {
            self.catalog_configuration = u.catalog_configuration;
        }
        if u.s3_configuration != ExtendedS3Destination::default() {
            self.s3_configuration.merge(ExtendedS3DestinationUpdate(u.s3_configuration));
        }
    }

    /// The description AWS shows: defaults filled in.
    pub fn described(&self) -> serde_json::Value {
        let mut d = self.clone();
        d.buffering_hints = Some(d.buffering_hints.unwrap_or_default().filled());
        d.s3_backup_mode.get_or_insert_with(|| "FailedDataOnly".into());
        d.cloud_watch_logging_options.get_or_insert_with(|| serde_json::json!({"Enabled": false}));
        d.append_only.get_or_insert(false);
        d.retry_options.get_or_insert(RetryOptions { duration_in_seconds: Some(RETRY_DURATION_S_DEFAULT) });
        let mut v = serde_json::to_value(&d).expect("a destination serializes");
        let s3 = v.as_object_mut().expect("an object").remove("S3Configuration").unwrap_or_default();
        let s3: ExtendedS3Destination = serde_json::from_value(s3).unwrap_or_default();
        let described = s3.described();
        v["S3DestinationDescription"] = serde_json::json!({
            "RoleARN": described.role_arn,
            "BucketARN": described.bucket_arn,
            "Prefix": described.prefix,
            "ErrorOutputPrefix": described.error_output_prefix,
            "BufferingHints": described.buffering_hints,
            "CompressionFormat": described.compression_format,
            "EncryptionConfiguration": described.encryption_configuration,
            "CloudWatchLoggingOptions": described.cloud_watch_logging_options,
        });
        if let Some(o) = v["S3DestinationDescription"].as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        v
    }
}

/// Where a delivery stream's records come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum SourceSpec {
    /// `DirectPut`: PutRecord / PutRecordBatch, into the delivery stream's own internal stream.
    DirectPut,
    /// `KinesisStreamAsSource`: a Kinesis stream, read from LATEST at creation.
    KinesisStream {
        /// The stream's name.
        stream_name: String,
        /// The stream's ARN as given.
        stream_arn: String,
        /// The role as given (kept).
        role_arn: String,
    },
}

/// A delivery stream's persisted definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryStreamSpec {
    /// Name, 1–64 characters of `[a-zA-Z0-9_.-]`.
    pub name: String,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    /// Last configuration change, ms since the Unix epoch.
    pub updated_ms: u64,
    /// `VersionId`: 1 at creation, one more on every `UpdateDestination`.
    pub version: u64,
    /// The source.
    pub source: SourceSpec,
    /// The destination, as configured.
    pub destination: ExtendedS3Destination,
    /// The schema of format conversion once known: from the schema file at creation, or
    /// inferred from the first buffer and then fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<FieldSpec>>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Server-side encryption as last started or stopped (`None`: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionSpec>,
    /// An Apache Iceberg destination: records land in a table instead of objects;
    /// `destination` then holds its [`IcebergDestination::delivery`] settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iceberg: Option<IcebergDestination>,
    /// The Kinesis channel this delivery stream runs (its description, kept for the Kinesis
    /// API); such a delivery stream is not a Firehose stream and is not listed as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<serde_json::Value>,
    /// `DirectPutSourceConfiguration.ThroughputHintInMBs` (1–100 MiB/s; kept and shown back
    /// in `DirectPutSourceDescription`, Sluice sizes nothing by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_put_throughput_hint_mbs: Option<u32>,
    /// The cluster whose catalog holds this delivery stream (`None`: this node's own); see
    /// [`crate::coordination`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::coordination::ClusterDelivery>,
}

/// Server-side encryption of a delivery stream, as `StartDeliveryStreamEncryption` set it.
/// Recorded and shown; Sluice's buffers on disk are not encrypted (see the README).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionSpec {
    /// On (started) or off (stopped).
    pub enabled: bool,
    /// `AWS_OWNED_CMK` or `CUSTOMER_MANAGED_CMK`.
    pub key_type: String,
    /// The KMS key of `CUSTOMER_MANAGED_CMK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_arn: Option<String>,
    /// When it was last started or stopped, ms since the Unix epoch.
    pub changed_ms: u64,
}

impl DeliveryStreamSpec {
    /// The Kinesis stream this delivery stream reads: its source stream, or for a
    /// `DirectPut` delivery stream of a cluster the cluster's stream its records are put
    /// into ([`crate::coordination::ClusterDelivery::direct_put_stream`]). `None` for a
    /// node's own `DirectPut` delivery stream, which reads its internal stream.
    pub fn source_stream(&self) -> Option<String> {
        match (&self.source, &self.cluster) {
            (SourceSpec::KinesisStream { stream_name, .. }, _) => Some(stream_name.clone()),
            (SourceSpec::DirectPut, Some(c)) => Some(c.direct_put_stream(&self.name)),
            (SourceSpec::DirectPut, None) => None,
        }
    }

    /// `DeliveryStreamType`.
    pub fn stream_type(&self) -> &'static str {
        match self.source {
            SourceSpec::DirectPut => "DirectPut",
            SourceSpec::KinesisStream { .. } => "KinesisStreamAsSource",
        }
    }
}
