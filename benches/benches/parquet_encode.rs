//! JSON → Arrow → Parquet (and ORC, `orc/encode`) on the real Beijing telemetry: the
//! conversion path of Firehose delivery, alone (`encode`) and as a whole delivery plan with jq partition keys by station
//! (`plan_partitioned`: 12 objects per buffer).
//!
//! Run: `cargo bench -p sluice-benches --bench parquet_encode`. Throughput counts bytes of
//! JSON input; records/s is that divided by the mean record size (198.6 B here).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_benches::dataset_lines;
use sluice_firehose::convert::ColumnarEncoder;
use sluice_firehose::deserializer::JsonSerDe;
use sluice_firehose::plan::SourceRecord;
use sluice_firehose::spec::{DeliveryStreamSpec, ExtendedS3Destination, OrcSerDe, ParquetSerDe, SourceSpec};

/// Records per buffer: 50,000 readings, about 10 MB of JSON.
const BUFFER_RECORDS: usize = 50_000;

fn schema() -> Vec<sluice_firehose::schema::FieldSpec> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/schemas/beijing/air_quality.json");
    sluice_firehose::schema::load(&path).expect("the Beijing schema")
}

fn encode(c: &mut Criterion) {
    let lines = dataset_lines("beijing_multisite_air_quality_2013_2017.jsonl.gz", BUFFER_RECORDS);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let records: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let arrow = sluice_firehose::schema::to_arrow(&schema()).unwrap();
    let mut group = c.benchmark_group("parquet");
    group.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(bytes as u64));
    for compression in ["SNAPPY", "ZSTD", "UNCOMPRESSED"] {
        let serde = ParquetSerDe { compression: Some(compression.into()), ..ParquetSerDe::default() };
        let encoder = ColumnarEncoder::new(arrow.clone(), &serde, JsonSerDe::default());
        group.bench_function(format!("encode/{compression}"), |b| {
            b.iter(|| {
                let out = encoder.encode(black_box(&records)).unwrap();
                assert_eq!(out.rows, records.len());
                out.bytes.len()
            })
        });
    }

    let encoder = ColumnarEncoder::orc(arrow.clone(), &OrcSerDe::default(), JsonSerDe::default());
    group.bench_function("orc/encode", |b| {
        b.iter(|| {
            let out = encoder.encode(black_box(&records)).unwrap();
            assert_eq!(out.rows, records.len());
            out.bytes.len()
        })
    });

    let destination: ExtendedS3Destination = serde_json::from_value(serde_json::json!({
        "RoleARN": "arn:aws:iam::000000000000:role/r",
        "BucketARN": "arn:aws:s3:::lake",
        "Prefix": "telemetry/!{partitionKeyFromQuery:station}/",
        "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
        "DynamicPartitioningConfiguration": {"Enabled": true},
        "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
            {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{station: .station}"},
            {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]},
        "DataFormatConversionConfiguration": {"Enabled": true},
    }))
    .unwrap();
    let spec = DeliveryStreamSpec {
        name: "bench".into(),
        created_ms: 0,
        updated_ms: 0,
        version: 1,
        source: SourceSpec::DirectPut,
        destination,
        schema: Some(schema()),
        tags: Default::default(),
        encryption: None,
        iceberg: None,
        channel: None,
        direct_put_throughput_hint_mbs: None,
        cluster: None,
    };
    let pipeline = sluice_firehose::plan::build(&spec, Some(arrow), None).unwrap();
    let source: Vec<SourceRecord> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| SourceRecord {
            sequence: i as u64,
            arrival_ms: 1_700_000_000_000,
            partition_key: "0".into(),
            data: l.clone(),
        })
        .collect();
    let source = Arc::new(source);
    group.bench_function("plan_partitioned/SNAPPY", |b| {
        b.iter(|| {
            let plan = pipeline.plan(0, 0, source.len() as u64 - 1, black_box(&source), 0);
            assert_eq!(plan.delivered, source.len());
            plan.objects.len()
        })
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
