//! The server's configuration file (TOML). Every field has a default; unknown fields are
//! refused so a typo is an error, not a silently ignored setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use sluice_engine::streams::Throttling;
use sluice_engine::throttle::ThrottleRates;
use sluice_engine::Durability;
use sluice_firehose::config::DeliveryStreamDeclaration;
use sluice_firehose::table::TablesConfig;
use sluice_firehose::LakeConfig;

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// AWS Signature Version 4, checked against `access_keys`.
    Sigv4,
    /// No check at all; refused unless `bind` is a loopback address.
    None,
}

/// When acknowledged writes reach the disk (see `sluice_engine::Durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Sync before acknowledging, with group commit.
    Always,
    /// Sync every `fsync_interval_ms`.
    Interval,
    /// Leave it to the kernel.
    Never,
}

/// Whether shards are throttled at their provisioned rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Throttle {
    /// Kinesis' per-shard quotas (or the configured rates) apply.
    On,
    /// No quotas: for benchmarks.
    Off,
}

/// One access key pair clients may sign with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    /// The access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// The secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
}

/// Secret of the default key pair (`sluice` / `sluice-secret`): documented, so public;
/// [`Config::check`] refuses it on a non-loopback `bind`.
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "sluice-secret";
/// Environment variable that, with [`ENV_SECRET_ACCESS_KEY`], replaces the key pairs.
pub const ENV_ACCESS_KEY_ID: &str = "SLUICE_ACCESS_KEY_ID";
/// Environment variable holding the secret of [`ENV_ACCESS_KEY_ID`].
pub const ENV_SECRET_ACCESS_KEY: &str = "SLUICE_SECRET_ACCESS_KEY";

/// Environment variable that sets `[cluster] node_id` (see [`Config::with_node`]).
pub const ENV_NODE_ID: &str = "SLUICE_NODE_ID";

/// Environment variable that sets `[cluster] advertise_address` (see [`Config::with_node`]).
pub const ENV_ADVERTISE_ADDRESS: &str = "SLUICE_ADVERTISE_ADDRESS";

