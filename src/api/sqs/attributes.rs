//! Queue attributes: which a client may set, their ranges and defaults, and how they read
//! back. Stored as the strings `SetQueueAttributes` took, once checked. Source: Amazon SQS
//! API Reference, SetQueueAttributes and CreateQueue.

use std::collections::BTreeMap;

use super::error::SqsError;

/// Default `VisibilityTimeout`, seconds: 30.
pub const VISIBILITY_TIMEOUT_S_DEFAULT: u32 = 30;
/// Default `MessageRetentionPeriod`, seconds: 345,600 (4 days).
pub const RETENTION_S_DEFAULT: u32 = 345_600;
/// Default and largest `MaximumMessageSize`, bytes: 1,048,576 (1 MiB, AWS's since August 2025).
pub const MESSAGE_BYTES_MAX: u32 = 1_048_576;
/// Longest long poll (`WaitTimeSeconds`, `ReceiveMessageWaitTimeSeconds`), seconds: 20.
pub const WAIT_S_MAX: u32 = 20;
/// Longest visibility timeout, seconds: 43,200 (12 hours).
pub const VISIBILITY_TIMEOUT_S_MAX: u32 = 43_200;

/// The numeric attributes a client sets: name, least, greatest, default.
const RANGES: &[(&str, u64, u64, u64)] = &[
    ("DelaySeconds", 0, 900, 0),
    ("MaximumMessageSize", 1_024, MESSAGE_BYTES_MAX as u64, MESSAGE_BYTES_MAX as u64),
    ("MessageRetentionPeriod", 60, 1_209_600, RETENTION_S_DEFAULT as u64),
    ("ReceiveMessageWaitTimeSeconds", 0, WAIT_S_MAX as u64, 0),
    ("VisibilityTimeout", 0, VISIBILITY_TIMEOUT_S_MAX as u64, VISIBILITY_TIMEOUT_S_DEFAULT as u64),
    ("KmsDataKeyReusePeriodSeconds", 60, 86_400, 300),
];

/// Attributes only a FIFO queue takes.
const FIFO_ONLY: &[&str] = &["ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"];

/// Other attributes a client sets.
const OTHERS: &[&str] = &["Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId", "SqsManagedSseEnabled"];

/// Read-only attributes (`GetQueueAttributes` answers them; setting one is refused).
pub const READ_ONLY: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

/// A queue's redrive policy: dead letters go to `target_arn` after `max_receives` receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// `deadLetterTargetArn`.
    pub target_arn: String,
    /// `maxReceiveCount`, 1 to 1,000.
    pub max_receives: u32,
}

/// Checks `given` (for a queue that is FIFO or not) and returns them as they are stored:
/// numbers in canonical form, booleans lower case. `InvalidAttributeName` for a name SQS
/// does not know or that does not apply, `InvalidAttributeValue` for a value out of range.
pub fn check(given: &BTreeMap<String, String>, fifo: bool) -> Result<BTreeMap<String, String>, SqsError> {
    let mut out = BTreeMap::new();
    for (name, value) in given {
        let invalid_value =
            || SqsError::new("InvalidAttributeValue", format!("Invalid value for the parameter {name}."));
        if let Some(&(_, lo, hi, _)) = RANGES.iter().find(|(n, ..)| n == name) {
            let n: u64 = value.trim().parse().map_err(|_| invalid_value())?;
            if !(lo..=hi).contains(&n) {
                return Err(invalid_value());
            }
            out.insert(name.clone(), n.to_string());
        } else if name == "FifoQueue" {
            // A standard queue knows no FifoQueue attribute, not even "false".
            if !fifo {
                return Err(SqsError::new("InvalidAttributeName", format!("Unknown Attribute {name}.")));
            }
            if !value.eq_ignore_ascii_case("true") {
                return Err(SqsError::new(
                    "InvalidAttributeValue",
                    "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not supported.",
                ));
            }
        } else if FIFO_ONLY.contains(&name.as_str()) {
            if !fifo {
                return Err(SqsError::new(
                    "InvalidAttributeName",
                    match name.as_str() {
                        "ContentBasedDeduplication" => format!("Unknown Attribute {name}."),
                        _ => format!("You can specify the {name} only when FifoQueue is set to true."),
                    },
                ));
            }
            let ok = match name.as_str() {
                "ContentBasedDeduplication" => matches!(value.to_ascii_lowercase().as_str(), "true" | "false"),
                "DeduplicationScope" => matches!(value.as_str(), "messageGroup" | "queue"),
                _ => matches!(value.as_str(), "perQueue" | "perMessageGroupId"),
            };
            if !ok {
                return Err(invalid_value());
            }
            let v = if name == "ContentBasedDeduplication" { value.to_ascii_lowercase() } else { value.clone() };
            out.insert(name.clone(), v);
        } else if OTHERS.contains(&name.as_str()) {
            match name.as_str() {
                "RedrivePolicy" if !value.is_empty() => {
                    redrive(value).map_err(|m| redrive_error(value, &m))?;
                }
                "Policy" | "RedriveAllowPolicy" if !value.is_empty() => {
                    serde_json::from_str::<serde_json::Value>(value).map_err(|_| invalid_value())?;
                }
                "SqsManagedSseEnabled" if !matches!(value.to_ascii_lowercase().as_str(), "true" | "false") => {
                    return Err(invalid_value());
                }
                _ => {}
            }
            let v = if name == "SqsManagedSseEnabled" { value.to_ascii_lowercase() } else { value.clone() };
            out.insert(name.clone(), v);
        } else {
            return Err(SqsError::new("InvalidAttributeName", format!("Unknown Attribute {name}.")));
        }
    }
    Ok(out)
}

