//! Replay: delivering a range of a stream again through a delivery stream, e.g. with a new
//! transform version or into a new prefix. Records are read from the source's shard logs,
//! cut into buffers of the delivery stream's size hint, planned and landed like live
//! deliveries. Object keys derive from (delivery stream, shard, first and last sequence
//! number), and the same range cuts into the same buffers, so replaying a range twice
//! overwrites the same objects instead of adding any.

use std::sync::Arc;

use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::stream::Stream;
use sluice_engine::{ReadLimits, StartingPosition};

use crate::delivery_streams::DeliveryStreams;
use crate::plan::{self, SourceRecord};

/// Where a replay starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayPoint {
    /// Records that arrived at or after this time (ms since the Unix epoch), in every shard.
    Timestamp(u64),
    /// The record with this sequence number (the range is then that record's shard only).
    Sequence(SequenceNumber),
}

/// What to replay.
#[derive(Debug, Clone)]
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
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records read from the source.
    pub records: u64,
    /// Objects written (delivered and error objects).
    pub objects: u64,
    /// Records in delivered objects.
    pub delivered: u64,
    /// Records a transform dropped.
    pub dropped: u64,
    /// Records sent to the error prefix.
    pub failed: u64,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// No delivery stream of that name.
    #[error("delivery stream {0} not found")]
    NoDeliveryStream(String),
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

/// Replays `request` from `source`, calling `progress` with the records read so far.
pub async fn replay(
    streams: &DeliveryStreams,
    source: &Arc<Stream>,
    request: &ReplayRequest,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ReplayReport, ReplayError> {
    let entry = streams
        .get(&request.delivery_stream)
        .ok_or_else(|| ReplayError::NoDeliveryStream(request.delivery_stream.clone()))?;
    let mut spec = entry.spec();
    if spec.iceberg.is_some() {
        // A table's rows are committed with its delivery watermarks; replaying into it
        // would be appending records the table already holds.
        return Err(ReplayError::Invalid(
            "replay lands objects; the delivery stream has an Iceberg destination".into(),
        ));
    }
    if let Some(p) = &request.prefix {
        spec.destination.prefix = Some(p.clone());
    }
    let schema = spec
        .schema
        .as_deref()
        .map(crate::schema::to_arrow)
        .transpose()
        .map_err(|e| ReplayError::Invalid(e.to_string()))?;
    let pipeline = plan::build(&spec, schema, entry.transform()).map_err(ReplayError::Invalid)?;
    if matches!(pipeline.format, plan::Format::Inferred) {
        return Err(ReplayError::Invalid(
            "the delivery stream has no schema yet (it is inferred at its first delivery); name a schema file or deliver first".into(),
        ));
    }
    let buffer_bytes = spec.destination.buffering_hints.unwrap_or_default().size_bytes();
    let ctx = streams.context();
    let shards: Vec<u32> = source.meta().shards.iter().map(|s| s.index).collect();
    let mut report = ReplayReport::default();
    for shard in shards {
        let Some(log) = source.log(shard) else { continue };
        let read_err = |e: sluice_engine::ReadError| ReplayError::Read { shard, message: e.to_string() };
        let start = match request.from {
            ReplayPoint::Timestamp(ms) => log.position(StartingPosition::AtTimestamp(ms)).map_err(read_err)?,
            ReplayPoint::Sequence(s) if s.shard_index == shard => s.shard_sequence,
            ReplayPoint::Sequence(_) => continue,
        };
        let end = match request.to {
            None => log.bounds().next_sequence_number,
            Some(ReplayPoint::Timestamp(ms)) => log.position(StartingPosition::AtTimestamp(ms)).map_err(read_err)?,
            Some(ReplayPoint::Sequence(s)) => s.shard_sequence.saturating_add(1).min(log.bounds().next_sequence_number),
        };
        let mut next = start;
        while next < end {
            let limits = ReadLimits {
                max_records: usize::try_from(end - next).unwrap_or(usize::MAX).min(100_000),
                max_bytes: buffer_bytes,
            };
            let batch = log.read(next, limits).map_err(read_err)?;
            if batch.is_empty() {
                break;
            }
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
            next = batch.next_sequence_number();
            let (Some(first), Some(last)) = (records.first().map(|r| r.sequence), records.last().map(|r| r.sequence))
            else {
                break;
            };
            let p = pipeline.clone();
            let now = ctx.clock.now_ms();
            let n = records.len() as u64;
            let plan = tokio::task::spawn_blocking(move || p.plan(shard, first, last, &p.deaggregate(records), now))
                .await
                .map_err(|e| ReplayError::Invalid(format!("planning panicked: {e}")))?;
            for o in plan.objects {
                ctx.lake
                    .put(&pipeline.bucket, &o.key, o.bytes)
                    .await
                    .map_err(|source| ReplayError::Write { key: o.key.clone(), source })?;
                report.objects += 1;
            }
            report.records += n;
            report.delivered += plan.delivered as u64;
            report.dropped += plan.dropped as u64;
            report.failed += plan.failed.values().map(|v| *v as u64).sum::<u64>();
            progress(report.records);
        }
    }
    Ok(report)
}
