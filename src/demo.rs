//! `sluice demo`: the whole pipeline on the real datasets, on an embedded default.
//!
//! Starts Sluice in this process (data in `./sluice-data`, lake in `./lake`), creates the
//! `clickstream` (4 shards) and `telemetry` (4 shards) streams and a delivery stream for each
//! with its example WASM transform and Parquet conversion, replays the two datasets through
//! the Kinesis API over HTTP (signed requests, partition keys preserved: the editor for edits,
//! the station for readings), waits until every record is delivered, dropped or failed,
//! replays the edits once more into a `replay/` prefix, and reads the Parquet back.
//! Running it again starts from scratch: it deletes its own streams, delivery streams and
//! lake bucket first.
//!
//! Everything it runs on is in the binary: the datasets (11 MB, gzip), their schemas, and the
//! example transforms built at build time (`sluice_transforms::EXAMPLE_TRANSFORMS`); it
//! writes the schemas and transforms under `<data_dir>/demo/` to point the server at them.
//! So it runs the same from the source tree, an installed binary or the container image,
//! with no Rust toolchain and no repository (issue 17).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use sluice_engine::SystemClock;
use sluice_firehose::metrics::{ErrorLabel, Metrics};

use crate::client::{KinesisClient, PutEntry};
use crate::config::{Config, Throttle};

/// The bucket the demo lands in: `<lake>/demo/`.
pub const BUCKET: &str = "demo";
/// Records per `PutRecords` request.
pub const PUT_BATCH: usize = 500;
/// `PutRecords` requests in flight at once.
pub const PUTS_IN_FLIGHT: usize = 4;

/// What the demo runs on.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stream data (default `./sluice-data`).
    pub data_dir: PathBuf,
    /// The lake folder (default `./lake`); the demo writes its bucket `demo/` there.
    pub lake_dir: PathBuf,
    /// Records of each dataset to replay (`None`: all of them).
    pub records: Option<usize>,
    /// Draw progress bars.
    pub progress: bool,
}

/// One dataset's journey.
#[derive(Debug, Clone, Default)]
pub struct DatasetReport {
    /// Stream name.
    pub stream: String,
    /// Delivery stream name.
    pub delivery_stream: String,
    /// Records put.
    pub records_in: u64,
    /// Bytes of record data put.
    pub bytes_in: u64,
    /// Seconds the replay through the API took.
    pub put_seconds: f64,
    /// Records the transform dropped.
    pub dropped: u64,
    /// Records sent to the error prefix.
    pub failed: u64,
    /// Where failed records are.
    pub error_prefix: PathBuf,
    /// Parquet rows landed, by partition folder.
    pub rows_by_partition: BTreeMap<String, u64>,
}

impl DatasetReport {
    /// Rows landed in all partitions.
    pub fn rows(&self) -> u64 {
        self.rows_by_partition.values().sum()
    }
}

/// What the demo did.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// Per dataset.
    pub datasets: Vec<DatasetReport>,
    /// Records and objects of the replay into `replay/`.
    pub replay: sluice_firehose::replay::ReplayReport,
    /// Seconds from start to everything landed.
    pub seconds: f64,
    /// The lake bucket folder.
    pub lake: PathBuf,
    /// The telemetry as an Iceberg table.
    pub table: TableReport,
}

/// The telemetry landed as the Iceberg table `telemetry.readings` (catalog `sluice`).
#[derive(Debug, Clone, Default)]
pub struct TableReport {
    /// Rows in its current snapshot.
    pub rows: u64,
    /// Records sent to its error prefix (`errors/telemetry-table/`).
    pub failed: u64,
    /// Snapshots committed.
    pub snapshots: usize,
    /// Its current metadata file (what DuckDB's `iceberg_scan` reads).
    pub metadata_location: String,
    /// The SQL catalog's SQLite file (what PyIceberg's `SqlCatalog` opens).
    pub catalog_file: PathBuf,
}

