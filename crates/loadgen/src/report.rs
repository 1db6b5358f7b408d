//! What a load run saw: latencies from the intended send time, status codes, errors by kind,
//! scores; printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use super::traffic::Kind;

/// Latencies are recorded in microseconds, up to an hour.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

/// How one request ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// An HTTP answer: its status, and for a 200 the score, the decision and whether it was a
    /// replay.
    Answer {
        status: u16,
        score: Option<f64>,
        is_fraud: Option<bool>,
        replayed: bool,
    },
    /// No answer: `timeout`, `connect`, `io` or `body`.
    Failed(&'static str),
}

/// Counters for a whole run (and, reset each tick, for the progress line).
#[derive(Debug, Clone)]
pub struct Stats {
    pub(crate) latency: Histogram<u64>,
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) completed: u64,
    pub(crate) score_buckets: [u64; 10],
    pub(crate) scored: u64,
    pub(crate) flagged: u64,
    pub(crate) planted: u64,
    pub(crate) planted_flagged: u64,
    pub(crate) replays_sent: u64,
    pub(crate) replays_confirmed: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            latency: histogram(),
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            completed: 0,
            score_buckets: [0; 10],
            scored: 0,
            flagged: 0,
            planted: 0,
            planted_flagged: 0,
            replays_sent: 0,
            replays_confirmed: 0,
        }
    }
}

impl Stats {
    /// Requests that got an answer or failed: every request of the run that finished.
    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Records one request: `latency` from its intended send time to its answer.
    pub(crate) fn record(&mut self, kind: Kind, latency: Duration, outcome: &Outcome) {
        self.completed += 1;
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.latency.saturating_record(micros);
        if kind == Kind::Replay {
            self.replays_sent += 1;
        }
        match outcome {
            Outcome::Answer {
                status,
                score,
                is_fraud,
                replayed,
            } => {
                *self.statuses.entry(*status).or_default() += 1;
                if !(200..300).contains(status) {
                    *self.errors.entry(format!("http_{status}")).or_default() += 1;
                }
                if let Some(score) = score {
                    self.scored += 1;
                    let bucket = ((score * 10.0).floor() as usize).min(9);
                    self.score_buckets[bucket] += 1;
                }
                let flagged = *is_fraud == Some(true);
                self.flagged += u64::from(flagged);
                if *replayed {
                    self.replays_confirmed += 1;
                }
                if matches!(kind, Kind::Burst | Kind::Takeover | Kind::RiskyMerchant)
                    && score.is_some()
                {
                    self.planted += 1;
                    self.planted_flagged += u64::from(flagged);
                }
            }
            Outcome::Failed(kind) => *self.errors.entry((*kind).to_owned()).or_default() += 1,
        }
    }

    /// Requests that got no answer.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// A latency quantile in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// The run as a whole: the settings, the schedule's keeping, and the stats.
pub struct Report {
    pub(crate) settings: Value,
    pub(crate) elapsed: Duration,
    /// Requests the schedule asked for.
    pub scheduled: u64,
    pub(crate) sent: u64,
    /// Requests sent more than the lateness threshold after their intended time.
    pub late: u64,
    pub(crate) max_lag: Duration,
    pub(crate) interrupted: bool,
    /// Counters and latency over the whole run.
    pub stats: Stats,
}

impl Report {
    /// Answers per second over the run.
    pub fn throughput(&self) -> f64 {
        self.stats.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Share of requests that got no answer.
    pub fn error_rate(&self) -> f64 {
        self.stats.error_count() as f64 / (self.stats.completed.max(1)) as f64
    }

    pub(crate) fn to_json(&self, gates: &Value, passed: bool) -> Value {
        let s = &self.stats;
        json!({
            "settings": self.settings,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "interrupted": self.interrupted,
            "requests": {
                "scheduled": self.scheduled,
                "sent": self.sent,
                "completed": s.completed,
                "not_sent": self.scheduled - self.sent,
                "sent_late": self.late,
                "max_send_lag_ms": self.max_lag.as_secs_f64() * 1000.0,
            },
            "throughput_per_s": self.throughput(),
            "status_codes": s.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "errors": s.errors,
            "error_rate": self.error_rate(),
            "latency_ms": {
                "p50": s.ms(0.5), "p90": s.ms(0.9), "p99": s.ms(0.99), "p99_9": s.ms(0.999),
                "max": s.latency.max() as f64 / 1000.0, "mean": s.latency.mean() / 1000.0,
            },
            "scores": {
                "histogram_by_tenth": s.score_buckets,
                "flagged_share": s.flagged as f64 / s.scored.max(1) as f64,
                "planted_attacks": s.planted,
                "planted_attacks_flagged_share": s.planted_flagged as f64 / s.planted.max(1) as f64,
            },
            "replays": {"sent": s.replays_sent, "answered_as_replay": s.replays_confirmed},
            "gates": gates,
            "passed": passed,
        })
    }

    /// The human-readable summary.
    pub(crate) fn print(&self) {
        let s = &self.stats;
        println!();
        println!("| | |");
        println!("|---|---|");
        println!(
            "| duration | {:.1} s{} |",
            self.elapsed.as_secs_f64(),
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        println!(
            "| requests | {} scheduled, {} sent, {} answered |",
            self.scheduled, self.sent, s.completed
        );
        println!(
            "| sent late | {} (more than {} ms after their time; max lag {:.1} ms) |",
            self.late,
            super::LATE_AFTER.as_millis(),
            self.max_lag.as_secs_f64() * 1000.0
        );
        println!("| throughput | {:.0} /s |", self.throughput());
        println!("| status codes | {} |", tally(&s.statuses));
        println!(
            "| errors | {} ({:.3} %) |",
            tally(&s.errors),
            self.error_rate() * 100.0
        );
        println!(
            "| latency ms (from intended send) | p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} |",
            s.ms(0.5),
            s.ms(0.9),
            s.ms(0.99),
            s.ms(0.999),
            s.latency.max() as f64 / 1000.0
        );
        let total = s.scored.max(1) as f64;
        let buckets: Vec<String> = s
            .score_buckets
            .iter()
            .map(|&b| format!("{:.0}%", b as f64 / total * 100.0))
            .collect();
        println!(
            "| scores by tenth (0–0.1 … 0.9–1) | {} |",
            buckets.join(" ")
        );
        println!(
            "| flagged as fraud | {:.2} % of answers; {:.1} % of {} planted attacks |",
            s.flagged as f64 / total * 100.0,
            s.planted_flagged as f64 / s.planted.max(1) as f64 * 100.0,
            s.planted
        );
        println!(
            "| replays | {} sent, {} answered as replays |",
            s.replays_sent, s.replays_confirmed
        );
    }
}

/// `key: count` pairs, comma-separated, or `none`.
fn tally<K: std::fmt::Display>(counts: &BTreeMap<K, u64>) -> String {
    if counts.is_empty() {
        return "none".to_owned();
    }
    let pairs: Vec<String> = counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    pairs.join(", ")
}
