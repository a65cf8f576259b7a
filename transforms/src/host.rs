//! The wasmtime host: one engine, compiled components cached, a fresh sandboxed store per
//! batch with a memory limit and an epoch deadline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

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
    /// The file is not a component of the `sluice:transform/transformer` world.
    #[error("{path} is not a usable transform component: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
}

/// The process's transform host.
pub struct TransformHost {
    engine: Engine,
    linker: Linker<Sandbox>,
    cache: Mutex<HashMap<PathBuf, Component>>,
    precompiled_dir: Option<PathBuf>,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for TransformHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformHost").field("precompiled_dir", &self.precompiled_dir).finish_non_exhaustive()
    }
}

/// What a store holds: its limits.
struct Sandbox {
    limits: StoreLimits,
}

impl TransformHost {
    /// A host with its engine and epoch ticker.
    pub fn new() -> Result<Self, wasmtime::Error> {
        Self::with_precompiled_dir(None)
    }

    /// A host that keeps compiled code of each component in `dir` (created), so a restart
    /// loads it without compiling.
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
        if let Some(d) = &dir {
            std::fs::create_dir_all(d).map_err(wasmtime::Error::from)?;
        }
        let linker = Linker::new(&engine);
        Ok(Self { engine, linker, cache: Mutex::new(HashMap::new()), precompiled_dir: dir, ticker: Some(ticker), stop })
    }

    fn component(&self, path: &Path) -> Result<Component, LoadError> {
        if let Some(c) = self.cache.lock().unwrap_or_else(PoisonError::into_inner).get(path) {
            return Ok(c.clone());
        }
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.into(), source })?;
        let invalid = |e: wasmtime::Error| LoadError::Invalid { path: path.into(), reason: format!("{e:#}") };
        let component = match &self.precompiled_dir {
            Some(dir) => {
                // Compiled code is keyed by the component's contents and the engine.
                let key = format!("{:016x}-{:016x}.cwasm", fnv1a(&bytes), self.compatibility());
                let cached = dir.join(key);
                // SAFETY: the file was written by `Component::serialize` of this engine's
                // configuration (the key includes its compatibility hash), in a directory the
                // operator gave Sluice for this purpose.
                match unsafe { Component::deserialize_file(&self.engine, &cached) } {
                    Ok(c) => c,
                    Err(_) => {
                        let c = Component::new(&self.engine, &bytes).map_err(invalid)?;
                        if let Ok(code) = c.serialize() {
                            let _ = std::fs::write(&cached, code);
                        }
                        c
                    }
                }
            }
            None => Component::new(&self.engine, &bytes).map_err(invalid)?,
        };
        // Every import traps: a transform gets no files, network, clocks or randomness.
        let mut linker = self.linker.clone();
        linker.define_unknown_imports_as_traps(&component).map_err(invalid)?;
        // Check the exports now, so a wrong component fails at load, not per batch.
        let mut store = Store::new(&self.engine, Sandbox { limits: StoreLimitsBuilder::new().build() });
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = linker.instantiate(&mut store, &component).map_err(invalid)?;
        Transformer::new(&mut store, &instance).map_err(invalid)?;
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).insert(path.to_owned(), component.clone());
        Ok(component)
    }

    /// A hash of what compiled code depends on (wasmtime version, configuration, CPU).
    fn compatibility(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        h.finish()
    }

    /// Loads the component at `path` (compiling it once per host) with `limits` and the
    /// delivery stream's `parameters`.
    pub fn load(
        self: &Arc<Self>,
        path: &Path,
        limits: TransformLimits,
        parameters: Vec<(String, String)>,
    ) -> Result<Transform, LoadError> {
        let component = self.component(path)?;
        let mut linker = self.linker.clone();
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(|e| LoadError::Invalid { path: path.into(), reason: format!("{e:#}") })?;
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

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
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
        let limits = StoreLimitsBuilder::new().memory_size(self.limits.memory_bytes).trap_on_grow_failure(true).build();
        let mut store = Store::new(&self.host.engine, Sandbox { limits });
        store.limiter(|s| &mut s.limits);
        let ticks = self.limits.deadline.as_millis().div_ceil(u128::from(EPOCH_TICK_MS)).max(1) as u64;
        store.set_epoch_deadline(ticks);
        let describe = |e: wasmtime::Error| match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => format!("timed out after {:?}", self.limits.deadline),
            Some(t) => format!("trapped: {t}"),
            None => format!("{e:#}"),
        };
        let bindings = Transformer::instantiate(&mut store, &self.component, &self.linker).map_err(describe)?;
        let out = bindings.call_transform(&mut store, inputs, &self.parameters).map_err(describe)?;
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
