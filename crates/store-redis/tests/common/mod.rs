//! What the Redis store's test files share: a store connected to a server the test started.

use std::time::Duration;

use antifraud_domain::{Fingerprint, RecordOutcome, StoreError, Transaction, TransactionStore};
use antifraud_store_conformance::received;
use antifraud_store_redis::{RedisSettings, RedisStore};
use time::OffsetDateTime;

/// A store on `url`, connected, with `pool_size` connections and this command timeout.
#[allow(
    dead_code,
    reason = "each test file is its own crate, and not every one takes the defaults"
)]
pub(crate) async fn connected(
    url: String,
    pool_size: usize,
    command_timeout: Duration,
) -> RedisStore {
    connected_with(RedisSettings {
        pool_size,
        command_timeout,
        ..RedisSettings::new(url)
    })
    .await
}

/// A store with these settings, connected.
pub(crate) async fn connected_with(settings: RedisSettings) -> RedisStore {
    let store = RedisStore::connect(&settings).expect("valid settings");
    store
        .wait_for_connect(Duration::from_secs(10))
        .await
        .expect("Redis is up");
    store
}

/// Records `tx` as received now, with the default deadline.
#[allow(
    dead_code,
    reason = "each test file is its own crate, and not every one records"
)]
pub(crate) async fn record_now(
    store: &RedisStore,
    tx: &Transaction,
) -> Result<RecordOutcome, StoreError> {
    store
        .record(
            tx,
            &Fingerprint::of(tx),
            &received(OffsetDateTime::now_utc()),
        )
        .await
}