/// The delivery stream that lands the telemetry as an Iceberg table.
pub const TABLE_DELIVERY_STREAM: &str = "telemetry-table";

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// Starting the server failed.
    #[error(transparent)]
    Start(#[from] crate::StartError),
    /// A file could not be read or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A call to the API failed.
    #[error(transparent)]
    Api(#[from] crate::client::ClientError),
    /// Delivery did not finish.
    #[error("{0}")]
    Stuck(String),
    /// Reading the lake back failed.
    #[error("reading {path}: {message}")]
    Lake {
        /// The object.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The replay failed.
    #[error(transparent)]
    Replay(#[from] sluice_firehose::replay::ReplayError),
}

struct Dataset {
    stream: &'static str,
    delivery_stream: &'static str,
    /// The gzipped JSON Lines of `examples/data/`.
    gzip: &'static [u8],
    key_field: &'static str,
    prefix: &'static str,
}

const DATASETS: [Dataset; 2] = [
    Dataset {
        stream: "clickstream",
        delivery_stream: "clickstream-lake",
        gzip: include_bytes!("../examples/data/wikiticker-2015-09-12-sampled.json.gz"),
        key_field: "user",
        prefix: "clickstream",
    },
    Dataset {
        stream: "telemetry",
        delivery_stream: "telemetry-lake",
        gzip: include_bytes!("../examples/data/beijing_multisite_air_quality_2013_2017.jsonl.gz"),
        key_field: "station",
        prefix: "telemetry",
    },
];

/// The schemas of `examples/schemas/` the delivery streams convert with, by path under the
/// schema folder.
const SCHEMAS: [(&str, &str); 3] = [
    ("beijing/air_quality.json", include_str!("../examples/schemas/beijing/air_quality.json")),
    ("beijing/air_quality_normalised.json", include_str!("../examples/schemas/beijing/air_quality_normalised.json")),
    ("wikipedia/edits.json", include_str!("../examples/schemas/wikipedia/edits.json")),
];

/// Writes the embedded schemas and example transforms under `dir`; returns the schema and
/// transform folders.
fn write_assets(dir: &Path) -> Result<(PathBuf, PathBuf), DemoError> {
    let (schemas, transforms) = (dir.join("schemas"), dir.join("transforms"));
    for (name, text) in SCHEMAS {
        let path = schemas.join(name);
        let parent = path.parent().expect("a schema path has a folder");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        std::fs::write(&path, text).map_err(io(&path))?;
    }
    sluice_transforms::write_example_transforms(&transforms).map_err(io(&transforms))?;
    Ok((schemas, transforms))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io { path: path.to_owned(), source }
}

/// The `CreateDeliveryStream` request of a dataset's delivery stream.
fn delivery_request(d: &Dataset) -> serde_json::Value {
    let lambda = |name: &str| json!({"Type": "Lambda", "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": format!("{name}.wasm")}]});
    let (processors, prefix, table) = if d.stream == "clickstream" {
        (vec![lambda("clickstream")], "clickstream/channel=!{partitionKeyFromLambda:channel}/", ("wikipedia", "edits"))
    } else {
        let query = json!({"Type": "MetadataExtraction", "Parameters": [
            {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{station: .station}"},
            {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]});
        (
            vec![lambda("telemetry"), query],
            "telemetry/station=!{partitionKeyFromQuery:station}/",
            ("beijing", "air_quality_normalised"),
        )
    };
    json!({
        "DeliveryStreamName": d.delivery_stream,
        "DeliveryStreamType": "KinesisStreamAsSource",
        "KinesisStreamSourceConfiguration": {
            "KinesisStreamARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{}", d.stream),
            "RoleARN": "arn:aws:iam::000000000000:role/sluice",
        },
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/sluice",
            "BucketARN": format!("arn:aws:s3:::{BUCKET}"),
            "Prefix": prefix,
            "ErrorOutputPrefix": format!("errors/{}/!{{firehose:error-output-type}}/", d.prefix),
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 2},
            "DynamicPartitioningConfiguration": {"Enabled": true},
            "ProcessingConfiguration": {"Enabled": true, "Processors": processors},
            "DataFormatConversionConfiguration": {
                "Enabled": true,
                "SchemaConfiguration": {"DatabaseName": table.0, "TableName": table.1},
                "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}},
            },
        },
    })
}

