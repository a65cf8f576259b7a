//! Replay: delivering a range of a stream again through a delivery stream, e.g. with a new
//! transform version or into a new prefix. Records are read from the source's shard logs,
//! cut into buffers of the delivery stream's size hint, planned and landed like live
//! deliveries. Object keys derive from (delivery stream, shard, first and last sequence
//! number), and the same range cuts into the same buffers, so replaying a range twice
//! overwrites the same objects instead of adding any.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::stream::Stream;
use sluice_engine::{ReadLimits, StartingPosition};

use crate::delivery_streams::DeliveryStreams;
use crate::plan::{self, SourceRecord};
use crate::worker::WorkerContext;

/// Where a replay starts or ends. Kept (in a task's file, on the wire) as
/// `{"Timestamp": <ms>}` or `{"SequenceNumber": "<Kinesis sequence number>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "PointRepr", try_from = "PointRepr")]
pub enum ReplayPoint {
    /// Records that arrived at or after this time (ms since the Unix epoch), in every shard.
    Timestamp(u64),
    /// The record with this sequence number (the range is then that record's shard only).
    Sequence(SequenceNumber),
}

#[derive(Serialize, Deserialize)]
enum PointRepr {
    Timestamp(u64),
    SequenceNumber(String),
}

impl From<ReplayPoint> for PointRepr {
    fn from(p: ReplayPoint) -> Self {
        match p {
            ReplayPoint::Timestamp(ms) => Self::Timestamp(ms),
            ReplayPoint::Sequence(s) => Self::SequenceNumber(s.to_string()),
        }
    }
}

impl TryFrom<PointRepr> for ReplayPoint {
    type Error = String;
    fn try_from(p: PointRepr) -> Result<Self, String> {
        match p {
            PointRepr::Timestamp(ms) => Ok(Self::Timestamp(ms)),
            PointRepr::SequenceNumber(s) => {
                s.parse().map(Self::Sequence).map_err(|_| format!("'{s}' is not a sequence number"))
            }
        }
    }
}

/// What to replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplayRequest {
    /// The delivery stream whose configuration delivers the records.
    pub delivery_stream: String,
    /// Start, inclusive.
    pub from: ReplayPoint,
    /// End: a timestamp is exclusive, a sequence number inclusive; `None` is the end of
    /// each shard when the replay starts.
    pub to: Option<ReplayPoint>,
    /// A prefix to deliver under instead of the delivery stream's.
    pub prefix: Option<String>,
    /// An error output prefix instead of the delivery stream's. With another `prefix` and
    /// none given, failures go to `<the prefix's fixed part>errors/<error output type>/`:
    /// never into the delivery stream's own error output, whose redrive would put a
    /// variant's failures into the live prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_prefix: Option<String>,
    /// Shard indexes to replay; empty is every shard.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<u32>,
    /// Another transform than the delivery stream's: the `LambdaArn` its Lambda processor
    /// gets (a WASM component of the transform folder; a processor is added if it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda_arn: Option<String>,
    /// Another schema for format conversion, read when the replay starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaVariant>,
}

/// A schema a replay converts with instead of the delivery stream's: the table it names and
/// its fields, read from the schema file when the replay starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SchemaVariant {
    /// `DatabaseName`.
    pub database_name: String,
    /// `TableName`.
    pub table_name: String,
    /// The schema file's fields.
    pub fields: Vec<crate::schema::FieldSpec>,
}

/// Gives `spec`'s Lambda processor `arn` (adding one, enabled, if it has none).
fn set_lambda_arn(spec: &mut crate::spec::DeliveryStreamSpec, arn: &str) {
    use crate::spec::{Processor, ProcessorParameter};
    let processing = spec.destination.processing_configuration.get_or_insert_with(Default::default);
    processing.enabled = Some(true);
    let parameter = ProcessorParameter { parameter_name: "LambdaArn".into(), parameter_value: arn.to_owned() };
    match processing.processors.iter_mut().find(|p| p.kind == "Lambda") {
        Some(p) => {
            p.parameters.retain(|q| q.parameter_name != "LambdaArn");
            p.parameters.push(parameter);
        }
        None => processing.processors.insert(0, Processor { kind: "Lambda".into(), parameters: vec![parameter] }),
    }
}

