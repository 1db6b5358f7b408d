//! Failover through the service: the service on Sentinel, the primary killed under steady
//! load. No 500 and no hung request; 503s (retry-safe) only while no primary answers, in one
//! window that is measured; the service follows the promotion without a restart; and a
//! transaction answered 200 and replicated before the kill replays after it, the same body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant};

use antifraud_app::config::Inputs;
use antifraud_testkit::{RedisCluster, RedisSentinel};
use time::Duration;

use crate::helpers::{http_client, spawn_app_on, transaction};

/// Far above the 200 ms command timeout and deadline used here: a request slower than this
/// hung.
const NO_HANG: StdDuration = StdDuration::from_secs(3);
/// The window the issue asks for, with Sentinel's timeouts set for it.
const MAX_WINDOW: StdDuration = StdDuration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_under_load_costs_one_short_window_of_503s_and_nothing_else() {
    let mut sentinel = RedisSentinel::start();
    let app = spawn_app_on(
        Inputs {
            redis_url: Some(sentinel.url()),
            redis_timeout_ms: Some("200".into()),
            ..Inputs::default()
        },
        None,
    )
    .await;
    let url = format!("{}/api/v1/transactions", app.address);
    let before = transaction("fay", "before", 30.0, Duration::ZERO);
    let first = app.score(&before).await;
    assert_eq!(first.status(), 200);
    let first = first.text().await.expect("a body");
    sentinel.wait_until_replicated(StdDuration::from_secs(5));

    // Steady load: four clients, each sending new transactions back to back.
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..4 {
        let (url, stop) = (url.clone(), Arc::clone(&stop));
        clients.spawn(async move {
            let http = http_client();
            let mut seen = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = transaction(
                    &format!("load-{client}"),
                    &format!("tx-{n}"),
                    5.0,
                    Duration::ZERO,
                );
                let sent = Instant::now();
                let status = http
                    .post(&url)
                    .timeout(NO_HANG)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or_else(|e| panic!("a request hung or failed: {e}"));
                seen.push((sent - started, status));
                tokio::time::sleep(StdDuration::from_millis(10)).await;
            }
            seen
        });
    }
    tokio::time::sleep(StdDuration::from_secs(1)).await;
    let old = sentinel.kill_primary();
    let killed = started.elapsed();
    let promoted = tokio::task::spawn_blocking(move || {
        let port = sentinel.wait_for_promotion(old, StdDuration::from_secs(20));
        (sentinel, port)
    })
    .await
    .expect("the wait completes");
    let (sentinel, _) = promoted;
    // Load goes on until it has seen three seconds of the promoted primary.
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    while let Some(client) = clients.join_next().await {
        seen.extend(client.expect("a client task"));
    }
    seen.sort();

    let others: Vec<_> = seen
        .iter()
        .filter(|(_, s)| *s != 200 && *s != 503)
        .collect();
    assert!(others.is_empty(), "only 200 and 503: {others:?}");
    let unavailable: Vec<StdDuration> = seen
        .iter()
        .filter(|(_, s)| *s == 503)
        .map(|(at, _)| *at)
        .collect();
    let (Some(first_503), Some(last_503)) = (unavailable.first(), unavailable.last()) else {
        panic!("the kill was not noticed: {} requests, all 200", seen.len());
    };
    let window = *last_503 - *first_503;
    // Requests in flight at the kill were sent just before it: signed offsets.
    let since_kill = |at: StdDuration| (at.as_secs_f64() - killed.as_secs_f64()) * 1000.0;
    println!(
        "failover through the service: {} requests, {} answered 503, sent from {:.0} ms to \
         {:.0} ms after the kill ({window:?})",
        seen.len(),
        unavailable.len(),
        since_kill(*first_503),
        since_kill(*last_503),
    );
    assert!(window < MAX_WINDOW, "503s for {window:?}");
    // One window: after the last 503, every request succeeds, for seconds of load.
    let after: Vec<_> = seen.iter().filter(|(at, _)| at > last_503).collect();
    assert!(after.len() > 20, "load after the window: {}", after.len());
    assert!(after.iter().all(|(_, s)| *s == 200));
    // The transaction answered before the kill, and replicated, is still known: its retry is
    // answered with the very same body.
    let retry = app.score(&before).await;
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.text().await.expect("a body"), first);
    drop(sentinel);
}

