//! `cargo xtask chaos`: a bounded fault-injection run in the spirit of Jepsen.
//!
//! Two release instances share one `redis-server` (AOF on, `appendfsync always` unless told
//! otherwise), or Sentinel or a cluster with replicas, where a kill is a failover
//! (`topology.rs`): instance 0 with the `reject` policy
//! and the true clock, instance 1 with `degrade` and a clock 1.5 s behind. An open-loop client
//! alternates between them with realistic traffic (a few busy customers, late transactions, some
//! at the lateness limit where the two clocks disagree) and retries 10 % of earlier requests, a
//! quarter of those with a changed amount. Faults follow a schedule (`faults.rs`): `CLIENT PAUSE`
//! longer than the deadline, Redis SIGKILL and restart, SIGKILL and restart of either instance.
//! Every attempt is journaled (`target/chaos/attempts.jsonl`); once the faults have healed, each
//! customer gets one last transaction, and `check.rs` judges the journal and what Redis holds.
//! Loopback only, bounded in time, and every process is stopped by pid.

mod check;
mod faults;
mod topology;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use antifraud_loadgen::{Rng, parse_duration};
use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use self::check::{Attempt, Evidence, Held, Kind, Outcome};
use self::faults::Fault;
use self::topology::Topology;
use crate::process::{Started, free_port, pause, wait_for_port};
use crate::{build_release_service, ensure_redis, workspace_root};

/// The instances' deadline, and what an answer may take beyond it (the allowance).
const DEADLINE_MS: u64 = 200;
const ALLOWANCE_MS: f64 = 20.0;
/// How late a transaction may arrive; some traffic is sent right at this limit.
const MAX_LATENESS: time::Duration = time::Duration::minutes(10);
/// Instance 1's clock, against instance 0's.
const CLOCK_OFFSET_MS: i64 = -1_500;
/// The end of a run is quiet for this long, so that it ends with everything whole.
const HEAL: Duration = Duration::from_secs(3);
/// The client gives up on an answer after this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub(crate) struct Chaos {
    /// How long to send traffic and inject faults (`30s`, `300s`, `5m`...).
    #[arg(long, default_value = "30s")]
    duration: String,
    /// Requests per second, both instances together.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seed of the traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Customers: few, so that each sees concurrent requests and a long history.
    #[arg(long, default_value_t = 40)]
    customers: u64,
    /// Redis's AOF fsync policy. `always`, what docs/redis.md requires, keeps every write it
    /// acknowledged; `everysec` shows what it loses when Redis is killed.
    #[arg(long, default_value = "always", value_parser = ["always", "everysec"])]
    appendfsync: String,
    /// The Redis attacked: one server on its AOF (a kill restarts it), or a primary with
    /// replicas under Sentinel, or a cluster with a replica per master (a kill is then a
    /// failover, and the instances run with `--redis-wait-replicas 1`).
    #[arg(long, value_enum, default_value = "standalone")]
    redis: topology::Kind,
}

impl Chaos {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let duration = parse_duration(&self.duration).context("--duration")?;
        ensure!(
            duration <= Duration::from_secs(3_600),
            "--duration: at most an hour"
        );
        ensure!(
            self.rate > 0.0 && self.rate <= 2_000.0,
            "--rate: from 0 to 2000 per second"
        );
        ensure_redis()?;
        build_release_service()?;
        // Everything that can fail before the processes start does, so that none is left behind.
        antifraud_loadgen::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder().timeout(CLIENT_TIMEOUT).build()?;
        let dir = workspace_root().join("target/chaos");
        std::fs::create_dir_all(&dir)?;
        for stale in ["instance-0.log", "instance-1.log"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }

        let redis = Topology::start(self.redis, &self.appendfsync, &Plan::customer(0));
        let wait_replicas = self.redis.wait_replicas();
        let instances = [0, 1].map(|index| Instance::new(index, &redis.url(), wait_replicas, &dir));
        let mut instances = instances.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        for instance in &mut instances {
            instance.start()?;
        }
        let urls: Vec<String> = instances.iter().map(Instance::url).collect();
        println!(
            "chaos: {} at {}/s over {} customers; {} ({}), instances {} (reject) and {} \
             (degrade, clock {CLOCK_OFFSET_MS} ms)",
            self.duration,
            self.rate,
            self.customers,
            redis.describe(),
            if wait_replicas > 0 {
                format!("--redis-wait-replicas {wait_replicas}")
            } else {
                format!("appendfsync {}", self.appendfsync)
            },
            urls[0],
            urls[1]
        );

