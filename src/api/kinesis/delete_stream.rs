//! `DeleteStream`: removes a stream and all its records.

use serde::Deserialize;

use super::{no_output, ApiError, ErrorKind, Kinesis, StreamTarget};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    #[allow(dead_code)] // Sluice has no enhanced fan-out consumers to delete yet.
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
    k.delete(stream)?;
    no_output()
}
