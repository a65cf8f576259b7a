//! The object store delivery streams land in: a local folder (`file://`, the embedded
//! default) or S3-compatible storage (`s3://`: MinIO, Garage, AWS) through `object_store`.
//!
//! A delivery stream names a bucket by ARN (`arn:aws:s3:::<bucket>`); under `file://ROOT`
//! the bucket is the folder `ROOT/<bucket>`, under `s3://` it is that bucket of the
//! configured endpoint.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use serde::Deserialize;

/// Objects at least this large are written with a multipart upload, bytes: 16 MiB.
pub const MULTIPART_THRESHOLD_BYTES: usize = 16 << 20;
/// Part size of multipart uploads, bytes: 8 MiB (S3's minimum part is 5 MiB).
pub const MULTIPART_PART_BYTES: usize = 8 << 20;

/// `[lake]` in `sluice.toml`: where delivery streams land.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeConfig {
    /// `file://<folder>` (default `file://./lake`; a relative folder is relative to the
    /// working directory) or `s3://` for S3-compatible storage.
    pub url: String,
    /// S3 endpoint, e.g. `http://127.0.0.1:9000` for MinIO; AWS's when absent.
    pub endpoint: Option<String>,
    /// S3 region that requests are signed for (default `us-east-1`).
    pub region: String,
    /// S3 access key id.
    pub access_key_id: Option<String>,
    /// S3 secret access key.
    pub secret_access_key: Option<String>,
    /// Per-request timeout, ms (default 30,000).
    pub request_timeout_ms: u64,
}

impl Default for LakeConfig {
    fn default() -> Self {
        Self {
            url: "file://./lake".into(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            request_timeout_ms: 30_000,
        }
    }
}

/// Why the lake could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LakeError {
    /// The URL is neither `file://` nor `s3://`.
    #[error("lake url '{0}' must start with file:// or s3://")]
    Url(String),
    /// The bucket folder could not be created.
    #[error("cannot create bucket folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The object store refused the settings or the request.
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

impl LakeConfig {
    /// Checks the URL's scheme.
    pub fn check(&self) -> Result<(), LakeError> {
        if self.url.starts_with("file://") || self.url.starts_with("s3://") {
            Ok(())
        } else {
            Err(LakeError::Url(self.url.clone()))
        }
    }
}

/// The configured object store, one client per bucket.
#[derive(Debug)]
pub struct Lake {
    config: LakeConfig,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Lake {
    /// A lake with `config`; clients are made when a bucket is first used.
    pub fn new(config: LakeConfig) -> Result<Self, LakeError> {
        config.check()?;
        Ok(Self { config, buckets: Mutex::new(HashMap::new()) })
    }

    /// The settings.
    pub fn config(&self) -> &LakeConfig {
        &self.config
    }

    /// The store of bucket `name`.
    pub fn bucket(&self, name: &str) -> Result<Arc<dyn ObjectStore>, LakeError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = buckets.get(name) {
            return Ok(b.clone());
        }
        let store: Arc<dyn ObjectStore> = if let Some(root) = self.config.url.strip_prefix("file://") {
            let path = PathBuf::from(root).join(name);
            std::fs::create_dir_all(&path).map_err(|source| LakeError::Folder { path: path.clone(), source })?;
            Arc::new(LocalFileSystem::new_with_prefix(&path)?)
        } else {
            let mut b = AmazonS3Builder::new()
                .with_bucket_name(name)
                .with_region(&self.config.region)
                .with_virtual_hosted_style_request(false)
                // Retries within a call are short; the delivery worker retries for the
                // delivery stream's retry duration on top.
                .with_retry(RetryConfig {
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(10),
                    backoff: BackoffConfig {
                        init_backoff: Duration::from_millis(100),
                        max_backoff: Duration::from_secs(2),
                        base: 2.0,
                    },
                })
                .with_client_options(
                    ClientOptions::new()
                        .with_timeout(Duration::from_millis(self.config.request_timeout_ms))
                        .with_connect_timeout(Duration::from_secs(5)),
                );
            if let Some(e) = &self.config.endpoint {
                b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            }
            if let Some(k) = &self.config.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(s) = &self.config.secret_access_key {
                b = b.with_secret_access_key(s);
            }
            Arc::new(b.build()?)
        };
        buckets.insert(name.to_owned(), store.clone());
        Ok(store)
    }

    /// Writes `bytes` at `key` of `bucket`, in one request or, from
    /// [`MULTIPART_THRESHOLD_BYTES`] on, as a multipart upload.
    pub async fn put(&self, bucket: &str, key: &str, bytes: Vec<u8>) -> Result<(), LakeError> {
        let store = self.bucket(bucket)?;
        let path = ObjectPath::from(key);
        if bytes.len() < MULTIPART_THRESHOLD_BYTES {
            store.put(&path, PutPayload::from(bytes)).await?;
            return Ok(());
        }
        let upload = store.put_multipart(&path).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_BYTES);
        w.write(&bytes);
        w.finish().await?;
        Ok(())
    }
}

/// The `S3.*` error code Firehose reports for a failed write.
pub fn s3_error_code(e: &LakeError) -> &'static str {
    match e {
        LakeError::Store(object_store::Error::NotFound { .. }) => "S3.NoSuchBucket",
        LakeError::Store(
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. },
        ) => "S3.AccessDenied",
        LakeError::Url(_) | LakeError::Folder { .. } | LakeError::Store(_) => "S3.InternalError",
    }
}
