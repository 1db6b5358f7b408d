//! An open-loop traffic generator for the scoring API, used by `cargo xtask load` and
//! `cargo xtask bench`.
//!
//! Requests leave on a schedule (`schedule.rs`), not when the previous one returns, and latency
//! is measured from the intended send time, so a stalled server shows its queueing instead of
//! hiding it (coordinated omission corrected, as wrk2 does). In-flight requests are bounded; a
//! request that must wait for a slot, or that the generator itself sends late, is counted as
//! late and reported. Traffic is realistic (`traffic.rs`); results are an HDR histogram and
//! counters (`report.rs`), printed as a table and optionally written as JSON, with pass/fail
//! gates for CI.

// The generator owns its terminal: the report is a table for the developer who ran it.
#![allow(clippy::print_stdout)]

mod report;
mod schedule;
mod traffic;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use report::Outcome;
pub use report::{Report, Stats};
pub use schedule::parse_duration;
use schedule::{Schedule, parse_stages};
pub use traffic::Rng;
use traffic::Traffic;

/// A request sent this much after its intended time counts as late.
pub(crate) const LATE_AFTER: Duration = Duration::from_millis(5);
/// The highest rate accepted: above it the generator itself, on this kind of machine, cannot
/// keep a schedule (measure before raising it).
const MAX_RATE: f64 = 50_000.0;
/// The most requests in flight: each holds a socket.
const MAX_IN_FLIGHT: usize = 10_000;

/// `cargo xtask load`'s flags. `--profile FILE` reads more flags from a file (see
/// [`expand_profile`]); flags given later win, so a profile can be adjusted on the command line.
#[derive(clap::Args, Clone)]
#[command(args_override_self = true)]
pub struct Load {
    /// A traffic profile: a file of flags (such as deploy/load/compose.args), read before the
    /// flags that follow it.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Constant arrival rate, in transactions per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long to send at --rate (`30s`, `2m`...). Ignored with --stages.
    #[arg(long, default_value = "30s")]
    duration: String,
    /// Ramp stages instead of a constant rate: `30s:500,60s:2000,30s:0` goes linearly from 0
    /// to 500/s over 30 s, then to 2,000/s over 60 s, then down to 0.
    #[arg(long)]
    stages: Option<String>,
    /// Most requests in flight at once; a request that finds none free is late.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long, env = "ANTIFRAUD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Seed of the traffic (customers, amounts, attacks, replays).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Size of the customer population (activity is skewed: few very active, most rare).
    #[arg(long, default_value_t = 10_000)]
    customers: u64,
    /// Timestamps spread evenly over this much of the past (`23h`), oldest first, instead of
    /// the send time: fills customers' windows with history (keep it within the service's
    /// `--max-lateness`).
    #[arg(long, value_name = "DURATION")]
    backdate: Option<String>,
    /// Share of transactions that start a planted attack (burst, takeover, risky merchant).
    #[arg(long, default_value_t = 0.02)]
    fraud_ratio: f64,
    /// Share of requests that resend an earlier transaction (idempotent retries).
    #[arg(long, default_value_t = 0.01)]
    duplicate_ratio: f64,
    /// A request's timeout, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Write the report as JSON here.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Fail (exit 1) when more than this share of requests fail (0.001 = 0.1 %).
    #[arg(long)]
    max_error_rate: Option<f64>,
    /// Fail (exit 1) when the p99 latency exceeds this many milliseconds.
    #[arg(long)]
    max_p99_ms: Option<f64>,
    /// Threads of the generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    quiet: bool,
    /// Whether a 200 must carry a score: only the benchmark's echo answers without one.
    #[arg(skip = true)]
    expect_score: bool,
}

/// Replaces `--profile FILE` after `load` by the flags in the file: one flag and its value per
/// line, `#` starting a comment. Flags after it on the command line override the file's.
pub fn expand_profile(args: Vec<String>) -> anyhow::Result<Vec<String>> {
    let Some(load) = args.iter().position(|a| a == "load") else {
        return Ok(args);
    };
    let Some(at) = args[load..]
        .iter()
        .position(|a| a == "--profile")
        .map(|i| i + load)
    else {
        return Ok(args);
    };
    let path = args.get(at + 1).context("--profile needs a file")?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--profile: cannot read {path}"))?;
    let mut expanded = args[..at].to_vec();
    for line in text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
    {
        expanded.extend(line.split_whitespace().map(str::to_owned));
    }
    expanded.extend(args[at + 2..].iter().cloned());
    Ok(expanded)
}

