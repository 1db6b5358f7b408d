//! The Redis [`TransactionStore`], through the `fred` client: the production store.
//!
//! Each step of the unit of work is one server-side Lua script, so recording and aggregating a
//! transaction is one network round trip and atomic. Scripts are loaded once and called by SHA;
//! after `SCRIPT FLUSH` or a restart they are loaded again transparently. Every key of a customer
//! shares one hash tag, so the scripts run unchanged on Redis Cluster. The key schema and the
//! cost of each request are in `docs/redis.md`.

mod keys;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use antifraud_domain::{
    Assessment, CommitOutcome, Fingerprint, Reception, RecordOutcome, StoreError, Transaction,
    TransactionStore, Window, WindowStat, WindowStats,
};
use async_trait::async_trait;
use fred::interfaces::ClientInterface as _;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand};
use time::OffsetDateTime;

pub use keys::CustomerKeys;

const RECORD_LUA: &str = include_str!("record.lua");
const COMMIT_LUA: &str = include_str!("commit.lua");

/// An hour and five minutes in µs: record.lua's index keeps running sums per hour and per
/// five-minute bucket.
const HOUR_US: i64 = 3_600_000_000;
const FIVE_MINUTES_US: i64 = 300_000_000;
/// How long a customer's keys outlive the retention after their last write: the accepted clock
/// skew (a transaction may be 5 minutes ahead) plus a margin.
const KEY_TTL_MARGIN: Duration = Duration::from_secs(10 * 60);

/// Connection settings.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://`, `rediss://` (TLS), `redis-cluster://` or `redis-sentinel://`, as fred parses
    /// them.
    pub url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Longest wait for one command, reconnection included; well inside the request budget.
    pub command_timeout: Duration,
    /// The password, when it is kept out of the URL (read from a file); it replaces any password
    /// in the URL.
    pub password: Option<String>,
    /// Replicas that must acknowledge a transaction and its assessment (Redis `WAIT`) before
    /// the store says they are saved; 0 answers once the primary holds them. Unconfirmed within
    /// `wait_timeout`: [`StoreError::Unavailable`], so the caller's answer is retry-safe.
    pub wait_replicas: u32,
    /// The longest `WAIT` for [`RedisSettings::wait_replicas`].
    pub wait_timeout: Duration,
    /// From how many retained events a customer's windows come from the index of running sums
    /// (see record.lua): below, from its events, read in one range, which costs Redis less than
    /// keeping the index for the customers who have a handful. 0 indexes every customer, as the
    /// tests do to run the index on short histories.
    pub index_from: usize,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("command_timeout", &self.command_timeout)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("index_from", &self.index_from)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .finish()
    }
}

impl RedisSettings {
    /// The defaults for `url`: a pool of 4, 50 ms per command, the index from 32 events.
    pub fn new(url: impl Into<String>) -> Self {
        RedisSettings {
            url: url.into(),
            pool_size: 4,
            command_timeout: Duration::from_millis(50),
            password: None,
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(50),
            // Measured with the script alone (docs/redis.md): a customer with one event costs
            // Redis about a quarter more with the index, one with 5,000 four times less.
            index_from: 32,
        }
    }
}

/// The Redis store. Cheap to share behind an `Arc`.
pub struct RedisStore {
    pool: Pool,
    record: Script,
    commit: Script,
    /// Redis's clock against ours, to give the scripts deadlines on Redis's own clock.
    clock: RedisClock,
    /// How long the client waits for one command: when it stops waiting, so must the script.
    command_timeout: Duration,
    /// [`RedisSettings::index_from`], as the record script's argument.
    index_from: String,
    /// [`RedisSettings::wait_replicas`] and [`RedisSettings::wait_timeout`].
    wait_replicas: u32,
    wait_timeout: Duration,
}

