//! The demo's code path end to end on the first records of the real datasets: every record
//! is landed, dropped or failed, failed ones are in the error prefix, and a replay run again
//! over the same range adds no object.

use std::path::{Path, PathBuf};
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
        repo: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
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
        schema_dir: options.repo.join("examples/schemas"),
        transform_dir: options.repo.join("target/wasm-guests/wasm32-wasip2/release"),
        ..Default::default()
    };
    let state = sluice::open_state(&config, Arc::new(SystemClock)).unwrap();
    let source = state.kinesis.streams.get("clickstream").unwrap();
    let request = ReplayRequest {
        delivery_stream: "clickstream-lake".into(),
        from: ReplayPoint::Timestamp(0),
        to: None,
        prefix: Some("replay/clickstream/channel=!{partitionKeyFromLambda:channel}/".into()),
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
