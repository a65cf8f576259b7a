//! The JSON deserializers of record format conversion, as Firehose offers them
//! (`InputFormatConfiguration.Deserializer`): the **OpenX JSON SerDe** (the default) and the
//! **Hive JSON SerDe**. A record (one or more JSON objects, `{"a":1}{"a":2}`) becomes rows
//! whose values fit the schema's columns exactly, or the record fails with the reason — a
//! value is never nulled, truncated or moved in time to make it fit. The coercion table,
//! with the source of each rule, is `docs/format-conversion.md`.
//!
//! Sources: Firehose developer guide, "Convert input data format" (several documents per
//! record; OpenX timestamp forms: `yyyy-MM-dd'T'HH:mm:ss[.S]'Z'`, `yyyy-[M]M-[d]d
//! HH:mm:ss[.S]` with up to 9 fraction digits, epoch seconds, epoch milliseconds, floating
//! epoch seconds); Firehose API reference `OpenXJsonSerDe` (`CaseInsensitive`, default true:
//! keys lowercased; `ColumnToJsonKeyMappings`; `ConvertDotsInJsonKeysToUnderscores`, default
//! false) and `HiveJsonSerDe` (`TimestampFormats`: Joda patterns or `millis`; default
//! `java.sql.Timestamp.valueOf`).

use std::collections::BTreeMap;

use arrow_schema::{DataType, Field, Fields, SchemaRef, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};

/// Epoch numbers at or above this magnitude are milliseconds, below it seconds: 10^11 s is
/// the year 5138, 10^11 ms is 1973-03-03, so every time a producer sends today reads right.
pub const EPOCH_MILLIS_FROM: f64 = 1e11;

/// Field metadata key holding the length limit of `varchar(n)` and `char(n)` columns.
pub const MAX_LENGTH_KEY: &str = "sluice.max_length";

/// Which deserializer, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonSerDe {
    /// `OpenXJsonSerDe`.
    OpenX {
        /// `CaseInsensitive` (default true): JSON keys match columns whatever their case.
        case_insensitive: bool,
        /// `ColumnToJsonKeyMappings`: column name → the JSON key that fills it.
        column_to_json_key: BTreeMap<String, String>,
        /// `ConvertDotsInJsonKeysToUnderscores` (default false): `a.b` fills column `a_b`.
        dots_to_underscores: bool,
    },
    /// `HiveJsonSerDe`.
    Hive {
        /// `TimestampFormats`: Joda-Time patterns, or `millis`; empty means
        /// `java.sql.Timestamp.valueOf` (`yyyy-[m]m-[d]d hh:mm:ss[.f...]`).
        timestamp_formats: Vec<TimestampFormat>,
    },
}

impl Default for JsonSerDe {
    fn default() -> Self {
        Self::OpenX { case_insensitive: true, column_to_json_key: BTreeMap::new(), dots_to_underscores: false }
    }
}

/// One `TimestampFormats` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    /// `millis`: epoch milliseconds (a number, or a string of digits).
    Millis,
    /// A Joda-Time pattern, as given, and its chrono equivalent.
    Pattern {
        /// The Joda-Time pattern.
        joda: String,
        /// The same for chrono's parser.
        chrono: String,
        /// Whether the pattern carries a zone offset (`Z`, `ZZ`).
        zoned: bool,
        /// Whether the pattern has a time of day (else a date at midnight).
        timed: bool,
    },
}

