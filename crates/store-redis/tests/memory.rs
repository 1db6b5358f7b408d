//! What a customer and a retained transaction cost in Redis memory, measured (`INFO memory`'s
//! `used_memory`) on the real key schema with realistic ids and a saved answer with a reason:
//! the figures docs/scaling.md sizes shards with. Each stays under the budget docs/redis.md
//! states, so a change to the key schema that bloats it fails here.

use std::time::{Duration, Instant};

use antifraud_domain::{RecordOutcome, TransactionStore};
use antifraud_store_conformance::{assessment, transaction};
use antifraud_store_redis::RedisStore;
use antifraud_testkit::RedisServer;
use time::OffsetDateTime;

mod common;

/// The budget per retained transaction of a busy customer (its record, idempotency entry,
/// saved answer, and its share of the running-sum index), bytes. Measured 1,246 on Redis
/// 7.0.15, of which the saved answer's JSON is about 660.
const PER_TRANSACTION_BUDGET: f64 = 1_500.0;
/// The budget of a customer with one transaction: its keys' own overhead on top (measured
/// 1,438).
const PER_CUSTOMER_BUDGET: f64 = 2_000.0;

fn used_memory(server: &RedisServer) -> f64 {
    let info = server.bulk(&["INFO", "memory"]).expect("INFO memory");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// Records and commits `count` transactions of `customer`, spread over the last 23 hours (so
/// that the index has its hourly buckets), with 36-character ids like a UUID's.
async fn fill(store: &RedisStore, customer: &str, count: u32) {
    let now = OffsetDateTime::now_utc();
    for i in 0..count {
        let at = now - time::Duration::seconds(i64::from(i) * 82_800 / i64::from(count.max(1)));
        let id = format!("{:08x}-0000-4000-8000-{:012x}", i, u64::from(i) * 7919);
        let tx = transaction(customer, &id, 10.0 + f64::from(i % 500), at);
        let RecordOutcome::Recorded(stats) =
            common::record_now(store, &tx).await.expect("recorded")
        else {
            panic!("a new transaction is recorded")
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        store
            .commit(&tx, &assessment(&tx, stats, 0.2), deadline)
            .await
            .expect("committed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_and_a_retained_transaction_cost_what_the_docs_say() {
    let server = RedisServer::start();
    let store = common::connected(server.url(), 4, Duration::from_secs(2)).await;
    let base = used_memory(&server);

    // Many customers with one transaction each: what a customer costs.
    const CUSTOMERS: u32 = 2_000;
    for c in 0..CUSTOMERS {
        fill(&store, &format!("cust-{c:010}"), 1).await;
    }
    let after_customers = used_memory(&server);
    let per_customer = (after_customers - base) / f64::from(CUSTOMERS);

    // Busy customers with long histories: what one more retained transaction costs.
    const BUSY: u32 = 10;
    const EACH: u32 = 400;
    for c in 0..BUSY {
        fill(&store, &format!("busy-{c:010}"), EACH).await;
    }
    let per_transaction = (used_memory(&server) - after_customers - f64::from(BUSY) * per_customer)
        / f64::from(BUSY * (EACH - 1));
    println!(
        "Redis memory: {per_customer:.0} bytes per customer with one transaction, \
         {per_transaction:.0} bytes per further retained transaction ({BUSY} customers of {EACH})"
    );
    assert!(
        per_customer < PER_CUSTOMER_BUDGET,
        "{per_customer:.0} B per customer"
    );
    assert!(
        per_transaction < PER_TRANSACTION_BUDGET,
        "{per_transaction:.0} B per transaction"
    );
    // Measured, not assumed: the figures are of the real schema, not zero.
    assert!(per_transaction > 100.0 && per_customer > per_transaction);
}