/// One shard's part of a replay: records `start..end` of its log; `next` is the first not
/// yet landed (`end` when the shard is done). Buffers are cut from `next` on, so a replay
/// resumed at a `next` it recorded cuts, and names, the rest as an uninterrupted one would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardRange {
    /// Shard index.
    pub shard: u32,
    /// First sequence number (in the shard's log) of the range.
    pub start: u64,
    /// Sequence number past the range.
    pub end: u64,
    /// First sequence number not landed yet.
    pub next: u64,
}

impl ShardRange {
    /// Records of the range (sequence numbers of a shard's log are dense).
    pub fn records(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Records not landed yet.
    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.next)
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplayReport {
    /// Records read from the source.
    pub records: u64,
    /// Bytes of record data read from the source.
    #[serde(default)]
    pub bytes: u64,
    /// Objects written (delivered and error objects).
    pub objects: u64,
    /// Records in delivered objects.
    pub delivered: u64,
    /// Records a transform dropped.
    pub dropped: u64,
    /// Records sent to the error prefix.
    pub failed: u64,
    /// Records of the range no longer there when read (retention trimmed them, or their
    /// shard's log is gone): not delivered.
    #[serde(default)]
    pub skipped: u64,
}

impl ReplayReport {
    /// The sum of two reports (a resumed replay's before and after).
    pub fn plus(&self, o: &Self) -> Self {
        Self {
            records: self.records + o.records,
            bytes: self.bytes + o.bytes,
            objects: self.objects + o.objects,
            delivered: self.delivered + o.delivered,
            dropped: self.dropped + o.dropped,
            failed: self.failed + o.failed,
            skipped: self.skipped + o.skipped,
        }
    }

    fn add_plan(&mut self, plan: &plan::Plan) {
        self.delivered += plan.delivered as u64;
        self.dropped += plan.dropped as u64;
        self.failed += plan.failed.values().map(|v| *v as u64).sum::<u64>();
    }
}

/// How fast a replay may read: at most this many records and bytes per second (averaged
/// from its start; `None` is no limit), so live ingest and delivery keep their latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pace {
    /// Records per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_records_per_second: Option<u64>,
    /// Bytes of record data per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_second: Option<u64>,
}

impl Pace {
    /// How long `records` and `bytes` should have taken at this pace.
    fn due(&self, records: u64, bytes: u64) -> Duration {
        let at = |n: u64, rate: Option<u64>| rate.filter(|r| *r > 0).map_or(0.0, |r| n as f64 / r as f64);
        Duration::from_secs_f64(at(records, self.max_records_per_second).max(at(bytes, self.max_bytes_per_second)))
    }

    /// Waits until `records` and `bytes`, done since `started`, are due at this pace, or
    /// `cancel` is set.
    pub async fn wait(&self, started: Instant, records: u64, bytes: u64, cancel: &AtomicBool) {
        let due = started + self.due(records, bytes);
        while Instant::now() < due && !cancel.load(Ordering::Relaxed) {
            tokio::time::sleep((due - Instant::now()).min(Duration::from_millis(100))).await;
        }
    }
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// No delivery stream of that name.
    #[error("delivery stream {0} not found")]
    NoDeliveryStream(String),
    /// No Kinesis stream of that name.
    #[error("stream {0} not found")]
    NoStream(String),
    /// The stream has no shard of that id.
    #[error("shard {0} does not exist in the stream")]
    NoShard(String),
    /// The configuration (or prefix given) is not usable.
    #[error("{0}")]
    Invalid(String),
    /// Reading the source failed.
    #[error("reading shard {shard}: {message}")]
    Read {
        /// Shard index.
        shard: u32,
        /// What failed.
        message: String,
    },
    /// Writing an object failed.
    #[error("writing {key}: {source}")]
    Write {
        /// The object key.
        key: String,
        /// What failed.
        #[source]
        source: crate::lake::LakeError,
    },
}

