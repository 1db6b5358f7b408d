//! The Redis store's indexed aggregation agrees with the in-memory store's: the same
//! pseudo-random histories (out-of-order events, minute and hour boundaries, ties, retries,
//! retention with an advancing clock, an earlier version's keys) give the same counts and sums,
//! exactly.

use std::time::Duration as StdDuration;

use antifraud_domain::{
    Fingerprint, Mills, RecordOutcome, TransactionStore, Window, WindowStat, WindowStats,
};
use antifraud_store_conformance::{received, transaction, unique_customer};
use antifraud_store_memory::MemoryStore;
use antifraud_store_redis::RedisSettings;
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

/// `count hi lo` as (count, mills).
fn running(text: &str) -> (u64, u128) {
    let parts: Vec<u128> = text
        .split(' ')
        .map(|part| part.parse().expect("a whole number"))
        .collect();
    let [count, hi, lo] = parts[..] else {
        panic!("not `count hi lo`: {text:?}")
    };
    (count as u64, hi * 1_000_000_000 + lo)
}

/// The index holds exactly what the events are, without a rebuild's help: it counts every
/// retained event, each has its entries, and C (p of its hour, q of its bucket and its r) grows
/// by exactly that event from one event to the next, starting from b. A stale index would still
/// give exact windows (a missing entry makes the script rebuild it), only slowly: this catches
/// it. Customers below `index_from` events have only the horizon's rule to obey.
fn assert_index_holds(
    server: &RedisServer,
    keys: &antifraud_store_redis::CustomerKeys,
    index_from: usize,
    at: &str,
) {
    let strings = |args: &[&str]| -> Vec<String> {
        let reply = server.strings(args).expect("a reply");
        reply.into_iter().map(|s| s.expect("not nil")).collect()
    };
    let events = strings(&["ZRANGE", &keys.events, "0", "-1", "WITHSCORES"]);
    let hash: std::collections::HashMap<String, String> = strings(&["HGETALL", &keys.transactions])
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    // The hours before the horizon's are dropped as it passes them: the hash does not grow
    // with a customer who never goes idle.
    if let Some(horizon) = hash.get("hz") {
        let horizon = horizon.parse::<i64>().expect("µs");
        let (horizon_hour, horizon_five) = (
            horizon.div_euclid(3_600_000_000),
            horizon.div_euclid(300_000_000),
        );
        for field in hash.keys() {
            if let Some(hour) = field.strip_prefix('p').and_then(|h| h.parse::<i64>().ok()) {
                assert!(hour >= horizon_hour, "{at}: {field} outlived the horizon");
            }
            if let Some(five) = field.strip_prefix('q').and_then(|f| f.parse::<i64>().ok()) {
                assert!(five >= horizon_five, "{at}: {field} outlived the horizon");
            }
        }
    }
    if events.len() / 2 < index_from {
        return;
    }
    assert_eq!(
        hash.get("n").map(String::as_str),
        Some((events.len() / 2).to_string().as_str()),
        "{at}: n"
    );
    let mut c = hash.get("b").map_or((0, 0), |b| running(b));
    for pair in events.chunks(2) {
        let (member, score) = (&pair[0], &pair[1]);
        let (amount, id) = member.split_once('|').expect("amount|id");
        let us = score.parse::<i64>().expect("µs");
        let (hour, five) = (us.div_euclid(3_600_000_000), us.div_euclid(300_000_000));
        let field = |name: String| {
            running(
                hash.get(&name)
                    .unwrap_or_else(|| panic!("{at}: no {name} for {member}")),
            )
        };
        let (p, q, r) = (
            field(format!("p{hour}")),
            field(format!("q{five}")),
            field(format!("r:{id}")),
        );
        let mills = Mills::of(amount.parse().expect("an amount")).0 as u128;
        c = (c.0 + 1, c.1 + mills);
        assert_eq!((p.0 + q.0 + r.0, p.1 + q.1 + r.1), c, "{at}: C at {member}");
    }
}

/// The Redis keys of a test customer.
fn keys_of(customer: &str) -> antifraud_store_redis::CustomerKeys {
    antifraud_store_redis::CustomerKeys::new(
        &antifraud_domain::CustomerId::parse(customer).expect("valid id"),
    )
}

