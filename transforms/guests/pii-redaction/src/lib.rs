//! The pii-redaction example transform as a component: `sluice_example_transforms::redaction`.

use sluice_example_transforms::Verdict;
use sluice_transform_guest::{Output, Parameters, Record};

fn transform(record: &Record, _: &Parameters) -> Output {
    match sluice_example_transforms::redaction::transform(&record.data) {
        Verdict::Ok { data, partition_keys } => Output::Ok { data, partition_keys },
        Verdict::Dropped => Output::Dropped,
        Verdict::Failed(m) => Output::Failed(m),
    }
}

sluice_transform_guest::transform!(transform);