impl JsonSerDe {
    /// The deserializer of an `InputFormatConfiguration` (`None`: the default OpenX SerDe).
    /// Errors in Firehose's words for settings that cannot be honoured.
    pub fn from_input_format(config: Option<&Value>) -> Result<Self, String> {
        let Some(deserializer) = config.and_then(|c| c.get("Deserializer")) else { return Ok(Self::default()) };
        let openx = deserializer.get("OpenXJsonSerDe").filter(|v| !v.is_null());
        let hive = deserializer.get("HiveJsonSerDe").filter(|v| !v.is_null());
        match (openx, hive) {
            (Some(_), Some(_)) => {
                Err("Deserializer must name one of OpenXJsonSerDe and HiveJsonSerDe, not both.".into())
            }
            (Some(o), None) => {
                let flag = |name: &str, default: bool| o.get(name).and_then(Value::as_bool).unwrap_or(default);
                let mut column_to_json_key = BTreeMap::new();
                if let Some(m) = o.get("ColumnToJsonKeyMappings").and_then(Value::as_object) {
                    for (column, key) in m {
                        let key = key.as_str().ok_or("ColumnToJsonKeyMappings values must be strings.")?;
                        column_to_json_key.insert(column.clone(), key.to_owned());
                    }
                }
                Ok(Self::OpenX {
                    case_insensitive: flag("CaseInsensitive", true),
                    column_to_json_key,
                    dots_to_underscores: flag("ConvertDotsInJsonKeysToUnderscores", false),
                })
            }
            (None, Some(h)) => {
                let mut timestamp_formats = Vec::new();
                for f in h.get("TimestampFormats").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
                    let f = f.as_str().ok_or("TimestampFormats entries must be strings.")?;
                    timestamp_formats.push(if f == "millis" { TimestampFormat::Millis } else { joda_to_chrono(f)? });
                }
                Ok(Self::Hive { timestamp_formats })
            }
            (None, None) => Ok(Self::default()),
        }
    }

    fn case_insensitive(&self) -> bool {
        match self {
            Self::OpenX { case_insensitive, .. } => *case_insensitive,
            // Hive lowercases column names and looks JSON keys up without case.
            Self::Hive { .. } => true,
        }
    }

    /// A JSON key as the deserializer compares it with column names.
    fn key(&self, key: &str) -> String {
        let key = match self {
            Self::OpenX { dots_to_underscores: true, .. } => key.replace('.', "_"),
            _ => key.to_owned(),
        };
        if self.case_insensitive() {
            key.to_lowercase()
        } else {
            key
        }
    }

    /// The JSON key (as [`JsonSerDe::key`] makes it) that fills column `column`.
    fn column_key(&self, column: &str) -> String {
        let mapped = match self {
            Self::OpenX { column_to_json_key, .. } => column_to_json_key
                .iter()
                .find(|(c, _)| if self.case_insensitive() { c.eq_ignore_ascii_case(column) } else { *c == column })
                .map(|(_, k)| k.as_str()),
            Self::Hive { .. } => None,
        };
        match mapped {
            Some(k) => self.key(k),
            None if self.case_insensitive() => column.to_lowercase(),
            None => column.to_owned(),
        }
    }
}

/// Translates a Joda-Time pattern to chrono's. Supported letters: `yyyy yy MM M dd d HH H hh
/// h mm m ss s S… a Z ZZ EEE MMM`, quoted literals and punctuation; others are refused.
fn joda_to_chrono(joda: &str) -> Result<TimestampFormat, String> {
    let refuse = |what: &str| Err(format!("TimestampFormats pattern '{joda}': {what} is not supported by Sluice."));
    let chars: Vec<char> = joda.chars().collect();
    let (mut out, mut zoned, mut timed) = (String::new(), false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end = chars[i + 1..].iter().position(|&q| q == '\'').map(|p| i + 1 + p);
            let Some(end) = end else { return refuse("an unclosed quote") };
            if end == i + 1 {
                out.push('\'');
            }
            for &l in &chars[i + 1..end] {
                if l == '%' {
                    out.push_str("%%");
                } else {
                    out.push(l);
                }
            }
            i = end + 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&d| d == c).count();
        let token = match (c, run) {
            ('y', 4) | ('y', 1) => "%Y",
            ('y', 2) => "%y",
            ('M', 1) | ('M', 2) => "%m",
            ('M', 3) => "%b",
            ('d', 1) | ('d', 2) => "%d",
            ('H', 1) | ('H', 2) => "%H",
            ('h', 1) | ('h', 2) => "%I",
            ('m', 1) | ('m', 2) => "%M",
            ('s', 1) | ('s', 2) => "%S",
            ('S', 1..=9) => "%f",
            ('a', 1) => "%p",
            ('E', 3) => "%a",
            ('Z', 1) => "%z",
            ('Z', 2) => "%:z",
            (c, _) if c.is_ascii_alphabetic() => return refuse(&format!("the letter '{c}' ({run} times)")),
            ('%', _) => "%%",
            _ => {
                out.extend(std::iter::repeat_n(c, run));
                i += run;
                continue;
            }
        };
        if matches!(c, 'H' | 'h' | 'm' | 's') {
            timed = true;
        }
        if c == 'Z' {
            zoned = true;
        }
        if c == 'S' {
            // chrono's %f reads the digits after a dot; Joda's S… follows one in the pattern.
            if out.ends_with('.') {
                out.pop();
                out.push_str("%.f");
            } else {
                out.push_str(token);
            }
        } else {
            out.push_str(token);
        }
        i += run;
    }
    Ok(TimestampFormat::Pattern { joda: joda.to_owned(), chrono: out, zoned, timed })
}

