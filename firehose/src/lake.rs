//! The object store delivery streams land in: a local folder (`file://`, the embedded
//! default) or S3-compatible storage (`s3://`: MinIO, Garage, AWS) through `object_store`.
//!
//! A delivery stream names a bucket by ARN (`arn:aws:s3:::<bucket>`); under `file://ROOT`
//! the bucket is the folder `ROOT/<bucket>`, under `s3://` it is that bucket of the
//! configured endpoint. Bucket names follow S3's naming rules ([`check_bucket_name`]), so a
//! name is always one plain folder name. Objects written under `file://` are durable when the
//! write returns (file and folders fsynced), as checkpoints are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    /// The bucket name breaks S3's naming rules.
    #[error("{0}")]
    BucketName(String),
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
    ///
    /// A `file://` lake is cleared of the temporary files (`<object>#<n>`) that writes cut
    /// short by a crash left, before any delivery of this process writes to it.
    pub fn new(config: LakeConfig) -> Result<Self, LakeError> {
        config.check()?;
        if let Some(root) = config.url.strip_prefix("file://") {
            let removed = remove_staging_files(Path::new(root));
            if removed > 0 {
                tracing::info!(lake = root, files = removed, "removed temporary files of writes a crash cut short");
            }
        }
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
            // Checked when the delivery stream was created or updated; checked again as the
            // name becomes a folder.
            check_bucket_name(name).map_err(LakeError::BucketName)?;
            let path = PathBuf::from(root).join(name);
            create_dir_all_durably(&path).map_err(|source| LakeError::Folder { path: path.clone(), source })?;
            // Writes go to a temporary file that is fsynced, renamed into place, and its
            // folder (and any folder created for it) fsynced before `put` returns.
            Arc::new(LocalFileSystem::new_with_prefix(&path)?.with_fsync(true))
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
        LakeError::BucketName(_) => "S3.NoSuchBucket",
        LakeError::Url(_) | LakeError::Folder { .. } | LakeError::Store(_) => "S3.InternalError",
    }
}

/// Checks S3's naming rules for general purpose buckets: 3 to 63 characters of lowercase
/// letters, digits, `.` and `-`; starting and ending with a letter or digit; no `..`; not
/// an IP address (`192.168.5.4`); none of the prefixes `xn--`, `sthree-`, `amzn-s3-demo-`
/// or the suffixes `-s3alias`, `--ol-s3`, `.mrap`, `--x-s3`, `--table-s3` S3 reserves.
/// Source: Amazon S3 user guide, "General purpose bucket naming rules". The error is a
/// message for `InvalidArgumentException`.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("Bucket name '{name}' is not valid: {why}."));
    if !(3..=63).contains(&name.len()) {
        return fail("bucket names are 3 to 63 characters long");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return fail("bucket names have only lowercase letters, digits, '.' and '-'");
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge(name.as_bytes()[0]) || !edge(name.as_bytes()[name.len() - 1]) {
        return fail("bucket names start and end with a letter or digit");
    }
    if name.contains("..") {
        return fail("bucket names have no two adjacent periods");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() || {
        let parts: Vec<&str> = name.split('.').collect();
        parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    } {
        return fail("bucket names are not formatted as IP addresses");
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"].iter().any(|p| name.starts_with(p))
        || ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"].iter().any(|s| name.ends_with(s))
    {
        return fail("bucket names do not use a prefix or suffix S3 reserves");
    }
    Ok(())
}

/// Creates `path` and its missing parents, then fsyncs each folder created and the parent of
/// the first, so the new folders survive a power cut.
fn create_dir_all_durably(path: &std::path::Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut p = Some(path);
    while let Some(dir) = p {
        if dir.as_os_str().is_empty() || dir.exists() {
            break;
        }
        missing.push(dir.to_owned());
        p = dir.parent();
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    for dir in &missing {
        sync_dir(dir)?;
    }
    let top = missing.last().expect("not empty");
    match top.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(std::path::Path::new(".")),
    }
}

/// Fsyncs a folder's entries (Unix; elsewhere folders cannot be opened to sync).
fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Removes, under `dir`, the files object_store's local store writes before renaming them
/// into place (`<object>#<n>`): left behind only when a crash cut the write short. Symbolic
/// links are not followed. Returns how many were removed; failures are logged.
fn remove_staging_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        let path = e.path();
        if kind.is_dir() {
            removed += remove_staging_files(&path);
        } else if kind.is_file() && is_staging_name(&e.file_name().to_string_lossy()) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(err) => tracing::warn!(file = %path.display(), error = %err, "cannot remove a temporary lake file"),
            }
        }
    }
    removed
}

/// Whether `name` is object_store's temporary name for a write in progress: `<name>#<digits>`.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(base, n)| !base.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn temporary_files_of_cut_writes_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("lake-1/2026/11/29");
        std::fs::create_dir_all(&folder).unwrap();
        for f in ["a.parquet", "a.parquet#1", "b.parquet#12", "c#x", "#3"] {
            std::fs::write(folder.join(f), b"x").unwrap();
        }
        let config = super::LakeConfig { url: format!("file://{}", dir.path().display()), ..Default::default() };
        super::Lake::new(config).unwrap();
        let mut left: Vec<String> =
            std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["#3", "a.parquet", "c#x"]);
    }

    use super::*;

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["lake", "my-bucket.2024", "abc", "a1-b2.c3", &"a".repeat(63)] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "..",
            ".",
            "a",
            "ab",
            "UPPER",
            "a..b",
            "-ab",
            "ab-",
            ".ab",
            "ab.",
            "a_b",
            "a/b",
            "a\\b",
            "192.168.5.4",
            "1.2.3.4",
            "xn--abc",
            "abc-s3alias",
            "abc--ol-s3",
            &"a".repeat(64),
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_bucket_name_never_becomes_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::new(LakeConfig {
            url: format!("file://{}", dir.path().join("root").display()),
            ..Default::default()
        })
        .unwrap();
        for bad in ["..", "a", "UPPER", "a..b"] {
            assert!(matches!(lake.bucket(bad), Err(LakeError::BucketName(_))), "{bad}");
        }
        assert!(!dir.path().join("root").exists());
        lake.bucket("lake").unwrap();
        assert!(dir.path().join("root/lake").is_dir());
    }
}
