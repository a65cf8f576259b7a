//! The HTTP server: HTTP/1.1 and h2c on one port, `POST /` with `X-Amz-Target`, routed to
//! the Kinesis or Firehose API, and `GET /metrics` (Prometheus). It takes its listener and a
//! shutdown future, so tests bind port 0.

mod sns;
mod sqs;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::api::firehose::{Action as FirehoseAction, Firehose, TARGET_PREFIX as FIREHOSE_TARGET_PREFIX};
use crate::api::kinesis::{Action, Kinesis, TARGET_PREFIX};
use crate::api::{ApiError, ErrorKind};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::answer_budget::{AnswerBudget, HeldAnswer};
use crate::api::{self, Codec};
use crate::config::{AccessKey, Auth};
use crate::cors::Cors;
use crate::sigv4;

/// A response body: a whole answer, or the events of a `SubscribeToShard` subscription.
pub type Body = http_body_util::Either<Full<Bytes>, EventBody>;

/// The body of an event-stream response: framed messages as the subscription sends them;
/// it ends when the subscription does.
#[derive(Debug)]
pub struct EventBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|m| m.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// What an action answers: a body, a subscription to stream, or a queue receive to wait on.
enum Answer {
    Body(Bytes),
    Events(Box<crate::api::kinesis::subscribe::Subscription>),
    Wait(Box<LongPoll>),
}

/// A queue receive that found no record and may wait for one (`WaitTimeSeconds`).
struct LongPoll {
    queue: Arc<crate::api::kinesis::queues::Queue>,
    area: sluice_engine::queue::Area,
    request: crate::api::kinesis::queues::ReceiveRequest,
    operation: String,
    deadline: tokio::time::Instant,
}

/// Largest request body taken, bytes: 15 MiB, above a 10 MiB record (the most a stream
/// may be set to take) once base64 grows it by 4/3, and PutRecords' 5 MiB likewise.
pub const REQUEST_BYTES_MAX: usize = 15 << 20;

/// What clients may hold of the server: connections, body bytes, time. Every resource a
/// client can make the server keep has a bound here; defaults in [`ServerLimits::default`].
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Open connections at most (default 4,096); past it the server stops accepting until
    /// one closes (the kernel's backlog holds the rest).
    pub max_connections: usize,
    /// Request body bytes held by all requests together (default 256 MiB); a request
    /// waits for its share before its body is read.
    pub body_bytes_in_flight: usize,
    /// Time to receive a request's headers (default 30 s).
    pub header_read_timeout: std::time::Duration,
    /// Time to receive a request's body, its wait for a share of the body budget included
    /// (default 60 s).
    pub body_read_timeout: std::time::Duration,
    /// A connection with no bytes read or written for this long is closed (default 120 s).
    pub idle_timeout: std::time::Duration,
    /// Concurrent HTTP/2 streams per connection (default 128).
    pub h2_max_concurrent_streams: u32,
    /// Record bytes held by GetRecords answers not yet sent (default 16 MiB); a read is
    /// sized to what is left ([`crate::answer_budget`]).
    pub get_records_bytes_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            body_bytes_in_flight: 256 << 20,
            header_read_timeout: std::time::Duration::from_secs(30),
            body_read_timeout: std::time::Duration::from_secs(60),
            idle_timeout: std::time::Duration::from_secs(120),
            h2_max_concurrent_streams: 128,
            get_records_bytes_in_flight: 16 << 20,
        }
    }
}

