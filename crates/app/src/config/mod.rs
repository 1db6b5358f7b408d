//! Configuration: command-line flags, their environment variables, and an optional TOML file.
//!
//! Precedence, highest first: flag, environment variable, file, default. Each setting is
//! declared once, in `table.rs`; `declare.rs` generates the sources and the typed values from
//! that declaration, and this module composes them into [`Settings`]. Every value is checked
//! before the service starts; an invalid one stops start-up with one line naming the setting.

mod declare;
mod sources;
mod table;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use antifraud_domain::ScoringPolicy;
use antifraud_store_redis::RedisSettings;

pub use crate::auth::{ApiKeys, KeyError, KeyId};
pub use crate::limits::RateLimit;
pub use declare::Setting;
pub use table::Inputs;
use table::{SPECS, Values};

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
        "{} {listen} is reachable from other hosts, so API keys are required: put them in a file \
         named by {} or in {}, or listen on 127.0.0.1",
        Setting(&SPECS.listen),
        Setting(&SPECS.api_keys_file),
        Setting(&SPECS.api_keys)
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

/// How traces travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP over gRPC.
    Grpc,
    /// OTLP over HTTP with protobuf bodies.
    HttpProtobuf,
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
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        match value {
            "shipped" => Ok(ModelSettings::Shipped),
            "builtin" => Ok(ModelSettings::Builtin),
            "onnx:" => Err("onnx: needs a file path".to_owned()),
            _ => {
                if let Some(path) = value.strip_prefix("onnx:") {
                    Ok(ModelSettings::Onnx(PathBuf::from(path)))
                } else if value.starts_with("http://") || value.starts_with("https://") {
                    Ok(ModelSettings::Remote(value.to_owned()))
                } else {
                    Err(
                        "expected shipped, builtin, onnx:PATH or http(s)://HOST:PORT/v2/models/NAME"
                            .to_owned(),
                    )
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
    /// The rule file that decides, when one is named.
    pub rules: Option<PathBuf>,
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
    /// The configuration file read, if any.
    pub config_file: Option<PathBuf>,
    /// How far this instance's wall clock is shifted (fault-injection runs only; zero otherwise).
    pub clock_offset: time::Duration,
}

impl Settings {
    /// Reads the process's flags, environment and the optional file. Prints help or version and
    /// exits when asked to, as any command-line tool does.
    pub fn load() -> Result<Settings, ConfigError> {
        let flags = sources::from_args(std::env::args_os()).unwrap_or_else(|error| error.exit());
        let environment = sources::from_env(|name| std::env::var(name).ok());
        Settings::from_values(Values::parse(&layered(flags, environment)?)?)
    }

    /// Checks `given` (flags over environment, or a test's settings), under the file it names,
    /// if any, and the defaults.
    pub fn from_inputs(given: Inputs) -> Result<Settings, ConfigError> {
        Settings::from_values(Values::parse(&resolve(given)?)?)
    }

    /// Composes the parsed values into what the service runs with, reading the secret files.
    fn from_values(values: Values) -> Result<Settings, ConfigError> {
        let store = match values.redis_url {
            None => StoreSettings::Embedded,
            Some(url) => StoreSettings::Redis(RedisSettings {
                pool_size: values.redis_pool_size as usize,
                command_timeout: values.redis_timeout_ms,
                wait_replicas: values.redis_wait_replicas,
                wait_timeout: values.redis_wait_timeout_ms,
                password: match &values.redis_password_file {
                    None => None,
                    Some(path) => Some(read_secret(Setting(&SPECS.redis_password_file), path)?),
                },
                ..RedisSettings::new(url)
            }),
        };
        let policy = ScoringPolicy::new(
            values.model_timeout_ms,
            values.default_score,
            values.fraud_threshold,
        )
        .and_then(|policy| policy.with_max_lateness(values.max_lateness))
        .and_then(|policy| policy.with_deadline(values.deadline_ms))
        .expect("each value was checked against the policy's ranges by its parser")
        .with_store_failure(values.store_failure_policy);
        let otlp = values.otlp_endpoint.map(|endpoint| OtlpSettings {
            endpoint,
            http: values.otlp_protocol == OtlpProtocol::HttpProtobuf,
        });
        let api_keys = read_api_keys(values.api_keys_file.as_deref(), values.api_keys.as_deref())?;
        if api_keys.is_empty() && !values.listen.ip().is_loopback() {
            return Err(ConfigError::OpenBeyondLoopback {
                listen: values.listen,
            });
        }
        let rate_limit = (values.rate_limit > 0.0).then(|| RateLimit {
            per_second: values.rate_limit,
            // One second's worth by default: a steady caller never waits, a flood is cut.
            burst: values
                .rate_limit_burst
                .unwrap_or((values.rate_limit.ceil() as u32).max(1)),
        });
        Ok(Settings {
            listen: values.listen,
            store,
            model: values.model,
            rules: values.rules,
            policy,
            log_format: values.log_format,
            otlp,
            api_keys,
            metrics_listen: values.metrics_listen,
            rate_limit,
            max_in_flight: values.max_in_flight as usize,
            request_timeout: values.request_timeout_ms,
            config_file: values.config,
            clock_offset: time::Duration::milliseconds(values.clock_offset_ms),
        })
    }
}

/// The precedence: flags over the environment over the file they name, then the defaults
/// (applied by [`Values::parse`]).
fn layered(flags: Inputs, environment: Inputs) -> Result<Inputs, ConfigError> {
    resolve(flags.over(environment))
}

/// `given` over the file it names (if any): the text every setting resolves from.
fn resolve(given: Inputs) -> Result<Inputs, ConfigError> {
    let file = match given
        .config
        .as_deref()
        .filter(|path| !path.trim().is_empty())
    {
        Some(path) => sources::from_file(Path::new(path))?,
        None => Inputs::default(),
    };
    Ok(given.over(file))
}

/// A secret kept in a file: its first line, without surrounding spaces. Errors name the file,
/// never its content.
fn read_secret(setting: Setting, path: &Path) -> Result<String, ConfigError> {
    let text = read_secret_file(setting, path)?;
    let secret = text.lines().next().unwrap_or_default().trim();
    if secret.is_empty() {
        return Err(secret_error(setting, path, "the file is empty"));
    }
    Ok(secret.to_owned())
}

/// The whole text of a file holding secrets.
fn read_secret_file(setting: Setting, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| secret_error(setting, path, e.to_string()))
}

/// A secret file is unusable: the error names the setting and the file, never the content.
fn secret_error(setting: Setting, path: &Path, reason: impl Into<String>) -> ConfigError {
    ConfigError::Secret {
        source_name: format!("{setting} {}", path.display()),
        reason: reason.into(),
    }
}

/// The keys of the key file and of `ANTIFRAUD_API_KEYS`, together. A key file without any key is
/// refused: whoever named it meant to require keys.
fn read_api_keys(file: Option<&Path>, list: Option<&str>) -> Result<ApiKeys, ConfigError> {
    let setting = Setting(&SPECS.api_keys_file);
    let from_file = match file {
        None => ApiKeys::default(),
        Some(path) => {
            let text = read_secret_file(setting, path)?;
            let keys = ApiKeys::parse_file(&text)
                .map_err(|e| secret_error(setting, path, e.to_string()))?;
            if keys.is_empty() {
                return Err(secret_error(setting, path, "the file has no keys"));
            }
            keys
        }
    };
    let from_env = match list {
        None => ApiKeys::default(),
        Some(list) => ApiKeys::parse_list(list).map_err(|e| ConfigError::Secret {
            source_name: Setting(&SPECS.api_keys).to_string(),
            reason: e.to_string(),
        })?,
    };
    Ok(from_file.merge(from_env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use antifraud_domain::StoreFailurePolicy;
    use declare::Fallback;
    use table::ALL;

    fn cli(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["antifraud"];
        argv.extend_from_slice(args);
        Settings::from_inputs(sources::from_args(argv).expect("known flags"))
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let settings = Settings::from_inputs(Inputs::default()).expect("valid");
        assert_eq!(
            settings.listen,
            "127.0.0.1:8000".parse().expect("an address")
        );
        assert_eq!(settings.store, StoreSettings::Embedded);
        assert_eq!(settings.model, ModelSettings::Shipped);
        assert_eq!(settings.policy, ScoringPolicy::DEFAULT);
        assert_eq!(settings.policy.model_timeout(), Duration::from_millis(100));
        assert_eq!(settings.policy.default_score(), 0.5);
        assert_eq!(settings.policy.deadline(), Duration::from_millis(200));
        assert_eq!(
            cli(&["--deadline-ms", "350"])
                .expect("valid")
                .policy
                .deadline(),
            Duration::from_millis(350)
        );
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
        let s = Settings::from_inputs(Inputs {
            config: Some(path.display().to_string()),
            fraud_threshold: Some("0.8".into()),
            ..Inputs::default()
        })
        .expect("valid");
        assert_eq!(s.listen.port(), 9100);
        assert_eq!(
            s.policy,
            ScoringPolicy::new(Duration::from_millis(40), 0.25, 0.8).expect("valid")
        );

        std::fs::write(&path, "listen = \"127.0.0.1:9100\"\nmodel_timout_ms = 40\n")
            .expect("write");
        let message = Settings::from_inputs(Inputs {
            config: Some(path.display().to_string()),
            ..Inputs::default()
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
        let keyed = Settings::from_inputs(Inputs {
            listen: Some("0.0.0.0:8000".into()),
            api_keys: Some("k-0123456789".into()),
            ..Inputs::default()
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
        let s = Settings::from_inputs(Inputs {
            api_keys_file: Some(path.display().to_string()),
            api_keys: Some("env-key-000001,file-key-000001".into()),
            ..Inputs::default()
        })
        .expect("valid");
        assert_eq!(s.api_keys.len(), 2);
        assert!(
            !format!("{s:?}").contains("key-000001"),
            "keys are never printed"
        );

        std::fs::write(&path, "# nothing but comments\n").expect("write");
        let empty = Settings::from_inputs(Inputs {
            api_keys_file: Some(path.display().to_string()),
            ..Inputs::default()
        })
        .expect_err("a key file without keys")
        .to_string();
        assert!(
            empty.starts_with("--api-keys-file (ANTIFRAUD_API_KEYS_FILE)")
                && empty.contains("no keys"),
            "{empty}"
        );
        std::fs::write(&path, "good-key-0001\nsecret with spaces\n").expect("write");
        let bad = Settings::from_inputs(Inputs {
            api_keys_file: Some(path.display().to_string()),
            ..Inputs::default()
        })
        .expect_err("a key a header cannot carry")
        .to_string();
        assert!(bad.contains("key 2") && !bad.contains("secret"), "{bad}");
        let missing = Settings::from_inputs(Inputs {
            api_keys_file: Some(dir.join("absent").display().to_string()),
            ..Inputs::default()
        })
        .expect_err("no such file")
        .to_string();
        assert!(missing.starts_with("--api-keys-file"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn limits_and_timeouts_are_read_and_checked() {
        let s = Settings::from_inputs(Inputs::default()).expect("valid");
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
            Settings::from_inputs(Inputs {
                redis_url: Some("redis://127.0.0.1:6400".into()),
                redis_password_file: Some(file.display().to_string()),
                ..Inputs::default()
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

    /// A directory of its own for a test, removed by the test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("antifraud-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn every_setting_takes_the_flag_over_the_environment_over_the_file_over_the_default() {
        let dir = scratch("precedence");
        for spec in ALL {
            // The text each source gives. `config` names the file itself, so its texts are
            // files (empty ones: a file cannot name another).
            let (flag_text, env_text, file_text) = if spec.key == "config" {
                let [flag, env] = ["flag", "env"].map(|name| {
                    let path = dir.join(format!("{name}.toml"));
                    std::fs::write(&path, "").expect("write");
                    path.display().to_string()
                });
                (flag, env, String::new())
            } else {
                ("from-flag".into(), "from-env".into(), "from-file".into())
            };
            let file = dir.join(format!("{}.toml", spec.key));
            let toml = if spec.in_file {
                format!("{} = \"{file_text}\"\n", spec.key)
            } else {
                String::new()
            };
            std::fs::write(&file, toml).expect("write");

            let text = |flag: bool, env: bool, from_file: bool| -> Option<String> {
                let mut args = vec!["antifraud".to_owned()];
                if from_file && spec.key != "config" {
                    args.push(format!("--config={}", file.display()));
                }
                if let (true, Some(name)) = (flag, spec.flag) {
                    args.push(format!("--{name}={flag_text}"));
                }
                let flags = sources::from_args(args).expect("declared flags parse");
                let environment =
                    sources::from_env(|name| (env && name == spec.env).then(|| env_text.clone()));
                let mut inputs = layered(flags, environment).expect("the files exist");
                inputs.slot(spec.key).expect("declared").take()
            };
            let flag = spec.flag.map(|_| flag_text.clone());
            let file = spec.in_file.then(|| file_text.clone());
            assert_eq!(
                text(true, true, true),
                flag.clone().or(Some(env_text.clone())),
                "{}",
                spec.key
            );
            assert_eq!(
                text(false, true, true),
                Some(env_text.clone()),
                "{}",
                spec.key
            );
            assert_eq!(text(false, false, true), file, "{}", spec.key);
            assert_eq!(text(false, false, false), None, "{}", spec.key);
            assert_eq!(text(true, false, false), flag, "{}", spec.key);
        }
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn every_default_parses_and_every_name_is_its_flag_and_its_key() {
        assert!(
            Values::parse(&Inputs::default()).is_ok(),
            "a declared default does not parse"
        );
        for spec in ALL {
            if let Some(flag) = spec.flag {
                assert_eq!(flag, spec.key.replace('_', "-"), "the TOML key is the flag");
            }
            assert!(spec.env.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
            if let Fallback::Value(text) = spec.fallback {
                assert!(!text.is_empty(), "{}", spec.key);
            }
        }
        sources::command().debug_assert();
        let help = sources::command().render_long_help().to_string();
        for spec in ALL {
            assert!(help.contains(spec.env), "--help names {}", spec.env);
            if let Some(flag) = spec.flag {
                assert!(
                    help.contains(&format!("--{flag} <")),
                    "--help lists --{flag}"
                );
            }
        }
    }

    #[test]
    fn the_readme_table_is_the_declaration() {
        let readme = include_str!("../../../../README.md");
        let table = readme
            .split("## Configuration")
            .nth(1)
            .expect("README has a Configuration section");
        let rows: Vec<[String; 3]> = table
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2) // the header and its rule
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                [cells[1], cells[2], cells[3]].map(str::to_owned)
            })
            .collect();
        let declared: Vec<[String; 3]> = ALL
            .iter()
            .map(|spec| {
                [
                    spec.flag.map_or(
                        "(none: secrets stay out of process lists)".to_owned(),
                        |f| format!("`--{f}`"),
                    ),
                    format!("`{}`", spec.env),
                    spec.default_doc(),
                ]
            })
            .collect();
        for row in &declared {
            assert!(rows.contains(row), "README.md lacks the row {row:?}");
        }
        for row in &rows {
            assert!(
                declared.contains(row),
                "README.md documents {row:?}, which is not declared"
            );
        }
    }

    #[test]
    fn the_lateness_is_a_duration_with_its_unit_up_to_a_week() {
        let lateness =
            |text: &str| cli(&[&format!("--max-lateness={text}")]).map(|s| s.policy.max_lateness());
        assert_eq!(
            Settings::from_inputs(Inputs::default())
                .expect("valid")
                .policy
                .retention(),
            Duration::from_secs(48 * 3600),
            "24 h windows plus the default 24 h lateness"
        );
        assert_eq!(lateness("90m").expect("valid"), Duration::from_secs(5400));
        assert_eq!(lateness("0s").expect("valid"), Duration::ZERO);
        assert_eq!(
            lateness("7d").expect("valid"),
            Duration::from_secs(7 * 86_400)
        );
        for bad in ["8d", "24", "-1h", "h", "1.5h", "169h"] {
            let message = lateness(bad).expect_err(bad).to_string();
            assert!(
                message.starts_with("--max-lateness (ANTIFRAUD_MAX_LATENESS)"),
                "{message}"
            );
        }
    }
}
