//! `ListShards`: the shards of a stream, filtered and paged.

use base64::Engine as _;
use serde::Deserialize;

use super::describe_stream::shard_shape;
use super::{page_limit, respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::stream::parse_shard_id;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    next_token: Option<String>,
    exclusive_start_shard_id: Option<String>,
    max_results: Option<i64>,
    shard_filter: Option<ShardFilter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ShardFilter {
    r#type: String,
    shard_id: Option<String>,
}

/// How long a `ListShards` NextToken stays valid, ms: 300 s. Source: AWS Kinesis API reference.
const NEXT_TOKEN_LIFETIME_MS: u64 = 300_000;

fn token(stream: &str, after: u32, issued_ms: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{after}/{issued_ms}/{stream}"))
}

/// (stream, last shard index listed, issue time ms).
fn read_token(t: &str) -> Option<(String, u32, u64)> {
    let s = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).ok()?).ok()?;
    let mut parts = s.splitn(3, '/');
    let after = parts.next()?.parse().ok()?;
    let issued = parts.next()?.parse().ok()?;
    Some((parts.next()?.to_owned(), after, issued))
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    let limit = page_limit(r.max_results, "maxResults", 10_000, 1000)?;
    let (stream, mut after) = match &r.next_token {
        Some(t) => {
            if r.target.stream_name.is_some() || r.target.stream_arn.is_some() {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "NextToken and StreamName cannot be provided together.",
                ));
            }
            let (name, after, issued) =
                read_token(t).ok_or_else(|| ApiError::new(ErrorKind::InvalidArgument, "Invalid NextToken."))?;
            if k.clock.now_ms().saturating_sub(issued) > NEXT_TOKEN_LIFETIME_MS {
                return Err(ApiError::new(
                    ErrorKind::ExpiredNextToken,
                    "The timestamp of the last ListShard call was older than 5 minutes.",
                ));
            }
            (k.streams.get(&name).ok_or_else(|| k.not_found(&name))?, Some(after))
        }
        None => (k.stream(&r.target)?, r.exclusive_start_shard_id.as_deref().and_then(parse_shard_id)),
    };
    let mut open_only = false;
    if let Some(f) = &r.shard_filter {
        match f.r#type.as_str() {
            "AFTER_SHARD_ID" => {
                let id = f.shard_id.as_deref().ok_or_else(|| {
                    ApiError::new(ErrorKind::InvalidArgument, "ShardId must be provided with the AFTER_SHARD_ID filter type.")
                })?;
                after = parse_shard_id(id).max(after);
            }
            "AT_LATEST" => open_only = true,
            "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" | "AT_TIMESTAMP" | "FROM_TIMESTAMP" => {}
            other => {
                return Err(ApiError::validation(
                    other,
                    "shardFilter.type",
                    "satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
                ))
            }
        }
    }
    let meta = stream.meta().clone();
    let matching: Vec<_> =
        meta.shards.iter().filter(|s| after.is_none_or(|a| s.index > a) && !(open_only && s.closed)).collect();
    let page: Vec<_> = matching.iter().take(limit).map(|s| shard_shape(&stream, s)).collect();
    let mut body = serde_json::json!({ "Shards": page });
    if matching.len() > limit {
        body["NextToken"] = token(&meta.name, matching[limit - 1].index, k.clock.now_ms()).into();
    }
    respond(&body)
}