/// `sluice.toml`. See `deploy/sluice.toml` for a documented example.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (default `127.0.0.1:4567`).
    pub bind: SocketAddr,
    /// Where streams are stored (default `./sluice-data`).
    pub data_dir: PathBuf,
    /// Region shown in ARNs and expected in signatures (default `us-east-1`).
    pub region: String,
    /// Account id shown in ARNs (default `000000000000`).
    pub account_id: String,
    /// Most open shards across all streams (default 500, Kinesis' account quota).
    pub shard_limit: u32,
    /// Durability of acknowledged writes (default `interval`).
    pub fsync: Fsync,
    /// Interval between syncs under `fsync = "interval"`, ms (default 100).
    pub fsync_interval_ms: u64,
    /// Authentication (default `sigv4`).
    pub auth: Auth,
    /// How long a stream shows CREATING, UPDATING (after resharding) or DELETING, ms
    /// (default 100). Records are refused while CREATING, as on AWS.
    pub stream_transition_ms: u64,
    /// How long a `SubscribeToShard` subscription lasts before the server ends it, ms
    /// (default 300,000: AWS's 5 minutes). Clients then subscribe again.
    pub subscription_lifetime_ms: u64,
    /// How often on-demand streams are measured and their hot shards split or cold ones
    /// merged, ms (default 10,000).
    pub on_demand_scaling_interval_ms: u64,
    /// Per-shard throughput quotas (default `on`).
    pub throttle: Throttle,
    /// Per-shard rates of every stream (default: Kinesis' quotas, 1 MiB/s and 1,000
    /// records/s in, 2 MiB/s and 5 calls/s out, 5 GetShardIterator calls/s).
    pub throttle_rates: ThrottleRates,
    /// Per-shard rates of named streams, overriding `throttle_rates`.
    pub stream_throttle_rates: BTreeMap<String, ThrottleRates>,
    /// Key pairs accepted under `auth = "sigv4"` (default: one pair, `sluice` / `sluice-secret`,
    /// for local use; replace it anywhere else).
    pub access_keys: Vec<AccessKey>,
    /// Where delivery streams land: `[lake]` (default: the folder `./lake`).
    pub lake: LakeConfig,
    /// The Iceberg catalog of table destinations: `[tables]` (default: the embedded SQL
    /// catalog, `<data_dir>/iceberg/catalog.db`).
    pub tables: TablesConfig,
    /// Sluice's Glue Data Catalog for format conversion: `SchemaConfiguration`'s
    /// `DatabaseName`/`TableName` name `<schema_dir>/<DatabaseName>/<TableName>.json` (default
    /// `./schemas`).
    pub schema_dir: PathBuf,
    /// Where `Lambda` processors' WASM components are: `LambdaArn` `x.wasm` or
    /// `arn:aws:lambda:...:function:x` is `<transform_dir>/x.wasm` (default `./wasm`).
    pub transform_dir: PathBuf,
    /// Most linear memory one transform invocation may use, MiB (default 64).
    pub transform_memory_mb: usize,
    /// Most time one transform invocation may take, ms (default 1,000); past it the
    /// invocation fails and is retried (`NumberOfRetries`).
    pub transform_deadline_ms: u64,
    /// Delivery streams created at start when missing (`[[delivery_streams]]`).
    pub delivery_streams: Vec<DeliveryStreamDeclaration>,
    /// What clients may hold of the server (`[server]`): connections, body bytes, time.
    pub server: ServerSettings,
    /// TLS certificate chain, PEM (server certificate first); with `tls_key`, the port
    /// speaks HTTPS only (HTTP/2 or HTTP/1.1 by ALPN). Default: none, plain HTTP and h2c.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert`, PEM.
    pub tls_key: Option<PathBuf>,
    /// Origins (`https://app.example.com`, or `*`) whose web pages may call the APIs with
    /// the browser SDK: CORS preflights and headers for them. Default: none.
    pub cors_allowed_origins: Vec<String>,
    /// `[cluster]`: join a cluster of Sluice nodes coordinated by etcd (docs/cluster.md).
    /// Default: none, one node on its own.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`: how this node joins a cluster. Source of the rules: docs/cluster.md.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://10.0.0.5:2379`), at least one.
    pub etcd_endpoints: Vec<String>,
    /// This node's id, unique among live nodes: 1 to 64 of `A-Z a-z 0-9 _ -`.
    pub node_id: String,
    /// Where other nodes and clients reach this node (`host:port`; default: `bind`).
    #[serde(default)]
    pub advertise_address: Option<String>,
    /// The cluster's name, its etcd key prefix `/sluice/<name>/` (default `sluice`; same
    /// characters as `node_id`): several clusters can share one etcd.
    #[serde(default = "ClusterConfig::default_name")]
    pub name: String,
    /// Membership lease, s (default 5; 2 to 60): a node that stops renewing it (killed,
    /// paused, cut off from etcd) leaves the cluster this long after.
    #[serde(default = "ClusterConfig::default_lease_ttl_s")]
    pub lease_ttl_s: u64,
    /// Replicas of each shard of a stream created on this node (default 3, as Kinesis keeps
    /// three copies; 1 to 7; fewer when the cluster has fewer nodes).
    #[serde(default = "ClusterConfig::default_replication_factor")]
    pub replication_factor: usize,
}

impl ClusterConfig {
    fn default_name() -> String {
        "sluice".into()
    }

    fn default_lease_ttl_s() -> u64 {
        5
    }

    fn default_replication_factor() -> usize {
        crate::cluster::catalog::REPLICATION_FACTOR_DEFAULT
    }

