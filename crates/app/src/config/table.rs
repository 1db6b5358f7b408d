//! The one declaration of every setting: name (the TOML key), flag, environment variable,
//! default, parser and help line. README.md's configuration table is checked against it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use antifraud_domain::{ScoringPolicy, StoreFailurePolicy};

use super::ConfigError;
use super::declare::settings;
use super::{LogFormat, ModelSettings, OtlpProtocol};

settings! {
    /// TOML file with any of the settings below (keys as the flags, with underscores); flags
    /// and environment variables override it.
    config: PathBuf {
        flag: "config",
        env: "ANTIFRAUD_CONFIG",
        file: false,
        value: "PATH",
        unset: "",
        parse: path,
    }
    /// Address to listen on.
    listen: SocketAddr {
        flag: "listen",
        env: "ANTIFRAUD_LISTEN",
        value: "HOST:PORT",
        default: "127.0.0.1:8000",
        parse: address,
    }
    /// Redis URL (redis://, rediss://, redis-cluster://, redis-sentinel://). Unset: the
    /// embedded in-memory store.
    redis_url: String {
        flag: "redis-url",
        env: "ANTIFRAUD_REDIS_URL",
        secret: true,
        value: "URL",
        unset: "embedded store",
        parse: redis_url,
    }
    /// File holding the Redis password (first line), kept out of the URL and of process lists;
    /// it replaces any password in the URL.
    redis_password_file: PathBuf {
        flag: "redis-password-file",
        env: "ANTIFRAUD_REDIS_PASSWORD_FILE",
        value: "PATH",
        unset: "",
        parse: path,
    }
    /// Connections to Redis per worker thread (the service runs one worker per core), 1..=64.
    redis_pool_size: u32 {
        flag: "redis-pool-size",
        env: "ANTIFRAUD_REDIS_POOL_SIZE",
        value: "N",
        default: "4",
        parse: |text| whole_number(text, 64),
    }
    /// Longest wait for one Redis command, in milliseconds (1..=10000).
    redis_timeout_ms: Duration {
        flag: "redis-timeout-ms",
        env: "ANTIFRAUD_REDIS_TIMEOUT_MS",
        value: "MS",
        default: "50",
        parse: milliseconds,
    }
    /// Replicas that must hold a transaction and its answer before it is answered (0..=16; 0:
    /// answer once the primary holds them). Unconfirmed in time: 503, safe to retry.
    redis_wait_replicas: u32 {
        flag: "redis-wait-replicas",
        env: "ANTIFRAUD_REDIS_WAIT_REPLICAS",
        value: "N",
        default: "0",
        parse: |text| match text.parse::<u32>() {
            Ok(n) if n <= 16 => Ok(n),
            _ => Err("expected a whole number from 0 to 16".to_owned()),
        },
    }
    /// How long, in milliseconds, to wait for `--redis-wait-replicas` replicas (1..=10000).
    redis_wait_timeout_ms: Duration {
        flag: "redis-wait-timeout-ms",
        env: "ANTIFRAUD_REDIS_WAIT_TIMEOUT_MS",
        value: "MS",
        default: "50",
        parse: milliseconds,
    }
    /// When the store is unreachable or late: `reject` answers 503, `degrade` scores without
    /// history and marks the answer degraded.
    store_failure_policy: StoreFailurePolicy {
        flag: "store-failure-policy",
        env: "ANTIFRAUD_STORE_FAILURE_POLICY",
        value: "POLICY",
        default: "reject",
        parse: |text| keyword(
            text,
            &[
                ("reject", StoreFailurePolicy::Reject),
                ("degrade", StoreFailurePolicy::Degrade),
            ]
        ),
    }
    /// Fraud model: `shipped` (the trained model in the binary), `builtin` (the logistic
    /// baseline), `onnx:PATH` (an ONNX file; SIGHUP reloads it) or
    /// `http(s)://HOST:PORT/v2/models/NAME` (an Open Inference Protocol server).
    model: ModelSettings {
        flag: "model",
        env: "ANTIFRAUD_MODEL",
        value: "MODEL",
        default: "shipped",
        parse: ModelSettings::parse,
    }
    /// Rule file (TOML, conditions in CEL; see docs/rules.md) that decides approve / review /
    /// decline; without one, the decision follows the fraud threshold. Checked whole at start-up.
    rules: PathBuf {
        flag: "rules",
        env: "ANTIFRAUD_RULES",
        value: "PATH",
        unset: "",
        parse: path,
    }
    /// Longest time from a request's arrival to its answer, in milliseconds (1..=10000): the
    /// store's calls and the model get what remains of it, and past it the answer is 503 (or
    /// degraded).
    deadline_ms: Duration {
        flag: "deadline-ms",
        env: "ANTIFRAUD_DEADLINE_MS",
        value: "MS",
        default: "200",
        parse: milliseconds,
    }
    /// Budget of one model call, in milliseconds (1..=10000).
    model_timeout_ms: Duration {
        flag: "model-timeout-ms",
        env: "ANTIFRAUD_MODEL_TIMEOUT_MS",
        value: "MS",
        default: "100",
        parse: milliseconds,
    }
    /// Score used when the model is late or fails, 0..=1.
    default_score: f64 {
        flag: "default-score",
        env: "ANTIFRAUD_DEFAULT_SCORE",
        value: "SCORE",
        default: "0.5",
        parse: unit_interval,
    }
    /// Scores at or above this are fraud, 0..=1.
    fraud_threshold: f64 {
        flag: "fraud-threshold",
        env: "ANTIFRAUD_FRAUD_THRESHOLD",
        value: "SCORE",
        default: "0.7",
        parse: unit_interval,
    }
    /// How late a transaction may arrive after its timestamp, such as `24h`, `90m` or `0s` (at
    /// most `7d`). History is kept for 24 h plus this, so that a late transaction's windows are
    /// exact and a retry of any accepted transaction replays for as long as it is kept.
    max_lateness: Duration {
        flag: "max-lateness",
        env: "ANTIFRAUD_MAX_LATENESS",
        value: "DURATION",
        default: "24h",
        parse: lateness,
    }
    /// Log lines as `text` (for people) or `json` (one object per line, for collectors).
    log_format: LogFormat {
        flag: "log-format",
        env: "ANTIFRAUD_LOG_FORMAT",
        value: "FORMAT",
        default: "text",
        parse: |text| keyword(text, &[("text", LogFormat::Text), ("json", LogFormat::Json)]),
    }
    /// OTLP collector to export traces to, such as http://127.0.0.1:4317. Reads the standard
    /// OpenTelemetry variable.
    otlp_endpoint: String {
        flag: "otlp-endpoint",
        env: "OTEL_EXPORTER_OTLP_ENDPOINT",
        value: "URL",
        unset: "no trace export",
        parse: http_url,
    }
    /// OTLP transport: `grpc` or `http/protobuf`.
    otlp_protocol: OtlpProtocol {
        flag: "otlp-protocol",
        env: "OTEL_EXPORTER_OTLP_PROTOCOL",
        value: "PROTOCOL",
        default: "grpc",
        parse: |text| keyword(
            text,
            &[
                ("grpc", OtlpProtocol::Grpc),
                ("http/protobuf", OtlpProtocol::HttpProtobuf),
            ]
        ),
    }
    /// File of API keys, one per line (`#` starts a comment). Callers send
    /// `Authorization: Bearer <key>`. Without keys the service only listens on loopback.
    api_keys_file: PathBuf {
        flag: "api-keys-file",
        env: "ANTIFRAUD_API_KEYS_FILE",
        value: "PATH",
        unset: "",
        parse: path,
    }
    /// API keys, comma-separated, in addition to the file: from the environment only, so that
    /// they never show in process lists.
    api_keys: String {
        env: "ANTIFRAUD_API_KEYS",
        file: false,
        secret: true,
        value: "KEYS",
        unset: "",
        parse: text,
    }
    /// Serve `/metrics` on this address instead of the API's (no key needed there).
    metrics_listen: SocketAddr {
        flag: "metrics-listen",
        env: "ANTIFRAUD_METRICS_LISTEN",
        value: "HOST:PORT",
        unset: "`/metrics` on the API's listener",
        parse: address,
    }
    /// Requests per second allowed to each API key (token bucket); 0 means no limit.
    rate_limit: f64 {
        flag: "rate-limit",
        env: "ANTIFRAUD_RATE_LIMIT",
        value: "PER_SECOND",
        default: "0",
        parse: rate,
    }
    /// Requests a key may send at once after a quiet period.
    rate_limit_burst: u32 {
        flag: "rate-limit-burst",
        env: "ANTIFRAUD_RATE_LIMIT_BURST",
        value: "N",
        unset: "the rate, at least 1",
        parse: |text| whole_number(text, 1_000_000),
    }
    /// Scorings in flight at most; beyond, requests get 503 at once instead of queueing past
    /// the latency budget.
    max_in_flight: u32 {
        flag: "max-in-flight",
        env: "ANTIFRAUD_MAX_IN_FLIGHT",
        value: "N",
        default: "512",
        parse: |text| whole_number(text, 1_000_000),
    }
    /// Longest time a client may take to send a request's head and body, in milliseconds
    /// (1..=10000); slower clients get 408 and are disconnected.
    request_timeout_ms: Duration {
        flag: "request-timeout-ms",
        env: "ANTIFRAUD_REQUEST_TIMEOUT_MS",
        value: "MS",
        default: "5000",
        parse: milliseconds,
    }
    /// For fault-injection runs only (`cargo xtask chaos`): shifts this instance's wall clock by
    /// this many milliseconds, negative for behind, as on a host whose clock disagrees with its
    /// peers' (-86400000..=86400000).
    clock_offset_ms: i64 {
        flag: "clock-offset-ms",
        env: "ANTIFRAUD_CLOCK_OFFSET_MS",
        value: "MS",
        default: "0",
        parse: signed_milliseconds,
    }
}

