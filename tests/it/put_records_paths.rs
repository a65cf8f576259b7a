//! PutRecords' two ways in answer alike: the fast path for JSON bodies that meet the model
//! (`Kinesis::put_records_json`) and the general path (`decode_request`, then
//! `handle_value`), on twin servers, for bodies built from valid and broken members (bad
//! base64, lengths at and past the model's bounds in characters and in UTF-16 units, hash
//! keys past 2^128 - 1, wrong JSON types, nulls, duplicates, unknown members, escapes, dry
//! runs). A body the fast path takes must get the same bytes or the same error; a body
//! built valid must be taken by it.

use std::sync::Arc;

use base64::Engine as _;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use sluice::api::kinesis::{Action, Kinesis, KinesisConfig};
use sluice::api::{decode_request, model, ApiError, Codec};
use sluice_engine::streams::{Streams, Throttling};
use sluice_engine::{Durability, ManualClock, ShardLogOptions};

/// A member's JSON text and whether it meets the model and the action.
type Part = (String, bool);

fn twin(dir: &std::path::Path) -> Kinesis {
    let options = ShardLogOptions { durability: Durability::Never, ..ShardLogOptions::default() };
    let streams = Streams::open(dir, options, Throttling::default(), 500).unwrap();
    let config = KinesisConfig { stream_transition_ms: 0, iterator_secret: vec![7; 32], ..KinesisConfig::default() };
    let k = Kinesis::new(streams, config, Arc::new(ManualClock::new(1_700_000_000_000))).unwrap();
    k.handle(Action::CreateStream, br#"{"StreamName":"s","ShardCount":4}"#).unwrap();
    k
}

fn general(k: &Kinesis, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    decode_request(Codec::Json, model::kinesis(), "PutRecords", body)
        .and_then(|v| k.handle_value(Action::PutRecords, v))
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn data() -> impl Strategy<Value = Part> {
    let b64 = |b: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(b);
    prop_oneof![
        6 => vec(any::<u8>(), 0..48).prop_map(move |b| (quoted(&b64(b)), true)),
        // JSON may escape '/' (some encoders do): the same text once unescaped.
        1 => vec(any::<u8>(), 1..48).prop_map(move |b| (format!("\"{}\"", b64(b).replace('/', "\\/")), true)),
        1 => Just(("\"QR==\"".to_owned(), false)),
        1 => Just(("\"abc\"".to_owned(), false)),
        1 => Just(("\"ab!d\"".to_owned(), false)),
        1 => Just(("\"a=bc\"".to_owned(), false)),
        1 => Just(("null".to_owned(), false)),
        1 => Just(("12".to_owned(), false)),
        1 => Just(("true".to_owned(), false)),
        1 => Just(("[\"eA==\"]".to_owned(), false)),
    ]
}

fn partition_key() -> impl Strategy<Value = Option<Part>> {
    prop_oneof![
        6 => "[a-z0-9]{1,12}".prop_map(|k| Some((quoted(&k), true))),
        1 => Just(Some((quoted(&"a".repeat(256)), true))),
        1 => Just(Some((quoted(&"é".repeat(256)), true))),
        1 => Just(Some((quoted(&"a".repeat(257)), false))),
        // 129 characters but 258 UTF-16 units: the model counts units.
        1 => Just(Some((quoted(&"😀".repeat(129)), false))),
        1 => Just(Some(("\"\"".to_owned(), false))),
        1 => Just(Some(("null".to_owned(), false))),
        1 => Just(Some(("5".to_owned(), false))),
        1 => Just(None),
    ]
}

fn explicit_hash_key() -> impl Strategy<Value = Option<Part>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(("\"0\"".to_owned(), true))),
        1 => (1u128..).prop_map(|n| Some((format!("\"{n}\""), true))),
        1 => Just(Some(("\"340282366920938463463374607431768211455\"".to_owned(), true))),
        1 => Just(Some(("\"340282366920938463463374607431768211456\"".to_owned(), false))),
        1 => Just(Some(("\"00\"".to_owned(), false))),
        1 => Just(Some(("\"1e5\"".to_owned(), false))),
        1 => Just(Some(("null".to_owned(), true))),
    ]
}

/// A member strategy keeping only valid members when `valid_only`.
fn kept<T: std::fmt::Debug>(
    s: impl Strategy<Value = T>,
    valid_only: bool,
    ok: fn(&T) -> bool,
) -> impl Strategy<Value = T> {
    s.prop_filter("a valid member", move |v| !valid_only || ok(v))
}

