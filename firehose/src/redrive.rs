//! Redrive: the records a delivery stream sent to its error output go back, after a fix to
//! its transform or schema, into the delivery stream (planned and landed with its current
//! configuration) or into a Kinesis stream; each error object exactly once.
//!
//! Exactly once rests on two things:
//! - **A ledger per delivery stream** (`redriven.jsonl` in its directory, one JSON line per
//!   step, synced): `begun` before an error object's records go anywhere (with the time its
//!   objects are stamped with, or the target shards' ends), `done` after. A done object is
//!   never redriven again; a begun one is finished the way it was begun.
//! - **Idempotent landing**: what a redrive lands is named from the error object it came
//!   from ([`crate::object_key::ObjectOrigin::tag`]), so landing it again overwrites; into
//!   a Kinesis stream, each shard's records go in one append, and a begun object's shards
//!   are first searched (from the recorded ends) for that append.
//!
//! Records keep their original arrival time (`arrivalTimestamp`), which names their objects
//! and their `!{timestamp:...}` prefixes as the first delivery would have.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use futures::TryStreamExt as _;
use object_store::ObjectStoreExt as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sluice_engine::error::IoError;
use sluice_engine::stream::{parse_shard_id, Stream};
use sluice_engine::{ReadLimits, Record};

use crate::delivery_streams::{DeliveryStreamEntry, DeliveryStreams};
use crate::error_output::{ERROR_OUTPUT_TYPES, FORMAT_CONVERSION_FAILED, PROCESSING_FAILED};
use crate::plan::{self, SourceRecord};
use crate::prefix::static_part;
use crate::replay::Pace;
use crate::tasks::off_runtime;
use crate::worker::{WorkerContext, S3_FAILED};

/// Most error objects one redrive takes: 100,000 (a narrower time range takes more).
pub const ERROR_OBJECTS_MAX: usize = 100_000;

/// Largest error object a redrive reads: 128 MiB (Firehose's largest buffer is 128 MiB of
/// source records; an error object holds at most one buffer's records, base64-encoded).
pub const ERROR_OBJECT_BYTES_MAX: u64 = 192 << 20;

/// Where redriven records go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedriveTarget {
    /// Back into the delivery stream they failed in, with its configuration as it is now.
    DeliveryStream,
    /// Into the Kinesis stream of this name (routed by their partition keys).
    Stream(String),
}

/// What to redrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RedriveRequest {
    /// The delivery stream whose error output is read.
    pub delivery_stream: String,
    /// `processing-failed`, `format-conversion-failed` or `s3-failed`.
    pub error_output_type: String,
    /// Error objects written at or after this time, ms since the Unix epoch.
    pub from_ms: u64,
    /// Error objects written before this time (ms); a task fixes an open end when it
    /// starts, so what the redrive itself fails again is never read by it.
    pub to_ms: Option<u64>,
    /// Where the records go.
    pub target: RedriveTarget,
}

/// What a redrive did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RedriveReport {
    /// Error objects redriven.
    pub objects: u64,
    /// Error objects in range that an earlier redrive took already.
    pub skipped: u64,
    /// Records put back.
    pub records: u64,
    /// Bytes of record data put back.
    pub bytes: u64,
    /// Records landed in delivered objects (target: the delivery stream).
    pub delivered: u64,
    /// Records that failed again (in new error objects).
    pub failed: u64,
    /// Records a transform dropped.
    pub dropped: u64,
    /// Lines of the error output type whose data could not be read (no `rawData`, or not
    /// base64): not put back.
    #[serde(default)]
    pub unreadable: u64,
}

/// Why a redrive stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedriveError {
    /// No delivery stream of that name.
    #[error("delivery stream {0} not found")]
    NoDeliveryStream(String),
    /// No Kinesis stream of that name.
    #[error("stream {0} not found")]
    NoStream(String),
    /// The request or the configuration is not usable.
    #[error("{0}")]
    Invalid(String),
    /// The lake could not be listed, read or written.
    #[error("{0}")]
    Lake(String),
    /// The ledger could not be written.
    #[error(transparent)]
    Io(#[from] IoError),
    /// Appending to the target stream failed.
    #[error("appending to {stream}: {message}")]
    Append {
        /// The target stream.
        stream: String,
        /// What failed.
        message: String,
    },
}

