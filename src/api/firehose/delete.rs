//! `DeleteDeliveryStream`: stops the worker (what it buffered is not delivered, as on AWS)
//! and removes the definition, checkpoints and internal stream; DescribeDeliveryStream
//! shows it DELETING for `status_transition_ms`, then not found.

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
    let name = r.delivery_stream_name;
    // Deleting one already DELETING is allowed (AWS Firehose API reference,
    // DeleteDeliveryStream: "ACTIVE, DELETING, CREATING_FAILED, or DELETING_FAILED").
    if f.deleting(&name).is_some() {
        return respond(&serde_json::json!({}));
    }
    // Shown as DELETING for a while, as AWS does, then gone.
    let description = super::describe::description(
        f,
        super::describe::Request {
            delivery_stream_name: name.clone(),
            limit: None,
            exclusive_start_destination_id: None,
        },
    )?;
    let of_cluster = f.delivery_streams.get(&name).is_some_and(|e| e.spec().cluster.is_some());
    let deleted = match f.cluster.get().filter(|_| of_cluster) {
        Some(link) => f.delete_in_cluster(link, &name).await?,
        None => f.delivery_streams.delete(&name).await.map_err(internal)?,
    };
    if !deleted {
        return Err(f.not_found(&name));
    }
    f.begin_deleting(&name, description);
    respond(&serde_json::json!({}))
}
