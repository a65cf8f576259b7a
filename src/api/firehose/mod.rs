//! The Amazon Data Firehose API (JSON 1.1, `X-Amz-Target: Firehose_20150804.<Action>`): one
//! module per action (related ones share), dispatched from one enum. Shapes, limits and
//! messages follow the botocore service model `firehose/2015-08-04` and the AWS Firehose
//! API reference.

mod cluster;
pub use cluster::ClusterStreams;
mod create;
mod delete;
mod describe;
mod encryption;
mod put;
mod tags;
mod update;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::kinesis::{parse, parse_body, respond};
use crate::api::{ApiError, ErrorKind};
use sluice_engine::Clock;

use sluice_firehose::delivery_streams::{DeliveryStreamEntry, DeliveryStreams};
use sluice_firehose::plan::RecordTransform;
use sluice_firehose::spec::DeliveryStreamSpec;

/// The service prefix of `X-Amz-Target` for Firehose.
pub const TARGET_PREFIX: &str = "Firehose_20150804";

/// The only destination id a Sluice delivery stream has (one S3 destination, as AWS names it).
pub const DESTINATION_ID: &str = "destinationId-000000000001";

/// The Firehose actions Sluice serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// `CreateDeliveryStream`.
    CreateDeliveryStream,
    /// `DescribeDeliveryStream`.
    DescribeDeliveryStream,
    /// `ListDeliveryStreams`.
    ListDeliveryStreams,
    /// `DeleteDeliveryStream`.
    DeleteDeliveryStream,
    /// `UpdateDestination`.
    UpdateDestination,
    /// `PutRecord`.
    PutRecord,
    /// `PutRecordBatch`.
    PutRecordBatch,
    /// `TagDeliveryStream`.
    TagDeliveryStream,
    /// `UntagDeliveryStream`.
    UntagDeliveryStream,
    /// `ListTagsForDeliveryStream`.
    ListTagsForDeliveryStream,
    /// `StartDeliveryStreamEncryption`.
    StartDeliveryStreamEncryption,
    /// `StopDeliveryStreamEncryption`.
    StopDeliveryStreamEncryption,
}

impl Action {
    /// The action an `X-Amz-Target` action name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "CreateDeliveryStream" => Self::CreateDeliveryStream,
            "DescribeDeliveryStream" => Self::DescribeDeliveryStream,
            "ListDeliveryStreams" => Self::ListDeliveryStreams,
            "DeleteDeliveryStream" => Self::DeleteDeliveryStream,
            "UpdateDestination" => Self::UpdateDestination,
            "PutRecord" => Self::PutRecord,
            "PutRecordBatch" => Self::PutRecordBatch,
            "TagDeliveryStream" => Self::TagDeliveryStream,
            "UntagDeliveryStream" => Self::UntagDeliveryStream,
            "ListTagsForDeliveryStream" => Self::ListTagsForDeliveryStream,
            "StartDeliveryStreamEncryption" => Self::StartDeliveryStreamEncryption,
            "StopDeliveryStreamEncryption" => Self::StopDeliveryStreamEncryption,
            _ => return None,
        })
    }
}

/// Settings of the Firehose API.
#[derive(Debug, Clone)]
pub struct FirehoseConfig {
    /// Region shown in ARNs (default `us-east-1`).
    pub region: String,
    /// Account id shown in ARNs and messages (default `000000000000`).
    pub account_id: String,
    /// Sluice's Glue Data Catalog: `SchemaConfiguration` `DatabaseName`/`TableName` name the
    /// file `<schema_dir>/<DatabaseName>/<TableName>.json` (or `.toml`), found by listing the
    /// folders (see [`sluice_firehose::schema::find`]). Default `./schemas`.
    pub schema_dir: PathBuf,
    /// How long a delivery stream shows CREATING after creation and DELETING after deletion,
    /// ms (default 100, the server's `stream_transition_ms`; AWS takes seconds to minutes).
    pub status_transition_ms: u64,
}

impl Default for FirehoseConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            schema_dir: PathBuf::from("./schemas"),
            status_transition_ms: crate::api::kinesis::STREAM_TRANSITION_MS_DEFAULT,
        }
    }
}

