//! The 128-bit hash key space and how partition keys are routed into it.
//!
//! Kinesis maps a partition key to a hash key by taking the MD5 digest of its UTF-8 bytes as
//! an unsigned 128-bit big-endian integer, and sends the record to the open shard whose hash
//! key range holds it; an `ExplicitHashKey` (a decimal string) overrides the digest. Source:
//! AWS Kinesis API reference, `PutRecord`.

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A point of the hash key space, 0 to 2^128 − 1.
pub type HashKey = u128;

/// The hash key of a partition key: MD5 of its UTF-8 bytes, read big-endian.
pub fn hash_key_of(partition_key: &str) -> HashKey {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// Parses an `ExplicitHashKey`: a decimal string of 1 to 39 digits in [0, 2^128 − 1]
/// (AWS Kinesis API reference, pattern `0|([1-9]\d{0,38})`).
pub fn parse_explicit_hash_key(s: &str) -> Option<HashKey> {
    let digits_ok = !s.is_empty() && s.len() <= 39 && s.bytes().all(|b| b.is_ascii_digit());
    let canonical = s == "0" || !s.starts_with('0');
    if digits_ok && canonical {
        s.parse().ok()
    } else {
        None
    }
}

/// An inclusive range of hash keys, as a shard owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashKeyRange {
    /// Lowest hash key of the range.
    pub starting: HashKey,
    /// Highest hash key of the range (inclusive).
    pub ending: HashKey,
}

impl HashKeyRange {
    /// The whole space, 0 to 2^128 − 1.
    pub const ALL: Self = Self { starting: 0, ending: u128::MAX };

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: HashKey) -> bool {
        self.starting <= key && key <= self.ending
    }

    /// `n` contiguous ranges covering the whole space, shard `i` starting at
    /// floor(i × 2^128 / n), the boundaries Kinesis gives at stream creation. `n` ≥ 1.
    pub fn split_evenly(n: u32) -> Vec<Self> {
        assert!(n >= 1, "a stream has at least one shard");
        // Shard i starts at floor(i × 2^128 / n); with 2^128 = n·q + r + 1 that is
        // i·q + floor(i·(r + 1) / n), computed without overflow.
        let n = u128::from(n);
        let (q, r) = (u128::MAX / n, u128::MAX % n);
        let start = |i: u128| i * q + i * (r + 1) / n;
        (0..n)
            .map(|i| Self { starting: start(i), ending: if i + 1 == n { u128::MAX } else { start(i + 1) - 1 } })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys_are_md5_big_endian() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key_of(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        // md5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(hash_key_of("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn explicit_hash_keys_are_canonical_decimals_in_range() {
        assert_eq!(parse_explicit_hash_key("0"), Some(0));
        assert_eq!(parse_explicit_hash_key("340282366920938463463374607431768211455"), Some(u128::MAX));
        for bad in [
            "",
            "-1",
            "01",
            "1.5",
            "abc",
            "340282366920938463463374607431768211456",
            "1000000000000000000000000000000000000000",
        ] {
            assert_eq!(parse_explicit_hash_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn even_split_covers_the_space_without_gaps() {
        for n in [1, 2, 3, 4, 7, 500] {
            let ranges = HashKeyRange::split_evenly(n);
            assert_eq!(ranges.len(), n as usize);
            assert_eq!(ranges[0].starting, 0);
            assert_eq!(ranges.last().unwrap().ending, u128::MAX);
            for w in ranges.windows(2) {
                assert_eq!(w[0].ending + 1, w[1].starting);
            }
        }
        // The boundaries Kinesis gives 4- and 3-shard streams.
        let four = HashKeyRange::split_evenly(4);
        assert_eq!(four[0].ending, 85070591730234615865843651857942052863);
        assert_eq!(four[1].starting, 85070591730234615865843651857942052864);
        let three = HashKeyRange::split_evenly(3);
        assert_eq!(three[1].starting, 113427455640312821154458202477256070485);
    }
}
