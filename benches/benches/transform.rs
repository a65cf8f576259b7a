//! The clickstream example transform on real Wikipedia edits, batches of 500: as a WASM
//! component through the transform host (a fresh sandboxed store per batch, as in delivery)
//! next to the same logic compiled natively. The ratio of the two is the cost of the sandbox.
//!
//! Run: `cargo bench -p sluice-benches --bench transform` (builds the guest components first).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_benches::dataset_lines;
use sluice_transforms::{InputRecord, Outcome, TransformHost, TransformLimits};

const BATCH: usize = 500;

fn transform(c: &mut Criterion) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = sluice_transforms::build_guests(&repo, &repo.join("target/wasm-guests")).expect("guests build");
    let records = dataset_lines("wikiticker-2015-09-12-sampled.json.gz", BATCH);
    let inputs: Vec<InputRecord> = records
        .iter()
        .enumerate()
        .map(|(i, d)| InputRecord {
            record_id: i.to_string(),
            approximate_arrival_timestamp: 0,
            data: d.clone(),
            kinesis: None,
        })
        .collect();
    let host = Arc::new(TransformHost::new().unwrap());
    let component = host.load(&wasm.join("clickstream.wasm"), TransformLimits::default(), Vec::new()).unwrap();

    let mut group = c.benchmark_group("clickstream");
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("wasm_component/batch500", |b| {
        b.iter(|| {
            let out = component.process(black_box(&inputs));
            assert!(out.iter().all(|o| !matches!(o, Outcome::Failed { .. })));
            out.len()
        })
    });
    group.bench_function("native/batch500", |b| {
        b.iter(|| {
            black_box(&records)
                .iter()
                .map(|r| sluice_example_transforms::clickstream::transform(r))
                .filter(|v| !matches!(v, sluice_example_transforms::Verdict::Failed(_)))
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, transform);
criterion_main!(benches);
