//! Fuzzing every request decoder of both APIs with proptest: arbitrary bytes, and
//! structure-aware mutations of valid bodies (a member replaced by a value of another type,
//! an extreme integer, a path-like or oversized string, deep nesting, an unknown member).
//!
//! For every request: no panic, no `InternalFailure` (a client-caused error is never a 500),
//! and a refused request changes nothing (streams, shards, records, tags, retention,
//! delivery streams). Runs `SLUICE_FUZZ_CASES` cases per strategy (default 256; a longer run:
//! `SLUICE_FUZZ_CASES=20000 cargo test --test it fuzz -- --nocapture`).

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Value};
use sluice::api::firehose::Action as FirehoseAction;
use sluice::api::kinesis::Action;
use sluice::api::ErrorKind;
use sluice::server::AppState;

/// One decoder: the API, the action's name, and a body it accepts.
struct Case {
    firehose: bool,
    action: &'static str,
    valid: Value,
}

fn cases() -> Vec<Case> {
    let k = |action, valid| Case { firehose: false, action, valid };
    let f = |action, valid| Case { firehose: true, action, valid };
    let dest = json!({
        "RoleARN": "arn:aws:iam::000000000000:role/r",
        "BucketARN": "arn:aws:s3:::lake",
        "Prefix": "p/",
        "ErrorOutputPrefix": "e/",
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60}
    });
    vec![
        k("CreateStream", json!({"StreamName": "new", "ShardCount": 1})),
        k("DeleteStream", json!({"StreamName": "gone"})),
        k("DescribeStream", json!({"StreamName": "s", "Limit": 10})),
        k("DescribeStreamSummary", json!({"StreamName": "s"})),
        k("ListStreams", json!({"Limit": 10})),
        k("ListShards", json!({"StreamName": "s", "MaxResults": 10})),
        k("PutRecord", json!({"StreamName": "s", "PartitionKey": "k", "Data": "eA=="})),
        k("PutRecords", json!({"StreamName": "s", "Records": [{"PartitionKey": "k", "Data": "eA=="}]})),
        k(
            "GetShardIterator",
            json!({"StreamName": "s", "ShardId": "shardId-000000000000", "ShardIteratorType": "TRIM_HORIZON"}),
        ),
        k("GetRecords", json!({"ShardIterator": "AAAA", "Limit": 10})),
        k("IncreaseStreamRetentionPeriod", json!({"StreamName": "s", "RetentionPeriodHours": 48})),
        k("DecreaseStreamRetentionPeriod", json!({"StreamName": "s", "RetentionPeriodHours": 24})),
        k("AddTagsToStream", json!({"StreamName": "s", "Tags": {"a": "b"}})),
        k("RemoveTagsFromStream", json!({"StreamName": "s", "TagKeys": ["a"]})),
        k("ListTagsForStream", json!({"StreamName": "s"})),
        k("DescribeLimits", json!({})),
        k(
            "SplitShard",
            json!({"StreamName": "s", "ShardToSplit": "shardId-000000000000", "NewStartingHashKey": "1000"}),
        ),
        k(
            "MergeShards",
            json!({"StreamName": "s", "ShardToMerge": "shardId-000000000000", "AdjacentShardToMerge": "shardId-000000000001"}),
        ),
        k("UpdateShardCount", json!({"StreamName": "s", "TargetShardCount": 3, "ScalingType": "UNIFORM_SCALING"})),
        f(
            "CreateDeliveryStream",
            json!({"DeliveryStreamName": "new", "DeliveryStreamType": "DirectPut", "ExtendedS3DestinationConfiguration": dest}),
        ),
        f("DescribeDeliveryStream", json!({"DeliveryStreamName": "d"})),
        f("ListDeliveryStreams", json!({"Limit": 10})),
        f("DeleteDeliveryStream", json!({"DeliveryStreamName": "gone"})),
        f(
            "UpdateDestination",
            json!({"DeliveryStreamName": "d", "CurrentDeliveryStreamVersionId": "1", "DestinationId": "destinationId-000000000001", "ExtendedS3DestinationUpdate": {"Prefix": "q/"}}),
        ),
        f("PutRecord", json!({"DeliveryStreamName": "d", "Record": {"Data": "eA=="}})),
        f("PutRecordBatch", json!({"DeliveryStreamName": "d", "Records": [{"Data": "eA=="}]})),
        f("TagDeliveryStream", json!({"DeliveryStreamName": "d", "Tags": [{"Key": "a", "Value": "b"}]})),
        f("UntagDeliveryStream", json!({"DeliveryStreamName": "d", "TagKeys": ["a"]})),
        f("ListTagsForDeliveryStream", json!({"DeliveryStreamName": "d"})),
    ]
}

