//! Subscription filter policies: which messages a subscription takes, by their message
//! attributes (`FilterPolicyScope` `MessageAttributes`, the default) or by their body (a JSON
//! object; scope `MessageBody`, nested keys). A policy is a JSON object of keys, each an
//! array of conditions any of which may match (exact strings and numbers, `prefix`,
//! `suffix`, `equals-ignore-case`, `anything-but`, `numeric` ranges, `exists`, `cidr`), all
//! keys having to match; `$or` takes alternatives. Source: Amazon SNS Developer Guide,
//! "Amazon SNS message filtering".

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::sqs::AttributeValue;

/// Most value combinations a policy allows (the product of its keys' condition counts,
/// `$or` alternatives added): 150. Source: as above, "Filter policy constraints".
const COMBINATIONS_MAX: usize = 150;

/// Largest filter policy, bytes: 256 KiB. Source: as above, "Filter policy constraints".
pub const POLICY_BYTES_MAX: usize = 256 * 1024;

/// Whether a policy (already checked) has nested keys (an object under a key).
pub fn nested(policy: &str) -> bool {
    fn has_nested(v: &Value) -> bool {
        v.as_object().is_some_and(|m| {
            m.iter().any(|(k, v)| match (k.as_str(), v) {
                ("$or", Value::Array(alternatives)) => alternatives.iter().any(has_nested),
                (_, Value::Object(_)) => true,
                _ => false,
            })
        })
    }
    serde_json::from_str::<Value>(policy).is_ok_and(|v| has_nested(&v))
}

/// Checks a policy's form; the reason when it does not stand.
pub fn check(policy: &str) -> Result<Value, String> {
    if policy.len() > POLICY_BYTES_MAX {
        return Err(format!("Filter policy is too large: {} bytes, at most {POLICY_BYTES_MAX}", policy.len()));
    }
    let v: Value = serde_json::from_str(policy).map_err(|e| format!("failed to parse JSON. {e}"))?;
    let Value::Object(map) = &v else { return Err("Filter policy must be a JSON object".into()) };
    if map.is_empty() {
        return Ok(v);
    }
    let combinations = check_object(&v, 0)?;
    if combinations > COMBINATIONS_MAX {
        return Err(format!("Filter policy is too complex: {combinations} combinations, at most {COMBINATIONS_MAX}"));
    }
    Ok(v)
}

/// Checks an object of a policy; the number of value combinations it allows.
fn check_object(v: &Value, depth: usize) -> Result<usize, String> {
    if depth > 8 {
        return Err("Filter policy is nested too deeply".into());
    }
    let Value::Object(map) = v else { return Err("Filter policy must be a JSON object".into()) };
    let mut combinations = 1usize;
    for (key, value) in map {
        let n = match (key.as_str(), value) {
            ("$or", Value::Array(alternatives)) if alternatives.len() >= 2 => {
                let mut sum = 0usize;
                for a in alternatives {
                    sum = sum.saturating_add(check_object(a, depth + 1)?);
                }
                sum
            }
            ("$or", _) => return Err("$or must be an array of at least two filter policies".into()),
            (_, Value::Array(conditions)) if !conditions.is_empty() => {
                let mut values = 0usize;
                for c in conditions {
                    check_condition(key, c)?;
                    // An anything-but list weighs what it lists, so a policy's cost per
                    // message stays within the bound.
                    values += c.get("anything-but").and_then(Value::as_array).map_or(1, Vec::len);
                }
                values
            }
            (_, Value::Object(_)) => check_object(value, depth + 1)?,
            _ => return Err(format!("Match value for {key} must be an array of conditions")),
        };
        combinations = combinations.saturating_mul(n.max(1));
    }
    Ok(combinations)
}

