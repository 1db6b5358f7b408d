//! Configuration: command-line flags, their environment variables, and an optional TOML file.
//!
//! Precedence, highest first: flag, environment variable, file, default. Every value is checked
//! before the service starts; an invalid one stops start-up with one line naming the setting.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use antifraud_domain::{ScoringPolicy, StoreFailurePolicy};
use antifraud_redis::RedisSettings;
use clap::Parser;
use serde::Deserialize;

pub use crate::auth::{ApiKeys, KeyError, KeyId};
pub use crate::limits::RateLimit;

/// The command line. Each flag falls back to its environment variable.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "antifraud",
    version,
    about = "Real-time transaction risk scoring service."
)]
pub struct Cli {
    /// TOML file with any of the settings below (keys as the flags, with underscores); flags and
    /// environment variables override it.
    #[arg(long, env = "ANTIFRAUD_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8000].
    #[arg(long, env = "ANTIFRAUD_LISTEN", value_name = "HOST:PORT")]
    pub listen: Option<String>,

    /// Redis URL (redis://, rediss://, redis-cluster://, redis-sentinel://). Unset: the embedded
    /// in-memory store.
    #[arg(
        long,
        env = "ANTIFRAUD_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,

    /// File holding the Redis password (first line), kept out of the URL and of process lists;
    /// it replaces any password in the URL.
    #[arg(long, env = "ANTIFRAUD_REDIS_PASSWORD_FILE", value_name = "PATH")]
    pub redis_password_file: Option<PathBuf>,

    /// Connections to Redis per worker thread (the service runs one worker per core)
    /// [default: 4].
    #[arg(long, env = "ANTIFRAUD_REDIS_POOL_SIZE", value_name = "N")]
    pub redis_pool_size: Option<String>,

    /// Longest wait for one Redis command, in milliseconds (1..=10000) [default: 50].
    #[arg(long, env = "ANTIFRAUD_REDIS_TIMEOUT_MS", value_name = "MS")]
    pub redis_timeout_ms: Option<String>,

    /// When the store is unreachable or late: `reject` answers 503, `degrade` scores without
    /// history and marks the answer degraded [default: reject].
    #[arg(long, env = "ANTIFRAUD_STORE_FAILURE_POLICY", value_name = "POLICY")]
    pub store_failure_policy: Option<String>,

    /// Log lines as `text` (for people) or `json` (one object per line, for collectors)
    /// [default: text].
    #[arg(long, env = "ANTIFRAUD_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// OTLP collector to export traces to, such as http://127.0.0.1:4317; unset: no tracing
    /// export. Reads the standard OpenTelemetry variable.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// OTLP transport: `grpc` or `http/protobuf` [default: grpc].
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,

    /// Fraud model: `shipped` (the trained model in the binary), `builtin` (the logistic
    /// baseline), `onnx:PATH` (an ONNX file; SIGHUP reloads it) or
    /// `http(s)://HOST:PORT/v2/models/NAME` (an Open Inference Protocol server) [default: shipped].
    #[arg(long, env = "ANTIFRAUD_MODEL", value_name = "MODEL")]
    pub model: Option<String>,

    /// Budget of one model call, in milliseconds (1..=10000) [default: 100].
    #[arg(long, env = "ANTIFRAUD_MODEL_TIMEOUT_MS", value_name = "MS")]
    pub model_timeout_ms: Option<String>,

    /// Score used when the model is late or fails, 0..=1 [default: 0.5].
    #[arg(long, env = "ANTIFRAUD_DEFAULT_SCORE", value_name = "SCORE")]
    pub default_score: Option<String>,

    /// Scores at or above this are fraud, 0..=1 [default: 0.7].
    #[arg(long, env = "ANTIFRAUD_FRAUD_THRESHOLD", value_name = "SCORE")]
    pub fraud_threshold: Option<String>,

    /// File of API keys, one per line (`#` starts a comment). Callers send
    /// `Authorization: Bearer <key>`. Keys can also come from ANTIFRAUD_API_KEYS (comma-separated;
    /// never a flag, so that they do not show in process lists). Without keys the service only
    /// listens on loopback.
    #[arg(long, env = "ANTIFRAUD_API_KEYS_FILE", value_name = "PATH")]
    pub api_keys_file: Option<PathBuf>,

