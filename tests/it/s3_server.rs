//! A real S3-compatible server for the tests: s3s-fs on 127.0.0.1 over HTTP, SigV4 checked,
//! objects as files under a folder. It can be stopped and started again on the same port
//! (fault tests), and `aws-sdk-s3` reads what Sluice landed, as an independent client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use tokio::task::AbortHandle;

/// Key pair the S3 server accepts.
pub const S3_ACCESS_KEY: &str = "S3TESTKEY";
/// Secret of [`S3_ACCESS_KEY`].
pub const S3_SECRET_KEY: &str = "s3-test-secret";
/// The bucket tests land in.
pub const BUCKET: &str = "lake";

/// An s3s-fs server on a loopback port.
pub struct S3Server {
    pub addr: SocketAddr,
    root: PathBuf,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl S3Server {
    /// Starts a server over `root` (created, with the bucket [`BUCKET`]) on an ephemeral port.
    pub async fn start(root: &Path) -> Self {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Self { addr, root: root.to_owned(), tasks: Arc::new(Mutex::new(Vec::new())) };
        server.serve(listener);
        server
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
    }

    /// Starts serving again on the same port.
    pub async fn restart(&self) {
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
