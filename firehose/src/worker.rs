//! The delivery worker: one tokio task per delivery stream that reads its source shards,
//! buffers per shard, and delivers when the buffering hints say so.
//!
//! - Source shards are followed through splits and merges: a child is read only once
//!   every parent is closed and fully delivered, so records of one partition key land in
//!   order.
//! - A delivery records its range in the checkpoint file first, writes every object
//!   (retrying S3 failures with exponential backoff for the retry duration, then sending
//!   the records to the error prefix as `s3-failed`), and only then advances the
//!   checkpoint. Error objects are retried until they land: nothing is dropped.
//! - On shutdown every buffer is flushed; a delivery that cannot finish (storage down)
//!   stays pending and is redone, with the same keys, after the restart.

mod to_table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::stream::{ShardMeta, Stream};
use sluice_engine::streams::Streams;
use sluice_engine::{Clock, ReadLimits};
use tokio::sync::watch;

use crate::checkpoint::{Checkpoints, ShardCheckpoint};
use crate::coordination::{Coordination, CLAIM_REFRESH_MS};
use crate::delivery_streams::DeliveryStreamEntry;
use crate::error_output::{self, Failure};
use crate::lake::{s3_error_code, Lake};
use crate::metrics::{ErrorLabel, Metrics};
use crate::plan::{self, Format, Pipeline, PlannedObject, SourceRecord};

/// How often an idle worker looks for new records, ms: 50.
pub const POLL_INTERVAL_MS: u64 = 50;
/// First wait before retrying a failed object write, ms: 100 (doubling up to 10 s).
pub const RETRY_BACKOFF_MS_MIN: u64 = 100;
/// Longest wait between retries of a failed object write, ms: 10,000.
pub const RETRY_BACKOFF_MS_MAX: u64 = 10_000;
/// Records a schema is inferred from at most: the first 10,000 of the first buffer.
pub const INFER_RECORDS_MAX: usize = 10_000;
/// Attempts at one pending range before its records go to the error output instead: 5.
/// An attempt is counted (durably) before it starts, so a record that crashes the process
/// while being planned, or a range whose planning fails every time, stops the shard for at
/// most this many attempts instead of crash-looping the server. Once planning is done the
/// attempt is taken back: what cuts it short after that (an operator's SIGKILL, a restart,
/// storage or the catalog down) is not the records' doing and must not send good records
/// to the error output.
///
/// The attempt after the last one plans each record alone, so a record whose planning
/// panics goes to the error output by itself and the others land; only if that attempt
/// too is cut short (a crash no panic handler sees) does the whole range go.
pub const DELIVERY_ATTEMPTS_MAX: u32 = 5;
/// `errorCode` of a record whose planning (transform, partitioning, conversion) panicked.
pub const PLANNING_FAILED: &str = "Sluice.ProcessingPanicked";
/// `errorCode` of records sent to the error output after [`DELIVERY_ATTEMPTS_MAX`] attempts.
pub const ATTEMPTS_EXHAUSTED: &str = "Sluice.DeliveryAttemptsExhausted";
/// `!{firehose:error-output-type}` of records whose objects could not be written within
/// the retry duration (Firehose names destination failures `<destination>-failed`).
pub const S3_FAILED: &str = "s3-failed";

/// What a worker is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Deliver as the buffering hints say.
    Run,
    /// Deliver everything buffered now, then stop (server shutdown).
    Flush,
    /// Stop at once without delivering (the delivery stream was deleted).
    Discard,
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    command: watch::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Tells the worker to stop (`Flush` or `Discard`) and waits for it.
    pub async fn stop(self, how: Command) {
        let _ = self.command.send(how);
        let _ = self.task.await;
    }
}

/// What a worker needs besides its delivery stream.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    /// Kinesis streams, for `KinesisStreamAsSource`.
    pub kinesis: Arc<Streams>,
    /// Where objects land.
    pub lake: Arc<Lake>,
    /// Delivery metrics.
    pub metrics: Arc<Metrics>,
    /// Time of arrival checks, intervals and error records.
    pub clock: Arc<dyn Clock>,
    /// Iceberg catalogs, for Iceberg destinations.
    pub tables: Arc<crate::table::Tables>,
    /// The cluster's claims and checkpoints, once this node has joined a cluster (set
    /// after the workers start): a delivery stream of a cluster delivers only the source
    /// shards this node claims, and waits while this is unset.
    pub coordination: Arc<std::sync::OnceLock<Arc<dyn Coordination>>>,
}

