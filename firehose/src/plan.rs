//! Planning a delivery: from one shard's buffered records to the objects that land them.
//!
//! Planning is a pure function of the records, the delivery stream's configuration and
//! the shard range, so delivering the same range again yields the same keys (only the
//! `attemptEndingTimestamp` of error records differs). The steps, in Firehose's order:
//! transform (WASM, Lambda's contract), partition keys (`MetadataExtraction`), grouping by
//! partition, format conversion or raw concatenation, object keys, and error records for
//! every record that failed a step.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::stream::shard_id;

use crate::convert::{conversion_threads, parquet_compression, ColumnarEncoder, RawCompression};
use crate::deaggregate::{decode_delimiter, Deaggregation};
use crate::deserializer::JsonSerDe;
use crate::error_output::{self, Failure, KinesisRecordMetadata, FORMAT_CONVERSION_FAILED, PROCESSING_FAILED};
use crate::object_key::{object_name, ObjectId, ObjectOrigin};
use crate::partition::{PartitionKeys, PartitionQuery};
use crate::prefix::{check_pair, Prefix, PrefixRole, PrefixValues};
use crate::spec::{DeliveryStreamSpec, ParquetSerDe};

/// Error code of a record whose partition keys could not be extracted. Source: AWS Firehose
/// developer guide, "Handle errors in dynamic partitioning".
pub const METADATA_EXTRACTION_FAILED: &str = "DynamicPartitioning.MetadataExtractionFailed";

/// Most partitions one delivery writes to: 500, Firehose's active partitions per delivery
/// stream. Records of partitions past it go to the error prefix. Source: AWS Firehose
/// developer guide, "Dynamic partitioning" limits.
pub const ACTIVE_PARTITIONS_MAX: usize = 500;

/// Error code of a record whose partition is past [`ACTIVE_PARTITIONS_MAX`].
pub const ACTIVE_PARTITIONS_EXCEEDED: &str = "DynamicPartitioning.ActivePartitionsLimitExceeded";

/// A record read from the delivery stream's source shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    /// Sequence number in the shard's log.
    pub sequence: u64,
    /// Arrival time, ms since the Unix epoch.
    pub arrival_ms: u64,
    /// Partition key (Kinesis sources).
    pub partition_key: String,
    /// The data.
    pub data: Vec<u8>,
}

/// What a transform made of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransformOutcome {
    /// `Ok`: the new data, and partition keys for `!{partitionKeyFromLambda:k}`.
    Ok {
        /// The transformed record.
        data: Vec<u8>,
        /// `metadata.partitionKeys`.
        partition_keys: PartitionKeys,
    },
    /// `Dropped`: intentionally left out.
    Dropped,
    /// `ProcessingFailed` (or a failure of the whole invocation): to the error prefix.
    Failed(Failure),
}

/// A record transform: Lambda's contract. Implemented by the WASM host.
pub trait RecordTransform: Send + Sync + std::fmt::Debug {
    /// One outcome per input record, in input order. `kinesis_shard` is the source shard's
    /// index when the delivery stream reads a Kinesis stream.
    fn process(&self, records: &[SourceRecord], kinesis_shard: Option<u32>) -> Vec<TransformOutcome>;
    /// The name shown as `lambdaArn` in error records.
    fn arn(&self) -> &str;
}

/// The output format.
#[derive(Debug, Clone)]
pub enum Format {
    /// Parquet or ORC, with a fixed schema.
    Columnar(Box<ColumnarEncoder>),
    /// Parquet or ORC, with a schema still to infer from the first buffer.
    Inferred,
    /// Rows of an Iceberg table, in its columns (the table writer makes the files).
    Table(Box<ColumnarEncoder>),
    /// Raw records, concatenated and optionally compressed.
    Raw(RawCompression),
}

/// One object to write.
#[derive(Debug, Clone)]
pub struct PlannedObject {
    /// Its key in the bucket.
    pub key: String,
    /// Its contents.
    pub bytes: Vec<u8>,
    /// Its rows instead, for a table ([`Format::Table`]); empty for objects.
    pub batches: Vec<arrow_array::RecordBatch>,
    /// Input indexes of the records it holds.
    pub records: Vec<usize>,
    /// `None` for delivered records, else the error output type.
    pub error_output_type: Option<&'static str>,
}

/// The leading records of a shard buffer converted to Arrow rows while the buffer filled
/// ([`Pipeline::predecode`]), so that a delivery that comes due (by interval or size) only
/// decodes the rest and writes the file. It is used only by the configuration version that
/// made it and only for a buffer that starts where it starts.
#[derive(Debug)]
pub struct Predecoded {
    version: u64,
    first_sequence: u64,
    last_sequence: u64,
    /// Records decoded, at least 1.
    records: usize,
    decoded: crate::convert::Decoded,
}

impl Predecoded {
    /// How many leading records of the buffer are decoded.
    pub fn records(&self) -> usize {
        self.records
    }
}

