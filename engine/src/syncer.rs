//! The background sync of [`Durability::Interval`](crate::Durability::Interval) logs: one
//! scheduler thread for the whole process instead of one thread per shard log, so an idle
//! shard costs no thread (250 streams of 4 shards held over 1,000 threads before; issue 17).
//!
//! The scheduler wakes when the earliest log is due, and syncs the due logs that hold
//! unsynced records: itself when one does, on up to [`SYNC_THREADS_MAX`] scoped threads when
//! several do, so the logs' `fdatasync`s still overlap on the device as they did with a
//! thread each. Logs are held weakly: a dropped log leaves the schedule at the next wake-up.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::shard_log::Inner;

/// Threads syncing due logs at once, at most: 8.
pub const SYNC_THREADS_MAX: usize = 8;

#[derive(Debug)]
struct Entry {
    log: Weak<Inner>,
    every: Duration,
    due: Instant,
}

#[derive(Debug, Default)]
struct Schedule {
    logs: Mutex<Vec<Entry>>,
    changed: Condvar,
}

impl Schedule {
    fn logs(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The process's schedule; its thread starts with the first registration.
static SCHEDULE: Mutex<Option<Arc<Schedule>>> = Mutex::new(None);

/// Syncs `log` about every `every` from now on, for as long as it lives.
///
/// Errors: the scheduler thread could not be started (threads or memory exhausted); the
/// next registration tries again.
pub(crate) fn register(log: &Arc<Inner>, every: Duration) -> std::io::Result<()> {
    let schedule = {
        let mut global = SCHEDULE.lock().unwrap_or_else(PoisonError::into_inner);
        match &*global {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(Schedule::default());
                let worker = s.clone();
                std::thread::Builder::new().name("shard-log-sync".into()).spawn(move || run(&worker))?;
                *global = Some(s.clone());
                s
            }
        }
    };
    schedule.logs().push(Entry { log: Arc::downgrade(log), every, due: Instant::now() + every });
    schedule.changed.notify_one();
    Ok(())
}

fn run(schedule: &Schedule) {
    let mut logs = schedule.logs();
    loop {
        logs.retain(|e| e.log.strong_count() > 0);
        let now = Instant::now();
        match logs.iter().map(|e| e.due).min() {
            None => {
                logs = schedule.changed.wait(logs).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            Some(due) if due > now => {
                logs = schedule.changed.wait_timeout(logs, due - now).unwrap_or_else(PoisonError::into_inner).0;
                continue;
            }
            Some(_) => {}
        }
        let due: Vec<Arc<Inner>> = logs
            .iter_mut()
            .filter(|e| e.due <= now)
            .filter_map(|e| {
                e.due = now + e.every;
                e.log.upgrade()
            })
            .filter(|log| log.needs_sync())
            .collect();
        drop(logs);
        sync(&due);
        drop(due);
        logs = schedule.logs();
    }
}

/// Syncs `logs`, several at once when there are several. A failed sync is kept in the log's
/// commit state and reported to its appenders.
fn sync(logs: &[Arc<Inner>]) {
    let sync_each = |chunk: &[Arc<Inner>]| {
        for log in chunk {
            let _ = log.sync_all();
        }
    };
    if logs.len() <= 1 {
        return sync_each(logs);
    }
    let per_thread = logs.len().div_ceil(SYNC_THREADS_MAX);
    std::thread::scope(|scope| {
        for chunk in logs.chunks(per_thread) {
            let spawned =
                std::thread::Builder::new().name("shard-log-sync".into()).spawn_scoped(scope, move || sync_each(chunk));
            if spawned.is_err() {
                // No thread to spare: this one syncs the chunk itself.
                sync_each(chunk);
            }
        }
    });
}