        let started = Instant::now();
        let downtime = Downtime::default();
        let schedule = faults::schedule(duration, HEAL);
        let injector = {
            let downtime = downtime.clone();
            std::thread::spawn(move || {
                inject(
                    schedule,
                    started + duration,
                    started,
                    redis,
                    instances,
                    &downtime,
                )
            })
        };
        let nonce = format!("{:x}", OffsetDateTime::now_utc().unix_timestamp_nanos());
        let mut plan = Plan::new(self.seed, self.customers, nonce.clone());
        let attempts = runtime.block_on(send_all(
            &client, &urls, &mut plan, self.rate, duration, started, &downtime,
        ));
        let (redis, instances, injected) = injector
            .join()
            .map_err(|_| anyhow::anyhow!("the fault injector panicked"))??;

        let customers: Vec<String> = plan.customers_seen();
        let probes = runtime.block_on(probe_all(&client, &urls[0], &customers, &nonce))?;
        let held = read_held(&redis, &customers)?;
        drop(instances);
        drop(redis);

        write_journal(&dir.join("attempts.jsonl"), &attempts)?;
        let violations = check::violations(&Evidence {
            attempts: &attempts,
            held: &held,
            probes: &probes,
            latency_limit_ms: DEADLINE_MS as f64 + ALLOWANCE_MS,
        });
        println!("{}", summary(&attempts, &injected, started.elapsed()));
        let mut by_kind: BTreeMap<Kind, Vec<&check::Violation>> = BTreeMap::new();
        for violation in &violations {
            by_kind.entry(violation.kind).or_default().push(violation);
        }
        println!("violations:");
        for kind in Kind::ALL {
            let found = by_kind.get(&kind).map_or(0, Vec::len);
            println!("  {kind:<40} {found}");
            for violation in by_kind.get(&kind).into_iter().flatten().take(5) {
                println!("      {}", violation.detail);
            }
        }
        println!(
            "journal: {}; instance logs: {}",
            dir.join("attempts.jsonl").display(),
            dir.display()
        );
        if violations.is_empty() {
            println!("chaos: no violations");
            Ok(())
        } else {
            bail!("chaos: {} violations", violations.len())
        }
    }
}

/// One instance of the service: its settings, and the process while it runs.
struct Instance {
    port: u16,
    command: Vec<String>,
    log: PathBuf,
    process: Option<Started>,
}

impl Instance {
    fn new(
        index: usize,
        redis_url: &str,
        wait_replicas: u32,
        dir: &Path,
    ) -> anyhow::Result<Instance> {
        let port = free_port()?;
        let (policy, offset) = if index == 0 {
            ("reject", 0)
        } else {
            ("degrade", CLOCK_OFFSET_MS)
        };
        let mut command: Vec<String> = [
            format!("--listen=127.0.0.1:{port}"),
            format!("--redis-url={redis_url}"),
            format!("--store-failure-policy={policy}"),
            format!("--clock-offset-ms={offset}"),
            format!("--deadline-ms={DEADLINE_MS}"),
            format!("--max-lateness={}s", MAX_LATENESS.whole_seconds()),
            "--log-format=json".to_owned(),
        ]
        .into();
        if wait_replicas > 0 {
            command.push(format!("--redis-wait-replicas={wait_replicas}"));
        }
        Ok(Instance {
            port,
            command,
            log: dir.join(format!("instance-{index}.log")),
            process: None,
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let binary = workspace_root().join("target/release/antifraud");
        let mut command = Command::new(binary);
        command.args(&self.command).env("RUST_LOG", "warn");
        self.process = Some(Started::spawn_logged("antifraud", &mut command, &self.log)?);
        wait_for_port(self.port)
    }

    /// SIGKILL, by pid.
    fn kill(&mut self) {
        self.process = None;
    }
}

/// When each instance was down, as offsets from the start: an attempt that met a kill may go
/// unanswered.
#[derive(Clone, Default)]
struct Downtime(Arc<Mutex<Vec<(usize, Instant, Instant)>>>);

impl Downtime {
    fn add(&self, instance: usize, from: Instant, to: Instant) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((instance, from, to));
    }

    fn overlaps(&self, instance: usize, from: Instant, to: Instant) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|&(i, down, up)| i == instance && down <= to && from <= up)
    }
}

