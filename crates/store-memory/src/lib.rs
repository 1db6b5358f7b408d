//! The embedded in-memory [`TransactionStore`]: the zero-setup default.
//!
//! Customers are spread over shards, each a mutex around a map of ledgers, so that customers on
//! different shards never wait for each other. Each operation holds one shard's lock for its
//! whole length and never across an `.await`, which is what makes `record` atomic per customer.
//!
//! Data lives as long as the process: a restart forgets everything. Use the Redis store when
//! history must survive restarts or be shared between instances.

mod buckets;

use std::collections::VecDeque;
use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use antifraud_domain::{
    Assessment, CommitOutcome, CustomerId, Fingerprint, Mills, Reception, RecordOutcome,
    StoreError, Transaction, TransactionId, TransactionStore, Window, WindowStat, WindowStats,
};
use async_trait::async_trait;
use time::OffsetDateTime;

use crate::buckets::{Buckets, Tally};

/// An event's key in a ledger: its timestamp, and its arrival among those of that timestamp.
type EventKey = (OffsetDateTime, u64);

/// Histories up to this many events are walked; longer ones are read from their buckets (see
/// [`Ledger::buckets`]).
const WALK_AT_MOST: usize = 64;

/// More shards than cores by far, so contention between customers is rare.
const SHARDS: usize = 64;

/// The in-memory store. Share it behind an `Arc`.
pub struct MemoryStore {
    shards: Box<[Mutex<HashMap<CustomerId, Ledger>>]>,
    hasher: RandomState,
}

/// One customer's retained history.
#[derive(Default)]
struct Ledger {
    /// Amounts by (timestamp, arrival sequence), in that order, so a window is a range. A sorted
    /// deque, not a `BTreeMap`: most customers hold one or two events, and a map's first node
    /// costs about 370 bytes where four slots here cost 128; events mostly arrive last and
    /// expire first, the two ends a deque is quick at.
    events: VecDeque<(EventKey, Mills)>,
    /// The same events counted by five-minute and hour bucket, kept once the history has grown
    /// past [`WALK_AT_MOST`] events: most customers never have them (three maps per customer
    /// would cost the embedded store a quarter more memory, measured).
    buckets: Option<Buckets>,
    /// Every retained transaction by id, for idempotency.
    transactions: HashMap<TransactionId, Recorded>,
    next_sequence: u64,
    /// The latest horizon pruned at: it never moves backwards, so a clock that goes back cannot
    /// bring a deleted transaction back as new.
    horizon: Option<OffsetDateTime>,
}

struct Recorded {
    fingerprint: Fingerprint,
    timestamp: OffsetDateTime,
    /// Boxed: a ledger's map of transactions holds a few empty slots for every full one (most
    /// customers have one transaction), and an assessment inline made each slot about 300
    /// bytes.
    assessment: Option<Box<Assessment>>,
}

// Every customer's map of transactions has a few slots per entry: they stay small (the answer
// lives behind a box). 385 MiB after 200,000 transactions with the answer inline, 261 boxed
// (233 with the events in a deque).
const _: () = assert!(std::mem::size_of::<Recorded>() <= 64);

impl Ledger {
    /// Forgets what is at or before `horizon`, or the latest horizon pruned at if that is later,
    /// and returns the horizon in force.
    fn prune(&mut self, horizon: OffsetDateTime) -> OffsetDateTime {
        let horizon = self.horizon.map_or(horizon, |kept| kept.max(horizon));
        // Every retained transaction has an event at its timestamp, so when the oldest event is
        // still inside the retention nothing has expired: the common case costs one lookup.
        let expired = self
            .events
            .front()
            .is_some_and(|&((oldest, _), _)| oldest <= horizon);
        if expired {
            // Keys at or before the horizon go, from the front.
            let count = self.position(Bound::Excluded((horizon, u64::MAX)));
            for ((at, _), amount) in self.events.drain(..count) {
                if let Some(buckets) = &mut self.buckets {
                    buckets.remove(at, amount);
                }
            }
            self.transactions.retain(|_, tx| tx.timestamp > horizon);
            self.horizon = Some(horizon);
        }
        horizon
    }

    /// Statistics at `at` over the retained events: a walk over them for a short history, the
    /// buckets and the windows' edges for a long one.
    fn stats_at(&self, at: OffsetDateTime) -> WindowStats {
        match &self.buckets {
            None => self.walk(at),
            Some(buckets) => WindowStats::from_windows(
                Window::ALL.map(|window| self.window(buckets, at - window.duration(), at)),
            ),
        }
    }

