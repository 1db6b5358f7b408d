//! The composition root: picks the adapters the settings name, wires them into the scoring use
//! case and binds the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpServer, middleware, web};
use antifraud_domain::{Clock, FraudModel, RuleSet, ScoringService, TransactionStore};
use antifraud_store_memory::MemoryStore;
use antifraud_store_redis::{RedisSettings, RedisStore};
use anyhow::Context;
use utoipa::OpenApi;

use crate::admission::Admission;
use crate::config::{Settings, StoreSettings};
use crate::limits::InFlightLimit;
use crate::metered::{MeteredModel, MeteredStore};
use crate::metrics::{Metrics, metrics_endpoint, track_http};
use crate::model::ReloadableModel;
use crate::reload::{Reloadable, reload_on_hangup};
use crate::routes::{self, ApiDoc, Intake, OpenApiJson, Scoring, ServiceInfo, SwaggerUi};
use crate::rules::ReloadableRules;
use crate::system_clock::SystemClock;
use crate::telemetry;

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long an idle keep-alive connection stays open. Short, because open connections also hold
/// a graceful shutdown until they close.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How often the embedded store deletes what fell out of the retention.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long start-up waits for Redis before serving anyway.
const REDIS_CONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long a worker waits for its own Redis connections before taking requests (the
/// start-up wait above has already seen Redis up, or reported it down).
const WORKER_CONNECT_WAIT: Duration = Duration::from_secs(1);
/// How long in-flight requests may take to finish after SIGTERM/SIGINT.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// Where each HTTP worker gets its scoring use case.
#[derive(Clone)]
enum WorkersStore {
    /// One use case over the embedded store, shared.
    Shared(web::Data<Scoring>),
    /// A use case per worker, over Redis connections of its own.
    OwnRedis(RedisSettings),
}

/// Builds a scoring use case over a store, with the chosen model, the clock and the policy; the
/// store is wrapped in its metrics decorator.
type ScoringOver = Arc<dyn Fn(Arc<dyn TransactionStore>) -> Scoring + Send + Sync>;

/// The store the settings chose, as the workers get it.
struct Store {
    workers: WorkersStore,
    /// The embedded store, for the sweeper.
    memory: Option<Arc<MemoryStore>>,
    /// The start-up connection to Redis, closed at shutdown.
    redis: Option<Arc<RedisStore>>,
}

/// What every worker's [`create_app`] shares.
#[derive(Clone)]
struct ApiState {
    store: WorkersStore,
    scoring_over: ScoringOver,
    metrics: web::Data<Metrics>,
    openapi: web::Data<OpenApiJson>,
    swagger: web::Data<SwaggerUi>,
    service_info: web::Data<ServiceInfo>,
    admission: web::Data<Admission>,
    intake: web::Data<Intake>,
    /// Whether `/metrics` is served on the API's listener.
    metrics_here: bool,
}

/// The service, bound to its address and ready to run.
pub struct Application {
    address: SocketAddr,
    server: Server,
    /// The separate `/metrics` listener, when configured.
    metrics_server: Option<(SocketAddr, Server)>,
    memory: Option<Arc<MemoryStore>>,
    redis: Option<Arc<RedisStore>>,
    /// What SIGHUP reloads.
    reloadable: Reloadable,
    /// How long history is kept, and the clock it is kept by, for the embedded store's sweeper.
    retention: Duration,
    clock: SystemClock,
}

impl Application {
    /// Builds the adapters and binds the listeners: the one builder, used by `main` and by the
    /// API tests. Binding here, before running, lets callers (tests) ask for port 0 and read the
    /// real port from [`Application::port`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        antifraud_model::install_crypto_provider();
        let metrics = Arc::new(Metrics::new());
        // Rules first: a bad file stops start-up in one line, before the model logs its own.
        let rules = Arc::new(ReloadableRules::load(settings.rules.as_deref())?);
        metrics.rules_in_force(&*rules.current());
        let model = Arc::new(ReloadableModel::load(
            &settings.model,
            settings.policy.model_timeout(),
        )?);
        let scoring_over = scoring_over(&settings, &model, &rules, &metrics);
        let store = open_store(&settings.store, &scoring_over).await?;
        let state = ApiState {
            store: store.workers.clone(),
            scoring_over,
            metrics: web::Data::from(Arc::clone(&metrics)),
            openapi: web::Data::new(OpenApiJson(
                ApiDoc::openapi()
                    .to_json()
                    .context("rendering the OpenAPI document")?,
            )),
            swagger: web::Data::new(SwaggerUi::new()),
            service_info: web::Data::new(ServiceInfo::new(settings.metrics_listen.is_none())),
            admission: web::Data::new(Admission::new(
                settings.api_keys.clone(),
                settings.rate_limit,
            )),
            intake: web::Data::new(Intake {
                max_body_bytes: MAX_BODY_BYTES,
                body_timeout: settings.request_timeout,
                in_flight: InFlightLimit::new(settings.max_in_flight),
            }),
            metrics_here: settings.metrics_listen.is_none(),
        };
        let (address, server) = api_server(&settings, state)?;
        let metrics_server = match settings.metrics_listen {
            None => None,
            Some(listen) => Some(metrics_server(
                listen,
                web::Data::from(Arc::clone(&metrics)),
            )?),
        };
        announce(&settings, address, &model);
        Ok(Application {
            address,
            server,
            metrics_server,
            memory: store.memory,
            redis: store.redis,
            reloadable: Reloadable {
                model,
                rules,
                metrics,
            },
            retention: settings.policy.retention(),
            clock: SystemClock::of(&settings),
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Where `/metrics` is served when it has a listener of its own.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|(address, _)| *address)
    }

    /// Serves until SIGTERM or SIGINT, then stops accepting connections, lets in-flight requests
    /// finish (for up to 10 s) and closes the store.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let mut handles = vec![self.server.handle()];
        handles.extend(self.metrics_server.as_ref().map(|(_, s)| s.handle()));
        let stopper = tokio::spawn(async move {
            let signal = stop_signal().await;
            tracing::info!(
                signal,
                "stopping: no new connections, finishing requests in flight"
            );
            for handle in handles {
                handle.stop(true).await;
            }
        });
        let (retention, clock) = (self.retention, self.clock);
        let sweeper = self.memory.map(|memory| {
            tokio::spawn(async move {
                let mut every = tokio::time::interval(SWEEP_INTERVAL);
                loop {
                    every.tick().await;
                    // The scoring's clock: a shifted one prunes where the requests prune.
                    memory.purge_expired(clock.now() - retention);
                }
            })
        });
        let reloader = tokio::spawn(reload_on_hangup(self.reloadable));
        let result = match self.metrics_server {
            None => self.server.await,
            Some((_, metrics_server)) => {
                let (result, metrics_result) = tokio::join!(self.server, metrics_server);
                result.and(metrics_result)
            }
        };
        stopper.abort();
        reloader.abort();
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        // In-flight requests are done: close Redis cleanly.
        if let Some(redis) = self.redis {
            redis.quit().await;
        }
        result
    }
}

