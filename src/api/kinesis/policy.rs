//! Enforcing resource policies (`PutResourcePolicy`) for the callers Sluice knows.
//!
//! Sluice has no IAM: every caller is a user of the one account, named by its access key
//! (`arn:aws:iam::<account>:user/<access key id>`, as `GetCallerIdentity` answers). Within one
//! account, IAM allows what identity policies allow unless a resource policy denies it
//! explicitly, so the part of a resource policy that can change an answer here is its
//! `Deny` statements. A request is refused with AWS's `AccessDeniedException` when a `Deny`
//! statement of the policy of the stream or consumer it acts on matches the caller
//! (`Principal` `*`, the account, its root, or the caller's ARN), the action
//! (`kinesis:PutRecord`, `kinesis:Put*`, `kinesis:*`, `*`) and the resource (ARN patterns
//! with `*` and `?`). Statements with a `Condition`, a `NotPrincipal`, a `NotAction` or a
//! `NotResource` are not evaluated (Sluice has none of the context they test), and say so
//! in the README. Unsigned servers (`auth = "none"`) have no caller, and enforce nothing.

use serde_json::Value;

use super::consumers::ConsumerTarget;
use super::{ApiError, ErrorKind, Kinesis, StreamTarget};
use sluice_engine::iterator::IteratorState;

impl Kinesis {
    /// Refuses `action` (`PutRecord`) on `request` for `caller` (an IAM ARN) when the policy
    /// of the stream or consumer it names denies it.
    pub fn check_policy(&self, action: &str, request: &Value, caller: &str) -> Result<(), ApiError> {
        let Some((arn, policy)) = self.resource_of(request) else { return Ok(()) };
        let Some(policy) = policy else { return Ok(()) };
        let Ok(doc) = serde_json::from_str::<Value>(&policy) else { return Ok(()) };
        let statements = match doc.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(s @ Value::Object(_)) => vec![s.clone()],
            _ => return Ok(()),
        };
        let wanted = format!("kinesis:{action}");
        let denied = statements.iter().any(|s| {
            s.get("Effect").and_then(Value::as_str) == Some("Deny")
                && ["Condition", "NotPrincipal", "NotAction", "NotResource"].iter().all(|k| s.get(k).is_none())
                && principal_matches(s.get("Principal"), caller, &self.config.account_id)
                && strings(s.get("Action")).iter().any(|p| glob(&p.to_ascii_lowercase(), &wanted.to_ascii_lowercase()))
                && strings(s.get("Resource")).iter().any(|p| glob(p, &arn))
        });
        if denied {
            return Err(ApiError::new(
                ErrorKind::AccessDenied,
                format!(
                    "User: {caller} is not authorized to perform: {wanted} on resource: {arn} with an explicit deny in a resource-based policy"
                ),
            ));
        }
        Ok(())
    }

    /// The ARN and policy of the resource a request acts on: a consumer (`ConsumerARN`), a
    /// resource by ARN, a stream (by name, ARN, or a shard iterator's stream); `None` when
    /// it names none or none exists (the action then answers as it would).
    fn resource_of(&self, request: &Value) -> Option<(String, Option<String>)> {
        let text = |k: &str| request.get(k).and_then(Value::as_str).map(str::to_owned);
        let arn = text("ConsumerARN").or_else(|| text("ResourceARN").filter(|a| a.contains("/consumer/")));
        if let Some(arn) = arn {
            let found = self.consumer(&ConsumerTarget::by_arn(&arn)).ok()?;
            return Some((arn, found.consumer.policy));
        }
        // A shard iterator names the stream GetRecords reads, whatever StreamARN the request
        // also carries: the policy checked is that stream's.
        let by_iterator = text("ShardIterator").and_then(|it| IteratorState::decode(&it, self.iterator_secret()));
        let target = match by_iterator {
            Some(state) => StreamTarget { stream_name: Some(state.stream), stream_arn: None },
            None => StreamTarget {
                stream_name: text("StreamName"),
                stream_arn: text("StreamARN").or_else(|| text("ResourceARN")),
            },
        };
        if target.stream_name.is_none() && target.stream_arn.is_none() {
            return None;
        }
        let stream = self.stream(&target).ok()?;
        let meta = stream.meta();
        Some((self.stream_arn(&meta.name), meta.settings.policy.clone()))
    }
}

/// A policy element that is a string or a list of strings, as its strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

/// Whether a statement's `Principal` names `caller` of account `account`.
fn principal_matches(principal: Option<&Value>, caller: &str, account: &str) -> bool {
    let names = match principal {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Object(m)) => strings(m.get("AWS")),
        _ => return false,
    };
    let root = format!("arn:aws:iam::{account}:root");
    names.iter().any(|n| n == "*" || n == account || *n == root || n == caller)
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters and `?` for
/// one (IAM's wildcards).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn iam_wildcards() {
        assert!(glob("kinesis:*", "kinesis:putrecord"));
        assert!(glob("kinesis:put*", "kinesis:putrecords"));
        assert!(!glob("kinesis:get*", "kinesis:putrecord"));
        assert!(glob("arn:aws:kinesis:*:*:stream/s?", "arn:aws:kinesis:us-east-1:0:stream/s1"));
        assert!(!glob("arn:aws:kinesis:*:*:stream/s?", "arn:aws:kinesis:us-east-1:0:stream/s12"));
        assert!(glob("*", ""));
        assert!(!glob("a*b*c", &"ab".repeat(5000)), "no blow-up on long inputs");
    }
}
