//! When an acknowledged append is on disk: the durability policy, and group commit.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::error::IoError;
use crate::limits::SYNC_INTERVAL_MS_DEFAULT;
use crate::segment::SegmentMap;

/// When appended records reach the disk, and so what an acknowledgement promises.
///
/// Appends are copies into the page cache (`pwrite`); a sync (`fdatasync`) makes them
/// survive a power cut.
/// Every policy survives a crash of the Sluice process itself, since the page cache does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// An append returns only after its records are synced. Concurrent appenders share
    /// syncs (group commit): while one sync runs, later appends queue, and the next sync
    /// covers them all, so throughput grows with concurrency instead of paying 0.2–0.6 ms
    /// of `fdatasync` per request.
    Always,
    /// A background thread (one for the process) syncs every interval; a power cut loses
    /// at most about one interval of acknowledged records. The default, every 100 ms.
    Interval(Duration),
    /// Never sync explicitly; the kernel writes pages back when it chooses (about 30 s on
    /// Linux by default). For benchmarks and data that can be replayed from elsewhere.
    Never,
}

impl Default for Durability {
    fn default() -> Self {
        Self::Interval(Duration::from_millis(SYNC_INTERVAL_MS_DEFAULT))
    }
}

/// What one sync must write back: segments written since the last sync, and the shard
/// directory when a segment was created since then.
#[derive(Debug, Default)]
pub(crate) struct SyncWork {
    pub segments: Vec<Arc<SegmentMap>>,
    /// The shard directory and its open handle, when a segment was created since the last sync.
    pub dir: Option<(std::path::PathBuf, std::fs::File)>,
    /// Every sequence number below this is durable once the work is done.
    pub durable_next: u64,
}

impl SyncWork {
    fn run(&self) -> Result<(), IoError> {
        for map in &self.segments {
            map.sync()?;
        }
        if let Some((path, handle)) = &self.dir {
            handle.sync_all().map_err(|e| IoError::new(path, e))?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct CommitState {
    durable_next: u64,
    syncing: bool,
    failed: Option<Arc<IoError>>,
    /// Truncations of the log so far: a sync or a waiter that began before one cannot tell
    /// which records it covered.
    truncations: u64,
}

/// Why [`GroupCommit::wait_durable`] returned without its records being durable.
#[derive(Debug, Clone)]
pub(crate) enum NotDurable {
    /// A write or sync failed; the log acknowledges nothing more.
    Failed(Arc<IoError>),
    /// The log was truncated while the caller waited, so its records may be gone.
    Truncated,
}

/// Group commit: at most one sync runs at a time, and each covers everything appended
/// before it started.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<CommitState>,
    synced: Condvar,
}

impl GroupCommit {
    pub fn new(durable_next: u64) -> Self {
        Self {
            state: Mutex::new(CommitState { durable_next, syncing: false, failed: None, truncations: 0 }),
            synced: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CommitState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses every later acknowledgement, after a failed write.
    pub fn poison(&self, e: Arc<IoError>) {
        let mut state = self.lock();
        state.failed.get_or_insert(e);
        self.synced.notify_all();
    }

    /// Every sequence number below this is durable.
    pub fn durable_next(&self) -> u64 {
        self.lock().durable_next
    }

    /// The error of a failed write or sync, after which nothing more is acknowledged.
    pub fn failed(&self) -> Option<Arc<IoError>> {
        self.lock().failed.clone()
    }

    /// The log was truncated to end before `next`: nothing from `next` on is durable, and
    /// syncs and waiters that began before this learn that their records may be gone. Called
    /// under the writer's lock, like the appends whose truncation count it changes.
    pub fn truncate(&self, next: u64) {
        let mut state = self.lock();
        state.durable_next = state.durable_next.min(next);
        state.truncations += 1;
        self.synced.notify_all();
    }

    /// Returns once every sequence number below `target_next` is durable. `truncations` is
    /// the count of truncations the log had when the caller's records were appended (the
    /// writer keeps it); after another truncation the call answers
    /// [`NotDurable::Truncated`], even when the caller's records were below the cut. When no
    /// sync is under way, this caller leads one: `take_work` gathers what is unsynced (under
    /// the writer's lock), and the sync runs with no lock held.
    pub fn wait_durable(
        &self,
        target_next: u64,
        truncations: u64,
        take_work: impl FnOnce() -> SyncWork,
    ) -> Result<(), NotDurable> {
        let mut take_work = Some(take_work);
        let mut state = self.lock();
        loop {
            if let Some(e) = &state.failed {
                return Err(NotDurable::Failed(e.clone()));
            }
            if state.truncations != truncations {
                return Err(NotDurable::Truncated);
            }
            if state.durable_next >= target_next {
                return Ok(());
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.syncing = true;
            let began_after = state.truncations;
            drop(state);
            // A leader whose sync did not reach its target (appends raced ahead of its
            // snapshot) cannot happen: the writer appended `target_next` before we came here.
            let work = (take_work.take().expect("a caller leads at most once"))();
            let result = work.run();
            state = self.lock();
            state.syncing = false;
            match result {
                // A sync that began before a truncation may have covered frames that are gone.
                Ok(()) if state.truncations == began_after => {
                    state.durable_next = state.durable_next.max(work.durable_next)
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(error = %e, "shard log sync failed; refusing further appends");
                    state.failed = Some(Arc::new(e));
                }
            }
            self.synced.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(durable_next: u64) -> SyncWork {
        SyncWork { durable_next, ..SyncWork::default() }
    }

    #[test]
    fn a_sync_that_began_before_a_truncation_makes_nothing_durable() {
        let commit = GroupCommit::new(0);
        // The sync's work was gathered for 10 records; the log is cut to 3 while it runs.
        let r = commit.wait_durable(10, 0, || {
            commit.truncate(3);
            work(10)
        });
        assert!(matches!(r, Err(NotDurable::Truncated)), "{r:?}");
        assert_eq!(commit.durable_next(), 0);
        // Appends after the cut wait for a sync of their own.
        commit.wait_durable(5, 1, || work(5)).unwrap();
        assert_eq!(commit.durable_next(), 5);
    }

    #[test]
    fn a_truncation_lowers_what_is_durable_and_tells_earlier_waiters() {
        let commit = GroupCommit::new(0);
        commit.wait_durable(8, 0, || work(8)).unwrap();
        commit.truncate(4);
        assert_eq!(commit.durable_next(), 4);
        assert!(matches!(commit.wait_durable(8, 0, || work(8)), Err(NotDurable::Truncated)));
        commit.wait_durable(4, 1, || unreachable!("nothing to sync")).unwrap();
    }
}
