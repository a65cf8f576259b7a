//! The HTTP server: HTTP/1.1 and h2c on one port, `POST /` with `X-Amz-Target`, routed to
//! the Kinesis or Firehose API, and `GET /metrics` (Prometheus). It takes its listener and a
//! shutdown future, so tests bind port 0.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use sluice_engine::api::{Action, ApiError, ErrorKind, Kinesis, TARGET_PREFIX};
use sluice_firehose::{Action as FirehoseAction, Firehose, TARGET_PREFIX as FIREHOSE_TARGET_PREFIX};
use tokio::net::TcpListener;

use crate::config::{AccessKey, Auth};
use crate::sigv4;

/// Largest request body taken, bytes: 12 MiB, above PutRecords' 5 MiB of data once base64 grows it by 4/3.
pub const REQUEST_BYTES_MAX: usize = 12 << 20;

/// What the server needs to answer requests.
#[derive(Debug)]
pub struct AppState {
    /// The Kinesis API.
    pub kinesis: Kinesis,
    /// The Firehose API and the delivery streams.
    pub firehose: Firehose,
    /// Authentication mode.
    pub auth: Auth,
    /// Accepted key pairs.
    pub access_keys: Vec<AccessKey>,
    request_counter: AtomicU64,
    request_id_base: u64,
    /// The data directory's lock: held while the state lives, released when `serve` ends.
    lock: std::sync::Mutex<Option<std::fs::File>>,
}

impl AppState {
    /// State around the Kinesis and Firehose APIs.
    pub fn new(
        kinesis: Kinesis,
        firehose: Firehose,
        auth: Auth,
        access_keys: Vec<AccessKey>,
        lock: std::fs::File,
    ) -> Self {
        let base = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self {
            kinesis,
            firehose,
            auth,
            access_keys,
            request_counter: AtomicU64::new(0),
            request_id_base: base,
            lock: std::sync::Mutex::new(Some(lock)),
        }
    }

    fn request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let v = (u128::from(self.request_id_base) << 64) | u128::from(n);
        let h = format!("{v:032x}");
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }
}

fn answer(request_id: &str, result: Result<Vec<u8>, ApiError>) -> Response<Full<Bytes>> {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST), e.body()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/x-amz-json-1.1"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == http::Method::GET && req.uri().path() == "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from(state.firehose.delivery_streams.context().metrics.render())));
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        return Ok(r);
    }
    let request_id = state.request_id();
    Ok(answer(&request_id, dispatch(state, req).await))
}

/// The API an `X-Amz-Target` names.
enum Target {
    Kinesis(Action),
    Firehose(FirehoseAction),
}

async fn dispatch(state: Arc<AppState>, req: Request<Incoming>) -> Result<Vec<u8>, ApiError> {
    let (parts, body) = req.into_parts();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let action = match target.split_once('.') {
        Some((TARGET_PREFIX, name)) if parts.method == http::Method::POST => {
            Action::from_name(name).map(Target::Kinesis)
        }
        Some((FIREHOSE_TARGET_PREFIX, name)) if parts.method == http::Method::POST => {
            FirehoseAction::from_name(name).map(Target::Firehose)
        }
        _ => None,
    }
    .ok_or_else(|| ApiError::new(ErrorKind::UnknownOperation, format!("Unknown operation {target}")))?;
    let body = Limited::new(body, REQUEST_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| ApiError::new(ErrorKind::Serialization, format!("Request body could not be read: {e}")))?
        .to_bytes();
    if state.auth == Auth::Sigv4 {
        let headers: Vec<(&str, &str)> =
            parts.headers.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))).collect();
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        sigv4::verify(&state.access_keys, parts.method.as_str(), uri, &headers, &body, SystemTime::now())?;
    }
    match action {
        Target::Kinesis(action) => {
            let worker = state.clone();
            tokio::task::spawn_blocking(move || worker.kinesis.handle(action, &body))
                .await
                .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?
        }
        Target::Firehose(action) => state.firehose.handle(action, &body).await,
    }
}

/// How often retention is enforced: every 60 s. Records outlive their retention period by
/// at most this, plus the span of one segment.
pub const RETENTION_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// How often the segment pages readers mapped in are unmapped again: every second, so a
/// replay of a whole stream does not leave the stream resident in the server's memory.
pub const PAGE_RELEASE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs `work` on a blocking thread every `interval`, the first time at once, until aborted.
fn every(interval: std::time::Duration, state: Arc<AppState>, work: fn(&AppState)) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        loop {
            ticks.tick().await;
            let state = state.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || work(&state)).await {
                tracing::error!(error = %e, "background task failed");
            }
        }
    })
}

/// Serves connections from `listener` until `shutdown` completes, then stops accepting and
/// waits for requests in flight to finish. Enforces retention in the background meanwhile.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, shutdown: impl Future<Output = ()>) {
    let retention = every(RETENTION_CHECK_INTERVAL, state.clone(), |state| {
        state.kinesis.prune_deleted();
        match state.kinesis.streams.trim_expired() + state.firehose.delivery_streams.trim_expired() {
            0 => {}
            n => tracing::info!(records = n, "retention deleted expired records"),
        }
    });
    let page_release = every(PAGE_RELEASE_INTERVAL, state.clone(), |state| {
        state.kinesis.streams.release_pages();
        state.firehose.delivery_streams.release_pages();
    });
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = service_fn(move |req| handle(state.clone(), req));
                let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    retention.abort();
    page_release.abort();
    graceful.shutdown().await;
    let _ = retention.await;
    let _ = page_release.await;
    // Delivery workers land what they buffered before the server stops.
    state.firehose.delivery_streams.shutdown().await;
    // Another server may open the data directory now (the logs sync when the state drops).
    state.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
}