#[derive(Debug)]
struct ShardBuffer {
    records: Vec<SourceRecord>,
    bytes: usize,
    /// When the first buffered record was read (worker clock, ms).
    started_ms: u64,
    next_read: u64,
    /// The leading records converted to rows already, while the buffer fills.
    ahead: Option<plan::Predecoded>,
    /// This buffer is not decoded ahead (its pipeline refused, or a decode panicked).
    ahead_off: bool,
}

/// A buffer's records are decoded ahead once this many more than were decoded wait (the
/// conversion's batch size), so a delivery that comes due converts little more than its
/// last records: with the 4 shards of `benches/examples/firehose_e2e.rs` due at once after
/// their interval, their conversion was a third of the time to land the Beijing file.
const DECODE_AHEAD_RECORDS_MIN: usize = 8192;

struct Worker {
    entry: Arc<DeliveryStreamEntry>,
    ctx: WorkerContext,
    checkpoints: Checkpoints,
    buffers: BTreeMap<u32, ShardBuffer>,
    pipeline: Option<(u64, bool, Pipeline)>,
    /// The pipeline of an Iceberg destination, by configuration version and schema id.
    table_pipeline: Option<(u64, i32, Pipeline)>,
    /// The current attempt's planning finished, so it no longer counts against
    /// [`DELIVERY_ATTEMPTS_MAX`] (see [`Worker::planning_finished`]).
    planned: bool,
    command: watch::Receiver<Command>,
    /// A cluster's delivery stream: the source shards this node claims, with their tokens
    /// ([`crate::coordination::Claim::token`]), and when they were last read (worker clock,
    /// ms).
    claims: BTreeMap<u32, i64>,
    claims_read_ms: Option<u64>,
}

/// Starts the worker of `entry` on `runtime`.
pub fn start(
    entry: Arc<DeliveryStreamEntry>,
    checkpoints: Checkpoints,
    ctx: WorkerContext,
    runtime: &tokio::runtime::Handle,
) -> WorkerHandle {
    let (tx, rx) = watch::channel(Command::Run);
    let worker = Worker {
        entry,
        ctx,
        checkpoints,
        buffers: BTreeMap::new(),
        pipeline: None,
        table_pipeline: None,
        planned: false,
        command: rx,
        claims: BTreeMap::new(),
        claims_read_ms: None,
    };
    WorkerHandle { command: tx, task: runtime.spawn(worker.run()) }
}

