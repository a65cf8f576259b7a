//! S3 prefixes with Firehose's expressions: `!{timestamp:<pattern>}`,
//! `!{firehose:random-string}`, `!{firehose:error-output-type}`,
//! `!{partitionKeyFromQuery:<key>}` and `!{partitionKeyFromLambda:<key>}`.
//!
//! Rules, from the AWS Firehose developer guide ("Custom prefixes for Amazon S3 objects",
//! "Dynamic partitioning"), checked when a delivery stream is created or updated:
//! - a prefix without a `timestamp` expression gets `!{timestamp:yyyy/MM/dd/HH/}` appended;
//! - `!{firehose:error-output-type}` belongs in the error output prefix only, partition key
//!   expressions in the prefix only;
//! - a prefix with expressions needs an error output prefix;
//! - partition key expressions need dynamic partitioning enabled, and dynamic partitioning
//!   needs at least one of them in the prefix;
//! - a prefix is at most 1,024 characters.

use std::collections::BTreeMap;

use crate::timestamp_pattern::TimestampPattern;

/// Longest prefix or error output prefix, characters: 1,024. Source: botocore
/// `firehose/2015-08-04` (`Prefix`, `ErrorOutputPrefix`).
pub const PREFIX_CHARS_MAX: usize = 1024;

/// The timestamp expression Firehose appends to a prefix that has none.
pub const DEFAULT_TIMESTAMP_PATTERN: &str = "yyyy/MM/dd/HH/";

/// One piece of a prefix template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Timestamp(TimestampPattern),
    RandomString,
    ErrorOutputType,
    PartitionKeyFromQuery(String),
    PartitionKeyFromLambda(String),
}

/// Which prefix a template is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixRole {
    /// `Prefix`: where delivered objects go.
    Output,
    /// `ErrorOutputPrefix`: where failed records go.
    ErrorOutput,
}

/// A parsed, validated prefix template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    parts: Vec<Part>,
    has_expressions: bool,
}

/// Why a prefix was refused; the message is what the client sees with
/// `InvalidArgumentException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PrefixError(pub String);

/// What an expression evaluates against for one object.
#[derive(Debug, Clone, Copy)]
pub struct PrefixValues<'a> {
    /// Arrival time of the oldest record in the object, ms since the Unix epoch.
    pub oldest_arrival_ms: u64,
    /// The value of `!{firehose:random-string}` (derived from the object's id, so it is the
    /// same when a delivery is retried).
    pub random_string: &'a str,
    /// `processing-failed` or `format-conversion-failed`, for error objects.
    pub error_output_type: Option<&'a str>,
    /// Partition keys from `MetadataExtraction` queries.
    pub query_keys: &'a BTreeMap<String, String>,
    /// Partition keys from the transform's metadata.
    pub lambda_keys: &'a BTreeMap<String, String>,
}

