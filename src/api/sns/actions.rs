//! Topic and subscription actions.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use serde_json::json;

use super::{filter, Caller, Sns, SnsError, Subscription, Topic};
use crate::api::query::{element, entries, Params};
use crate::api::sqs::Sqs;

/// Longest topic name, characters: 256 (`.fifo` included). Source: Amazon SNS API Reference,
/// CreateTopic.
pub const TOPIC_NAME_CHARS_MAX: usize = 256;

/// Items of one `ListTopics` / `ListSubscriptions` page: 100. Source: Amazon SNS API Reference.
pub const PAGE_ITEMS: usize = 100;

/// Longest topic or subscription attribute value, bytes: 256 KiB (a filter policy's limit;
/// SNS's own are smaller for most attributes).
pub const ATTRIBUTE_BYTES_MAX: usize = 256 * 1024;

/// Most topics a server holds: 100,000 (AWS's quota of standard topics per account).
pub const TOPICS_MAX: usize = 100_000;

/// Most subscriptions a server holds: 100,000 (every one is in `state.json`, written whole
/// on each change).
pub const SUBSCRIPTIONS_MAX: usize = 100_000;

/// Most tags a topic holds: 50. Source: Amazon SNS Developer Guide, quotas.
pub const TAGS_MAX: usize = 50;

/// Topic attributes a client may set. Source: Amazon SNS API Reference, SetTopicAttributes.
const TOPIC_SETTABLE: &[&str] = &[
    "DeliveryPolicy",
    "DisplayName",
    "Policy",
    "TracingConfig",
    "KmsMasterKeyId",
    "SignatureVersion",
    "ContentBasedDeduplication",
    "FifoThroughputScope",
    "ArchivePolicy",
    "ApplicationSuccessFeedbackRoleArn",
    "ApplicationSuccessFeedbackSampleRate",
    "ApplicationFailureFeedbackRoleArn",
    "HTTPSuccessFeedbackRoleArn",
    "HTTPSuccessFeedbackSampleRate",
    "HTTPFailureFeedbackRoleArn",
    "LambdaSuccessFeedbackRoleArn",
    "LambdaSuccessFeedbackSampleRate",
    "LambdaFailureFeedbackRoleArn",
    "SQSSuccessFeedbackRoleArn",
    "SQSSuccessFeedbackSampleRate",
    "SQSFailureFeedbackRoleArn",
    "FirehoseSuccessFeedbackRoleArn",
    "FirehoseSuccessFeedbackSampleRate",
    "FirehoseFailureFeedbackRoleArn",
];

/// Subscription attributes a client may set. Source: Amazon SNS API Reference,
/// SetSubscriptionAttributes.
const SUBSCRIPTION_SETTABLE: &[&str] = &[
    "DeliveryPolicy",
    "FilterPolicy",
    "FilterPolicyScope",
    "RawMessageDelivery",
    "RedrivePolicy",
    "SubscriptionRoleArn",
    "ReplayPolicy",
];

/// The delivery policy HTTP subscriptions follow by default: 3 retries 20 s apart. Source:
/// Amazon SNS Developer Guide, "Amazon SNS message delivery retries".
pub const DEFAULT_HTTP_DELIVERY_POLICY: &str = r#"{"http":{"defaultHealthyRetryPolicy":{"minDelayTarget":20,"maxDelayTarget":20,"numRetries":3,"numMaxDelayRetries":0,"numNoDelayRetries":0,"numMinDelayRetries":0,"backoffFunction":"linear"},"disableSubscriptionOverrides":false,"defaultRequestPolicy":{"headerContentType":"text/plain; charset=UTF-8"}}}"#;

fn topic_not_found() -> SnsError {
    SnsError::not_found("Topic does not exist")
}