/// JSON values that break assumptions: types, extremes, path-like and oversized strings.
fn hostile_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        Just(json!(9_999_999_999_i64)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e300)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a/b",
            "shardId-",
            "shardId-99999999999999",
            "340282366920938463463374607431768211456",
            "-5",
            "99999999999999999999999999999999999999999999999999999999999",
            "arn:aws:kinesis:us-east-1:000000000000:stream/..",
            "arn:aws:lambda:us-east-1:1:function:../x",
            "!{partitionKeyFromQuery:k}",
            "\u{0}",
            "é",
            "TRIM_HORIZON",
            "AT_TIMESTAMP",
        ])
        .prop_map(|s| json!(s)),
        "[a-zA-Z0-9_.-]{0,300}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z]{1,24}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid body with one member (at any depth) replaced, added or removed.
fn mutate(valid: &Value, path_choice: usize, how: u8, value: Value) -> Value {
    fn members(v: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(m) = v {
            for (k, child) in m {
                let mut p = prefix.clone();
                p.push(k.clone());
                out.push(p.clone());
                members(child, p, out);
            }
        }
    }
    let mut paths = Vec::new();
    members(valid, Vec::new(), &mut paths);
    let mut out = valid.clone();
    if paths.is_empty() {
        if let Value::Object(m) = &mut out {
            m.insert("Unexpected".into(), value);
        }
        return out;
    }
    let path = &paths[path_choice % paths.len()];
    let mut cursor = &mut out;
    for k in &path[..path.len() - 1] {
        cursor = cursor.get_mut(k).expect("path exists");
    }
    let last = &path[path.len() - 1];
    if let Value::Object(m) = cursor {
        match how % 3 {
            0 => {
                m.insert(last.clone(), value);
            }
            1 => {
                m.remove(last);
            }
            _ => {
                m.insert(format!("{last}X"), value);
            }
        }
    }
    out
}

/// Everything a request could change, as text.
fn digest(state: &AppState) -> String {
    let mut out = String::new();
    for s in state.kinesis.streams.list() {
        let m = s.meta();
        out.push_str(&format!("{} {} {:?} {:?}\n", m.name, m.retention_hours, m.tags, m.shards));
        for log in s.logs() {
            out.push_str(&format!("  {}\n", log.bounds().next_sequence_number));
        }
    }
    for d in state.firehose.delivery_streams.list() {
        out.push_str(&serde_json::to_string(&d.spec()).unwrap());
        if let Some(i) = &d.internal {
            out.push_str(&format!(" {}", i.log(0).unwrap().bounds().next_sequence_number));
        }
        out.push('\n');
    }
    out
}