// Every request body fits the budget, so a lone large request never waits forever.
const _: () = assert!(REQUEST_BYTES_MAX <= 256 << 20);

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
    /// Bounds on what clients may hold.
    pub limits: ServerLimits,
    /// Body bytes that requests may still reserve ([`ServerLimits::body_bytes_in_flight`]).
    body_budget: Arc<tokio::sync::Semaphore>,
    /// Body bytes of small requests ([`SMALL_BODY_BYTES`] or less), kept apart so that they
    /// never queue behind large bodies waiting for the shared budget.
    small_body_budget: Arc<tokio::sync::Semaphore>,
    /// Record bytes of GetRecords answers not yet sent
    /// ([`ServerLimits::get_records_bytes_in_flight`]).
    answer_budget: Arc<AnswerBudget>,
    /// Origins web pages may call from (none unless configured).
    pub cors: Cors,
    /// Turns true when the server stops: open subscriptions end, so shutdown does not wait
    /// out their 5 minutes.
    closing: tokio::sync::watch::Sender<bool>,
    /// Signed-in sessions of the web console.
    pub console: crate::console::Console,
}

/// A body of at most this many bytes is small (64 KiB): it takes its share from a budget of
/// its own ([`SMALL_BODIES_BYTES`]), so ListStreams and the like are answered while large
/// bodies wait for theirs.
pub const SMALL_BODY_BYTES: usize = 64 << 10;
/// The budget of small bodies, bytes: 32 MiB (512 small bodies at once).
pub const SMALL_BODIES_BYTES: usize = 32 << 20;

impl AppState {
    /// State around the Kinesis and Firehose APIs.
    pub fn new(
        kinesis: Kinesis,
        firehose: Firehose,
        auth: Auth,
        access_keys: Vec<AccessKey>,
        lock: std::fs::File,
    ) -> Self {
        Self::with_limits(kinesis, firehose, auth, access_keys, lock, ServerLimits::default())
    }

    /// As [`AppState::new`], with other limits.
    pub fn with_limits(
        kinesis: Kinesis,
        firehose: Firehose,
        auth: Auth,
        access_keys: Vec<AccessKey>,
        lock: std::fs::File,
        limits: ServerLimits,
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
            limits,
            body_budget: Arc::new(tokio::sync::Semaphore::new(limits.body_bytes_in_flight.max(REQUEST_BYTES_MAX))),
            small_body_budget: Arc::new(tokio::sync::Semaphore::new(SMALL_BODIES_BYTES)),
            answer_budget: AnswerBudget::new(limits.get_records_bytes_in_flight),
            cors: Cors::default(),
            closing: tokio::sync::watch::Sender::new(false),
            console: crate::console::Console::default(),
        }
    }

    /// Runs GetRecords (`request` checked against the model) and encodes its answer for
    /// `codec`. The answer's records are held in the answer budget until the client has read
    /// them: the read is sized to what the budget has left.
    pub(crate) fn get_records_held(&self, request: serde_json::Value, codec: Codec) -> Result<Bytes, ApiError> {
        let mut grant = self.answer_budget.grant(sluice_engine::limits::GET_RECORDS_BYTES_MAX);
        let (answer, bytes) = self.kinesis.get_records_within(request, grant.bytes(), codec)?;
        grant.keep(bytes);
        let body = match codec {
            Codec::Json => api::encode_response(codec, api::model::kinesis(), "GetRecords", answer)?,
            // Encoded from the frames already; tests compare it with the generic encoder.
            Codec::Cbor => answer,
        };
        Ok(Bytes::from_owner(HeldAnswer::new(body, grant)))
    }

    /// A new request id (AWS's UUID form), for an answer made outside the API's own path.
    pub(crate) fn next_request_id(&self) -> String {
        self.request_id()
    }

    fn request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let v = (u128::from(self.request_id_base) << 64) | u128::from(n);
        let h = format!("{v:032x}");
        format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }
}

/// The API's answer to a request: the body, or the error as the codec writes AWS's errors.
pub(crate) fn answer(request_id: &str, codec: Codec, result: Result<Bytes, ApiError>) -> Response<Full<Bytes>> {
    let (status, body) = match result {
        Ok(body) => (StatusCode::OK, body),
        Err(e) => (
            StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST),
            Bytes::from(codec.error_body(&e)),
        ),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(codec.content_type()));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