/// The objects of one delivery and what became of each record.
#[derive(Debug, Default)]
pub struct Plan {
    /// Objects to write: delivered ones first, then error objects.
    pub objects: Vec<PlannedObject>,
    /// Records in delivered objects.
    pub delivered: usize,
    /// Records a transform dropped.
    pub dropped: usize,
    /// Records sent to the error prefix, by error output type.
    pub failed: BTreeMap<&'static str, usize>,
}

impl Pipeline {
    /// The same pipeline naming objects with configuration version `version`: a task
    /// resumed after an `UpdateDestination` names what it lands as it began to.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }
}

/// A delivery stream's configuration, compiled for planning.
#[derive(Debug, Clone)]
pub struct Pipeline {
    name: String,
    version: u64,
    /// The destination bucket.
    pub bucket: String,
    prefix: Prefix,
    error_prefix: Prefix,
    query: Option<Arc<PartitionQuery>>,
    deaggregation: Option<Deaggregation>,
    delimiter: Vec<u8>,
    /// The output format.
    pub format: Format,
    extension: String,
    kinesis_source: bool,
    transform: Option<Arc<dyn RecordTransform>>,
    backup: Option<Backup>,
    /// [`ObjectOrigin::tag`] of every object planned: empty but for redrives.
    pub origin_tag: String,
}

/// Where source records are backed up (`S3BackupMode` `Enabled`).
#[derive(Debug, Clone)]
struct Backup {
    bucket: String,
    prefix: Prefix,
    compression: RawCompression,
}

impl Backup {
    /// The backup of `d` (an `S3BackupConfiguration`); the message is for
    /// `InvalidArgumentException`.
    fn build(d: &crate::spec::ExtendedS3Destination) -> Result<Self, String> {
        let bucket = d.bucket().ok_or_else(|| {
            format!("S3BackupConfiguration BucketARN '{}' is not a valid S3 bucket ARN.", d.bucket_arn)
        })?;
        let prefix = Prefix::parse(d.prefix.as_deref(), PrefixRole::Output).map_err(|e| e.0)?;
        if prefix.query_keys().next().is_some() || prefix.lambda_keys().next().is_some() {
            return Err(
                "S3BackupConfiguration Prefix cannot use partitionKeyFromQuery or partitionKeyFromLambda.".into()
            );
        }
        let compression = RawCompression::from_name(d.compression_format.as_deref()).ok_or_else(|| {
            format!(
                "S3BackupConfiguration CompressionFormat '{}' is not supported; use UNCOMPRESSED, GZIP, ZIP, Snappy, HADOOP_SNAPPY or ZSTD.",
                d.compression_format.as_deref().unwrap_or("")
            )
        })?;
        Ok(Self { bucket: bucket.to_owned(), prefix, compression })
    }
}

