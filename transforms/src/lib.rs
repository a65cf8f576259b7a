//! WebAssembly transforms in place of Lambda: Firehose's data-transformation contract
//! (`wit/transform.wit`) run on wasmtime's component model, in-process and sandboxed.
//!
//! - One [`TransformHost`] (one `wasmtime::Engine`) per process; a component is compiled
//!   once and cached, in memory and optionally as pre-compiled code on disk.
//! - Every batch runs in a fresh `Store`: a memory limit (default 64 MiB), a CPU deadline
//!   (default 1 s per batch, enforced with epoch interruption), and no imports at all: WASI
//!   calls (files, network, clocks, randomness) trap, so a transform sees only its records.
//! - Failures map as Firehose maps Lambda's: a trap, a timeout or running out of memory is
//!   retried `NumberOfRetries` times (default 3) and then fails every record of the batch
//!   with `Lambda.FunctionError`; a record whose id is not returned fails with
//!   `Lambda.MissingRecordId`, one returned twice with `Lambda.DuplicatedRecordId`, one the
//!   transform marks `processing-failed` with `Lambda.ProcessingFailedStatus`.
//! - [`JqQuery`]: dynamic partitioning's `MetadataExtractionQuery` (jq, run by jaq) in a
//!   sandbox of its own (an embedded component, built from `guests/jq` by `build.rs`), with
//!   fuel, memory and stack budgets per record.
//!
//! ```no_run
//! use sluice_transforms::{InputRecord, TransformHost, TransformLimits};
//! let host = std::sync::Arc::new(TransformHost::new()?);
//! let t = host.load(std::path::Path::new("clickstream.wasm"), TransformLimits::default(), vec![])?;
//! let outcomes = t.process(&[InputRecord { record_id: "1".into(), approximate_arrival_timestamp: 0, data: b"{}".to_vec(), kinesis: None }]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod code_cache;
mod contract;
mod examples;
mod guest_build;
mod host;
mod jq;

pub use contract::{
    InputRecord, KinesisMetadata, Outcome, DUPLICATED_RECORD_ID, FUNCTION_ERROR, MISSING_RECORD_ID,
    PROCESSING_FAILED_STATUS,
};
pub use examples::{write_example_transforms, EXAMPLE_TRANSFORMS};
pub use guest_build::{build_guests, GuestBuildError};
pub use host::{LoadError, Transform, TransformHost, TransformLimits};
pub use jq::{
    JqLimits, JqQuery, COMPILE_FUEL, DEFAULT_FUEL_PER_BYTE, DEFAULT_FUEL_PER_RECORD, DEFAULT_MEMORY_BYTES,
    JQ_COMPONENT_WASM, MAX_WASM_STACK_BYTES,
};
