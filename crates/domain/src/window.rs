//! Rolling windows over a customer's history, on event time.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// One of the rolling windows the service aggregates over.
///
/// **The window rule:** window `W` of a transaction at time `t` covers the customer's recorded
/// transactions whose timestamp lies in `(t − W, t]`, the transaction itself included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    /// The last 3 hours.
    Hours3,
    /// The last 6 hours.
    Hours6,
    /// The last 12 hours.
    Hours12,
    /// The last 24 hours: the longest window, which the retention spans (plus the lateness).
    Hours24,
}

impl Window {
    /// Every window, shortest first; [`WindowStats`] is indexed in this order.
    pub const ALL: [Window; 4] = [
        Window::Hours3,
        Window::Hours6,
        Window::Hours12,
        Window::Hours24,
    ];

    /// The window's length.
    pub fn duration(self) -> Duration {
        Duration::hours(match self {
            Window::Hours3 => 3,
            Window::Hours6 => 6,
            Window::Hours12 => 12,
            Window::Hours24 => 24,
        })
    }

    /// The suffix used in field names: `3h`, `6h`, `12h`, `24h`.
    pub fn label(self) -> &'static str {
        match self {
            Window::Hours3 => "3h",
            Window::Hours6 => "6h",
            Window::Hours12 => "12h",
            Window::Hours24 => "24h",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Whether an event at `event` falls into this window of a transaction at `at`.
    pub fn contains(self, at: OffsetDateTime, event: OffsetDateTime) -> bool {
        event <= at && event > at - self.duration()
    }
}

/// Count and sum of the amounts in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStat {
    /// How many transactions.
    pub count: u64,
    /// The sum of their amounts. Amounts in different currencies are added as they are: the
    /// statistics describe activity, not money.
    pub sum: f64,
}

impl WindowStat {
    /// The average amount, `0` for an empty window.
    pub fn average(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }
}

/// A customer's statistics over every [`Window`] at one transaction's time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowStats([WindowStat; 4]);

impl WindowStats {
    /// Builds statistics from per-window values in [`Window::ALL`] order.
    pub fn from_windows(stats: [WindowStat; 4]) -> Self {
        WindowStats(stats)
    }

    /// Aggregates `history` (timestamp and amount of each recorded transaction, the current one
    /// included) for a transaction at `at`, following the window rule.
    pub fn aggregate(
        at: OffsetDateTime,
        history: impl IntoIterator<Item = (OffsetDateTime, f64)>,
    ) -> Self {
        let mut stats = WindowStats::default();
        for (event, amount) in history {
            for window in Window::ALL {
                if window.contains(at, event) {
                    let stat = &mut stats.0[window.index()];
                    stat.count += 1;
                    stat.sum += amount;
                }
            }
        }
        stats
    }

    /// The statistics of one window.
    pub fn get(&self, window: Window) -> WindowStat {
        self.0[window.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn windows_are_open_at_the_start_and_closed_at_the_end() {
        let at = datetime!(2026-11-25 12:00 UTC);
        let history = [
            (at, 10.0),                                                 // in every window
            (at - Duration::hours(3), 20.0),                            // just outside 3 h
            (at - Duration::hours(3) + Duration::nanoseconds(1), 30.0), // just inside 3 h
            (at - Duration::hours(24), 40.0),                           // outside every window
            (at + Duration::nanoseconds(1), 50.0), // later than the transaction
            (at - Duration::hours(12), 60.0),      // outside 12 h, inside 24 h
        ];
        let stats = WindowStats::aggregate(at, history);
        // (count, sum) over 3, 6, 12 and 24 h.
        assert_eq!(
            Window::ALL.map(|w| (stats.get(w).count, stats.get(w).sum)),
            [(2, 40.0), (3, 60.0), (3, 60.0), (4, 120.0)]
        );
        assert_eq!(stats.get(Window::Hours24).average(), 30.0);
    }

    #[test]
    fn the_average_of_an_empty_window_is_zero() {
        assert_eq!(WindowStat::default().average(), 0.0);
    }
}