    /// Checks the settings; the message names the one at fault.
    pub fn check(&self) -> Result<(), String> {
        let id_like = |s: &str| {
            (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !id_like(&self.node_id) {
            return Err(format!("[cluster] node_id {:?} must be 1 to 64 of A-Z a-z 0-9 _ -", self.node_id));
        }
        if !id_like(&self.name) {
            return Err(format!("[cluster] name {:?} must be 1 to 64 of A-Z a-z 0-9 _ -", self.name));
        }
        if self.etcd_endpoints.is_empty() {
            return Err("[cluster] etcd_endpoints needs at least one etcd client URL".into());
        }
        if let Some(e) = self.etcd_endpoints.iter().find(|e| !e.starts_with("http://")) {
            return Err(format!("[cluster] etcd endpoint {e:?} must be an http:// URL"));
        }
        if !(2..=60).contains(&self.lease_ttl_s) {
            return Err(format!("[cluster] lease_ttl_s {} must be 2 to 60", self.lease_ttl_s));
        }
        if !(1..=7).contains(&self.replication_factor) {
            return Err(format!("[cluster] replication_factor {} must be 1 to 7", self.replication_factor));
        }
        Ok(())
    }
}

/// `[server]`: bounds on what clients may hold. Defaults in [`ServerSettings::default`],
/// stated in `deploy/sluice.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Open connections at most (default 4,096).
    pub max_connections: usize,
    /// Request body bytes held by all requests together, MiB (default 256; at least 12, the
    /// largest body).
    pub body_bytes_in_flight_mb: usize,
    /// Time to receive a request's headers, ms (default 30,000).
    pub header_read_timeout_ms: u64,
    /// Time to receive a request's body, ms (default 60,000).
    pub body_read_timeout_ms: u64,
    /// A connection that moves no byte for this long is closed, ms (default 120,000).
    pub idle_timeout_ms: u64,
    /// Concurrent HTTP/2 streams per connection (default 128).
    pub h2_max_concurrent_streams: u32,
    /// Record bytes held by GetRecords answers not yet sent, MiB (default 16; 1 to 4095): a
    /// read is sized to what is left, down to 1 MiB.
    pub get_records_bytes_in_flight_mb: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        let d = crate::server::ServerLimits::default();
        Self {
            max_connections: d.max_connections,
            body_bytes_in_flight_mb: d.body_bytes_in_flight >> 20,
            header_read_timeout_ms: d.header_read_timeout.as_millis() as u64,
            body_read_timeout_ms: d.body_read_timeout.as_millis() as u64,
            idle_timeout_ms: d.idle_timeout.as_millis() as u64,
            h2_max_concurrent_streams: d.h2_max_concurrent_streams,
            get_records_bytes_in_flight_mb: d.get_records_bytes_in_flight >> 20,
        }
    }
}

impl ServerSettings {
    /// The server's limits.
    pub fn limits(&self) -> crate::server::ServerLimits {
        crate::server::ServerLimits {
            max_connections: self.max_connections,
            body_bytes_in_flight: self.body_bytes_in_flight_mb << 20,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            get_records_bytes_in_flight: self.get_records_bytes_in_flight_mb << 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:4567".parse().expect("a valid address"),
            data_dir: PathBuf::from("./sluice-data"),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            shard_limit: 500,
            fsync: Fsync::Interval,
            fsync_interval_ms: sluice_engine::limits::SYNC_INTERVAL_MS_DEFAULT,
            auth: Auth::Sigv4,
            stream_transition_ms: crate::api::kinesis::STREAM_TRANSITION_MS_DEFAULT,
            subscription_lifetime_ms: crate::api::kinesis::SUBSCRIPTION_LIFETIME_MS_DEFAULT,
            on_demand_scaling_interval_ms: crate::api::kinesis::ON_DEMAND_SCALING_INTERVAL_MS_DEFAULT,
            throttle: Throttle::On,
            throttle_rates: ThrottleRates::default(),
            stream_throttle_rates: BTreeMap::new(),
            access_keys: vec![AccessKey {
                access_key_id: "sluice".into(),
                secret_access_key: DEFAULT_SECRET_ACCESS_KEY.into(),
            }],
            lake: LakeConfig::default(),
            tables: TablesConfig::default(),
            schema_dir: PathBuf::from("./schemas"),
            transform_dir: PathBuf::from("./wasm"),
            transform_memory_mb: 64,
            transform_deadline_ms: 1_000,
            delivery_streams: Vec::new(),
            server: ServerSettings::default(),
            tls_cert: None,
            tls_key: None,
            cors_allowed_origins: Vec::new(),
            cluster: None,
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown fields.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: toml::de::Error,
    },
    /// The settings contradict each other.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Reads and checks a TOML file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })?;
        let config = config.with_env_keys();
        let config = config.with_node(std::env::var(ENV_NODE_ID).ok(), std::env::var(ENV_ADVERTISE_ADDRESS).ok());
        config.check()?;
        Ok(config)
    }

    /// Replaces the key pairs with the one that `SLUICE_ACCESS_KEY_ID` and
    /// `SLUICE_SECRET_ACCESS_KEY` give, when both are set: containers get their secret from
    /// the environment (a Kubernetes Secret, compose's `environment`), never from a file in
    /// the image.
    pub fn with_env_keys(mut self) -> Self {
        if let (Ok(id), Ok(secret)) = (std::env::var(ENV_ACCESS_KEY_ID), std::env::var(ENV_SECRET_ACCESS_KEY)) {
            self.access_keys = vec![AccessKey { access_key_id: id, secret_access_key: secret }];
        }
        self
    }