/// One error object's state in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
enum Step {
    /// Its records are going somewhere: `now_ms` stamps what fails again; `ends` are the
    /// target stream's shard ends before its appends, as (shard index, end) pairs (a map
    /// with integer keys does not survive serde's buffering of tagged enums).
    Begun {
        now_ms: u64,
        /// Where: `delivery-stream` or `stream:<name>`; an object begun into one target is
        /// finished into the same one.
        #[serde(default)]
        target: String,
        /// The delivery stream's configuration version its objects are named with.
        #[serde(default)]
        version: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ends: Option<Vec<(u32, u64)>>,
        /// Target shards whose append is made (each shard's records go in one append).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        appended: Vec<u32>,
    },
    /// Its records were put back, by task `task` (empty when run without one), with
    /// this object's counts.
    Done {
        #[serde(default)]
        task: String,
        #[serde(default)]
        report: RedriveReport,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct LedgerLine {
    key: String,
    #[serde(rename = "type")]
    output_type: String,
    #[serde(flatten)]
    step: Step,
}

/// The redrive ledger of one delivery stream: each error object's (key, error output type)
/// last step.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    steps: HashMap<(String, String), Step>,
}

impl Ledger {
    /// File name of the ledger in a delivery stream's directory.
    pub const FILE: &'static str = "redriven.jsonl";

    /// Loads the ledger of the delivery stream in `dir`. A last line cut short by a crash
    /// is cut off (its step is taken again), so the next line starts a line of its own.
    ///
    /// Errors: the file cannot be read.
    pub fn load(dir: &Path) -> Result<Self, IoError> {
        let path = dir.join(Self::FILE);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(IoError::new(&path, e)),
        };
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            let f = OpenOptions::new().write(true).open(&path).map_err(|e| IoError::new(&path, e))?;
            f.set_len(whole as u64).and_then(|()| f.sync_data()).map_err(|e| IoError::new(&path, e))?;
        }
        let mut steps = HashMap::new();
        for line in text[..whole].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<LedgerLine>(line) {
                Ok(l) => {
                    steps.insert((l.key, l.output_type), l.step);
                }
                Err(error) => tracing::warn!(ledger = %path.display(), %error, "a redrive ledger line cannot be read"),
            }
        }
        Ok(Self { path, steps })
    }

    fn step(&self, key: &str, output_type: &str) -> Option<&Step> {
        self.steps.get(&(key.to_owned(), output_type.to_owned()))
    }

    /// Whether error object `key`'s records of `output_type` were redriven.
    pub fn is_done(&self, key: &str, output_type: &str) -> bool {
        matches!(self.step(key, output_type), Some(Step::Done { .. }))
    }

    fn record(&mut self, key: &str, output_type: &str, step: Step) -> Result<(), IoError> {
        let line = LedgerLine { key: key.to_owned(), output_type: output_type.to_owned(), step };
        let mut bytes = serde_json::to_vec(&line).expect("a ledger line serializes");
        bytes.push(b'\n');
        let io = |e| IoError::new(&self.path, e);
        let mut f: File = OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
        // One write of a whole line: a crash leaves at most a torn last line, ignored on load.
        f.write_all(&bytes).map_err(io)?;
        f.sync_data().map_err(io)?;
        self.steps.insert((line.key, line.output_type), line.step);
        Ok(())
    }
}

/// The error output type of one error record, from its members: format conversion records
/// carry `lastErrorCode`; S3 failures have codes `S3.*`; the rest are processing failures.
fn line_output_type(v: &Value) -> &'static str {
    if v.get("lastErrorCode").is_some() {
        return FORMAT_CONVERSION_FAILED;
    }
    match v.get("errorCode").and_then(Value::as_str) {
        Some(code) if code.starts_with("S3.") => S3_FAILED,
        _ => PROCESSING_FAILED,
    }
}