// The parsers. Each returns the reason a text is invalid; the caller names the setting.

fn path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

fn text(text: &str) -> Result<String, String> {
    Ok(text.to_owned())
}

fn address(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| "expected IP:PORT, such as 127.0.0.1:8000 or [::1]:8000".to_owned())
}

/// The URL schemes fred connects with.
const REDIS_SCHEMES: [&str; 6] = [
    "redis://",
    "rediss://",
    "redis-cluster://",
    "rediss-cluster://",
    "redis-sentinel://",
    "rediss-sentinel://",
];

fn redis_url(text: &str) -> Result<String, String> {
    if REDIS_SCHEMES.iter().any(|scheme| text.starts_with(scheme)) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "expected a URL starting with one of {}",
            REDIS_SCHEMES.join(", ")
        ))
    }
}

fn http_url(text: &str) -> Result<String, String> {
    if text.starts_with("http://") || text.starts_with("https://") {
        Ok(text.to_owned())
    } else {
        Err("expected an http:// or https:// URL".to_owned())
    }
}

/// A whole number from 1 to `max`.
fn whole_number(text: &str, max: u32) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {max}")),
    }
}

/// Whole milliseconds from 1 to 10 000.
fn milliseconds(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(ms) if (1..=10_000).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err("expected whole milliseconds from 1 to 10000".to_owned()),
    }
}

