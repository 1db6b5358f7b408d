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

/// An amount as the statistics count it: a whole number of thousandths of the currency's major
/// unit, the finest minor unit of any payment currency (ISO 4217 exponent 3: BHD, KWD, ...).
///
/// Every amount a payment can carry is a whole number of mills, so sums of mills are exact, and
/// identical in every store, where sums of `f64` amounts depend on the order of the additions.
/// An amount with finer digits than a mill is counted at the nearest one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mills(pub u64);

impl Mills {
    /// Mills in one unit of a currency.
    pub const PER_UNIT: u64 = 1_000;

    /// The nearest whole number of mills to a valid amount (finite, `0..=1e12`), halves up.
    ///
    /// The Redis store's script computes the same formula on the same `f64` (`floor(x * 1000 +
    /// 0.5)`): below 2^52 both the product and the half are exact steps of a double, so the two
    /// agree bit for bit, and a decimal amount with at most three decimals lands on its own mill.
    pub fn of(amount: f64) -> Mills {
        // In range for a valid amount: at most 1e15, far below u64::MAX; `as` saturates beyond.
        Mills((amount * Self::PER_UNIT as f64 + 0.5).floor() as u64)
    }
}

/// The sum of the amounts in one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sum {
    /// Exact, in mills (no overflow: a day would need 10^23 maximum-size amounts).
    Mills(u128),
    /// A floating-point sum, as answers saved by versions before exact sums carry it: replayed
    /// as it was first sent.
    Legacy(f64),
}

impl Default for Sum {
    fn default() -> Self {
        Sum::Mills(0)
    }
}

/// Count and sum of the amounts in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SavedStat", into = "SavedStat")]
pub struct WindowStat {
    /// How many transactions.
    pub count: u64,
    /// The sum of their amounts. Amounts in different currencies are added as they are: the
    /// statistics describe activity, not money.
    pub sum: Sum,
}

impl WindowStat {
    /// `count` transactions whose amounts add up to `sum_mills`.
    pub fn exact(count: u64, sum_mills: u128) -> Self {
        WindowStat {
            count,
            sum: Sum::Mills(sum_mills),
        }
    }

    /// The average amount, `0` for an empty window: the exact mean, rounded once to the nearest
    /// `f64` (while the sum stays below 2^53 mills, nine trillion units).
    pub fn average(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        match self.sum {
            Sum::Mills(mills) => mills as f64 / (self.count as f64 * Mills::PER_UNIT as f64),
            Sum::Legacy(sum) => sum / self.count as f64,
        }
    }

    /// The sum in units of the currency, for display and tests (rounded to the nearest `f64`).
    pub fn sum_units(&self) -> f64 {
        match self.sum {
            Sum::Mills(mills) => mills as f64 / Mills::PER_UNIT as f64,
            Sum::Legacy(sum) => sum,
        }
    }

    fn add(&mut self, amount: Mills) {
        self.count += 1;
        if let Sum::Mills(mills) = &mut self.sum {
            *mills += u128::from(amount.0);
        }
    }
}

/// A [`WindowStat`] as saved with an assessment: `sum_mills` since sums are exact, `sum` (a
/// float) in answers saved before.
#[derive(Serialize, Deserialize)]
struct SavedStat {
    count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sum_mills: Option<u128>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sum: Option<f64>,
}

impl From<WindowStat> for SavedStat {
    fn from(stat: WindowStat) -> Self {
        let (sum_mills, sum) = match stat.sum {
            Sum::Mills(mills) => (Some(mills), None),
            Sum::Legacy(sum) => (None, Some(sum)),
        };
        SavedStat {
            count: stat.count,
            sum_mills,
            sum,
        }
    }
}