impl Load {
    /// A constant `rate` against `url` for `duration`, quiet, over a million customers (a
    /// production-sized population: windows stay realistic at high rates), with the defaults
    /// otherwise (for `cargo xtask bench`).
    pub fn constant(url: &str, rate: f64, duration: &str) -> Load {
        Load {
            profile: None,
            url: url.to_owned(),
            rate,
            duration: duration.to_owned(),
            stages: None,
            max_in_flight: 1024,
            api_key: None,
            seed: 1,
            customers: 1_000_000,
            backdate: None,
            fraud_ratio: 0.02,
            duplicate_ratio: 0.01,
            timeout_ms: 2000,
            json_out: None,
            max_error_rate: None,
            max_p99_ms: None,
            threads: 1,
            quiet: true,
            expect_score: true,
        }
    }

    /// The constant arrival rate, per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The same load over `customers` customers.
    pub fn customers(mut self, customers: u64) -> Load {
        self.customers = customers;
        self
    }

    /// The same load with timestamps spread over the past `span` (see `--backdate`).
    pub fn backdated(mut self, span: &str) -> Load {
        self.backdate = Some(span.to_owned());
        self
    }

    /// The same load against a server that answers 200 with any JSON body, not a score (the
    /// benchmark's echo).
    pub fn without_scores(mut self) -> Load {
        self.expect_score = false;
        self
    }

    /// Runs the load, prints the report (and writes it as JSON when asked), and fails when a
    /// gate does.
    pub fn run(self) -> anyhow::Result<()> {
        let report = self.execute()?;
        let (gates, passed) = self.gates(&report);
        report.print();
        if let Some(path) = &self.json_out {
            let text = serde_json::to_string_pretty(&report.to_json(&gates, passed))?;
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("report: {}", path.display());
        }
        if !passed {
            bail!("load: the run failed its gates: {gates}");
        }
        Ok(())
    }

