//! Idempotency and atomicity: nothing counted twice, exact counts under concurrency.

use serde_json::Value;
use time::Duration;

use crate::helpers::{count_24h, problem, spawn_app, transaction};

#[tokio::test]
async fn a_retry_gets_the_same_body_marked_replayed_and_counts_once() {
    let app = spawn_app().await;
    let tx = transaction("alice", "tx-1", 10.0, Duration::ZERO);
    let first = app.score(&tx).await;
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = first.text().await.expect("a body");
    for _ in 0..3 {
        let retry = app.score(&tx).await;
        assert_eq!(retry.status(), 200);
        assert_eq!(retry.headers()["idempotent-replayed"], "true");
        assert_eq!(
            retry.text().await.expect("a body"),
            first,
            "the very same body"
        );
    }
    let next = app
        .score_ok(&transaction("alice", "tx-2", 20.0, Duration::ZERO))
        .await;
    assert_eq!(count_24h(&next), 2);
    assert_eq!(next["customer_avg_amount_24h"], 15.0);
}

#[tokio::test]
async fn the_same_ids_with_another_payload_are_a_conflict_and_not_recorded() {
    let app = spawn_app().await;
    let tx = transaction("bob", "tx-1", 10.0, Duration::ZERO);
    app.score_ok(&tx).await;
    let mut changed = tx.clone();
    changed["amount"] = 11.0.into();
    let body = problem(app.score(&changed).await, 409).await;
    assert_eq!(body["type"], "urn:antifraud:problem:idempotency-conflict");

    let replay = app.score(&tx).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let next = app
        .score_ok(&transaction("bob", "tx-2", 1.0, Duration::ZERO))
        .await;
    assert_eq!(count_24h(&next), 2);
    assert_eq!(next["customer_avg_amount_24h"], 5.5);
}

