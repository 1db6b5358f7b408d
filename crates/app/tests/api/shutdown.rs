//! Graceful shutdown of the real binary: on SIGTERM or SIGINT it stops accepting, finishes every
//! request in flight, and each 200 it gave is recorded.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use antifraud_testkit::RedisServer;
use serde_json::Value;

use crate::fake_model::{Behaviour, FakeModelServer};
use crate::helpers::{Binary, count_24h, http_client, transaction};

const IN_FLIGHT: usize = 8;

async fn requests_in_flight_finish_after(signal: &str) {
    let redis = RedisServer::start();
    // A model slow enough that the requests are still in flight when the signal arrives.
    let model = FakeModelServer::start(Behaviour::Slow(Duration::from_millis(700)));
    let args = [
        "--redis-url",
        &redis.url(),
        "--model",
        &model.url,
        "--model-timeout-ms",
        "5000",
        // Long enough for the slow model to keep the requests in flight.
        "--deadline-ms",
        "5000",
    ];
    let mut binary = Binary::start(&args, &[]);
    let url = format!("http://{}/api/v1/transactions", binary.address);
    let client = http_client();
    // Built once: a retry must carry the very same payload (timestamp included).
    let txs: Vec<Value> = (0..=IN_FLIGHT)
        .map(|n| transaction("drain", &format!("t{n}"), 30.0, time::Duration::minutes(-1)))
        .collect();
    let requests: Vec<_> = txs[..IN_FLIGHT]
        .iter()
        .map(|tx| {
            let request = client.post(&url).json(tx);
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while model.seen.lock().expect("lock").bodies.len() < IN_FLIGHT {
        assert!(
            Instant::now() < deadline,
            "the requests never reached the model"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    binary.signal(signal);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(&binary.address).is_err(),
        "no new connections once stopping"
    );
    for request in requests {
        let response = request
            .await
            .expect("joins")
            .expect("an answer, not a cut connection");
        assert_eq!(response.status(), 200, "requests in flight finish");
    }
    let status = binary
        .exited(Duration::from_secs(10))
        .await
        .expect("the service exits after draining");
    assert!(status.success(), "{status:?}");
    let said: Vec<Value> = binary
        .lines
        .by_ref()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str(&line).ok())
        .collect();
    assert!(
        said.iter()
            .any(|line| line["signal"] == signal_name(signal)),
        "the stop is logged with its signal: {said:?}"
    );

    // Every 200 was recorded: a new service on the same Redis counts them all, and a retry of
    // one of them is a replay.
    let again = Binary::start(&args, &[]);
    let url = format!("http://{}/api/v1/transactions", again.address);
    model.set(Behaviour::Slow(Duration::ZERO));
    let next: Value = client
        .post(&url)
        .json(&txs[IN_FLIGHT])
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(count_24h(&next), IN_FLIGHT as u64 + 1, "{next}");
    let retry = client
        .post(&url)
        .json(&txs[0])
        .send()
        .await
        .expect("answers");
    assert_eq!(retry.status(), 200);
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
}

fn signal_name(signal: &str) -> String {
    format!("SIG{signal}")
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_and_every_200_is_recorded() {
    requests_in_flight_finish_after("TERM").await;
}

#[tokio::test]
async fn sigint_is_as_graceful_as_sigterm() {
    requests_in_flight_finish_after("INT").await;
}
