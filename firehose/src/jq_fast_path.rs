//! The jq queries people write for dynamic partitioning, run natively: an object whose values
//! are paths into the record, `{station: .station, year: .year}`, `{"day": .ts.day}`,
//! `{station}`. Such a query gives, for a record whose paths lead to strings, booleans or
//! small integers, what jaq in its sandbox gives, without the sandbox: 2.1 µs per Beijing
//! reading instead of 16.5 µs (`cargo bench -p sluice-benches --bench jq`, rows
//! `fast_path/one_key` and `one_key`).
//!
//! Anything else — another query, a record that is not one JSON object, a path through
//! something that is not an object, a value that is null, a float, an integer outside
//! ±2^31, an array or an object — answers `None`, and the caller runs jaq, which gives the
//! result or the error message. The property test `fast_path_equals_jaq` checks the fast
//! path against jaq on generated queries and records.

use crate::json_check::Checked;
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
    /// The record is read once, without building it: members off the query's paths are
    /// only checked to be JSON.
    pub fn keys(&self, record: &[u8]) -> Option<PartitionKeys> {
        let text = std::str::from_utf8(record).ok()?;
        let mut found = vec![Found::Missing; self.entries.len()];
        let all: Vec<usize> = (0..self.entries.len()).collect();
        let mut de = serde_json::Deserializer::from_str(text);
        let top = Walk { query: self, depth: 0, entries: &all, found: &mut found, top: true };
        serde::de::DeserializeSeed::deserialize(top, &mut de).ok()?;
        de.end().ok()?;
        let mut keys = PartitionKeys::new();
        for ((key, _), found) in self.entries.iter().zip(found) {
            let Found::Scalar(text) = found else { return None };
            keys.insert(key.clone(), text);
        }
        Some(keys)
    }
}

/// What an entry's path led to in the record read so far.
#[derive(Debug, Clone)]
enum Found {
    /// Not (yet) there: jq's null.
    Missing,
    /// A string, boolean or small integer, as the partition key's text.
    Scalar(String),
    /// Anything else: left to jaq.
    Other,
}

/// One JSON value at `depth` of the paths of `entries`. A member named again later replaces
/// what an earlier one gave, as in jq (the last of equal names wins).
struct Walk<'a> {
    query: &'a FastQuery,
    depth: usize,
    entries: &'a [usize],
    found: &'a mut [Found],
    /// The record itself, which must be an object.
    top: bool,
}

impl<'a> Walk<'a> {
    /// Every entry the value settles: all of them, for a value that is not an object.
    fn settle(&mut self, found: impl Fn(usize) -> Found) {
        for &i in self.entries {
            let leaf = self.query.entries[i].1.len() == self.depth;
            self.found[i] = if leaf { found(i) } else { Found::Other };
        }
    }

    fn scalar<E: serde::de::Error>(mut self, text: Option<String>) -> Result<(), E> {
        if self.top {
            return Err(E::custom("not an object"));
        }
        self.settle(|_| text.clone().map_or(Found::Other, Found::Scalar));
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Entries whose path ends here see an object: not a partition key.
        let mut deeper = Vec::with_capacity(self.entries.len());
        for &i in self.entries {
            if self.query.entries[i].1.len() == self.depth {
                self.found[i] = Found::Other;
            } else {
                self.found[i] = Found::Missing;
                deeper.push(i);
            }
        }
        let mut matching = Vec::with_capacity(deeper.len());
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            matching.clear();
            matching.extend(deeper.iter().copied().filter(|&i| self.query.entries[i].1[self.depth] == key));
            if matching.is_empty() {
                map.next_value::<Checked>()?;
                continue;
            }
            let walk =
                Walk { query: self.query, depth: self.depth + 1, entries: &matching, found: self.found, top: false };
            map.next_value_seed(walk)?;
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        self.scalar(None)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Some(v.to_owned()))
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Some(v.to_string()))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar((v.abs() <= INTEGER_ABS_MAX).then(|| v.to_string()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar((v <= INTEGER_ABS_MAX as u64).then(|| v.to_string()))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.scalar(None)
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
        // Bytes that are no UTF-8, and escapes that are no character, off the paths too.
        assert_eq!(q.keys(b"{\"a\": \"s\", \"x\": {\"y\": 1}, \"z\": \"\xff\"}"), None);
        assert_eq!(q.keys(br#"{"a": "s", "x": {"y": 1}, "z": ["\ud800"]}"#), None);
        // The last of equal names wins, also when an earlier one was not an object.
        assert_eq!(q.keys(br#"{"x": 5, "a": "s", "x": {"y": 1}}"#).unwrap()["b"], "1");
        assert_eq!(q.keys(br#"{"x": {"y": 1}, "a": "s", "x": 5}"#), None);
    }
}
