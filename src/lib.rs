//! The `sluice` server: configuration, the HTTP server that routes `X-Amz-Target` to the
//! Kinesis API, and SigV4 verification.

pub mod config;
pub mod server;
pub mod sigv4;

use std::sync::Arc;

use sluice_engine::api::{Kinesis, KinesisConfig};
use sluice_engine::streams::Streams;
use sluice_engine::{Clock, OpenError, ShardLogOptions};

/// Opens the streams under the config's data directory and builds the server state.
pub fn open_state(config: &config::Config, clock: Arc<dyn Clock>) -> Result<Arc<server::AppState>, OpenError> {
    let log_options =
        ShardLogOptions { durability: config.durability(), clock: clock.clone(), ..ShardLogOptions::default() };
    let streams = Streams::open(&config.data_dir, log_options, config.throttling(), config.shard_limit)?;
    let kinesis = Kinesis::new(
        streams,
        KinesisConfig {
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            stream_transition_ms: config.stream_transition_ms,
            ..KinesisConfig::default()
        },
        clock,
    );
    Ok(Arc::new(server::AppState::new(kinesis, config.auth, config.access_keys.clone())))
}
