//! Request checking as AWS's front end (Coral) does it, driven by the service model:
//!
//! 1. **Types** ([`coerce`]): each member must have its shape's JSON type; the first that does
//!    not is a `SerializationException` with Coral's text (`Expected map or null`, `class
//!    java.lang.Boolean can not be converted to an String`, ...). Numbers are truncated to
//!    their shape's integer type, `null` counts as absent, members the model does not know are
//!    dropped.
//! 2. **Constraints** ([`violations`]): every member, in the model's order, against
//!    `required`, `min`/`max`, `pattern` and `enum`; all violations (at most 10) in one
//!    `ValidationException`: `2 validation errors detected: Value '' at 'streamName' failed to
//!    satisfy constraint: Member must ...; Value null at 'records' ...`.
//!
//! Both run before an action looks at a stream, so a request with bad members never reaches
//! an existence check. Sources of each text: the table in [`RULES`].

use crate::api::{ApiError, ErrorKind};
use base64::Engine as _;
use serde_json::{Map, Value};

use super::model::{Model, ShapeId, ShapeKind};

/// Where each message comes from. Observed AWS behaviour was recorded by kinesalite's test
/// suite (run against AWS Kinesis; `test/helpers.js` `assertType`, `assertValidation`) and by
/// issue 13's probes; constraints themselves come from botocore's models.
pub const RULES: &[(&str, &str)] = &[
    ("Member must not be null", "model `required`; kinesalite validations/index.js notNull"),
    ("Member must have length greater than or equal to N", "model `min` on strings, blobs, lists, maps"),
    ("Member must have length less than or equal to N", "model `max` on strings, blobs, lists, maps"),
    ("Member must have value greater than or equal to N", "model `min` on numbers"),
    ("Member must have value less than or equal to N", "model `max` on numbers"),
    ("Member must satisfy regular expression pattern: P", "model `pattern`, checked before lengths (AWS's order)"),
    ("Member must satisfy enum value set: [A, B]", "model `enum`"),
    ("Member must satisfy constraint: [..]", "list members' constraints, reported once at the list (AWS)"),
    ("Map keys must satisfy constraint: [..] / Map value must ...", "map keys and values (AWS, AddTagsToStream)"),
    ("at most 10 violations listed", "kinesalite validations/index.js, observed on AWS"),
    ("Expected list or null / Expected map or null / Expected null", "a scalar where a list, map, structure is"),
    ("Start of list found where not expected", "an array where a scalar, map or structure is"),
    ("Start of structure or map found where not expected.", "an object where a scalar or list is"),
    ("class java.lang.Boolean can not be converted to an String", "issue 13 probe of AWS; kinesalite"),
    ("class com.amazon.coral.value.json.numbers.TruncatingBigNumber ...", "a number where a string, blob, boolean is"),
    ("'..' can not be converted to a Blob: ...", "base64 checks of Coral (length, character, last character)"),
];

/// Enum value sets AWS prints in an order of its own (observed on AWS by kinesalite's
/// `test/getShardIterator.js`); other enums print in the model's order.
const OBSERVED_ENUM_ORDER: &[(&str, &str)] =
    &[("ShardIteratorType", "AFTER_SEQUENCE_NUMBER, LATEST, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, TRIM_HORIZON")];

fn enum_set(shape_name: &str, allowed: &[String]) -> String {
    match OBSERVED_ENUM_ORDER.iter().find(|(name, _)| *name == shape_name) {
        Some((_, order)) => format!("[{order}]"),
        None => format!("[{}]", allowed.join(", ")),
    }
}

/// Most violations one `ValidationException` lists (AWS stops counting at 10).
pub const VIOLATIONS_MAX: usize = 10;

fn serialization(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Serialization, message)
}

/// Checks `value` against `shape`'s types (step 1); returns it normalized, `None` for null.
pub fn coerce(model: &Model, shape: ShapeId, mut value: Value) -> Result<Option<Value>, ApiError> {
    if value.is_null() {
        return Ok(None);
    }
    coerce_mut(model, shape, &mut value)?;
    Ok(Some(value))
}

