//! AWS's service models, as botocore ships them (`kinesis/2013-12-02`, `firehose/2015-08-04`,
//! Apache-2.0, documentation stripped; see `src/api/models/NOTICE`): every operation's input
//! and output shape, and every shape's type and constraints (`required`, `min`, `max`,
//! `pattern`, `enum`). One description drives request validation and both codecs (JSON and
//! CBOR), so the wire answers what AWS's own model says.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// Index of a shape in [`Model::shapes`].
pub type ShapeId = usize;

/// What a shape is, with the parts its type has.
#[derive(Debug, Clone)]
pub enum ShapeKind {
    /// An object with named members, in the model's order.
    Structure {
        /// Members in the model's order (the order AWS lists their validation errors in).
        members: Vec<Member>,
    },
    /// An array of `member`.
    List {
        /// Element shape.
        member: ShapeId,
    },
    /// An object with string keys.
    Map {
        /// Key shape (a string).
        key: ShapeId,
        /// Value shape.
        value: ShapeId,
    },
    /// A string; `enum` lists its allowed values when it has them.
    String {
        /// Allowed values in the model's order.
        allowed: Option<Vec<String>>,
    },
    /// A 32-bit integer.
    Integer,
    /// A 64-bit integer.
    Long,
    /// A 64-bit float.
    Double,
    /// `true` or `false`.
    Boolean,
    /// Bytes: base64 in JSON, a byte string in CBOR.
    Blob,
    /// A time: epoch seconds in JSON, tag 1 with epoch milliseconds in CBOR (as the AWS Java
    /// SDKs write and read it).
    Timestamp,
}

/// A member of a structure.
#[derive(Debug, Clone)]
pub struct Member {
    /// The member's name on the wire (`StreamName`).
    pub name: String,
    /// Its shape.
    pub shape: ShapeId,
    /// Whether the structure's `required` list names it.
    pub required: bool,
}

/// A shape with its constraints.
#[derive(Debug)]
pub struct Shape {
    /// The shape's name in the model (`PutRecordsRequestEntry`).
    pub name: String,
    /// Its type.
    pub kind: ShapeKind,
    /// `min`: least length (strings in characters, blobs in bytes, lists and maps in entries)
    /// or least value (numbers).
    pub min: Option<i64>,
    /// `max`: greatest length or value, as `min`.
    pub max: Option<i64>,
    /// `pattern`: a Java regular expression the whole value must match.
    pub pattern: Option<Pattern>,
}

/// A model `pattern`, compiled.
#[derive(Debug)]
pub struct Pattern {
    /// As the model writes it; AWS quotes it in messages.
    pub source: String,
    regex: fancy_regex::Regex,
}

impl Pattern {
    /// Whether all of `value` matches (Java's `Matcher.matches`); a pattern too costly to
    /// evaluate counts as matched, so a value is never refused for our regex engine's limits.
    pub fn matches(&self, value: &str) -> bool {
        self.regex.is_match(value).unwrap_or(true)
    }
}

/// An operation's shapes.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// Input shape.
    pub input: Option<ShapeId>,
    /// Output shape; `None` for operations that answer an empty body.
    pub output: Option<ShapeId>,
}

/// One service's model.
#[derive(Debug)]
pub struct Model {
    /// The Java package AWS's messages name structures by (`com.amazonaws.kinesis.v20131202`).
    pub java_package: String,
    /// Every shape; members refer to them by index.
    pub shapes: Vec<Shape>,
    operations: HashMap<String, Operation>,
}

impl Model {
    /// The operation named `name` (`PutRecords`), if the model has it.
    pub fn operation(&self, name: &str) -> Option<Operation> {
        self.operations.get(name).copied()
    }

    /// The index of the shape named `name` (`SubscribeToShardEvent`), if the model has it.
    pub fn shape_id(&self, name: &str) -> Option<ShapeId> {
        self.shapes.iter().position(|s| s.name == name)
    }

    /// The shape with index `id`.
    pub fn shape(&self, id: ShapeId) -> &Shape {
        &self.shapes[id]
    }

