//! When each request should be sent: an open-loop arrival schedule from ramp stages.
//!
//! The rate is piecewise linear: each stage goes from the previous stage's rate to its own over
//! its duration (k6's `stages`); a constant `--rate` is one stage that starts at that rate. The
//! n-th request's intended time solves `N(t) = n` where `N` integrates the rate, so the count is
//! exact whatever the ramp, and latency is measured from that time (coordinated omission
//! corrected: a stalled server delays answers, not the schedule).

use std::time::Duration;

use anyhow::{Context, bail};

/// One ramp stage: reach `rate` (requests/s) linearly over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stage {
    pub(crate) duration: Duration,
    pub(crate) rate: f64,
}

/// Parses `30s:500,60s:2000,30s:0` (durations in `ms`, `s`, `m` or `h`).
pub(crate) fn parse_stages(text: &str) -> anyhow::Result<Vec<Stage>> {
    let stages =
        text.split(',')
            .map(|part| {
                let (duration, rate) = part.trim().split_once(':').with_context(|| {
                    format!("stage {part:?}: expected DURATION:RATE, like 30s:500")
                })?;
                let rate: f64 = rate
                    .parse()
                    .ok()
                    .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                    .with_context(|| format!("stage {part:?}: the rate must be a number >= 0"))?;
                Ok(Stage {
                    duration: parse_duration(duration)?,
                    rate,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
    if stages.is_empty() {
        bail!("--stages: at least one stage");
    }
    Ok(stages)
}

/// `250ms`, `30s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .with_context(|| {
            format!("duration {text:?}: expected a positive number with ms, s, m or h")
        })?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("duration {text:?}: the unit must be ms, s, m or h"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// The intended send times, as offsets from the start.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    /// (start offset, duration, rate at start, rate at end, requests before this stage).
    segments: Vec<(f64, f64, f64, f64, f64)>,
    total: u64,
}

impl Schedule {
    /// A schedule starting at `initial_rate` and following `stages`.
    pub(crate) fn new(initial_rate: f64, stages: &[Stage]) -> Self {
        let mut segments = Vec::new();
        let (mut start, mut rate, mut before) = (0.0, initial_rate, 0.0);
        for stage in stages {
            let d = stage.duration.as_secs_f64();
            segments.push((start, d, rate, stage.rate, before));
            before += (rate + stage.rate) / 2.0 * d;
            start += d;
            rate = stage.rate;
        }
        Schedule {
            segments,
            total: before.floor() as u64,
        }
    }

    /// A constant `rate` for `duration`.
    pub(crate) fn constant(rate: f64, duration: Duration) -> Self {
        Self::new(rate, &[Stage { duration, rate }])
    }

    /// How many requests the schedule sends.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The whole schedule's length.
    pub(crate) fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.segments.last().map_or(0.0, |s| s.0 + s.1))
    }

    /// The highest rate it reaches.
    pub(crate) fn peak_rate(&self) -> f64 {
        self.segments
            .iter()
            .map(|s| s.2.max(s.3))
            .fold(0.0, f64::max)
    }

    /// When request `n` (0-based) is due: the time at which the integrated rate reaches `n + 1`.
    pub(crate) fn at(&self, n: u64) -> Option<Duration> {
        if n >= self.total {
            return None;
        }
        let target = n as f64 + 1.0;
        for &(start, d, r0, r1, before) in &self.segments {
            let in_stage = (r0 + r1) / 2.0 * d;
            if target > before + in_stage + 1e-9 {
                continue;
            }
            // Solve r0·t + (r1 − r0)/(2d)·t² = target − before for t in [0, d].
            let need = target - before;
            let a = (r1 - r0) / (2.0 * d);
            let t = if a.abs() < 1e-12 {
                need / r0
            } else {
                (-r0 + (r0 * r0 + 4.0 * a * need).max(0.0).sqrt()) / (2.0 * a)
            };
            return Some(Duration::from_secs_f64(start + t.clamp(0.0, d)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_rate_spaces_requests_evenly() {
        let s = Schedule::constant(1000.0, Duration::from_secs(2));
        assert_eq!(s.total(), 2000);
        assert_eq!(s.at(0), Some(Duration::from_millis(1)));
        assert_eq!(s.at(999), Some(Duration::from_secs(1)));
        assert_eq!(s.at(1999), Some(Duration::from_secs(2)));
        assert_eq!(s.at(2000), None);
    }

    #[test]
    fn a_ramp_sends_the_integral_of_its_rate_and_speeds_up() {
        // 0 → 1000/s over 10 s: 5,000 requests, the first half in the last ~2.9 s.
        let s = Schedule::new(
            0.0,
            &[Stage {
                duration: Duration::from_secs(10),
                rate: 1000.0,
            }],
        );
        assert_eq!(s.total(), 5000);
        let half = s.at(2499).expect("in range").as_secs_f64();
        assert!((half - 10.0 / 2f64.sqrt()).abs() < 1e-3, "{half}");
        let gaps: Vec<f64> = (1..5000)
            .map(|n| (s.at(n).expect("due") - s.at(n - 1).expect("due")).as_secs_f64())
            .collect();
        assert!(
            gaps.windows(2).all(|w| w[1] <= w[0] + 1e-9),
            "the gaps shrink"
        );
        assert!(s.at(4999).expect("due") <= Duration::from_secs(10));
    }

    #[test]
    fn stages_chain_and_parse() {
        let stages = parse_stages("30s:500, 1m:2000,500ms:0").expect("valid");
        assert_eq!(
            stages,
            vec![
                Stage {
                    duration: Duration::from_secs(30),
                    rate: 500.0
                },
                Stage {
                    duration: Duration::from_secs(60),
                    rate: 2000.0
                },
                Stage {
                    duration: Duration::from_millis(500),
                    rate: 0.0
                },
            ]
        );
        let s = Schedule::new(0.0, &stages);
        // 0→500 over 30 s, 500→2000 over 60 s, 2000→0 over 0.5 s.
        assert_eq!(s.total(), 7500 + 75000 + 500);
        assert_eq!(s.peak_rate(), 2000.0);
        assert_eq!(s.duration(), Duration::from_millis(90_500));
        let mut previous = Duration::ZERO;
        for n in (0..s.total()).step_by(97) {
            let at = s.at(n).expect("due");
            assert!(at >= previous, "monotonic");
            previous = at;
        }
        for bad in ["", "30s", "30s:-1", "x:5", "10q:5", "0s:5"] {
            assert!(parse_stages(bad).is_err(), "{bad:?}");
        }
    }
}