/// The records of `output_type` in an error object, as the source records they were, and
/// how many of its lines of that type have no readable data. Lines that are not error
/// records are passed over.
fn records_of(bytes: &[u8], output_type: &str) -> (Vec<(u32, SourceRecord)>, u64) {
    let mut records = Vec::new();
    let mut unreadable = 0;
    for (i, line) in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let Ok(v) = serde_json::from_slice::<Value>(line) else { continue };
        if line_output_type(&v) != output_type {
            continue;
        }
        let Some(data) = v
            .get("rawData")
            .and_then(Value::as_str)
            .and_then(|raw| base64::engine::general_purpose::STANDARD.decode(raw).ok())
        else {
            unreadable += 1;
            continue;
        };
        let arrival_ms = v.get("arrivalTimestamp").and_then(Value::as_u64).unwrap_or(0);
        let meta = v.get("kinesisRecordMetadata");
        let field = |name: &str| meta.and_then(|m| m.get(name)).and_then(Value::as_str);
        let shard = field("shardId").and_then(parse_shard_id).unwrap_or(0);
        let sequence = field("sequenceNumber")
            .and_then(|s| s.parse::<sluice_engine::sequence_number::SequenceNumber>().ok())
            .map_or(i as u64, |s| s.shard_sequence);
        let partition_key = field("partitionKey").unwrap_or(crate::delivery_streams::DIRECT_PUT_PARTITION_KEY);
        records.push((shard, SourceRecord { sequence, arrival_ms, partition_key: partition_key.to_owned(), data }));
    }
    (records, unreadable)
}

/// A redrive of one delivery stream's error output, ready to run.
pub struct Redriver {
    entry: Arc<DeliveryStreamEntry>,
    ctx: WorkerContext,
    request: RedriveRequest,
    bucket: String,
    /// The pipeline that plans records put back into the delivery stream.
    pipeline: Option<plan::Pipeline>,
    /// The target Kinesis stream.
    stream: Option<Arc<Stream>>,
    ledger: Ledger,
}

impl RedriveReport {
    /// The sum of two reports.
    pub fn plus(&self, o: &Self) -> Self {
        Self {
            objects: self.objects + o.objects,
            skipped: self.skipped + o.skipped,
            records: self.records + o.records,
            bytes: self.bytes + o.bytes,
            delivered: self.delivered + o.delivered,
            failed: self.failed + o.failed,
            dropped: self.dropped + o.dropped,
            unreadable: self.unreadable + o.unreadable,
        }
    }
}

impl Redriver {
    /// Checks `request` and compiles the delivery stream's configuration as it is now.
    ///
    /// Errors: [`RedriveError::NoDeliveryStream`], [`RedriveError::NoStream`];
    /// [`RedriveError::Invalid`] for an unknown error output type, an Iceberg destination
    /// (its rows are committed with its delivery's watermarks) or a configuration that does
    /// not compile; [`RedriveError::Io`] when the ledger cannot be read.
    pub fn new(streams: &DeliveryStreams, request: RedriveRequest) -> Result<Self, RedriveError> {
        if !ERROR_OUTPUT_TYPES.contains(&request.error_output_type.as_str()) {
            return Err(RedriveError::Invalid(format!(
                "error output type '{}' is not one of {}",
                request.error_output_type,
                ERROR_OUTPUT_TYPES.join(", ")
            )));
        }
        let entry = streams
            .get(&request.delivery_stream)
            .ok_or_else(|| RedriveError::NoDeliveryStream(request.delivery_stream.clone()))?;
        let spec = entry.spec();
        let bucket = spec
            .destination
            .bucket()
            .ok_or_else(|| RedriveError::Invalid("the destination has no bucket".into()))?
            .to_owned();
        let ctx = streams.context();
        let (pipeline, stream) = match &request.target {
            RedriveTarget::DeliveryStream => {
                if spec.iceberg.is_some() {
                    return Err(RedriveError::Invalid(
                        "redrive lands objects; the delivery stream has an Iceberg destination".into(),
                    ));
                }
                let schema = spec
                    .schema
                    .as_deref()
                    .map(crate::schema::to_arrow)
                    .transpose()
                    .map_err(|e| RedriveError::Invalid(e.to_string()))?;
                let pipeline = plan::build(&spec, schema, entry.transform()).map_err(RedriveError::Invalid)?;
                if matches!(pipeline.format, plan::Format::Inferred) {
                    return Err(RedriveError::Invalid(
                        "the delivery stream has no schema yet (it is inferred at its first delivery)".into(),
                    ));
                }
                (Some(pipeline), None)
            }
            RedriveTarget::Stream(name) => {
                let stream = ctx.kinesis.get(name).ok_or_else(|| RedriveError::NoStream(name.clone()))?;
                if stream.meta().cluster.is_some() {
                    // Its appends go through the shard's leader and replicas, which this
                    // layer does not reach.
                    return Err(RedriveError::Invalid(format!(
                        "stream {name} is a cluster's; redrive into the delivery stream instead"
                    )));
                }
                (None, Some(stream))
            }
        };
        let ledger = Ledger::load(entry.dir())?;
        Ok(Self { entry, ctx: ctx.clone(), request, bucket, pipeline, stream, ledger })
    }

