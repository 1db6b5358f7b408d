//! `--redis-wait-replicas`: a transaction and its assessment are saved, as far as the store
//! says, only once that many replicas acknowledged them. Without a replica to acknowledge, the
//! commit and every retry's replay are unavailable (a retry-safe 503), where a store that does
//! not wait acknowledges what only the primary holds; once a replica is back and in sync, the
//! retry replays the assessment saved the first time.

use std::time::{Duration, Instant};

use antifraud_domain::{CommitOutcome, RecordOutcome, StoreError, Transaction, TransactionStore};
use antifraud_store_conformance::{assessment, transaction, unique_customer};
use antifraud_store_redis::{RedisSettings, RedisStore};
use antifraud_testkit::RedisServer;
use time::OffsetDateTime;

mod common;

async fn store(url: String, wait_replicas: u32) -> RedisStore {
    common::connected_with(RedisSettings {
        pool_size: 2,
        command_timeout: Duration::from_millis(200),
        wait_replicas,
        wait_timeout: Duration::from_millis(100),
        ..RedisSettings::new(url)
    })
    .await
}

/// Records and commits `tx` as the use case does.
async fn score(store: &RedisStore, tx: &Transaction) -> Result<CommitOutcome, StoreError> {
    let stats = match common::record_now(store, tx).await? {
        RecordOutcome::Recorded(stats) => stats,
        other => panic!("a new transaction is recorded: {other:?}"),
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    store
        .commit(tx, &assessment(tx, stats, 0.2), deadline)
        .await
}

fn replica_in_sync(replica: &RedisServer) -> bool {
    replica
        .command(&["INFO", "replication"])
        .is_ok_and(|info| info.contains("master_link_status:up"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_a_replica_acknowledged_is_saved_and_a_retry_waits_for_it_too() {
    let primary = RedisServer::start();
    let mut replica = RedisServer::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &primary.port().to_string(),
        "--enable-debug-command",
        "local",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replica_in_sync(&replica) {
        assert!(Instant::now() < deadline, "the replica did not sync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let waiting = store(primary.url(), 1).await;
    let not_waiting = store(primary.url(), 0).await;
    let customer = unique_customer("wait-replicas");
    let tx = |id: &str| transaction(&customer, id, 3.0, OffsetDateTime::now_utc());

    let first = tx("first");
    assert!(matches!(
        score(&waiting, &first).await,
        Ok(CommitOutcome::Saved)
    ));

    replica.stop();
    let alone = tx("alone");
    let outcome = score(&waiting, &alone).await;
    assert!(
        matches!(outcome, Err(StoreError::Unavailable(_))),
        "no replica acknowledged it: {outcome:?}"
    );
    // The retry finds the assessment the primary holds, and waits for a replica too.
    let retry = common::record_now(&waiting, &alone).await;
    assert!(
        matches!(retry, Err(StoreError::Unavailable(_))),
        "a replay is not answered before a replica holds it: {retry:?}"
    );
    // Without waiting, the same primary acknowledges what no replica holds.
    assert!(matches!(
        score(&not_waiting, &tx("unreplicated")).await,
        Ok(CommitOutcome::Saved)
    ));

    // A replica again (empty, it syncs from the primary): the retry replays the first answer.
    replica.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !replica_in_sync(&replica) {
        assert!(Instant::now() < deadline, "the replica did not sync again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match common::record_now(&waiting, &alone).await {
        Ok(RecordOutcome::Replayed(saved)) => {
            assert_eq!(saved.transaction_id, *alone.transaction_id());
        }
        other => panic!("the retry replays once a replica holds it: {other:?}"),
    }

    // A replica connected but not acknowledging (asleep): an assessment saved meanwhile is not
    // confirmed by a replay on a connection that wrote long before, whose own writes the
    // replica did acknowledge (the marker written first makes WAIT cover what it replays).
    // First the replica acknowledges everything so far (it reports its offset every second),
    // so that a WAIT that covered only those older writes would return at once.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let port = replica.port();
    let sleeper = std::thread::spawn(move || {
        RedisServer::command_on(port, &["DEBUG", "SLEEP", "1.5"]).expect("DEBUG SLEEP")
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asleep = tx("while-the-replica-sleeps");
    assert!(matches!(
        score(&not_waiting, &asleep).await,
        Ok(CommitOutcome::Saved)
    ));
    for _ in 0..2 {
        // Both connections of the pool: each has written before, and each must wait.
        let replay = common::record_now(&waiting, &asleep).await;
        assert!(
            matches!(replay, Err(StoreError::Unavailable(_))),
            "not acknowledged yet: {replay:?}"
        );
        // A second unit of work of the same transaction finds the assessment saved: the
        // commit script writes nothing then, and only the marker makes WAIT cover it.
        let again = assessment(&asleep, Default::default(), 0.2);
        let late = Instant::now() + Duration::from_secs(1);
        let commit = waiting.commit(&asleep, &again, late).await;
        assert!(
            matches!(commit, Err(StoreError::Unavailable(_))),
            "an assessment saved elsewhere is not confirmed yet: {commit:?}"
        );
    }
    sleeper.join().expect("the sleeper");
}
