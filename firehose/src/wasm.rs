//! `Lambda` processors run as WASM components: the resolver that loads the component a
//! processor names, and the adapter from the delivery pipeline to the transform host.
//!
//! `LambdaArn` names a component in the transform directory: `clickstream.wasm` (a path,
//! relative to the directory unless absolute) or `arn:aws:lambda:<region>:<account>:function:clickstream`
//! (`<dir>/clickstream.wasm`). `NumberOfRetries` (0–300, default 3) sets the retries;
//! `BufferSizeInMBs` (default 1, as Firehose invokes Lambda with up to 1 MB by default) caps
//! the data of one invocation, so a large delivery buffer is transformed in several
//! invocations, each in its own sandbox; any parameter name Firehose does not define is
//! passed to the transform as a parameter.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::stream::shard_id;
use sluice_transforms::{InputRecord, KinesisMetadata, Outcome, Transform, TransformHost, TransformLimits};

use crate::delivery_streams::TransformResolver;
use crate::error_output::{Failure, PROCESSING_FAILED};
use crate::plan::{RecordTransform, SourceRecord, TransformOutcome};
use crate::spec::DeliveryStreamSpec;

/// Processor parameters Firehose defines for `Lambda`; others go to the transform.
const FIREHOSE_PARAMETERS: [&str; 5] =
    ["LambdaArn", "NumberOfRetries", "RoleArn", "BufferSizeInMBs", "BufferIntervalInSeconds"];

/// Most retries `NumberOfRetries` takes: 300. Source: Firehose API reference.
pub const RETRIES_MAX: u32 = 300;

/// Data of one invocation by default, bytes: 1 MiB (`BufferSizeInMBs` of a Lambda processor;
/// Firehose's default is 1 MB, at most 3 MB). Source: Firehose developer guide.
pub const INVOCATION_BYTES_DEFAULT: usize = 1 << 20;

/// Loads `Lambda` processors' components from a directory.
#[derive(Debug)]
pub struct WasmTransforms {
    host: Arc<TransformHost>,
    dir: PathBuf,
    limits: TransformLimits,
}

impl WasmTransforms {
    /// Components under `dir`, run by `host` with `limits` (retries are per processor).
    pub fn new(host: Arc<TransformHost>, dir: PathBuf, limits: TransformLimits) -> Self {
        Self { host, dir, limits }
    }

    /// The component file `lambda_arn` names.
    pub fn path_of(&self, lambda_arn: &str) -> PathBuf {
        match lambda_arn.strip_prefix("arn:").and_then(|a| a.split_once(":function:")) {
            Some((_, function)) => {
                let name = function.split(':').next().unwrap_or(function);
                self.dir.join(format!("{name}.wasm"))
            }
            None => self.dir.join(Path::new(lambda_arn)),
        }
    }
}

impl TransformResolver for WasmTransforms {
    fn resolve(&self, spec: &DeliveryStreamSpec) -> Result<Option<Arc<dyn RecordTransform>>, String> {
        let processing = spec.destination.processing();
        let Some(p) = processing.processors_of("Lambda").next() else { return Ok(None) };
        let arn = p.parameter("LambdaArn").ok_or("Lambda processor needs a LambdaArn parameter.")?;
        let retries = match p.parameter("NumberOfRetries") {
            None => self.limits.retries,
            Some(n) => n
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= RETRIES_MAX)
                .ok_or_else(|| format!("NumberOfRetries '{n}' must be a whole number from 0 to {RETRIES_MAX}."))?,
        };
        let parameters = p
            .parameters
            .iter()
            .filter(|q| !FIREHOSE_PARAMETERS.contains(&q.parameter_name.as_str()))
            .map(|q| (q.parameter_name.clone(), q.parameter_value.clone()))
            .collect();
        let invocation_bytes = match p.parameter("BufferSizeInMBs") {
            None => INVOCATION_BYTES_DEFAULT,
            Some(m) => m
                .parse::<f64>()
                .ok()
                .filter(|m| (0.2..=3.0).contains(m))
                .map(|m| (m * f64::from(1u32 << 20)) as usize)
                .ok_or_else(|| format!("BufferSizeInMBs '{m}' must be from 0.2 to 3."))?,
        };
        let limits = TransformLimits { retries, ..self.limits };
        let transform = self.host.load(&self.path_of(arn), limits, parameters).map_err(|e| e.to_string())?;
        Ok(Some(Arc::new(WasmTransform { transform, arn: arn.to_owned(), invocation_bytes })))
    }
}

/// A loaded component as the delivery pipeline's transform.
#[derive(Debug)]
pub struct WasmTransform {
    transform: Transform,
    arn: String,
    invocation_bytes: usize,
}

impl RecordTransform for WasmTransform {
    fn process(&self, records: &[SourceRecord], kinesis_shard: Option<u32>) -> Vec<TransformOutcome> {
        let inputs: Vec<InputRecord> = records
            .iter()
            .map(|r| InputRecord {
                // Sequence numbers are unique within a shard, so within a batch.
                record_id: r.sequence.to_string(),
                approximate_arrival_timestamp: r.arrival_ms,
                data: r.data.clone(),
                kinesis: kinesis_shard.map(|shard| KinesisMetadata {
                    shard_id: shard_id(shard),
                    partition_key: r.partition_key.clone(),
                    sequence_number: SequenceNumber { shard_index: shard, shard_sequence: r.sequence }.to_string(),
                }),
            })
            .collect();
        let mut outcomes = Vec::with_capacity(inputs.len());
        let mut start = 0;
        while start < inputs.len() {
            // At least one record per invocation, then as many as fit the invocation size.
            let mut end = start + 1;
            let mut bytes = inputs[start].data.len();
            while end < inputs.len() && bytes + inputs[end].data.len() <= self.invocation_bytes {
                bytes += inputs[end].data.len();
                end += 1;
            }
            outcomes.extend(self.transform.process(&inputs[start..end]));
            start = end;
        }
        outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Ok { data, partition_keys } => TransformOutcome::Ok { data, partition_keys },
                Outcome::Dropped => TransformOutcome::Dropped,
                Outcome::Failed { code, message, attempts } => TransformOutcome::Failed(Failure {
                    output_type: PROCESSING_FAILED,
                    code: code.into(),
                    message,
                    attempts,
                }),
            })
            .collect()
    }

    fn arn(&self) -> &str {
        &self.arn
    }
}
