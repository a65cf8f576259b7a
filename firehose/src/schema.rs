//! The schema of format conversion: a list of typed, nullable columns.
//!
//! A schema file is JSON or TOML with a `fields` list (a bare JSON list works too):
//!
//! ```json
//! {"fields": [{"name": "station", "type": "string"}, {"name": "PM2.5", "type": "double"},
//!             {"name": "year", "type": "bigint", "nullable": false}]}
//! ```
//!
//! Types use the Glue / Hive names Firehose users know (see [`field`] for the grammar):
//! `string`, `varchar(n)`, `char(n)`, `tinyint`, `smallint`, `int`, `bigint`, `float`,
//! `double`, `boolean`, `timestamp` (stored as ms in UTC), `date`, `decimal(p,s)`,
//! `array<T>`, `map<string,T>`, `struct<name:T,...>`, with Arrow names as synonyms. How JSON
//! values fit them is `crate::deserializer` (and `docs/format-conversion.md`). Columns are
//! nullable unless `"nullable": false`. JSON keys not in the schema are ignored, as Firehose
//! does.
//!
//! `SchemaConfiguration`'s `DatabaseName` and `TableName` are found with [`find`]: the schema
//! folder is listed for a folder of exactly that database name, and it for a regular file
//! `<TableName>.json` or `.toml`; names are compared, never made into paths, and links are not
//! followed. A schema file is at most [`SCHEMA_FILE_BYTES_MAX`] bytes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

/// Largest schema file, bytes: 1 MiB (a schema of thousands of columns is a few hundred KiB).
pub const SCHEMA_FILE_BYTES_MAX: u64 = 1 << 20;

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The JSON key and column name.
    pub name: String,
    /// The type name (see the module doc).
    #[serde(rename = "type")]
    pub type_name: String,
    /// Whether the value may be missing or null (default true).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// A schema file's contents.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SchemaFile {
    Fields { fields: Vec<FieldSpec> },
    List(Vec<FieldSpec>),
}

/// Why a schema could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The file could not be read.
    #[error("cannot read schema file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No schema file of that database and table, or it is not a regular file.
    #[error("{0}")]
    NotFound(String),
    /// The file is larger than [`SCHEMA_FILE_BYTES_MAX`].
    #[error("schema file {path} is larger than {SCHEMA_FILE_BYTES_MAX} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The file is not a schema.
    #[error("schema file {path} is malformed: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A column has a type Sluice does not know, or the list is empty or repeats a name.
    #[error("{0}")]
    Invalid(String),
}

/// The Arrow type of a type name (see [`field`] for the whole grammar).
pub fn data_type(type_name: &str) -> Option<DataType> {
    field("x", type_name, true).ok().map(|f| f.data_type().clone())
}

/// A column of `type_name`, in Glue's (Hive's) type grammar: `string`, `varchar(n)`,
/// `char(n)`, `tinyint`, `smallint`, `int`, `bigint`, `float`, `double`, `boolean`,
/// `timestamp`, `date`, `decimal`, `decimal(p)`, `decimal(p,s)` (p ≤ 38; default 10,0),
/// `array<T>`, `map<string,T>`, `struct<name:T,...>`; Arrow names (`utf8`, `int64`, ...) as
/// synonyms. `varchar(n)`/`char(n)` keep their limit in the field's metadata
/// ([`crate::deserializer::MAX_LENGTH_KEY`]): longer values are refused, not cut.
pub fn field(name: &str, type_name: &str, nullable: bool) -> Result<Field, String> {
    let mut p = TypeParser { text: type_name.trim(), pos: 0 };
    let f = p.parse(name, nullable)?;
    p.skip_space();
    if p.pos != p.text.len() {
        return Err(format!("unexpected '{}' in type '{type_name}'", &p.text[p.pos..]));
    }
    Ok(f)
}

/// A recursive-descent parser of Glue type names.
struct TypeParser<'a> {
    text: &'a str,
    pos: usize,
}

