//! The web console at `/console`: static pages embedded in the binary, a sign-in with an access
//! key pair, and a small JSON API under `/console/api/` for the pages.
//!
//! - `POST /console/api/session` takes `{"accessKeyId", "secretAccessKey"}`; a pair the server
//!   accepts (any pair under `auth = "none"`, as the API itself) opens a session: a random
//!   token in an `HttpOnly`, `SameSite=Strict` cookie, valid [`SESSION_LIFETIME`]. Nothing
//!   under `/console/api/` but the sign-in answers without one.
//! - Every other API call must also carry `x-sluice-console: 1`: a page of another origin
//!   cannot send that header without a CORS preflight this server never grants, so the cookie
//!   alone cannot be used against it.
//! - `POST /console/api/call/{kinesis|firehose|reprocessing}/<Operation>` runs an operation with a JSON
//!   body through the same model checks, resource policies (the signed-in key is the caller)
//!   and actions as an SDK's request, and answers as the API does.
//! - `GET /console/api/shard-stats?stream=`, `delivery-stats?name=`, `lake?name=&what=objects|errors`:
//!   what the API has no operation for (per-shard counters, delivery metrics, the lake's objects
//!   and the last failed records).
//!
//! Nothing here runs unless a page asks: with the console closed it costs ingest nothing.

mod assets;
mod history;
mod lake_view;
mod sessions;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::api::firehose::Action as FirehoseAction;
use crate::api::kinesis::Action;
use crate::api::{self, ApiError, Codec, ErrorKind};
use crate::config::Auth;
use crate::server::AppState;
pub use history::History;
pub use sessions::{Sessions, SESSION_LIFETIME};

/// What the console keeps: its sessions, and the shards' recent counters while it is used.
#[derive(Debug)]
pub struct Console {
    /// Signed-in sessions.
    pub sessions: Sessions,
    /// The last minutes of every shard's counters (sampled only while the console is used).
    pub history: History,
    /// Lake views running at once at most: 2 (each lists up to 100,000 objects and reads up
    /// to 5 error objects of 8 MiB); more wait.
    lake_views: tokio::sync::Semaphore,
}

impl Default for Console {
    fn default() -> Self {
        Self { sessions: Sessions::default(), history: History::default(), lake_views: tokio::sync::Semaphore::new(2) }
    }
}

/// The path every console page and call is under.
pub const CONSOLE_PATH: &str = "/console";

/// A sign-in body is this many bytes at most: 4 KiB.
const SIGN_IN_BYTES_MAX: usize = 4096;

/// The cookie holding a session's token.
const COOKIE: &str = "sluice_console";

/// Whether `path` is the console's.
pub fn is_console(path: &str) -> bool {
    path == CONSOLE_PATH || path.starts_with("/console/")
}

