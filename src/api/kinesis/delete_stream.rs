//! `DeleteStream`: removes a stream and all its records.

use serde::Deserialize;

use super::{no_output, ApiError, ErrorKind, Kinesis, StreamTarget};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    enforce_consumer_deletion: Option<bool>,
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    let stream = k.stream_for_delete(&r.target)?;
    let name = stream.meta().name.clone();
    // AWS: "A stream cannot be deleted while it has active channels."
    if k.has_channel(&name) {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!("Stream {name} under account {} has channels; delete them first.", k.config.account_id),
        ));
    }
    // AWS: without EnforceConsumerDeletion, a stream with registered consumers is refused;
    // with it, they go with the stream (they live in its metadata).
    if r.enforce_consumer_deletion != Some(true) && !stream.meta().settings.consumers.is_empty() {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "DeleteStream can\u{2019}t delete {account}:{name} because there are consumers associated with this data stream. To delete {name} anyway, set the EnforceConsumerDeletion parameter to true to force the deletion of all the consumers that are associated with it.",
                account = k.config.account_id
            ),
        ));
    }
    // AWS: "A stream that has queues cannot be deleted until every queue on it is deleted
    // with DeleteQueue, whatever this parameter is set to."
    if k.queues.count_for_stream(&name) > 0 {
        return Err(ApiError::new(
            ErrorKind::ResourceInUse,
            format!(
                "Stream {name} under account {} has queues; delete them with DeleteQueue first.",
                k.config.account_id
            ),
        ));
    }
    let of_cluster = stream.meta().cluster.is_some();
    match (k.cluster.get(), of_cluster) {
        (Some(link), true) => k.delete_in_cluster(link, stream)?,
        _ => k.delete(stream)?,
    }
    no_output()
}