    /// API keys from the environment only (ANTIFRAUD_API_KEYS), comma-separated.
    #[arg(skip = std::env::var("ANTIFRAUD_API_KEYS").ok())]
    pub api_keys: Option<String>,

    /// Serve `/metrics` on this address instead of the API's (no key needed there)
    /// [default: on the API's listener].
    #[arg(long, env = "ANTIFRAUD_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,

    /// Requests per second allowed to each API key (token bucket), 0 for no limit [default: 0].
    #[arg(long, env = "ANTIFRAUD_RATE_LIMIT", value_name = "PER_SECOND")]
    pub rate_limit: Option<String>,

    /// Requests a key may send at once after a quiet period [default: the rate limit, at least 1].
    #[arg(long, env = "ANTIFRAUD_RATE_LIMIT_BURST", value_name = "N")]
    pub rate_limit_burst: Option<String>,

    /// Scorings in flight at most; beyond, requests get 503 at once instead of queueing past the
    /// latency budget [default: 512].
    #[arg(long, env = "ANTIFRAUD_MAX_IN_FLIGHT", value_name = "N")]
    pub max_in_flight: Option<String>,

    /// Longest time a client may take to send a request's head and body, in milliseconds
    /// (1..=10000); slower clients get 408 and are disconnected [default: 5000].
    #[arg(long, env = "ANTIFRAUD_REQUEST_TIMEOUT_MS", value_name = "MS")]
    pub request_timeout_ms: Option<String>,
}

/// The same settings as read from the TOML file. Unknown keys are refused, so a typo cannot be
/// silently ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<Scalar>,
    redis_url: Option<Scalar>,
    redis_password_file: Option<Scalar>,
    redis_pool_size: Option<Scalar>,
    redis_timeout_ms: Option<Scalar>,
    store_failure_policy: Option<Scalar>,
    log_format: Option<Scalar>,
    otlp_endpoint: Option<Scalar>,
    otlp_protocol: Option<Scalar>,
    model: Option<Scalar>,
    model_timeout_ms: Option<Scalar>,
    default_score: Option<Scalar>,
    fraud_threshold: Option<Scalar>,
    api_keys_file: Option<Scalar>,
    metrics_listen: Option<Scalar>,
    rate_limit: Option<Scalar>,
    rate_limit_burst: Option<Scalar>,
    max_in_flight: Option<Scalar>,
    request_timeout_ms: Option<Scalar>,
}

/// A TOML value of any scalar type, checked by the same code as a flag's text.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Integer(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One setting's three names, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    flag: &'static str,
    env: &'static str,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--{} ({})", self.flag, self.env)
    }
}

macro_rules! setting {
    ($const:ident, $flag:literal, $env:literal) => {
        const $const: Setting = Setting {
            flag: $flag,
            env: $env,
        };
    };
}
setting!(LISTEN, "listen", "ANTIFRAUD_LISTEN");
setting!(REDIS_URL, "redis-url", "ANTIFRAUD_REDIS_URL");
setting!(
    REDIS_PASSWORD_FILE,
    "redis-password-file",
    "ANTIFRAUD_REDIS_PASSWORD_FILE"
);
setting!(
    REDIS_POOL_SIZE,
    "redis-pool-size",
    "ANTIFRAUD_REDIS_POOL_SIZE"
);
setting!(
    REDIS_TIMEOUT_MS,
    "redis-timeout-ms",
    "ANTIFRAUD_REDIS_TIMEOUT_MS"
);
setting!(
    STORE_FAILURE_POLICY,
    "store-failure-policy",
    "ANTIFRAUD_STORE_FAILURE_POLICY"
);
setting!(LOG_FORMAT, "log-format", "ANTIFRAUD_LOG_FORMAT");
setting!(
    OTLP_ENDPOINT,
    "otlp-endpoint",
    "OTEL_EXPORTER_OTLP_ENDPOINT"
);
setting!(
    OTLP_PROTOCOL,
    "otlp-protocol",
    "OTEL_EXPORTER_OTLP_PROTOCOL"
);
setting!(MODEL, "model", "ANTIFRAUD_MODEL");
setting!(
    MODEL_TIMEOUT_MS,
    "model-timeout-ms",
    "ANTIFRAUD_MODEL_TIMEOUT_MS"
);
setting!(DEFAULT_SCORE, "default-score", "ANTIFRAUD_DEFAULT_SCORE");
setting!(
    FRAUD_THRESHOLD,
    "fraud-threshold",
    "ANTIFRAUD_FRAUD_THRESHOLD"
);
setting!(API_KEYS_FILE, "api-keys-file", "ANTIFRAUD_API_KEYS_FILE");
setting!(METRICS_LISTEN, "metrics-listen", "ANTIFRAUD_METRICS_LISTEN");
setting!(RATE_LIMIT, "rate-limit", "ANTIFRAUD_RATE_LIMIT");
setting!(
    RATE_LIMIT_BURST,
    "rate-limit-burst",
    "ANTIFRAUD_RATE_LIMIT_BURST"
);
setting!(MAX_IN_FLIGHT, "max-in-flight", "ANTIFRAUD_MAX_IN_FLIGHT");
setting!(
    REQUEST_TIMEOUT_MS,
    "request-timeout-ms",
    "ANTIFRAUD_REQUEST_TIMEOUT_MS"
);