impl Worker {
    async fn run(mut self) {
        let name = self.entry.name().to_owned();
        loop {
            let command = *self.command.borrow();
            if command == Command::Discard {
                return;
            }
            let flushing = command == Command::Flush;
            let progressed = match self.step(flushing).await {
                Ok(p) => p,
                Err(StepError::Interrupted) => return,
                Err(StepError::Failed(e)) => {
                    tracing::error!(delivery_stream = %name, error = %e, "delivery step failed; retrying");
                    false
                }
            };
            if flushing && !progressed {
                return;
            }
            if !progressed {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)) => {}
                    _ = self.command.changed() => {}
                }
            }
        }
    }

    fn source(&self) -> Option<Arc<Stream>> {
        match self.entry.spec().source_stream() {
            None => self.entry.internal.clone(),
            Some(stream_name) => self.ctx.kinesis.get(&stream_name),
        }
    }

    fn parents_done(&self, s: &ShardMeta) -> bool {
        [s.parent, s.adjacent_parent].iter().flatten().all(|p| self.checkpoints.shards.get(p).is_none_or(|c| c.done))
    }

    /// One pass over the source shards. Returns whether anything was read or delivered.
    async fn step(&mut self, flushing: bool) -> Result<bool, StepError> {
        let Some(source) = self.source() else { return Ok(false) };
        let mut dirty = false;
        if self.entry.spec().source_stream().is_some()
            && self.checkpoints.source_incarnation != Some(source.incarnation())
        {
            if self.checkpoints.source_incarnation.is_some() {
                // The source was deleted and created again: its positions mean nothing for the
                // new stream, which is read from its start (nothing of it is skipped).
                tracing::warn!(delivery_stream = %self.entry.name(), "source stream was re-created; reading it from the start");
                self.checkpoints.shards.clear();
                self.buffers.clear();
            }
            self.checkpoints.source_incarnation = Some(source.incarnation());
            dirty = true;
        }
        let shards = source.meta().shards.clone();
        for s in &shards {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.checkpoints.shards.entry(s.index) {
                let Some(log) = source.log(s.index) else { continue };
                // A shard born after the delivery stream (a split or merge child) is read from
                // its start, once its parents are delivered.
                let next = log.bounds().first_sequence_number;
                slot.insert(ShardCheckpoint { next, pending_last: None, done: false, attempts: 0 });
                dirty = true;
            }
        }
        if dirty {
            self.checkpoints.save().map_err(|e| StepError::Failed(e.to_string()))?;
        }
        let clustered = self.entry.spec().cluster.is_some();
        if clustered {
            let indices: Vec<u32> = shards.iter().map(|s| s.index).collect();
            self.read_claims(source.incarnation(), &indices).await?;
        }
        let spec = self.entry.spec();
        let size = spec.destination.buffering_hints.unwrap_or_default().size_bytes();
        let interval = spec.destination.buffering_hints.unwrap_or_default().interval_ms();
        let mut progressed = false;
        for s in &shards {
            let cp = self.checkpoints.shards[&s.index];
            if cp.done || !self.parents_done(s) || (clustered && !self.claims.contains_key(&s.index)) {
                continue;
            }
            let Some(log) = source.log(s.index) else { continue };
            if let Some(last) = cp.pending_last {
                let records = read_range(&log, cp.next, last).map_err(StepError::Failed)?;
                if records.last().is_none_or(|r| r.sequence != last) {
                    if log.bounds().first_sequence_number > last {
                        // Retention removed the whole range while it could not be landed:
                        // nothing of it is left.
                        tracing::warn!(delivery_stream = %self.entry.name(), shard = s.index, first = cp.next, last, "a pending range expired from the source before it landed");
                        let cp = self.checkpoints.shards.get_mut(&s.index).expect("registered above");
                        (cp.next, cp.pending_last, cp.attempts) = (last + 1, None, 0);
                        self.save(s.index).await?;
                        progressed = true;
                    }
                    // Not all readable here yet (a new holder's copy whose high watermark is
                    // below the range its former holder began): redone whole once it is, so
                    // it lands on the same keys.
                    continue;
                }
                self.buffers.remove(&s.index);
                self.deliver(s.index, records, None).await?;
                progressed = true;
                continue;
            }
            let now = self.ctx.clock.now_ms();
            let buf = self.buffers.entry(s.index).or_insert_with(|| ShardBuffer {
                records: Vec::new(),
                bytes: 0,
                started_ms: now,
                next_read: cp.next,
                ahead: None,
                ahead_off: false,
            });
            if buf.bytes < size {
                let limits = ReadLimits { max_records: 10_000, max_bytes: size - buf.bytes };
                let batch = log.read(buf.next_read, limits).map_err(|e| StepError::Failed(e.to_string()))?;
                if !batch.is_empty() {
                    if buf.records.is_empty() {
                        buf.started_ms = now;
                    }
                    for r in batch.iter() {
                        buf.bytes += r.data.len();
                        buf.records.push(SourceRecord {
                            sequence: r.sequence_number,
                            arrival_ms: r.arrival_timestamp_ms,
                            partition_key: r.partition_key.to_owned(),
                            data: r.data.to_vec(),
                        });
                    }
                    progressed = true;
                }
                buf.next_read = batch.next_sequence_number();
            }
            let due = !buf.records.is_empty()
                && (buf.bytes >= size || now.saturating_sub(buf.started_ms) >= interval || flushing);
            if due {
                let records = std::mem::take(&mut buf.records);
                let ahead = buf.ahead.take();
                (buf.bytes, buf.ahead_off) = (0, false);
                self.deliver(s.index, records, ahead).await?;
                progressed = true;
            } else {
                self.decode_ahead(s.index);
            }
            let drained = self.buffers.get(&s.index).is_none_or(|b| b.records.is_empty());
            let cp = self.checkpoints.shards.get_mut(&s.index).expect("registered above");
            if drained && s.read_to_end(cp.next, log.bounds().next_sequence_number) {
                cp.done = true;
                self.buffers.remove(&s.index);
                self.save(s.index).await?;
            }
        }
        let oldest = self.buffers.values().filter_map(|b| b.records.first().map(|r| r.arrival_ms)).min();
        let freshness = oldest.map_or(0, |o| self.ctx.clock.now_ms().saturating_sub(o));
        let label = crate::metrics::Metrics::label(self.entry.name());
        self.ctx.metrics.data_freshness_ms.get_or_create(&label).set(freshness);
        let buffered: usize = self.buffers.values().map(|b| b.bytes).sum();
        self.ctx.metrics.buffered_bytes.get_or_create(&label).set(buffered as u64);
        Ok(progressed)
    }

    /// The pipeline for the current configuration, inferring and fixing the schema from
    /// `records` when conversion has none yet.
    async fn pipeline(&mut self, records: &[SourceRecord]) -> Result<Pipeline, StepError> {
        if let Some(p) = self.pipeline_with_schema()? {
            return Ok(p);
        }
        let transform = self.entry.transform();
        // The schema describes what is converted: the transform's output, when there is one.
        let sample = &records[..records.len().min(INFER_RECORDS_MAX)];
        let transformed: Vec<Vec<u8>> = match &transform {
            None => sample.iter().map(|r| r.data.clone()).collect(),
            Some(t) => t
                .process(sample, None)
                .into_iter()
                .filter_map(|o| match o {
                    plan::TransformOutcome::Ok { data, .. } => Some(data),
                    _ => None,
                })
                .collect(),
        };
        let fields = crate::schema::infer(transformed.iter().map(Vec::as_slice))
            .ok_or_else(|| StepError::Failed("no JSON object to infer a schema from".into()))?;
        let fields = self.fix_schema(fields).await?;
        tracing::info!(delivery_stream = %self.entry.name(), columns = fields.len(), "schema inferred from the first buffer and fixed");
        self.entry.update(|s| s.schema = Some(fields)).map_err(|e| StepError::Failed(e.to_string()))?;
        self.pipeline_with_schema()?
            .ok_or_else(|| StepError::Failed("the delivery stream still has no schema after one was fixed".into()))
    }

    /// The schema inferred by this node, fixed: for a cluster's delivery stream, the one
    /// the cluster fixed first (every node converts with the same columns).
    async fn fix_schema(
        &self,
        fields: Vec<crate::schema::FieldSpec>,
    ) -> Result<Vec<crate::schema::FieldSpec>, StepError> {
        let spec = self.entry.spec();
        if spec.cluster.is_none() {
            return Ok(fields);
        }
        let coordination =
            self.ctx.coordination.get().ok_or_else(|| StepError::Failed("the cluster cannot be reached yet".into()))?;
        coordination.fix_schema(&spec, fields).await.map_err(StepError::Failed)
    }

    /// The pipeline for the current configuration; `None` when conversion needs a schema
    /// that is not known yet.
    fn pipeline_with_schema(&mut self) -> Result<Option<Pipeline>, StepError> {
        let spec = self.entry.spec();
        let key = (spec.version, spec.schema.is_some());
        if let Some((v, s, p)) = &self.pipeline {
            if (*v, *s) == key {
                return Ok(Some(p.clone()));
            }
        }
        let schema = spec
            .schema
            .as_deref()
            .map(crate::schema::to_arrow)
            .transpose()
            .map_err(|e| StepError::Failed(e.to_string()))?;
        let transform = self.entry.transform();
        let p = plan::build(&spec, schema, transform.clone()).map_err(StepError::Failed)?;
        if matches!(p.format, Format::Inferred) {
            return Ok(None);
        }
        self.pipeline = Some((key.0, key.1, p.clone()));
        Ok(Some(p))
    }

    /// Converts the records of `shard`'s buffer not decoded yet to rows, when there are
    /// [`DECODE_AHEAD_RECORDS_MIN`] of them and the pipeline allows it. A refusal or a panic
    /// stops it for this buffer; its delivery then decodes everything, as without it.
    fn decode_ahead(&mut self, shard: u32) {
        let Ok(Some(pipeline)) = self.pipeline_with_schema() else { return };
        let Some(buf) = self.buffers.get_mut(&shard) else { return };
        let done = buf.ahead.as_ref().map_or(0, plan::Predecoded::records);
        if buf.ahead_off || !pipeline.predecodable() || buf.records.len() < done + DECODE_AHEAD_RECORDS_MIN {
            return;
        }
        let ahead = buf.ahead.take();
        let more = &buf.records[done..];
        let decoded = crate::tasks::off_runtime(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pipeline.predecode(ahead, more)))
        });
        match decoded {
            Ok(Some(ahead)) => buf.ahead = Some(ahead),
            Ok(None) | Err(_) => buf.ahead_off = true,
        }
    }

    async fn deliver(
        &mut self,
        shard: u32,
        records: Vec<SourceRecord>,
        ahead: Option<plan::Predecoded>,
    ) -> Result<(), StepError> {
        let (Some(first), Some(last)) = (records.first().map(|r| r.sequence), records.last().map(|r| r.sequence))
        else {
            return Ok(());
        };
        self.planned = false;
        let attempts = {
            let cp = self.checkpoints.shards.get_mut(&shard).expect("a checkpoint per shard");
            if cp.next == first && cp.pending_last == Some(last) {
                cp.attempts = cp.attempts.saturating_add(1);
            } else {
                cp.next = first;
                cp.pending_last = Some(last);
                cp.attempts = 1;
            }
            cp.attempts
        };
        self.save(shard).await?;
        // The backup holds every source record, whatever becomes of it below.
        let result = match self.back_up(shard, first, last, &records).await {
            Err(e) => Err(e),
            Ok(()) if attempts > DELIVERY_ATTEMPTS_MAX + 1 => {
                self.fail_range(shard, first, last, records, attempts).await
            }
            Ok(()) if attempts == DELIVERY_ATTEMPTS_MAX + 1 => {
                self.deliver_isolating(shard, first, last, records).await
            }
            Ok(()) => self.deliver_range(shard, first, last, records, ahead).await,
        };
        match result {
            Ok(()) => {
                let cp = self.checkpoints.shards.get_mut(&shard).expect("a checkpoint per shard");
                cp.next = last + 1;
                cp.pending_last = None;
                cp.attempts = 0;
                self.save(shard).await
            }
            Err(StepError::Interrupted) => {
                // A stop asked for while storage was down is not a failed attempt.
                let _ = self.planning_finished(shard).await;
                Err(StepError::Interrupted)
            }
            Err(e) => Err(e),
        }
    }

    /// Sends every record of a range that failed [`DELIVERY_ATTEMPTS_MAX`] attempts to the
    /// error output (`processing-failed`, [`ATTEMPTS_EXHAUSTED`]), so the shard moves on.
    async fn fail_range(
        &mut self,
        shard: u32,
        first: u64,
        last: u64,
        records: Vec<SourceRecord>,
        attempts: u32,
    ) -> Result<(), StepError> {
        let spec = self.entry.spec();
        tracing::error!(delivery_stream = %spec.name, shard, first, last, attempts, "delivery failed repeatedly; the range goes to the error output");
        // A pipeline without schema or transform: error objects need neither, and building
        // them must not be what fails again.
        let pipeline = plan::build(&spec, None, None).map_err(StepError::Failed)?;
        let failure = Failure {
            output_type: crate::error_output::PROCESSING_FAILED,
            code: ATTEMPTS_EXHAUSTED.into(),
            message: format!(
                "Delivery of this record's batch failed {} times (its planning failed, or the process died while planning it, each time); the records were sent to the error output so delivery goes on.",
                attempts - 1
            ),
            attempts: attempts - 1,
        };
        let now = self.ctx.clock.now_ms();
        let mut bytes = Vec::new();
        for r in &records {
            error_output::write_line(&mut bytes, &failure, &r.data, r.arrival_ms, now, None, None);
        }
        let members = (0..records.len()).collect();
        let object =
            pipeline.error_object(shard, first, last, crate::error_output::PROCESSING_FAILED, &records, members, bytes);
        self.write(&pipeline, shard, first, last, &records, object).await
    }

    /// Plans each record of a range that failed every attempt on its own; those whose
    /// planning panics go to the error output (`processing-failed`), the rest are delivered
    /// together as usual.
    async fn deliver_isolating(
        &mut self,
        shard: u32,
        first: u64,
        last: u64,
        records: Vec<SourceRecord>,
    ) -> Result<(), StepError> {
        let pipeline = match self.entry.spec().iceberg {
            Some(_) => self.current_table_pipeline(&records).await?,
            None => self.pipeline(&records).await?,
        };
        let now = self.ctx.clock.now_ms();
        let p = pipeline.clone();
        let (good, bad) = tokio::task::spawn_blocking(move || {
            let mut good = Vec::new();
            let mut bad = Vec::new();
            for r in records {
                let one = std::slice::from_ref(&r);
                let planned =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.plan(shard, first, last, one, now)));
                match planned {
                    Ok(_) => good.push(r),
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_else(|| "a panic without a message".into());
                        bad.push((r, message));
                    }
                }
            }
            (good, bad)
        })
        .await
        .map_err(|e| StepError::Failed(format!("isolating records panicked: {e}")))?;
        tracing::warn!(delivery_stream = %self.entry.name(), shard, first, last, failed = bad.len(), "records whose planning panics were set apart");
        if !bad.is_empty() {
            let failed_at = self.ctx.clock.now_ms();
            let mut bytes = Vec::new();
            for (r, message) in &bad {
                let failure = Failure {
                    output_type: crate::error_output::PROCESSING_FAILED,
                    code: PLANNING_FAILED.into(),
                    message: format!("Processing this record failed: {message}"),
                    attempts: DELIVERY_ATTEMPTS_MAX + 1,
                };
                error_output::write_line(&mut bytes, &failure, &r.data, r.arrival_ms, failed_at, None, None);
            }
            let bad_records: Vec<SourceRecord> = bad.into_iter().map(|(r, _)| r).collect();
            let members = (0..bad_records.len()).collect();
            let object = pipeline.error_object_for(
                shard,
                first,
                last,
                "isolated",
                crate::error_output::PROCESSING_FAILED,
                &bad_records,
                members,
                bytes,
            );
            self.write(&pipeline, shard, first, last, &bad_records, object).await?;
        }
        if good.is_empty() {
            return Ok(());
        }
        self.deliver_range(shard, first, last, good, None).await
    }

    /// The current attempt's planning is done: the attempt counted before it is taken back
    /// (durably), so a kill or stop while objects are written or committed is not one of
    /// the [`DELIVERY_ATTEMPTS_MAX`] that send a range to the error output. Once per attempt.
    async fn planning_finished(&mut self, shard: u32) -> Result<(), StepError> {
        if std::mem::replace(&mut self.planned, true) {
            return Ok(());
        }
        let cp = self.checkpoints.shards.get_mut(&shard).expect("a checkpoint per shard");
        cp.attempts = cp.attempts.saturating_sub(1);
        self.save(shard).await
    }

    /// Writes the checkpoints; for a cluster's delivery stream, `shard`'s also to the
    /// cluster, which refuses it when this node no longer holds the shard's claim (the
    /// shard is then given up: its buffer goes, and the step fails).
    async fn save(&mut self, shard: u32) -> Result<(), StepError> {
        self.checkpoints.save().map_err(|e| StepError::Failed(e.to_string()))?;
        let spec = self.entry.spec();
        if spec.cluster.is_none() {
            return Ok(());
        }
        let (Some(coordination), Some(&token), Some(source)) =
            (self.ctx.coordination.get(), self.claims.get(&shard), self.checkpoints.source_incarnation)
        else {
            return Err(StepError::Failed(format!("source shard {shard} is not claimed by this node")));
        };
        let cp = self.checkpoints.shards[&shard];
        if coordination.save(&spec, shard, token, source, cp).await.map_err(StepError::Failed)? {
            return Ok(());
        }
        self.claims.remove(&shard);
        self.buffers.remove(&shard);
        Err(StepError::Failed(format!(
            "source shard {shard} was taken over by another node; this node stops delivering it"
        )))
    }

    /// Reads this node's claims on `shards` of the source (incarnation
    /// `source_incarnation`) again, at most every [`CLAIM_REFRESH_MS`]: a shard newly taken
    /// goes on from the cluster's checkpoint (its buffer, read under an older claim, goes),
    /// a shard lost is no longer read. Without the cluster link yet, nothing is claimed.
    async fn read_claims(&mut self, source_incarnation: u64, shards: &[u32]) -> Result<(), StepError> {
        let now = self.ctx.clock.now_ms();
        if self.claims_read_ms.is_some_and(|at| now.saturating_sub(at) < CLAIM_REFRESH_MS) {
            return Ok(());
        }
        let Some(coordination) = self.ctx.coordination.get().cloned() else { return Ok(()) };
        let spec = self.entry.spec();
        let held = coordination.claim(&spec, source_incarnation, shards).await.map_err(StepError::Failed)?;
        self.claims_read_ms = Some(now);
        let lost: Vec<u32> = self.claims.keys().filter(|s| !held.contains_key(s)).copied().collect();
        for shard in lost {
            tracing::info!(delivery_stream = %spec.name, shard, "source shard claimed by another node");
            self.claims.remove(&shard);
            self.buffers.remove(&shard);
        }
        for (shard, claim) in held {
            if self.claims.get(&shard) == Some(&claim.token) {
                continue;
            }
            tracing::info!(delivery_stream = %spec.name, shard, "source shard claimed by this node");
            self.buffers.remove(&shard);
            if let Some(cp) = claim.checkpoint {
                self.checkpoints.shards.insert(shard, cp);
            }
            self.claims.insert(shard, claim.token);
        }
        Ok(())
    }

    /// Plans and writes one range's objects.
    async fn deliver_range(
        &mut self,
        shard: u32,
        first: u64,
        last: u64,
        records: Vec<SourceRecord>,
        ahead: Option<plan::Predecoded>,
    ) -> Result<(), StepError> {
        if self.entry.spec().iceberg.is_some() {
            return self.deliver_to_table(shard, first, last, records).await;
        }
        let pipeline = self.pipeline(&records).await?;
        let now = self.ctx.clock.now_ms();
        let (plan, records) = plan_off_thread(&pipeline, shard, first, last, records, now, ahead).await?;
        self.planning_finished(shard).await?;
        let label = Metrics::label(self.entry.name());
        for object in plan.objects {
            self.write(&pipeline, shard, first, last, &records, object).await?;
        }
        self.ctx.metrics.delivered_records.get_or_create(&label).inc_by(plan.delivered as u64);
        self.ctx.metrics.dropped_records.get_or_create(&label).inc_by(plan.dropped as u64);
        tracing::debug!(delivery_stream = %self.entry.name(), shard, first, last, delivered = plan.delivered, "delivered");
        Ok(())
    }

    /// Writes one object, retrying; a delivered object that still fails after the retry
    /// duration becomes an `s3-failed` error object, which is retried until it lands.
    async fn write(
        &mut self,
        pipeline: &Pipeline,
        shard: u32,
        first: u64,
        last: u64,
        records: &[SourceRecord],
        object: PlannedObject,
    ) -> Result<(), StepError> {
        let name = self.entry.name().to_owned();
        let label = Metrics::label(&name);
        let retry_ms = self.entry.spec().destination.retry_ms();
        let deadline = self.ctx.clock.now_ms() + retry_ms;
        let mut object = object;
        let mut backoff = RETRY_BACKOFF_MS_MIN;
        loop {
            match self.ctx.lake.put(&pipeline.bucket, &object.key, object.bytes.clone()).await {
                Ok(()) => {
                    self.ctx.metrics.delivery_success.get_or_create(&label).inc();
                    self.ctx.metrics.delivered_bytes.get_or_create(&label).inc_by(object.bytes.len() as u64);
                    if let Some(t) = object.error_output_type {
                        let l = ErrorLabel { delivery_stream: name.clone(), error_output_type: t.to_owned() };
                        self.ctx.metrics.failed_records.get_or_create(&l).inc_by(object.records.len() as u64);
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.ctx.metrics.delivery_failures.get_or_create(&label).inc();
                    tracing::warn!(delivery_stream = %name, key = %object.key, error = %e, "object write failed; retrying");
                    if object.error_output_type.is_none() && self.ctx.clock.now_ms() >= deadline {
                        let failure = Failure {
                            output_type: S3_FAILED,
                            code: s3_error_code(&e).into(),
                            message: e.to_string(),
                            attempts: 1,
                        };
                        let now = self.ctx.clock.now_ms();
                        let mut bytes = Vec::new();
                        for &i in &object.records {
                            let r = &records[i];
                            error_output::write_line(&mut bytes, &failure, &r.data, r.arrival_ms, now, None, None);
                        }
                        object = pipeline.error_object(shard, first, last, S3_FAILED, records, object.records, bytes);
                        backoff = RETRY_BACKOFF_MS_MIN;
                        continue;
                    }
                }
            }
            self.pause(backoff).await?;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MS_MAX);
        }
    }

    /// Waits `backoff_ms` before a retry; [`StepError::Interrupted`] when told to stop.
    async fn pause(&self, backoff_ms: u64) -> Result<(), StepError> {
        let mut command = self.command.clone();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(backoff_ms)) => {}
            _ = command.changed() => {}
        }
        if *self.command.borrow() != Command::Run {
            return Err(StepError::Interrupted);
        }
        Ok(())
    }

    /// Writes the backup of a range's source records (`S3BackupMode` `Enabled`), retrying
    /// until it lands: a backup is never given up, so the range waits for it.
    async fn back_up(&mut self, shard: u32, first: u64, last: u64, records: &[SourceRecord]) -> Result<(), StepError> {
        let pipeline = self.pipeline(records).await?;
        let Some(object) = pipeline.backup_object(shard, first, last, records) else {
            return Ok(());
        };
        let (bucket, object) = object.map_err(|e| StepError::Failed(format!("backup: {e}")))?;
        let label = Metrics::label(self.entry.name());
        let mut backoff = RETRY_BACKOFF_MS_MIN;
        loop {
            match self.ctx.lake.put(&bucket, &object.key, object.bytes.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.ctx.metrics.delivery_failures.get_or_create(&label).inc();
                    tracing::warn!(delivery_stream = %self.entry.name(), bucket = %bucket, key = %object.key, error = %e, "backup write failed; retrying");
                }
            }
            self.pause(backoff).await?;
            backoff = (backoff * 2).min(RETRY_BACKOFF_MS_MAX);
        }
    }
}

