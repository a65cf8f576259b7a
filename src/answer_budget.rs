//! The budget of record bytes that GetRecords answers hold until they are sent.
//!
//! A GetRecords answer holds up to 10 MiB of record data (about 14 MB of JSON) until the
//! client has read it, so twenty consumers replaying at once held 300 MB and more. Instead
//! of making a request wait, a read is sized to what the budget has left: an answer then
//! carries fewer records, as Kinesis' own answers often do (`MillisBehindLatest` tells the
//! consumer to call again at once). A read always gets at least [`GRANT_FLOOR_BYTES`], so
//! a consumer is never starved by others' unsent answers; the budget can be exceeded by
//! that floor per concurrent request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The least a read is granted (1 MiB), whatever the others hold. A read returns at least
/// one record even when it is larger than its grant.
pub const GRANT_FLOOR_BYTES: usize = 1 << 20;

/// Record bytes that unsent GetRecords answers may hold together.
#[derive(Debug)]
pub struct AnswerBudget {
    limit: usize,
    held: AtomicUsize,
}

impl AnswerBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, held: AtomicUsize::new(0) })
    }

    /// Grants up to `want` bytes: what the budget has left, but at least
    /// [`GRANT_FLOOR_BYTES`] (or `want` if smaller).
    pub fn grant(self: &Arc<Self>, want: usize) -> Grant {
        let mut held = self.held.load(Ordering::Relaxed);
        loop {
            let bytes = self.limit.saturating_sub(held).max(GRANT_FLOOR_BYTES).min(want);
            match self.held.compare_exchange_weak(held, held + bytes, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Grant { budget: self.clone(), bytes },
                Err(now) => held = now,
            }
        }
    }

    /// Bytes granted and not yet given back.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

/// Bytes granted from an [`AnswerBudget`], given back when dropped.
#[derive(Debug)]
pub struct Grant {
    budget: Arc<AnswerBudget>,
    bytes: usize,
}

impl Grant {
    /// The bytes granted.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keeps `used` bytes of the grant (the answer's real size, which may exceed the grant
    /// by one record) and gives the rest back at once.
    pub fn keep(&mut self, used: usize) {
        if used < self.bytes {
            self.budget.held.fetch_sub(self.bytes - used, Ordering::Relaxed);
        } else {
            self.budget.held.fetch_add(used - self.bytes, Ordering::Relaxed);
        }
        self.bytes = used;
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// An answer's body and the grant its records took, given back once the body is sent; the
/// body's buffer then goes back to [`ANSWER_BUFFERS`].
#[derive(Debug)]
pub struct HeldAnswer {
    body: Vec<u8>,
    /// Held as long as the body.
    _grant: Grant,
    /// The body's capacity as counted out in [`ANSWER_BUFFERS`].
    counted: usize,
}

impl HeldAnswer {
    /// Holds `body` (best taken from [`ANSWER_BUFFERS`]) and `grant` until dropped.
    pub fn new(body: Vec<u8>, grant: Grant) -> Self {
        let counted = ANSWER_BUFFERS.lend(&body);
        Self { body, _grant: grant, counted }
    }
}

impl AsRef<[u8]> for HeldAnswer {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

impl Drop for HeldAnswer {
    fn drop(&mut self) {
        ANSWER_BUFFERS.give(std::mem::take(&mut self.body), self.counted);
    }
}

/// The buffers of sent answers, kept for the next answers.
pub static ANSWER_BUFFERS: AnswerBuffers = AnswerBuffers::new();

/// Bytes of large answer buffers, out in answers and kept together, beyond which a sent
/// answer's buffer is freed instead of kept: 64 MiB, four answers of 10 MiB of records in
/// JSON. Counting the answers out keeps a replay by many consumers (whose answers are
/// already in memory) from holding a pool on top: with 5 consumers per shard of 4 shards a
/// pool of 64 MiB besides them peaked at 164 MiB of RSS, against 113 MiB without a pool.
pub const KEPT_BYTES_MAX: usize = 64 << 20;

/// The smallest buffer worth keeping: 1 MiB (smaller ones come from the allocator's caches).
pub const KEPT_BUFFER_BYTES_MIN: usize = 1 << 20;

/// How long a kept buffer waits for an answer before it is freed: 1 s, the allocator's own
/// delay before it gives freed pages back.
pub const KEPT_IDLE: Duration = Duration::from_secs(1);

/// Large answer buffers kept between answers: a replay writes answers of up to 14 MB one
/// after another, and each freshly allocated one faulted its pages in anew, zeroed by the
/// kernel (`clear_page_erms` and page faults were half the server's CPU in a 1 KiB replay on
/// the development VM, whose freed memory goes back to its host). A kept buffer's pages stay
/// mapped; [`AnswerBuffers::trim`] frees those unused for [`KEPT_IDLE`], so an idle server
/// holds none.
#[derive(Debug)]
pub struct AnswerBuffers {
    kept: Mutex<Vec<(Vec<u8>, Instant)>>,
    /// Capacity of the large buffers out in answers ([`AnswerBuffers::lend`]) and not given
    /// back yet.
    out: AtomicUsize,
}

impl Default for AnswerBuffers {
    fn default() -> Self {
        Self::new()
    }
}

impl AnswerBuffers {
    /// No buffers.
    pub const fn new() -> Self {
        Self { kept: Mutex::new(Vec::new()), out: AtomicUsize::new(0) }
    }

    /// An empty buffer of at least `capacity` bytes: the smallest kept one that is large
    /// enough, else a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        if capacity < KEPT_BUFFER_BYTES_MIN {
            return Vec::with_capacity(capacity);
        }
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let fit = (0..kept.len()).filter(|&i| kept[i].0.capacity() >= capacity).min_by_key(|&i| kept[i].0.capacity());
        match fit {
            Some(i) => kept.swap_remove(i).0,
            None => Vec::with_capacity(capacity),
        }
    }

    /// Counts `body` as out in an answer until [`AnswerBuffers::give`] gets it back with
    /// the count this returns (0 for a small buffer, which is neither counted nor kept).
    /// Counting where an answer is held, not where a buffer is taken, keeps the count exact
    /// whatever becomes of buffers that never become held answers.
    pub fn lend(&self, body: &Vec<u8>) -> usize {
        let capacity = body.capacity();
        if capacity < KEPT_BUFFER_BYTES_MIN {
            return 0;
        }
        self.out.fetch_add(capacity, Ordering::Relaxed);
        capacity
    }

    /// Gives back the body of an answer once it is sent, with the count
    /// [`AnswerBuffers::lend`] returned for it: kept for a later answer, emptied, unless it is
    /// small or the buffers out and kept would pass [`KEPT_BYTES_MAX`] with it.
    pub fn give(&self, mut buffer: Vec<u8>, counted: usize) {
        self.out.fetch_sub(counted, Ordering::Relaxed);
        let capacity = buffer.capacity();
        if capacity < KEPT_BUFFER_BYTES_MIN {
            return;
        }
        buffer.clear();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes: usize = kept.iter().map(|(b, _)| b.capacity()).sum::<usize>() + self.out.load(Ordering::Relaxed);
        if bytes + capacity <= KEPT_BYTES_MAX {
            kept.push((buffer, Instant::now()));
            return;
        }
        drop(kept);
    }

    /// Frees the buffers kept longer than `idle` ([`KEPT_IDLE`] on the server's
    /// once-a-second pass).
    pub fn trim(&self, idle: Duration) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let (stale, fresh): (Vec<_>, Vec<_>) = kept.drain(..).partition(|(_, since)| since.elapsed() >= idle);
        *kept = fresh;
        drop(kept);
        // Freed outside the lock: returning 14 MB to the allocator is not free.
        drop(stale);
    }