/// Why a record does not convert: the message for `format-conversion-failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Not JSON (`DataFormatConversion.ParseError`).
    Parse(String),
    /// JSON that does not fit the schema (`DataFormatConversion.MalformedData`).
    Malformed(String),
}

/// Turns records into rows for one schema with one deserializer.
#[derive(Debug, Clone)]
pub struct RowDecoder {
    schema: SchemaRef,
    serde: JsonSerDe,
    /// For each column, the JSON key (deserializer form) that fills it.
    keys: Vec<String>,
    /// Column index by exact column name, for [`RowDecoder::is_canonical`].
    exact: std::collections::HashMap<String, usize>,
    /// Column index by the deserializer's form of its key.
    folded: std::collections::HashMap<String, usize>,
    /// For each column, whether a JSON key equal to its name fills it (no mapping elsewhere).
    exact_is_key: Vec<bool>,
}

impl RowDecoder {
    /// A decoder for `schema` with `serde`.
    pub fn new(schema: SchemaRef, serde: JsonSerDe) -> Self {
        let keys: Vec<String> = schema.fields().iter().map(|f| serde.column_key(f.name())).collect();
        let exact = schema.fields().iter().enumerate().map(|(i, f)| (f.name().clone(), i)).collect();
        let folded = keys.iter().enumerate().map(|(i, k)| (k.clone(), i)).collect();
        let exact_is_key = schema.fields().iter().zip(&keys).map(|(f, k)| serde.key(f.name()) == *k).collect();
        Self { schema, serde, keys, exact, folded, exact_is_key }
    }

    /// Whether `record` is one JSON object that arrow-json reads exactly as these rules
    /// would: every key naming a column names it exactly (no case folding, mapping or dots),
    /// every value already in its column's form (an integer in range for an integer column,
    /// a string for a string column without a length limit, a number for a float column, a
    /// boolean, an RFC 3339 string for a timestamp, `yyyy-MM-dd` for a date, null where the
    /// column allows it), every non-nullable column present. Such a record is passed to
    /// arrow-json as it is; any other goes through [`RowDecoder::rows`]. The check reads
    /// each value's raw text once and allocates only the member list.
    pub fn is_canonical(&self, record: &[u8]) -> bool {
        self.canonical_values(record, &mut [None; 64])
    }

    /// [`Self::is_canonical`], keeping in `values` (one slot per column, `None` when absent,
    /// the schema has at most 64 columns) the JSON text of each column's value.
    pub fn canonical_values<'r>(&self, record: &'r [u8], values: &mut [Option<&'r str>]) -> bool {
        // Columns present are tracked in a bit set; wider schemas always take the full path.
        if self.schema.fields().len() > 64 || values.len() < self.schema.fields().len() {
            return false;
        }
        let mut de = serde_json::Deserializer::from_slice(record);
        // The check runs while the object is parsed and stops at the first value that is not
        // in its column's form (an error here means "take the full path", nothing more).
        let seed = CanonicalSeed { decoder: self, values };
        let Ok(seen) = serde::de::DeserializeSeed::deserialize(seed, &mut de) else { return false };
        // One object only: more documents mean more rows.
        de.end().is_ok()
            && self.schema.fields().iter().enumerate().all(|(i, f)| f.is_nullable() || seen & (1 << i) != 0)
    }

    /// The column a JSON key names exactly, `Err` when it names one only after folding, `Ok(None)`
    /// when it names none. Keys usually come in the schema's order, so member `position` is
    /// tried against column `position` first.
    fn exact_column(&self, key: &str, position: usize) -> Result<Option<usize>, ()> {
        let fields = self.schema.fields();
        let guess = fields.get(position).filter(|f| f.name() == key).map(|_| position);
        match guess.or_else(|| self.exact.get(key).copied()) {
            Some(i) if self.exact_is_key[i] => Ok(Some(i)),
            _ if self.folded.contains_key(&self.serde.key(key)) => Err(()),
            _ => Ok(None),
        }
    }

    /// The rows of one record: one per JSON object in it, each an object keyed by exact
    /// column names with values in the form arrow-json reads for the column's type.
    pub fn rows(&self, record: &[u8]) -> Result<Vec<Value>, RecordError> {
        let mut rows = Vec::new();
        for doc in serde_json::Deserializer::from_slice(record).into_iter::<Value>() {
            let doc = doc.map_err(|e| RecordError::Parse(format!("Encountered malformed JSON: {e}")))?;
            let Value::Object(fields) = doc else {
                return Err(RecordError::Malformed(
                    "The record is not a JSON object; conversion takes JSON objects (several may follow one another, an array of them is not valid input).".into(),
                ));
            };
            rows.push(self.row(fields)?);
        }
        if rows.is_empty() {
            return Err(RecordError::Parse("Encountered malformed JSON: the record is empty".into()));
        }
        Ok(rows)
    }

