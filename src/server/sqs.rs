//! SQS requests on the server's port, signed for service `sqs`: `POST /` with `X-Amz-Target:
//! AmazonSQS.<Action>` (AWS JSON 1.0; errors with the `x-amzn-query-error` header SQS's
//! clients read their error codes from), or a form with `Action=` (the query protocol of
//! older SDKs, posted to `/` or to the queue's URL; XML answers). Both are answered by
//! [`crate::api::sqs::Sqs`].

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{read_body, signing_headers, AppState};
use crate::api::query::Params;
use crate::api::sqs::{ReceiveRequest, SqsAnswer, SqsError, TARGET_PREFIX};
use crate::config::Auth;
use crate::sigv4;

/// The SQS operation a request's `X-Amz-Target` names, if it names SQS at all.
pub(super) fn operation_of<B>(req: &Request<B>) -> Option<String> {
    let target = req.headers().get("x-amz-target")?.to_str().ok()?;
    let (prefix, name) = target.split_once('.')?;
    (prefix == TARGET_PREFIX).then(|| name.to_owned())
}

/// Whether a request without `X-Amz-Target` is an SQS query-protocol request: signed for
/// `sqs` (in the `Authorization` header or presigned).
pub(super) fn is_query<B>(req: &Request<B>) -> bool {
    let auth = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let query = req.uri().query().unwrap_or("");
    auth.contains("/sqs/aws4_request") || query.contains("%2Fsqs%2Faws4_request")
}

/// Which protocol a request speaks: JSON naming its operation, or the query protocol.
pub(super) enum Protocol {
    /// AWS JSON 1.0, for the operation its `X-Amz-Target` names.
    Json(String),
    /// The query protocol (the operation is the form's `Action`).
    Query,
}

/// Answers an SQS request.
pub(super) async fn request(
    state: Arc<AppState>,
    req: Request<Incoming>,
    protocol: Protocol,
    request_id: &str,
) -> Response<Full<Bytes>> {
    let query = matches!(protocol, Protocol::Query);
    let answered = answer(state, req, protocol, request_id).await;
    let (status, body, query_error) = match answered {
        Ok(body) => (200, body, None),
        Err(e) if query => (e.status, crate::api::sqs::query::error(&e, request_id).into_bytes(), None),
        Err(e) => (e.status, e.body(), Some(e.query_error())),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let h = r.headers_mut();
    let content_type = if query { "text/xml" } else { "application/x-amz-json-1.0" };
    h.insert("content-type", HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(v) = query_error.and_then(|q| HeaderValue::from_str(&q).ok()) {
        h.insert("x-amzn-query-error", v);
    }
    r
}

async fn answer(
    state: Arc<AppState>,
    req: Request<Incoming>,
    protocol: Protocol,
    request_id: &str,
) -> Result<Vec<u8>, SqsError> {
    let query = matches!(protocol, Protocol::Query);
    let (parts, body) = req.into_parts();
    let headers = signing_headers(&parts);
    let scope = sigv4::Scope { region: &state.kinesis.config.region, service: "sqs" };
    // Credentials are checked before the body is read, as for every other API.
    let checked = match state.auth {
        Auth::Sigv4 => Some(
            sigv4::check_headers(
                &state.access_keys,
                &headers,
                parts.uri.query().unwrap_or(""),
                scope,
                SystemTime::now(),
            )
            .map_err(|e| SqsError::from_api(&e))?,
        ),
        Auth::None => None,
    };
    let body = read_body(&state, &parts.headers, body).await.map_err(|e| SqsError::from_api(&e))?;
    let sender =
        checked.as_ref().map_or_else(|| state.kinesis.config.account_id.clone(), |c| c.access_key_id().to_owned());
    if let Some(checked) = checked {
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        checked.verify_body(parts.method.as_str(), uri, &body.bytes).map_err(|e| SqsError::from_api(&e))?;
    }
    let host = super::host_of(&parts);
    let (operation, json) = match protocol {
        Protocol::Json(operation) => (operation, body.bytes.to_vec()),
        Protocol::Query => {
            let mut params = Params::parse(parts.uri.query().unwrap_or(""));
            params.extend(Params::parse(&String::from_utf8_lossy(&body.bytes)));
            // Older SDKs post to the queue's URL and leave QueueUrl out of the form.
            if params.get("QueueUrl").is_none() && parts.uri.path() != "/" {
                params.insert("QueueUrl", format!("http://{host}{}", parts.uri.path()));
            }
            let operation = params
                .get("Action")
                .ok_or_else(|| SqsError::new("MissingParameter", "The request must contain the parameter Action."))?
                .to_owned();
            let input = crate::api::sqs::query::input(&operation, &params)?;
            (operation, serde_json::to_vec(&input).map_err(|e| SqsError::internal(e.to_string()))?)
        }
    };
    drop(body);
    let worker = state.clone();
    let (op, h) = (operation.clone(), host.clone());
    let answered = tokio::task::spawn_blocking(move || worker.kinesis.sqs.handle(&op, &json, &h, &sender))
        .await
        .map_err(|e| SqsError::internal(e.to_string()))??;
    let body = match answered {
        SqsAnswer::Body(body) => body,
        SqsAnswer::Wait(request, deadline) => long_poll(state, *request, deadline).await?,
    };
    if !query {
        return Ok(body);
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| SqsError::internal(e.to_string()))?;
    Ok(crate::api::sqs::query::output(&operation, &value, request_id).into_bytes())
}

/// Waits for messages of a receive's queue: looks again whenever messages are sent or made
/// visible, and when the next message in flight becomes visible, until one is there or the
/// wait ends; answers what it found (`{}` at the end of the wait, as SQS does).
async fn long_poll(
    state: Arc<AppState>,
    request: ReceiveRequest,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, SqsError> {
    // The queue's own signal: sends to other queues do not wake this receive.
    let Some(mut signal) = state.kinesis.sqs.watch_queue(&request) else {
        return Ok(b"{}".to_vec());
    };
    let request = Arc::new(request);
    loop {
        signal.borrow_and_update();
        let (worker, r) = (state.clone(), request.clone());
        let body = tokio::task::spawn_blocking(move || worker.kinesis.sqs.receive_now(&r))
            .await
            .map_err(|e| SqsError::internal(e.to_string()))??;
        let now = tokio::time::Instant::now();
        if body != b"{}" || now >= deadline || *state.closing.borrow() {
            return Ok(body);
        }
        let clock_now = state.kinesis.sqs.now_ms();
        let wake = state
            .kinesis
            .sqs
            .next_visible_ms(&request)
            .map_or(deadline, |at| now + std::time::Duration::from_millis(at.saturating_sub(clock_now)))
            .min(deadline);
        let mut closing = state.closing.subscribe();
        tokio::select! {
            _ = signal.changed() => {}
            () = tokio::time::sleep_until(wake) => {}
            _ = closing.changed() => {}
        }
    }
}
