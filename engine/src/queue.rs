//! The delivery state of a Kinesis queue: which records of which shards were handed out,
//! are in flight until when, were acknowledged, or were dead-lettered.
//!
//! Kept compact because most records are acknowledged in order: per shard, a `cursor` (every
//! record below it was handed out at least once) and the exceptions below it that are not
//! yet acknowledged — in flight, visible again, or dead-lettered — in sorted maps. A record
//! below the cursor and in neither map is acknowledged. Acknowledged records leave the maps
//! at once, so the state holds only what is unresolved.
//!
//! The state knows nothing of logs or the wire: callers read records from the shard logs at
//! the positions it hands out, and persist it as they choose (it serializes with serde).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where one shard of one stream stands for a queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCursor {
    /// Every record below this was handed out at least once.
    pub cursor: u64,
    /// Records below the cursor not acknowledged and not dead-lettered, by sequence number.
    pub pending: BTreeMap<u64, Delivery>,
    /// Dead-lettered records, by sequence number.
    pub dead: BTreeMap<u64, Delivery>,
}

/// One record's deliveries so far, in the main queue or in the dead-letter area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Receives so far (in the dead-letter area: receives from it).
    pub receives: u32,
    /// First receive, ms since the Unix epoch (0 before any).
    pub first_receive_ms: u64,
    /// In flight until this time, ms; visible from then on.
    pub visible_at_ms: u64,
    /// Which receive the current receipt handle belongs to; a handle of an earlier receive
    /// is stale.
    pub attempt: u32,
}

/// Which area of the queue a record or handle is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Area {
    /// The queue.
    Main,
    /// The built-in dead-letter area.
    DeadLetter,
}

/// A record a receive hands out: where it is, and the receive it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handed {
    /// Stream and shard index.
    pub shard: (String, u32),
    /// Sequence number in the shard's log.
    pub sequence: u64,
    /// The delivery after this receive.
    pub delivery: Delivery,
}

/// Why an entry of an acknowledgement or visibility change failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryError {
    /// The handle is of an earlier receive, or its record was acknowledged, dead-lettered or
    /// restored since.
    Stale,
}

/// The delivery state of one queue over all its shards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueState {
    /// By (stream name, shard index); a list of entries in JSON, whose keys are strings.
    #[serde(with = "entries")]
    pub shards: BTreeMap<(String, u32), ShardCursor>,
}

/// A map with tuple keys as a list of (key, value) pairs.
mod entries {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ShardCursor;

    type Shards = BTreeMap<(String, u32), ShardCursor>;

    pub fn serialize<S: Serializer>(map: &Shards, s: S) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Shards, D::Error> {
        Ok(Vec::<((String, u32), ShardCursor)>::deserialize(d)?.into_iter().collect())
    }
}

impl QueueState {
    /// Records of the main queue visible at `now_ms` (pending and past their visibility
    /// time), oldest first across shards, at most `limit`: (shard, sequence number).
    pub fn visible(&self, now_ms: u64, limit: usize, area: Area) -> Vec<((String, u32), u64)> {
        let mut out: Vec<((String, u32), u64, u64)> = Vec::new();
        for (shard, c) in &self.shards {
            let map = match area {
                Area::Main => &c.pending,
                Area::DeadLetter => &c.dead,
            };
            out.extend(
                map.iter()
                    .filter(|(_, d)| d.visible_at_ms <= now_ms)
                    .map(|(s, d)| (shard.clone(), *s, d.visible_at_ms)),
            );
        }
        out.sort_by_key(|(_, s, at)| (*at, *s));
        out.into_iter().take(limit).map(|(shard, s, _)| (shard, s)).collect()
    }

    /// The earliest time a record of `area` in flight becomes visible again, if one is in flight.
    pub fn next_visible_ms(&self, now_ms: u64, area: Area) -> Option<u64> {
        self.shards
            .values()
            .flat_map(|c| match area {
                Area::Main => c.pending.values(),
                Area::DeadLetter => c.dead.values(),
            })
            .map(|d| d.visible_at_ms)
            .filter(|&at| at > now_ms)
            .min()
    }

