//! Streams pass through CREATING, UPDATING and DELETING, as on AWS: records are refused while
//! a stream is created or deleted, changes wait while it reshards.

use std::sync::Arc;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_kinesis::Client;
use sluice_engine::ManualClock;

use crate::support::TestServer;

const NOT_FOUND: &str = "ResourceNotFoundException";

async fn status(client: &Client) -> Result<StreamStatus, String> {
    client
        .describe_stream_summary()
        .stream_name("s")
        .send()
        .await
        .map(|o| o.stream_description_summary.unwrap().stream_status)
        .map_err(|e| e.code().unwrap_or_default().to_owned())
}

async fn put(client: &Client) -> Result<(), String> {
    client
        .put_record()
        .stream_name("s")
        .partition_key("k")
        .data(Blob::new("x"))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| e.code().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pass_through_creating_updating_and_deleting() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let server =
        TestServer::start_with(dir.path(), Arc::new(ManualClock::new(now)), |c| c.stream_transition_ms = 1_000).await;
    let client = server.client();

    client.create_stream().stream_name("s").shard_count(1).send().await.unwrap();
    assert_eq!(status(&client).await, Ok(StreamStatus::Creating));
    assert_eq!(put(&client).await, Err(NOT_FOUND.to_owned()));
    server.clock.advance(1_000);
    assert_eq!(status(&client).await, Ok(StreamStatus::Active));
    put(&client).await.unwrap();

    client
        .update_shard_count()
        .stream_name("s")
        .target_shard_count(2)
        .scaling_type("UNIFORM_SCALING".into())
        .send()
        .await
        .unwrap();
    assert_eq!(status(&client).await, Ok(StreamStatus::Updating));
    put(&client).await.unwrap();
    let err = client
        .update_shard_count()
        .stream_name("s")
        .target_shard_count(1)
        .scaling_type("UNIFORM_SCALING".into())
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ResourceInUseException"));
    assert_eq!(err.message(), Some("Stream s under account 000000000000 not ACTIVE, instead in state UPDATING"));
    server.clock.advance(1_000);
    assert_eq!(status(&client).await, Ok(StreamStatus::Active));

    client.delete_stream().stream_name("s").send().await.unwrap();
    assert_eq!(status(&client).await, Ok(StreamStatus::Deleting));
    assert_eq!(put(&client).await, Err(NOT_FOUND.to_owned()));
    let err = client.create_stream().stream_name("s").shard_count(1).send().await.unwrap_err();
    assert_eq!(err.code(), Some("ResourceInUseException"));
    server.clock.advance(1_000);
    assert_eq!(status(&client).await, Err(NOT_FOUND.to_owned()));
    server.stop().await;
}