/// Whole milliseconds, either sign, within a day.
fn signed_milliseconds(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(ms) if ms.abs() <= 86_400_000 => Ok(ms),
        _ => Err("expected whole milliseconds from -86400000 to 86400000".to_owned()),
    }
}

/// A duration with its unit, `s`, `m`, `h` or `d`, from 0 to 7 days.
fn lateness(text: &str) -> Result<Duration, String> {
    let reason = || "expected a duration from 0s to 7d, such as 24h, 90m or 3600s".to_owned();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(reason()),
    };
    match number.parse::<u64>() {
        Ok(n) if n.saturating_mul(seconds) <= ScoringPolicy::MAX_LATENESS.as_secs() => {
            Ok(Duration::from_secs(n * seconds))
        }
        _ => Err(reason()),
    }
}

fn unit_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("expected a number from 0 to 1".to_owned()),
    }
}

fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1e6).contains(&x) => Ok(x),
        _ => Err("expected requests per second from 0 (no limit) to 1000000".to_owned()),
    }
}

/// One of a few keywords; the error lists them all.
fn keyword<T: Copy>(text: &str, choices: &[(&str, T)]) -> Result<T, String> {
    match choices.iter().find(|(name, _)| *name == text) {
        Some((_, value)) => Ok(*value),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(format!("expected {}", names.join(" or ")))
        }
    }
}