#[derive(Debug)]
enum StepError {
    /// Told to stop while a delivery could not finish; it stays pending.
    Interrupted,
    /// Something failed; the step is tried again.
    Failed(String),
}

/// De-aggregates and plans `records` (the range `first..=last` of `shard`) on tokio's
/// blocking pool: transforms and conversion are CPU work. Returns the plan and the records
/// it indexes.
async fn plan_off_thread(
    pipeline: &Pipeline,
    shard: u32,
    first: u64,
    last: u64,
    records: Vec<SourceRecord>,
    now_ms: u64,
    ahead: Option<plan::Predecoded>,
) -> Result<(plan::Plan, Vec<SourceRecord>), StepError> {
    let p = pipeline.clone();
    tokio::task::spawn_blocking(move || {
        let records = p.deaggregate(records);
        let plan = p.plan_continuing(shard, first, last, &records, now_ms, ahead);
        (plan, records)
    })
    .await
    .map_err(|e| StepError::Failed(format!("planning panicked: {e}")))
}

/// Reads exactly `from..=last` of a shard (a pending delivery being redone).
fn read_range(log: &sluice_engine::ShardLog, from: u64, last: u64) -> Result<Vec<SourceRecord>, String> {
    let mut out = Vec::new();
    let mut next = from;
    while next <= last {
        let want = (last - next + 1).min(10_000) as usize;
        let batch =
            log.read(next, ReadLimits { max_records: want, max_bytes: usize::MAX }).map_err(|e| e.to_string())?;
        if batch.is_empty() {
            break;
        }
        for r in batch.iter().take_while(|r| r.sequence_number <= last) {
            out.push(SourceRecord {
                sequence: r.sequence_number,
                arrival_ms: r.arrival_timestamp_ms,
                partition_key: r.partition_key.to_owned(),
                data: r.data.to_vec(),
            });
        }
        next = batch.next_sequence_number();
    }
    Ok(out)
}
