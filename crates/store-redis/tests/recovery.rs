//! Recovery after an outage: once Redis answers again, a pool that waited out the outage is
//! back before a command queued on it times out, so no request fails after the first success
//! (seen on another worker's pool).

use std::time::Duration;

use antifraud_domain::TransactionStore;
use antifraud_testkit::RedisServer;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_a_waiting_pool_is_back_within_its_command_timeout() {
    let mut server = RedisServer::start();
    let timeout = Duration::from_millis(100);
    let waiting = common::connected(server.url(), 2, timeout).await;

    // A long outage: the pool's reconnection backoff reaches its ceiling.
    server.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.restart();

    // The first success, as another worker would see it: a pool that connects now.
    let _fresh = common::connected(server.url(), 2, timeout).await;
    // Right after it, the pool that waited out the outage answers within its command timeout.
    for attempt in 0..5 {
        if let Err(error) = waiting.check().await {
            panic!("attempt {attempt}: the waiting pool is not back yet: {error}");
        }
    }
}

/// The same on a Redis Cluster, when the node of a customer's slot is killed and comes back:
/// once one pool gets an answer from it, the pool that waited out the outage answers too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_waiting_pool_is_back_with_the_node_it_lost() {
    use antifraud_domain::RecordOutcome;
    use antifraud_store_conformance::{transaction, unique_customer};
    use time::OffsetDateTime;

    let mut cluster = antifraud_testkit::RedisCluster::start();
    let timeout = Duration::from_millis(100);
    let waiting = common::connected(cluster.url(), 2, timeout).await;
    let customer = unique_customer("cluster-recovery");
    let record = async |store: &antifraud_store_redis::RedisStore, id: &str| {
        common::record_now(
            store,
            &transaction(&customer, id, 1.0, OffsetDateTime::now_utc()),
        )
        .await
    };
    assert!(matches!(
        record(&waiting, "before").await,
        Ok(RecordOutcome::Recorded(_))
    ));

    // Every node goes down and comes back, so the customer's node is among them.
    for node in cluster.nodes_mut() {
        node.stop();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for node in cluster.nodes_mut() {
        node.restart();
    }
    cluster.wait_until_ok();

    let fresh = common::connected(cluster.url(), 2, timeout).await;
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(outcome) = record(&fresh, "first").await {
                break outcome;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a fresh pool records once the cluster is back");
    assert!(matches!(first, RecordOutcome::Recorded(_)), "{first:?}");
    for attempt in 0..5 {
        let outcome = record(&waiting, &format!("after-{attempt}")).await;
        assert!(
            matches!(outcome, Ok(RecordOutcome::Recorded(_))),
            "attempt {attempt}: the waiting pool is not back yet: {outcome:?}"
        );
    }
}
