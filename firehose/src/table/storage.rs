//! iceberg's file I/O on the lake: the [`Lake`]'s `object_store` clients serve every data,
//! manifest and metadata file of a table, so tables live wherever delivery streams land
//! (a folder, MinIO, Garage, S3) with the same credentials and no second storage stack.
//!
//! Paths are `s3://<bucket>/<key>` (also `s3a://`, `s3n://`) for an S3 lake and
//! `file://<lake root>/<bucket>/<key>` for a folder lake; both resolve to one bucket of the
//! lake and a key in it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig, StorageFactory};
use iceberg::{Error, ErrorKind, Result};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::lake::{Lake, LakeError};

/// A table location's form on `lake`: `s3://<bucket>/<key>` on S3, `file://<absolute lake
/// root>/<bucket>/<key>` on a folder (absolute, so other readers such as PyIceberg and DuckDB
/// resolve it too).
pub fn location(lake: &Lake, bucket: &str, key: &str) -> std::io::Result<String> {
    let key = key.trim_matches('/');
    match lake.config().url.strip_prefix("file://") {
        Some(root) => {
            let root = absolute_root(root)?;
            Ok(format!("file://{}/{bucket}/{key}", root.display()))
        }
        None => Ok(format!("s3://{bucket}/{key}")),
    }
}

fn absolute_root(root: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    std::fs::canonicalize(root)
}

/// Builds [`LakeStorage`] for the catalogs. Not serializable in any useful way: a storage is
/// only ever used inside the process that made it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LakeStorageFactory {
    #[serde(skip)]
    storage: Option<LakeStorage>,
}

impl LakeStorageFactory {
    /// A factory for `lake`.
    pub fn new(lake: Arc<Lake>) -> std::io::Result<Self> {
        Ok(Self { storage: Some(LakeStorage::new(lake)?) })
    }
}

#[typetag::serde]
impl StorageFactory for LakeStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        match &self.storage {
            Some(s) => Ok(Arc::new(s.clone())),
            None => Err(unbound()),
        }
    }
}

/// iceberg's [`Storage`] over the lake's object stores.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LakeStorage {
    #[serde(skip)]
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    lake: Arc<Lake>,
    /// The absolute root of a folder lake, `None` on S3.
    root: Option<PathBuf>,
}

fn unbound() -> Error {
    Error::new(ErrorKind::Unexpected, "lake storage used outside the process that opened the lake")
}

fn lake_error(e: LakeError) -> Error {
    Error::new(ErrorKind::Unexpected, e.to_string())
}

fn store_error(e: object_store::Error, path: &str) -> Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => ErrorKind::DataInvalid,
        _ => ErrorKind::Unexpected,
    };
    Error::new(kind, format!("{path}: {e}"))
}

impl LakeStorage {
    /// A storage on `lake`.
    pub fn new(lake: Arc<Lake>) -> std::io::Result<Self> {
        let root = match lake.config().url.strip_prefix("file://") {
            Some(r) => Some(absolute_root(r)?),
            None => None,
        };
        Ok(Self { inner: Some(Arc::new(Inner { lake, root })) })
    }

    fn inner(&self) -> Result<&Inner> {
        self.inner.as_deref().ok_or_else(unbound)
    }

    /// The bucket and key of `path`.
    fn split(&self, path: &str) -> Result<(String, String)> {
        let inner = self.inner()?;
        let rest = match &inner.root {
            Some(root) => {
                let local = path.strip_prefix("file://").or_else(|| path.strip_prefix("file:")).unwrap_or(path);
                Path::new(local).strip_prefix(root).ok().and_then(Path::to_str).map(str::to_owned)
            }
            None => ["s3://", "s3a://", "s3n://"].iter().find_map(|s| path.strip_prefix(s)).map(str::to_owned),
        };
        let rest = rest.ok_or_else(|| outside(path))?;
        let (bucket, key) = rest.split_once('/').ok_or_else(|| outside(path))?;
        Ok((bucket.to_owned(), key.to_owned()))
    }

    /// The bucket's store and the object key of `path`.
    fn resolve(&self, path: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath)> {
        let (bucket, key) = self.split(path)?;
        let store = self.inner()?.lake.bucket(&bucket).map_err(lake_error)?;
        let key = ObjectPath::parse(&key)
            .map_err(|e| Error::new(ErrorKind::DataInvalid, format!("{path} is not a valid object key: {e}")))?;
        Ok((store, key))
    }
}

fn outside(path: &str) -> Error {
    Error::new(ErrorKind::DataInvalid, format!("{path} is not a location in the configured lake"))
}

#[async_trait]
#[typetag::serde]
impl Storage for LakeStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        let (store, key) = self.resolve(path)?;
        match store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error(e, path)),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        let (store, key) = self.resolve(path)?;
        let meta = store.head(&key).await.map_err(|e| store_error(e, path))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let (store, key) = self.resolve(path)?;
        let got = store.get(&key).await.map_err(|e| store_error(e, path))?;
        got.bytes().await.map_err(|e| store_error(e, path))
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        let (store, key) = self.resolve(path)?;
        Ok(Box::new(ObjectReader { store, key, path: path.to_owned() }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        let (bucket, key) = self.split(path)?;
        self.inner()?.lake.put(&bucket, &key, bs.to_vec()).await.map_err(lake_error)
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        let (bucket, key) = self.split(path)?;
        Ok(Box::new(ObjectWriter { lake: self.inner()?.lake.clone(), bucket, key, buffer: Vec::new() }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let (store, key) = self.resolve(path)?;
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e, path)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        let (store, key) = self.resolve(path)?;
        let listed: Vec<_> =
            store.list(Some(&key)).map_ok(|m| m.location).try_collect().await.map_err(|e| store_error(e, path))?;
        for location in listed {
            match store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error(e, path)),
            }
        }
        Ok(())
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(p) = paths.next().await {
            self.delete(&p).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_owned()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_owned()))
    }
}

struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    path: String,
}

#[async_trait]
impl FileRead for ObjectReader {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.store.get_range(&self.key, range).await.map_err(|e| store_error(e, &self.path))
    }
}

/// Buffers a file and writes it whole on close (one request, or a multipart upload from
/// [`crate::lake::MULTIPART_THRESHOLD_BYTES`]), so a reader never sees half a file: data
/// files are bounded by the delivery's buffer, metadata files are small.
struct ObjectWriter {
    lake: Arc<Lake>,
    bucket: String,
    key: String,
    buffer: Vec<u8>,
}

#[async_trait]
impl FileWrite for ObjectWriter {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        self.buffer.extend_from_slice(&bs);
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        let bytes = std::mem::take(&mut self.buffer);
        self.lake.put(&self.bucket, &self.key, bytes).await.map_err(lake_error)
    }
}
