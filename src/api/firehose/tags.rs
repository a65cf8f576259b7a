//! `TagDeliveryStream`, `UntagDeliveryStream`, `ListTagsForDeliveryStream`.

use crate::api::error::{ApiError, ErrorKind};
use serde::{Deserialize, Serialize};

use super::{internal, respond, Firehose};

/// Most tags on a delivery stream and in one call: 50. Source: Firehose API reference.
pub const TAGS_MAX: usize = 50;

/// `Tag`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Checks tags to add to a stream that has `existing` tags.
pub fn check_tags(tags: &[Tag], existing: usize) -> Result<(), ApiError> {
    if tags.len() > TAGS_MAX {
        return Err(ApiError::validation("[...]", "tags", "have length less than or equal to 50"));
    }
    for (i, t) in tags.iter().enumerate() {
        let n = t.key.chars().count();
        if n == 0 || n > 128 {
            return Err(ApiError::validation(
                &t.key,
                &format!("tags.{}.member.key", i + 1),
                "have length between 1 and 128",
            ));
        }
        if t.key.starts_with("aws:") {
            return Err(ApiError::new(ErrorKind::InvalidArgument, "Tag keys must not start with 'aws:'."));
        }
        if t.value.as_ref().is_some_and(|v| v.chars().count() > 256) {
            return Err(ApiError::validation(
                "...",
                &format!("tags.{}.member.value", i + 1),
                "have length less than or equal to 256",
            ));
        }
    }
    if existing + tags.len() > TAGS_MAX && existing == 0 {
        return Err(ApiError::new(ErrorKind::LimitExceeded, "A delivery stream can have at most 50 tags."));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagRequest {
    delivery_stream_name: String,
    tags: Vec<Tag>,
}

pub fn run_tag(f: &Firehose, r: TagRequest) -> Result<Vec<u8>, ApiError> {
    let entry = f.entry(&r.delivery_stream_name)?;
    if r.tags.is_empty() {
        return Err(ApiError::validation("[]", "tags", "have length greater than or equal to 1"));
    }
    check_tags(&r.tags, 0)?;
    let mut merged = entry.spec().tags;
    for t in &r.tags {
        merged.insert(t.key.clone(), t.value.clone().unwrap_or_default());
    }
    if merged.len() > TAGS_MAX {
        return Err(ApiError::new(ErrorKind::LimitExceeded, "A delivery stream can have at most 50 tags."));
    }
    entry.update(|s| s.tags = merged).map_err(internal)?;
    respond(&serde_json::json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UntagRequest {
    delivery_stream_name: String,
    tag_keys: Vec<String>,
}

pub fn run_untag(f: &Firehose, r: UntagRequest) -> Result<Vec<u8>, ApiError> {
    let entry = f.entry(&r.delivery_stream_name)?;
    if r.tag_keys.is_empty() || r.tag_keys.len() > TAGS_MAX {
        return Err(ApiError::validation("[...]", "tagKeys", "have length between 1 and 50"));
    }
    entry.update(|s| s.tags.retain(|k, _| !r.tag_keys.contains(k))).map_err(internal)?;
    respond(&serde_json::json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    delivery_stream_name: String,
    exclusive_start_tag_key: Option<String>,
    limit: Option<i64>,
}

pub fn run_list(f: &Firehose, r: ListRequest) -> Result<Vec<u8>, ApiError> {
    let entry = f.entry(&r.delivery_stream_name)?;
    let limit = match r.limit {
        None => TAGS_MAX,
        Some(l) if (1..=TAGS_MAX as i64).contains(&l) => l as usize,
        Some(l) => return Err(ApiError::validation(l, "limit", "have value between 1 and 50")),
    };
    let tags: Vec<Tag> = entry
        .spec()
        .tags
        .into_iter()
        .filter(|(k, _)| r.exclusive_start_tag_key.as_ref().is_none_or(|s| k > s))
        .map(|(key, value)| Tag { key, value: Some(value) })
        .collect();
    let has_more = tags.len() > limit;
    let tags: Vec<Tag> = tags.into_iter().take(limit).collect();
    respond(&serde_json::json!({ "Tags": tags, "HasMoreTags": has_more }))
}
