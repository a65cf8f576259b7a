//! Shared pieces of Sluice's benchmarks: payloads shaped like the real datasets.

/// `count` JSON-ish payloads of exactly `bytes` bytes each, distinct per record, so
/// checksums and copies work on varied data rather than one repeated buffer.
pub fn payloads(count: usize, bytes: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let mut p = format!("{{\"station\":\"s{}\",\"n\":{i},\"pad\":\"", i % 12).into_bytes();
            p.resize(bytes.saturating_sub(2), b'x');
            p.extend_from_slice(b"\"}");
            p.truncate(bytes);
            p
        })
        .collect()
}
