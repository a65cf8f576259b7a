//! Object names: `<prefix><delivery stream>-<version>-<yyyy>-<MM>-<dd>-<HH>-<mm>-<ss>-<id><ext>`
//! (AWS Firehose developer guide, "Amazon S3 object name format").
//!
//! Firehose's `<id>` is random; Sluice derives it from what the object holds (delivery
//! stream, source shard, first and last sequence number, partition), so delivering the same
//! records again writes the same key: a retry or a re-run overwrites instead of duplicating.

use sha2::{Digest, Sha256};

use crate::timestamp_pattern::TimestampPattern;

/// What an object holds, which names it.
#[derive(Debug, Clone, Copy)]
pub struct ObjectOrigin<'a> {
    /// Delivery stream name.
    pub delivery_stream: &'a str,
    /// Source shard index.
    pub shard: u32,
    /// First sequence number (in the shard's log) of the delivered range.
    pub first: u64,
    /// Last sequence number of the delivered range, inclusive.
    pub last: u64,
    /// The evaluated partition (dynamic partition keys), or `""`.
    pub partition: &'a str,
    /// `""` for delivered records, else the error output type.
    pub kind: &'a str,
    /// `""` for live deliveries and replays; a redrive names the error object its records
    /// came from, so what it lands never takes the key of an object the first delivery of
    /// the same range wrote.
    pub tag: &'a str,
}

/// An object's id, derived from its [`ObjectOrigin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// The id of the object holding `origin`.
    pub fn of(origin: &ObjectOrigin<'_>) -> Self {
        let mut h = Sha256::new();
        for part in [origin.delivery_stream, origin.partition, origin.kind] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update(origin.shard.to_le_bytes());
        h.update(origin.first.to_le_bytes());
        h.update(origin.last.to_le_bytes());
        // Hashed only when set: every key written before tags existed stays the same.
        if !origin.tag.is_empty() {
            h.update((origin.tag.len() as u64).to_le_bytes());
            h.update(origin.tag.as_bytes());
        }
        Self(h.finalize().into())
    }

    /// The id as a UUID-shaped string (`8-4-4-4-12` hex digits), like Firehose's.
    pub fn uuid(&self) -> String {
        let hex: String = self.0[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
    }

    /// `!{firehose:random-string}`: 11 characters of `[0-9a-z]`, stable for this object.
    pub fn random_string(&self) -> String {
        const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        self.0[16..27].iter().map(|b| ALPHABET[*b as usize % 36] as char).collect()
    }
}

/// The file name part of an object key.
pub fn object_name(
    delivery_stream: &str,
    version: u64,
    oldest_arrival_ms: u64,
    id: &ObjectId,
    extension: &str,
) -> String {
    let stamp = TimestampPattern::parse("yyyy-MM-dd-HH-mm-ss").expect("a fixed pattern").format(oldest_arrival_ms);
    format!("{delivery_stream}-{version}-{stamp}-{}{extension}", id.uuid())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(last: u64) -> ObjectOrigin<'static> {
        ObjectOrigin {
            delivery_stream: "lake",
            shard: 2,
            first: 10,
            last,
            partition: "station=Dongsi/",
            kind: "",
            tag: "",
        }
    }

    #[test]
    fn same_records_same_name() {
        let a = ObjectId::of(&origin(20));
        assert_eq!(a, ObjectId::of(&origin(20)));
        assert_ne!(a, ObjectId::of(&origin(21)));
        assert_ne!(a, ObjectId::of(&ObjectOrigin { tag: "errors/x", ..origin(20) }));
        let name = object_name("lake", 1, 1_442_018_818_771, &a, ".parquet");
        assert!(name.starts_with("lake-1-2015-09-12-00-46-58-"), "{name}");
        assert!(name.ends_with(".parquet"));
        assert_eq!(name.len(), "lake-1-2015-09-12-00-46-58-".len() + 36 + ".parquet".len());
        assert_eq!(a.random_string().len(), 11);
    }
}
