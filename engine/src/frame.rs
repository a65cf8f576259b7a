//! The record frame: how one record is laid out inside a segment.
//!
//! | offset  | size        | field                                                        |
//! |---------|-------------|--------------------------------------------------------------|
//! | 0       | 4           | body length `B`, bytes after this 8-byte prefix (`u32`)      |
//! | 4       | 4           | CRC32 (IEEE, crc32fast) of the `B` body bytes (`u32`)        |
//! | 8       | 8           | sequence number (`u64`)                                      |
//! | 16      | 8           | arrival timestamp, ms since the Unix epoch (`u64`)           |
//! | 24      | 2           | partition key length `K`, bytes (`u16`)                      |
//! | 26      | `K`         | partition key, UTF-8                                         |
//! | 26 + K  | `B - 18 - K`| data                                                         |
//!
//! - All integers are little-endian.
//! - The checksum covers everything after the prefix: sequence number, timestamp, key and
//!   data. The length is covered indirectly: a wrong length moves the checksummed range.
//! - A body length of zero marks the end of the written frames: segments are pre-sized
//!   and zero-filled, so the first unwritten byte reads as an empty length.
//! - Frames are written body first and length last, so a process killed mid-copy most
//!   often leaves a zero length (a clean end) rather than a torn frame.

use crate::error::FrameDefect;

const LEN_OFFSET: usize = 0;
const CRC_OFFSET: usize = LEN_OFFSET + 4;
/// Bytes before the checksummed body: the length and the checksum.
pub const PREFIX_BYTES: usize = CRC_OFFSET + 4;
const SEQ_OFFSET: usize = PREFIX_BYTES;
const TS_OFFSET: usize = SEQ_OFFSET + 8;
const KEY_LEN_OFFSET: usize = TS_OFFSET + 8;
const KEY_OFFSET: usize = KEY_LEN_OFFSET + 2;

/// Bytes a frame adds to its partition key and data: 26.
pub const FRAME_OVERHEAD_BYTES: usize = KEY_OFFSET;

/// Smallest body: sequence number, timestamp and key length, with empty key and data.
const BODY_FIXED_BYTES: usize = FRAME_OVERHEAD_BYTES - PREFIX_BYTES;

const _: () = assert!(FRAME_OVERHEAD_BYTES == 26);

/// Total bytes of the frame for a partition key of `key_bytes` and data of `data_bytes`.
pub const fn frame_len(key_bytes: usize, data_bytes: usize) -> usize {
    FRAME_OVERHEAD_BYTES + key_bytes + data_bytes
}

/// Writes one frame into `out`, which must be exactly [`frame_len`] bytes long.
///
/// The body goes first and the length last (see the module notes).
pub fn encode(out: &mut [u8], sequence_number: u64, arrival_timestamp_ms: u64, key: &[u8], data: &[u8]) {
    debug_assert_eq!(out.len(), frame_len(key.len(), data.len()));
    let (prefix, body) = out.split_at_mut(PREFIX_BYTES);
    body[..8].copy_from_slice(&sequence_number.to_le_bytes());
    body[8..16].copy_from_slice(&arrival_timestamp_ms.to_le_bytes());
    body[16..18].copy_from_slice(&(key.len() as u16).to_le_bytes());
    body[18..18 + key.len()].copy_from_slice(key);
    body[18 + key.len()..].copy_from_slice(data);
    let crc = crc32fast::hash(body);
    prefix[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    prefix[LEN_OFFSET..LEN_OFFSET + 4].copy_from_slice(&(body.len() as u32).to_le_bytes());
}

/// One decoded, checksum-verified frame borrowed from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Sequence number of the record.
    pub sequence_number: u64,
    /// Arrival timestamp, ms since the Unix epoch.
    pub arrival_timestamp_ms: u64,
    /// Partition key.
    pub partition_key: &'a str,
    /// Data blob.
    pub data: &'a [u8],
    /// Total bytes of the frame, prefix included: where the next frame starts.
    pub len: usize,
}

/// The unverified fixed fields of a frame, enough to skip over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Sequence number of the record.
    pub sequence_number: u64,
    /// Arrival timestamp, ms since the Unix epoch.
    pub arrival_timestamp_ms: u64,
    /// Total bytes of the frame, prefix included.
    pub len: usize,
}

/// What lies at a position in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A zero length, or too few bytes left for a frame: no frame was written here.
    End,
    /// A frame.
    Frame(T),
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn body_len(bytes: &[u8]) -> Result<Option<usize>, FrameDefect> {
    if bytes.len() < PREFIX_BYTES {
        return Ok(None);
    }
    let body = read_u32(bytes, LEN_OFFSET) as usize;
    if body == 0 {
        return Ok(None);
    }
    if body < BODY_FIXED_BYTES {
        return Err(FrameDefect::BodyTooShort { body_len: body });
    }
    if body > bytes.len() - PREFIX_BYTES {
        return Err(FrameDefect::LengthOutOfBounds { body_len: body, remaining: bytes.len() - PREFIX_BYTES });
    }
    Ok(Some(body))
}