    /// The error objects in the request's range, oldest first, with their sizes: under
    /// the error output prefix's fixed part, named for the error output type when the
    /// prefix names it, written in `from_ms..to_ms`.
    ///
    /// Errors: [`RedriveError::Lake`] when the bucket cannot be listed.
    pub async fn error_objects(&self) -> Result<Vec<(String, u64)>, RedriveError> {
        let spec = self.entry.spec();
        let d = &spec.destination;
        let custom = d.error_output_prefix.as_deref().filter(|p| !p.is_empty());
        // Without one, errors go under `<prefix><error-output-type>/`; a custom prefix with
        // expressions must name the type.
        let named = custom.is_none_or(|p| p.contains("!{firehose:error-output-type}"));
        let fixed = match custom {
            Some(p) => static_part(p),
            None => static_part(d.prefix.as_deref().unwrap_or("")),
        };
        let store = self.ctx.lake.bucket(&self.bucket).map_err(|e| RedriveError::Lake(e.to_string()))?;
        let listing_prefix = (!fixed.is_empty()).then(|| object_store::path::Path::from(fixed.trim_end_matches('/')));
        let wanted = self.request.error_output_type.as_str();
        let mut found = Vec::new();
        let mut listing = store.list(listing_prefix.as_ref());
        while let Some(o) = listing.try_next().await.map_err(|e| RedriveError::Lake(e.to_string()))? {
            let key = o.location.as_ref().to_owned();
            let modified = o.last_modified.timestamp_millis().max(0) as u64;
            if modified < self.request.from_ms || self.request.to_ms.is_some_and(|to| modified >= to) {
                continue;
            }
            // Named by type: the path must hold this type as a segment of its own; a literal
            // prefix holds every type's records, told apart line by line.
            if named && !key.split('/').any(|segment| segment == wanted) {
                continue;
            }
            if found.len() == ERROR_OBJECTS_MAX {
                return Err(RedriveError::Invalid(format!(
                    "more than {ERROR_OBJECTS_MAX} error objects are in range; redrive a narrower time range"
                )));
            }
            found.push((modified, key, o.size));
        }
        found.sort();
        Ok(found.into_iter().map(|(_, k, size)| (k, size)).collect())
    }