    /// Hands out record `sequence` of `shard` (pending and visible, or the shard's cursor for
    /// a first delivery) for `visibility_ms`. A main-queue record that was already received
    /// `max_receives` times is dead-lettered instead (`None`), as SQS's redrive does.
    pub fn receive(
        &mut self,
        shard: &(String, u32),
        sequence: u64,
        now_ms: u64,
        visibility_ms: u64,
        max_receives: Option<u32>,
        area: Area,
    ) -> Option<Handed> {
        let c = self.shards.entry(shard.clone()).or_default();
        if area == Area::Main && sequence >= c.cursor {
            // A first delivery: records between the cursor and it were skipped (trimmed).
            c.cursor = sequence + 1;
            c.pending.insert(sequence, Delivery::default());
        }
        let map = match area {
            Area::Main => &mut c.pending,
            Area::DeadLetter => &mut c.dead,
        };
        let d = map.get_mut(&sequence)?;
        if area == Area::Main && max_receives.is_some_and(|m| d.receives >= m) {
            let dead =
                Delivery { receives: 0, first_receive_ms: 0, visible_at_ms: 0, attempt: d.attempt.wrapping_add(1) };
            c.pending.remove(&sequence);
            c.dead.insert(sequence, dead);
            return None;
        }
        // Saturating and wrapping: a record received 2^32 times stays countable, never a panic.
        d.receives = d.receives.saturating_add(1);
        d.attempt = d.attempt.wrapping_add(1);
        if d.first_receive_ms == 0 {
            d.first_receive_ms = now_ms;
        }
        d.visible_at_ms = now_ms.saturating_add(visibility_ms);
        Some(Handed { shard: shard.clone(), sequence, delivery: *d })
    }

    fn current(
        &mut self,
        area: Area,
        shard: &(String, u32),
        sequence: u64,
        attempt: u32,
    ) -> Result<&mut Delivery, EntryError> {
        let c = self.shards.get_mut(shard).ok_or(EntryError::Stale)?;
        let map = match area {
            Area::Main => &mut c.pending,
            Area::DeadLetter => &mut c.dead,
        };
        map.get_mut(&sequence).filter(|d| d.attempt == attempt).ok_or(EntryError::Stale)
    }

    /// Acknowledges the receive `attempt` of a record: it leaves the queue (or the
    /// dead-letter area) for good.
    pub fn acknowledge(
        &mut self,
        area: Area,
        shard: &(String, u32),
        sequence: u64,
        attempt: u32,
    ) -> Result<(), EntryError> {
        self.current(area, shard, sequence, attempt)?;
        let c = self.shards.get_mut(shard).expect("checked");
        match area {
            Area::Main => c.pending.remove(&sequence),
            Area::DeadLetter => c.dead.remove(&sequence),
        };
        Ok(())
    }

    /// Changes the visibility of the receive `attempt` of a record: visible again at
    /// `now_ms + visibility_ms` (0: at once).
    pub fn change_visibility(
        &mut self,
        area: Area,
        shard: &(String, u32),
        sequence: u64,
        attempt: u32,
        now_ms: u64,
        visibility_ms: u64,
    ) -> Result<(), EntryError> {
        let d = self.current(area, shard, sequence, attempt)?;
        d.visible_at_ms = now_ms.saturating_add(visibility_ms);
        Ok(())
    }

    /// Moves a dead-lettered record (receive `attempt` from the dead-letter area) back to the
    /// queue, visible at once with no receives.
    pub fn restore(&mut self, shard: &(String, u32), sequence: u64, attempt: u32) -> Result<(), EntryError> {
        let d = *self.current(Area::DeadLetter, shard, sequence, attempt)?;
        let c = self.shards.get_mut(shard).expect("checked");
        c.dead.remove(&sequence);
        c.pending.insert(sequence, Delivery { attempt: d.attempt.wrapping_add(1), ..Delivery::default() });
        Ok(())
    }

