//! The actions that change a stream's settings, and those on resources named by ARN,
//! through the Rust SDK: what they answer, what the stream then reports and does.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{
    EncryptionType, MetricsName, MinimumThroughputBillingCommitmentInput,
    MinimumThroughputBillingCommitmentInputStatus, MinimumThroughputBillingCommitmentOutputStatus,
    RecordDistributionStrategy, StreamMode, StreamModeDetails,
};
use sluice_engine::ManualClock;

use crate::support::TestServer;

const ARN: &str = "arn:aws:kinesis:us-east-1:000000000000:stream/s";

fn mode(m: StreamMode) -> StreamModeDetails {
    StreamModeDetails::builder().stream_mode(m).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_monitoring_and_record_size_are_applied_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let server = TestServer::start_with_clock(dir.path(), clock.clone()).await;
    let client = server.client();
    client.create_stream().stream_name("s").shard_count(1).send().await.unwrap();

    client
        .start_stream_encryption()
        .stream_name("s")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();
    let d = client.describe_stream_summary().stream_name("s").send().await.unwrap().stream_description_summary.unwrap();
    assert_eq!((d.encryption_type, d.key_id.as_deref()), (Some(EncryptionType::Kms), Some("alias/aws/kinesis")));
    let put = client.put_record().stream_name("s").partition_key("k").data(Blob::new("x")).send().await.unwrap();
    assert_eq!(put.encryption_type, Some(EncryptionType::Kms));
    client
        .stop_stream_encryption()
        .stream_name("s")
        .encryption_type(EncryptionType::Kms)
        .key_id("alias/aws/kinesis")
        .send()
        .await
        .unwrap();
    let d = client.describe_stream().stream_name("s").send().await.unwrap().stream_description.unwrap();
    assert_eq!(d.encryption_type, Some(EncryptionType::None));

    let on = client
        .enable_enhanced_monitoring()
        .stream_name("s")
        .shard_level_metrics(MetricsName::All)
        .send()
        .await
        .unwrap();
    assert_eq!(on.current_shard_level_metrics(), &[]);
    assert_eq!(on.desired_shard_level_metrics().len(), 7);
    let off = client
        .disable_enhanced_monitoring()
        .stream_name("s")
        .shard_level_metrics(MetricsName::IncomingBytes)
        .send()
        .await
        .unwrap();
    assert_eq!(off.current_shard_level_metrics().len(), 7);
    assert!(!off.desired_shard_level_metrics().contains(&MetricsName::IncomingBytes));
    let d = client.describe_stream_summary().stream_name("s").send().await.unwrap().stream_description_summary.unwrap();
    assert_eq!(d.enhanced_monitoring[0].shard_level_metrics().len(), 6);
    // The metrics turned on appear per shard in /metrics; IncomingBytes, turned off, does not.
    let (status, metrics) = crate::support::head_of(
        server.addr,
        format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .contains("sluice_kinesis_shard_incoming_records_total{stream=\"s\",shard=\"shardid-000000000000\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_kinesis_shard_iterator_age_milliseconds{stream=\"s\""), "{metrics}");
    assert!(!metrics.contains("sluice_kinesis_shard_incoming_bytes"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# eof"), "OpenMetrics still ends with # EOF");

    // A 2 MiB record: refused at the default 1 MiB, taken once the stream allows 3 MiB.
    let big = vec![7u8; 2 << 20];
    let refused =
        client.put_record().stream_name("s").partition_key("k").data(Blob::new(big.clone())).send().await.unwrap_err();
    assert_eq!(refused.code(), Some("ValidationException"), "{refused:?}");
    client.update_max_record_size().stream_arn(ARN).max_record_size_in_kib(3072).send().await.unwrap();
    let d = client.describe_stream_summary().stream_name("s").send().await.unwrap().stream_description_summary.unwrap();
    assert_eq!(d.max_record_size_in_kib, Some(3072));
    // A record above the shard's 1 MiB/s is taken when its bucket is full, leaving it in debt.
    clock.advance(1_000);
    let taken =
        client.put_record().stream_name("s").partition_key("k").data(Blob::new(big.clone())).send().await.unwrap();
    let it = client
        .get_shard_iterator()
        .stream_name("s")
        .shard_id(taken.shard_id)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(taken.sequence_number)
        .send()
        .await
        .unwrap();
    let got = client.get_records().shard_iterator(it.shard_iterator.unwrap()).send().await.unwrap();
    assert_eq!(got.records[0].data.as_ref(), &big[..]);
    let again =
        client.put_record().stream_name("s").partition_key("k").data(Blob::new(big.clone())).send().await.unwrap_err();
    assert_eq!(again.code(), Some("ProvisionedThroughputExceededException"));
    let too_big = vec![7u8; 3 << 20];
    let refused =
        client.put_record().stream_name("s").partition_key("k").data(Blob::new(too_big)).send().await.unwrap_err();
    assert_eq!(refused.message(), Some("The record size (data plus partition key) exceeds 3 MiB."));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_mode_distribution_and_warm_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let client = server.client();
    client.create_stream().stream_name("od").stream_mode_details(mode(StreamMode::OnDemand)).send().await.unwrap();
    let d =
        client.describe_stream_summary().stream_name("od").send().await.unwrap().stream_description_summary.unwrap();
    assert_eq!(d.stream_mode_details.unwrap().stream_mode, StreamMode::OnDemand);
    assert_eq!(d.open_shard_count, 4);
    let listed = client.list_streams().send().await.unwrap();
    assert_eq!(listed.stream_summaries()[0].stream_mode_details.as_ref().unwrap().stream_mode, StreamMode::OnDemand);
    let limits = client.describe_limits().send().await.unwrap();
    assert_eq!(limits.on_demand_stream_count, 1);
    let refused = client
        .update_shard_count()
        .stream_name("od")
        .target_shard_count(8)
        .scaling_type(aws_sdk_kinesis::types::ScalingType::UniformScaling)
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("ValidationException"));
    assert_eq!(
        refused.message(),
        Some("Request is invalid. Stream od under account 000000000000 is in On-Demand mode.")
    );

    let warm =
        client.update_stream_warm_throughput().stream_name("od").warm_throughput_mibps(100).send().await.unwrap();
    assert_eq!(warm.warm_throughput.unwrap().target_mibps, Some(100));

    // AUTO: records spread over every open shard, whatever their (single) partition key.
    let od_arn = "arn:aws:kinesis:us-east-1:000000000000:stream/od";
    client
        .update_stream_record_distribution_strategy()
        .stream_arn(od_arn)
        .record_distribution_strategy(RecordDistributionStrategy::Auto)
        .send()
        .await
        .unwrap();
    let entries: Vec<_> = (0..40)
        .map(|i| {
            aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                .partition_key("same")
                .data(Blob::new(format!("{i}")))
                .build()
                .unwrap()
        })
        .collect();
    let put = client.put_records().stream_name("od").set_records(Some(entries)).send().await.unwrap();
    let shards: BTreeSet<_> = put.records.iter().map(|r| r.shard_id.clone().unwrap()).collect();
    assert_eq!(shards.len(), 4, "{shards:?}");

    client.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
    let auto = client
        .update_stream_record_distribution_strategy()
        .stream_arn(ARN)
        .record_distribution_strategy(RecordDistributionStrategy::Auto)
        .send()
        .await
        .unwrap_err();
    assert_eq!(auto.code(), Some("InvalidArgumentException"));
    client.update_stream_mode().stream_arn(ARN).stream_mode_details(mode(StreamMode::OnDemand)).send().await.unwrap();
    let d = client.describe_stream_summary().stream_name("s").send().await.unwrap().stream_description_summary.unwrap();
    assert_eq!(d.stream_mode_details.unwrap().stream_mode, StreamMode::OnDemand);
    let again = client
        .update_stream_mode()
        .stream_arn(ARN)
        .stream_mode_details(mode(StreamMode::OnDemand))
        .send()
        .await
        .unwrap_err();
    assert_eq!(again.code(), Some("InvalidArgumentException"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_policies_by_arn_and_account_settings() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let server = TestServer::start_with_clock(dir.path(), clock.clone()).await;
    let client = server.client();
    client.create_stream().stream_name("s").shard_count(1).tags("team", "data").send().await.unwrap();
    let consumer = client.register_stream_consumer().stream_arn(ARN).consumer_name("app").send().await.unwrap();
    let consumer_arn = consumer.consumer.unwrap().consumer_arn;

    client.tag_resource().resource_arn(ARN).tags("env", "test").send().await.unwrap();
    client.tag_resource().resource_arn(&consumer_arn).tags("owner", "me").send().await.unwrap();
    let tags = client.list_tags_for_resource().resource_arn(ARN).send().await.unwrap();
    let keys: Vec<_> = tags.tags().iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["env", "team"]);
    let tags = client.list_tags_for_resource().resource_arn(&consumer_arn).send().await.unwrap();
    assert_eq!(tags.tags()[0].value.as_deref(), Some("me"));
    client.untag_resource().resource_arn(ARN).tag_keys("team").send().await.unwrap();
    let old = client.list_tags_for_stream().stream_name("s").send().await.unwrap();
    assert_eq!(old.tags.len(), 1);
    let missing = client
        .list_tags_for_resource()
        .resource_arn("arn:aws:kinesis:us-east-1:000000000000:stream/nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("ResourceNotFoundException"));

    assert_eq!(client.get_resource_policy().resource_arn(ARN).send().await.unwrap().policy, "{}");
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kinesis:GetRecords","Resource":"*"}]}"#;
    client.put_resource_policy().resource_arn(ARN).policy(policy).send().await.unwrap();
    assert_eq!(client.get_resource_policy().resource_arn(ARN).send().await.unwrap().policy, policy);
    client.delete_resource_policy().resource_arn(ARN).send().await.unwrap();
    let twice = client.delete_resource_policy().resource_arn(ARN).send().await.unwrap_err();
    assert_eq!(twice.code(), Some("ResourceNotFoundException"));
    // Explicit denials are enforced for the callers Sluice knows: users named by access key.
    let deny = |principal: &str, action: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Deny","Principal":{{"AWS":"{principal}"}},"Action":"{action}","Resource":"{ARN}"}}]}}"#
        )
    };
    let me = format!("arn:aws:iam::000000000000:user/{}", crate::support::ACCESS_KEY);
    let put = || client.put_record().stream_name("s").partition_key("k").data(Blob::new("x")).send();
    client
        .put_resource_policy()
        .resource_arn(ARN)
        .policy(deny("arn:aws:iam::000000000000:user/other", "kinesis:*"))
        .send()
        .await
        .unwrap();
    put().await.unwrap();
    client.put_resource_policy().resource_arn(ARN).policy(deny(&me, "kinesis:PutRecord*")).send().await.unwrap();
    let denied = put().await.unwrap_err();
    assert_eq!(denied.code(), Some("AccessDeniedException"), "{denied:?}");
    assert_eq!(
        denied.message().unwrap(),
        format!("User: {me} is not authorized to perform: kinesis:PutRecord on resource: {ARN} with an explicit deny in a resource-based policy")
    );
    // PutRecords in JSON takes its fast path: the policy holds there too, by name and by ARN.
    let entry = aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
        .partition_key("k")
        .data(Blob::new("x"))
        .build()
        .unwrap();
    for by_arn in [false, true] {
        let request = client.put_records().records(entry.clone());
        let request = if by_arn { request.stream_arn(ARN) } else { request.stream_name("s") };
        let denied = request.send().await.unwrap_err();
        assert_eq!(denied.code(), Some("AccessDeniedException"), "{denied:?}");
        assert_eq!(
            denied.message().unwrap(),
            format!("User: {me} is not authorized to perform: kinesis:PutRecords on resource: {ARN} with an explicit deny in a resource-based policy")
        );
    }
    // GetRecords is checked against the stream its iterator reads, whatever StreamARN the
    // request also names (another stream's, or one that does not exist).
    client.create_stream().stream_name("other").shard_count(1).send().await.unwrap();
    client.put_resource_policy().resource_arn(ARN).policy(deny(&me, "kinesis:GetRecords")).send().await.unwrap();
    let it = crate::support::first_shard_iterator(&client, "s").await;
    for named in [
        ARN,
        "arn:aws:kinesis:us-east-1:000000000000:stream/other",
        "arn:aws:kinesis:us-east-1:000000000000:stream/none",
    ] {
        let denied = client.get_records().shard_iterator(&it).stream_arn(named).send().await.unwrap_err();
        assert_eq!(denied.code(), Some("AccessDeniedException"), "{named}: {denied:?}");
    }
    client.describe_stream_summary().stream_name("s").send().await.unwrap();
    client
        .put_resource_policy()
        .resource_arn(ARN)
        .policy(deny("arn:aws:iam::000000000000:root", "kinesis:DescribeStreamSummary"))
        .send()
        .await
        .unwrap();
    put().await.unwrap();
    let denied = client.describe_stream_summary().stream_arn(ARN).send().await.unwrap_err();
    assert_eq!(denied.code(), Some("AccessDeniedException"));
    client.delete_resource_policy().resource_arn(ARN).send().await.unwrap();
    client.describe_stream_summary().stream_arn(ARN).send().await.unwrap();
    let bad = client.put_resource_policy().resource_arn(ARN).policy("not json").send().await.unwrap_err();
    assert_eq!(bad.code(), Some("InvalidArgumentException"));

    let settings = client.describe_account_settings().send().await.unwrap();
    assert_eq!(
        settings.minimum_throughput_billing_commitment.unwrap().status,
        MinimumThroughputBillingCommitmentOutputStatus::Disabled
    );
    let enable = MinimumThroughputBillingCommitmentInput::builder()
        .status(MinimumThroughputBillingCommitmentInputStatus::Enabled)
        .build()
        .unwrap();
    let on = client.update_account_settings().minimum_throughput_billing_commitment(enable).send().await.unwrap();
    let on = on.minimum_throughput_billing_commitment.unwrap();
    assert_eq!(on.status, MinimumThroughputBillingCommitmentOutputStatus::Enabled);
    assert_eq!(on.earliest_allowed_end_at.unwrap().secs() - on.started_at.unwrap().secs(), 24 * 3600);
    let disable = MinimumThroughputBillingCommitmentInput::builder()
        .status(MinimumThroughputBillingCommitmentInputStatus::Disabled)
        .build()
        .unwrap();
    let off = client.update_account_settings().minimum_throughput_billing_commitment(disable).send().await.unwrap();
    assert_eq!(
        off.minimum_throughput_billing_commitment.unwrap().status,
        MinimumThroughputBillingCommitmentOutputStatus::EnabledUntilEarliestAllowedEnd
    );
    clock.advance(25 * 3600 * 1000);
    let later = client.describe_account_settings().send().await.unwrap();
    assert_eq!(
        later.minimum_throughput_billing_commitment.unwrap().status,
        MinimumThroughputBillingCommitmentOutputStatus::Disabled
    );
    server.stop().await;
}