/// The Firehose API over a set of delivery streams.
#[derive(Debug)]
pub struct Firehose {
    /// The delivery streams.
    pub delivery_streams: Arc<DeliveryStreams>,
    /// Replays and redrives ([`crate::api::reprocessing`]).
    pub tasks: Arc<sluice_firehose::tasks::Tasks>,
    /// Settings.
    pub config: FirehoseConfig,
    /// Time for timestamps.
    pub clock: Arc<dyn Clock>,
    /// This node's cluster, once it has joined one: delivery streams are then created,
    /// changed and deleted through the cluster's catalog.
    pub cluster: std::sync::OnceLock<Arc<crate::cluster::ClusterLink>>,
    /// The cluster's streams, which hold the records of the cluster's `DirectPut` delivery
    /// streams; set with `cluster`.
    pub cluster_streams: std::sync::OnceLock<Arc<dyn ClusterStreams>>,
    /// Deleted delivery streams still shown as DELETING: the time (ms) they vanish, and
    /// their last description.
    deleting: std::sync::Mutex<std::collections::BTreeMap<String, (u64, serde_json::Value)>>,
}

impl Firehose {
    /// The description of delivery stream `name` if it was deleted and still shows as
    /// DELETING; forgets the ones whose time is over.
    fn deleting(&self, name: &str) -> Option<serde_json::Value> {
        let now = self.clock.now_ms();
        let mut deleting = self.deleting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        deleting.retain(|_, (until, _)| now < *until);
        deleting.get(name).map(|(_, d)| d.clone())
    }

    /// Shows `description` (of a delivery stream being deleted) as DELETING for a while.
    fn begin_deleting(&self, name: &str, mut description: serde_json::Value) {
        description["DeliveryStreamStatus"] = "DELETING".into();
        let until = self.clock.now_ms() + self.config.status_transition_ms;
        self.deleting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), (until, description));
    }

    /// The status a delivery stream created at `created_ms` shows now: CREATING, then ACTIVE.
    fn status(&self, created_ms: u64) -> &'static str {
        if self.clock.now_ms() < created_ms.saturating_add(self.config.status_transition_ms) {
            "CREATING"
        } else {
            "ACTIVE"
        }
    }

    /// The API over `delivery_streams`, with their reprocessing `tasks`.
    pub fn new(
        delivery_streams: Arc<DeliveryStreams>,
        tasks: Arc<sluice_firehose::tasks::Tasks>,
        config: FirehoseConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            delivery_streams,
            tasks,
            config,
            clock,
            cluster: std::sync::OnceLock::new(),
            cluster_streams: std::sync::OnceLock::new(),
            deleting: Default::default(),
        }
    }

    /// Runs `action` on a JSON `body`; returns the JSON response body.
    pub async fn handle(&self, action: Action, body: &[u8]) -> Result<Vec<u8>, ApiError> {
        self.handle_value(action, parse_body(body)?).await
    }

    /// Runs `action` on a request already decoded (and checked against the model by the
    /// server); returns the JSON response body.
    pub async fn handle_value(&self, action: Action, body: serde_json::Value) -> Result<Vec<u8>, ApiError> {
        let changes_definition = matches!(
            action,
            Action::UpdateDestination
                | Action::TagDeliveryStream
                | Action::UntagDeliveryStream
                | Action::StartDeliveryStreamEncryption
                | Action::StopDeliveryStreamEncryption
        );
        if let Some(link) = self.cluster.get().filter(|_| changes_definition) {
            // A change of a cluster's delivery stream is written to the catalog before it
            // is answered, and no catalog pass of this node runs in between (it would take
            // the catalog's older definition back).
            let _catalog = link.catalog_lock.lock().await;
            let name = body.get("DeliveryStreamName").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
            let before = self.delivery_streams.get(&name).map(|e| e.spec());
            let answer = self.run(action, body).await?;
            if let Some(before) = before {
                if let Err(e) = self.publish(link, &name, &before).await {
                    // Not in the catalog: this node's copy goes back (a retry then changes
                    // it again, and writes it).
                    self.restore(&name, before);
                    return Err(e);
                }
            }
            return Ok(answer);
        }
        self.run(action, body).await
    }

    async fn run(&self, action: Action, body: serde_json::Value) -> Result<Vec<u8>, ApiError> {
        match action {
            Action::CreateDeliveryStream => create::run(self, parse(body)?).await,
            Action::DescribeDeliveryStream => describe::run(self, parse(body)?),
            Action::ListDeliveryStreams => describe::run_list(self, parse(body)?),
            Action::DeleteDeliveryStream => delete::run(self, parse(body)?).await,
            Action::UpdateDestination => update::run(self, parse(body)?).await,
            Action::PutRecord => put::run_one(self, parse(body)?).await,
            Action::PutRecordBatch => put::run_batch(self, parse(body)?).await,
            Action::TagDeliveryStream => tags::run_tag(self, parse(body)?),
            Action::UntagDeliveryStream => tags::run_untag(self, parse(body)?),
            Action::ListTagsForDeliveryStream => tags::run_list(self, parse(body)?),
            Action::StartDeliveryStreamEncryption => encryption::run_start(self, parse(body)?),
            Action::StopDeliveryStreamEncryption => encryption::run_stop(self, parse(body)?),
        }
    }

    /// Creates a delivery stream from a `CreateDeliveryStream` request body unless one of its
    /// name exists (config-declared delivery streams). Returns whether it was created.
    pub fn declare(&self, request: &serde_json::Value) -> Result<bool, ApiError> {
        let name = request.get("DeliveryStreamName").and_then(|n| n.as_str()).unwrap_or_default();
        if self.delivery_streams.get(name).is_some() {
            return Ok(false);
        }
        create::run_blocking(self, serde_json::from_value(request.clone()).map_err(|e| invalid(e.to_string()))?)?;
        Ok(true)
    }

    /// The ARN of delivery stream `name`.
    pub fn arn(&self, name: &str) -> String {
        format!("arn:aws:firehose:{}:{}:deliverystream/{name}", self.config.region, self.config.account_id)
    }

    /// The delivery stream `name`, or Firehose's not-found error.
    fn entry(&self, name: &str) -> Result<Arc<DeliveryStreamEntry>, ApiError> {
        validate_name(name)?;
        self.delivery_streams.get(name).ok_or_else(|| self.not_found(name))
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("Firehose {name} under account {} not found.", self.config.account_id),
        )
    }

    /// Loads what `spec` names in files: its schema (when `with_schema`) and the transform of
    /// its `Lambda` processor. Reading, compiling and instantiating a component and reading a
    /// schema block, so they run on tokio's blocking pool, not on the runtime's workers.
    async fn load_files(
        &self,
        spec: DeliveryStreamSpec,
        with_schema: bool,
    ) -> Result<(DeliveryStreamSpec, Option<Arc<dyn RecordTransform>>), ApiError> {
        let schema_dir = self.config.schema_dir.clone();
        let delivery_streams = self.delivery_streams.clone();
        tokio::task::spawn_blocking(move || load_files(&schema_dir, &delivery_streams, spec, with_schema))
            .await
            .map_err(internal)?
    }
}

