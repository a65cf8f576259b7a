//! Dynamic partitioning by record content: the `MetadataExtractionQuery` of a
//! `MetadataExtraction` processor, a jq program (run by `jaq`, a maintained jq
//! implementation) that maps a record to an object of partition keys, e.g.
//! `{station: .station, year: .year}`.
//!
//! Source: AWS Firehose developer guide, "Partitioning keys with inline parsing".

use std::sync::{Mutex, PoisonError};

use sluice_transforms::{JqLimits, JqQuery};

use crate::jq_fast_path::FastQuery;

/// A compiled `MetadataExtractionQuery`, run in jq's WebAssembly sandbox
/// ([`sluice_transforms::JqQuery`]): every record gets a budget of steps, memory and stack,
/// and a query that exceeds it fails that record (`processing-failed`), never the server.
pub struct PartitionQuery {
    /// The query run natively, when it is of the form [`FastQuery`] runs.
    fast: Option<FastQuery>,
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
        Ok(Self { fast: FastQuery::parse(query), query: Mutex::new(compiled) })
    }

    /// Runs the query on one record: it must give one JSON object whose values are strings,
    /// numbers or booleans; they become the partition keys, as text. Queries and records the
    /// fast path ([`crate::jq_fast_path`]) answers take no sandbox and no lock.
    pub fn keys(&self, record: &[u8]) -> Result<PartitionKeys, String> {
        if crate::json_depth::nests_deeper_than(record, crate::json_depth::JSON_DEPTH_MAX) {
            return Err(format!(
                "the record nests arrays and objects more than {} levels deep",
                crate::json_depth::JSON_DEPTH_MAX
            ));
        }
        if let Some(keys) = self.fast.as_ref().and_then(|f| f.keys(record)) {
            return Ok(keys);
        }
        self.query.lock().unwrap_or_else(PoisonError::into_inner).keys(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jq_fast_path::FastQuery;

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

    /// Member names the generated queries and records share: identifiers, a keyword, and names
    /// only a quoted step can reach.
    const NAMES: &[&str] = &["a", "b", "station", "_x1", "if", "", "a b", "x.y", "é"];

    /// Spellings of numbers, including those jaq holds in other forms than small integers.
    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "7",
        "-7",
        "2013",
        "2147483647",
        "-2147483647",
        "-2147483648",
        "2147483648",
        "4294967296",
        "9223372036854775807",
        "18446744073709551616",
        "1.5",
        "1e3",
        "1E2",
        "12.0",
        "-0.0",
        "1e400",
    ];

    fn name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![proptest::sample::select(NAMES).prop_map(str::to_owned), "[a-z_]{1,2}"]
    }

    fn json_string() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            name().prop_map(|n| serde_json::to_string(&n).unwrap()),
            Just(r#""\u00e9\n\t\"""#.to_owned()),
            Just(r#""\ud83d\ude00""#.to_owned()),
            Just(r#""\ud800""#.to_owned()),
            Just(r#""\u0000x""#.to_owned()),
            "[ -~]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ]
    }

    /// A value at a query's path: mostly a string, a boolean or a number, sometimes anything.
    fn leaf() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            4 => json_string(),
            2 => proptest::sample::select(NUMBERS).prop_map(str::to_owned),
            1 => proptest::sample::select(&["true", "false"][..]).prop_map(str::to_owned),
            1 => json_value(),
        ]
    }

    /// A JSON value as text: scalars in many spellings, objects (duplicate members allowed)
    /// and arrays.
    fn json_value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            json_string(),
            proptest::sample::select(NUMBERS).prop_map(str::to_owned),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec((name(), inner.clone()), 0..4).prop_map(|members| {
                    let members: Vec<String> =
                        members.iter().map(|(k, v)| format!("{}: {v}", serde_json::to_string(k).unwrap())).collect();
                    format!("{{{}}}", members.join(", "))
                }),
                proptest::collection::vec(inner, 0..3).prop_map(|items| format!("[{}]", items.join(","))),
            ]
        })
    }

    /// One entry of a generated query: its key, its path, and how it is written.
    #[derive(Debug, Clone)]
    struct Entry {
        key: String,
        path: Vec<String>,
        quoted_key: bool,
        shorthand: bool,
    }

    fn is_ident(n: &str) -> bool {
        n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !crate::jq_fast_path::KEYWORDS.contains(&n)
    }

    fn entry() -> impl proptest::strategy::Strategy<Value = Entry> {
        use proptest::prelude::*;
        (name(), proptest::collection::vec(name(), 1..4), any::<bool>(), any::<bool>()).prop_map(
            |(key, path, quoted_key, shorthand)| {
                let shorthand = shorthand && is_ident(&key) && !quoted_key;
                let path = if shorthand { vec![key.clone()] } else { path };
                Entry { key, path, quoted_key, shorthand }
            },
        )
    }

    /// The query text of `entries`: keys plain or quoted, `.name` and `."name"` steps, the
    /// `{name}` shorthand, `space` between tokens.
    fn query_text(entries: &[Entry], space: &str) -> String {
        let step =
            |n: &String| if is_ident(n) { format!(".{n}") } else { format!(".{}", serde_json::to_string(n).unwrap()) };
        let texts: Vec<String> = entries
            .iter()
            .map(|e| match (is_ident(&e.key) && !e.quoted_key, e.shorthand) {
                (true, true) => e.key.clone(),
                (true, false) => format!("{}:{space}{}", e.key, e.path.iter().map(step).collect::<String>()),
                (false, _) => format!(
                    "{}:{}",
                    serde_json::to_string(&e.key).unwrap(),
                    e.path.iter().map(step).collect::<String>()
                ),
            })
            .collect();
        format!("{{{space}{}{space}}}", texts.join(&format!(",{space}")))
    }

    /// A record as members: a leaf's JSON text, or an object's members (names may repeat).
    #[derive(Debug, Clone)]
    enum Tree {
        Leaf(String),
        Object(Vec<(String, Tree)>),
    }

    impl Tree {
        /// Puts `leaf` at `path`, through the last member of each name that is an object.
        fn insert(members: &mut Vec<(String, Tree)>, path: &[String], leaf: String) {
            let (first, rest) = path.split_first().expect("a path has a step");
            if rest.is_empty() {
                members.push((first.clone(), Tree::Leaf(leaf)));
                return;
            }
            let found = members.iter().rposition(|(n, t)| n == first && matches!(t, Tree::Object(_)));
            let i = found.unwrap_or_else(|| {
                members.push((first.clone(), Tree::Object(Vec::new())));
                members.len() - 1
            });
            if let Tree::Object(inner) = &mut members[i].1 {
                Tree::insert(inner, rest, leaf);
            }
        }

        fn text(members: &[(String, Tree)]) -> String {
            let members: Vec<String> = members
                .iter()
                .map(|(n, t)| {
                    let value = match t {
                        Tree::Leaf(text) => text.clone(),
                        Tree::Object(inner) => Tree::text(inner),
                    };
                    format!("{}:{value}", serde_json::to_string(n).unwrap())
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Wherever the fast path answers, it answers what jaq in its sandbox answers. Records
        /// hold the query's paths (with any value), among other members that may repeat a name
        /// before or after them (a later member wins in both).
        #[test]
        fn fast_path_equals_jaq(
            entries in proptest::collection::vec(entry(), 1..4),
            space in proptest::sample::select(&[" ", "", "\n  "][..]),
            records in proptest::collection::vec(
                (proptest::collection::vec(leaf(), 3), proptest::collection::vec((name(), json_value()), 0..3),
                 proptest::collection::vec((name(), json_value()), 0..3)),
                1..6,
            ),
        ) {
            let query = query_text(&entries, space);
            let fast = FastQuery::parse(&query);
            proptest::prop_assert!(fast.is_some(), "the fast path takes {}", query);
            let fast = fast.unwrap();
            let mut jaq = JqQuery::compile(&query, JqLimits::default()).expect("a fast-path query compiles in jaq");
            for (leaves, before, after) in records {
                let mut members: Vec<(String, Tree)> = before.into_iter().map(|(n, v)| (n, Tree::Leaf(v))).collect();
                for (e, leaf) in entries.iter().zip(leaves) {
                    Tree::insert(&mut members, &e.path, leaf);
                }
                members.extend(after.into_iter().map(|(n, v)| (n, Tree::Leaf(v))));
                let record = Tree::text(&members);
                if let Some(keys) = fast.keys(record.as_bytes()) {
                    proptest::prop_assert_eq!(Ok(keys), jaq.keys(record.as_bytes()), "query {} record {}", query, record);
                }
            }
        }
    }

    /// Records made to fit a query: the fast path must answer them (so the property above is
    /// not vacuous) and agree with jaq.
    #[test]
    fn fast_path_answers_ordinary_records_as_jaq_does() {
        let query = r#"{station: .station, "y": .t.year, ok}"#;
        let fast = FastQuery::parse(query).unwrap();
        let mut jaq = JqQuery::compile(query, JqLimits::default()).unwrap();
        for record in [
            r#"{"station": "Dongsi", "t": {"year": 2013}, "ok": true}"#,
            r#"{"ok": false, "t": {"year": -2147483647, "year": 7}, "station": "\u00e9\n"}"#,
        ] {
            let keys = fast.keys(record.as_bytes()).expect("the fast path answers");
            assert_eq!(Ok(keys), jaq.keys(record.as_bytes()));
        }
    }
}
