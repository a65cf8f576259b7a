//! The `sluice` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sluice::config::Config;
use sluice::demo::DemoOptions;
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::SystemClock;
use sluice_firehose::replay::{ReplayPoint, ReplayRequest};

// glibc's malloc kept about 30 MiB of freed request buffers in each of its per-thread arenas
// (345 MiB resident after an 8 s ingest of 1 KiB records). jemalloc, with a background thread
// returning pages a second after they are freed, held 21 MiB after the same run.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts: [`sluice::JEMALLOC_CONF`].
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = sluice::JEMALLOC_CONF;

/// The server state on the configured data directory, or the failure exit after saying why.
fn open_state(cfg: &Config) -> Result<Arc<sluice::server::AppState>, ExitCode> {
    sluice::open_state(cfg, Arc::new(SystemClock)).map_err(|e| {
        eprintln!("cannot open {}: {e}", cfg.data_dir.display());
        ExitCode::FAILURE
    })
}

/// Sluice: Kinesis Data Streams and Firehose, on your own machines.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Kinesis API (JSON 1.1 over HTTP/1.1 and h2c).
    Serve {
        /// TOML configuration file (see deploy/sluice.toml); defaults apply without one.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, overriding the config (default 127.0.0.1:4567).
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// Data directory, overriding the config (default ./sluice-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve HTTPS with a local certificate authority and server certificate made under
        /// <data_dir>/tls/ (kept across restarts); prints the authority's path for clients
        /// (`aws --ca-bundle`). Overrides tls_cert and tls_key.
        #[arg(long)]
        tls_self_signed: bool,
    },
    /// Check that a configuration file parses and its settings fit together.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Run the whole pipeline on the real datasets: Kinesis streams, WASM transforms,
    /// Parquet in ./lake. Re-running starts from scratch.
    Demo {
        /// Records of each dataset to replay (default: all, 39,244 edits and 420,768 readings).
        #[arg(long)]
        records: Option<usize>,
        /// Data directory (default ./sluice-data).
        #[arg(long, default_value = "./sluice-data")]
        data_dir: PathBuf,
        /// Lake folder (default ./lake); the demo writes its bucket demo/ there.
        #[arg(long, default_value = "./lake")]
        lake: PathBuf,
    },
    /// Deliver a range of a stream again through a delivery stream (a new transform, a new
    /// prefix). With --endpoint the running server does it (and `replay list|watch|cancel`
    /// follow it); without, it opens a stopped server's data directory itself. Re-running
    /// it over the same range overwrites the same objects.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Replay {
        #[command(subcommand)]
        action: Option<sluice::reprocess_cli::TaskAction>,
        #[command(flatten)]
        args: ReplayArgs,
    },
    /// Put the records a delivery stream sent to its error output back (after a fix to its
    /// transform or schema), each error object exactly once, on the running server; `redrive
    /// list|watch|cancel` follow it.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Redrive {
        #[command(subcommand)]
        action: Option<sluice::reprocess_cli::TaskAction>,
        #[command(flatten)]
        args: RedriveArgs,
    },
    /// A cluster's state, read from etcd.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Print a stream's records as they arrive (text when printable, else base64), without
    /// checkpointing.
    Tail {
        /// The stream.
        #[arg(long)]
        stream: String,
        /// The server.
        #[arg(long, default_value = "http://127.0.0.1:4567")]
        endpoint: String,
        /// Start with the oldest retained records instead of new ones.
        #[arg(long)]
        from_start: bool,
        #[command(flatten)]
        signing: sluice::reprocess_cli::Signing,
    },
}