    /// Puts a record never handed out (at or past the cursor) aside until `visible_at_ms`,
    /// with no receives: a message sent with a delay (SQS's `DelaySeconds`). Records between
    /// the cursor and it are kept as pending and visible, so none is skipped. Returns the
    /// changes to journal.
    pub fn defer(&mut self, shard: &(String, u32), sequence: u64, visible_at_ms: u64) -> Vec<Change> {
        let passed = self.shards.get(shard).is_none_or(|c| sequence >= c.cursor);
        let skipped = self.pass_cursor(shard, sequence);
        let c = self.shards.entry(shard.clone()).or_default();
        let mut changed = passed;
        if let Some(d) = c.pending.get_mut(&sequence).filter(|d| d.receives == 0 && d.visible_at_ms != visible_at_ms) {
            d.visible_at_ms = visible_at_ms;
            changed = true;
        }
        // A record deferred again to the same time changes nothing, and journals nothing.
        if !changed {
            return Vec::new();
        }
        self.changes_after(shard, skipped, sequence)
    }

    /// Moves the cursor of `shard` past `sequence` when it is not yet; the records passed
    /// (with `sequence`) become pending, visible, never received. Returns those passed
    /// before `sequence`.
    fn pass_cursor(&mut self, shard: &(String, u32), sequence: u64) -> std::ops::Range<u64> {
        let c = self.shards.entry(shard.clone()).or_default();
        if sequence < c.cursor {
            return 0..0;
        }
        let skipped = c.cursor..sequence;
        for s in c.cursor..=sequence {
            c.pending.insert(s, Delivery::default());
        }
        c.cursor = sequence + 1;
        skipped
    }

    /// The changes of the records in `skipped` and of `sequence`, the cursor's last: a
    /// journal cut short anywhere before it leaves the cursor where it was.
    fn changes_after(&self, shard: &(String, u32), skipped: std::ops::Range<u64>, sequence: u64) -> Vec<Change> {
        let mut out: Vec<Change> = Vec::new();
        for s in skipped.chain(std::iter::once(sequence)) {
            let mut c = self.changes_for(shard, s);
            c.pop(); // its cursor line: one comes at the end
            out.extend(c);
        }
        out.push(Change::Cursor { shard: shard.clone(), cursor: self.shards.get(shard).map_or(0, |c| c.cursor) });
        out
    }

    /// Removes a record from the queue for good, whatever its receive: expired by the
    /// queue's retention, or moved to another queue. A record never handed out moves the
    /// cursor past it (the records between are kept pending, as [`QueueState::defer`] does).
    /// Returns the changes to journal.
    pub fn expire(&mut self, shard: &(String, u32), sequence: u64) -> Vec<Change> {
        let skipped = self.pass_cursor(shard, sequence);
        let c = self.shards.entry(shard.clone()).or_default();
        c.pending.remove(&sequence);
        c.dead.remove(&sequence);
        self.changes_after(shard, skipped, sequence)
    }

    /// Forgets records of `shard` below `first` (trimmed from its log by retention): the
    /// queue stops delivering them. Returns how many were dropped.
    pub fn drop_below(&mut self, shard: &(String, u32), first: u64) -> usize {
        let Some(c) = self.shards.get_mut(shard) else { return 0 };
        let before = c.pending.len() + c.dead.len();
        c.pending = c.pending.split_off(&first);
        c.dead = c.dead.split_off(&first);
        c.cursor = c.cursor.max(first);
        before - c.pending.len() - c.dead.len()
    }

    /// Counts: records received before and visible again now, in flight, dead-lettered.
    pub fn counts(&self, now_ms: u64) -> (usize, usize, usize) {
        let (mut visible, mut in_flight, mut dead) = (0, 0, 0);
        for c in self.shards.values() {
            for d in c.pending.values() {
                if d.visible_at_ms <= now_ms {
                    visible += 1;
                } else {
                    in_flight += 1;
                }
            }
            dead += c.dead.len();
        }
        (visible, in_flight, dead)
    }
}