/// The configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One setting has an invalid value.
    #[error("{setting}: {reason}, got {value:?}")]
    Invalid {
        /// Which setting.
        setting: Setting,
        /// The value as given (redacted for secrets).
        value: String,
        /// What a valid value looks like.
        reason: String,
    },
    /// The configuration file cannot be read or parsed.
    #[error("--config (ANTIFRAUD_CONFIG) {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why it is unusable.
        reason: String,
    },
    /// A secret (API keys, the Redis password) cannot be used; the message never contains it.
    #[error("{source_name}: {reason}")]
    Secret {
        /// Where the secret came from.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The service would listen beyond loopback without API keys.
    #[error(
        "--listen (ANTIFRAUD_LISTEN) {listen} is reachable from other hosts, so API keys are \
         required: put them in a file named by --api-keys-file (ANTIFRAUD_API_KEYS_FILE) or in \
         ANTIFRAUD_API_KEYS, or listen on 127.0.0.1"
    )]
    OpenBeyondLoopback {
        /// The address.
        listen: SocketAddr,
    },
}

/// Which store keeps the transactions.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// The embedded in-memory store.
    Embedded,
    /// Redis.
    Redis(RedisSettings),
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSettings::Embedded => f.write_str("Embedded"),
            StoreSettings::Redis(redis) => redis.fmt(f),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where traces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The collector's base URL.
    pub endpoint: String,
    /// `true` for HTTP/protobuf, `false` for gRPC.
    pub http: bool,
}

/// Which model scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSettings {
    /// The model trained by `ml/train.py`, embedded in the binary (falls back to the baseline,
    /// with a warning, if it cannot load).
    Shipped,
    /// The built-in logistic baseline.
    Builtin,
    /// An ONNX file, read at start-up and again on SIGHUP.
    Onnx(PathBuf),
    /// An Open Inference Protocol (KServe V2) model URL.
    Remote(String),
}

impl ModelSettings {
    fn parse(value: &str) -> Result<Self, ConfigError> {
        let expected = "expected shipped, builtin, onnx:PATH or http(s)://HOST:PORT/v2/models/NAME";
        match value {
            "shipped" => Ok(ModelSettings::Shipped),
            "builtin" => Ok(ModelSettings::Builtin),
            _ => {
                if let Some(path) = value.strip_prefix("onnx:") {
                    if path.is_empty() {
                        return Err(invalid(MODEL, value, "onnx: needs a file path"));
                    }
                    Ok(ModelSettings::Onnx(PathBuf::from(path)))
                } else if value.starts_with("http://") || value.starts_with("https://") {
                    Ok(ModelSettings::Remote(value.to_owned()))
                } else {
                    Err(invalid(MODEL, value, expected))
                }
            }
        }
    }
}

/// The validated configuration of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen. Port 0 picks a free port; [`crate::Application::port`] tells which.
    pub listen: SocketAddr,
    /// Where transactions are kept.
    pub store: StoreSettings,
    /// Which model scores.
    pub model: ModelSettings,
    /// Model budget, default score and fraud threshold.
    pub policy: ScoringPolicy,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Trace export over OTLP, when configured.
    pub otlp: Option<OtlpSettings>,
    /// Who may call the API; empty: anyone (loopback only).
    pub api_keys: ApiKeys,
    /// Where `/metrics` is served, when not on the API's listener.
    pub metrics_listen: Option<SocketAddr>,
    /// Requests per second and burst per key, when limited.
    pub rate_limit: Option<RateLimit>,
    /// Scorings in flight at most.
    pub max_in_flight: usize,
    /// Longest time to receive a request's head and body.
    pub request_timeout: Duration,
}

