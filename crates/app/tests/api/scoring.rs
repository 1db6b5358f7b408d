//! Scoring: the answer's contract and the rolling statistics.

use antifraud_app::config::Inputs;
use serde_json::Value;
use time::Duration;
use time::format_description::well_known::Rfc3339;

use crate::helpers::{spawn_app, spawn_app_with, transaction};

const RESPONSE_FIELDS: [&str; 16] = [
    "customer_id",
    "transaction_id",
    "scoring",
    "is_fraud",
    "processing_time_ms",
    "customer_transaction_count_3h",
    "customer_transaction_count_6h",
    "customer_transaction_count_12h",
    "customer_transaction_count_24h",
    "customer_avg_amount_3h",
    "customer_avg_amount_6h",
    "customer_avg_amount_12h",
    "customer_avg_amount_24h",
    "processed_at",
    "model_name",
    "model_status",
];

#[tokio::test]
async fn a_valid_transaction_is_scored_with_every_contract_field() {
    let app = spawn_app().await;
    let response = app
        .score(&transaction("alice", "tx-1", 125.5, Duration::ZERO))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(response.headers().get("idempotent-replayed").is_none());
    let body: Value = response.json().await.expect("JSON");

    for field in RESPONSE_FIELDS {
        assert!(body.get(field).is_some(), "missing {field} in {body}");
    }
    assert_eq!(body["customer_id"], "alice");
    assert_eq!(body["transaction_id"], "tx-1");
    let score = body["scoring"].as_f64().expect("a number");
    assert!((0.0..=1.0).contains(&score));
    assert_eq!(body["is_fraud"], score >= 0.7);
    assert!(body["processing_time_ms"].as_f64().expect("a number") >= 0.0);
    // Whole milliseconds, as the original design declares them (an integer; a client's
    // `Optional[int]` model parses it), rounded up from the precise microseconds.
    let ms = body["processing_time_ms"]
        .as_u64()
        .expect("whole milliseconds");
    let us = body["processing_time_us"]
        .as_u64()
        .expect("whole microseconds");
    assert_eq!(ms, us.div_ceil(1_000));
    for window in ["3h", "6h", "12h", "24h"] {
        assert_eq!(body[format!("customer_transaction_count_{window}")], 1);
        assert_eq!(body[format!("customer_avg_amount_{window}")], 125.5);
    }
    let processed_at = body["processed_at"].as_str().expect("a string");
    let parsed = time::OffsetDateTime::parse(processed_at, &Rfc3339).expect("RFC 3339");
    assert!(processed_at.ends_with('Z') && parsed.offset().is_utc());
    assert_eq!(
        body["model_name"], "fraud-gbdt",
        "the shipped model scores by default"
    );
    assert_eq!(body["model_status"], "ok");
    assert_eq!(body["degraded"], false);
    assert!(
        body.get("degraded_reason").is_none(),
        "only on degraded answers: {body}"
    );
}

#[tokio::test]
async fn statistics_cover_each_window_on_event_time() {
    let app = spawn_app().await;
    let h = Duration::hours;
    for (id, amount, offset) in [
        ("a", 100.0, -h(20)),
        ("b", 200.0, -h(10)),
        ("c", 300.0, -h(5)),
        ("d", 400.0, -h(1)),
        ("later", 9_000.0, Duration::minutes(2)),
    ] {
        app.score_ok(&transaction("bob", id, amount, offset)).await;
    }
    let body = app
        .score_ok(&transaction("bob", "now", 500.0, Duration::ZERO))
        .await;
    let expect = [
        ("3h", 2, 450.0),
        ("6h", 3, 400.0),
        ("12h", 4, 350.0),
        ("24h", 5, 300.0),
    ];
    for (window, count, avg) in expect {
        assert_eq!(
            body[format!("customer_transaction_count_{window}")],
            count,
            "{window}"
        );
        assert_eq!(
            body[format!("customer_avg_amount_{window}")],
            avg,
            "{window}"
        );
    }
    let other = app
        .score_ok(&transaction("carol", "now", 1.0, Duration::ZERO))
        .await;
    assert_eq!(
        other["customer_transaction_count_24h"], 1,
        "customers do not mix"
    );
}

#[tokio::test]
async fn the_fraud_threshold_is_configurable_and_decides_without_a_rule_file() {
    for (threshold, expected) in [("0", true), ("1", false)] {
        let app = spawn_app_with(Inputs {
            fraud_threshold: Some(threshold.into()),
            ..Inputs::default()
        })
        .await;
        let body = app
            .score_ok(&transaction("dave", "tx", 10.0, Duration::ZERO))
            .await;
        assert_eq!(body["is_fraud"], expected, "threshold {threshold}: {body}");
        // Without a rule file, the decision follows: decline what is fraud, with its reason.
        let (decision, codes) = if expected {
            ("decline", vec!["model_score"])
        } else {
            ("approve", vec![])
        };
        assert_eq!(body["decision"], decision, "threshold {threshold}: {body}");
        assert_eq!(body["rules_version"], "builtin-threshold-1");
        let reasons = body["reasons"].as_array().expect("a list, empty or not");
        let got: Vec<_> = reasons.iter().map(|r| r["code"].as_str()).collect();
        assert_eq!(
            got,
            codes.into_iter().map(Some).collect::<Vec<_>>(),
            "{body}"
        );
        for reason in reasons {
            assert_eq!(reason["action"], "decline");
            assert_eq!(reason["rule"], "builtin.score_threshold");
            assert!(
                reason["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("threshold"))
            );
        }
    }
}

#[tokio::test]
async fn a_risky_transaction_scores_higher_than_an_ordinary_one() {
    let app = spawn_app().await;
    let ordinary = app
        .score_ok(&transaction("erin", "ok", 40.0, Duration::ZERO))
        .await;
    let mut risky = transaction("frank", "risky", 4_000.0, Duration::ZERO);
    risky["merchant_risk_score"] = 0.95.into();
    risky["card_risk_score"] = 0.9.into();
    risky["is_device_alert"] = true.into();
    risky["channel"] = "online".into();
    let risky = app.score_ok(&risky).await;
    assert!(
        risky["scoring"].as_f64() > ordinary["scoring"].as_f64(),
        "{risky} vs {ordinary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processing_time_counts_the_body_that_arrives_late() {
    use std::io::{Read, Write};
    // A deadline beyond the body's delay: this is about what is counted, not about the cut.
    let app = spawn_app_with(Inputs {
        deadline_ms: Some("5000".into()),
        ..Inputs::default()
    })
    .await;
    let body = transaction("slow-body", "tx-1", 10.0, Duration::ZERO).to_string();
    let address = app.address.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connects");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .expect("writes the head");
        // The body comes 600 ms after the head: that wait is the service's processing time too.
        #[expect(
            clippy::disallowed_methods,
            reason = "a plain client thread, on the blocking pool, not an async worker"
        )]
        std::thread::sleep(std::time::Duration::from_millis(600));
        stream.write_all(body.as_bytes()).expect("writes the body");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .await
    .expect("the client thread");
    let (head, json) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let body: Value = serde_json::from_str(json).expect("JSON");
    // Counted, the wait is most of the 600 ms (the handler may start late on a loaded machine,
    // hence half); not counted, it would be well under a millisecond.
    let us = body["processing_time_us"].as_u64().expect("microseconds");
    assert!(us >= 300_000, "{us} µs: the late body is counted");
    assert!(body["processing_time_ms"].as_u64().expect("ms") >= 300);
}