/// The `CreateDeliveryStream` request of the telemetry's Iceberg table: the readings as they
/// are (columns inferred from the first buffer), partitioned by station.
fn table_request() -> serde_json::Value {
    json!({
        "DeliveryStreamName": TABLE_DELIVERY_STREAM,
        "DeliveryStreamType": "KinesisStreamAsSource",
        "KinesisStreamSourceConfiguration": {
            "KinesisStreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/telemetry",
            "RoleARN": "arn:aws:iam::000000000000:role/sluice",
        },
        "IcebergDestinationConfiguration": {
            "RoleARN": "arn:aws:iam::000000000000:role/sluice",
            "CatalogConfiguration": {"WarehouseLocation": format!("s3://{BUCKET}/warehouse")},
            "S3Configuration": {
                "RoleARN": "arn:aws:iam::000000000000:role/sluice",
                "BucketARN": format!("arn:aws:s3:::{BUCKET}"),
                "ErrorOutputPrefix": "errors/telemetry-table/!{firehose:error-output-type}/",
            },
            "DestinationTableConfigurationList": [{
                "DestinationDatabaseName": "telemetry",
                "DestinationTableName": "readings",
                "PartitionSpec": {"Identity": [{"SourceName": "station"}]},
            }],
            "TableCreationConfiguration": {"Enabled": true},
            "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 2},
        },
    })
}

/// The first `limit` lines of a gzipped dataset.
fn read_lines(gzip: &[u8], limit: Option<usize>) -> Vec<Vec<u8>> {
    std::io::BufReader::new(flate2::read::GzDecoder::new(gzip))
        .split(b'\n')
        .take(limit.unwrap_or(usize::MAX))
        .map(|l| l.expect("the embedded datasets are valid gzip"))
        .collect()
}