    fn row(&self, fields: Map<String, Value>) -> Result<Value, RecordError> {
        let by_key = self.normalized(fields);
        let mut out = Map::new();
        for (field, key) in self.schema.fields().iter().zip(&self.keys) {
            let value = by_key.get(key).cloned().unwrap_or(Value::Null);
            out.insert(field.name().clone(), self.value(field, value, field.name())?);
        }
        Ok(Value::Object(out))
    }

    /// An object's members keyed as the deserializer compares keys; a later duplicate wins.
    fn normalized(&self, fields: Map<String, Value>) -> BTreeMap<String, Value> {
        fields.into_iter().map(|(k, v)| (self.serde.key(&k), v)).collect()
    }

    fn value(&self, field: &Field, value: Value, path: &str) -> Result<Value, RecordError> {
        let bad = |why: String| Err(RecordError::Malformed(format!("Column '{path}': {why}")));
        if value.is_null() {
            if !field.is_nullable() {
                return bad("the value is missing or null, and the column is not nullable".into());
            }
            return Ok(Value::Null);
        }
        match field.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => {
                let text = match value {
                    Value::String(s) => s,
                    // A number or boolean is kept as the JSON text it was, an object or array
                    // as its compact JSON.
                    other => other.to_string(),
                };
                if let Some(max) = field.metadata().get(MAX_LENGTH_KEY).and_then(|m| m.parse::<usize>().ok()) {
                    if text.chars().count() > max {
                        return bad(format!("'{text}' is longer than the column's {max} characters"));
                    }
                }
                Ok(Value::String(text))
            }
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                let (lo, hi) = integer_range(field.data_type());
                match integer(&value) {
                    Some(i) if (lo..=hi).contains(&i) => Ok(Value::from(i)),
                    Some(_) => bad(format!("{value} is out of the column's range {lo} to {hi}")),
                    None => bad(format!("{value} is not an integer")),
                }
            }
            DataType::Float32 | DataType::Float64 => {
                let f = match &value {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                    _ => None,
                };
                match f {
                    Some(f) if matches!(field.data_type(), DataType::Float32) && (f as f32).is_infinite() => {
                        bad(format!("{value} is out of the range of a float"))
                    }
                    Some(f) => Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
                    None => bad(format!("{value} is not a number")),
                }
            }
            DataType::Boolean => match &value {
                Value::Bool(b) => Ok(Value::Bool(*b)),
                Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
                Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
                _ => bad(format!("{value} is not a boolean (true or false)")),
            },
            // Iceberg tables keep microseconds; the input forms are read to the millisecond.
            DataType::Timestamp(unit @ (TimeUnit::Millisecond | TimeUnit::Microsecond), _) => match self
                .timestamp_ms(&value)
                .and_then(|ms| if *unit == TimeUnit::Microsecond { ms.checked_mul(1000) } else { Some(ms) })
            {
                Some(t) => Ok(Value::from(t)),
                None => bad(format!("{value} is not a timestamp in a form the {} accepts", self.serde_name())),
            },
            DataType::Date32 => match value.as_str().and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
            {
                Some(d) => Ok(Value::String(d.format("%Y-%m-%d").to_string())),
                None => bad(format!("{value} is not a date (yyyy-MM-dd)")),
            },
            DataType::Decimal128(precision, scale) => match decimal(&value, *precision, *scale) {
                Ok(text) => Ok(Value::String(text)),
                Err(why) => bad(why),
            },
            DataType::Struct(children) => match value {
                Value::Object(fields) => self.structure(children, fields, path),
                other => bad(format!("{other} is not a JSON object (the column is a struct)")),
            },
            DataType::List(item) => match value {
                Value::Array(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, v) in items.into_iter().enumerate() {
                        out.push(self.value(item, v, &format!("{path}[{i}]"))?);
                    }
                    Ok(Value::Array(out))
                }
                other => bad(format!("{other} is not a JSON array (the column is an array)")),
            },
            DataType::Map(entries, _) => {
                let DataType::Struct(kv) = entries.data_type() else {
                    return bad("the map's entries are not a struct".into());
                };
                match value {
                    // Map keys are data, not column names: kept as they are.
                    Value::Object(fields) => {
                        let mut out = Map::new();
                        for (k, v) in fields {
                            let v = self.value(&kv[1], v, &format!("{path}.{k}"))?;
                            out.insert(k, v);
                        }
                        Ok(Value::Object(out))
                    }
                    other => bad(format!("{other} is not a JSON object (the column is a map)")),
                }
            }
            other => bad(format!("the column type {other} is not supported")),
        }
    }

    fn structure(&self, children: &Fields, fields: Map<String, Value>, path: &str) -> Result<Value, RecordError> {
        let by_key = self.normalized(fields);
        let mut out = Map::new();
        for child in children {
            let key = self.serde.column_key(child.name());
            let v = by_key.get(&key).cloned().unwrap_or(Value::Null);
            out.insert(child.name().clone(), self.value(child, v, &format!("{path}.{}", child.name()))?);
        }
        Ok(Value::Object(out))
    }

    fn serde_name(&self) -> &'static str {
        match self.serde {
            JsonSerDe::OpenX { .. } => "OpenX JSON SerDe",
            JsonSerDe::Hive { .. } => "Hive JSON SerDe",
        }
    }

    /// Epoch milliseconds of a timestamp value under the deserializer's rules.
    fn timestamp_ms(&self, value: &Value) -> Option<i64> {
        match &self.serde {
            JsonSerDe::OpenX { .. } => match value {
                Value::Number(n) => epoch_ms(n.as_f64()?),
                Value::String(s) => {
                    let s = s.trim();
                    match s.parse::<f64>() {
                        Ok(f) => epoch_ms(f),
                        Err(_) => iso_ms(s),
                    }
                }
                _ => None,
            },
            JsonSerDe::Hive { timestamp_formats } if timestamp_formats.is_empty() => {
                // java.sql.Timestamp.valueOf: yyyy-[m]m-[d]d hh:mm:ss[.f...], local = UTC here.
                let s = value.as_str()?.trim();
                let t = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok()?;
                Some(t.and_utc().timestamp_millis())
            }
            JsonSerDe::Hive { timestamp_formats } => timestamp_formats.iter().find_map(|f| match (f, value) {
                (TimestampFormat::Millis, Value::Number(n)) => n.as_i64(),
                (TimestampFormat::Millis, Value::String(s)) => s.trim().parse::<i64>().ok(),
                (TimestampFormat::Pattern { chrono, zoned, timed, .. }, Value::String(s)) => {
                    let s = s.trim();
                    match (zoned, timed) {
                        (true, _) => chrono::DateTime::parse_from_str(s, chrono).ok().map(|t| t.timestamp_millis()),
                        (false, true) => {
                            NaiveDateTime::parse_from_str(s, chrono).ok().map(|t| t.and_utc().timestamp_millis())
                        }
                        (false, false) => NaiveDate::parse_from_str(s, chrono)
                            .ok()
                            .and_then(|d| d.and_hms_opt(0, 0, 0))
                            .map(|t| t.and_utc().timestamp_millis()),
                    }
                }
                _ => None,
            }),
        }
    }
}