/// AWS's answer to a method its JSON APIs do not take (GET, PUT, DELETE, ...): an XML
/// `AccessDeniedException`, status 403.
fn access_denied(request_id: &str) -> Response<Full<Bytes>> {
    let body = "<AccessDeniedException>\n  <Message>Unable to determine service/operation name to be authorized</Message>\n</AccessDeniedException>\n";
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // The console is for its own pages only: no origin is ever allowed to call it.
    let origin = req.headers().get(http::header::ORIGIN).filter(|_| !crate::console::is_console(req.uri().path()));
    let Some(allowed) = state.cors.allow(origin) else {
        return respond(state, req).await;
    };
    // A browser's preflight carries no credentials: it is answered before any check.
    if req.method() == http::Method::OPTIONS {
        let mut r = Response::new(Body::Left(Full::new(Bytes::new())));
        Cors::preflight(req.headers(), r.headers_mut(), allowed);
        return Ok(r);
    }
    let mut r = respond(state, req).await?;
    Cors::decorate(r.headers_mut(), allowed);
    Ok(r)
}

async fn respond(state: Arc<AppState>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let whole = |r: Response<Full<Bytes>>| Ok(r.map(Body::Left));
    if crate::console::is_console(req.uri().path()) {
        return whole(crate::console::respond(state, req).await);
    }
    if req.method() == http::Method::GET && req.uri().path() == "/metrics" {
        let mut text = state.firehose.delivery_streams.context().metrics.render();
        // Enhanced monitoring's shard-level series go before OpenMetrics' closing `# EOF`.
        let end = text.rfind("# EOF").unwrap_or(text.len());
        text.insert_str(end, &state.kinesis.render_shard_metrics());
        let end = text.rfind("# EOF").unwrap_or(text.len());
        text.insert_str(end, &state.kinesis.sqs.render_metrics());
        let mut r = Response::new(Full::new(Bytes::from(text)));
        r.headers_mut().insert(
            "content-type",
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        return whole(r);
    }
    if req.uri().path().starts_with(CLUSTER_PATH_PREFIX) {
        if let Some(link) = state.kinesis.cluster.get().cloned() {
            return whole(cluster_request(state, link, req).await);
        }
    }
    let request_id = state.request_id();
    if sns::is_link(&req) {
        return whole(sns::link(state, req, &request_id).await);
    }
    if req.method() != http::Method::POST {
        return whole(access_denied(&request_id));
    }
    if let Some(operation) = sqs::operation_of(&req) {
        return whole(sqs::request(state, req, sqs::Protocol::Json(operation), &request_id).await);
    }
    if !req.headers().contains_key("x-amz-target") && sns::is_sns(&req) {
        return whole(sns::request(state, req, &request_id).await);
    }
    if !req.headers().contains_key("x-amz-target") && sqs::is_query(&req) {
        return whole(sqs::request(state, req, sqs::Protocol::Query, &request_id).await);
    }
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if !req.headers().contains_key("x-amz-target") && api::sts::is_sts(content_type, req.uri().query().unwrap_or("")) {
        return whole(sts_request(state, req, &request_id).await);
    }
    let Some(codec) = Codec::from_content_type(content_type) else {
        // Another content type: AWS answers in XML, UnknownOperationException (404) when the
        // target names an operation, AccessDeniedException otherwise.
        return whole(match target_of(&req) {
            Some(_) => unknown_operation_xml(&request_id),
            None => access_denied(&request_id),
        });
    };
    match dispatch(state.clone(), codec, req).await {
        Ok(Answer::Events(subscription)) => Ok(events(state, &request_id, codec, *subscription)),
        Ok(Answer::Wait(poll)) => {
            whole(answer(&request_id, codec, long_poll(state, codec, *poll).await.map(Bytes::from)))
        }
        Ok(Answer::Body(body)) => whole(answer(&request_id, codec, Ok(body))),
        Err(e) => whole(answer(&request_id, codec, Err(e))),
    }
}

/// Paths of the requests nodes of a cluster send each other.
const CLUSTER_PATH_PREFIX: &str = "/_sluice/cluster/";

/// Largest body of a request between nodes: 16 MiB (a PutRecords' 5 MiB, a catch-up
/// request's 4 MiB, a 10 MiB record, and their framing).
const CLUSTER_BODY_BYTES_MAX: usize = 16 << 20;

/// A request of another node of the cluster ([`crate::cluster::replication`]): refused
/// without the cluster's token; its body is a shard batch, or a read forwarded by a node
/// that holds no replica of the shard.
async fn cluster_request(
    state: Arc<AppState>,
    link: Arc<crate::cluster::ClusterLink>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    use crate::cluster::replication::{APPEND_PATH, READ_PATH, REPLICATE_PATH, TOKEN_HEADER};
    let plain = |status: u16, text: &str| {
        let mut r = Response::new(Full::new(Bytes::from(text.to_owned())));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        r
    };
    let token = req.headers().get(TOKEN_HEADER).map(|v| v.as_bytes().to_vec()).unwrap_or_default();
    if req.method() != http::Method::POST || !link.peers.token_matches(&token) {
        return plain(403, "not a node of this cluster");
    }
    let path = req.uri().path().to_owned();
    if ![REPLICATE_PATH, APPEND_PATH, READ_PATH].contains(&path.as_str()) {
        return plain(404, "no such cluster request");
    }
    let body = match http_body_util::Limited::new(req.into_body(), CLUSTER_BODY_BYTES_MAX).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(413, &format!("body refused: {e}")),
    };
    let answered = tokio::task::spawn_blocking(move || {
        if path == READ_PATH {
            return state.kinesis.read_forwarded(&body);
        }
        let batch = match crate::cluster::wire::Batch::decode(&body) {
            Ok(b) => b,
            Err(e) => return (400, e.to_string().into_bytes()),
        };
        if path == REPLICATE_PATH {
            state.kinesis.apply_replica(&batch)
        } else {
            state.kinesis.append_forwarded(&batch)
        }
    })
    .await;
    match answered {
        Ok((status, body)) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
            r
        }
        Err(e) => plain(500, &e.to_string()),
    }
}

