//! Iceberg table destinations on a real S3-compatible server: Firehose's
//! `IcebergDestinationConfiguration` through `aws-sdk-firehose`, the table's data files read
//! back with `aws-sdk-s3` and `parquet`, and its commits (snapshots, watermarks) through
//! the catalog; and a source range committed by two deliverers at once lands once.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types as fh;
use futures::TryStreamExt;
use sluice_firehose::table::{Appended, Mark, TableTarget, Tables, TablesConfig};
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

/// Rows of the table's current snapshot, by its summary (`total-records`).
async fn table_rows(tables: &Tables, target: &TableTarget) -> usize {
    let Some(table) = tables.load(target).await.unwrap() else { return 0 };
    let Some(snapshot) = table.metadata().current_snapshot() else { return 0 };
    snapshot.summary().additional_properties.get("total-records").map_or(0, |n| n.parse().unwrap())
}

/// Rows of the table, read through a scan of its data files.
async fn scanned_rows(tables: &Tables, target: &TableTarget) -> usize {
    let table = tables.load(target).await.unwrap().unwrap();
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
    assert_eq!(scanned_rows(&tables, &target).await, records.len());

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
    let encoder = sluice_firehose::convert::ColumnarEncoder::new(
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
    let node = |config| Tables::new(&data, Arc::new(Lake::new(s3.lake_config()).unwrap()), config);
    // b expires every snapshot but the newest after each of its commits.
    let (a, b) = (node(TablesConfig::default()), node(TablesConfig { snapshot_retention_ms: 0, ..Default::default() }));
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

    assert_eq!(scanned_rows(&a, &target).await, 1_200);
    let table = a.load(&target).await.unwrap().unwrap();
    // Expired to the newest snapshot; the watermark, a table property, stays.
    assert_eq!(table.metadata().snapshots().len(), 1);
    assert_eq!(sluice_firehose::table::watermark(&table, &next.key), Some(1_200));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_lands_an_on_demand_stream_in_a_table_partitioned_by_hour() {
    use aws_sdk_kinesis::types as k;
    let h = Harness::start(None, |c| c.stream_transition_ms = 100).await;
    let kinesis = h.server.client();
    let mode = k::StreamModeDetails::builder().stream_mode(k::StreamMode::OnDemand).build().unwrap();
    kinesis.create_stream().stream_name("events").stream_mode_details(mode).send().await.unwrap();
    let provisioned = "provisioned";
    kinesis.create_stream().stream_name(provisioned).shard_count(1).send().await.unwrap();
    h.clock.advance(1_000);
    let stream_arn = |name: &str| format!("arn:aws:kinesis:us-east-1:000000000000:stream/{name}");
    let tables_destination = |freshness: i32| {
        k::S3TablesDestinationConfiguration::builder()
            .data_freshness_in_seconds(freshness)
            .dead_letter_queue_s3_configuration(
                k::DeadLetterQueueS3Configuration::builder()
                    .bucket_arn("arn:aws:s3:::lake")
                    .expected_bucket_owner("000000000000")
                    .error_output_prefix("dead-letters/")
                    .build()
                    .unwrap(),
            )
            .s3_tables_configuration_list(
                k::S3TablesConfiguration::builder()
                    .table_bucket_arn("arn:aws:s3tables:us-east-1:000000000000:bucket/lake")
                    .namespace("telemetry")
                    .table_name("events")
                    .compression_type(k::S3TablesCompressionType::Zstd)
                    .partition_spec(
                        k::PartitionSpec::builder()
                            .partition_fields(
                                k::PartitionField::builder()
                                    .source_name("ts")
                                    .transform(k::PartitionTransform::TimeHour)
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let create = |stream: &str, name: &str, freshness: i32| {
        kinesis
            .create_channel()
            .channel_name(name)
            .service_execution_role_arn("arn:aws:iam::000000000000:role/channel")
            .stream_configuration_list(
                k::ChannelStreamConfiguration::builder()
                    .stream_arn(stream_arn(stream))
                    .record_configuration(
                        k::RecordConfiguration::builder()
                            .record_format_type(k::RecordFormatType::Json)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            )
            .s3_tables_destination_configuration(tables_destination(freshness))
            .send()
    };
    // AWS's rules: on-demand streams only, freshness 300–900 s.
    let refused = create(provisioned, "p", 300).await.unwrap_err();
    assert_eq!(refused.into_service_error().meta().code(), Some("InvalidArgumentException"));
    let refused = create("events", "fast", 10).await.unwrap_err();
    assert_eq!(refused.into_service_error().meta().code(), Some("InvalidArgumentException"));

    let created = create("events", "events-table", 300).await.unwrap();
    let channel = created.channel_description().unwrap();
    assert_eq!(channel.channel_status(), &k::ChannelStatus::Creating);
    let arn = channel.channel_arn().to_owned();
    assert!(arn.starts_with("arn:aws:kinesis:us-east-1:000000000000:channel/"), "{arn}");
    let again = create("events", "events-table", 300).await.unwrap_err();
    assert_eq!(again.into_service_error().meta().code(), Some("ResourceInUseException"));
    h.clock.advance(1_000);
    let described = kinesis.describe_channel().channel_arn(&arn).send().await.unwrap();
    assert_eq!(described.channel_description().unwrap().channel_status(), &k::ChannelStatus::Active);
    let listed = kinesis
        .list_channels()
        .stream_filter(k::StreamFilter::builder().stream_arn(stream_arn("events")).build().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(listed.channel_summaries().len(), 1);
    assert_eq!(listed.channel_summaries()[0].channel_destination_type(), &k::ChannelDestinationType::S3Tables);
    // A stream with a channel is not deleted.
    let in_use = kinesis.delete_stream().stream_name("events").send().await.unwrap_err();
    assert_eq!(in_use.into_service_error().meta().code(), Some("ResourceInUseException"));

    // Readings with an hourly timestamp, spread over the stream's shards by station.
    let records: Vec<String> = beijing(600)
        .into_iter()
        .map(|r| {
            let mut v: serde_json::Value = serde_json::from_str(&r).unwrap();
            let ts = format!(
                "{:04}-{:02}-{:02}T{:02}:00:00Z",
                v["year"].as_i64().unwrap(),
                v["month"].as_i64().unwrap(),
                v["day"].as_i64().unwrap(),
                v["hour"].as_i64().unwrap()
            );
            v["ts"] = ts.into();
            v.to_string()
        })
        .collect();
    for chunk in records.chunks(500) {
        let entries: Vec<k::PutRecordsRequestEntry> = chunk
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(r).unwrap();
                k::PutRecordsRequestEntry::builder()
                    .data(aws_sdk_kinesis::primitives::Blob::new(r.as_bytes()))
                    .partition_key(v["station"].as_str().unwrap())
                    .build()
                    .unwrap()
            })
            .collect();
        let out = kinesis.put_records().stream_name("events").set_records(Some(entries)).send().await.unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
    // Nothing is delivered before the data freshness has passed.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let lake = Arc::new(Lake::new(h.s3.lake_config()).unwrap());
    let tables = Tables::new(&h.dir.path().join("data"), lake.clone(), Default::default());
    let target = TableTarget {
        catalog: "lake".into(),
        namespace: "telemetry".into(),
        table: "events".into(),
        location: String::new(),
        create: false,
        partitions: Vec::new(),
        compression: parquet::basic::Compression::ZSTD(Default::default()),
    };
    assert_eq!(table_rows(&tables, &target).await, 0);
    h.clock.advance(300_000);
    // Every record lands once: in the table, or (a reading that does not fit the columns
    // inferred from the first records) in the dead-letter prefix.
    let s3 = h.s3.client();
    let dead_letters = async || -> Vec<String> {
        use base64::Engine as _;
        let mut out = Vec::new();
        for (_, bytes) in objects(&s3, "dead-letters/").await {
            for line in String::from_utf8(bytes).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(v["lastErrorCode"], "DataFormatConversion.MalformedData", "{line}");
                let raw = base64::engine::general_purpose::STANDARD.decode(v["rawData"].as_str().unwrap()).unwrap();
                out.push(String::from_utf8(raw).unwrap());
            }
        }
        out
    };
    let landed = wait_for(
        &h.clock,
        async || (table_rows(&tables, &target).await, dead_letters().await),
        |(rows, dead)| rows + dead.len() >= records.len(),
    )
    .await;
    assert_eq!(landed.0 + landed.1.len(), records.len());
    let files = objects(&s3, "telemetry.db/events/data/").await;
    assert!(!files.is_empty());
    assert!(files.iter().all(|(key, _)| key.contains("/ts_hour=")), "files are in hour partitions");
    let (digest, _) = BeijingDigest::of_parquet(&files);
    let delivered: Vec<String> = records.iter().filter(|r| !landed.1.contains(r)).cloned().collect();
    assert_eq!(digest, BeijingDigest::of_json(&delivered));

    kinesis
        .update_channel()
        .channel_arn(&arn)
        .s3_tables_destination_configuration(
            k::S3TablesDestinationUpdateInput::builder().data_freshness_in_seconds(600).build().unwrap(),
        )
        .send()
        .await
        .unwrap();
    let updated = kinesis.describe_channel().channel_arn(&arn).send().await.unwrap();
    let updated = updated.channel_description().unwrap();
    assert_eq!(updated.channel_status(), &k::ChannelStatus::Updating);
    assert_eq!(updated.s3_tables_destination_configuration().unwrap().data_freshness_in_seconds(), 600);
    h.clock.advance(1_000);
    kinesis.delete_channel().channel_arn(&arn).send().await.unwrap();
    let gone =
        wait_for(&h.clock, async || kinesis.describe_channel().channel_arn(&arn).send().await.is_err(), |gone| *gone)
            .await;
    assert!(gone);
    kinesis.delete_stream().stream_name("events").send().await.unwrap();
    h.server.stop().await;
}
