//! A hostile transform, for the host's containment tests. The `mode` parameter picks what
//! it does with a batch:
//! - `loop`: never returns;
//! - `bomb`: allocates without end;
//! - `trap`: hits `unreachable`;
//! - `missing`: leaves the first record out of its answer;
//! - `duplicate`: answers for the first record twice;
//! - `clock`, `file`: reads the clock or a file, which the sandbox does not allow;
//! - anything else: passes records through.

use sluice_transform_guest::{Guest, Outcome, OutputRecord, Record};

struct Hostile;

fn echo(r: &Record) -> OutputRecord {
    OutputRecord {
        record_id: r.record_id.clone(),
        result: Outcome::Ok,
        data: r.data.clone(),
        partition_keys: Vec::new(),
    }
}

impl Guest for Hostile {
    fn transform(records: Vec<Record>, parameters: Vec<(String, String)>) -> Vec<OutputRecord> {
        let mode = parameters.iter().find(|(k, _)| k == "mode").map(|(_, v)| v.as_str()).unwrap_or("");
        match mode {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            "trap" => core::arch::wasm32::unreachable(),
            "missing" => records.iter().skip(1).map(echo).collect(),
            "duplicate" => records.first().map(echo).into_iter().chain(records.iter().map(echo)).collect(),
            "clock" => {
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
                records.iter().map(|r| OutputRecord { data: t.to_string().into_bytes(), ..echo(r) }).collect()
            }
            "file" => {
                let secret = std::fs::read("/etc/passwd").unwrap_or_default();
                records.iter().map(|r| OutputRecord { data: secret.clone(), ..echo(r) }).collect()
            }
            _ => records.iter().map(echo).collect(),
        }
    }
}

sluice_transform_guest::bindings::export!(Hostile with_types_in sluice_transform_guest::bindings);
