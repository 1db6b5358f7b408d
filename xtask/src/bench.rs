//! `cargo xtask bench`: how fast the service is, end to end, on this machine.
//!
//! Builds the release service, starts what it needs itself (a `redis-server` on a free port; the
//! service with the embedded store, then with Redis), drives each with the load generator at
//! fixed rates and at increasing rates until one fails (p99 over 10 ms, any error, or the
//! generator unable to keep its schedule), and records peak RSS. Writes the table into
//! docs/benchmarks.md between the `bench:begin`/`bench:end` markers. Everything runs on loopback
//! and is stopped by pid.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use antifraud_testkit::RedisServer;
use anyhow::Context;

use crate::process::{Started, free_port, pause, wait_for_port};
use crate::{cargo, ensure_redis, workspace_root};
use antifraud_loadgen::Load;

/// The latency objective a sustained rate must meet.
const P99_OBJECTIVE_MS: f64 = 10.0;
/// Rates tried when searching for the highest sustained one.
const SEARCH: [f64; 9] = [
    2_000.0, 4_000.0, 6_000.0, 8_000.0, 10_000.0, 12_000.0, 14_000.0, 16_000.0, 20_000.0,
];
const BEGIN: &str = "<!-- bench:begin (written by cargo xtask bench) -->";
const END: &str = "<!-- bench:end -->";

#[derive(clap::Args)]
pub(crate) struct Bench {
    /// Length of each measured step.
    #[arg(long, default_value = "10s")]
    step: String,
    /// Print the table without writing docs/benchmarks.md.
    #[arg(long)]
    no_write: bool,
}

/// One measured step.
struct Step {
    rate: f64,
    throughput: f64,
    p50: f64,
    p99: f64,
    p999: f64,
    errors: u64,
    late_share: f64,
    /// The service's resident memory after the step.
    rss_mib: f64,
    /// Position in the run.
    order: usize,
}

impl Step {
    fn sustained(&self) -> bool {
        self.errors == 0 && self.p99 <= P99_OBJECTIVE_MS && self.late_share <= 0.01
    }
}

/// Results for one store.
struct StoreResult {
    store: &'static str,
    fixed: Vec<Step>,
    search: Vec<Step>,
    peak_rss_mib: f64,
}

impl Bench {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        ensure_redis()?;
        cargo(&["build", "--release", "--locked", "-p", "antifraud-app"])?;
        let binary = workspace_root().join("target/release/antifraud");
        let mut results = Vec::new();
        for store in ["embedded", "redis"] {
            let redis = (store == "redis").then(RedisServer::start);
            let port = free_port()?;
            let mut command = Command::new(&binary);
            command.args(["--listen", &format!("127.0.0.1:{port}")]);
            if let Some(redis) = &redis {
                command.args(["--redis-url", &redis.url()]);
            }
            let service = Started::spawn("antifraud", &mut command)?;
            wait_for_port(port)?;
            let url = format!("http://127.0.0.1:{port}");
            println!("bench: {store} store, service at {url}");
            let result = self.measure(store, &url, service.pid());
            drop(service);
            results.push(result?);
        }
        let table = render(&results, &self.step);
        println!("\n{table}");
        if !self.no_write {
            write_section(&workspace_root().join("docs/benchmarks.md"), &table)?;
            println!("bench: docs/benchmarks.md updated");
        }
        Ok(())
    }

    fn measure(&self, store: &'static str, url: &str, pid: u32) -> anyhow::Result<StoreResult> {
        let rss = |field: &str| proc_status_kib(pid, field).unwrap_or(0) as f64 / 1024.0;
        let order = std::cell::Cell::new(0);
        let run = |rate: f64, duration: &str| -> anyhow::Result<Step> {
            order.set(order.get() + 1);
            let report = Load::constant(url, rate, duration).execute()?;
            let step = Step {
                rate,
                throughput: report.throughput(),
                p50: report.stats.ms(0.5),
                p99: report.stats.ms(0.99),
                p999: report.stats.ms(0.999),
                errors: report.stats.error_count(),
                late_share: report.late as f64 / report.scheduled.max(1) as f64,
                rss_mib: rss("VmRSS:"),
                order: order.get(),
            };
            println!(
                "bench: {store} {rate:>6}/s → {:>7.0}/s p50 {:.2} p99 {:.2} p99.9 {:.2} ms, {} errors, {:.1} % late",
                step.throughput,
                step.p50,
                step.p99,
                step.p999,
                step.errors,
                step.late_share * 100.0
            );
            Ok(step)
        };
        // Order matters: an overloaded step leaves a backlog (in Redis, commands the service
        // gave up on still run) that would spoil the next one. Warm up, measure 1,000/s, climb
        // until a step fails, then measure 5,000/s last; pause between steps.
        let rest = || pause(Duration::from_secs(3));
        run(500.0, "3s")?;
        rest();
        let mut fixed = vec![run(1_000.0, &self.step)?];
        let mut search = Vec::new();
        for rate in SEARCH {
            rest();
            let step = run(rate, &self.step)?;
            let sustained = step.sustained();
            search.push(step);
            if !sustained {
                break;
            }
        }
        rest();
        fixed.push(run(5_000.0, &self.step)?);
        Ok(StoreResult {
            store,
            fixed,
            search,
            peak_rss_mib: rss("VmHWM:"),
        })
    }
}

