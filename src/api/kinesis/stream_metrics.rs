//! Kinesis' stream-level metrics (CloudWatch's basic monitoring, always on) as OpenMetrics
//! series with a `stream` label: `PutRecord.Latency` → `sluice_kinesis_put_record_latency_seconds`,
//! `PutRecords.FailedRecords` → `sluice_kinesis_put_records_failed_records_total`, and so on
//! (names from the AWS Kinesis Data Streams developer guide, "Monitoring with CloudWatch",
//! in Prometheus' snake case with its unit suffixes). Counters of a stream's operations live
//! here, per stream incarnation; `IncomingBytes`, `IncomingRecords`, the throttling counts and
//! `GetRecords.IteratorAgeMilliseconds` are summed (or, for the age, the maximum taken) over
//! its shards' own counters at render time. A deleted stream's series go with it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use sluice_engine::stream::Stream;
use sluice_engine::streams::Streams;

/// Upper bounds of the latency histograms' buckets, seconds (0.1 ms to 10 s).
const LATENCY_BUCKETS_S: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0];

/// A latency histogram in microseconds, rendered in seconds.
#[derive(Debug, Default)]
struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Latency {
    fn observe(&self, since: Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        let s = us as f64 / 1e6;
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|&le| s <= le) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn render(&self, out: &mut String, family: &str, stream: &str) {
        let mut cumulative = 0;
        for (le, b) in LATENCY_BUCKETS_S.iter().zip(&self.buckets) {
            cumulative += b.load(Relaxed);
            let _ = writeln!(out, "{family}_bucket{{stream=\"{stream}\",le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{family}_bucket{{stream=\"{stream}\",le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{family}_sum{{stream=\"{stream}\"}} {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{family}_count{{stream=\"{stream}\"}} {count}");
    }
}

/// One shard's own counters (since the server started).
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardCounters {
    /// Whether the shard is closed (split or merged away): its iterator age no longer moves.
    pub closed: bool,
    /// Bytes (data and partition keys) and records appended.
    pub incoming_bytes: u64,
    /// Records appended.
    pub incoming_records: u64,
    /// Bytes and records returned to readers.
    pub outgoing_bytes: u64,
    /// Records returned to readers.
    pub outgoing_records: u64,
    /// Records refused for the shard's write throughput.
    pub write_throttled: u64,
    /// Reads refused for the shard's read throughput.
    pub read_throttled: u64,
    /// Age of the last record read when it was read, ms.
    pub iterator_age_ms: u64,
}

/// The counters of each of `stream`'s shards (open and closed), by shard index.
pub fn shard_counters(stream: &Stream) -> Vec<(u32, ShardCounters)> {
    let meta = stream.meta();
    meta.shards
        .iter()
        .filter_map(|s| {
            let shard = stream.shard(s.index)?;
            let (incoming_bytes, incoming_records) = shard.log.appended_totals();
            let st = &shard.stats;
            Some((
                s.index,
                ShardCounters {
                    closed: s.closed,
                    incoming_bytes,
                    incoming_records,
                    outgoing_bytes: st.outgoing_bytes.load(Relaxed),
                    outgoing_records: st.outgoing_records.load(Relaxed),
                    write_throttled: st.write_throttled.load(Relaxed),
                    read_throttled: st.read_throttled.load(Relaxed),
                    iterator_age_ms: st.iterator_age_ms.load(Relaxed),
                },
            ))
        })
        .collect()
}

/// The operation counters of one stream.
#[derive(Debug, Default)]
pub struct StreamOps {
    put_record_bytes: AtomicU64,
    put_record_success: AtomicU64,
    put_record_latency: Latency,
    put_records_bytes: AtomicU64,
    put_records_success: AtomicU64,
    put_records_total: AtomicU64,
    put_records_successful: AtomicU64,
    put_records_failed: AtomicU64,
    put_records_throttled: AtomicU64,
    put_records_latency: Latency,
    get_records_bytes: AtomicU64,
    get_records_records: AtomicU64,
    get_records_success: AtomicU64,
    get_records_latency: Latency,
}

/// What one answered `PutRecords` did.
#[derive(Debug, Clone, Copy)]
pub struct PutRecordsOutcome {
    /// Bytes of data and partition keys in the request.
    pub bytes: usize,
    /// Records in the request.
    pub records: usize,
    /// Records that failed, of which `throttled` for the shard's write throughput (a
    /// PutRecords counts in `PutRecords.Success` when fewer than all failed; AWS Kinesis
    /// developer guide, stream-level metrics).
    pub failed: usize,
    /// Records refused with `ProvisionedThroughputExceededException`.
    pub throttled: usize,
}

impl StreamOps {
    /// A `PutRecord` that stored `bytes` (data and partition key), begun at `since`.
    pub fn put_record(&self, bytes: usize, since: Instant) {
        self.put_record_bytes.fetch_add(bytes as u64, Relaxed);
        self.put_record_success.fetch_add(1, Relaxed);
        self.put_record_latency.observe(since);
    }

    /// An answered `PutRecords` (some of its records may have failed), begun at `since`.
    pub fn put_records(&self, o: PutRecordsOutcome, since: Instant) {
        self.put_records_bytes.fetch_add(o.bytes as u64, Relaxed);
        self.put_records_total.fetch_add(o.records as u64, Relaxed);
        self.put_records_successful.fetch_add((o.records - o.failed) as u64, Relaxed);
        self.put_records_failed.fetch_add(o.failed as u64, Relaxed);
        self.put_records_throttled.fetch_add(o.throttled as u64, Relaxed);
        // CloudWatch counts the PutRecords operations where at least one record succeeded.
        if o.failed < o.records {
            self.put_records_success.fetch_add(1, Relaxed);
        }
        self.put_records_latency.observe(since);
    }

    /// A `GetRecords` that returned `records` records of `bytes` bytes, begun at `since`.
    pub fn get_records(&self, records: usize, bytes: usize, since: Instant) {
        self.get_records_bytes.fetch_add(bytes as u64, Relaxed);
        self.get_records_records.fetch_add(records as u64, Relaxed);
        self.get_records_success.fetch_add(1, Relaxed);
        self.get_records_latency.observe(since);
    }
}

/// Every stream's operation counters, by stream name and incarnation.
#[derive(Debug, Default)]
pub struct StreamMetrics {
    by_stream: Mutex<HashMap<(String, u64), Arc<StreamOps>>>,
}

/// A counter family of the stream's operations: CloudWatch's name, the series' name, and
/// how to read it.
type OpCounter = (&'static str, &'static str, fn(&StreamOps) -> &AtomicU64);

const OP_COUNTERS: [OpCounter; 11] = [
    ("PutRecord.Bytes", "put_record_bytes", |o| &o.put_record_bytes),
    ("PutRecord.Success", "put_record_success", |o| &o.put_record_success),
    ("PutRecords.Bytes", "put_records_bytes", |o| &o.put_records_bytes),
    ("PutRecords.Success", "put_records_success", |o| &o.put_records_success),
    ("PutRecords.TotalRecords", "put_records_total_records", |o| &o.put_records_total),
    ("PutRecords.SuccessfulRecords", "put_records_successful_records", |o| &o.put_records_successful),
    ("PutRecords.FailedRecords", "put_records_failed_records", |o| &o.put_records_failed),
    ("PutRecords.ThrottledRecords", "put_records_throttled_records", |o| &o.put_records_throttled),
    ("GetRecords.Bytes", "get_records_bytes", |o| &o.get_records_bytes),
    ("GetRecords.Records", "get_records_records", |o| &o.get_records_records),
    ("GetRecords.Success", "get_records_success", |o| &o.get_records_success),
];

/// A latency family: CloudWatch's name, the series' name, and its histogram.
type OpLatency = (&'static str, &'static str, fn(&StreamOps) -> &Latency);

const OP_LATENCIES: [OpLatency; 3] = [
    ("PutRecord.Latency", "put_record_latency_seconds", |o| &o.put_record_latency),
    ("PutRecords.Latency", "put_records_latency_seconds", |o| &o.put_records_latency),
    ("GetRecords.Latency", "get_records_latency_seconds", |o| &o.get_records_latency),
];

/// A stream total summed over its shards' counters: CloudWatch's name, the series' name,
/// and (incoming bytes, incoming records, write throttled, read throttled) → value.
type ShardSum = (&'static str, &'static str, fn([u64; 4]) -> u64);

const SHARD_SUMS: [ShardSum; 4] = [
    ("IncomingBytes", "incoming_bytes", |s| s[0]),
    ("IncomingRecords", "incoming_records", |s| s[1]),
    ("WriteProvisionedThroughputExceeded", "write_provisioned_throughput_exceeded", |s| s[2]),
    ("ReadProvisionedThroughputExceeded", "read_provisioned_throughput_exceeded", |s| s[3]),
];

impl StreamMetrics {
    /// The counters of `stream` (this incarnation of its name). A stream seen for the first
    /// time drops the counters of streams `streams` no longer holds, so deleted streams'
    /// counters go even when nothing reads `/metrics`.
    pub fn of(&self, streams: &Streams, stream: &Stream) -> Arc<StreamOps> {
        let key = (stream.meta().name.clone(), stream.incarnation());
        let mut map = self.by_stream.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ops) = map.get(&key) {
            return ops.clone();
        }
        map.retain(|(name, incarnation), _| streams.get(name).is_some_and(|s| s.incarnation() == *incarnation));
        map.entry(key).or_default().clone()
    }

    /// The stream-level series of `streams` as OpenMetrics text (no `# EOF`). Counters of
    /// streams not among them (deleted) are dropped.
    pub fn render(&self, streams: &[Arc<Stream>]) -> String {
        let rows: Vec<(String, Arc<StreamOps>, [u64; 4], u64)> = {
            let mut map = self.by_stream.lock().unwrap_or_else(PoisonError::into_inner);
            let live: std::collections::HashSet<(String, u64)> =
                streams.iter().map(|s| (s.meta().name.clone(), s.incarnation())).collect();
            map.retain(|k, _| live.contains(k));
            streams
                .iter()
                .map(|s| {
                    let name = s.meta().name.clone();
                    let ops = map.entry((name.clone(), s.incarnation())).or_default().clone();
                    let (mut sums, mut age) = ([0u64; 4], 0);
                    for (_, c) in shard_counters(s) {
                        sums[0] += c.incoming_bytes;
                        sums[1] += c.incoming_records;
                        sums[2] += c.write_throttled;
                        sums[3] += c.read_throttled;
                        if !c.closed {
                            age = age.max(c.iterator_age_ms);
                        }
                    }
                    (name, ops, sums, age)
                })
                .collect()
        };
        let mut out = String::new();
        if rows.is_empty() {
            return out;
        }
        // Stream names are [a-zA-Z0-9_.-]: nothing to escape in a label value.
        for (metric, family, value) in SHARD_SUMS {
            header(&mut out, family, "counter", metric);
            for (name, _, sums, _) in &rows {
                let _ = writeln!(out, "sluice_kinesis_{family}_total{{stream=\"{name}\"}} {}", value(*sums));
            }
        }
        header(&mut out, "get_records_iterator_age_milliseconds", "gauge", "GetRecords.IteratorAgeMilliseconds");
        for (name, _, _, age) in &rows {
            let _ = writeln!(out, "sluice_kinesis_get_records_iterator_age_milliseconds{{stream=\"{name}\"}} {age}");
        }
        for (metric, family, counter) in OP_COUNTERS {
            header(&mut out, family, "counter", metric);
            for (name, ops, _, _) in &rows {
                let _ =
                    writeln!(out, "sluice_kinesis_{family}_total{{stream=\"{name}\"}} {}", counter(ops).load(Relaxed));
            }
        }
        for (metric, family, latency) in OP_LATENCIES {
            header(&mut out, family, "histogram", metric);
            for (name, ops, _, _) in &rows {
                latency(ops).render(&mut out, &format!("sluice_kinesis_{family}"), name);
            }
        }
        out
    }
}