fn entry(valid_only: bool) -> impl Strategy<Value = Part> {
    let member = (
        kept(data(), valid_only, |d| d.1),
        kept(partition_key(), valid_only, |p| p.as_ref().is_some_and(|p| p.1)),
        kept(explicit_hash_key(), valid_only, |h| h.as_ref().is_none_or(|h| h.1)),
        any::<bool>(),
    );
    let broken = if valid_only { 0 } else { 1 };
    prop_oneof![
        12 => member.prop_map(|(d, pk, h, unknown)| {
            let mut members = vec![format!("\"Data\":{}", d.0)];
            let mut ok = d.1;
            match pk {
                Some((text, valid)) => {
                    members.push(format!("\"PartitionKey\":{text}"));
                    ok &= valid;
                }
                None => ok = false,
            }
            if let Some((text, valid)) = h {
                members.push(format!("\"ExplicitHashKey\":{text}"));
                ok &= valid;
            }
            if unknown {
                members.push("\"Extra\":{\"x\":[1,{\"y\":null}]}".to_owned());
            }
            (format!("{{{}}}", members.join(",")), ok)
        }),
        broken => Just(("null".to_owned(), false)),
        broken => Just(("\"record\"".to_owned(), false)),
    ]
}

fn target() -> impl Strategy<Value = Vec<Part>> {
    let arn = "arn:aws:kinesis:us-east-1:000000000000:stream/s";
    prop_oneof![
        6 => Just(vec![("\"StreamName\":\"s\"".to_owned(), true)]),
        2 => Just(vec![(format!("\"StreamARN\":{}", quoted(arn)), true)]),
        1 => Just(vec![("\"StreamName\":\"s\"".to_owned(), true), (format!("\"StreamARN\":{}", quoted(arn)), true)]),
        // Valid requests for a stream that does not exist: the same error either way.
        1 => Just(vec![("\"StreamName\":\"missing\"".to_owned(), true)]),
        1 => Just(vec![("\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/missing\"".to_owned(), true)]),
        1 => Just(vec![("\"StreamName\":\"bad name\"".to_owned(), false)]),
        1 => Just(vec![("\"StreamName\":\"\"".to_owned(), false)]),
        1 => Just(vec![("\"StreamARN\":\"nope\"".to_owned(), false)]),
        1 => Just(vec![("\"StreamName\":\"s\"".to_owned(), true), ("\"StreamName\":\"s\"".to_owned(), false)]),
        1 => Just(vec![("\"StreamName\":7".to_owned(), false)]),
        1 => Just(Vec::new()),
    ]
}

fn extras() -> impl Strategy<Value = Vec<Part>> {
    let stream_id = prop_oneof![
        4 => Just(None),
        1 => Just(Some(("\"StreamId\":\"abcdefghij0123456789-abc\"".to_owned(), true))),
        1 => Just(Some(("\"StreamId\":\"BAD\"".to_owned(), false))),
    ];
    let dry_run = prop_oneof![
        4 => Just(None),
        1 => Just(Some(("\"DryRun\":true".to_owned(), true))),
        1 => Just(Some(("\"DryRun\":false".to_owned(), true))),
        1 => Just(Some(("\"DryRun\":null".to_owned(), true))),
        1 => Just(Some(("\"DryRun\":\"true\"".to_owned(), false))),
    ];
    (stream_id, dry_run).prop_map(|(a, b)| a.into_iter().chain(b).collect())
}

fn body(valid_only: bool) -> impl Strategy<Value = (String, bool)> {
    let (fewest, too_many) = if valid_only { (1, 0) } else { (0, 1) };
    let records = prop_oneof![
        12 => vec(entry(valid_only), fewest..5),
        too_many => entry(false).prop_map(|e| vec![e; 501]),
    ];
    let all_valid = |parts: &Vec<Part>| parts.iter().all(|p| p.1);
    let target = kept(target(), valid_only, all_valid);
    let extras = kept(extras(), valid_only, all_valid);
    (target, extras, records).prop_map(|(target, extras, records)| {
        let mut ok = target.iter().all(|p| p.1) && extras.iter().all(|p| p.1);
        ok &= (1..=500).contains(&records.len()) && records.iter().all(|r| r.1);
        let list: Vec<String> = records.into_iter().map(|r| r.0).collect();
        let mut members: Vec<String> = target.into_iter().chain(extras).map(|p| p.0).collect();
        members.push(format!("\"Records\":[{}]", list.join(",")));
        (format!("{{{}}}", members.join(",")), ok)
    })
}

#[test]
fn fast_and_general_paths_answer_alike() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (fast_side, general_side) = (twin(a.path()), twin(b.path()));
    let taken = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(ProptestConfig { cases: 512, ..ProptestConfig::default() });
    runner
        .run(&prop_oneof![body(true), body(false)], |(body, valid)| {
            let fast = fast_side.put_records_json(body.as_bytes(), None);
            prop_assert!(!valid || fast.is_some(), "a valid body went the general way: {body}");
            let fast = match fast {
                Some(answer) => {
                    taken.set(taken.get() + 1);
                    answer
                }
                None => general(&fast_side, body.as_bytes()),
            };
            let general = general(&general_side, body.as_bytes());
            prop_assert_eq!(
                fast.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
                general.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
                "{}",
                body
            );
            Ok(())
        })
        .unwrap();
    assert!(taken.get() > 100, "the fast path answered only {} bodies", taken.get());
}
