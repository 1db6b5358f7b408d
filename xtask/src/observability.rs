//! `cargo xtask observability-check`: proves the Prometheus configuration, the alert rules and
//! every Grafana panel against a live service.
//!
//! It checks the files with promtool, then starts Redis, the Redis exporter, the service (on
//! Redis) and Prometheus, each on a free loopback port, drives varied traffic for a few seconds,
//! and evaluates every PromQL expression of the dashboards through Prometheus's HTTP API: each
//! must parse and return data. Every alert rule must be loaded and evaluate healthy. Everything
//! it starts is stopped by pid.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::process::{Started, free_port, pause, wait_for_port};
use crate::{cargo, ensure_debian_package, workspace_root};

/// How long traffic runs before the queries: long enough for several 1 s scrapes and for
/// `rate(...[1m])` to have two points.
const TRAFFIC_FOR: Duration = Duration::from_secs(12);

#[derive(clap::Args)]
pub(crate) struct ObservabilityCheck {}

impl ObservabilityCheck {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        ensure_debian_package("prometheus", &["prometheus", "promtool"])?;
        ensure_debian_package("prometheus-redis-exporter", &["prometheus-redis-exporter"])?;
        ensure_debian_package("redis-server", &["redis-server", "redis-cli"])?;
        let deploy = workspace_root().join("deploy/prometheus");
        promtool(&["check", "config", "prometheus.yml"], &deploy)?;
        promtool(&["check", "rules", "alerts.yml"], &deploy)?;
        promtool(&["test", "rules", "alerts.test.yml"], &deploy)?;

        cargo(&["build", "--locked", "-p", "antifraud-app"])?;
        let dir =
            std::env::temp_dir().join(format!("antifraud-observability-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let result = live_check(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
}

fn live_check(dir: &Path) -> anyhow::Result<()> {
    let redis_port = free_port()?;
    let _redis = Started::spawn(
        "redis-server",
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(dir),
    )?;
    wait_for_port(redis_port)?;
    let exporter_port = free_port()?;
    let _exporter = Started::spawn(
        "prometheus-redis-exporter",
        Command::new("prometheus-redis-exporter").args([
            &format!("-redis.addr=redis://127.0.0.1:{redis_port}"),
            &format!("-web.listen-address=127.0.0.1:{exporter_port}"),
        ]),
    )?;
    let service_port = free_port()?;
    let binary = workspace_root().join("target/debug/antifraud");
    let _service = Started::spawn(
        "antifraud",
        Command::new(&binary).args([
            "--listen",
            &format!("127.0.0.1:{service_port}"),
            "--redis-url",
            &format!("redis://127.0.0.1:{redis_port}"),
            // The example rules: the rules row of the dashboard has series to show.
            "--rules",
            &workspace_root()
                .join("deploy/rules/rules.toml")
                .display()
                .to_string(),
        ]),
    )?;
    wait_for_port(service_port)?;
    wait_for_port(exporter_port)?;

    let prometheus_port = free_port()?;
    let alerts = workspace_root().join("deploy/prometheus/alerts.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{alerts:?}]\n\
             scrape_configs:\n\
             \x20 - {{job_name: antifraud, static_configs: [{{targets: ['127.0.0.1:{service_port}']}}]}}\n\
             \x20 - {{job_name: redis, static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]}}\n"
        ),
    )?;
    let _prometheus = Started::spawn(
        "prometheus",
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}")),
    )?;
    wait_for_port(prometheus_port)?;

    let http = Http::new()?;
    println!("observability-check: driving traffic for {TRAFFIC_FOR:?}");
    drive_traffic(&http, service_port, TRAFFIC_FOR)?;

    let mut failures = Vec::new();
    let dashboards = workspace_root().join("deploy/grafana/dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dashboards)? {
        let path = entry?.path();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        for (title, expr) in dashboard_queries(&dashboard) {
            checked += 1;
            match query(&http, prometheus_port, &expr) {
                Ok(0) => failures.push(format!("{title}: `{expr}` returned no data")),
                Ok(_) => {}
                Err(error) => failures.push(format!("{title}: `{expr}`: {error:#}")),
            }
        }
    }
    let rules = http.get_json(prometheus_port, "/api/v1/rules", &[])?;
    let mut alerts = 0;
    for group in rules["data"]["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            alerts += 1;
            if rule["health"] != "ok" {
                failures.push(format!(
                    "alert {}: health {} {}",
                    rule["name"], rule["health"], rule["lastError"]
                ));
            }
        }
    }
    ensure!(alerts > 0, "Prometheus loaded no alert rules");
    println!("observability-check: {checked} dashboard queries, {alerts} alert rules evaluated");
    if !failures.is_empty() {
        bail!("{} failed:\n  {}", failures.len(), failures.join("\n  "));
    }
    println!("observability-check: every query returned data, every rule is healthy");
    Ok(())
}

