//! The wasmtime host: one engine, compiled components cached, a fresh sandboxed store per
//! batch with a memory limit and an epoch deadline. Loading a component reads at most
//! [`TransformHost::COMPONENT_BYTES_MAX`] bytes of a regular file and instantiates it once in
//! such a store, so its start functions are held to the same limits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

use crate::code_cache::{CodeCache, Digest};
use crate::contract::{match_outputs, InputRecord, Outcome, Returned, ReturnedOutcome, FUNCTION_ERROR};

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/transform.wit",
        world: "transformer",
    });
}

use bindings::sluice::transform::types as wit;
use bindings::Transformer;

/// How often the engine's epoch advances, ms: 10. Deadlines are whole ticks.
pub const EPOCH_TICK_MS: u64 = 10;

/// Limits of one transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformLimits {
    /// Most linear memory a batch may use, bytes (default 64 MiB).
    pub memory_bytes: usize,
    /// Most wall-clock time one invocation may take (default 1 s); enforced to within one
    /// epoch tick (10 ms).
    pub deadline: Duration,
    /// Invocations retried after a trap, timeout or memory exhaustion (Firehose's
    /// `NumberOfRetries`, default 3).
    pub retries: u32,
}

impl Default for TransformLimits {
    fn default() -> Self {
        Self { memory_bytes: 64 << 20, deadline: Duration::from_secs(1), retries: 3 }
    }
}

/// Largest component file a host loads, bytes: 32 MiB ([`TransformHost::COMPONENT_BYTES_MAX`]).
pub(crate) const COMPONENT_BYTES_MAX: u64 = 32 << 20;

/// Most core instances one store may create: 64 (a component of the transform world makes a
/// handful: its modules and the shims that tie them together).
const INSTANCES_MAX: usize = 64;
/// Most linear memories one store may create: 8 (each at most the transform's memory limit).
const MEMORIES_MAX: usize = 8;
/// Most tables one store may create: 16.
const TABLES_MAX: usize = 16;
/// Most elements of one table: 256 Ki (a Rust component's function table has a few
/// thousand), so tables cannot allocate around the memory limit.
const TABLE_ELEMENTS_MAX: usize = 256 << 10;

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read transform {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file (a directory, device, FIFO, socket or symbolic link).
    #[error("transform {path} is not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// The file is larger than [`TransformHost::COMPONENT_BYTES_MAX`].
    #[error("transform {path} is larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap, bytes.
        limit: u64,
    },
    /// The file is not a component of the `sluice:transform/transformer` world.
    #[error("{path} is not a usable transform component: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// Instantiating the component (its start functions) trapped, ran out of its memory
    /// limit or did not finish within its deadline.
    #[error("transform {path} cannot be instantiated within its limits: {reason}")]
    Instantiate {
        /// The file.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
}

/// The process's transform host.
pub struct TransformHost {
    engine: Engine,
    linker: Linker<Sandbox>,
    /// Compiled components by the SHA-256 of their bytes.
    cache: Mutex<HashMap<Digest, Component>>,
    precompiled: Option<CodeCache>,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for TransformHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformHost").field("precompiled", &self.precompiled).finish_non_exhaustive()
    }
}

/// What a store holds: its limits.
struct Sandbox {
    limits: StoreLimits,
}

impl TransformHost {
    /// Largest component file a host loads, bytes: 32 MiB. The example transforms are 0.1
    /// to 2 MiB; a file over the cap is refused before it is compiled, which bounds the work
    /// of one compile (wasmtime has no compile-time budget of its own: its parser's fixed
    /// implementation limits bound each function, and compile work grows with the size).
    pub const COMPONENT_BYTES_MAX: u64 = COMPONENT_BYTES_MAX;

    /// A host with its engine and epoch ticker.
    pub fn new() -> Result<Self, wasmtime::Error> {
        Self::with_precompiled_dir(None)
    }

