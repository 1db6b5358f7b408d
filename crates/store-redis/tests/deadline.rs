//! A command the service gave up on takes no effect afterwards. Redis is paused past the
//! request's deadline; the caller stops waiting, as the use case does; when the pause ends the
//! queued script runs, finds the deadline passed on Redis's own clock, and does nothing.

use std::time::{Duration, Instant};

use antifraud_domain::{
    Fingerprint, Reception, RecordOutcome, Transaction, TransactionStore, WindowStats,
};
use antifraud_store_conformance::{assessment, received, transaction, unique_customer};
use antifraud_store_redis::{CustomerKeys, RedisStore};
use antifraud_testkit::RedisServer;

mod common;
use time::OffsetDateTime;

/// A store that waits long for each command: only the request's deadline cuts it short.
async fn patient_store(server: &RedisServer) -> RedisStore {
    common::connected(server.url(), 4, Duration::from_secs(5)).await
}

/// Gives up on `call` at its 100 ms deadline, as the use case does, while Redis is paused; then
/// waits for the pause to end and the queued command to run.
async fn give_up_on<T>(call: impl std::future::Future<Output = T>) {
    assert!(
        tokio::time::timeout(Duration::from_millis(120), call)
            .await
            .is_err(),
        "Redis is paused: no answer before the deadline"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
}

/// Pauses every client of `server` for `ms`, from another connection.
fn pause(server: &RedisServer, ms: u64) {
    let reply = server
        .command(&["CLIENT", "PAUSE", &ms.to_string(), "ALL"])
        .expect("CLIENT PAUSE answered");
    assert!(reply.starts_with("+OK"), "{reply}");
}

/// Records `tx` with a 100 ms deadline while Redis is paused for 400 ms, gives up on it at the
/// deadline as the use case does, and checks that the queued script, once run, left nothing.
async fn record_given_up_on(
    server: &RedisServer,
    store: &RedisStore,
    tx: &Transaction,
    keys: &CustomerKeys,
) {
    pause(server, 400);
    let reception = Reception {
        deadline: Instant::now() + Duration::from_millis(100),
        ..received(OffsetDateTime::now_utc())
    };
    give_up_on(store.record(tx, &Fingerprint::of(tx), &reception)).await;
    assert!(
        !field_exists(server, &keys.transactions, "t:tx-1"),
        "a record the service gave up on must not be there"
    );
}

/// Records `tx`, due in two seconds, while `pause_redis` holds Redis for 200 ms: the command
/// times out first (the store's timeout is shorter); then waits until the pause has ended and
/// the queued script has run, well before the request's deadline.
async fn record_until_it_times_out(
    store: &RedisStore,
    tx: &Transaction,
    pause_redis: impl FnOnce(),
) {
    pause_redis();
    let reception = Reception {
        deadline: Instant::now() + Duration::from_secs(2),
        ..received(OffsetDateTime::now_utc())
    };
    let outcome = store.record(tx, &Fingerprint::of(tx), &reception).await;
    assert!(
        matches!(outcome, Err(antifraud_domain::StoreError::Unavailable(_))),
        "the command times out: {outcome:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// A transaction of a customer of its own, now, and that customer's keys.
fn new_transaction(case: &str) -> (Transaction, CustomerKeys) {
    let tx = transaction(
        &unique_customer(case),
        "tx-1",
        10.0,
        OffsetDateTime::now_utc(),
    );
    let keys = CustomerKeys::new(tx.customer_id());
    (tx, keys)
}

fn field_exists(server: &RedisServer, key: &str, field: &str) -> bool {
    let reply = server.command(&["HEXISTS", key, field]).expect("HEXISTS");
    reply.starts_with(":1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_given_up_on_does_not_take_effect_after_its_deadline() {
    let server = RedisServer::start();
    let store = patient_store(&server).await;
    let (tx, keys) = new_transaction("given-up");

    record_given_up_on(&server, &store, &tx, &keys).await;

    // A retry with a fresh deadline records it, once.
    let outcome = common::record_now(&store, &tx).await.expect("answers");
    match outcome {
        RecordOutcome::Recorded(stats) => {
            assert_eq!(stats.get(antifraud_domain::Window::Hours24).count, 1)
        }
        other => panic!("expected a record, got {other:?}"),
    }
}

/// The client stops waiting at the command timeout, which may come long before the request's
/// deadline: the service then answers without the command (503, or degraded "not recorded"), so
/// a script that Redis runs after the timeout must do nothing, even with the deadline still
/// ahead. (Found by `cargo xtask chaos`: a 350 ms pause, a 50 ms timeout, a 200 ms deadline.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_that_timed_out_does_not_take_effect_before_the_requests_deadline() {
    let server = RedisServer::start();
    let store = common::connected(server.url(), 4, Duration::from_millis(50)).await;
    let (tx, keys) = new_transaction("timed-out");

    record_until_it_times_out(&store, &tx, || pause(&server, 200)).await;
    assert!(
        !field_exists(&server, &keys.transactions, "t:tx-1"),
        "a record the client stopped waiting for must not be there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_given_up_on_does_not_save_its_assessment_after_its_deadline() {
    let server = RedisServer::start();
    let store = patient_store(&server).await;
    let (tx, keys) = new_transaction("given-up-commit");
    common::record_now(&store, &tx).await.expect("recorded");

    pause(&server, 400);
    let stats = WindowStats::aggregate(tx.timestamp(), [(tx.timestamp(), tx.mills())]);
    let saved = assessment(&tx, stats, 0.5);
    give_up_on(store.commit(&tx, &saved, Instant::now() + Duration::from_millis(100))).await;
    assert!(
        !field_exists(&server, &keys.transactions, "a:tx-1"),
        "an assessment the service gave up on (and answered degraded or 503 for) must not be saved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_connected_while_redis_was_down_still_gives_its_scripts_deadlines() {
    // The worker's store is built while Redis is down (the service starts anyway), so it
    // cannot measure Redis's clock then: it must do so once Redis answers.
    let mut server = RedisServer::start();
    server.stop();
    let store = RedisStore::connect(&antifraud_store_redis::RedisSettings {
        command_timeout: Duration::from_secs(5),
        ..antifraud_store_redis::RedisSettings::new(server.url())
    })
    .expect("valid settings");
    server.restart();
    let (warm, _) = new_transaction("late-clock-warm");
    common::record_now(&store, &warm)
        .await
        .expect("Redis is back");

    let (tx, keys) = new_transaction("late-clock");
    record_given_up_on(&server, &store, &tx, &keys).await;
}

/// On a Redis Cluster the script runs on the node of the customer's slot, and checks the
/// deadline against that node's clock: a record the client stopped waiting for does nothing
/// there either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_record_that_timed_out_does_not_take_effect_either() {
    let cluster = antifraud_testkit::RedisCluster::start();
    let store = common::connected(cluster.url(), 2, Duration::from_millis(50)).await;
    let (tx, keys) = new_transaction("cluster-timed-out");
    let held_anywhere = || {
        cluster
            .nodes()
            .iter()
            .any(|node| field_exists(node, &keys.transactions, "t:tx-1"))
    };

    record_until_it_times_out(&store, &tx, || {
        for node in cluster.nodes() {
            pause(node, 200);
        }
    })
    .await;
    assert!(
        !held_anywhere(),
        "a record the client stopped waiting for must not be there"
    );

    // Recorded by a retry, and then found where the check looks: the check is not vacuous.
    let outcome = common::record_now(&store, &tx).await;
    assert!(
        matches!(outcome, Ok(RecordOutcome::Recorded(_))),
        "{outcome:?}"
    );
    assert!(held_anywhere());
    drop(cluster);
}
