//! The Redis a chaos run attacks: one server on its AOF, a primary with two replicas under
//! three sentinels, or a cluster of three masters with a replica each. Each topology says how
//! it is paused, how a Redis node is lost (a restart on the AOF, or a failover), and where a
//! customer's keys live when the checker reads them back.

use std::time::Duration;

use antifraud_testkit::{RedisCluster, RedisSentinel, RedisServer};
use anyhow::ensure;

/// How long a failover may take before the run gives up on the topology.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// Which topology, as `--redis` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// One `redis-server` with AOF: a kill is a restart on it.
    Standalone,
    /// A primary, two replicas, three sentinels: a kill is a failover.
    Sentinel,
    /// Three masters with a replica each: a kill is a master's failover.
    Cluster,
}

impl Kind {
    /// The `--redis-wait-replicas` of the instances: every replica a primary has. Fewer is not
    /// enough once a failover finds the old primary alive (a stall past the sentinels'
    /// down-after, which a loaded machine produces by itself): it keeps confirming writes with
    /// the replicas not yet moved to the new primary, and those writes go when it is demoted.
    /// `cargo xtask chaos --redis sentinel` lost 83 and 163 acknowledged transactions that way
    /// with 1 of 2; none with 2 of 2 (docs/redis.md). Zero for one server: nothing to wait
    /// for.
    pub(crate) fn wait_replicas(self) -> u32 {
        match self {
            Kind::Standalone => 0,
            Kind::Sentinel => 2,
            Kind::Cluster => 1,
        }
    }
}

/// The running topology.
pub(crate) enum Topology {
    Standalone(RedisServer),
    Sentinel(RedisSentinel),
    Cluster {
        cluster: RedisCluster,
        /// The slot whose master is paused and killed: a busy customer's.
        slot: u16,
    },
}

impl Topology {
    /// Starts `kind`; a standalone server keeps an AOF synced as `appendfsync` says.
    pub(crate) fn start(kind: Kind, appendfsync: &str, busy_customer: &str) -> Topology {
        match kind {
            Kind::Standalone => Topology::Standalone(RedisServer::start_with(&[
                "--appendonly",
                "yes",
                "--appendfsync",
                appendfsync,
            ])),
            // Two replicas: after a failover the new primary still has one to wait for.
            Kind::Sentinel => Topology::Sentinel(RedisSentinel::start_with_replicas(2)),
            Kind::Cluster => {
                let cluster = RedisCluster::start_with_replicas();
                let slot = cluster.key_slot(&format!("{{{}}}", hex(busy_customer)));
                Topology::Cluster { cluster, slot }
            }
        }
    }

    /// The `--redis-url` of the instances.
    pub(crate) fn url(&self) -> String {
        match self {
            Topology::Standalone(server) => server.url(),
            Topology::Sentinel(sentinel) => sentinel.url(),
            Topology::Cluster { cluster, .. } => cluster.url(),
        }
    }

    /// Says where it runs, for the run's first line.
    pub(crate) fn describe(&self) -> String {
        match self {
            Topology::Standalone(server) => format!("redis on port {}", server.port()),
            Topology::Sentinel(sentinel) => format!("sentinel {}", sentinel.url()),
            Topology::Cluster { cluster, .. } => format!("cluster {}", cluster.url()),
        }
    }

    /// `CLIENT PAUSE` for `length` on the server, the primary, or the busy slot's master.
    pub(crate) fn pause(&self, length: Duration) -> anyhow::Result<()> {
        let port = self.port_of_busy()?;
        let reply = RedisServer::command_on(
            port,
            &["CLIENT", "PAUSE", &length.as_millis().to_string(), "ALL"],
        )?;
        ensure!(reply.starts_with("+OK"), "CLIENT PAUSE: {reply}");
        Ok(())
    }

    /// Loses a Redis node: SIGKILL to the server and a restart on its AOF after `down`; or
    /// SIGKILL to the primary (the busy slot's master), a replica promoted, and the dead node
    /// back, empty, as a replica that syncs.
    pub(crate) fn lose_a_node(&mut self, down: Duration) -> anyhow::Result<()> {
        match self {
            Topology::Standalone(server) => {
                server.stop();
                crate::process::pause(down);
                server.restart();
            }
            Topology::Sentinel(sentinel) => {
                let old = sentinel.kill_primary();
                let new = sentinel.wait_for_promotion(old, FAILOVER_TIMEOUT);
                sentinel.revive_as_replica(old, new);
            }
            Topology::Cluster { cluster, slot } => {
                let old = cluster
                    .master_of(*slot)
                    .ok_or_else(|| anyhow::anyhow!("no master serves slot {slot}"))?;
                cluster.kill(old);
                cluster.wait_for_failover(*slot, old, FAILOVER_TIMEOUT);
                cluster.revive(old);
                cluster.wait_until_replica_in_sync(old, FAILOVER_TIMEOUT);
            }
        }
        Ok(())
    }

    /// The port of the node that holds `customer`'s keys now.
    pub(crate) fn port_of(&self, customer: &str) -> anyhow::Result<u16> {
        match self {
            Topology::Standalone(server) => Ok(server.port()),
            Topology::Sentinel(sentinel) => sentinel
                .primary_port()
                .ok_or_else(|| anyhow::anyhow!("no sentinel names a primary")),
            Topology::Cluster { cluster, .. } => {
                let slot = cluster.key_slot(&format!("{{{}}}", hex(customer)));
                cluster
                    .master_of(slot)
                    .ok_or_else(|| anyhow::anyhow!("no master serves slot {slot}"))
            }
        }
    }

    fn port_of_busy(&self) -> anyhow::Result<u16> {
        match self {
            Topology::Cluster { cluster, slot } => cluster
                .master_of(*slot)
                .ok_or_else(|| anyhow::anyhow!("no master serves slot {slot}")),
            other => other.port_of(""),
        }
    }
}

/// A customer id's hash tag: the hex of its UTF-8 bytes (docs/redis.md's key schema).
pub(crate) fn hex(customer: &str) -> String {
    customer.bytes().map(|b| format!("{b:02x}")).collect()
}