/// [`coerce`] in place, on a value that is not null: members the model does not know and
/// null members are removed, numbers truncated to their integer type, `"true"`/`"false"`
/// made booleans. In place because it runs over every record of every put.
fn coerce_mut(model: &Model, shape: ShapeId, value: &mut Value) -> Result<(), ApiError> {
    let s = model.shape(shape);
    let not_expected = |v: &Value| match v {
        Value::Array(_) => serialization("Start of list found where not expected"),
        _ => serialization("Start of structure or map found where not expected."),
    };
    match &s.kind {
        ShapeKind::Structure { members } => match value {
            Value::Object(fields) => {
                fields.retain(|k, v| !v.is_null() && members.iter().any(|m| m.name == *k));
                // Model order: the first member of the wrong type in that order is reported.
                for m in members {
                    if let Some(v) = fields.get_mut(&m.name) {
                        coerce_mut(model, m.shape, v)?;
                    }
                }
                Ok(())
            }
            Value::Array(_) => Err(serialization("Start of list found where not expected")),
            _ => Err(serialization("Expected null")),
        },
        ShapeKind::List { member } => match value {
            Value::Array(items) => {
                items.iter_mut().filter(|v| !v.is_null()).try_for_each(|v| coerce_mut(model, *member, v))
            }
            Value::Object(_) => Err(serialization("Start of structure or map found where not expected.")),
            _ => Err(serialization("Expected list or null")),
        },
        ShapeKind::Map { value: value_shape, .. } => match value {
            Value::Object(fields) => {
                fields.retain(|_, v| !v.is_null());
                fields.values_mut().try_for_each(|v| coerce_mut(model, *value_shape, v))
            }
            Value::Array(_) => Err(serialization("Start of list found where not expected")),
            _ => Err(serialization("Expected map or null")),
        },
        ShapeKind::String { .. } => match value {
            Value::String(_) => Ok(()),
            Value::Bool(_) => Err(serialization("class java.lang.Boolean can not be converted to an String")),
            Value::Number(_) => Err(truncating("an String")),
            v => Err(not_expected(v)),
        },
        ShapeKind::Integer | ShapeKind::Long | ShapeKind::Double => {
            let (name, range) = match s.kind {
                ShapeKind::Integer => ("Integer", Some((i32::MIN as f64, i32::MAX as f64))),
                ShapeKind::Long => ("Long", Some((i64::MIN as f64, i64::MAX as f64))),
                _ => ("Double", None),
            };
            match value {
                // Coral truncates a JSON number to the member's integer type.
                Value::Number(n) => {
                    if let Some((lo, hi)) = range {
                        let fits = n.as_i64().is_some_and(|i| (lo..=hi).contains(&(i as f64)));
                        if !fits {
                            let f = n.as_f64().unwrap_or(0.0).trunc().clamp(lo, hi);
                            *value = Value::from(f as i64);
                        }
                    }
                    Ok(())
                }
                Value::Bool(_) => {
                    Err(serialization(format!("class java.lang.Boolean can not be converted to an {name}")))
                }
                Value::String(_) => {
                    Err(serialization(format!("class java.lang.String can not be converted to an {name}")))
                }
                v => Err(not_expected(v)),
            }
        }
        ShapeKind::Boolean => match value {
            Value::Bool(_) => Ok(()),
            Value::Number(_) => Err(truncating("an Boolean")),
            Value::String(text) => {
                *value = match text.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "1" => Value::Bool(true),
                    "false" | "no" | "0" => Value::Bool(false),
                    _ => {
                        return Err(serialization(format!(
                            "'{}' can not be converted to an Boolean",
                            text.to_uppercase()
                        )))
                    }
                };
                Ok(())
            }
            v => Err(not_expected(v)),
        },
        ShapeKind::Blob => match value {
            Value::String(text) => check_base64(text),
            Value::Bool(_) => Err(serialization("class java.lang.Boolean can not be converted to a Blob")),
            Value::Number(_) => Err(truncating("a Blob")),
            v => Err(not_expected(v)),
        },
        ShapeKind::Timestamp => match value {
            Value::Number(_) => Ok(()),
            Value::Bool(_) => {
                Err(serialization("class java.lang.Boolean can not be converted to milliseconds since epoch"))
            }
            Value::String(_) => {
                Err(serialization("class java.lang.String can not be converted to milliseconds since epoch"))
            }
            v => Err(not_expected(v)),
        },
    }
}

