//! Reprocessing tasks of a running server: replays and redrives, run in the background while
//! the server goes on ingesting and delivering. Each task is a file,
//! `<data_dir>/firehose/tasks/<id>.json` (the id is chosen by the server), rewritten
//! atomically after each buffer or error object it lands, so a server started again
//! resumes every task that was running where it stood: a replay from each shard's next
//! buffer (cut and named as before, so nothing lands twice), a redrive from its next error
//! object (the ledger finishes one it had begun).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sluice_engine::error::IoError;
use sluice_engine::stream::write_atomically;

use crate::delivery_streams::DeliveryStreams;
use crate::metrics::Metrics;
use crate::redrive::{RedriveError, RedriveReport, RedriveRequest, Redriver};
use crate::replay::{self, Pace, ReplayError, ReplayReport, ReplayRequest, Replayer, ShardRange};

/// Runs `f`, which blocks (file syncs, log scans), off the async runtime's worker: on a
/// multi-threaded runtime the worker hands its other tasks to another thread meanwhile
/// (`block_in_place`), so live requests it serves do not wait; elsewhere `f` just runs.
pub(crate) fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Tasks kept, finished ones included: the newest 100 finished stay listed (AWS keeps
/// finished SQS message move tasks listed the same way).
pub const FINISHED_TASKS_KEPT: usize = 100;

/// Tasks running at once on one server: 8.
pub const RUNNING_TASKS_MAX: usize = 8;

/// A task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    /// Working (or to be resumed when the server starts).
    Running,
    /// Everything in range landed.
    Completed,
    /// Stopped by an error (`Failure` says which).
    Failed,
    /// Stopped by CancelTask; what landed stays.
    Cancelled,
}

/// A replay's part of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReplayTask {
    /// What to replay.
    pub request: ReplayRequest,
    /// The Kinesis stream read; `None` is the delivery stream's internal stream
    /// (`DirectPut`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    /// The stream's incarnation then: a stream deleted and made again is not read.
    pub stream_incarnation: u64,
    /// How fast.
    pub pace: Pace,
    /// Each shard's range and where it stands.
    pub ranges: Vec<ShardRange>,
    /// The delivery stream's configuration version when the task started: objects are
    /// named with it to the end (a resumed replay names as it began).
    pub version: u64,
    /// Buffer size the ranges are cut by, bytes (the size hint when the task started).
    pub buffer_bytes: usize,
    /// `attemptEndingTimestamp` of the error records it writes (ms): the same in every
    /// attempt at a buffer.
    pub stamp_ms: u64,
    /// What it did so far.
    pub report: ReplayReport,
}

/// A redrive's part of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RedriveTask {
    /// What to redrive (with the end fixed when the task started).
    pub request: RedriveRequest,
    /// Error objects in range when the task started. Their keys and sizes, oldest first,
    /// are in `<id>.objects.json` beside the task's file, written once (the task's own file
    /// is rewritten after every object).
    pub objects: u64,
    /// Index of the first object not redriven yet.
    pub next_object: usize,
    /// How fast.
    #[serde(default)]
    pub pace: Pace,
    /// What it did so far.
    pub report: RedriveReport,
}

/// One task, as kept and as DescribeTask and ListTasks show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskState {
    /// `replay-<16 hex digits>` or `redrive-<16 hex digits>`.
    pub task_id: String,
    /// The delivery stream whose configuration lands the records.
    pub delivery_stream_name: String,
    /// Its state.
    pub status: TaskStatus,
    /// When it was started, ms since the Unix epoch.
    pub created_ms: u64,
    /// When it last moved, ms.
    pub updated_ms: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// CancelTask asked it to stop (kept, so a restart does not take it up again).
    #[serde(default)]
    pub cancel_requested: bool,
    /// A replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayTask>,
    /// A redrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redrive: Option<RedriveTask>,
}

