//! Redis faults, end to end: the service on a real `redis-server` that is killed, restarted,
//! flushed of its scripts or put to sleep. No request hangs, none is counted twice, and the
//! service recovers by itself.

use std::time::{Duration as StdDuration, Instant};

use antifraud_app::config::Inputs;
use antifraud_testkit::RedisServer;
use serde_json::Value;
use time::Duration;

use crate::helpers::{TestApp, count_24h, problem, sample, spawn_app_on, transaction};

/// Generous bound for "did not hang": far above the 100 ms command timeout used here, far below
/// anything a client would wait.
const NO_HANG: StdDuration = StdDuration::from_secs(2);

async fn app_on_redis(server: RedisServer, policy: &str) -> TestApp {
    app_on(
        server,
        Inputs {
            redis_timeout_ms: Some("100".into()),
            store_failure_policy: Some(policy.into()),
            ..Inputs::default()
        },
    )
    .await
}

/// The service on `server` (which it keeps alive), with these settings besides the URL.
async fn app_on(server: RedisServer, inputs: Inputs) -> TestApp {
    spawn_app_on(
        Inputs {
            redis_url: Some(server.url()),
            ..inputs
        },
        Some(server),
    )
    .await
}

fn redis(app: &mut TestApp) -> &mut RedisServer {
    app.redis
        .as_mut()
        .expect("this app runs on a Redis of its own")
}

/// A Redis that keeps its data across a restart, as production Redis does.
fn durable_redis() -> RedisServer {
    RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
}

