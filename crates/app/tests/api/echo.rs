//! The benchmark's echo (`antifraud-echo`) parses a transaction as the service does and writes
//! it back: it is a fair ceiling only while it does that work.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{http_client, transaction};

/// The echo on a free port, killed (by pid) when dropped.
struct Echo {
    child: std::process::Child,
    url: String,
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_echo() -> Echo {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_antifraud-echo"))
        .arg(format!("127.0.0.1:{port}"))
        .spawn()
        .expect("the echo runs");
    let echo = Echo {
        child,
        url: format!("http://127.0.0.1:{port}/api/v1/transactions"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the echo listens within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    echo
}

#[tokio::test]
async fn the_echo_parses_the_transaction_and_writes_it_back() {
    let echo = start_echo().await;
    let client = http_client();
    let sent = transaction("alice", "tx-1", 125.5, time::Duration::ZERO);
    let response = client
        .post(&echo.url)
        .json(&sent)
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    let back: Value = response.json().await.expect("JSON");
    for (field, value) in sent.as_object().expect("an object") {
        assert_eq!(&back[field], value, "{field}");
    }
    // It runs the service's parser: a body that is not a transaction is refused as there.
    let refused = client
        .post(&echo.url)
        .header("content-type", "application/json")
        .body(r#"{"amount": "many"}"#)
        .send()
        .await
        .expect("answers");
    assert_eq!(refused.status(), 400);
}