impl Settings {
    /// Reads flags, environment and the optional file. Prints help or version and exits when
    /// asked to, as any command-line tool does.
    pub fn load() -> Result<Settings, ConfigError> {
        let cli = Cli::try_parse().unwrap_or_else(|error| error.exit());
        Settings::from_cli(cli)
    }

    /// Checks already-parsed flags, reading the file they name, if any.
    pub fn from_cli(cli: Cli) -> Result<Settings, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let pick = |flag: Option<String>, key: Option<Scalar>| flag.or(key.map(|v| v.to_string()));

        let listen = match pick(cli.listen, file.listen) {
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
            Some(text) => text.parse().map_err(|_| {
                invalid(
                    LISTEN,
                    &text,
                    "expected IP:PORT, such as 127.0.0.1:8000 or [::1]:8000",
                )
            })?,
        };
        let pool_size = match pick(cli.redis_pool_size, file.redis_pool_size) {
            None => 4,
            Some(text) => whole_number(REDIS_POOL_SIZE, &text, 64)? as usize,
        };
        let command_timeout = match pick(cli.redis_timeout_ms, file.redis_timeout_ms) {
            None => Duration::from_millis(50),
            Some(text) => milliseconds(REDIS_TIMEOUT_MS, &text)?,
        };
        let store = match pick(cli.redis_url, file.redis_url) {
            None => StoreSettings::Embedded,
            Some(url) if url.trim().is_empty() => StoreSettings::Embedded,
            Some(url) => {
                let known = [
                    "redis://",
                    "rediss://",
                    "redis-cluster://",
                    "rediss-cluster://",
                    "redis-sentinel://",
                    "rediss-sentinel://",
                ];
                if !known.iter().any(|scheme| url.starts_with(scheme)) {
                    return Err(ConfigError::Invalid {
                        setting: REDIS_URL,
                        value: "<redacted>".into(),
                        reason: format!("expected a URL starting with one of {}", known.join(", ")),
                    });
                }
                let password = match pick(
                    cli.redis_password_file.map(|p| p.display().to_string()),
                    file.redis_password_file,
                ) {
                    None => None,
                    Some(path) => Some(read_secret(REDIS_PASSWORD_FILE, &path)?),
                };
                StoreSettings::Redis(RedisSettings {
                    url,
                    pool_size,
                    command_timeout,
                    password,
                })
            }
        };
        let store_failure =
            match pick(cli.store_failure_policy, file.store_failure_policy).as_deref() {
                None | Some("reject") => StoreFailurePolicy::Reject,
                Some("degrade") => StoreFailurePolicy::Degrade,
                Some(other) => {
                    return Err(invalid(
                        STORE_FAILURE_POLICY,
                        other,
                        "expected reject or degrade",
                    ));
                }
            };
        let model = match pick(cli.model, file.model).as_deref() {
            None => ModelSettings::Shipped,
            Some(value) => ModelSettings::parse(value)?,
        };
        let defaults = ScoringPolicy::DEFAULT;
        let timeout = match pick(cli.model_timeout_ms, file.model_timeout_ms) {
            None => defaults.model_timeout(),
            Some(text) => milliseconds(MODEL_TIMEOUT_MS, &text)?,
        };
        let score = |setting, raw: Option<String>, default: f64| match raw {
            None => Ok(default),
            Some(text) => match text.parse::<f64>() {
                Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
                _ => Err(invalid(setting, &text, "expected a number from 0 to 1")),
            },
        };
        let default_score = score(
            DEFAULT_SCORE,
            pick(cli.default_score, file.default_score),
            defaults.default_score(),
        )?;
        let threshold = score(
            FRAUD_THRESHOLD,
            pick(cli.fraud_threshold, file.fraud_threshold),
            defaults.fraud_threshold(),
        )?;
        let policy = ScoringPolicy::new(timeout, default_score, threshold)
            .expect("each value was checked against the policy's ranges above")
            .with_store_failure(store_failure);

        let log_format = match pick(cli.log_format, file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(invalid(LOG_FORMAT, other, "expected text or json")),
        };