impl Prefix {
    /// Parses and checks `template` for `role`. `None` is Firehose's default (an empty
    /// prefix, to which the default timestamp expression is appended).
    pub fn parse(template: Option<&str>, role: PrefixRole) -> Result<Self, PrefixError> {
        let template = template.unwrap_or("");
        let what = match role {
            PrefixRole::Output => "Prefix",
            PrefixRole::ErrorOutput => "ErrorOutputPrefix",
        };
        if template.chars().count() > PREFIX_CHARS_MAX {
            return Err(PrefixError(format!("{what} must be at most {PREFIX_CHARS_MAX} characters.")));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        let mut has_expressions = false;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| PrefixError(format!("{what} has an expression that is not closed with '}}'.")))?;
            let expr = &after[..end];
            let (namespace, value) = expr.split_once(':').ok_or_else(|| {
                PrefixError(format!("{what} expression '!{{{expr}}}' must be of the form '!{{namespace:value}}'."))
            })?;
            let part = match (namespace, value) {
                ("timestamp", pattern) => Part::Timestamp(
                    TimestampPattern::parse(pattern).map_err(|e| PrefixError(format!("{what}: {e}.")))?,
                ),
                ("firehose", "random-string") => Part::RandomString,
                ("firehose", "error-output-type") => Part::ErrorOutputType,
                ("firehose", other) => {
                    return Err(PrefixError(format!(
                        "{what} expression '!{{firehose:{other}}}' is not supported; use random-string or error-output-type."
                    )))
                }
                ("partitionKeyFromQuery", key) if !key.is_empty() => Part::PartitionKeyFromQuery(key.to_owned()),
                ("partitionKeyFromLambda", key) if !key.is_empty() => Part::PartitionKeyFromLambda(key.to_owned()),
                _ => {
                    return Err(PrefixError(format!(
                        "Namespace to the left of colon ({namespace}) is an invalid keyword!"
                    )))
                }
            };
            match (&part, role) {
                (Part::ErrorOutputType, PrefixRole::Output) => {
                    return Err(PrefixError(
                        "Prefix must not contain any occurrence of !{firehose:error-output-type}".into(),
                    ))
                }
                (Part::PartitionKeyFromQuery(_) | Part::PartitionKeyFromLambda(_), PrefixRole::ErrorOutput) => {
                    return Err(PrefixError(
                        "Dynamic Partitioning Namespaces can't be part of an error prefix expression".into(),
                    ))
                }
                _ => {}
            }
            has_expressions = true;
            parts.push(part);
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Timestamp(_))) {
            let pattern = TimestampPattern::parse(DEFAULT_TIMESTAMP_PATTERN).expect("the default pattern parses");
            parts.push(Part::Timestamp(pattern));
        }
        Ok(Self { parts, has_expressions })
    }

    /// Whether the template as written had any `!{...}` expression.
    pub fn has_expressions(&self) -> bool {
        self.has_expressions
    }

    /// Keys of `!{partitionKeyFromQuery:k}` expressions.
    pub fn query_keys(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::PartitionKeyFromQuery(k) => Some(k.as_str()),
            _ => None,
        })
    }

    /// Keys of `!{partitionKeyFromLambda:k}` expressions.
    pub fn lambda_keys(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::PartitionKeyFromLambda(k) => Some(k.as_str()),
            _ => None,
        })
    }

    /// Whether the template has an `!{firehose:error-output-type}` expression.
    pub fn has_error_output_type(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::ErrorOutputType))
    }

    /// The prefix for one object. Errors name a partition key the object's records lack.
    pub fn evaluate(&self, v: &PrefixValues<'_>) -> Result<String, String> {
        let mut out = String::with_capacity(64);
        for p in &self.parts {
            match p {
                Part::Literal(s) => out.push_str(s),
                Part::Timestamp(t) => out.push_str(&t.format(v.oldest_arrival_ms)),
                Part::RandomString => out.push_str(v.random_string),
                Part::ErrorOutputType => out.push_str(v.error_output_type.unwrap_or("processing-failed")),
                Part::PartitionKeyFromQuery(k) => out.push_str(
                    v.query_keys
                        .get(k)
                        .ok_or_else(|| format!("partition key '{k}' was not found in the query result"))?,
                ),
                Part::PartitionKeyFromLambda(k) => out.push_str(
                    v.lambda_keys
                        .get(k)
                        .ok_or_else(|| format!("partition key '{k}' was not found in the transform's metadata"))?,
                ),
            }
        }
        Ok(out)
    }
}

/// Checks the rules that join the two prefixes and dynamic partitioning.
pub fn check_pair(
    prefix: &Prefix,
    error_prefix: Option<&Prefix>,
    dynamic_partitioning: bool,
) -> Result<(), PrefixError> {
    if prefix.has_expressions() && error_prefix.is_none() {
        return Err(PrefixError("ErrorOutputPrefix cannot be null or empty when Prefix contains expressions".into()));
    }
    let partitioned = prefix.query_keys().next().is_some() || prefix.lambda_keys().next().is_some();
    if partitioned && !dynamic_partitioning {
        return Err(PrefixError(
            "Dynamic Partitioning Namespaces can only be part of a prefix expression when Dynamic Partitioning is enabled.".into(),
        ));
    }
    if dynamic_partitioning && !partitioned {
        return Err(PrefixError(
            "S3 Prefix should contain Dynamic Partitioning namespaces when Dynamic Partitioning is enabled".into(),
        ));
    }
    Ok(())
}