/// Builds the pipeline of `spec`: every check of the destination configuration lives here,
/// so creation, update and delivery agree. The message is for `InvalidArgumentException`.
pub fn build(
    spec: &DeliveryStreamSpec,
    schema: Option<SchemaRef>,
    transform: Option<Arc<dyn RecordTransform>>,
) -> Result<Pipeline, String> {
    let d = &spec.destination;
    let bucket = d.bucket().ok_or_else(|| format!("BucketARN '{}' is not a valid S3 bucket ARN.", d.bucket_arn))?;
    let processing = d.processing();
    let prefix = Prefix::parse(d.prefix.as_deref(), PrefixRole::Output).map_err(|e| e.0)?;
    let error_prefix = match d.error_output_prefix.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => {
            let e = Prefix::parse(Some(p), PrefixRole::ErrorOutput).map_err(|e| e.0)?;
            if e.has_expressions() && !e.has_error_output_type() {
                return Err(
                    "ErrorOutputPrefix must contain at least one occurrence of !{firehose:error-output-type}".into()
                );
            }
            Some(e)
        }
        None => None,
    };
    let dynamic = d.dynamic_partitioning();
    check_pair(&prefix, error_prefix.as_ref(), dynamic).map_err(|e| e.0)?;
    let error_prefix = match error_prefix {
        Some(e) => e,
        // AWS: `<prefix><error-output-type>/` and the default timestamp.
        None => Prefix::parse(
            Some(&format!("{}!{{firehose:error-output-type}}/", d.prefix.as_deref().unwrap_or(""))),
            PrefixRole::ErrorOutput,
        )
        .map_err(|e| e.0)?,
    };
    let mut query = None;
    let mut deaggregation = None;
    let mut delimiter = Vec::new();
    for p in &processing.processors {
        match p.kind.as_str() {
            "MetadataExtraction" if processing.enabled.unwrap_or(false) => {
                if !dynamic {
                    return Err(
                        "MetadataExtraction processor can only be present when Dynamic Partitioning is enabled.".into(),
                    );
                }
                let q = p
                    .parameter("MetadataExtractionQuery")
                    .ok_or("MetadataExtraction processor needs a MetadataExtractionQuery parameter.")?;
                if let Some(engine) = p.parameter("JsonParsingEngine").filter(|e| *e != "JQ-1.6") {
                    return Err(format!("JsonParsingEngine '{engine}' is not supported; use JQ-1.6."));
                }
                query = Some(Arc::new(PartitionQuery::compile(q)?));
            }
            // A disabled processing configuration runs none of its processors (AWS Firehose
            // developer guide); the delimiter is a processor like the others.
            // `Delimiter` is base64, as for RecordDeAggregation; a newline without it.
            "AppendDelimiterToRecord" if processing.enabled.unwrap_or(false) => {
                delimiter = match p.parameter("Delimiter") {
                    Some(d) => decode_delimiter(d)?,
                    None => b"\n".to_vec(),
                }
            }
            "RecordDeAggregation" if processing.enabled.unwrap_or(false) => {
                deaggregation =
                    Some(Deaggregation::from_parameters(p.parameter("SubRecordType"), p.parameter("Delimiter"))?);
            }
            "AppendDelimiterToRecord" | "RecordDeAggregation" => {}
            "Lambda" => {
                if processing.enabled.unwrap_or(false) && transform.is_none() {
                    return Err("Lambda processor: no WASM transform is loaded for it.".into());
                }
            }
            "MetadataExtraction" => {}
            other => return Err(format!("Processor type '{other}' is not supported by Sluice.")),
        }
    }
    if prefix.query_keys().next().is_some() && query.is_none() {
        return Err("Prefix uses partitionKeyFromQuery but no MetadataExtraction processor is enabled.".into());
    }
    let compression = RawCompression::from_name(d.compression_format.as_deref()).ok_or_else(|| {
        format!(
            "CompressionFormat '{}' is not supported; use UNCOMPRESSED, GZIP, ZIP, Snappy, HADOOP_SNAPPY or ZSTD.",
            d.compression_format.as_deref().unwrap_or("")
        )
    })?;
    let format = if spec.iceberg.is_some() {
        if dynamic {
            return Err("Dynamic partitioning is not supported with an Iceberg destination; the table's partition spec partitions its files.".into());
        }
        match schema {
            Some(s) => Format::Table(Box::new(ColumnarEncoder::new(s, &ParquetSerDe::default(), JsonSerDe::default()))),
            None => Format::Inferred,
        }
    } else {
        match d.conversion() {
            Some(c) => {
                if compression != RawCompression::None {
                    return Err(
                    "The S3 destination's compression format must be set to UNCOMPRESSED when data format conversion is enabled"
                        .into(),
                );
                }
                let deserializer = JsonSerDe::from_input_format(c.input_format_configuration.as_ref())?;
                if let Some(orc) = c.orc() {
                    if c.output_format_configuration
                        .as_ref()
                        .and_then(|o| o.serializer.as_ref())
                        .is_some_and(|s| s.parquet_ser_de.is_some())
                    {
                        return Err("Serializer takes one of ParquetSerDe and OrcSerDe, not both.".into());
                    }
                    crate::orc::check(orc, schema.as_deref())?;
                    match schema {
                        Some(s) => Format::Columnar(Box::new(ColumnarEncoder::orc(s, orc, deserializer))),
                        None => Format::Inferred,
                    }
                } else {
                    let parquet = c.parquet();
                    if parquet_compression(parquet.compression.as_deref()).is_none() {
                        return Err(format!(
                            "ParquetSerDe Compression '{}' is not supported; use SNAPPY, GZIP, ZSTD or UNCOMPRESSED.",
                            parquet.compression.as_deref().unwrap_or("")
                        ));
                    }
                    match schema {
                        Some(s) => Format::Columnar(Box::new(ColumnarEncoder::new(s, &parquet, deserializer))),
                        None => Format::Inferred,
                    }
                }
            }
            None => Format::Raw(compression),
        }
    };
    let extension = match (&d.file_extension, &format) {
        (Some(e), _) => {
            let ok = e.is_empty()
                || (e.starts_with('.')
                    && e.len() <= 128
                    && e.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"!-_.*'()".contains(&b)));
            if !ok {
                return Err(format!("FileExtension '{e}' must be empty or match \\.[0-9a-z!\\-_.*'()]+"));
            }
            e.clone()
        }
        (None, Format::Columnar(enc)) => enc.extension().into(),
        (None, Format::Inferred) if d.conversion().and_then(|c| c.orc()).is_some() => ".orc".into(),
        (None, Format::Inferred | Format::Table(_)) => ".parquet".into(),
        (None, Format::Raw(c)) => c.extension().into(),
    };
    if let Some(tz) = d.custom_time_zone.as_deref().filter(|t| !t.is_empty() && *t != "UTC") {
        return Err(format!("CustomTimeZone '{tz}' is not supported by Sluice; timestamps are UTC."));
    }
    let backup = match (d.s3_backup_mode.as_deref(), d.backup()) {
        (None | Some("Disabled"), _) => None,
        (Some("Enabled"), Some(b)) => Some(Backup::build(b)?),
        (Some("Enabled"), None) => return Err("S3BackupConfiguration is required when S3BackupMode is Enabled.".into()),
        (Some(other), _) => return Err(format!("S3BackupMode '{other}' is not valid; use Disabled or Enabled.")),
    };
    Ok(Pipeline {
        backup,
        name: spec.name.clone(),
        version: spec.version,
        bucket: bucket.to_owned(),
        prefix,
        error_prefix,
        query,
        deaggregation,
        delimiter,
        format,
        extension,
        kinesis_source: matches!(spec.source, crate::spec::SourceSpec::KinesisStream { .. }),
        transform,
        origin_tag: String::new(),
    })
}