/// `sluice replay`'s range and options.
#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// The running server to replay on; without it, the data directory is opened (the
    /// server must be stopped).
    #[arg(long)]
    endpoint: Option<String>,
    #[command(flatten)]
    signing: sluice::reprocess_cli::Signing,
    /// TOML configuration file (the server's; offline only).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory, overriding the config (offline only).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The delivery stream whose configuration delivers the records.
    #[arg(long)]
    delivery_stream: Option<String>,
    /// The Kinesis stream to read (default: the delivery stream's source).
    #[arg(long)]
    stream: Option<String>,
    /// Start: an RFC 3339 time (2026-11-27T08:00:00Z) or a sequence number.
    #[arg(long)]
    from: Option<String>,
    /// End: a time (exclusive) or a sequence number (inclusive); default the end.
    #[arg(long)]
    to: Option<String>,
    /// Deliver under this prefix instead of the delivery stream's.
    #[arg(long)]
    prefix: Option<String>,
    /// Only these shards (shardId-000000000000,...).
    #[arg(long, value_delimiter = ',')]
    shards: Vec<String>,
    /// Send failures under this prefix (default with --prefix: its fixed part, then
    /// errors/<error output type>/).
    #[arg(long)]
    error_output_prefix: Option<String>,
    /// Transform with this Lambda ARN's component instead of the delivery stream's.
    #[arg(long)]
    lambda_arn: Option<String>,
    /// Convert with this schema table (DATABASE.TABLE, a file of the schema folder) instead of
    /// the delivery stream's.
    #[arg(long)]
    schema_table: Option<String>,
    /// Read at most this many records per second (server only).
    #[arg(long)]
    max_records_per_second: Option<u64>,
    /// Read at most this many bytes of records per second (server only).
    #[arg(long)]
    max_bytes_per_second: Option<u64>,
    /// Print the task's id and return; it goes on on the server.
    #[arg(long)]
    detach: bool,
}