fn check_condition(key: &str, c: &Value) -> Result<(), String> {
    let bad = || format!("Unrecognized match type or value for {key}: {c}");
    match c {
        Value::String(_) | Value::Number(_) | Value::Null | Value::Bool(_) => Ok(()),
        Value::Object(o) if o.len() == 1 => {
            let (op, arg) = o.iter().next().expect("one entry");
            match (op.as_str(), arg) {
                ("prefix" | "suffix" | "equals-ignore-case", Value::String(_)) => Ok(()),
                ("exists", Value::Bool(_)) => Ok(()),
                ("cidr", Value::String(s)) if cidr(s).is_some() => Ok(()),
                ("anything-but", Value::String(_) | Value::Number(_)) => Ok(()),
                ("anything-but", Value::Array(a))
                    if !a.is_empty() && a.iter().all(|x| x.is_string() || x.is_number()) =>
                {
                    Ok(())
                }
                ("anything-but", Value::Object(inner)) if inner.len() == 1 => match inner.iter().next() {
                    Some((k, Value::String(_))) if k == "prefix" || k == "suffix" => Ok(()),
                    _ => Err(bad()),
                },
                ("numeric", Value::Array(a)) if numeric_range(a).is_some() => Ok(()),
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// A `numeric` condition's bounds: (operator, number) pairs, one or two.
fn numeric_range(a: &[Value]) -> Option<Vec<(&str, f64)>> {
    if a.len() != 2 && a.len() != 4 {
        return None;
    }
    a.chunks(2)
        .map(|pair| {
            let op = pair[0].as_str().filter(|o| matches!(*o, "=" | "<" | "<=" | ">" | ">="))?;
            Some((op, pair[1].as_f64()?))
        })
        .collect()
}

/// A CIDR block: (network, prefix length) of an IPv4 address.
fn cidr(s: &str) -> Option<(u32, u32)> {
    let (ip, len) = s.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(ip), len))
}

/// One value a condition is matched against.
#[derive(Debug, Clone)]
enum Found<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
    Null,
}

/// Whether `policy` selects a message with `attributes` (scope `MessageAttributes`).
pub fn matches_attributes(policy: &Value, attributes: &BTreeMap<String, AttributeValue>) -> bool {
    let parsed: BTreeMap<&str, Vec<Value>> = attributes
        .iter()
        .map(|(k, a)| {
            let base = a.data_type.split('.').next().unwrap_or("");
            let s = a.string_value.as_deref().unwrap_or("");
            let values = match (base, a.data_type.as_str()) {
                (_, "String.Array") => match serde_json::from_str::<Value>(s) {
                    Ok(Value::Array(items)) => items,
                    _ => Vec::new(),
                },
                ("Number", _) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .into_iter()
                    .collect(),
                ("String", _) => vec![Value::String(s.to_owned())],
                _ => Vec::new(),
            };
            (k.as_str(), values)
        })
        .collect();
    matches_object(policy, &|path: &[&str]| {
        if path.len() != 1 {
            return None;
        }
        parsed.get(path[0]).map(|vs| vs.iter().collect())
    })
}

/// Whether `policy` selects a message whose body is `body` (scope `MessageBody`; a body that
/// is not a JSON object matches no policy with keys).
pub fn matches_body(policy: &Value, body: &Value) -> bool {
    matches_object(policy, &|path: &[&str]| {
        // Arrays on the way are looked through: a key under an array of objects matches any
        // of them, as SNS does.
        let mut at: Vec<&Value> = vec![body];
        for k in path {
            at = at.into_iter().flat_map(spread).filter_map(|v| v.get(k)).collect();
            if at.is_empty() {
                return None;
            }
        }
        Some(at.into_iter().flat_map(spread).collect())
    })
}

/// An array's items, or the value alone.
fn spread(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        v => vec![v],
    }
}

/// Values at a key path, if the key is there.
type Lookup<'a> = dyn Fn(&[&str]) -> Option<Vec<&'a Value>> + 'a;

fn matches_object<'a>(policy: &Value, lookup: &Lookup<'a>) -> bool {
    matches_at(policy, &mut Vec::new(), lookup)
}

fn matches_at<'p, 'a>(policy: &'p Value, path: &mut Vec<&'p str>, lookup: &Lookup<'a>) -> bool {
    let Value::Object(map) = policy else { return false };
    map.iter().all(|(key, value)| match (key.as_str(), value) {
        ("$or", Value::Array(alternatives)) => alternatives.iter().any(|a| matches_at(a, path, lookup)),
        (_, Value::Object(_)) => {
            path.push(key);
            let ok = matches_at(value, path, lookup);
            path.pop();
            ok
        }
        (_, Value::Array(conditions)) => {
            path.push(key);
            let found = lookup(path);
            path.pop();
            conditions.iter().any(|c| condition_holds(c, found.as_deref()))
        }
        _ => false,
    })
}

fn found(v: &Value) -> Option<Found<'_>> {
    Some(match v {
        Value::String(s) => Found::Str(s),
        Value::Number(n) => Found::Num(n.as_f64()?),
        Value::Bool(b) => Found::Bool(*b),
        Value::Null => Found::Null,
        _ => return None,
    })
}

/// Whether condition `c` holds for the values at its key (`None`: the key is absent).
fn condition_holds(c: &Value, values: Option<&[&Value]>) -> bool {
    if let Some(Value::Bool(want)) = c.get("exists") {
        return values.is_some() == *want;
    }
    let Some(values) = values else { return false };
    values.iter().filter_map(|v| found(v)).any(|v| one_holds(c, &v))
}