enum State<'a> {
    Ok { data: Cow<'a, [u8]>, lambda_keys: PartitionKeys },
    Dropped,
    Failed(Failure),
}

impl Pipeline {
    /// The configuration version this pipeline was built from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The records to plan: KPL-aggregated records of a Kinesis source replaced by their user
    /// records, then `records` split by the `RecordDeAggregation` processor, when there is one
    /// (before any transform, as on AWS).
    pub fn deaggregate(&self, records: Vec<SourceRecord>) -> Vec<SourceRecord> {
        // Records a KPL producer aggregated become their user records first, as Firehose
        // does for a Kinesis source.
        let records = if self.kinesis_source { crate::kpl::deaggregate(records) } else { records };
        match &self.deaggregation {
            Some(d) => d.split(records),
            None => records,
        }
    }

    /// Whether this pipeline's deliveries can be decoded ahead ([`Pipeline::predecode`]):
    /// Parquet or ORC conversion of the records as they arrived, with no transform, no
    /// dynamic partitioning and no deaggregation of Firehose's own.
    pub fn predecodable(&self) -> bool {
        matches!(self.format, Format::Columnar(_))
            && self.transform.is_none()
            && self.query.is_none()
            && self.prefix.query_keys().next().is_none()
            && self.prefix.lambda_keys().next().is_none()
            && self.deaggregation.is_none()
    }

    /// Decodes `more`, the buffer's records after those `ahead` holds (all of the buffer's
    /// from its first when `ahead` is `None`), into Arrow rows, and returns the extended
    /// decoding; `None` when this pipeline cannot decode ahead, `ahead` was made by another
    /// configuration, or a record is KPL-aggregated (its user records are only known at
    /// planning).
    pub fn predecode(&self, ahead: Option<Predecoded>, more: &[SourceRecord]) -> Option<Predecoded> {
        let Format::Columnar(enc) = &self.format else { return None };
        let (first, last) = (more.first()?, more.last()?);
        if !self.predecodable()
            || ahead.as_ref().is_some_and(|a| a.version != self.version)
            || (self.kinesis_source && more.iter().any(|r| r.data.starts_with(&crate::kpl::MAGIC)))
        {
            return None;
        }
        let data: Vec<&[u8]> = more.iter().map(|r| r.data.as_slice()).collect();
        let tail = enc.decode(&data);
        let mut ahead = ahead.unwrap_or(Predecoded {
            version: self.version,
            first_sequence: first.sequence,
            last_sequence: last.sequence,
            records: 0,
            decoded: crate::convert::Decoded { batches: Vec::new(), rows: 0, failed: Vec::new() },
        });
        let offset = ahead.records;
        ahead.decoded.batches.extend(tail.batches);
        ahead.decoded.rows += tail.rows;
        ahead.decoded.failed.extend(
            tail.failed.into_iter().map(|f| crate::convert::ConversionFailure { index: f.index + offset, ..f }),
        );
        ahead.records += more.len();
        ahead.last_sequence = last.sequence;
        Some(ahead)
    }

    /// Plans the delivery of `records`, the range `first..=last` of source shard `shard`.
    /// `now_ms` stamps error records.
    pub fn plan(&self, shard: u32, first: u64, last: u64, records: &[SourceRecord], now_ms: u64) -> Plan {
        self.plan_continuing(shard, first, last, records, now_ms, None)
    }

    /// As [`Pipeline::plan`], with the leading records decoded ahead (`ahead`, used only
    /// when it fits: the same configuration, the same first record, and records as they
    /// arrived). The plan is the one [`Pipeline::plan`] makes.
    pub fn plan_continuing(
        &self,
        shard: u32,
        first: u64,
        last: u64,
        records: &[SourceRecord],
        now_ms: u64,
        ahead: Option<Predecoded>,
    ) -> Plan {
        let ahead = ahead.filter(|a| {
            self.predecodable()
                && a.version == self.version
                && a.records <= records.len()
                && records.first().is_some_and(|r| r.sequence == a.first_sequence)
                && records[a.records - 1].sequence == a.last_sequence
        });
        let mut states: Vec<State<'_>> = match &self.transform {
            None => records
                .iter()
                .map(|r| State::Ok { data: Cow::Borrowed(&r.data), lambda_keys: PartitionKeys::new() })
                .collect(),
            Some(t) => t
                .process(records, self.kinesis_source.then_some(shard))
                .into_iter()
                .map(|o| match o {
                    TransformOutcome::Ok { data, partition_keys } => {
                        State::Ok { data: Cow::Owned(data), lambda_keys: partition_keys }
                    }
                    TransformOutcome::Dropped => State::Dropped,
                    TransformOutcome::Failed(f) => State::Failed(f),
                })
                .collect(),
        };

