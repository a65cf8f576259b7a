//! The two bodies AWS's JSON protocol services speak: JSON 1.1 (`application/x-amz-json-1.1`)
//! and CBOR 1.1 (`application/x-amz-cbor-1.1`, the AWS Java SDKs' default for Kinesis).
//!
//! Both decode to one JSON value that the model's checks and the actions take, and encode
//! an action's JSON answer back. CBOR differs from JSON only where the model says a member is
//! a blob (a CBOR byte string, base64 text in JSON) or a timestamp (CBOR tag 1 around epoch
//! **milliseconds**, as the Java SDKs' `SdkCborGenerator` writes and their unmarshallers read
//! it; epoch seconds in JSON).

use crate::api::{ApiError, ErrorKind};
use base64::Engine as _;
use ciborium::value::{Integer, Value as Cbor};
use serde_json::{Map, Number, Value};

use super::model::{Model, ShapeId, ShapeKind};

/// Deepest CBOR nesting decoded; the models nest far less (Firehose: 8), so deeper input
/// is refused before it can exhaust the stack.
const CBOR_DEPTH_MAX: usize = 64;

/// A request's body format, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// `application/x-amz-json-1.1` (and any other or no content type).
    Json,
    /// `application/x-amz-cbor-1.1`.
    Cbor,
}

impl Codec {
    /// The codec of a request with `content_type` (parameters ignored): CBOR for
    /// `application/x-amz-cbor-1.1`; JSON for `application/x-amz-json-1.1`, `application/json`
    /// and no content type at all (a hand-written request); `None` for any other type, which
    /// AWS does not serve either.
    pub fn from_content_type(content_type: Option<&str>) -> Option<Self> {
        let Some(content_type) = content_type else { return Some(Self::Json) };
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-amz-cbor-1.1" => Some(Self::Cbor),
            "application/x-amz-json-1.1" | "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    /// The `Content-Type` of answers in this codec.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/x-amz-json-1.1",
            Self::Cbor => "application/x-amz-cbor-1.1",
        }
    }

    /// Decodes a request body for input shape `shape`. A body that does not parse is a
    /// `SerializationException` without a message, as AWS answers it.
    pub fn decode(self, model: &Model, shape: Option<ShapeId>, body: &[u8]) -> Result<Value, ApiError> {
        let bad = || ApiError::new(ErrorKind::Serialization, "");
        match self {
            Self::Json => serde_json::from_slice(body).map_err(|_| bad()),
            Self::Cbor => {
                let value: Cbor =
                    ciborium::de::from_reader_with_recursion_limit(body, CBOR_DEPTH_MAX).map_err(|_| bad())?;
                cbor_to_json(model, shape, value)
            }
        }
    }

    /// Encodes an action's JSON answer (`json`, empty for actions without output) for
    /// output shape `shape`.
    pub fn encode(self, model: &Model, shape: Option<ShapeId>, json: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        match self {
            Self::Json => Ok(json),
            Self::Cbor if json.is_empty() => Ok(json),
            Self::Cbor => {
                let value: Value = serde_json::from_slice(&json)
                    .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
                let mut out = Vec::with_capacity(json.len());
                ciborium::ser::into_writer(&json_to_cbor(model, shape, value), &mut out)
                    .map_err(|e| ApiError::new(ErrorKind::InternalFailure, e.to_string()))?;
                Ok(out)
            }
        }
    }

    /// An error's body: `{"__type": ..., "message": ...}` (no `message` when empty).
    pub fn error_body(self, error: &ApiError) -> Vec<u8> {
        match self {
            Self::Json => error.body(),
            Self::Cbor => {
                let mut fields = vec![(Cbor::Text("__type".into()), Cbor::Text(error.kind.name().into()))];
                if !error.message.is_empty() {
                    fields.push((Cbor::Text(error.message_member().into()), Cbor::Text(error.message.clone())));
                }
                let mut out = Vec::new();
                ciborium::ser::into_writer(&Cbor::Map(fields), &mut out).expect("writing to a Vec cannot fail");
                out
            }
        }
    }
}