impl TypeParser<'_> {
    fn skip_space(&mut self) {
        while self.text[self.pos..].starts_with(' ') {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.text[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{c}' at position {} of type '{}'", self.pos, self.text))
        }
    }

    fn word(&mut self) -> String {
        self.skip_space();
        let rest = &self.text[self.pos..];
        let n = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        self.pos += n;
        rest[..n].to_ascii_lowercase()
    }

    fn number(&mut self) -> Result<u32, String> {
        self.skip_space();
        let rest = &self.text[self.pos..];
        let n = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        self.pos += n;
        rest[..n].parse().map_err(|_| format!("expected a number in type '{}'", self.text))
    }

    fn parse(&mut self, name: &str, nullable: bool) -> Result<Field, String> {
        let word = self.word();
        let mut metadata = std::collections::HashMap::new();
        let t = match word.as_str() {
            "string" | "utf8" => DataType::Utf8,
            "varchar" | "char" => {
                self.expect('(')?;
                let n = self.number()?;
                self.expect(')')?;
                metadata.insert(crate::deserializer::MAX_LENGTH_KEY.to_owned(), n.to_string());
                DataType::Utf8
            }
            "tinyint" | "int8" => DataType::Int8,
            "smallint" | "int16" => DataType::Int16,
            "int" | "int32" | "integer" => DataType::Int32,
            "bigint" | "int64" | "long" => DataType::Int64,
            "double" | "float64" => DataType::Float64,
            "float" | "float32" => DataType::Float32,
            "boolean" | "bool" => DataType::Boolean,
            "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            "date" => DataType::Date32,
            "decimal" => {
                let (mut precision, mut scale) = (10, 0);
                if self.eat('(') {
                    precision = self.number()?;
                    if self.eat(',') {
                        scale = self.number()?;
                    }
                    self.expect(')')?;
                }
                if !(1..=38).contains(&precision) || scale > precision {
                    return Err(format!("decimal({precision},{scale}): precision must be 1 to 38 and scale at most the precision"));
                }
                DataType::Decimal128(precision as u8, scale as i8)
            }
            "array" => {
                self.expect('<')?;
                let item = self.parse("item", true)?;
                self.expect('>')?;
                DataType::List(Arc::new(item))
            }
            "map" => {
                self.expect('<')?;
                let key = self.parse("key", false)?;
                if key.data_type() != &DataType::Utf8 {
                    return Err(format!("map keys must be strings, not {}", key.data_type()));
                }
                self.expect(',')?;
                let value = self.parse("value", true)?;
                self.expect('>')?;
                let entries = Field::new("entries", DataType::Struct(vec![key, value].into()), false);
                DataType::Map(Arc::new(entries), false)
            }
            "struct" => {
                self.expect('<')?;
                let mut children: Vec<Field> = Vec::new();
                loop {
                    self.skip_space();
                    let rest = &self.text[self.pos..];
                    let n = rest.find(':').ok_or_else(|| format!("expected 'name:type' in type '{}'", self.text))?;
                    let child = rest[..n].trim().to_owned();
                    self.pos += n + 1;
                    if child.is_empty() || children.iter().any(|c| c.name() == &child) {
                        return Err(format!("struct field names must be unique and not empty in type '{}'", self.text));
                    }
                    children.push(self.parse(&child, true)?);
                    if self.eat('>') {
                        break;
                    }
                    self.expect(',')?;
                }
                DataType::Struct(children.into())
            }
            "" => return Err(format!("expected a type at position {} of '{}'", self.pos, self.text)),
            other => {
                return Err(format!(
                    "unknown type '{other}'; use string, varchar(n), char(n), tinyint, smallint, int, bigint, float, double, \
                     boolean, timestamp, date, decimal(p,s), array<T>, map<string,T> or struct<name:T,...>"
                ))
            }
        };
        Ok(Field::new(name, t, nullable).with_metadata(metadata))
    }
}

/// Checks `fields` and builds the Arrow schema.
pub fn to_arrow(fields: &[FieldSpec]) -> Result<SchemaRef, SchemaError> {
    if fields.is_empty() {
        return Err(SchemaError::Invalid("a schema needs at least one field".into()));
    }
    let mut out = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        if fields[..i].iter().any(|g| g.name == f.name) {
            return Err(SchemaError::Invalid(format!("field '{}' appears twice", f.name)));
        }
        let field = field(&f.name, &f.type_name, f.nullable)
            .map_err(|e| SchemaError::Invalid(format!("field '{}' has type '{}': {e}", f.name, f.type_name)))?;
        out.push(field);
    }
    Ok(Arc::new(Schema::new(out)))
}

