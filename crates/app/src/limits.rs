//! Overload protection: a token bucket per caller, and a cap on scorings in flight.
//!
//! The rate limit keeps one caller from using up the service; the in-flight cap keeps all of
//! them together from queueing requests past the latency budget. Both answer at once, so a
//! refused request costs microseconds, not a slot in a queue.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests per second and burst allowed to each caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests that may arrive at once after a quiet period.
    pub burst: u32,
}

/// One token bucket per caller, indexed like the API keys (one bucket when the service runs
/// open).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    buckets: Vec<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// `callers` buckets, each full.
    pub(crate) fn new(limit: RateLimit, callers: usize, now: Instant) -> RateLimiter {
        RateLimiter {
            limit,
            buckets: (0..callers.max(1))
                .map(|_| {
                    Mutex::new(Bucket {
                        tokens: f64::from(limit.burst),
                        refilled: now,
                    })
                })
                .collect(),
        }
    }

    /// Takes a token from `caller`'s bucket, or says how long until one is there.
    pub(crate) fn acquire(&self, caller: usize, now: Instant) -> Result<(), Duration> {
        let Some(bucket) = self.buckets.get(caller) else {
            // Callers come from the key list the buckets were made for.
            return Ok(());
        };
        // A poisoned lock only means another request panicked mid-update: the bucket's numbers
        // are still numbers, so keep limiting with them.
        let mut bucket = bucket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.limit.per_second,
            ))
        }
    }
}

/// At most `max` scorings at a time.
#[derive(Debug)]
pub(crate) struct InFlightLimit {
    max: usize,
    current: AtomicUsize,
}

/// A scoring in flight; leaving frees its place, also when the client goes away mid-request.
#[derive(Debug)]
pub(crate) struct InFlightPermit<'a>(&'a AtomicUsize);

impl Drop for InFlightPermit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl InFlightLimit {
    pub(crate) fn new(max: usize) -> InFlightLimit {
        InFlightLimit {
            max,
            current: AtomicUsize::new(0),
        }
    }

    /// A place, or `None` when all `max` are taken.
    pub(crate) fn try_enter(&self) -> Option<InFlightPermit<'_>> {
        let mut current = self.current.load(Ordering::Acquire);
        loop {
            if current >= self.max {
                return None;
            }
            match self.current.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(InFlightPermit(&self.current)),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate_and_says_when_to_retry() {
        let start = Instant::now();
        let limiter = RateLimiter::new(
            RateLimit {
                per_second: 10.0,
                burst: 3,
            },
            2,
            start,
        );
        for _ in 0..3 {
            assert_eq!(limiter.acquire(0, start), Ok(()));
        }
        let wait = limiter.acquire(0, start).expect_err("the burst is spent");
        assert!(
            (wait.as_secs_f64() - 0.1).abs() < 1e-9,
            "one token every 100 ms: {wait:?}"
        );
        // Another caller has a bucket of its own.
        assert_eq!(limiter.acquire(1, start), Ok(()));
        // 100 ms later, one token; 1 s later, no more than the burst.
        assert_eq!(
            limiter.acquire(0, start + Duration::from_millis(100)),
            Ok(())
        );
        assert!(
            limiter
                .acquire(0, start + Duration::from_millis(100))
                .is_err()
        );
        let later = start + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(limiter.acquire(0, later), Ok(()));
        }
        assert!(limiter.acquire(0, later).is_err());
    }

    #[test]
    fn the_in_flight_limit_refuses_beyond_max_and_frees_places_on_drop() {
        let limit = InFlightLimit::new(2);
        let first = limit.try_enter().expect("room");
        let second = limit.try_enter().expect("room");
        assert!(limit.try_enter().is_none());
        drop(first);
        let third = limit.try_enter().expect("a place was freed");
        assert!(limit.try_enter().is_none());
        drop((second, third));
        assert_eq!(limit.current.load(Ordering::Acquire), 0);
    }
}
