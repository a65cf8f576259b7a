//! The `sluice` server: configuration, the HTTP server that routes `X-Amz-Target` to the
//! Kinesis or Firehose API, and SigV4 verification.

pub mod answer_budget;
pub mod api;
pub mod client;
pub mod cluster;
pub mod config;
pub mod console;
pub mod cors;
pub mod demo;
mod idle;
pub mod reprocess_cli;
pub mod server;
pub mod sigv4;
pub mod tail;
pub mod tls;

use std::sync::Arc;

use api::firehose::{Firehose, FirehoseConfig};
use api::kinesis::{Kinesis, KinesisConfig};
use sluice_engine::streams::Streams;
use sluice_engine::{Clock, OpenError, ShardLogOptions};
use sluice_firehose::delivery_streams::{DeliveryStreams, TransformResolver};
use sluice_firehose::metrics::Metrics;
use sluice_firehose::table::Tables;
use sluice_firehose::wasm::WasmTransforms;
use sluice_firehose::worker::WorkerContext;
use sluice_firehose::Lake;
use sluice_transforms::TransformHost;

/// Why the server state could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Streams or delivery streams could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The lake's settings are unusable.
    #[error(transparent)]
    Lake(#[from] sluice_firehose::lake::LakeError),
    /// The queues' folder could not be opened.
    #[error("the queues cannot be opened: {0}")]
    Queues(std::io::Error),
    /// Another Sluice process has the data directory.
    #[error("{0} is in use by another sluice process (its LOCK file is locked)")]
    Locked(std::path::PathBuf),
    /// The WASM engine could not start.
    #[error("the WASM transform host cannot start: {0}")]
    Transforms(String),
    /// A delivery stream declared in the config was refused.
    #[error("delivery stream {name} in the config: {error}")]
    Declaration {
        /// The delivery stream.
        name: String,
        /// Why.
        error: api::ApiError,
    },
}

/// jemalloc's settings for the server (`_rjem_malloc_conf` of the `sluice` binary, and of
/// benchmark examples that run the server in their process): freed pages go back to the
/// system after 1 s (by a background thread, so an idle server shrinks too).
/// `oversize_threshold:0` keeps large buffers (GetRecords answers reach 14 MB) in the normal
/// arenas: jemalloc's default gives them an arena that unmaps on every free, and replay ran
/// 22 % slower refaulting them. `narenas:1`: with jemalloc's default of four arenas per core,
/// each kept its own second of freed answer and request buffers, and a replay of four shards
/// peaked at 150-195 MiB of RSS (275 MiB with five consumers per shard) against 136-139
/// (147-157) with one arena, at the same server CPU per record (`benches/examples/loadgen.rs`
/// with `--server-pid`); threads still cache small allocations on their own. A machine with
/// many cores can set `_RJEM_MALLOC_CONF=narenas:<n>` in the environment.
pub const JEMALLOC_CONF: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,oversize_threshold:0,narenas:1\0";

/// Opens the streams and delivery streams under the config's data directory, starts the
/// delivery workers on the current tokio runtime, and builds the server state. Delivery
/// streams declared in the config are created when missing; `Lambda` processors run the
/// WASM components of `transform_dir` (compiled code cached in `<data_dir>/wasm-cache`, as is
/// that of the embedded jq component of dynamic partitioning).
pub fn open_state(config: &config::Config, clock: Arc<dyn Clock>) -> Result<Arc<server::AppState>, StartError> {
    let lock = lock_data_dir(&config.data_dir)?;
    let host = TransformHost::with_precompiled_dir(Some(config.data_dir.join("wasm-cache")))
        .map_err(|e| StartError::Transforms(format!("{e:#}")))?;
    sluice_transforms::JqQuery::cache_compiled_code_in(config.data_dir.join("wasm-cache"));
    let transforms: Arc<dyn TransformResolver> =
        Arc::new(WasmTransforms::new(Arc::new(host), config.transform_dir.clone(), config.transform_limits()));
    let transforms = Some(transforms);
    // Logs take records up to 10 MiB, the most a stream may be set to take
    // (`UpdateMaxRecordSize`); each stream's own limit is checked by the API.
    let log_options = ShardLogOptions {
        durability: config.durability(),
        clock: clock.clone(),
        max_record_bytes: sluice_engine::limits::RECORD_BYTES_MAX,
        ..ShardLogOptions::default()
    };
    let streams = Streams::open(&config.data_dir, log_options.clone(), config.throttling(), config.shard_limit)?;
    if config.cluster.is_none() {
        // A cluster's copies served on their own (the node left its cluster): no leader
        // will raise their high watermarks, and nothing on this node can cut them.
        for stream in streams.list().iter().filter(|s| s.meta().cluster.is_some()) {
            (0..stream.meta().shards.len() as u32)
                .filter_map(|i| stream.log(i))
                .for_each(|log| log.raise_high_watermark(u64::MAX));
        }
    }
    let kinesis = Kinesis::new(
        streams,
        KinesisConfig {
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            stream_transition_ms: config.stream_transition_ms,
            subscription_lifetime_ms: config.subscription_lifetime_ms,
            on_demand_scaling_interval_ms: config.on_demand_scaling_interval_ms,
            sync_queue_state: config.durability() == sluice_engine::Durability::Always,
            queue_sync_interval_ms: match config.durability() {
                sluice_engine::Durability::Interval(d) => d.as_millis() as u64,
                _ => 0,
            },
            ..KinesisConfig::default()
        },
        clock.clone(),
    )
    .map_err(StartError::Queues)?;
    let lake = Arc::new(Lake::new(config.lake.clone())?);
    let ctx = WorkerContext {
        kinesis: kinesis.streams.clone(),
        tables: Arc::new(Tables::new(&config.data_dir, lake.clone(), config.tables.clone())),
        lake,
        metrics: Arc::new(Metrics::default()),
        clock: clock.clone(),

        coordination: Default::default(),
    };
    let delivery_streams = Arc::new(DeliveryStreams::open(
        &config.data_dir,
        log_options,
        ctx,
        tokio::runtime::Handle::current(),
        transforms,
    )?);
    kinesis.attach_deliveries(delivery_streams.clone());
    let tasks = Arc::new(sluice_firehose::tasks::Tasks::open(delivery_streams.clone()).map_err(OpenError::from)?);
    let firehose = Firehose::new(
        delivery_streams,
        tasks,
        FirehoseConfig {
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            schema_dir: config.schema_dir.clone(),
            status_transition_ms: config.stream_transition_ms,
        },
        clock,
    );
    for d in &config.delivery_streams {
        firehose
            .declare(&d.create_request(&config.region, &config.account_id))
            .map_err(|error| StartError::Declaration { name: d.name.clone(), error })?;
    }
    let mut state = server::AppState::with_limits(
        kinesis,
        firehose,
        config.auth,
        config.access_keys.clone(),
        lock,
        config.server.limits(),
    );
    state.cors = cors::Cors::new(config.cors_allowed_origins.clone());
    Ok(Arc::new(state))
}

/// Takes `<data_dir>/LOCK` for this process: two processes appending to the same shard
/// logs would corrupt them. The lock goes with the file handle (process exit included).
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let io = |e: std::io::Error| StartError::Open(OpenError::Io(sluice_engine::error::IoError::new(dir, e)));
    std::fs::create_dir_all(dir).map_err(io)?;
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("LOCK")).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Locked(dir.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}
