//! `DeleteStream`: removes a stream and all its records.

use serde::Deserialize;

use super::{internal, respond, ApiError, Kinesis, StreamTarget};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    #[allow(dead_code)] // Sluice has no enhanced fan-out consumers to delete yet.
    enforce_consumer_deletion: Option<bool>,
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    let stream = k.stream(&r.target)?;
    let name = stream.meta().name.clone();
    drop(stream);
    if !k.streams.delete(&name).map_err(internal)? {
        return Err(k.not_found(&name));
    }
    respond(&serde_json::json!({}))
}
