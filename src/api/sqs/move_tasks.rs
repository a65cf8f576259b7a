//! Dead-letter redrive: `StartMessageMoveTask`, `ListMessageMoveTasks` and
//! `CancelMessageMoveTask`. A task moves the messages visible in a dead-letter queue when it
//! starts to a destination queue (or each back to the queue it came from), at most
//! `MaxNumberOfMessagesPerSecond` a second; the server's once-a-second pass
//! ([`Sqs::run_move_tasks`]) does the moving. Tasks live in memory: a restart ends them, and
//! what they moved stays moved.

use std::sync::PoisonError;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_engine::queue::Area;
use sluice_engine::ReadLimits;

use super::message::Envelope;
use super::{attributes, messages, Sqs, SqsError};

/// Most messages a task moves a second without `MaxNumberOfMessagesPerSecond`: 500 (the
/// largest value a client may give). Source: Amazon SQS API Reference, StartMessageMoveTask.
pub const MOVE_RATE_MAX: u64 = 500;

/// One move task.
#[derive(Debug, Clone)]
pub struct MoveTask {
    handle: String,
    source_arn: String,
    destination_arn: Option<String>,
    rate: Option<u64>,
    status: &'static str,
    moved: u64,
    to_move: u64,
    started_ms: u64,
    failure: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartRequest {
    source_arn: String,
    destination_arn: Option<String>,
    max_number_of_messages_per_second: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    source_arn: String,
    max_results: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CancelRequest {
    task_handle: String,
}

pub fn start(sqs: &Sqs, r: StartRequest) -> Result<Value, SqsError> {
    let source = sqs.by_arn(&r.source_arn).ok_or_else(|| {
        SqsError::new(
            "ResourceNotFoundException",
            "The resource that you specified for the SourceArn parameter doesn't exist.",
        )
    })?;
    // The source must be some queue's dead-letter queue.
    let is_dead_letter_queue = sqs.queues.list().iter().any(|q| {
        let m = q.meta.read().unwrap_or_else(PoisonError::into_inner);
        m.attributes
            .get("RedrivePolicy")
            .and_then(|p| attributes::redrive(p).ok())
            .is_some_and(|p| p.target_arn == r.source_arn)
    });
    if !is_dead_letter_queue {
        return Err(SqsError::invalid("Source queue must be configured as a Dead Letter Queue."));
    }
    if let Some(d) = &r.destination_arn {
        if sqs.by_arn(d).is_none() {
            return Err(SqsError::new(
                "ResourceNotFoundException",
                "The resource that you specified for the DestinationArn parameter doesn't exist.",
            ));
        }
    }
    if let Some(n) = r.max_number_of_messages_per_second.filter(|n| !(1..=MOVE_RATE_MAX as i64).contains(n)) {
        return Err(SqsError::invalid(format!(
            "Value {n} for parameter MaxNumberOfMessagesPerSecond is invalid. Reason: Must be between 1 and 500."
        )));
    }
    let mut tasks = sqs.move_tasks.lock().unwrap_or_else(PoisonError::into_inner);
    if tasks.iter().any(|t| t.source_arn == r.source_arn && t.status == "RUNNING") {
        return Err(SqsError::invalid(
            "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
        ));
    }
    let (visible, ..) = super::actions::counts(sqs, &source);
    let id = super::message::new_message_id();
    let handle = base64::engine::general_purpose::STANDARD
        .encode(json!({ "taskId": id, "sourceArn": r.source_arn }).to_string());
    // Finished tasks are kept for ListMessageMoveTasks, the newest 10 per source queue.
    let finished = tasks.iter().filter(|t| t.source_arn == r.source_arn && t.status != "RUNNING").count();
    if finished >= 10 {
        if let Some(i) = tasks.iter().position(|t| t.source_arn == r.source_arn && t.status != "RUNNING") {
            tasks.remove(i);
        }
    }
    tasks.push(MoveTask {
        handle: handle.clone(),
        source_arn: r.source_arn,
        destination_arn: r.destination_arn,
        rate: r.max_number_of_messages_per_second.map(|n| n as u64),
        status: "RUNNING",
        moved: 0,
        to_move: visible,
        started_ms: sqs.clock.now_ms(),
        failure: None,
    });
    Ok(json!({ "TaskHandle": handle }))
}

pub fn list(sqs: &Sqs, r: ListRequest) -> Result<Value, SqsError> {
    if sqs.by_arn(&r.source_arn).is_none() {
        return Err(SqsError::new(
            "ResourceNotFoundException",
            "The resource that you specified for the SourceArn parameter doesn't exist.",
        ));
    }
    let limit = match r.max_results {
        None => 1,
        Some(n @ 1..=10) => n as usize,
        Some(n) => {
            return Err(SqsError::invalid(format!(
                "Value {n} for parameter MaxResults is invalid. Reason: Must be between 1 and 10."
            )))
        }
    };
    let tasks = sqs.move_tasks.lock().unwrap_or_else(PoisonError::into_inner);
    let results: Vec<Value> = tasks
        .iter()
        .rev()
        .filter(|t| t.source_arn == r.source_arn)
        .take(limit)
        .map(|t| {
            let mut v = json!({
                "Status": t.status,
                "SourceArn": t.source_arn,
                "ApproximateNumberOfMessagesMoved": t.moved,
                "ApproximateNumberOfMessagesToMove": t.to_move,
                "StartedTimestamp": t.started_ms,
            });
            if t.status == "RUNNING" {
                v["TaskHandle"] = t.handle.clone().into();
            }
            if let Some(d) = &t.destination_arn {
                v["DestinationArn"] = d.clone().into();
            }
            if let Some(n) = t.rate {
                v["MaxNumberOfMessagesPerSecond"] = n.into();
            }
            if let Some(f) = &t.failure {
                v["FailureReason"] = f.clone().into();
            }
            v
        })
        .collect();
    Ok(json!({ "Results": results }))
}

pub fn cancel(sqs: &Sqs, r: CancelRequest) -> Result<Value, SqsError> {
    let decoded: Option<Value> = base64::engine::general_purpose::STANDARD
        .decode(&r.task_handle)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let source = decoded
        .as_ref()
        .and_then(|v| v["sourceArn"].as_str().map(str::to_owned))
        .filter(|_| decoded.as_ref().is_some_and(|v| v["taskId"].is_string()))
        .ok_or_else(|| SqsError::invalid("Value for parameter TaskHandle is invalid."))?;
    if sqs.by_arn(&source).is_none() {
        return Err(SqsError::new(
            "ResourceNotFoundException",
            "The resource that you specified for the SourceArn parameter doesn't exist.",
        ));
    }
    let mut tasks = sqs.move_tasks.lock().unwrap_or_else(PoisonError::into_inner);
    let task = tasks
        .iter_mut()
        .find(|t| t.handle == r.task_handle && t.status == "RUNNING")
        .ok_or_else(|| SqsError::new("ResourceNotFoundException", "Task does not exist."))?;
    task.status = "CANCELLED";
    Ok(json!({ "ApproximateNumberOfMessagesMoved": task.moved }))
}

impl Sqs {
    /// Moves the next messages of every running task: up to its rate (500 without one) per
    /// call; the server calls it once a second. A task whose source or destination queue
    /// went away fails; one that moved all it was to move, or found its queue empty, completes.
    pub fn run_move_tasks(&self) {
        let running: Vec<MoveTask> = self
            .move_tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|t| t.status == "RUNNING")
            .cloned()
            .collect();
        for task in running {
            let budget = task.rate.unwrap_or(MOVE_RATE_MAX).min(task.to_move.saturating_sub(task.moved));
            let outcome = self.move_some(&task, budget);
            let mut tasks = self.move_tasks.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(t) = tasks.iter_mut().find(|t| t.handle == task.handle && t.status == "RUNNING") else { continue };
            match outcome {
                Ok(n) => {
                    t.moved += n;
                    if n < budget || t.moved >= t.to_move {
                        t.status = "COMPLETED";
                    }
                }
                Err(reason) => {
                    t.status = "FAILED";
                    t.failure = Some(reason);
                }
            }
        }
    }

    /// Moves up to `budget` visible messages of the task's source; how many moved.
    fn move_some(&self, task: &MoveTask, budget: u64) -> Result<u64, String> {
        let source = self.by_arn(&task.source_arn).ok_or("AWS.SimpleQueueService.NonExistentQueue")?;
        let stream = Sqs::stream_name(source.meta.read().unwrap_or_else(PoisonError::into_inner).incarnation);
        let log = self.streams.get(&stream).and_then(|s| s.log(0)).ok_or("the source queue's stream is missing")?;
        let shard = (stream, 0u32);
        let now = self.clock.now_ms();
        let mut state = source.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changes = Vec::new();
        // Records trimmed by retention are gone from the queue before any is looked at.
        let first = log.bounds().first_sequence_number;
        if state.shards.get(&shard).is_some_and(|c| c.cursor < first) {
            state.drop_below(&shard, first);
            changes.push(sluice_engine::queue::Change::DropBelow { shard: shard.clone(), first });
        }
        let mut sequences: Vec<u64> =
            state.visible(now, budget as usize, Area::Main).into_iter().map(|(_, s)| s).collect();
        let cursor = state.shards.get(&shard).map_or(0, |c| c.cursor).max(log.bounds().first_sequence_number);
        let end = log.readable_end();
        sequences.extend(cursor..end.min(cursor + budget));
        sequences.truncate(budget as usize);
        let mut moved = 0;
        let mut failure = None;
        for seq in sequences {
            let Some(env) = log.read(seq, ReadLimits { max_records: 1, ..ReadLimits::default() }).ok().and_then(|b| {
                b.iter().next().filter(|r| r.sequence_number == seq).and_then(|r| Envelope::decode(r.data))
            }) else {
                continue;
            };
            let target = task.destination_arn.clone().or_else(|| env.source_arn.clone());
            let Some(target) = target else { continue };
            if !messages::move_to(self, &target, &env, None) {
                // SQS's reason, exactly; what moved so far is journaled below.
                failure = Some("AWS.SimpleQueueService.NonExistentQueue".to_owned());
                break;
            }
            changes.extend(state.expire(&shard, seq));
            moved += 1;
        }
        source.record(&state, &changes).map_err(|e| e.to_string())?;
        drop(state);
        match failure {
            Some(reason) => Err(reason),
            None => Ok(moved),
        }
    }
}
