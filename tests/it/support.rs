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
        let config = Config {
            data_dir: data_dir.to_owned(),
            auth: Auth::Sigv4,
            access_keys: vec![sluice::config::AccessKey {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
            }],
            ..Config::default()
        };
        let state = sluice::open_state(&config, clock.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            sluice::server::serve(listener, state, async {
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
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://{}", self.addr))
            .credentials_provider(Credentials::new(access_key, secret, None, None, "test"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        aws_sdk_kinesis::Client::from_conf(config)
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
