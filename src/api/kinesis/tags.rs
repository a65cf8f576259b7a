//! `AddTagsToStream`, `RemoveTagsFromStream`, `ListTagsForStream`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{no_output, page_limit, respond, ApiError, ErrorKind, Kinesis, StreamTarget};

/// Most tags per stream: 50. Source: AWS Kinesis API reference, `AddTagsToStream`.
pub const TAGS_PER_STREAM_MAX: usize = 50;
/// Most tags added or removed per call: 10 (AWS: `AddTagsToStream`, `RemoveTagsFromStream`).
pub const TAGS_PER_CALL_MAX: usize = 10;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddRequest {
    #[serde(flatten)]
    target: StreamTarget,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RemoveRequest {
    #[serde(flatten)]
    target: StreamTarget,
    tag_keys: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    #[serde(flatten)]
    target: StreamTarget,
    exclusive_start_tag_key: Option<String>,
    limit: Option<i64>,
}

fn check_count(n: usize, member: &str) -> Result<(), ApiError> {
    if n == 0 {
        return Err(ApiError::validation("{}", member, "have length greater than or equal to 1"));
    }
    if n > TAGS_PER_CALL_MAX {
        return Err(ApiError::validation(format!("[{n} entries]"), member, "have length less than or equal to 10"));
    }
    Ok(())
}

pub fn run_add(k: &Kinesis, r: AddRequest) -> Result<Vec<u8>, ApiError> {
    check_count(r.tags.len(), "tags")?;
    for (key, value) in &r.tags {
        if key.is_empty() || key.chars().count() > 128 {
            return Err(ApiError::validation(key, "tags.key", "have length between 1 and 128"));
        }
        if value.chars().count() > 256 {
            return Err(ApiError::validation(value, "tags.value", "have length less than or equal to 256"));
        }
    }
    let stream = k.stream_for_change(&r.target)?;
    stream.update_meta(|meta| {
        let mut tags = meta.tags.clone();
        tags.extend(r.tags);
        if tags.len() > TAGS_PER_STREAM_MAX {
            return Err(ApiError::new(
                ErrorKind::LimitExceeded,
                format!("Failed to add tags to stream {} under account {} because a given stream cannot have more than {TAGS_PER_STREAM_MAX} tags.", meta.name, k.config.account_id),
            ));
        }
        meta.tags = tags;
        Ok(())
    })?;
    no_output()
}

pub fn run_remove(k: &Kinesis, r: RemoveRequest) -> Result<Vec<u8>, ApiError> {
    check_count(r.tag_keys.len(), "tagKeys")?;
    let stream = k.stream_for_change(&r.target)?;
    stream.update_meta(|meta| {
        for key in &r.tag_keys {
            meta.tags.remove(key);
        }
        Ok::<_, ApiError>(())
    })?;
    no_output()
}

pub fn run_list(k: &Kinesis, r: ListRequest) -> Result<Vec<u8>, ApiError> {
    let limit = page_limit(r.limit, "limit", 50, TAGS_PER_STREAM_MAX)?;
    let stream = k.stream(&r.target)?;
    let meta = stream.meta();
    let after: Vec<_> =
        meta.tags.iter().filter(|(key, _)| r.exclusive_start_tag_key.as_ref().is_none_or(|s| *key > s)).collect();
    let tags: Vec<_> =
        after.iter().take(limit).map(|(key, value)| serde_json::json!({ "Key": key, "Value": value })).collect();
    respond(&serde_json::json!({ "Tags": tags, "HasMoreTags": after.len() > limit }))
}