/// One change of a [`QueueState`], as a journal records it between two snapshots: replaying
/// the changes since a snapshot onto it gives the state again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Record `sequence` of `shard` in `area` is now `delivery`.
    Set {
        /// Area.
        area: Area,
        /// Stream and shard.
        shard: (String, u32),
        /// Sequence number.
        sequence: u64,
        /// Its delivery.
        delivery: Delivery,
    },
    /// Record `sequence` of `shard` is no longer in `area`.
    Remove {
        /// Area.
        area: Area,
        /// Stream and shard.
        shard: (String, u32),
        /// Sequence number.
        sequence: u64,
    },
    /// The cursor of `shard` is `cursor`.
    Cursor {
        /// Stream and shard.
        shard: (String, u32),
        /// The cursor.
        cursor: u64,
    },
    /// Records of `shard` below `first` were dropped (trimmed from the log).
    DropBelow {
        /// Stream and shard.
        shard: (String, u32),
        /// The first retained sequence number.
        first: u64,
    },
}

impl QueueState {
    /// The changes that bring another copy of this state up to date for record `sequence`
    /// of `shard` (in both areas) and the shard's cursor, after an operation touched them.
    pub fn changes_for(&self, shard: &(String, u32), sequence: u64) -> Vec<Change> {
        let empty = ShardCursor::default();
        let c = self.shards.get(shard).unwrap_or(&empty);
        let mut out = Vec::with_capacity(3);
        for (area, map) in [(Area::Main, &c.pending), (Area::DeadLetter, &c.dead)] {
            out.push(match map.get(&sequence) {
                Some(d) => Change::Set { area, shard: shard.clone(), sequence, delivery: *d },
                None => Change::Remove { area, shard: shard.clone(), sequence },
            });
        }
        // The cursor last: a journal cut short after the record's line delivers it again
        // (at least once), where one cut after a cursor past it would have lost it.
        out.push(Change::Cursor { shard: shard.clone(), cursor: c.cursor });
        out
    }

    /// Applies one change.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Set { area, shard, sequence, delivery } => {
                let c = self.shards.entry(shard.clone()).or_default();
                match area {
                    Area::Main => c.pending.insert(*sequence, *delivery),
                    Area::DeadLetter => c.dead.insert(*sequence, *delivery),
                };
            }
            Change::Remove { area, shard, sequence } => {
                if let Some(c) = self.shards.get_mut(shard) {
                    match area {
                        Area::Main => c.pending.remove(sequence),
                        Area::DeadLetter => c.dead.remove(sequence),
                    };
                }
            }
            Change::Cursor { shard, cursor } => self.shards.entry(shard.clone()).or_default().cursor = *cursor,
            Change::DropBelow { shard, first } => {
                self.drop_below(shard, *first);
            }
        }
    }
}

/// What a receipt handle names: a queue (by incarnation), an area, a record and the receive
/// it belongs to. Signed like shard iterators (HMAC-SHA256, 16 bytes), with a secret kept
/// across restarts so handles held by consumers stay valid through one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptHandle {
    /// The queue's incarnation: a queue deleted and created again under its name refuses
    /// the old handles.
    pub queue: u64,
    /// Main queue or dead-letter area.
    pub area: Area,
    /// Stream name and shard index.
    pub shard: (String, u32),
    /// Sequence number in the shard's log.
    pub sequence: u64,
    /// The receive it belongs to ([`Delivery::attempt`]).
    pub attempt: u32,
}

const HANDLE_VERSION: u8 = 1;
const HANDLE_FIXED: usize = 1 + 1 + 8 + 4 + 8 + 4;
const HANDLE_TAG: usize = 16;

fn handle_tag(secret: &[u8], bytes: &[u8]) -> [u8; HANDLE_TAG] {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(bytes);
    mac.finalize().into_bytes()[..HANDLE_TAG].try_into().expect("16 bytes")
}