    /// Redrives `objects` (from [`Redriver::error_objects`]) in order for task `task`,
    /// adding to `report`. An object the ledger has as done is skipped; one that this
    /// task finished before a restart counts as redriven, with the counts it had. Calls
    /// `redriven` with the index of each object done; keeps to `pace` and stops between
    /// objects once `cancel` is set.
    ///
    /// Errors: the lake cannot be read or written, the ledger cannot be written, the target
    /// stream refuses an append. What was redriven before stays recorded.
    pub async fn run(
        &mut self,
        task: &str,
        objects: &[(String, u64)],
        report: &mut RedriveReport,
        pace: Pace,
        cancel: &AtomicBool,
        redriven: &mut (dyn FnMut(usize, &RedriveReport) + Send),
    ) -> Result<(), RedriveError> {
        let started = tokio::time::Instant::now();
        let mut done = RedriveReport::default();
        let output_type = self.request.error_output_type.clone();
        let store = self.ctx.lake.bucket(&self.bucket).map_err(|e| RedriveError::Lake(e.to_string()))?;
        for (i, (key, size)) in objects.iter().enumerate() {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            match self.ledger.step(key, &output_type) {
                Some(Step::Done { task: by, report: counts }) => {
                    if !task.is_empty() && by == task {
                        *report = report.plus(counts);
                    } else {
                        report.skipped += 1;
                    }
                    redriven(i, report);
                    continue;
                }
                Some(Step::Begun { .. }) | None => {}
            }
            if *size > ERROR_OBJECT_BYTES_MAX {
                return Err(RedriveError::Invalid(format!(
                    "error object {key} is {size} bytes, over the {ERROR_OBJECT_BYTES_MAX} a redrive reads"
                )));
            }
            let location = object_store::path::Path::from(key.as_str());
            let read = async { store.get(&location).await?.bytes().await };
            let bytes = read.await.map_err(|e| RedriveError::Lake(format!("reading {key}: {e}")))?;
            let wanted = output_type.clone();
            let (records, unreadable) = tokio::task::spawn_blocking(move || records_of(&bytes, &wanted))
                .await
                .map_err(|e| RedriveError::Invalid(format!("reading {key} panicked: {e}")))?;
            let mut counts = RedriveReport { objects: 1, unreadable, ..RedriveReport::default() };
            let target = match &self.request.target {
                RedriveTarget::DeliveryStream => "delivery-stream".to_owned(),
                RedriveTarget::Stream(name) => format!("stream:{name}"),
            };
            let begun = match self.ledger.step(key, &output_type).cloned() {
                Some(Step::Begun { target: was, .. }) if !was.is_empty() && was != target => {
                    return Err(RedriveError::Invalid(format!(
                        "error object {key} was begun into {was}; redrive it into the same target to finish it"
                    )));
                }
                Some(begun @ Step::Begun { .. }) => begun,
                _ => {
                    let ends = self.stream.as_ref().map(|stream| {
                        let meta = stream.meta();
                        meta.shards
                            .iter()
                            .filter_map(|s| stream.log(s.index).map(|l| (s.index, l.readable_end())))
                            .collect()
                    });
                    let version = self.pipeline.as_ref().map_or(0, plan::Pipeline::version);
                    let step =
                        Step::Begun { now_ms: self.ctx.clock.now_ms(), target, version, ends, appended: Vec::new() };
                    off_runtime(|| self.ledger.record(key, &output_type, step.clone()))?;
                    step
                }
            };
            let Step::Begun { now_ms, version, ends, appended, .. } = begun.clone() else {
                unreachable!("begun above")
            };
            match (&self.pipeline, self.stream.clone()) {
                (Some(pipeline), _) => {
                    // Named with the version it was begun with: finishing it after an
                    // UpdateDestination overwrites what the first attempt wrote.
                    let pipeline = if version > 0 { pipeline.clone().with_version(version) } else { pipeline.clone() };
                    self.land(&pipeline, key, &output_type, records, now_ms, &mut counts).await?;
                }
                (None, Some(stream)) => {
                    let ends: BTreeMap<u32, u64> = ends.unwrap_or_default().into_iter().collect();
                    off_runtime(|| {
                        self.append(&stream, key, &output_type, &records, &ends, begun, appended, &mut counts)
                    })?;
                }
                (None, None) => unreachable!("a redriver has a pipeline or a stream"),
            }
            off_runtime(|| {
                self.ledger.record(key, &output_type, Step::Done { task: task.to_owned(), report: counts })
            })?;
            *report = report.plus(&counts);
            redriven(i, report);
            done = done.plus(&counts);
            pace.wait(started, done.records, done.bytes, cancel).await;
        }
        Ok(())
    }

    /// Plans `records` with the delivery stream's pipeline, tagged with the error object's
    /// key, and writes what it lands.
    async fn land(
        &self,
        pipeline: &plan::Pipeline,
        key: &str,
        output_type: &str,
        records: Vec<(u32, SourceRecord)>,
        now_ms: u64,
        report: &mut RedriveReport,
    ) -> Result<(), RedriveError> {
        let mut by_shard: BTreeMap<u32, Vec<SourceRecord>> = BTreeMap::new();
        for (shard, r) in records {
            report.records += 1;
            report.bytes += r.data.len() as u64;
            by_shard.entry(shard).or_default().push(r);
        }
        let mut pipeline = pipeline.clone();
        pipeline.origin_tag = format!("redrive:{output_type}:{key}");
        for (shard, records) in by_shard {
            let first = records.iter().map(|r| r.sequence).min().unwrap_or(0);
            let last = records.iter().map(|r| r.sequence).max().unwrap_or(0);
            let p = pipeline.clone();
            // Background work: one core, the others left to live requests and deliveries.
            let plan = tokio::task::spawn_blocking(move || {
                crate::convert::on_one_thread(|| p.plan(shard, first, last, &p.deaggregate(records), now_ms))
            })
            .await
            .map_err(|e| RedriveError::Invalid(format!("planning panicked: {e}")))?;
            for o in plan.objects {
                self.ctx
                    .lake
                    .put(&pipeline.bucket, &o.key, o.bytes)
                    .await
                    .map_err(|e| RedriveError::Lake(format!("writing {}: {e}", o.key)))?;
            }
            report.delivered += plan.delivered as u64;
            report.dropped += plan.dropped as u64;
            report.failed += plan.failed.values().map(|n| *n as u64).sum::<u64>();
        }
        Ok(())
    }

