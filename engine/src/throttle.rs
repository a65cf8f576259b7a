//! Per-shard provisioned throughput: token buckets in front of a shard's writer and reader.
//!
//! Each bucket refills continuously at its rate and holds at most one second's worth, so a
//! shard takes bursts up to its per-second quota and then its steady rate, as Kinesis does.
//! Reads are admitted per call and then charged for the bytes they returned: a large read
//! may put the byte bucket in debt, and further reads wait until it is paid back.

use serde::Deserialize;

/// A shard's write quota, bytes per second: 1 MiB. Source: AWS Kinesis Data Streams quotas.
pub const SHARD_WRITE_BYTES_PER_SEC: u64 = 1 << 20;
/// A shard's write quota, records per second: 1,000. Source: AWS Kinesis Data Streams quotas.
pub const SHARD_WRITE_RECORDS_PER_SEC: u64 = 1_000;
/// A shard's read quota, bytes per second: 2 MiB. Source: AWS Kinesis Data Streams quotas.
pub const SHARD_READ_BYTES_PER_SEC: u64 = 2 << 20;
/// A shard's read quota, GetRecords calls per second: 5. Source: AWS Kinesis Data Streams quotas.
pub const SHARD_READ_CALLS_PER_SEC: u64 = 5;
/// GetShardIterator calls per second per shard: 5. Source: AWS Kinesis API reference.
pub const SHARD_ITERATOR_CALLS_PER_SEC: u64 = 5;

/// The provisioned rates of one shard. `Default` gives Kinesis' quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleRates {
    /// Bytes of data plus partition keys written per second (default 1 MiB).
    pub write_bytes_per_sec: u64,
    /// Records written per second (default 1,000).
    pub write_records_per_sec: u64,
    /// Bytes of data plus partition keys read per second (default 2 MiB).
    pub read_bytes_per_sec: u64,
    /// GetRecords calls per second (default 5).
    pub read_calls_per_sec: u64,
    /// GetShardIterator calls per second (default 5).
    pub iterator_calls_per_sec: u64,
}

impl Default for ThrottleRates {
    fn default() -> Self {
        Self {
            write_bytes_per_sec: SHARD_WRITE_BYTES_PER_SEC,
            write_records_per_sec: SHARD_WRITE_RECORDS_PER_SEC,
            read_bytes_per_sec: SHARD_READ_BYTES_PER_SEC,
            read_calls_per_sec: SHARD_READ_CALLS_PER_SEC,
            iterator_calls_per_sec: SHARD_ITERATOR_CALLS_PER_SEC,
        }
    }
}

/// A token bucket holding at most one second of its rate.
#[derive(Debug, Clone)]
struct TokenBucket {
    per_ms: f64,
    capacity: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    fn new(per_sec: u64, now_ms: u64) -> Self {
        let capacity = per_sec as f64;
        Self { per_ms: capacity / 1000.0, capacity, tokens: capacity, last_ms: now_ms }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
        self.last_ms = self.last_ms.max(now_ms);
    }

    fn has(&mut self, n: f64, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens >= n
    }
}

/// The buckets of one shard.
#[derive(Debug, Clone)]
pub struct ShardThrottle {
    write_bytes: TokenBucket,
    write_records: TokenBucket,
    read_bytes: TokenBucket,
    read_calls: TokenBucket,
    iterator_calls: TokenBucket,
}

impl ShardThrottle {
    /// Full buckets at `rates`, as of `now_ms`.
    pub fn new(rates: ThrottleRates, now_ms: u64) -> Self {
        Self {
            write_bytes: TokenBucket::new(rates.write_bytes_per_sec, now_ms),
            write_records: TokenBucket::new(rates.write_records_per_sec, now_ms),
            read_bytes: TokenBucket::new(rates.read_bytes_per_sec, now_ms),
            read_calls: TokenBucket::new(rates.read_calls_per_sec, now_ms),
            iterator_calls: TokenBucket::new(rates.iterator_calls_per_sec, now_ms),
        }
    }

    /// Admits one record of `bytes` (data plus partition key), or refuses it. A record
    /// larger than one second of the rate (streams take up to 10 MiB) is admitted when the
    /// bucket is full and leaves it in debt, so the average rate still holds.
    pub fn admit_write(&mut self, bytes: usize, now_ms: u64) -> bool {
        let need = (bytes as f64).min(self.write_bytes.capacity);
        let ok = self.write_bytes.has(need, now_ms) && self.write_records.has(1.0, now_ms);
        if ok {
            self.write_bytes.tokens -= bytes as f64;
            self.write_records.tokens -= 1.0;
        }
        ok
    }

    /// Admits one GetRecords call, or refuses it while the call rate is used up or the
    /// byte bucket is in debt.
    pub fn admit_read(&mut self, now_ms: u64) -> bool {
        let ok = self.read_calls.has(1.0, now_ms) && self.read_bytes.has(0.0, now_ms);
        if ok {
            self.read_calls.tokens -= 1.0;
        }
        ok
    }

    /// Charges an admitted read for the bytes it returned (may go into debt).
    pub fn charge_read(&mut self, bytes: usize, now_ms: u64) {
        self.read_bytes.refill(now_ms);
        self.read_bytes.tokens -= bytes as f64;
    }

    /// Admits one GetShardIterator call, or refuses it.
    pub fn admit_iterator(&mut self, now_ms: u64) -> bool {
        let ok = self.iterator_calls.has(1.0, now_ms);
        if ok {
            self.iterator_calls.tokens -= 1.0;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_burst_to_one_second_of_quota_then_refill_at_the_rate() {
        let mut t = ShardThrottle::new(ThrottleRates::default(), 0);
        assert!((0..1_000).all(|_| t.admit_write(10, 0)));
        assert!(!t.admit_write(10, 0), "the 1,001st record in one second");
        assert!(!t.admit_write(10, 0));
        assert!(t.admit_write(10, 1), "1 ms refills one record's worth");
        assert!(!t.admit_write(10, 1));
        let mut t = ShardThrottle::new(ThrottleRates::default(), 0);
        assert!(t.admit_write(1 << 20, 0));
        assert!(!t.admit_write(1, 0), "1 MiB used up");
        assert!(t.admit_write(1024, 1_000));
    }

    #[test]
    fn reads_are_limited_by_calls_and_by_byte_debt() {
        let mut t = ShardThrottle::new(ThrottleRates::default(), 0);
        assert!((0..5).all(|_| t.admit_read(0)));
        assert!(!t.admit_read(0), "a sixth call in one second");
        let mut t = ShardThrottle::new(ThrottleRates::default(), 0);
        assert!(t.admit_read(0));
        t.charge_read(10 << 20, 0); // a 10 MiB read: 8 MiB of debt at 2 MiB/s
        assert!(!t.admit_read(3_000));
        assert!(t.admit_read(4_000));
    }
}
