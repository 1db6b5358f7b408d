//! Log lines: what a request's warning says, and what no line may carry.

use std::io::BufRead as _;
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant};

use time::Duration;

use crate::helpers::{http_client, transaction};

/// The client's address as a proxy would forward it, and the transaction's own IP field.
const CLIENT_ADDRESS: &str = "203.0.113.7";
const TRANSACTION_IP: &str = "192.0.2.10";

/// Text logs (the default format), degrade policy, and a Redis that is not there (nothing
/// listens on port 1): every request logs a warning from inside its handler.
#[tokio::test]
async fn a_warning_inside_a_request_names_the_transaction_and_no_address() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_antifraud"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "text"])
        .args(["--redis-url", "redis://127.0.0.1:1"])
        .args(["--store-failure-policy", "degrade"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stderr = child.stderr.take().expect("piped");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let next_line =
        |until: Instant| lines.recv_timeout(until.saturating_duration_since(Instant::now()));
    let until = Instant::now() + StdDuration::from_secs(15);
    let mut seen = Vec::new();
    let address = loop {
        let line = next_line(until).expect("the service says where it listens");
        let found = line
            .contains("antifraud listening")
            .then(|| {
                line.split("address=")
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
            })
            .flatten();
        seen.push(line);
        if let Some(address) = found {
            break address;
        }
    };

    let response = http_client()
        .post(format!("http://{address}/api/v1/transactions"))
        .header("x-forwarded-for", CLIENT_ADDRESS)
        .header("forwarded", format!("for={CLIENT_ADDRESS}"))
        .json(&transaction("cust-log", "tx-logged", 10.0, Duration::ZERO))
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200, "a degraded answer");

    let until = Instant::now() + StdDuration::from_secs(10);
    let warning = loop {
        let line = next_line(until).expect("the degraded answer is logged");
        let found = line.contains("answered degraded");
        seen.push(line.clone());
        if found {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    seen.extend(lines.try_iter());

    assert!(
        warning.contains("tx-logged"),
        "the warning names its transaction: {warning}"
    );
    for line in &seen {
        assert!(
            !line.contains(CLIENT_ADDRESS) && !line.contains(TRANSACTION_IP),
            "a log line carries an address: {line}"
        );
    }
}