fn check_topic_name(name: &str, fifo: bool) -> Result<(), SnsError> {
    let stem = if fifo { name.strip_suffix(".fifo") } else { Some(name) };
    let ok = stem.is_some_and(|s| {
        !s.is_empty()
            && name.len() <= TOPIC_NAME_CHARS_MAX
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !ok {
        let reason = if fifo || name.ends_with(".fifo") {
            "Fifo Topic names must end with .fifo and must be made up of only uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and must be between 1 and 256 characters long."
        } else {
            "Topic Name"
        };
        return Err(SnsError::invalid_parameter(format!("Invalid parameter: {reason}")));
    }
    Ok(())
}

/// Checks a topic attribute; its value as stored.
fn check_topic_attribute(name: &str, value: &str, fifo: bool) -> Result<String, SnsError> {
    let invalid = |reason: &str| SnsError::invalid_parameter(format!("Invalid parameter: {reason}"));
    if !TOPIC_SETTABLE.contains(&name) {
        return Err(invalid("AttributeName"));
    }
    if value.len() > ATTRIBUTE_BYTES_MAX {
        return Err(invalid(&format!("{name} Reason: longer than {ATTRIBUTE_BYTES_MAX} bytes")));
    }
    match name {
        "ContentBasedDeduplication" if !fifo => Err(invalid(
            "ContentBasedDeduplication Reason: Content-based deduplication can only be set for FIFO topics",
        )),
        "ContentBasedDeduplication" | "RawMessageDelivery" => match value.to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => Ok(v.to_owned()),
            _ => Err(invalid(&format!("{name} Reason: Invalid value [{value}] for {name}. It must be true or false."))),
        },
        "Policy" | "DeliveryPolicy" | "ArchivePolicy" if !value.is_empty() => {
            serde_json::from_str::<serde_json::Value>(value)
                .map(|_| value.to_owned())
                .map_err(|_| invalid(&format!("{name}: failed to parse JSON")))
        }
        "SignatureVersion" if !matches!(value, "1" | "2") => Err(invalid("SignatureVersion")),
        _ => Ok(value.to_owned()),
    }
}

fn tags_of(p: &Params) -> Result<BTreeMap<String, String>, SnsError> {
    let mut tags = BTreeMap::new();
    for m in p.members("Tags") {
        let key = m
            .get("Key")
            .ok_or_else(|| SnsError::invalid_parameter("Invalid parameter: Tags Reason: a tag has no Key"))?;
        if key.is_empty() || key.len() > 128 || m.get("Value").is_some_and(|v| v.len() > 256) {
            return Err(SnsError::invalid_parameter(
                "Invalid parameter: Tags Reason: keys are 1 to 128 characters, values at most 256",
            ));
        }
        tags.insert(key.to_owned(), m.get("Value").unwrap_or("").to_owned());
    }
    Ok(tags)
}

pub fn create_topic(sns: &Sns, p: &Params) -> Result<String, SnsError> {
    let name = p.required("Name")?.to_owned();
    let given = p.map("Attributes");
    let fifo = given.get("FifoTopic").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    check_topic_name(&name, fifo)?;
    if given.get("FifoTopic").is_some_and(|v| !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false")) {
        return Err(SnsError::invalid_parameter("Invalid parameter: FifoTopic Reason: It must be true or false"));
    }
    let mut attributes = BTreeMap::new();
    for (k, v) in &given {
        if k == "FifoTopic" {
            if fifo {
                attributes.insert(k.clone(), "true".to_owned());
            }
            continue;
        }
        attributes.insert(k.clone(), check_topic_attribute(k, v, fifo)?);
    }
    let tags = tags_of(p)?;
    if tags.len() > TAGS_MAX {
        return Err(SnsError::new(
            "TagLimitExceeded",
            400,
            "Could not complete request: tag quota of per resource exceeded",
        ));
    }
    if let Some(dpp) = p.get("DataProtectionPolicy") {
        serde_json::from_str::<serde_json::Value>(dpp)
            .map_err(|_| SnsError::invalid_parameter("Invalid parameter: DataProtectionPolicy"))?;
    }
    let arn = sns.topic_arn(&name);
    sns.update(|s| {
        if let Some(t) = s.topics.get(&name) {
            // The same name is the topic that exists, unless other attributes are asked for.
            if attributes.iter().any(|(k, v)| t.attributes.get(k) != Some(v)) {
                return Err(SnsError::invalid_parameter(
                    "Invalid parameter: Attributes Reason: Topic already exists with different attributes",
                ));
            }
            if !tags.is_empty() && tags != t.tags {
                return Err(SnsError::invalid_parameter(
                    "Invalid parameter: Tags Reason: Topic already exists with different tags",
                ));
            }
            return Ok(());
        }
        if s.topics.len() >= TOPICS_MAX {
            return Err(SnsError::new(
                "TopicLimitExceeded",
                403,
                "Topic already exists or the topic quota is reached.",
            ));
        }
        s.topics.insert(
            name.clone(),
            Topic {
                name: name.clone(),
                attributes,
                tags,
                data_protection_policy: p.get("DataProtectionPolicy").map(str::to_owned),
            },
        );
        Ok(())
    })?;
    Ok(element("TopicArn", &arn))
}

/// The topic an ARN names, or `NotFound`.
pub(super) fn topic(sns: &Sns, arn: &str) -> Result<Topic, SnsError> {
    let name = sns.topic_name(arn).ok_or_else(topic_not_found)?;
    sns.state.read().unwrap_or_else(PoisonError::into_inner).topics.get(name).cloned().ok_or_else(topic_not_found)
}

pub fn delete_topic(sns: &Sns, sqs: &Sqs, p: &Params) -> Result<(), SnsError> {
    let arn = p.required("TopicArn")?.to_owned();
    // Deleting a topic that does not exist is not an error. Source: Amazon SNS API Reference.
    let Some(name) = sns.topic_name(&arn).map(str::to_owned) else { return Ok(()) };
    let gone = sns.update(|s| {
        s.topics.remove(&name);
        let subs: Vec<Subscription> = s.subscriptions.values().filter(|x| x.topic_arn == arn).cloned().collect();
        s.subscriptions.retain(|_, x| x.topic_arn != arn);
        Ok(subs)
    })?;
    for sub in gone {
        if let Some(outbox) = sub.outbox {
            sqs.delete_internal(&outbox);
        }
    }
    Ok(())
}

/// A page of `items` after the token (the last key of the previous page, base64).
fn page<T: Clone>(items: &BTreeMap<String, T>, token: Option<&str>) -> Result<(Vec<T>, Option<String>), SnsError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let after = match token {
        Some(t) => Some(
            b64.decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| SnsError::invalid_parameter("Invalid parameter: NextToken"))?,
        ),
        None => None,
    };
    let rest: Vec<(&String, &T)> = items.iter().filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a)).collect();
    let next = (rest.len() > PAGE_ITEMS).then(|| b64.encode(rest[PAGE_ITEMS - 1].0));
    Ok((rest.into_iter().take(PAGE_ITEMS).map(|(_, v)| v.clone()).collect(), next))
}