/// How far Redis's clock is from ours: measured with `TIME` when the store connects, or on its
/// first command if Redis was down then, with the round trip as its error. Unknown until
/// measured: scripts then get no deadline.
#[derive(Debug)]
struct RedisClock {
    /// Redis's time minus ours, µs; `i64::MIN` while unknown.
    offset_us: std::sync::atomic::AtomicI64,
    /// The measuring round trip, µs: the offset is known to within half of it.
    round_trip_us: std::sync::atomic::AtomicI64,
}

/// What a script's deadline keeps in hand for its reply to reach the caller before the caller
/// gives up: a script that starts before it runs to its end at once (scripts are atomic).
const REPLY_MARGIN_US: i64 = 5_000;

impl RedisClock {
    fn is_known(&self) -> bool {
        self.offset_us.load(std::sync::atomic::Ordering::Relaxed) != i64::MIN
    }

    fn unknown() -> Self {
        RedisClock {
            offset_us: std::sync::atomic::AtomicI64::new(i64::MIN),
            round_trip_us: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// `deadline` on Redis's clock, as a script argument, less the reply's margin and the
    /// offset's error; `"0"` (no deadline) while the offset is unknown.
    fn deadline_arg(&self, deadline: Instant) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.is_known() {
            return "0".to_owned();
        }
        let offset = self.offset_us.load(Relaxed);
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .as_micros() as i64;
        let ours = micros(OffsetDateTime::now_utc()) + remaining;
        let slack = REPLY_MARGIN_US + self.round_trip_us.load(Relaxed) / 2;
        (ours + offset - slack).to_string()
    }
}

impl RedisStore {
    /// Builds the pool and starts connecting. Does not wait for Redis to be reachable: until it
    /// is, commands fail with [`StoreError::Unavailable`] after the command timeout and the
    /// pool keeps reconnecting with backoff.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when the URL or the settings are invalid.
    pub fn connect(settings: &RedisSettings) -> Result<RedisStore, StoreError> {
        let mut config =
            Config::from_url(&settings.url).map_err(|e| StoreError::Internal(Box::new(e)))?;
        // A Redis that is down when the service starts is an outage like any other: keep
        // reconnecting under the policy instead of giving up after the first attempt.
        config.fail_fast = false;
        if let Some(password) = &settings.password {
            config.password = Some(password.clone());
        }
        let pool = Builder::from_config(config)
            .with_performance_config(|performance| {
                performance.default_command_timeout = settings.command_timeout;
            })
            .with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(1);
                connection.internal_command_timeout = Duration::from_secs(1);
                // fred counts each write of a command as an attempt, a rewrite after a cluster's
                // MOVED or ASK included, and a reshard can bounce a command more than once
                // while nodes learn the slot's new owner: with one attempt, every command to a
                // slot being moved failed (503). The command timeout bounds the whole, however
                // many; writing a script again is safe, as it is idempotent.
                connection.max_command_attempts = 10;
                connection.max_redirections = 10;
                // Commands queued while disconnected are bounded; beyond that they fail at once.
                connection.max_command_buffer_len = 10_000;
            })
            // Reconnect forever, 5 ms doubling up to a ceiling well inside the command timeout.
            // Commands queue while a connection is down, so once Redis is back every connection
            // of every worker is up again before a queued command times out: no request fails
            // after the first one succeeds. (With a ceiling of a second, a worker whose
            // connections were still waiting out their backoff answered 503 after another
            // worker's first 200.) Attempts stay cheap during an outage: a closed port refuses
            // at once, and an unreachable host is paced by the one-second connection timeout.
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                5,
                reconnect_ceiling(settings.command_timeout),
                2,
            ))
            .build_pool(settings.pool_size.max(1))
            .map_err(|e| StoreError::Internal(Box::new(e)))?;
        pool.connect();
        Ok(RedisStore {
            pool,
            record: Script::from_lua(RECORD_LUA),
            commit: Script::from_lua(COMMIT_LUA),
            clock: RedisClock::unknown(),
            command_timeout: settings.command_timeout,
            index_from: settings.index_from.to_string(),
            wait_replicas: settings.wait_replicas,
            wait_timeout: settings.wait_timeout,
        })
    }

    /// With [`RedisSettings::wait_replicas`], waits on `client`, the connection that just ran a
    /// script for `keys`' customer, until that many replicas acknowledge everything it wrote
    /// (Redis `WAIT`, on the customer's own node in a cluster), at most the wait timeout or what
    /// is left before `deadline`. `WAIT` covers only the sender's own writes, and the replication
    /// stream is in order: after a script that wrote, that covers this transaction's record and
    /// assessment wherever they were written; after one that only read (a replay, an assessment
    /// saved before), a marker is written first on the same connection.
    ///
    /// `WAIT` on another connection than the script's confirms nothing about the script's
    /// writes, and fred replaces a connection transparently: a failover between the script and
    /// the `WAIT` put the script on the old primary and the `WAIT` on the new one, which
    /// answered at once. `before` is the client's connections (server and `CLIENT ID`) when the
    /// script was sent ([`RedisStore::connections`]); when they are not the same after the
    /// `WAIT`, the writes' fate is unknown. `cargo xtask chaos --redis sentinel` lost answered
    /// transactions this way (4 in two runs of five) until this check.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when fewer replicas acknowledged in time, the connection
    /// changed meanwhile, or Redis failed: the answer is then a retry-safe 503, and the retry
    /// confirms again.
    async fn confirm_replicated(
        &self,
        client: &Client,
        before: Option<Connections>,
        keys: &CustomerKeys,
        wrote: bool,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let Some(before) = before else {
            return Ok(());
        };
        let slot = fred::util::redis_keyslot(keys.transactions.as_bytes());
        if !wrote {
            let _: Value = client
                .custom(
                    CustomCommand::new_static("SET", ClusterHash::Custom(slot), false),
                    vec![
                        keys.written.clone(),
                        "1".to_owned(),
                        "PX".to_owned(),
                        "60000".to_owned(),
                    ],
                )
                .await
                .map_err(classify)?;
        }
        let wait = self
            .wait_timeout
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        let acknowledged: i64 = client
            .with_options(&Options {
                // WAIT blocks for its own timeout: the command's must not cut it short.
                timeout: Some(wait + self.command_timeout),
                ..Options::default()
            })
            .custom(
                CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false),
                vec![self.wait_replicas.to_string(), wait.as_millis().to_string()],
            )
            .await
            .map_err(classify)?;
        if acknowledged < i64::from(self.wait_replicas) {
            return Err(StoreError::Unavailable(
                format!(
                    "{acknowledged} of {} replicas acknowledged within {wait:?}",
                    self.wait_replicas
                )
                .into(),
            ));
        }
        if client.connection_ids() != before {
            return Err(StoreError::Unavailable(
                "the connection to Redis was replaced between the write and WAIT: how many \
                 replicas hold the write is unknown"
                    .into(),
            ));
        }
        Ok(())
    }

    /// With [`RedisSettings::wait_replicas`], `client`'s connections as they are now, for
    /// [`RedisStore::confirm_replicated`] to see whether a script and its `WAIT` shared one.
    fn connections(&self, client: &Client) -> Option<Connections> {
        (self.wait_replicas > 0).then(|| client.connection_ids())
    }

    /// Waits until every connection of the pool is up, at most `timeout`, then loads the
    /// scripts, so that the first requests do not pay for `NOSCRIPT` and a reload.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis cannot be reached in time.
    pub async fn wait_for_connect(&self, timeout: Duration) -> Result<(), StoreError> {
        let ready = async {
            self.pool.wait_for_connect().await?;
            self.record.load(self.pool.next_connected()).await?;
            self.commit.load(self.pool.next_connected()).await?;
            self.measure_clock().await
        };
        match tokio::time::timeout(timeout, ready).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(StoreError::Unavailable(
                format!("no connection to Redis within {timeout:?}").into(),
            )),
        }
    }

    /// The deadline argument of a script sent now for a request due by `deadline`: the
    /// request's deadline, or the command timeout if that comes first. The client stops waiting
    /// for the command at the timeout, and the service answers without it (503, or degraded
    /// "not recorded"); a script that Redis starts later (it waited behind a pause) must find
    /// that it is too late.
    async fn script_deadline(&self, deadline: Instant) -> String {
        let clock = self.measured_clock().await;
        clock.deadline_arg(deadline.min(Instant::now() + self.command_timeout))
    }

    /// A server command (`TIME`, `CONFIG`…), on any node.
    async fn server_command(
        &self,
        name: &'static str,
        args: Vec<&str>,
    ) -> Result<Vec<String>, Error> {
        self.pool
            .next_connected()
            .custom(
                CustomCommand::new_static(name, ClusterHash::Random, false),
                args,
            )
            .await
    }

    /// Measures Redis's clock against ours (`TIME`), for the scripts' deadlines.
    async fn measure_clock(&self) -> Result<(), Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let before = micros(OffsetDateTime::now_utc());
        let time = self.server_command("TIME", Vec::new()).await?;
        let after = micros(OffsetDateTime::now_utc());
        let parse = |i: usize| time.get(i).and_then(|t| t.parse::<i64>().ok());
        let (Some(seconds), Some(micro)) = (parse(0), parse(1)) else {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("TIME answered {time:?}"),
            ));
        };
        self.clock
            .offset_us
            .store(seconds * 1_000_000 + micro - (before + after) / 2, Relaxed);
        self.clock.round_trip_us.store(after - before, Relaxed);
        Ok(())
    }

    /// The clock, measured now if it could not be when the store connected (Redis was down):
    /// one round trip, once. While it cannot be measured, scripts get no deadline.
    async fn measured_clock(&self) -> &RedisClock {
        if !self.clock.is_known() {
            let _ = self.measure_clock().await;
        }
        &self.clock
    }

    /// Redis's `maxmemory-policy`. Anything but `noeviction` lets Redis delete a customer's key
    /// under memory pressure, which loses transactions and can let a retry count twice.
    ///
    /// # Errors
    /// When Redis cannot be reached, or refuses `CONFIG` (as some managed services do).
    pub async fn eviction_policy(&self) -> Result<String, StoreError> {
        let reply = self
            .server_command("CONFIG", vec!["GET", "maxmemory-policy"])
            .await
            .map_err(classify)?;
        reply
            .get(1)
            .cloned()
            .ok_or_else(|| internal(format!("CONFIG GET maxmemory-policy answered {reply:?}")))
    }

    /// Closes every connection.
    pub async fn quit(&self) {
        let _ = self.pool.quit().await;
    }
}

