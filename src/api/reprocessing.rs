//! Sluice's reprocessing API: replays and redrives on a running server
//! ([`sluice_firehose::tasks`]), on the API's port, signed for service `firehose` like
//! Firehose's own operations, in AWS JSON 1.1 with `X-Amz-Target:
//! SluiceReprocessing_20261205.<Operation>`. AWS has no such API; its shapes follow
//! Firehose's conventions (PascalCase members, `DeliveryStreamName`, AWS's error types).
//!
//! | operation | request | answer |
//! |---|---|---|
//! | `StartReplay` | `DeliveryStreamName`; `StreamName`?; `FromTimestampMs` or `FromSequenceNumber`; `ToTimestampMs`? (exclusive) or `ToSequenceNumber`? (inclusive); `Prefix`?, `ErrorOutputPrefix`?, `LambdaArn`?, `SchemaDatabaseName` + `SchemaTableName`? (a variant of the configuration); `ShardIds`?; `MaxRecordsPerSecond`?, `MaxBytesPerSecond`? | `Task` |
//! | `StartRedrive` | `DeliveryStreamName`; `ErrorOutputType`; `FromTimestampMs`?, `ToTimestampMs`?; `StreamName`? (a Kinesis stream to put into instead); `MaxRecordsPerSecond`?, `MaxBytesPerSecond`? | `Task` |
//! | `DescribeTask` | `TaskId` | `Task` |
//! | `ListTasks` | `DeliveryStreamName`? | `Tasks` (newest first) |
//! | `CancelTask` | `TaskId` | `Task` |

use serde::Deserialize;
use serde_json::{json, Value};
use sluice_engine::sequence_number::SequenceNumber;
use sluice_engine::stream::parse_shard_id;
use sluice_firehose::redrive::{RedriveError, RedriveRequest, RedriveTarget};
use sluice_firehose::replay::{Pace, ReplayError, ReplayPoint, ReplayRequest, SchemaVariant};
use sluice_firehose::tasks::{TaskError, TaskState};

use super::error::{ApiError, ErrorKind};
use super::firehose::Firehose;

/// The `X-Amz-Target` prefix of the reprocessing API.
pub const TARGET_PREFIX: &str = "SluiceReprocessing_20261205";

/// The reprocessing API's operations.
pub const OPERATIONS: [&str; 5] = ["StartReplay", "StartRedrive", "DescribeTask", "ListTasks", "CancelTask"];

/// Longest name a request may give (delivery stream names are at most 64 characters,
/// stream names 128, task ids 24; Firehose and Kinesis API references).
const NAME_CHARS_MAX: usize = 128;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct StartReplay {
    delivery_stream_name: String,
    stream_name: Option<String>,
    from_timestamp_ms: Option<u64>,
    from_sequence_number: Option<String>,
    to_timestamp_ms: Option<u64>,
    to_sequence_number: Option<String>,
    prefix: Option<String>,
    error_output_prefix: Option<String>,
    lambda_arn: Option<String>,
    schema_database_name: Option<String>,
    schema_table_name: Option<String>,
    shard_ids: Option<Vec<String>>,
    max_records_per_second: Option<u64>,
    max_bytes_per_second: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct StartRedrive {
    delivery_stream_name: String,
    error_output_type: String,
    from_timestamp_ms: Option<u64>,
    to_timestamp_ms: Option<u64>,
    stream_name: Option<String>,
    max_records_per_second: Option<u64>,
    max_bytes_per_second: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TaskId {
    task_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ListTasks {
    delivery_stream_name: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::InvalidArgument, message)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::new(ErrorKind::Serialization, e.to_string()))
}

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > NAME_CHARS_MAX {
        return Err(invalid(format!("{what} must be 1 to {NAME_CHARS_MAX} characters")));
    }
    Ok(())
}

/// A point given as a time or a sequence number (not both).
fn point(what: &str, ms: Option<u64>, sequence: Option<&str>) -> Result<Option<ReplayPoint>, ApiError> {
    match (ms, sequence) {
        (Some(_), Some(_)) => Err(invalid(format!("give {what}TimestampMs or {what}SequenceNumber, not both"))),
        (Some(ms), None) => Ok(Some(ReplayPoint::Timestamp(ms))),
        (None, Some(s)) => s
            .parse::<SequenceNumber>()
            .map(|s| Some(ReplayPoint::Sequence(s)))
            .map_err(|_| invalid(format!("{what}SequenceNumber '{s}' is not a sequence number"))),
        (None, None) => Ok(None),
    }
}

fn task_error(e: TaskError) -> ApiError {
    match e {
        TaskError::NotFound(_)
        | TaskError::Replay(ReplayError::NoDeliveryStream(_) | ReplayError::NoStream(_) | ReplayError::NoShard(_))
        | TaskError::Redrive(RedriveError::NoDeliveryStream(_) | RedriveError::NoStream(_)) => {
            ApiError::new(ErrorKind::ResourceNotFound, e.to_string())
        }
        TaskError::Busy(_) => ApiError::new(ErrorKind::LimitExceeded, e.to_string()),
        TaskError::Replay(ReplayError::Invalid(_)) | TaskError::Redrive(RedriveError::Invalid(_)) => {
            invalid(e.to_string())
        }
        _ => ApiError::new(ErrorKind::InternalFailure, e.to_string()),
    }
}

