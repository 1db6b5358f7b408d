//! `cargo xtask observability-check`: proves the Prometheus configuration, the alert rules and
//! every Grafana panel against a live service.
//!
//! It checks the files with promtool, then starts Redis, the Redis exporter, the service (on
//! Redis) and Prometheus, each on a free loopback port, drives varied traffic for a few seconds,
//! and evaluates every PromQL expression of the dashboards through Prometheus's HTTP API: each
//! must parse and return data. Every alert rule must be loaded and evaluate healthy. Everything
//! it starts is stopped by pid.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

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

    println!("observability-check: driving traffic for {TRAFFIC_FOR:?}");
    drive_traffic(service_port, TRAFFIC_FOR)?;

    let mut failures = Vec::new();
    let dashboards = workspace_root().join("deploy/grafana/dashboards");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dashboards)? {
        let path = entry?.path();
        let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        for (title, expr) in dashboard_queries(&dashboard) {
            checked += 1;
            match query(prometheus_port, &expr) {
                Ok(0) => failures.push(format!("{title}: `{expr}` returned no data")),
                Ok(_) => {}
                Err(error) => failures.push(format!("{title}: `{expr}`: {error:#}")),
            }
        }
    }
    let rules = get_json(prometheus_port, "/api/v1/rules")?;
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
fn query(port: u16, expr: &str) -> anyhow::Result<usize> {
    let answer = get_json(
        port,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    )?;
    if answer["status"] != "success" {
        bail!("{}", answer["error"]);
    }
    Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
}

fn get_json(port: u16, path: &str) -> anyhow::Result<Value> {
    let (_, body) = http(port, "GET", path, None)?;
    serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
}

/// Sends varied scoring traffic: ordinary and risky transactions, retries, conflicting reuses
/// of ids, invalid and malformed bodies.
fn drive_traffic(port: u16, duration: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
    let mut i = 0u64;
    while started.elapsed() < duration {
        let customer = format!("obs-{run}-{}", i % 20);
        let id = format!("tx-{i}");
        let risky = i.is_multiple_of(5);
        let body = transaction(&customer, &id, if risky { 4_000.0 } else { 25.0 }, risky);
        let (status, _) = http(port, "POST", "/api/v1/transactions", Some(&body))?;
        ensure!(status == 200, "scoring answered {status}");
        if i.is_multiple_of(4) {
            http(port, "POST", "/api/v1/transactions", Some(&body))?; // a retry: replayed
            let conflict = transaction(&customer, &id, 1.0, risky);
            http(port, "POST", "/api/v1/transactions", Some(&conflict))?; // 409
            http(
                port,
                "POST",
                "/api/v1/transactions",
                Some("{\"amount\": -1}"),
            )?; // 422
            http(port, "POST", "/api/v1/transactions", Some("{"))?; // 400
        }
        i += 1;
        pause(Duration::from_millis(20));
    }
    Ok(())
}

fn transaction(customer: &str, id: &str, amount: f64, risky: bool) -> String {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let risk = if risky {
        ",\"merchant_risk_score\":0.99,\"card_risk_score\":0.99,\"is_device_alert\":true,\"is_high_value\":true"
    } else {
        ""
    };
    format!(
        "{{\"customer_id\":\"{customer}\",\"transaction_id\":\"{id}\",\"amount\":{amount},\
         \"currency\":\"EUR\",\"type\":1,\"merchant_id\":\"m-1\",\"card_bin\":\"411111\",\
         \"ip_address\":\"192.0.2.1\",\"device_id\":\"d-1\",\"location\":\"Berlin, DE\",\
         \"channel\":\"online\",\"timestamp\":\"{}\"{risk}}}",
        rfc3339(timestamp)
    )
}

/// Seconds since the epoch as an RFC 3339 UTC timestamp (civil-from-days, H. Hinnant).
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// One HTTP/1.1 exchange on loopback, `Connection: close`; returns the status and the body.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {response:.80}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_578_435), "2026-11-25T03:47:15Z");
    }

    #[test]
    fn queries_are_percent_encoded_and_chunks_joined() {
        assert_eq!(
            percent_encode("a b{c=\"d\"}[1m]"),
            "a%20b%7Bc%3D%22d%22%7D%5B1m%5D"
        );
        assert_eq!(dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), "Wikipedia");
    }
}