/// Waits for SIGTERM (orchestrators) or SIGINT (Ctrl-C) and names it. Both stop gracefully.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM and SIGINT; stop the service with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// The use case's constructor: the model (timed), the rules, the clock and the policy are the
/// same for every store; the store is timed too.
fn scoring_over(
    settings: &Settings,
    model: &Arc<ReloadableModel>,
    rules: &Arc<ReloadableRules>,
    metrics: &Arc<Metrics>,
) -> ScoringOver {
    let metered: Arc<dyn FraudModel> = Arc::new(MeteredModel {
        inner: model.clone(),
        metrics: Arc::clone(metrics),
    });
    let rules: Arc<dyn RuleSet> = Arc::clone(rules) as Arc<dyn RuleSet>;
    let (policy, metrics) = (settings.policy, Arc::clone(metrics));
    let clock = SystemClock::of(settings);
    let system = match settings.store {
        StoreSettings::Embedded => "memory",
        StoreSettings::Redis(_) => "redis",
    };
    Arc::new(move |store: Arc<dyn TransactionStore>| -> Scoring {
        let store: Arc<dyn TransactionStore> = Arc::new(MeteredStore {
            inner: store,
            system,
            metrics: Arc::clone(&metrics),
        });
        ScoringService::new(store, Arc::clone(&metered), clock, policy)
            .with_rules(Arc::clone(&rules))
    })
}