fn truncating(target: &str) -> ApiError {
    serialization(format!(
        "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to {target}"
    ))
}

/// Coral's base64 checks, in its order and words (`dectected` is AWS's spelling). One pass
/// over the text: it runs on every record of every put.
fn check_base64(text: &str) -> Result<(), ApiError> {
    let fail = |why: String| Err(serialization(format!("'{text}' can not be converted to a Blob: {why}")));
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return fail(format!("Base64 encoded length is expected a multiple of 4 bytes but found: {}", bytes.len()));
    }
    // Padding may only end the text: from the first '=' on, every byte is '='. The common
    // case (base64 characters, then padding) is checked first without branches per byte,
    // which the compiler vectorizes: this check was 8 % of the server's CPU under 100-byte
    // PutRecords as a `position` loop (perf, issue 17). Only a bad text is searched for the
    // character to name.
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &bytes[..bytes.len() - padding];
    let invalid = body.iter().fold(false, |invalid, &b| invalid | !is_base64_character(b));
    let bad = if invalid {
        let data_end = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
        bytes[..data_end]
            .iter()
            .position(|&b| !is_base64_character(b))
            .or_else(|| bytes[data_end..].iter().position(|&b| b != b'=').map(|p| data_end + p - 1))
    } else {
        None
    };
    if let Some(i) = bad {
        let c = text[i..].chars().next().unwrap_or('?');
        return fail(format!("Invalid Base64 character: '{c}'"));
    }
    // Only the last quantum can still be wrong (bits left over in its last non-pad character).
    let last = &text[text.len().saturating_sub(4)..];
    if base64::engine::general_purpose::STANDARD.decode(last).is_err() {
        return fail("Invalid last non-pad Base64 character dectected".into());
    }
    Ok(())
}

/// A character of base64's standard alphabet (`A-Z a-z 0-9 + /`), written with bitwise `|`
/// so that a fold over a slice of them vectorizes.
fn is_base64_character(b: u8) -> bool {
    (b.wrapping_sub(b'A') < 26) | (b.wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10) | (b == b'+') | (b == b'/')
}

/// Checks a coerced request (step 2); `Ok` when no constraint is broken.
pub fn check(model: &Model, shape: ShapeId, value: &Value) -> Result<(), ApiError> {
    let mut walk = Walk { model, path: Vec::new(), found: Vec::new() };
    walk.structure(shape, value);
    if walk.found.is_empty() {
        return Ok(());
    }
    let n = walk.found.len();
    let plural = if n == 1 { "error" } else { "errors" };
    Err(ApiError::new(ErrorKind::Validation, format!("{n} validation {plural} detected: {}", walk.found.join("; "))))
}

/// Lower-cases the first letter, as Coral names members in messages (`StreamARN` → `streamARN`).
fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One step of a member's path: a member name or a list position (1-based, `.N.member`).
#[derive(Clone, Copy)]
enum Step<'a> {
    Member(&'a str),
    Item(usize),
}

/// The constraint walk. The path is kept as steps and values are rendered only when a
/// violation is found: a valid request (a PutRecords of 500 records) costs no string work.
struct Walk<'a> {
    model: &'a Model,
    path: Vec<Step<'a>>,
    found: Vec<String>,
}

impl<'a> Walk<'a> {
    /// The path as Coral writes it: `records.1.member.partitionKey`.
    fn path(&self) -> String {
        let mut out = String::new();
        for step in &self.path {
            if !out.is_empty() {
                out.push('.');
            }
            match step {
                Step::Member(name) => out.push_str(&lower_first(name)),
                Step::Item(i) => out.push_str(&format!("{i}.member")),
            }
        }
        out
    }

