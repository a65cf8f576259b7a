//! The binary body of the requests nodes send each other about one shard: a leader's
//! records for a replica (`/_sluice/cluster/replicate`), and records a node forwards to a
//! shard's leader (`/_sluice/cluster/append`).
//!
//! Layout (integers little-endian; every length and count is checked on decode):
//!
//! | size | field |
//! |---|---|
//! | 2 + n | stream name: length `u16`, UTF-8 bytes |
//! | 8 | stream incarnation `u64` |
//! | 4 | shard index `u32` |
//! | 8 | leader epoch `u64` (0 in a forward) |
//! | 8 | first sequence number `u64` (0 in a forward) |
//! | 8 | the leader's high watermark `u64`: its records below it are on a quorum (0 in a forward) |
//! | 4 | record count `u32`, at most [`BATCH_RECORDS_MAX`] |
//! | per record | arrival time ms `u64`, key length `u16` and UTF-8 key, data length `u32` and data |

/// Records in one batch at most: a PutRecords' 500, or a catch-up read's 10,000.
pub const BATCH_RECORDS_MAX: usize = 10_000;

/// One record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireRecord<'a> {
    /// Arrival time the leader gave it, ms (0 in a forward).
    pub arrival_timestamp_ms: u64,
    /// Partition key.
    pub partition_key: &'a str,
    /// Data.
    pub data: &'a [u8],
}

/// Records of one shard of one stream incarnation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// The stream's incarnation (a batch for a deleted and re-created stream is refused).
    pub incarnation: u64,
    /// Shard index.
    pub shard: u32,
    /// The sending leader's epoch.
    pub epoch: u64,
    /// Sequence number of the first record.
    pub first_sequence_number: u64,
    /// The leader's high watermark: every record below it is on a quorum of the shard's
    /// replicas, so a replica may serve it (0 in a forward).
    pub committed: u64,
    /// The records, in sequence order.
    pub records: Vec<WireRecord<'a>>,
}

/// Why a body is not a batch.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a shard batch: {0}")]
pub struct WireError(&'static str);

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError("truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn text(&mut self, len: usize) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.take(len)?).map_err(|_| WireError("text not UTF-8"))
    }
}

impl<'a> Batch<'a> {
    /// The body.
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = 42
            + self.stream.len()
            + self.records.iter().map(|r| 14 + r.partition_key.len() + r.data.len()).sum::<usize>();
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&(self.stream.len() as u16).to_le_bytes());
        out.extend_from_slice(self.stream.as_bytes());
        out.extend_from_slice(&self.incarnation.to_le_bytes());
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&self.first_sequence_number.to_le_bytes());
        out.extend_from_slice(&self.committed.to_le_bytes());
        out.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        for r in &self.records {
            out.extend_from_slice(&r.arrival_timestamp_ms.to_le_bytes());
            out.extend_from_slice(&(r.partition_key.len() as u16).to_le_bytes());
            out.extend_from_slice(r.partition_key.as_bytes());
            out.extend_from_slice(&(r.data.len() as u32).to_le_bytes());
            out.extend_from_slice(r.data);
        }
        out
    }

    /// Reads a body, borrowing keys and data from it.
    ///
    /// Errors: a length or count past the body or [`BATCH_RECORDS_MAX`], text that is not
    /// UTF-8, or bytes left over.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader { bytes };
        let name_len = r.u16()? as usize;
        let stream = r.text(name_len)?;
        let (incarnation, shard, epoch, first_sequence_number) = (r.u64()?, r.u32()?, r.u64()?, r.u64()?);
        let committed = r.u64()?;
        let count = r.u32()? as usize;
        if count > BATCH_RECORDS_MAX {
            return Err(WireError("too many records"));
        }
        // Each record takes at least 14 bytes: a count the body cannot hold allocates nothing.
        if count > r.bytes.len() / 14 {
            return Err(WireError("truncated"));
        }
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let arrival_timestamp_ms = r.u64()?;
            let key_len = r.u16()? as usize;
            let partition_key = r.text(key_len)?;
            let data_len = r.u32()? as usize;
            let data = r.take(data_len)?;
            records.push(WireRecord { arrival_timestamp_ms, partition_key, data });
        }
        if !r.bytes.is_empty() {
            return Err(WireError("bytes after the last record"));
        }
        Ok(Self { stream, incarnation, shard, epoch, first_sequence_number, committed, records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_batch_round_trips_and_every_cut_or_extension_of_it_is_refused(
            stream in "[a-zA-Z0-9_.-]{1,128}",
            incarnation: u64, shard: u32, epoch: u64, first: u64, committed: u64,
            records in prop::collection::vec((any::<u64>(), "\\PC{1,20}", prop::collection::vec(any::<u8>(), 0..64)), 0..20),
            cut in any::<prop::sample::Index>(),
        ) {
            let batch = Batch {
                stream: &stream, incarnation, shard, epoch, first_sequence_number: first, committed,
                records: records.iter().map(|(t, k, d)| WireRecord { arrival_timestamp_ms: *t, partition_key: k, data: d }).collect(),
            };
            let bytes = batch.encode();
            prop_assert_eq!(Batch::decode(&bytes).unwrap(), batch);
            let at = cut.index(bytes.len());
            prop_assert!(Batch::decode(&bytes[..at]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(Batch::decode(&longer).is_err());
        }
    }

    #[test]
    fn a_count_the_body_cannot_hold_is_refused_without_allocating() {
        let mut bytes = Batch {
            stream: "s",
            incarnation: 1,
            shard: 0,
            epoch: 1,
            first_sequence_number: 0,
            committed: 0,
            records: vec![],
        }
        .encode();
        let n = bytes.len();
        bytes[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Batch::decode(&bytes), Err(WireError("too many records")));
        bytes[n - 4..].copy_from_slice(&9_000u32.to_le_bytes());
        assert_eq!(Batch::decode(&bytes), Err(WireError("truncated")));
    }
}