/// The stream a replay through `delivery_stream` reads: `stream` when given, else the
/// delivery stream's Kinesis source, or its internal stream for `DirectPut`.
///
/// Errors: [`ReplayError::NoDeliveryStream`], [`ReplayError::NoStream`].
pub fn source_of(
    streams: &DeliveryStreams,
    delivery_stream: &str,
    stream: Option<&str>,
) -> Result<Arc<Stream>, ReplayError> {
    let entry =
        streams.get(delivery_stream).ok_or_else(|| ReplayError::NoDeliveryStream(delivery_stream.to_owned()))?;
    let name = match stream {
        Some(s) => s.to_owned(),
        None => match entry.spec().source_stream() {
            Some(s) => s,
            None => return entry.internal.clone().ok_or_else(|| ReplayError::NoStream(delivery_stream.to_owned())),
        },
    };
    streams.context().kinesis.get(&name).ok_or(ReplayError::NoStream(name))
}

/// The shard ranges `request` names in `source`, fixed now: an open end becomes each
/// shard's end at this moment.
///
/// A sequence number (`from` or `to`) limits the range to its shard; `from` and `to` naming
/// different shards make an empty range.
///
/// Errors: [`ReplayError::NoShard`] for a shard the stream lacks; [`ReplayError::Read`] when
/// a shard's log cannot find a timestamp.
pub fn resolve(source: &Stream, request: &ReplayRequest) -> Result<Vec<ShardRange>, ReplayError> {
    let named = request.shards.iter().copied().chain(
        [request.from, request.to.unwrap_or(request.from)].into_iter().filter_map(|p| match p {
            ReplayPoint::Sequence(s) => Some(s.shard_index),
            ReplayPoint::Timestamp(_) => None,
        }),
    );
    for shard in named {
        if source.log(shard).is_none() {
            return Err(ReplayError::NoShard(sluice_engine::stream::shard_id(shard)));
        }
    }
    // A sequence number names one shard: the range is that shard's.
    let only = |p: Option<ReplayPoint>| match p {
        Some(ReplayPoint::Sequence(s)) => Some(s.shard_index),
        _ => None,
    };
    let (from_shard, to_shard) = (only(Some(request.from)), only(request.to));
    let mut ranges = Vec::new();
    for shard in source.meta().shards.iter().map(|s| s.index) {
        if !request.shards.is_empty() && !request.shards.contains(&shard) {
            continue;
        }
        if from_shard.is_some_and(|s| s != shard) || to_shard.is_some_and(|s| s != shard) {
            continue;
        }
        let Some(log) = source.log(shard) else { continue };
        let read_err = |e: sluice_engine::ReadError| ReplayError::Read { shard, message: e.to_string() };
        // What readers see: in a cluster, below the high watermark.
        let readable = log.readable_end();
        let start = match request.from {
            ReplayPoint::Timestamp(ms) => log.position(StartingPosition::AtTimestamp(ms)).map_err(read_err)?,
            ReplayPoint::Sequence(s) => s.shard_sequence,
        };
        let end = match request.to {
            None => readable,
            Some(ReplayPoint::Timestamp(ms)) => log.position(StartingPosition::AtTimestamp(ms)).map_err(read_err)?,
            Some(ReplayPoint::Sequence(s)) => s.shard_sequence.saturating_add(1),
        }
        .min(readable);
        let start = start.min(end);
        ranges.push(ShardRange { shard, start, end, next: start });
    }
    Ok(ranges)
}

/// A delivery stream's configuration compiled for a replay (with the request's prefix).
pub struct Replayer {
    pipeline: plan::Pipeline,
    buffer_bytes: usize,
    ctx: WorkerContext,
    /// Stamps error records (`attemptEndingTimestamp`) instead of the clock.
    stamp_ms: Option<u64>,
    /// Converts on one thread ([`crate::convert::on_one_thread`]).
    background: bool,
}