        // Group by partition keys (one group without dynamic partitioning).
        let mut groups: BTreeMap<String, (PartitionKeys, PartitionKeys, Vec<usize>)> = BTreeMap::new();
        let needs_lambda: Vec<&str> = self.prefix.lambda_keys().collect();
        let partitioned = self.query.is_some() || self.prefix.query_keys().next().is_some() || !needs_lambda.is_empty();
        if !partitioned {
            // One group, no keys: none of the per-record key work below (it was a tenth of
            // a plan's time, perf on benches/examples/firehose_e2e.rs).
            let members: Vec<usize> = (0..states.len()).filter(|&i| matches!(states[i], State::Ok { .. })).collect();
            if !members.is_empty() {
                groups.insert(String::new(), (PartitionKeys::new(), PartitionKeys::new(), members));
            }
        }
        let mut query_results = self.query.as_ref().map(|q| query_keys(q, &states)).unwrap_or_default().into_iter();
        for (i, state) in states.iter_mut().enumerate().filter(|_| partitioned) {
            let query_result = query_results.next();
            let State::Ok { lambda_keys, .. } = state else { continue };
            let query_keys = match query_result.flatten() {
                None => PartitionKeys::new(),
                Some(Ok(k)) => k,
                Some(Err(message)) => {
                    *state = partition_failure(message);
                    continue;
                }
            };
            let missing = self
                .prefix
                .query_keys()
                .find(|k| !query_keys.contains_key(*k))
                .map(|k| format!("partition key '{k}' is missing from the MetadataExtractionQuery result"))
                .or_else(|| {
                    needs_lambda
                        .iter()
                        .find(|k| !lambda_keys.contains_key(**k))
                        .map(|k| format!("partition key '{k}' is missing from the transform's metadata"))
                });
            let unsafe_value = self
                .prefix
                .query_keys()
                .map(|k| (k, &query_keys[k]))
                .chain(needs_lambda.iter().map(|k| (*k, &lambda_keys[*k])))
                .find_map(|(k, v)| check_partition_value(k, v).err());
            if let Some(message) = missing.or(unsafe_value) {
                *state = partition_failure(message);
                continue;
            }
            let mut group = String::new();
            for k in self.prefix.query_keys() {
                group.push_str(&format!("q:{k}={}\u{0}", query_keys[k]));
            }
            for k in &needs_lambda {
                group.push_str(&format!("l:{k}={}\u{0}", lambda_keys[*k]));
            }
            if !groups.contains_key(&group) && groups.len() == ACTIVE_PARTITIONS_MAX {
                *state = State::Failed(Failure {
                    output_type: PROCESSING_FAILED,
                    code: ACTIVE_PARTITIONS_EXCEEDED.into(),
                    message: format!(
                        "The delivery already writes to {ACTIVE_PARTITIONS_MAX} partitions, the most a delivery stream has active."
                    ),
                    attempts: 1,
                });
                continue;
            }
            let lambda = lambda_keys.clone();
            groups.entry(group).or_insert_with(|| (query_keys, lambda, Vec::new())).2.push(i);
        }

        let mut plan = Plan::default();
        // Partitions convert independently: several at once use every core.
        let members: Vec<&Vec<usize>> = groups.values().map(|(_, _, m)| m).collect();
        // Rows decoded ahead belong to the one group of an unpartitioned delivery, whose
        // members are then every record (no transform: none dropped or failed before).
        let ahead = std::sync::Mutex::new(ahead.filter(|_| members.len() == 1 && members[0].len() == records.len()));
        let threads = crate::convert::ConversionThreads::take(conversion_threads().min(members.len()));
        let encoded = sluice_engine::parallel::in_parallel(&members, threads.count(), "sluice-convert", |members| {
            let data: Vec<&[u8]> = members
                .iter()
                .map(|&i| match &states[i] {
                    State::Ok { data, .. } => data.as_ref(),
                    _ => unreachable!("groups hold records that are Ok"),
                })
                .collect();
            let ahead = ahead.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            self.encode(&data, ahead)
        });
        for ((group, (query_keys, lambda_keys, members)), (bytes, batches, landed, failures)) in
            groups.iter().zip(encoded)
        {
            let origin = ObjectOrigin {
                delivery_stream: &self.name,
                shard,
                first,
                last,
                partition: group,
                kind: "",
                tag: &self.origin_tag,
            };
            let id = ObjectId::of(&origin);
            for (local, failure) in failures {
                states[members[local]] = State::Failed(failure);
            }
            let landed: Vec<usize> = landed.into_iter().map(|local| members[local]).collect();
            if landed.is_empty() {
                continue;
            }
            let oldest = landed.iter().map(|&i| records[i].arrival_ms).min().expect("not empty");
            let random = id.random_string();
            let values = PrefixValues {
                oldest_arrival_ms: oldest,
                random_string: &random,
                error_output_type: None,
                query_keys,
                lambda_keys,
            };
            let prefix = self.prefix.evaluate(&values).expect("partition keys were checked");
            let key = format!("{prefix}{}", object_name(&self.name, self.version, oldest, &id, &self.extension));
            if let Err(message) = check_object_key(&key) {
                // A key no store can hold is not retried: its records fail now, alone.
                for &i in &landed {
                    states[i] = State::Failed(Failure {
                        output_type: crate::worker::S3_FAILED,
                        code: "S3.KeyTooLongError".into(),
                        message: message.clone(),
                        attempts: 1,
                    });
                }
                continue;
            }
            plan.delivered += landed.len();
            plan.objects.push(PlannedObject { key, bytes, batches, records: landed, error_output_type: None });
        }

