//! Counts and sums of a customer's events by five-minute and by hour bucket of event time, so
//! that a window is the exact events at its two edges plus whole buckets in between: a busy
//! customer's statistics cost about as much as a new customer's, not a walk over 24 hours of
//! their history (about 400 µs at 5,000 events, measured by `cargo xtask bench`). The Redis
//! store keeps the same two sizes of bucket for the same reason (`record.lua`).

use std::collections::BTreeMap;

use antifraud_domain::{Mills, WindowStat};
use time::OffsetDateTime;

/// A fine bucket's length in nanoseconds (five minutes).
const FINE: i128 = 300 * 1_000_000_000;
/// Fine buckets per coarse bucket (an hour).
const PER_COARSE: i128 = 12;

/// How many transactions, and their amounts' sum in mills.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    pub(crate) mills: u128,
}

impl Tally {
    pub(crate) fn add(&mut self, other: Tally) {
        self.count += other.count;
        self.mills += other.mills;
    }

    pub(crate) fn stat(self) -> WindowStat {
        WindowStat::exact(self.count, self.mills)
    }
}

impl From<Mills> for Tally {
    fn from(amount: Mills) -> Self {
        Tally {
            count: 1,
            mills: u128::from(amount.0),
        }
    }
}

/// The buckets of one customer's retained events. Bucket `k` holds the events in
/// `[k × 5 min, (k + 1) × 5 min)` of Unix time; hour `c` holds five-minute buckets `12c` to
/// `12c + 11`.
#[derive(Debug, Default)]
pub(crate) struct Buckets {
    fine: BTreeMap<i128, Tally>,
    coarse: BTreeMap<i128, Tally>,
}

/// The fine bucket an event time falls in.
fn bucket(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos().div_euclid(FINE)
}

impl Buckets {
    /// Counts an event.
    pub(crate) fn add(&mut self, at: OffsetDateTime, amount: Mills) {
        let k = bucket(at);
        for (map, key) in [
            (&mut self.fine, k),
            (&mut self.coarse, k.div_euclid(PER_COARSE)),
        ] {
            map.entry(key).or_default().add(Tally::from(amount));
        }
    }

    /// Forgets an event counted before.
    pub(crate) fn remove(&mut self, at: OffsetDateTime, amount: Mills) {
        let k = bucket(at);
        for (map, key) in [
            (&mut self.fine, k),
            (&mut self.coarse, k.div_euclid(PER_COARSE)),
        ] {
            if let Some(tally) = map.get_mut(&key) {
                tally.count = tally.count.saturating_sub(1);
                tally.mills = tally.mills.saturating_sub(u128::from(amount.0));
                if tally.count == 0 {
                    map.remove(&key);
                }
            }
        }
    }

    /// The whole buckets of the window `(lo, hi]`: the first and the last fine bucket that lie
    /// entirely inside it, with their start and end times (`None` when no bucket does, or at
    /// the edge of representable time). The window's events are then those in `(lo, start)`,
    /// the buckets', and those in `[end, hi]`.
    pub(crate) fn inside(
        lo: OffsetDateTime,
        hi: OffsetDateTime,
    ) -> Option<(i128, i128, OffsetDateTime, OffsetDateTime)> {
        // Bucket k lies inside when k × F > lo and (k + 1) × F - 1 <= hi (nanoseconds).
        let first = lo.unix_timestamp_nanos().div_euclid(FINE) + 1;
        let last = (hi.unix_timestamp_nanos() + 1).div_euclid(FINE) - 1;
        if first > last {
            return None;
        }
        let start = OffsetDateTime::from_unix_timestamp_nanos(first * FINE).ok()?;
        let end = OffsetDateTime::from_unix_timestamp_nanos((last + 1) * FINE).ok()?;
        Some((first, last, start, end))
    }

    /// The events of fine buckets `first..=last`, whole hours read from the hour buckets.
    pub(crate) fn sum(&self, first: i128, last: i128) -> Tally {
        let mut tally = Tally::default();
        let mut fine = |from: i128, to: i128| {
            // Empty when the hours start or end exactly at `first` or `last` (and a range that
            // starts after it ends would panic).
            if from > to {
                return;
            }
            for (_, bucket) in self.fine.range(from..=to) {
                tally.add(*bucket);
            }
        };
        // The hours whose twelve buckets all lie in first..=last.
        let first_hour = (first + PER_COARSE - 1).div_euclid(PER_COARSE);
        let last_hour = (last + 1).div_euclid(PER_COARSE) - 1;
        if first_hour > last_hour {
            fine(first, last);
            return tally;
        }
        fine(first, first_hour * PER_COARSE - 1);
        fine((last_hour + 1) * PER_COARSE, last);
        for (_, hour) in self.coarse.range(first_hour..=last_hour) {
            tally.add(*hour);
        }
        tally
    }
}
