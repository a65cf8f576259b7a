//! `PutRecords`: up to 500 records in one request, each routed to its shard; results per
//! record, in request order.
//!
//! Two ways in, one action: the general path (the body decoded into a `serde_json::Value`,
//! checked against botocore's model, then taken into [`Request`]) and, for JSON bodies, a
//! fast path ([`Fast`]) that reads the body straight into borrowed strings and checks each
//! member against the same model. The fast path answers only requests that meet the model;
//! any other body goes the general way, which gives AWS's error for it. Both end in
//! [`run_entries`].

use std::borrow::Cow;

use serde::Deserialize;

use super::stream_metrics::PutRecordsOutcome;
use super::{internal, ApiError, ErrorKind, Kinesis, StreamTarget};
use crate::api::model::{Model, ShapeId, ShapeKind};
use crate::api::validate;
use sluice_engine::hash_key::{hash_key_of, parse_explicit_hash_key, HashKey};
use sluice_engine::limits::{PARTITION_KEY_CHARS_MAX, RECORD_BYTES_DEFAULT};
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::settings::RecordDistribution;
use sluice_engine::stream::{shard_id, Stream};
use sluice_engine::Record;

/// Most records in one `PutRecords`: 500. Source: AWS Kinesis API reference.
pub const PUT_RECORDS_RECORDS_MAX: usize = 500;

/// Most bytes (data plus partition keys) in one `PutRecords`: 5 MiB. Source: AWS Kinesis
/// API reference.
pub const PUT_RECORDS_BYTES_MAX: usize = 5 << 20;

/// A record as `PutRecord` and `PutRecords` take it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    data: String,
    // The model no longer marks it required (records may be spread by the stream's record
    // distribution strategy); Sluice routes by it, so its absence is the old model's error.
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

impl Entry {
    /// The entry as the checks take it.
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            data: &self.data,
            partition_key: self.partition_key.as_deref(),
            explicit_hash_key: self.explicit_hash_key.as_deref(),
        }
    }
}

/// A record's members as text: `Data` still base64, as it came.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    data: &'a str,
    partition_key: Option<&'a str>,
    explicit_hash_key: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    records: Vec<Entry>,
    dry_run: Option<bool>,
}

/// A record checked and decoded, ready to route.
pub struct Checked {
    data: Vec<u8>,
    partition_key: String,
    hash_key: HashKey,
}

impl Checked {
    /// Bytes the record counts for: its data and partition key.
    pub fn bytes(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Checks one entry; `position` is its 1-based place in a `PutRecords` (member names in
/// messages are then prefixed `records.3.member.`), `None` for `PutRecord`;
/// `max_record_bytes` is the stream's record size limit (data plus partition key).
pub fn validate_entry(e: EntryRef<'_>, position: Option<usize>, max_record_bytes: usize) -> Result<Checked, ApiError> {
    // Built only for a message: a valid record costs no string work.
    let member = || position.map_or_else(String::new, |i| format!("records.{i}.member."));
    // base64-simd: strict like the `base64` crate's STANDARD (padding, canonical last
    // character), and 3.5x faster on 100 B and 1 KiB records (`cargo bench -p sluice-benches --bench api
    // -- base64`); decoding was 14 % of the server's CPU under 1 KiB PutRecords (perf).
    let data = base64_simd::STANDARD.decode_to_vec(e.data).map_err(|_| {
        ApiError::new(ErrorKind::Serialization, format!("Value of {}Data is not valid base64 data.", member()))
    })?;
    if data.len() > max_record_bytes && max_record_bytes > RECORD_BYTES_DEFAULT {
        return Err(too_large(max_record_bytes));
    }
    if data.len() > RECORD_BYTES_DEFAULT && max_record_bytes <= RECORD_BYTES_DEFAULT {
        let v = format!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]", n = data.len());
        return Err(ApiError::validation(v, &format!("{}data", member()), "have length less than or equal to 1048576"));
    }
    let Some(partition_key) = e.partition_key else {
        return Err(ApiError::new(
            ErrorKind::Validation,
            format!("1 validation error detected: Value null at '{}partitionKey' failed to satisfy constraint: Member must not be null", member()),
        ));
    };
    let chars = partition_key.chars().count();
    if chars < 1 {
        return Err(ApiError::validation(
            partition_key,
            &format!("{}partitionKey", member()),
            "have length greater than or equal to 1",
        ));
    }
    if chars > PARTITION_KEY_CHARS_MAX {
        return Err(ApiError::validation(
            partition_key,
            &format!("{}partitionKey", member()),
            "have length less than or equal to 256",
        ));
    }
    let hash_key = match e.explicit_hash_key {
        None => hash_key_of(partition_key),
        Some(h) => {
            let pattern = !h.is_empty()
                && h.len() <= 39
                && h.bytes().all(|b| b.is_ascii_digit())
                && (h == "0" || !h.starts_with('0'));
            if !pattern {
                return Err(ApiError::validation(
                    h,
                    &format!("{}explicitHashKey", member()),
                    "satisfy regular expression pattern: 0|([1-9]\\d{0,38})",
                ));
            }
            // 39 digits fit the pattern but can pass 2^128 - 1: AWS answers that apart.
            parse_explicit_hash_key(h).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!("Invalid ExplicitHashKey. ExplicitHashKey must be in the range: [0, 2^128-1]. Specified value was {h}"),
                )
            })?
        }
    };
    if data.len() + partition_key.len() > max_record_bytes {
        return Err(too_large(max_record_bytes));
    }
    Ok(Checked { data, partition_key: partition_key.to_owned(), hash_key })
}

