//! Sentinel: the primary killed under steady traffic. The store follows the promotion without a
//! restart, fails meanwhile only as unavailable (a retry-safe 503), never hangs past its
//! command timeout, and what the replica held before the failover is still counted after it.
//! (What it did not hold yet is lost: replication is asynchronous.)

use std::time::{Duration, Instant};

use antifraud_domain::{RecordOutcome, StoreError, Window};
use antifraud_store_conformance::{transaction, unique_customer};
use antifraud_testkit::RedisSentinel;
use time::OffsetDateTime;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_followed_without_a_restart_or_a_lost_replicated_record() {
    let mut sentinel = RedisSentinel::start();
    let timeout = Duration::from_millis(200);
    let store = common::connected(sentinel.url(), 2, timeout).await;
    let customer = unique_customer("sentinel");
    let record = async |id: String| {
        let tx = transaction(&customer, &id, 1.0, OffsetDateTime::now_utc());
        // A call that outlives its command timeout by far is a hung request.
        tokio::time::timeout(Duration::from_secs(2), common::record_now(&store, &tx))
            .await
            .unwrap_or_else(|_| panic!("{id}: no answer within 2 s"))
    };
    assert!(matches!(
        record("before".into()).await,
        Ok(RecordOutcome::Recorded(_))
    ));
    // On the replica before the primary dies.
    sentinel.wait_until_replicated(Duration::from_secs(5));

    let old = sentinel.kill_primary();
    let killed = Instant::now();
    let (mut unavailable, mut first_failure, mut last_failure) = (0, None, None);
    let mut recorded = 0u64;
    let mut last_stats = None;
    let mut i = 0;
    // Steady traffic, one transaction every 20 ms, until ten in a row succeed after failures.
    let mut in_a_row = 0;
    while in_a_row < 10 {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "the store did not follow the failover in 30 s ({unavailable} calls unavailable)"
        );
        i += 1;
        match record(format!("during-{i}")).await {
            Ok(RecordOutcome::Recorded(stats)) => {
                recorded += 1;
                last_stats = Some(stats);
                in_a_row += usize::from(first_failure.is_some());
            }
            Err(StoreError::Unavailable(_)) => {
                unavailable += 1;
                first_failure.get_or_insert_with(|| killed.elapsed());
                last_failure = Some(killed.elapsed());
                in_a_row = 0;
            }
            other => panic!("during-{i}: only unavailable is a failure's answer: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let promoted = sentinel.wait_for_promotion(old, Duration::from_secs(10));
    assert_ne!(promoted, old);
    let (first, last) = (
        first_failure.expect("the kill was noticed"),
        last_failure.expect("the kill was noticed"),
    );
    println!(
        "sentinel failover: unavailable from {first:?} to {last:?} after the kill \
         ({unavailable} calls, window {:?}); {recorded} recorded",
        last - first
    );
    // Nothing acknowledged is lost and nothing counts twice: the replicated record and every
    // one recorded since are counted; a call answered "unavailable" may have reached the new
    // primary before its answer was lost, and then counts once.
    let stats = last_stats.expect("recorded after the failover");
    let count = stats.get(Window::Hours24).count;
    let acknowledged = 1 + recorded;
    assert!(
        (acknowledged..=acknowledged + unavailable).contains(&count),
        "count {count}: 1 replicated + {recorded} recorded (+ up to {unavailable} unknown)"
    );
}
