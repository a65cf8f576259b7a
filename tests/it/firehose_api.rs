//! The Firehose control plane and put calls through `aws-sdk-firehose`: shapes a client
//! reads back, versions, tags, and AWS's error types for bad input (nothing created or
//! written when refused).

use aws_sdk_firehose::error::ProvideErrorMetadata;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types as fh;

use crate::firehose_delivery::{beijing_parquet, delivery_config, destination, kinesis_source, Harness};
use crate::support::TestServer;

fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(r: Result<T, E>) -> (String, String) {
    let e = r.expect_err("the call must fail");
    (e.code().unwrap_or_default().to_owned(), e.message().unwrap_or_default().to_owned())
}

fn record(data: &[u8]) -> fh::Record {
    fh::Record::builder().data(Blob::new(data)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_describe_list_update_tag_delete() {
    let Harness { dir, s3, clock, server } = Harness::start(Some(1_700_000_000_000), |_| {}).await;
    let f = server.firehose();
    for name in ["b-stream", "a-stream", "c-stream"] {
        let out = f
            .create_delivery_stream()
            .delivery_stream_name(name)
            .extended_s3_destination_configuration(destination("raw/", "raw-errors/").build().unwrap())
            .tags(fh::Tag::builder().key("team").value("data").build().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.delivery_stream_arn(),
            Some(format!("arn:aws:firehose:us-east-1:000000000000:deliverystream/{name}").as_str())
        );
    }
    let (c, m) = code(
        f.create_delivery_stream()
            .delivery_stream_name("a-stream")
            .extended_s3_destination_configuration(destination("x/", "y/").build().unwrap())
            .send()
            .await,
    );
    assert_eq!(
        (c.as_str(), m.as_str()),
        ("ResourceInUseException", "Firehose a-stream under accountId 000000000000 already exists")
    );

    let d = f.describe_delivery_stream().delivery_stream_name("a-stream").send().await.unwrap();
    let d = d.delivery_stream_description().unwrap();
    assert_eq!(d.delivery_stream_status(), &fh::DeliveryStreamStatus::Active);
    assert_eq!(d.delivery_stream_type(), &fh::DeliveryStreamType::DirectPut);
    assert_eq!(d.version_id(), "1");
    assert_eq!(d.create_timestamp().unwrap().secs(), 1_700_000_000);
    let dest = &d.destinations()[0];
    assert_eq!(dest.destination_id(), "destinationId-000000000001");
    let s3d = dest.extended_s3_destination_description().unwrap();
    assert_eq!(s3d.bucket_arn(), "arn:aws:s3:::lake");
    assert_eq!(s3d.prefix(), Some("raw/"));
    assert_eq!(s3d.compression_format(), &fh::CompressionFormat::Uncompressed);
    assert_eq!(s3d.buffering_hints().unwrap().interval_in_seconds(), Some(1));

    let l = f.list_delivery_streams().limit(2).send().await.unwrap();
    assert_eq!(l.delivery_stream_names(), ["a-stream", "b-stream"]);
    assert!(l.has_more_delivery_streams());
    let l = f.list_delivery_streams().exclusive_start_delivery_stream_name("b-stream").send().await.unwrap();
    assert_eq!(l.delivery_stream_names(), ["c-stream"]);
    assert!(!l.has_more_delivery_streams());
    let l = f
        .list_delivery_streams()
        .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
        .send()
        .await
        .unwrap();
    assert!(l.delivery_stream_names().is_empty());

    // UpdateDestination: only with the current version; the version then goes up.
    let (c, _) = code(
        f.update_destination()
            .delivery_stream_name("a-stream")
            .current_delivery_stream_version_id("7")
            .destination_id("destinationId-000000000001")
            .extended_s3_destination_update(fh::ExtendedS3DestinationUpdate::builder().prefix("new/").build())
            .send()
            .await,
    );
    assert_eq!(c, "ConcurrentModificationException");
    clock.advance(5_000);
    f.update_destination()
        .delivery_stream_name("a-stream")
        .current_delivery_stream_version_id("1")
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(fh::ExtendedS3DestinationUpdate::builder().prefix("new/").build())
        .send()
        .await
        .unwrap();
    let d = f.describe_delivery_stream().delivery_stream_name("a-stream").send().await.unwrap();
    let d = d.delivery_stream_description().unwrap();
    assert_eq!(d.version_id(), "2");
    assert_eq!(d.last_update_timestamp().unwrap().secs(), 1_700_000_005);
    let s3d = d.destinations()[0].extended_s3_destination_description().unwrap();
    assert_eq!(
        (s3d.prefix(), s3d.error_output_prefix()),
        (Some("new/"), Some("raw-errors/")),
        "members not given are kept"
    );
    // Half a BufferingHints pair is refused in an update too.
    let (c, m) = code(
        f.update_destination()
            .delivery_stream_name("a-stream")
            .current_delivery_stream_version_id("2")
            .destination_id("destinationId-000000000001")
            .extended_s3_destination_update(
                fh::ExtendedS3DestinationUpdate::builder()
                    .buffering_hints(fh::BufferingHints::builder().interval_in_seconds(30).build())
                    .build(),
            )
            .send()
            .await,
    );
    assert_eq!(c, "InvalidArgumentException", "{m}");

    // A DynamicPartitioningConfiguration update without Enabled keeps it enabled.
    f.create_delivery_stream()
        .delivery_stream_name("parted")
        .extended_s3_destination_configuration(
            destination("p/!{partitionKeyFromQuery:k}/", "p-errors/!{firehose:error-output-type}/")
                .dynamic_partitioning_configuration(
                    fh::DynamicPartitioningConfiguration::builder().enabled(true).build(),
                )
                .processing_configuration(crate::firehose_delivery::partition_by("{k: .k}"))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    f.update_destination()
        .delivery_stream_name("parted")
        .current_delivery_stream_version_id("1")
        .destination_id("destinationId-000000000001")
        .extended_s3_destination_update(
            fh::ExtendedS3DestinationUpdate::builder()
                .dynamic_partitioning_configuration(
                    fh::DynamicPartitioningConfiguration::builder()
                        .retry_options(fh::RetryOptions::builder().duration_in_seconds(600).build())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let d = f.describe_delivery_stream().delivery_stream_name("parted").send().await.unwrap();
    let dp = d.delivery_stream_description().unwrap().destinations()[0]
        .extended_s3_destination_description()
        .unwrap()
        .dynamic_partitioning_configuration()
        .unwrap()
        .clone();
    assert_eq!((dp.enabled(), dp.retry_options().and_then(|r| r.duration_in_seconds())), (Some(true), Some(600)));
    f.delete_delivery_stream().delivery_stream_name("parted").send().await.unwrap();

    // Tags.
    f.tag_delivery_stream()
        .delivery_stream_name("a-stream")
        .tags(fh::Tag::builder().key("env").value("test").build().unwrap())
        .tags(fh::Tag::builder().key("team").value("lake").build().unwrap())
        .send()
        .await
        .unwrap();
    let t = f.list_tags_for_delivery_stream().delivery_stream_name("a-stream").limit(1).send().await.unwrap();
    assert_eq!(t.tags().iter().map(|t| (t.key(), t.value())).collect::<Vec<_>>(), [("env", Some("test"))]);
    assert!(t.has_more_tags());
    f.untag_delivery_stream().delivery_stream_name("a-stream").tag_keys("env").send().await.unwrap();
    let t = f.list_tags_for_delivery_stream().delivery_stream_name("a-stream").send().await.unwrap();
    assert_eq!(t.tags().iter().map(|t| (t.key(), t.value())).collect::<Vec<_>>(), [("team", Some("lake"))]);

    // Delete.
    f.delete_delivery_stream().delivery_stream_name("a-stream").send().await.unwrap();
    let (c, m) = code(f.describe_delivery_stream().delivery_stream_name("a-stream").send().await);
    assert_eq!(
        (c.as_str(), m.as_str()),
        ("ResourceNotFoundException", "Firehose a-stream under account 000000000000 not found.")
    );
    let (c, _) = code(f.put_record().delivery_stream_name("a-stream").record(record(b"x")).send().await);
    assert_eq!(c, "ResourceNotFoundException");

    // Definitions survive a restart.
    server.stop().await;
    let server =
        TestServer::start_with(&dir.path().join("data"), clock.clone(), |c| delivery_config(c, s3.lake_config())).await;
    let l = server.firehose().list_delivery_streams().send().await.unwrap();
    assert_eq!(l.delivery_stream_names(), ["b-stream", "c-stream"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_aws_errors_and_change_nothing() {
    let Harness { dir: _dir, s3: _s3, clock: _clock, server } = Harness::start(Some(1_700_000_000_000), |_| {}).await;
    server.client().create_stream().stream_name("src").shard_count(1).send().await.unwrap();
    let f = server.firehose();
    let create = |name: &str, d: fh::ExtendedS3DestinationConfiguration| {
        f.create_delivery_stream().delivery_stream_name(name).extended_s3_destination_configuration(d).send()
    };
    let cases: Vec<(&str, fh::ExtendedS3DestinationConfiguration, &str, &str)> = vec![
        (
            "logs-nowhere",
            destination("a/", "b/")
                .cloud_watch_logging_options(fh::CloudWatchLoggingOptions::builder().enabled(true).build())
                .build()
                .unwrap(),
            "InvalidArgumentException",
            "LogGroupName and LogStreamName are required",
        ),
        (
            "half-hints",
            destination("a/", "b/")
                .buffering_hints(fh::BufferingHints::builder().size_in_mbs(64).build())
                .build()
                .unwrap(),
            "InvalidArgumentException",
            "SizeInMBs and IntervalInSeconds must be specified together",
        ),
        ("bad name!", destination("a/", "b/").build().unwrap(), "ValidationException", "deliveryStreamName"),
        (
            "p1",
            destination("a/!{firehose:error-output-type}/", "b/").build().unwrap(),
            "InvalidArgumentException",
            "must not contain any occurrence of !{firehose:error-output-type}",
        ),
        (
            "p2",
            fh::ExtendedS3DestinationConfiguration::builder()
                .role_arn("arn:aws:iam::000000000000:role/r")
                .bucket_arn("arn:aws:s3:::lake")
                .prefix("a/!{timestamp:yyyy}/")
                .build()
                .unwrap(),
            "InvalidArgumentException",
            "ErrorOutputPrefix cannot be null or empty when Prefix contains expressions",
        ),
        (
            "p3",
            destination("a/!{timestamp:QQQ}/", "b/").build().unwrap(),
            "InvalidArgumentException",
            "unsupported pattern letters",
        ),
        (
            "p4",
            destination("a/!{partitionKeyFromQuery:k}/", "b/").build().unwrap(),
            "InvalidArgumentException",
            "Dynamic Partitioning",
        ),
        (
            "p5",
            destination("a/", "b/!{timestamp:yyyy}/").build().unwrap(),
            "InvalidArgumentException",
            "error-output-type",
        ),
        (
            "p6",
            destination("a/", "b/")
                .compression_format(fh::CompressionFormat::Gzip)
                .data_format_conversion_configuration(beijing_parquet())
                .build()
                .unwrap(),
            "InvalidArgumentException",
            "UNCOMPRESSED when data format conversion is enabled",
        ),
        (
            "p7",
            destination("a/", "b/")
                .buffering_hints(fh::BufferingHints::builder().size_in_mbs(129).interval_in_seconds(60).build())
                .build()
                .unwrap(),
            "ValidationException",
            "sizeInMBs",
        ),
        ("p8", destination("a/", "b/").bucket_arn("not-an-arn").build().unwrap(), "ValidationException", "bucketARN"),
    ];
    for (name, d, want_code, want_message) in cases {
        let (c, m) = code(create(name, d).await);
        assert_eq!(c, want_code, "{name}: {m}");
        assert!(m.contains(want_message), "{name}: {m}");
    }
    let (c, m) = code(
        f.create_delivery_stream()
            .delivery_stream_name("nosrc")
            .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
            .kinesis_stream_source_configuration(kinesis_source("missing"))
            .extended_s3_destination_configuration(destination("a/", "b/").build().unwrap())
            .send()
            .await,
    );
    assert_eq!(c, "InvalidArgumentException", "{m}");
    // A source configuration of another stream type is refused, not ignored.
    let (c, m) = code(
        f.create_delivery_stream()
            .delivery_stream_name("twosrc")
            .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
            .kinesis_stream_source_configuration(kinesis_source("src"))
            .direct_put_source_configuration(
                fh::DirectPutSourceConfiguration::builder().throughput_hint_in_mbs(1).build().unwrap(),
            )
            .extended_s3_destination_configuration(destination("a/", "b/").build().unwrap())
            .send()
            .await,
    );
    assert_eq!(
        (c.as_str(), m.as_str()),
        ("InvalidArgumentException", "DirectPutSourceConfiguration is only applicable for DirectPut stream type")
    );
    assert!(f.list_delivery_streams().send().await.unwrap().delivery_stream_names().is_empty(), "nothing was created");

    // Puts: limits and a Kinesis-sourced delivery stream.
    create("ok", destination("ok/", "ok-errors/").build().unwrap()).await.unwrap();
    // A conversion configuration without Enabled is described as enabled ("Defaults to true").
    f.create_delivery_stream()
        .delivery_stream_name("conv")
        .extended_s3_destination_configuration(
            destination("c/", "c-errors/")
                .data_format_conversion_configuration({
                    let mut c = crate::firehose_delivery::json_to_parquet(None);
                    c.enabled = None;
                    c
                })
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let d = f.describe_delivery_stream().delivery_stream_name("conv").send().await.unwrap();
    let conv = d.delivery_stream_description().unwrap().destinations()[0]
        .extended_s3_destination_description()
        .unwrap()
        .data_format_conversion_configuration()
        .unwrap()
        .clone();
    assert_eq!(conv.enabled(), Some(true));
    f.delete_delivery_stream().delivery_stream_name("conv").send().await.unwrap();
    // A DirectPut throughput hint is shown back in the description's Source.
    f.create_delivery_stream()
        .delivery_stream_name("hinted")
        .direct_put_source_configuration(
            fh::DirectPutSourceConfiguration::builder().throughput_hint_in_mbs(5).build().unwrap(),
        )
        .extended_s3_destination_configuration(destination("h/", "h-errors/").build().unwrap())
        .send()
        .await
        .unwrap();
    let d = f.describe_delivery_stream().delivery_stream_name("hinted").send().await.unwrap();
    let hint = d.delivery_stream_description().unwrap().source().and_then(|s| s.direct_put_source_description());
    assert_eq!(hint.and_then(|h| h.throughput_hint_in_mbs()), Some(5));
    f.delete_delivery_stream().delivery_stream_name("hinted").send().await.unwrap();
    let too_many: Vec<fh::Record> = (0..501).map(|_| record(b"x")).collect();
    let (c, m) = code(f.put_record_batch().delivery_stream_name("ok").set_records(Some(too_many)).send().await);
    assert_eq!(c, "ValidationException", "{m}");
    let big: Vec<fh::Record> = (0..5).map(|_| record(&vec![b'x'; 1_000_000])).collect();
    let (c, m) = code(f.put_record_batch().delivery_stream_name("ok").set_records(Some(big)).send().await);
    assert_eq!((c.as_str(), m.as_str()), ("InvalidArgumentException", "Records size exceeds 4 MB limit"));
    let (c, m) = code(f.put_record().delivery_stream_name("ok").record(record(&vec![b'x'; 1_024_001])).send().await);
    assert_eq!(c, "ValidationException", "{m}");
    assert!(m.contains("1024000"), "{m}");
    f.create_delivery_stream()
        .delivery_stream_name("from-kinesis")
        .delivery_stream_type(fh::DeliveryStreamType::KinesisStreamAsSource)
        .kinesis_stream_source_configuration(kinesis_source("src"))
        .extended_s3_destination_configuration(destination("k/", "k-errors/").build().unwrap())
        .send()
        .await
        .unwrap();
    let (c, m) = code(f.put_record().delivery_stream_name("from-kinesis").record(record(b"x")).send().await);
    assert_eq!(
        (c.as_str(), m.as_str()),
        ("InvalidArgumentException", "This operation is not permitted on KinesisStreamAsSource delivery stream type.")
    );
    // The refused puts wrote nothing: one good record is the only one delivered.
    let id = f.put_record().delivery_stream_name("ok").record(record(b"only")).send().await.unwrap();
    assert_eq!(
        id.record_id(),
        "49000000000000000000000000000000000000000000000000000000",
        "the first record of the internal stream"
    );
    server.stop().await;
}

/// A delivery stream shows CREATING, then ACTIVE; after deletion DELETING, then it is gone,
/// as `DescribeDeliveryStream` shows it on AWS (the SDK waiters rely on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_streams_show_creating_and_deleting() {
    let Harness { dir: _dir, s3: _s3, clock, server } =
        Harness::start(Some(1_700_000_000_000), |c| c.stream_transition_ms = 1_000).await;
    let f = server.firehose();
    f.create_delivery_stream()
        .delivery_stream_name("slow")
        .extended_s3_destination_configuration(destination("raw/", "raw-errors/").build().unwrap())
        .send()
        .await
        .unwrap();
    let status = |f: &aws_sdk_firehose::Client| {
        let f = f.clone();
        async move {
            let d = f.describe_delivery_stream().delivery_stream_name("slow").send().await;
            d.map(|d| d.delivery_stream_description().unwrap().delivery_stream_status().clone())
        }
    };
    assert_eq!(status(&f).await.unwrap(), fh::DeliveryStreamStatus::Creating);
    clock.advance(1_000);
    assert_eq!(status(&f).await.unwrap(), fh::DeliveryStreamStatus::Active);
    f.delete_delivery_stream().delivery_stream_name("slow").send().await.unwrap();
    assert_eq!(status(&f).await.unwrap(), fh::DeliveryStreamStatus::Deleting);
    let (c, _) = code(f.put_record().delivery_stream_name("slow").record(record(b"x")).send().await);
    assert_eq!(c, "ResourceNotFoundException", "a DELETING delivery stream takes no records");
    // Deleting it again is allowed; its name is not free until it is gone.
    f.delete_delivery_stream().delivery_stream_name("slow").send().await.unwrap();
    let again = f
        .create_delivery_stream()
        .delivery_stream_name("slow")
        .extended_s3_destination_configuration(destination("raw/", "raw-errors/").build().unwrap())
        .send()
        .await;
    let (c, _) = code(again);
    assert_eq!(c, "ResourceInUseException");
    assert_eq!(status(&f).await.unwrap(), fh::DeliveryStreamStatus::Deleting);
    clock.advance(1_000);
    let (c, _) = code(status(&f).await);
    assert_eq!(c, "ResourceNotFoundException");
    server.stop().await;
}