impl TaskState {
    /// A task starting now (`now_ms`), neither replay nor redrive yet.
    fn starting(task_id: String, delivery_stream_name: String, now_ms: u64) -> Self {
        Self {
            task_id,
            delivery_stream_name,
            status: TaskStatus::Running,
            created_ms: now_ms,
            updated_ms: now_ms,
            failure: None,
            cancel_requested: false,
            replay: None,
            redrive: None,
        }
    }

    /// Records in range (replay) or error objects in range (redrive).
    pub fn total(&self) -> u64 {
        match (&self.replay, &self.redrive) {
            (Some(r), _) => r.ranges.iter().map(ShardRange::records).sum(),
            (_, Some(r)) => r.objects,
            _ => 0,
        }
    }

    /// Records (replay) or error objects (redrive) not done yet.
    pub fn remaining(&self) -> u64 {
        match (&self.replay, &self.redrive) {
            (Some(r), _) => r.ranges.iter().map(ShardRange::remaining).sum(),
            (_, Some(r)) => r.objects.saturating_sub(r.next_object as u64),
            _ => 0,
        }
    }
}

/// Why a task could not be started or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The replay cannot start.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The redrive cannot start.
    #[error(transparent)]
    Redrive(#[from] RedriveError),
    /// No task of that id.
    #[error("task {0} not found")]
    NotFound(String),
    /// [`RUNNING_TASKS_MAX`] are running, or a redrive of the delivery stream is.
    #[error("{0}")]
    Busy(String),
    /// The task's file could not be written.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// A place taken by a task being started ([`Tasks::reserve`]).
struct Reservation<'a> {
    tasks: &'a Tasks,
    id: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.tasks.starting.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

struct Task {
    state: Mutex<TaskState>,
    cancel: AtomicBool,
    /// Order of start on this server (tasks read at open first): ListTasks' tie-break
    /// between tasks started in the same millisecond.
    order: u64,
}

/// The reprocessing tasks of a server.
pub struct Tasks {
    dir: PathBuf,
    streams: Arc<DeliveryStreams>,
    tasks: Mutex<BTreeMap<String, Arc<Task>>>,
    started: std::sync::atomic::AtomicU64,
    /// Tasks being started (checked, not yet added), by reservation: the delivery stream
    /// of a redrive.
    starting: Mutex<BTreeMap<u64, Option<String>>>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Tasks {
    /// The tasks kept under `<data_dir>/firehose/tasks/` (none started yet: see
    /// [`Tasks::resume`]). A file that cannot be read is logged and left alone.
    ///
    /// Errors: the directory cannot be made or listed.
    pub fn open(streams: Arc<DeliveryStreams>) -> Result<Self, IoError> {
        let dir = streams.root().join("tasks");
        std::fs::create_dir_all(&dir).map_err(|e| IoError::new(&dir, e))?;
        sluice_engine::stream::remove_stale_temp_files(&dir);
        let mut tasks = BTreeMap::new();
        for e in std::fs::read_dir(&dir).map_err(|e| IoError::new(&dir, e))? {
            let path = e.map_err(|e| IoError::new(&dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if let Some(id) = name.strip_suffix(".objects.json") {
                // A redrive's list whose task file was never written (a crash in between).
                if !dir.join(format!("{id}.json")).exists() {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<TaskState>(&b).map_err(|e| e.to_string()))
            {
                Ok(state) => {
                    tasks.insert(
                        state.task_id.clone(),
                        Arc::new(Task { state: Mutex::new(state), cancel: false.into(), order: 0 }),
                    );
                }
                Err(error) => tracing::error!(file = %path.display(), %error, "a task file cannot be read: left alone"),
            }
        }
        Ok(Self { dir, streams, tasks: Mutex::new(tasks), started: 1.into(), starting: Mutex::default() })
    }

    fn metrics(&self) -> Arc<Metrics> {
        self.streams.context().metrics.clone()
    }

    /// Starts again every task that was running when the server stopped.
    pub fn resume(self: &Arc<Self>) {
        let running: Vec<Arc<Task>> = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|t| t.state.lock().unwrap_or_else(PoisonError::into_inner).status == TaskStatus::Running)
            .cloned()
            .collect();
        for task in running {
            tracing::info!(task = %task.state.lock().unwrap_or_else(PoisonError::into_inner).task_id, "resuming a reprocessing task");
            self.spawn(task);
        }
    }

    /// Starts replaying `request` from stream `stream` (default: the delivery stream's
    /// source) at `pace`; returns the task as it starts.
    ///
    /// Errors: [`TaskError::Replay`] (no such delivery stream or stream, a configuration a
    /// replay cannot use), [`TaskError::Busy`], [`TaskError::Io`].
    pub fn start_replay(
        self: &Arc<Self>,
        request: ReplayRequest,
        stream: Option<&str>,
        pace: Pace,
    ) -> Result<TaskState, TaskError> {
        let _room = self.reserve(None)?;
        let (version, buffer_bytes) = Replayer::new(&self.streams, &request)?.cut();
        let stream_name = match stream {
            Some(s) => Some(s.to_owned()),
            None => self.streams.get(&request.delivery_stream).and_then(|e| e.spec().source_stream()),
        };
        let source = replay::source_of(&self.streams, &request.delivery_stream, stream_name.as_deref())?;
        let ranges = replay::resolve(&source, &request)?;
        let now = self.now_ms();
        let id = format!("replay-{:016x}", sluice_engine::stream::random_u64());
        let mut state = TaskState::starting(id, request.delivery_stream.clone(), now);
        state.replay = Some(ReplayTask {
            stream_name,
            stream_incarnation: source.incarnation(),
            request,
            pace,
            ranges,
            version,
            buffer_bytes,
            stamp_ms: now,
            report: ReplayReport::default(),
        });
        self.add(state)
    }

    /// Starts redriving `request` at `pace`; an open end becomes now. Returns the task as
    /// it starts.
    ///
    /// Errors: [`TaskError::Redrive`] (no such delivery stream or target stream, an unknown
    /// error output type, the lake cannot be listed), [`TaskError::Busy`] (also when a
    /// redrive of the same delivery stream runs: two would take the same objects),
    /// [`TaskError::Io`].
    pub async fn start_redrive(
        self: &Arc<Self>,
        mut request: RedriveRequest,
        pace: Pace,
    ) -> Result<TaskState, TaskError> {
        let _room = self.reserve(Some(&request.delivery_stream))?;
        let now = self.now_ms();
        request.to_ms = Some(request.to_ms.unwrap_or(now));
        let redriver = Redriver::new(&self.streams, request.clone())?;
        let objects = redriver.error_objects().await?;
        let task_id = format!("redrive-{:016x}", sluice_engine::stream::random_u64());
        let list = serde_json::to_vec(&objects).expect("keys serialize");
        write_atomically(&self.objects_path(&task_id), &list)?;
        let mut state = TaskState::starting(task_id, request.delivery_stream.clone(), now);
        state.redrive = Some(RedriveTask {
            request,
            objects: objects.len() as u64,
            next_object: 0,
            pace,
            report: RedriveReport::default(),
        });
        self.add(state)
    }

    /// Takes a place for a task about to start (of a redrive of `redrive_of`), checked
    /// against the running tasks and the others being started; given back when dropped.
    fn reserve(&self, redrive_of: Option<&str>) -> Result<Reservation<'_>, TaskError> {
        let running: Vec<TaskState> = self.list().into_iter().filter(|t| t.status == TaskStatus::Running).collect();
        let mut starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if running.len() + starting.len() >= RUNNING_TASKS_MAX {
            return Err(TaskError::Busy(format!("{RUNNING_TASKS_MAX} tasks are running, the most at once")));
        }
        if let Some(name) = redrive_of {
            if let Some(t) = running.iter().find(|t| t.redrive.is_some() && t.delivery_stream_name == name) {
                return Err(TaskError::Busy(format!("redrive {} of delivery stream {name} is running", t.task_id)));
            }
            if starting.values().any(|s| s.as_deref() == Some(name)) {
                return Err(TaskError::Busy(format!("a redrive of delivery stream {name} is starting")));
            }
        }
        let id = self.started.fetch_add(1, Ordering::Relaxed);
        starting.insert(id, redrive_of.map(str::to_owned));
        Ok(Reservation { tasks: self, id })
    }

    fn add(self: &Arc<Self>, state: TaskState) -> Result<TaskState, TaskError> {
        self.write(&state)?;
        let order = self.started.fetch_add(1, Ordering::Relaxed);
        let task = Arc::new(Task { state: Mutex::new(state.clone()), cancel: false.into(), order });
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            tasks.insert(state.task_id.clone(), task.clone());
            self.forget_oldest_finished(&mut tasks);
        }
        self.spawn(task);
        Ok(state)
    }

    fn forget_oldest_finished(&self, tasks: &mut BTreeMap<String, Arc<Task>>) {
        let mut finished: Vec<(u64, String)> = tasks
            .values()
            .map(|t| t.state.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .filter(|s| s.status != TaskStatus::Running)
            .map(|s| (s.updated_ms, s.task_id))
            .collect();
        finished.sort();
        let excess = finished.len().saturating_sub(FINISHED_TASKS_KEPT);
        for (_, id) in finished.into_iter().take(excess) {
            tasks.remove(&id);
            let _ = std::fs::remove_file(self.dir.join(format!("{id}.json")));
            let _ = std::fs::remove_file(self.objects_path(&id));
        }
    }

    /// Every task kept, newest first.
    pub fn list(&self) -> Vec<TaskState> {
        let mut all: Vec<(u64, u64, TaskState)> = self
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|t| {
                let s = t.state.lock().unwrap_or_else(PoisonError::into_inner).clone();
                (s.created_ms, t.order, s)
            })
            .collect();
        all.sort_by_key(|t| std::cmp::Reverse((t.0, t.1)));
        all.into_iter().map(|(_, _, s)| s).collect()
    }

    /// Task `id`.
    ///
    /// Errors: [`TaskError::NotFound`].
    pub fn describe(&self, id: &str) -> Result<TaskState, TaskError> {
        self.task(id).map(|t| t.state.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    /// Cancels task `id`: it stops after the buffer or object it is landing (what landed
    /// stays). Cancelling a finished task changes nothing.
    ///
    /// Errors: [`TaskError::NotFound`].
    pub fn cancel(&self, id: &str) -> Result<TaskState, TaskError> {
        let task = self.task(id)?;
        task.cancel.store(true, Ordering::Relaxed);
        let running = task.state.lock().unwrap_or_else(PoisonError::into_inner).status == TaskStatus::Running;
        if running {
            self.update(&task, |s| s.cancel_requested = true);
        }
        let state = task.state.lock().unwrap_or_else(PoisonError::into_inner).clone();
        Ok(state)
    }

    fn task(&self, id: &str) -> Result<Arc<Task>, TaskError> {
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(id.to_owned()))
    }

    fn objects_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.objects.json"))
    }

    fn now_ms(&self) -> u64 {
        self.streams.context().clock.now_ms()
    }

    fn write(&self, state: &TaskState) -> Result<(), IoError> {
        let bytes = serde_json::to_vec_pretty(state).expect("a task serializes");
        write_atomically(&self.dir.join(format!("{}.json", state.task_id)), &bytes)
    }

    /// Sets `task`'s state with `change`, writes it, and updates the remaining gauges.
    fn update(&self, task: &Task, change: impl FnOnce(&mut TaskState)) {
        let state = {
            let mut s = task.state.lock().unwrap_or_else(PoisonError::into_inner);
            change(&mut s);
            s.updated_ms = self.now_ms();
            s.clone()
        };
        if let Err(error) = off_runtime(|| self.write(&state)) {
            // The task goes on; a restart would redo what this write missed (idempotent keys).
            tracing::warn!(task = %state.task_id, %error, "a task's progress could not be written");
        }
        self.update_gauges(&state.delivery_stream_name);
    }

    fn update_gauges(&self, delivery_stream: &str) {
        let (mut records, mut objects) = (0, 0);
        for t in
            self.list().iter().filter(|t| t.status == TaskStatus::Running && t.delivery_stream_name == delivery_stream)
        {
            if t.replay.is_some() {
                records += t.remaining();
            } else {
                objects += t.remaining();
            }
        }
        let m = self.metrics();
        let label = Metrics::label(delivery_stream);
        m.replay_remaining_records.get_or_create(&label).set(records);
        m.redrive_remaining_objects.get_or_create(&label).set(objects);
    }

    fn spawn(self: &Arc<Self>, task: Arc<Task>) {
        let this = self.clone();
        tokio::spawn(async move {
            let state = task.state.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let outcome = match (&state.replay, &state.redrive) {
                (Some(r), _) => this.run_replay(&task, r.clone()).await,
                (_, Some(r)) => this.run_redrive(&task, r.clone()).await,
                _ => Err("a task without a replay or a redrive".to_owned()),
            };
            let cancelled = task.cancel.load(Ordering::Relaxed);
            this.update(&task, |s| match outcome {
                Err(message) => {
                    s.status = TaskStatus::Failed;
                    s.failure = Some(message);
                }
                Ok(()) if cancelled && s.remaining() > 0 => s.status = TaskStatus::Cancelled,
                Ok(()) => s.status = TaskStatus::Completed,
            });
            let s = task.state.lock().unwrap_or_else(PoisonError::into_inner).clone();
            tracing::info!(task = %s.task_id, status = ?s.status, failure = ?s.failure, "reprocessing task ended");
        });
    }

    async fn run_replay(&self, task: &Task, r: ReplayTask) -> Result<(), String> {
        let replayer = Replayer::new(&self.streams, &r.request)
            .map_err(|e| e.to_string())?
            .pinned(r.version, r.buffer_bytes, r.stamp_ms)
            .in_background();
        let source = replay::source_of(&self.streams, &r.request.delivery_stream, r.stream_name.as_deref())
            .ok()
            .filter(|s| s.incarnation() == r.stream_incarnation)
            .ok_or_else(|| "the stream read was deleted since the replay started".to_owned())?;
        let mut ranges = r.ranges.clone();
        let mut report = r.report;
        let metrics = self.metrics();
        let label = Metrics::label(&r.request.delivery_stream);
        let mut counted = report.records;
        let result = replayer
            .run(&source, &mut ranges, r.pace, &task.cancel, &mut report, &mut |ranges, report| {
                metrics.replayed_records.get_or_create(&label).inc_by(report.records - counted);
                counted = report.records;
                self.update(task, |s| {
                    if let Some(t) = s.replay.as_mut() {
                        t.ranges = ranges.to_vec();
                        t.report = *report;
                    }
                });
            })
            .await;
        result.map_err(|e| e.to_string())
    }

    async fn run_redrive(&self, task: &Task, r: RedriveTask) -> Result<(), String> {
        let mut redriver = Redriver::new(&self.streams, r.request.clone()).map_err(|e| e.to_string())?;
        let id = task.state.lock().unwrap_or_else(PoisonError::into_inner).task_id.clone();
        let path = self.objects_path(&id);
        let objects: Vec<(String, u64)> = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| format!("the task's list of error objects ({}) cannot be read: {e}", path.display()))?;
        let start = r.next_object.min(objects.len());
        let mut report = r.report;
        let metrics = self.metrics();
        let label = Metrics::label(&r.request.delivery_stream);
        let mut counted = report.records;
        let result = redriver
            .run(&id, &objects[start..], &mut report, r.pace, &task.cancel, &mut |i, report| {
                metrics.redriven_records.get_or_create(&label).inc_by(report.records - counted);
                counted = report.records;
                self.update(task, |s| {
                    if let Some(t) = s.redrive.as_mut() {
                        t.next_object = start + i + 1;
                        t.report = *report;
                    }
                });
            })
            .await;
        result.map_err(|e| e.to_string())
    }
}