/// Reads the fixed fields of the frame at the start of `bytes` without verifying its
/// checksum: for skipping frames a read does not return.
pub fn decode_header(bytes: &[u8]) -> Result<Decoded<FrameHeader>, FrameDefect> {
    let Some(body) = body_len(bytes)? else {
        return Ok(Decoded::End);
    };
    Ok(Decoded::Frame(FrameHeader {
        sequence_number: read_u64(bytes, SEQ_OFFSET),
        arrival_timestamp_ms: read_u64(bytes, TS_OFFSET),
        len: PREFIX_BYTES + body,
    }))
}

/// Decodes and verifies the frame at the start of `bytes` (which runs to the end of the
/// written part of the segment, or further).
///
/// Errors: a length that does not fit, a checksum mismatch, a key length beyond the body,
/// or a key that is not UTF-8, each as a [`FrameDefect`].
pub fn decode(bytes: &[u8]) -> Result<Decoded<Frame<'_>>, FrameDefect> {
    let Some(body_len) = body_len(bytes)? else {
        return Ok(Decoded::End);
    };
    let body = &bytes[PREFIX_BYTES..PREFIX_BYTES + body_len];
    let stored = read_u32(bytes, CRC_OFFSET);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(FrameDefect::Checksum { stored, computed });
    }
    let key_len = u16::from_le_bytes([bytes[KEY_LEN_OFFSET], bytes[KEY_LEN_OFFSET + 1]]) as usize;
    if key_len > body_len - BODY_FIXED_BYTES {
        return Err(FrameDefect::KeyLengthOutOfBounds { key_len, body_len });
    }
    let key_end = KEY_OFFSET + key_len;
    let partition_key = std::str::from_utf8(&bytes[KEY_OFFSET..key_end]).map_err(|_| FrameDefect::KeyNotUtf8)?;
    Ok(Decoded::Frame(Frame {
        sequence_number: read_u64(bytes, SEQ_OFFSET),
        arrival_timestamp_ms: read_u64(bytes, TS_OFFSET),
        partition_key,
        data: &bytes[key_end..PREFIX_BYTES + body_len],
        len: PREFIX_BYTES + body_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(seq: u64, ts: u64, key: &str, data: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; frame_len(key.len(), data.len())];
        encode(&mut buf, seq, ts, key.as_bytes(), data);
        buf
    }

    #[test]
    fn round_trips_every_field() {
        let mut buf = encoded(42, 1_700_000_000_123, "sensor-7", b"{\"pm25\":12}");
        buf.extend_from_slice(&[0; 16]);
        let Decoded::Frame(f) = decode(&buf).unwrap() else { panic!("no frame") };
        assert_eq!(f.sequence_number, 42);
        assert_eq!(f.arrival_timestamp_ms, 1_700_000_000_123);
        assert_eq!(f.partition_key, "sensor-7");
        assert_eq!(f.data, b"{\"pm25\":12}");
        assert_eq!(f.len, frame_len(8, 11));
        assert_eq!(decode(&buf[f.len..]).unwrap(), Decoded::End);
        let Decoded::Frame(h) = decode_header(&buf).unwrap() else { panic!("no header") };
        assert_eq!((h.sequence_number, h.arrival_timestamp_ms, h.len), (42, 1_700_000_000_123, f.len));
    }

    #[test]
    fn empty_data_is_a_frame() {
        let buf = encoded(0, 0, "k", b"");
        assert!(matches!(decode(&buf).unwrap(), Decoded::Frame(f) if f.data.is_empty()));
    }

    #[test]
    fn every_flipped_body_bit_is_caught() {
        let clean = encoded(7, 9, "key", b"payload");
        for byte in PREFIX_BYTES..clean.len() {
            for bit in 0..8 {
                let mut buf = clean.clone();
                buf[byte] ^= 1 << bit;
                assert!(decode(&buf).is_err(), "flip of byte {byte} bit {bit} went unnoticed");
            }
        }
    }

    #[test]
    fn a_torn_frame_is_a_defect_not_a_panic() {
        let buf = encoded(7, 9, "key", b"payload");
        for cut in PREFIX_BYTES..buf.len() {
            assert!(matches!(decode(&buf[..cut]), Err(FrameDefect::LengthOutOfBounds { .. })));
        }
        assert_eq!(decode(&buf[..PREFIX_BYTES - 1]).unwrap(), Decoded::End);
        let mut short = buf.clone();
        short[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(decode(&short), Err(FrameDefect::BodyTooShort { body_len: 3 }));
    }
}