impl ReceiptHandle {
    /// The handle as text (URL-safe base64, at most 1,024 characters for stream names of
    /// up to 128 characters).
    pub fn encode(&self, secret: &[u8]) -> String {
        use base64::Engine as _;
        let mut b = Vec::with_capacity(HANDLE_FIXED + self.shard.0.len() + HANDLE_TAG);
        b.push(HANDLE_VERSION);
        b.push(match self.area {
            Area::Main => 0,
            Area::DeadLetter => 1,
        });
        b.extend_from_slice(&self.queue.to_le_bytes());
        b.extend_from_slice(&self.shard.1.to_le_bytes());
        b.extend_from_slice(&self.sequence.to_le_bytes());
        b.extend_from_slice(&self.attempt.to_le_bytes());
        b.extend_from_slice(self.shard.0.as_bytes());
        let t = handle_tag(secret, &b);
        b.extend_from_slice(&t);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// Checks and reads a handle; `None` unless this secret signed it.
    pub fn decode(text: &str, secret: &[u8]) -> Option<Self> {
        use base64::Engine as _;
        use hmac::Mac;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()?;
        if b.len() < HANDLE_FIXED + HANDLE_TAG || b[0] != HANDLE_VERSION {
            return None;
        }
        let (body, t) = b.split_at(b.len() - HANDLE_TAG);
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any size");
        mac.update(body);
        mac.verify_truncated_left(t).ok()?;
        Some(Self {
            area: if body[1] == 1 { Area::DeadLetter } else { Area::Main },
            queue: u64::from_le_bytes(body[2..10].try_into().ok()?),
            shard: (
                String::from_utf8(body[HANDLE_FIXED..].to_vec()).ok()?,
                u32::from_le_bytes(body[10..14].try_into().ok()?),
            ),
            sequence: u64::from_le_bytes(body[14..22].try_into().ok()?),
            attempt: u32::from_le_bytes(body[22..26].try_into().ok()?),
        })
    }
}

#[cfg(test)]
mod tests {
    //! The state machine against a reference model that keeps one row per record.
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_journal_cut_anywhere_in_a_receive_never_moves_the_cursor_past_a_record_it_does_not_hold() {
        let shard = ("clicks".to_owned(), 0);
        let before = QueueState::default();
        let mut state = before.clone();
        state.receive(&shard, 0, 1_000, 30_000, None, Area::Main).expect("a first delivery");
        let changes = state.changes_for(&shard, 0);
        for cut in 0..=changes.len() {
            let mut replayed = before.clone();
            changes[..cut].iter().for_each(|c| replayed.apply(c));
            let c = replayed.shards.get(&shard).cloned().unwrap_or_default();
            assert!(c.cursor == 0 || c.pending.contains_key(&0), "cut after {cut} of {changes:?}: {c:?}");
        }
    }

