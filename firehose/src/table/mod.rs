//! Apache Iceberg tables as a destination: records converted as for Parquet objects are
//! written as a table's data files and committed as snapshots through an Iceberg catalog,
//! with iceberg-rust (the Apache project's crate) doing the writing: data files, manifests,
//! snapshots, partition values.
//!
//! - **Catalogs**: an embedded SQL catalog, a SQLite file at
//!   `<data_dir>/iceberg/catalog.db` (the same tables PyIceberg's `SqlCatalog` reads), or an
//!   Iceberg REST catalog (`[tables] rest_catalog_url`: Lakekeeper, Polaris, Nessie).
//! - **Storage**: the lake ([`storage`]): a folder, MinIO, Garage or S3.
//! - **Exactly once**: every commit of a source shard's range carries it in the snapshot
//!   summary (`sluice.source`, `sluice.shard`, `sluice.first-sequence-number`,
//!   `sluice.last-sequence-number`) and moves the shard's watermark, a table property
//!   ([`Mark::key`]), in the same commit. A delivery redone after a crash reads the watermark
//!   first and appends only what is past it; a commit races another deliverer of the same
//!   range only through the catalog's optimistic concurrency, pinned to the version whose
//!   watermark was read ([`pinned`]), so exactly one of them lands.

pub mod pinned;
pub mod storage;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use iceberg::arrow::{arrow_schema_to_schema_auto_assign_ids, schema_to_arrow_schema, RecordBatchPartitionSplitter};
use iceberg::spec::{DataFile, DataFileFormat, Transform, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Catalog, CatalogBuilder, ErrorKind, NamespaceIdent, TableCreation, TableIdent};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::lake::Lake;
use crate::schema::FieldSpec;
use crate::spec::IcebergDestination;
use pinned::PinnedCatalog;
use storage::LakeStorageFactory;

/// Data files are rolled at this size, bytes: 128 MiB (Iceberg's `write.target-file-size-bytes`
/// is 512 MiB; a delivery is at most 128 MiB of input).
pub const TARGET_FILE_BYTES: usize = 128 << 20;

/// Commit attempts of one delivery before it is retried as a whole (each lost attempt means
/// another deliverer committed in between).
pub const COMMIT_ATTEMPTS_MAX: u32 = 20;

/// `[tables]` in `sluice.toml`: the catalog tables are committed through.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// An Iceberg REST catalog (`http://host:8181/catalog`, without `/v1`); absent, the
    /// embedded SQL catalog `<data_dir>/iceberg/catalog.db` (SQLite).
    pub rest_catalog_url: Option<String>,
    /// The REST catalog's warehouse, when it serves several.
    pub rest_catalog_warehouse: Option<String>,
    /// More REST catalog properties (`token`, `credential`, `header.X-Name`, ...).
    pub rest_catalog_properties: BTreeMap<String, String>,
    /// Snapshots older than this are expired after a commit, ms (default 432,000,000: 120
    /// hours, S3 Tables' default). Delivery watermarks are table properties, so expiring the
    /// snapshots that carried them loses nothing of exactly-once.
    pub snapshot_retention_ms: u64,
    /// Snapshots kept whatever their age (default 1).
    pub min_snapshots_to_keep: usize,
}

impl Default for TablesConfig {
    fn default() -> Self {
        Self {
            rest_catalog_url: None,
            rest_catalog_warehouse: None,
            rest_catalog_properties: BTreeMap::new(),
            snapshot_retention_ms: SNAPSHOT_RETENTION_MS_DEFAULT,
            min_snapshots_to_keep: 1,
        }
    }
}

/// Default [`TablesConfig::snapshot_retention_ms`]: 120 hours (S3 Tables' snapshot
/// management default, `maxSnapshotAgeHours`).
pub const SNAPSHOT_RETENTION_MS_DEFAULT: u64 = 120 * 3_600_000;

/// Where a delivery's records go: a table of a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableTarget {
    /// The catalog's name (the SQL catalog's `catalog_name`; PyIceberg opens it by that name).
    pub catalog: String,
    /// Namespace (Firehose's `DestinationDatabaseName`).
    pub namespace: String,
    /// Table name.
    pub table: String,
    /// Where a table created by Sluice keeps its files: `s3://<bucket>/<path>` or
    /// `file://<lake root>/<bucket>/<path>`.
    pub location: String,
    /// Whether a missing table is created (`TableCreationConfiguration`).
    pub create: bool,
    /// Partition fields of a created table: `(column, transform)`.
    pub partitions: Vec<(String, Transform)>,
    /// Compression of data files.
    pub compression: Compression,
}