#[tokio::test]
async fn a_transaction_id_is_scoped_by_its_customer() {
    let app = spawn_app().await;
    app.score_ok(&transaction("carol", "shared", 10.0, Duration::ZERO))
        .await;
    let other = app
        .score(&transaction("dave", "shared", 99.0, Duration::ZERO))
        .await;
    assert!(other.headers().get("idempotent-replayed").is_none());
    let other: Value = other.json().await.expect("JSON");
    assert_eq!(count_24h(&other), 1);
    assert_eq!(other["customer_avg_amount_24h"], 99.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_of_one_new_customer_get_exact_counts() {
    const N: u64 = 40;
    let app = spawn_app().await;
    let timestamp = crate::helpers::at(Duration::ZERO);
    let requests = (0..N).map(|i| {
        let mut tx = transaction("erin", &format!("tx-{i}"), 1.0, Duration::ZERO);
        tx["timestamp"] = timestamp.clone().into();
        let (client, url) = (
            app.client.clone(),
            format!("{}/api/v1/transactions", app.address),
        );
        tokio::spawn(async move {
            let response = client.post(url).json(&tx).send().await.expect("answer");
            assert_eq!(response.status(), 200);
            count_24h(&response.json().await.expect("JSON"))
        })
    });
    let mut counts = Vec::new();
    for request in requests.collect::<Vec<_>>() {
        counts.push(request.await.expect("no panic"));
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=N).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_all_get_the_first_answer() {
    const N: usize = 16;
    let app = spawn_app().await;
    let tx = transaction("frank", "dup", 7.0, Duration::ZERO);
    let requests: Vec<_> = (0..N)
        .map(|_| {
            let (client, url, tx) = (
                app.client.clone(),
                format!("{}/api/v1/transactions", app.address),
                tx.clone(),
            );
            tokio::spawn(async move {
                let response = client.post(url).json(&tx).send().await.expect("answer");
                assert_eq!(response.status(), 200);
                let replayed = response.headers().get("idempotent-replayed").is_some();
                (replayed, response.text().await.expect("a body"))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.expect("no panic"));
    }
    let fresh = answers.iter().filter(|(replayed, _)| !replayed).count();
    assert_eq!(
        fresh, 1,
        "exactly one request scored, the others replayed its answer"
    );
    assert!(answers.iter().all(|(_, body)| *body == answers[0].1));
    let next = app
        .score_ok(&transaction("frank", "next", 1.0, Duration::ZERO))
        .await;
    assert_eq!(count_24h(&next), 2);
}

#[tokio::test]
async fn an_answer_saved_by_an_earlier_version_replays_as_it_was_sent() {
    let server = antifraud_testkit::RedisServer::start();
    let app = crate::helpers::spawn_app_on(
        antifraud_app::config::Inputs {
            redis_url: Some(server.url()),
            ..Default::default()
        },
        Some(server),
    )
    .await;
    let tx = transaction("upgraded", "tx-1", 10.0, Duration::ZERO);
    let first: Value = app.score(&tx).await.json().await.expect("JSON");
    let ms = first["processing_time_ms"]
        .as_u64()
        .expect("whole milliseconds");
    let us = first["processing_time_us"].as_u64().expect("microseconds");
    assert_eq!(ms, us.div_ceil(1_000), "rounded up from the precise figure");

    assert_eq!(first["decision"], "approve", "{first}");
    // Rewrite the saved answer as earlier versions wrote it: a fractional millisecond figure,
    // no microseconds, no decision.
    let redis = app.redis.as_ref().expect("a Redis of its own");
    let customer = antifraud_domain::CustomerId::parse("upgraded").expect("valid");
    let key = antifraud_store_redis::CustomerKeys::new(&customer).transactions;
    let reply = redis.command(&["HGET", &key, "a:tx-1"]).expect("HGET");
    let mut saved: Value =
        serde_json::from_str(reply.lines().nth(1).expect("a bulk string")).expect("saved JSON");
    let fields = saved.as_object_mut().expect("an object");
    assert!(fields.remove("processing_time_us").is_some(), "{saved}");
    for field in ["decision", "reasons", "rules_version"] {
        assert!(fields.remove(field).is_some(), "{field} saved: {saved}");
    }
    saved["processing_time_ms"] = serde_json::json!(0.137);
    let legacy = saved.to_string();
    redis
        .command(&["HSET", &key, "a:tx-1", &legacy])
        .expect("HSET");

    let replay = app.score(&tx).await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let text = replay.text().await.expect("a body");
    assert!(text.contains(r#""processing_time_ms":0.137"#), "{text}");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    for field in ["processing_time_us", "decision", "reasons", "rules_version"] {
        assert!(body.get(field).is_none(), "{field}: {body}");
    }
    assert_eq!(body["scoring"], first["scoring"]);
    assert_eq!(body["processed_at"], first["processed_at"]);
}

#[tokio::test]
async fn a_retry_replays_after_its_timestamp_passes_the_lateness_and_a_new_one_is_refused() {
    let app = crate::helpers::spawn_app_with(antifraud_app::config::Inputs {
        max_lateness: Some("2s".into()),
        ..Default::default()
    })
    .await;
    // One second late: accepted.
    let tx = transaction("tardy", "tx-1", 10.0, Duration::seconds(-1));
    let first = app.score(&tx).await;
    assert_eq!(first.status(), 200);
    let first = first.text().await.expect("a body");
    // Once its timestamp is past the lateness, a retry is still the same answer...
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let retry = app.score(&tx).await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.text().await.expect("a body"), first);
    // ...while a transaction as late, that the service does not hold, is refused.
    let late = transaction("tardy", "tx-2", 10.0, Duration::seconds(-3));
    let body = problem(app.score(&late).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "timestamp");
    assert_eq!(body["errors"][0]["code"], "too_old");
    let next = app
        .score(&transaction("tardy", "tx-3", 10.0, Duration::ZERO))
        .await;
    let next: Value = next.json().await.expect("JSON");
    assert_eq!(count_24h(&next), 2, "the refused one was not recorded");
}
