//! jq in a sandbox: a Firehose `MetadataExtractionQuery` (dynamic partitioning by record
//! content) compiled and run by jaq inside a WebAssembly component
//! (`transforms/guests/jq`, the `jq` world of `wit/jq.wit`, built by `build.rs` and
//! embedded in this crate), so a hostile query fails its record and never the server.
//!
//! - One process-wide engine with fuel, a bounded wasm stack, and the component compiled
//!   once, at the first [`JqQuery::compile`] (or [`JqQuery::warm_up`]), or loaded from the
//!   code cache set by [`JqQuery::cache_compiled_code_in`] (`sluice serve` uses
//!   `<data_dir>/wasm-cache`).
//! - Each record runs with [`JqLimits::fuel_for`] its size (a loop runs out of it) within
//!   [`JqLimits::memory_bytes`] of linear memory (a string doubled without end runs out of
//!   it) and a stack of [`MAX_WASM_STACK_BYTES`] plus the guest's own 1 MiB (deep recursion
//!   runs out of it).
//!   A trap fails that record with a message saying which budget it exceeded; the instance is
//!   then replaced, and the next record runs in a fresh one.
//! - Filters that read the clock, the environment, files or further inputs, write logs or
//!   halt are refused at compile (`now`, `env`, `$ENV`, `input`, `debug`, `stderr`, ...);
//!   every WASI import of the component traps, except the hash seed Rust's `HashMap` asks
//!   for, which is a constant.
//!
//! ```no_run
//! use sluice_transforms::{JqLimits, JqQuery};
//! let mut q = JqQuery::compile("{station: .station, year: .year}", JqLimits::default())?;
//! let keys = q.keys(br#"{"station":"Dongsi","year":2013}"#)?;
//! assert_eq!(keys["year"], "2013");
//! # Ok::<(), String>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder, Trap};

use crate::code_cache::CodeCache;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/jq.wit",
        world: "jq",
    });
}

/// The jq sandbox component (`transforms/guests/jq` built for `wasm32-wasip2`), as embedded.
pub static JQ_COMPONENT_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/jq.wasm"));

/// Fuel (wasmtime's unit of work, about one WebAssembly instruction) a record may use by
/// default, besides [`DEFAULT_FUEL_PER_BYTE`]: 200,000,000, 20 to 50 ms of jq (4 to 10 billion
/// fuel per second measured on an x86 server core). An ordinary query on a 200-byte record
/// uses about 90,000, so this is the budget of a query that loops or recurses.
pub const DEFAULT_FUEL_PER_RECORD: u64 = 200_000_000;

/// Fuel a record gets per byte of its size by default, on top of [`DEFAULT_FUEL_PER_RECORD`],
/// for parsing it: 400. Measured: 60 per byte for a 1000 KiB record holding one long string,
/// 310 per byte for one holding 40,000 small objects; a Firehose record (at most 1000 KiB)
/// gets up to 600,000,000 in all.
pub const DEFAULT_FUEL_PER_BYTE: u64 = 400;

/// Linear memory a query may use by default, bytes: 32 MiB (the guest's 1 MiB stack and
/// 0.4 MiB of static data included). A 1000 KiB record takes 4 MiB (one long string) to
/// 17 MiB (35,000 small objects).
pub const DEFAULT_MEMORY_BYTES: usize = 32 << 20;

/// Fuel for instantiating the component and compiling a query (with jaq's standard library,
/// which is compiled with it): 100,000,000; an ordinary query takes 4,500,000.
pub const COMPILE_FUEL: u64 = 100_000_000;

/// Stack the engine gives WebAssembly code, bytes: 512 KiB, on top of the guest's own 1 MiB
/// stack in its linear memory. Deep recursion exhausts one or the other and traps.
pub const MAX_WASM_STACK_BYTES: usize = 512 << 10;

/// What the component's `wasi:random/insecure-seed` returns: a constant.
const HASH_SEED: (u64, u64) = (0x736c_7569_6365_6a71, 0x6a71_2d73_6565_6421);

/// Core instances one store may create: 16 (the component makes a handful).
const INSTANCES_MAX: usize = 16;
/// Tables one store may create: 16.
const TABLES_MAX: usize = 16;
/// Linear memories one store may create: 4 (the component has one).
const MEMORIES_MAX: usize = 4;
/// Elements of one table: 64 Ki (the component's function table has a few thousand).
const TABLE_ELEMENTS_MAX: usize = 64 << 10;

