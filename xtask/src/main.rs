//! `cargo xtask`: the project's one task runner. Each task is a small struct with a `run` method.
//!
//! - `cargo xtask lint`: rustfmt check, clippy on every target with warnings denied, the compose
//!   file through a real parser, and cargo deny (deny.toml).
//! - `cargo xtask test`: the whole test suite (nextest when installed, plus doc tests).
//! - `cargo xtask load`: open-loop traffic against a running service, with an honest report.
//! - `cargo xtask bench`: the echo, the Python design and the service, side by side.
//! - `cargo xtask bench-store`: the Redis store's record-and-aggregate benchmark.
//! - `cargo xtask bench-shards`: the service over one Redis and over a 3-master cluster.
//! - `cargo xtask bench-model`: feature extraction and in-process models, per row.
//! - `cargo xtask bench-rules`: the example rule file (20 rules), per transaction.
//! - `cargo xtask train`: trains the shipped model and writes the parity fixtures (`ml/`).
//! - `cargo xtask observability-check`: promtool checks, then every dashboard query and alert
//!   rule against a live Prometheus scraping a live service.
//! - `cargo xtask compose up|down|logs|ps`: the compose stack in deploy/.
//! - `cargo xtask fuzz [--seconds N]`: the request-body fuzz target under libFuzzer.
//! - `cargo xtask schemathesis`: schemathesis against the service's own OpenAPI document.
//! - `cargo xtask chaos [--duration 30s] [--redis sentinel|cluster]`: fault injection against two
//!   instances on one Redis (or Sentinel, or a cluster, with failovers),
//!   checked from the journal of every answer and from what Redis holds.

// This binary owns its terminal: it reports to the developer directly.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

mod bench;
mod chaos;
mod fuzz;
mod observability;
mod process;
mod profile;
mod python;
mod schemathesis;
mod shards;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "antifraud's development tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// rustfmt check, clippy on all targets with warnings denied, compose config, cargo deny.
    Lint(Lint),
    /// The whole test suite: unit, conformance, API and doc tests.
    Test(Test),
    /// Open-loop traffic against a running service: constant rate or ramp stages, latency from
    /// the intended send time, a report and optional pass/fail gates.
    Load(Box<antifraud_loadgen::Load>),
    /// Six systems side by side (HTTP + JSON echo, the Python design, the service with the
    /// embedded store, with Redis, with Redis and a replica without and with `WAIT 1`): max
    /// rates, CPU per request, ratios; docs/benchmarks.md.
    Bench(bench::Bench),
    /// Benchmark of the Redis store's record-and-aggregate against a local redis-server.
    BenchStore(BenchStore),
    /// The service over one Redis and over a 3-master cluster: CPU per transaction per shard.
    BenchShards(shards::BenchShards),
    /// Benchmark of feature extraction and every in-process model, per row (mean and tail).
    BenchModel(BenchModel),
    /// Benchmark of the example rule file (20 rules) per transaction (mean and tail).
    BenchRules(BenchRules),
    /// Trains the shipped model and writes the parity fixtures (ml/train.py in a pinned venv).
    Train(Train),
    /// promtool checks, then every dashboard query and alert rule against a live Prometheus.
    ObservabilityCheck(observability::ObservabilityCheck),
    /// The compose stack in deploy/: up, down, logs or ps (needs a Docker engine).
    Compose(Compose),
    /// The request-body fuzz target under libFuzzer for a bounded time (installs cargo-fuzz).
    Fuzz(fuzz::Fuzz),
    /// schemathesis against the running service's own OpenAPI document.
    Schemathesis(schemathesis::Schemathesis),
    /// Fault injection: two release instances on one redis-server (or Sentinel, or a cluster),
    /// traffic with retries, Redis paused and killed (or failed over), instances killed, clocks
    /// apart; checks every answer and Redis.
    Chaos(chaos::Chaos),
}

fn main() -> ExitCode {
    let args = match antifraud_loadgen::expand_profile(std::env::args().collect()) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match Cli::parse_from(args).task {
        Task::Lint(lint) => lint.run(),
        Task::Test(test) => test.run(),
        Task::Load(load) => load.run(),
        Task::Bench(bench) => bench.run(),
        Task::BenchStore(bench) => bench.run(),
        Task::BenchShards(bench) => bench.run(),
        Task::BenchModel(bench) => bench.run(),
        Task::BenchRules(bench) => bench.run(),
        Task::Train(train) => train.run(),
        Task::ObservabilityCheck(check) => check.run(),
        Task::Compose(compose) => compose.run(),
        Task::Fuzz(fuzz) => fuzz.run(),
        Task::Schemathesis(schemathesis) => schemathesis.run(),
        Task::Chaos(chaos) => chaos.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args)]
struct Lint {}

