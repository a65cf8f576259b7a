//! The last minutes of every shard's counters, for the console's sparklines: sampled every
//! [`SAMPLE_EVERY`] by a task that starts with the first console call and stops once no call
//! came for [`IDLE_STOP`], so a server nobody watches samples nothing.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use crate::api::kinesis::stream_metrics::shard_counters;
use crate::server::AppState;

/// Time between samples: 10 s.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept per stream: 31 (five minutes of rates).
pub const SAMPLES_KEPT: usize = 31;
/// The sampler stops after this long without a console call: 15 minutes.
pub const IDLE_STOP: Duration = Duration::from_secs(15 * 60);

/// One sample of a stream: when (ms since the epoch, the server's clock) and, per shard index,
/// incoming bytes, incoming records, outgoing bytes, outgoing records.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When it was taken, ms.
    pub at_ms: u64,
    /// Counters by shard index.
    pub shards: HashMap<u32, [u64; 4]>,
}

/// The samples of every stream, by name and incarnation.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<HashMap<(String, u64), VecDeque<Sample>>>,
    running: AtomicBool,
    /// When the console was last used, ms since the process's first sample (monotonic).
    last_used_ms: AtomicU64,
}

impl History {
    /// Notes a console call, starting the sampler when it is not running.
    pub fn touch(&self, state: &Arc<AppState>) {
        self.last_used_ms.store(now_ms(), Relaxed);
        if self.running.swap(true, Relaxed) {
            return;
        }
        let weak: Weak<AppState> = Arc::downgrade(state);
        tokio::spawn(async move {
            loop {
                let Some(state) = weak.upgrade() else { return };
                let history = &state.console.history;
                if now_ms().saturating_sub(history.last_used_ms.load(Relaxed)) > IDLE_STOP.as_millis() as u64 {
                    history.running.store(false, Relaxed);
                    history.samples.lock().unwrap_or_else(PoisonError::into_inner).clear();
                    return;
                }
                history.sample(&state);
                drop(state);
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        });
    }

    /// Takes one sample of every stream, dropping streams that are gone.
    fn sample(&self, state: &AppState) {
        let at_ms = state.kinesis.clock.now_ms();
        let streams = state.kinesis.streams.list();
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        let live: std::collections::HashSet<(String, u64)> =
            streams.iter().map(|s| (s.meta().name.clone(), s.incarnation())).collect();
        samples.retain(|k, _| live.contains(k));
        for stream in &streams {
            let meta = stream.meta();
            if crate::api::kinesis::behind_delivery_stream(&meta.name) {
                continue;
            }
            let shards = shard_counters(stream)
                .into_iter()
                .map(|(index, c)| (index, [c.incoming_bytes, c.incoming_records, c.outgoing_bytes, c.outgoing_records]))
                .collect();
            let list = samples.entry((meta.name.clone(), stream.incarnation())).or_default();
            list.push_back(Sample { at_ms, shards });
            while list.len() > SAMPLES_KEPT {
                list.pop_front();
            }
        }
    }

    /// The samples of `stream` (this incarnation), oldest first.
    pub fn of(&self, name: &str, incarnation: u64) -> Vec<Sample> {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        samples.get(&(name.to_owned(), incarnation)).map(|l| l.iter().cloned().collect()).unwrap_or_default()
    }
}

fn now_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}
