//! The demo's code path end to end on the first records of the real datasets: every record
//! is landed, dropped or failed, failed ones are in the error prefix, and a replay run again
//! over the same range adds no object.

use std::path::Path;
use std::sync::Arc;

use sluice::demo::{DemoOptions, BUCKET};
use sluice_engine::SystemClock;
use sluice_firehose::replay::{ReplayPoint, ReplayRequest};

use crate::firehose_delivery::local_objects;

fn lines_under(dir: &Path) -> usize {
    local_objects(dir).iter().map(|(_, b)| b.iter().filter(|c| **c == b'\n').count()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_lands_every_record_and_replay_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        data_dir: dir.path().join("data"),
        lake_dir: dir.path().join("lake"),
        records: Some(3_000),
        progress: false,
    };
    let report = sluice::demo::run(&options).await.unwrap();
    assert_eq!(report.datasets.len(), 2);
    for d in &report.datasets {
        assert_eq!(d.records_in, 3_000, "{}", d.stream);
        assert_eq!(d.rows() + d.dropped + d.failed, d.records_in, "{}: rows + dropped + failed = records in", d.stream);
        assert_eq!(
            lines_under(&d.error_prefix),
            d.failed as usize,
            "{}: each failed record is in the error prefix",
            d.stream
        );
    }
    let clicks = &report.datasets[0];
    assert!(clicks.dropped > 0, "bot edits are dropped");
    assert!(
        clicks.rows_by_partition.keys().all(|p| p.starts_with("channel=")),
        "{:?}",
        clicks.rows_by_partition.keys()
    );
    let telemetry = &report.datasets[1];
    assert_eq!(telemetry.rows_by_partition.len(), 12, "one partition per station");
    // The telemetry as an Iceberg table too: every reading once, in the table or (a reading
    // that does not fit the columns inferred from the first buffer) in its error prefix.
    assert_eq!(report.table.rows + report.table.failed, telemetry.records_in);
    assert_eq!(lines_under(&report.lake.join("errors/telemetry-table")), report.table.failed as usize);
    assert!(report.table.metadata_location.ends_with(".metadata.json"), "{}", report.table.metadata_location);
    let summary = sluice::demo::summary(&report);
    assert!(summary.contains("duckdb"), "{summary}");
    assert!(summary.contains("SqlCatalog('sluice'") && summary.contains("iceberg_scan("), "{summary}");

    // Replay the same range again, twice: the objects under replay/ stay the same.
    let replay_dir = options.lake_dir.join(BUCKET).join("replay");
    let before: Vec<String> = local_objects(&replay_dir).into_iter().map(|(k, _)| k).collect();
    assert_eq!(before.len() as u64, report.replay.objects);
    assert!(!before.is_empty());
    let config = sluice::config::Config {
        data_dir: options.data_dir.clone(),
        lake: sluice_firehose::LakeConfig {
            url: format!("file://{}", options.lake_dir.display()),
            ..Default::default()
        },
        schema_dir: options.data_dir.join("demo/schemas"),
        transform_dir: options.data_dir.join("demo/transforms"),
        ..Default::default()
    };
    let state = sluice::open_state(&config, Arc::new(SystemClock)).unwrap();
    let source = state.kinesis.streams.get("clickstream").unwrap();
    let request = ReplayRequest {
        delivery_stream: "clickstream-lake".into(),
        from: ReplayPoint::Timestamp(0),
        to: None,
        prefix: Some("replay/clickstream/channel=!{partitionKeyFromLambda:channel}/".into()),
        shards: Vec::new(),
        lambda_arn: None,
        schema: None,
        error_prefix: None,
    };
    for _ in 0..2 {
        let r = sluice_firehose::replay::replay(&state.firehose.delivery_streams, &source, &request, &|_| {})
            .await
            .unwrap();
        assert_eq!(r.records, clicks.records_in);
        let after: Vec<String> = local_objects(&replay_dir).into_iter().map(|(k, _)| k).collect();
        assert_eq!(after, before, "a replay of the same range writes the same keys");
    }
    // A second process on the same data directory is refused.
    assert!(matches!(sluice::open_state(&config, Arc::new(SystemClock)), Err(sluice::StartError::Locked(_))));
    state.firehose.delivery_streams.shutdown().await;
}

/// The demo as a newcomer runs it from an installed binary: a copy of `sluice` outside the
/// source tree, started with no Rust toolchain on its `PATH` (the demo used to build its
/// transforms with `cargo` from the repository at run time).
#[test]
fn an_installed_binary_runs_the_demo_without_a_toolchain_or_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin/sluice");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_sluice"), &bin).unwrap();
    let out = std::process::Command::new(&bin)
        .args(["demo", "--records", "500"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("rows landed"), "{stdout}");
    for dataset in ["clickstream", "telemetry"] {
        let landed = local_objects(&dir.path().join("lake").join(BUCKET).join(dataset));
        assert!(landed.iter().any(|(key, _)| key.ends_with(".parquet")), "no Parquet under {dataset}/: {stdout}");
    }
    assert!(dir.path().join("sluice-data/demo/transforms/clickstream.wasm").is_file());
}
