//! Kinesis series in `/metrics`: the shard-level metrics of enhanced monitoring (for each
//! stream with `EnableEnhancedMonitoring` on, one series per open shard of each metric turned
//! on, named after its CloudWatch metric: `IncomingBytes` →
//! `sluice_kinesis_shard_incoming_bytes`), and per queue its visible, in-flight and
//! dead-letter counts and the age of its oldest unacknowledged record.

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

/// A queue gauge: its name, help text, and its value in a row.
type QueueFamily = (&'static str, &'static str, fn(&QueueRow) -> u64);

/// One queue's counts for `/metrics`.
struct QueueRow {
    name: String,
    visible: usize,
    in_flight: usize,
    dead: usize,
    oldest: u64,
}

impl Kinesis {
    /// The shard-level metrics turned on, and every queue's counts, as OpenMetrics text
    /// without the closing `# EOF` (the server puts them before it).
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
        let listed: Vec<_> =
            streams.iter().filter(|s| !super::direct_put::behind_delivery_stream(&s.meta().name)).cloned().collect();
        out.push_str(&self.stream_metrics.render(&listed));
        out.push_str(&self.render_queue_metrics());
        if let Some(link) = self.cluster.get() {
            out.push_str(&link.peers.render_metrics());
            out.push_str(&self.render_replica_lag(link));
        }
        out
    }

    /// Per replica of each shard this node leads: how many records it lacks of the
    /// leader's log, as it last acknowledged (replication lag), as an OpenMetrics gauge.
    fn render_replica_lag(&self, link: &crate::cluster::ClusterLink) -> String {
        let mut lines = String::new();
        for stream in self.streams.list() {
            let (name, incarnation) = (stream.meta().name.clone(), stream.incarnation());
            for shard in 0..stream.meta().shards.len() as u32 {
                let Some(p) = link.placement(&name, incarnation, shard).filter(|p| p.leader == link.node_id) else {
                    continue;
                };
                let Some(log) = stream.log(shard) else { continue };
                let end = log.bounds().next_sequence_number;
                let ends: std::collections::HashMap<String, u64> =
                    link.peers.replica_ends(incarnation, shard, p.epoch).into_iter().collect();
                for node in p.replicas.iter().filter(|n| **n != link.node_id) {
                    let lag = end.saturating_sub(ends.get(node).copied().unwrap_or(0));
                    let _ = writeln!(
                        lines,
                        "sluice_cluster_replica_lag_records{{stream=\"{name}\",shard=\"{}\",replica=\"{node}\"}} {lag}",
                        shard_id(shard)
                    );
                }
            }
        }
        if lines.is_empty() {
            return lines;
        }
        format!(
            "# TYPE sluice_cluster_replica_lag_records gauge\n\
             # HELP sluice_cluster_replica_lag_records Records of the leader's log a replica of a shard this node leads has not acknowledged.\n{lines}"
        )
    }

    /// Per queue: records visible, in flight and dead-lettered, and the age of the oldest
    /// unacknowledged record (since it was first received), as OpenMetrics gauges.
    fn render_queue_metrics(&self) -> String {
        let queues = self.queues.list();
        if queues.is_empty() {
            return String::new();
        }
        let now = self.clock.now_ms();
        let mut rows = Vec::new();
        for q in &queues {
            let name = q.meta.read().unwrap_or_else(std::sync::PoisonError::into_inner).name.clone();
            let state = q.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (visible, in_flight, dead) = state.counts(now);
            let oldest = state
                .shards
                .values()
                .flat_map(|c| c.pending.values())
                .filter(|d| d.first_receive_ms > 0)
                .map(|d| now.saturating_sub(d.first_receive_ms))
                .max()
                .unwrap_or(0);
            rows.push(QueueRow { name, visible, in_flight, dead, oldest });
        }
        let mut out = String::new();
        let families: [QueueFamily; 4] = [
            ("sluice_kinesis_queue_visible_records", "Records received before and visible again", |r| r.visible as u64),
            ("sluice_kinesis_queue_in_flight_records", "Records received and not yet acknowledged", |r| {
                r.in_flight as u64
            }),
            ("sluice_kinesis_queue_dead_letter_records", "Records in the dead-letter area", |r| r.dead as u64),
            (
                "sluice_kinesis_queue_oldest_unacknowledged_age_milliseconds",
                "Time since the oldest unacknowledged record was first received",
                |r| r.oldest,
            ),
        ];
        for (family, help, value) in families {
            let _ = writeln!(out, "# TYPE {family} gauge");
            let _ = writeln!(out, "# HELP {family} {help}.");
            for r in &rows {
                // Queue names are [a-zA-Z0-9_.-]: nothing to escape in a label value.
                let _ = writeln!(out, "{family}{{queue=\"{}\"}} {}", r.name, value(r));
            }
        }
        out
    }
}