    /// A host that keeps compiled code of each component in `dir` (created), so a restart
    /// loads it without compiling. Files are named by the SHA-256 of the component and of the
    /// engine's compatibility hash, written atomically, and checked before they are loaded.
    pub fn with_precompiled_dir(dir: Option<PathBuf>) -> Result<Self, wasmtime::Error> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let engine = engine.weak();
            let stop = stop.clone();
            std::thread::Builder::new().name("sluice-wasm-epoch".into()).spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(EPOCH_TICK_MS));
                    match engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => return,
                    }
                }
            })?
        };
        let precompiled = dir.map(|d| CodeCache::new(&engine, d)).transpose().map_err(wasmtime::Error::from)?;
        let linker = Linker::new(&engine);
        Ok(Self { engine, linker, cache: Mutex::new(HashMap::new()), precompiled, ticker: Some(ticker), stop })
    }

    /// A fresh store with `limits`: memory, tables and instances capped, growth past a cap
    /// trapping, and an epoch deadline.
    fn store(&self, limits: &TransformLimits) -> Store<Sandbox> {
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .table_elements(TABLE_ELEMENTS_MAX)
            .instances(INSTANCES_MAX)
            .memories(MEMORIES_MAX)
            .tables(TABLES_MAX)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, Sandbox { limits: store_limits });
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(deadline_ticks(limits.deadline));
        store
    }

    /// The compiled component of `bytes` (read from `path`): from memory, from the on-disk
    /// cache, or compiled (and then cached).
    fn compiled(&self, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
        let content: Digest = Sha256::digest(bytes).into();
        if let Some(c) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(&content) {
            return Ok(c.clone());
        }
        let component = match &self.precompiled {
            Some(cache) => cache.component(&self.engine, &content, bytes),
            None => Component::new(&self.engine, bytes),
        }
        .map_err(|e| LoadError::Invalid { path: path.into(), reason: format!("{e:#}") })?;
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).insert(content, component.clone());
        Ok(component)
    }

    /// Instantiates `component` once in a sandboxed store with `limits` (so a start
    /// function that loops or allocates without end fails here, within the deadline and
    /// the memory limit) and checks its exports; returns the linker to run it with.
    fn check(
        &self,
        path: &Path,
        component: &Component,
        limits: &TransformLimits,
    ) -> Result<Linker<Sandbox>, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid { path: path.into(), reason: format!("{e:#}") };
        // Every import traps: a transform gets no files, network, clocks or randomness.
        let mut linker = self.linker.clone();
        linker.define_unknown_imports_as_traps(component).map_err(invalid)?;
        let mut store = self.store(limits);
        let instance = linker
            .instantiate(&mut store, component)
            .map_err(|e| LoadError::Instantiate { path: path.into(), reason: describe(&e, limits.deadline) })?;
        // Check the exports now, so a wrong component fails at load, not per batch.
        Transformer::new(&mut store, &instance).map_err(invalid)?;
        Ok(linker)
    }

    /// Loads the component at `path` (compiling it once per host and contents) with
    /// `limits` and the delivery stream's `parameters`. The file must be a regular file (a
    /// symbolic link as the last component is refused) of at most
    /// [`TransformHost::COMPONENT_BYTES_MAX`] bytes; it is instantiated once with `limits` to
    /// check it. Blocks: call it off an async runtime's worker threads.
    pub fn load(
        self: &Arc<Self>,
        path: &Path,
        limits: TransformLimits,
        parameters: Vec<(String, String)>,
    ) -> Result<Transform, LoadError> {
        let bytes = match read_regular_file(path, COMPONENT_BYTES_MAX) {
            Ok(Some(b)) => b,
            Ok(None) => return Err(LoadError::TooLarge { path: path.into(), limit: COMPONENT_BYTES_MAX }),
            Err(ReadError::NotAFile) => return Err(LoadError::NotAFile { path: path.into() }),
            Err(ReadError::Io(source)) => return Err(LoadError::Read { path: path.into(), source }),
        };
        let component = self.compiled(path, &bytes)?;
        let linker = self.check(path, &component, &limits)?;
        Ok(Transform { host: self.clone(), component, linker, limits, parameters, name: path.display().to_string() })
    }
}