    /// Parses a botocore `service-2.json`. Errors name what does not fit; the models
    /// embedded in the binary are checked by a unit test.
    pub fn parse(json: &str) -> Result<Self, String> {
        let raw: RawModel = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut names: Vec<&String> = raw.shapes.keys().collect();
        names.sort();
        let index: HashMap<&str, ShapeId> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let id = |name: &str| index.get(name).copied().ok_or_else(|| format!("unknown shape {name}"));
        let mut shapes = Vec::with_capacity(names.len());
        for name in &names {
            let raw_shape = &raw.shapes[*name];
            let kind = match raw_shape.kind.as_str() {
                "structure" => {
                    let mut members = Vec::new();
                    for (member, target) in &raw_shape.members {
                        members.push(Member {
                            name: member.clone(),
                            shape: id(&target.shape)?,
                            required: raw_shape.required.contains(member),
                        });
                    }
                    ShapeKind::Structure { members }
                }
                "list" => {
                    ShapeKind::List { member: id(&raw_shape.member.as_ref().ok_or("list without member")?.shape)? }
                }
                "map" => ShapeKind::Map {
                    key: id(&raw_shape.key.as_ref().ok_or("map without key")?.shape)?,
                    value: id(&raw_shape.value.as_ref().ok_or("map without value")?.shape)?,
                },
                "string" => ShapeKind::String { allowed: raw_shape.allowed.clone() },
                "integer" => ShapeKind::Integer,
                "long" => ShapeKind::Long,
                "double" | "float" => ShapeKind::Double,
                "boolean" => ShapeKind::Boolean,
                "blob" => ShapeKind::Blob,
                "timestamp" => ShapeKind::Timestamp,
                other => return Err(format!("shape {name}: unknown type {other}")),
            };
            let pattern = match &raw_shape.pattern {
                None => None,
                Some(source) => Some(Pattern {
                    source: source.clone(),
                    regex: fancy_regex::Regex::new(&format!("^(?:{})$", ascii_classes(source)))
                        .map_err(|e| format!("shape {name}: pattern {source}: {e}"))?,
                }),
            };
            shapes.push(Shape { name: (*name).clone(), kind, min: raw_shape.min, max: raw_shape.max, pattern });
        }
        let mut operations = HashMap::new();
        for (name, op) in &raw.operations {
            let input = op.input.as_ref().map(|r| id(&r.shape)).transpose()?;
            let output = op.output.as_ref().map(|r| id(&r.shape)).transpose()?;
            operations.insert(name.clone(), Operation { input, output });
        }
        let service = raw.metadata.endpoint_prefix.to_ascii_lowercase();
        let version = raw.metadata.api_version.replace('-', "");
        Ok(Self { java_package: format!("com.amazonaws.{service}.v{version}"), shapes, operations })
    }
}

/// Java's `\\w`, `\\d` and `\\s` are ASCII classes (no `UNICODE_CHARACTER_CLASS` flag); Rust's
/// are Unicode, and far larger to compile inside bounded repeats (`[\\w.-]{1,255}`). Rewrites
/// them as the ASCII sets Java means, inside and outside brackets.
fn ascii_classes(java: &str) -> String {
    let mut out = String::with_capacity(java.len() + 16);
    let mut in_class = false;
    let mut chars = java.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push(c);
                    break;
                };
                let set = match next {
                    'w' => Some("0-9A-Za-z_"),
                    'd' => Some("0-9"),
                    's' => Some("\\t\\n\\x0B\\x0C\\r "),
                    _ => None,
                };
                match (set, in_class) {
                    (Some(set), true) => out.push_str(set),
                    (Some(set), false) => {
                        out.push('[');
                        out.push_str(set);
                        out.push(']');
                    }
                    (None, _) => {
                        out.push(c);
                        out.push(next);
                    }
                }
            }
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The Kinesis Data Streams model (botocore `kinesis/2013-12-02`).
pub fn kinesis() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::parse(include_str!("models/kinesis-2013-12-02.json")).expect("embedded Kinesis model"))
}

/// The Firehose model (botocore `firehose/2015-08-04`).
pub fn firehose() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL
        .get_or_init(|| Model::parse(include_str!("models/firehose-2015-08-04.json")).expect("embedded Firehose model"))
}

/// The SQS model (botocore `sqs/2012-11-05`).
pub fn sqs() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::parse(include_str!("models/sqs-2012-11-05.json")).expect("embedded SQS model"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadata {
    endpoint_prefix: String,
    api_version: String,
}

#[derive(Deserialize)]
struct RawModel {
    metadata: RawMetadata,
    operations: HashMap<String, RawOperation>,
    shapes: HashMap<String, RawShape>,
}

#[derive(Deserialize)]
struct RawOperation {
    input: Option<RawRef>,
    output: Option<RawRef>,
}

#[derive(Deserialize)]
struct RawRef {
    shape: String,
}

#[derive(Deserialize)]
struct RawShape {
    #[serde(rename = "type")]
    kind: String,
    // The model lists members in their documented order; a Vec of pairs keeps it.
    #[serde(default, deserialize_with = "ordered_members")]
    members: Vec<(String, RawRef)>,
    #[serde(default)]
    required: Vec<String>,
    member: Option<RawRef>,
    key: Option<RawRef>,
    value: Option<RawRef>,
    min: Option<i64>,
    max: Option<i64>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    allowed: Option<Vec<String>>,
}

fn ordered_members<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<(String, RawRef)>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<(String, RawRef)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of members")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = map.next_entry::<String, RawRef>()? {
                out.push(entry);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Visitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_models_load_with_every_operation_and_pattern() {
        let k = kinesis();
        assert_eq!(k.java_package, "com.amazonaws.kinesis.v20131202");
        assert_eq!(k.operations.len(), 57);
        let put = k.operation("PutRecords").expect("PutRecords");
        let ShapeKind::Structure { members } = &k.shape(put.input.unwrap()).kind else { panic!("structure") };
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["Records", "StreamName", "StreamARN", "StreamId", "DryRun"]);
        assert!(members[0].required && !members[1].required);
        assert!(k.operation("CreateStream").unwrap().output.is_none());
        let f = firehose();
        assert_eq!(f.operations.len(), 12);
        assert_eq!(f.java_package, "com.amazonaws.firehose.v20150804");
        // Java lookarounds and \p classes compile and behave.
        let tag_key = f.shapes.iter().find(|s| s.name == "TagKey").unwrap();
        let p = tag_key.pattern.as_ref().unwrap();
        assert!(p.matches("env") && !p.matches("aws:x"));
    }
}
