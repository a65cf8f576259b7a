//! `UpdateDestination`: merges an `ExtendedS3DestinationUpdate` into the destination when
//! `CurrentDeliveryStreamVersionId` is the current version, then bumps the version (which
//! is part of every object name from then on).

use crate::api::error::{ApiError, ErrorKind};
use serde::Deserialize;

use super::create::check_destination;
use super::{internal, invalid, respond, Firehose, DESTINATION_ID};
use sluice_firehose::spec::ExtendedS3DestinationUpdate;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    delivery_stream_name: String,
    current_delivery_stream_version_id: String,
    destination_id: String,
    extended_s3_destination_update: Option<ExtendedS3DestinationUpdate>,
    s3_destination_update: Option<ExtendedS3DestinationUpdate>,
    iceberg_destination_update: Option<sluice_firehose::spec::IcebergDestination>,
}

/// `UpdateDestination`; the schema and the transform are loaded on tokio's blocking pool.
pub async fn run(f: &Firehose, r: Request) -> Result<Vec<u8>, ApiError> {
    let entry = f.entry(&r.delivery_stream_name)?;
    let current = entry.spec();
    let version_mismatch = |current: &sluice_firehose::spec::DeliveryStreamSpec| {
        ApiError::new(
            ErrorKind::ConcurrentModification,
            format!(
                "Cannot update firehose: {} since the current version id: {} and specified version id: {} do not match",
                current.name, current.version, r.current_delivery_stream_version_id
            ),
        )
    };
    if r.current_delivery_stream_version_id != current.version.to_string() {
        return Err(version_mismatch(&current));
    }
    if r.destination_id != DESTINATION_ID {
        return Err(invalid(format!("Destination Id {} not found", r.destination_id)));
    }
    // Naming the conversion reads the schema file again even when the configuration is the
    // same: how a fixed schema is taken (AWS takes a Glue table's newest version by itself).
    let names_conversion =
        r.extended_s3_destination_update.as_ref().is_some_and(|u| u.0.data_format_conversion_configuration.is_some());
    let mut spec = current.clone();
    match (r.extended_s3_destination_update, r.s3_destination_update, r.iceberg_destination_update, &current.iceberg) {
        (Some(u), None, None, None) | (None, Some(u), None, None) => spec.destination.merge(u),
        (None, None, Some(u), Some(i)) => {
            let mut i = i.clone();
            i.merge(u);
            super::create::check_iceberg(&i)?;
            spec.destination = i.delivery();
            spec.iceberg = Some(i);
        }
        (None, None, None, _) => return Err(invalid("A destination update must be specified.")),
        (_, _, Some(_), None) => {
            return Err(invalid("IcebergDestinationUpdate applies to a Firehose stream with an Iceberg destination."))
        }
        (_, _, None, Some(_)) => {
            return Err(invalid("This Firehose stream has an Iceberg destination; use IcebergDestinationUpdate."))
        }
        _ => return Err(invalid("Exactly one destination update is supported for a Firehose")),
    }
    if current.destination.s3_backup_mode.as_deref() == Some("Enabled")
        && spec.destination.s3_backup_mode.as_deref() != Some("Enabled")
    {
        // AWS Firehose API reference, `ExtendedS3DestinationUpdate.S3BackupMode`.
        return Err(invalid("S3BackupMode cannot be changed from Enabled to Disabled."));
    }
    if spec.destination.dynamic_partitioning() != current.destination.dynamic_partitioning() {
        return Err(invalid(
            "Dynamic partitioning can only be enabled when the delivery stream is created and cannot be disabled.",
        ));
    }
    check_destination(&spec.destination, "extendedS3DestinationUpdate")?;
    spec.version += 1;
    spec.updated_ms = f.clock.now_ms();
    let same_conversion = spec.destination.data_format_conversion_configuration
        == current.destination.data_format_conversion_configuration;
    let (spec, transform) = f.load_files(spec, names_conversion || !same_conversion).await?;
    // Another update may have finished while the files loaded.
    let now_current = entry.spec();
    if now_current.version != current.version {
        return Err(version_mismatch(&now_current));
    }
    super::check_pipeline(&spec, &transform)?;
    f.delivery_streams.set_transform(&entry, transform);
    entry.update(|s| *s = spec).map_err(internal)?;
    respond(&serde_json::json!({}))
}
