//! The guest components (`transforms/guests/`), built for wasm32-wasip2 once per test run
//! into `target/wasm-guests`, and loaded into one host.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use sluice_transforms::{InputRecord, Transform, TransformHost, TransformLimits};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `.wasm` of guest `name` (crate names use `_` in file names).
pub fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir =
        BUILT.get_or_init(|| sluice_transforms::build_guests(&repo(), &repo().join("target/wasm-guests")).unwrap());
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// The process's host.
pub fn host() -> Arc<TransformHost> {
    static HOST: OnceLock<Arc<TransformHost>> = OnceLock::new();
    HOST.get_or_init(|| Arc::new(TransformHost::new().unwrap())).clone()
}

/// Guest `name` loaded with `limits` and `parameters`.
pub fn load(name: &str, limits: TransformLimits, parameters: &[(&str, &str)]) -> Transform {
    let params = parameters.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    host().load(&component(name), limits, params).unwrap()
}

/// Records with ids `0..n` and the given data.
pub fn inputs(data: &[Vec<u8>]) -> Vec<InputRecord> {
    data.iter()
        .enumerate()
        .map(|(i, d)| InputRecord {
            record_id: i.to_string(),
            approximate_arrival_timestamp: 1_700_000_000_000 + i as u64,
            data: d.clone(),
            kinesis: None,
        })
        .collect()
}

/// The first `n` lines of a dataset in `examples/data/`.
pub fn dataset(file: &str, n: usize) -> Vec<Vec<u8>> {
    use std::io::BufRead;
    let f = std::fs::File::open(repo().join("examples/data").join(file)).unwrap();
    std::io::BufReader::new(flate2::read::GzDecoder::new(f)).split(b'\n').take(n).map(Result::unwrap).collect()
}
