//! `DryRun` on the data-plane actions, through the Rust SDK: a request that would succeed
//! answers `DryRunOperationException` and reads or writes nothing; one that would fail answers
//! the action's own error; dry runs of a stream are limited to 1 per second (burst 5) with
//! `ThrottlingException`. Source: AWS Kinesis developer guide, "Test your permissions and
//! request inputs with dry run".

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};

use crate::support::{first_shard_iterator, TestServer};

fn code<T, E: ProvideErrorMetadata>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => "answered".into(),
        Err(e) => e.code().unwrap_or("no code").to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_check_the_request_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let k = server.client();
    k.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
    k.put_record().stream_name("s").partition_key("p").data(Blob::new("kept")).send().await.unwrap();
    let it = first_shard_iterator(&k, "s").await;
    let entry = PutRecordsRequestEntry::builder().partition_key("p").data(Blob::new("dry")).build().unwrap();
    let shard = "shardId-000000000000";

    // Requests that would fail answer as they would without DryRun (no dry run counted).
    let missing = k.put_records().stream_name("missing").records(entry.clone()).dry_run(true).send().await;
    assert_eq!(code(missing), "ResourceNotFoundException");
    let big = Blob::new(vec![0u8; (1 << 20) + 1]);
    let too_large = k.put_record().stream_name("s").partition_key("p").data(big).dry_run(true).send().await;
    assert_eq!(code(too_large), "ValidationException");
    let no_shard = k
        .get_shard_iterator()
        .stream_name("s")
        .shard_id("shardId-000000000009")
        .shard_iterator_type(ShardIteratorType::Latest)
        .dry_run(true)
        .send()
        .await;
    assert_eq!(code(no_shard), "ResourceNotFoundException");
    let bad_iterator = k.get_records().shard_iterator("not-an-iterator").dry_run(true).send().await;
    assert_eq!(code(bad_iterator), "InvalidArgumentException");

    // Requests that would succeed: DryRunOperationException, with AWS's status.
    let put = k.put_record().stream_name("s").partition_key("p").data(Blob::new("dry")).dry_run(true).send().await;
    let e = put.unwrap_err();
    assert_eq!(e.code(), Some("DryRunOperationException"), "{e:?}");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(400));
    let puts = k.put_records().stream_name("s").records(entry.clone()).dry_run(true).send().await;
    assert_eq!(code(puts), "DryRunOperationException");
    let iterator = k
        .get_shard_iterator()
        .stream_name("s")
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .dry_run(true)
        .send()
        .await;
    assert_eq!(code(iterator), "DryRunOperationException");
    let read = k.get_records().shard_iterator(&it).dry_run(true).send().await;
    assert_eq!(code(read), "DryRunOperationException");
    // DryRun false is an ordinary call.
    k.put_record().stream_name("s").partition_key("p").data(Blob::new("real")).dry_run(false).send().await.unwrap();

    // Nothing a dry run was asked to write was written; the dry read took nothing from the
    // iterator either: it still reads from the start.
    let records = k.get_records().shard_iterator(&it).send().await.unwrap().records;
    let data: Vec<&[u8]> = records.iter().map(|r| r.data.as_ref()).collect();
    assert_eq!(data, [b"kept".as_slice(), b"real".as_slice()]);

    // Four dry runs so far: the fifth is the burst's last, the sixth is throttled, and one
    // second later there is room for one more.
    let again = || k.put_records().stream_name("s").records(entry.clone()).dry_run(true).send();
    assert_eq!(code(again().await), "DryRunOperationException");
    let throttled = again().await.unwrap_err();
    assert_eq!(throttled.code(), Some("ThrottlingException"), "{throttled:?}");
    server.clock.advance(1_000);
    assert_eq!(code(again().await), "DryRunOperationException");
    assert_eq!(code(again().await), "ThrottlingException");
    // Ordinary requests are not throttled by dry runs.
    k.put_record().stream_name("s").partition_key("p").data(Blob::new("after")).send().await.unwrap();
    server.stop().await;
}