impl Lint {
    fn run(self) -> anyhow::Result<()> {
        cargo(&["fmt", "--all", "--", "--check"])?;
        // The compose file is parsed by a real Compose implementation; no engine is needed.
        compose_command(&["config", "--quiet"])?;
        // Warnings are denied here, not in RUSTFLAGS, so toggling lint does not rebuild everything.
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])?;
        // Supply chain (deny.toml): licences, banned and duplicate crates, registries.
        ensure_cargo_tool("deny", "cargo-deny", CARGO_DENY_VERSION)?;
        cargo(&["deny", "--locked", "check", "bans", "licenses", "sources"])?;
        advisories()?;
        println!("lint: clean");
        Ok(())
    }
}

/// The cargo-deny that `cargo xtask lint` installs when none is present.
const CARGO_DENY_VERSION: &str = "0.20.2";

/// RustSec advisories, when the database can be fetched (it lives on GitHub, which some
/// machines, this project's development machine among them, cannot reach): a vulnerable
/// dependency fails the lint; an unreachable database is reported and skipped.
fn advisories() -> anyhow::Result<()> {
    println!("$ cargo deny --locked check advisories");
    let output = Command::new(cargo_path())
        .args(["deny", "--locked", "check", "advisories"])
        .current_dir(workspace_root())
        .output()
        .context("cannot run cargo deny")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Ok(());
    }
    if stderr.contains("failed to fetch advisory database") {
        println!("lint: advisories skipped: the RustSec database cannot be fetched from here");
        return Ok(());
    }
    eprintln!("{stderr}");
    bail!("cargo deny check advisories failed ({})", output.status)
}

/// Makes sure `cargo <subcommand>` exists, installing `package` at `version` with
/// `cargo install --locked` when it does not (a few minutes, once per machine).
pub(crate) fn ensure_cargo_tool(
    subcommand: &str,
    package: &str,
    version: &str,
) -> anyhow::Result<()> {
    if has_cargo_tool(subcommand) {
        return Ok(());
    }
    println!("xtask: installing {package} {version} (once per machine)");
    cargo(&["install", "--locked", package, "--version", version])
}

#[derive(clap::Args)]
struct Test {
    /// Arguments passed on to the test runner (a filter, for example).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Test {
    fn run(self) -> anyhow::Result<()> {
        ensure_redis()?;
        let extra: Vec<&str> = self.args.iter().map(String::as_str).collect();
        // nextest does not run doc tests; they are part of the suite. They and the API suite's
        // pass against Redis run first, so that the summary of the whole suite is printed last.
        if extra.is_empty() {
            cargo(&["test", "--workspace", "--locked", "--doc"])?;
            println!("test: the API suite against Redis (ANTIFRAUD_TEST_STORE=redis)");
            run_tests(
                &["-p", "antifraud-app", "--test", "api"],
                Some(("ANTIFRAUD_TEST_STORE", "redis")),
            )?;
        }
        // The remote-model test serves a model from a real MLServer (see crates/model/tests).
        let mlserver = ensure_mlserver()?;
        let mlserver = mlserver.to_str().context("a UTF-8 path")?;
        let mut args = vec!["--workspace"];
        args.extend(&extra);
        run_tests(&args, Some(("ANTIFRAUD_TEST_MLSERVER", mlserver)))
    }
}