    /// Runs the load and returns its report (used by `cargo xtask bench` too).
    pub fn execute(&self) -> anyhow::Result<Report> {
        let schedule = self.schedule()?;
        self.check(&schedule)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.threads)
            .enable_all()
            .build()
            .context("cannot start the generator's runtime")?;
        self.drive(&runtime, &schedule)
    }

    fn schedule(&self) -> anyhow::Result<Schedule> {
        Ok(match &self.stages {
            Some(stages) => Schedule::new(0.0, &parse_stages(stages).context("--stages")?),
            None => Schedule::constant(
                self.rate,
                parse_duration(&self.duration).context("--duration")?,
            ),
        })
    }

    /// Refuses what the generator cannot honour, rather than silently sending less.
    fn check(&self, schedule: &Schedule) -> anyhow::Result<()> {
        let peak = schedule.peak_rate();
        if !(peak > 0.0 && peak <= MAX_RATE) {
            bail!(
                "--rate/--stages: the peak rate must be above 0 and at most {MAX_RATE}/s, got {peak}"
            );
        }
        if schedule.duration() > Duration::from_secs(24 * 3600) {
            bail!("--duration/--stages: at most 24 h");
        }
        if !(1..=MAX_IN_FLIGHT).contains(&self.max_in_flight) {
            bail!("--max-in-flight: between 1 and {MAX_IN_FLIGHT}");
        }
        if let Some(limit) = open_files_limit()
            && self.max_in_flight as u64 + 64 > limit
        {
            bail!(
                "--max-in-flight {} needs more sockets than this process may open ({limit}; raise `ulimit -n`)",
                self.max_in_flight
            );
        }
        for (name, value) in [
            ("--fraud-ratio", self.fraud_ratio),
            ("--duplicate-ratio", self.duplicate_ratio),
        ] {
            if !(0.0..=1.0).contains(&value) {
                bail!("{name}: a share between 0 and 1, got {value}");
            }
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            bail!("--url: an http:// or https:// URL, got {}", self.url);
        }
        if !(1..=8).contains(&self.threads) {
            bail!("--threads: between 1 and 8");
        }
        Ok(())
    }

    fn gates(&self, report: &Report) -> (serde_json::Value, bool) {
        let mut gates = serde_json::Map::new();
        let mut passed = true;
        if let Some(max) = self.max_error_rate {
            let ok = report.error_rate() <= max;
            passed &= ok;
            gates.insert(
                "max_error_rate".into(),
                json!({"limit": max, "value": report.error_rate(), "passed": ok}),
            );
        }
        if let Some(max) = self.max_p99_ms {
            let p99 = report.stats.ms(0.99);
            let ok = p99 <= max;
            passed &= ok;
            gates.insert(
                "max_p99_ms".into(),
                json!({"limit": max, "value": p99, "passed": ok}),
            );
        }
        if !gates.is_empty() {
            // A run that could not keep its schedule measured less than it was asked to.
            let late_share = report.late as f64 / report.scheduled.max(1) as f64;
            let ok = late_share <= 0.01 && !report.interrupted && report.sent == report.scheduled;
            passed &= ok;
            gates.insert(
                "schedule_kept".into(),
                json!({"late_share": late_share, "passed": ok}),
            );
        }
        (serde_json::Value::Object(gates), passed)
    }

    /// Sends the schedule. This thread keeps the time: an OS sleep is precise to tens of
    /// microseconds, where the runtime's timer rounds up to the next millisecond, which would
    /// add up to a millisecond to every latency measured from the intended send time. The
    /// requests themselves run on the runtime.
    fn drive(
        &self,
        runtime: &tokio::runtime::Runtime,
        schedule: &Schedule,
    ) -> anyhow::Result<Report> {
        let _inside = runtime.enter();
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(self.max_in_flight)
            .tcp_nodelay(true)
            .timeout(Duration::from_millis(self.timeout_ms))
            .build()
            .context("cannot build the HTTP client")?;
        let endpoint = format!("{}/api/v1/transactions", self.url.trim_end_matches('/'));
        let authorization = self.api_key.as_ref().map(|key| format!("Bearer {key}"));
        let nonce = format!(
            "{:x}",
            OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
        );
        let mut traffic = Traffic::new(
            self.seed,
            self.customers,
            self.fraud_ratio,
            self.duplicate_ratio,
            nonce,
        );
        let stats = Arc::new(Mutex::new(Stats::default()));
        let window = Arc::new(Mutex::new(Stats::default()));
        let slots = Arc::new(tokio::sync::Semaphore::new(self.max_in_flight));
        let stop = Arc::new(AtomicBool::new(false));
        {
            let stop = stop.clone();
            runtime.spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    stop.store(true, Ordering::SeqCst);
                }
            });
        }
        let progress = Progress::start(self.quiet, schedule.total(), window.clone());

        let backdate = match &self.backdate {
            Some(span) => parse_duration(span).context("--backdate")?,
            None => Duration::ZERO,
        };
        let total = schedule.total().max(1) as f64;
        let start = Instant::now();
        let wall_start = OffsetDateTime::now_utc();
        let (mut sent, mut late, mut max_lag) = (0u64, 0u64, Duration::ZERO);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..schedule.total() {
            let Some(offset) = schedule.at(n) else { break };
            let due = start + offset;
            let now = Instant::now();
            if due > now {
                #[expect(
                    clippy::disallowed_methods,
                    reason = "the dispatcher is a plain thread that keeps time"
                )]
                std::thread::sleep(due - now);
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let permit = match slots.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => runtime
                    .block_on(slots.clone().acquire_owned())
                    .context("the slot pool closed")?,
            };
            let lag = Instant::now().saturating_duration_since(due);
            max_lag = max_lag.max(lag);
            late += u64::from(lag > LATE_AFTER);
            let timestamp = event_time(wall_start, offset, backdate, n as f64 / total)
                .format(&Rfc3339)
                .context("formatting a timestamp")?;
            let (body, kind) = traffic.next(&timestamp);
            let mut request = client
                .post(&endpoint)
                .header("content-type", "application/json")
                .body(body);
            if let Some(value) = &authorization {
                request = request.header("authorization", value);
            }
            let (stats, window) = (stats.clone(), window.clone());
            let expect_score = self.expect_score;
            tasks.spawn(async move {
                let outcome = send(request, expect_score).await;
                let latency = due.elapsed();
                drop(permit);
                for stats in [&stats, &window] {
                    stats
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .record(kind, latency, &outcome);
                }
            });
            sent += 1;
            // Reap finished tasks so the set does not grow with the run.
            while tasks.try_join_next().is_some() {}
        }
        runtime.block_on(async { while tasks.join_next().await.is_some() {} });
        let elapsed = start.elapsed();
        progress.finish();
        let stats = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(Report {
            settings: json!({
                "profile": self.profile,
                "url": self.url, "rate": self.rate, "duration": self.duration, "stages": self.stages,
                "max_in_flight": self.max_in_flight, "seed": self.seed, "customers": self.customers,
                "fraud_ratio": self.fraud_ratio, "duplicate_ratio": self.duplicate_ratio,
                "timeout_ms": self.timeout_ms, "threads": self.threads,
            }),
            elapsed,
            scheduled: schedule.total(),
            sent,
            late,
            max_lag,
            interrupted: stop.load(Ordering::SeqCst),
            stats,
        })
    }
}

