//! `cargo xtask bench-shards`: the release service over one Redis and over a 3-master cluster,
//! the same traffic at the same rates, with each Redis process's CPU per transaction: what a
//! shard costs, the figure docs/scaling.md sizes clusters from. On this machine everything
//! shares two cores, so the rates are the machine's, not the shards'; the CPU per transaction
//! per shard is what carries over. Loopback only; every process stopped by pid.

use std::process::Command;
use std::time::Duration;

use antifraud_loadgen::Load;
use antifraud_testkit::{RedisCluster, RedisServer};

use crate::process::{
    Started, free_port, pause, redis_pid as pid, tree_cpu_seconds, wait_for_port,
};
use crate::{build_release_service, ensure_redis, workspace_root};

#[derive(clap::Args)]
pub(crate) struct BenchShards {
    /// Length of each measured step.
    #[arg(long, default_value = "5s")]
    step: String,
    /// Rates measured, in order, per topology.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,3000")]
    rates: Vec<f64>,
}

/// The Redis under the service: its URL and the pids of its masters.
struct Shards {
    name: &'static str,
    url: String,
    masters: Vec<u32>,
    _keep: Box<dyn std::any::Any>,
}

impl BenchShards {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        ensure_redis()?;
        build_release_service()?;
        let mut rows = Vec::new();
        // One after the other: an idle cluster beside the single server would cost it nothing
        // measurable, but its processes would share the cores all the same.
        for start in [one as fn() -> anyhow::Result<Shards>, three] {
            let shards = start()?;
            let port = free_port()?;
            let listen = format!("127.0.0.1:{port}");
            let mut command = Command::new(workspace_root().join("target/release/antifraud"));
            command.args(["--listen", &listen, "--redis-url", &shards.url]);
            command
                .arg("--rules")
                .arg(workspace_root().join("deploy/rules/rules.toml"));
            let service = Started::spawn("antifraud", &mut command)?;
            wait_for_port(port)?;
            let url = format!("http://{listen}");
            println!("bench-shards: {} at {url}", shards.name);
            Load::constant(&url, 1_000.0, "3s").execute()?;
            for &rate in &self.rates {
                pause(Duration::from_secs(2));
                let service_before = tree_cpu_seconds(service.pid());
                let before: Vec<f64> = shards
                    .masters
                    .iter()
                    .map(|p| tree_cpu_seconds(*p))
                    .collect();
                let report = Load::constant(&url, rate, &self.step).execute()?;
                let finished = report.stats.completed().max(1) as f64;
                let per = |a: f64, b: f64| (b - a) * 1e6 / finished;
                let shard_us: Vec<f64> = shards
                    .masters
                    .iter()
                    .zip(&before)
                    .map(|(p, b)| per(*b, tree_cpu_seconds(*p)))
                    .collect();
                let row = format!(
                    "| {} | {rate:.0} | {:.0} | {:.2} / {:.2} | {} | {:.0} | {:.0} | {} |",
                    shards.name,
                    report.throughput(),
                    report.stats.ms(0.5),
                    report.stats.ms(0.99),
                    report.stats.error_count(),
                    per(service_before, tree_cpu_seconds(service.pid())),
                    shard_us.iter().sum::<f64>(),
                    shard_us
                        .iter()
                        .map(|us| format!("{us:.0}"))
                        .collect::<Vec<_>>()
                        .join(" / "),
                );
                println!("{row}");
                rows.push(row);
            }
        }
        println!(
            "\n| Redis | offered /s | achieved /s | p50 / p99 ms | errors | service CPU µs/tx | \
             Redis CPU µs/tx, all shards | per shard |\n|---|---|---|---|---|---|---|---|"
        );
        for row in rows {
            println!("{row}");
        }
        Ok(())
    }
}

fn one() -> anyhow::Result<Shards> {
    let server = RedisServer::start();
    let pid = pid(server.port())?;
    Ok(Shards {
        name: "1 server",
        url: server.url(),
        masters: vec![pid],
        _keep: Box::new(server),
    })
}

fn three() -> anyhow::Result<Shards> {
    let cluster = RedisCluster::start();
    let masters = cluster
        .nodes()
        .iter()
        .map(|n| pid(n.port()))
        .collect::<anyhow::Result<_>>()?;
    Ok(Shards {
        name: "3-master cluster",
        url: cluster.url(),
        masters,
        _keep: Box::new(cluster),
    })
}
