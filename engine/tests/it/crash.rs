//! Crash test: a child process appends with `Durability::Always` from several threads and
//! prints every acknowledgement; the parent kills it with SIGKILL at random moments,
//! reopens the log, and checks that every acknowledged record is there byte for byte and
//! that every record there is whole.
//!
//! The child is this same test binary, run again with `SLUICE_CRASH_CHILD_DIR` set: the
//! test function plays the child when the variable is there.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_engine::{Durability, Record, ShardLog, ShardLogOptions};

const CHILD_ENV: &str = "SLUICE_CRASH_CHILD_DIR";
const KILLS: usize = 50;
const THREADS: u64 = 4;

fn options() -> ShardLogOptions {
    ShardLogOptions {
        segment_bytes: 64 << 10,
        max_record_bytes: 8 << 10,
        durability: Durability::Always,
        ..ShardLogOptions::default()
    }
}

/// The payload of record `counter` of child thread `thread` in kill round `round`: it
/// names itself, so any record found can be checked whole.
fn payload(round: u64, thread: u64, counter: u64) -> Vec<u8> {
    let len = 24 + (counter * 389 + thread * 17) as usize % 3_000;
    let mut d = Vec::with_capacity(len);
    d.extend_from_slice(&round.to_le_bytes());
    d.extend_from_slice(&thread.to_le_bytes());
    d.extend_from_slice(&counter.to_le_bytes());
    d.extend((24..len).map(|i| (i as u64 ^ counter ^ (thread << 3) ^ round) as u8));
    d
}

fn check_payload(d: &[u8]) -> Option<(u64, u64, u64)> {
    if d.len() < 24 {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(d[i * 8..i * 8 + 8].try_into().unwrap());
    let (round, thread, counter) = (word(0), word(1), word(2));
    (payload(round, thread, counter) == d).then_some((round, thread, counter))
}

fn child(dir: &str, round: u64) {
    let log = Arc::new(ShardLog::open(dir, options()).expect("child opens the log"));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..THREADS)
        .map(|thread| {
            let (log, out) = (log.clone(), out.clone());
            std::thread::spawn(move || {
                for counter in (0u64..).step_by(8) {
                    let batch: Vec<Vec<u8>> =
                        (counter..counter + 1 + counter % 8).map(|c| payload(round, thread, c)).collect();
                    let key = format!("t{thread}");
                    let records: Vec<Record> = batch.iter().map(|d| Record { partition_key: &key, data: d }).collect();
                    let a = log.append(&records).expect("append");
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ack {} {} {thread} {counter}", a.first_sequence_number, a.record_count).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

/// A small xorshift generator: random kill moments, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_record() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let round = std::env::var("SLUICE_CRASH_ROUND").unwrap().parse().unwrap();
        return child(&dir, round);
    }
    let seed = std::env::var("SLUICE_CRASH_SEED")
        .map(|s| s.parse().unwrap())
        .unwrap_or_else(|_| SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    eprintln!("crash test seed {seed} (set SLUICE_CRASH_SEED to replay)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    // Sequence number -> (round, thread, counter) of every acknowledged record.
    let mut acked: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    let exe = std::env::current_exe().unwrap();
    let mut torn = 0;
    for round in 0..KILLS as u64 {
        let mut child = Command::new(&exe)
            .args(["crash::sigkill_at_random_moments_loses_no_acknowledged_record", "--exact", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, dir.path())
            .env("SLUICE_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines().map_while(Result::ok);
        // Kill only once appends are flowing, after a random further 0-15 ms.
        let first = lines.find(|l| l.starts_with("ack "));
        std::thread::sleep(Duration::from_micros(rng.below(15_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        for line in first.into_iter().chain(lines) {
            let Some(fields) = line.strip_prefix("ack ") else { continue };
            let f: Vec<u64> = fields.split(' ').map(|x| x.parse().unwrap()).collect();
            let [seq, count, thread, counter] = f[..] else { continue };
            for i in 0..count {
                acked.insert(seq + i, (round, thread, counter + i));
            }
        }

        let log = ShardLog::open(dir.path(), options()).unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
        torn += usize::from(log.recovery().torn_tail.is_some());
        let mut from = 0;
        let mut found = BTreeMap::new();
        loop {
            let batch = log.read(from, Default::default()).unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
            if batch.is_empty() {
                break;
            }
            for r in batch.iter() {
                let who = check_payload(r.data)
                    .unwrap_or_else(|| panic!("seed {seed}: record {} is torn", r.sequence_number));
                assert_eq!(r.partition_key, format!("t{}", who.1));
                found.insert(r.sequence_number, who);
            }
            from = batch.next_sequence_number();
        }
        for (seq, who) in &acked {
            assert_eq!(
                found.get(seq),
                Some(who),
                "seed {seed} round {round}: acknowledged record {seq} lost or changed"
            );
        }
        assert_eq!(found.len() as u64, log.bounds().next_sequence_number, "sequence numbers have no holes");
    }
    eprintln!("{KILLS} kills: {} acknowledged records, {torn} reopens cut a torn tail", acked.len());
    assert!(acked.len() > KILLS, "the children acknowledged too little to test anything ({})", acked.len());
}
