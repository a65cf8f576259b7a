//! Actions on a resource named by ARN, a stream or a consumer: `TagResource`,
//! `UntagResource`, `ListTagsForResource`, `PutResourcePolicy`, `GetResourcePolicy`,
//! `DeleteResourcePolicy`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::consumers::ConsumerTarget;
use super::tags::TAGS_PER_STREAM_MAX;
use super::{no_output, respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::stream::{Stream, StreamMeta};

/// Most tags on a resource named by ARN: 50, as on a stream. Source: AWS Kinesis API
/// reference, `TagResource`.
const TAGS_PER_RESOURCE_MAX: usize = TAGS_PER_STREAM_MAX;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagRequest {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagRequest {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    tag_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArnRequest {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyRequest {
    #[serde(rename = "ResourceARN")]
    resource_arn: String,
    policy: String,
}

/// A resource an ARN names: a stream, or one of its consumers (by name).
struct Resource {
    stream: Arc<Stream>,
    consumer: Option<String>,
}

impl Resource {
    fn find(k: &Kinesis, arn: &str) -> Result<Self, ApiError> {
        if arn.contains("/consumer/") {
            let target = ConsumerTarget::by_arn(arn);
            let found = k.consumer(&target)?;
            return Ok(Self { stream: found.stream, consumer: Some(found.consumer.name) });
        }
        if !arn.contains(":stream/") {
            return Err(ApiError::new(ErrorKind::ResourceNotFound, format!("Resource {arn} not found.")));
        }
        let stream = k.stream(&StreamTarget { stream_name: None, stream_arn: Some(arn.to_owned()) })?;
        Ok(Self { stream, consumer: None })
    }

    /// Applies `change` to the resource's tags and policy, durably.
    fn update<R>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, String>, &mut Option<String>) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        self.stream.update_meta(|meta| match &self.consumer {
            None => change(&mut meta.tags, &mut meta.settings.policy),
            Some(name) => {
                let c = consumer_mut(meta, name)?;
                change(&mut c.tags, &mut c.policy)
            }
        })
    }

    fn read<R>(&self, read: impl FnOnce(&BTreeMap<String, String>, &Option<String>) -> R) -> Result<R, ApiError> {
        let meta = self.stream.meta();
        match &self.consumer {
            None => Ok(read(&meta.tags, &meta.settings.policy)),
            Some(name) => {
                let c = meta.settings.consumers.iter().find(|c| &c.name == name).ok_or_else(gone)?;
                Ok(read(&c.tags, &c.policy))
            }
        }
    }
}

fn consumer_mut<'a>(
    meta: &'a mut StreamMeta,
    name: &str,
) -> Result<&'a mut sluice_engine::settings::ConsumerMeta, ApiError> {
    meta.settings.consumers.iter_mut().find(|c| c.name == name).ok_or_else(gone)
}

fn gone() -> ApiError {
    ApiError::new(ErrorKind::ResourceNotFound, "The consumer was deregistered.")
}

pub fn run_tag(k: &Kinesis, r: TagRequest) -> Result<Vec<u8>, ApiError> {
    let resource = Resource::find(k, &r.resource_arn)?;
    resource.update(|tags, _| {
        let mut next = tags.clone();
        next.extend(r.tags);
        if next.len() > TAGS_PER_RESOURCE_MAX {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!(
                    "Failed to add tags to resource {} under account {} because a given resource cannot have more than {TAGS_PER_RESOURCE_MAX} tags.",
                    r.resource_arn, k.config.account_id
                ),
            ));
        }
        *tags = next;
        Ok(())
    })?;
    no_output()
}

pub fn run_untag(k: &Kinesis, r: UntagRequest) -> Result<Vec<u8>, ApiError> {
    let resource = Resource::find(k, &r.resource_arn)?;
    resource.update(|tags, _| {
        for key in &r.tag_keys {
            tags.remove(key);
        }
        Ok(())
    })?;
    no_output()
}

pub fn run_list_tags(k: &Kinesis, r: ArnRequest) -> Result<Vec<u8>, ApiError> {
    let resource = Resource::find(k, &r.resource_arn)?;
    let tags = resource.read(|tags, _| {
        tags.iter().map(|(key, value)| serde_json::json!({ "Key": key, "Value": value })).collect::<Vec<_>>()
    })?;
    respond(&serde_json::json!({ "Tags": tags }))
}

/// `PutResourcePolicy`: the document must be a JSON object with a `Statement`; it is stored
/// and enforced for the callers Sluice knows (see [`Kinesis::check_policy`]).
pub fn run_put_policy(k: &Kinesis, r: PolicyRequest) -> Result<Vec<u8>, ApiError> {
    let doc: serde_json::Value = serde_json::from_str(&r.policy)
        .map_err(|_| ApiError::new(ErrorKind::InvalidArgument, "Policy is not valid JSON."))?;
    if !doc.get("Statement").is_some_and(|s| s.is_array() || s.is_object()) {
        return Err(ApiError::new(ErrorKind::InvalidArgument, "Policy must have a Statement."));
    }
    let resource = Resource::find(k, &r.resource_arn)?;
    resource.update(|_, policy| {
        *policy = Some(r.policy);
        Ok(())
    })?;
    no_output()
}

pub fn run_get_policy(k: &Kinesis, r: ArnRequest) -> Result<Vec<u8>, ApiError> {
    let resource = Resource::find(k, &r.resource_arn)?;
    // Without a policy AWS answers an empty document.
    let policy = resource.read(|_, policy| policy.clone().unwrap_or_else(|| "{}".into()))?;
    respond(&serde_json::json!({ "Policy": policy }))
}

pub fn run_delete_policy(k: &Kinesis, r: ArnRequest) -> Result<Vec<u8>, ApiError> {
    let resource = Resource::find(k, &r.resource_arn)?;
    resource.update(|_, policy| match policy.take() {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("No resource policy found for resource ARN {}.", r.resource_arn),
        )),
    })?;
    no_output()
}