impl TableTarget {
    fn ident(&self) -> Result<TableIdent, TableError> {
        Ok(TableIdent::new(self.namespace_ident()?, self.table.clone()))
    }

    fn namespace_ident(&self) -> Result<NamespaceIdent, TableError> {
        NamespaceIdent::from_strs(self.namespace.split('.')).map_err(TableError::Catalog)
    }
}

/// A delivery's place in its source: which shard's range it commits, and the watermark
/// (table property) that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The watermark's table property: `sluice.watermark.<source>.<shard>`.
    pub key: String,
    /// The source (delivery stream and source stream incarnation).
    pub source: String,
    /// Source shard index.
    pub shard: u32,
    /// First and last sequence number of the range.
    pub first: u64,
    /// Last sequence number of the range.
    pub last: u64,
}

impl Mark {
    /// The mark of `first..=last` of `shard` of `source`.
    pub fn new(source: &str, shard: u32, first: u64, last: u64) -> Self {
        Self { key: format!("sluice.watermark.{source}.{shard}"), source: source.to_owned(), shard, first, last }
    }
}

/// Why a table could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// The table does not exist and is not to be created (`Iceberg.NoSuchTable`).
    #[error("table {0} does not exist and table creation is not enabled")]
    NoSuchTable(String),
    /// The records' columns are not the table's (its schema changed): plan again.
    #[error("the table's schema changed while the delivery was planned")]
    SchemaChanged,
    /// The catalog or the storage failed.
    #[error(transparent)]
    Catalog(#[from] iceberg::Error),
    /// The configuration cannot work (bad catalog URL, data directory).
    #[error("{0}")]
    Config(String),
}

/// What became of an append.
#[derive(Debug)]
pub enum Appended {
    /// Committed as a new snapshot.
    Committed {
        /// Rows in the snapshot.
        rows: u64,
        /// Data files added.
        files: usize,
        /// Their size, bytes.
        bytes: u64,
    },
    /// The watermark is not where it was read: another deliverer committed (part of) the
    /// range. Nothing was committed; plan again from the watermark.
    Superseded {
        /// The watermark now.
        watermark: Option<u64>,
    },
}

/// The catalogs, opened when first used, and the lake their tables live in.
#[derive(Debug)]
pub struct Tables {
    data_dir: PathBuf,
    lake: Arc<Lake>,
    config: TablesConfig,
    catalogs: Mutex<HashMap<String, Arc<dyn Catalog>>>,
}

impl Tables {
    /// Tables under `data_dir` (the SQL catalog's file) on `lake`. The catalog's folder is
    /// made now, so other readers (PyIceberg) may open the catalog before Sluice first does.
    pub fn new(data_dir: &Path, lake: Arc<Lake>, config: TablesConfig) -> Self {
        let tables = Self { data_dir: data_dir.to_owned(), lake, config, catalogs: Mutex::new(HashMap::new()) };
        if tables.config.rest_catalog_url.is_none() {
            let file = tables.sql_catalog_file();
            if let Err(e) = std::fs::create_dir_all(file.parent().expect("a file in a folder")) {
                tracing::warn!(file = %file.display(), error = %e, "cannot make the SQL catalog's folder");
            }
        }
        tables
    }

    /// Whether every node reaches the same catalog (a REST catalog), rather than a SQLite
    /// file of this node's own.
    pub fn shared_catalog(&self) -> bool {
        self.config.rest_catalog_url.is_some()
    }

    /// The lake.
    pub fn lake(&self) -> &Arc<Lake> {
        &self.lake
    }

    /// The SQLite file of the embedded catalog.
    pub fn sql_catalog_file(&self) -> PathBuf {
        self.data_dir.join("iceberg").join("catalog.db")
    }

