//! Sequence numbers as clients see them.
//!
//! Within a shard log, sequence numbers are dense `u64`s. On the wire, Kinesis sequence
//! numbers are decimal strings of 56 digits that increase per shard and are unique per
//! stream. Sluice writes `49` followed by `shard_index × 2^64 + shard_sequence` in 54 digits:
//! 56 digits and a leading `49` as AWS's (clients that check the form pass), unique per
//! stream because the shard index is, increasing within a shard, larger in child shards than
//! in their parents (children get higher indexes), and stable across restarts, so a client
//! can resume `AT_SEQUENCE_NUMBER` after one. The short form of earlier versions (the value
//! alone) is still read, so checkpoints clients stored then stay valid.

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

/// Digits of a sequence number on the wire: 56, as AWS's.
pub const SEQUENCE_NUMBER_DIGITS: usize = 56;
/// The leading digits of every sequence number Sluice writes (AWS's start with `49` too).
const PREFIX: &str = "49";

impl fmt::Display for SequenceNumber {
    /// `49` and the value in 54 digits. Written with `itoa`: `core::fmt`'s `u128` path cost
    /// 6 % of the server's CPU under 100-byte PutRecords (perf, issue 17).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(self.value());
        f.write_str(PREFIX)?;
        f.write_str(&ZEROS[..(SEQUENCE_NUMBER_DIGITS - PREFIX.len()).saturating_sub(digits.len())])?;
        f.write_str(digits)
    }
}

/// Zeros to pad numbers with: as many as a sequence number can need.
const ZEROS: &str = "000000000000000000000000000000000000000000000000000000";

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
        let digits = match s.len() {
            SEQUENCE_NUMBER_DIGITS => s.strip_prefix(PREFIX).ok_or(InvalidSequenceNumber)?,
            // The short form of earlier versions: the value itself.
            1..=39 => s,
            _ => return Err(InvalidSequenceNumber),
        };
        let v: u128 = digits.parse().map_err(|_| InvalidSequenceNumber)?;
        let shard_index = u32::try_from(v >> 64).map_err(|_| InvalidSequenceNumber)?;
        Ok(Self { shard_index, shard_sequence: v as u64 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_padded_formatting_writes() {
        for shard_index in [0, 1, 9, 10, 4095, u32::MAX] {
            for shard_sequence in [0, 1, 99, 100, 1 << 40, u64::MAX - 1, u64::MAX] {
                let sn = SequenceNumber { shard_index, shard_sequence };
                assert_eq!(sn.to_string(), format!("49{:054}", sn.value()));
            }
        }
        for index in [0, 7, 10, 999_999, u32::MAX] {
            assert_eq!(crate::stream::shard_id(index), format!("shardId-{index:012}"));
        }
    }

    #[test]
    fn round_trips_and_orders_like_the_numbers() {
        let a = SequenceNumber { shard_index: 0, shard_sequence: 41 };
        let b = SequenceNumber { shard_index: 3, shard_sequence: 0 };
        assert_eq!(a.to_string(), "49000000000000000000000000000000000000000000000000000041");
        assert_eq!(b.to_string(), "49000000000000000000000000000000000055340232221128654848");
        assert_eq!(b.to_string().len(), 56);
        assert_eq!(b.to_string().parse::<SequenceNumber>(), Ok(b));
        assert_eq!(a.to_string().parse::<SequenceNumber>(), Ok(a));
        // The short form of earlier versions still reads.
        assert_eq!("55340232221128654848".parse::<SequenceNumber>(), Ok(b));
        assert!(a < b);
        assert!(a.to_string() < b.to_string(), "text order is number order");
        for bad in [
            "",
            "01",
            "-1",
            "x",
            "1e5",
            "340282366920938463463374607431768211456",
            "50000000000000000000000000000000000000000000000000000041",
            "4900000000000000000000000000000000000000000000000000004",
        ] {
            assert!(bad.parse::<SequenceNumber>().is_err(), "{bad}");
        }
    }
}
