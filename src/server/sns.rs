//! SNS requests on the server's port: the query protocol (`POST /`, a form body with
//! `Action=...`, signed for service `sns`), the unsigned `GET /?Action=ConfirmSubscription`
//! and `GET /?Action=Unsubscribe` links SNS puts in the messages it delivers, and the
//! certificate of the key that signs them. The delivery loop to HTTP endpoints runs here too.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{read_body, signing_headers, AppState};
use crate::api::sns::{delivery, Caller, Params};
use crate::config::Auth;
use crate::sigv4;

/// Whether a request is signed for SNS (its credential scope names service `sns`).
pub(super) fn is_sns<B>(req: &Request<B>) -> bool {
    let auth = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let query = req.uri().query().unwrap_or("");
    auth.contains("/sns/aws4_request") || query.contains("%2Fsns%2Faws4_request")
}

/// Whether a request is one of the unsigned links of SNS's messages, or its certificate.
pub(super) fn is_link<B>(req: &Request<B>) -> bool {
    if req.method() != http::Method::GET {
        return false;
    }
    let query = req.uri().query().unwrap_or("");
    req.uri().path() == delivery::CERT_PATH
        || (req.uri().path() == "/"
            && (query.contains("Action=ConfirmSubscription") || query.contains("Action=Unsubscribe")))
}

fn caller(parts: &http::request::Parts, request_id: &str) -> Caller {
    let host = super::host_of(parts);
    Caller { base_url: format!("http://{host}"), request_id: request_id.to_owned() }
}

fn xml(status: u16, body: String, request_id: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// Answers an unsigned link: the certificate, or a confirmation or unsubscription (their
/// tokens and ARNs are the secret, as on SNS).
pub(super) async fn link(state: Arc<AppState>, req: Request<Incoming>, request_id: &str) -> Response<Full<Bytes>> {
    if req.uri().path() == delivery::CERT_PATH {
        let mut r = Response::new(Full::new(Bytes::from(state.kinesis.sns.signer.cert_pem.clone())));
        r.headers_mut().insert("content-type", HeaderValue::from_static("application/x-x509-ca-cert"));
        return r;
    }
    let (parts, _) = req.into_parts();
    let query = parts.uri.query().unwrap_or("");
    // Only the two link actions, each with only its own parameters, run unsigned: any other
    // action, or a second Action, is refused (the token or the subscription ARN is the
    // secret, as on SNS).
    let actions = query.split('&').filter(|p| p.starts_with("Action=")).count();
    let params = Params::parse(query);
    let allowed: &[&str] = match params.get("Action") {
        Some("ConfirmSubscription") => &["Action", "TopicArn", "Token", "AuthenticateOnUnsubscribe"],
        Some("Unsubscribe") => &["Action", "SubscriptionArn"],
        _ => &[],
    };
    if actions != 1 || allowed.is_empty() || !params.names().all(|n| allowed.contains(&n)) {
        let e = crate::api::sns::SnsError::new(
            "AuthorizationError",
            403,
            "Only ConfirmSubscription and Unsubscribe links are served unsigned.",
        );
        return xml(e.status, e.body(request_id), request_id);
    }
    let caller = caller(&parts, request_id);
    let worker = state.clone();
    match tokio::task::spawn_blocking(move || worker.kinesis.sns.handle(&worker.kinesis.sqs, &params, &caller)).await {
        Ok((status, body)) => xml(status, body, request_id),
        Err(e) => xml(500, crate::api::sns::SnsError::internal(e.to_string()).body(request_id), request_id),
    }
}

/// Answers a signed SNS request.
pub(super) async fn request(state: Arc<AppState>, req: Request<Incoming>, request_id: &str) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let refused = |e: &crate::api::ApiError| {
        let e = crate::api::sns::SnsError::from_api(e);
        xml(e.status, e.body(request_id), request_id)
    };
    let headers = signing_headers(&parts);
    let query = parts.uri.query().unwrap_or("");
    let scope = sigv4::Scope { region: &state.kinesis.config.region, service: "sns" };
    let checked = match state.auth {
        Auth::Sigv4 => match sigv4::check_headers(&state.access_keys, &headers, query, scope, SystemTime::now()) {
            Ok(c) => Some(c),
            Err(e) => return refused(&e),
        },
        Auth::None => None,
    };
    let body = match read_body(&state, &parts.headers, body).await {
        Ok(b) => b,
        Err(e) => return refused(&e),
    };
    if let Some(checked) = checked {
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        if let Err(e) = checked.verify_body(parts.method.as_str(), uri, &body.bytes) {
            return refused(&e);
        }
    }
    let mut params = Params::parse(query);
    params.extend(Params::parse(&String::from_utf8_lossy(&body.bytes)));
    drop(body);
    let caller = caller(&parts, request_id);
    let worker = state.clone();
    match tokio::task::spawn_blocking(move || worker.kinesis.sns.handle(&worker.kinesis.sqs, &params, &caller)).await {
        Ok((status, body)) => xml(status, body, request_id),
        Err(e) => xml(500, crate::api::sns::SnsError::internal(e.to_string()).body(request_id), request_id),
    }
}

/// Most POSTs to HTTP endpoints in flight at once.
const POSTS_IN_FLIGHT: usize = 64;

/// Delivers SNS messages to HTTP endpoints until the server closes: takes what is due,
/// POSTs it (concurrently), settles each; waits for a send or a second when nothing is due.
pub(super) async fn deliver(state: Arc<AppState>) {
    let client = delivery::client();
    let mut signal = state.kinesis.sqs.watch_outboxes();
    let mut closing = state.closing.subscribe();
    loop {
        signal.borrow_and_update();
        let worker = state.clone();
        let due = tokio::task::spawn_blocking(move || delivery::due(&worker.kinesis.sns, &worker.kinesis.sqs))
            .await
            .unwrap_or_default();
        if due.is_empty() {
            tokio::select! {
                _ = signal.changed() => {}
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = closing.changed() => return,
            }
            continue;
        }
        // At most POSTS_IN_FLIGHT at once, so many endpoints cannot take every descriptor.
        let mut results = Vec::with_capacity(due.len());
        for chunk in due.chunks(POSTS_IN_FLIGHT) {
            results.extend(futures::future::join_all(chunk.iter().map(|d| delivery::post(&client, d))).await);
        }
        let worker = state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for (d, ok) in due.iter().zip(results) {
                delivery::settle(&worker.kinesis.sqs, d, ok);
            }
        })
        .await;
        if *state.closing.borrow() {
            return;
        }
    }
}