impl Replayer {
    /// Compiles `request`'s delivery stream.
    ///
    /// Errors: [`ReplayError::NoDeliveryStream`]; [`ReplayError::Invalid`] for an Iceberg
    /// destination (its rows are committed with the delivery's watermarks, and a replay
    /// would append rows the table holds), a configuration that does not compile, or a
    /// schema still to be inferred.
    pub fn new(streams: &DeliveryStreams, request: &ReplayRequest) -> Result<Self, ReplayError> {
        let entry = streams
            .get(&request.delivery_stream)
            .ok_or_else(|| ReplayError::NoDeliveryStream(request.delivery_stream.clone()))?;
        let mut spec = entry.spec();
        if spec.iceberg.is_some() {
            return Err(ReplayError::Invalid(
                "replay lands objects; the delivery stream has an Iceberg destination".into(),
            ));
        }
        if let Some(p) = &request.prefix {
            spec.destination.prefix = Some(p.clone());
            let own = || format!("{}errors/!{{firehose:error-output-type}}/", crate::prefix::static_part(p));
            spec.destination.error_output_prefix = Some(request.error_prefix.clone().unwrap_or_else(own));
        } else if let Some(e) = &request.error_prefix {
            spec.destination.error_output_prefix = Some(e.clone());
        }
        if let Some(v) = &request.schema {
            let conversion = spec.destination.data_format_conversion_configuration.as_mut().filter(|c| c.is_enabled());
            let Some(conversion) = conversion else {
                return Err(ReplayError::Invalid(
                    "the delivery stream converts no format; a schema applies to format conversion".into(),
                ));
            };
            let sc = conversion.schema_configuration.get_or_insert_with(Default::default);
            sc.database_name = Some(v.database_name.clone());
            sc.table_name = Some(v.table_name.clone());
            spec.schema = Some(v.fields.clone());
        }
        let transform = match &request.lambda_arn {
            Some(arn) => {
                set_lambda_arn(&mut spec, arn);
                streams.resolve_transform(&spec).map_err(ReplayError::Invalid)?
            }
            None => entry.transform(),
        };
        let schema = spec
            .schema
            .as_deref()
            .map(crate::schema::to_arrow)
            .transpose()
            .map_err(|e| ReplayError::Invalid(e.to_string()))?;
        let pipeline = plan::build(&spec, schema, transform).map_err(ReplayError::Invalid)?;
        if matches!(pipeline.format, plan::Format::Inferred) {
            return Err(ReplayError::Invalid(
                "the delivery stream has no schema yet (it is inferred at its first delivery); name a schema file or deliver first".into(),
            ));
        }
        let buffer_bytes = spec.destination.buffering_hints.unwrap_or_default().size_bytes();
        Ok(Self { pipeline, buffer_bytes, ctx: streams.context().clone(), stamp_ms: None, background: false })
    }

    /// How this replay cuts and names: (configuration version, buffer bytes).
    pub fn cut(&self) -> (u64, usize) {
        (self.pipeline.version(), self.buffer_bytes)
    }

    /// This replay cutting buffers of `buffer_bytes` and naming objects with configuration
    /// `version`, error records stamped `stamp_ms`: how a task resumes as it began, whatever
    /// `UpdateDestination` changed in between.
    pub fn pinned(mut self, version: u64, buffer_bytes: usize, stamp_ms: u64) -> Self {
        self.pipeline = self.pipeline.with_version(version);
        self.buffer_bytes = buffer_bytes;
        self.stamp_ms = Some(stamp_ms);
        self
    }

    /// This replay converting on one thread: background work on a running server, which
    /// leaves the other cores to live requests and deliveries (objects are the same).
    pub fn in_background(mut self) -> Self {
        self.background = true;
        self
    }

