//! Delivery metrics, in the Prometheus text format at the server's `/metrics`.
//!
//! Names follow Firehose's CloudWatch metrics (`IncomingRecords`, `DeliveryToS3.Records`,
//! `DeliveryToS3.Success`, `DeliveryToS3.DataFreshness`, ...) in Prometheus' snake case,
//! with the delivery stream as a label.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The label of every metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// Delivery stream name.
    pub delivery_stream: String,
}

/// Labels of failed records.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// Delivery stream name.
    pub delivery_stream: String,
    /// Error output type (`processing-failed`, `format-conversion-failed`, ...).
    pub error_output_type: String,
}

/// Every delivery metric.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Records taken by PutRecord / PutRecordBatch.
    pub incoming_records: Family<StreamLabel, Counter>,
    /// Bytes taken by PutRecord / PutRecordBatch.
    pub incoming_bytes: Family<StreamLabel, Counter>,
    /// Records landed in delivered objects.
    pub delivered_records: Family<StreamLabel, Counter>,
    /// Bytes of objects landed (after conversion and compression).
    pub delivered_bytes: Family<StreamLabel, Counter>,
    /// Objects written successfully.
    pub delivery_success: Family<StreamLabel, Counter>,
    /// Object writes that failed (and were retried).
    pub delivery_failures: Family<StreamLabel, Counter>,
    /// Records a transform dropped.
    pub dropped_records: Family<StreamLabel, Counter>,
    /// Records sent to the error output prefix.
    pub failed_records: Family<ErrorLabel, Counter>,
    /// Age of the oldest record not yet landed, ms (0 when all are landed).
    pub data_freshness_ms: Family<StreamLabel, Gauge<u64, AtomicU64>>,
    /// Bytes of source records read and buffered, not yet delivered.
    pub buffered_bytes: Family<StreamLabel, Gauge<u64, AtomicU64>>,
    /// Records replays read and delivered again ([`crate::tasks`]).
    pub replayed_records: Family<StreamLabel, Counter>,
    /// Records redrives put back from the error output.
    pub redriven_records: Family<StreamLabel, Counter>,
    /// Records running replays have still to deliver.
    pub replay_remaining_records: Family<StreamLabel, Gauge<u64, AtomicU64>>,
    /// Error objects running redrives have still to put back.
    pub redrive_remaining_objects: Family<StreamLabel, Gauge<u64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice_firehose");
        let m = Self {
            incoming_records: Family::default(),
            incoming_bytes: Family::default(),
            delivered_records: Family::default(),
            delivered_bytes: Family::default(),
            delivery_success: Family::default(),
            delivery_failures: Family::default(),
            dropped_records: Family::default(),
            failed_records: Family::default(),
            data_freshness_ms: Family::default(),
            buffered_bytes: Family::default(),
            replayed_records: Family::default(),
            redriven_records: Family::default(),
            replay_remaining_records: Family::default(),
            redrive_remaining_objects: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "incoming_records",
            "Records taken by PutRecord and PutRecordBatch",
            m.incoming_records.clone(),
        );
        registry.register("incoming_bytes", "Bytes taken by PutRecord and PutRecordBatch", m.incoming_bytes.clone());
        registry.register("delivery_to_s3_records", "Records landed in delivered objects", m.delivered_records.clone());
        registry.register("delivery_to_s3_bytes", "Bytes of delivered objects", m.delivered_bytes.clone());
        registry.register("delivery_to_s3_success", "Objects written", m.delivery_success.clone());
        registry.register(
            "delivery_to_s3_failures",
            "Object writes that failed and were retried",
            m.delivery_failures.clone(),
        );
        registry.register("dropped_records", "Records a transform dropped", m.dropped_records.clone());
        registry.register("failed_records", "Records sent to the error output prefix", m.failed_records.clone());
        registry.register(
            "delivery_to_s3_data_freshness_ms",
            "Age of the oldest record not yet landed, ms",
            m.data_freshness_ms.clone(),
        );
        registry.register(
            "buffered_bytes",
            "Bytes of source records buffered and not yet delivered",
            m.buffered_bytes.clone(),
        );
        registry.register("replay_records", "Records replays delivered again", m.replayed_records.clone());
        registry.register(
            "redrive_records",
            "Records redrives put back from the error output",
            m.redriven_records.clone(),
        );
        registry.register(
            "replay_remaining_records",
            "Records running replays have still to deliver",
            m.replay_remaining_records.clone(),
        );
        registry.register(
            "redrive_remaining_objects",
            "Error objects running redrives have still to put back",
            m.redrive_remaining_objects.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// The label of delivery stream `name`.
    pub fn label(name: &str) -> StreamLabel {
        StreamLabel { delivery_stream: name.to_owned() }
    }

    /// Drops every series of delivery stream `name` (it was deleted).
    pub fn forget(&self, name: &str) {
        let label = Self::label(name);
        for family in [
            &self.incoming_records,
            &self.incoming_bytes,
            &self.delivered_records,
            &self.delivered_bytes,
            &self.delivery_success,
            &self.delivery_failures,
            &self.dropped_records,
            &self.replayed_records,
            &self.redriven_records,
        ] {
            family.remove(&label);
        }
        self.data_freshness_ms.remove(&label);
        self.buffered_bytes.remove(&label);
        self.replay_remaining_records.remove(&label);
        self.redrive_remaining_objects.remove(&label);
        for t in crate::error_output::ERROR_OUTPUT_TYPES {
            self.failed_records
                .remove(&ErrorLabel { delivery_stream: name.to_owned(), error_output_type: t.to_owned() });
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