        let http = match pick(cli.otlp_protocol, file.otlp_protocol).as_deref() {
            None | Some("grpc") => false,
            Some("http/protobuf") => true,
            Some(other) => {
                return Err(invalid(
                    OTLP_PROTOCOL,
                    other,
                    "expected grpc or http/protobuf",
                ));
            }
        };
        let otlp = match pick(cli.otlp_endpoint, file.otlp_endpoint) {
            None => None,
            Some(endpoint) if endpoint.trim().is_empty() => None,
            Some(endpoint)
                if endpoint.starts_with("http://") || endpoint.starts_with("https://") =>
            {
                Some(OtlpSettings { endpoint, http })
            }
            Some(other) => {
                return Err(invalid(
                    OTLP_ENDPOINT,
                    &other,
                    "expected an http:// or https:// URL",
                ));
            }
        };

        let api_keys = read_api_keys(
            pick(
                cli.api_keys_file.map(|p| p.display().to_string()),
                file.api_keys_file,
            ),
            cli.api_keys.as_deref(),
        )?;
        if api_keys.is_empty() && !listen.ip().is_loopback() {
            return Err(ConfigError::OpenBeyondLoopback { listen });
        }
        let metrics_listen = match pick(cli.metrics_listen, file.metrics_listen) {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| {
                invalid(
                    METRICS_LISTEN,
                    &text,
                    "expected IP:PORT, such as 127.0.0.1:9000",
                )
            })?),
        };
        let rate = match pick(cli.rate_limit, file.rate_limit) {
            None => 0.0,
            Some(text) => match text.parse::<f64>() {
                Ok(x) if (0.0..=1e6).contains(&x) => x,
                _ => {
                    return Err(invalid(
                        RATE_LIMIT,
                        &text,
                        "expected requests per second from 0 (no limit) to 1000000",
                    ));
                }
            },
        };
        let burst = match pick(cli.rate_limit_burst, file.rate_limit_burst) {
            None => None,
            Some(text) => Some(whole_number(RATE_LIMIT_BURST, &text, 1_000_000)?),
        };
        let rate_limit = (rate > 0.0).then(|| RateLimit {
            per_second: rate,
            // One second's worth by default: a steady caller never waits, a flood is cut.
            burst: burst.unwrap_or((rate.ceil() as u32).max(1)),
        });
        let max_in_flight = match pick(cli.max_in_flight, file.max_in_flight) {
            None => 512,
            Some(text) => whole_number(MAX_IN_FLIGHT, &text, 1_000_000)? as usize,
        };
        let request_timeout = match pick(cli.request_timeout_ms, file.request_timeout_ms) {
            None => Duration::from_secs(5),
            Some(text) => milliseconds(REQUEST_TIMEOUT_MS, &text)?,
        };

        Ok(Settings {
            listen,
            store,
            model,
            policy,
            log_format,
            otlp,
            api_keys,
            metrics_listen,
            rate_limit,
            max_in_flight,
            request_timeout,
        })
    }
}

/// A secret kept in a file: its first line, without surrounding spaces. Errors name the file,
/// never its content.
fn read_secret(setting: Setting, path: &str) -> Result<String, ConfigError> {
    let text = read_secret_file(setting, path)?;
    let secret = text.lines().next().unwrap_or_default().trim();
    if secret.is_empty() {
        return Err(secret_error(setting, path, "the file is empty"));
    }
    Ok(secret.to_owned())
}

/// The whole text of a file holding secrets.
fn read_secret_file(setting: Setting, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| secret_error(setting, path, e.to_string()))
}

/// A secret file is unusable: the error names the setting and the file, never the content.
fn secret_error(setting: Setting, path: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Secret {
        source_name: format!("{setting} {path}"),
        reason: reason.into(),
    }
}

/// The keys of the key file and of `ANTIFRAUD_API_KEYS`, together. A key file without any key is
/// refused: whoever named it meant to require keys.
fn read_api_keys(file: Option<String>, list: Option<&str>) -> Result<ApiKeys, ConfigError> {
    let from_file = match file {
        None => ApiKeys::default(),
        Some(path) => {
            let text = read_secret_file(API_KEYS_FILE, &path)?;
            let keys = ApiKeys::parse_file(&text)
                .map_err(|e| secret_error(API_KEYS_FILE, &path, e.to_string()))?;
            if keys.is_empty() {
                return Err(secret_error(API_KEYS_FILE, &path, "the file has no keys"));
            }
            keys
        }
    };
    let from_env = match list {
        None => ApiKeys::default(),
        Some(list) => ApiKeys::parse_list(list).map_err(|e| ConfigError::Secret {
            source_name: "ANTIFRAUD_API_KEYS".to_owned(),
            reason: e.to_string(),
        })?,
    };
    Ok(from_file.merge(from_env))
}