fn too_large(max_record_bytes: usize) -> ApiError {
    let limit = match max_record_bytes {
        n if n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n => format!("{} KiB", n >> 10),
    };
    ApiError::new(ErrorKind::InvalidArgument, format!("The record size (data plus partition key) exceeds {limit}."))
}

/// Where one record landed: its sequence number, which names its shard.
pub struct Placed {
    pub sequence_number: SequenceNumber,
}

impl Placed {
    /// The shard id, as Kinesis shows it.
    pub fn shard_id(&self) -> String {
        shard_id(self.sequence_number.shard_index)
    }
}

/// Appends records to the shards their hash keys select, one batch per shard, keeping
/// request order within each shard. Returns where each record landed, in request order.
pub fn append_routed(
    k: &Kinesis,
    stream: &Stream,
    records: Vec<Checked>,
) -> Result<Vec<Result<Placed, ApiError>>, ApiError> {
    // The metadata stays read-locked until every record is written, so a split or merge
    // (which write-locks it) never closes a shard under an append routed to it.
    let meta = stream.meta();
    let mut by_shard: Vec<(u32, Vec<usize>)> = Vec::new();
    // Record distribution AUTO: the open shards in turn, from a random one, whatever the keys.
    let open: Vec<u32> = match meta.settings.distribution {
        RecordDistribution::Auto => meta.shards.iter().filter(|s| !s.closed).map(|s| s.index).collect(),
        RecordDistribution::UserPartitionKey => Vec::new(),
    };
    let turn = sluice_engine::stream::random_u64() as usize;
    for (i, r) in records.iter().enumerate() {
        let shard = match open.len() {
            0 => Stream::route_in(&meta, r.hash_key),
            n => open[turn.wrapping_add(i) % n],
        };
        match by_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, v)) => v.push(i),
            None => by_shard.push((shard, vec![i])),
        }
    }
    let mut results: Vec<Option<Result<Placed, ApiError>>> = (0..records.len()).map(|_| None).collect();
    let now = k.clock.now_ms();
    for (shard, indexes) in by_shard {
        let s = stream.shard(shard).ok_or_else(|| internal(format!("shard {shard} has no log")))?;
        // Records over the shard's quota fail alone, with Kinesis' per-record error.
        let indexes: Vec<usize> = match s.throttle() {
            None => indexes,
            Some(mut t) => indexes
                .into_iter()
                .filter(|&i| {
                    let admitted = t.admit_write(records[i].data.len() + records[i].partition_key.len(), now);
                    if !admitted {
                        s.stats.write_throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        results[i] = Some(Err(k.rate_exceeded(&meta.name, shard)));
                    }
                    admitted
                })
                .collect(),
        };
        if indexes.is_empty() {
            continue;
        }
        let log = &s.log;
        let batch: Vec<Record> = indexes
            .iter()
            .map(|&i| Record { partition_key: &records[i].partition_key, data: &records[i].data })
            .collect();
        match k.append_to_shard(stream, &meta.name, meta.cluster.is_some(), shard, log, &batch) {
            Ok(a) => {
                for (&i, seq) in indexes.iter().zip(a.sequence_numbers()) {
                    let sequence_number = SequenceNumber { shard_index: shard, shard_sequence: seq };
                    results[i] = Some(Ok(Placed { sequence_number }));
                }
            }
            Err(e) => {
                for &i in &indexes {
                    results[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    drop(meta);
    // Queues waiting for records look again.
    k.wake_receivers();
    Ok(results.into_iter().map(|r| r.expect("every record routed")).collect())
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    let entries: Vec<EntryRef<'_>> = r.records.iter().map(Entry::as_ref).collect();
    run_entries(k, &r.target, &entries, r.dry_run == Some(true))
}

/// `PutRecords` on its members: checks the records (count, each record, the 5 MiB total),
/// then the stream, then appends them (or, for a dry run, answers
/// `DryRunOperationException`); returns the JSON answer.
pub fn run_entries(
    k: &Kinesis,
    target: &StreamTarget,
    entries: &[EntryRef<'_>],
    dry_run: bool,
) -> Result<Vec<u8>, ApiError> {
    let since = std::time::Instant::now();
    if entries.is_empty() {
        return Err(ApiError::validation("[]", "records", "have length greater than or equal to 1"));
    }
    if entries.len() > PUT_RECORDS_RECORDS_MAX {
        return Err(ApiError::validation(
            format!("[{} records]", entries.len()),
            "records",
            "have length less than or equal to 500",
        ));
    }
    let max_record_bytes = k.max_record_bytes(target);
    let checked = entries
        .iter()
        .enumerate()
        .map(|(i, e)| validate_entry(*e, Some(i + 1), max_record_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let total: usize = checked.iter().map(Checked::bytes).sum();
    if total > PUT_RECORDS_BYTES_MAX {
        return Err(ApiError::new(ErrorKind::InvalidArgument, "Records size exceeds 5 MB limit"));
    }
    let stream = k.stream_for_data(target)?;
    if dry_run {
        return Err(k.dry_run(&stream));
    }
    let results = append_routed(k, &stream, checked)?;
    let failed = results.iter().filter(|r| r.is_err()).count();
    let throttled = results
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| e.kind == ErrorKind::ProvisionedThroughputExceeded))
        .count();
    let outcome = PutRecordsOutcome { bytes: total, records: results.len(), failed, throttled };
    k.stream_metrics.of(&k.streams, &stream).put_records(outcome, since);
    let encryption = if stream.meta().settings.kms_key_id.is_some() { "KMS" } else { "NONE" };
    Ok(answer(encryption, failed, &results))
}

/// A `PutRecords` JSON body read straight into borrowed strings (no `serde_json::Value` per
/// record): a duplicate member, a `null` record or `Data`, or a member of another JSON type
/// fails the read, and the body then goes the general way. Members the model does not know
/// are skipped, as the general path drops them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Fast<'a> {
    #[serde(borrow)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(rename = "StreamARN", borrow)]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stream_id: Option<Cow<'a, str>>,
    dry_run: Option<bool>,
    #[serde(borrow)]
    records: Vec<FastEntry<'a>>,
}

/// A record of a [`Fast`] body. Strings are borrowed from the body unless they hold JSON
/// escapes (a producer may write `/` as `\/` in base64).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FastEntry<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
    #[serde(borrow)]
    partition_key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

/// The shapes of `PutRecordsInput`'s members in botocore's model, looked up once.
struct Shapes {
    stream_name: ShapeId,
    stream_arn: ShapeId,
    stream_id: ShapeId,
    records: ShapeId,
    data: ShapeId,
    partition_key: ShapeId,
    explicit_hash_key: ShapeId,
}

fn member_shape(model: &Model, structure: ShapeId, name: &str) -> Option<ShapeId> {
    match &model.shape(structure).kind {
        ShapeKind::Structure { members } => members.iter().find(|m| m.name == name).map(|m| m.shape),
        _ => None,
    }
}

fn shapes(model: &Model) -> Option<Shapes> {
    let input = model.operation("PutRecords")?.input?;
    let records = member_shape(model, input, "Records")?;
    let ShapeKind::List { member: entry } = model.shape(records).kind else { return None };
    Some(Shapes {
        stream_name: member_shape(model, input, "StreamName")?,
        stream_arn: member_shape(model, input, "StreamARN")?,
        stream_id: member_shape(model, input, "StreamId")?,
        records,
        data: member_shape(model, entry, "Data")?,
        partition_key: member_shape(model, entry, "PartitionKey")?,
        explicit_hash_key: member_shape(model, entry, "ExplicitHashKey")?,
    })
}

impl<'a> Fast<'a> {
    /// Reads `body` if it meets every check of botocore's model for `PutRecordsInput`
    /// (members' types, lengths, patterns, base64), with every record's partition key
    /// present; `None` otherwise.
    pub fn parse(body: &'a [u8]) -> Option<Self> {
        static SHAPES: std::sync::OnceLock<Option<Shapes>> = std::sync::OnceLock::new();
        let model = crate::api::model::kinesis();
        let shapes = SHAPES.get_or_init(|| shapes(model)).as_ref()?;
        let fast: Self = serde_json::from_slice(body).ok()?;
        let fits =
            |shape: ShapeId, text: Option<&Cow<'_, str>>| text.is_none_or(|t| validate::text_fits(model, shape, t));
        let list = model.shape(shapes.records);
        let count = fast.records.len() as i64;
        let fits_all = fits(shapes.stream_name, fast.stream_name.as_ref())
            && fits(shapes.stream_arn, fast.stream_arn.as_ref())
            && fits(shapes.stream_id, fast.stream_id.as_ref())
            && list.min.is_none_or(|min| count >= min)
            && list.max.is_none_or(|max| count <= max)
            && fast.records.iter().all(|e| {
                e.partition_key.is_some()
                    && validate::text_fits(model, shapes.data, &e.data)
                    && fits(shapes.partition_key, e.partition_key.as_ref())
                    && fits(shapes.explicit_hash_key, e.explicit_hash_key.as_ref())
            });
        fits_all.then_some(fast)
    }

    /// The stream the request names, as the general path's [`StreamTarget`].
    pub fn target(&self) -> StreamTarget {
        StreamTarget {
            stream_name: self.stream_name.as_deref().map(str::to_owned),
            stream_arn: self.stream_arn.as_deref().map(str::to_owned),
        }
    }

    /// Runs the request: [`run_entries`], as the general path does.
    pub fn run(&self, k: &Kinesis, target: &StreamTarget) -> Result<Vec<u8>, ApiError> {
        let entries: Vec<EntryRef<'_>> = self
            .records
            .iter()
            .map(|e| EntryRef {
                data: &e.data,
                partition_key: e.partition_key.as_deref(),
                explicit_hash_key: e.explicit_hash_key.as_deref(),
            })
            .collect();
        run_entries(k, target, &entries, self.dry_run == Some(true))
    }
}

/// The answer of `PutRecords`, written straight into one buffer: members in the order
/// `serde_json::json!` wrote them (by name), shard ids made once per shard. A `String` for
/// each record's shard id and sequence number, and serde's escaping of them, were 6 % of the
/// server's CPU under 100-byte PutRecords (perf, issue 17).
fn answer(encryption: &str, failed: usize, results: &[Result<Placed, ApiError>]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(64 + results.len() * 112);
    write!(out, "{{\"EncryptionType\":\"{encryption}\",\"FailedRecordCount\":{failed},\"Records\":[")
        .expect("a Vec takes writes");
    let mut shard_ids: Vec<(u32, String)> = Vec::new();
    for (i, r) in results.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match r {
            Ok(p) => {
                let index = p.sequence_number.shard_index;
                let id = match shard_ids.iter().position(|(s, _)| *s == index) {
                    Some(known) => known,
                    None => {
                        shard_ids.push((index, shard_id(index)));
                        shard_ids.len() - 1
                    }
                };
                write!(out, "{{\"SequenceNumber\":\"{}\",\"ShardId\":\"{}\"}}", p.sequence_number, shard_ids[id].1)
                    .expect("a Vec takes writes");
            }
            Err(e) => {
                write!(out, "{{\"ErrorCode\":\"{}\",\"ErrorMessage\":", e.kind.name()).expect("a Vec takes writes");
                serde_json::to_writer(&mut out, &e.message).expect("a string serializes");
                out.push(b'}');
            }
        }
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_has_the_members_and_order_of_the_json_it_replaced() {
        let placed = |shard_index, shard_sequence| {
            Ok(Placed { sequence_number: SequenceNumber { shard_index, shard_sequence } })
        };
        let results = vec![
            placed(3, 7),
            Err(ApiError::new(ErrorKind::ProvisionedThroughputExceeded, "Rate exceeded \"now\"")),
            placed(0, 8),
            placed(3, 9),
        ];
        let seq = |shard_index, shard_sequence| SequenceNumber { shard_index, shard_sequence }.to_string();
        let expected = serde_json::json!({
            "FailedRecordCount": 1,
            "Records": [
                {"ShardId": "shardId-000000000003", "SequenceNumber": seq(3, 7)},
                {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded \"now\""},
                {"ShardId": "shardId-000000000000", "SequenceNumber": seq(0, 8)},
                {"ShardId": "shardId-000000000003", "SequenceNumber": seq(3, 9)},
            ],
            "EncryptionType": "NONE",
        });
        assert_eq!(answer("NONE", 1, &results), serde_json::to_vec(&expected).unwrap());
    }
}