/// Parses one JSON object checking, member by member, that it is canonical for a
/// [`RowDecoder`]; yields the bit set of columns present, or an error at the first member that
/// is not.
/// Reads one object, checking that it is canonical and noting each column's raw value.
struct CanonicalSeed<'a, 'r> {
    decoder: &'a RowDecoder,
    values: &'a mut [Option<&'r str>],
}

impl<'r> serde::de::DeserializeSeed<'r> for CanonicalSeed<'_, 'r> {
    type Value = u64;

    fn deserialize<D: serde::Deserializer<'r>>(self, d: D) -> Result<u64, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'r> serde::de::Visitor<'r> for CanonicalSeed<'_, 'r> {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'r>>(self, mut map: A) -> Result<u64, A::Error> {
        use serde::de::Error as _;
        let not_canonical = || A::Error::custom("not canonical");
        let fields = self.decoder.schema.fields();
        let (mut seen, mut position) = (0u64, 0usize);
        while let Some(key) = map.next_key::<std::borrow::Cow<'r, str>>()? {
            let column = self.decoder.exact_column(&key, position).map_err(|()| not_canonical())?;
            position += 1;
            let Some(column) = column else {
                map.next_value::<crate::json_check::Checked>()?;
                continue;
            };
            let raw = map.next_value::<&'r serde_json::value::RawValue>()?;
            if seen & (1 << column) != 0 || !canonical_value(&fields[column], raw.get()) {
                return Err(not_canonical());
            }
            seen |= 1 << column;
            self.values[column] = Some(raw.get());
        }
        Ok(seen)
    }
}

