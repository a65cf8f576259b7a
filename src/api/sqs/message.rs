//! One SQS message: how it is kept in its queue's log (an [`Envelope`], one record each), the
//! checks a send makes, and the MD5 digests SQS answers with.

use std::collections::BTreeMap;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde::{Deserialize, Serialize};

use super::error::SqsError;

/// Most message attributes a message carries: 10. Source: Amazon SQS Developer Guide,
/// "Amazon SQS message attributes".
pub const MESSAGE_ATTRIBUTES_MAX: usize = 10;

/// Longest message attribute name, characters: 256. Source: as above.
pub const ATTRIBUTE_NAME_CHARS_MAX: usize = 256;

/// A message attribute's value as the JSON protocol carries it: `BinaryValue` is base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeValue {
    /// `String`, `Number` or `Binary`, with an optional `.custom` suffix.
    pub data_type: String,
    /// The value of a `String` or `Number` attribute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_value: Option<String>,
    /// The value of a `Binary` attribute, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_value: Option<String>,
}

/// A message as its record holds it (JSON, short member names: one per message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// `MessageId`, a UUID.
    #[serde(rename = "i")]
    pub id: String,
    /// The body.
    #[serde(rename = "b")]
    pub body: String,
    /// Message attributes, by name.
    #[serde(rename = "a", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, AttributeValue>,
    /// Message system attributes given on send (`AWSTraceHeader`), by name.
    #[serde(rename = "s", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub system: BTreeMap<String, AttributeValue>,
    /// When it was first sent, ms since the Unix epoch (kept when it moves to another queue:
    /// retention counts from it, as on AWS).
    #[serde(rename = "t")]
    pub sent_ms: u64,
    /// Invisible until `sent_ms` plus this, seconds.
    #[serde(rename = "d", default)]
    pub delay_s: u32,
    /// `SenderId`.
    #[serde(rename = "w", default)]
    pub sender: String,
    /// FIFO: `MessageGroupId`.
    #[serde(rename = "g", default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// FIFO: `MessageDeduplicationId`.
    #[serde(rename = "u", default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<String>,
    /// The ARN of the queue it was dead-lettered from (`DeadLetterQueueSourceArn`).
    #[serde(rename = "q", default, skip_serializing_if = "Option::is_none")]
    pub source_arn: Option<String>,
}

impl Envelope {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope serializes")
    }

    /// Reads a record's bytes; `None` if they are not an envelope.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// The message's size as SQS counts it against `MaximumMessageSize`: the body's bytes,
    /// and each attribute's name, data type and value bytes. Source: Amazon SQS Developer
    /// Guide, "Amazon SQS message attributes".
    pub fn size(&self) -> usize {
        message_size(&self.body, &self.attributes)
    }
}

/// A message's size as SQS counts it against `MaximumMessageSize` (and SNS against its
/// 256 KiB): the body's bytes, and each attribute's name, data type and value bytes (binary
/// values decoded). Source: Amazon SQS Developer Guide, "Amazon SQS message attributes".
pub fn message_size(body: &str, attributes: &BTreeMap<String, AttributeValue>) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(name, v)| {
                name.len()
                    + v.data_type.len()
                    + v.string_value.as_ref().map_or(0, String::len)
                    + v.binary_value.as_deref().map_or(0, binary_len)
            })
            .sum::<usize>()
}

/// The decoded length of base64 text `b64` (padding not counted).
pub fn binary_len(b64: &str) -> usize {
    let padding = b64.bytes().rev().take_while(|b| *b == b'=').count().min(2);
    (b64.len() / 4 * 3).saturating_sub(padding)
}