    #[test]
    fn deferred_and_expired_records_skip_none_and_replay_from_their_changes() {
        let shard = ("q".to_owned(), 0);
        let mut state = QueueState::default();
        let mut journal = state.defer(&shard, 2, 5_000);
        // Records 0 and 1, passed by the cursor, stay visible; 2 waits until 5 s.
        assert_eq!(state.visible(1_000, 10, Area::Main).len(), 2);
        assert_eq!(state.visible(5_000, 10, Area::Main).len(), 3);
        journal.extend(state.expire(&shard, 4));
        journal.extend(state.expire(&shard, 0));
        let c = &state.shards[&shard];
        assert_eq!(c.cursor, 5);
        assert_eq!(c.pending.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        let received = state.receive(&shard, 2, 6_000, 30_000, None, Area::Main).expect("visible at 6 s");
        assert_eq!(received.delivery.receives, 1);
        journal.extend(state.changes_for(&shard, 2));
        let mut replayed = QueueState::default();
        journal.iter().for_each(|c| replayed.apply(c));
        assert_eq!(replayed, state);
        // A journal cut anywhere in a deferral never leaves the cursor past a record it
        // does not hold.
        let mut fresh = QueueState::default();
        let changes = fresh.defer(&shard, 5, 9_000);
        for cut in 0..=changes.len() {
            let mut r = QueueState::default();
            changes[..cut].iter().for_each(|c| r.apply(c));
            let c = r.shards.get(&shard).cloned().unwrap_or_default();
            assert!((0..c.cursor).all(|s| c.pending.contains_key(&s)), "cut after {cut}: {c:?}");
        }
        // Deferred again to the same time: nothing to journal.
        assert!(fresh.defer(&shard, 5, 9_000).is_empty());
    }

    #[test]
    fn receipt_handles_round_trip_and_refuse_any_change() {
        let h =
            ReceiptHandle { queue: 9, area: Area::DeadLetter, shard: ("clicks".into(), 3), sequence: 41, attempt: 2 };
        let text = h.encode(b"secret");
        assert_eq!(ReceiptHandle::decode(&text, b"secret"), Some(h.clone()));
        assert_eq!(ReceiptHandle::decode(&text, b"other"), None);
        let mut bytes = text.into_bytes();
        for i in 0..bytes.len() {
            let orig = bytes[i];
            bytes[i] = if orig == b'A' { b'B' } else { b'A' };
            assert_eq!(ReceiptHandle::decode(std::str::from_utf8(&bytes).unwrap(), b"secret"), None, "change at {i}");
            bytes[i] = orig;
        }
        let long = ReceiptHandle { shard: ("s".repeat(128), 0), ..h };
        assert!(long.encode(b"k").len() <= 1024);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Receive up to n records (new ones from the log of `records` total).
        Receive(usize, u64),
        Ack(usize),
        Visibility(usize, u64),
        Tick(u64),
        ReceiveDead(usize),
        AckDead(usize),
        Restore(usize),
        /// Serialize and read back (a restart).
        Restart,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1usize..5, 0u64..3).prop_map(|(n, v)| Op::Receive(n, v)),
            (0usize..20).prop_map(Op::Ack),
            (0usize..20, 0u64..3).prop_map(|(i, v)| Op::Visibility(i, v)),
            (1u64..3).prop_map(Op::Tick),
            (1usize..3).prop_map(Op::ReceiveDead),
            (0usize..20).prop_map(Op::AckDead),
            (0usize..20).prop_map(Op::Restore),
            Just(Op::Restart),
        ]
    }

