//! `DeleteStream`: removes a stream and all its records.

use serde::Deserialize;

use super::{no_output, ApiError, Kinesis, StreamTarget};

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
    k.delete(stream)?;
    no_output()
}