/// A whole number from 1 to `max`.
fn whole_number(setting: Setting, text: &str, max: u32) -> Result<u32, ConfigError> {
    match text.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            setting,
            text,
            &format!("expected a whole number from 1 to {max}"),
        )),
    }
}

/// Whole milliseconds from 1 to 10 000.
fn milliseconds(setting: Setting, text: &str) -> Result<Duration, ConfigError> {
    match text.parse::<u64>() {
        Ok(ms) if (1..=10_000).contains(&ms) => Ok(Duration::from_millis(ms)),
        _ => Err(invalid(
            setting,
            text,
            "expected whole milliseconds from 1 to 10000",
        )),
    }
}

fn invalid(setting: Setting, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        setting,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let error = |reason: String| ConfigError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    // toml's messages span several lines (they quote the offending line); keep the first.
    toml::from_str(&text).map_err(|e| {
        let message = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_owned();
        error(message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["antifraud"];
        argv.extend_from_slice(args);
        Settings::from_cli(Cli::try_parse_from(argv).expect("known flags"))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = Settings::from_cli(Cli::default()).expect("valid");
        assert_eq!(
            settings.listen,
            "127.0.0.1:8000".parse().expect("an address")
        );
        assert_eq!(settings.store, StoreSettings::Embedded);
        assert_eq!(settings.model, ModelSettings::Shipped);
        assert_eq!(settings.policy, ScoringPolicy::DEFAULT);
        assert_eq!(settings.policy.model_timeout(), Duration::from_millis(100));
        assert_eq!(settings.policy.default_score(), 0.5);
    }

    #[test]
    fn flags_set_every_value() {
        let s = cli(&[
            "--listen",
            "[::1]:9000",
            "--model",
            "builtin",
            "--model-timeout-ms",
            "25",
            "--default-score",
            "0.3",
            "--fraud-threshold",
            "0.9",
            "--redis-url",
            "redis://127.0.0.1:7000",
        ])
        .expect("valid");
        assert_eq!(s.listen, "[::1]:9000".parse().expect("an address"));
        assert_eq!(
            s.policy,
            ScoringPolicy::new(Duration::from_millis(25), 0.3, 0.9).expect("valid")
        );
        assert_eq!(
            s.store,
            StoreSettings::Redis(RedisSettings::new("redis://127.0.0.1:7000"))
        );
        assert_eq!(s.policy.store_failure(), StoreFailurePolicy::Reject);
    }

    #[test]
    fn every_kind_of_model_is_read() {
        let model = |value: &str| cli(&["--model", value]).map(|s| s.model);
        assert_eq!(model("shipped").expect("valid"), ModelSettings::Shipped);
        assert_eq!(model("builtin").expect("valid"), ModelSettings::Builtin);
        assert_eq!(
            model("onnx:/models/fraud.onnx").expect("valid"),
            ModelSettings::Onnx(PathBuf::from("/models/fraud.onnx"))
        );
        assert_eq!(
            model("https://models:8080/v2/models/fraud").expect("valid"),
            ModelSettings::Remote("https://models:8080/v2/models/fraud".into())
        );
        for bad in ["onnx:", "gpt", "/models/fraud.onnx"] {
            let message = model(bad).expect_err(bad).to_string();
            assert!(
                message.starts_with("--model (ANTIFRAUD_MODEL)"),
                "{message}"
            );
        }
    }

    #[test]
    fn redis_settings_and_the_failure_policy_are_read() {
        let s = cli(&[
            "--redis-url",
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001",
            "--redis-pool-size",
            "8",
            "--redis-timeout-ms",
            "20",
            "--store-failure-policy",
            "degrade",
        ])
        .expect("valid");
        let StoreSettings::Redis(redis) = &s.store else {
            panic!("{:?}", s.store)
        };
        assert_eq!(
            (redis.pool_size, redis.command_timeout),
            (8, Duration::from_millis(20))
        );
        assert_eq!(s.policy.store_failure(), StoreFailurePolicy::Degrade);
        let debug = format!("{s:?}");
        assert!(!debug.contains("7000"), "the URL is never printed: {debug}");
    }

    #[test]
    fn each_invalid_value_names_its_setting_on_one_line() {
        for (args, named) in [
            (
                &["--listen", "localhost"][..],
                "--listen (ANTIFRAUD_LISTEN)",
            ),
            (&["--model", "gpt"], "--model (ANTIFRAUD_MODEL)"),
            (
                &["--model-timeout-ms", "0"],
                "--model-timeout-ms (ANTIFRAUD_MODEL_TIMEOUT_MS)",
            ),
            (&["--model-timeout-ms", "fast"], "--model-timeout-ms"),
            (
                &["--default-score", "1.5"],
                "--default-score (ANTIFRAUD_DEFAULT_SCORE)",
            ),
            (
                &["--fraud-threshold", "NaN"],
                "--fraud-threshold (ANTIFRAUD_FRAUD_THRESHOLD)",
            ),
            (
                &["--redis-url", "http://secret@host"],
                "--redis-url (ANTIFRAUD_REDIS_URL)",
            ),
        ] {
            let message = cli(args).expect_err("invalid").to_string();
            assert!(message.starts_with(named), "{message}");
            assert_eq!(message.lines().count(), 1, "{message}");
            assert!(
                !message.contains("secret"),
                "secrets are not echoed: {message}"
            );
        }
    }

    #[test]
    fn the_file_fills_in_what_flags_do_not_set() {
        let dir = std::env::temp_dir().join(format!("antifraud-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("antifraud.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9100\"\nmodel_timeout_ms = 40\ndefault_score = 0.25\nfraud_threshold = 1\n")
            .expect("write");
        let s = Settings::from_cli(Cli {
            config: Some(path.clone()),
            fraud_threshold: Some("0.8".into()),
            ..Cli::default()
        })
        .expect("valid");
        assert_eq!(s.listen.port(), 9100);
        assert_eq!(
            s.policy,
            ScoringPolicy::new(Duration::from_millis(40), 0.25, 0.8).expect("valid")
        );

        std::fs::write(&path, "listen = \"127.0.0.1:9100\"\nmodel_timout_ms = 40\n")
            .expect("write");
        let message = Settings::from_cli(Cli {
            config: Some(path.clone()),
            ..Cli::default()
        })
        .expect_err("unknown key")
        .to_string();
        assert!(
            message.contains("model_timout_ms") && message.lines().count() == 1,
            "{message}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn listening_beyond_loopback_needs_keys() {
        let message = cli(&["--listen", "0.0.0.0:8000"])
            .expect_err("open to the network")
            .to_string();
        assert!(
            message.starts_with("--listen (ANTIFRAUD_LISTEN) 0.0.0.0:8000")
                && message.contains("--api-keys-file (ANTIFRAUD_API_KEYS_FILE)")
                && message.contains("ANTIFRAUD_API_KEYS")
                && message.lines().count() == 1,
            "{message}"
        );
        for loopback in ["127.0.0.1:8000", "[::1]:8000", "127.0.0.2:8000"] {
            assert!(
                cli(&["--listen", loopback])
                    .expect("open on loopback")
                    .api_keys
                    .is_empty()
            );
        }
        let keyed = Settings::from_cli(Cli {
            listen: Some("0.0.0.0:8000".into()),
            api_keys: Some("k-0123456789".into()),
            ..Cli::default()
        })
        .expect("keys make it safe");
        assert_eq!(keyed.api_keys.len(), 1);
    }

    #[test]
    fn keys_come_from_the_file_and_the_environment_together() {
        let dir = std::env::temp_dir().join(format!("antifraud-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("keys");
        std::fs::write(&path, "# team a\nfile-key-000001\n\n").expect("write");
        let s = Settings::from_cli(Cli {
            api_keys_file: Some(path.clone()),
            api_keys: Some("env-key-000001,file-key-000001".into()),
            ..Cli::default()
        })
        .expect("valid");
        assert_eq!(s.api_keys.len(), 2);
        assert!(
            !format!("{s:?}").contains("key-000001"),
            "keys are never printed"
        );

        std::fs::write(&path, "# nothing but comments\n").expect("write");
        let empty = Settings::from_cli(Cli {
            api_keys_file: Some(path.clone()),
            ..Cli::default()
        })
        .expect_err("a key file without keys")
        .to_string();
        assert!(
            empty.starts_with("--api-keys-file (ANTIFRAUD_API_KEYS_FILE)")
                && empty.contains("no keys"),
            "{empty}"
        );
        std::fs::write(&path, "good-key-0001\nsecret with spaces\n").expect("write");
        let bad = Settings::from_cli(Cli {
            api_keys_file: Some(path.clone()),
            ..Cli::default()
        })
        .expect_err("a key a header cannot carry")
        .to_string();
        assert!(bad.contains("key 2") && !bad.contains("secret"), "{bad}");
        let missing = Settings::from_cli(Cli {
            api_keys_file: Some(dir.join("absent")),
            ..Cli::default()
        })
        .expect_err("no such file")
        .to_string();
        assert!(missing.starts_with("--api-keys-file"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn limits_and_timeouts_are_read_and_checked() {
        let s = Settings::from_cli(Cli::default()).expect("valid");
        assert_eq!(
            (
                s.rate_limit,
                s.max_in_flight,
                s.request_timeout,
                s.metrics_listen
            ),
            (None, 512, Duration::from_secs(5), None)
        );
        let s = cli(&[
            "--rate-limit",
            "2.5",
            "--max-in-flight",
            "64",
            "--request-timeout-ms",
            "750",
            "--metrics-listen",
            "127.0.0.1:9464",
        ])
        .expect("valid");
        assert_eq!(
            s.rate_limit,
            Some(RateLimit {
                per_second: 2.5,
                burst: 3
            })
        );
        assert_eq!(
            (s.max_in_flight, s.request_timeout),
            (64, Duration::from_millis(750))
        );
        assert_eq!(
            s.metrics_listen,
            Some("127.0.0.1:9464".parse().expect("an address"))
        );
        let burst = cli(&["--rate-limit", "100", "--rate-limit-burst", "7"]).expect("valid");
        assert_eq!(burst.rate_limit.map(|r| r.burst), Some(7));
        assert_eq!(cli(&["--rate-limit", "0"]).expect("valid").rate_limit, None);
        for (args, named) in [
            (
                &["--rate-limit=-1"][..],
                "--rate-limit (ANTIFRAUD_RATE_LIMIT)",
            ),
            (
                &["--rate-limit", "NaN"],
                "--rate-limit (ANTIFRAUD_RATE_LIMIT)",
            ),
            (
                &["--rate-limit-burst", "0"],
                "--rate-limit-burst (ANTIFRAUD_RATE_LIMIT_BURST)",
            ),
            (
                &["--max-in-flight", "0"],
                "--max-in-flight (ANTIFRAUD_MAX_IN_FLIGHT)",
            ),
            (
                &["--request-timeout-ms", "0"],
                "--request-timeout-ms (ANTIFRAUD_REQUEST_TIMEOUT_MS)",
            ),
            (
                &["--metrics-listen", "localhost"],
                "--metrics-listen (ANTIFRAUD_METRICS_LISTEN)",
            ),
        ] {
            let message = cli(args).expect_err("invalid").to_string();
            assert!(message.starts_with(named), "{message}");
        }
    }

    #[test]
    fn the_redis_password_file_is_read_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("antifraud-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("pw");
        std::fs::write(&path, "  hunter2-secret  \nignored\n").expect("write");
        let with = |file: &Path| {
            Settings::from_cli(Cli {
                redis_url: Some("redis://127.0.0.1:6400".into()),
                redis_password_file: Some(file.to_path_buf()),
                ..Cli::default()
            })
        };
        let s = with(&path).expect("valid");
        let StoreSettings::Redis(redis) = &s.store else {
            panic!("{:?}", s.store)
        };
        assert_eq!(redis.password.as_deref(), Some("hunter2-secret"));
        assert!(!format!("{s:?}").contains("hunter2"));
        std::fs::write(&path, "\n").expect("write");
        let empty = with(&path).expect_err("empty").to_string();
        assert!(
            empty.starts_with("--redis-password-file (ANTIFRAUD_REDIS_PASSWORD_FILE)"),
            "{empty}"
        );
        let missing = with(&dir.join("absent")).expect_err("missing").to_string();
        assert!(missing.starts_with("--redis-password-file"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