/// Answers a request under [`CONSOLE_PATH`].
pub async fn respond(state: Arc<AppState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let get = req.method() == http::Method::GET;
    if let (true, Some(asset)) = (get, assets::named(&path)) {
        return asset.response();
    }
    if get && path == CONSOLE_PATH {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
        r.headers_mut().insert(http::header::LOCATION, HeaderValue::from_static("/console/"));
        return r;
    }
    let Some(call) = path.strip_prefix("/console/api/") else { return plain(StatusCode::NOT_FOUND, "not found") };
    let call = call.to_owned();
    // Sign-in too: a cross-site form could otherwise sign a victim in as someone else.
    if req.headers().get("x-sluice-console").and_then(|v| v.to_str().ok()) != Some("1") {
        return plain(StatusCode::FORBIDDEN, "console calls carry x-sluice-console: 1");
    }
    if call == "session" && req.method() == http::Method::POST {
        return sign_in(&state, req).await;
    }
    let Some(session) = state.console.sessions.session_of(req.headers()) else {
        return plain(StatusCode::UNAUTHORIZED, "sign in first");
    };
    state.console.history.touch(&state);
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method().clone(), call.as_str()) {
        (http::Method::POST, "signout") => {
            state.console.sessions.end(req.headers());
            let mut r = plain(StatusCode::OK, "signed out");
            r.headers_mut().insert(
                http::header::SET_COOKIE,
                HeaderValue::from_static("sluice_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
            );
            r
        }
        (http::Method::GET, "whoami") => json(StatusCode::OK, &serde_json::json!({"accessKeyId": session})),
        (http::Method::POST, c) if c.starts_with("call/") => {
            let (service, operation) = c["call/".len()..].split_once('/').unwrap_or(("", ""));
            let (service, operation) = (service.to_owned(), operation.to_owned());
            let body = match crate::server::read_body(&state, &req.headers().clone(), req.into_body()).await {
                Ok(b) => b,
                Err(e) => return api_answer(&state, Err(e)),
            };
            let caller = (state.auth == Auth::Sigv4)
                .then(|| format!("arn:aws:iam::{}:user/{session}", state.kinesis.config.account_id));
            let worker = state.clone();
            let runtime = tokio::runtime::Handle::current();
            let result = tokio::task::spawn_blocking(move || {
                run_operation(&worker, &runtime, &service, &operation, &body.bytes, caller.as_deref())
            })
            .await
            .unwrap_or_else(|e| Err(ApiError::new(ErrorKind::InternalFailure, e.to_string())));
            api_answer(&state, result)
        }
        (http::Method::GET, "shard-stats") => match param(&query, "stream") {
            Some(name) => match lake_view::shard_stats(&state, &name) {
                Some(v) => json(StatusCode::OK, &v),
                None => plain(StatusCode::NOT_FOUND, "no such stream"),
            },
            None => plain(StatusCode::BAD_REQUEST, "stream= is required"),
        },
        (http::Method::GET, "delivery-stats") => match param(&query, "name") {
            Some(name) => match lake_view::delivery_stats(&state, &name) {
                Some(v) => json(StatusCode::OK, &v),
                None => plain(StatusCode::NOT_FOUND, "no such delivery stream"),
            },
            None => plain(StatusCode::BAD_REQUEST, "name= is required"),
        },
        (http::Method::GET, "lake") => {
            let (Some(name), Some(what)) = (param(&query, "name"), param(&query, "what")) else {
                return plain(StatusCode::BAD_REQUEST, "name= and what= are required");
            };
            let Ok(_turn) = state.console.lake_views.acquire().await else {
                return plain(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
            };
            match lake_view::lake(&state, &name, &what).await {
                Ok(v) => json(StatusCode::OK, &v),
                Err((status, message)) => plain(status, &message),
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Runs one API operation for the console, as the server runs an SDK's JSON request.
fn run_operation(
    state: &AppState,
    runtime: &tokio::runtime::Handle,
    service: &str,
    operation: &str,
    body: &[u8],
    caller: Option<&str>,
) -> Result<Bytes, ApiError> {
    let unknown = || ApiError::new(ErrorKind::UnknownOperation, format!("{service}.{operation} is not an operation"));
    match service {
        "kinesis" => {
            let action = Action::from_name(operation).ok_or_else(unknown)?;
            // Streams of events and long polls are for SDK clients, not for a page.
            if matches!(
                action,
                Action::SubscribeToShard | Action::ReceiveQueueRecords | Action::ReceiveDeadLetterQueueRecords
            ) {
                return Err(ApiError::new(
                    ErrorKind::InvalidArgument,
                    format!("{operation} is not served to the console"),
                ));
            }
            let model = api::model::kinesis();
            let request = api::decode_request(Codec::Json, model, operation, body)?;
            if let Some(caller) = caller {
                state.kinesis.check_policy(operation, &request, caller)?;
            }
            if action == Action::GetRecords {
                return state.get_records_held(request, Codec::Json);
            }
            let answer = state.kinesis.handle_value(action, request)?;
            api::encode_response(Codec::Json, model, operation, answer).map(Bytes::from)
        }
        "firehose" => {
            let action = FirehoseAction::from_name(operation).ok_or_else(unknown)?;
            let model = api::model::firehose();
            let request = api::decode_request(Codec::Json, model, operation, body)?;
            let answer = runtime.block_on(state.firehose.handle_value(action, request))?;
            api::encode_response(Codec::Json, model, operation, answer).map(Bytes::from)
        }
        "reprocessing" => {
            if !api::reprocessing::OPERATIONS.contains(&operation) {
                return Err(unknown());
            }
            runtime.block_on(api::reprocessing::handle(&state.firehose, operation, body)).map(Bytes::from)
        }
        _ => Err(unknown()),
    }
}

/// Opens a session for a key pair the server accepts.
async fn sign_in(state: &Arc<AppState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Pair {
        access_key_id: String,
        secret_access_key: String,
    }
    let declared = req.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_none_or(|n| n > SIGN_IN_BYTES_MAX) {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "a sign-in body has a Content-Length of at most 4,096 bytes");
    }
    let body = match crate::server::read_body(state, &req.headers().clone(), req.into_body()).await {
        Ok(b) => b,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e.message),
    };
    let pair = serde_json::from_slice::<Pair>(&body.bytes).ok().filter(|p| {
        // An access key id is 1–128 word characters (AWS IAM API reference, AccessKeyIdType:
        // 16–128; Sluice's configured ids may be shorter); a secret 1–128 bytes here.
        (1..=128).contains(&p.access_key_id.len())
            && p.access_key_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && (1..=128).contains(&p.secret_access_key.len())
    });
    let Some(pair) = pair else {
        return plain(
            StatusCode::BAD_REQUEST,
            "the body is {\"accessKeyId\": 1-128 word characters, \"secretAccessKey\": 1-128 bytes}",
        );
    };
    let accepted = match state.auth {
        Auth::None => true,
        Auth::Sigv4 => state.access_keys.iter().any(|k| {
            k.access_key_id == pair.access_key_id
                && crate::sigv4::constant_time_eq(k.secret_access_key.as_bytes(), pair.secret_access_key.as_bytes())
        }),
    };
    if !accepted {
        tracing::warn!(access_key_id = ?pair.access_key_id, "console sign-in refused");
        return plain(StatusCode::UNAUTHORIZED, "The security token included in the request is invalid.");
    }
    let token = match state.console.sessions.open(&pair.access_key_id) {
        Ok(t) => t,
        Err(e) => return plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot make a session token: {e}")),
    };
    let mut r = json(StatusCode::OK, &serde_json::json!({"accessKeyId": pair.access_key_id}));
    let cookie =
        format!("{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}", SESSION_LIFETIME.as_secs());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(http::header::SET_COOKIE, v);
    }
    r
}

/// One query parameter, decoded as a form value (`+` is a space, then percent escapes).
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| crate::sigv4::uri_decode(&v.replace('+', " ")))
    })
}

fn api_answer(state: &AppState, result: Result<Bytes, ApiError>) -> Response<Full<Bytes>> {
    let mut r = crate::server::answer(&state.next_request_id(), Codec::Json, result);
    no_store(&mut r);
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    no_store(&mut r);
    r
}

fn plain(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(message.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    no_store(&mut r);
    r
}

fn no_store(r: &mut Response<Full<Bytes>>) {
    r.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_percent_decoded() {
        assert_eq!(param("stream=a%2Db&x=1", "stream").as_deref(), Some("a-b"));
        assert_eq!(param("x=1", "stream"), None);
        assert_eq!(param("name=%zz%4", "name").as_deref(), Some("%zz%4"));
        assert_eq!(param("name=%", "name").as_deref(), Some("%"));
        assert_eq!(param("name=%+1", "name").as_deref(), Some("% 1"));
    }
}
