//! Each example transform, as a component through the host, on real records: its outputs
//! equal the same logic run natively, record by record.

use sluice_example_transforms::Verdict;
use sluice_transforms::{Outcome, TransformLimits, PROCESSING_FAILED_STATUS};

use crate::guests::{dataset, inputs, load};

fn native(v: Verdict) -> Outcome {
    match v {
        Verdict::Ok { data, partition_keys } => {
            Outcome::Ok { data, partition_keys: partition_keys.into_iter().collect() }
        }
        Verdict::Dropped => Outcome::Dropped,
        Verdict::Failed(message) => Outcome::Failed { code: PROCESSING_FAILED_STATUS, message, attempts: 1 },
    }
}

fn check(component: &str, file: &str, n: usize, logic: fn(&[u8]) -> Verdict) -> Vec<Outcome> {
    let records = dataset(file, n);
    let t = load(component, TransformLimits::default(), &[]);
    let mut got = Vec::new();
    for batch in records.chunks(500) {
        got.extend(t.process(&inputs(batch)));
    }
    assert_eq!(got.len(), records.len());
    for (i, (g, r)) in got.iter().zip(&records).enumerate() {
        assert_eq!(g, &native(logic(r)), "record {i} of {file}");
    }
    got
}

#[test]
fn clickstream_drops_bot_edits_buckets_sizes_and_keys_by_channel() {
    let got = check(
        "clickstream",
        "wikiticker-2015-09-12-sampled.json.gz",
        5_000,
        sluice_example_transforms::clickstream::transform,
    );
    let records = dataset("wikiticker-2015-09-12-sampled.json.gz", 5_000);
    let bots =
        records.iter().filter(|r| serde_json::from_slice::<serde_json::Value>(r).unwrap()["isRobot"] == true).count();
    assert_eq!(got.iter().filter(|o| matches!(o, Outcome::Dropped)).count(), bots);
    assert!(bots > 0 && bots < records.len());
    for o in &got {
        if let Outcome::Ok { data, partition_keys } = o {
            let v: serde_json::Value = serde_json::from_slice(data).unwrap();
            assert!(v["edit_size_bucket"].is_string());
            assert_eq!(partition_keys["channel"], v["channel"].as_str().unwrap().trim_start_matches('#'));
        }
    }
}

#[test]
fn telemetry_adds_timestamps_and_flags_impossible_readings() {
    let got = check(
        "telemetry",
        "beijing_multisite_air_quality_2013_2017.jsonl.gz",
        5_000,
        sluice_example_transforms::telemetry::transform,
    );
    let Outcome::Ok { data, .. } = &got[0] else { panic!("the first reading is plausible") };
    let v: serde_json::Value = serde_json::from_slice(data).unwrap();
    assert_eq!(v["timestamp"], "2013-03-01T00:00:00+08:00");
    assert_eq!(v["station"], "Aotizhongxin");
    // A broken sensor's reading fails alone.
    let t = load("telemetry", TransformLimits::default(), &[]);
    let out = t.process(&inputs(&[
        br#"{"year":2013,"month":3,"day":1,"hour":0,"PM2.5":-5,"station":"X"}"#.to_vec(),
        dataset("beijing_multisite_air_quality_2013_2017.jsonl.gz", 1)[0].clone(),
    ]));
    assert!(
        matches!(&out[0], Outcome::Failed { code, message, .. } if *code == PROCESSING_FAILED_STATUS && message.contains("PM2.5"))
    );
    assert!(matches!(out[1], Outcome::Ok { .. }));
}

#[test]
fn pii_redaction_masks_ip_user_names() {
    let got = check(
        "pii-redaction",
        "wikiticker-2015-09-12-sampled.json.gz",
        5_000,
        sluice_example_transforms::redaction::transform,
    );
    let records = dataset("wikiticker-2015-09-12-sampled.json.gz", 5_000);
    let mut masked = 0;
    for (o, r) in got.iter().zip(&records) {
        let before: serde_json::Value = serde_json::from_slice(r).unwrap();
        let Outcome::Ok { data, .. } = o else { panic!("redaction keeps every record") };
        let after: serde_json::Value = serde_json::from_slice(data).unwrap();
        let user = before["user"].as_str().unwrap();
        if user.parse::<std::net::IpAddr>().is_ok() {
            masked += 1;
            assert_ne!(after["user"], before["user"]);
            assert!(
                after["user"].as_str().unwrap().contains(".x.x") || after["user"].as_str().unwrap().contains(":x:")
            );
        } else {
            assert_eq!(after["user"], before["user"]);
        }
    }
    assert!(masked > 100, "the sample has anonymous edits ({masked})");
}