    /// Lands `ranges` of `source` from each one's `next`, a buffer (the size hint's bytes,
    /// at most 100,000 records) at a time, at `pace`. After each buffer's objects are
    /// written, moves its range's `next` past it and calls `landed` with every range and
    /// the report so far (a caller keeps them to resume from). Stops between buffers once
    /// `cancel` is set. Adds what it does to `report`.
    ///
    /// Errors: [`ReplayError::Read`], [`ReplayError::Write`] (what landed before stays).
    pub async fn run(
        &self,
        source: &Stream,
        ranges: &mut [ShardRange],
        pace: Pace,
        cancel: &AtomicBool,
        report: &mut ReplayReport,
        landed: &mut (dyn FnMut(&[ShardRange], &ReplayReport) + Send),
    ) -> Result<(), ReplayError> {
        let started = Instant::now();
        // What this run read, for the pace (a resumed replay's earlier part is not due again).
        let mut read = ReplayReport::default();
        for i in 0..ranges.len() {
            let ShardRange { shard, end, .. } = ranges[i];
            let Some(log) = source.log(shard) else {
                report.skipped += ranges[i].remaining();
                ranges[i].next = end;
                landed(ranges, report);
                continue;
            };
            while ranges[i].next < end {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let next = ranges[i].next;
                let limits = ReadLimits {
                    max_records: usize::try_from(end - next).unwrap_or(usize::MAX).min(100_000),
                    max_bytes: self.buffer_bytes,
                };
                let p = self.pipeline.clone();
                let now = self.stamp_ms.unwrap_or_else(|| self.ctx.clock.now_ms());
                let (one, log) = (self.background, log.clone());
                // Reading, copying and planning a buffer is work for a blocking thread:
                // on a runtime worker it would hold up the requests that worker serves.
                let cut = tokio::task::spawn_blocking(move || {
                    let batch =
                        log.read(next, limits).map_err(|e| ReplayError::Read { shard, message: e.to_string() })?;
                    let records: Vec<SourceRecord> = batch
                        .iter()
                        .take_while(|r| r.sequence_number < end)
                        .map(|r| SourceRecord {
                            sequence: r.sequence_number,
                            arrival_ms: r.arrival_timestamp_ms,
                            partition_key: r.partition_key.to_owned(),
                            data: r.data.to_vec(),
                        })
                        .collect();
                    let (Some(first), Some(last)) =
                        (records.first().map(|r| r.sequence), records.last().map(|r| r.sequence))
                    else {
                        return Ok(None);
                    };
                    let bytes: u64 = records.iter().map(|r| r.data.len() as u64).sum();
                    let n = records.len() as u64;
                    let plan = || p.plan(shard, first, last, &p.deaggregate(records), now);
                    let plan = if one { crate::convert::on_one_thread(plan) } else { plan() };
                    Ok(Some((plan, first, last, n, bytes, batch.next_sequence_number())))
                })
                .await
                .map_err(|e| ReplayError::Invalid(format!("planning panicked: {e}")))??;
                let Some((plan, first, last, n, bytes, after)) = cut else {
                    // Trimmed by retention, or the shard ends sooner than it did.
                    report.skipped += end - next;
                    ranges[i].next = end;
                    landed(ranges, report);
                    break;
                };
                // Below the trim horizon the read starts later: those records are gone.
                report.skipped += first.saturating_sub(next);
                report.add_plan(&plan);
                for o in plan.objects {
                    self.put(&o.key, o.bytes).await?;
                    report.objects += 1;
                }
                report.records += n;
                report.bytes += bytes;
                read.records += n;
                read.bytes += bytes;
                ranges[i].next = after.min(end).max(last + 1);
                landed(ranges, report);
                pace.wait(started, read.records, read.bytes, cancel).await;
            }
        }
        Ok(())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ReplayError> {
        self.ctx
            .lake
            .put(&self.pipeline.bucket, key, bytes)
            .await
            .map_err(|source| ReplayError::Write { key: key.to_owned(), source })
    }
}

/// Replays `request` from `source` at full speed (the offline `sluice replay`), calling
/// `progress` with the records read so far.
///
/// Errors: as [`Replayer::new`] and [`Replayer::run`].
pub async fn replay(
    streams: &DeliveryStreams,
    source: &Arc<Stream>,
    request: &ReplayRequest,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ReplayReport, ReplayError> {
    let replayer = Replayer::new(streams, request)?;
    let mut ranges = resolve(source, request)?;
    let cancel = AtomicBool::new(false);
    let mut report = ReplayReport::default();
    replayer.run(source, &mut ranges, Pace::default(), &cancel, &mut report, &mut |_, r| progress(r.records)).await?;
    Ok(report)
}