    /// Sets `[cluster]`'s `node_id` and `advertise_address` to `node_id` and `advertise`
    /// where given (from `SLUICE_NODE_ID` and `SLUICE_ADVERTISE_ADDRESS`): the nodes of a
    /// Kubernetes StatefulSet share one ConfigMap and differ by their pod names. No effect
    /// without a `[cluster]` section.
    pub fn with_node(mut self, node_id: Option<String>, advertise: Option<String>) -> Self {
        if let Some(c) = self.cluster.as_mut() {
            if let Some(id) = node_id {
                c.node_id = id;
            }
            if let Some(a) = advertise {
                c.advertise_address = Some(a);
            }
        }
        self
    }

    /// Refuses settings that cannot work together.
    ///
    /// Errors: `auth = "none"` off loopback; the documented default key pair
    /// (`sluice`/`sluice-secret`, public in this repository) on a non-loopback `bind`; no key
    /// pair under `sigv4`; an unusable lake; a delivery stream declared twice.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.auth == Auth::Sigv4
            && !self.bind.ip().is_loopback()
            && self.access_keys.iter().any(|k| k.secret_access_key == DEFAULT_SECRET_ACCESS_KEY)
        {
            return Err(ConfigError::Invalid(format!(
                "the default key pair (secret \"{DEFAULT_SECRET_ACCESS_KEY}\") is public and only allowed on a loopback address, and bind is {}: set [[access_keys]], or {ENV_ACCESS_KEY_ID} and {ENV_SECRET_ACCESS_KEY}",
                self.bind
            )));
        }
        if self.auth == Auth::None && !self.bind.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "auth = \"none\" is only allowed on a loopback address, and bind is {}",
                self.bind
            )));
        }
        if self.auth == Auth::Sigv4 && self.access_keys.is_empty() {
            return Err(ConfigError::Invalid("auth = \"sigv4\" needs at least one [[access_keys]] entry".into()));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid("tls_cert and tls_key go together: set both or neither".into()));
        }
        self.lake.check().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(c) = &self.cluster {
            c.check().map_err(ConfigError::Invalid)?;
            // Nodes send each other records over plain HTTP on the API port.
            if self.tls_cert.is_some() {
                return Err(ConfigError::Invalid(
                    "[cluster] nodes speak plain HTTP to each other, so a cluster cannot serve TLS yet (docs/cluster.md)".into(),
                ));
            }
        }
        let mut names: Vec<&str> = self.delivery_streams.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid(format!("delivery stream {} is declared twice", w[0])));
        }
        let s = &self.server;
        if s.max_connections == 0 || s.h2_max_concurrent_streams == 0 {
            return Err(ConfigError::Invalid(
                "[server] max_connections and h2_max_concurrent_streams must be above zero".into(),
            ));
        }
        if s.body_bytes_in_flight_mb < crate::server::REQUEST_BYTES_MAX >> 20 || s.body_bytes_in_flight_mb > 4095 {
            return Err(ConfigError::Invalid(format!(
                "[server] body_bytes_in_flight_mb must be from {} (the largest request body) to 4095",
                crate::server::REQUEST_BYTES_MAX >> 20
            )));
        }
        if s.get_records_bytes_in_flight_mb == 0 || s.get_records_bytes_in_flight_mb > 4095 {
            return Err(ConfigError::Invalid("[server] get_records_bytes_in_flight_mb must be from 1 to 4095".into()));
        }
        if s.header_read_timeout_ms == 0 || s.body_read_timeout_ms == 0 || s.idle_timeout_ms == 0 {
            return Err(ConfigError::Invalid("[server] timeouts must be above zero".into()));
        }
        if self.fsync == Fsync::Interval && self.fsync_interval_ms == 0 {
            return Err(ConfigError::Invalid("fsync_interval_ms must be above zero".into()));
        }
        Ok(())
    }

    /// The engine's throttling setting.
    pub fn throttling(&self) -> Throttling {
        Throttling {
            off: self.throttle == Throttle::Off,
            rates: self.throttle_rates,
            per_stream: self.stream_throttle_rates.clone(),
        }
    }

    /// Limits of WASM transforms.
    pub fn transform_limits(&self) -> sluice_transforms::TransformLimits {
        sluice_transforms::TransformLimits {
            memory_bytes: self.transform_memory_mb << 20,
            deadline: Duration::from_millis(self.transform_deadline_ms),
            ..sluice_transforms::TransformLimits::default()
        }
    }

    /// The engine's durability setting.
    pub fn durability(&self) -> Durability {
        match self.fsync {
            Fsync::Always => Durability::Always,
            Fsync::Interval => Durability::Interval(Duration::from_millis(self.fsync_interval_ms)),
            Fsync::Never => Durability::Never,
        }
    }
}