/// Transactions answered 200, each followed at once by the primary's death (a fresh primary,
/// replica and sentinels each round), then what their retries found after the failover:
/// (answered, replayed). A retry that is not a replay found its transaction forgotten and
/// recorded it again: its first answer is lost.
async fn kill_right_after_answers(wait_replicas: &str, rounds: usize) -> (usize, usize) {
    let mut replayed = 0;
    for round in 0..rounds {
        // Two replicas: after the failover, the new primary still has one to wait for.
        let mut sentinel = RedisSentinel::start_with_replicas(2);
        let app = spawn_app_on(
            Inputs {
                redis_url: Some(sentinel.url()),
                redis_timeout_ms: Some("200".into()),
                redis_wait_replicas: Some(wait_replicas.into()),
                redis_wait_timeout_ms: Some("100".into()),
                deadline_ms: Some("1000".into()),
                ..Inputs::default()
            },
            None,
        )
        .await;
        let until_ok = async |body: &serde_json::Value| -> (bool, String) {
            let deadline = Instant::now() + StdDuration::from_secs(20);
            loop {
                let response = app.score(body).await;
                let status = response.status().as_u16();
                let again = response.headers().get("idempotent-replayed").is_some();
                let text = response.text().await.expect("a body");
                if status == 200 {
                    return (again, text);
                }
                assert_eq!(status, 503, "only 503 while failing over: {text}");
                assert!(Instant::now() < deadline, "no 200 within 20 s");
                tokio::time::sleep(StdDuration::from_millis(50)).await;
            }
        };
        let customer = format!("killed-after-{wait_replicas}-{round}");
        let tx = transaction(&customer, "answered", 10.0, Duration::ZERO);
        let (_, body) = until_ok(&tx).await;
        // The moment it is answered, the primary dies.
        let old = sentinel.kill_primary();
        let sentinel = tokio::task::spawn_blocking(move || {
            sentinel.wait_for_promotion(old, StdDuration::from_secs(20));
            sentinel
        })
        .await
        .expect("the failover completes");
        let (was_replayed, again) = until_ok(&tx).await;
        if was_replayed {
            assert_eq!(again, body, "a replay is the very same body");
            replayed += 1;
        }
        // Nothing counts twice: the next transaction counts the retried one once, and itself.
        let next = transaction(&customer, "next", 1.0, Duration::ZERO);
        let (_, text) = until_ok(&next).await;
        let next: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(crate::helpers::count_24h(&next), 2, "{next}");
        drop(sentinel);
    }
    (rounds, replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_every_answer_survives_the_primary_killed_right_after_it() {
    let (answered, known) = kill_right_after_answers("1", 5).await;
    println!("--redis-wait-replicas 1: {known} of {answered} answered transactions survived");
    assert_eq!(known, answered, "nothing acknowledged is lost");
}

/// The default (0) measured: how many transactions answered 200 a failover forgets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_waiting_a_failover_right_after_answers_is_measured() {
    let (answered, known) = kill_right_after_answers("0", 3).await;
    println!(
        "--redis-wait-replicas 0: {} of {answered} answered transactions lost by a failover \
         right after the answer",
        answered - known
    );
}

/// What one client of a cluster's steady load saw: per transaction, when it was first sent
/// and its statuses until the 200 (each 503 retried with the same body).
struct ClientLog {
    customer: String,
    answered: usize,
    unavailable: Vec<StdDuration>,
    other: Vec<u16>,
}

/// The service's warnings, kept to say why a request was answered 503 when the test fails
/// (the answer itself only says the outcome is unknown).
#[derive(Clone, Default)]
struct Warnings(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Warnings {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Warnings {
    /// Collects the warnings of this test's process from now on.
    fn capture() -> Warnings {
        let warnings = Warnings::default();
        let writer = warnings.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        warnings
    }

    fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// A customer whose keys (`af:{hex}:…`) fall in a slot `wanted` accepts.
fn customer_in(cluster: &RedisCluster, prefix: &str, wanted: impl Fn(u16) -> bool) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}-{i}"))
        .find(|c| wanted(slot_of(cluster, c)))
        .expect("a customer in the slots")
}

/// The answer to `tx`, retried with the same body while it is 503 (at most 10 s).
async fn until_ok(app: &crate::helpers::TestApp, tx: &serde_json::Value) -> serde_json::Value {
    let give_up = Instant::now() + StdDuration::from_secs(10);
    loop {
        let response = app.score(tx).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        if status == 200 {
            return serde_json::from_str(&text).expect("JSON");
        }
        assert!(
            status == 503 && Instant::now() < give_up,
            "{status}: {text}"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
}

/// The slot of a customer's keys.
fn slot_of(cluster: &RedisCluster, customer: &str) -> u16 {
    let hex: String = customer.bytes().map(|b| format!("{b:02x}")).collect();
    cluster.key_slot(&format!("{{{hex}}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_and_a_busy_slot_resharded_under_load_lose_and_double_nothing() {
    /// redis-cli moves the source's lowest slots first: customers below this move.
    const MOVED_SLOTS: u16 = 200;
    /// How long after the reshard its 503s may last: fred 10.1 sometimes holds a client's
    /// commands for 2–3 s while it follows the redirects (about one run in ten: "Routing
    /// Error: Max attempts reached" following an `ASK`, then timeouts); see docs/redis.md.
    const RESHARD_TAIL: StdDuration = StdDuration::from_secs(3);
    /// After the dead master is back as a replica in sync, how long its new master may take
    /// to count it in `WAIT` (its first acknowledgement): the failover's end, at the latest.
    const SETTLE: StdDuration = StdDuration::from_secs(3);
    let warnings = Warnings::capture();
    let mut cluster = RedisCluster::start_with_replicas();
    // Two busy customers in the slots a reshard moves off the master of slot 0, two on the
    // master that is killed.
    let source = cluster.master_of(0).expect("a master of slot 0");
    let moving: Vec<String> = (0..2)
        .map(|i| customer_in(&cluster, &format!("moving-{i}"), |s| s < MOVED_SLOTS))
        .collect();
    let doomed_slot = slot_of(&cluster, "doomed-probe");
    let doomed = cluster.master_of(doomed_slot).expect("a master");
    let killed_customers: Vec<String> = (0..2)
        .map(|i| {
            customer_in(&cluster, &format!("killed-{i}"), |s| {
                cluster.master_of(s) == Some(doomed)
            })
        })
        .collect();
    let target = (0..16384u16)
        .step_by(1000)
        .filter_map(|s| cluster.master_of(s))
        .find(|m| *m != source && *m != doomed)
        .expect("a third master");
    let app = spawn_app_on(
        Inputs {
            redis_url: Some(cluster.url()),
            redis_timeout_ms: Some("200".into()),
            redis_wait_replicas: Some("1".into()),
            redis_wait_timeout_ms: Some("100".into()),
            deadline_ms: Some("1000".into()),
            ..Inputs::default()
        },
        None,
    )
    .await;
    let url = format!("{}/api/v1/transactions", app.address);

    let (started, started_at) = (Instant::now(), time::OffsetDateTime::now_utc());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for customer in moving.iter().chain(&killed_customers).cloned() {
        let (url, stop) = (url.clone(), Arc::clone(&stop));
        clients.spawn(async move {
            let http = http_client();
            let mut log = ClientLog {
                customer,
                answered: 0,
                unavailable: Vec::new(),
                other: Vec::new(),
            };
            while !stop.load(Ordering::Relaxed) {
                let body = transaction(
                    &log.customer,
                    &format!("tx-{}", log.answered),
                    5.0,
                    Duration::ZERO,
                );
                let give_up = Instant::now() + StdDuration::from_secs(30);
                loop {
                    let sent = started.elapsed();
                    let response = http
                        .post(&url)
                        .timeout(NO_HANG)
                        .json(&body)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("a request hung or failed: {e}"));
                    match response.status().as_u16() {
                        200 => break,
                        503 => log.unavailable.push(sent),
                        other => log.other.push(other),
                    }
                    assert!(Instant::now() < give_up, "no 200 within 30 s");
                    tokio::time::sleep(StdDuration::from_millis(20)).await;
                }
                log.answered += 1;
                tokio::time::sleep(StdDuration::from_millis(10)).await;
            }
            log
        });
    }
    tokio::time::sleep(StdDuration::from_secs(1)).await;

    // A master dies; its replica takes over; the dead one comes back as the new replica (until
    // then, `WAIT 1` rightly refuses the shard's answers).
    cluster.kill(doomed);
    let killed = started.elapsed();
    let (cluster, promoted) = tokio::task::spawn_blocking(move || {
        let mut cluster = cluster;
        let promoted = cluster.wait_for_failover(doomed_slot, doomed, StdDuration::from_secs(30));
        assert_ne!(promoted, doomed);
        let promoted = started.elapsed();
        cluster.revive(doomed);
        cluster.wait_until_replica_in_sync(doomed, StdDuration::from_secs(30));
        (cluster, promoted)
    })
    .await
    .expect("the failover completes");
    let healed = started.elapsed() + SETTLE;
    tokio::time::sleep(SETTLE).await;

    // The busy customers' slots move to another master under load: MOVED and ASK.
    let reshard_started = started.elapsed();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.reshard(source, target, MOVED_SLOTS);
        cluster
    })
    .await
    .expect("the reshard completes");
    let reshard_ended = started.elapsed();
    for customer in &moving {
        assert_eq!(
            cluster.master_of(slot_of(&cluster, customer)),
            Some(target),
            "{customer}'s slot moved"
        );
    }
    tokio::time::sleep(RESHARD_TAIL + StdDuration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    while let Some(log) = clients.join_next().await {
        logs.push(log.expect("a client task"));
    }

    let on_killed = |l: &&ClientLog| killed_customers.contains(&l.customer);
    let during_reshard =
        |at: &&StdDuration| **at >= reshard_started && **at <= reshard_ended + RESHARD_TAIL;
    let reshard_503s = logs
        .iter()
        .flat_map(|l| &l.unavailable)
        .filter(during_reshard)
        .count();
    let count = |logs: &mut dyn Iterator<Item = &ClientLog>| -> (usize, usize) {
        logs.fold((0, 0), |(n, u), l| {
            (n + l.answered, u + l.unavailable.len())
        })
    };
    let (killed_answered, killed_503) = count(&mut logs.iter().filter(on_killed));
    let (other_answered, other_503) = count(&mut logs.iter().filter(|l| !on_killed(l)));
    let last_503 = |logs: &mut dyn Iterator<Item = &ClientLog>| {
        logs.flat_map(|l| l.unavailable.iter().copied()).max()
    };
    println!(
        "cluster failover: master killed at {killed:?}, replica promoted at {promoted:?}, \
         the killed master's customers: {killed_503} answers 503 for {killed_answered} \
         transactions, the last sent at {:?}; the other masters' customers: {other_503} for \
         {other_answered}, the last at {:?}; reshard of {MOVED_SLOTS} slots under load from \
         {reshard_started:?} to {reshard_ended:?}, {reshard_503s} answers 503 meanwhile",
        last_503(&mut logs.iter().filter(on_killed)),
        last_503(&mut logs.iter().filter(|l| !on_killed(l))),
    );
    for log in &logs {
        assert!(
            log.other.is_empty(),
            "{}: only 200 and 503: {:?}",
            log.customer,
            log.other
        );
        // 503 only during the failover and the reshard: the killed master's customers until
        // it is back as a replica (`WAIT 1` needs one); the others' until the promotion, as
        // fred holds every command of a client while one master is unreachable; anyone's
        // while slots move and shortly after (none in most runs), never after that.
        let end = if on_killed(&log) {
            healed
        } else {
            promoted + StdDuration::from_millis(500)
        };
        for at in log.unavailable.iter().filter(|at| !during_reshard(at)) {
            assert!(
                *at + StdDuration::from_millis(300) >= killed && *at <= end,
                "{}: a 503 sent at {at:?}, outside the failover ({killed:?}..{end:?}) and the \
                 reshard; the service's warnings (the test started at {started_at}):\n{}",
                log.customer,
                warnings.text()
            );
        }
        // Nothing lost and nothing counted twice: the next transaction counts every one
        // answered, once.
        let next = until_ok(
            &app,
            &transaction(&log.customer, "after", 1.0, Duration::ZERO),
        )
        .await;
        assert_eq!(
            crate::helpers::count_24h(&next),
            log.answered as u64 + 1,
            "{}: {next}",
            log.customer
        );
    }
    assert!(
        logs.iter()
            .filter(on_killed)
            .all(|l| !l.unavailable.is_empty()),
        "the kill was noticed by the customers of the killed master"
    );
    drop(cluster);
}
