//! `DescribeAccountSettings` and `UpdateAccountSettings`: the account's minimum throughput
//! billing commitment. Sluice bills nothing; the commitment is recorded and shown back with
//! AWS's dates (a commitment runs at least 24 hours once enabled), and kept across restarts
//! in `<data_dir>/streams/.account-settings.json`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{epoch_seconds, internal, respond, ApiError, ErrorKind, Kinesis};

/// Shortest commitment, ms: 24 hours ("Commitments have a minimum duration of 24 hours").
/// Source: AWS Kinesis API reference, `MinimumThroughputBillingCommitmentInput`.
pub const COMMITMENT_MS_MIN: u64 = 24 * 3600 * 1000;

/// The account's settings as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSettings {
    /// When the commitment was enabled, ms since the Unix epoch.
    pub started_ms: Option<u64>,
    /// When it was ended (or asked to end), ms.
    pub ended_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeRequest {}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateRequest {
    minimum_throughput_billing_commitment: Commitment,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Commitment {
    status: String,
}

impl Kinesis {
    fn account_file(&self) -> PathBuf {
        self.streams.dir().join(".account-settings.json")
    }

    /// The stored account settings (defaults when none were stored or the file is unreadable).
    pub fn account_settings(&self) -> AccountSettings {
        std::fs::read(self.account_file()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }
}

fn shape(s: &AccountSettings, now: u64) -> serde_json::Value {
    let Some(started) = s.started_ms else { return serde_json::json!({ "Status": "DISABLED" }) };
    let earliest = started + COMMITMENT_MS_MIN;
    let status = match s.ended_ms {
        None => "ENABLED",
        Some(_) if now < earliest => "ENABLED_UNTIL_EARLIEST_ALLOWED_END",
        Some(_) => "DISABLED",
    };
    let mut v = serde_json::json!({
        "Status": status,
        "StartedAt": epoch_seconds(started),
        "EarliestAllowedEndAt": epoch_seconds(earliest),
    });
    if let Some(ended) = s.ended_ms {
        v["EndedAt"] = epoch_seconds(ended.max(earliest)).into();
    }
    v
}

pub fn run_describe(k: &Kinesis, _: DescribeRequest) -> Result<Vec<u8>, ApiError> {
    let s = k.account_settings();
    respond(&serde_json::json!({ "MinimumThroughputBillingCommitment": shape(&s, k.clock.now_ms()) }))
}

pub fn run_update(k: &Kinesis, r: UpdateRequest) -> Result<Vec<u8>, ApiError> {
    let now = k.clock.now_ms();
    let mut s = k.account_settings();
    let active =
        s.started_ms.is_some() && s.ended_ms.is_none_or(|_| now < s.started_ms.unwrap_or(0) + COMMITMENT_MS_MIN);
    match r.minimum_throughput_billing_commitment.status.as_str() {
        "ENABLED" if s.started_ms.is_some() && s.ended_ms.is_none() => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "Minimum throughput billing commitment is already enabled for this account.",
            ))
        }
        "ENABLED" => s = AccountSettings { started_ms: Some(now), ended_ms: None },
        _ if !active || s.ended_ms.is_some() => {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                "Minimum throughput billing commitment is not enabled for this account.",
            ))
        }
        _ => s.ended_ms = Some(now),
    }
    let bytes = serde_json::to_vec(&s).map_err(internal)?;
    sluice_engine::stream::write_atomically(&k.account_file(), &bytes).map_err(internal)?;
    respond(&serde_json::json!({ "MinimumThroughputBillingCommitment": shape(&s, now) }))
}