/// [`Firehose::load_files`] on the calling thread.
fn load_files(
    schema_dir: &Path,
    delivery_streams: &DeliveryStreams,
    mut spec: DeliveryStreamSpec,
    with_schema: bool,
) -> Result<(DeliveryStreamSpec, Option<Arc<dyn RecordTransform>>), ApiError> {
    if with_schema {
        load_schema(schema_dir, &mut spec)?;
    }
    let transform = delivery_streams.resolve_transform(&spec).map_err(invalid)?;
    Ok((spec, transform))
}

/// Loads the schema file `spec`'s `SchemaConfiguration` names, if it names one.
fn load_schema(schema_dir: &Path, spec: &mut DeliveryStreamSpec) -> Result<(), ApiError> {
    spec.schema = None;
    let Some(conv) = spec.destination.conversion() else { return Ok(()) };
    let Some(sc) = &conv.schema_configuration else { return Ok(()) };
    let Some(table) = sc.table_name.as_deref() else { return Ok(()) };
    let db = sc.database_name.as_deref().unwrap_or("default");
    spec.schema = Some(sluice_firehose::schema::load_table(schema_dir, db, table).map_err(invalid)?);
    Ok(())
}

/// Delivery stream names: 1 to 64 characters of `[a-zA-Z0-9_.-]`. Source: Firehose API reference.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::validation(name, "deliveryStreamName", "have length greater than or equal to 1"));
    }
    if name.chars().count() > 64 {
        return Err(ApiError::validation(name, "deliveryStreamName", "have length less than or equal to 64"));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err(ApiError::validation(
            name,
            "deliveryStreamName",
            "satisfy regular expression pattern: [a-zA-Z0-9_.-]+",
        ));
    }
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::InternalFailure, e.to_string())
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidArgument, message)
}

/// Epoch seconds with millisecond fraction, as the JSON protocol writes timestamps.
fn epoch_seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Checks that `spec` (with its schema and `transform`) builds a delivery pipeline; every
/// check of a destination configuration lives in `sluice_firehose::plan::build`. Errors are
/// `InvalidArgumentException` with its message.
fn check_pipeline(
    spec: &sluice_firehose::spec::DeliveryStreamSpec,
    transform: &Option<Arc<dyn sluice_firehose::plan::RecordTransform>>,
) -> Result<(), ApiError> {
    let schema = spec
        .schema
        .as_deref()
        .map(sluice_firehose::schema::to_arrow)
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    sluice_firehose::plan::build(spec, schema, transform.clone()).map(|_| ()).map_err(invalid)
}