impl Drop for TransformHost {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// Epoch ticks of a deadline: whole ticks, at least one.
fn deadline_ticks(deadline: Duration) -> u64 {
    u64::try_from(deadline.as_millis().div_ceil(u128::from(EPOCH_TICK_MS)).max(1)).unwrap_or(u64::MAX / 2)
}

/// What went wrong in a store, for messages: a timeout names the deadline.
fn describe(e: &wasmtime::Error, deadline: Duration) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!("timed out after {deadline:?}"),
        Some(t) => format!("trapped: {t}"),
        None => format!("{e:#}"),
    }
}

/// Why [`read_regular_file`] failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("not a regular file")]
    NotAFile,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads `path` if it is a regular file (opened without following a symbolic link as its
/// last component and without blocking on a FIFO) of at most `limit` bytes; `Ok(None)` when
/// larger. Reads at most `limit + 1` bytes, whatever the metadata says.
pub(crate) fn read_regular_file(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, ReadError> {
    use std::io::Read;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        // O_NOFOLLOW on a symbolic link.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(ReadError::NotAFile),
        Err(e) => return Err(e.into()),
    };
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(ReadError::NotAFile);
    }
    if metadata.len() > limit {
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// A loaded transform: a compiled component with its limits and parameters.
pub struct Transform {
    host: Arc<TransformHost>,
    component: Component,
    linker: Linker<Sandbox>,
    limits: TransformLimits,
    parameters: Vec<(String, String)>,
    name: String,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform").field("name", &self.name).field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Transform {
    /// The component's file, as loaded.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Transforms a batch: one outcome per input, in input order. Never panics and never
    /// hangs: a failing invocation is retried, then fails the batch's records.
    pub fn process(&self, records: &[InputRecord]) -> Vec<Outcome> {
        let inputs: Vec<wit::InputRecord> = records
            .iter()
            .map(|r| wit::InputRecord {
                record_id: r.record_id.clone(),
                approximate_arrival_timestamp: r.approximate_arrival_timestamp,
                data: r.data.clone(),
                kinesis: r.kinesis.as_ref().map(|k| wit::KinesisMetadata {
                    shard_id: k.shard_id.clone(),
                    partition_key: k.partition_key.clone(),
                    sequence_number: k.sequence_number.clone(),
                }),
            })
            .collect();
        let mut last_error = String::new();
        let attempts = self.limits.retries + 1;
        for attempt in 1..=attempts {
            match self.invoke(&inputs) {
                Ok(returned) => return match_outputs(records, returned, attempt),
                Err(e) => {
                    tracing::warn!(transform = %self.name, attempt, error = %e, "transform invocation failed");
                    last_error = e;
                }
            }
        }
        records
            .iter()
            .map(|_| Outcome::Failed {
                code: FUNCTION_ERROR,
                message: format!(
                    "The Lambda function was successfully invoked but it returned an error result. ({last_error})"
                ),
                attempts,
            })
            .collect()
    }

    fn invoke(&self, inputs: &[wit::InputRecord]) -> Result<Vec<Returned>, String> {
        let mut store = self.host.store(&self.limits);
        let fail = |e: wasmtime::Error| describe(&e, self.limits.deadline);
        let bindings = Transformer::instantiate(&mut store, &self.component, &self.linker).map_err(fail)?;
        let out = bindings.call_transform(&mut store, inputs, &self.parameters).map_err(fail)?;
        Ok(out
            .into_iter()
            .map(|o| Returned {
                record_id: o.record_id,
                outcome: match o.result {
                    wit::Outcome::Ok => ReturnedOutcome::Ok,
                    wit::Outcome::Dropped => ReturnedOutcome::Dropped,
                    wit::Outcome::ProcessingFailed(m) => ReturnedOutcome::ProcessingFailed(m),
                },
                data: o.data,
                partition_keys: o.partition_keys,
            })
            .collect())
    }
}
