//! Dynamic partitioning by record content: the `MetadataExtractionQuery` of a
//! `MetadataExtraction` processor, a jq program (run by `jaq`, a maintained jq
//! implementation) that maps a record to an object of partition keys, e.g.
//! `{station: .station, year: .year}`.
//!
//! Source: AWS Firehose developer guide, "Partitioning keys with inline parsing".

use std::sync::{Mutex, PoisonError};

use sluice_transforms::{JqLimits, JqQuery};

/// A compiled `MetadataExtractionQuery`, run in jq's WebAssembly sandbox
/// ([`sluice_transforms::JqQuery`]): every record gets a budget of steps, memory and stack,
/// and a query that exceeds it fails that record (`processing-failed`), never the server.
pub struct PartitionQuery {
    query: Mutex<JqQuery>,
}

impl std::fmt::Debug for PartitionQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartitionQuery")
    }
}

/// The partition keys of one record, by key name.
pub type PartitionKeys = std::collections::BTreeMap<String, String>;

impl PartitionQuery {
    /// Compiles `query`; the error message says what is wrong, for `InvalidArgumentException`
    /// (a syntax error, or a builtin that reads the clock, the environment or files).
    pub fn compile(query: &str) -> Result<Self, String> {
        let compiled = JqQuery::compile(query, JqLimits::default())
            .map_err(|e| format!("MetadataExtractionQuery '{query}' is not a valid jq query: {e}"))?;
        Ok(Self { query: Mutex::new(compiled) })
    }

    /// Runs the query on one record: it must give one JSON object whose values are strings,
    /// numbers or booleans; they become the partition keys, as text.
    pub fn keys(&self, record: &[u8]) -> Result<PartitionKeys, String> {
        if crate::json_depth::nests_deeper_than(record, crate::json_depth::JSON_DEPTH_MAX) {
            return Err(format!(
                "the record nests arrays and objects more than {} levels deep",
                crate::json_depth::JSON_DEPTH_MAX
            ));
        }
        self.query.lock().unwrap_or_else(PoisonError::into_inner).keys(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_keys() {
        let q = PartitionQuery::compile("{station: .station, year: .year}").unwrap();
        let k = q.keys(br#"{"station": "Dongsi", "year": 2013, "PM2.5": 4}"#).unwrap();
        assert_eq!(k.get("station").map(String::as_str), Some("Dongsi"));
        assert_eq!(k.get("year").map(String::as_str), Some("2013"));
        assert!(q.keys(b"{not json").is_err());
        assert!(q.keys(br#"{"station": {"nested": 1}}"#).is_err());
        assert!(PartitionQuery::compile("{station: .station").is_err());
        assert!(PartitionQuery::compile("env").is_err());
        assert!(PartitionQuery::compile("{t: now}").is_err());
        let loop_ = PartitionQuery::compile("def f: f; f").unwrap();
        assert!(loop_.keys(b"{}").unwrap_err().contains("budget"));
    }
}
