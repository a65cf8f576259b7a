//! SQS's older wire protocol, the AWS query protocol, which SDKs from before 2024 send (the
//! Java SDK v1, older boto3 and Go v1): a form (`Action=SendMessage&MessageBody=...&
//! MessageAttribute.1.Name=...`) read into the JSON input the actions take, and their JSON
//! answer written back as XML. Both follow the query model's serialization traits
//! (`locationName`, `flattened`; `models/sqs-2012-11-05.query.json`) as botocore's query
//! serializer and parser do, so one implementation of the actions serves both protocols.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::SqsError;
use crate::api::query::{escape, Params};

/// The XML namespace of SQS's query answers.
pub const XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// The query model.
fn model() -> &'static Value {
    static MODEL: OnceLock<Value> = OnceLock::new();
    MODEL.get_or_init(|| {
        serde_json::from_str(include_str!("../models/sqs-2012-11-05.query.json")).expect("the embedded SQS query model")
    })
}

/// A shape as a member refers to it: the shape's definition with the member's own traits
/// (`locationName`, `flattened`) over it, as botocore resolves member shapes.
fn resolve(reference: &Value) -> Map<String, Value> {
    let name = reference["shape"].as_str().unwrap_or("");
    let mut shape = model()["shapes"][name].as_object().cloned().unwrap_or_default();
    if let Some(traits) = reference.as_object() {
        for (k, v) in traits {
            if k != "shape" {
                shape.insert(k.clone(), v.clone());
            }
        }
    }
    shape
}

fn location<'a>(shape: &'a Map<String, Value>, default: &'a str) -> &'a str {
    shape.get("locationName").and_then(Value::as_str).unwrap_or(default)
}

fn flattened(shape: &Map<String, Value>) -> bool {
    shape.get("flattened").and_then(Value::as_bool).unwrap_or(false)
}

/// Joins a prefix and a name with a dot.
fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Most members of one list or map a request may give: far above what any SQS input takes
/// (10 entries, 10 attributes), so a form of a million numbered names stops early.
const MEMBERS_MAX: usize = 1_000;

/// The JSON input of `operation` from its form parameters; `InvalidAction` for an operation
/// SQS does not have.
pub fn input(operation: &str, params: &Params) -> Result<Value, SqsError> {
    let op = &model()["operations"][operation];
    if op.is_null() {
        return Err(SqsError::new("InvalidAction", format!("The action {operation} is not valid for this endpoint.")));
    }
    let Some(shape) = op.get("input") else { return Ok(Value::Object(Map::new())) };
    Ok(decode(&resolve(shape), params, "").unwrap_or_else(|| Value::Object(Map::new())))
}

