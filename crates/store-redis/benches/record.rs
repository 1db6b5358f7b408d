//! Record-and-aggregate against a local `redis-server`: latency (one request at a time), Redis's
//! own time per script call (`INFO commandstats`, over the latency run) and throughput (64 in
//! flight) with one connection and with a pool of four, for customers with 1, 100 and 5,000
//! transactions in their 24 h window, and for the busiest when transactions arrive late.
//!
//! The window's population is held steady: a customer's history is spread evenly over 24 h, and
//! each measured request comes one spacing later on the store's clock, so one transaction enters
//! and one expires, as in steady traffic; a late one carries a timestamp up to `lateness` before
//! that. Run with `cargo xtask bench-store`; prints Markdown.

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use antifraud_domain::{Fingerprint, TransactionStore};
use antifraud_store_conformance::{received, transaction, unique_customer};
use antifraud_store_redis::{RedisSettings, RedisStore};
use antifraud_testkit::RedisServer;
use hdrhistogram::Histogram;
use time::OffsetDateTime;

const LATENCY_SAMPLES: u64 = 2_000;
const THROUGHPUT_FOR: StdDuration = StdDuration::from_secs(3);
const IN_FLIGHT: usize = 64;
/// Customers shared by the in-flight requests (seeding 64 × 5,000 would dominate the run).
const LOAD_CUSTOMERS: usize = 8;

/// A customer whose window holds `history` transactions evenly spaced over 24 h, and its clock.
struct Customer {
    id: String,
    start: OffsetDateTime,
    spacing: time::Duration,
    next: AtomicU64,
}

impl Customer {
    async fn seed(store: &RedisStore, history: u64) -> Customer {
        let spacing = time::Duration::hours(24) / history as f64;
        let start = OffsetDateTime::now_utc();
        let id = unique_customer("bench");
        // The last seeded transaction is at `start`; the oldest is just inside its 24 h window.
        for i in 0..history.saturating_sub(1) {
            let at = start - spacing * (i + 1) as f64 + time::Duration::microseconds(1);
            let tx = transaction(&id, &format!("seed-{i}"), 10.0, at);
            store
                .record(&tx, &Fingerprint::of(&tx), &received(start))
                .await
                .expect("seeded");
        }
        Customer {
            id,
            start,
            spacing,
            next: AtomicU64::new(0),
        }
    }

    /// Records the customer's next transaction, one spacing after the previous one, with an
    /// event time up to `lateness` earlier (spread by a hash of its number: reproducible).
    async fn record_next(&self, store: &RedisStore, lateness: time::Duration) -> StdDuration {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.start + self.spacing * k as f64;
        let spread = (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64;
        let tx = transaction(&self.id, &format!("tx-{k}"), 42.0, now - lateness * spread);
        let fingerprint = Fingerprint::of(&tx);
        let started = Instant::now();
        store
            .record(&tx, &fingerprint, &received(now))
            .await
            .expect("recorded");
        started.elapsed()
    }
}

fn us(histogram: &Histogram<u64>, quantile: f64) -> u64 {
    histogram.value_at_quantile(quantile)
}

/// Redis's own time per `EVALSHA` since the last `CONFIG RESETSTAT`, µs.
fn script_us(server: &RedisServer) -> String {
    let stats = server.command(&["INFO", "commandstats"]).expect("INFO");
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
        .and_then(|line| {
            line.split(',')
                .find_map(|field| field.strip_prefix("usec_per_call="))
        })
        .map_or_else(|| "?".to_owned(), |us| us.trim().to_owned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = RedisServer::start();
    println!(
        "| connections | transactions in window | late by up to | p50 µs | p99 µs | p99.9 µs | Redis µs per call | throughput /s ({IN_FLIGHT} in flight) | p50 / p99 µs under load |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for pool_size in [1, 4] {
        let settings = RedisSettings {
            pool_size,
            command_timeout: StdDuration::from_secs(5),
            ..RedisSettings::new(server.url())
        };
        let store = Arc::new(RedisStore::connect(&settings).expect("settings"));
        store
            .wait_for_connect(StdDuration::from_secs(10))
            .await
            .expect("connected");
        let in_order = time::Duration::ZERO;
        for (history, lateness) in [
            (1, in_order),
            (100, in_order),
            (5_000, in_order),
            (5_000, time::Duration::seconds(10)),
            (5_000, time::Duration::hours(3)),
        ] {
            let customer = Customer::seed(&store, history).await;
            let mut latency = Histogram::<u64>::new(3).expect("histogram");
            server.command(&["CONFIG", "RESETSTAT"]).expect("RESETSTAT");
            for _ in 0..LATENCY_SAMPLES {
                let took = customer.record_next(&store, lateness).await;
                latency.record(took.as_micros() as u64).expect("in range");
            }
            let on_redis = script_us(&server);

            let mut customers = Vec::new();
            for _ in 0..LOAD_CUSTOMERS {
                customers.push(Arc::new(Customer::seed(&store, history).await));
            }
            let started = Instant::now();
            let tasks: Vec<_> = (0..IN_FLIGHT)
                .map(|t| {
                    let store = Arc::clone(&store);
                    let customer = Arc::clone(&customers[t % LOAD_CUSTOMERS]);
                    tokio::spawn(async move {
                        let mut local = Histogram::<u64>::new(3).expect("histogram");
                        while started.elapsed() < THROUGHPUT_FOR {
                            let took = customer.record_next(&store, lateness).await;
                            local.record(took.as_micros() as u64).expect("in range");
                        }
                        local
                    })
                })
                .collect();
            let mut loaded = Histogram::<u64>::new(3).expect("histogram");
            for task in tasks {
                loaded
                    .add(task.await.expect("no panic"))
                    .expect("same bounds");
            }
            let throughput = loaded.len() as f64 / started.elapsed().as_secs_f64();
            println!(
                "| {pool_size} | {history} | {lateness} | {} | {} | {} | {on_redis} | {throughput:.0} | {} / {} |",
                us(&latency, 0.5),
                us(&latency, 0.99),
                us(&latency, 0.999),
                us(&loaded, 0.5),
                us(&loaded, 0.99),
            );
        }
        store.quit().await;
    }
    drop(server);
}
