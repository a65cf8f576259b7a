//! Hostile components are contained: the batch's records fail with Firehose's codes, the
//! host serves the next batch, and nothing takes more than its deadline.

use std::time::{Duration, Instant};

use sluice_transforms::{Outcome, TransformLimits, DUPLICATED_RECORD_ID, FUNCTION_ERROR, MISSING_RECORD_ID};

use crate::guests::{inputs, load};

/// Short limits so a hostile batch costs a fraction of a second.
fn tight() -> TransformLimits {
    TransformLimits { memory_bytes: 16 << 20, deadline: Duration::from_millis(200), retries: 1 }
}

fn batch() -> Vec<sluice_transforms::InputRecord> {
    inputs(&[b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec(), b"{\"a\":3}".to_vec()])
}

fn codes(out: &[Outcome]) -> Vec<Option<&'static str>> {
    out.iter()
        .map(|o| match o {
            Outcome::Failed { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

#[test]
fn failing_invocations_fail_the_batch_after_retries_and_the_host_goes_on() {
    for mode in ["loop", "bomb", "trap", "clock", "file"] {
        let t = load("hostile", tight(), &[("mode", mode)]);
        let start = Instant::now();
        let out = t.process(&batch());
        let took = start.elapsed();
        assert_eq!(codes(&out), [Some(FUNCTION_ERROR); 3], "{mode}");
        for o in &out {
            let Outcome::Failed { attempts, message, .. } = o else { unreachable!() };
            assert_eq!(*attempts, 2, "{mode}: one try and one retry");
            assert!(message.contains("returned an error result"), "{mode}: {message}");
        }
        // Two invocations of at most 200 ms each, with room for a slow machine.
        assert!(took < Duration::from_secs(5), "{mode} took {took:?}");
        // The host serves the next batch.
        let ok = load("hostile", tight(), &[("mode", "echo")]).process(&batch());
        assert!(ok.iter().all(|o| matches!(o, Outcome::Ok { .. })), "{mode}");
    }
}

#[test]
fn a_timeout_names_itself() {
    let out = load("hostile", tight(), &[("mode", "loop")]).process(&batch());
    let Outcome::Failed { message, .. } = &out[0] else { panic!() };
    assert!(message.contains("timed out"), "{message}");
}

#[test]
fn missing_and_duplicated_record_ids_fail_those_records() {
    let out = load("hostile", tight(), &[("mode", "missing")]).process(&batch());
    assert_eq!(codes(&out), [Some(MISSING_RECORD_ID), None, None]);
    let out = load("hostile", tight(), &[("mode", "duplicate")]).process(&batch());
    assert_eq!(codes(&out), [Some(DUPLICATED_RECORD_ID), None, None]);
}