/// Posts and returns the status, the replay header and the body, checking it did not hang.
async fn post(app: &TestApp, body: &Value) -> (u16, bool, Value) {
    let started = Instant::now();
    let response = app
        .client
        .post(format!("{}/api/v1/transactions", app.address))
        .timeout(NO_HANG)
        .json(body)
        .send()
        .await
        .expect("an answer before the client's timeout");
    assert!(started.elapsed() < NO_HANG);
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let text = response.text().await.expect("a body");
    (
        status,
        replayed,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// Retries `body` until it is answered 200, as a client would; at most 15 s.
async fn until_ok(app: &TestApp, body: &Value) -> (bool, Value) {
    let deadline = Instant::now() + StdDuration::from_secs(15);
    loop {
        let (status, replayed, json) = post(app, body).await;
        if status == 200 {
            return (replayed, json);
        }
        assert_eq!(status, 503, "only 503 while Redis is away: {json}");
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_reject_an_outage_gets_503_and_nothing_is_lost_or_counted_twice() {
    let mut app = app_on_redis(durable_redis(), "reject").await;
    let first = transaction("alice", "tx-1", 10.0, Duration::ZERO);
    let second = transaction("alice", "tx-2", 20.0, Duration::ZERO);
    // A loaded machine may answer the very first request late: retry it as a client would.
    assert_eq!(count_24h(&until_ok(&app, &first).await.1), 1);

    redis(&mut app).stop();
    for _ in 0..3 {
        let response = app
            .client
            .post(format!("{}/api/v1/transactions", app.address))
            .timeout(NO_HANG)
            .json(&second)
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.headers()["retry-after"], "1");
        let body = problem(response, 503).await;
        assert_eq!(body["type"], "urn:antifraud:problem:store-unavailable");
        // It says what a 503 means: unknown, retry with the same body.
        let detail = body["detail"].as_str().expect("a detail");
        assert!(
            detail.contains("unknown") && detail.contains("retry with the same body"),
            "{detail}"
        );
    }
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 503);
    let errors = "antifraud_store_errors_total{kind=\"unavailable\",operation=\"record\"}";
    assert!(
        sample(&app, errors).await >= 3.0,
        "each failed record is counted"
    );
    assert_eq!(sample(&app, "antifraud_store_up").await, 0.0);
    assert_eq!(
        ready.json::<Value>().await.expect("JSON")["checks"]["store"],
        "failing"
    );

    redis(&mut app).restart();
    let (_, body) = until_ok(&app, &second).await;
    assert_eq!(
        count_24h(&body),
        2,
        "the first survived, the second counts once"
    );
    let (replayed, again) = until_ok(&app, &second).await;
    assert!(replayed);
    assert_eq!(again, body);
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while app.get("/health/ready").await.status() != 200 {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_degrade_an_outage_scores_without_history_and_says_so() {
    let mut app = app_on_redis(durable_redis(), "degrade").await;
    until_ok(&app, &transaction("bob", "tx-1", 10.0, Duration::ZERO)).await;
    redis(&mut app).stop();

    let (status, replayed, body) =
        post(&app, &transaction("bob", "tx-2", 30.0, Duration::ZERO)).await;
    assert_eq!((status, replayed), (200, false), "{body}");
    assert_eq!(body["degraded"], true);
    assert_eq!(body["degraded_reason"], "not_recorded");
    assert_eq!(count_24h(&body), 1, "this transaction alone");
    assert_eq!(body["customer_avg_amount_24h"], 30.0);
    assert_eq!(sample(&app, "antifraud_degraded_answers_total").await, 1.0);

    redis(&mut app).restart();
    let deadline = Instant::now() + StdDuration::from_secs(15);
    let body = loop {
        let (status, _, body) = post(&app, &transaction("bob", "tx-3", 5.0, Duration::ZERO)).await;
        assert_eq!(status, 200);
        if body["degraded"] == false {
            break body;
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    };
    assert_eq!(
        count_24h(&body),
        2,
        "tx-1 and tx-3; the degraded tx-2 was never recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_mid_run_are_loaded_again() {
    // The reload is under test, not timing: a command timeout a loaded machine cannot miss.
    let server = RedisServer::start();
    let mut app = app_on(
        server,
        Inputs {
            redis_timeout_ms: Some("5000".into()),
            ..Inputs::default()
        },
    )
    .await;
    app.score_ok(&transaction("carol", "tx-1", 1.0, Duration::ZERO))
        .await;
    let reply = redis(&mut app)
        .command(&["SCRIPT", "FLUSH"])
        .expect("answered");
    assert!(reply.starts_with("+OK"), "{reply}");
    let body = app
        .score_ok(&transaction("carol", "tx-2", 1.0, Duration::ZERO))
        .await;
    assert_eq!(count_24h(&body), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_answers_slowly_cannot_hold_a_request_past_the_budget() {
    let server = RedisServer::start_with(&["--enable-debug-command", "local"]);
    let port = server.port();
    let app = app_on_redis(server, "reject").await;
    until_ok(&app, &transaction("dave", "tx-1", 1.0, Duration::ZERO)).await;

    // DEBUG SLEEP blocks Redis for a second on its own connection.
    let sleeper = std::thread::spawn(move || {
        let probe = RedisServer::command_on(port, &["DEBUG", "SLEEP", "1"]);
        probe.expect("DEBUG SLEEP answered")
    });
    tokio::time::sleep(StdDuration::from_millis(100)).await;
    let second = transaction("dave", "tx-2", 1.0, Duration::ZERO);
    let started = Instant::now();
    let (status, _, _) = post(&app, &second).await;
    let waited = started.elapsed();
    assert_eq!(status, 503);
    assert!(
        waited < StdDuration::from_millis(800),
        "answered while Redis slept: {waited:?}"
    );
    assert!(sleeper.join().expect("no panic").starts_with("+OK"));

    let (_, body) = until_ok(&app, &second).await;
    assert_eq!(
        count_24h(&body),
        2,
        "the timed-out attempt did not count twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_while_redis_is_down_recovers_when_it_comes_up() {
    let mut server = RedisServer::start();
    server.stop();
    let mut app = app_on_redis(server, "reject").await;
    let tx = transaction("erin", "tx-1", 1.0, Duration::ZERO);
    let (status, _, _) = post(&app, &tx).await;
    assert_eq!(status, 503);
    assert_eq!(app.get("/health/ready").await.status(), 503);

    redis(&mut app).restart();
    let (replayed, body) = until_ok(&app, &tx).await;
    assert!(!replayed);
    assert_eq!(count_24h(&body), 1);
}

#[tokio::test]
async fn the_redis_password_can_come_from_a_file() {
    let server = RedisServer::start();
    server
        .command(&["CONFIG", "SET", "requirepass", "pw-from-a-file-42"])
        .expect("redis-cli runs");
    let dir = std::env::temp_dir().join(format!("antifraud-store-redis-pw-{}", server.port()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("redis-password");
    std::fs::write(&path, "pw-from-a-file-42\n").expect("write");
    let app = spawn_app_on(
        Inputs {
            // No password in the URL: it comes from the file.
            redis_url: Some(server.url()),
            redis_password_file: Some(path.display().to_string()),
            ..Inputs::default()
        },
        Some(server),
    )
    .await;
    let body = app
        .score_ok(&transaction("pat", "t1", 5.0, Duration::minutes(-1)))
        .await;
    assert_eq!(count_24h(&body), 1);
    assert_eq!(app.get("/health/ready").await.status(), 200);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_lost_while_the_model_thinks_is_a_retry_safe_503_not_a_500() {
    // A model slow enough to flush Redis between the record and the commit.
    let model = crate::fake_model::FakeModelServer::start(crate::fake_model::Behaviour::Slow(
        StdDuration::from_millis(400),
    ));
    let server = RedisServer::start();
    let port = server.port();
    let app = app_on(
        server,
        Inputs {
            model: Some(model.url.clone()),
            model_timeout_ms: Some("2000".into()),
            deadline_ms: Some("5000".into()),
            ..Inputs::default()
        },
    )
    .await;
    let tx = transaction("flushed", "tx-1", 10.0, Duration::ZERO);
    let flusher = std::thread::spawn(move || {
        #[expect(
            clippy::disallowed_methods,
            reason = "a plain thread that waits for the request to reach the model"
        )]
        std::thread::sleep(StdDuration::from_millis(150));
        RedisServer::command_on(port, &["FLUSHALL"]).expect("FLUSHALL answered")
    });
    let (status, _, body) = post(&app, &tx).await;
    assert!(flusher.join().expect("no panic").starts_with("+OK"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["type"], "urn:antifraud:problem:store-unavailable");
    let errors = "antifraud_store_errors_total{kind=\"lost\",operation=\"commit\"}";
    assert_eq!(sample(&app, errors).await, 1.0, "the loss is counted");

    // The retry records it again, once.
    let (status, replayed, body) = post(&app, &tx).await;
    assert_eq!((status, replayed), (200, false), "{body}");
    assert_eq!(count_24h(&body), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_redis_answers_again_no_request_fails_after_the_first_success() {
    // A deadline roomy enough that 40 requests at once on a loaded machine are not cut by it:
    // this is about connections coming back, with the 100 ms command timeout as the bound.
    let server = durable_redis();
    let mut app = app_on(
        server,
        Inputs {
            redis_timeout_ms: Some("100".into()),
            deadline_ms: Some("2000".into()),
            ..Inputs::default()
        },
    )
    .await;
    until_ok(&app, &transaction("back", "warm", 1.0, Duration::ZERO)).await;
    redis(&mut app).stop();
    // Long enough for every pooled connection's reconnect backoff to reach its ceiling.
    for i in 0..30 {
        let (status, _, _) = post(
            &app,
            &transaction("back", &format!("down-{i}"), 1.0, Duration::ZERO),
        )
        .await;
        assert_eq!(status, 503);
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    // A flap: some connections come back and go down again, others stay in their backoff, so
    // that the pooled connections no longer retry in step (as under real traffic).
    redis(&mut app).restart();
    tokio::time::sleep(StdDuration::from_millis(30)).await;
    redis(&mut app).stop();
    tokio::time::sleep(StdDuration::from_millis(1_500)).await;
    redis(&mut app).restart();
    // Poll tightly, so that the requests below follow the first success at once.
    let deadline = Instant::now() + StdDuration::from_secs(15);
    for i in 0.. {
        let probe = transaction("back", &format!("probe-{i}"), 1.0, Duration::ZERO);
        if post(&app, &probe).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the service did not recover");
        tokio::time::sleep(StdDuration::from_millis(2)).await;
    }
    // Right after the first success, requests on fresh connections (spread over every worker,
    // each with its own Redis connections) all succeed.
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..40 {
        let address = app.address.clone();
        let body = transaction("back", &format!("after-{i}"), 1.0, Duration::ZERO);
        requests.spawn(async move {
            crate::helpers::http_client()
                .post(format!("{address}/api/v1/transactions"))
                .header("connection", "close")
                .json(&body)
                .send()
                .await
                .expect("an answer")
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = requests.join_next().await {
        statuses.push(status.expect("the request task"));
    }
    let failed = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(
        failed, 0,
        "after the first 200, every request succeeds: {statuses:?}"
    );
}

#[tokio::test]
async fn start_up_warns_when_redis_may_evict_keys() {
    let warned = |server: &RedisServer| {
        let binary = crate::helpers::Binary::start(&["--redis-url", &server.url()], &[]);
        binary
            .startup
            .iter()
            .find(|line| line["maxmemory_policy"].is_string())
            .map(|line| {
                assert_eq!(line["level"], "WARN", "{line}");
                line["maxmemory_policy"]
                    .as_str()
                    .expect("a policy")
                    .to_owned()
            })
    };
    let evicting = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    assert_eq!(warned(&evicting).as_deref(), Some("allkeys-lru"));
    let safe = RedisServer::start_with(&["--maxmemory-policy", "noeviction"]);
    assert_eq!(warned(&safe), None, "noeviction needs no warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_degraded_answer_is_never_contradicted_by_a_late_command() {
    // Redis paused past the deadline: the service answers degraded ("nothing recorded"), and
    // the command it gave up on, run when the pause ends, must not record the transaction.
    let server = RedisServer::start();
    let app = app_on(
        server,
        Inputs {
            redis_timeout_ms: Some("5000".into()),
            store_failure_policy: Some("degrade".into()),
            ..Inputs::default()
        },
    )
    .await;
    let at = Duration::minutes(-1);
    until_ok(&app, &transaction("paused", "a", 1.0, at)).await;
    let reply = app
        .redis
        .as_ref()
        .expect("a Redis of its own")
        .command(&["CLIENT", "PAUSE", "700", "ALL"])
        .expect("CLIENT PAUSE");
    assert!(reply.starts_with("+OK"), "{reply}");
    let late = transaction("paused", "b", 1.0, at);
    let (status, _, body) = post(&app, &late).await;
    assert_eq!(status, 200);
    assert_eq!(body["degraded"], true, "{body}");
    assert_eq!(body["degraded_reason"], "not_recorded", "{body}");
    assert_eq!(count_24h(&body), 1, "without history: itself alone");

    tokio::time::sleep(StdDuration::from_millis(900)).await;
    let (_, body) = until_ok(&app, &transaction("paused", "c", 1.0, at)).await;
    assert_eq!(
        count_24h(&body),
        2,
        "a and c: the degraded b was not recorded behind the answer's back"
    );
    // A retry of b is now an ordinary answer: on event time, a and b itself (c came later).
    let (status, replayed, body) = post(&app, &late).await;
    assert_eq!((status, replayed), (200, false), "{body}");
    assert_eq!(body["degraded"], false);
    assert_eq!(count_24h(&body), 2);
    // Each of a, b and c counted once.
    let (_, body) = until_ok(&app, &transaction("paused", "d", 1.0, Duration::ZERO)).await;
    assert_eq!(count_24h(&body), 4);
}
