//! `GetRecords`: records from a shard iterator's position, and the iterator for the next call.

use std::sync::atomic::Ordering::Relaxed;

use serde::Deserialize;

use super::{epoch_seconds, page_limit, ApiError, ErrorKind, Kinesis};
use crate::api::{cbor_out, Codec};
use sluice_engine::iterator::{IteratorState, ITERATOR_LIFETIME_MS};
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::stream::{shard_id, Stream};
use sluice_engine::{ReadBatch, ReadLimits};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    shard_iterator: String,
    limit: Option<i64>,
    dry_run: Option<bool>,
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    run_within(k, r, ReadLimits::default().max_bytes, Codec::Json).map(|(body, _)| body)
}

/// As [`run`], returning at most `max_bytes` of data and partition keys (but at least one
/// record when there is one; GetRecords' own cap is 10 MiB), encoded for `codec`: the JSON
/// answer, or the CBOR one written straight from the frames (what
/// [`Codec::encode`] would make of the JSON, without building it as values first). Also
/// returns the bytes of data and partition keys the answer holds.
pub fn run_within(k: &Kinesis, r: Request, max_bytes: usize, codec: Codec) -> Result<(Vec<u8>, usize), ApiError> {
    let since = std::time::Instant::now();
    if r.shard_iterator.is_empty() || r.shard_iterator.len() > 512 {
        return Err(ApiError::validation(&r.shard_iterator, "shardIterator", "have length between 1 and 512"));
    }
    let limit = page_limit(r.limit, "limit", 10_000, ReadLimits::default().max_records)?;
    let it = IteratorState::decode(&r.shard_iterator, k.iterator_secret())
        .ok_or_else(|| ApiError::new(ErrorKind::InvalidArgument, "Invalid ShardIterator."))?;
    let now = k.clock.now_ms();
    if now.saturating_sub(it.issued_ms) > ITERATOR_LIFETIME_MS {
        return Err(ApiError::new(
            ErrorKind::ExpiredIterator,
            format!(
                "Iterator expired. The iterator was created at time {} while right now it is {} which is further in the future than the tolerated delay of {ITERATOR_LIFETIME_MS} milliseconds.",
                it.issued_ms, now
            ),
        ));
    }
    // An iterator of a deleted stream does not read a new stream of the same name.
    let stream = k
        .streams
        .get(&it.stream)
        .filter(|s| s.incarnation() == it.incarnation)
        .ok_or_else(|| k.not_found(&it.stream))?;
    let shard = stream.shard(it.shard_index).ok_or_else(|| k.not_found(&it.stream))?;
    if r.dry_run == Some(true) {
        return Err(k.dry_run(&stream));
    }
    if let Some(mut t) = shard.throttle() {
        if !t.admit_read(now) {
            shard.stats.read_throttled.fetch_add(1, Relaxed);
            return Err(k.rate_exceeded(&it.stream, it.shard_index));
        }
    }
    let log = &shard.log;
    let batch = log
        .read(it.position, ReadLimits { max_records: limit, max_bytes: max_bytes.min(ReadLimits::default().max_bytes) })
        .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
    let last_ts = batch.iter().last().map(|r| r.arrival_timestamp_ms);
    let records = Records { batch: &batch, shard_index: it.shard_index };
    if let Some(mut t) = shard.throttle() {
        t.charge_read(batch.bytes(), now);
    }
    shard.stats.outgoing_bytes.fetch_add(batch.bytes() as u64, Relaxed);
    shard.stats.outgoing_records.fetch_add(batch.len() as u64, Relaxed);
    if let Some(ts) = last_ts {
        shard.stats.iterator_age_ms.store(now.saturating_sub(ts), Relaxed);
    }
    k.stream_metrics.of(&k.streams, &stream).get_records(batch.len(), batch.bytes(), since);
    let end = log.readable_end();
    let behind = match last_ts {
        Some(ts) if batch.next_sequence_number() < end => now.saturating_sub(ts),
        _ => 0,
    };
    let ended = stream
        .meta()
        .shards
        .get(it.shard_index as usize)
        .is_some_and(|s| s.read_to_end(batch.next_sequence_number(), end));
    if ended {
        // The end of a closed shard: no next iterator; the children to continue with.
        let children = child_shards(&stream, it.shard_index);
        let answer =
            Response { records, next_shard_iterator: None, millis_behind_latest: 0, child_shards: Some(children) };
        let body = respond(&answer, codec)?;
        return Ok((body, batch.bytes()));
    }
    let next =
        IteratorState { position: batch.next_sequence_number(), issued_ms: now, ..it }.encode(k.iterator_secret());
    let answer =
        Response { records, next_shard_iterator: Some(next), millis_behind_latest: behind, child_shards: None };
    let body = respond(&answer, codec)?;
    Ok((body, batch.bytes()))
}

