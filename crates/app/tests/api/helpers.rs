//! Spawning an isolated server per test, and building requests.

use antifraud_app::config::Inputs;
use antifraud_app::{Application, Settings};
use antifraud_testkit::RedisServer;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// The request's required fields, in the order a 422 lists them.
pub(crate) const REQUIRED_FIELDS: [&str; 12] = [
    "customer_id",
    "transaction_id",
    "amount",
    "currency",
    "type",
    "merchant_id",
    "card_bin",
    "ip_address",
    "device_id",
    "location",
    "channel",
    "timestamp",
];

/// The request's optional fields.
pub(crate) const OPTIONAL_FIELDS: [&str; 10] = [
    "is_fraud",
    "merchant_risk_score",
    "card_risk_score",
    "customer_risk_score",
    "is_velocity_alert",
    "is_location_alert",
    "is_device_alert",
    "customer_segments",
    "transaction_category",
    "is_high_value",
];

/// A running server with its own empty store.
pub(crate) struct TestApp {
    pub(crate) address: String,
    pub(crate) client: reqwest::Client,
    /// The Redis behind the service, when the suite runs against Redis.
    pub(crate) redis: Option<RedisServer>,
    /// The `/metrics` listener, when the service has one of its own.
    pub(crate) metrics_address: Option<String>,
}

/// Which store the suite runs against: `ANTIFRAUD_TEST_STORE=redis` (set by `cargo xtask test`
/// for a second pass) gives every test a `redis-server` of its own; anything else, the embedded
/// store.
fn redis_requested() -> bool {
    std::env::var("ANTIFRAUD_TEST_STORE").is_ok_and(|store| store == "redis")
}

/// An HTTP client for tests. reqwest panics when built before a TLS provider is installed (see
/// `antifraud_model::install_crypto_provider`).
pub(crate) fn http_client() -> reqwest::Client {
    antifraud_model::install_crypto_provider();
    reqwest::Client::new()
}

/// Starts the service with default settings on a free port.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(Inputs::default()).await
}

/// Starts the service with these settings (the listen address is always a free loopback port).
/// The environment is not read, so tests are isolated from it.
pub(crate) async fn spawn_app_with(cli: Inputs) -> TestApp {
    let redis = (redis_requested() && cli.redis_url.is_none()).then(RedisServer::start);
    let redis_url = cli
        .redis_url
        .clone()
        .or(redis.as_ref().map(RedisServer::url));
    spawn_app_on(Inputs { redis_url, ..cli }, redis).await
}

/// Starts the service with exactly these settings, keeping `redis` (if any) alive with it.
pub(crate) async fn spawn_app_on(cli: Inputs, redis: Option<RedisServer>) -> TestApp {
    let settings = Settings::from_inputs(Inputs {
        listen: Some("127.0.0.1:0".into()),
        ..cli
    })
    .expect("test settings are valid");
    let application = Application::build(settings)
        .await
        .expect("the service starts");
    let address = format!("http://{}", application.address());
    let metrics_address = application
        .metrics_address()
        .map(|address| format!("http://{address}"));
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        client: http_client(),
        redis,
        metrics_address,
    }
}

impl TestApp {
    /// POSTs a JSON value to the scoring endpoint.
    pub(crate) async fn score(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/transactions", self.address))
            .json(body)
            .send()
            .await
            .expect("the server answers")
    }

    /// POSTs raw bytes with a JSON content type.
    pub(crate) async fn score_raw(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/transactions", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the server answers")
    }

    /// POSTs and expects a 200, returning the body.
    pub(crate) async fn score_ok(&self, body: &Value) -> Value {
        let response = self.score(body).await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).expect("JSON")
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("the server answers")
    }

    /// GETs a path with this `Authorization` header.
    pub(crate) async fn get_authorized(
        &self,
        path: &str,
        authorization: &str,
    ) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .header("authorization", authorization)
            .send()
            .await
            .expect("the server answers")
    }
}

/// `now` shifted by `offset`, as RFC 3339.
pub(crate) fn at(offset: Duration) -> String {
    (OffsetDateTime::now_utc() + offset)
        .format(&Rfc3339)
        .expect("formats")
}

/// A valid transaction of `customer` with `id` and `amount`, `offset` from now.
pub(crate) fn transaction(customer: &str, id: &str, amount: f64, offset: Duration) -> Value {
    json!({
        "customer_id": customer,
        "transaction_id": id,
        "amount": amount,
        "currency": "EUR",
        "type": 1,
        "merchant_id": "merchant-7",
        "card_bin": "411111",
        "ip_address": "192.0.2.10",
        "device_id": "device-9",
        "location": "Berlin, DE",
        "channel": "pos",
        "timestamp": at(offset),
    })
}

/// The text body of a GET, such as a `/metrics` exposition.
pub(crate) async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text")
}

/// Reads a problem+json answer, checking its media type and status member.
pub(crate) async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let media = response
        .headers()
        .get("content-type")
        .expect("a content type")
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_eq!(media, "application/problem+json");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .expect("a type")
            .starts_with("urn:antifraud:problem:")
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// The `field` members of a problem's `errors`.
pub(crate) fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .expect("an errors list")
        .iter()
        .map(|e| e["field"].as_str().expect("a field").to_owned())
        .collect()
}

/// The 24 h count of a scoring answer.
pub(crate) fn count_24h(body: &Value) -> u64 {
    body["customer_transaction_count_24h"]
        .as_u64()
        .expect("a count")
}

/// The value of one sample line, `name{labels} value`, or 0 when the series is absent.
pub(crate) async fn sample(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.expect("a body");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// The `antifraud` binary started with JSON logs on a free port, stopped by pid when dropped.
pub(crate) struct Binary {
    child: std::process::Child,
    /// Where it listens, as it logged it.
    pub(crate) address: String,
    /// The log line that said so.
    pub(crate) listening: Value,
    /// The log lines before it.
    pub(crate) startup: Vec<Value>,
    /// Its remaining log lines.
    pub(crate) lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
}

impl Binary {
    /// Starts the binary with these arguments and environment, and waits until it says where it
    /// listens.
    pub(crate) fn start(args: &[&str], env: &[(&str, String)]) -> Binary {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_antifraud"))
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary runs");
        let stderr = child.stderr.take().expect("piped");
        let mut lines = std::io::BufReader::new(stderr).lines();
        // Every line up to the announcement must be JSON: the binary runs with JSON logs.
        let mut startup = Vec::new();
        let listening = lines
            .by_ref()
            .take(50)
            .map(|line| {
                let line = line.expect("UTF-8 log lines");
                serde_json::from_str::<Value>(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
            })
            .find(|line| {
                let found = line["message"] == "antifraud listening";
                if !found {
                    startup.push(line.clone());
                }
                found
            })
            .expect("the service says where it listens");
        let address = listening["address"]
            .as_str()
            .expect("an address")
            .to_owned();
        Binary {
            child,
            address,
            listening,
            startup,
            lines,
        }
    }
}

impl Binary {
    /// Sends a signal (`HUP`, `TERM`...) to this process, by pid.
    pub(crate) fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} succeeds");
    }
}

impl Binary {
    /// Waits up to `timeout` for the process to exit, without blocking the test's runtime.
    pub(crate) async fn exited(
        &mut self,
        timeout: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("the child can be waited for") {
                return Some(status);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args`, which must stop its start-up: exit code 1 and one line on
/// stderr, which is returned.
pub(crate) fn start_up_failure(args: &[String]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_antifraud"))
        .args(args)
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    stderr
}
