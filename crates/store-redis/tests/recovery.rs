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