/// The longest wait between two reconnection attempts: half the command timeout, from 5 to
/// 25 ms.
fn reconnect_ceiling(command_timeout: Duration) -> u32 {
    (command_timeout.as_millis() / 2).clamp(5, 25) as u32
}

/// A client's connections: each server's address and the connection's `CLIENT ID` there.
type Connections = std::collections::HashMap<fred::types::config::Server, i64>;

/// A fred error as a store error. Errors that say the data, a script or this code is wrong are
/// internal; everything else (I/O, timeouts, routing while disconnected, cluster churn, a Redis
/// that is loading or busy) is an outage that a retry may outlive. In doubt, outage: it answers
/// 503 with `Retry-After`, and the error is logged and counted either way.
fn classify(error: Error) -> StoreError {
    let details = error.details();
    let broken = matches!(
        error.kind(),
        ErrorKind::Parse
            | ErrorKind::InvalidArgument
            | ErrorKind::InvalidCommand
            | ErrorKind::Url
            | ErrorKind::Config
            | ErrorKind::Protocol
    ) || details.starts_with("ERR")
        || details.starts_with("WRONGTYPE");
    if broken {
        StoreError::Internal(Box::new(error))
    } else {
        StoreError::Unavailable(Box::new(error))
    }
}

/// The saved assessment a script sent back after its verdict: `[verdict, json]`.
fn saved_assessment(reply: &[String]) -> Result<Assessment, StoreError> {
    let json = reply
        .get(1)
        .ok_or_else(|| internal(format!("no saved assessment in {reply:?}")))?;
    serde_json::from_str(json).map_err(|e| StoreError::Internal(Box::new(e)))
}