/// The store. The embedded one is one, shared by every worker. With Redis, each worker thread
/// gets connections of its own, created on (and driven by) its own runtime: a command and its
/// reply never cross threads. Through one shared pool, every command woke the thread that owned
/// the connection and the reply woke the worker back (see docs/benchmarks.md).
async fn open_store(settings: &StoreSettings, scoring_over: &ScoringOver) -> anyhow::Result<Store> {
    match settings {
        StoreSettings::Embedded => {
            let memory = Arc::new(MemoryStore::new());
            let scoring = web::Data::new(scoring_over(memory.clone()));
            Ok(Store {
                workers: WorkersStore::Shared(scoring),
                memory: Some(memory),
                redis: None,
            })
        }
        StoreSettings::Redis(redis_settings) => {
            // One connection to check the settings, wait for Redis and load the scripts at
            // start-up and to say goodbye at shutdown; requests use the workers' own.
            let start_up = RedisSettings {
                pool_size: 1,
                ..redis_settings.clone()
            };
            let redis = Arc::new(
                RedisStore::connect(&start_up)
                    .context("--redis-url (ANTIFRAUD_REDIS_URL): invalid Redis settings")?,
            );
            // Start even when Redis is down: readiness says so, requests get the failure
            // policy, and the pool keeps reconnecting.
            match redis.wait_for_connect(REDIS_CONNECT_WAIT).await {
                Ok(()) => warn_unless_noeviction(&redis).await,
                Err(error) => {
                    tracing::warn!(%error, "Redis is not reachable yet; the pool keeps trying");
                }
            }
            Ok(Store {
                workers: WorkersStore::OwnRedis(redis_settings.clone()),
                memory: None,
                redis: Some(redis),
            })
        }
    }
}

/// Redis must never evict a customer's keys: an evicted key loses transactions, and an evicted
/// idempotency entry lets a retry count twice. Says so at start-up when its policy allows it.
async fn warn_unless_noeviction(redis: &RedisStore) {
    match redis.eviction_policy().await {
        Ok(policy) if policy == "noeviction" => {}
        Ok(policy) => tracing::warn!(
            maxmemory_policy = %policy,
            "Redis may evict keys under memory pressure, which loses transactions and can count \
             a retry twice; set `maxmemory-policy noeviction` (see docs/redis.md)"
        ),
        Err(error) => tracing::info!(
            %error,
            "cannot read Redis's maxmemory-policy; it must be noeviction (see docs/redis.md)"
        ),
    }
}

