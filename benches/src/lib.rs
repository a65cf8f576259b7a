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

/// The first `n` lines of a gzipped JSON Lines dataset in the repository's `examples/data/`.
pub fn dataset_lines(file: &str, n: usize) -> Vec<Vec<u8>> {
    use std::io::BufRead;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data").join(file);
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    std::io::BufReader::new(flate2::read::GzDecoder::new(f))
        .split(b'\n')
        .take(n)
        .map(|l| l.expect("a readable dataset"))
        .collect()
}
