//! `GET /metrics`: the Prometheus series move with the traffic, with bounded labels only.

use serde_json::json;
use time::Duration;

use crate::helpers::{sample, spawn_app, transaction};

#[tokio::test]
async fn scoring_traffic_shows_in_the_metrics() {
    let app = spawn_app().await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    let tx = transaction("alice", "tx-1", 10.0, Duration::ZERO);
    app.score_ok(&tx).await;
    app.score_ok(&tx).await;
    let mut changed = tx.clone();
    changed["amount"] = json!(11.0);
    assert_eq!(app.score(&changed).await.status(), 409);
    let mut invalid = transaction("alice", "tx-2", 10.0, Duration::ZERO);
    invalid["currency"] = json!("usd");
    invalid["customer_segments"] = json!(["ok", ""]);
    assert_eq!(app.score(&invalid).await.status(), 422);
    assert_eq!(app.score_raw("{").await.status(), 400);
    assert_eq!(app.get("/no/such/path/42").await.status(), 404);

    let route = "route=\"/api/v1/transactions\"";
    for (series, expected) in [
        (
            format!("antifraud_http_requests_total{{method=\"POST\",{route},status=\"200\"}}"),
            2.0,
        ),
        (
            format!("antifraud_http_requests_total{{method=\"POST\",{route},status=\"409\"}}"),
            1.0,
        ),
        (
            format!("antifraud_http_requests_total{{method=\"POST\",{route},status=\"422\"}}"),
            1.0,
        ),
        (
            format!("antifraud_http_requests_total{{method=\"POST\",{route},status=\"400\"}}"),
            1.0,
        ),
        (
            "antifraud_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
                .into(),
            1.0,
        ),
        ("antifraud_idempotent_replays_total".into(), 1.0),
        ("antifraud_idempotency_conflicts_total".into(), 1.0),
        ("antifraud_score_count".into(), 1.0),
        ("antifraud_decisions_total{decision=\"legit\"}".into(), 1.0),
        (
            "antifraud_decision_actions_total{action=\"approve\",rules_version=\"builtin-threshold-1\"}"
                .into(),
            1.0,
        ),
        (
            "antifraud_validation_rejections_total{field=\"currency\",reason=\"unknown_currency\"}"
                .into(),
            1.0,
        ),
        (
            "antifraud_validation_rejections_total{field=\"customer_segments\",reason=\"empty\"}"
                .into(),
            1.0,
        ),
        (
            "antifraud_validation_rejections_total{field=\"body\",reason=\"malformed\"}".into(),
            1.0,
        ),
        (
            "antifraud_model_outcomes_total{model=\"fraud-gbdt\",status=\"ok\",version=\"1\"}"
                .into(),
            1.0,
        ),
        (
            "antifraud_model_duration_seconds_count{model=\"fraud-gbdt\",version=\"1\"}".into(),
            1.0,
        ),
        (
            "antifraud_store_duration_seconds_count{operation=\"commit\"}".into(),
            1.0,
        ),
        ("antifraud_store_up".into(), 1.0),
    ] {
        assert_eq!(sample(&app, &series).await, expected, "{series}");
    }
    assert!(
        sample(
            &app,
            "antifraud_store_duration_seconds_count{operation=\"record\"}"
        )
        .await
            >= 3.0
    );
    assert!(sample(&app, "process_resident_memory_bytes").await > 0.0);

    let text = app.get("/metrics").await.text().await.expect("a body");
    assert!(
        text.contains("antifraud_build_info{git_sha="),
        "build info is exported"
    );
    for secret in ["alice", "tx-1", "192.0.2.10", "device-9", "/no/such/path"] {
        assert!(!text.contains(secret), "no unbounded label value: {secret}");
    }
}