/// Every (panel title, PromQL) of a Grafana dashboard, rows included.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("untitled").to_owned();
                found.push((title, expr.to_owned()));
            }
        }
    }
    found
}

/// Evaluates an instant query and returns how many series it gave.
fn query(http: &Http, port: u16, expr: &str) -> anyhow::Result<usize> {
    let answer = http.get_json(port, "/api/v1/query", &[("query", expr)])?;
    if answer["status"] != "success" {
        bail!("{}", answer["error"]);
    }
    Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
}

/// A blocking face on reqwest for this task's few sequential requests to loopback.
struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> anyhow::Result<Http> {
        antifraud_loadgen::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start a runtime for the HTTP client")?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Http { runtime, client })
    }

    /// POSTs a JSON body and returns the status.
    fn post(&self, port: u16, path: &str, body: &str) -> anyhow::Result<u16> {
        // Inside the runtime: reqwest starts the request's timer when `send` is called.
        let status = self.runtime.block_on(async {
            self.client
                .post(format!("http://127.0.0.1:{port}{path}"))
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send()
                .await
                .map(|response| response.status().as_u16())
        })?;
        Ok(status)
    }

    /// GETs a JSON document, with these query parameters.
    fn get_json(&self, port: u16, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let url =
            reqwest::Url::parse_with_params(&format!("http://127.0.0.1:{port}{path}"), query)?;
        let body = self
            .runtime
            .block_on(async { self.client.get(url).send().await?.text().await })?;
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
    }
}

/// Sends varied scoring traffic: ordinary and risky transactions, retries, conflicting reuses
/// of ids, invalid and malformed bodies.
fn drive_traffic(http: &Http, port: u16, duration: Duration) -> anyhow::Result<()> {
    const PATH: &str = "/api/v1/transactions";
    let started = Instant::now();
    let run = OffsetDateTime::now_utc().unix_timestamp();
    let mut i = 0u64;
    while started.elapsed() < duration {
        let customer = format!("obs-{run}-{}", i % 20);
        let id = format!("tx-{i}");
        let risky = i.is_multiple_of(5);
        let body = transaction(&customer, &id, if risky { 4_000.0 } else { 25.0 }, risky)?;
        let status = http.post(port, PATH, &body)?;
        ensure!(status == 200, "scoring answered {status}");
        if i.is_multiple_of(4) {
            http.post(port, PATH, &body)?; // a retry: replayed
            let conflict = transaction(&customer, &id, 1.0, risky)?;
            http.post(port, PATH, &conflict)?; // 409
            http.post(port, PATH, "{\"amount\": -1}")?; // 422
            http.post(port, PATH, "{")?; // 400
        }
        i += 1;
        pause(Duration::from_millis(20));
    }
    Ok(())
}

fn transaction(customer: &str, id: &str, amount: f64, risky: bool) -> anyhow::Result<String> {
    let timestamp = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .context("zero nanoseconds are valid")?
        .format(&Rfc3339)?;
    let mut body = serde_json::json!({
        "customer_id": customer, "transaction_id": id, "amount": amount, "currency": "EUR",
        "type": 1, "merchant_id": "m-1", "card_bin": "411111", "ip_address": "192.0.2.1",
        "device_id": "d-1", "location": "Berlin, DE", "channel": "online", "timestamp": timestamp,
    });
    if risky {
        for (field, value) in [
            ("merchant_risk_score", Value::from(0.99)),
            ("card_risk_score", Value::from(0.99)),
            ("is_device_alert", Value::from(true)),
            ("is_high_value", Value::from(true)),
        ] {
            body[field] = value;
        }
    }
    Ok(body.to_string())
}

fn promtool(args: &[&str], dir: &Path) -> anyhow::Result<()> {
    println!("$ promtool {}", args.join(" "));
    let status = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .status()?;
    ensure!(status.success(), "promtool {} failed", args.join(" "));
    Ok(())
}