#[derive(clap::Args)]
struct Compose {
    /// What to do with the stack.
    #[arg(value_enum)]
    action: ComposeAction,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ComposeAction {
    /// Build and start everything in the background.
    Up,
    /// Stop and remove the containers (volumes are kept).
    Down,
    /// Follow the logs.
    Logs,
    /// List the containers.
    Ps,
}

impl Compose {
    fn run(self) -> anyhow::Result<()> {
        let engine = Command::new("docker")
            .arg("info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !engine {
            bail!(
                "no Docker engine is running here (`docker info` failed). Start Docker, or run \
                 the service without it: `cargo run --release -p antifraud-app`"
            );
        }
        let args: &[&str] = match self.action {
            ComposeAction::Up => &["up", "--build", "--detach"],
            ComposeAction::Down => &["down"],
            ComposeAction::Logs => &["logs", "--follow"],
            ComposeAction::Ps => &["ps"],
        };
        compose_command(args)
    }
}

/// `docker compose` (the plugin) or Debian's `docker-compose`, on deploy/docker-compose.yaml
/// with the project name antifraud.
fn compose_command(args: &[&str]) -> anyhow::Result<()> {
    let plugin = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !plugin {
        ensure_debian_package("docker-compose", &["docker-compose"])?;
    }
    let file = workspace_root().join("deploy/docker-compose.yaml");
    let mut command = if plugin {
        let mut command = Command::new("docker");
        command.arg("compose");
        command
    } else {
        Command::new("docker-compose")
    };
    command
        .args(["--project-name", "antifraud", "--file"])
        .arg(&file)
        .args(args);
    println!("$ {command:?}");
    let status = command.status().context("cannot run docker compose")?;
    if !status.success() {
        bail!("docker compose {} failed ({status})", args.join(" "));
    }
    Ok(())
}

#[derive(clap::Args)]
struct BenchStore {}

impl BenchStore {
    fn run(self) -> anyhow::Result<()> {
        ensure_redis()?;
        cargo(&[
            "bench",
            "--locked",
            "-p",
            "antifraud-store-redis",
            "--bench",
            "record",
        ])
    }
}

#[derive(clap::Args)]
struct BenchModel {}

impl BenchModel {
    fn run(self) -> anyhow::Result<()> {
        cargo(&[
            "bench",
            "--locked",
            "-p",
            "antifraud-model",
            "--bench",
            "inference",
        ])
    }
}

#[derive(clap::Args)]
struct BenchRules {}

impl BenchRules {
    fn run(self) -> anyhow::Result<()> {
        cargo(&[
            "bench",
            "--locked",
            "-p",
            "antifraud-rules",
            "--bench",
            "evaluate",
        ])
    }
}

#[derive(clap::Args)]
struct Train {
    /// Arguments passed on to ml/train.py (`--seed`, `--customers`, `--days`, `--version`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

impl Train {
    fn run(self) -> anyhow::Result<()> {
        let ml = workspace_root().join("ml");
        let bin = python::venv(&ml.join(".venv"), &ml.join("requirements.txt"))?;
        let status = Command::new(bin.join("python"))
            .arg(ml.join("train.py"))
            .args(&self.args)
            .current_dir(&ml)
            .status()
            .context("cannot run ml/train.py")?;
        if !status.success() {
            bail!("ml/train.py failed ({status})");
        }
        println!("train: done; `cargo xtask test -p antifraud-model` checks the parity fixtures");
        Ok(())
    }
}

/// The venv with Seldon MLServer that the remote-model test serves a model from.
fn ensure_mlserver() -> anyhow::Result<PathBuf> {
    let requirements = workspace_root().join("crates/model/tests/mlserver/requirements.txt");
    let bin = python::venv(
        &workspace_root().join("target/mlserver-venv"),
        &requirements,
    )?;
    Ok(bin.join("mlserver"))
}

/// Runs tests with nextest when it is installed, else with `cargo test`.
fn run_tests(args: &[&str], env: Option<(&str, &str)>) -> anyhow::Result<()> {
    let mut full = if has_cargo_tool("nextest") {
        vec!["nextest", "run", "--locked", "--no-fail-fast"]
    } else {
        vec!["test", "--locked", "--no-fail-fast"]
    };
    full.extend(args);
    cargo_with(&full, env)
}

/// Makes sure a Debian package's programs are installed: installs the package when we run as
/// root on Debian, or says exactly what to run.
pub(crate) fn ensure_debian_package(package: &str, programs: &[&str]) -> anyhow::Result<()> {
    let present = |program: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if programs.iter().all(|program| present(program)) {
        return Ok(());
    }
    let debian = Path::new("/etc/debian_version").exists();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0");
    if !(debian && root) {
        bail!(
            "{} needed; install them with `sudo apt-get install {package}`",
            programs.join(" and ")
        );
    }
    println!("xtask: installing Debian's {package} (apt does not start it as a service here)");
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", package]] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("cannot run apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
    }
    if !programs.iter().all(|program| present(program)) {
        bail!(
            "{package} was installed but {} still missing",
            programs.join(" or ")
        );
    }
    Ok(())
}

/// The Redis tests start their own `redis-server` processes.
pub(crate) fn ensure_redis() -> anyhow::Result<()> {
    ensure_debian_package("redis-server", &["redis-server", "redis-cli"])
}

/// Whether `cargo <subcommand>` is installed.
fn has_cargo_tool(subcommand: &str) -> bool {
    Command::new(cargo_path())
        .args([subcommand, "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs cargo at the workspace root, failing when it fails.
pub(crate) fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with(args, None)
}

/// Builds the release binaries of the service (`antifraud`, `antifraud-echo`) that the load,
/// bench and chaos tasks run.
pub(crate) fn build_release_service() -> anyhow::Result<()> {
    cargo(&[
        "build",
        "--release",
        "--locked",
        "-p",
        "antifraud-app",
        "--bins",
    ])
}

/// [`cargo`] with one more environment variable.
fn cargo_with(args: &[&str], env: Option<(&str, &str)>) -> anyhow::Result<()> {
    let shown = env.map(|(k, v)| format!("{k}={v} ")).unwrap_or_default();
    println!("$ {shown}cargo {}", args.join(" "));
    let mut command = Command::new(cargo_path());
    if let Some((key, value)) = env {
        command.env(key, value);
    }
    let status = command
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The cargo that runs us, so the pinned toolchain is used throughout.
pub(crate) fn cargo_path() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from)
}

pub(crate) fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
}