pub fn list_topics(sns: &Sns, p: &Params) -> Result<String, SnsError> {
    let topics = sns.state.read().unwrap_or_else(PoisonError::into_inner).topics.clone();
    let (page, next) = page(&topics, p.get("NextToken"))?;
    let members: String =
        page.iter().map(|t| format!("<member>{}</member>", element("TopicArn", &sns.topic_arn(&t.name)))).collect();
    Ok(format!("<Topics>{members}</Topics>{}", next.map_or(String::new(), |n| element("NextToken", &n))))
}

/// A topic's default access policy, as SNS makes one.
fn default_policy(sns: &Sns, arn: &str) -> String {
    json!({
        "Version": "2008-10-17",
        "Id": "__default_policy_ID",
        "Statement": [{
            "Sid": "__default_statement_ID",
            "Effect": "Allow",
            "Principal": { "AWS": "*" },
            "Action": ["SNS:GetTopicAttributes", "SNS:SetTopicAttributes", "SNS:AddPermission", "SNS:RemovePermission",
                       "SNS:DeleteTopic", "SNS:Subscribe", "SNS:ListSubscriptionsByTopic", "SNS:Publish"],
            "Resource": arn,
            "Condition": { "StringEquals": { "AWS:SourceOwner": sns.account_id } },
        }],
    })
    .to_string()
}

