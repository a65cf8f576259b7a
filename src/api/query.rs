//! The AWS query protocol, as SNS and SQS's older clients speak it: a form-encoded request
//! (`Action=Publish&TopicArn=...&MessageAttributes.entry.1.Name=...`) and an XML answer
//! wrapped in `<ActionResponse><ActionResult>...</ActionResult><ResponseMetadata>`. Source:
//! botocore's query serializer and parser (`serialize.py`, `parsers.py`).

use std::collections::BTreeMap;

use crate::api::sns::SnsError;

/// A request's parameters, by name (`Attributes.entry.1.key`), each once (the last wins).
#[derive(Debug, Default, Clone)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Reads form-encoded `text` (percent- and plus-decoded).
    pub fn parse(text: &str) -> Self {
        let decode = |s: &str| crate::sigv4::uri_decode(&s.replace('+', " "));
        Self(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// Adds the parameters of `other` (a body's after a query string's).
    pub fn extend(&mut self, other: Params) {
        self.0.extend(other.0);
    }

    /// The names of the parameters given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Parameter `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether any parameter is named `prefix` or starts with `prefix.`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.0.contains_key(prefix)
            || self.0.range(format!("{prefix}.")..).next().is_some_and(|(k, _)| k.starts_with(&format!("{prefix}.")))
    }

    /// Sets parameter `name` (a value the request itself does not carry, as an SQS queue's
    /// URL taken from the request's path).
    pub fn insert(&mut self, name: &str, value: String) {
        self.0.insert(name.to_owned(), value);
    }

    /// Parameter `name`, or `InvalidParameter` naming it when missing.
    pub fn required(&self, name: &str) -> Result<&str, SnsError> {
        self.get(name).ok_or_else(|| {
            SnsError::invalid_parameter(format!("Invalid parameter: {name} Reason: The parameter {name} is required"))
        })
    }

    /// The members of list `prefix` (`prefix.member.1...`), each as its own parameters (with
    /// the `prefix.member.N.` taken off; a scalar member's value is under the empty name), in
    /// order of N.
    pub fn members(&self, prefix: &str) -> Vec<Params> {
        self.numbered(&format!("{prefix}.member."))
    }

    /// The entries of map `prefix` (`prefix.entry.1.key` / `.value`) as a map.
    pub fn map(&self, prefix: &str) -> BTreeMap<String, String> {
        self.numbered(&format!("{prefix}.entry."))
            .into_iter()
            .filter_map(|e| Some((e.get("key")?.to_owned(), e.get("value").unwrap_or("").to_owned())))
            .collect()
    }

    /// Message attributes under `prefix` (`prefix.entry.N.Name`, `.Value.DataType`,
    /// `.Value.StringValue`, `.Value.BinaryValue`), by name.
    pub fn message_attributes(&self, prefix: &str) -> BTreeMap<String, crate::api::sqs::AttributeValue> {
        self.numbered(&format!("{prefix}.entry."))
            .into_iter()
            .filter_map(|e| {
                Some((
                    e.get("Name")?.to_owned(),
                    crate::api::sqs::AttributeValue {
                        data_type: e.get("Value.DataType").unwrap_or("").to_owned(),
                        string_value: e.get("Value.StringValue").map(str::to_owned),
                        binary_value: e.get("Value.BinaryValue").map(str::to_owned),
                    },
                ))
            })
            .collect()
    }

    /// Groups `<prefix>N.<rest>` (and `<prefix>N`) by N, ascending.
    fn numbered(&self, prefix: &str) -> Vec<Params> {
        let mut by_n: BTreeMap<u32, Params> = BTreeMap::new();
        for (k, v) in self.0.range(prefix.to_owned()..) {
            let Some(rest) = k.strip_prefix(prefix) else { break };
            let (n, tail) = rest.split_once('.').unwrap_or((rest, ""));
            let Ok(n) = n.parse::<u32>() else { continue };
            by_n.entry(n).or_default().0.insert(tail.to_owned(), v.clone());
        }
        by_n.into_values().collect()
    }
}

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            // XML 1.0 has no other C0 characters, not even as references: they would make the
            // answer unreadable, so they are shown as U+FFFD.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// An XML element `<name>text</name>`, the text escaped.
pub fn element(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", escape(text))
}

/// A map as the query protocol writes it: `<entry><key>..</key><value>..</value></entry>`.
pub fn entries(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("<entry>{}{}</entry>", element("key", k), element("value", v))).collect()
}

/// The whole answer of `action` in namespace `xmlns` with `result` (XML members of its result
/// element, or `None` for an action whose answer has no result element).
pub fn response(xmlns: &str, action: &str, result: Option<&str>, request_id: &str) -> String {
    let result = result.map_or(String::new(), |r| format!("<{action}Result>{r}</{action}Result>"));
    format!(
        "<{action}Response xmlns=\"{xmlns}\">{result}<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
        escape(request_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_maps_and_message_attributes_read_from_the_form() {
        let p = Params::parse(
            "Action=Publish&Attributes.entry.2.key=b&Attributes.entry.2.value=2&Attributes.entry.1.key=a&\
             Attributes.entry.1.value=x+y%26&TagKeys.member.10=k10&TagKeys.member.2=k2&\
             MessageAttributes.entry.1.Name=city&MessageAttributes.entry.1.Value.DataType=String&\
             MessageAttributes.entry.1.Value.StringValue=Beijing",
        );
        assert_eq!(p.get("Action"), Some("Publish"));
        let m = p.map("Attributes");
        assert_eq!((m["a"].as_str(), m["b"].as_str()), ("x y&", "2"));
        let keys: Vec<_> = p.members("TagKeys").iter().map(|m| m.get("").unwrap().to_owned()).collect();
        assert_eq!(keys, ["k2", "k10"]);
        let a = p.message_attributes("MessageAttributes");
        assert_eq!(a["city"].string_value.as_deref(), Some("Beijing"));
        assert!(p.required("TopicArn").is_err());
        assert_eq!(escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }
}