/// µs since the epoch, as the scripts score events.
fn micros(at: OffsetDateTime) -> String {
    (at.unix_timestamp_nanos() / 1000).to_string()
}

/// What an instance of the version before the index writes for a new transaction: the event in
/// its own set, the idempotency entry in the shared hash.
fn write_as_an_earlier_version(
    server: &RedisServer,
    keys: &antifraud_store_redis::CustomerKeys,
    tx: &antifraud_domain::Transaction,
) {
    let at = micros(tx.timestamp());
    let member = format!("{}|{}", tx.amount(), tx.transaction_id());
    server
        .command(&["ZADD", &keys.legacy_events, &at, &member])
        .expect("ZADD");
    let fingerprint: String = Fingerprint::of(tx)
        .0
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let field = format!("t:{}", tx.transaction_id());
    server
        .command(&[
            "HSET",
            &keys.transactions,
            &field,
            &format!("{fingerprint}|{at}"),
        ])
        .expect("HSET");
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
async fn indexed_windows_match_exact_windows() {
    same_windows_as_the_memory_store(0).await;
}

/// With the default threshold, customers cross it both ways (retention shrinks them in the later
/// rounds): the index is built when they pass it and rebuilt after they dipped below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_match_across_the_index_threshold() {
    same_windows_as_the_memory_store(RedisSettings::new("").index_from).await;
}

async fn same_windows_as_the_memory_store(index_from: usize) {
    let server = RedisServer::start();
    let redis = common::connected_with(RedisSettings {
        command_timeout: StdDuration::from_secs(5),
        index_from,
        ..RedisSettings::new(server.url())
    })
    .await;
    let memory = MemoryStore::new();
    let t0 = datetime!(2026-11-25 12:00 UTC);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    for round in 0..4 {
        let customer = unique_customer("differential");
        let keys = keys_of(&customer);
        let mut recorded = Vec::new();
        let mut now = t0;
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
            if i % 50 == 49 {
                assert_index_holds(&server, &keys, index_from, &context);
            }
            // The clock advances: in later rounds by hours, so the retention keeps deleting.
            now += Duration::seconds(rng.below(if round < 2 { 120 } else { 3 * 3600 }) as i64);
        }
    }
    drop(server);
}

