//! The contract's records on the host side, and the mapping of a transform's answer to one
//! outcome per input record, with Firehose's error codes (AWS Firehose developer guide,
//! "Data transformation failure handling"; CloudWatch Logs error codes).

use std::collections::{BTreeMap, HashMap};

/// An invocation failed (trap, timeout, memory): every record of the batch fails.
pub const FUNCTION_ERROR: &str = "Lambda.FunctionError";
/// The transform did not return a record's id.
pub const MISSING_RECORD_ID: &str = "Lambda.MissingRecordId";
/// The transform returned a record's id more than once.
pub const DUPLICATED_RECORD_ID: &str = "Lambda.DuplicatedRecordId";
/// The transform marked the record `processing-failed`.
pub const PROCESSING_FAILED_STATUS: &str = "Lambda.ProcessingFailedStatus";

/// Where a record came from in a Kinesis stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisMetadata {
    /// `shardId-000000000001`.
    pub shard_id: String,
    /// The producer's partition key.
    pub partition_key: String,
    /// The sequence number as Kinesis shows it.
    pub sequence_number: String,
}

/// One record to transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// Opaque id, unique in the batch.
    pub record_id: String,
    /// Arrival time, ms since the Unix epoch.
    pub approximate_arrival_timestamp: u64,
    /// The record's bytes.
    pub data: Vec<u8>,
    /// For a Kinesis stream source.
    pub kinesis: Option<KinesisMetadata>,
}

/// What became of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Transformed.
    Ok {
        /// The new record.
        data: Vec<u8>,
        /// Keys for `!{partitionKeyFromLambda:k}`.
        partition_keys: BTreeMap<String, String>,
    },
    /// Left out on purpose.
    Dropped,
    /// Failed: the original record goes to the error prefix.
    Failed {
        /// Firehose's code, e.g. [`MISSING_RECORD_ID`].
        code: &'static str,
        /// What happened.
        message: String,
        /// Invocations made for this batch.
        attempts: u32,
    },
}

/// One output as the component returned it.
#[derive(Debug, Clone)]
pub(crate) struct Returned {
    pub record_id: String,
    pub outcome: ReturnedOutcome,
    pub data: Vec<u8>,
    pub partition_keys: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) enum ReturnedOutcome {
    Ok,
    Dropped,
    ProcessingFailed(String),
}

/// Matches returned outputs to `inputs` by record id.
pub(crate) fn match_outputs(inputs: &[InputRecord], returned: Vec<Returned>, attempts: u32) -> Vec<Outcome> {
    let mut grouped: HashMap<String, Vec<Returned>> = HashMap::with_capacity(returned.len());
    for r in returned {
        grouped.entry(r.record_id.clone()).or_default().push(r);
    }
    inputs
        .iter()
        .map(|input| match grouped.get_mut(&input.record_id) {
            None => Outcome::Failed {
                code: MISSING_RECORD_ID,
                message: "One or more record Ids were not returned. Ensure that the Lambda function returns all received record Ids.".into(),
                attempts,
            },
            Some(v) if v.len() > 1 => Outcome::Failed {
                code: DUPLICATED_RECORD_ID,
                message: "Multiple records were returned with the same record Id. Ensure that the Lambda function returns unique record Ids for each record.".into(),
                attempts,
            },
            Some(v) => {
                let r = v.pop().expect("one output");
                match r.outcome {
                    ReturnedOutcome::Ok => Outcome::Ok { data: r.data, partition_keys: r.partition_keys.into_iter().collect() },
                    ReturnedOutcome::Dropped => Outcome::Dropped,
                    ReturnedOutcome::ProcessingFailed(m) => Outcome::Failed {
                        code: PROCESSING_FAILED_STATUS,
                        message: if m.is_empty() { "ProcessingFailed status set for record".into() } else { m },
                        attempts,
                    },
                }
            }
        })
        .collect()
}