fn task_json(task: &TaskState) -> Value {
    let mut v = serde_json::to_value(task).expect("a task serializes");
    if let Some(map) = v.as_object_mut() {
        map.insert("Total".into(), json!(task.total()));
        map.insert("Remaining".into(), json!(task.remaining()));
    }
    v
}

/// Runs reprocessing `operation` on a JSON `body`; returns the JSON answer.
///
/// Errors: `UnknownOperationException` for another operation; `SerializationException`
/// for a body that is not the operation's shape; `InvalidArgumentException`,
/// `ResourceNotFoundException`, `LimitExceededException` as the task layer refuses.
pub async fn handle(firehose: &Firehose, operation: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let tasks = &firehose.tasks;
    let answer = match operation {
        "StartReplay" => {
            let r: StartReplay = parse(body)?;
            check_name("DeliveryStreamName", &r.delivery_stream_name)?;
            if let Some(s) = &r.stream_name {
                check_name("StreamName", s)?;
            }
            let from = point("From", r.from_timestamp_ms, r.from_sequence_number.as_deref())?
                .ok_or_else(|| invalid("give FromTimestampMs or FromSequenceNumber"))?;
            let to = point("To", r.to_timestamp_ms, r.to_sequence_number.as_deref())?;
            let shards = r
                .shard_ids
                .unwrap_or_default()
                .iter()
                .map(|id| parse_shard_id(id).ok_or_else(|| invalid(format!("ShardIds: '{id}' is not a shard id"))))
                .collect::<Result<Vec<u32>, ApiError>>()?;
            for p in [&r.prefix, &r.error_output_prefix].into_iter().flatten() {
                if p.len() > 1024 {
                    return Err(invalid("Prefix and ErrorOutputPrefix are at most 1024 characters"));
                }
            }
            if let Some(arn) = &r.lambda_arn {
                if arn.is_empty() || arn.len() > 512 {
                    return Err(invalid("LambdaArn is 1 to 512 characters"));
                }
            }
            let schema = match (r.schema_database_name, r.schema_table_name) {
                (None, None) => None,
                (Some(database_name), Some(table_name)) => {
                    let dir = firehose.config.schema_dir.clone();
                    let (db, table) = (database_name.clone(), table_name.clone());
                    let fields =
                        tokio::task::spawn_blocking(move || sluice_firehose::schema::load_table(&dir, &db, &table))
                            .await
                            .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?
                            .map_err(invalid)?;
                    Some(SchemaVariant { database_name, table_name, fields })
                }
                _ => return Err(invalid("give SchemaDatabaseName and SchemaTableName together")),
            };
            let request = ReplayRequest {
                delivery_stream: r.delivery_stream_name,
                from,
                to,
                prefix: r.prefix,
                shards,
                lambda_arn: r.lambda_arn,
                schema,
                error_prefix: r.error_output_prefix,
            };
            let pace =
                Pace { max_records_per_second: r.max_records_per_second, max_bytes_per_second: r.max_bytes_per_second };
            let task = tasks.start_replay(request, r.stream_name.as_deref(), pace).map_err(task_error)?;
            json!({ "Task": task_json(&task) })
        }
        "StartRedrive" => {
            let r: StartRedrive = parse(body)?;
            check_name("DeliveryStreamName", &r.delivery_stream_name)?;
            let target = match r.stream_name {
                Some(s) => {
                    check_name("StreamName", &s)?;
                    RedriveTarget::Stream(s)
                }
                None => RedriveTarget::DeliveryStream,
            };
            let request = RedriveRequest {
                delivery_stream: r.delivery_stream_name,
                error_output_type: r.error_output_type,
                from_ms: r.from_timestamp_ms.unwrap_or(0),
                to_ms: r.to_timestamp_ms,
                target,
            };
            let pace =
                Pace { max_records_per_second: r.max_records_per_second, max_bytes_per_second: r.max_bytes_per_second };
            let task = tasks.start_redrive(request, pace).await.map_err(task_error)?;
            json!({ "Task": task_json(&task) })
        }
        "DescribeTask" => {
            let r: TaskId = parse(body)?;
            check_name("TaskId", &r.task_id)?;
            json!({ "Task": task_json(&tasks.describe(&r.task_id).map_err(task_error)?) })
        }
        "CancelTask" => {
            let r: TaskId = parse(body)?;
            check_name("TaskId", &r.task_id)?;
            json!({ "Task": task_json(&tasks.cancel(&r.task_id).map_err(task_error)?) })
        }
        "ListTasks" => {
            let r: ListTasks = parse(body)?;
            let list: Vec<Value> = tasks
                .list()
                .iter()
                .filter(|t| r.delivery_stream_name.as_ref().is_none_or(|n| *n == t.delivery_stream_name))
                .map(task_json)
                .collect();
            json!({ "Tasks": list })
        }
        _ => return Err(ApiError::new(ErrorKind::UnknownOperation, "")),
    };
    Ok(serde_json::to_vec(&answer).expect("an answer serializes"))
}