        let mut failed: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
        for (i, s) in states.iter().enumerate() {
            match s {
                State::Dropped => plan.dropped += 1,
                State::Failed(f) => failed.entry(f.output_type).or_default().push(i),
                State::Ok { .. } => {}
            }
        }
        for (output_type, members) in failed {
            let mut bytes = Vec::new();
            for &i in &members {
                let State::Failed(f) = &states[i] else { unreachable!("collected as failed") };
                let r = &records[i];
                // Format conversion failures carry the data conversion saw; the others the original.
                let raw: &[u8] = &r.data;
                let kinesis = self.kinesis_source.then(|| KinesisRecordMetadata {
                    shard_id: shard_id(shard),
                    partition_key: r.partition_key.clone(),
                    approximate_arrival_timestamp: r.arrival_ms,
                    sequence_number: SequenceNumber { shard_index: shard, shard_sequence: r.sequence }.to_string(),
                    subsequence_number: 0,
                });
                let lambda_arn = self.transform.as_ref().map(|t| t.arn());
                error_output::write_line(&mut bytes, f, raw, r.arrival_ms, now_ms, kinesis.as_ref(), lambda_arn);
            }
            plan.objects.push(self.error_object(shard, first, last, output_type, records, members, bytes));
        }
        plan.failed = plan.objects.iter().filter_map(|o| o.error_output_type.map(|t| (t, o.records.len()))).collect();
        plan
    }

    /// The backup object of the source records of `shard`'s range `first..=last`, as they
    /// arrived (no transform, no delimiter), in the backup's compression: (bucket, object),
    /// or `None` when backup is off. Its key is the same for every attempt at the range.
    pub fn backup_object(
        &self,
        shard: u32,
        first: u64,
        last: u64,
        records: &[SourceRecord],
    ) -> Option<std::io::Result<(String, PlannedObject)>> {
        let b = self.backup.as_ref()?;
        let origin = ObjectOrigin {
            delivery_stream: &self.name,
            shard,
            first,
            last,
            partition: "",
            kind: "backup",
            tag: &self.origin_tag,
        };
        let id = ObjectId::of(&origin);
        let random = id.random_string();
        let oldest = records.iter().map(|r| r.arrival_ms).min().unwrap_or(0);
        let empty = PartitionKeys::new();
        let values = PrefixValues {
            oldest_arrival_ms: oldest,
            random_string: &random,
            error_output_type: None,
            query_keys: &empty,
            lambda_keys: &empty,
        };
        let prefix = b.prefix.evaluate(&values).expect("backup prefixes have no partition keys");
        let bytes = match b.compression.encode(records.iter().map(|r| r.data.as_slice()), b"", &self.name) {
            Ok(bytes) => bytes,
            Err(e) => return Some(Err(e)),
        };
        let key = format!("{prefix}{}", object_name(&self.name, self.version, oldest, &id, b.compression.extension()));
        let object = PlannedObject {
            key,
            bytes,
            batches: Vec::new(),
            records: (0..records.len()).collect(),
            error_output_type: None,
        };
        Some(Ok((b.bucket.clone(), object)))
    }

    /// An error object holding `members` (input indexes) as error record lines `bytes`.
    #[allow(clippy::too_many_arguments)]
    pub fn error_object(
        &self,
        shard: u32,
        first: u64,
        last: u64,
        output_type: &'static str,
        records: &[SourceRecord],
        members: Vec<usize>,
        bytes: Vec<u8>,
    ) -> PlannedObject {
        self.error_object_for(shard, first, last, "", output_type, records, members, bytes)
    }

    /// As [`Pipeline::error_object`], for records set apart under `partition` (its own key,
    /// so it never overwrites the error object of the same range's ordinary plan).
    #[allow(clippy::too_many_arguments)]
    pub fn error_object_for(
        &self,
        shard: u32,
        first: u64,
        last: u64,
        partition: &str,
        output_type: &'static str,
        records: &[SourceRecord],
        members: Vec<usize>,
        bytes: Vec<u8>,
    ) -> PlannedObject {
        let origin = ObjectOrigin {
            delivery_stream: &self.name,
            shard,
            first,
            last,
            partition,
            kind: output_type,
            tag: &self.origin_tag,
        };
        let id = ObjectId::of(&origin);
        let random = id.random_string();
        let oldest = members.iter().map(|&i| records[i].arrival_ms).min().unwrap_or(0);
        let empty = PartitionKeys::new();
        let values = PrefixValues {
            oldest_arrival_ms: oldest,
            random_string: &random,
            error_output_type: Some(output_type),
            query_keys: &empty,
            lambda_keys: &empty,
        };
        let prefix = self.error_prefix.evaluate(&values).expect("error prefixes have no partition keys");
        PlannedObject {
            key: format!("{prefix}{}", object_name(&self.name, self.version, oldest, &id, "")),
            bytes,
            batches: Vec::new(),
            records: members,
            error_output_type: Some(output_type),
        }
    }

    /// Encodes one group: the object bytes (or a table's rows), the local indexes that
    /// landed, and failures.
    #[allow(clippy::type_complexity)]
    fn encode(
        &self,
        data: &[&[u8]],
        ahead: Option<Predecoded>,
    ) -> (Vec<u8>, Vec<arrow_array::RecordBatch>, Vec<usize>, Vec<(usize, Failure)>) {
        match &self.format {
            Format::Raw(c) => {
                let bytes = c
                    .encode(data.iter().copied(), &self.delimiter, &self.name)
                    .expect("compressing into memory cannot fail");
                (bytes, Vec::new(), (0..data.len()).collect(), Vec::new())
            }
            Format::Table(enc) => {
                let d = enc.decode(data);
                let failed = conversion_failures(d.failed);
                let landed = landed(data.len(), &failed);
                (Vec::new(), d.batches, landed, failed)
            }
            Format::Columnar(enc) => {
                match ahead.map_or_else(|| enc.encode(data), |a| enc.encode_continuing(data, a.decoded, a.records)) {
                    Ok(c) => {
                        let failed = conversion_failures(c.failed);
                        let landed = landed(data.len(), &failed);
                        (c.bytes, Vec::new(), landed, failed)
                    }
                    Err(e) => {
                        let failure = Failure {
                            output_type: FORMAT_CONVERSION_FAILED,
                            code: "DataFormatConversion.InternalError".into(),
                            message: e.to_string(),
                            attempts: 1,
                        };
                        (Vec::new(), Vec::new(), Vec::new(), (0..data.len()).map(|i| (i, failure.clone())).collect())
                    }
                }
            }
            Format::Inferred => unreachable!("the worker fixes the schema before planning"),
        }
    }
}