    fn push(&mut self, rendered: &str, constraint: &str) {
        if self.found.len() < VIOLATIONS_MAX {
            let path = self.path();
            self.found.push(format!("Value {rendered} at '{path}' failed to satisfy constraint: {constraint}"));
        }
    }

    fn structure(&mut self, shape: ShapeId, value: &Value) {
        let ShapeKind::Structure { members } = &self.model.shape(shape).kind else { return };
        for m in members {
            self.path.push(Step::Member(&m.name));
            let v = value.get(&m.name).filter(|v| !v.is_null());
            self.member(m.shape, v, m.required);
            self.path.pop();
        }
    }

    fn member(&mut self, shape: ShapeId, value: Option<&Value>, required: bool) {
        let model = self.model;
        let Some(value) = value else {
            if required {
                self.push("null", "Member must not be null");
            }
            return;
        };
        let broken = own_violations(model, shape, value);
        if !broken.is_empty() {
            let rendered = format!("'{}'", render(model, shape, value));
            for constraint in broken {
                self.push(&rendered, &constraint);
            }
        }
        match &model.shape(shape).kind {
            ShapeKind::Structure { .. } => self.structure(shape, value),
            ShapeKind::List { member } => {
                let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
                if matches!(model.shape(*member).kind, ShapeKind::Structure { .. }) {
                    for (i, item) in items.iter().enumerate() {
                        self.path.push(Step::Item(i + 1));
                        if item.is_null() {
                            self.push("null", "Member must not be null");
                        } else {
                            self.structure(*member, item);
                        }
                        self.path.pop();
                    }
                } else if items.iter().any(|item| !own_violations(model, *member, item).is_empty()) {
                    let rendered = format!("'{}'", render(model, shape, value));
                    let all = constraint_list(model, *member);
                    self.push(&rendered, &format!("Member must satisfy constraint: [{all}]"));
                }
            }
            ShapeKind::Map { key, value: value_shape } => {
                let fields = value.as_object();
                let keys_bad = fields.is_some_and(|f| {
                    f.keys().any(|k| !own_violations(model, *key, &Value::from(k.as_str())).is_empty())
                });
                let values_bad =
                    fields.is_some_and(|f| f.values().any(|v| !own_violations(model, *value_shape, v).is_empty()));
                if keys_bad || values_bad {
                    let rendered = format!("'{}'", render(model, shape, value));
                    if keys_bad {
                        let all = constraint_list(model, *key);
                        self.push(&rendered, &format!("Map keys must satisfy constraint: [{all}]"));
                    }
                    if values_bad {
                        let all = constraint_list(model, *value_shape);
                        self.push(&rendered, &format!("Map value must satisfy constraint: [{all}]"));
                    }
                }
            }
            _ => {}
        }
    }
}

fn base64_decoded_len(s: &str) -> usize {
    let pad = s.bytes().rev().take_while(|&b| b == b'=').count();
    (s.len() / 4 * 3).saturating_sub(pad)
}

/// Whether `text`, the JSON string of a string or blob member of shape `shape`, passes both
/// steps: for a blob, Coral's base64 checks; then the shape's pattern, length and enum. The
/// check of one member without a `Value`, for requests read straight into their shape
/// (PutRecords' fast path); `false` for shapes of other kinds.
pub fn text_fits(model: &Model, shape: ShapeId, text: &str) -> bool {
    match model.shape(shape).kind {
        ShapeKind::Blob => check_base64(text).is_ok() && text_violations(model, shape, text).is_empty(),
        ShapeKind::String { .. } => text_violations(model, shape, text).is_empty(),
        _ => false,
    }
}

