//! `Lambda` processors run as WASM components: the resolver that loads the component a
//! processor names, and the adapter from the delivery pipeline to the transform host.
//!
//! `LambdaArn` names a component in the transform directory: `clickstream.wasm` or
//! `arn:aws:lambda:<region>:<account>:function:clickstream[:<qualifier>]` (the qualifier is
//! ignored), both meaning the file `clickstream.wasm` directly in the directory. The name is
//! never made into a path: the directory is listed and the entry of exactly that name is
//! taken, and it must be a regular file (not a link, FIFO, device or folder) of at most
//! [`COMPONENT_BYTES_MAX`] bytes (32 MiB). `NumberOfRetries` (0–300, default 3) sets the retries;
//! `BufferSizeInMBs` (default 1, as Firehose invokes Lambda with up to 1 MB by default) caps
//! the data of one invocation, so a large delivery buffer is transformed in several
//! invocations, each in its own sandbox; any parameter name Firehose does not define is
//! passed to the transform as a parameter.

use std::path::PathBuf;
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

    /// The component file `lambda_arn` names: an entry of the transform directory that is a
    /// regular file of at most [`COMPONENT_BYTES_MAX`] bytes. Blocks (lists the directory).
    pub fn path_of(&self, lambda_arn: &str) -> Result<PathBuf, String> {
        let wanted = file_name_of(lambda_arn)?;
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| format!("Cannot list the transform directory to find {wanted}: {e}."))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("Cannot list the transform directory to find {wanted}: {e}."))?;
            if entry.file_name() != std::ffi::OsStr::new(&wanted) {
                continue;
            }
            // The entry's own type: a symbolic link is not followed.
            let kind = entry.file_type().map_err(|e| format!("Cannot read transform {wanted}: {e}."))?;
            if kind.is_symlink() {
                return Err(format!(
                    "Transform {wanted} is a symbolic link; Sluice loads only regular files in its transform directory."
                ));
            }
            if !kind.is_file() {
                return Err(format!("Transform {wanted} is not a regular file."));
            }
            let len = entry.metadata().map_err(|e| format!("Cannot read transform {wanted}: {e}."))?.len();
            if len > COMPONENT_BYTES_MAX {
                return Err(format!(
                    "Transform {wanted} is {len} bytes; the most Sluice loads is {COMPONENT_BYTES_MAX}."
                ));
            }
            return Ok(entry.path());
        }
        Err(format!("Function not found: Sluice looks for {wanted} in its transform directory."))
    }
}

/// Largest component file, bytes: the transform host's cap (32 MiB).
pub const COMPONENT_BYTES_MAX: u64 = TransformHost::COMPONENT_BYTES_MAX;

/// Lambda function names: 1 to 64 letters, digits, `-` and `_`. Source: Lambda API reference
/// (`FunctionName`).
const FUNCTION_NAME_MAX: usize = 64;

/// The file name `lambda_arn` names: `<name>.wasm` of
/// `arn:<partition>:lambda:<region>:<account>:function:<name>[:<qualifier>]`, or a bare
/// `<name>.wasm` (no `/` or `\`, not `.` or `..`).
pub fn file_name_of(lambda_arn: &str) -> Result<String, String> {
    let usage = || {
        format!(
            "LambdaArn '{lambda_arn}' must be arn:aws:lambda:<region>:<account>:function:<name> or <name>.wasm, \
             naming a file directly in Sluice's transform directory; function names are 1 to {FUNCTION_NAME_MAX} \
             letters, digits, '-' and '_'."
        )
    };
    let is_name = |s: &str| {
        (1..=FUNCTION_NAME_MAX).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if lambda_arn.starts_with("arn:") {
        let parts: Vec<&str> = lambda_arn.split(':').collect();
        let qualifier_ok = |q: &str| q == "$LATEST" || is_name(q);
        return match parts.as_slice() {
            ["arn", partition, "lambda", region, account, "function", name, rest @ ..]
                if !partition.is_empty()
                    && !region.is_empty()
                    && !account.is_empty()
                    && is_name(name)
                    && match rest {
                        [] => true,
                        [q] => qualifier_ok(q),
                        _ => false,
                    } =>
            {
                Ok(format!("{name}.wasm"))
            }
            _ => Err(usage()),
        };
    }
    let plain = lambda_arn.len() <= 255
        && lambda_arn.ends_with(".wasm")
        && lambda_arn != ".wasm"
        && !lambda_arn.contains(['/', '\\', ':', '\0'])
        && lambda_arn != "."
        && lambda_arn != "..";
    if plain {
        Ok(lambda_arn.to_owned())
    } else {
        Err(usage())
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
        let transform = self.host.load(&self.path_of(arn)?, limits, parameters).map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_arns_name_plain_files() {
        let ok = [
            ("arn:aws:lambda:us-east-1:000000000000:function:clickstream", "clickstream.wasm"),
            ("arn:aws:lambda:eu-west-1:123456789012:function:pii_redaction:$LATEST", "pii_redaction.wasm"),
            ("arn:aws-cn:lambda:cn-north-1:123456789012:function:my-fn:prod", "my-fn.wasm"),
            ("clickstream.wasm", "clickstream.wasm"),
            ("my transform.wasm", "my transform.wasm"),
        ];
        for (arn, file) in ok {
            assert_eq!(file_name_of(arn).as_deref(), Ok(file), "{arn}");
        }
        for arn in [
            "",
            ".wasm",
            "..",
            "/dev/zero",
            "../x.wasm",
            "a/b.wasm",
            "a\\b.wasm",
            "/abs/x.wasm",
            "clickstream",
            "arn:aws:lambda:us-east-1:000000000000:function:../x",
            "arn:aws:lambda:us-east-1:000000000000:function:",
            "arn:aws:lambda:us-east-1:000000000000:function:a.b",
            "arn:aws:lambda:us-east-1:000000000000:function:x:1:2",
            "arn:aws:lambda:us-east-1:000000000000:function:x:../y",
            "arn:aws:s3:::bucket",
            "arn:aws:lambda:us-east-1:000000000000:layer:x",
        ] {
            assert!(file_name_of(arn).is_err(), "{arn}");
        }
    }

    #[test]
    fn path_of_finds_only_a_regular_file_of_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.wasm"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("d.wasm")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("t.wasm"), dir.path().join("l.wasm")).unwrap();
        let host = Arc::new(TransformHost::new().unwrap());
        let w = WasmTransforms::new(host, dir.path().to_owned(), TransformLimits::default());
        assert_eq!(w.path_of("arn:aws:lambda:us-east-1:000000000000:function:t"), Ok(dir.path().join("t.wasm")));
        assert_eq!(w.path_of("t.wasm"), Ok(dir.path().join("t.wasm")));
        assert!(w.path_of("d.wasm").unwrap_err().contains("not a regular file"));
        assert!(w.path_of("l.wasm").unwrap_err().contains("symbolic link"));
        assert!(w.path_of("T.wasm").unwrap_err().contains("not found"));
    }
}