/// The shards made from shard `index` of `stream` by a split or merge, as `ChildShards`
/// lists them.
pub(super) fn child_shards(stream: &Stream, index: u32) -> Vec<serde_json::Value> {
    stream
        .children(index)
        .iter()
        .map(|c| {
            let parents: Vec<_> = c.parent.iter().chain(c.adjacent_parent.iter()).map(|p| shard_id(*p)).collect();
            serde_json::json!({
                "ShardId": shard_id(c.index),
                "ParentShards": parents,
                "HashKeyRange": {
                    "StartingHashKey": c.hash_key_range.starting.to_string(),
                    "EndingHashKey": c.hash_key_range.ending.to_string(),
                },
            })
        })
        .collect()
}

/// The records of a batch, written straight from the mapped segments into the response:
/// base64 is encoded in place and needs no JSON escaping, which is where a generic
/// serializer spent most of its time (measured with `perf` on the replay benchmark).
pub(super) struct Records<'a> {
    pub batch: &'a ReadBatch,
    pub shard_index: u32,
}

impl Records<'_> {
    pub fn write_json(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        out.reserve(self.json_bytes_max());
        out.extend_from_slice(b"[");
        for (i, r) in self.batch.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let seq = SequenceNumber { shard_index: self.shard_index, shard_sequence: r.sequence_number };
            write!(out, "{{\"SequenceNumber\":\"{seq}\",\"ApproximateArrivalTimestamp\":").expect("a Vec takes writes");
            serde_json::to_writer(&mut *out, &epoch_seconds(r.arrival_timestamp_ms)).expect("a number serializes");
            out.extend_from_slice(b",\"Data\":\"");
            // Into the reserved capacity, unzeroed; base64-simd encodes 1 KiB records 3.7x
            // faster than the `base64` crate, whose encoding was 15 % of the server's
            // CPU in a 1 KiB replay (perf, issue 17).
            base64_simd::STANDARD.encode_append(r.data, out);
            out.extend_from_slice(b"\",\"PartitionKey\":");
            serde_json::to_writer(&mut *out, r.partition_key).expect("a string serializes");
            out.push(b'}');
        }
        out.push(b']');
    }

    /// At most how many bytes [`Records::write_json`] writes: the base64 of the data, each
    /// partition key as JSON escapes it (a control character becomes 6 bytes, `\u00XX`, a
    /// quote or backslash 2), and 192 bytes of member
    /// names, sequence number and timestamp per record. Reserved up front, so a 14 MB answer
    /// is never copied to a larger buffer half-way: that copy, into pages never touched
    /// before, cost a fifth of the server's CPU in a replay (perf, issue 17).
    fn json_bytes_max(&self) -> usize {
        let escaped = |key: &str| {
            key.len()
                + key.bytes().map(|b| if b < 0x20 { 5 } else { usize::from(b == b'"' || b == b'\\') }).sum::<usize>()
        };
        self.batch.iter().map(|r| r.data.len().div_ceil(3) * 4 + escaped(r.partition_key) + 192).sum::<usize>() + 2
    }

    /// The records as the CBOR protocol carries them: an array of maps with the data as a
    /// byte string (no base64) and the arrival time as tag 1 (epoch time) on milliseconds,
    /// keys in the order the generic encoder writes them.
    pub fn write_cbor(&self, out: &mut Vec<u8>) {
        use std::fmt::Write as _;
        cbor_out::head(out, cbor_out::ARRAY, self.batch.len() as u64);
        let mut sequence_number = String::with_capacity(64);
        for r in self.batch.iter() {
            cbor_out::head(out, cbor_out::MAP, 4);
            cbor_out::text(out, "ApproximateArrivalTimestamp");
            cbor_out::head(out, cbor_out::TAG, 1);
            cbor_out::head(out, cbor_out::UNSIGNED, r.arrival_timestamp_ms);
            cbor_out::text(out, "Data");
            cbor_out::bytes(out, r.data);
            cbor_out::text(out, "PartitionKey");
            cbor_out::text(out, r.partition_key);
            sequence_number.clear();
            let seq = SequenceNumber { shard_index: self.shard_index, shard_sequence: r.sequence_number };
            write!(sequence_number, "{seq}").expect("writing to a String cannot fail");
            cbor_out::text(out, "SequenceNumber");
            cbor_out::text(out, &sequence_number);
        }
    }
}

struct Response<'a> {
    records: Records<'a>,
    next_shard_iterator: Option<String>,
    millis_behind_latest: u64,
    child_shards: Option<Vec<serde_json::Value>>,
}