/// Conversion failures as the error output's.
fn conversion_failures(failed: Vec<crate::convert::ConversionFailure>) -> Vec<(usize, Failure)> {
    failed
        .into_iter()
        .map(|f| {
            let failure =
                Failure { output_type: FORMAT_CONVERSION_FAILED, code: f.code.into(), message: f.message, attempts: 1 };
            (f.index, failure)
        })
        .collect()
}

/// The indexes of `count` records that are not among `failed`.
fn landed(count: usize, failed: &[(usize, Failure)]) -> Vec<usize> {
    let mut ok = vec![true; count];
    for (i, _) in failed {
        ok[*i] = false;
    }
    (0..count).filter(|&i| ok[i]).collect()
}

/// The `MetadataExtractionQuery` result of each record that is `Ok` (`None` for the others),
/// extracted on every core: the fast path takes no lock.
fn query_keys(query: &PartitionQuery, states: &[State<'_>]) -> Vec<Option<Result<PartitionKeys, String>>> {
    let threads =
        crate::convert::ConversionThreads::take(conversion_threads().min(states.len() / QUERY_RECORDS_PER_THREAD_MIN));
    let parts: Vec<&[State<'_>]> = states.chunks(states.len().div_ceil(threads.count()).max(1)).collect();
    let keys = sluice_engine::parallel::in_parallel(&parts, threads.count(), "sluice-partition", |part| {
        part.iter()
            .map(|s| match s {
                State::Ok { data, .. } => Some(query.keys(data)),
                _ => None,
            })
            .collect::<Vec<_>>()
    });
    keys.into_iter().flatten().collect()
}

/// Records a partition key thread is given at least (below it, a thread costs more than it
/// saves): 2,048.
const QUERY_RECORDS_PER_THREAD_MIN: usize = 2048;

fn partition_failure(message: String) -> State<'static> {
    State::Failed(Failure {
        output_type: PROCESSING_FAILED,
        code: METADATA_EXTRACTION_FAILED.into(),
        message,
        attempts: 1,
    })
}

/// Longest object key, bytes: 1,024. Source: Amazon S3 user guide, "Naming Amazon S3 objects".
pub const OBJECT_KEY_BYTES_MAX: usize = 1024;
/// Longest `/`-separated part of an object key, bytes: 255, the file name limit of the file
/// systems under a `file://` lake and under MinIO or Garage.
pub const KEY_COMPONENT_BYTES_MAX: usize = 255;

/// Checks a partition key's value before it goes into an object key: no control characters
/// (U+0000 to U+001F, U+007F), and no empty, `.` or `..` part between slashes (a value may
/// hold `/` to make folders, `2024/01/02`, but never one that climbs out of the prefix or
/// that a folder lake would collapse). A record whose value breaks this fails alone as
/// `DynamicPartitioning.MetadataExtractionFailed`; length is checked with the whole key.
pub fn check_partition_value(key: &str, value: &str) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_ascii_control()) {
        return Err(format!(
            "partition key '{key}' has a control character (U+{:04X}), which an object key cannot hold",
            c as u32
        ));
    }
    if value.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(format!(
            "partition key '{key}' value '{value}' is empty or has an empty, '.' or '..' part between slashes"
        ));
    }
    Ok(())
}