    /// Appends `records` to `stream`, each shard's in one append, recording each shard
    /// appended in the ledger's begun step. A shard not recorded as appended may have been
    /// appended just before a crash: its log is searched from the end recorded before the
    /// appends up to its end now, and the append is made only when the batch is not there.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        stream: &Stream,
        key: &str,
        output_type: &str,
        records: &[(u32, SourceRecord)],
        ends: &BTreeMap<u32, u64>,
        mut begun: Step,
        appended: Vec<u32>,
        report: &mut RedriveReport,
    ) -> Result<(), RedriveError> {
        let name = stream.meta().name.clone();
        let mut by_shard: BTreeMap<u32, Vec<Record<'_>>> = BTreeMap::new();
        for (_, r) in records {
            let shard = stream.route(sluice_engine::hash_key::hash_key_of(&r.partition_key));
            by_shard.entry(shard).or_default().push(Record { partition_key: &r.partition_key, data: &r.data });
            report.records += 1;
            report.bytes += r.data.len() as u64;
        }
        for (shard, batch) in by_shard {
            if appended.contains(&shard) {
                continue;
            }
            let log = stream.log(shard).ok_or_else(|| RedriveError::Append {
                stream: name.clone(),
                message: format!("shard {shard} has no log"),
            })?;
            let found = ends.get(&shard).is_some_and(|from| appended_between(&log, *from, log.readable_end(), &batch));
            if !found {
                log.append(&batch)
                    .map_err(|e| RedriveError::Append { stream: name.clone(), message: e.to_string() })?;
            }
            if let Step::Begun { appended, .. } = &mut begun {
                appended.push(shard);
            }
            self.ledger.record(key, output_type, begun.clone())?;
        }
        Ok(())
    }
}