    /// Catalog `name`.
    pub async fn catalog(&self, name: &str) -> Result<Arc<dyn Catalog>, TableError> {
        let mut catalogs = self.catalogs.lock().await;
        if let Some(c) = catalogs.get(name) {
            return Ok(c.clone());
        }
        let factory =
            Arc::new(LakeStorageFactory::new(self.lake.clone()).map_err(|e| TableError::Config(e.to_string()))?);
        let catalog: Arc<dyn Catalog> = match &self.config.rest_catalog_url {
            Some(url) => {
                let mut props: HashMap<String, String> =
                    self.config.rest_catalog_properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                props.insert("uri".into(), url.clone());
                if let Some(w) = &self.config.rest_catalog_warehouse {
                    props.insert("warehouse".into(), w.clone());
                }
                Arc::new(
                    iceberg_catalog_rest::RestCatalogBuilder::default()
                        .with_storage_factory(factory)
                        .load(name, props)
                        .await?,
                )
            }
            None => {
                let file = self.sql_catalog_file();
                let dir = file.parent().expect("a file in a folder");
                std::fs::create_dir_all(dir).map_err(|e| TableError::Config(format!("{}: {e}", dir.display())))?;
                let dir =
                    std::fs::canonicalize(dir).map_err(|e| TableError::Config(format!("{}: {e}", dir.display())))?;
                let warehouse =
                    storage::location(&self.lake, "warehouse", "").map_err(|e| TableError::Config(e.to_string()))?;
                let props = HashMap::from([
                    ("uri".to_owned(), format!("sqlite://{}/catalog.db?mode=rwc", dir.display())),
                    ("warehouse".to_owned(), warehouse),
                    ("sql_bind_style".to_owned(), "QMark".to_owned()),
                ]);
                Arc::new(
                    iceberg_catalog_sql::SqlCatalogBuilder::default()
                        .with_storage_factory(factory)
                        .load(name, props)
                        .await?,
                )
            }
        };
        catalogs.insert(name.to_owned(), catalog.clone());
        Ok(catalog)
    }