/// A new message id: a random UUID (version 4), as SQS gives.
pub fn new_message_id() -> String {
    let hi = sluice_engine::stream::random_u64();
    let lo = sluice_engine::stream::random_u64();
    let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x4000;
    let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// Hex MD5 of `bytes` (`MD5OfMessageBody`).
pub fn md5_hex(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MD5 SQS gives of message attributes (`MD5OfMessageAttributes`): over the attributes
/// sorted by name, each as its name, its data type (each as a 4-byte big-endian length and
/// the UTF-8 bytes), a transport byte (1: string, 2: binary) and its value (length and
/// bytes). `None` for no attributes. Source: Amazon SQS Developer Guide, "Calculating the MD5
/// message digest for message attributes".
pub fn md5_of_attributes(attributes: &BTreeMap<String, AttributeValue>) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut bytes = Vec::new();
    let put = |bytes: &mut Vec<u8>, b: &[u8]| {
        bytes.extend_from_slice(&(b.len() as u32).to_be_bytes());
        bytes.extend_from_slice(b);
    };
    for (name, v) in attributes {
        put(&mut bytes, name.as_bytes());
        put(&mut bytes, v.data_type.as_bytes());
        match &v.binary_value {
            Some(b) => {
                bytes.push(2);
                put(&mut bytes, &base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default());
            }
            None => {
                bytes.push(1);
                put(&mut bytes, v.string_value.as_deref().unwrap_or("").as_bytes());
            }
        }
    }
    Some(md5_hex(&bytes))
}

/// Checks a message body: 1 or more characters, each one XML allows (`#x9`, `#xA`, `#xD`,
/// `#x20`–`#xD7FF`, `#xE000`–`#xFFFD`, `#x10000`–`#x10FFFF`). Source: Amazon SQS API
/// Reference, SendMessage.
pub fn check_body(body: &str) -> Result<(), SqsError> {
    if body.is_empty() {
        return Err(SqsError::new("MissingParameter", "The request must contain the parameter MessageBody."));
    }
    if let Some(c) = body.chars().find(|c| !allowed_char(*c)) {
        return Err(SqsError::new(
            "InvalidMessageContents",
            format!(
                "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF (found #x{:X})",
                c as u32
            ),
        ));
    }
    Ok(())
}

fn allowed_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Checks message attributes (of `member`, `MessageAttributes` or `MessageSystemAttributes`):
/// at most 10, names of allowed characters not starting with `AWS.` or `Amazon.`, data
/// types `String`, `Number` or `Binary` (with an optional custom part), and the value the type
/// needs. Source: Amazon SQS Developer Guide, "Amazon SQS message attributes".
pub fn check_attributes(attributes: &BTreeMap<String, AttributeValue>, system: bool) -> Result<(), SqsError> {
    if attributes.len() > MESSAGE_ATTRIBUTES_MAX {
        return Err(SqsError::invalid(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MESSAGE_ATTRIBUTES_MAX}].",
            attributes.len()
        )));
    }
    for (name, v) in attributes {
        if system {
            if name != "AWSTraceHeader" || v.data_type != "String" {
                return Err(SqsError::invalid(format!(
                    "Message system attribute name '{name}' is invalid, or its type is not String."
                )));
            }
        } else if !attribute_name_ok(name) {
            return Err(SqsError::invalid(format!("Message (user) attribute '{name}' is invalid.")));
        }
        let base = v.data_type.split('.').next().unwrap_or("");
        if !matches!(base, "String" | "Number" | "Binary") || v.data_type.len() > 256 {
            return Err(SqsError::invalid(format!(
                "The type of message (user) attribute '{name}' is invalid. You must use only the following supported type prefixes: Binary, Number, String."
            )));
        }
        let ok = match base {
            "Binary" => v
                .binary_value
                .as_deref()
                .is_some_and(|b| base64::engine::general_purpose::STANDARD.decode(b).is_ok_and(|raw| !raw.is_empty())),
            "Number" => v.string_value.as_deref().is_some_and(is_number),
            _ => v.string_value.as_deref().is_some_and(|s| !s.is_empty() && s.chars().all(allowed_char)),
        };
        if !ok {
            return Err(SqsError::invalid(format!(
                "Message (user) attribute '{name}' must contain a non-empty value of type '{base}'."
            )));
        }
    }
    Ok(())
}

fn attribute_name_ok(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.chars().count() <= ATTRIBUTE_NAME_CHARS_MAX
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
}

/// A `Number` attribute's value: a decimal number of up to 38 significant digits, in
/// -10^128 to 10^126.
fn is_number(s: &str) -> bool {
    let t = s.trim();
    let digits = t.chars().filter(char::is_ascii_digit).count();
    !t.is_empty() && digits > 0 && digits <= 38 && t.parse::<f64>().is_ok_and(f64::is_finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_digest_is_aws_documented_layout() {
        // Layout computed by hand: name, type, transport byte 1, value.
        let mut a = BTreeMap::new();
        a.insert(
            "City".to_owned(),
            AttributeValue { data_type: "String".into(), string_value: Some("Any City".into()), binary_value: None },
        );
        let mut expected = Vec::new();
        for part in [&b"City"[..], b"String"] {
            expected.extend_from_slice(&(part.len() as u32).to_be_bytes());
            expected.extend_from_slice(part);
        }
        expected.push(1);
        expected.extend_from_slice(&8u32.to_be_bytes());
        expected.extend_from_slice(b"Any City");
        assert_eq!(md5_of_attributes(&a).unwrap(), md5_hex(&expected));
        assert_eq!(md5_of_attributes(&BTreeMap::new()), None);
        // Digests AWS answered (recorded through botocore in LocalStack's AWS-validated
        // snapshots of test_sqs).
        for (name, value, digest) in [
            ("MyAttribute", "foobar", "adb59cd4678ea5a855436b949cd07ab6"),
            ("Foo", "Bar", "ae7155c6026991b6d54b11589678bf9c"),
        ] {
            let one = BTreeMap::from([(
                name.to_owned(),
                AttributeValue { data_type: "String".into(), string_value: Some(value.into()), binary_value: None },
            )]);
            assert_eq!(md5_of_attributes(&one).as_deref(), Some(digest), "{name}");
        }
    }

    #[test]
    fn message_ids_are_version_4_uuids() {
        let id = new_message_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        assert_ne!(id, new_message_id());
    }

    #[test]
    fn bodies_and_attributes_are_checked() {
        assert!(check_body("hello\tworld").is_ok());
        assert_eq!(check_body("a\u{1}b").unwrap_err().query_code, "InvalidMessageContents");
        let bad = BTreeMap::from([(
            "AWS.x".to_owned(),
            AttributeValue { data_type: "String".into(), string_value: Some("v".into()), binary_value: None },
        )]);
        assert!(check_attributes(&bad, false).is_err());
        let number = BTreeMap::from([(
            "n".to_owned(),
            AttributeValue { data_type: "Number.int".into(), string_value: Some("12".into()), binary_value: None },
        )]);
        assert!(check_attributes(&number, false).is_ok());
    }
}
