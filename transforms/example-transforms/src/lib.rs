//! The example transforms' logic, as plain Rust: each is a function from one record to a
//! [`Verdict`]. The WASM components in `transforms/guests/` wrap these functions with the
//! guest SDK; the benchmark calls them natively to compare.

pub mod clickstream;
pub mod redaction;
pub mod telemetry;

/// What a transform makes of one record (Lambda's `result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver `data`, with partition keys for `!{partitionKeyFromLambda:k}`.
    Ok {
        /// The new record.
        data: Vec<u8>,
        /// Partition keys.
        partition_keys: Vec<(String, String)>,
    },
    /// Leave the record out.
    Dropped,
    /// Send the original record to the error prefix, with this message.
    Failed(String),
}

impl Verdict {
    /// `Ok` with `value` serialized as JSON and no partition keys.
    pub fn json(value: &serde_json::Value) -> Self {
        Self::Ok { data: serde_json::to_vec(value).expect("JSON values serialize"), partition_keys: Vec::new() }
    }
}

/// The record as a JSON object, or the failure to deliver instead.
pub(crate) fn object(data: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, Verdict> {
    match serde_json::from_slice(data) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(Verdict::Failed("the record is not a JSON object".into())),
        Err(e) => Err(Verdict::Failed(format!("the record is not JSON: {e}"))),
    }
}
