//! The routing table of a stream: which open shard owns a hash key, found by binary search.
//!
//! A stream's open shards cover the hash key space with contiguous, non-overlapping ranges
//! (Kinesis keeps this through every split and merge), so sorting them by ending hash key
//! makes the owner of a key the first range ending at or above it. With 500 shards a linear
//! scan ran at 4.3 M keys/s (`cargo bench -p sluice-benches --bench api`, routing).

use crate::hash_key::HashKey;
use crate::stream::ShardMeta;

/// The open shards' ranges, sorted by ending hash key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingTable {
    /// Ending hash key (inclusive) of each open shard's range, ascending; the last is
    /// 2^128 − 1.
    endings: Vec<HashKey>,
    /// Shard index owning the range at the same position.
    indexes: Vec<u32>,
}

impl RoutingTable {
    /// The table of the open (not closed) shards of `shards`, which must cover the whole
    /// hash key space.
    pub fn new(shards: &[ShardMeta]) -> Self {
        let mut open: Vec<&ShardMeta> = shards.iter().filter(|s| !s.closed).collect();
        open.sort_by_key(|s| s.hash_key_range.ending);
        debug_assert!(
            open.first().is_some_and(|s| s.hash_key_range.starting == 0)
                && open.last().is_some_and(|s| s.hash_key_range.ending == HashKey::MAX)
                && open
                    .windows(2)
                    .all(|w| w[0].hash_key_range.ending.checked_add(1) == Some(w[1].hash_key_range.starting)),
            "open shards must cover the hash key space exactly"
        );
        Self {
            endings: open.iter().map(|s| s.hash_key_range.ending).collect(),
            indexes: open.iter().map(|s| s.index).collect(),
        }
    }

    /// Index of the open shard whose hash key range holds `key`.
    ///
    /// Panics if the table is empty (a stream always has an open shard).
    pub fn route(&self, key: HashKey) -> u32 {
        self.indexes[self.endings.partition_point(|&ending| ending < key)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_key::HashKeyRange;

    fn shard(index: u32, starting: HashKey, ending: HashKey, closed: bool) -> ShardMeta {
        let hash_key_range = HashKeyRange { starting, ending };
        ShardMeta {
            index,
            hash_key_range,
            parent: None,
            adjacent_parent: None,
            closed,
            created_ms: None,
            closed_ms: None,
            end: None,
        }
    }

    #[test]
    fn routes_every_key_to_the_open_shard_whose_range_holds_it() {
        // Shard 0 was split into 2 and 3; shard 3 was merged with 1 into 4.
        let shards = [
            shard(0, 0, 99, true),
            shard(1, 100, HashKey::MAX, true),
            shard(2, 0, 49, false),
            shard(3, 50, 99, true),
            shard(4, 50, HashKey::MAX, false),
        ];
        let table = RoutingTable::new(&shards);
        for key in [0, 1, 48, 49, 50, 51, 99, 100, 1 << 100, HashKey::MAX - 1, HashKey::MAX] {
            let linear = shards.iter().find(|s| !s.closed && s.hash_key_range.contains(key)).unwrap().index;
            assert_eq!(table.route(key), linear, "key {key}");
        }
    }

    #[test]
    fn even_splits_route_like_a_scan() {
        for n in [1, 2, 3, 7, 500] {
            let shards = ShardMeta::split_evenly(n);
            let table = RoutingTable::new(&shards);
            for i in 0..2_000u128 {
                let key = i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
                let linear = shards.iter().find(|s| s.hash_key_range.contains(key)).unwrap().index;
                assert_eq!(table.route(key), linear, "{n} shards, key {key}");
            }
        }
    }
}
