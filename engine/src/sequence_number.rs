//! Sequence numbers as clients see them.
//!
//! Within a shard log, sequence numbers are dense `u64`s. On the wire, Kinesis sequence
//! numbers are decimal strings (AWS's are 56 digits) that increase per shard and are unique
//! per stream. Sluice writes `shard_index × 2^64 + shard_sequence` in decimal: unique per
//! stream because the shard index is, increasing within a shard, larger in child shards than
//! in their parents (children get higher indexes), and stable across restarts, so a client
//! can resume `AT_SEQUENCE_NUMBER` after one.

use std::fmt;
use std::str::FromStr;

/// A stream-wide sequence number: the shard's index in its stream and the record's place
/// in that shard's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber {
    /// Index of the shard in its stream (`shardId-000000000007` has index 7).
    pub shard_index: u32,
    /// Sequence number within the shard's log.
    pub shard_sequence: u64,
}

impl SequenceNumber {
    fn value(self) -> u128 {
        (u128::from(self.shard_index) << 64) | u128::from(self.shard_sequence)
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.value())
    }
}

/// A string that is not a sequence number Sluice issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid sequence number")]
pub struct InvalidSequenceNumber;

impl FromStr for SequenceNumber {
    type Err = InvalidSequenceNumber;

    /// Parses the decimal form; the AWS pattern is `0|([1-9]\d{0,128})`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let canonical = s == "0" || (!s.is_empty() && !s.starts_with('0'));
        if !canonical || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidSequenceNumber);
        }
        let v: u128 = s.parse().map_err(|_| InvalidSequenceNumber)?;
        let shard_index = u32::try_from(v >> 64).map_err(|_| InvalidSequenceNumber)?;
        Ok(Self { shard_index, shard_sequence: v as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_like_the_numbers() {
        let a = SequenceNumber { shard_index: 0, shard_sequence: 41 };
        let b = SequenceNumber { shard_index: 3, shard_sequence: 0 };
        assert_eq!(a.to_string(), "41");
        assert_eq!(b.to_string(), "55340232221128654848");
        assert_eq!(b.to_string().parse::<SequenceNumber>(), Ok(b));
        assert!(a < b);
        for bad in ["", "01", "-1", "x", "1e5", "340282366920938463463374607431768211456"] {
            assert!(bad.parse::<SequenceNumber>().is_err(), "{bad}");
        }
    }
}