fn bar(multi: &MultiProgress, len: u64, what: &str) -> ProgressBar {
    let b = multi.add(ProgressBar::new(len));
    b.set_style(
        ProgressStyle::with_template("{prefix:>26} [{bar:40}] {pos:>7}/{len:7} {per_sec:>12} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    b.set_prefix(what.to_owned());
    b
}

/// Puts `records` into `stream` with [`PUTS_IN_FLIGHT`] requests in flight, retrying
/// entries that fail.
async fn put_all(
    client: &KinesisClient,
    stream: &str,
    records: Arc<Vec<(String, Vec<u8>)>>,
    bar: &ProgressBar,
) -> Result<(), DemoError> {
    let chunks: Vec<std::ops::Range<usize>> =
        (0..records.len()).step_by(PUT_BATCH).map(|s| s..(s + PUT_BATCH).min(records.len())).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for range in chunks {
        if tasks.len() >= PUTS_IN_FLIGHT {
            tasks.join_next().await.expect("a task").expect("put tasks do not panic")?;
        }
        let (client, records, stream, bar) = (client.clone(), records.clone(), stream.to_owned(), bar.clone());
        tasks.spawn(async move {
            let mut pending: Vec<usize> = range.collect();
            while !pending.is_empty() {
                let entries: Vec<PutEntry<'_>> =
                    pending.iter().map(|&i| PutEntry { partition_key: &records[i].0, data: &records[i].1 }).collect();
                let failed = client.put_records(&stream, &entries).await?;
                bar.inc((pending.len() - failed.len()) as u64);
                pending = failed.into_iter().map(|(i, _)| pending[i]).collect();
                if !pending.is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok::<(), crate::client::ClientError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("put tasks do not panic")?;
    }
    Ok(())
}

/// Parquet rows under `dir`, by the first folder below it (the partition).
fn rows_by_partition(dir: &Path) -> Result<BTreeMap<String, u64>, DemoError> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut rows = BTreeMap::new();
    for f in files {
        let lake_err = |message: String| DemoError::Lake { path: f.clone(), message };
        let file = std::fs::File::open(&f).map_err(io(&f))?;
        let reader = parquet::file::reader::SerializedFileReader::new(file).map_err(|e| lake_err(e.to_string()))?;
        let n = parquet::file::reader::FileReader::metadata(&reader).file_metadata().num_rows() as u64;
        let partition = f
            .strip_prefix(dir)
            .ok()
            .and_then(|p| p.components().next())
            .map_or_else(String::new, |c| c.as_os_str().to_string_lossy().into_owned());
        *rows.entry(partition).or_default() += n;
    }
    Ok(rows)
}

fn counter(metrics: &Metrics, name: &str) -> (u64, u64, u64) {
    let label = Metrics::label(name);
    let failed: u64 = ["processing-failed", "format-conversion-failed", sluice_firehose::worker::S3_FAILED]
        .iter()
        .map(|t| {
            metrics
                .failed_records
                .get_or_create(&ErrorLabel { delivery_stream: name.into(), error_output_type: (*t).into() })
                .get()
        })
        .sum();
    (metrics.delivered_records.get_or_create(&label).get(), metrics.dropped_records.get_or_create(&label).get(), failed)
}

/// Runs the demo.
pub async fn run(options: &DemoOptions) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let multi = MultiProgress::with_draw_target(if options.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let spinner = multi.add(ProgressBar::new_spinner());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner.set_message("starting Sluice");
    let (schema_dir, transform_dir) = write_assets(&options.data_dir.join("demo"))?;
    let bucket = options.lake_dir.join(BUCKET);
    if bucket.exists() {
        std::fs::remove_dir_all(&bucket).map_err(io(&bucket))?;
    }
    let config = Config {
        bind: "127.0.0.1:0".parse().expect("an address"),
        data_dir: options.data_dir.clone(),
        throttle: Throttle::Off,
        stream_transition_ms: 0,
        lake: sluice_firehose::LakeConfig {
            url: format!("file://{}", options.lake_dir.display()),
            ..Default::default()
        },
        schema_dir,
        transform_dir,
        ..Config::default()
    };
    let state = crate::open_state(&config, Arc::new(SystemClock))?;
    let listener = tokio::net::TcpListener::bind(config.bind).await.map_err(io(Path::new("127.0.0.1:0")))?;
    let addr = listener.local_addr().map_err(io(Path::new("127.0.0.1:0")))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let key = &config.access_keys[0];
    let client =
        KinesisClient::new(&format!("http://{addr}"), &config.region, &key.access_key_id, &key.secret_access_key);

    spinner.set_message("creating streams and delivery streams");
    for d in &DATASETS {
        let _ = client.firehose("DeleteDeliveryStream", &json!({"DeliveryStreamName": d.delivery_stream})).await;
        let _ = client.kinesis("DeleteStream", &json!({"StreamName": d.stream})).await;
        client.kinesis("CreateStream", &json!({"StreamName": d.stream, "ShardCount": 4})).await?;
        client.firehose("CreateDeliveryStream", &delivery_request(d)).await?;
    }
    let _ = client.firehose("DeleteDeliveryStream", &json!({"DeliveryStreamName": TABLE_DELIVERY_STREAM})).await;
    client.firehose("CreateDeliveryStream", &table_request()).await?;
    // A table from an earlier run goes with its files (removed with the bucket above).
    let tables = state.firehose.delivery_streams.context().tables.clone();
    let table_target = table_target(&tables)?;
    if let Ok(catalog) = tables.catalog(&table_target.catalog).await {
        if let Ok(ident) = iceberg::TableIdent::from_strs(["telemetry", "readings"]) {
            let _ = catalog.drop_table(&ident).await;
        }
    }
    spinner.finish_and_clear();

    let mut report = DemoReport { lake: bucket.clone(), ..DemoReport::default() };
    let mut puts = Vec::new();
    for d in &DATASETS {
        let lines = read_lines(d.gzip, options.records);
        let records: Vec<(String, Vec<u8>)> = lines
            .into_iter()
            .map(|l| {
                let key = serde_json::from_slice::<serde_json::Value>(&l)
                    .ok()
                    .and_then(|v| v[d.key_field].as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into());
                (key, l)
            })
            .collect();
        let r = DatasetReport {
            stream: d.stream.into(),
            delivery_stream: d.delivery_stream.into(),
            records_in: records.len() as u64,
            bytes_in: records.iter().map(|(_, l)| l.len() as u64).sum(),
            error_prefix: bucket.join("errors").join(d.prefix),
            ..DatasetReport::default()
        };
        let b = bar(&multi, r.records_in, &format!("put {}", d.stream));
        puts.push((Arc::new(records), b));
        report.datasets.push(r);
    }
    // Both datasets at once, as two producers would.
    let mut producers = tokio::task::JoinSet::new();
    for (i, (records, b)) in puts.into_iter().enumerate() {
        let (client, stream) = (client.clone(), DATASETS[i].stream);
        producers.spawn(async move {
            let t = Instant::now();
            put_all(&client, stream, records, &b).await?;
            b.finish();
            Ok::<(usize, f64), DemoError>((i, t.elapsed().as_secs_f64()))
        });
    }
    while let Some(r) = producers.join_next().await {
        let (i, secs) = r.expect("producers do not panic")?;
        report.datasets[i].put_seconds = secs;
    }

    // Wait until every record is delivered, dropped or failed.
    let metrics = state.firehose.delivery_streams.context().metrics.clone();
    let bars: Vec<ProgressBar> =
        report.datasets.iter().map(|r| bar(&multi, r.records_in, &format!("deliver {}", r.delivery_stream))).collect();
    let telemetry_in = report.datasets[1].records_in;
    let table_bar = bar(&multi, telemetry_in, &format!("deliver {TABLE_DELIVERY_STREAM}"));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut done = true;
        for (r, b) in report.datasets.iter_mut().zip(&bars) {
            let (delivered, dropped, failed) = counter(&metrics, &r.delivery_stream);
            b.set_position(delivered + dropped + failed);
            r.dropped = dropped;
            r.failed = failed;
            done &= delivered + dropped + failed >= r.records_in;
        }
        let (delivered, dropped, failed) = counter(&metrics, TABLE_DELIVERY_STREAM);
        table_bar.set_position(delivered + dropped + failed);
        done &= delivered + dropped + failed >= telemetry_in;
        if done {
            break;
        }
        if Instant::now() > deadline {
            return Err(DemoError::Stuck("delivery did not finish within 10 minutes".into()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for b in &bars {
        b.finish();
    }
    table_bar.finish();
    report.seconds = started.elapsed().as_secs_f64();
    report.table = table_report(&tables, &table_target).await?;
    report.table.failed = counter(&metrics, TABLE_DELIVERY_STREAM).2;

    // Replay: every edit again, into replay/.
    let source = state.kinesis.streams.get("clickstream").expect("created above");
    let replay_bar = bar(&multi, report.datasets[0].records_in, "replay clickstream");
    let request = sluice_firehose::replay::ReplayRequest {
        delivery_stream: "clickstream-lake".into(),
        from: sluice_firehose::replay::ReplayPoint::Timestamp(0),
        to: None,
        prefix: Some("replay/clickstream/channel=!{partitionKeyFromLambda:channel}/".into()),
        shards: Vec::new(),
        lambda_arn: None,
        schema: None,
        error_prefix: None,
    };
    report.replay = sluice_firehose::replay::replay(&state.firehose.delivery_streams, &source, &request, &|n| {
        replay_bar.set_position(n)
    })
    .await?;
    replay_bar.finish();

    let _ = stop.send(());
    let _ = server.await;
    drop(state);
    for (r, d) in report.datasets.iter_mut().zip(&DATASETS) {
        r.rows_by_partition = rows_by_partition(&bucket.join(d.prefix))?;
    }
    Ok(report)
}

fn table_target(tables: &sluice_firehose::table::Tables) -> Result<sluice_firehose::table::TableTarget, DemoError> {
    let spec: sluice_firehose::spec::IcebergDestination =
        serde_json::from_value(table_request()["IcebergDestinationConfiguration"].clone())
            .map_err(|e| DemoError::Stuck(e.to_string()))?;
    sluice_firehose::table::firehose_target(&spec, tables.lake()).map_err(DemoError::Stuck)
}

async fn table_report(
    tables: &sluice_firehose::table::Tables,
    target: &sluice_firehose::table::TableTarget,
) -> Result<TableReport, DemoError> {
    let lake_err = |message: String| DemoError::Lake { path: tables.sql_catalog_file(), message };
    let table = tables.load(target).await.map_err(|e| lake_err(e.to_string()))?;
    let table = table.ok_or_else(|| lake_err("the table telemetry.readings was not created".into()))?;
    let rows = table
        .metadata()
        .current_snapshot()
        .and_then(|s| s.summary().additional_properties.get("total-records").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let snapshots = table.metadata().snapshots().len();
    Ok(TableReport {
        rows,
        failed: 0,
        snapshots,
        metadata_location: table.metadata_location().unwrap_or_default().to_owned(),
        catalog_file: std::fs::canonicalize(tables.sql_catalog_file()).unwrap_or_else(|_| tables.sql_catalog_file()),
    })
}

/// The summary a person reads after the demo.
pub fn summary(r: &DemoReport) -> String {
    let mut s = String::new();
    for d in &r.datasets {
        let mb = d.bytes_in as f64 / 1e6;
        s.push_str(&format!(
            "\n{} → {} (delivery stream {})\n  records in      {:>9}  ({mb:.1} MB put in {:.1} s: {:.0} records/s, {:.1} MB/s over HTTP)\n  dropped         {:>9}  (by the transform)\n  failed          {:>9}  → {}\n  rows landed     {:>9}  in {} partitions (Parquet, SNAPPY)\n",
            d.stream,
            r.lake.join(&d.stream).display(),
            d.delivery_stream,
            d.records_in,
            d.put_seconds,
            d.records_in as f64 / d.put_seconds.max(1e-9),
            mb / d.put_seconds.max(1e-9),
            d.dropped,
            d.failed,
            d.error_prefix.display(),
            d.rows(),
            d.rows_by_partition.len(),
        ));
        let mut top: Vec<(&String, &u64)> = d.rows_by_partition.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        for (p, n) in top.iter().take(5) {
            s.push_str(&format!("    {p:<40} {n:>9} rows\n"));
        }
        if top.len() > 5 {
            s.push_str(&format!("    … and {} more partitions\n", top.len() - 5));
        }
    }
    let total: u64 = r.datasets.iter().map(|d| d.records_in).sum();
    s.push_str(&format!(
        "\nreplay  clickstream → replay/clickstream/: {} records read, {} objects written (re-running writes the same keys)\n",
        r.replay.records, r.replay.objects
    ));
    s.push_str(&format!(
        "\n{total} records in, landed in {:.1} s end to end ({:.0} records/s).\n\nNext, query the lake with DuckDB:\n  duckdb -c \"SELECT station, round(avg(\\\"PM2.5\\\"), 1) AS pm25, count(*) AS readings FROM read_parquet('{}/telemetry/**/*.parquet', hive_partitioning = true) GROUP BY station ORDER BY pm25 DESC\"\n",
        r.seconds,
        total as f64 / r.seconds.max(1e-9),
        r.lake.display()
    ));
    s.push_str(&format!(
        "\ntelemetry → Iceberg table telemetry.readings (delivery stream {TABLE_DELIVERY_STREAM}): {} rows in {} snapshots, partitioned by station; {} failed (errors/telemetry-table/)\n",
        r.table.rows, r.table.snapshots, r.table.failed,
    ));
    s.push_str(&format!(
        "Query it with PyIceberg (pip install 'pyiceberg[sql-sqlite,pyarrow]'):\n  python3 -c \"from pyiceberg.catalog.sql import SqlCatalog; t = SqlCatalog('sluice', uri='sqlite:///{}').load_table('telemetry.readings'); print(t.scan(selected_fields=('station', 'PM2.5')).to_arrow().group_by('station').aggregate([('PM2.5', 'mean')]))\"\n",
        r.table.catalog_file.display(),
    ));
    s.push_str(&format!(
        "or with DuckDB's iceberg extension:\n  duckdb -c \"INSTALL iceberg; LOAD iceberg; SELECT station, round(avg(\\\"PM2.5\\\"), 1) AS pm25, count(*) AS readings FROM iceberg_scan('{}') GROUP BY station ORDER BY pm25 DESC\"\n",
        r.table.metadata_location,
    ));
    s
}