fn kind(model: &Model, shape: Option<ShapeId>) -> Option<&ShapeKind> {
    shape.map(|s| &model.shape(s).kind)
}

/// The shape of a list's items.
fn item_shape(kind: Option<&ShapeKind>) -> Option<ShapeId> {
    match kind {
        Some(ShapeKind::List { member }) => Some(*member),
        _ => None,
    }
}

/// The shape of member `key` of a structure, or of a map's values.
fn member_shape(kind: Option<&ShapeKind>, key: &str) -> Option<ShapeId> {
    match kind {
        Some(ShapeKind::Structure { members }) => members.iter().find(|m| m.name == key).map(|m| m.shape),
        Some(ShapeKind::Map { value, .. }) => Some(*value),
        _ => None,
    }
}

/// A CBOR request value as the JSON protocol would carry it: byte strings of blob members
/// become base64 text, timestamps (tagged or not, milliseconds) epoch seconds.
fn cbor_to_json(model: &Model, shape: Option<ShapeId>, value: Cbor) -> Result<Value, ApiError> {
    let bad = |why: &str| ApiError::new(ErrorKind::Serialization, why.to_owned());
    let shape_kind = kind(model, shape);
    Ok(match value {
        Cbor::Tag(_, inner) => cbor_to_json(model, shape, *inner)?,
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Text(s) => Value::String(s),
        Cbor::Bytes(b) => match shape_kind {
            Some(ShapeKind::Blob) | None => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            // Coral's words for a byte array (`byte[]`, `[B` in Java) where another type is.
            Some(ShapeKind::List { .. }) => return Err(bad("Expected list or null")),
            Some(ShapeKind::Map { .. }) => return Err(bad("Expected map or null")),
            Some(ShapeKind::Structure { .. }) => return Err(bad("Expected null")),
            Some(ShapeKind::Timestamp) => return Err(bad("class [B can not be converted to milliseconds since epoch")),
            Some(other) => {
                let name = match other {
                    ShapeKind::Integer => "Integer",
                    ShapeKind::Long => "Long",
                    ShapeKind::Double => "Double",
                    ShapeKind::Boolean => "Boolean",
                    _ => "String",
                };
                return Err(bad(&format!("class [B can not be converted to an {name}")));
            }
        },
        Cbor::Integer(i) => {
            let i = i128::from(i);
            match shape_kind {
                Some(ShapeKind::Timestamp) => Number::from_f64(i as f64 / 1000.0).map_or(Value::Null, Value::Number),
                _ => match i64::try_from(i) {
                    Ok(i) => Value::from(i),
                    Err(_) => Number::from_f64(i as f64).map_or(Value::Null, Value::Number),
                },
            }
        }
        Cbor::Float(f) => {
            let f = if matches!(shape_kind, Some(ShapeKind::Timestamp)) { f / 1000.0 } else { f };
            Number::from_f64(f).map(Value::Number).ok_or_else(|| bad("Expected a finite number"))?
        }
        Cbor::Array(items) => {
            let member = item_shape(shape_kind);
            Value::Array(items.into_iter().map(|v| cbor_to_json(model, member, v)).collect::<Result<_, _>>()?)
        }
        Cbor::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let Cbor::Text(k) = k else { return Err(bad("Map keys must be text")) };
                let member = member_shape(shape_kind, &k);
                out.insert(k, cbor_to_json(model, member, v)?);
            }
            Value::Object(out)
        }
        _ => return Err(bad("Unsupported CBOR value")),
    })
}