/// Whether `batch` is in `log`, contiguous and in order, between sequence numbers `from`
/// and `to` (a naive search from every start: an append is contiguous, and one that
/// repeats its own beginning is still found).
fn appended_between(log: &sluice_engine::ShardLog, from: u64, to: u64, batch: &[Record<'_>]) -> bool {
    if batch.is_empty() || to.saturating_sub(from) < batch.len() as u64 {
        return false;
    }
    let same =
        |r: &sluice_engine::RecordRef<'_>, b: &Record<'_>| r.partition_key == b.partition_key && r.data == b.data;
    let mut start = from;
    while start + batch.len() as u64 <= to {
        // Find the next record equal to the batch's first, then compare the rest.
        let Ok(read) = log.read(start, ReadLimits { max_records: 10_000, max_bytes: 16 << 20 }) else { return false };
        if read.is_empty() {
            return false;
        }
        let Some(at) = read.iter().find(|r| r.sequence_number < to && same(r, &batch[0])).map(|r| r.sequence_number)
        else {
            start = read.next_sequence_number();
            continue;
        };
        let limits = ReadLimits { max_records: batch.len(), max_bytes: usize::MAX };
        let Ok(run) = log.read(at, limits) else { return false };
        if run.len() == batch.len() && run.iter().zip(batch).all(|(r, b)| same(&r, b)) {
            return true;
        }
        start = at + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_records_are_told_apart_and_decoded() {
        let lines = concat!(
            r#"{"attemptsMade":1,"arrivalTimestamp":1700000000000,"lastErrorCode":"DataFormatConversion.ParseError","lastErrorMessage":"x","rawData":"eyJhIjoxfQ==","kinesisRecordMetadata":{"shardId":"shardId-000000000002","partitionKey":"k","approximateArrivalTimestamp":1700000000000,"sequenceNumber":"49000000000000000000000000000000000000000000000000000002","subsequenceNumber":0}}"#,
            "\n",
            r#"{"attemptsMade":1,"arrivalTimestamp":5,"errorCode":"Lambda.FunctionError","errorMessage":"y","rawData":"YQ=="}"#,
            "\nnot json\n"
        );
        let (conv, unreadable) = records_of(lines.as_bytes(), FORMAT_CONVERSION_FAILED);
        assert_eq!(unreadable, 0);
        assert_eq!(conv.len(), 1);
        assert_eq!(conv[0].0, 2);
        assert_eq!(conv[0].1.data, br#"{"a":1}"#);
        assert_eq!(conv[0].1.partition_key, "k");
        assert_eq!(conv[0].1.arrival_ms, 1_700_000_000_000);
        let (processing, _) = records_of(lines.as_bytes(), PROCESSING_FAILED);
        assert_eq!(processing.len(), 1);
        assert_eq!((processing[0].1.data.as_slice(), processing[0].1.arrival_ms), (b"a".as_slice(), 5));
        assert!(records_of(lines.as_bytes(), S3_FAILED).0.is_empty());
        let (none, unreadable) = records_of(br#"{"errorCode":"Lambda.X","rawData":"%%%"}"#, PROCESSING_FAILED);
        assert_eq!((none.len(), unreadable), (0, 1));
    }

    #[test]
    fn an_append_is_found_only_whole_in_order_and_in_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let log = sluice_engine::ShardLog::open(dir.path(), sluice_engine::ShardLogOptions::default()).unwrap();
        let r = |k: &'static str, d: &'static [u8]| Record { partition_key: k, data: d };
        let (a, b, c) = (r("k", b"a"), r("k", b"b"), r("k", b"c"));
        // 0..4: a a a b (a live producer's a first), 4..6: c a
        log.append(&[a, a, a, b]).unwrap();
        log.append(&[c, a]).unwrap();
        assert!(appended_between(&log, 0, 6, &[a, a, b]), "a batch repeating its own start is found");
        assert!(appended_between(&log, 0, 6, &[c, a]));
        assert!(!appended_between(&log, 0, 6, &[b, a]), "in order, contiguous");
        assert!(!appended_between(&log, 0, 4, &[c, a]), "not past the window's end");
        assert!(!appended_between(&log, 5, 6, &[a, a]), "not before the window's start");
        assert!(!appended_between(&log, 0, 6, &[r("other", b"a")]), "the partition key counts");
        assert!(!appended_between(&log, 0, 6, &[]));
    }

    #[test]
    fn the_ledger_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::load(dir.path()).unwrap();
        ledger
            .record(
                "e/1",
                PROCESSING_FAILED,
                Step::Begun {
                    now_ms: 7,
                    target: "delivery-stream".into(),
                    version: 1,
                    ends: None,
                    appended: Vec::new(),
                },
            )
            .unwrap();
        ledger
            .record("e/1", PROCESSING_FAILED, Step::Done { task: String::new(), report: RedriveReport::default() })
            .unwrap();
        let begun = Step::Begun {
            now_ms: 9,
            target: "stream:s".into(),
            version: 2,
            ends: Some(vec![(0, 12), (3, 4)]),
            appended: vec![3],
        };
        ledger.record("e/2", PROCESSING_FAILED, begun.clone()).unwrap();
        let mut f = OpenOptions::new().append(true).open(dir.path().join(Ledger::FILE)).unwrap();
        f.write_all(br#"{"key":"e/2","type":"processing-fa"#).unwrap();
        let mut ledger = Ledger::load(dir.path()).unwrap();
        ledger
            .record("e/3", PROCESSING_FAILED, Step::Done { task: String::new(), report: RedriveReport::default() })
            .unwrap();
        let ledger = Ledger::load(dir.path()).unwrap();
        assert!(ledger.is_done("e/3", PROCESSING_FAILED), "a line after a torn one is read");
        assert!(ledger.is_done("e/1", PROCESSING_FAILED));
        assert!(!ledger.is_done("e/1", FORMAT_CONVERSION_FAILED));
        assert_eq!(ledger.step("e/2", PROCESSING_FAILED), Some(&begun), "a begun step comes back whole");
    }
}
