//! `IncreaseStreamRetentionPeriod` and `DecreaseStreamRetentionPeriod`.

use serde::Deserialize;

use super::{no_output, ApiError, ErrorKind, Kinesis, StreamTarget};

/// Shortest retention, hours: 24. Source: AWS Kinesis API reference.
pub const RETENTION_HOURS_MIN: i64 = 24;
/// Longest retention, hours: 8,760 (365 days). Source: AWS Kinesis API reference.
pub const RETENTION_HOURS_MAX: i64 = 8_760;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    #[serde(flatten)]
    target: StreamTarget,
    retention_period_hours: i64,
}

fn change(k: &Kinesis, r: Request, increase: bool) -> Result<Vec<u8>, ApiError> {
    let stream = k.stream_for_change(&r.target)?;
    let hours = r.retention_period_hours;
    if hours < RETENTION_HOURS_MIN {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("Minimum allowed retention period is {RETENTION_HOURS_MIN} hours. Requested retention period ({hours} hours) is too short."),
        ));
    }
    if hours > RETENTION_HOURS_MAX {
        return Err(ApiError::new(
            ErrorKind::InvalidArgument,
            format!("Maximum allowed retention period is {RETENTION_HOURS_MAX} hours. Requested retention period ({hours} hours) is too long."),
        ));
    }
    stream.update_meta(|meta| {
        let current = i64::from(meta.retention_hours);
        if increase && hours < current {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "Requested retention period ({hours} hours) for stream {} can not be shorter than existing retention period ({current} hours). Use DecreaseRetentionPeriod API.",
                    meta.name
                ),
            ));
        }
        if !increase && hours > current {
            return Err(ApiError::new(
                ErrorKind::InvalidArgument,
                format!(
                    "Requested retention period ({hours} hours) for stream {} can not be longer than existing retention period ({current} hours). Use IncreaseRetentionPeriod API.",
                    meta.name
                ),
            ));
        }
        meta.retention_hours = hours as u32;
        Ok(())
    })?;
    no_output()
}

pub fn run_increase(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    change(k, r, true)
}

pub fn run_decrease(k: &Kinesis, r: Request) -> Result<Vec<u8>, ApiError> {
    change(k, r, false)
}