fn one_holds(c: &Value, v: &Found<'_>) -> bool {
    match (c, v) {
        (Value::String(want), Found::Str(s)) => want == s,
        (Value::Number(want), Found::Num(n)) => want.as_f64().is_some_and(|w| (w - n).abs() < 1e-9),
        (Value::Bool(want), Found::Bool(b)) => want == b,
        (Value::Null, Found::Null) => true,
        (Value::Object(o), _) => {
            let Some((op, arg)) = o.iter().next() else { return false };
            match (op.as_str(), arg, v) {
                ("prefix", Value::String(p), Found::Str(s)) => s.starts_with(p.as_str()),
                ("suffix", Value::String(p), Found::Str(s)) => s.ends_with(p.as_str()),
                ("equals-ignore-case", Value::String(p), Found::Str(s)) => p.to_lowercase() == s.to_lowercase(),
                ("cidr", Value::String(block), Found::Str(s)) => match (cidr(block), s.parse::<std::net::Ipv4Addr>()) {
                    (Some((net, len)), Ok(ip)) => {
                        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                        u32::from(ip) & mask == net & mask
                    }
                    _ => false,
                },
                ("numeric", Value::Array(a), Found::Num(n)) => numeric_range(a).is_some_and(|bounds| {
                    bounds.iter().all(|(op, x)| match *op {
                        "=" => (n - x).abs() < 1e-9,
                        "<" => n < x,
                        "<=" => n <= x,
                        ">" => n > x,
                        _ => n >= x,
                    })
                }),
                ("anything-but", Value::Array(list), _) => !list.iter().any(|x| one_holds(x, v)),
                ("anything-but", Value::Object(inner), Found::Str(_)) => !one_holds(&Value::Object(inner.clone()), v),
                ("anything-but", x, _) => !one_holds(x, v),
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str, &str)]) -> BTreeMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, t, v)| {
                (
                    (*k).to_owned(),
                    AttributeValue { data_type: (*t).into(), string_value: Some((*v).into()), binary_value: None },
                )
            })
            .collect()
    }

    #[test]
    fn attribute_policies_select_as_sns_documents() {
        let p = check(r#"{"store":["example_corp"],"event":[{"anything-but":"order_cancelled"}],"price_usd":[{"numeric":[">=",100]}]}"#).unwrap();
        let yes = attrs(&[
            ("store", "String", "example_corp"),
            ("event", "String", "order_placed"),
            ("price_usd", "Number", "210.75"),
        ]);
        assert!(matches_attributes(&p, &yes));
        let cancelled = attrs(&[
            ("store", "String", "example_corp"),
            ("event", "String", "order_cancelled"),
            ("price_usd", "Number", "210"),
        ]);
        assert!(!matches_attributes(&p, &cancelled));
        let cheap = attrs(&[
            ("store", "String", "example_corp"),
            ("event", "String", "order_placed"),
            ("price_usd", "Number", "99"),
        ]);
        assert!(!matches_attributes(&p, &cheap));
        // A missing key fails every condition but exists:false.
        assert!(!matches_attributes(&p, &attrs(&[("store", "String", "example_corp")])));
        let absent = check(r#"{"customer_interests":[{"exists":false}]}"#).unwrap();
        assert!(matches_attributes(&absent, &attrs(&[("store", "String", "x")])));
        let array = check(r#"{"sport":["rugby",{"prefix":"foot"}]}"#).unwrap();
        assert!(matches_attributes(&array, &attrs(&[("sport", "String.Array", r#"["golf","football"]"#)])));
        let or = check(r#"{"$or":[{"a":["1"]},{"b":[{"numeric":["<",0]}]}]}"#).unwrap();
        assert!(matches_attributes(&or, &attrs(&[("b", "Number", "-3")])));
        assert!(!matches_attributes(&or, &attrs(&[("a", "String", "2")])));
        let ip = check(r#"{"source_ip":[{"cidr":"10.0.0.0/24"}]}"#).unwrap();
        assert!(matches_attributes(&ip, &attrs(&[("source_ip", "String", "10.0.0.255")])));
        assert!(!matches_attributes(&ip, &attrs(&[("source_ip", "String", "10.0.1.0")])));
    }

    #[test]
    fn body_policies_follow_nested_keys_and_bad_ones_are_refused() {
        let p = check(r#"{"reading":{"station":["Aotizhongxin"],"pm25":[{"numeric":[">",50,"<=",100]}]}}"#).unwrap();
        let body: Value = serde_json::from_str(r#"{"reading":{"station":"Aotizhongxin","pm25":75}}"#).unwrap();
        assert!(matches_body(&p, &body));
        let other: Value = serde_json::from_str(r#"{"reading":{"station":"Aotizhongxin","pm25":150}}"#).unwrap();
        assert!(!matches_body(&p, &other));
        let records = check(r#"{"Records":{"s3":{"object":{"key":[{"prefix":"auto-"}]}}}}"#).unwrap();
        let event: Value = serde_json::from_str(
            r#"{"Records":[{"s3":{"object":{"key":"manual-1"}}},{"s3":{"object":{"key":"auto-7"}}}]}"#,
        )
        .unwrap();
        assert!(matches_body(&records, &event));
        assert!(check(r#"{"a":"not an array"}"#).is_err());
        assert!(check(r#"{"a":[{"numeric":["~",1]}]}"#).is_err());
        assert!(check("[1]").is_err());
    }
}
