//! Records aggregated by the Kinesis Producer Library (KPL): one Kinesis record holding many
//! user records. Firehose de-aggregates them when it reads a Kinesis stream, before
//! transforms and conversion, so each user record lands as its own row.
//!
//! The format (KPL's `aggregation-format.md`): the magic bytes `F3 89 9A C2`, a protobuf
//! `AggregatedRecord`, then the MD5 of the protobuf bytes (16 bytes). A record without the
//! magic, or whose MD5 does not match, or whose protobuf does not decode, is not aggregated
//! and stays as it is (the KPL's own de-aggregator does the same).

use md5::{Digest, Md5};
use prost::Message;

use crate::plan::SourceRecord;

/// The first bytes of an aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

const MD5_BYTES: usize = 16;

/// `AggregatedRecord` of the KPL's protobuf schema.
#[derive(Clone, PartialEq, Message)]
pub struct AggregatedRecord {
    /// Partition keys, referred to by index.
    #[prost(string, repeated, tag = "1")]
    pub partition_key_table: Vec<String>,
    /// Explicit hash keys, referred to by index.
    #[prost(string, repeated, tag = "2")]
    pub explicit_hash_key_table: Vec<String>,
    /// The user records.
    #[prost(message, repeated, tag = "3")]
    pub records: Vec<UserRecord>,
}

/// `Record` of the KPL's protobuf schema: one user record.
#[derive(Clone, PartialEq, Message)]
pub struct UserRecord {
    /// Index into `partition_key_table`.
    #[prost(uint64, required, tag = "1")]
    pub partition_key_index: u64,
    /// Index into `explicit_hash_key_table`.
    #[prost(uint64, optional, tag = "2")]
    pub explicit_hash_key_index: Option<u64>,
    /// The user record's data.
    #[prost(bytes = "vec", required, tag = "3")]
    pub data: Vec<u8>,
}

/// The user records of `data` (partition key, data), or `None` when it is not a valid
/// aggregated record.
pub fn user_records(data: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let body = data.strip_prefix(&MAGIC)?;
    let split = body.len().checked_sub(MD5_BYTES)?;
    let (message, digest) = body.split_at(split);
    if Md5::digest(message).as_slice() != digest {
        return None;
    }
    let aggregated = AggregatedRecord::decode(message).ok()?;
    aggregated
        .records
        .into_iter()
        .map(|r| {
            let key = aggregated.partition_key_table.get(usize::try_from(r.partition_key_index).ok()?)?.clone();
            Some((key, r.data))
        })
        .collect()
}

/// Replaces every aggregated record by its user records, which keep the record's sequence
/// number and arrival time; other records stay as they are.
pub fn deaggregate(records: Vec<SourceRecord>) -> Vec<SourceRecord> {
    if !records.iter().any(|r| r.data.starts_with(&MAGIC)) {
        return records;
    }
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        match user_records(&r.data) {
            Some(users) => out.extend(users.into_iter().map(|(partition_key, data)| SourceRecord {
                sequence: r.sequence,
                arrival_ms: r.arrival_ms,
                partition_key,
                data,
            })),
            None => out.push(r),
        }
    }
    out
}

/// An aggregated record of `users` (partition key, data), as the KPL writes it. For tests
/// and benchmarks that stand in for a KPL producer.
pub fn aggregate(users: &[(&str, &[u8])]) -> Vec<u8> {
    let mut table: Vec<String> = Vec::new();
    let records = users
        .iter()
        .map(|(key, data)| {
            let index = table.iter().position(|k| k == key).unwrap_or_else(|| {
                table.push((*key).to_owned());
                table.len() - 1
            });
            UserRecord { partition_key_index: index as u64, explicit_hash_key_index: None, data: data.to_vec() }
        })
        .collect();
    let message =
        AggregatedRecord { partition_key_table: table, explicit_hash_key_table: Vec::new(), records }.encode_to_vec();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&message);
    out.extend_from_slice(&Md5::digest(&message));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(data: Vec<u8>) -> SourceRecord {
        SourceRecord { sequence: 7, arrival_ms: 1_000, partition_key: "outer".into(), data }
    }

    #[test]
    fn aggregated_records_become_their_user_records() {
        let agg = aggregate(&[("a", b"{\"n\":1}"), ("b", b"{\"n\":2}"), ("a", b"{\"n\":3}")]);
        let out = deaggregate(vec![record(b"plain".to_vec()), record(agg)]);
        let got: Vec<(&str, &[u8], u64)> =
            out.iter().map(|r| (r.partition_key.as_str(), r.data.as_slice(), r.sequence)).collect();
        assert_eq!(
            got,
            [
                ("outer", b"plain".as_slice(), 7),
                ("a", b"{\"n\":1}".as_slice(), 7),
                ("b", b"{\"n\":2}".as_slice(), 7),
                ("a", b"{\"n\":3}".as_slice(), 7)
            ]
        );
    }

    #[test]
    fn a_bad_digest_or_body_leaves_the_record_as_it_is() {
        let mut agg = aggregate(&[("a", b"x")]);
        let last = agg.len() - 1;
        agg[last] ^= 1;
        assert_eq!(deaggregate(vec![record(agg.clone())])[0].data, agg);
        let mut junk = MAGIC.to_vec();
        junk.extend_from_slice(&[0xff; 40]);
        assert_eq!(deaggregate(vec![record(junk.clone())])[0].data, junk);
        assert_eq!(user_records(&MAGIC), None, "shorter than a digest");
    }
}