    /// One row per record: where it is, receives, visible-at, attempt.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Where {
        New,
        Pending,
        Dead,
        Acked,
    }

    proptest! {
        #[test]
        fn matches_a_row_per_record_model(ops in proptest::collection::vec(op(), 1..80)) {
            const RECORDS: u64 = 12;
            const MAX_RECEIVES: u32 = 2;
            let shard = ("s".to_string(), 0u32);
            let mut state = QueueState::default();
            let mut rows = vec![(Where::New, 0u32, 0u64, 0u32); RECORDS as usize];
            let mut now = 1u64;
            // Handles given out: (area, sequence, attempt).
            let mut handles: Vec<(Area, u64, u32)> = Vec::new();
            let mut snapshot = QueueState::default();
            for op in ops {
                match op {
                    Op::Receive(n, vis) => {
                        // Model: visible pending records by (visible_at, seq), then new ones.
                        let mut candidates: Vec<(u64, u64)> = rows.iter().enumerate()
                            .filter(|(_, r)| r.0 == Where::Pending && r.2 <= now)
                            .map(|(i, r)| (r.2, i as u64)).collect();
                        candidates.sort();
                        let mut picked: Vec<u64> = candidates.into_iter().map(|(_, s)| s).take(n).collect();
                        let c = state.shards.get(&shard).map_or(0, |c| c.cursor);
                        let mut next = c;
                        while picked.len() < n && next < RECORDS {
                            picked.push(next);
                            next += 1;
                        }
                        let mut got = state.visible(now, n, Area::Main).into_iter().map(|(_, s)| s).collect::<Vec<_>>();
                        let mut cursor = c;
                        while got.len() < n && cursor < RECORDS {
                            got.push(cursor);
                            cursor += 1;
                        }
                        prop_assert_eq!(&got, &picked);
                        for s in got {
                            let row = &mut rows[s as usize];
                            if row.0 == Where::New { row.0 = Where::Pending; }
                            let handed = state.receive(&shard, s, now, vis, Some(MAX_RECEIVES), Area::Main);
                            if row.1 >= MAX_RECEIVES {
                                prop_assert!(handed.is_none());
                                *row = (Where::Dead, 0, 0, row.3 + 1);
                            } else {
                                let h = handed.expect("handed out");
                                *row = (Where::Pending, row.1 + 1, now + vis, row.3 + 1);
                                prop_assert_eq!(h.delivery.attempt, row.3);
                                handles.push((Area::Main, s, row.3));
                            }
                        }
                    }
                    Op::ReceiveDead(n) => {
                        for (_, s) in state.visible(now, n, Area::DeadLetter) {
                            let h = state.receive(&shard, s, now, 1, None, Area::DeadLetter).expect("dead record");
                            let row = &mut rows[s as usize];
                            prop_assert_eq!(row.0, Where::Dead);
                            row.3 += 1;
                            prop_assert_eq!(h.delivery.attempt, row.3);
                            handles.push((Area::DeadLetter, s, row.3));
                        }
                    }
                    Op::Ack(i) | Op::AckDead(i) => {
                        let Some(&(area, s, attempt)) = handles.get(i) else { continue };
                        let row = &mut rows[s as usize];
                        let current = row.3 == attempt && row.0 == if area == Area::Main { Where::Pending } else { Where::Dead };
                        let r = state.acknowledge(area, &shard, s, attempt);
                        prop_assert_eq!(r.is_ok(), current, "ack {:?} of {} attempt {}", area, s, attempt);
                        if current { row.0 = Where::Acked; }
                    }
                    Op::Visibility(i, vis) => {
                        let Some(&(area, s, attempt)) = handles.get(i) else { continue };
                        let row = &mut rows[s as usize];
                        let current = row.3 == attempt && row.0 == if area == Area::Main { Where::Pending } else { Where::Dead };
                        let r = state.change_visibility(area, &shard, s, attempt, now, vis);
                        prop_assert_eq!(r.is_ok(), current);
                        if current && area == Area::Main { row.2 = now + vis; }
                    }
                    Op::Restore(i) => {
                        let Some(&(area, s, attempt)) = handles.get(i) else { continue };
                        let row = &mut rows[s as usize];
                        let current = area == Area::DeadLetter && row.3 == attempt && row.0 == Where::Dead;
                        let r = state.restore(&shard, s, attempt);
                        prop_assert_eq!(r.is_ok(), current);
                        if current { *row = (Where::Pending, 0, 0, row.3 + 1); }
                    }
                    Op::Tick(t) => now += t,
                    Op::Restart => {
                        let text = serde_json::to_string(&state).unwrap();
                        state = serde_json::from_str(&text).unwrap();
                    }
                }
                // The journal's changes for every record bring a snapshot up to date.
                let mut copy = snapshot.clone();
                for s in 0..RECORDS {
                    for change in state.changes_for(&shard, s) {
                        copy.apply(&change);
                    }
                }
                prop_assert_eq!(&copy.shards.get(&shard).cloned().unwrap_or_default(), &state.shards.get(&shard).cloned().unwrap_or_default());
                snapshot = copy;
                // Every record is where the model says, and nothing acknowledged is kept.
                let c = state.shards.get(&shard).cloned().unwrap_or_default();
                for (s, row) in rows.iter().enumerate() {
                    let s = s as u64;
                    let here = if c.pending.contains_key(&s) { Where::Pending }
                        else if c.dead.contains_key(&s) { Where::Dead }
                        else if s < c.cursor { Where::Acked } else { Where::New };
                    prop_assert_eq!(here, row.0, "record {}", s);
                }
            }
        }
    }
}