pub fn get_topic_attributes(sns: &Sns, p: &Params) -> Result<String, SnsError> {
    let arn = p.required("TopicArn")?;
    let t = topic(sns, arn)?;
    let subs = sns.subscriptions_of(arn);
    let of_topic = subs.iter().filter(|s| s.topic_arn == arn);
    let confirmed = of_topic.clone().filter(|s| s.confirmed).count();
    let pending = of_topic.filter(|s| !s.confirmed).count();
    let mut a: BTreeMap<String, String> = BTreeMap::new();
    a.insert("TopicArn".into(), arn.to_owned());
    a.insert("Owner".into(), sns.account_id.clone());
    a.insert("Policy".into(), default_policy(sns, arn));
    a.insert("DisplayName".into(), String::new());
    a.insert("SubscriptionsConfirmed".into(), confirmed.to_string());
    a.insert("SubscriptionsPending".into(), pending.to_string());
    a.insert("SubscriptionsDeleted".into(), "0".into());
    a.insert("EffectiveDeliveryPolicy".into(), DEFAULT_HTTP_DELIVERY_POLICY.into());
    if t.name.ends_with(".fifo") {
        a.insert("FifoTopic".into(), "true".into());
        a.insert("ContentBasedDeduplication".into(), "false".into());
    }
    for (k, v) in &t.attributes {
        a.insert(k.clone(), v.clone());
    }
    if let Some(d) = t.attributes.get("DeliveryPolicy") {
        a.insert("EffectiveDeliveryPolicy".into(), d.clone());
    }
    Ok(format!("<Attributes>{}</Attributes>", entries(&a)))
}

pub fn set_topic_attributes(sns: &Sns, p: &Params) -> Result<(), SnsError> {
    let arn = p.required("TopicArn")?.to_owned();
    let name = p.required("AttributeName")?.to_owned();
    let value = p.get("AttributeValue").unwrap_or("").to_owned();
    let t = topic(sns, &arn)?;
    let stored = check_topic_attribute(&name, &value, t.name.ends_with(".fifo"))?;
    sns.update(|s| {
        let t = s.topics.get_mut(&t.name).ok_or_else(topic_not_found)?;
        if stored.is_empty()
            && matches!(name.as_str(), "Policy" | "DeliveryPolicy" | "KmsMasterKeyId" | "ArchivePolicy")
        {
            t.attributes.remove(&name);
        } else {
            t.attributes.insert(name.clone(), stored.clone());
        }
        Ok(())
    })
}

pub fn add_permission(sns: &Sns, p: &Params) -> Result<(), SnsError> {
    let arn = p.required("TopicArn")?.to_owned();
    let label = p.required("Label")?.to_owned();
    let accounts: Vec<String> = p.members("AWSAccountId").iter().filter_map(|m| m.get("").map(str::to_owned)).collect();
    let actions: Vec<String> =
        p.members("ActionName").iter().filter_map(|m| m.get("").map(|a| format!("SNS:{a}"))).collect();
    if accounts.is_empty() || actions.is_empty() {
        return Err(SnsError::invalid_parameter("Invalid parameter: AWSAccountId and ActionName are required"));
    }
    let t = topic(sns, &arn)?;
    let current = t.attributes.get("Policy").cloned().unwrap_or_else(|| default_policy(sns, &arn));
    let mut policy: serde_json::Value = serde_json::from_str(&current).unwrap_or_else(|_| json!({ "Statement": [] }));
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    if statements.iter().any(|s| s["Sid"] == label.as_str()) {
        return Err(SnsError::invalid_parameter("Invalid parameter: Statement already exists"));
    }
    let principals: Vec<String> = accounts.iter().map(|a| format!("arn:aws:iam::{a}:root")).collect();
    let mut next = statements;
    next.push(json!({ "Sid": label, "Effect": "Allow", "Principal": { "AWS": principals }, "Action": actions, "Resource": arn }));
    policy["Statement"] = next.into();
    let text = policy.to_string();
    sns.update(|s| {
        s.topics.get_mut(&t.name).ok_or_else(topic_not_found)?.attributes.insert("Policy".into(), text.clone());
        Ok(())
    })
}

pub fn remove_permission(sns: &Sns, p: &Params) -> Result<(), SnsError> {
    let arn = p.required("TopicArn")?.to_owned();
    let label = p.required("Label")?.to_owned();
    let t = topic(sns, &arn)?;
    let current = t.attributes.get("Policy").cloned().unwrap_or_else(|| default_policy(sns, &arn));
    let mut policy: serde_json::Value = serde_json::from_str(&current).unwrap_or_else(|_| json!({ "Statement": [] }));
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    if !statements.iter().any(|s| s["Sid"] == label.as_str()) {
        return Err(SnsError::invalid_parameter("Invalid parameter: Statement not found"));
    }
    policy["Statement"] = statements.into_iter().filter(|s| s["Sid"] != label.as_str()).collect::<Vec<_>>().into();
    let text = policy.to_string();
    sns.update(|s| {
        s.topics.get_mut(&t.name).ok_or_else(topic_not_found)?.attributes.insert("Policy".into(), text.clone());
        Ok(())
    })
}