/// One worker's application: its scoring use case, the shared state, the middleware and the
/// routing table.
fn create_app(
    state: ApiState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let ApiState {
        store,
        scoring_over,
        metrics,
        openapi,
        swagger,
        service_info,
        admission,
        intake,
        metrics_here,
    } = state;
    let app = match store {
        WorkersStore::Shared(scoring) => App::new().app_data(scoring),
        // Built as the worker starts, on its thread; it takes requests once connected (or once
        // the wait is over: the pool keeps trying, as at start-up).
        WorkersStore::OwnRedis(redis_settings) => App::new().data_factory(move || {
            let (redis_settings, scoring_over) =
                (redis_settings.clone(), Arc::clone(&scoring_over));
            async move {
                let redis = RedisStore::connect(&redis_settings)
                    .expect("the same settings connected at start-up");
                if let Err(error) = redis.wait_for_connect(WORKER_CONNECT_WAIT).await {
                    tracing::warn!(%error, "a worker's Redis connections are not up yet");
                }
                Ok::<_, std::convert::Infallible>(scoring_over(Arc::new(redis)))
            }
        }),
    };
    app
        // Admission is mounted by the routing table, inside these: refused requests are counted
        // and traced too.
        .wrap(middleware::from_fn(track_http))
        // The request's span: W3C `traceparent` from the caller becomes its parent.
        .wrap(middleware::from_fn(telemetry::request_span))
        .app_data(metrics)
        .app_data(openapi)
        .app_data(swagger)
        .app_data(service_info)
        .app_data(admission)
        .app_data(intake)
        .configure(|cfg| routes::configure(cfg, metrics_here))
        .default_service(web::to(routes::not_found))
}

/// The API's server on its listener.
fn api_server(settings: &Settings, state: ApiState) -> anyhow::Result<(SocketAddr, Server)> {
    let listener = TcpListener::bind(settings.listen).with_context(|| {
        format!(
            "--listen (ANTIFRAUD_LISTEN): cannot listen on {}",
            settings.listen
        )
    })?;
    let address = listener.local_addr()?;
    let server = HttpServer::new(move || create_app(state.clone()))
        // Slow clients: the head must arrive within the request timeout (the body has its own
        // deadline in the handler), idle connections close after the keep-alive.
        .client_request_timeout(settings.request_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        .keep_alive(KEEP_ALIVE)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        // Signals are ours (see `run_until_stopped`): actix would stop abruptly on SIGINT.
        .disable_signals()
        .listen(listener)?
        .run();
    Ok((address, server))
}

/// `/metrics` on a listener of its own, without keys (it is meant for a private network).
fn metrics_server(
    listen: SocketAddr,
    metrics: web::Data<Metrics>,
) -> anyhow::Result<(SocketAddr, Server)> {
    let listener = TcpListener::bind(listen).with_context(|| {
        format!("--metrics-listen (ANTIFRAUD_METRICS_LISTEN): cannot listen on {listen}")
    })?;
    let bound = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(metrics.clone())
            .service(routes::get_only(
                "/metrics",
                web::get().to(metrics_endpoint),
            ))
            .default_service(web::to(routes::not_found))
    })
    .workers(1)
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok((bound, server))
}

/// The start-up log: who may call, and what serves.
fn announce(settings: &Settings, address: SocketAddr, model: &ReloadableModel) {
    if settings.api_keys.is_empty() {
        tracing::warn!(
            "no API keys configured: the API is open to anyone who can reach {address} \
             (loopback only); set --api-keys-file or ANTIFRAUD_API_KEYS to require keys"
        );
    } else {
        tracing::info!(
            keys = settings.api_keys.len(),
            key_ids = ?settings.api_keys,
            "API keys required"
        );
    }
    let serving = model.identity();
    tracing::info!(
        %address,
        store = match settings.store {
            StoreSettings::Embedded => "embedded",
            StoreSettings::Redis(_) => "redis",
        },
        store_failure_policy = ?settings.policy.store_failure(),
        model.name = %serving.name,
        model.version = %serving.version,
        deadline_ms = settings.policy.deadline().as_millis() as u64,
        model_timeout_ms = settings.policy.model_timeout().as_millis() as u64,
        default_score = settings.policy.default_score(),
        fraud_threshold = settings.policy.fraud_threshold(),
        max_lateness_s = settings.policy.max_lateness().as_secs(),
        config_file = settings.config_file.as_ref().map(|path| path.display().to_string()),
        "antifraud listening"
    );
    if !settings.clock_offset.is_zero() {
        tracing::warn!(
            clock_offset_ms = settings.clock_offset.whole_milliseconds() as i64,
            "this instance's clock is shifted: a setting for fault-injection runs only"
        );
    }
}
