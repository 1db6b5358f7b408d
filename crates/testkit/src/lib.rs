//! Test harness for real dependencies: `redis-server` processes, a 3-master Redis Cluster (with
//! or without a replica each) and a primary with replicas under three sentinels, each on free
//! loopback ports, in a directory of their own, stopped by pid when dropped.
//!
//! Tests never use port 6379 and never talk to a Redis they did not start.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to answer PING after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// One `redis-server` process on a free loopback port.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server without persistence.
    ///
    /// # Panics
    /// When `redis-server` is not installed (the message says how to install it) or does not
    /// start: a test cannot run without its dependency.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments, on a free port whose cluster bus
    /// port (port + 10000) is free too.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port_pair();
            let dir = std::env::temp_dir().join(format!(
                "antifraud-store-redis-{}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            let mut server = RedisServer {
                port,
                dir,
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                // Another process took the port between our probe and the start: try another.
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = command.spawn().map_err(|error| {
            format!(
                "cannot run redis-server ({error}); install it with `apt-get install redis-server` \
                 (`cargo xtask test` does this on Debian when run as root)"
            )
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                self.child = None;
                return Err(format!("exited with {status}: {stderr}"));
            }
            if self
                .command(&["PING"])
                .is_ok_and(|reply| reply.starts_with("+PONG"))
            {
                return Ok(());
            }
            pause(Duration::from_millis(20));
        }
        self.stop();
        Err(format!(
            "no PONG on port {} within {START_TIMEOUT:?}",
            self.port
        ))
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends one command and returns the raw reply (RESP), as far as one read gets it.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        Self::command_on(self.port, args)
    }

    /// Sends one command whose reply is an array of bulk strings (`ZRANGE`, `HGETALL`, ...) and
    /// returns them, read to the end however long; a nil element reads as `None`.
    ///
    /// # Panics
    /// When the reply is not such an array: the test asked for the wrong command.
    pub fn strings(&self, args: &[&str]) -> std::io::Result<Vec<Option<String>>> {
        use std::io::BufRead;
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(resp_request(args).as_bytes())?;
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        let mut header = |reader: &mut std::io::BufReader<TcpStream>, kind: char| {
            line.clear();
            reader.read_line(&mut line)?;
            let length = line
                .strip_prefix(kind)
                .and_then(|n| n.trim_end().parse::<i64>().ok())
                .unwrap_or_else(|| panic!("expected {kind}<length>, got {line:?}"));
            Ok::<_, std::io::Error>(length)
        };
        let count = header(&mut reader, '*')?;
        let mut strings = Vec::with_capacity(count.max(0) as usize);
        for _ in 0..count {
            let length = header(&mut reader, '$')?;
            if length < 0 {
                strings.push(None);
                continue;
            }
            let mut bytes = vec![0; length as usize + 2];
            reader.read_exact(&mut bytes)?;
            bytes.truncate(length as usize);
            strings.push(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
        Ok(strings)
    }

    /// Sends one command whose reply is a bulk string (`CLUSTER NODES`, `INFO`) and returns it,
    /// read to the end however long.
    ///
    /// # Errors
    /// When the server does not answer, or not with a bulk string.
    pub fn bulk(&self, args: &[&str]) -> std::io::Result<String> {
        use std::io::BufRead;
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(resp_request(args).as_bytes())?;
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let length: usize = line
            .strip_prefix('$')
            .and_then(|n| n.trim_end().parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not a bulk string: {line:?}")))?;
        let mut bytes = vec![0; length + 2];
        reader.read_exact(&mut bytes)?;
        bytes.truncate(length);
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// [`RedisServer::command`] by port, for use from another thread.
    pub fn command_on(port: u16, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(resp_request(args).as_bytes())?;
        let mut buffer = [0u8; 4096];
        let n = stream.read(&mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
    }

    /// Kills the server (SIGKILL, by pid) and waits for it: a crash, as far as clients can tell.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (nothing is persisted).
    ///
    /// # Panics
    /// When it does not start.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn().expect("redis-server restarts on its port");
    }

    /// Starts the server again on the same port, empty, with these `redis-server` arguments
    /// instead of the ones it had (`--replicaof HOST PORT` to bring a dead primary back as a
    /// replica).
    ///
    /// # Panics
    /// When it does not start.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.stop();
        self.extra = extra.iter().map(|s| (*s).to_owned()).collect();
        self.spawn().expect("redis-server restarts on its port");
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters, without replicas or with one each.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// How long a cluster with replicas waits without an answer before it calls a master down and
/// its replica starts an election: the failover takes about twice this.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 1000;

impl RedisCluster {
    /// Starts three cluster-enabled servers, joins them, and waits for `cluster_state:ok`.
    ///
    /// # Panics
    /// When the cluster does not form.
    pub fn start() -> RedisCluster {
        // Without replicas nothing can fail over: a long node timeout keeps a restarted node's
        // absence from marking the cluster failed in the tests that restart one.
        Self::create(0, 5000)
    }

    /// Starts three masters with one replica each (six servers), quick to fail over
    /// ([`CLUSTER_NODE_TIMEOUT_MS`]), replicas in sync before this returns.
    ///
    /// # Panics
    /// When the cluster does not form.
    pub fn start_with_replicas() -> RedisCluster {
        let cluster = Self::create(1, CLUSTER_NODE_TIMEOUT_MS);
        cluster.wait_until(Duration::from_secs(30), "every replica in sync", |c| {
            c.nodes.iter().filter(|n| c.is_replica(n.port())).count() == 3
                && c.nodes.iter().all(|n| {
                    !c.is_replica(n.port())
                        || n.command(&["INFO", "replication"])
                            .is_ok_and(|i| i.contains("master_link_status:up"))
                })
        });
        cluster
    }

    fn create(replicas: usize, node_timeout_ms: u64) -> RedisCluster {
        let timeout = node_timeout_ms.to_string();
        let nodes: Vec<_> = (0..3 * (1 + replicas))
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    &timeout,
                    // A replica (re)joining syncs at once rather than after the default 5 s.
                    "--repl-diskless-sync-delay",
                    "0",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let replicas = replicas.to_string();
        let mut args = vec!["create"];
        args.extend(addresses.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &replicas]);
        redis_cli_cluster(&args);
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    ///
    /// # Panics
    /// When no node answers.
    pub fn key_slot(&self, key: &str) -> u16 {
        self.live()
            .find_map(|n| integer(&n.command(&["CLUSTER", "KEYSLOT", key]).ok()?))
            .and_then(|slot| u16::try_from(slot).ok())
            .expect("a node answers CLUSTER KEYSLOT")
    }

    /// The port of the master serving `slot`, as the first live node that knows says.
    pub fn master_of(&self, slot: u16) -> Option<u16> {
        self.live().find_map(|n| {
            let nodes = n.bulk(&["CLUSTER", "NODES"]).ok()?;
            cluster_nodes(&nodes)
                .into_iter()
                .find(|node| node.master && node.slots.iter().any(|r| r.contains(&slot)))
                .map(|node| node.port)
        })
    }

    /// Kills the node on `port` (SIGKILL, by pid): a crash.
    ///
    /// # Panics
    /// When no node of this cluster has that port.
    pub fn kill(&mut self, port: u16) {
        self.node_on(port).stop();
    }

    /// Starts the killed node on `port` again, empty: it rejoins from its `nodes.conf` and,
    /// its slots taken over meanwhile, becomes a replica of the master that took them.
    ///
    /// # Panics
    /// When it does not start.
    pub fn revive(&mut self, port: u16) {
        self.node_on(port).restart();
    }

    /// Waits until a master other than `old` serves `slot` and every live node reports
    /// `cluster_state:ok`; returns the new master's port.
    ///
    /// # Panics
    /// After `timeout`.
    pub fn wait_for_failover(&self, slot: u16, old: u16, timeout: Duration) -> u16 {
        let mut promoted = 0;
        self.wait_until(timeout, "a replica promoted", |c| {
            match c.master_of(slot) {
                Some(port) if port != old => promoted = port,
                _ => return false,
            }
            c.live().all(|n| {
                n.command(&["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })
        });
        promoted
    }

    /// Waits until the node on `port` is a replica whose link to its master is up.
    ///
    /// # Panics
    /// After `timeout`.
    pub fn wait_until_replica_in_sync(&self, port: u16, timeout: Duration) {
        self.wait_until(timeout, "the node back as a replica in sync", |c| {
            c.is_replica(port)
                && RedisServer::command_on(port, &["INFO", "replication"])
                    .is_ok_and(|i| i.contains("master_link_status:up"))
        });
    }

    /// Moves `slots` slots from the master on `from` to the master on `to` with
    /// `redis-cli --cluster reshard`, keys and all; returns when the move is done. redis-cli
    /// takes the source's lowest slots first.
    ///
    /// # Panics
    /// When redis-cli fails.
    pub fn reshard(&self, from: u16, to: u16, slots: u16) {
        let id = |port: u16| {
            let reply = RedisServer::command_on(port, &["CLUSTER", "MYID"]).expect("CLUSTER MYID");
            reply
                .lines()
                .nth(1)
                .expect("a bulk string reply")
                .trim()
                .to_owned()
        };
        redis_cli_cluster(&[
            "reshard",
            &format!("127.0.0.1:{from}"),
            "--cluster-from",
            &id(from),
            "--cluster-to",
            &id(to),
            "--cluster-slots",
            &slots.to_string(),
        ]);
    }

    fn is_replica(&self, port: u16) -> bool {
        RedisServer::command_on(port, &["ROLE"]).is_ok_and(|r| r.contains("slave"))
    }

    fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    fn node_on(&mut self, port: u16) -> &mut RedisServer {
        server_on(&mut self.nodes, port)
    }

    fn wait_until(&self, timeout: Duration, what: &str, done: impl FnMut(&Self) -> bool) {
        wait_until(self, timeout, what, done);
    }

    /// Waits until every node reports `cluster_state:ok` (after start, or after nodes were
    /// restarted: each keeps its `nodes.conf` and rejoins).
    ///
    /// # Panics
    /// When that takes more than 30 s.
    pub fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.live().all(|node| {
                node.command(&["CLUSTER", "INFO"])
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach cluster_state:ok"
            );
            pause(Duration::from_millis(100));
        }
    }

    /// `redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&node=127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port());
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", node.port()));
        }
        url
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to stop and restart.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }
}

/// One `redis-server --sentinel` process on a free loopback port, watching `main`.
struct SentinelProcess {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl SentinelProcess {
    /// Starts a sentinel watching the primary on `primary_port`, quick to act: the primary is
    /// down after 1 s without an answer (two of three sentinels agreeing), a failover may take
    /// 5 s before another is tried.
    fn start(primary_port: u16) -> SentinelProcess {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port_pair();
            let dir = std::env::temp_dir()
                .join(format!("antifraud-sentinel-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a temporary directory");
            // Sentinel rewrites its configuration file as it learns: one of its own.
            let config = dir.join("sentinel.conf");
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor main 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds main {SENTINEL_DOWN_AFTER_MS}\n\
                     sentinel failover-timeout main 5000\n\
                     sentinel parallel-syncs main 1\n",
                    dir.display()
                ),
            )
            .expect("a sentinel configuration");
            let child = Command::new("redis-server")
                .arg(&config)
                .args(["--sentinel", "--loglevel", "warning"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server runs in sentinel mode (`apt-get install redis-server`)");
            let mut sentinel = SentinelProcess {
                port,
                dir,
                child: Some(child),
            };
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if RedisServer::command_on(port, &["PING"]).is_ok_and(|r| r.starts_with("+PONG")) {
                    return sentinel;
                }
                if let Some(child) = sentinel.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    last_error = format!("sentinel exited with {status}");
                    break;
                }
                pause(Duration::from_millis(20));
            }
            sentinel.stop();
        }
        panic!("redis-server --sentinel did not start: {last_error}");
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How long a sentinel waits without an answer before it calls the primary down. The
/// failover then takes about as long again (election, promotion): the window of a failover.
pub const SENTINEL_DOWN_AFTER_MS: u64 = 1000;

/// A primary, one replica (or more) and three sentinels watching them as `main`, each on free
/// loopback ports: Sentinel's failover with real processes.
pub struct RedisSentinel {
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
}

impl RedisSentinel {
    /// Starts the primary, one replica (in sync before this returns) and three sentinels that
    /// see both.
    ///
    /// # Panics
    /// When a process does not start, or the replica or the sentinels do not settle in 30 s.
    pub fn start() -> RedisSentinel {
        Self::start_with_replicas(1)
    }

    /// The same with `replicas` replicas: with two, a primary that waits for one replica
    /// (`WAIT 1`) still has one after a failover.
    ///
    /// # Panics
    /// As [`RedisSentinel::start`].
    pub fn start_with_replicas(replicas: usize) -> RedisSentinel {
        // Any of them may become the primary; a replica (re)joining it syncs at once rather
        // than after the default 5 s.
        const SYNC_AT_ONCE: [&str; 2] = ["--repl-diskless-sync-delay", "0"];
        let primary = RedisServer::start_with(&SYNC_AT_ONCE);
        let of = primary.port().to_string();
        let mut servers = vec![primary];
        for _ in 0..replicas.max(1) {
            let mut args = vec!["--replicaof", "127.0.0.1", &of];
            args.extend(SYNC_AT_ONCE);
            servers.push(RedisServer::start_with(&args));
        }
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(servers[0].port()))
            .collect();
        let harness = RedisSentinel { servers, sentinels };
        harness.wait_until(
            Duration::from_secs(30),
            "the replicas in sync, seen by every sentinel",
            |h| {
                h.servers[1..].iter().all(|replica| {
                    let port = replica.port().to_string();
                    replica
                        .command(&["INFO", "replication"])
                        .is_ok_and(|info| info.contains("master_link_status:up"))
                        && h.sentinels.iter().all(|s| {
                            RedisServer::command_on(s.port, &["SENTINEL", "replicas", "main"])
                                .is_ok_and(|r| r.contains(&port))
                        })
                })
            },
        );
        harness
    }

    /// `redis-sentinel://127.0.0.1:S1?sentinelServiceName=main&node=127.0.0.1:S2&node=…`.
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName=main",
            self.sentinels[0].port
        );
        for sentinel in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", sentinel.port));
        }
        url
    }

    /// The primary's port as the first sentinel that answers says.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let reply =
                RedisServer::command_on(s.port, &["SENTINEL", "get-master-addr-by-name", "main"])
                    .ok()?;
            // *2 $9 127.0.0.1 $5 PORT: the port is the last line.
            reply.lines().rfind(|l| !l.is_empty())?.parse().ok()
        })
    }

    /// Waits until the replica has acknowledged everything the primary had written when this
    /// was called (its replication offset). `WAIT` would not do from here: it waits for the
    /// writes of the connection that sends it, and this one wrote nothing.
    ///
    /// # Panics
    /// After `timeout`, or when no primary is known.
    pub fn wait_until_replicated(&self, timeout: Duration) {
        let primary = self.primary_port().expect("a sentinel names the primary");
        let field = |info: &str, name: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        let info = RedisServer::command_on(primary, &["INFO", "replication"]).expect("INFO");
        let written = field(&info, "master_repl_offset:").expect("the primary's offset");
        self.wait_until(timeout, "the replica caught up", |_| {
            RedisServer::command_on(primary, &["INFO", "replication"]).is_ok_and(|info| {
                // slave0:ip=127.0.0.1,port=P,state=online,offset=N,lag=0
                info.lines()
                    .filter(|l| l.starts_with("slave"))
                    .filter_map(|l| l.split(',').find_map(|kv| kv.strip_prefix("offset=")))
                    .filter_map(|v| v.trim().parse::<u64>().ok())
                    .any(|acked| acked >= written)
            })
        });
    }

    /// Kills the primary (SIGKILL) and returns its port.
    ///
    /// # Panics
    /// When no sentinel names a primary this harness started.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().expect("a sentinel names the primary");
        self.server_on(port).stop();
        port
    }

    /// Waits until the sentinels name another primary than `old` and it answers as a master;
    /// returns its port.
    ///
    /// # Panics
    /// After `timeout`.
    pub fn wait_for_promotion(&self, old: u16, timeout: Duration) -> u16 {
        let mut promoted = 0;
        self.wait_until(timeout, "a replica promoted", |h| match h.primary_port() {
            Some(port) if port != old => {
                promoted = port;
                RedisServer::command_on(port, &["INFO", "replication"])
                    .is_ok_and(|info| info.contains("role:master"))
            }
            _ => false,
        });
        promoted
    }

    /// Starts the killed server on `old` again, empty, as a replica of `primary`: the set has
    /// its replicas back (the sentinels find it through the primary).
    ///
    /// # Panics
    /// When it does not start.
    pub fn revive_as_replica(&mut self, old: u16, primary: u16) {
        let primary = primary.to_string();
        self.server_on(old).restart_with(&[
            "--replicaof",
            "127.0.0.1",
            &primary,
            "--repl-diskless-sync-delay",
            "0",
        ]);
    }

    /// The harness's data server on `port`.
    fn server_on(&mut self, port: u16) -> &mut RedisServer {
        server_on(&mut self.servers, port)
    }

    fn wait_until(&self, timeout: Duration, what: &str, done: impl FnMut(&Self) -> bool) {
        wait_until(self, timeout, what, done);
    }
}