fn respond(r: &Response<'_>, codec: Codec) -> Result<Vec<u8>, ApiError> {
    match codec {
        Codec::Json => respond_json(r),
        // The end of a closed shard (with its children) is rare: the generic encoder.
        Codec::Cbor if r.child_shards.is_some() => {
            let model = crate::api::model::kinesis();
            let shape = model.operation("GetRecords").and_then(|op| op.output);
            Codec::Cbor.encode(model, shape, respond_json(r)?)
        }
        Codec::Cbor => Ok(respond_cbor(r)),
    }
}

fn respond_cbor(r: &Response<'_>) -> Vec<u8> {
    // Data and partition keys as they are; about 140 bytes of member names, heads and
    // sequence number per record (192 reserved, so the buffer never grows half-way).
    let mut out =
        crate::answer_budget::ANSWER_BUFFERS.take(r.records.batch.bytes() + r.records.batch.len() * 192 + 1024);
    cbor_out::head(&mut out, cbor_out::MAP, 2 + u64::from(r.next_shard_iterator.is_some()));
    cbor_out::text(&mut out, "MillisBehindLatest");
    cbor_out::head(&mut out, cbor_out::UNSIGNED, r.millis_behind_latest);
    if let Some(next) = &r.next_shard_iterator {
        cbor_out::text(&mut out, "NextShardIterator");
        cbor_out::text(&mut out, next);
    }
    cbor_out::text(&mut out, "Records");
    r.records.write_cbor(&mut out);
    out
}

fn respond_json(r: &Response<'_>) -> Result<Vec<u8>, ApiError> {
    let mut out = crate::answer_budget::ANSWER_BUFFERS.take(r.records.json_bytes_max() + 1024);
    out.extend_from_slice(b"{\"Records\":");
    r.records.write_json(&mut out);
    if let Some(next) = &r.next_shard_iterator {
        out.extend_from_slice(b",\"NextShardIterator\":");
        serde_json::to_writer(&mut out, next).expect("a string serializes");
    }
    out.extend_from_slice(format!(",\"MillisBehindLatest\":{}", r.millis_behind_latest).as_bytes());
    if let Some(children) = &r.child_shards {
        out.extend_from_slice(b",\"ChildShards\":");
        serde_json::to_writer(&mut out, children).expect("JSON values serialize");
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use ciborium::value::Value as Cbor;
    use sluice_engine::{Record, ShardLog, ShardLogOptions};

    use super::*;

    /// `value` with every map's entries in key order, so encodings that differ only in key
    /// order compare equal.
    fn sorted(value: Cbor) -> Cbor {
        match value {
            Cbor::Map(entries) => {
                let mut entries: Vec<(Cbor, Cbor)> = entries.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                entries.sort_by(|a, b| a.0.as_text().cmp(&b.0.as_text()));
                Cbor::Map(entries)
            }
            Cbor::Array(items) => Cbor::Array(items.into_iter().map(sorted).collect()),
            Cbor::Tag(t, inner) => Cbor::Tag(t, Box::new(sorted(*inner))),
            other => other,
        }
    }

    #[test]
    fn cbor_written_from_the_frames_equals_the_generic_encoding_of_the_json_answer() {
        let dir = tempfile::tempdir().unwrap();
        let log = ShardLog::open(dir.path(), ShardLogOptions::default()).unwrap();
        // Data at every CBOR length width, keys of many lengths and non-ASCII characters.
        for (i, n) in [0usize, 1, 23, 24, 255, 256, 65_535, 65_536, 70_000].iter().enumerate() {
            let key = format!("ключ-{i}-{}", "k".repeat(i * 29));
            let data: Vec<u8> = (0..*n).map(|b| (b * 31 + i) as u8).collect();
            log.append(&[Record { partition_key: &key, data: &data }]).unwrap();
        }
        let batch = log.read(0, ReadLimits::default()).unwrap();
        assert_eq!(batch.len(), 9);
        let model = crate::api::model::kinesis();
        let shape = model.operation("GetRecords").and_then(|op| op.output);
        for next in [Some("AAAAAAAAAAEXAMPLEITERATOR".to_owned()), None] {
            let answer = Response {
                records: Records { batch: &batch, shard_index: 3 },
                next_shard_iterator: next,
                millis_behind_latest: 86_400_000,
                child_shards: None,
            };
            let direct = respond(&answer, Codec::Cbor).unwrap();
            let generic = Codec::Cbor.encode(model, shape, respond(&answer, Codec::Json).unwrap()).unwrap();
            let decode = |b: &[u8]| sorted(ciborium::de::from_reader(b).unwrap());
            assert_eq!(decode(&direct), decode(&generic));
        }
    }
}