/// The topic a tagging call names (`ResourceArn`), or `ResourceNotFound`.
fn tagged(sns: &Sns, p: &Params) -> Result<Topic, SnsError> {
    let arn = p.required("ResourceArn")?;
    topic(sns, arn).map_err(|_| SnsError::new("ResourceNotFound", 404, "Resource does not exist"))
}

pub fn tag(sns: &Sns, p: &Params) -> Result<(), SnsError> {
    let t = tagged(sns, p)?;
    let tags = tags_of(p)?;
    sns.update(|s| {
        let topic = s.topics.get_mut(&t.name).ok_or_else(topic_not_found)?;
        let mut next = topic.tags.clone();
        next.extend(tags.clone());
        if next.len() > TAGS_MAX {
            return Err(SnsError::new(
                "TagLimitExceeded",
                400,
                "Could not complete request: tag quota of per resource exceeded",
            ));
        }
        topic.tags = next;
        Ok(())
    })
}

pub fn untag(sns: &Sns, p: &Params) -> Result<(), SnsError> {
    let t = tagged(sns, p)?;
    let keys: Vec<String> = p.members("TagKeys").iter().filter_map(|m| m.get("").map(str::to_owned)).collect();
    sns.update(|s| {
        s.topics.get_mut(&t.name).ok_or_else(topic_not_found)?.tags.retain(|k, _| !keys.contains(k));
        Ok(())
    })
}

pub fn list_tags(sns: &Sns, p: &Params) -> Result<String, SnsError> {
    let t = tagged(sns, p)?;
    let members: String =
        t.tags.iter().map(|(k, v)| format!("<member>{}{}</member>", element("Key", k), element("Value", v))).collect();
    Ok(format!("<Tags>{members}</Tags>"))
}

pub fn get_data_protection_policy(sns: &Sns, p: &Params) -> Result<String, SnsError> {
    let t = topic(sns, p.required("ResourceArn")?)?;
    Ok(element("DataProtectionPolicy", t.data_protection_policy.as_deref().unwrap_or("")))
}

pub fn put_data_protection_policy(sns: &Sns, p: &Params) -> Result<(), SnsError> {
    let t = topic(sns, p.required("ResourceArn")?)?;
    let policy = p.required("DataProtectionPolicy")?.to_owned();
    serde_json::from_str::<serde_json::Value>(&policy)
        .map_err(|_| SnsError::invalid_parameter("Invalid parameter: DataProtectionPolicy"))?;
    sns.update(|s| {
        s.topics.get_mut(&t.name).ok_or_else(topic_not_found)?.data_protection_policy = Some(policy.clone());
        Ok(())
    })
}

/// Checks a subscription attribute; its value as stored.
fn check_subscription_attribute(name: &str, value: &str, sqs: &Sqs) -> Result<String, SnsError> {
    let invalid = |reason: String| SnsError::invalid_parameter(format!("Invalid parameter: {reason}"));
    if !SUBSCRIPTION_SETTABLE.contains(&name) {
        return Err(invalid("AttributeName".into()));
    }
    if value.len() > ATTRIBUTE_BYTES_MAX {
        return Err(invalid(format!("{name} Reason: longer than {ATTRIBUTE_BYTES_MAX} bytes")));
    }
    match name {
        "RawMessageDelivery" => match value.to_ascii_lowercase().as_str() {
            v @ ("true" | "false") => Ok(v.to_owned()),
            _ => Err(invalid(format!("Attributes Reason: RawMessageDelivery: Invalid value [{value}]. Must be true or false."))),
        },
        "FilterPolicy" if !value.is_empty() => {
            filter::check(value).map_err(|r| invalid(format!("FilterPolicy: {r}")))?;
            Ok(value.to_owned())
        }
        "FilterPolicyScope" => match value {
            "MessageAttributes" | "MessageBody" => Ok(value.to_owned()),
            _ => Err(invalid("Attributes Reason: FilterPolicyScope: Invalid value [{value}]. Please use either MessageBody or MessageAttributes".into())),
        },
        "RedrivePolicy" if !value.is_empty() => {
            let v: serde_json::Value =
                serde_json::from_str(value).map_err(|_| invalid("RedrivePolicy: failed to parse JSON.".into()))?;
            let target = v["deadLetterTargetArn"].as_str().ok_or_else(|| invalid("RedrivePolicy: deadLetterTargetArn is missing".into()))?;
            if !sqs.queue_exists(target) {
                return Err(invalid(format!("RedrivePolicy: dead-letter target {target} is not an SQS queue of this account")));
            }
            Ok(value.to_owned())
        }
        "DeliveryPolicy" | "ReplayPolicy" if !value.is_empty() => serde_json::from_str::<serde_json::Value>(value)
            .map(|_| value.to_owned())
            .map_err(|_| invalid(format!("{name}: failed to parse JSON."))),
        _ => Ok(value.to_owned()),
    }
}