type Injected = BTreeMap<&'static str, u32>;

/// Applies the schedule, then hands the processes back. A failover takes longer than its
/// slot in the schedule: the faults after it slide, and none starts that could not end, by its
/// nominal length, a quiet [`HEAL`] before the traffic does.
fn inject(
    schedule: Vec<(Duration, Fault)>,
    traffic_ends: Instant,
    started: Instant,
    mut redis: Topology,
    mut instances: Vec<Instance>,
    downtime: &Downtime,
) -> anyhow::Result<(Topology, Vec<Instance>, Injected)> {
    let mut injected = Injected::new();
    for (at, fault) in schedule {
        pause((started + at).saturating_duration_since(Instant::now()));
        if Instant::now() + fault.length() + HEAL > traffic_ends {
            break;
        }
        let name = match fault {
            Fault::PauseRedis(length) => {
                redis.pause(length)?;
                fault.name()
            }
            Fault::KillRedis(length) => {
                redis.lose_a_node(length)?;
                if matches!(redis, Topology::Standalone(_)) {
                    fault.name()
                } else {
                    "redis failed over"
                }
            }
            Fault::KillInstance(index, length) => {
                let from = Instant::now();
                instances[index].kill();
                pause(length);
                instances[index].start()?;
                // Counted as down until it listens again.
                downtime.add(index, from, Instant::now());
                fault.name()
            }
        };
        *injected.entry(name).or_default() += 1;
        println!(
            "chaos: {name} at {:.1} s, healed at {:.1} s",
            at.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok((redis, instances, injected))
}

/// The traffic: new transactions, and retries of earlier ones.
struct Plan {
    rng: Rng,
    customers: u64,
    nonce: String,
    sequence: u64,
    /// Every new transaction's body, for retries.
    sent: Vec<Value>,
}

impl Plan {
    fn new(seed: u64, customers: u64, nonce: String) -> Plan {
        Plan {
            rng: Rng::new(seed),
            customers: customers.max(1),
            nonce,
            sequence: 0,
            sent: Vec::new(),
        }
    }

    /// The next request's body.
    fn next(&mut self, now: OffsetDateTime) -> Value {
        self.sequence += 1;
        if !self.sent.is_empty() && self.rng.chance(0.1) {
            let mut body = self.sent[self.rng.below(self.sent.len() as u64) as usize].clone();
            if self.rng.chance(0.25) {
                // The same ids with another payload.
                let amount = body["amount"].as_f64().unwrap_or_default();
                body["amount"] = json!(amount + 1.0);
            }
            return body;
        }
        // A tenth of the customers send half of the transactions.
        let busy = (self.customers / 10).max(1);
        let customer = if self.rng.chance(0.5) {
            self.rng.below(busy)
        } else {
            self.rng.below(self.customers)
        };
        let late = match self.rng.below(20) {
            // Right at the lateness limit, where the two instances' clocks disagree.
            0 => MAX_LATENESS + time::Duration::milliseconds(self.rng.below(6_000) as i64 - 3_000),
            1 | 2 => time::Duration::seconds(self.rng.below(540) as i64),
            _ => time::Duration::milliseconds(self.rng.below(2_000) as i64),
        };
        let timestamp = (now - late)
            .format(&Rfc3339)
            .expect("a current UTC time formats as RFC 3339");
        let body = json!({
            "customer_id": Plan::customer(customer),
            "transaction_id": format!("chaos-{}-{}", self.nonce, self.sequence),
            "amount": (1 + self.rng.below(200_000)) as f64 / 100.0,
            "currency": "EUR",
            "type": 1,
            "merchant_id": format!("m-{}", self.rng.below(50)),
            "card_bin": "411111",
            "ip_address": "192.0.2.10",
            "device_id": format!("dev-{customer}"),
            "location": "Berlin, DE",
            "channel": "online",
            "timestamp": timestamp,
        });
        self.sent.push(body.clone());
        body
    }

    /// The id of customer `n`; customer 0 is among the busiest.
    fn customer(n: u64) -> String {
        format!("chaos-{n:03}")
    }

    fn customers_seen(&self) -> Vec<String> {
        let mut customers: Vec<String> = self
            .sent
            .iter()
            .filter_map(|body| body["customer_id"].as_str().map(str::to_owned))
            .collect();
        customers.sort();
        customers.dedup();
        customers
    }
}

/// Sends the planned traffic open-loop for `duration`, alternating between the instances, and
/// journals every attempt.
async fn send_all(
    client: &reqwest::Client,
    urls: &[String],
    plan: &mut Plan,
    rate: f64,
    duration: Duration,
    started: Instant,
    downtime: &Downtime,
) -> Vec<Attempt> {
    let journal = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    let total = (duration.as_secs_f64() * rate) as u64;
    for seq in 0..total {
        let due = started + Duration::from_secs_f64(seq as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let body = plan.next(OffsetDateTime::now_utc());
        let instance = (seq % urls.len() as u64) as usize;
        let (client, url, journal, downtime) = (
            client.clone(),
            urls[instance].clone(),
            Arc::clone(&journal),
            downtime.clone(),
        );
        tasks.spawn(async move {
            let attempt = attempt(&client, &url, seq, instance, body, started, &downtime).await;
            journal
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(attempt);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut attempts = std::mem::take(&mut *journal.lock().unwrap_or_else(PoisonError::into_inner));
    attempts.sort_by_key(|a| a.seq);
    attempts
}

async fn attempt(
    client: &reqwest::Client,
    url: &str,
    seq: u64,
    instance: usize,
    body: Value,
    started: Instant,
    downtime: &Downtime,
) -> Attempt {
    let sent = Instant::now();
    let result = client
        .post(format!("{url}/api/v1/transactions"))
        .json(&body)
        .send()
        .await;
    let outcome = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            match response.text().await {
                Ok(body) => Outcome::Answered {
                    status,
                    replayed,
                    body,
                },
                Err(error) => Outcome::NoAnswer {
                    error: format!("body: {error}"),
                    instance_down: false,
                },
            }
        }
        Err(error) => Outcome::NoAnswer {
            error: error.to_string(),
            instance_down: false,
        },
    };
    let answered = Instant::now();
    let outcome = match outcome {
        Outcome::NoAnswer { error, .. } => Outcome::NoAnswer {
            error,
            // The kill may be recorded only once the instance is back: look again then.
            instance_down: downtime.overlaps(instance, sent, answered)
                || instance_down_later(downtime, instance, sent, answered).await,
        },
        answered => answered,
    };
    Attempt {
        seq,
        customer: body["customer_id"].as_str().unwrap_or_default().to_owned(),
        transaction: body["transaction_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        amount: body["amount"].as_f64().unwrap_or_default(),
        instance,
        sent_ms: sent.duration_since(started).as_secs_f64() * 1e3,
        latency_ms: answered.duration_since(sent).as_secs_f64() * 1e3,
        outcome,
    }
}

/// Whether the instance turns out to have been down around the attempt: the injector records a
/// kill when the instance is back, up to a few seconds later.
async fn instance_down_later(
    downtime: &Downtime,
    instance: usize,
    from: Instant,
    to: Instant,
) -> bool {
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if downtime.overlaps(instance, from, to) {
            return true;
        }
    }
    false
}

/// One last transaction per customer, once every fault has healed: its 24 h count is the
/// customer's final count. Retried until it is recorded (bounded).
async fn probe_all(
    client: &reqwest::Client,
    url: &str,
    customers: &[String],
    nonce: &str,
) -> anyhow::Result<BTreeMap<String, (String, u64)>> {
    let mut probes = BTreeMap::new();
    for customer in customers {
        let id = format!("probe-{nonce}");
        let body = json!({
            "customer_id": customer, "transaction_id": id, "amount": 1.0, "currency": "EUR",
            "type": 1, "merchant_id": "m-probe", "card_bin": "411111",
            "ip_address": "192.0.2.10", "device_id": "dev-probe", "location": "Berlin, DE",
            "channel": "online",
            "timestamp": OffsetDateTime::now_utc().format(&Rfc3339)?,
        });
        let give_up = Instant::now() + Duration::from_secs(15);
        let count = loop {
            let answer = client
                .post(format!("{url}/api/v1/transactions"))
                .json(&body)
                .send()
                .await;
            if let Ok(response) = answer
                && response.status() == 200
                && let Ok(answer) = response.json::<Value>().await
                && let Some(count) = answer["customer_transaction_count_24h"].as_u64()
            {
                break count;
            }
            ensure!(
                Instant::now() < give_up,
                "the final transaction of {customer} was not recorded within 15 s: did the \
                 service recover?"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        probes.insert(customer.clone(), (id, count));
    }
    Ok(probes)
}

/// Each customer's events as Redis holds them (`af:{hex}:ev2`, members `amount|transaction id`;
/// see docs/redis.md), read with redis-cli from the node that holds them now.
fn read_held(redis: &Topology, customers: &[String]) -> anyhow::Result<Held> {
    let mut held = Held::new();
    for customer in customers {
        let port = redis.port_of(customer)?;
        let output = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "--raw", "ZRANGE"])
            .arg(format!("af:{{{}}}:ev2", topology::hex(customer)))
            .args(["0", "-1"])
            .output()
            .context("redis-cli")?;
        ensure!(output.status.success(), "redis-cli ZRANGE failed");
        let mut events = Vec::new();
        for member in String::from_utf8(output.stdout)?.lines() {
            let Some((amount, transaction)) = member.split_once('|') else {
                bail!("unexpected event member {member:?} of {customer}");
            };
            events.push((transaction.to_owned(), amount.parse()?));
        }
        held.insert(customer.clone(), events);
    }
    Ok(held)
}

fn write_journal(path: &Path, attempts: &[Attempt]) -> anyhow::Result<()> {
    let mut out = String::new();
    for a in attempts {
        let outcome = match &a.outcome {
            Outcome::Answered {
                status,
                replayed,
                body,
            } => json!({"status": status, "replayed": replayed, "body": body}),
            Outcome::NoAnswer {
                error,
                instance_down,
            } => json!({"error": error, "instance_down": instance_down}),
        };
        let line = json!({
            "seq": a.seq, "customer": a.customer, "transaction": a.transaction,
            "amount": a.amount, "instance": a.instance, "sent_ms": a.sent_ms,
            "latency_ms": a.latency_ms, "outcome": outcome,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// The run's figures: requests, answers by kind, latency, faults.
fn summary(attempts: &[Attempt], injected: &Injected, elapsed: Duration) -> String {
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies: Vec<f64> = Vec::new();
    for a in attempts {
        if matches!(a.outcome, Outcome::Answered { .. }) {
            latencies.push(a.latency_ms);
        }
        *by_status.entry(a.label()).or_default() += 1;
    }
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let mut out = format!(
        "chaos: {} requests in {:.1} s\n  answers:",
        attempts.len(),
        elapsed.as_secs_f64()
    );
    for (key, count) in &by_status {
        let _ = write!(out, " {key}: {count};");
    }
    let _ = write!(
        out,
        "\n  latency of answers (ms): p50 {:.1}, p99 {:.1}, max {:.1}\n  faults:",
        quantile(0.5),
        quantile(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    for (kind, count) in injected {
        let _ = write!(out, " {kind}: {count};");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_retries_a_tenth_some_changed_and_sends_some_at_the_lateness_limit() {
        let mut plan = Plan::new(7, 40, "n".into());
        let now = OffsetDateTime::now_utc();
        let bodies: Vec<Value> = (0..5_000).map(|_| plan.next(now)).collect();
        let mut seen = std::collections::HashMap::new();
        let (mut retries, mut changed, mut at_limit) = (0, 0, 0);
        for body in &bodies {
            let id = body["transaction_id"].as_str().expect("an id").to_owned();
            let amount = body["amount"].as_f64().expect("an amount");
            match seen.get(&id) {
                Some(&first) => {
                    retries += 1;
                    changed += u32::from(first != amount);
                }
                None => {
                    seen.insert(id, amount);
                }
            }
            let at = OffsetDateTime::parse(body["timestamp"].as_str().expect("a time"), &Rfc3339)
                .expect("RFC 3339");
            let late = now - at;
            at_limit += u32::from((late - MAX_LATENESS).abs() <= time::Duration::seconds(3));
        }
        assert!((400..600).contains(&retries), "{retries} retries");
        assert!((60..200).contains(&changed), "{changed} changed");
        assert!((150..350).contains(&at_limit), "{at_limit} at the limit");
        assert_eq!(plan.customers_seen().len(), 40);
    }
}