/// The part of a prefix before its first expression (`!{...}`), up to its last `/`: the
/// folder where listing its objects starts (the console's lake views, a redrive's error
/// objects, a replay's own error folder).
pub fn static_part(prefix: &str) -> String {
    let fixed = prefix.split("!{").next().unwrap_or("");
    // Keys continue a prefix without a `/` in the same segment (`logs` → `logs2024/...`), and
    // listings go by whole segments: such a prefix has no fixed folder.
    fixed.rfind('/').map_or_else(String::new, |i| fixed[..=i].to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_static_part_of_a_prefix_ends_at_a_folder() {
        assert_eq!(static_part("telemetry/"), "telemetry/");
        assert_eq!(static_part("telemetry/!{timestamp:yyyy}/"), "telemetry/");
        assert_eq!(static_part("t/x!{partitionKeyFromQuery:k}/"), "t/");
        assert_eq!(static_part("!{firehose:error-output-type}/"), "");
        assert_eq!(static_part(""), "");
        assert_eq!(static_part("logs"), "");
        assert_eq!(static_part("a/logs"), "a/");
    }

    use super::*;

    fn values<'a>(q: &'a BTreeMap<String, String>, l: &'a BTreeMap<String, String>) -> PrefixValues<'a> {
        PrefixValues {
            oldest_arrival_ms: 1_442_018_818_771,
            random_string: "abcdefghijk",
            error_output_type: Some("format-conversion-failed"),
            query_keys: q,
            lambda_keys: l,
        }
    }

    #[test]
    fn default_prefix_is_the_hourly_timestamp() {
        let p = Prefix::parse(None, PrefixRole::Output).unwrap();
        let e = BTreeMap::new();
        assert_eq!(p.evaluate(&values(&e, &e)).unwrap(), "2015/09/12/00/");
        let p = Prefix::parse(Some("raw/"), PrefixRole::Output).unwrap();
        assert_eq!(p.evaluate(&values(&e, &e)).unwrap(), "raw/2015/09/12/00/");
        assert!(!p.has_expressions());
    }

    #[test]
    fn evaluates_every_namespace() {
        let q = BTreeMap::from([("station".to_owned(), "Dongsi".to_owned())]);
        let l = BTreeMap::from([("channel".to_owned(), "#en.wikipedia".to_owned())]);
        let p = Prefix::parse(
            Some("d/!{partitionKeyFromQuery:station}/!{partitionKeyFromLambda:channel}/!{timestamp:yyyy}/!{firehose:random-string}/"),
            PrefixRole::Output,
        )
        .unwrap();
        assert_eq!(p.evaluate(&values(&q, &l)).unwrap(), "d/Dongsi/#en.wikipedia/2015/abcdefghijk/");
        let e = Prefix::parse(Some("err/!{firehose:error-output-type}/"), PrefixRole::ErrorOutput).unwrap();
        assert_eq!(e.evaluate(&values(&q, &l)).unwrap(), "err/format-conversion-failed/2015/09/12/00/");
    }

    #[test]
    fn refuses_what_aws_refuses() {
        let out = |s: &str| Prefix::parse(Some(s), PrefixRole::Output);
        assert!(out("a/!{firehose:error-output-type}/").is_err());
        assert!(out("a/!{unknown:x}/").is_err());
        assert!(out("a/!{timestamp:yyyy").is_err());
        assert!(out("a/!{timestamp:QQ}").is_err());
        assert!(Prefix::parse(Some("e/!{partitionKeyFromQuery:k}/"), PrefixRole::ErrorOutput).is_err());
        assert!(out(&"x".repeat(1025)).is_err());
        let with_expr = out("a/!{timestamp:yyyy}/").unwrap();
        assert!(check_pair(&with_expr, None, false).is_err());
        let partitioned = out("a/!{partitionKeyFromQuery:k}/").unwrap();
        let err = Prefix::parse(Some("e/"), PrefixRole::ErrorOutput).unwrap();
        assert!(check_pair(&partitioned, Some(&err), false).is_err());
        assert!(check_pair(&partitioned, Some(&err), true).is_ok());
        assert!(check_pair(&out("plain/").unwrap(), None, true).is_err());
    }
}
