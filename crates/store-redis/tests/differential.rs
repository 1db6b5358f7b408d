//! The Redis store's bucketed aggregation agrees with the in-memory store's exact one: the same
//! pseudo-random histories (out-of-order events, minute and hour boundaries, retries, retention
//! with an advancing clock) give the same counts and sums, exactly.

use std::time::Duration as StdDuration;

use antifraud_domain::{Fingerprint, RecordOutcome, TransactionStore, Window, WindowStats};
use antifraud_store_conformance::{received, transaction, unique_customer};
use antifraud_store_memory::MemoryStore;
use antifraud_testkit::RedisServer;

mod common;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Equal, not close: counts and sums are whole numbers (sums in mills), so both stores give the
/// same statistics, and the same averages, bit for bit.
fn assert_same(redis: &WindowStats, memory: &WindowStats, context: &str) {
    for window in Window::ALL {
        let (r, m) = (redis.get(window), memory.get(window));
        assert_eq!(r, m, "{context}: over {}", window.label());
        assert_eq!(
            r.average().to_bits(),
            m.average().to_bits(),
            "{context}: average over {}",
            window.label()
        );
    }
}

/// Cents mostly; sometimes digits finer than a mill (counted at the nearest one, by the same
/// formula in both stores) or a maximum-size amount, so that sums pass 2^53 mills, where one
/// double in the script would round.
fn amount(rng: &mut Rng) -> f64 {
    match rng.below(20) {
        0 => 1e12,
        1 => rng.next() as f64 / u64::MAX as f64 * 1e4,
        2 => rng.below(1_000_000_000) as f64 / 1000.0,
        _ => rng.below(1_000_000) as f64 / 100.0,
    }
}

async fn record(
    store: &impl TransactionStore,
    tx: &antifraud_domain::Transaction,
    now: OffsetDateTime,
) -> WindowStats {
    match store
        .record(tx, &Fingerprint::of(tx), &received(now))
        .await
        .expect("answers")
    {
        RecordOutcome::Recorded(stats) => stats,
        other => panic!("expected a record, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucketed_windows_match_exact_windows() {
    let server = RedisServer::start();
    let redis = common::connected(server.url(), 4, StdDuration::from_secs(5)).await;
    let memory = MemoryStore::new();
    let t0 = datetime!(2026-11-25 12:00 UTC);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    for round in 0..4 {
        let customer = unique_customer("differential");
        let mut recorded = Vec::new();
        let mut now = t0;
        // Past 200 retained events the script switches from scanning events to buckets: both run.
        for i in 0..500 {
            // Mostly in order with jitter, sometimes far out of order, sometimes exactly on a
            // minute, hour or window boundary of an earlier event.
            let at = match rng.below(10) {
                0..=5 => now - Duration::seconds(rng.below(600) as i64),
                6 => now - Duration::minutes(rng.below(24 * 60) as i64),
                7 | 8 if !recorded.is_empty() => {
                    let (_, earlier): &(String, OffsetDateTime) =
                        &recorded[rng.below(recorded.len() as u64) as usize];
                    let shift = [3, 6, 12, 1][rng.below(4) as usize];
                    (*earlier + Duration::hours(shift)).min(now + Duration::minutes(5))
                }
                _ => {
                    let minute = now
                        .replace_second(0)
                        .expect("valid")
                        .replace_nanosecond(0)
                        .expect("valid");
                    minute - Duration::minutes(rng.below(300) as i64)
                }
            };
            let at = at.max(now - Duration::hours(24) + Duration::microseconds(1));
            let amount = amount(&mut rng);
            let id = format!("tx-{i}");
            let tx = transaction(&customer, &id, amount, at);
            let context = format!("round {round}, event {i} at {at}");
            let from_redis = record(&redis, &tx, now).await;
            let from_memory = record(&memory, &tx, now).await;
            assert_same(&from_redis, &from_memory, &context);
            // A retry before any commit must not change a thing.
            if rng.below(8) == 0 {
                assert_same(
                    &record(&redis, &tx, now).await,
                    &from_memory,
                    &format!("{context} (retry)"),
                );
            }
            recorded.push((id, at));
            // The clock advances: in later rounds by hours, so the retention keeps deleting.
            now += Duration::seconds(rng.below(if round < 2 { 120 } else { 3 * 3600 }) as i64);
        }
    }
    drop(server);
}

/// A version before exact sums kept a busy customer's buckets as `count sum` (a float) under the
/// marker `on`. This version does not read them: it rebuilds its own from the events, which both
/// versions write alike, so an upgrade counts a busy customer's history exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_left_by_an_earlier_version_are_rebuilt_not_misread() {
    let server = RedisServer::start();
    let redis = common::connected(server.url(), 2, StdDuration::from_secs(5)).await;
    let memory = MemoryStore::new();
    let customer = unique_customer("upgrade");
    let now = datetime!(2026-11-25 12:00 UTC);
    let mut last = WindowStats::default();
    // Past the script's 200 events, so that it keeps buckets.
    for i in 0..250 {
        let at = now - Duration::minutes(250 - i);
        let tx = transaction(&customer, &format!("tx-{i}"), 0.1, at);
        last = record(&redis, &tx, now).await;
        assert_same(
            &last,
            &record(&memory, &tx, now).await,
            &format!("event {i}"),
        );
    }
    assert_eq!(last.get(Window::Hours24).count, 250);

    // What the earlier version left: its marker and its format, with sums that are off.
    let keys = antifraud_store_redis::CustomerKeys::new(
        &antifraud_domain::CustomerId::parse(customer.clone()).expect("valid id"),
    );
    server.command(&["DEL", &keys.buckets]).expect("DEL");
    let hour = format!("h{}", now.unix_timestamp() / 3600);
    let five = format!("f{}", now.unix_timestamp() / 300);
    server
        .command(&[
            "HSET",
            &keys.buckets,
            "on",
            "1",
            &hour,
            "60 6.000000000000001",
            &five,
            "5 0.5",
        ])
        .expect("HSET");

    let tx = transaction(&customer, "after-upgrade", 0.2, now);
    assert_same(
        &record(&redis, &tx, now).await,
        &record(&memory, &tx, now).await,
        "after the upgrade",
    );
    drop(server);
}