/// A subscription's ARN for lists: `PendingConfirmation` until confirmed.
fn listed_arn(s: &Subscription) -> &str {
    if s.confirmed {
        &s.arn
    } else {
        "PendingConfirmation"
    }
}

pub fn subscribe(sns: &Sns, sqs: &Sqs, p: &Params, caller: &Caller) -> Result<String, SnsError> {
    let topic_arn = p.required("TopicArn")?.to_owned();
    let protocol = p.required("Protocol")?.to_ascii_lowercase();
    let t = topic(sns, &topic_arn)?;
    let endpoint = p.get("Endpoint").unwrap_or("").to_owned();
    let fifo = t.name.ends_with(".fifo");
    match protocol.as_str() {
        "sqs" => {
            if !endpoint.starts_with("arn:aws:sqs:") {
                return Err(SnsError::invalid_parameter("Invalid parameter: SQS endpoint ARN"));
            }
            // A FIFO queue takes only a FIFO topic's messages; a standard queue takes both.
            if !fifo && endpoint.ends_with(".fifo") {
                return Err(SnsError::invalid_parameter(
                    "Invalid parameter: Invalid parameter: Endpoint Reason: FIFO SQS Queues can not be subscribed to standard SNS topics",
                ));
            }
        }
        "http" | "https" => {
            if fifo {
                return Err(SnsError::invalid_parameter(
                    "Invalid parameter: Endpoint Reason: FIFO topics deliver to SQS queues only",
                ));
            }
            if !endpoint.starts_with(&format!("{protocol}://")) {
                return Err(SnsError::invalid_parameter(
                    "Invalid parameter: Endpoint must match the specified protocol",
                ));
            }

        }
        "firehose" => {
            if !endpoint.starts_with("arn:aws:firehose:") || !endpoint.contains(":deliverystream/") {
                return Err(SnsError::invalid_parameter("Invalid parameter: Firehose endpoint ARN"));
            }
            if !p.map("Attributes").contains_key("SubscriptionRoleArn") {
                return Err(SnsError::invalid_parameter(
                    "Invalid parameter: Attributes Reason: SubscriptionRoleArn is required for the firehose protocol",
                ));
            }
        }
        "email" | "email-json" | "sms" | "application" | "lambda" => {
            return Err(SnsError::invalid_parameter(format!(
                "Invalid parameter: Protocol Reason: {protocol} is not supported by Sluice (sqs, firehose, http and https are)"
            )))
        }
        _ => {
            return Err(SnsError::invalid_parameter(
                "Invalid parameter: Amazon SNS does not support this protocol string",
            ))
        }
    }
    let mut attributes = BTreeMap::new();
    for (k, v) in p.map("Attributes") {
        attributes.insert(k.clone(), check_subscription_attribute(&k, &v, sqs)?);
    }
    check_policy_scope(&attributes)?;
    let return_arn = p.get("ReturnSubscriptionArn").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    // The same endpoint subscribed again is the subscription that exists (a pending one gets
    // its confirmation again).
    if let Some(existing) = existing_subscription(sns, &topic_arn, &protocol, &endpoint, &attributes)? {
        if let (false, Some(outbox)) = (existing.confirmed, &existing.outbox) {
            super::publish::send_confirmation(sns, sqs, &existing, outbox, caller)?;
        }
        let arn = if existing.confirmed || return_arn { existing.arn.as_str() } else { "pending confirmation" };
        return Ok(element("SubscriptionArn", arn));
    }
    let id = crate::api::sqs::new_message_id();
    let arn = format!("{topic_arn}:{id}");
    let token: String = (0..4).map(|_| format!("{:016x}", sluice_engine::stream::random_u64())).collect();
    // Queues and delivery streams of this account are confirmed at once; HTTP endpoints confirm.
    let confirmed = matches!(protocol.as_str(), "sqs" | "firehose");
    let outbox =
        if confirmed { None } else { Some(sqs.create_outbox(&id).map_err(|e| SnsError::internal(e.message))?) };
    let sub = Subscription {
        arn: arn.clone(),
        topic_arn: topic_arn.clone(),
        protocol,
        endpoint,
        attributes,
        confirmed,
        token: token.clone(),
        outbox: outbox.clone(),
    };
    // Checked again under the state's lock: a DeleteTopic or a Subscribe of the same endpoint
    // meanwhile wins, and this outbox goes.
    let added = sns.update(|s| {
        let name = sns.topic_name(&topic_arn).unwrap_or_default();
        if !s.topics.contains_key(name) {
            return Err(topic_not_found());
        }
        let same =
            |x: &&Subscription| x.topic_arn == topic_arn && x.protocol == sub.protocol && x.endpoint == sub.endpoint;
        if s.subscriptions.values().any(|x| same(&x)) {
            return Ok(false);
        }
        if s.subscriptions.len() >= SUBSCRIPTIONS_MAX {
            return Err(SnsError::new("SubscriptionLimitExceeded", 403, "The subscription quota is reached."));
        }
        s.subscriptions.insert(arn.clone(), sub.clone());
        Ok(true)
    });
    if !matches!(added, Ok(true)) {
        if let Some(outbox) = &outbox {
            sqs.delete_internal(outbox);
        }
        added?;
        return subscribe(sns, sqs, p, caller);
    }
    if let Some(outbox) = &outbox {
        super::publish::send_confirmation(sns, sqs, &sub, outbox, caller)?;
    }
    Ok(element("SubscriptionArn", if confirmed || return_arn { &arn } else { "pending confirmation" }))
}

