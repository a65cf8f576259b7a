//! A real Sluice server on an ephemeral port, and an `aws-sdk-kinesis` client for it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use sluice::config::{Auth, Config};
use sluice_engine::ManualClock;
use tokio::sync::oneshot;

/// Access key pair the test server accepts.
pub const ACCESS_KEY: &str = "AKIDSLUICETEST";
/// Secret of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "test-secret-key";

/// A server running in this process until dropped (which shuts it down gracefully).
pub struct TestServer {
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on `127.0.0.1:0` over `data_dir`, with SigV4 on and a manual clock
    /// set to the real time (so signatures are fresh).
    pub async fn start(data_dir: &Path) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        Self::start_with_clock(data_dir, Arc::new(ManualClock::new(now))).await
    }

    /// As [`TestServer::start`], with the given clock.
    pub async fn start_with_clock(data_dir: &Path, clock: Arc<ManualClock>) -> Self {
        Self::start_with(data_dir, clock, |_| {}).await
    }

    /// A server with `auth = "none"` (allowed on loopback), for raw HTTP requests.
    pub async fn start_unsigned(data_dir: &Path) -> Self {
        Self::start_with(data_dir, Arc::new(ManualClock::new(1_700_000_000_000)), |c| c.auth = Auth::None).await
    }

    /// A server whose configuration `adjust` changes from the tests' default (SigV4 on,
    /// throttling on, the test key pair).
    pub async fn start_with(data_dir: &Path, clock: Arc<ManualClock>, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            data_dir: data_dir.to_owned(),
            auth: Auth::Sigv4,
            // Tests move their clocks by hand; streams are ACTIVE at once unless a test says otherwise.
            stream_transition_ms: 0,
            access_keys: vec![sluice::config::AccessKey {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
            }],
            ..Config::default()
        };
        adjust(&mut config);
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(sluice::tls::acceptor(cert, key).unwrap()),
            _ => None,
        };
        let state = sluice::open_state(&config, clock.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            sluice::server::serve_with(listener, state, tls, async {
                let _ = stopped.await;
            })
            .await;
        });
        Self { addr, clock, stop: Some(stop), task: Some(task) }
    }

    /// A client signing with the server's key.
    pub fn client(&self) -> aws_sdk_kinesis::Client {
        self.client_with(ACCESS_KEY, SECRET_KEY)
    }

    /// A client signing with the given key pair.
    pub fn client_with(&self, access_key: &str, secret: &str) -> aws_sdk_kinesis::Client {
        kinesis_client(self.addr, access_key, secret)
    }

    /// An `aws-sdk-firehose` client signing with the server's key.
    pub fn firehose(&self) -> aws_sdk_firehose::Client {
        firehose_client(self.addr)
    }

    /// Stops the server and waits until it has closed every shard log.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// An `aws-sdk-firehose` client of the server at `addr`, signing with the test key, without
/// retries.
pub fn firehose_client(addr: SocketAddr) -> aws_sdk_firehose::Client {
    let config = aws_sdk_firehose::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(aws_sdk_firehose::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_firehose::Client::from_conf(config)
}

pub fn kinesis_client(addr: SocketAddr, access_key: &str, secret: &str) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .credentials_provider(Credentials::new(access_key, secret, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        // Tests look at each answer; the SDK would retry throttling errors on its own.
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_kinesis::config::timeout::TimeoutConfig::builder()
                .operation_timeout(std::time::Duration::from_secs(30))
                .build(),
        )
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// The TRIM_HORIZON shard iterator of the first shard (`shardId-000000000000`) of `stream`.
pub async fn first_shard_iterator(k: &aws_sdk_kinesis::Client, stream: &str) -> String {
    trim_horizon(k, stream, "shardId-000000000000").await
}

/// The TRIM_HORIZON shard iterator of shard `shard` of `stream`.
pub async fn trim_horizon(k: &aws_sdk_kinesis::Client, stream: &str, shard: &str) -> String {
    k.get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .expect("an iterator")
}

/// Sends one raw HTTP/1.1 request with `X-Amz-Target: <target>` (omitted when empty) and
/// returns the status and the JSON body.
pub async fn raw_request(addr: SocketAddr, target: &str, body: &[u8]) -> (u16, serde_json::Value) {
    let (status, _, body) = raw_call(addr, target, "application/x-amz-json-1.1", body).await;
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

/// Sends one raw HTTP/1.1 request with `X-Amz-Target: <target>` (omitted when empty) and a
/// body of `content_type`; returns the status, the answer's content type and its body.
pub async fn raw_call(addr: SocketAddr, target: &str, content_type: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let target_header = if target.is_empty() { String::new() } else { format!("X-Amz-Target: {target}\r\n") };
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n{target_header}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(head.to_ascii_lowercase().contains("x-amzn-requestid: "), "no request id in {head}");
    let answer_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    (status, answer_type, response[split + 4..].to_vec())
}

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) and returns the status and
/// the response, head and body, lower-cased.
pub async fn head_of(addr: SocketAddr, request: String) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    (text.split(' ').nth(1).unwrap().parse().unwrap(), text)
}

/// splitmix64: a seeded generator, so a failing run can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}
