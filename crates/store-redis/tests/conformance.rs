//! The Redis store passes the store conformance suite against a real `redis-server` started on a
//! free port for each case, and against a 3-master Redis Cluster.

use std::sync::Arc;
use std::time::Duration;

use antifraud_store_redis::RedisStore;
use antifraud_testkit::{RedisCluster, RedisServer};

mod common;

async fn store_on(url: String) -> RedisStore {
    // Semantics, not speed, are under test here: a loaded 2-core machine running many tests and
    // three Redis nodes must not turn a slow answer into a failure.
    common::connected(url, 4, Duration::from_secs(5)).await
}

mod standalone {
    use super::*;

    antifraud_store_conformance::store_conformance_tests!(async {
        let server = RedisServer::start();
        let store = store_on(server.url()).await;
        (server, Arc::new(store))
    });
}

/// The suite's histories are short, so by default they are summed from their events: here every
/// customer's windows come from the index of running sums instead.
mod indexed_from_the_first_event {
    use super::*;

    antifraud_store_conformance::store_conformance_tests!(async {
        let server = RedisServer::start();
        let store = common::connected_with(antifraud_store_redis::RedisSettings {
            command_timeout: Duration::from_secs(5),
            index_from: 0,
            ..antifraud_store_redis::RedisSettings::new(server.url())
        })
        .await;
        (server, Arc::new(store))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_conformance_suite_passes_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let store = Arc::new(store_on(cluster.url()).await);
    antifraud_store_conformance::run_all(store).await;
    drop(cluster);
}