/// The subscription of `endpoint` to `topic_arn` over `protocol`, if there is one; an error
/// when it has other attributes than `attributes`.
fn existing_subscription(
    sns: &Sns,
    topic_arn: &str,
    protocol: &str,
    endpoint: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<Option<Subscription>, SnsError> {
    let found = sns
        .subscriptions()
        .into_iter()
        .find(|s| s.topic_arn == topic_arn && s.protocol == protocol && s.endpoint == endpoint);
    let Some(existing) = found else { return Ok(None) };
    if attributes.iter().any(|(k, v)| existing.attributes.get(k) != Some(v)) {
        return Err(SnsError::invalid_parameter(
            "Invalid parameter: Attributes Reason: Subscription already exists with different attributes",
        ));
    }
    Ok(Some(existing))
}

/// A filter policy of scope `MessageAttributes` (the default) has no nested keys.
fn check_policy_scope(attributes: &BTreeMap<String, String>) -> Result<(), SnsError> {
    let Some(policy) = attributes.get("FilterPolicy").filter(|p| !p.is_empty()) else { return Ok(()) };
    if attributes.get("FilterPolicyScope").map(String::as_str) == Some("MessageBody") {
        return Ok(());
    }
    if filter::nested(policy) {
        return Err(SnsError::invalid_parameter(
            "Invalid parameter: Filter policy scope MessageAttributes does not support nested filter policy",
        ));
    }
    Ok(())
}

/// Confirms the subscription of `TopicArn` that `Token` was sent to.
pub fn confirm(sns: &Sns, p: &Params) -> Result<String, SnsError> {
    let topic_arn = p.required("TopicArn")?.to_owned();
    let token = p.required("Token")?.to_owned();
    topic(sns, &topic_arn)?;
    // Confirmed already (a link followed twice): nothing to write.
    if let Some(done) =
        sns.subscriptions().into_iter().find(|x| x.topic_arn == topic_arn && x.token == token && x.confirmed)
    {
        return Ok(element("SubscriptionArn", &done.arn));
    }
    let arn = sns.update(|s| {
        let sub = s
            .subscriptions
            .values_mut()
            .find(|x| x.topic_arn == topic_arn && x.token == token)
            .ok_or_else(|| SnsError::invalid_parameter("Invalid parameter: Token"))?;
        sub.confirmed = true;
        Ok(sub.arn.clone())
    })?;
    Ok(element("SubscriptionArn", &arn))
}

pub fn unsubscribe(sns: &Sns, sqs: &Sqs, p: &Params) -> Result<(), SnsError> {
    let arn = p.required("SubscriptionArn")?.to_owned();
    // arn:aws:sns:<region>:<account>:<topic>:<id>
    if arn.split(':').count() != 7 || !arn.starts_with("arn:aws:sns:") {
        return Err(SnsError::invalid_parameter("Invalid parameter: SubscriptionArn Reason: An ARN must have 7 parts"));
    }
    // Unsubscribing what is not subscribed is no error, as on SNS; nothing is written then.
    if subscription(sns, &arn).is_err() {
        return Ok(());
    }
    let gone = sns.update(|s| Ok(s.subscriptions.remove(&arn)))?;
    if let Some(outbox) = gone.and_then(|g| g.outbox) {
        sqs.delete_internal(&outbox);
    }
    Ok(())
}

pub fn list_subscriptions(sns: &Sns, p: &Params, topic_arn: Option<&str>) -> Result<String, SnsError> {
    if let Some(t) = topic_arn {
        topic(sns, t)?;
    }
    let subs: BTreeMap<String, Subscription> = sns
        .state
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .subscriptions
        .iter()
        .filter(|(_, s)| topic_arn.is_none_or(|t| s.topic_arn == t))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (page, next) = page(&subs, p.get("NextToken"))?;
    let members: String = page
        .iter()
        .map(|s| {
            format!(
                "<member>{}{}{}{}{}</member>",
                element("TopicArn", &s.topic_arn),
                element("Protocol", &s.protocol),
                element("SubscriptionArn", listed_arn(s)),
                element("Owner", &sns.account_id),
                element("Endpoint", &s.endpoint)
            )
        })
        .collect();
    Ok(format!("<Subscriptions>{members}</Subscriptions>{}", next.map_or(String::new(), |n| element("NextToken", &n))))
}

fn subscription(sns: &Sns, arn: &str) -> Result<Subscription, SnsError> {
    sns.state
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .subscriptions
        .get(arn)
        .cloned()
        .ok_or_else(|| SnsError::not_found("Subscription does not exist"))
}

pub fn get_subscription_attributes(sns: &Sns, p: &Params) -> Result<String, SnsError> {
    let s = subscription(sns, p.required("SubscriptionArn")?)?;
    let mut a: BTreeMap<String, String> = BTreeMap::new();
    a.insert("SubscriptionArn".into(), s.arn.clone());
    a.insert("TopicArn".into(), s.topic_arn.clone());
    a.insert("Owner".into(), sns.account_id.clone());
    a.insert("Protocol".into(), s.protocol.clone());
    a.insert("Endpoint".into(), s.endpoint.clone());
    a.insert("ConfirmationWasAuthenticated".into(), s.confirmed.to_string());
    a.insert("PendingConfirmation".into(), (!s.confirmed).to_string());
    a.insert("RawMessageDelivery".into(), "false".into());
    a.insert("SubscriptionPrincipal".into(), format!("arn:aws:iam::{}:root", sns.account_id));
    if s.protocol.starts_with("http") {
        a.insert("EffectiveDeliveryPolicy".into(), DEFAULT_HTTP_DELIVERY_POLICY.into());
    }
    for (k, v) in &s.attributes {
        if !v.is_empty() {
            a.insert(k.clone(), v.clone());
        }
    }
    if a.contains_key("FilterPolicy") {
        a.entry("FilterPolicyScope".into()).or_insert_with(|| "MessageAttributes".into());
    }
    Ok(format!("<Attributes>{}</Attributes>", entries(&a)))
}

pub fn set_subscription_attributes(sns: &Sns, sqs: &Sqs, p: &Params) -> Result<(), SnsError> {
    let arn = p.required("SubscriptionArn")?.to_owned();
    let name = p.required("AttributeName")?.to_owned();
    let value = p.get("AttributeValue").unwrap_or("").to_owned();
    subscription(sns, &arn)?;
    let stored = check_subscription_attribute(&name, &value, sqs)?;
    sns.update(|s| {
        let sub = s.subscriptions.get_mut(&arn).ok_or_else(|| SnsError::not_found("Subscription does not exist"))?;
        if stored.is_empty() {
            sub.attributes.remove(&name);
        } else {
            sub.attributes.insert(name.clone(), stored.clone());
        }
        check_policy_scope(&sub.attributes)
    })
}