/// Reads a redrive policy (`{"deadLetterTargetArn": ..., "maxReceiveCount": n}`, the count a
/// number or a string of one); the reason when it does not read.
pub fn redrive(text: &str) -> Result<Redrive, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| "Invalid JSON.".to_owned())?;
    let target_arn = v["deadLetterTargetArn"]
        .as_str()
        .ok_or_else(|| "Redrive policy does not contain mandatory attribute: deadLetterTargetArn.".to_owned())?
        .to_owned();
    let count = match &v["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        serde_json::Value::Null => {
            return Err("Redrive policy does not contain mandatory attribute: maxReceiveCount.".to_owned())
        }
        _ => None,
    };
    match count {
        Some(n @ 1..=1000) => Ok(Redrive { target_arn, max_receives: n as u32 }),
        _ => Err(format!(
            "Invalid value for maxReceiveCount: {}, valid values are from 1 to 1000 both inclusive.",
            v["maxReceiveCount"].to_string().trim_matches('"')
        )),
    }
}

/// The error of a redrive policy that does not stand, for `reason`.
pub fn redrive_error(policy: &str, reason: &str) -> SqsError {
    SqsError::invalid(format!("Value {policy} for parameter RedrivePolicy is invalid. Reason: {reason}"))
}

/// The value of a numeric attribute of `attributes`, or its default.
pub fn number(attributes: &BTreeMap<String, String>, name: &str) -> u64 {
    attributes
        .get(name)
        .and_then(|v| v.parse().ok())
        .or_else(|| RANGES.iter().find(|(n, ..)| *n == name).map(|r| r.3))
        .unwrap_or(0)
}

/// The settable attributes of a queue as `GetQueueAttributes` shows them: those set, and
/// the defaults of the others.
pub fn shown(attributes: &BTreeMap<String, String>, fifo: bool) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = RANGES
        .iter()
        .filter(|(n, ..)| *n != "KmsDataKeyReusePeriodSeconds")
        .map(|(n, .., d)| ((*n).to_owned(), d.to_string()))
        .collect();
    out.insert("SqsManagedSseEnabled".into(), "true".into());
    if fifo {
        out.insert("FifoQueue".into(), "true".into());
        out.insert("ContentBasedDeduplication".into(), "false".into());
        out.insert("DeduplicationScope".into(), "queue".into());
        out.insert("FifoThroughputLimit".into(), "perQueue".into());
    }
    for (k, v) in attributes {
        if v.is_empty() && matches!(k.as_str(), "Policy" | "RedrivePolicy" | "RedriveAllowPolicy" | "KmsMasterKeyId") {
            out.remove(k);
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    if out.contains_key("KmsMasterKeyId") {
        out.entry("KmsDataKeyReusePeriodSeconds".into()).or_insert_with(|| "300".into());
        out.insert("SqsManagedSseEnabled".into(), "false".into());
    }
    out
}

/// Whether `name` is an attribute `GetQueueAttributes` knows.
pub fn known(name: &str) -> bool {
    name == "All"
        || name == "FifoQueue"
        || RANGES.iter().any(|(n, ..)| *n == name)
        || FIFO_ONLY.contains(&name)
        || OTHERS.contains(&name)
        || READ_ONLY.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(name.to_owned(), value.to_owned())])
    }

    #[test]
    fn ranges_names_and_redrive_policies_are_checked() {
        assert_eq!(check(&one("VisibilityTimeout", "43200"), false).unwrap()["VisibilityTimeout"], "43200");
        let e = check(&one("VisibilityTimeout", "43201"), false).unwrap_err();
        assert_eq!(
            (e.query_code, e.message.as_str()),
            ("InvalidAttributeValue", "Invalid value for the parameter VisibilityTimeout.")
        );
        assert_eq!(check(&one("Colour", "red"), false).unwrap_err().query_code, "InvalidAttributeName");
        assert_eq!(
            check(&one("ContentBasedDeduplication", "true"), false).unwrap_err().query_code,
            "InvalidAttributeName"
        );
        assert!(check(&one("ContentBasedDeduplication", "true"), true).is_ok());
        let policy = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"3"}"#;
        assert_eq!(redrive(policy).unwrap().max_receives, 3);
        assert!(check(&one("RedrivePolicy", r#"{"deadLetterTargetArn":"x","maxReceiveCount":0}"#), false).is_err());
        assert_eq!(number(&BTreeMap::new(), "MessageRetentionPeriod"), 345_600);
    }
}