    /// Adds an event, to the buckets too once they are kept (built from every event the first
    /// time the history grows past [`WALK_AT_MOST`]).
    fn insert(&mut self, at: OffsetDateTime, amount: Mills) {
        let key = (at, self.next_sequence);
        self.next_sequence += 1;
        // Sequences only grow, so the key is new: after every key up to it.
        let position = self.position(Bound::Excluded(key));
        self.events.insert(position, (key, amount));
        match &mut self.buckets {
            Some(buckets) => buckets.add(at, amount),
            None if self.events.len() > WALK_AT_MOST => {
                let mut buckets = Buckets::default();
                for &((at, _), amount) in &self.events {
                    buckets.add(at, amount);
                }
                self.buckets = Some(buckets);
            }
            None => {}
        }
    }

    /// [`Self::stats_at`] by walking every event of the last 24 hours.
    fn walk(&self, at: OffsetDateTime) -> WindowStats {
        let range = (
            Bound::Excluded((at - Window::Hours24.duration(), u64::MAX)),
            Bound::Included((at, u64::MAX)),
        );
        WindowStats::aggregate(at, self.range(range).map(|&((t, _), a)| (t, a)))
    }

    /// Where an event with a key after `bound` would go: the number of events with keys up to
    /// `bound` (`Included`: at or before it; `Excluded`: before it).
    fn position(&self, bound: Bound<EventKey>) -> usize {
        match bound {
            Bound::Included(key) => self.events.partition_point(|(k, _)| *k <= key),
            Bound::Excluded(key) => self.events.partition_point(|(k, _)| *k < key),
            Bound::Unbounded => self.events.len(),
        }
    }

    /// The events with keys between two bounds (none when the bounds cross).
    fn range(
        &self,
        (low, high): (Bound<EventKey>, Bound<EventKey>),
    ) -> impl Iterator<Item = &(EventKey, Mills)> {
        // The first event after `low` is at the count of those up to it, inclusive or not.
        let start = match low {
            Bound::Included(key) => self.position(Bound::Excluded(key)),
            Bound::Excluded(key) => self.position(Bound::Included(key)),
            Bound::Unbounded => 0,
        };
        let end = self.position(high);
        self.events.range(start..end.max(start))
    }

    /// The events in `(lo, hi]`: those of the whole buckets inside, and the exact events at
    /// the two edges.
    fn window(&self, buckets: &Buckets, lo: OffsetDateTime, hi: OffsetDateTime) -> WindowStat {
        let mut tally = Tally::default();
        let mut events = |range: (Bound<EventKey>, Bound<EventKey>)| {
            for &(_, amount) in self.range(range) {
                tally.add(Tally::from(amount));
            }
        };
        let after_lo = Bound::Excluded((lo, u64::MAX));
        let through_hi = Bound::Included((hi, u64::MAX));
        match Buckets::inside(lo, hi) {
            None => events((after_lo, through_hi)),
            Some((first, last, start, end)) => {
                // Sequences start at 0: `(start, 0)` is the first key at `start`.
                events((after_lo, Bound::Excluded((start, 0))));
                // `end` may be one nanosecond past `hi`: then no event lies after the buckets.
                if end <= hi {
                    events((Bound::Included((end, 0)), through_hi));
                }
                tally.add(buckets.sum(first, last));
            }
        }
        tally.stat()
    }

    fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, customer: &CustomerId) -> MutexGuard<'_, HashMap<CustomerId, Ledger>> {
        let index = (self.hasher.hash_one(customer) % SHARDS as u64) as usize;
        // A poisoned lock means a panic while it was held. No code under these locks panics
        // between two writes that must go together, so the data is consistent: keep serving.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Deletes everything at or before `horizon` (now minus the retention), idle customers
    /// included. `record` prunes the customer it touches; call this periodically for the others.
    pub fn purge_expired(&self, horizon: OffsetDateTime) {
        for shard in &self.shards {
            let mut ledgers = shard.lock().unwrap_or_else(PoisonError::into_inner);
            ledgers.retain(|_, ledger| {
                ledger.prune(horizon);
                !ledger.is_empty()
            });
        }
    }

    /// How many customers have retained history.
    pub fn customer_count(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[async_trait]
impl TransactionStore for MemoryStore {
    async fn record(
        &self,
        tx: &Transaction,
        fingerprint: &Fingerprint,
        reception: &Reception,
    ) -> Result<RecordOutcome, StoreError> {
        let mut ledgers = self.shard(tx.customer_id());
        let ledger = ledgers.entry(tx.customer_id().clone()).or_default();
        let horizon = ledger.prune(reception.horizon);
        let known = ledger.transactions.contains_key(tx.transaction_id());
        // At or before the horizon in force, a transaction the store does not hold can only be
        // one it deleted: recording it again would count it twice.
        if !known && (!reception.accept_new || tx.timestamp() <= horizon) {
            // Too late to be new, and not a retry: nothing is recorded, no empty ledger kept.
            if ledger.is_empty() {
                ledgers.remove(tx.customer_id());
            }
            return Ok(RecordOutcome::TooLate);
        }
        let at = tx.timestamp();
        match ledger.transactions.entry(tx.transaction_id().clone()) {
            Entry::Occupied(seen) => {
                let seen = seen.get();
                if seen.fingerprint != *fingerprint {
                    return Ok(RecordOutcome::Conflict);
                }
                if let Some(assessment) = &seen.assessment {
                    return Ok(RecordOutcome::Replayed(Box::clone(assessment)));
                }
                // Recorded before but never assessed: count it once, as it already is.
            }
            Entry::Vacant(slot) => {
                slot.insert(Recorded {
                    fingerprint: *fingerprint,
                    timestamp: at,
                    assessment: None,
                });
                ledger.insert(at, tx.mills());
            }
        }
        Ok(RecordOutcome::Recorded(ledger.stats_at(at)))
    }

    /// The embedded store's calls finish before they return: none can take effect after the
    /// caller stopped waiting, so the deadline needs no check here.
    async fn commit(
        &self,
        tx: &Transaction,
        assessment: &Assessment,
        _deadline: Instant,
    ) -> Result<CommitOutcome, StoreError> {
        let mut ledgers = self.shard(tx.customer_id());
        let recorded = ledgers
            .get_mut(tx.customer_id())
            .and_then(|ledger| ledger.transactions.get_mut(tx.transaction_id()))
            .ok_or(StoreError::Lost)?;
        Ok(match recorded.assessment.as_deref() {
            Some(first) => CommitOutcome::AlreadySaved(first.clone()),
            None => {
                recorded.assessment = Some(Box::new(assessment.clone()));
                CommitOutcome::Saved
            }
        })
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use antifraud_store_conformance::{received, transaction};
    use time::Duration;
    use time::macros::datetime;

    /// The buckets must give exactly what walking the events gives: events in clusters at
    /// five-minute and hour edges (a nanosecond either side), amounts of any size, statistics
    /// taken at edges too, and prunes that take events out of the buckets.
    #[test]
    fn bucketed_statistics_equal_the_walk_over_every_event() {
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let base = datetime!(2026-11-25 00:00 UTC);
        let instant = |next: &mut dyn FnMut(u64) -> u64| {
            let edge = Duration::minutes(5 * next(12 * 30) as i64);
            let jitter = match next(4) {
                0 => Duration::ZERO,
                1 => Duration::nanoseconds(1),
                2 => -Duration::nanoseconds(1),
                _ => {
                    Duration::seconds(next(300) as i64)
                        + Duration::microseconds(next(1_000_000) as i64)
                }
            };
            base + edge + jitter
        };
        for round in 0..20 {
            let mut ledger = Ledger::default();
            for i in 0..(WALK_AT_MOST as u64 + 1 + next(600)) {
                let at = instant(&mut next);
                let amount = Mills(next(10_000_000) * if i % 50 == 0 { 1_000_000 } else { 1 });
                ledger.insert(at, amount);
            }
            assert!(ledger.buckets.is_some(), "a long history has its buckets");
            if round % 3 == 0 {
                ledger.prune(instant(&mut next) - Duration::hours(6));
            }
            for _ in 0..50 {
                let at = instant(&mut next);
                assert_eq!(
                    ledger.stats_at(at),
                    ledger.walk(at),
                    "round {round}, at {at}"
                );
            }
        }
    }

    #[tokio::test]
    async fn sweeping_deletes_idle_customers_once_their_history_expires() {
        let store = MemoryStore::new();
        let t0 = datetime!(2026-11-25 12:00 UTC);
        for (customer, at) in [("old", t0 - Duration::hours(2)), ("recent", t0)] {
            let tx = transaction(customer, "tx", 1.0, at);
            store
                .record(&tx, &Fingerprint::of(&tx), &received(at))
                .await
                .expect("recorded");
        }
        assert_eq!(store.customer_count(), 2);

        // The horizon moves up to, then past, each customer's only transaction.
        store.purge_expired(t0 - Duration::hours(2) - Duration::seconds(1));
        assert_eq!(store.customer_count(), 2, "nothing is at the horizon yet");
        store.purge_expired(t0 - Duration::hours(2));
        assert_eq!(
            store.customer_count(),
            1,
            "the idle customer is gone once the horizon reaches its history"
        );
        store.purge_expired(t0);
        assert_eq!(store.customer_count(), 0);
    }

    #[tokio::test]
    async fn a_transaction_too_late_to_be_new_leaves_no_empty_customer_behind() {
        let store = MemoryStore::new();
        let at = datetime!(2026-11-25 12:00 UTC);
        let tx = transaction("late", "tx", 1.0, at);
        let reception = Reception {
            accept_new: false,
            ..received(at + Duration::hours(30))
        };
        let outcome = store
            .record(&tx, &Fingerprint::of(&tx), &reception)
            .await
            .expect("answers");
        assert_eq!(outcome, RecordOutcome::TooLate);
        assert_eq!(store.customer_count(), 0);
    }
}