    /// Bytes kept now.
    pub fn kept_bytes(&self) -> usize {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(b, _)| b.capacity()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_buffers_are_reused_up_to_their_bound_and_freed_when_idle() {
        let buffers = AnswerBuffers::new();
        // An answer held, sent, and its buffer given back.
        let mut a = buffers.take(4 << 20);
        a.extend_from_slice(b"an answer");
        let pointer = a.as_ptr();
        let counted = buffers.lend(&a);
        assert_eq!(buffers.out.load(Ordering::Relaxed), 4 << 20);
        buffers.give(a, counted);
        assert_eq!((buffers.kept_bytes(), buffers.out.load(Ordering::Relaxed)), (4 << 20, 0));
        let b = buffers.take(3 << 20);
        assert_eq!((b.as_ptr(), b.len()), (pointer, 0), "the kept buffer, emptied");
        assert_eq!(buffers.kept_bytes(), 0);
        let c = buffers.take(8 << 20);
        assert_ne!(c.as_ptr(), pointer, "too small a kept buffer is not taken");
        let small = Vec::with_capacity(1000);
        let counted = buffers.lend(&small);
        buffers.give(small, counted);
        assert_eq!(buffers.kept_bytes(), 0, "small buffers are not kept");
        // A buffer taken but never held (dropped on another path) counts nothing.
        drop(buffers.take(10 << 20));
        // 12 MiB out in answers held (b and c) count against the bound.
        let (b_counted, c_counted) = (buffers.lend(&b), buffers.lend(&c));
        let held: Vec<(Vec<u8>, usize)> = (0..20)
            .map(|_| {
                let t = buffers.take(10 << 20);
                let n = buffers.lend(&t);
                (t, n)
            })
            .collect();
        held.into_iter().for_each(|(t, n)| buffers.give(t, n));
        assert_eq!(buffers.kept_bytes(), 50 << 20, "out and kept at most KEPT_BYTES_MAX");
        buffers.give(b, b_counted);
        buffers.give(c, c_counted);
        assert_eq!(buffers.out.load(Ordering::Relaxed), 0, "every lent buffer given back");
        buffers.trim(Duration::from_secs(60));
        assert_eq!(buffers.kept_bytes(), 62 << 20, "b and c kept too; none idle yet");
        buffers.trim(Duration::ZERO);
        assert_eq!(buffers.kept_bytes(), 0);
    }

    #[test]
    fn grants_shrink_to_what_is_left_but_never_below_the_floor() {
        let budget = AnswerBudget::new(10 << 20);
        let a = budget.grant(8 << 20);
        assert_eq!(a.bytes(), 8 << 20);
        let b = budget.grant(8 << 20);
        assert_eq!(b.bytes(), 2 << 20, "what is left");
        let c = budget.grant(8 << 20);
        assert_eq!(c.bytes(), GRANT_FLOOR_BYTES, "the floor, past the limit");
        assert_eq!(budget.grant(100).bytes(), 100, "never more than wanted");
        assert_eq!(budget.held(), (10 << 20) + GRANT_FLOOR_BYTES);
        drop((a, b, c));
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn keeping_less_gives_the_rest_back_and_more_is_counted() {
        let budget = AnswerBudget::new(10 << 20);
        let mut a = budget.grant(4 << 20);
        a.keep(1000);
        assert_eq!(budget.held(), 1000);
        a.keep(5 << 20);
        assert_eq!(budget.held(), 5 << 20);
        drop(a);
        assert_eq!(budget.held(), 0);
    }
}
