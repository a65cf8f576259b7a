//! Dynamic partitioning's jq query in its WebAssembly sandbox (`sluice_transforms::JqQuery`)
//! on real Beijing readings, one record per call as the delivery worker runs it: the cost of
//! the sandbox per record (parse + query + the budget checks).
//!
//! The `fast_path/*` rows run the same queries as the delivery worker does, through
//! `PartitionQuery`: natively (`sluice_firehose::jq_fast_path`), the sandbox only for what the
//! fast path leaves to jaq.
//!
//! Run: `cargo bench -p sluice-benches --bench jq`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_benches::dataset_lines;
use sluice_transforms::{JqLimits, JqQuery};

const RECORDS: usize = 1_000;

fn jq(c: &mut Criterion) {
    let records = dataset_lines("beijing_multisite_air_quality_2013_2017.jsonl.gz", RECORDS);
    let mut group = c.benchmark_group("jq_sandbox");
    group.sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (name, query) in
        [("one_key", "{station: .station}"), ("three_keys", "{station: .station, year: .year, month: .month}")]
    {
        let mut q = JqQuery::compile(query, JqLimits::default()).expect("the query compiles");
        group.bench_function(name, |b| {
            b.iter(|| {
                for r in &records {
                    black_box(q.keys(black_box(r)).expect("an ordinary record fits the budget"));
                }
            })
        });
        let p = sluice_firehose::partition::PartitionQuery::compile(query).expect("the query compiles");
        group.bench_function(format!("fast_path/{name}"), |b| {
            b.iter(|| {
                for r in &records {
                    black_box(p.keys(black_box(r)).expect("an ordinary record has its keys"));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, jq);
criterion_main!(benches);