/// A script that Redis ran only after the request's deadline, when the service had given up on
/// it: it did nothing, so what the service answered meanwhile stays true.
fn expired() -> StoreError {
    StoreError::Unavailable(
        "Redis ran the command after the request's deadline; it did nothing".into(),
    )
}

fn internal(message: impl Into<String>) -> StoreError {
    StoreError::Internal(message.into().into())
}

/// Microseconds since the Unix epoch: exact in a Redis score (an `f64`) for any date the service
/// accepts.
fn micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[async_trait]
impl TransactionStore for RedisStore {
    async fn record(
        &self,
        tx: &Transaction,
        fingerprint: &Fingerprint,
        reception: &Reception,
    ) -> Result<RecordOutcome, StoreError> {
        let keys = CustomerKeys::new(tx.customer_id());
        let ts = micros(tx.timestamp());
        let horizon = micros(reception.horizon);
        // The keys live as long as the retention (measured from now), and a little more.
        let ttl = (reception.now - reception.horizon).whole_milliseconds()
            + KEY_TTL_MARGIN.as_millis() as i128;
        // Every number the script needs that does not depend on stored data, as the text it
        // needs: formatting numbers in Lua is a large share of the script's cost in Redis.
        let mut args: Vec<String> = Vec::with_capacity(15);
        args.extend([
            tx.transaction_id().as_str().to_owned(),
            hex(&fingerprint.0),
            ts.to_string(),
            // Rust prints the shortest text that reads back as the same f64, and Lua's tonumber
            // reads it back so: the script counts the same mills as `Transaction::mills`.
            tx.amount().to_string(),
            horizon.to_string(),
            ttl.to_string(),
            format!("p{}", ts.div_euclid(HOUR_US)),
            format!("q{}", ts.div_euclid(FIVE_MINUTES_US)),
        ]);
        // Where each window starts, longest first, clamped at the retention horizon (which an
        // accepted transaction's windows never reach: the retention spans them).
        args.extend(Window::ALL.iter().rev().map(|w| {
            (ts - w.duration().whole_microseconds() as i64)
                .max(horizon)
                .to_string()
        }));
        args.push(if reception.accept_new { "1" } else { "0" }.to_owned());
        args.push(self.script_deadline(reception.deadline).await);
        args.push(self.index_from.clone());
        let client = self.pool.next_connected();
        let connections = self.connections(client);
        let reply: Vec<String> = self
            .record
            .evalsha_with_reload(client, keys.record(), args)
            .await
            .map_err(classify)?;
        match reply.first().map(String::as_str) {
            Some("conflict") => Ok(RecordOutcome::Conflict),
            Some("too_late") => Ok(RecordOutcome::TooLate),
            Some("expired") => Err(expired()),
            Some("replayed") => {
                let saved = saved_assessment(&reply)?;
                // A replay answers 200 as the first answer did: only once it is as durable.
                self.confirm_replicated(client, connections, &keys, false, reception.deadline)
                    .await?;
                Ok(RecordOutcome::Replayed(Box::new(saved)))
            }
            Some("recorded") if reply.len() == 9 => {
                let mut stats = [WindowStat::default(); 4];
                for (i, stat) in stats.iter_mut().enumerate() {
                    let count = &reply[1 + 2 * i];
                    let sum = &reply[2 + 2 * i];
                    *stat = WindowStat::exact(
                        count
                            .parse()
                            .map_err(|_| internal(format!("count {count:?}")))?,
                        sum.parse()
                            .map_err(|_| internal(format!("sum in mills {sum:?}")))?,
                    );
                }
                Ok(RecordOutcome::Recorded(WindowStats::from_windows(stats)))
            }
            _ => Err(internal(format!(
                "unexpected reply from the record script: {reply:?}"
            ))),
        }
    }

