//! `DeleteDeliveryStream`: stops the worker (what it buffered is not delivered, as on AWS)
//! and removes the definition, checkpoints and internal stream.

use crate::api::error::ApiError;
use serde::Deserialize;

use super::{internal, respond, Firehose};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    delivery_stream_name: String,
    #[allow(dead_code)]
    allow_force_delete: Option<bool>,
}

pub async fn run(f: &Firehose, r: Request) -> Result<Vec<u8>, ApiError> {
    f.entry(&r.delivery_stream_name)?;
    if !f.delivery_streams.delete(&r.delivery_stream_name).await.map_err(internal)? {
        return Err(f.not_found(&r.delivery_stream_name));
    }
    respond(&serde_json::json!({}))
}
