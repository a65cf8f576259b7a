//! On-demand capacity: the server reshards ON_DEMAND streams itself, as AWS does.
//!
//! AWS's contract (Kinesis developer guide, on-demand mode): a new stream has 4 shards' worth
//! of capacity; it takes up to twice its previous peak write throughput; a stream scales to
//! 200 MiB/s and 200,000 records/s by default. Sluice's policy to keep it: every scaling
//! interval each open shard's write rate is measured from its log's counters; a shard
//! writing at half its quota (1 MiB/s or 1,000 records/s) or more is split at the middle of
//! its hash key range, so capacity stays at least twice the load; two adjacent shards whose
//! rates together stay under a fifth of one shard's quota are merged, down to the 4 shards a
//! stream starts with, or to one shard per MiB/s of the stream's warm throughput
//! (`UpdateStreamWarmThroughput`), which it is split up to ahead of any load. One split or
//! merge per stream and interval, with lineage exactly as `SplitShard`/`MergeShards` make it
//! (the stream shows UPDATING meanwhile).

use std::collections::HashMap;
use std::sync::PoisonError;
use std::time::Instant;

use super::Kinesis;
use sluice_engine::settings::StreamMode;
use sluice_engine::stream::{Stream, StreamStatus};
use sluice_engine::throttle::{SHARD_WRITE_BYTES_PER_SEC, SHARD_WRITE_RECORDS_PER_SEC};

/// Shards an on-demand stream keeps at least: 4, what it starts with. Source: AWS Kinesis
/// developer guide, on-demand mode.
pub const ON_DEMAND_SHARDS_MIN: usize = 4;

/// Open shards an on-demand stream grows to at most: 200, i.e. 200 MiB/s and 200,000
/// records/s of write capacity. Source: AWS Kinesis quotas, on-demand mode default.
pub const ON_DEMAND_SHARDS_MAX: usize = 200;

/// Fraction of a shard's write quota at which it is split.
const HOT: f64 = 0.5;
/// Fraction of one shard's quota under which two adjacent shards together are merged.
const COLD: f64 = 0.2;

/// Write counters of every shard at the last measurement.
#[derive(Debug, Default)]
pub struct Samples {
    taken: Option<Instant>,
    totals: HashMap<(String, u32), (u64, u64)>,
}

impl Kinesis {
    /// Measures every on-demand stream's shards and splits or merges one shard (pair) per
    /// stream where the policy says so. The server calls it every scaling interval.
    pub fn scale_on_demand(&self) {
        let now = Instant::now();
        let mut samples = self.on_demand_samples.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = samples.taken.map(|t| now.duration_since(t).as_secs_f64());
        samples.taken = Some(now);
        let mut next = HashMap::new();
        for stream in self.streams.list() {
            // A cluster's stream changes shards through its catalog; on-demand scaling does
            // not drive it yet.
            if stream.meta().settings.mode != StreamMode::OnDemand || stream.meta().cluster.is_some() {
                continue;
            }
            let rates = rates(&stream, &samples.totals, &mut next, elapsed);
            if let (Some(rates), StreamStatus::Active) = (rates, stream.status(self.clock.now_ms())) {
                self.rescale(&stream, &rates);
            }
        }
        samples.totals = next;
    }

    fn rescale(&self, stream: &Stream, rates: &[(u32, u128, f64)]) {
        let open = rates.len();
        // Warm throughput: at least one shard per MiB/s asked for, ready before the load.
        let warm = (stream.meta().settings.warm_throughput_mibps as usize).min(ON_DEMAND_SHARDS_MAX);
        let hottest = if open < warm {
            // The widest shard, as if it were hot.
            let meta = stream.meta();
            let widest = rates.iter().max_by_key(|r| {
                let range = meta.shards[r.0 as usize].hash_key_range;
                range.ending - range.starting
            });
            widest.map(|&(i, s, _)| (i, s, f64::INFINITY))
        } else {
            rates.iter().max_by(|a, b| a.2.total_cmp(&b.2)).copied()
        };
        let changed = match hottest {
            Some((index, starting, load))
                if load >= HOT
                    && open < ON_DEMAND_SHARDS_MAX
                    && self.streams.open_shards() < self.streams.shard_limit() =>
            {
                let ending = stream.meta().shards[index as usize].hash_key_range.ending;
                let middle = starting + (ending - starting) / 2 + 1;
                stream.split(index, middle, self.clock.now_ms()).map(|_| ()).map_err(|e| e.to_string())
            }
            _ if open > ON_DEMAND_SHARDS_MIN.max(warm) => {
                // Adjacent pairs in hash key order; the coldest one, if cold enough.
                let coldest =
                    rates.windows(2).map(|w| (w[0].0, w[1].0, w[0].2 + w[1].2)).min_by(|a, b| a.2.total_cmp(&b.2));
                match coldest {
                    Some((a, b, load)) if load < COLD => {
                        stream.merge(a, b, self.clock.now_ms()).map(|_| ()).map_err(|e| e.to_string())
                    }
                    _ => return,
                }
            }
            _ => return,
        };
        match changed {
            Ok(()) => stream.begin(StreamStatus::Updating, self.clock.now_ms() + self.config.stream_transition_ms),
            Err(e) => tracing::warn!(stream = %stream.meta().name, error = %e, "on-demand rescaling failed"),
        }
    }
}

/// Each open shard of `stream` in hash key order: index, starting hash key, and its write
/// load since the last measurement as a fraction of its quota (the larger of bytes and
/// records). `None` on the first measurement. Records the counters in `next`.
fn rates(
    stream: &Stream,
    before: &HashMap<(String, u32), (u64, u64)>,
    next: &mut HashMap<(String, u32), (u64, u64)>,
    elapsed: Option<f64>,
) -> Option<Vec<(u32, u128, f64)>> {
    let meta = stream.meta();
    let mut out = Vec::new();
    let mut complete = elapsed.is_some_and(|e| e > 0.0);
    for s in meta.shards.iter().filter(|s| !s.closed) {
        let Some(shard) = stream.shard(s.index) else { continue };
        let totals = shard.log.appended_totals();
        let key = (meta.name.clone(), s.index);
        let load = match (before.get(&key), elapsed) {
            (Some(&(bytes, records)), Some(e)) if e > 0.0 => {
                let b = totals.0.saturating_sub(bytes) as f64 / e / SHARD_WRITE_BYTES_PER_SEC as f64;
                let r = totals.1.saturating_sub(records) as f64 / e / SHARD_WRITE_RECORDS_PER_SEC as f64;
                b.max(r)
            }
            _ => {
                complete = false;
                0.0
            }
        };
        next.insert(key, totals);
        out.push((s.index, s.hash_key_range.starting, load));
    }
    out.sort_by_key(|r| r.1);
    complete.then_some(out)
}
