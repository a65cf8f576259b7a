//! The jq queries people write for dynamic partitioning, run natively: an object whose values
//! are paths into the record, `{station: .station, year: .year}`, `{"day": .ts.day}`,
//! `{station}`. Such a query gives, for a record whose paths lead to strings, booleans or
//! small integers, what jaq in its sandbox gives, about ten times faster (the sandbox costs
//! parsing the record in WebAssembly plus the budget checks, about 26 µs per Beijing reading).
//!
//! Anything else — another query, a record that is not one JSON object, a path through
//! something that is not an object, a value that is null, a float, an integer outside
//! ±2^31, an array or an object — answers `None`, and the caller runs jaq, which gives the
//! result or the error message. The property test `fast_path_equals_jaq` checks the fast
//! path against jaq on generated queries and records.

use serde_json::Value;

use crate::partition::PartitionKeys;

/// A query of the form `{key: .path, ...}` (keys as identifiers or plain strings, paths of
/// `.name` or `."name"` steps, `{name}` for `{name: .name}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastQuery {
    /// The keys of the result and the path of each, in query order (a later key wins).
    entries: Vec<(String, Vec<String>)>,
}

/// jq's keywords: `{if: .a}` means something else to jq than to this parser, so a query
/// naming one takes jaq's path.
pub(crate) const KEYWORDS: &[&str] = &[
    "def", "if", "then", "elif", "else", "end", "as", "reduce", "foreach", "try", "catch", "label", "import",
    "include", "and", "or", "not", "__loc__",
];

/// Integers a partition key takes from the fast path: |n| < 2^31. jaq in its 32-bit sandbox
/// holds larger ones in another form, whose text is left to jaq.
const INTEGER_ABS_MAX: i64 = (1 << 31) - 1;

impl FastQuery {
    /// The query as a fast path, or `None` when it is not of the form this module runs.
    pub fn parse(query: &str) -> Option<Self> {
        let mut p = Parser { rest: query };
        p.expect('{')?;
        let mut entries = Vec::new();
        loop {
            let (key, shorthand) = match p.peek()? {
                '"' => (p.string()?, false),
                _ => (p.ident()?, true),
            };
            let path = if p.eat(':') {
                p.path()?
            } else if shorthand {
                vec![key.clone()]
            } else {
                return None;
            };
            entries.push((key, path));
            if p.eat('}') {
                break;
            }
            p.expect(',')?;
        }
        p.skip_space();
        p.rest.is_empty().then_some(Self { entries })
    }

    /// The partition keys of `record`, or `None` when jaq must decide (see the module
    /// documentation). `record` must already be within the nesting depth the caller allows.
    pub fn keys(&self, record: &[u8]) -> Option<PartitionKeys> {
        let value: Value = serde_json::from_slice(record).ok()?;
        let Value::Object(_) = value else { return None };
        let mut keys = PartitionKeys::new();
        for (key, path) in &self.entries {
            let mut at = &value;
            for step in path {
                at = at.as_object()?.get(step)?;
            }
            let text = match at {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.as_i64().filter(|i| i.abs() <= INTEGER_ABS_MAX)?.to_string(),
                _ => return None,
            };
            keys.insert(key.clone(), text);
        }
        Some(keys)
    }
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', '\n', '\r']);
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.rest.chars().next()
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Option<()> {
        self.eat(c).then_some(())
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`, not a keyword.
    fn ident(&mut self) -> Option<String> {
        self.skip_space();
        let end = self.rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(self.rest.len());
        let ident = &self.rest[..end];
        if ident.is_empty() || ident.starts_with(|c: char| c.is_ascii_digit()) || KEYWORDS.contains(&ident) {
            return None;
        }
        self.rest = &self.rest[end..];
        Some(ident.to_owned())
    }

    /// A string without escapes or interpolation: `"name"`.
    fn string(&mut self) -> Option<String> {
        self.expect('"')?;
        let end = self.rest.find(['"', '\\'])?;
        if !self.rest[end..].starts_with('"') || self.rest[..end].chars().any(char::is_control) {
            return None;
        }
        let s = self.rest[..end].to_owned();
        self.rest = &self.rest[end + 1..];
        Some(s)
    }

    /// `.a.b`, `."a".b`: at least one step, no space inside (jq reads `. a` otherwise).
    fn path(&mut self) -> Option<Vec<String>> {
        self.skip_space();
        let mut steps = Vec::new();
        while let Some(rest) = self.rest.strip_prefix('.') {
            self.rest = rest;
            let step = match self.rest.chars().next()? {
                '"' => self.string()?,
                c if c.is_ascii_alphabetic() || c == '_' => self.ident()?,
                _ => return None,
            };
            steps.push(step);
        }
        // A path followed by anything but a separator (`.a | x`, `.a[0]`, `.a?`) is jq's.
        self.skip_space();
        (!steps.is_empty() && self.rest.starts_with([',', '}'])).then_some(steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_queries_people_write_and_nothing_else() {
        let q = |s: &str| FastQuery::parse(s).map(|q| q.entries);
        let e = |k: &str, p: &[&str]| (k.to_owned(), p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(q("{station: .station}"), Some(vec![e("station", &["station"])]));
        assert_eq!(
            q(r#" { "day" : .ts."day" , station , y:.a.b } "#),
            Some(vec![e("day", &["ts", "day"]), e("station", &["station"]), e("y", &["a", "b"])])
        );
        for other in [
            "",
            "{}",
            ".station",
            "{station: .station | ascii_downcase}",
            "{s: .a[0]}",
            "{s: .a?}",
            "{s: . a}",
            "{if: .a}",
            "{s: .if}",
            r#"{"a\"b": .a}"#,
            r#"{s: ."a\(.b)"}"#,
            "{s: .a} | .s",
            "{s: .a,}",
            "{s: .a} x",
            "{\"s\"}",
            "{s: .1}",
            "{s: $x}",
            "{s: .a # comment\n}",
        ] {
            assert_eq!(q(other), None, "{other}");
        }
    }

    #[test]
    fn values_that_jaq_writes_in_its_own_way_are_left_to_it() {
        let q = FastQuery::parse("{a: .a, b: .x.y}").unwrap();
        let keys = q.keys(br#"{"a": "Dongsi", "x": {"y": 2013}}"#).unwrap();
        assert_eq!(keys.get("a").map(String::as_str), Some("Dongsi"));
        assert_eq!(keys.get("b").map(String::as_str), Some("2013"));
        assert_eq!(q.keys(br#"{"a": true, "x": {"y": -7}}"#).unwrap()["a"], "true");
        for other in [
            r#"{"a": 1.5, "x": {"y": 1}}"#,
            r#"{"a": "s", "x": {"y": 4294967296}}"#,
            r#"{"a": null, "x": {"y": 1}}"#,
            r#"{"a": "s"}"#,
            r#"{"a": "s", "x": [1]}"#,
            r#"{"a": [], "x": {"y": 1}}"#,
            r#"["a"]"#,
            r#"{"a": "s", "x": {"y": 1}} {}"#,
            "not json",
        ] {
            assert_eq!(q.keys(other.as_bytes()), None, "{other}");
        }
    }
}