/// `sluice redrive`'s selection.
#[derive(Debug, clap::Args)]
struct RedriveArgs {
    #[command(flatten)]
    connection: sluice::reprocess_cli::Connection,
    /// The delivery stream whose error output is read.
    #[arg(long)]
    delivery_stream: Option<String>,
    /// processing-failed, format-conversion-failed or s3-failed.
    #[arg(long)]
    error_output_type: Option<String>,
    /// Error objects written at or after this RFC 3339 time (default: all).
    #[arg(long)]
    from: Option<String>,
    /// Error objects written before this RFC 3339 time (default: now).
    #[arg(long)]
    to: Option<String>,
    /// Put the records into this Kinesis stream instead of back into the delivery stream.
    #[arg(long)]
    into_stream: Option<String>,
    /// Put back at most this many records per second.
    #[arg(long)]
    max_records_per_second: Option<u64>,
    /// Print the task's id and return; it goes on on the server.
    #[arg(long)]
    detach: bool,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// The live nodes: id, address, when each joined, version.
    Status {
        /// etcd client URLs (repeat or comma-separate).
        #[arg(long, required = true, value_delimiter = ',')]
        etcd: Vec<String>,
        /// The cluster's name (`[cluster] name`).
        #[arg(long, default_value = "sluice")]
        name: String,
        /// JSON (one object) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Moves every replica off a node (before it is removed): the cluster places each on
    /// another live node, the shard's leader catching it up first, and nothing new on this
    /// one. Waits until no shard has a replica on it, printing what is left.
    Drain {
        /// The node's id.
        node: String,
        /// etcd client URLs (repeat or comma-separate).
        #[arg(long, required = true, value_delimiter = ',')]
        etcd: Vec<String>,
        /// The cluster's name (`[cluster] name`).
        #[arg(long, default_value = "sluice")]
        name: String,
        /// Stop draining the node (replicas may move back to it to balance the load).
        #[arg(long)]
        cancel: bool,
        /// Return once the drain is asked for, without waiting.
        #[arg(long)]
        no_wait: bool,
    },
}

/// `sluice cluster drain`.
fn cluster_drain(etcd: &[String], name: &str, node: &str, cancel: bool, no_wait: bool) -> ExitCode {
    runtime().block_on(async {
        let etcd = sluice::cluster::Etcd::new(etcd);
        if !cancel {
            // A misspelled node would be "drained" at once (it holds nothing).
            let known = async {
                let members = sluice::cluster::nodes(&etcd, name).await?;
                let records = sluice::cluster::catalog::records(&etcd, name).await?;
                let holds = records.iter().flat_map(|r| &r.placement).any(|p| p.replicas.iter().any(|n| n == node));
                let others = members.iter().filter(|m| m.node_id != node).count();
                Ok::<_, sluice::cluster::EtcdError>((members.iter().any(|m| m.node_id == node) || holds, others))
            };
            match known.await {
                Ok((false, _)) => {
                    eprintln!("node {node} is no member of cluster {name} and holds no replica");
                    return ExitCode::FAILURE;
                }
                Ok((true, 0)) => eprintln!("no other node of cluster {name} is up to take node {node}'s replicas yet"),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if let Err(e) = sluice::cluster::catalog::set_draining(&etcd, name, node, !cancel).await {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
        if cancel {
            println!("node {node} is no longer being drained");
            return ExitCode::SUCCESS;
        }
        if no_wait {
            println!("node {node} is being drained");
            return ExitCode::SUCCESS;
        }
        let mut last = None;
        loop {
            let left = match sluice::cluster::catalog::records(&etcd, name).await {
                Ok(records) => {
                    records.iter().flat_map(|r| &r.placement).filter(|p| p.replicas.iter().any(|n| n == node)).count()
                }
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            if left == 0 {
                println!("node {node} holds no replica: drained");
                return ExitCode::SUCCESS;
            }
            if last != Some(left) {
                println!("node {node}: {left} replica{} left", if left == 1 { "" } else { "s" });
                last = Some(left);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    })
}

/// `sluice cluster status`.
fn cluster_status(etcd: &[String], name: &str, json: bool) -> ExitCode {
    runtime().block_on(async {
        let etcd = sluice::cluster::Etcd::new(etcd);
        let read = async {
            let nodes = sluice::cluster::nodes(&etcd, name).await?;
            let streams = sluice::cluster::catalog::records(&etcd, name).await?;
            let draining = sluice::cluster::catalog::draining(&etcd, name).await?;
            Ok::<_, sluice::cluster::EtcdError>((nodes, streams, draining))
        };
        let (nodes, streams, draining) = match read.await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        if json {
            let streams: Vec<serde_json::Value> = streams
                .iter()
                .map(|s| serde_json::json!({ "name": s.name, "shard_count": s.shard_count, "created_ms": s.created_ms, "shards": s.placement, "reshards": s.reshards }))
                .collect();
            println!("{}", serde_json::json!({ "cluster": name, "nodes": nodes, "streams": streams, "draining": draining }));
            return ExitCode::SUCCESS;
        }
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        println!("cluster {name}: {} node{}, {} stream{}", nodes.len(), plural(nodes.len()), streams.len(), plural(streams.len()));
        for n in &nodes {
            let joined = chrono::DateTime::from_timestamp_millis(n.joined_ms as i64)
                .map_or_else(|| n.joined_ms.to_string(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            let drain = if draining.contains(&n.node_id) { "\tdraining" } else { "" };
            println!("node {}\t{}\tjoined {joined}\tsluice {}{drain}", n.node_id, n.address, n.version);
        }
        for s in &streams {
            for (i, p) in s.placement.iter().enumerate() {
                let shard = sluice_engine::stream::shard_id(i as u32);
                let moving = p.leaving.as_ref().map_or_else(String::new, |n| format!("\tmoving off {n}"));
                let closing = if p.closing { "\tclosed by a resharding" } else { "" };
                println!("stream {}\t{shard}\tleader {} (epoch {})\treplicas {}{moving}{closing}", s.name, p.leader, p.epoch, p.replicas.join(","));
            }
        }
        ExitCode::SUCCESS
    })
}

/// How long `sluice serve` keeps trying to reach etcd to join its cluster before it gives up:
/// etcd may be starting beside it (one compose file, one pod).
const JOIN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

fn load_config(config: Option<PathBuf>) -> Result<Config, ExitCode> {
    config
        .map(|f| Config::load(&f))
        .transpose()
        .map(|c| c.unwrap_or_else(|| Config::default().with_env_keys()))
        .map_err(|e| {
            eprintln!("{e}");
            ExitCode::FAILURE
        })
}

fn replay_point(s: &str) -> Result<ReplayPoint, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(ReplayPoint::Timestamp(t.timestamp_millis().max(0) as u64));
    }
    s.parse::<SequenceNumber>()
        .map(ReplayPoint::Sequence)
        .map_err(|_| format!("'{s}' is neither an RFC 3339 time (2026-11-27T08:00:00Z) nor a sequence number"))
}

/// An RFC 3339 time as ms since the Unix epoch.
fn time_ms(s: &str) -> Result<u64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis().max(0) as u64)
        .map_err(|_| format!("'{s}' is not an RFC 3339 time (2026-11-27T08:00:00Z)"))
}

/// A point of a replay as the reprocessing API takes it: `<What>TimestampMs` or
/// `<What>SequenceNumber`.
fn point_json(what: &str, point: ReplayPoint, body: &mut serde_json::Map<String, serde_json::Value>) {
    match point {
        ReplayPoint::Timestamp(ms) => body.insert(format!("{what}TimestampMs"), ms.into()),
        ReplayPoint::Sequence(s) => body.insert(format!("{what}SequenceNumber"), s.to_string().into()),
    };
}

/// `--schema-table DATABASE.TABLE`, split.
fn schema_table(given: Option<&str>) -> Result<Option<(String, String)>, ExitCode> {
    match given.map(|t| t.split_once('.')) {
        None => Ok(None),
        Some(Some((db, table))) if !db.is_empty() && !table.is_empty() => Ok(Some((db.to_owned(), table.to_owned()))),
        Some(_) => {
            eprintln!("--schema-table takes DATABASE.TABLE");
            Err(ExitCode::FAILURE)
        }
    }
}

/// `sluice replay` with a range: on the server with --endpoint, else offline.
fn replay(args: ReplayArgs) -> ExitCode {
    let (Some(delivery_stream), Some(from)) = (args.delivery_stream.clone(), args.from.as_deref()) else {
        eprintln!("sluice replay needs --delivery-stream and --from (or list, watch, cancel)");
        return ExitCode::FAILURE;
    };
    let (from, to) = match (replay_point(from), args.to.as_deref().map(replay_point).transpose()) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(endpoint) = args.endpoint {
        let connection = sluice::reprocess_cli::Connection { endpoint, signing: args.signing };
        let mut body = serde_json::Map::new();
        body.insert("DeliveryStreamName".into(), delivery_stream.into());
        point_json("From", from, &mut body);
        if let Some(to) = to {
            point_json("To", to, &mut body);
        }
        let (database, table) = match schema_table(args.schema_table.as_deref()) {
            Ok(t) => t.unzip(),
            Err(code) => return code,
        };
        let named = [
            ("StreamName", args.stream),
            ("Prefix", args.prefix),
            ("ErrorOutputPrefix", args.error_output_prefix),
            ("LambdaArn", args.lambda_arn),
            ("SchemaDatabaseName", database),
            ("SchemaTableName", table),
        ];
        for (name, value) in named {
            if let Some(v) = value {
                body.insert(name.into(), v.into());
            }
        }
        if !args.shards.is_empty() {
            body.insert("ShardIds".into(), args.shards.into());
        }
        for (name, value) in
            [("MaxRecordsPerSecond", args.max_records_per_second), ("MaxBytesPerSecond", args.max_bytes_per_second)]
        {
            if let Some(v) = value {
                body.insert(name.into(), v.into());
            }
        }
        let body = serde_json::Value::Object(body);
        return runtime().block_on(sluice::reprocess_cli::start(&connection, "StartReplay", body, args.detach));
    }
    if args.max_records_per_second.is_some() || args.max_bytes_per_second.is_some() || args.detach {
        eprintln!("--max-records-per-second, --max-bytes-per-second and --detach need --endpoint");
        return ExitCode::FAILURE;
    }
    let shards = match args
        .shards
        .iter()
        .map(|id| sluice_engine::stream::parse_shard_id(id).ok_or_else(|| format!("'{id}' is not a shard id")))
        .collect::<Result<Vec<u32>, String>>()
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cfg = match load_config(args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    cfg.data_dir = args.data_dir.unwrap_or(cfg.data_dir);
    runtime().block_on(async move {
        let state = match open_state(&cfg) {
            Ok(s) => s,
            Err(code) => return code,
        };
        let streams = &state.firehose.delivery_streams;
        let schema = match schema_table(args.schema_table.as_deref()) {
            Ok(None) => None,
            Ok(Some((database_name, table_name))) => {
                match sluice_firehose::schema::load_table(&cfg.schema_dir, &database_name, &table_name) {
                    Ok(fields) => Some(sluice_firehose::replay::SchemaVariant { database_name, table_name, fields }),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            Err(code) => return code,
        };
        let request = ReplayRequest {
            delivery_stream,
            from,
            to,
            prefix: args.prefix,
            shards,
            lambda_arn: args.lambda_arn,
            schema,
            error_prefix: args.error_output_prefix,
        };
        let source = match sluice_firehose::replay::source_of(streams, &request.delivery_stream, args.stream.as_deref())
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e} in {}", cfg.data_dir.display());
                return ExitCode::FAILURE;
            }
        };
        let total = match sluice_firehose::replay::resolve(&source, &request) {
            Ok(ranges) => ranges.iter().map(|r| r.records()).sum(),
            Err(e) => {
                eprintln!("replay failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("replay [{bar:40}] {pos}/{len} records {per_sec} ETA {eta}")
                .expect("a template"),
        );
        let result = sluice_firehose::replay::replay(streams, &source, &request, &|n| bar.set_position(n)).await;
        bar.finish();
        streams.shutdown().await;
        match result {
            Ok(r) => {
                println!(
                    "replayed {} records: {} objects, {} delivered, {} dropped, {} failed",
                    r.records, r.objects, r.delivered, r.dropped, r.failed
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("replay failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// `sluice redrive` with a selection, on the server.
fn redrive(args: RedriveArgs) -> ExitCode {
    let (Some(delivery_stream), Some(error_output_type)) = (args.delivery_stream, args.error_output_type) else {
        eprintln!("sluice redrive needs --delivery-stream and --error-output-type (or list, watch, cancel)");
        return ExitCode::FAILURE;
    };
    let mut body = serde_json::json!({ "DeliveryStreamName": delivery_stream, "ErrorOutputType": error_output_type });
    for (name, value) in [("FromTimestampMs", args.from), ("ToTimestampMs", args.to)] {
        if let Some(v) = value {
            match time_ms(&v) {
                Ok(ms) => body[name] = ms.into(),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if let Some(s) = args.into_stream {
        body["StreamName"] = s.into();
    }
    if let Some(n) = args.max_records_per_second {
        body["MaxRecordsPerSecond"] = n.into();
    }
    runtime().block_on(sluice::reprocess_cli::start(&args.connection, "StartRedrive", body, args.detach))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("tokio runtime")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Demo { records, data_dir, lake } => runtime().block_on(async move {
            let options = DemoOptions { data_dir, lake_dir: lake, records, progress: true };
            match sluice::demo::run(&options).await {
                Ok(report) => {
                    println!("{}", sluice::demo::summary(&report));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("demo failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::Replay { action: Some(action), .. } | Command::Redrive { action: Some(action), .. } => {
            runtime().block_on(sluice::reprocess_cli::act(&action))
        }
        Command::Replay { action: None, args } => replay(args),
        Command::Redrive { action: None, args } => redrive(args),
        Command::Tail { stream, endpoint, from_start, signing } => runtime().block_on(async move {
            let client = signing.client(&endpoint);
            let kind = if from_start { "TRIM_HORIZON" } else { "LATEST" };
            match sluice::tail::tail(&client, &stream, kind, |line| println!("{line}"), shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tail failed: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::Cluster { command: ClusterCommand::Status { etcd, name, json } } => cluster_status(&etcd, &name, json),
        Command::Cluster { command: ClusterCommand::Drain { node, etcd, name, cancel, no_wait } } => {
            cluster_drain(&etcd, &name, &node, cancel, no_wait)
        }
        Command::Serve { config, bind, data_dir, tls_self_signed } => {
            let mut cfg = match load_config(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            cfg.bind = bind.unwrap_or(cfg.bind);
            cfg.data_dir = data_dir.unwrap_or(cfg.data_dir);
            if tls_self_signed {
                let names = if cfg.bind.ip().is_unspecified() { vec![] } else { vec![cfg.bind.ip().to_string()] };
                match sluice::tls::self_signed(&cfg.data_dir.join("tls"), &names) {
                    Ok(files) => {
                        // The one line clients need: trust this authority.
                        println!("TLS certificate authority: {}", files.ca.display());
                        cfg.tls_cert = Some(files.cert);
                        cfg.tls_key = Some(files.key);
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            if let Err(e) = cfg.check() {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            let tls = match (&cfg.tls_cert, &cfg.tls_key) {
                (Some(cert), Some(key)) => match sluice::tls::acceptor(cert, key) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
                _ => None,
            };
            raise_open_file_limit();
            runtime().block_on(async move {
                let opening = std::time::Instant::now();
                let state = match open_state(&cfg) {
                    Ok(s) => s,
                    Err(code) => return code,
                };
                tracing::info!(
                    elapsed_ms = opening.elapsed().as_millis() as u64,
                    "data directory opened: streams, delivery streams and queues recovered"
                );
                let listener = match tokio::net::TcpListener::bind(cfg.bind).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("cannot listen on {}: {e}", cfg.bind);
                        return ExitCode::FAILURE;
                    }
                };
                let scheme = if tls.is_some() { "https" } else { "http" };
                // Announced once the port listens, so a member is always reachable.
                let (catalog_stop, catalog_stopped) = tokio::sync::watch::channel(false);
                let membership = match &cfg.cluster {
                    None => None,
                    Some(c) => {
                        let address = c.advertise_address.clone().unwrap_or_else(|| cfg.bind.to_string());
                        let membership = match sluice::cluster::Membership::join_patiently(c, address, JOIN_PATIENCE).await {
                            Ok(m) => m,
                            Err(e) => {
                                eprintln!("cannot join cluster {}: {e}", c.name);
                                return ExitCode::FAILURE;
                            }
                        };
                        // Streams are created and deleted through the catalog from now on,
                        // and this node keeps a copy of each.
                        let runtime = tokio::runtime::Handle::current();
                        let link = match sluice::cluster::ClusterLink::connect(c, &cfg.data_dir, runtime).await {
                            Ok(l) => Arc::new(l),
                            Err(e) => {
                                eprintln!("cannot join cluster {}'s replication: {e}", c.name);
                                return ExitCode::FAILURE;
                            }
                        };
                        let _ = state.kinesis.cluster.set(link.clone());
                        let _ = state.firehose.cluster.set(link.clone());
                        let _ = state.firehose.cluster_streams.set(Arc::new(Arc::downgrade(&state)));
                        let coordination = Arc::new(sluice::cluster::deliveries::EtcdCoordination::new(link.clone()));
                        let _ = state.firehose.delivery_streams.context().coordination.set(coordination.clone());
                        let (kinesis_state, cluster) = (state.clone(), c.name.clone());
                        let catalog_link = link.clone();
                        // After each catalog pass, replicas of the shards this node leads
                        // that missed records are caught up.
                        let passes = std::sync::atomic::AtomicU64::new(0);
                        let repairing = Arc::new(std::sync::atomic::AtomicBool::new(false));
                        // The shards this node led before it stopped get new leaders (it
                        // may be one) at a new epoch: see `resign_leaderships`.
                        let apply = move |records: &[sluice::cluster::StreamRecord], live: &[String]| {
                            use std::sync::atomic::Ordering::Relaxed;
                            kinesis_state.kinesis.apply_catalog(&cluster, records);
                            kinesis_state.kinesis.resign_leaderships(records);
                            kinesis_state.kinesis.serve_unreplicated(records);
                            kinesis_state.kinesis.settle_restart(records);
                            kinesis_state.kinesis.step_down_when_cut_off(records);
                            kinesis_state.kinesis.elect_leaders(records, live);
                            kinesis_state.kinesis.complete_moves(records, live);
                            kinesis_state.kinesis.settle_reshards(records);
                            match catalog_link.block_on(sluice::cluster::catalog::draining(&catalog_link.etcd, &catalog_link.cluster)) {
                                Ok(draining) => kinesis_state.kinesis.rebalance(records, live, &draining),
                                Err(e) => tracing::warn!(error = %e, "cannot read the nodes being drained; no replica moves this pass"),
                            }
                            coordination.set_live(live);
                            // Delivery streams read the streams made above.
                            match catalog_link.block_on(sluice::cluster::deliveries::records(&catalog_link.etcd, &catalog_link.cluster)) {
                                Ok(deliveries) => {
                                    kinesis_state.firehose.apply_catalog(&catalog_link, &deliveries);
                                    let in_use = deliveries.iter().filter_map(|d| d.spec.source_stream()).collect();
                                    kinesis_state.kinesis.remove_orphaned_direct_put_streams(&in_use);
                                }
                                Err(e) => tracing::warn!(error = %e, "cannot read the cluster's delivery streams; this node's copies stay as they are"),
                            }
                            // Catching a replica up can take long (one down for hours):
                            // on its own thread, one repair at a time, so that the next
                            // passes' elections do not wait for it.
                            if !repairing.swap(true, Relaxed) {
                                struct Done(Arc<std::sync::atomic::AtomicBool>);
                                impl Drop for Done {
                                    fn drop(&mut self) {
                                        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
                                    }
                                }
                                // Every replica every 5 passes: the probes carry the
                                // high watermark to replicas that restarted while idle.
                                let every = passes.fetch_add(1, Relaxed).is_multiple_of(5);
                                let (state, done) = (kinesis_state.clone(), Done(repairing.clone()));
                                tokio::task::spawn_blocking(move || {
                                    let _done = done;
                                    state.kinesis.repair_replicas(every);
                                });
                            }
                        };
                        tokio::spawn(sluice::cluster::catalog::keep_copies(link, apply, catalog_stopped));
                        Some(membership)
                    }
                };
                tracing::info!(bind = %cfg.bind, scheme, data_dir = %cfg.data_dir.display(), "sluice serving the Kinesis API");
                sluice::server::serve_with(listener, state.clone(), tls, shutdown_signal()).await;
                let _ = catalog_stop.send(true);
                if let Some(m) = membership {
                    m.leave().await;
                }
                // Dropping the state closes every shard log, which syncs it.
                drop(state);
                tracing::info!("sluice stopped");
                ExitCode::SUCCESS
            })
        }
    }
}

/// Raises this process's soft limit of open file descriptors to its hard limit, as servers
/// that hold many sockets and files do (Go's runtime does the same since 1.19): the default
/// soft limit of 1,024 is below what a few thousand client connections need. Shards hold a
/// descriptor only while written, so this is for connections first. A failure is logged
/// and the server runs with the limit it has.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls with a valid pointer to a local.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if raised {
        tracing::debug!(open_files = limit.rlim_cur, "raised the open file limit to its hard limit");
    }
}
