//! SQS series in `/metrics`, named after SQS's CloudWatch metrics: per queue (hidden ones
//! left out) `ApproximateNumberOfMessagesVisible` →
//! `sluice_sqs_approximate_number_of_messages_visible`, `...NotVisible`, `...Delayed`, and
//! `ApproximateAgeOfOldestMessage` (seconds). Source: Amazon SQS Developer Guide, "Available
//! CloudWatch metrics for Amazon SQS".

use std::fmt::Write as _;
use std::sync::PoisonError;

use sluice_engine::ReadLimits;

use super::{actions, internal, Sqs};

/// A gauge: its family, the CloudWatch metric it stands for, and its value in a row.
type Family = (&'static str, &'static str, fn(&Row) -> u64);

/// One queue's figures.
struct Row {
    name: String,
    visible: u64,
    not_visible: u64,
    delayed: u64,
    oldest_age_s: u64,
}

impl Sqs {
    /// Every queue's gauges as OpenMetrics text without the closing `# EOF`.
    pub fn render_metrics(&self) -> String {
        let now = self.clock.now_ms();
        let mut rows = Vec::new();
        for q in self.queues.list() {
            let (name, incarnation) = actions::name_and_incarnation(&q);
            if internal::is_hidden(&name) {
                continue;
            }
            let (visible, not_visible, delayed) = actions::counts(self, &q);
            // The oldest message still in the queue: the lowest pending record, or the cursor's.
            let oldest_seq = {
                let state = q.state.lock().unwrap_or_else(PoisonError::into_inner);
                state.shards.values().map(|c| c.pending.keys().next().copied().unwrap_or(c.cursor)).min()
            };
            let log = self.streams.get(&Sqs::stream_name(incarnation)).and_then(|s| s.log(0));
            let oldest_age_s = match (oldest_seq, log) {
                (Some(seq), Some(log)) if seq < log.readable_end() => log
                    .read(
                        seq.max(log.bounds().first_sequence_number),
                        ReadLimits { max_records: 1, ..ReadLimits::default() },
                    )
                    .ok()
                    .and_then(|b| b.iter().next().map(|r| now.saturating_sub(r.arrival_timestamp_ms) / 1000))
                    .unwrap_or(0),
                _ => 0,
            };
            rows.push(Row { name, visible, not_visible, delayed, oldest_age_s });
        }
        if rows.is_empty() {
            return String::new();
        }
        let families: [Family; 4] = [
            ("sluice_sqs_approximate_number_of_messages_visible", "ApproximateNumberOfMessagesVisible", |r| r.visible),
            ("sluice_sqs_approximate_number_of_messages_not_visible", "ApproximateNumberOfMessagesNotVisible", |r| {
                r.not_visible
            }),
            ("sluice_sqs_approximate_number_of_messages_delayed", "ApproximateNumberOfMessagesDelayed", |r| r.delayed),
            ("sluice_sqs_approximate_age_of_oldest_message_seconds", "ApproximateAgeOfOldestMessage", |r| {
                r.oldest_age_s
            }),
        ];
        let mut out = String::new();
        for (family, metric, value) in families {
            let _ = writeln!(out, "# TYPE {family} gauge");
            let _ = writeln!(out, "# HELP {family} SQS metric {metric}.");
            for r in &rows {
                // Queue names are [a-zA-Z0-9_-] and `.fifo`: nothing to escape in a label value.
                let _ = writeln!(out, "{family}{{queue=\"{}\"}} {}", r.name, value(r));
            }
        }
        out
    }
}