fn cases_per_strategy() -> u32 {
    std::env::var("SLUICE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

struct Fixture {
    state: Arc<AppState>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let lake = dir.path().join("lake");
        let config = sluice::config::Config {
            data_dir: dir.path().join("data"),
            stream_transition_ms: 0,
            lake: sluice_firehose::LakeConfig { url: format!("file://{}", lake.display()), ..Default::default() },
            schema_dir: dir.path().join("schemas"),
            transform_dir: dir.path().join("wasm"),
            ..sluice::config::Config::default()
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let clock = Arc::new(sluice_engine::ManualClock::new(now));
        let state = runtime.block_on(async { sluice::open_state(&config, clock).unwrap() });
        let fixture = Self { state, runtime, _dir: dir };
        fixture.seed();
        fixture
    }

    /// The stream `s` (2 shards, one record) and the delivery stream `d`, made again when a
    /// valid request removed or changed them.
    fn seed(&self) {
        let k = |action: &str, body: Value| {
            let _ = self.state.kinesis.handle(Action::from_name(action).unwrap(), body.to_string().as_bytes());
        };
        if self.state.kinesis.streams.get("s").is_none() {
            k("CreateStream", json!({"StreamName": "s", "ShardCount": 2}));
            k("PutRecord", json!({"StreamName": "s", "PartitionKey": "k", "Data": "eA=="}));
        }
        if self.state.firehose.delivery_streams.get("d").is_none() {
            let body = json!({"DeliveryStreamName": "d", "ExtendedS3DestinationConfiguration": {
                "RoleARN": "arn:aws:iam::000000000000:role/r", "BucketARN": "arn:aws:s3:::lake"}});
            let action = FirehoseAction::from_name("CreateDeliveryStream").unwrap();
            self.runtime.block_on(self.state.firehose.handle(action, body.to_string().as_bytes())).unwrap();
        }
    }

    /// Runs one request and checks the rules; the error says which was broken.
    fn check(&self, case: &Case, body: &[u8]) -> Result<(), TestCaseError> {
        let before = digest(&self.state);
        let result = if case.firehose {
            let action = FirehoseAction::from_name(case.action).unwrap();
            self.runtime.block_on(self.state.firehose.handle(action, body))
        } else {
            self.state.kinesis.handle(Action::from_name(case.action).unwrap(), body)
        };
        if let Err(e) = &result {
            prop_assert!(
                e.kind != ErrorKind::InternalFailure,
                "{}: {} for {}",
                case.action,
                e,
                String::from_utf8_lossy(body)
            );
            let after = digest(&self.state);
            prop_assert_eq!(&before, &after, "{} refused ({}) but changed state", case.action, e);
        }
        self.seed();
        Ok(())
    }
}

#[test]
fn every_decoder_survives_arbitrary_bytes_and_mutated_bodies_without_500s_or_state_changes() {
    let fixture = Fixture::new();
    let cases = cases();
    let config = ProptestConfig { cases: cases_per_strategy(), failure_persistence: None, ..ProptestConfig::default() };

    // Arbitrary bytes, and arbitrary JSON values, to every action.
    let mut runner = TestRunner::new(config.clone());
    let bytes = (0..cases.len(), prop::collection::vec(any::<u8>(), 0..256));
    runner.run(&bytes, |(i, body)| fixture.check(&cases[i], &body)).unwrap();
    let mut runner = TestRunner::new(config.clone());
    runner
        .run(&(0..cases.len(), hostile_value()), |(i, v)| fixture.check(&cases[i], v.to_string().as_bytes()))
        .unwrap();

    // Structure-aware: each action's valid body with one member broken.
    let mut runner = TestRunner::new(ProptestConfig { cases: cases_per_strategy() * 4, ..config });
    let mutated = (0..cases.len(), any::<usize>(), any::<u8>(), hostile_value());
    runner
        .run(&mutated, |(i, path, how, v)| {
            let body = mutate(&cases[i].valid, path, how, v);
            fixture.check(&cases[i], body.to_string().as_bytes())
        })
        .unwrap();

    // A deeply nested body to every action.
    for case in &cases {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        fixture.check(case, deep.as_bytes()).unwrap();
        let deep_member = format!(r#"{{"StreamName": {}1{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        fixture.check(case, deep_member.as_bytes()).unwrap();
    }
}
