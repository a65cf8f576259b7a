//! Model-based property test: random sequences of append, read, seek, trim, clock moves
//! and reopen, checked step by step against a plain in-memory model of the shard.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sluice_engine::{Clock, Durability, ManualClock, ReadError, ReadLimits, Record, ShardLog, StartingPosition};

use crate::support::{data, small, T0_MS};

#[derive(Debug, Clone)]
enum Op {
    /// A batch of (key number, data length).
    Append(Vec<(u8, usize)>),
    /// Read from the trim horizon plus `offset` (may be past the end).
    Read {
        offset: u64,
        max_records: usize,
        max_bytes: usize,
    },
    /// Seek the first record at or after the first retained timestamp plus `after_ms`.
    SeekTimestamp {
        after_ms: u64,
    },
    Advance(u64),
    StepBack(u64),
    Trim {
        retention_ms: u64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..6, 0usize..700), 1..12).prop_map(Op::Append),
        3 => (0u64..60, 1usize..40, 1usize..5_000)
            .prop_map(|(offset, max_records, max_bytes)| Op::Read { offset, max_records, max_bytes }),
        2 => (0u64..20_000).prop_map(|after_ms| Op::SeekTimestamp { after_ms }),
        2 => (0u64..5_000).prop_map(Op::Advance),
        1 => (0u64..5_000).prop_map(Op::StepBack),
        2 => (0u64..4_000).prop_map(|retention_ms| Op::Trim { retention_ms }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    seq: u64,
    ts: u64,
    key: String,
    data: Vec<u8>,
}

/// The shard as a plain vector: every record ever appended, and where retention cut it.
#[derive(Debug, Default)]
struct Model {
    records: Vec<Rec>,
    first: u64,
    last_ts: u64,
}

impl Model {
    fn next(&self) -> u64 {
        self.records.len() as u64
    }

    fn retained(&self) -> &[Rec] {
        &self.records[self.first as usize..]
    }
}

fn run(ops: Vec<Op>, durability: Durability) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0_MS));
    let options = small(clock.clone(), durability);
    let mut log = ShardLog::open(dir.path(), options.clone()).unwrap();
    let mut model = Model { last_ts: 0, ..Model::default() };
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append(batch) => {
                let base = model.next();
                let owned: Vec<(String, Vec<u8>)> = batch
                    .iter()
                    .enumerate()
                    .map(|(i, (k, len))| (format!("key-{k}"), data(base + i as u64, *len)))
                    .collect();
                let records: Vec<Record> = owned.iter().map(|(k, d)| Record { partition_key: k, data: d }).collect();
                let a = log.append(&records).unwrap();
                let ts = clock.now_ms().max(model.last_ts);
                prop_assert_eq!(a.sequence_numbers(), base..base + records.len() as u64, "step {}", step);
                prop_assert_eq!(a.arrival_timestamp_ms, ts);
                model.last_ts = ts;
                for (i, (key, data)) in owned.into_iter().enumerate() {
                    model.records.push(Rec { seq: base + i as u64, ts, key, data });
                }
            }
            Op::Read { offset, max_records, max_bytes } => {
                let from = model.first + offset;
                let result = log.read(from, ReadLimits { max_records, max_bytes });
                if from > model.next() {
                    prop_assert!(matches!(result, Err(ReadError::BeyondEnd { .. })), "step {}", step);
                    continue;
                }
                let batch = result.unwrap();
                let mut expected = Vec::new();
                let mut bytes = 0;
                for r in &model.records[from as usize..] {
                    let size = r.key.len() + r.data.len();
                    if expected.len() == max_records || (!expected.is_empty() && bytes + size > max_bytes) {
                        break;
                    }
                    bytes += size;
                    expected.push(r.clone());
                }
                let got: Vec<Rec> = batch
                    .iter()
                    .map(|r| Rec {
                        seq: r.sequence_number,
                        ts: r.arrival_timestamp_ms,
                        key: r.partition_key.to_owned(),
                        data: r.data.to_vec(),
                    })
                    .collect();
                prop_assert_eq!(batch.next_sequence_number(), from + expected.len() as u64);
                prop_assert_eq!(got, expected, "step {}", step);
            }
            Op::SeekTimestamp { after_ms } => {
                let base = model.retained().first().map_or(T0_MS, |r| r.ts);
                let target = base + after_ms;
                let expected = model.retained().iter().find(|r| r.ts >= target).map_or(model.next(), |r| r.seq);
                prop_assert_eq!(
                    log.position(StartingPosition::AtTimestamp(target)).unwrap(),
                    expected,
                    "step {}",
                    step
                );
            }
            Op::Advance(ms) => clock.advance(ms),
            Op::StepBack(ms) => clock.set(clock.now_ms().saturating_sub(ms)),
            Op::Trim { retention_ms } => {
                let cutoff = clock.now_ms().saturating_sub(retention_ms);
                let report = log.trim(Duration::from_millis(retention_ms)).unwrap();
                let first = log.bounds().first_sequence_number;
                prop_assert!(first >= model.first && first <= model.next());
                prop_assert_eq!(report.records_deleted, first - model.first);
                // Only records older than the cutoff may go; the retained part stays whole.
                for r in &model.records[model.first as usize..first as usize] {
                    prop_assert!(
                        r.ts < cutoff,
                        "step {}: trimmed record {} of ts {} >= cutoff {}",
                        step,
                        r.seq,
                        r.ts,
                        cutoff
                    );
                }
                model.first = first;
            }
            Op::Reopen => {
                drop(log);
                log = ShardLog::open(dir.path(), options.clone()).unwrap();
                prop_assert!(log.recovery().torn_tail.is_none(), "step {}: a clean close left a torn tail", step);
            }
        }
        let b = log.bounds();
        prop_assert_eq!(
            (b.first_sequence_number, b.next_sequence_number),
            (model.first, model.next()),
            "step {}",
            step
        );
        prop_assert_eq!(b.last_arrival_timestamp_ms, model.records.last().map(|r| r.ts));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn shard_log_behaves_like_its_model(
        ops in prop::collection::vec(op(), 1..60),
        durability in prop_oneof![Just(Durability::Never), Just(Durability::Always)],
    ) {
        run(ops, durability)?;
    }
}
