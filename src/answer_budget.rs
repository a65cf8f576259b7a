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
use std::sync::Arc;

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

/// An answer's body and the grant its records took, given back once the body is sent.
#[derive(Debug)]
pub struct HeldAnswer {
    /// The encoded answer.
    pub body: Vec<u8>,
    /// The grant, held as long as the body.
    pub grant: Grant,
}

impl AsRef<[u8]> for HeldAnswer {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
