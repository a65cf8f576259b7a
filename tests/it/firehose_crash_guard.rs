//! A record whose processing panics must fail alone and never stop a delivery stream:
//! after [`DELIVERY_ATTEMPTS_MAX`] failed attempts the range is planned record by record,
//! the panicking record goes to `processing-failed`, the others land.

use std::sync::Arc;
use std::time::Duration;

use sluice::api::firehose::{Action, Firehose, FirehoseConfig};
use sluice_engine::streams::{Streams, Throttling};
use sluice_engine::{Clock, ManualClock, ShardLogOptions};
use sluice_firehose::delivery_streams::{DeliveryStreams, TransformResolver};
use sluice_firehose::metrics::Metrics;
use sluice_firehose::plan::{RecordTransform, SourceRecord, TransformOutcome};
use sluice_firehose::spec::DeliveryStreamSpec;
use sluice_firehose::worker::{WorkerContext, DELIVERY_ATTEMPTS_MAX, PLANNING_FAILED};
use sluice_firehose::{Lake, LakeConfig};

/// Passes records through, and panics on any record containing `boom`.
#[derive(Debug)]
struct Panicky;

impl RecordTransform for Panicky {
    fn process(&self, records: &[SourceRecord], _: Option<u32>) -> Vec<TransformOutcome> {
        records
            .iter()
            .map(|r| {
                assert!(!r.data.windows(4).any(|w| w == b"boom"), "the transform met a record it cannot take");
                TransformOutcome::Ok { data: r.data.clone(), partition_keys: Default::default() }
            })
            .collect()
    }

    fn arn(&self) -> &str {
        "panicky"
    }
}

#[derive(Debug)]
struct Resolver;

impl TransformResolver for Resolver {
    fn resolve(&self, spec: &DeliveryStreamSpec) -> Result<Option<Arc<dyn RecordTransform>>, String> {
        let lambda = spec.destination.processing().processors_of("Lambda").next().is_some();
        Ok(lambda.then(|| Arc::new(Panicky) as Arc<dyn RecordTransform>))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_whose_processing_panics_fails_alone_and_the_rest_lands() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let clock_dyn: Arc<dyn Clock> = clock.clone();
    let log_options = ShardLogOptions { clock: clock_dyn.clone(), ..ShardLogOptions::default() };
    let streams = Streams::open(dir.path(), log_options.clone(), Throttling::default(), 500).unwrap();
    let lake_dir = dir.path().join("lake");
    let lake = Arc::new(
        Lake::new(LakeConfig { url: format!("file://{}", lake_dir.display()), ..LakeConfig::default() }).unwrap(),
    );
    let ctx = WorkerContext {
        kinesis: Arc::new(streams),
        tables: Arc::new(sluice_firehose::table::Tables::new(dir.path(), lake.clone(), Default::default())),
        lake,
        metrics: Arc::new(Metrics::default()),
        clock: clock_dyn.clone(),

        coordination: Default::default(),
    };
    let resolver: Arc<dyn TransformResolver> = Arc::new(Resolver);
    let delivery =
        DeliveryStreams::open(dir.path(), log_options, ctx, tokio::runtime::Handle::current(), Some(resolver)).unwrap();
    let delivery = Arc::new(delivery);
    let tasks = Arc::new(sluice_firehose::tasks::Tasks::open(delivery.clone()).unwrap());
    let firehose = Firehose::new(
        delivery,
        tasks,
        FirehoseConfig { schema_dir: dir.path().into(), status_transition_ms: 0, ..FirehoseConfig::default() },
        clock_dyn,
    );
    let create = serde_json::json!({
        "DeliveryStreamName": "guarded",
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/r",
            "BucketARN": "arn:aws:s3:::lake",
            "Prefix": "ok/",
            "ErrorOutputPrefix": "errors/!{firehose:error-output-type}/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
            "ProcessingConfiguration": {"Enabled": true, "Processors": [{"Type": "Lambda", "Parameters": [
                {"ParameterName": "LambdaArn", "ParameterValue": "arn:aws:lambda:us-east-1:000000000000:function:panicky"}]}]}
        }
    });
    firehose.handle(Action::from_name("CreateDeliveryStream").unwrap(), create.to_string().as_bytes()).await.unwrap();
    let records: Vec<_> = ["one\n", "boom\n", "three\n"]
        .iter()
        .map(|d| serde_json::json!({"Data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, d)}))
        .collect();
    let put = serde_json::json!({"DeliveryStreamName": "guarded", "Records": records});
    firehose.handle(Action::from_name("PutRecordBatch").unwrap(), put.to_string().as_bytes()).await.unwrap();

    // The worker retries the panicking range, then sets the bad record apart.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (landed, errors) = loop {
        clock.advance(1_000);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let landed = crate::firehose_delivery::local_objects(&lake_dir.join("lake").join("ok"));
        let errors = crate::firehose_delivery::local_objects(&lake_dir.join("lake").join("errors"));
        if !landed.is_empty() && !errors.is_empty() {
            break (landed, errors);
        }
        assert!(std::time::Instant::now() < deadline, "delivery did not move on past the panicking record");
    };
    let text: String = landed.iter().map(|(_, b)| String::from_utf8_lossy(b).into_owned()).collect();
    assert_eq!(text, "one\nthree\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].0.contains("processing-failed"), "{}", errors[0].0);
    let line: serde_json::Value = serde_json::from_slice(errors[0].1.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["errorCode"], PLANNING_FAILED);
    assert_eq!(line["attemptsMade"], DELIVERY_ATTEMPTS_MAX + 1);
    assert_eq!(line["rawData"], base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "boom\n"));
    assert!(line["errorMessage"].as_str().unwrap().contains("cannot take"), "{line}");
}