    async fn commit(
        &self,
        tx: &Transaction,
        assessment: &Assessment,
        deadline: Instant,
    ) -> Result<CommitOutcome, StoreError> {
        let keys = CustomerKeys::new(tx.customer_id());
        let json =
            serde_json::to_string(assessment).map_err(|e| StoreError::Internal(Box::new(e)))?;
        let args = vec![
            tx.transaction_id().as_str().to_owned(),
            json,
            self.script_deadline(deadline).await,
        ];
        let client = self.pool.next_connected();
        let connections = self.connections(client);
        let reply: Vec<String> = self
            .commit
            .evalsha_with_reload(client, keys.commit(), args)
            .await
            .map_err(classify)?;
        match reply.first().map(String::as_str) {
            Some("saved") => {
                self.confirm_replicated(client, connections, &keys, true, deadline)
                    .await?;
                Ok(CommitOutcome::Saved)
            }
            Some("already") => {
                let saved = saved_assessment(&reply)?;
                self.confirm_replicated(client, connections, &keys, false, deadline)
                    .await?;
                Ok(CommitOutcome::AlreadySaved(saved))
            }
            // Evicted, flushed or lost in a failover since `record`: a retry records it again.
            Some("missing") => Err(StoreError::Lost),
            Some("expired") => Err(expired()),
            _ => Err(internal(format!(
                "unexpected reply from the commit script: {reply:?}"
            ))),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        let _: String = self
            .pool
            .next_connected()
            .ping(None)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_url_scheme_is_understood() {
        for (url, tls) in [
            ("redis://127.0.0.1:7000/0", false),
            ("rediss://user:secret@127.0.0.1:7000", true),
            ("redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001", false),
            ("rediss-cluster://127.0.0.1:7000?node=127.0.0.1:7001", true),
            (
                "redis-sentinel://127.0.0.1:26379?sentinelServiceName=main&node=127.0.0.1:26380",
                false,
            ),
        ] {
            let config = Config::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(config.tls.is_some(), tls, "{url}");
        }
    }

    #[test]
    fn saved_scores_come_back_bit_for_bit() {
        // An ONNX model's f32 probability widened to f64 once came back one ulp off through
        // serde_json's default (fast, not always correctly rounded) float parser, and a replay
        // differed from the original answer. Probe that value and many like it.
        let mut values = vec![f64::from(9.083_748e-5_f32), 0.1, 1.0 / 3.0, 5e-324];
        let mut x: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            values.push(f64::from(f32::from_bits(0x3000_0000 + (x >> 4))));
        }
        for v in values {
            let text = serde_json::to_string(&v).expect("a finite number");
            let back: f64 = serde_json::from_str(&text).expect("parses");
            assert_eq!(back.to_bits(), v.to_bits(), "{v:e} written as {text}");
        }
    }

    #[test]
    fn settings_never_print_the_url() {
        let debug = format!("{:?}", RedisSettings::new("redis://:hunter2@10.0.0.1:6379"));
        assert!(
            !debug.contains("hunter2") && !debug.contains("10.0.0.1"),
            "{debug}"
        );
    }

    #[test]
    fn outages_are_unavailable_and_bugs_internal() {
        let unavailable = [
            Error::new(ErrorKind::IO, "connection reset"),
            Error::new(ErrorKind::Timeout, "Request timed out."),
            Error::new(ErrorKind::Unknown, "Failed to route command."),
            Error::new(ErrorKind::Canceled, "Canceled."),
            Error::new(
                ErrorKind::Unknown,
                "LOADING Redis is loading the dataset in memory",
            ),
            Error::new(ErrorKind::Unknown, "BUSY Redis is busy running a script."),
        ];
        for error in unavailable {
            assert!(matches!(classify(error), StoreError::Unavailable(_)));
        }
        let internal = [
            Error::new(ErrorKind::Parse, "Could not convert to string."),
            Error::new(
                ErrorKind::Unknown,
                "ERR Error running script (call to f_1234): bad argument",
            ),
            Error::new(
                ErrorKind::Unknown,
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            Error::new(ErrorKind::InvalidArgument, "Invalid argument."),
        ];
        for error in internal {
            assert!(matches!(classify(error), StoreError::Internal(_)));
        }
    }
}