/// Waits for a queue's records: looks again whenever records are appended or made visible,
/// and when the next record in flight becomes visible, until one is there or the wait ends;
/// answers what it found (nothing at the end of the wait, as SQS does).
async fn long_poll(state: Arc<AppState>, codec: Codec, poll: LongPoll) -> Result<Vec<u8>, ApiError> {
    let mut signal = state.kinesis.watch_receivers();
    let poll = Arc::new(poll);
    loop {
        signal.borrow_and_update();
        let (worker, p) = (state.clone(), poll.clone());
        let records = tokio::task::spawn_blocking(move || worker.kinesis.receive_now(&p.queue, p.area, &p.request))
            .await
            .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))??;
        let now = tokio::time::Instant::now();
        if !records.is_empty() || now >= poll.deadline || *state.closing.borrow() {
            let json = serde_json::to_vec(&serde_json::json!({ "QueueRecords": records }))
                .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
            return api::encode_response(codec, api::model::kinesis(), &poll.operation, json);
        }
        let clock_now = state.kinesis.clock.now_ms();
        let wake = state
            .kinesis
            .next_visible_ms(&poll.queue, poll.area)
            .map_or(poll.deadline, |at| now + std::time::Duration::from_millis(at.saturating_sub(clock_now)))
            .min(poll.deadline);
        let mut closing = state.closing.subscribe();
        tokio::select! {
            _ = signal.changed() => {}
            () = tokio::time::sleep_until(wake) => {}
            _ = closing.changed() => {}
        }
    }
}

