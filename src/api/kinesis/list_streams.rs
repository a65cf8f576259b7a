//! `ListStreams`: stream names in order, paged by `ExclusiveStartStreamName` or `NextToken`.

use base64::Engine as _;
use serde::Deserialize;

use super::{epoch_seconds, page_limit, respond, ApiError, ErrorKind, Kinesis};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    limit: Option<i64>,
    exclusive_start_stream_name: Option<String>,
    next_token: Option<String>,
}

pub fn run(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    let limit = page_limit(r.limit, "limit", 10_000, 100)?;
    let after = match (&r.next_token, r.exclusive_start_stream_name) {
        (Some(token), _) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::new(ErrorKind::InvalidArgument, "Invalid NextToken."))?,
        ),
        (None, name) => name,
    };
    let streams: Vec<_> = k
        .streams
        .list()
        .into_iter()
        .filter(|s| !super::direct_put::behind_delivery_stream(&s.meta().name))
        .filter(|s| after.as_ref().is_none_or(|a| s.meta().name > *a))
        .collect();
    let page = &streams[..streams.len().min(limit)];
    let names: Vec<String> = page.iter().map(|s| s.meta().name.clone()).collect();
    let summaries: Vec<_> = page
        .iter()
        .map(|s| {
            let m = s.meta();
            serde_json::json!({
                "StreamName": m.name,
                "StreamARN": k.stream_arn(&m.name),
                "StreamStatus": s.status(k.clock.now_ms()).as_str(),
                "StreamModeDetails": { "StreamMode": super::stream_settings::mode_name(m.settings.mode) },
                "StreamCreationTimestamp": epoch_seconds(m.created_ms),
            })
        })
        .collect();
    let has_more = streams.len() > limit;
    let mut body =
        serde_json::json!({ "StreamNames": names, "HasMoreStreams": has_more, "StreamSummaries": summaries });
    if has_more {
        let last = names.last().expect("a full page");
        body["NextToken"] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last).into();
    }
    respond(&body)
}
