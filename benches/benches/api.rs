//! The request path without HTTP: routing (MD5 of the partition key → the shard whose hash
//! key range holds it) and whole Kinesis actions in process (parse, validate, route, append
//! or read, serialize the response, in JSON and in CBOR); PutRecords also as the server
//! runs it (`put_records_general`: model checks on decoded values; `put_records_fast`).
//!
//! Run: `cargo bench -p sluice-benches --bench api`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::api::kinesis::{Action, Kinesis, KinesisConfig};
use sluice::api::{decode_request, encode_response, model, Codec};
use sluice_engine::hash_key::hash_key_of;
use sluice_engine::stream::{ShardMeta, Stream, StreamMeta};
use sluice_engine::streams::{Streams, Throttling};
use sluice_engine::{Durability, ShardLogOptions, SystemClock};

fn routing(c: &mut Criterion) {
    let keys: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
    let mut group = c.benchmark_group("routing");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(keys.len() as u64));
    for shards in [4u32, 64, 500] {
        let meta = StreamMeta::new("s".into(), 0, 24, ShardMeta::split_evenly(shards), BTreeMap::new());
        group.bench_function(BenchmarkId::new("md5_then_shard", shards), |b| {
            b.iter(|| keys.iter().map(|k| Stream::route_in(&meta, hash_key_of(black_box(k)))).sum::<u32>())
        });
    }
    group.finish();
}

fn actions(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let options = ShardLogOptions { durability: Durability::Never, ..ShardLogOptions::default() };
    let streams = Streams::open(dir.path(), options, Throttling { off: true, ..Throttling::default() }, 500).unwrap();
    let config = KinesisConfig { stream_transition_ms: 0, ..KinesisConfig::default() };
    let k = Kinesis::new(streams, config, Arc::new(SystemClock)).unwrap();
    k.handle(Action::CreateStream, br#"{"StreamName":"bench","ShardCount":4}"#).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<serde_json::Value> = sluice_benches::payloads(500, 100)
        .iter()
        .enumerate()
        .map(|(i, d)| serde_json::json!({"Data": b64.encode(d), "PartitionKey": format!("device-{}", i % 97)}))
        .collect();
    let put = serde_json::to_vec(&serde_json::json!({"StreamName": "bench", "Records": records})).unwrap();

    let mut group = c.benchmark_group("api");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(500));
    group.bench_function("put_records/500x100B", |b| {
        b.iter(|| k.handle(Action::PutRecords, black_box(&put)).unwrap().len())
    });
    // What the server runs for a JSON PutRecords: the general path (the body decoded into
    // values and checked against botocore's model, then taken into the request type), and
    // the fast path it takes for bodies that meet the model (read straight into borrowed
    // strings, each member checked against the same model).
    group.bench_function("put_records_general/500x100B", |b| {
        b.iter(|| {
            let request = decode_request(Codec::Json, model::kinesis(), "PutRecords", black_box(&put)).unwrap();
            k.handle_value(Action::PutRecords, request).unwrap().len()
        })
    });
    group.bench_function("put_records_fast/500x100B", |b| {
        b.iter(|| k.put_records_json(black_box(&put), None).unwrap().unwrap().len())
    });
    // Enough records for full pages, then reads from the start of shard 0.
    for _ in 0..100 {
        k.handle(Action::PutRecords, &put).unwrap();
    }
    let it = k
        .handle(
            Action::GetShardIterator,
            br#"{"StreamName":"bench","ShardId":"shardId-000000000000","ShardIteratorType":"TRIM_HORIZON"}"#,
        )
        .unwrap();
    let it: serde_json::Value = serde_json::from_slice(&it).unwrap();
    let get = serde_json::to_vec(&serde_json::json!({"ShardIterator": it["ShardIterator"], "Limit": 10_000})).unwrap();
    let page: serde_json::Value = serde_json::from_slice(&k.handle(Action::GetRecords, &get).unwrap()).unwrap();
    let n = page["Records"].as_array().unwrap().len() as u64;
    group.throughput(Throughput::Elements(n));
    group.bench_function(format!("get_records/{n}x100B"), |b| {
        b.iter(|| k.handle(Action::GetRecords, black_box(&get)).unwrap().len())
    });
    // CBOR (the Java SDKs' protocol): written from the frames, and the generic way (the
    // JSON answer parsed into values and re-encoded), which GetRecords used before.
    let request: serde_json::Value = serde_json::from_slice(&get).unwrap();
    group.bench_function(format!("get_records_cbor/{n}x100B"), |b| {
        b.iter(|| k.get_records_within(black_box(request.clone()), 10 << 20, Codec::Cbor).unwrap().0.len())
    });
    group.bench_function(format!("get_records_cbor_generic/{n}x100B"), |b| {
        b.iter(|| {
            let json = k.handle(Action::GetRecords, black_box(&get)).unwrap();
            encode_response(Codec::Cbor, model::kinesis(), "GetRecords", json).unwrap().len()
        })
    });
    group.finish();
}

/// Record data to base64 and back, the crate the wire layer used (`base64`, scalar) against
/// `base64-simd` (AVX2 where the CPU has it): what PutRecords decodes and GetRecords encodes.
fn base64_codecs(c: &mut Criterion) {
    let mut group = c.benchmark_group("base64");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    for bytes in [100usize, 1024] {
        let data: Vec<u8> = (0..bytes * 500).map(|i| (i * 31 % 251) as u8).collect();
        group.throughput(Throughput::Bytes(data.len() as u64));
        let records = || data.chunks(bytes);
        let texts: Vec<String> = records().map(|r| base64::engine::general_purpose::STANDARD.encode(r)).collect();
        group.bench_function(BenchmarkId::new("encode/base64", bytes), |b| {
            let mut out = String::new();
            b.iter(|| {
                out.clear();
                records().for_each(|r| base64::engine::general_purpose::STANDARD.encode_string(r, &mut out));
                out.len()
            })
        });
        group.bench_function(BenchmarkId::new("encode/base64-simd", bytes), |b| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                records().for_each(|r| base64_simd::STANDARD.encode_append(r, &mut out));
                out.len()
            })
        });
        group.bench_function(BenchmarkId::new("decode/base64", bytes), |b| {
            b.iter(|| {
                texts.iter().map(|t| base64::engine::general_purpose::STANDARD.decode(t).unwrap().len()).sum::<usize>()
            })
        });
        group.bench_function(BenchmarkId::new("decode/base64-simd", bytes), |b| {
            b.iter(|| texts.iter().map(|t| base64_simd::STANDARD.decode_to_vec(t).unwrap().len()).sum::<usize>())
        });
    }
    group.finish();
}

criterion_group!(benches, routing, actions, base64_codecs);
criterion_main!(benches);