/// The answer of `SubscribeToShard`: status 200 and an event stream fed by the
/// subscription, which runs in a task of its own until it ends or the client goes away.
fn events(
    state: Arc<AppState>,
    request_id: &str,
    codec: Codec,
    subscription: crate::api::kinesis::subscribe::Subscription,
) -> Response<Body> {
    use crate::api::kinesis::subscribe;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let closing = state.closing.subscribe();
    // The initial response goes first, so clients waiting for it (botocore, the Rust SDK's
    // `send`) go on at once; the channel has room for it.
    let _ = tx.try_send(subscribe::initial_response(codec));
    tokio::spawn(async move {
        subscription.pump(&state.kinesis, codec, tx, closing).await;
    });
    let mut r = Response::new(Body::Right(EventBody(rx)));
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/vnd.amazon.eventstream"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    r
}

/// AWS's answer to an operation sent with a content type it does not take: an empty XML
/// `UnknownOperationException`, status 404.
fn unknown_operation_xml(request_id: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"<UnknownOperationException/>\n")));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// The action a request's `X-Amz-Target` names, if Sluice serves it.
fn target_of<B>(req: &Request<B>) -> Option<Target> {
    let target = req.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    match target.split_once('.') {
        Some((TARGET_PREFIX, name)) => Action::from_name(name).map(Target::Kinesis),
        Some((FIREHOSE_TARGET_PREFIX, name)) => FirehoseAction::from_name(name).map(Target::Firehose),
        Some((api::reprocessing::TARGET_PREFIX, name)) => {
            api::reprocessing::OPERATIONS.iter().find(|o| **o == name).map(|o| Target::Reprocessing(o))
        }
        _ => None,
    }
}

