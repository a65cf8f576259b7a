//! Iceberg table destinations on a real S3-compatible server: Firehose's
//! `IcebergDestinationConfiguration` through `aws-sdk-firehose`, the table's data files read
//! back with `aws-sdk-s3` and `parquet`, and its commits (snapshots, watermarks) through
//! the catalog; and a source range committed by two deliverers at once lands once.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types as fh;
use futures::TryStreamExt;
use sluice_firehose::table::{Appended, Mark, TableTarget, Tables};
use sluice_firehose::Lake;

use crate::datasets::{beijing, BeijingDigest};
use crate::firehose_delivery::{wait_for, Harness};
use crate::s3_server::{objects, S3Server};

fn iceberg_destination(partition_by_station: bool) -> fh::IcebergDestinationConfiguration {
    let role = "arn:aws:iam::000000000000:role/firehose";
    let mut table = fh::DestinationTableConfiguration::builder()
        .destination_database_name("telemetry")
        .destination_table_name("readings");
    if partition_by_station {
        table = table.partition_spec(
            fh::PartitionSpec::builder()
                .identity(fh::PartitionField::builder().source_name("station").build().unwrap())
                .build(),
        );
    }
    fh::IcebergDestinationConfiguration::builder()
        .role_arn(role)
        .catalog_configuration(
            fh::CatalogConfiguration::builder()
                .catalog_arn("arn:aws:glue:us-east-1:000000000000:catalog")
                .warehouse_location("s3://lake/warehouse")
                .build(),
        )
        .s3_configuration(
            fh::S3DestinationConfiguration::builder()
                .role_arn(role)
                .bucket_arn("arn:aws:s3:::lake")
                .error_output_prefix("errors/!{firehose:error-output-type}/")
                .build()
                .unwrap(),
        )
        .destination_table_configuration_list(table.build().unwrap())
        .table_creation_configuration(fh::TableCreationConfiguration::builder().enabled(true).build().unwrap())
        .buffering_hints(fh::BufferingHints::builder().interval_in_seconds(1).size_in_mbs(1).build())
        .build()
        .unwrap()
}

