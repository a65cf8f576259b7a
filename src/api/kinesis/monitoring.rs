//! Shard-level metrics of enhanced monitoring in `/metrics`: for each stream with
//! `EnableEnhancedMonitoring` on, one series per open shard of each metric turned on, named
//! after its CloudWatch metric (`IncomingBytes` → `sluice_kinesis_shard_incoming_bytes`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use super::Kinesis;
use sluice_engine::stream::shard_id;

/// CloudWatch's shard-level metric, the OpenMetrics family it is shown as, and its type.
const FAMILIES: [(&str, &str, &str); 7] = [
    ("IncomingBytes", "sluice_kinesis_shard_incoming_bytes", "counter"),
    ("IncomingRecords", "sluice_kinesis_shard_incoming_records", "counter"),
    ("OutgoingBytes", "sluice_kinesis_shard_outgoing_bytes", "counter"),
    ("OutgoingRecords", "sluice_kinesis_shard_outgoing_records", "counter"),
    ("WriteProvisionedThroughputExceeded", "sluice_kinesis_shard_write_provisioned_throughput_exceeded", "counter"),
    ("ReadProvisionedThroughputExceeded", "sluice_kinesis_shard_read_provisioned_throughput_exceeded", "counter"),
    ("IteratorAgeMilliseconds", "sluice_kinesis_shard_iterator_age_milliseconds", "gauge"),
];

impl Kinesis {
    /// The shard-level metrics turned on, as OpenMetrics text without the closing `# EOF`
    /// (the server puts them before it). Empty when no stream has enhanced monitoring on.
    pub fn render_shard_metrics(&self) -> String {
        let streams = self.streams.list();
        let mut out = String::new();
        for (metric, family, kind) in FAMILIES {
            let mut lines = String::new();
            for stream in &streams {
                let meta = stream.meta();
                if !meta.settings.shard_level_metrics.contains(metric) {
                    continue;
                }
                for s in meta.shards.iter().filter(|s| !s.closed) {
                    let Some(shard) = stream.shard(s.index) else { continue };
                    let (in_bytes, in_records) = shard.log.appended_totals();
                    let st = &shard.stats;
                    let value = match metric {
                        "IncomingBytes" => in_bytes,
                        "IncomingRecords" => in_records,
                        "OutgoingBytes" => st.outgoing_bytes.load(Relaxed),
                        "OutgoingRecords" => st.outgoing_records.load(Relaxed),
                        "WriteProvisionedThroughputExceeded" => st.write_throttled.load(Relaxed),
                        "ReadProvisionedThroughputExceeded" => st.read_throttled.load(Relaxed),
                        _ => st.iterator_age_ms.load(Relaxed),
                    };
                    let suffix = if kind == "counter" { "_total" } else { "" };
                    // Stream names are [a-zA-Z0-9_.-]: nothing to escape in a label value.
                    let _ = writeln!(
                        lines,
                        "{family}{suffix}{{stream=\"{}\",shard=\"{}\"}} {value}",
                        meta.name,
                        shard_id(s.index)
                    );
                }
            }
            if !lines.is_empty() {
                let _ = writeln!(out, "# TYPE {family} {kind}");
                let _ = writeln!(out, "# HELP {family} Kinesis shard-level metric {metric} (enhanced monitoring).");
                out.push_str(&lines);
            }
        }
        out
    }
}