/// [`own_violations`] of a string or blob member's text.
fn text_violations(model: &Model, shape: ShapeId, text: &str) -> Vec<String> {
    let s = model.shape(shape);
    let mut out = Vec::new();
    if let Some(p) = &s.pattern {
        if !p.matches(text) {
            out.push(format!("Member must satisfy regular expression pattern: {}", p.source));
        }
    }
    let len = match s.kind {
        ShapeKind::Blob => base64_decoded_len(text) as i64,
        _ => text.encode_utf16().count() as i64,
    };
    if let Some(min) = s.min.filter(|&min| len < min) {
        out.push(format!("Member must have length greater than or equal to {min}"));
    }
    if let Some(max) = s.max.filter(|&max| len > max) {
        out.push(format!("Member must have length less than or equal to {max}"));
    }
    if let ShapeKind::String { allowed: Some(allowed) } = &s.kind {
        if !allowed.iter().any(|a| a == text) {
            out.push(format!("Member must satisfy enum value set: {}", enum_set(&s.name, allowed)));
        }
    }
    out
}

/// The constraints `value` breaks of `shape`'s own (not its members'), in AWS's order:
/// pattern, then lengths or values, then the enum.
fn own_violations(model: &Model, shape: ShapeId, value: &Value) -> Vec<String> {
    let s = model.shape(shape);
    if let Value::String(text) = value {
        return text_violations(model, shape, text);
    }
    let mut out = Vec::new();
    let (what, measure) = match (&s.kind, value) {
        (ShapeKind::Integer | ShapeKind::Long | ShapeKind::Double, v) => ("value", v.as_f64().unwrap_or(0.0)),
        (ShapeKind::List { .. }, Value::Array(a)) => ("length", a.len() as f64),
        (ShapeKind::Map { .. }, Value::Object(o)) => ("length", o.len() as f64),
        _ => return out,
    };
    if let Some(min) = s.min.filter(|&min| measure < min as f64) {
        out.push(format!("Member must have {what} greater than or equal to {min}"));
    }
    if let Some(max) = s.max.filter(|&max| measure > max as f64) {
        out.push(format!("Member must have {what} less than or equal to {max}"));
    }
    out
}

/// Every constraint of `shape`, as AWS lists a list member's or map key's constraints:
/// upper bound first (`[Member must have length less than or equal to 128, Member must have
/// length greater than or equal to 1]`).
fn constraint_list(model: &Model, shape: ShapeId) -> String {
    let s = model.shape(shape);
    let what =
        if matches!(s.kind, ShapeKind::Integer | ShapeKind::Long | ShapeKind::Double) { "value" } else { "length" };
    let mut out = Vec::new();
    if let Some(max) = s.max {
        out.push(format!("Member must have {what} less than or equal to {max}"));
    }
    if let Some(min) = s.min {
        out.push(format!("Member must have {what} greater than or equal to {min}"));
    }
    if let Some(p) = &s.pattern {
        out.push(format!("Member must satisfy regular expression pattern: {}", p.source));
    }
    if let ShapeKind::String { allowed: Some(allowed) } = &s.kind {
        out.push(format!("Member must satisfy enum value set: {}", enum_set(&s.name, allowed)));
    }
    out.join(", ")
}

/// A value as AWS prints it in a message: strings bare, blobs as the Java buffer that held
/// them, lists `[a, b]`, maps `{k=v, k2=v2}`, structures by Java class and hash.
pub fn render(model: &Model, shape: ShapeId, value: &Value) -> String {
    let s = model.shape(shape);
    match (&s.kind, value) {
        (_, Value::Null) => "null".into(),
        (ShapeKind::Blob, Value::String(b64)) => {
            let n = base64_decoded_len(b64);
            format!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]")
        }
        (ShapeKind::List { member }, Value::Array(items)) => {
            let parts: Vec<String> = items.iter().map(|v| render(model, *member, v)).collect();
            format!("[{}]", parts.join(", "))
        }
        (ShapeKind::Map { value: value_shape, .. }, Value::Object(fields)) => {
            let parts: Vec<String> =
                fields.iter().map(|(k, v)| format!("{k}={}", render(model, *value_shape, v))).collect();
            format!("{{{}}}", parts.join(", "))
        }
        (ShapeKind::Structure { .. }, v) => {
            // Java's Object.toString: class name and identity hash; any stable hash will do.
            let hash = crc32fast::hash(v.to_string().as_bytes());
            format!("{}.{}@{hash:08x}", model.java_package, s.name)
        }
        (_, Value::String(text)) => text.clone(),
        (_, other) => other.to_string(),
    }
}