/// The budget of one query. A record may use `fuel_per_record + fuel_per_byte × its size`
/// fuel (about one unit per WebAssembly instruction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JqLimits {
    /// Fuel every record gets; default [`DEFAULT_FUEL_PER_RECORD`].
    pub fuel_per_record: u64,
    /// Fuel a record gets per byte of its size, for parsing it; default
    /// [`DEFAULT_FUEL_PER_BYTE`].
    pub fuel_per_byte: u64,
    /// Linear memory the query may use, bytes; default [`DEFAULT_MEMORY_BYTES`].
    pub memory_bytes: usize,
}

impl JqLimits {
    /// The fuel of a record of `len` bytes.
    pub fn fuel_for(&self, len: usize) -> u64 {
        self.fuel_per_record.saturating_add(self.fuel_per_byte.saturating_mul(len as u64))
    }
}

impl Default for JqLimits {
    fn default() -> Self {
        Self {
            fuel_per_record: DEFAULT_FUEL_PER_RECORD,
            fuel_per_byte: DEFAULT_FUEL_PER_BYTE,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        }
    }
}

/// The process's jq engine and the component, compiled once.
struct Runtime {
    engine: Engine,
    pre: bindings::JqPre<Sandbox>,
}

fn runtime() -> Result<&'static Runtime, String> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let fail = |e: wasmtime::Error| format!("the jq sandbox cannot be set up: {e:#}");
            let mut config = Config::new();
            config.consume_fuel(true).max_wasm_stack(MAX_WASM_STACK_BYTES);
            let engine = Engine::new(&config).map_err(fail)?;
            let started = std::time::Instant::now();
            let component = compile_component(&engine).map_err(fail)?;
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, cached_in = ?CODE_CACHE_DIR.get(),
                "jq component ready (compiled, or loaded from the code cache)");
            let mut linker = Linker::new(&engine);
            // The component imports WASI (the Rust standard library links it) and calls one
            // function of it: regexes key a `HashMap`, which std seeds from
            // `wasi:random/insecure-seed`. It gets a fixed seed (runs stay deterministic);
            // every other import traps.
            let seeds: Vec<String> = component
                .component_type()
                .imports(&engine)
                .map(|(name, _)| name.to_owned())
                .filter(|name| name.starts_with("wasi:random/insecure-seed@"))
                .collect();
            for seed in seeds {
                linker
                    .instance(&seed)
                    .and_then(|mut i| i.func_wrap("insecure-seed", |_, ()| Ok(((HASH_SEED.0, HASH_SEED.1),))))
                    .map_err(fail)?;
            }
            linker.define_unknown_imports_as_traps(&component).map_err(fail)?;
            let pre = bindings::JqPre::new(linker.instantiate_pre(&component).map_err(fail)?).map_err(fail)?;
            Ok(Runtime { engine, pre })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Where [`JqQuery::cache_compiled_code_in`] keeps the component's compiled code.
static CODE_CACHE_DIR: OnceLock<PathBuf> = OnceLock::new();

/// The jq component compiled for `engine`, from the code cache when one is set.
fn compile_component(engine: &Engine) -> wasmtime::Result<Component> {
    let Some(dir) = CODE_CACHE_DIR.get() else {
        return Component::new(engine, JQ_COMPONENT_WASM);
    };
    match CodeCache::new(engine, dir.clone()) {
        Ok(cache) => cache.component(engine, &Sha256::digest(JQ_COMPONENT_WASM).into(), JQ_COMPONENT_WASM),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot use the compiled code cache; compiling jq");
            Component::new(engine, JQ_COMPONENT_WASM)
        }
    }
}

/// What a store holds: its limits, and whether a memory growth was refused (so a trap that
/// follows is reported as running out of memory).
struct Sandbox {
    limits: StoreLimits,
    memory_refused: bool,
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.memory_refused = true;
        }
        allowed
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// One instance of the component with the query compiled in it.
struct Instance {
    store: Store<Sandbox>,
    jq: bindings::Jq,
}

/// Why a call into the sandbox failed, in words, from the trap and the store's state.
fn describe(error: &wasmtime::Error, sandbox: &Sandbox, fuel: u64, memory_bytes: usize) -> String {
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => format!("the query exceeded its budget of {fuel} steps"),
        _ if sandbox.memory_refused => {
            format!("the query exceeded its memory limit of {} bytes ({} MiB)", memory_bytes, memory_bytes >> 20)
        }
        // The guest's shadow stack sits below its static data, so overflowing it is an
        // out-of-bounds access; the engine's own stack limit is a stack overflow.
        Some(Trap::StackOverflow | Trap::MemoryOutOfBounds) => {
            "the query exceeded its stack (recursion or nesting too deep)".into()
        }
        Some(Trap::UnreachableCodeReached) => "the query crashed the jq sandbox (a panic in jaq)".into(),
        Some(t) => format!("the query trapped: {t}"),
        None => format!("the jq sandbox failed: {error:#}"),
    }
}