/// Sends one request and reads what the report needs from the answer: a 200 whose body is not
/// JSON, or (when `expect_score`) has no score, is a failure.
async fn send(request: reqwest::RequestBuilder, expect_score: bool) -> Outcome {
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return Outcome::Failed("timeout"),
        Err(e) if e.is_connect() => return Outcome::Failed("connect"),
        Err(_) => return Outcome::Failed("io"),
    };
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) if e.is_timeout() => return Outcome::Failed("timeout"),
        Err(_) => return Outcome::Failed("io"),
    };
    let (mut score, mut is_fraud) = (None, None);
    if status == 200 {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => {
                score = v["scoring"].as_f64();
                is_fraud = v["is_fraud"].as_bool();
                if score.is_none() && expect_score {
                    return Outcome::Failed("body");
                }
            }
            Err(_) => return Outcome::Failed("body"),
        }
    }
    Outcome::Answer {
        status,
        score,
        is_fraud,
        replayed,
    }
}

/// The progress bar: elapsed, sent, achieved rate, errors and the last second's p99.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(quiet: bool, total: u64, window: Arc<Mutex<Stats>>) -> Self {
        if quiet {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        let shown = bar.clone();
        let ticker = tokio::spawn(async move {
            let (mut done, mut errors) = (0u64, 0u64);
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                let second = std::mem::take(&mut *window.lock().unwrap_or_else(|e| e.into_inner()));
                done += second.completed;
                errors += second.error_count();
                shown.set_position(done);
                shown.set_message(format!(
                    "· {}/s · errors {errors} · p99 {:.2} ms",
                    second.completed,
                    second.ms(0.99)
                ));
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A request's event time: when it is sent (`offset` after `start`), or, backdated over `span`,
/// `1 - progress` of the span before the start (progress: the share of the requests sent), so
/// the history runs from the oldest to the newest.
fn event_time(
    start: OffsetDateTime,
    offset: Duration,
    span: Duration,
    progress: f64,
) -> OffsetDateTime {
    if span.is_zero() {
        start + offset
    } else {
        start - span.mul_f64((1.0 - progress).clamp(0.0, 1.0))
    }
}

/// reqwest is built without a TLS crypto provider (see `antifraud_model::install_crypto_provider`
/// for why): installs ring, as the process's provider, before any client is built. Idempotent.
pub fn install_crypto_provider() {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// The soft limit on open files, from /proc (Linux); `None` elsewhere.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backdated_history_runs_from_the_span_before_the_start_to_the_start() {
        let start = time::macros::datetime!(2026-12-01 12:00 UTC);
        let day = Duration::from_secs(23 * 3600);
        let at =
            |offset, span, progress| event_time(start, Duration::from_secs(offset), span, progress);
        assert_eq!(
            at(5, Duration::ZERO, 0.5),
            start + Duration::from_secs(5),
            "not backdated"
        );
        assert_eq!(at(5, day, 0.0), start - day, "the first is the oldest");
        assert_eq!(at(5, day, 0.5), start - day / 2);
        assert_eq!(at(5, day, 1.0), start, "the last is now");
        assert!(at(0, day, 0.25) < at(0, day, 0.75), "oldest first");
    }

    #[test]
    fn a_profile_expands_in_place_and_later_flags_win() {
        let dir = std::env::temp_dir().join(format!("xtask-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let path = dir.join("p.args");
        std::fs::write(
            &path,
            "# steady traffic\n--rate 200\n--stages 10s:50,20s:50  # ramp\n\n--seed 9\n",
        )
        .expect("written");
        let args = |rest: &[&str]| -> Vec<String> {
            ["xtask", "load", "--profile", path.to_str().expect("UTF-8")]
                .iter()
                .chain(rest)
                .map(|s| (*s).to_owned())
                .collect()
        };
        let expanded = expand_profile(args(&["--rate", "300"])).expect("expands");
        assert_eq!(
            expanded,
            [
                "xtask",
                "load",
                "--rate",
                "200",
                "--stages",
                "10s:50,20s:50",
                "--seed",
                "9",
                "--rate",
                "300"
            ]
        );
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            task: Task,
        }
        #[derive(clap::Subcommand)]
        enum Task {
            Load(Load),
        }
        let Task::Load(load) = <Cli as clap::Parser>::try_parse_from(expanded)
            .expect("parses")
            .task;
        assert_eq!(
            (load.rate, load.seed),
            (300.0, 9),
            "the command line wins over the profile"
        );
        assert_eq!(load.stages.as_deref(), Some("10s:50,20s:50"));
        assert!(expand_profile(args(&[])).is_ok());
        let missing = vec![
            "xtask".to_owned(),
            "load".to_owned(),
            "--profile".to_owned(),
            "/nonexistent".to_owned(),
        ];
        assert!(expand_profile(missing).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused() {
        let base = Load {
            max_in_flight: 16,
            ..Load::constant("http://127.0.0.1:1", 100.0, "1s")
        };
        let check = |load: Load| load.schedule().and_then(|s| load.check(&s));
        assert!(check(base.clone()).is_ok());
        for (bad, named) in [
            (
                Load {
                    rate: MAX_RATE * 2.0,
                    ..base.clone()
                },
                "peak rate",
            ),
            (
                Load {
                    rate: 0.0,
                    ..base.clone()
                },
                "peak rate",
            ),
            (
                Load {
                    max_in_flight: 0,
                    ..base.clone()
                },
                "--max-in-flight",
            ),
            (
                Load {
                    max_in_flight: MAX_IN_FLIGHT + 1,
                    ..base.clone()
                },
                "--max-in-flight",
            ),
            (
                Load {
                    fraud_ratio: 1.5,
                    ..base.clone()
                },
                "--fraud-ratio",
            ),
            (
                Load {
                    url: "127.0.0.1:8000".into(),
                    ..base.clone()
                },
                "--url",
            ),
            (
                Load {
                    stages: Some("10s:0".into()),
                    ..base.clone()
                },
                "peak rate",
            ),
            (
                Load {
                    duration: "forever".into(),
                    ..base.clone()
                },
                "--duration",
            ),
        ] {
            let message = format!("{:#}", check(bad).expect_err(named));
            assert!(message.contains(named), "{message}");
        }
    }

    /// A scoring API stand-in on a free loopback port, on its own thread and runtime: answers
    /// 200 with a score (or, when `scores` is false, with JSON that has none, as the benchmark's
    /// echo does), every tenth request 500, and holds every request that arrives during the
    /// first `stall` after its first request.
    struct FakeService {
        url: String,
        handle: actix_web::dev::ServerHandle,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl FakeService {
        fn start(stall: Duration) -> Self {
            Self::start_with(stall, true)
        }

        fn start_with(stall: Duration, scores: bool) -> Self {
            use actix_web::{App, HttpResponse, HttpServer, web};
            use std::sync::atomic::AtomicU64;
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            let url = format!("http://{}", listener.local_addr().expect("bound"));
            let (sender, receiver) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let count = Arc::new(AtomicU64::new(0));
                    let first = Arc::new(Mutex::new(None::<Instant>));
                    let server = HttpServer::new(move || {
                        let (count, first) = (count.clone(), first.clone());
                        App::new().route(
                            "/api/v1/transactions",
                            web::post().to(move |_body: web::Bytes| {
                                let (count, first) = (count.clone(), first.clone());
                                async move {
                                    let n = count.fetch_add(1, Ordering::SeqCst);
                                    let started = *first
                                        .lock()
                                        .expect("lock")
                                        .get_or_insert_with(Instant::now);
                                    let until = started + stall;
                                    if Instant::now() < until {
                                        actix_web::rt::time::sleep_until(until.into()).await;
                                    }
                                    if n % 10 == 9 {
                                        HttpResponse::InternalServerError().finish()
                                    } else if scores {
                                        HttpResponse::Ok()
                                            .json(json!({"scoring": 0.25, "is_fraud": false}))
                                    } else {
                                        HttpResponse::Ok().json(json!({"amount": 1.0}))
                                    }
                                }
                            }),
                        )
                    })
                    .workers(1)
                    .listen(listener)
                    .expect("listens")
                    .run();
                    sender.send(server.handle()).expect("the test waits");
                    let _ = server.await;
                });
            });
            FakeService {
                url,
                handle: receiver.recv().expect("the server starts"),
                thread: Some(thread),
            }
        }
    }

    impl Drop for FakeService {
        fn drop(&mut self) {
            let handle = self.handle.clone();
            std::thread::spawn(move || actix_web::rt::System::new().block_on(handle.stop(false)))
                .join()
                .expect("stopped");
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    fn against(service: &FakeService) -> Load {
        Load {
            max_in_flight: 64,
            customers: 1000,
            fraud_ratio: 0.05,
            duplicate_ratio: 0.05,
            ..Load::constant(&service.url, 400.0, "1s")
        }
    }

    #[test]
    fn a_run_sends_its_schedule_and_counts_every_answer() {
        let service = FakeService::start(Duration::ZERO);
        let report = against(&service).execute().expect("runs");
        assert_eq!(
            (report.scheduled, report.sent, report.stats.completed),
            (400, 400, 400)
        );
        let s = &report.stats;
        assert_eq!(
            s.statuses.get(&500),
            Some(&40),
            "every tenth answer is a 500"
        );
        assert_eq!(s.statuses.get(&200), Some(&360));
        assert_eq!(s.errors.get("http_500"), Some(&40));
        assert_eq!(s.scored, 360);
        assert_eq!(s.score_buckets[2], 360, "0.25 falls in the third tenth");
        assert!((report.error_rate() - 0.1).abs() < 1e-9);
        assert!(
            report.elapsed >= Duration::from_millis(990),
            "the schedule spans the duration"
        );
        // Gates turn the report into a verdict.
        let strict = Load {
            max_error_rate: Some(0.05),
            ..against(&service)
        };
        let (gates, passed) = strict.gates(&report);
        assert!(!passed, "{gates}");
        let lenient = Load {
            max_error_rate: Some(0.2),
            max_p99_ms: Some(10_000.0),
            ..against(&service)
        };
        // `schedule_kept` depends on how busy this machine is; the two limits do not.
        let (gates, _) = lenient.gates(&report);
        assert_eq!(gates["max_error_rate"]["passed"], true, "{gates}");
        assert_eq!(gates["max_p99_ms"]["passed"], true, "{gates}");
    }

    #[test]
    fn an_answer_without_a_score_fails_unless_the_load_expects_none() {
        let service = FakeService::start_with(Duration::ZERO, false);
        let scored = against(&service).execute().expect("runs");
        assert_eq!(scored.stats.errors.get("body"), Some(&360));
        let echoed = against(&service).without_scores().execute().expect("runs");
        assert_eq!(echoed.stats.errors.get("body"), None);
        assert_eq!(echoed.stats.error_count(), 40, "the 500s only");
    }

    #[test]
    fn a_stalled_server_shows_its_queueing_in_the_latency() {
        // The server holds everything for 400 ms; with 8 in flight, the generator must wait for
        // slots. Latency counted from the intended send time shows the stall in most of the
        // first 400 ms of traffic; counted from the actual send, it would hide it.
        let service = FakeService::start(Duration::from_millis(400));
        let report = Load {
            max_in_flight: 8,
            ..against(&service)
        }
        .execute()
        .expect("runs");
        assert_eq!(report.stats.completed, 400);
        assert!(
            report.late > 100,
            "requests waited for a slot: {}",
            report.late
        );
        assert!(
            report.max_lag >= Duration::from_millis(300),
            "{:?}",
            report.max_lag
        );
        // Requests due in the first 300 ms (30 % of the run) waited over 100 ms.
        assert!(
            report.stats.ms(0.8) >= 100.0,
            "p80 {} ms",
            report.stats.ms(0.8)
        );
        let json = report.to_json(&json!({}), true);
        assert_eq!(json["requests"]["sent_late"], report.late);
    }
}