fn render(results: &[StoreResult], step: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let date = time::OffsetDateTime::now_utc().date();
    let mut out = format!(
        "Machine: {cores} cores ({cpu}); the service, `redis-server` and the load generator share them.\n\
         Run on {date} with `cargo xtask bench` ({step} per step; release service, shipped model,\n\
         `cargo xtask load` traffic over 1,000,000 customers, the busiest 1 % sending 20 %, 2 % planted\n\
         attacks, 1 % replays).\n\n\
         | store | max sustained rate (p99 ≤ {P99_OBJECTIVE_MS} ms, no errors) | at 1,000/s p50 / p99 / p99.9 ms | at 5,000/s p50 / p99 / p99.9 ms | RSS at the max sustained rate |\n\
         |---|---|---|---|---|\n"
    );
    for r in results {
        let steps = || r.fixed.iter().chain(&r.search);
        let best = steps()
            .filter(|s| s.sustained())
            .max_by(|a, b| a.rate.total_cmp(&b.rate));
        let fixed = |i: usize| {
            r.fixed.get(i).map_or("n/a".to_owned(), |s| {
                let note = if s.sustained() { "" } else { " (missed)" };
                format!("{:.2} / {:.2} / {:.2}{note}", s.p50, s.p99, s.p999)
            })
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} MiB; peak {:.0} MiB |\n",
            r.store,
            best.map_or("below 1,000/s".to_owned(), |b| format!("{:.0}/s", b.rate)),
            fixed(0),
            fixed(1),
            best.map_or("n/a".to_owned(), |b| format!("{:.0}", b.rss_mib)),
            r.peak_rss_mib
        ));
    }
    out.push_str(
        "\nEvery step, in the order run (RSS after the step):\n\n| store | offered /s | achieved /s | p50 ms | p99 ms | p99.9 ms | errors | sent late | RSS MiB |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let mut steps: Vec<&Step> = r.fixed.iter().chain(&r.search).collect();
        steps.sort_by_key(|s| s.order);
        for s in steps {
            out.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.1} % | {:.0} |\n",
                r.store,
                s.rate,
                s.throughput,
                s.p50,
                s.p99,
                s.p999,
                s.errors,
                s.late_share * 100.0,
                s.rss_mib
            ));
        }
    }
    out
}

/// Replaces the marked section of `path` with `table` (appends the section when absent).
fn write_section(path: &Path, table: &str) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let section = format!("{BEGIN}\n{table}{END}");
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{section}{}", &text[..a], &text[b + END.len()..]),
        _ => format!("{}\n## Service: end to end\n\n{section}\n", text.trim_end()),
    };
    std::fs::write(path, updated).with_context(|| format!("cannot write {}", path.display()))
}

/// A memory figure of a process (`VmRSS:`, `VmHWM:`), from /proc.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
