//! Who gets in and how much: API keys, the per-key rate limit, load shedding, slow clients and
//! the separate metrics listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use antifraud_app::config::Inputs;
use serde_json::Value;

use crate::fake_model::{Behaviour, FakeModelServer};
use crate::helpers::{TestApp, count_24h, get_text, problem, sample, spawn_app_with, transaction};

const KEY_A: &str = "team-a-0123456789abcdef";
const KEY_B: &str = "team-b-fedcba9876543210";

fn with_keys(cli: Inputs) -> Inputs {
    Inputs {
        api_keys: Some(format!("{KEY_A}, {KEY_B}")),
        ..cli
    }
}

/// POSTs a transaction with this `Authorization` header, if any.
async fn score_as(app: &TestApp, authorization: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/api/v1/transactions", app.address));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.json(body).send().await.expect("the server answers")
}

fn tx(customer: &str, id: &str) -> Value {
    transaction(customer, id, 25.0, time::Duration::minutes(-1))
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("a {name} header"))
        .to_str()
        .expect("ASCII")
        .to_owned()
}

#[tokio::test]
async fn without_a_valid_key_the_api_answers_401_and_records_nothing() {
    let app = spawn_app_with(with_keys(Inputs::default())).await;
    let bearer_a = format!("Bearer {KEY_A}");

    let missing = score_as(&app, None, &tx("mallory", "t1")).await;
    assert_eq!(
        header(&missing, "www-authenticate"),
        r#"Bearer realm="antifraud""#
    );
    let body = problem(missing, 401).await;
    assert_eq!(body["type"], "urn:antifraud:problem:unauthorized");

    for wrong in [
        format!("Bearer {KEY_A}x"),
        format!("Bearer {}", &KEY_A[..KEY_A.len() - 1]),
        format!("Basic {KEY_A}"),
        KEY_A.to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {}", KEY_A.to_uppercase()),
    ] {
        let response = score_as(&app, Some(&wrong), &tx("mallory", "t1")).await;
        assert_eq!(
            header(&response, "www-authenticate"),
            r#"Bearer realm="antifraud", error="invalid_token""#,
            "{wrong}"
        );
        let body = problem(response, 401).await;
        assert!(
            !body.to_string().contains(KEY_A),
            "the key is not echoed: {body}"
        );
    }

    // Either key works; the scheme is case-insensitive.
    let first = score_as(&app, Some(&bearer_a), &tx("mallory", "t2")).await;
    assert_eq!(first.status(), 200);
    let body: Value = first.json().await.expect("JSON");
    assert_eq!(count_24h(&body), 1, "none of the refused requests counted");
    let lower = format!("bearer {KEY_B}");
    let second = score_as(&app, Some(&lower), &tx("mallory", "t3")).await;
    assert_eq!(second.status(), 200);

    // Probes and the API's description stay open; metrics on this listener need a key.
    for path in [
        "/health/live",
        "/health/ready",
        "/health",
        "/api-docs/openapi.json",
    ] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    problem(app.get("/metrics").await, 401).await;
    problem(app.get("/no/such/route").await, 401).await;
    let metrics = app.get_authorized("/metrics", &bearer_a).await;
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    let refused = text
        .lines()
        .find_map(|line| {
            line.strip_prefix(r#"antifraud_requests_refused_total{reason="unauthorized"} "#)
        })
        .expect("the refusal counter");
    assert_eq!(refused, "9", "every 401 counted: {text}");
    assert!(!text.contains(KEY_A) && !text.contains(KEY_B));
}

#[tokio::test]
async fn each_key_has_its_own_rate_limit_and_429_says_when_to_retry() {
    let app = spawn_app_with(with_keys(Inputs {
        rate_limit: Some("0.5".into()),
        rate_limit_burst: Some("2".into()),
        ..Inputs::default()
    }))
    .await;
    let (a, b) = (format!("Bearer {KEY_A}"), format!("Bearer {KEY_B}"));
    for id in ["t1", "t2"] {
        assert_eq!(
            score_as(&app, Some(&a), &tx("rita", id)).await.status(),
            200
        );
    }
    let limited = score_as(&app, Some(&a), &tx("rita", "t3")).await;
    let retry_after: u64 = header(&limited, "retry-after").parse().expect("seconds");
    assert!(
        (1..=2).contains(&retry_after),
        "a token every 2 s: {retry_after}"
    );
    let body = problem(limited, 429).await;
    assert_eq!(body["type"], "urn:antifraud:problem:rate-limited");

    // The other key has its own bucket, and probes are never limited.
    let other = score_as(&app, Some(&b), &tx("rita", "t4")).await;
    assert_eq!(other.status(), 200);
    let body: Value = other.json().await.expect("JSON");
    assert_eq!(count_24h(&body), 3, "the limited request was not recorded");
    for _ in 0..5 {
        assert_eq!(app.get("/health/live").await.status(), 200);
    }
}

#[tokio::test]
async fn beyond_the_in_flight_limit_requests_get_503_at_once_and_are_not_recorded() {
    let model = FakeModelServer::start(Behaviour::Slow(Duration::from_millis(600)));
    let app = spawn_app_with(Inputs {
        model: Some(model.url.clone()),
        model_timeout_ms: Some("5000".into()),
        // Long enough for the slow model to hold its place.
        deadline_ms: Some("5000".into()),
        max_in_flight: Some("1".into()),
        ..Inputs::default()
    })
    .await;
    let (client, url) = (
        app.client.clone(),
        format!("{}/api/v1/transactions", app.address),
    );
    let first = tokio::spawn({
        let body = tx("sam", "slow");
        async move { client.post(url).json(&body).send().await }
    });
    // Wait until the model holds the first request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while model.seen.lock().expect("lock").bodies.is_empty() {
        assert!(Instant::now() < deadline, "the model never saw the request");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let shed = app.score(&tx("sam", "shed")).await;
    let waited = started.elapsed();
    assert_eq!(header(&shed, "retry-after"), "1");
    let body = problem(shed, 503).await;
    assert_eq!(body["type"], "urn:antifraud:problem:overloaded");
    assert!(
        waited < Duration::from_millis(500),
        "shed without waiting for the slow request: {waited:?}"
    );

    let first = first.await.expect("joins").expect("answers");
    assert_eq!(first.status(), 200);
    // The shed request was not recorded: retrying it counts it once.
    let retried = app.score_ok(&tx("sam", "shed")).await;
    assert_eq!(count_24h(&retried), 2);
    assert_eq!(retried["model_status"], "ok");
}

/// Opens a connection and sends `head` (and `body`), then waits for the server's answer.
fn send_slowly(address: &str, head: &str, body: &[u8]) -> (String, Duration) {
    let mut stream = TcpStream::connect(address.trim_start_matches("http://")).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    stream.write_all(head.as_bytes()).expect("writes");
    stream.write_all(body).expect("writes");
    let mut answer = Vec::new();
    // The server answers and closes; a read error is the connection being reset after it.
    let _ = stream.read_to_end(&mut answer);
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn clients_too_slow_to_send_get_408_and_hold_nothing() {
    let app = spawn_app_with(Inputs {
        request_timeout_ms: Some("300".into()),
        ..Inputs::default()
    })
    .await;
    let address = app.address.clone();
    let slow = |head: String, body: Vec<u8>| {
        let address = address.clone();
        tokio::task::spawn_blocking(move || send_slowly(&address, &head, &body))
    };
    // A head that never ends, and a body shorter than its declared length.
    let half_head = slow(
        "POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\n".to_owned(),
        vec![],
    );
    let body = tx("slow", "t1").to_string();
    let half_body = slow(
        format!(
            "POST /api/v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
        body.as_bytes()[..body.len() / 2].to_vec(),
    );
    // Meanwhile the service serves others.
    let served = app.score_ok(&tx("fast", "t1")).await;
    assert_eq!(count_24h(&served), 1);

    let (answer, took) = half_body.await.expect("joins");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("urn:antifraud:problem:request-timeout"),
        "{answer}"
    );
    assert!(
        took < Duration::from_secs(5),
        "cut off at the deadline: {took:?}"
    );
    let (answer, took) = half_head.await.expect("joins");
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(
        took < Duration::from_secs(5),
        "cut off at the deadline: {took:?}"
    );

    // Nothing of the slow transaction was recorded; the late body is counted.
    let after = app.score_ok(&tx("slow", "t2")).await;
    assert_eq!(count_24h(&after), 1);
    assert_eq!(
        sample(
            &app,
            r#"antifraud_requests_refused_total{reason="request_timeout"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn metrics_can_move_to_a_listener_of_their_own() {
    let app = spawn_app_with(with_keys(Inputs {
        metrics_listen: Some("127.0.0.1:0".into()),
        ..Inputs::default()
    }))
    .await;
    let authorization = format!("Bearer {KEY_A}");
    assert_eq!(
        score_as(&app, Some(&authorization), &tx("mia", "t1"))
            .await
            .status(),
        200
    );
    let metrics_address = app.metrics_address.clone().expect("a metrics listener");
    let text = get_text(&app.client, &format!("{metrics_address}/metrics")).await;
    assert!(
        text.contains(r#"antifraud_http_requests_total{method="POST",route="/api/v1/transactions",status="200"} 1"#),
        "{text}"
    );
    // Not on the API's listener any more, even with a key.
    let on_api = app.get_authorized("/metrics", &authorization).await;
    problem(on_api, 404).await;
}