/// The API an `X-Amz-Target` names.
enum Target {
    Kinesis(Action),
    Firehose(FirehoseAction),
    /// Sluice's replays and redrives ([`api::reprocessing`]).
    Reprocessing(&'static str),
}

async fn dispatch(state: Arc<AppState>, codec: Codec, req: Request<Incoming>) -> Result<Answer, ApiError> {
    // AWS names no operation and sends no message here.
    let action = target_of(&req).ok_or_else(|| ApiError::new(ErrorKind::UnknownOperation, ""))?;
    let (parts, body) = req.into_parts();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let headers = signing_headers(&parts);
    let scope = sigv4::Scope {
        region: &state.kinesis.config.region,
        service: match action {
            Target::Kinesis(_) => "kinesis",
            Target::Firehose(_) | Target::Reprocessing(_) => "firehose",
        },
    };
    // Credentials are checked before the body is read: without them a client cannot make
    // the server read, or hold, a byte of its body.
    let checked = match state.auth {
        Auth::Sigv4 => {
            let query = parts.uri.query().unwrap_or("");
            Some(sigv4::check_headers(&state.access_keys, &headers, query, scope, SystemTime::now())?)
        }
        Auth::None => None,
    };
    // The caller as IAM would name it, for resource policies: a user of the one account.
    let caller = checked
        .as_ref()
        .map(|c| format!("arn:aws:iam::{}:user/{}", state.kinesis.config.account_id, c.access_key_id()));
    let body = read_body(&state, &parts.headers, body).await?;
    if let Some(checked) = checked {
        let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        checked.verify_body(parts.method.as_str(), uri, &body.bytes)?;
    }
    let operation = target.split_once('.').map_or("", |(_, name)| name).to_owned();
    // Decoding, the model's checks (before any action looks at a stream, as AWS's front end
    // does), the action and encoding run on a blocking thread: a large body's parse or a
    // Firehose action's file syncs never stall other requests. Firehose actions are async,
    // so their thread drives them on the runtime.
    let worker = state.clone();
    let runtime = tokio::runtime::Handle::current();
    let answer = tokio::task::spawn_blocking(move || {
        let model = match action {
            Target::Kinesis(_) => api::model::kinesis(),
            Target::Firehose(_) => api::model::firehose(),
            Target::Reprocessing(operation) => {
                if codec != Codec::Json {
                    return Err(ApiError::new(ErrorKind::Serialization, "the reprocessing API takes AWS JSON 1.1"));
                }
                return runtime
                    .block_on(api::reprocessing::handle(&worker.firehose, operation, &body.bytes))
                    .map(|b| Answer::Body(b.into()));
            }
        };
        // PutRecords in JSON, the hot path of every producer, is read straight into its
        // shape when it meets the model; anything else takes the general path below.
        if let (Codec::Json, Target::Kinesis(Action::PutRecords)) = (codec, &action) {
            if let Some(answer) = worker.kinesis.put_records_json(&body.bytes, caller.as_deref()) {
                drop(body);
                return api::encode_response(codec, model, &operation, answer?).map(|b| Answer::Body(b.into()));
            }
        }
        let request = api::decode_request(codec, model, &operation, &body.bytes)?;
        if let (Target::Kinesis(_), Some(caller)) = (&action, &caller) {
            worker.kinesis.check_policy(&operation, &request, caller)?;
        }
        if let Target::Kinesis(a @ (Action::ReceiveQueueRecords | Action::ReceiveDeadLetterQueueRecords)) = action {
            use sluice_engine::queue::Area;
            let request: crate::api::kinesis::queues::ReceiveRequest = api::kinesis::parse(request)?;
            let area = if a == Action::ReceiveQueueRecords { Area::Main } else { Area::DeadLetter };
            let queue = worker.kinesis.queue(request.queue_arn())?;
            let records = worker.kinesis.receive_now(&queue, area, &request)?;
            if records.is_empty() && request.wait_ms() > 0 {
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(request.wait_ms());
                return Ok(Answer::Wait(Box::new(LongPoll { queue, area, request, operation, deadline })));
            }
            let json = serde_json::to_vec(&serde_json::json!({ "QueueRecords": records }))
                .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
            return api::encode_response(codec, model, &operation, json).map(|b| Answer::Body(b.into()));
        }
        if let Target::Kinesis(Action::SubscribeToShard) = action {
            let request = api::kinesis::parse(request)?;
            return Ok(Answer::Events(Box::new(api::kinesis::subscribe::open(&worker.kinesis, request)?)));
        }
        if let Target::Kinesis(Action::GetRecords) = action {
            drop(body);
            return worker.get_records_held(request, codec).map(Answer::Body);
        }
        let answer = match action {
            Target::Kinesis(action) => worker.kinesis.handle_value(action, request),
            Target::Firehose(action) => runtime.block_on(worker.firehose.handle_value(action, request)),
            Target::Reprocessing(_) => unreachable!("answered above"),
        }?;
        // The body's share of the budget is held until the action is done with its copy.
        drop(body);
        api::encode_response(codec, model, &operation, answer).map(|b| Answer::Body(b.into()))
    })
    .await
    .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
    answer
}

/// The host a client reached the server at, as it named it (`Host`, or HTTP/2's
/// `:authority`), for the URLs answers give back (SQS queue URLs, SNS links).
fn host_of(parts: &http::request::Parts) -> String {
    parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A request's headers as the signature check takes them. HTTP/2 has no Host header:
/// clients sign `:authority` (the JavaScript SDK) or name it `host` (others); both are
/// offered.
fn signing_headers(parts: &http::request::Parts) -> Vec<(&str, &str)> {
    let mut headers: Vec<(&str, &str)> =
        parts.headers.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))).collect();
    if let Some(a) = parts.uri.authority() {
        headers.push((":authority", a.as_str()));
        if !parts.headers.contains_key(http::header::HOST) {
            headers.push(("host", a.as_str()));
        }
    }
    headers
}