/// A customer an earlier version served, or one of its instances during a rolling upgrade: its
/// events sit in the set that version wrote (`ev`, the same members), beside its buckets, with
/// their idempotency entries in the shared hash. They move into the indexed set at the
/// customer's next transaction and the old keys go, so every event counts once; a retry of one
/// of them is known. And an index that lost its counters is rebuilt, not trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_an_earlier_version_wrote_move_into_the_index_and_count_once() {
    let server = RedisServer::start();
    let redis = common::connected(server.url(), 2, StdDuration::from_secs(5)).await;
    let memory = MemoryStore::new();
    let customer = unique_customer("upgrade");
    let keys = keys_of(&customer);
    let now = datetime!(2026-11-25 12:00 UTC);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);

    for i in 0..150 {
        let at = now - Duration::minutes(300 - i);
        let tx = transaction(&customer, &format!("tx-{i}"), amount(&mut rng), at);
        assert_same(
            &record(&redis, &tx, now).await,
            &record(&memory, &tx, now).await,
            &format!("event {i}"),
        );
    }
    // What an instance of the earlier version writes for 60 more, between those.
    let mut written_before = Vec::new();
    for i in 0..60 {
        let at = now - Duration::minutes(299 - 2 * i) - Duration::seconds(30);
        let tx = transaction(&customer, &format!("old-{i}"), amount(&mut rng), at);
        record(&memory, &tx, now).await;
        write_as_an_earlier_version(&server, &keys, &tx);
        written_before.push(tx);
    }
    server
        .command(&["HSET", &keys.legacy_buckets, "m", "1", "h1", "60 6 0"])
        .expect("HSET");

    let tx = transaction(&customer, "after-upgrade", 0.2, now);
    let after = record(&redis, &tx, now).await;
    assert_same(
        &after,
        &record(&memory, &tx, now).await,
        "after the upgrade",
    );
    assert_eq!(after.get(Window::Hours24).count, 211);
    assert_index_holds(&server, &keys, 0, "after the upgrade");
    for key in [&keys.legacy_events, &keys.legacy_buckets] {
        let reply = server.command(&["EXISTS", key]).expect("EXISTS");
        assert_eq!(reply.trim(), ":0", "{key}");
    }
    // A retry of a transaction the earlier version recorded resumes it: nothing counts twice.
    let retried = &written_before[7];
    assert_same(
        &record(&redis, retried, now).await,
        &record(&memory, retried, now).await,
        "a retry of an earlier version's transaction",
    );

    // An index that lost its counters is rebuilt from the events.
    server
        .command(&["HDEL", &keys.transactions, "n"])
        .expect("HDEL");
    let tx = transaction(&customer, "after-loss", 3.5, now);
    let context = "after the index lost its counters";
    assert_same(
        &record(&redis, &tx, now).await,
        &record(&memory, &tx, now).await,
        context,
    );
    assert_index_holds(&server, &keys, 0, context);

    // An event that vanished from the set behind the index's back (`n` now disagrees; every
    // entry the next lookups read is still there) is not counted from the index's memory of it.
    let gone = "1.5|gone";
    let gone_at = micros(now - Duration::minutes(200));
    server
        .command(&["ZADD", &keys.events, &gone_at, gone])
        .expect("ZADD");
    let tx = transaction(&customer, "before-vanishing", 0.1, now);
    let with_it = record(&redis, &tx, now).await;
    record(&memory, &tx, now).await;
    server.command(&["ZREM", &keys.events, gone]).expect("ZREM");
    let tx = transaction(&customer, "after-vanishing", 0.1, now);
    let without_it = record(&redis, &tx, now).await;
    record(&memory, &tx, now).await;
    for window in [Window::Hours24, Window::Hours12, Window::Hours6] {
        let (with, without) = (with_it.get(window), without_it.get(window));
        let expected = match with.sum {
            antifraud_domain::Sum::Mills(mills) => WindowStat::exact(with.count, mills - 1_400),
            legacy => panic!("exact sums, not {legacy:?}"),
        };
        assert_eq!(without, expected, "over {}", window.label());
    }
    assert_index_holds(&server, &keys, 0, "after an event vanished");

    // An instance of the earlier version writes again (a rolling upgrade), and the transaction
    // that moves its events in comes late enough that retention removes half the history in the
    // same call: the index's entries go with the events it prunes, none is left behind.
    for i in 0..5 {
        let at = now - Duration::minutes(i * 10) - Duration::seconds(15);
        let tx = transaction(&customer, &format!("older-{i}"), amount(&mut rng), at);
        record(&memory, &tx, now).await;
        write_as_an_earlier_version(&server, &keys, &tx);
    }
    let later = now + Duration::hours(48) - Duration::minutes(250);
    let tx = transaction(&customer, "late-and-pruning", 1.25, now);
    let context = "moved in and pruned at once";
    let (from_redis, from_memory) = (
        record(&redis, &tx, later).await,
        record(&memory, &tx, later).await,
    );
    assert_same(&from_redis, &from_memory, context);
    assert_index_holds(&server, &keys, 0, context);
    drop(server);
}

/// A customer with more events in one five-minute bucket than Lua can pass to one command, and a
/// late event ahead of them all: it moves every one of their entries, and still answers exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_event_ahead_of_a_crowded_bucket_moves_every_entry() {
    let server = RedisServer::start();
    let redis = common::connected(server.url(), 4, StdDuration::from_secs(5)).await;
    let memory = MemoryStore::new();
    let customer = unique_customer("crowded");
    let keys = keys_of(&customer);
    let now = datetime!(2026-11-25 12:00 UTC);
    let bucket = now - Duration::minutes(5);
    for i in 0..9_000 {
        let at = bucket + Duration::milliseconds(1 + i / 40);
        let tx = transaction(&customer, &format!("tx-{i}"), 1.5, at);
        record(&redis, &tx, now).await;
        record(&memory, &tx, now).await;
    }
    let tx = transaction(&customer, "late", 2.25, bucket);
    let context = "late, ahead of 9,000 in its bucket";
    assert_same(
        &record(&redis, &tx, now).await,
        &record(&memory, &tx, now).await,
        context,
    );
    assert_index_holds(&server, &keys, 0, context);
    drop(server);
}