/// The server of `servers` on `port`.
///
/// # Panics
/// When none is: the caller named a port the harness did not start.
fn server_on(servers: &mut [RedisServer], port: u16) -> &mut RedisServer {
    servers
        .iter_mut()
        .find(|s| s.port() == port)
        .expect("one of the harness's servers")
}

/// Polls `done` on `harness` every 50 ms.
///
/// # Panics
/// After `timeout`, naming `what` did not happen.
fn wait_until<T>(harness: &T, timeout: Duration, what: &str, mut done: impl FnMut(&T) -> bool) {
    let deadline = Instant::now() + timeout;
    while !done(harness) {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        pause(Duration::from_millis(50));
    }
}

/// Runs `redis-cli --cluster ARGS --cluster-yes` to its end.
///
/// # Panics
/// When redis-cli is missing or fails: the test cannot build its cluster.
fn redis_cli_cluster(args: &[&str]) {
    let output = Command::new("redis-cli")
        .arg("--cluster")
        .args(args)
        .arg("--cluster-yes")
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs; install it with `apt-get install redis-tools`");
    assert!(
        output.status.success(),
        "redis-cli --cluster {} failed: {}{}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One line of `CLUSTER NODES`, as far as the harness needs it.
struct ClusterNode {
    port: u16,
    master: bool,
    slots: Vec<std::ops::RangeInclusive<u16>>,
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <master> <ping> <pong> <epoch> <link>
/// <slot or range>...`; importing/migrating entries (`[...]`) are skipped. A failed master
/// (`fail` flag) is left out: it serves nothing.
fn cluster_nodes(reply: &str) -> Vec<ClusterNode> {
    reply
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let port = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
            let flags = fields.get(2)?;
            let master = flags.contains("master") && !flags.split(',').any(|f| f == "fail");
            let slots = fields
                .get(8..)
                .unwrap_or_default()
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
                    None => s.parse().ok().map(|slot| slot..=slot),
                })
                .collect();
            Some(ClusterNode {
                port,
                master,
                slots,
            })
        })
        .collect()
}

/// A command in RESP: an array of bulk strings.
fn resp_request(args: &[&str]) -> String {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    request
}

/// The integer of a RESP integer reply (`:N`).
fn integer(reply: &str) -> Option<i64> {
    reply.strip_prefix(':')?.trim().parse().ok()
}

/// A free loopback port `p` below 55535 such that `p + 10000` (Redis Cluster's bus port) is
/// free too. Probed by binding; a race with another process is handled by the caller's retry.
fn free_port_pair() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind to a free port");
        let port = listener.local_addr().expect("a bound address").port();
        if port < 55_535 && port != 6379 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
}

/// Waits between polls. The harness is synchronous and runs at test set-up, so blocking the thread
/// is what it means to do.
#[expect(
    clippy::disallowed_methods,
    reason = "synchronous set-up code, not an async worker"
)]
fn pause(duration: Duration) {
    std::thread::sleep(duration);
}
