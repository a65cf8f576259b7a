//! `StartDeliveryStreamEncryption` and `StopDeliveryStreamEncryption`, and the
//! `DeliveryStreamEncryptionConfiguration` that `DescribeDeliveryStream` shows: ENABLING for
//! the server's transition time, then ENABLED; DISABLING, then DISABLED. The key is recorded
//! and shown back; Sluice does not encrypt its buffers on disk (the README says so).

use serde::Deserialize;

use super::{internal, invalid, respond, Firehose};
use crate::api::error::ApiError;
use sluice_firehose::spec::{DeliveryStreamSpec, EncryptionSpec, SourceSpec};

/// `DeliveryStreamEncryptionConfigurationInput`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionInput {
    #[serde(rename = "KeyARN")]
    key_arn: Option<String>,
    key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartRequest {
    delivery_stream_name: String,
    delivery_stream_encryption_configuration_input: Option<EncryptionInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopRequest {
    delivery_stream_name: String,
}

/// The encryption an input asks for, started at `now_ms`. Errors (`InvalidArgumentException`,
/// Firehose's rules): a customer managed key without its ARN, an ARN with an AWS owned key,
/// or a source other than DirectPut (Firehose encrypts only what producers put directly).
pub fn started(input: &EncryptionInput, source: &SourceSpec, now_ms: u64) -> Result<EncryptionSpec, ApiError> {
    if !matches!(source, SourceSpec::DirectPut) {
        return Err(invalid("Encryption is only supported for delivery streams with DirectPut as source."));
    }
    match (input.key_type.as_str(), &input.key_arn) {
        ("CUSTOMER_MANAGED_CMK", None) => {
            return Err(invalid("KeyARN must be specified when KeyType is CUSTOMER_MANAGED_CMK."))
        }
        ("AWS_OWNED_CMK", Some(_)) => {
            return Err(invalid("KeyARN must not be specified when KeyType is AWS_OWNED_CMK."))
        }
        _ => {}
    }
    Ok(EncryptionSpec {
        enabled: true,
        key_type: input.key_type.clone(),
        key_arn: input.key_arn.clone(),
        changed_ms: now_ms,
    })
}

impl Firehose {
    /// `DeliveryStreamEncryptionConfiguration` of `spec` now.
    pub fn encryption_shape(&self, spec: &DeliveryStreamSpec) -> serde_json::Value {
        let Some(e) = &spec.encryption else { return serde_json::json!({ "Status": "DISABLED" }) };
        let passing = self.clock.now_ms() < e.changed_ms.saturating_add(self.config.status_transition_ms);
        let status = match (e.enabled, passing) {
            (true, true) => "ENABLING",
            (true, false) => "ENABLED",
            (false, true) => "DISABLING",
            (false, false) => "DISABLED",
        };
        let mut v = serde_json::json!({ "Status": status, "KeyType": e.key_type });
        if let Some(arn) = &e.key_arn {
            v["KeyARN"] = arn.clone().into();
        }
        v
    }
}

pub fn run_start(f: &Firehose, r: StartRequest) -> Result<Vec<u8>, ApiError> {
    let entry = f.entry(&r.delivery_stream_name)?;
    let input = r
        .delivery_stream_encryption_configuration_input
        .unwrap_or(EncryptionInput { key_arn: None, key_type: "AWS_OWNED_CMK".into() });
    let spec = entry.spec();
    let encryption = started(&input, &spec.source, f.clock.now_ms())?;
    entry.update(|s| s.encryption = Some(encryption)).map_err(internal)?;
    respond(&serde_json::json!({}))
}

pub fn run_stop(f: &Firehose, r: StopRequest) -> Result<Vec<u8>, ApiError> {
    let entry = f.entry(&r.delivery_stream_name)?;
    let spec = entry.spec();
    if !matches!(spec.source, SourceSpec::DirectPut) {
        return Err(invalid("Encryption is only supported for delivery streams with DirectPut as source."));
    }
    let now = f.clock.now_ms();
    entry
        .update(|s| {
            if let Some(e) = &mut s.encryption {
                if e.enabled {
                    e.enabled = false;
                    e.changed_ms = now;
                }
            }
        })
        .map_err(internal)?;
    respond(&serde_json::json!({}))
}