/// The value of `shape` under `prefix`, if the form gives one.
fn decode(shape: &Map<String, Value>, params: &Params, prefix: &str) -> Option<Value> {
    match shape.get("type").and_then(Value::as_str).unwrap_or("string") {
        "structure" => {
            let mut out = Map::new();
            for (name, reference) in shape.get("members").and_then(Value::as_object).into_iter().flatten() {
                let member = resolve(reference);
                let key = join(prefix, location(&member, name));
                if let Some(v) = decode(&member, params, &key) {
                    out.insert(name.clone(), v);
                }
            }
            (!out.is_empty() || prefix.is_empty()).then_some(Value::Object(out))
        }
        "list" => {
            let member = resolve(&shape["member"]);
            let list_prefix = if flattened(shape) {
                // A flattened list's items carry the member's name in place of the list's.
                match member.get("locationName").and_then(Value::as_str) {
                    Some(name) => match prefix.rsplit_once('.') {
                        Some((head, _)) => format!("{head}.{name}"),
                        None => name.to_owned(),
                    },
                    None => prefix.to_owned(),
                }
            } else {
                join(prefix, location(&member, "member"))
            };
            let items: Vec<Value> =
                (1..=MEMBERS_MAX).map_while(|i| decode(&member, params, &format!("{list_prefix}.{i}"))).collect();
            if items.is_empty() {
                // `Name=` with no items is an empty list.
                return params.get(prefix).filter(|v| v.is_empty()).map(|_| Value::Array(Vec::new()));
            }
            Some(Value::Array(items))
        }
        "map" => {
            let full = if flattened(shape) { prefix.to_owned() } else { join(prefix, "entry") };
            let key_shape = resolve(&shape["key"]);
            let value_shape = resolve(&shape["value"]);
            let (k, v) = (location(&key_shape, "key").to_owned(), location(&value_shape, "value").to_owned());
            let mut out = Map::new();
            for i in 1..=MEMBERS_MAX {
                let entry = format!("{full}.{i}");
                let Some(key) = params.get(&format!("{entry}.{k}")) else { break };
                let value = decode(&value_shape, params, &format!("{entry}.{v}")).unwrap_or(Value::Null);
                out.insert(key.to_owned(), value);
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        kind => {
            let text = params.get(prefix)?;
            Some(match kind {
                // A number that does not read stays text: the action's parse refuses it.
                "integer" | "long" => text.parse::<i64>().map_or_else(|_| Value::String(text.to_owned()), Value::from),
                "boolean" => match text {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::String(text.to_owned()),
                },
                _ => Value::String(text.to_owned()),
            })
        }
    }
}

/// The XML answer of `operation` from its JSON answer.
pub fn output(operation: &str, answer: &Value, request_id: &str) -> String {
    let op = &model()["operations"][operation];
    let result = op.get("output").map(|o| {
        let shape = resolve(o);
        let mut xml = String::new();
        encode_members(&shape, answer, &mut xml);
        xml
    });
    crate::api::query::response(XMLNS, operation, result.as_deref(), request_id)
}

/// A structure's members present in `value`, in the model's order.
fn encode_members(shape: &Map<String, Value>, value: &Value, out: &mut String) {
    for (name, reference) in shape.get("members").and_then(Value::as_object).into_iter().flatten() {
        if let Some(v) = value.get(name).filter(|v| !v.is_null()) {
            let member = resolve(reference);
            let element = location(&member, name).to_owned();
            encode(&member, &element, v, out);
        }
    }
}

/// `value` of `shape` as element `name` (or, for a flattened list or map, as its repeated
/// elements).
fn encode(shape: &Map<String, Value>, name: &str, value: &Value, out: &mut String) {
    match shape.get("type").and_then(Value::as_str).unwrap_or("string") {
        "structure" => {
            out.push_str(&format!("<{name}>"));
            encode_members(shape, value, out);
            out.push_str(&format!("</{name}>"));
        }
        "list" => {
            let member = resolve(&shape["member"]);
            let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
            if flattened(shape) {
                let item_name = location(&member, name).to_owned();
                for item in items {
                    encode(&member, &item_name, item, out);
                }
            } else {
                out.push_str(&format!("<{name}>"));
                let item_name = location(&member, "member").to_owned();
                for item in items {
                    encode(&member, &item_name, item, out);
                }
                out.push_str(&format!("</{name}>"));
            }
        }
        "map" => {
            let key_shape = resolve(&shape["key"]);
            let value_shape = resolve(&shape["value"]);
            let (k, v) = (location(&key_shape, "key").to_owned(), location(&value_shape, "value").to_owned());
            let entries = value.as_object().into_iter().flatten();
            if !flattened(shape) {
                out.push_str(&format!("<{name}>"));
            }
            for (key, item) in entries {
                let entry = if flattened(shape) { name } else { "entry" };
                out.push_str(&format!("<{entry}><{k}>{}</{k}>", escape(key)));
                encode(&value_shape, &v, item, out);
                out.push_str(&format!("</{entry}>"));
            }
            if !flattened(shape) {
                out.push_str(&format!("</{name}>"));
            }
        }
        _ => {
            let text = match value {
                Value::String(s) => escape(s),
                Value::Bool(b) => b.to_string(),
                other => other.to_string(),
            };
            out.push_str(&format!("<{name}>{text}</{name}>"));
        }
    }
}

/// An error as the query protocol carries it: `<ErrorResponse><Error><Type>`, the query code,
/// the message.
pub fn error(e: &SqsError, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message><Detail/></Error><RequestId>{}</RequestId></ErrorResponse>",
        if e.sender { "Sender" } else { "Receiver" },
        escape(e.query_code),
        escape(&e.message),
        escape(request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_read_and_answers_write_as_botocore_serializes_and_parses_them() {
        let form = Params::parse(
            "Action=SendMessageBatch&QueueUrl=http%3A%2F%2Fh%2F1%2Fq&SendMessageBatchRequestEntry.1.Id=a&\
             SendMessageBatchRequestEntry.1.MessageBody=one&SendMessageBatchRequestEntry.1.DelaySeconds=5&\
             SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=city&\
             SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String&\
             SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=Beijing&\
             SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=two",
        );
        let json = input("SendMessageBatch", &form).unwrap();
        assert_eq!(json["QueueUrl"], "http://h/1/q");
        assert_eq!(json["Entries"][0]["DelaySeconds"], 5);
        assert_eq!(json["Entries"][0]["MessageAttributes"]["city"]["StringValue"], "Beijing");
        assert_eq!(json["Entries"][1]["MessageBody"], "two");
        let attrs = input(
            "CreateQueue",
            &Params::parse("QueueName=q&Attribute.1.Name=DelaySeconds&Attribute.1.Value=3&Tag.1.Key=k&Tag.1.Value=v"),
        )
        .unwrap();
        assert_eq!((attrs["Attributes"]["DelaySeconds"].as_str(), attrs["tags"]["k"].as_str()), (Some("3"), Some("v")));
        let names =
            input("ReceiveMessage", &Params::parse("QueueUrl=u&AttributeName.1=All&MessageAttributeName.1=x")).unwrap();
        assert_eq!(names["AttributeNames"][0], "All");
        assert_eq!(names["MessageAttributeNames"][0], "x");
        assert!(input("Nope", &form).is_err());

        let answer =
            serde_json::json!({ "Messages": [{ "MessageId": "m", "Body": "<b>", "Attributes": { "SenderId": "s" } }] });
        let xml = output("ReceiveMessage", &answer, "r");
        assert!(xml.starts_with("<ReceiveMessageResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><ReceiveMessageResult><Message>"), "{xml}");
        assert!(
            xml.contains("<Body>&lt;b&gt;</Body>")
                && xml.contains("<Attribute><Name>SenderId</Name><Value>s</Value></Attribute>"),
            "{xml}"
        );
        let urls = output("ListQueues", &serde_json::json!({ "QueueUrls": ["a", "b"] }), "r");
        assert!(
            urls.contains("<ListQueuesResult><QueueUrl>a</QueueUrl><QueueUrl>b</QueueUrl></ListQueuesResult>"),
            "{urls}"
        );
    }
}