fn header(out: &mut String, family: &str, kind: &str, metric: &str) {
    let _ = writeln!(out, "# TYPE sluice_kinesis_{family} {kind}");
    let _ = writeln!(out, "# HELP sluice_kinesis_{family} Kinesis stream-level metric {metric}.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_records_success_counts_operations_with_a_stored_record() {
        let ops = StreamOps::default();
        let now = Instant::now();
        ops.put_records(PutRecordsOutcome { bytes: 10, records: 3, failed: 0, throttled: 0 }, now);
        ops.put_records(PutRecordsOutcome { bytes: 10, records: 3, failed: 2, throttled: 2 }, now);
        ops.put_records(PutRecordsOutcome { bytes: 10, records: 3, failed: 3, throttled: 1 }, now);
        assert_eq!(ops.put_records_success.load(Relaxed), 2);
        assert_eq!(ops.put_records_total.load(Relaxed), 9);
        assert_eq!(ops.put_records_successful.load(Relaxed), 4);
        assert_eq!(ops.put_records_failed.load(Relaxed), 5);
        assert_eq!(ops.put_records_throttled.load(Relaxed), 3);
        assert_eq!(ops.put_records_latency.count.load(Relaxed), 3);
    }

    #[test]
    fn latency_buckets_are_cumulative_and_end_with_the_count() {
        let l = Latency::default();
        let past = |ms: u64| Instant::now() - std::time::Duration::from_millis(ms);
        for ms in [0, 3, 3, 40, 20_000] {
            l.observe(past(ms));
        }
        let mut out = String::new();
        l.render(&mut out, "f", "s");
        let value = |le: &str| -> u64 {
            let line = out.lines().find(|l| l.starts_with(&format!("f_bucket{{stream=\"s\",le=\"{le}\"}}"))).unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert_eq!(value("0.001"), 1);
        assert_eq!(value("0.005"), 3);
        assert_eq!(value("0.05"), 4);
        assert_eq!(value("10"), 4);
        assert_eq!(value("+Inf"), 5);
        assert!(out.contains("f_count{stream=\"s\"} 5"));
    }
}