/// A `MetadataExtractionQuery` compiled in its own sandbox. `keys` takes `&mut self`: keep one
/// per thread, or behind a mutex.
pub struct JqQuery {
    query: String,
    limits: JqLimits,
    /// `None` after a trap; the next record makes a fresh instance.
    instance: Option<Instance>,
}

impl std::fmt::Debug for JqQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JqQuery").field("query", &self.query).field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl JqQuery {
    /// Compiles the component now rather than at the first [`JqQuery::compile`]: once per
    /// process, 3.5 s of one core in a release build (45 s in a debug build, whose Cranelift
    /// is unoptimized).
    pub fn warm_up() -> Result<(), String> {
        runtime().map(|_| ())
    }

    /// Keeps the component's compiled code in `dir` (shared with transforms' code cache), so
    /// a restarted process loads it instead of compiling it again. Takes effect if called
    /// before the first [`JqQuery::compile`] or [`JqQuery::warm_up`]; later calls change nothing.
    pub fn cache_compiled_code_in(dir: PathBuf) {
        let _ = CODE_CACHE_DIR.set(dir);
    }

    /// Compiles `query` in a new sandbox with `limits`. The error names what is wrong with
    /// the query (for Firehose's `InvalidArgumentException`), e.g. a parse error, an undefined
    /// filter, or a filter the sandbox does not allow (`now`, `env`, `input`, `debug`, ...).
    pub fn compile(query: &str, limits: JqLimits) -> Result<Self, String> {
        let instance = Self::instantiate(query, limits)?;
        Ok(Self { query: query.to_owned(), limits, instance: Some(instance) })
    }

    /// The query's source text.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The query's limits.
    pub fn limits(&self) -> JqLimits {
        self.limits
    }

    fn instantiate(query: &str, limits: JqLimits) -> Result<Instance, String> {
        let runtime = runtime()?;
        let storelimits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .table_elements(TABLE_ELEMENTS_MAX)
            .instances(INSTANCES_MAX)
            .tables(TABLES_MAX)
            .memories(MEMORIES_MAX)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&runtime.engine, Sandbox { limits: storelimits, memory_refused: false });
        store.limiter(|s| s);
        let fail = |e: wasmtime::Error, store: &Store<Sandbox>| {
            // At most 200 characters of the query, as the guest's own messages.
            let shown = match query.char_indices().nth(200) {
                Some((end, _)) => format!("{}...", &query[..end]),
                None => query.to_owned(),
            };
            format!(
                "MetadataExtractionQuery '{shown}' cannot be compiled within the sandbox's limits: {}",
                describe(&e, store.data(), COMPILE_FUEL, limits.memory_bytes)
            )
        };
        store.set_fuel(COMPILE_FUEL).map_err(|e| fail(e, &store))?;
        let jq = match runtime.pre.instantiate(&mut store) {
            Ok(jq) => jq,
            Err(e) => return Err(fail(e, &store)),
        };
        match jq.call_compile(&mut store, query) {
            Ok(Ok(())) => Ok(Instance { store, jq }),
            Ok(Err(message)) => Err(message),
            Err(e) => Err(fail(e, &store)),
        }
    }

    /// Runs the query on one record (parsed as one JSON value): its first output must be an
    /// object whose values are strings, numbers or booleans; they become the partition keys,
    /// as text (numbers as JSON writes them, booleans as `true`/`false`). A record that is
    /// not JSON, a query that fails, gives no result, gives something else, or exceeds its
    /// budget (fuel, memory, stack) fails with a message; the next record runs normally.
    pub fn keys(&mut self, record: &[u8]) -> Result<BTreeMap<String, String>, String> {
        let instance = match &mut self.instance {
            Some(i) => i,
            empty => empty.insert(Self::instantiate(&self.query, self.limits)?),
        };
        instance.store.data_mut().memory_refused = false;
        let fuel = self.limits.fuel_for(record.len());
        let result = match instance.store.set_fuel(fuel) {
            Ok(()) => instance.jq.call_keys(&mut instance.store, record),
            Err(e) => Err(e),
        };
        match result {
            Ok(Ok(pairs)) => Ok(pairs.into_iter().collect()),
            Ok(Err(message)) => Err(message),
            Err(e) => {
                let message = describe(&e, instance.store.data(), fuel, self.limits.memory_bytes);
                // A trapped instance cannot be entered again.
                self.instance = None;
                Err(message)
            }
        }
    }
}