impl TryFrom<SavedStat> for WindowStat {
    type Error = &'static str;
    fn try_from(saved: SavedStat) -> Result<Self, Self::Error> {
        let sum = match (saved.sum_mills, saved.sum) {
            (Some(mills), None) => Sum::Mills(mills),
            (None, Some(sum)) => Sum::Legacy(sum),
            _ => return Err("a window statistic needs exactly one of sum_mills and sum"),
        };
        Ok(WindowStat {
            count: saved.count,
            sum,
        })
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
        history: impl IntoIterator<Item = (OffsetDateTime, Mills)>,
    ) -> Self {
        let mut stats = WindowStats::default();
        for (event, amount) in history {
            for window in Window::ALL {
                if window.contains(at, event) {
                    stats.0[window.index()].add(amount);
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
        let stats = WindowStats::aggregate(at, history.map(|(t, a)| (t, Mills::of(a))));
        // (count, sum) over 3, 6, 12 and 24 h.
        assert_eq!(
            Window::ALL.map(|w| (stats.get(w).count, stats.get(w).sum_units())),
            [(2, 40.0), (3, 60.0), (3, 60.0), (4, 120.0)]
        );
        assert_eq!(stats.get(Window::Hours24).average(), 30.0);
    }

    #[test]
    fn the_average_of_an_empty_window_is_zero() {
        assert_eq!(WindowStat::default().average(), 0.0);
    }

    #[test]
    fn sums_are_exact_whatever_the_order_of_the_additions() {
        let at = datetime!(2026-11-25 12:00 UTC);
        // In f64, 0.1 + 0.2 + 0.3 is 0.6000000000000001 and 0.3 + 0.2 + 0.1 is 0.6.
        let amounts = [0.1, 0.2, 0.3];
        let forwards = WindowStats::aggregate(at, amounts.map(|a| (at, Mills::of(a))));
        let backwards =
            WindowStats::aggregate(at, amounts.map(|a| (at, Mills::of(a))).into_iter().rev());
        let day = forwards.get(Window::Hours24);
        assert_eq!(day, backwards.get(Window::Hours24));
        assert_eq!(day.sum, Sum::Mills(600));
        assert_eq!(day.average(), 0.2);
        // Seventy maximum-size amounts and a cent: beyond 2^53 mills, still exact.
        let big = std::iter::repeat_n((at, Mills::of(1e12)), 70).chain([(at, Mills::of(0.01))]);
        assert_eq!(
            WindowStats::aggregate(at, big).get(Window::Hours24).sum,
            Sum::Mills(70 * 1_000_000_000_000_000 + 10)
        );
    }

    #[test]
    fn amounts_land_on_their_own_mill() {
        for (amount, mills) in [
            (0.0, 0),
            (0.001, 1),
            (19.99, 19_990),
            (1.005, 1_005),
            (123.456, 123_456),
            (999_999_999_999.999, 999_999_999_999_999),
            (1e12, 1_000_000_000_000_000),
            // Finer than a mill: the nearest one, halves up.
            (0.0004, 0),
            (0.0005, 1),
            (1.23456, 1_235),
        ] {
            assert_eq!(Mills::of(amount), Mills(mills), "{amount}");
        }
    }

    #[test]
    fn saved_statistics_read_back_as_they_were_earlier_answers_included() {
        let exact = WindowStat::exact(2, u128::from(u64::MAX) * 3);
        let json = serde_json::to_string(&exact).expect("serialises");
        assert_eq!(
            json,
            format!(r#"{{"count":2,"sum_mills":{}}}"#, u128::from(u64::MAX) * 3)
        );
        assert_eq!(serde_json::from_str::<WindowStat>(&json).ok(), Some(exact));
        // An answer saved before sums were exact keeps its float sum and the average it had.
        let legacy: WindowStat =
            serde_json::from_str(r#"{"count":2,"sum":0.30000000000000004}"#).expect("reads");
        assert_eq!(legacy.sum, Sum::Legacy(0.30000000000000004));
        assert_eq!(legacy.average(), 0.30000000000000004 / 2.0);
        assert_eq!(
            serde_json::to_string(&legacy).expect("serialises"),
            r#"{"count":2,"sum":0.30000000000000004}"#
        );
        for broken in [
            r#"{"count":2}"#,
            r#"{"count":2,"sum":1.0,"sum_mills":1000}"#,
        ] {
            assert!(
                serde_json::from_str::<WindowStat>(broken).is_err(),
                "{broken}"
            );
        }
    }
}