/// Answers an STS query-protocol request (`GetCallerIdentity`), signed for service `sts`.
async fn sts_request(state: Arc<AppState>, req: Request<Incoming>, request_id: &str) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("");
    let (status, xml) = 'answer: {
        let headers = signing_headers(&parts);
        let scope = sigv4::Scope { region: &state.kinesis.config.region, service: "sts" };
        let checked = match state.auth {
            Auth::Sigv4 => match sigv4::check_headers(&state.access_keys, &headers, query, scope, SystemTime::now()) {
                Ok(c) => Some(c),
                Err(e) => break 'answer api::sts::auth_error(&e, request_id),
            },
            Auth::None => None,
        };
        let body = match read_body(&state, &parts.headers, body).await {
            Ok(b) => b,
            Err(e) => break 'answer api::sts::auth_error(&e, request_id),
        };
        let key = checked.as_ref().map(|c| c.access_key_id().to_owned());
        if let Some(checked) = checked {
            let uri = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            if let Err(e) = checked.verify_body(parts.method.as_str(), uri, &body.bytes) {
                break 'answer api::sts::auth_error(&e, request_id);
            }
        }
        api::sts::answer(query, &body.bytes, key.as_deref(), &state.kinesis.config.account_id, request_id)
    };
    let mut r = Response::new(Full::new(Bytes::from(xml)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert("content-type", HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// A request body and its share of the body budget, given back when dropped.
pub(crate) struct HeldBody {
    pub(crate) bytes: Bytes,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Reads a request body of at most [`REQUEST_BYTES_MAX`] bytes within the body timeout,
/// after reserving its size (`Content-Length`, or the maximum when unknown) from the
/// server's body budget.
pub(crate) async fn read_body(
    state: &AppState,
    headers: &http::HeaderMap,
    body: Incoming,
) -> Result<HeldBody, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::Serialization,
            format!("Request body could not be read: the body is larger than {REQUEST_BYTES_MAX} bytes"),
        )
    };
    let declared = match headers.get(http::header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ApiError::new(ErrorKind::Serialization, "Content-Length is not a number"))?,
        ),
    };
    let reserve = match declared {
        Some(n) if n > REQUEST_BYTES_MAX as u64 => return Err(too_large()),
        Some(n) => n as usize,
        None => REQUEST_BYTES_MAX,
    };
    let timeout = state.limits.body_read_timeout;
    let budget = if reserve <= SMALL_BODY_BYTES { state.small_body_budget.clone() } else { state.body_budget.clone() };
    let read = async move {
        let permit = budget
            .acquire_many_owned(u32::try_from(reserve.max(1)).unwrap_or(u32::MAX))
            .await
            .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
        let bytes = Limited::new(body, reserve)
            .collect()
            .await
            .map_err(|e| {
                if declared.is_some() {
                    ApiError::new(ErrorKind::Serialization, format!("Request body could not be read: {e}"))
                } else {
                    too_large()
                }
            })?
            .to_bytes();
        Ok(HeldBody { bytes, _permit: permit })
    };
    tokio::time::timeout(timeout, read).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            ErrorKind::Serialization,
            format!("Request body could not be read: not received within {} s", timeout.as_secs()),
        ))
    })
}

/// First wait after a failed `accept` (descriptors exhausted, ...), doubling to 1 s.
const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(10);
/// Longest wait after a failed `accept`.
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

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
    serve_with(listener, state, None, shutdown).await;
}