/// The schema file of `table` in `database` under `schema_dir`: the folder entry named exactly
/// `database` (a folder, not a link), and in it the entry named exactly `<table>.json`, else
/// `<table>.toml` (a regular file, not a link). Blocks (lists folders).
pub fn find(schema_dir: &Path, database: &str, table: &str) -> Result<PathBuf, SchemaError> {
    let not_found = || {
        SchemaError::NotFound(format!(
            "Table {table} in database {database} not found: Sluice looks for the file {database}/{table}.json or \
             .toml in its schema folder."
        ))
    };
    let listing_failed =
        |e: std::io::Error| SchemaError::NotFound(format!("Cannot list the schema folder to find {database}: {e}"));
    let mut db_dir = None;
    for e in std::fs::read_dir(schema_dir).map_err(listing_failed)? {
        let e = e.map_err(listing_failed)?;
        if e.file_name() == OsStr::new(database) {
            // The entry's own type: a link is not followed.
            if !e.file_type().map_err(listing_failed)?.is_dir() {
                return Err(SchemaError::NotFound(format!(
                    "Database {database} is not a folder of Sluice's schema folder (links are not followed)."
                )));
            }
            db_dir = Some(e.path());
            break;
        }
    }
    let db_dir = db_dir.ok_or_else(not_found)?;
    let listing_failed =
        |e: std::io::Error| SchemaError::NotFound(format!("Cannot list database {database} to find {table}: {e}"));
    let mut found: [Option<PathBuf>; 2] = [None, None];
    for e in std::fs::read_dir(&db_dir).map_err(listing_failed)? {
        let e = e.map_err(listing_failed)?;
        let name = e.file_name();
        let Some(slot) = ["json", "toml"].iter().position(|ext| name == OsStr::new(&format!("{table}.{ext}"))) else {
            continue;
        };
        if !e.file_type().map_err(listing_failed)?.is_file() {
            return Err(SchemaError::NotFound(format!(
                "Schema file {database}/{} is not a regular file (links are not followed).",
                name.to_string_lossy()
            )));
        }
        found[slot] = Some(e.path());
    }
    let [json, toml] = found;
    json.or(toml).ok_or_else(not_found)
}

/// The fields of table `table` of database `database` under `schema_dir` ([`find`], then
/// [`load`]). Names are plain: not empty, no `/`, backslash or NUL, not `.` or `..` (a name is
/// never a way out of the schema folder).
///
/// Errors: the message for the client (`InvalidArgumentException` in the API).
pub fn load_table(schema_dir: &Path, database: &str, table: &str) -> Result<Vec<FieldSpec>, String> {
    let safe = |s: &str| !s.is_empty() && !s.contains(['/', '\\', '\0']) && s != ".." && s != ".";
    if !safe(database) || !safe(table) {
        return Err("DatabaseName and TableName must be plain names.".into());
    }
    let path = find(schema_dir, database, table).map_err(|e| e.to_string())?;
    load(&path).map_err(|e| e.to_string())
}

/// Reads a schema file (`.json` or `.toml`): a regular file of at most
/// [`SCHEMA_FILE_BYTES_MAX`] bytes.
pub fn load(path: &Path) -> Result<Vec<FieldSpec>, SchemaError> {
    let shown = path.display().to_string();
    let text = read_capped(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::FileTooLarge => SchemaError::TooLarge { path: shown.clone() },
        _ => SchemaError::Read { path: shown.clone(), source },
    })?;
    let parsed: SchemaFile = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| SchemaError::Malformed { path: shown.clone(), reason: e.to_string() })?
    } else {
        serde_json::from_str(&text)
            .map_err(|e| SchemaError::Malformed { path: shown.clone(), reason: e.to_string() })?
    };
    let fields = match parsed {
        SchemaFile::Fields { fields } | SchemaFile::List(fields) => fields,
    };
    to_arrow(&fields)?;
    Ok(fields)
}

/// The text of `path` if it is a regular file (not a link) of at most
/// [`SCHEMA_FILE_BYTES_MAX`] bytes (`FileTooLarge` otherwise; at most that many bytes and one
/// are read, whatever the metadata says).
fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let not_regular = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
    // Checked before opening, so a FIFO or device is never opened (opening a FIFO blocks).
    let before = std::fs::symlink_metadata(path)?;
    if !before.is_file() {
        return Err(not_regular());
    }
    let file = std::fs::File::open(path)?;
    let opened = file.metadata()?;
    // The file opened is the one checked (not swapped for something else in between).
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) {
            return Err(not_regular());
        }
    }
    if !opened.is_file() {
        return Err(not_regular());
    }
    let too_large = || std::io::Error::new(std::io::ErrorKind::FileTooLarge, "schema file too large");
    if opened.len() > SCHEMA_FILE_BYTES_MAX {
        return Err(too_large());
    }
    let mut text = String::new();
    file.take(SCHEMA_FILE_BYTES_MAX + 1).read_to_string(&mut text)?;
    if text.len() as u64 > SCHEMA_FILE_BYTES_MAX {
        return Err(too_large());
    }
    Ok(text)
}