/// Checks a request body's value for operation input `shape`: types first, then
/// constraints. Returns the normalized value the action parses.
pub fn request(model: &Model, shape: ShapeId, value: Value) -> Result<Value, ApiError> {
    if !value.is_object() {
        // Coral answers a body that is not a JSON object with no message at all.
        return Err(serialization(""));
    }
    let value = coerce(model, shape, value)?.unwrap_or_else(|| Value::Object(Map::new()));
    check(model, shape, &value)?;
    Ok(value)
}

/// Whether an answer `value` fits output shape `shape`: every member known to the model,
/// of its type, every required member present. `Err` names the first misfit by its path.
/// The server checks every answer with it in debug builds, so each test run also checks the
/// answers' shapes against AWS's model.
pub fn conforms(model: &Model, shape: ShapeId, value: &Value, path: &str) -> Result<(), String> {
    let s = model.shape(shape);
    let misfit = |what: &str| Err(format!("{path}: {what}, the model has a {} ({})", kind_name(&s.kind), s.name));
    match (&s.kind, value) {
        (_, Value::Null) => misfit("null"),
        (ShapeKind::Structure { members }, Value::Object(fields)) => {
            for (name, v) in fields {
                let Some(m) = members.iter().find(|m| &m.name == name) else {
                    return Err(format!("{path}: member {name} is not in {}", s.name));
                };
                conforms(model, m.shape, v, &format!("{path}.{name}"))?;
            }
            match members.iter().find(|m| m.required && !fields.contains_key(&m.name)) {
                Some(m) => Err(format!("{path}: required member {} missing from {}", m.name, s.name)),
                None => Ok(()),
            }
        }
        (ShapeKind::List { member }, Value::Array(items)) => {
            items.iter().enumerate().try_for_each(|(i, v)| conforms(model, *member, v, &format!("{path}[{i}]")))
        }
        (ShapeKind::Map { value: value_shape, .. }, Value::Object(fields)) => {
            fields.iter().try_for_each(|(k, v)| conforms(model, *value_shape, v, &format!("{path}.{k}")))
        }
        (ShapeKind::String { allowed }, Value::String(text)) => match allowed {
            Some(allowed) if !allowed.iter().any(|a| a == text) => misfit(&format!("'{text}' outside the enum")),
            _ => Ok(()),
        },
        (ShapeKind::Integer | ShapeKind::Long, Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(()),
        (ShapeKind::Double | ShapeKind::Timestamp, Value::Number(_)) => Ok(()),
        (ShapeKind::Boolean, Value::Bool(_)) => Ok(()),
        (ShapeKind::Blob, Value::String(text)) if base64::engine::general_purpose::STANDARD.decode(text).is_ok() => {
            Ok(())
        }
        (_, other) => misfit(&format!("{other} found")),
    }
}

fn kind_name(kind: &ShapeKind) -> &'static str {
    match kind {
        ShapeKind::Structure { .. } => "structure",
        ShapeKind::List { .. } => "list",
        ShapeKind::Map { .. } => "map",
        ShapeKind::String { .. } => "string",
        ShapeKind::Integer => "integer",
        ShapeKind::Long => "long",
        ShapeKind::Double => "double",
        ShapeKind::Boolean => "boolean",
        ShapeKind::Blob => "blob",
        ShapeKind::Timestamp => "timestamp",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::model;

    fn run(op: &str, body: Value) -> Result<Value, ApiError> {
        let m = model::kinesis();
        request(m, m.operation(op).unwrap().input.unwrap(), body)
    }

    #[test]
    fn violations_are_listed_in_the_models_member_order_with_awss_renderings() {
        let e = run("AddTagsToStream", json!({"StreamName": "", "Tags": {}})).unwrap_err();
        assert_eq!(
            e.message,
            "3 validation errors detected: \
             Value '' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; \
             Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1; \
             Value '{}' at 'tags' failed to satisfy constraint: Member must have length greater than or equal to 1"
        );
        let e = run("PutRecords", json!({"Records": [{"Data": "AAAA", "PartitionKey": ""}, null]})).unwrap_err();
        assert_eq!(
            e.message,
            "2 validation errors detected: \
             Value '' at 'records.1.member.partitionKey' failed to satisfy constraint: Member must have length greater than or equal to 1; \
             Value null at 'records.2.member' failed to satisfy constraint: Member must not be null"
        );
        let e = run("RemoveTagsFromStream", json!({"StreamName": "s", "TagKeys": ["a", ""]})).unwrap_err();
        assert_eq!(
            e.message,
            "1 validation error detected: Value '[a, ]' at 'tagKeys' failed to satisfy constraint: \
             Member must satisfy constraint: [Member must have length less than or equal to 128, Member must have length greater than or equal to 1]"
        );
        assert!(run("PutRecord", json!({"StreamName": "s", "Data": "AAAA", "PartitionKey": "k"})).is_ok());
    }

    #[test]
    fn a_member_of_the_wrong_type_is_corals_serialization_text() {
        let cases = [
            (json!({"StreamName": true}), "class java.lang.Boolean can not be converted to an String"),
            (
                json!({"StreamName": 5}),
                "class com.amazon.coral.value.json.numbers.TruncatingBigNumber can not be converted to an String",
            ),
            (json!({"StreamName": "s", "Tags": "x"}), "Expected map or null"),
            (json!({"StreamName": "s", "Tags": []}), "Start of list found where not expected"),
            (
                json!({"StreamName": "s", "ShardCount": "2"}),
                "class java.lang.String can not be converted to an Integer",
            ),
            (json!({"StreamName": {}}), "Start of structure or map found where not expected."),
            (json!({"StreamName": "s", "StreamModeDetails": 1}), "Expected null"),
        ];
        for (body, message) in cases {
            let e = run("CreateStream", body.clone()).unwrap_err();
            assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Serialization, message), "{body}");
        }
        let blob =
            |d: &str| run("PutRecord", json!({"StreamName": "s", "PartitionKey": "k", "Data": d})).unwrap_err().message;
        assert_eq!(blob("23456"), "'23456' can not be converted to a Blob: Base64 encoded length is expected a multiple of 4 bytes but found: 5");
        assert_eq!(blob("=+/="), "'=+/=' can not be converted to a Blob: Invalid Base64 character: '='");
        assert_eq!(
            blob("+/+="),
            "'+/+=' can not be converted to a Blob: Invalid last non-pad Base64 character dectected"
        );
    }

    #[test]
    fn answers_are_checked_against_the_output_shape() {
        let m = model::kinesis();
        let out = m.operation("PutRecord").unwrap().output.unwrap();
        assert!(conforms(
            m,
            out,
            &json!({"ShardId": "shardId-000000000000", "SequenceNumber": "1", "EncryptionType": "NONE"}),
            ""
        )
        .is_ok());
        let e =
            conforms(m, out, &json!({"ShardId": "s", "SequenceNumber": "1", "Encryption": "NONE"}), "").unwrap_err();
        assert_eq!(e, ": member Encryption is not in PutRecordOutput");
        let e = conforms(m, out, &json!({"ShardId": "s"}), "").unwrap_err();
        assert_eq!(e, ": required member SequenceNumber missing from PutRecordOutput");
        let e = conforms(m, out, &json!({"ShardId": "s", "SequenceNumber": 1}), "").unwrap_err();
        assert_eq!(e, ".SequenceNumber: 1 found, the model has a string (SequenceNumber)");
    }

    #[test]
    fn numbers_are_truncated_to_their_type_and_unknown_members_dropped() {
        let v = run("CreateStream", json!({"StreamName": "s", "ShardCount": 2.9, "Extra": 1, "Tags": null})).unwrap();
        assert_eq!(v, json!({"StreamName": "s", "ShardCount": 2}));
        let e = run("CreateStream", json!({"StreamName": "s", "ShardCount": 0})).unwrap_err();
        assert_eq!(e.message, "1 validation error detected: Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1");
    }
}
