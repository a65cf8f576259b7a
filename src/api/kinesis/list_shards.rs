//! `ListShards`: the shards of a stream, filtered and paged.

use base64::Engine as _;
use serde::Deserialize;

use super::describe_stream::shard_shape;
use super::{page_limit, respond, ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::stream::{parse_shard_id, ShardMeta};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    next_token: Option<String>,
    exclusive_start_shard_id: Option<String>,
    max_results: Option<i64>,
    shard_filter: Option<ShardFilter>,
    /// Epoch seconds: which incarnation of a stream name (not with `NextToken`).
    stream_creation_timestamp: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ShardFilter {
    r#type: String,
    shard_id: Option<String>,
    /// Epoch seconds, for `AT_TIMESTAMP` and `FROM_TIMESTAMP`.
    timestamp: Option<f64>,
}

/// Which shards a `ShardFilter` type keeps, by the times they were open. Source: AWS Kinesis
/// API reference, `ShardFilter`.
#[derive(Debug, Clone, Copy)]
enum Window {
    /// Shards open at this time (ms): created at or before it, closed at or after it, or
    /// open (`AT_TRIM_HORIZON`, `AT_TIMESTAMP`).
    At(u64),
    /// Shards open now or closed at or after this time (ms) (`FROM_TRIM_HORIZON`, the
    /// default "trim to tip", and `FROM_TIMESTAMP`, which is never before the trim horizon).
    From(u64),
    /// Shards open now (`AT_LATEST`).
    Latest,
}

impl Window {
    /// Whether shard `s` of a stream created at `stream_created_ms` is kept. A shard closed
    /// before shards kept their times has no close time and counts as closed at the end of
    /// time: it is kept rather than hidden.
    fn keeps(self, s: &ShardMeta, stream_created_ms: u64) -> bool {
        let closed_ms = if s.closed { s.closed_ms.unwrap_or(u64::MAX) } else { u64::MAX };
        match self {
            Self::At(t) => s.created_ms.unwrap_or(stream_created_ms) <= t && closed_ms >= t,
            Self::From(t) => closed_ms >= t,
            Self::Latest => !s.closed,
        }
    }
}

/// How long a `ListShards` NextToken stays valid, ms: 300 s. Source: AWS Kinesis API reference.
const NEXT_TOKEN_LIFETIME_MS: u64 = 300_000;

/// A NextToken: the page's stream, its last shard index, when it was issued (ms) and the
/// filter's window, so later pages keep the first page's filter.
fn token(stream: &str, after: u32, issued_ms: u64, window: Window) -> String {
    let window = match window {
        Window::At(t) => format!("A{t}"),
        Window::From(t) => format!("F{t}"),
        Window::Latest => "L".to_owned(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{after}/{issued_ms}/{window}/{stream}"))
}

/// (stream, last shard index listed, issue time ms, window).
fn read_token(t: &str) -> Option<(String, u32, u64, Window)> {
    let s = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).ok()?).ok()?;
    let mut parts = s.splitn(4, '/');
    let after = parts.next()?.parse().ok()?;
    let issued = parts.next()?.parse().ok()?;
    let window = parts.next()?;
    let window = match window.split_at_checked(1)? {
        ("A", t) => Window::At(t.parse().ok()?),
        ("F", t) => Window::From(t.parse().ok()?),
        ("L", "") => Window::Latest,
        _ => return None,
    };
    Some((parts.next()?.to_owned(), after, issued, window))
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    let limit = page_limit(r.max_results, "maxResults", 10_000, 1000)?;
    let (stream, mut after, paged) = match &r.next_token {
        Some(t) => {
            if r.target.stream_name.is_some() || r.target.stream_arn.is_some() {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "NextToken and StreamName cannot be provided together.",
                ));
            }
            if r.stream_creation_timestamp.is_some() {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    "NextToken and StreamCreationTimestamp cannot be provided together.",
                ));
            }
            let (name, after, issued, window) =
                read_token(t).ok_or_else(|| ApiError::new(ErrorKind::InvalidArgument, "Invalid NextToken."))?;
            if k.clock.now_ms().saturating_sub(issued) > NEXT_TOKEN_LIFETIME_MS {
                return Err(ApiError::new(
                    ErrorKind::ExpiredNextToken,
                    "The timestamp of the last ListShard call was older than 5 minutes.",
                ));
            }
            // A token names a stream as it is (not signed): one no request could name is
            // not found either.
            let stream = k.streams.get(&name).filter(|_| !super::direct_put::behind_delivery_stream(&name));
            (stream.ok_or_else(|| k.not_found(&name))?, Some(after), Some(window))
        }
        None => (
            k.of_incarnation(k.stream(&r.target)?, r.stream_creation_timestamp)?,
            r.exclusive_start_shard_id.as_deref().and_then(parse_shard_id),
            None,
        ),
    };
    let meta = stream.meta().clone();
    // The trim horizon: records (and shards closed) before it have expired.
    let trim_ms = k.clock.now_ms().saturating_sub(u64::from(meta.retention_hours) * 3_600_000).max(meta.created_ms);
    let mut window = paged.unwrap_or(Window::From(trim_ms));
    if let Some(f) = &r.shard_filter {
        let timestamp = || {
            f.timestamp.map(|t| (t.max(0.0) * 1000.0) as u64).ok_or_else(|| {
                ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!("Timestamp must be provided with the {} filter type.", f.r#type),
                )
            })
        };
        match f.r#type.as_str() {
            "AFTER_SHARD_ID" => {
                let id = f.shard_id.as_deref().ok_or_else(|| {
                    ApiError::new(ErrorKind::InvalidArgument, "ShardId must be provided with the AFTER_SHARD_ID filter type.")
                })?;
                after = parse_shard_id(id).max(after);
            }
            "AT_LATEST" => window = Window::Latest,
            "AT_TRIM_HORIZON" => window = Window::At(trim_ms),
            "FROM_TRIM_HORIZON" => {}
            "AT_TIMESTAMP" => window = Window::At(timestamp()?),
            "FROM_TIMESTAMP" => window = Window::From(timestamp()?.max(trim_ms)),
            other => {
                return Err(ApiError::validation(
                    other,
                    "shardFilter.type",
                    "satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
                ))
            }
        }
    }
    let matching: Vec<_> =
        meta.shards.iter().filter(|s| after.is_none_or(|a| s.index > a) && window.keeps(s, meta.created_ms)).collect();
    let page: Vec<_> = matching.iter().take(limit).map(|s| shard_shape(&stream, s)).collect();
    let mut body = serde_json::json!({ "Shards": page });
    if matching.len() > limit {
        body["NextToken"] = token(&meta.name, matching[limit - 1].index, k.clock.now_ms(), window).into();
    }
    respond(&body)
}