    /// The table of `target` as it is now; `None` when it does not exist.
    pub async fn load(&self, target: &TableTarget) -> Result<Option<Table>, TableError> {
        let catalog = self.catalog(&target.catalog).await?;
        match catalog.load_table(&target.ident()?).await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == ErrorKind::TableNotFound || e.kind() == ErrorKind::NamespaceNotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the table of `target` with columns `fields` (and its namespace when missing);
    /// a table created meanwhile by someone else is loaded instead.
    pub async fn create(&self, target: &TableTarget, fields: &[FieldSpec]) -> Result<Table, TableError> {
        let catalog = self.catalog(&target.catalog).await?;
        let namespace = target.namespace_ident()?;
        if !catalog.namespace_exists(&namespace).await? {
            match catalog.create_namespace(&namespace, HashMap::new()).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NamespaceAlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        // A time partition's column is a timestamp (Kinesis channels: "must be of the
        // timestamptz type"), whatever the sample suggested (ISO 8601 text infers as string).
        let fields: Vec<FieldSpec> = fields
            .iter()
            .map(|f| {
                let timed = target.partitions.iter().any(|(c, t)| {
                    c == &f.name && matches!(t, Transform::Hour | Transform::Day | Transform::Month | Transform::Year)
                });
                if timed {
                    FieldSpec { type_name: "timestamp".into(), ..f.clone() }
                } else {
                    f.clone()
                }
            })
            .collect();
        let arrow = table_arrow_schema(&fields)?;
        let schema = arrow_schema_to_schema_auto_assign_ids(&arrow)?;
        let mut spec = UnboundPartitionSpec::builder();
        for (column, transform) in &target.partitions {
            let field = schema.field_by_name(column).ok_or_else(|| {
                TableError::Config(format!("partition source column '{column}' is not a column of the table"))
            })?;
            let name = match transform {
                Transform::Identity => column.clone(),
                Transform::Hour => format!("{column}_hour"),
                Transform::Day => format!("{column}_day"),
                Transform::Month => format!("{column}_month"),
                Transform::Year => format!("{column}_year"),
                Transform::Bucket(_) => format!("{column}_bucket"),
                Transform::Truncate(_) => format!("{column}_trunc"),
                Transform::Void | Transform::Unknown => format!("{column}_null"),
            };
            spec = spec.add_partition_field(field.id, name, *transform)?;
        }
        let creation = TableCreation::builder()
            .name(target.table.clone())
            .schema(schema)
            .partition_spec(spec.build())
            .location(target.location.clone())
            .properties([("write.parquet.compression-codec".to_owned(), codec_name(target.compression).to_owned())])
            .build();
        match catalog.create_table(&namespace, creation).await {
            Ok(t) => {
                tracing::info!(catalog = %target.catalog, namespace = %target.namespace, table = %target.table, "table created");
                Ok(t)
            }
            Err(e) if e.kind() == ErrorKind::TableAlreadyExists => {
                self.load(target).await?.ok_or_else(|| TableError::NoSuchTable(target.table.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Adds `fields` (new columns, all nullable) to the table; returns it as it is after.
    pub async fn add_columns(
        &self,
        target: &TableTarget,
        table: &Table,
        fields: &[FieldSpec],
    ) -> Result<Table, TableError> {
        let catalog = self.catalog(&target.catalog).await?;
        let arrow = table_arrow_schema(fields)?;
        let mut action = Transaction::new(table).update_schema();
        for f in arrow.fields() {
            let ty = iceberg::arrow::arrow_type_to_type(f.data_type())?;
            action = action.add_column(AddColumn::optional(f.name(), ty));
        }
        let tx = action.apply(Transaction::new(table))?;
        Ok(tx.commit(catalog.as_ref()).await?)
    }

    /// Appends `batches` (rows in the table's current columns, [`arrow_schema`]) for `mark`,
    /// if the table's watermark of the mark's shard is still `expected`.
    pub async fn append(
        &self,
        target: &TableTarget,
        table: Table,
        mark: &Mark,
        expected: Option<u64>,
        batches: Vec<RecordBatch>,
    ) -> Result<Appended, TableError> {
        let catalog = self.catalog(&target.catalog).await?;
        let columns = arrow_schema(&table)?;
        if batches.iter().any(|b| !same_columns(b.schema_ref(), &columns)) {
            return Err(TableError::SchemaChanged);
        }
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let files = write_data_files(&table, target.compression, batches).await?;
        let mut summary = HashMap::from([
            ("sluice.source".to_owned(), mark.source.clone()),
            ("sluice.shard".to_owned(), mark.shard.to_string()),
            ("sluice.first-sequence-number".to_owned(), mark.first.to_string()),
            ("sluice.last-sequence-number".to_owned(), mark.last.to_string()),
        ]);
        summary.insert("sluice.rows".to_owned(), rows.to_string());
        let mut table = table;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if watermark(&table, &mark.key) != expected {
                delete_files(&table, &files).await;
                return Ok(Appended::Superseded { watermark: watermark(&table, &mark.key) });
            }
            let base = without_commit_retries(&table)?;
            let tx = Transaction::new(&base);
            let tx = tx
                .fast_append()
                .add_data_files(files.clone())
                .set_snapshot_properties(summary.clone())
                .with_check_duplicate(false)
                .apply(tx)?;
            let tx = tx.update_table_properties().set(mark.key.clone(), mark.last.to_string()).apply(tx)?;
            let pinned = PinnedCatalog::new(catalog.clone(), base);
            match tx.commit(&pinned).await {
                Ok(committed) => {
                    self.expire_snapshots(target, &committed).await;
                    let bytes = files.iter().map(|f| f.file_size_in_bytes()).sum();
                    return Ok(Appended::Committed { rows, files: files.len(), bytes });
                }
                Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts && attempt < COMMIT_ATTEMPTS_MAX => {
                    tracing::debug!(table = %target.table, attempt, "commit conflict; reloading the table");
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
                    table = self.load(target).await?.ok_or_else(|| TableError::NoSuchTable(target.table.clone()))?;
                }
                Err(e) => {
                    delete_files(&table, &files).await;
                    return Err(e.into());
                }
            }
        }
    }
}

/// The table of a Firehose Iceberg destination: its first `DestinationTableConfiguration`
/// in catalog `sluice` (the SQL catalog's name; a REST catalog is addressed by its URL).
/// Tables Sluice creates live under `WarehouseLocation` (default `s3://<S3Configuration
/// bucket>/iceberg`) at `<warehouse>/<database>.db/<table>`, as Glue lays them out.
pub fn firehose_target(d: &IcebergDestination, lake: &Lake) -> Result<TableTarget, String> {
    let t = d
        .destination_table_configuration_list
        .first()
        .ok_or("DestinationTableConfigurationList must name the destination table.")?;
    let warehouse = match d.catalog_configuration.warehouse_location.as_deref() {
        Some(w) => w.to_owned(),
        None => {
            let bucket =
                d.s3_configuration.bucket().ok_or("S3Configuration.BucketARN is not a valid S3 bucket ARN.")?;
            format!("s3://{bucket}/iceberg")
        }
    };
    let rest = warehouse
        .strip_prefix("s3://")
        .ok_or_else(|| format!("WarehouseLocation '{warehouse}' must start with s3://"))?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    crate::lake::check_bucket_name(bucket)?;
    let key = format!("{}/{}.db/{}", path.trim_matches('/'), t.destination_database_name, t.destination_table_name);
    let location = storage::location(lake, bucket, key.trim_start_matches('/')).map_err(|e| e.to_string())?;
    let partitions = t
        .partition_spec
        .as_ref()
        .map(|p| {
            let identity = p.identity.iter().map(|f| (f.source_name.clone(), Transform::Identity));
            identity.chain(p.time_hour.iter().map(|f| (f.source_name.clone(), Transform::Hour))).collect()
        })
        .unwrap_or_default();
    // A table bucket (`arn:aws:s3tables:...:bucket/<name>`) is a catalog of its own.
    let catalog = d
        .catalog_configuration
        .catalog_arn
        .as_deref()
        .filter(|a| a.contains(":s3tables:"))
        .and_then(|a| a.split_once(":bucket/"))
        .map_or(FIREHOSE_CATALOG, |(_, b)| b);
    let compression = compression(d.compression.as_deref())
        .ok_or_else(|| format!("CompressionType '{:?}' is not supported.", d.compression))?;
    Ok(TableTarget {
        catalog: catalog.to_owned(),
        namespace: t.destination_database_name.clone(),
        table: t.destination_table_name.clone(),
        location,
        create: d.table_creation_configuration.is_some_and(|c| c.enabled),
        partitions,
        compression,
    })
}

/// The catalog name Firehose Iceberg destinations use.
pub const FIREHOSE_CATALOG: &str = "sluice";

impl Tables {
    /// Expires the table's snapshots older than the retention (keeping the newest
    /// [`TablesConfig::min_snapshots_to_keep`]) and removes their manifest lists, which no
    /// other snapshot reads. Best effort: a failure (a concurrent commit) waits for the next
    /// commit.
    async fn expire_snapshots(&self, target: &TableTarget, table: &Table) {
        let md = table.metadata();
        let now = chrono::Utc::now().timestamp_millis();
        let cutoff = now.saturating_sub(i64::try_from(self.config.snapshot_retention_ms).unwrap_or(i64::MAX));
        let keep = self.config.min_snapshots_to_keep.max(1);
        if md.snapshots().len() <= keep || !md.snapshots().any(|s| s.timestamp_ms() < cutoff) {
            return;
        }
        let before: HashMap<i64, String> =
            md.snapshots().map(|s| (s.snapshot_id(), s.manifest_list().to_owned())).collect();
        let result = async {
            let catalog = self.catalog(&target.catalog).await?;
            let base = without_commit_retries(table)?;
            let tx = Transaction::new(&base);
            let tx = tx.expire_snapshots().expire_older_than_ms(cutoff).retain_last(keep).apply(tx)?;
            let pinned = PinnedCatalog::new(catalog, base);
            Ok::<Table, TableError>(tx.commit(&pinned).await?)
        }
        .await;
        match result {
            Ok(after) => {
                let kept: std::collections::HashSet<i64> =
                    after.metadata().snapshots().map(|s| s.snapshot_id()).collect();
                let expired: Vec<&String> =
                    before.iter().filter(|(id, _)| !kept.contains(id)).map(|(_, l)| l).collect();
                for list in &expired {
                    if let Err(e) = after.file_io().delete(list.as_str()).await {
                        tracing::warn!(file = %list, error = %e, "could not remove an expired snapshot's manifest list");
                    }
                }
                tracing::debug!(table = %target.table, expired = expired.len(), "snapshots expired");
            }
            Err(e) => tracing::debug!(table = %target.table, error = %e, "snapshot expiry skipped"),
        }
    }
}

/// The table's watermark `key`: the last sequence number committed of that source shard.
pub fn watermark(table: &Table, key: &str) -> Option<u64> {
    table.metadata().properties().get(key).and_then(|v| v.parse().ok())
}

/// The Arrow schema of the table's current columns, with Iceberg's field ids: what records
/// are converted to.
pub fn arrow_schema(table: &Table) -> Result<SchemaRef, TableError> {
    Ok(Arc::new(schema_to_arrow_schema(table.metadata().current_schema())?))
}

/// The id of the table's current schema.
pub fn schema_id(table: &Table) -> i32 {
    table.metadata().current_schema_id()
}

/// Whether the table has a column named `name`.
pub fn has_column(table: &Table, name: &str) -> bool {
    table.metadata().current_schema().field_by_name(name).is_some()
}

fn same_columns(a: &ArrowSchema, b: &ArrowSchema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type() && x.is_nullable() == y.is_nullable())
}

/// The Arrow schema of columns declared as Glue types, in the forms Iceberg keeps:
/// timestamps in microseconds (UTC), `tinyint`/`smallint` as `int`, `float` as is.
fn table_arrow_schema(fields: &[FieldSpec]) -> Result<ArrowSchema, TableError> {
    let arrow = crate::schema::to_arrow(fields).map_err(|e| TableError::Config(e.to_string()))?;
    let fields: Vec<Field> =
        arrow.fields().iter().map(|f| f.as_ref().clone().with_data_type(iceberg_form(f.data_type()))).collect();
    Ok(ArrowSchema::new(fields))
}

fn iceberg_form(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(_, Some(_)) => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Int8 | DataType::Int16 => DataType::Int32,
        DataType::List(item) => {
            DataType::List(Arc::new(item.as_ref().clone().with_data_type(iceberg_form(item.data_type()))))
        }
        DataType::Struct(children) => DataType::Struct(
            children.iter().map(|c| c.as_ref().clone().with_data_type(iceberg_form(c.data_type()))).collect(),
        ),
        other => other.clone(),
    }
}

fn codec_name(c: Compression) -> &'static str {
    match c {
        Compression::ZSTD(_) => "zstd",
        Compression::SNAPPY => "snappy",
        Compression::GZIP(_) => "gzip",
        _ => "uncompressed",
    }
}

/// Compression of data files by Firehose's / Kinesis' name: `ZSTD` (default), `SNAPPY`,
/// `NONE`/`UNCOMPRESSED`, `GZIP`.
pub fn compression(name: Option<&str>) -> Option<Compression> {
    Some(match name.unwrap_or("ZSTD").to_ascii_uppercase().as_str() {
        "ZSTD" => Compression::ZSTD(ZstdLevel::default()),
        "SNAPPY" => Compression::SNAPPY,
        "NONE" | "UNCOMPRESSED" => Compression::UNCOMPRESSED,
        "GZIP" => Compression::GZIP(Default::default()),
        _ => return None,
    })
}

/// The table with commit retries off: retries are [`Tables::append`]'s, each one checking
/// the watermark again.
fn without_commit_retries(table: &Table) -> Result<Table, TableError> {
    let location = table.metadata_location().map(str::to_owned);
    let metadata = table
        .metadata()
        .clone()
        .into_builder(location.clone())
        .set_properties(HashMap::from([("commit.retry.num-retries".to_owned(), "0".to_owned())]))?
        .build()?
        .metadata;
    let mut b = Table::builder()
        .file_io(table.file_io().clone())
        .metadata(metadata)
        .identifier(table.identifier().clone())
        .runtime(iceberg::Runtime::try_current()?);
    if let Some(l) = location {
        b = b.metadata_location(l);
    }
    Ok(b.build()?)
}

async fn write_data_files(
    table: &Table,
    compression: Compression,
    batches: Vec<RecordBatch>,
) -> Result<Vec<DataFile>, TableError> {
    let md = table.metadata();
    let schema = md.current_schema().clone();
    let properties = WriterProperties::builder()
        .set_compression(compression)
        .set_created_by(concat!("sluice ", env!("CARGO_PKG_VERSION")).into())
        .build();
    let parquet = ParquetWriterBuilder::new(properties, schema.clone());
    let locations = DefaultLocationGenerator::new(md)?;
    // Unique per delivery attempt: file names never repeat, so no write replaces another's.
    let names = DefaultFileNameGenerator::new(uuid::Uuid::now_v7().to_string(), None, DataFileFormat::Parquet);
    let rolling = RollingFileWriterBuilder::new(parquet, TARGET_FILE_BYTES, table.file_io().clone(), locations, names);
    let builder = DataFileWriterBuilder::new(rolling);
    let spec = md.default_partition_spec().clone();
    if spec.is_unpartitioned() {
        let mut w = builder.build(None).await?;
        for b in batches {
            w.write(b).await?;
        }
        return Ok(w.close().await?);
    }
    let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?;
    let mut w = FanoutWriter::new(builder);
    for b in &batches {
        for (key, part) in splitter.split(b)? {
            w.write(key, part).await?;
        }
    }
    Ok(w.close().await?)
}

/// Removes data files a commit did not take (best effort: an orphan is only wasted space).
async fn delete_files(table: &Table, files: &[DataFile]) {
    for f in files {
        if let Err(e) = table.file_io().delete(f.file_path()).await {
            tracing::warn!(file = f.file_path(), error = %e, "could not remove an uncommitted data file");
        }
    }
}
