//! A real S3-compatible server for the tests, on 127.0.0.1 over HTTP with SigV4 checked:
//! s3s-fs in this process (objects as files under a folder), or, with
//! `SLUICE_S3_BACKEND=garage`, a Garage server process (`SLUICE_GARAGE_BIN`, default `garage`
//! on the PATH), so the same delivery tests run against the store people run in production.
//! Either can be stopped and started again on the same port (fault tests), and `aws-sdk-s3`
//! reads what Sluice landed, as an independent client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use tokio::task::AbortHandle;

/// Key pair the S3 server accepts (in Garage's format: `GK` and 24 hex digits).
pub const S3_ACCESS_KEY: &str = "GK0123456789abcdef01234567";
/// Secret of [`S3_ACCESS_KEY`] (64 hex digits, as Garage wants).
pub const S3_SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The bucket tests land in.
pub const BUCKET: &str = "lake";

/// An S3-compatible server on a loopback port.
pub struct S3Server {
    pub addr: SocketAddr,
    root: PathBuf,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    garage: Option<Garage>,
}

/// A Garage server process and how to start it again.
struct Garage {
    bin: PathBuf,
    config: PathBuf,
    child: Mutex<Option<std::process::Child>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl S3Server {
    /// Starts a server over `root` (created, with the bucket [`BUCKET`]) on an ephemeral port:
    /// s3s-fs, or Garage when `SLUICE_S3_BACKEND=garage`.
    pub async fn start(root: &Path) -> Self {
        if std::env::var("SLUICE_S3_BACKEND").as_deref() == Ok("garage") {
            return Self::start_garage(root).await;
        }
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Self { addr, root: root.to_owned(), tasks: Arc::new(Mutex::new(Vec::new())), garage: None };
        server.serve(listener);
        server
    }

    async fn start_garage(root: &Path) -> Self {
        std::fs::create_dir_all(root).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = root.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{S3_SECRET_KEY}"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "{addr}"
"#,
                root = root.display(),
                rpc = free_port(),
            ),
        )
        .unwrap();
        let bin = std::env::var_os("SLUICE_GARAGE_BIN").map_or_else(|| PathBuf::from("garage"), PathBuf::from);
        let garage = Garage { bin, config, child: Mutex::new(None) };
        let server =
            Self { addr, root: root.to_owned(), tasks: Arc::new(Mutex::new(Vec::new())), garage: Some(garage) };
        server.spawn_garage().await;
        server
    }

    async fn spawn_garage(&self) {
        let g = self.garage.as_ref().expect("a Garage server");
        let child = std::process::Command::new(&g.bin)
            .arg("-c")
            .arg(&g.config)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", S3_ACCESS_KEY)
            .env("GARAGE_DEFAULT_SECRET_KEY", S3_SECRET_KEY)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (SLUICE_GARAGE_BIN): {e}", g.bin.display()));
        *g.child.lock().unwrap() = Some(child);
        // Ready when the bucket answers.
        let s3 = self.client();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while s3.list_objects_v2().bucket(BUCKET).send().await.is_err() {
            assert!(std::time::Instant::now() < deadline, "garage did not become ready");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let mut b = s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(&self.root).unwrap());
        b.set_auth(s3s::auth::SimpleAuth::from_single(S3_ACCESS_KEY, S3_SECRET_KEY));
        let service = b.build();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                let svc = service.clone();
                let conn = tokio::spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Stops accepting and drops every open connection: the server is down.
    pub fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        if let Some(g) = &self.garage {
            if let Some(mut c) = g.child.lock().unwrap().take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Starts serving again on the same port.
    pub async fn restart(&self) {
        if self.garage.is_some() {
            return self.spawn_garage().await;
        }
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    /// Sluice's lake settings for this server.
    pub fn lake_config(&self) -> sluice_firehose::LakeConfig {
        sluice_firehose::LakeConfig {
            url: "s3://".into(),
            endpoint: Some(format!("http://{}", self.addr)),
            access_key_id: Some(S3_ACCESS_KEY.into()),
            secret_access_key: Some(S3_SECRET_KEY.into()),
            ..sluice_firehose::LakeConfig::default()
        }
    }

    /// An `aws-sdk-s3` client for this server.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://{}", self.addr))
            .credentials_provider(Credentials::new(S3_ACCESS_KEY, S3_SECRET_KEY, None, None, "test"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether any object is under `prefix` in [`BUCKET`] (one list request, no reads).
pub async fn any_object(s3: &aws_sdk_s3::Client, prefix: &str) -> bool {
    let page = s3.list_objects_v2().bucket(BUCKET).prefix(prefix).max_keys(1).send().await.unwrap();
    !page.contents().is_empty()
}

/// Every object under `prefix` in [`BUCKET`], as (key, bytes), read with `aws-sdk-s3`.
pub async fn objects(s3: &aws_sdk_s3::Client, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        for o in page.contents() {
            let key = o.key().unwrap().to_owned();
            let body = s3.get_object().bucket(BUCKET).key(&key).send().await.unwrap().body.collect().await.unwrap();
            out.push((key, body.into_bytes().to_vec()));
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    out.sort();
    out
}
