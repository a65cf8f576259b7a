//! Shard iterators: opaque tokens naming a stream, a shard and a position, signed with the
//! server's secret so a forged or altered one is refused, and valid for 5 minutes.
//!
//! Layout before base64 (standard alphabet, padded, as AWS's iterators): version (1 byte), issue time ms (u64 LE),
//! shard index (u32 LE), shard sequence (u64 LE), stream incarnation (u64 LE), stream name
//! (UTF-8), then the first 16 bytes of HMAC-SHA256 over all of it. The incarnation makes
//! an iterator of a deleted stream useless on a new stream of the same name.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long an iterator stays valid, ms: 5 minutes. Source: AWS Kinesis API reference,
/// `GetShardIterator`.
pub const ITERATOR_LIFETIME_MS: u64 = 300_000;

const VERSION: u8 = 2;
const TAG_BYTES: usize = 16;
const FIXED_BYTES: usize = 1 + 8 + 4 + 8 + 8;

/// What an iterator carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IteratorState {
    /// Stream name.
    pub stream: String,
    /// Shard index.
    pub shard_index: u32,
    /// Shard sequence number of the next record to read.
    pub position: u64,
    /// When it was issued, ms since the Unix epoch.
    pub issued_ms: u64,
    /// The stream's incarnation ([`crate::stream::Stream::incarnation`]).
    pub incarnation: u64,
}

fn tag(secret: &[u8], bytes: &[u8]) -> [u8; TAG_BYTES] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(bytes);
    let full = mac.finalize().into_bytes();
    full[..TAG_BYTES].try_into().expect("16 bytes")
}

impl IteratorState {
    /// The token.
    pub fn encode(&self, secret: &[u8]) -> String {
        let mut b = Vec::with_capacity(FIXED_BYTES + self.stream.len() + TAG_BYTES);
        b.push(VERSION);
        b.extend_from_slice(&self.issued_ms.to_le_bytes());
        b.extend_from_slice(&self.shard_index.to_le_bytes());
        b.extend_from_slice(&self.position.to_le_bytes());
        b.extend_from_slice(&self.incarnation.to_le_bytes());
        b.extend_from_slice(self.stream.as_bytes());
        let t = tag(secret, &b);
        b.extend_from_slice(&t);
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// Checks and reads a token; `None` if it is not one this secret signed.
    pub fn decode(token: &str, secret: &[u8]) -> Option<Self> {
        let b = base64::engine::general_purpose::STANDARD.decode(token).ok()?;
        if b.len() < FIXED_BYTES + TAG_BYTES || b[0] != VERSION {
            return None;
        }
        let (body, t) = b.split_at(b.len() - TAG_BYTES);
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
        mac.update(body);
        mac.verify_truncated_left(t).ok()?;
        Some(Self {
            issued_ms: u64::from_le_bytes(body[1..9].try_into().ok()?),
            shard_index: u32::from_le_bytes(body[9..13].try_into().ok()?),
            position: u64::from_le_bytes(body[13..21].try_into().ok()?),
            incarnation: u64::from_le_bytes(body[21..29].try_into().ok()?),
            stream: String::from_utf8(body[FIXED_BYTES..].to_vec()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_any_change() {
        let s = IteratorState {
            stream: "clickstream".into(),
            shard_index: 3,
            position: 42,
            issued_ms: 1_700_000_000_000,
            incarnation: 7,
        };
        let token = s.encode(b"secret");
        assert!(token.len() <= 512);
        assert_eq!(IteratorState::decode(&token, b"secret"), Some(s));
        assert_eq!(IteratorState::decode(&token, b"other secret"), None);
        let mut bytes = token.clone().into_bytes();
        for i in 0..bytes.len() {
            let orig = bytes[i];
            bytes[i] = if orig == b'A' { b'B' } else { b'A' };
            assert_eq!(IteratorState::decode(std::str::from_utf8(&bytes).unwrap(), b"secret"), None, "change at {i}");
            bytes[i] = orig;
        }
        assert_eq!(IteratorState::decode("not base64 !", b"secret"), None);
    }
}
