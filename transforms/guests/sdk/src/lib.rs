//! The guest SDK: a Sluice transform is a function from one record to an [`Output`].
//!
//! ```ignore
//! use sluice_transform_guest::{Output, Parameters, Record};
//!
//! fn upper(record: &Record, _: &Parameters) -> Output {
//!     Output::ok(record.data.to_ascii_uppercase())
//! }
//! sluice_transform_guest::transform!(upper);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` is a component of
//! the `sluice:transform/transformer` world, ready for a delivery stream's `Lambda` processor.

/// The contract's bindings, generated from `transforms/wit/transform.wit`.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "transformer",
        pub_export_macro: true,
        default_bindings_module: "sluice_transform_guest::bindings",
    });
}

pub use bindings::sluice::transform::types::{KinesisMetadata, Outcome};
pub use bindings::{Guest, InputRecord, OutputRecord};

/// One input record.
pub type Record = InputRecord;

/// The delivery stream's transform parameters, by name.
pub struct Parameters(Vec<(String, String)>);

impl Parameters {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What the transform makes of one record.
pub enum Output {
    /// Deliver `data`, with partition keys for `!{partitionKeyFromLambda:k}`.
    Ok {
        /// The new record.
        data: Vec<u8>,
        /// Partition keys.
        partition_keys: Vec<(String, String)>,
    },
    /// Leave the record out.
    Dropped,
    /// Send the original record to the error prefix with this message.
    Failed(String),
}

impl Output {
    /// Deliver `data`, without partition keys.
    pub fn ok(data: Vec<u8>) -> Self {
        Self::Ok { data, partition_keys: Vec::new() }
    }
}

/// Runs `f` on every record of a batch and answers with one output per record.
pub fn run(
    records: Vec<Record>,
    parameters: Vec<(String, String)>,
    f: impl Fn(&Record, &Parameters) -> Output,
) -> Vec<OutputRecord> {
    let parameters = Parameters(parameters);
    records
        .into_iter()
        .map(|r| {
            let (result, data, partition_keys) = match f(&r, &parameters) {
                Output::Ok { data, partition_keys } => (Outcome::Ok, data, partition_keys),
                Output::Dropped => (Outcome::Dropped, Vec::new(), Vec::new()),
                Output::Failed(m) => (Outcome::ProcessingFailed(m), Vec::new(), Vec::new()),
            };
            OutputRecord { record_id: r.record_id, result, data, partition_keys }
        })
        .collect()
}

/// Exports `$f: fn(&Record, &Parameters) -> Output` as the component's transform.
#[macro_export]
macro_rules! transform {
    ($f:path) => {
        struct SluiceTransform;
        impl $crate::Guest for SluiceTransform {
            fn transform(
                records: ::std::vec::Vec<$crate::Record>,
                parameters: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::vec::Vec<$crate::OutputRecord> {
                $crate::run(records, parameters, $f)
            }
        }
        $crate::bindings::export!(SluiceTransform with_types_in $crate::bindings);
    };
}