async fn table_rows(tables: &Tables, target: &TableTarget) -> usize {
    let Some(table) = tables.load(target).await.unwrap() else { return 0 };
    if table.metadata().current_snapshot().is_none() {
        return 0;
    }
    let batches: Vec<_> =
        table.scan().build().unwrap().to_arrow().await.unwrap().try_collect::<Vec<_>>().await.unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firehose_lands_records_in_an_iceberg_table_partitioned_by_station() {
    let h = Harness::start(None, |_| {}).await;
    let firehose = h.server.firehose();
    firehose
        .create_delivery_stream()
        .delivery_stream_name("readings")
        .iceberg_destination_configuration(iceberg_destination(true))
        .send()
        .await
        .unwrap();
    let described = firehose.describe_delivery_stream().delivery_stream_name("readings").send().await.unwrap();
    let destination = &described.delivery_stream_description().unwrap().destinations()[0];
    let iceberg = destination.iceberg_destination_description().expect("an Iceberg destination is described");
    assert_eq!(iceberg.destination_table_configuration_list()[0].destination_table_name(), "readings");
    assert_eq!(iceberg.s3_destination_description().unwrap().bucket_arn(), "arn:aws:s3:::lake");

    let records = beijing(3_000);
    for chunk in records.chunks(500) {
        let batch: Vec<fh::Record> =
            chunk.iter().map(|r| fh::Record::builder().data(Blob::new(r.as_bytes())).build().unwrap()).collect();
        let out =
            firehose.put_record_batch().delivery_stream_name("readings").set_records(Some(batch)).send().await.unwrap();
        assert_eq!(out.failed_put_count(), 0);
    }

    // The catalog, as another process opening the same SQLite file and bucket would.
    let lake = Arc::new(Lake::new(h.s3.lake_config()).unwrap());
    let tables = Tables::new(&h.dir.path().join("data"), lake.clone(), Default::default());
    let spec = sluice_firehose::spec::IcebergDestination {
        destination_table_configuration_list: vec![sluice_firehose::spec::DestinationTable {
            destination_table_name: "readings".into(),
            destination_database_name: "telemetry".into(),
            unique_keys: None,
            partition_spec: None,
            s3_error_output_prefix: None,
        }],
        catalog_configuration: sluice_firehose::spec::CatalogConfiguration {
            catalog_arn: None,
            warehouse_location: Some("s3://lake/warehouse".into()),
        },
        ..Default::default()
    };
    let target = sluice_firehose::table::firehose_target(&spec, &lake).unwrap();
    wait_for(&h.clock, async || table_rows(&tables, &target).await, |n| *n >= records.len()).await;
    assert_eq!(table_rows(&tables, &target).await, records.len());

    // The data files, read with aws-sdk-s3 and parquet alone: every reading once, each file
    // in its station's partition folder.
    let files = objects(&h.s3.client(), "warehouse/telemetry.db/readings/data/").await;
    let (digest, stations) = BeijingDigest::of_parquet(&files);
    assert_eq!(digest, BeijingDigest::of_json(&records));
    for (key, in_file) in &stations {
        assert_eq!(in_file.len(), 1, "{key} holds one station");
        assert!(key.contains(&format!("/station={}/", in_file[0])), "{key} is in its station's folder");
    }
    // Every commit names the source range it covers.
    let table = tables.load(&target).await.unwrap().unwrap();
    let ranges: Vec<_> = table
        .metadata()
        .snapshots()
        .filter_map(|s| s.summary().additional_properties.get("sluice.last-sequence-number").cloned())
        .collect();
    assert!(!ranges.is_empty());
    h.server.stop().await;
}

/// One batch of the Beijing readings in the table's columns.
fn batch_for(table: &iceberg::table::Table, records: &[String]) -> arrow_array::RecordBatch {
    let schema = sluice_firehose::table::arrow_schema(table).unwrap();
    let encoder = sluice_firehose::convert::ParquetEncoder::new(
        schema,
        &sluice_firehose::spec::ParquetSerDe::default(),
        sluice_firehose::deserializer::JsonSerDe::default(),
    );
    let rows: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    let decoded = encoder.decode(&rows);
    assert!(decoded.failed.is_empty(), "{:?}", decoded.failed);
    assert_eq!(decoded.batches.len(), 1);
    decoded.batches.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_committed_by_two_deliverers_at_once_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let data = dir.path().join("data");
    // Two deliverers ("nodes") sharing the catalog file and the bucket, with their own
    // catalog connections and clients.
    let node = || Tables::new(&data, Arc::new(Lake::new(s3.lake_config()).unwrap()), Default::default());
    let (a, b) = (node(), node());
    let lake = Lake::new(s3.lake_config()).unwrap();
    let target = TableTarget {
        catalog: "sluice".into(),
        namespace: "telemetry".into(),
        table: "once".into(),
        location: sluice_firehose::table::storage::location(&lake, "lake", "warehouse/telemetry.db/once").unwrap(),
        create: true,
        partitions: vec![("station".into(), iceberg::spec::Transform::Identity)],
        compression: parquet::basic::Compression::SNAPPY,
    };
    let schema =
        sluice_firehose::schema::load(&crate::firehose_delivery::schema_dir().join("beijing/air_quality.json"))
            .unwrap();
    let table = a.create(&target, &schema).await.unwrap();
    let records = beijing(1_200);
    let first = batch_for(&table, &records[..600]);
    let second = batch_for(&table, &records[600..]);

    // Shard 0's records 1..=600 from both at once: one commits, the other finds the
    // watermark moved and commits nothing.
    let mark = Mark::new("readings.1", 0, 1, 600);
    let (ta, tb) = (a.load(&target).await.unwrap().unwrap(), b.load(&target).await.unwrap().unwrap());
    let before = b.load(&target).await.unwrap().unwrap();
    let (ra, rb) = tokio::join!(
        a.append(&target, ta, &mark, None, vec![first.clone()]),
        b.append(&target, tb, &mark, None, vec![first.clone()])
    );
    let outcomes = [ra.unwrap(), rb.unwrap()];
    let committed = outcomes.iter().filter(|o| matches!(o, Appended::Committed { .. })).count();
    let superseded = outcomes.iter().filter(|o| matches!(o, Appended::Superseded { watermark: Some(600) })).count();
    assert_eq!((committed, superseded), (1, 1), "{outcomes:?}");

    // A deliverer that read the watermark before that commit and commits after it: its
    // commit is against the version it read, which is no longer current, so it appends
    // nothing.
    assert_eq!(sluice_firehose::table::watermark(&before, &mark.key), None);
    let late = b.append(&target, before, &mark, None, vec![first.clone()]).await.unwrap();
    assert!(matches!(late, Appended::Superseded { watermark: Some(600) }), "{late:?}");
    // The same range redone later (a crash after the commit, before the checkpoint).
    let stale = b.load(&target).await.unwrap().unwrap();
    assert_eq!(sluice_firehose::table::watermark(&stale, &mark.key), Some(600));
    let redo = b.append(&target, stale.clone(), &mark, None, vec![first.clone()]).await.unwrap();
    assert!(matches!(redo, Appended::Superseded { watermark: Some(600) }), "{redo:?}");

    // The next range, from the watermark.
    let next = Mark::new("readings.1", 0, 601, 1_200);
    let done = b.append(&target, stale, &next, Some(600), vec![second]).await.unwrap();
    assert!(matches!(done, Appended::Committed { rows: 600, .. }), "{done:?}");

    assert_eq!(table_rows(&a, &target).await, 1_200);
    let table = a.load(&target).await.unwrap().unwrap();
    let mut per_station: BTreeMap<String, usize> = BTreeMap::new();
    let batches: Vec<_> =
        table.scan().build().unwrap().to_arrow().await.unwrap().try_collect::<Vec<_>>().await.unwrap();
    for batch in &batches {
        let stations = batch.column_by_name("station").unwrap();
        let stations = stations.as_any().downcast_ref::<arrow_array::StringArray>().unwrap();
        for s in stations.iter().flatten() {
            *per_station.entry(s.to_owned()).or_default() += 1;
        }
    }
    let mut want: BTreeMap<String, usize> = BTreeMap::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_str(r).unwrap();
        *want.entry(v["station"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(per_station, want);
}