/// Whether raw JSON `raw` is already the form arrow-json reads for `field` the way these
/// rules read it.
fn canonical_value(field: &Field, raw: &str) -> bool {
    let b = raw.as_bytes();
    if raw == "null" {
        return field.is_nullable();
    }
    let is_string = b.first() == Some(&b'"');
    let is_integer = !b.is_empty() && (b[0] == b'-' || b[0].is_ascii_digit()) && b[1..].iter().all(u8::is_ascii_digit);
    match field.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => is_string && !field.metadata().contains_key(MAX_LENGTH_KEY),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            let (lo, hi) = integer_range(field.data_type());
            is_integer && raw.parse::<i64>().is_ok_and(|i| (lo..=hi).contains(&i))
        }
        // Any JSON number; arrow-json parses it to the nearest float as serde_json does.
        DataType::Float64 => !b.is_empty() && (b[0] == b'-' || b[0].is_ascii_digit()),
        DataType::Boolean => raw == "true" || raw == "false",
        DataType::Timestamp(TimeUnit::Millisecond | TimeUnit::Microsecond, _) => {
            is_string
                && serde_json::from_str::<&str>(raw).is_ok_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
        }
        DataType::Date32 => {
            is_string
                && raw.len() == 12
                && serde_json::from_str::<&str>(raw).is_ok_and(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok())
        }
        _ => false,
    }
}

/// The values an integer column holds: `tinyint` to `bigint`.
fn integer_range(t: &DataType) -> (i64, i64) {
    match t {
        DataType::Int8 => (i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => (i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN, i64::MAX),
    }
}

/// An integer from a JSON number or a string of one; a number with a fraction is not one
/// (`11.7` is refused, `12.0` is 12).
fn integer(value: &Value) -> Option<i64> {
    let from_f64 = |f: f64| (f.fract() == 0.0 && f.abs() < 9.2e18).then_some(f as i64);
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(from_f64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(from_f64))
        }
        _ => None,
    }
}

/// Epoch seconds or milliseconds (by magnitude, [`EPOCH_MILLIS_FROM`]) as milliseconds;
/// fractions of a millisecond are cut (the column holds milliseconds).
fn epoch_ms(f: f64) -> Option<i64> {
    if !f.is_finite() {
        return None;
    }
    let ms = if f.abs() >= EPOCH_MILLIS_FROM { f } else { f * 1000.0 };
    (ms.abs() < 9.2e18).then(|| ms.trunc() as i64)
}

/// The ISO-8601 forms the OpenX SerDe reads: `yyyy-MM-ddTHH:mm:ss[.S…](Z|±hh:mm)` and
/// `yyyy-[M]M-[d]d[ T]HH:mm:ss[.S…]` (UTC), fractions up to 9 digits.
fn iso_ms(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.fZ"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc().timestamp_millis())
}