/// Infers a schema from JSON records: the union of their top-level keys, in first-seen
/// order, each typed by a majority of its non-null values, so a few malformed records do not
/// decide a column's type (they then fail conversion alone): numbers win when at least half
/// the values are numbers (integers widen to double when a fraction is seen), booleans when
/// most are booleans, string otherwise. Every column is nullable. Records that are not JSON
/// objects are skipped.
pub fn infer<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<FieldSpec>> {
    /// Non-null values of a column seen so far, by JSON kind.
    #[derive(Default)]
    struct Counts {
        bools: usize,
        ints: usize,
        doubles: usize,
        others: usize,
    }
    let mut columns: Vec<(String, Counts)> = Vec::new();
    for r in records {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(r) else { continue };
        for (k, v) in map {
            let slot = match columns.iter_mut().position(|(name, _)| *name == k) {
                Some(i) => &mut columns[i].1,
                None => {
                    columns.push((k, Counts::default()));
                    &mut columns.last_mut().expect("just pushed").1
                }
            };
            match v {
                serde_json::Value::Null => {}
                serde_json::Value::Bool(_) => slot.bools += 1,
                serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => slot.ints += 1,
                serde_json::Value::Number(_) => slot.doubles += 1,
                _ => slot.others += 1,
            }
        }
    }
    (!columns.is_empty()).then(|| {
        columns
            .into_iter()
            .map(|(name, c)| {
                let numbers = c.ints + c.doubles;
                let total = numbers + c.bools + c.others;
                let type_name = if total > 0 && numbers * 2 >= total {
                    if c.doubles > 0 {
                        "double"
                    } else {
                        "bigint"
                    }
                } else if total > 0 && c.bools * 2 > total {
                    "boolean"
                } else {
                    "string"
                };
                FieldSpec { name, type_name: type_name.into(), nullable: true }
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infers_types_and_widens() {
        let recs: Vec<&[u8]> = vec![
            br#"{"a": 1, "b": "x", "c": null, "d": true}"#,
            br#"{"a": 1.5, "b": 2, "e": {"n": 1}}"#,
            b"not json",
            br#"{"a": "NA", "b": "y", "d": false, "f": 1}"#,
            br#"{"f": 2, "d": "junk"}"#,
            br#"{"f": "junk"}"#,
        ];
        let f = infer(recs).unwrap();
        let got: Vec<(&str, &str)> = f.iter().map(|f| (f.name.as_str(), f.type_name.as_str())).collect();
        // a: two numbers against one string; b: strings win 2 to 1; d: booleans 2 of 3;
        // f: numbers 2 of 3 (the junk string fails conversion alone).
        assert_eq!(
            got,
            [("a", "double"), ("b", "string"), ("c", "string"), ("d", "boolean"), ("e", "string"), ("f", "bigint")]
        );
    }

    #[test]
    fn refuses_bad_schemas() {
        let f = |n: &str, t: &str| FieldSpec { name: n.into(), type_name: t.into(), nullable: true };
        assert!(to_arrow(&[]).is_err());
        assert!(to_arrow(&[f("a", "int"), f("a", "string")]).is_err());
        for bad in [
            "interval",
            "decimal(40,2)",
            "decimal(4,5)",
            "map<int,string>",
            "array<int",
            "struct<a:int,a:int>",
            "int x",
        ] {
            assert!(to_arrow(&[f("a", bad)]).is_err(), "{bad}");
        }
        assert_eq!(to_arrow(&[f("a", "bigint")]).unwrap().field(0).data_type(), &DataType::Int64);
    }

    #[test]
    fn parses_glue_types_nested_and_decimal() {
        let t = |s: &str| field("c", s, true).unwrap();
        assert_eq!(t("decimal(12, 3)").data_type(), &DataType::Decimal128(12, 3));
        assert_eq!(t("decimal").data_type(), &DataType::Decimal128(10, 0));
        assert_eq!(t("varchar(5)").metadata()[crate::deserializer::MAX_LENGTH_KEY], "5");
        let s = t("struct<lat:double, tags:array<string>, attrs:map<string,int>>");
        let DataType::Struct(children) = s.data_type() else { panic!("a struct") };
        let names: Vec<&str> = children.iter().map(|c| c.name().as_str()).collect();
        assert_eq!(names, ["lat", "tags", "attrs"]);
        assert!(matches!(children[1].data_type(), DataType::List(_)));
        assert!(matches!(children[2].data_type(), DataType::Map(_, false)));
    }
}