/// An action's JSON answer as CBOR: blob members as byte strings, timestamps as tag 1 with
/// epoch milliseconds, integers as CBOR integers.
fn json_to_cbor(model: &Model, shape: Option<ShapeId>, value: Value) -> Cbor {
    let shape_kind = kind(model, shape);
    match value {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(b),
        Value::String(s) => match shape_kind {
            Some(ShapeKind::Blob) => match base64::engine::general_purpose::STANDARD.decode(&s) {
                Ok(bytes) => Cbor::Bytes(bytes),
                Err(_) => Cbor::Text(s),
            },
            _ => Cbor::Text(s),
        },
        Value::Number(n) => match shape_kind {
            Some(ShapeKind::Timestamp) => {
                let ms = (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
                Cbor::Tag(1, Box::new(Cbor::Integer(Integer::from(ms))))
            }
            _ => match n.as_i64() {
                Some(i) => Cbor::Integer(Integer::from(i)),
                None => match n.as_u64() {
                    Some(u) => Cbor::Integer(Integer::from(u)),
                    None => Cbor::Float(n.as_f64().unwrap_or(0.0)),
                },
            },
        },
        Value::Array(items) => {
            let member = item_shape(shape_kind);
            Cbor::Array(items.into_iter().map(|v| json_to_cbor(model, member, v)).collect())
        }
        Value::Object(fields) => Cbor::Map(
            fields
                .into_iter()
                .map(|(k, v)| {
                    let v = json_to_cbor(model, member_shape(shape_kind, &k), v);
                    (Cbor::Text(k), v)
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::model;

    #[test]
    fn cbor_blobs_and_millisecond_timestamps_map_to_the_json_forms() {
        let m = model::kinesis();
        let op = m.operation("GetShardIterator").unwrap();
        let body = Cbor::Map(vec![
            (Cbor::Text("StreamName".into()), Cbor::Text("s".into())),
            (
                Cbor::Text("Timestamp".into()),
                Cbor::Tag(1, Box::new(Cbor::Integer(Integer::from(1_700_000_000_123i64)))),
            ),
        ]);
        let mut bytes = Vec::new();
        ciborium::ser::into_writer(&body, &mut bytes).unwrap();
        let v = Codec::Cbor.decode(m, op.input, &bytes).unwrap();
        assert_eq!(v, json!({"StreamName": "s", "Timestamp": 1_700_000_000.123}));

        let op = m.operation("GetRecords").unwrap();
        let answer = json!({"Records": [{"Data": "aGk=", "PartitionKey": "k", "SequenceNumber": "1",
            "ApproximateArrivalTimestamp": 1_700_000_000.5}], "MillisBehindLatest": 0});
        let out = Codec::Cbor.encode(m, op.output, serde_json::to_vec(&answer).unwrap()).unwrap();
        let back: Cbor = ciborium::de::from_reader(out.as_slice()).unwrap();
        let field_of = |map: &Cbor, name: &str| {
            map.as_map().unwrap().iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v.clone()).unwrap()
        };
        let record = field_of(&back, "Records").as_array().unwrap()[0].clone();
        let field = |name: &str| field_of(&record, name);
        assert_eq!(field("Data"), Cbor::Bytes(b"hi".to_vec()));
        assert_eq!(
            field("ApproximateArrivalTimestamp"),
            Cbor::Tag(1, Box::new(Cbor::Integer(Integer::from(1_700_000_000_500i64))))
        );
    }

    /// Hostile CBOR: lengths far past the body, deep nesting, text keys that are not UTF-8.
    /// Each is a SerializationException, never a panic or an allocation of the declared size.
    #[test]
    fn hostile_cbor_is_refused_without_panicking() {
        let m = model::kinesis();
        let op = m.operation("PutRecord").unwrap();
        let mut bodies: Vec<Vec<u8>> = vec![
            vec![0xa1, 0x64, b'D', b'a', b't', b'a', 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0xa1, 0x64, b'D', b'a', b't', b'a', 0x7b, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00],
            vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0xa1, 0x62, 0xff, 0xfe, 0x01],
        ];
        bodies.push(std::iter::repeat_n(0x81u8, 100_000).collect());
        for body in bodies {
            let e = Codec::Cbor.decode(m, op.input, &body).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Serialization, "{body:x?}");
        }
    }
}