/// A decimal as the exact text of `decimal(precision, scale)`: rounded half up to `scale`
/// fraction digits (Hive's `HiveDecimal.enforcePrecisionScale`); more integer digits than
/// `precision - scale` are refused.
fn decimal(value: &Value, precision: u8, scale: i8) -> Result<String, String> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        other => return Err(format!("{other} is not a decimal number")),
    };
    let not_decimal = || format!("{value} is not a decimal number");
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(&text)),
    };
    // Exponent forms (1.5e3) as plain digits.
    let (mantissa, exponent) = match digits.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| not_decimal())?),
        None => (digits, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part.bytes().chain(frac_part.bytes()).all(|b| b.is_ascii_digit())
        || exponent.abs() > 400
    {
        return Err(not_decimal());
    }
    // All digits and the position of the decimal point in them.
    let all: Vec<u8> = int_part.bytes().chain(frac_part.bytes()).map(|b| b - b'0').collect();
    let point = int_part.len() as i32 + exponent;
    let scale = i32::from(scale.max(0));
    // Digits kept: up to `point + scale`; the next one rounds half up.
    let keep = point + scale;
    let mut kept: Vec<u8> =
        (0..keep.max(0)).map(|i| if (i as usize) < all.len() { all[i as usize] } else { 0 }).collect();
    let next = if keep >= 0 { all.get(keep as usize).copied().unwrap_or(0) } else { 0 };
    if next >= 5 {
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, 1);
                break;
            }
            i -= 1;
            if kept[i] == 9 {
                kept[i] = 0;
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    let split = kept.len().saturating_sub(scale as usize);
    let (int_digits, frac_digits) = kept.split_at(split);
    let int_str: String = int_digits.iter().map(|d| char::from(b'0' + d)).collect::<String>();
    let int_str = int_str.trim_start_matches('0');
    let mut frac_str: String = frac_digits.iter().map(|d| char::from(b'0' + d)).collect();
    while frac_str.len() < scale as usize {
        frac_str.insert(0, '0');
    }
    if int_str.len() > usize::from(precision).saturating_sub(scale as usize) {
        return Err(format!("{value} has more integer digits than decimal({precision},{scale}) holds"));
    }
    let zero = int_str.is_empty() && frac_str.bytes().all(|b| b == b'0');
    let sign = if negative && !zero { "-" } else { "" };
    let int_str = if int_str.is_empty() { "0" } else { int_str };
    Ok(if scale == 0 { format!("{sign}{int_str}") } else { format!("{sign}{int_str}.{frac_str}") })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_schema::Schema;
    use serde_json::json;

    use super::*;

    fn decoder(fields: Vec<Field>, serde: JsonSerDe) -> RowDecoder {
        RowDecoder::new(Arc::new(Schema::new(fields)), serde)
    }

    fn ts() -> DataType {
        DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()))
    }

    #[test]
    fn openx_matches_keys_without_case_maps_columns_and_converts_dots() {
        let d = decoder(
            vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)],
            JsonSerDe::default(),
        );
        assert_eq!(d.rows(br#"{"ID":3,"Name":"x"}"#).unwrap(), [json!({"id": 3, "name": "x"})]);
        let serde = JsonSerDe::from_input_format(Some(&json!({"Deserializer": {"OpenXJsonSerDe": {
            "ConvertDotsInJsonKeysToUnderscores": true, "ColumnToJsonKeyMappings": {"ts": "timestamp"}}}})))
        .unwrap();
        let d = decoder(vec![Field::new("a_b", DataType::Int64, true), Field::new("ts", ts(), true)], serde);
        assert_eq!(
            d.rows(br#"{"a.b":1,"timestamp":1704164645}"#).unwrap(),
            [json!({"a_b": 1, "ts": 1_704_164_645_000i64})]
        );
        let strict = JsonSerDe::OpenX {
            case_insensitive: false,
            column_to_json_key: BTreeMap::new(),
            dots_to_underscores: false,
        };
        let d = decoder(vec![Field::new("id", DataType::Int64, true)], strict);
        assert_eq!(d.rows(br#"{"ID":3}"#).unwrap(), [json!({"id": null})]);
    }

    #[test]
    fn several_documents_make_several_rows_and_arrays_of_them_are_refused() {
        let d = decoder(
            vec![Field::new("a", DataType::Int64, true), Field::new("b", DataType::Int64, true)],
            JsonSerDe::default(),
        );
        assert_eq!(d.rows(br#"{"a":1}{"b":1}"#).unwrap(), [json!({"a": 1, "b": null}), json!({"a": null, "b": 1})]);
        assert!(matches!(d.rows(br#"[{"a":1},{"a":2}]"#), Err(RecordError::Malformed(_))));
        assert!(matches!(d.rows(b"{\"a\":"), Err(RecordError::Parse(_))));
        assert!(matches!(d.rows(b"  "), Err(RecordError::Parse(_))));
    }

    #[test]
    fn timestamps_read_as_aws_lists_them() {
        let d = decoder(vec![Field::new("t", ts(), true)], JsonSerDe::default());
        let ms = |v: Value| d.rows(json!({"t": v}).to_string().as_bytes()).map(|r| r[0]["t"].clone());
        assert_eq!(ms(json!(1_704_164_645)).unwrap(), json!(1_704_164_645_000i64));
        assert_eq!(ms(json!(1_704_164_645.123)).unwrap(), json!(1_704_164_645_123i64));
        assert_eq!(ms(json!(1_704_164_645_123i64)).unwrap(), json!(1_704_164_645_123i64));
        assert_eq!(ms(json!("2017-02-07T15:13:01.39256Z")).unwrap(), json!(1_486_480_381_392i64));
        assert_eq!(ms(json!("2017-2-7 15:13:01.14")).unwrap(), json!(1_486_480_381_140i64));
        assert_eq!(ms(json!("2017-02-07T17:13:01+02:00")).unwrap(), json!(1_486_480_381_000i64));
        assert!(ms(json!("yesterday")).is_err());
        assert!(ms(json!(true)).is_err());
        let hive = JsonSerDe::from_input_format(Some(&json!({"Deserializer": {"HiveJsonSerDe": {
            "TimestampFormats": ["dd/MM/yyyy HH:mm:ss", "millis"]}}})))
        .unwrap();
        let d = decoder(vec![Field::new("t", ts(), true)], hive);
        assert_eq!(d.rows(br#"{"t":"07/02/2017 15:13:01"}"#).unwrap()[0]["t"], json!(1_486_480_381_000i64));
        assert_eq!(d.rows(br#"{"t":1486480381000}"#).unwrap()[0]["t"], json!(1_486_480_381_000i64));
        assert!(d.rows(br#"{"t":"2017-02-07T15:13:01Z"}"#).is_err());
        let plain = decoder(vec![Field::new("t", ts(), true)], JsonSerDe::Hive { timestamp_formats: vec![] });
        assert_eq!(plain.rows(br#"{"t":"2017-02-07 15:13:01.5"}"#).unwrap()[0]["t"], json!(1_486_480_381_500i64));
        assert!(JsonSerDe::from_input_format(Some(
            &json!({"Deserializer": {"HiveJsonSerDe": {"TimestampFormats": ["yyyy QQ"]}}})
        ))
        .is_err());
    }

    #[test]
    fn values_that_do_not_fit_fail_instead_of_changing() {
        let d = decoder(
            vec![
                Field::new("i", DataType::Int32, true),
                Field::new("b", DataType::Boolean, true),
                Field::new("s", DataType::Utf8, true),
                Field::new("n", DataType::Int64, false),
            ],
            JsonSerDe::default(),
        );
        assert!(d.rows(br#"{"i":11.7,"n":1}"#).is_err(), "no silent truncation");
        assert!(d.rows(br#"{"i":3000000000,"n":1}"#).is_err(), "no wrap");
        assert!(d.rows(br#"{"b":"yes","n":1}"#).is_err(), "no silent false");
        assert!(d.rows(br#"{"i":1}"#).is_err(), "a non-nullable column needs a value");
        assert_eq!(
            d.rows(br#"{"i":"12","b":"TRUE","s":{"x":[1,2]},"n":12.0}"#).unwrap(),
            [json!({"i": 12, "b": true, "s": "{\"x\":[1,2]}", "n": 12})]
        );
    }

    #[test]
    fn only_records_arrow_json_reads_the_same_take_the_fast_path() {
        let d = decoder(
            vec![
                Field::new("No", DataType::Int64, false),
                Field::new("t", ts(), true),
                Field::new("i", DataType::Int32, true),
                Field::new("s", DataType::Utf8, true),
            ],
            JsonSerDe::default(),
        );
        assert!(d.is_canonical(br#"{"No":1,"t":"2024-01-02T03:04:05Z","i":5,"s":"x","other":[1]}"#));
        for slow in [
            &br#"{"no":1}"#[..],           // folded key
            br#"{"No":1,"t":1704164645}"#, // epoch seconds: arrow-json would read ms
            br#"{"No":1,"i":11.7}"#,       // a fraction for an int
            br#"{"No":1,"i":3000000000}"#, // out of range
            br#"{"No":1,"s":5}"#,          // a number for a string
            br#"{"i":1}"#,                 // non-nullable column missing
            br#"{"No":1}{"No":2}"#,        // two rows
            br#"{"No":1,"NO":2}"#,         // the column twice
        ] {
            assert!(!d.is_canonical(slow), "{}", String::from_utf8_lossy(slow));
        }
    }

    #[test]
    fn decimals_round_half_up_and_refuse_overflow() {
        assert_eq!(decimal(&json!(11.7), 5, 2).unwrap(), "11.70");
        assert_eq!(decimal(&json!("1.005"), 5, 2).unwrap(), "1.01");
        assert_eq!(decimal(&json!(-0.004), 5, 2).unwrap(), "0.00");
        assert_eq!(decimal(&json!("99.995"), 5, 2).unwrap(), "100.00");
        assert_eq!(
            decimal(&json!("999.995"), 5, 2).unwrap_err(),
            "\"999.995\" has more integer digits than decimal(5,2) holds"
        );
        assert_eq!(decimal(&json!(1.5e3), 6, 1).unwrap(), "1500.0");
        assert_eq!(decimal(&json!(-123), 3, 0).unwrap(), "-123");
        assert!(decimal(&json!("12a"), 5, 2).is_err());
    }

    #[test]
    fn nested_columns_fit_recursively() {
        let child = Fields::from(vec![
            Field::new("Lat", DataType::Float64, true),
            Field::new("tags", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
        ]);
        let d = decoder(vec![Field::new("geo", DataType::Struct(child), true)], JsonSerDe::default());
        assert_eq!(
            d.rows(br#"{"GEO":{"lat":"1.5","Tags":["a",2]}}"#).unwrap(),
            [json!({"geo": {"Lat": 1.5, "tags": ["a", "2"]}})]
        );
        assert!(d.rows(br#"{"geo":[1]}"#).is_err());
    }
}