/// As [`serve`]; with `tls`, every connection starts with a TLS handshake (bounded by the
/// header read timeout), and HTTP/2 or HTTP/1.1 follows as ALPN chose.
pub async fn serve_with(
    listener: TcpListener,
    state: Arc<AppState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    // Replays and redrives that were running when the server stopped go on.
    state.firehose.tasks.resume();
    let retention = every(RETENTION_CHECK_INTERVAL, state.clone(), |state| {
        state.kinesis.prune_deleted();
        let trimmed = state.kinesis.streams.trim_expired()
            + state.firehose.delivery_streams.trim_expired()
            + state.kinesis.sqs.trim_expired();
        match trimmed {
            0 => {}
            n => tracing::info!(records = n, "retention deleted expired records"),
        }
    });
    let on_demand = every(
        std::time::Duration::from_millis(state.kinesis.config.on_demand_scaling_interval_ms.max(10)),
        state.clone(),
        |state| state.kinesis.scale_on_demand(),
    );
    let queue_sync = (state.kinesis.config.queue_sync_interval_ms > 0).then(|| {
        let interval = std::time::Duration::from_millis(state.kinesis.config.queue_sync_interval_ms);
        every(interval, state.clone(), |state| {
            state.kinesis.queues.sync_journals();
            state.kinesis.sqs.sync_journals();
        })
    });
    let page_release = every(PAGE_RELEASE_INTERVAL, state.clone(), |state| {
        state.kinesis.streams.release_pages();
        state.firehose.delivery_streams.release_pages();
        state.kinesis.sqs.release_pages();
        // SQS message move tasks step once a second (their rates are per second).
        state.kinesis.sqs.run_move_tasks();
        crate::answer_budget::ANSWER_BUFFERS.trim(crate::answer_budget::KEPT_IDLE);
    });
    let sns_deliveries = tokio::spawn(sns::deliver(state.clone()));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(state.limits.header_read_timeout);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(state.limits.h2_max_concurrent_streams)
        .max_header_list_size(64 << 10);
    let connections = Arc::new(tokio::sync::Semaphore::new(state.limits.max_connections));
    let mut accept_backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        // A connection slot first: at the limit the server stops accepting until one frees.
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning on the error.
                        tracing::warn!(error = %e, backoff_ms = accept_backoff.as_millis() as u64, "accept failed");
                        tokio::time::sleep(accept_backoff).await;
                        accept_backoff = (accept_backoff * 2).min(ACCEPT_BACKOFF_MAX);
                        continue;
                    }
                };
                accept_backoff = ACCEPT_BACKOFF_MIN;
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let (first_byte, idle) = (state.limits.header_read_timeout, state.limits.idle_timeout);
                let service = service_fn(move |req| handle(state.clone(), req));
                let (io, activity) = crate::idle::IdleIo::new(stream);
                match &tls {
                    None => {
                        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service).into_owned());
                        tokio::spawn(async move {
                            let _slot = slot;
                            tokio::select! {
                                ended = conn => if let Err(e) = ended {
                                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                                },
                                () = activity.idle(first_byte, idle) => tracing::debug!(%peer, "idle connection closed"),
                            }
                        });
                    }
                    Some(tls) => {
                        // The handshake runs in the connection's task, so a slow client never
                        // holds up the accept loop; it must finish within the header timeout.
                        let (tls, builder, watcher) = (tls.clone(), builder.clone(), graceful.watcher());
                        tokio::spawn(async move {
                            let _slot = slot;
                            let stream = match tokio::time::timeout(first_byte, tls.accept(io)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                            };
                            let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
                            tokio::select! {
                                ended = conn => if let Err(e) = ended {
                                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                                },
                                () = activity.idle(first_byte, idle) => tracing::debug!(%peer, "idle connection closed"),
                            }
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    retention.abort();
    page_release.abort();
    on_demand.abort();
    if let Some(q) = &queue_sync {
        q.abort();
    }
    state.closing.send_replace(true);
    graceful.shutdown().await;
    sns_deliveries.abort();
    let _ = sns_deliveries.await;
    let _ = retention.await;
    let _ = page_release.await;
    let _ = on_demand.await;
    if let Some(q) = queue_sync {
        let _ = q.await;
    }
    // Queue journals written since the last sync reach the disk before the server stops.
    state.kinesis.queues.sync_journals();
    state.kinesis.sqs.sync_journals();
    // Delivery workers land what they buffered before the server stops.
    state.firehose.delivery_streams.shutdown().await;
    // Another server may open the data directory now (the logs sync when the state drops).
    state.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
}
