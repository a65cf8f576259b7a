//! Dynamic partitioning by record content: the `MetadataExtractionQuery` of a
//! `MetadataExtraction` processor, a jq program (run by `jaq`, a maintained jq
//! implementation) that maps a record to an object of partition keys, e.g.
//! `{station: .station, year: .year}`.
//!
//! Source: AWS Firehose developer guide, "Partitioning keys with inline parsing".

use jaq_core::compile::Filter;
use jaq_core::data::JustLut;
use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, Vars};
use jaq_json::Val;

/// A compiled `MetadataExtractionQuery`.
pub struct PartitionQuery {
    filter: Filter<Native<JustLut<Val>>>,
}

impl std::fmt::Debug for PartitionQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartitionQuery")
    }
}

/// The partition keys of one record, by key name.
pub type PartitionKeys = std::collections::BTreeMap<String, String>;

impl PartitionQuery {
    /// Compiles `query`; the error message says what is wrong, for `InvalidArgumentException`.
    pub fn compile(query: &str) -> Result<Self, String> {
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        // `env` would show user queries the server's environment, secrets included.
        let funs =
            jaq_core::funs().chain(jaq_std::funs().filter(|(name, _, _)| *name != "env")).chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let modules = loader
            .load(&arena, File { code: query, path: () })
            .map_err(|errs| format!("MetadataExtractionQuery '{query}' does not parse as jq: {errs:?}"))?;
        let filter = Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errs| format!("MetadataExtractionQuery '{query}' does not compile: {errs:?}"))?;
        Ok(Self { filter })
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
        let input = jaq_json::read::parse_single(record).map_err(|e| format!("the record is not JSON: {e}"))?;
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input));
        let first = match outputs.next() {
            None => return Err("the query gave no result".into()),
            Some(Err(e)) => {
                return Err(match e.get_err() {
                    Ok(err) => format!("the query failed: {err}"),
                    Err(_) => "the query halted".into(),
                })
            }
            Some(Ok(v)) => v,
        };
        // A query result is small JSON; serde reads it back as plain values.
        let value: serde_json::Value =
            serde_json::from_str(&first.to_string()).map_err(|e| format!("the query result is not JSON: {e}"))?;
        let serde_json::Value::Object(map) = value else {
            return Err(format!("the query result is not a JSON object: {first}"));
        };
        map.into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k, s)),
                serde_json::Value::Number(n) => Ok((k, n.to_string())),
                serde_json::Value::Bool(b) => Ok((k, b.to_string())),
                other => Err(format!("partition key '{k}' is {other}, not a string, number or boolean")),
            })
            .collect()
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
    }
}