/// Checks that every store can hold `key`; the error says which limit it breaks.
pub fn check_object_key(key: &str) -> Result<(), String> {
    if key.len() > OBJECT_KEY_BYTES_MAX {
        return Err(format!(
            "The object key is {} bytes long; object keys hold at most {OBJECT_KEY_BYTES_MAX} bytes.",
            key.len()
        ));
    }
    if let Some(part) = key.split('/').find(|p| p.len() > KEY_COMPONENT_BYTES_MAX) {
        return Err(format!(
            "A part of the object key between slashes is {} bytes long; at most {KEY_COMPONENT_BYTES_MAX} bytes fit a file name.",
            part.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// A Parquet delivery of a Kinesis source with a fixed schema (`id` int, `name` string).
    fn parquet_pipeline() -> Pipeline {
        let spec: DeliveryStreamSpec = serde_json::from_value(serde_json::json!({
            "name": "ahead", "created_ms": 0, "updated_ms": 0, "version": 3,
            "source": {"type": "kinesis_stream", "stream_name": "s", "stream_arn": "arn:aws:kinesis:us-east-1:000000000000:stream/s", "role_arn": "r"},
            "destination": {"RoleARN": "r", "BucketARN": "arn:aws:s3:::lake", "Prefix": "p/",
                "DataFormatConversionConfiguration": {"Enabled": true,
                    "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {}}}}},
            "schema": [{"name": "id", "type": "int"}, {"name": "name", "type": "string"}],
        }))
        .unwrap();
        let schema = crate::schema::to_arrow(spec.schema.as_deref().unwrap()).unwrap();
        build(&spec, Some(schema), None).unwrap()
    }

    /// Records 0..n, every 7th one not fitting the schema (`id` not an integer), the 13th
    /// not JSON.
    fn records(n: u64) -> Vec<SourceRecord> {
        (0..n)
            .map(|i| SourceRecord {
                sequence: 100 + i,
                arrival_ms: 1_700_000_000_000 + i,
                partition_key: format!("k{i}"),
                data: match i {
                    13 => b"{not json".to_vec(),
                    i if i % 7 == 3 => format!(r#"{{"id":"x{i}","name":"n{i}"}}"#).into_bytes(),
                    i => format!(r#"{{"id":{i},"name":"n{i}"}}"#).into_bytes(),
                },
            })
            .collect()
    }

    /// The rows of a plan's Parquet object, read back.
    fn rows(plan: &Plan) -> Vec<(Option<i32>, Option<String>)> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::Int32Type;
        let data = plan.objects.iter().find(|o| o.error_output_type.is_none()).expect("a data object");
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(data.bytes.clone())).unwrap();
        let mut rows = Vec::new();
        for batch in reader.build().unwrap().map(Result::unwrap) {
            let (ids, names) = (batch.column(0).as_primitive::<Int32Type>(), batch.column(1).as_string::<i32>());
            rows.extend(ids.iter().zip(names.iter()).map(|(i, n)| (i, n.map(str::to_owned))));
        }
        rows
    }

    #[test]
    fn a_delivery_decoded_ahead_plans_what_a_whole_decoding_plans() {
        let p = parquet_pipeline();
        assert!(p.predecodable());
        let all = records(30_000);
        let whole = p.plan(0, 100, 100 + 29_999, &all, 5);
        // Decoded ahead in two steps, then the rest at planning.
        let ahead = p.predecode(None, &all[..9_000]).expect("decodable");
        let ahead = p.predecode(Some(ahead), &all[9_000..20_000]).expect("decodable");
        assert_eq!(ahead.records(), 20_000);
        let continued = p.plan_continuing(0, 100, 100 + 29_999, &all, 5, Some(ahead));
        assert_eq!((continued.delivered, &continued.failed), (whole.delivered, &whole.failed));
        assert_eq!(whole.delivered, 30_000 - (0..30_000).filter(|i| i % 7 == 3).count() - 1);
        let keys = |p: &Plan| p.objects.iter().map(|o| (o.key.clone(), o.records.clone())).collect::<Vec<_>>();
        assert_eq!(keys(&continued), keys(&whole));
        let error_bytes = |p: &Plan| {
            p.objects.iter().filter(|o| o.error_output_type.is_some()).map(|o| o.bytes.clone()).collect::<Vec<_>>()
        };
        assert_eq!(error_bytes(&continued), error_bytes(&whole));
        assert_eq!(rows(&continued), rows(&whole));
        assert_eq!(rows(&whole).len(), whole.delivered);
    }

    #[test]
    fn rows_decoded_ahead_by_another_configuration_or_range_are_not_used() {
        let p = parquet_pipeline();
        let all = records(20_000);
        let whole = p.plan(0, 100, 100 + 19_999, &all, 5);
        // Decoded from a buffer that began one record later: not this range's rows.
        let shifted = p.predecode(None, &all[1..10_001]).unwrap();
        let plan = p.plan_continuing(0, 100, 100 + 19_999, &all, 5, Some(shifted));
        assert_eq!(plan.delivered, whole.delivered);
        assert_eq!(rows(&plan), rows(&whole));
        // KPL-aggregated records are only split at planning.
        let mut aggregated = records(10);
        aggregated[4].data = crate::kpl::aggregate(&[("a", b"{\"id\":1}")]);
        assert!(p.predecode(None, &aggregated).is_none());
    }
}
