//! The composition root: picks the adapters the settings name, wires them into the scoring use
//! case and binds the HTTP server.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use antifraud_domain::{FraudModel, ScoringService, TransactionStore};
use antifraud_memory::MemoryStore;
use antifraud_redis::RedisStore;
use anyhow::Context;
use time::OffsetDateTime;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;

use crate::config::{Settings, StoreSettings};
use crate::metered::{MeteredModel, MeteredStore};
use crate::metrics::{Metrics, track_http};
use crate::model::{ReloadableModel, reload_on_hangup};
use crate::routes::{self, ApiDoc, OpenApiJson};
use crate::system_clock::SystemClock;

/// Largest accepted request body.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How often the embedded store deletes what fell out of the retention.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long start-up waits for Redis before serving anyway.
const REDIS_CONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long in-flight requests may take to finish after SIGTERM/SIGINT.
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;

/// The service, bound to its address and ready to run.
pub struct Application {
    address: SocketAddr,
    server: Server,
    memory: Option<Arc<MemoryStore>>,
    redis: Option<Arc<RedisStore>>,
    model: Arc<ReloadableModel>,
}

impl Application {
    /// Builds the adapters and binds the listener. Binding here, before running, lets callers
    /// (tests) ask for port 0 and read the real port from [`Application::port`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let (store, memory, redis): (Arc<dyn TransactionStore>, _, _) = match &settings.store {
            StoreSettings::Embedded => {
                let memory = Arc::new(MemoryStore::new());
                (memory.clone(), Some(memory), None)
            }
            StoreSettings::Redis(redis_settings) => {
                let redis = Arc::new(
                    RedisStore::connect(redis_settings)
                        .context("--redis-url (ANTIFRAUD_REDIS_URL): invalid Redis settings")?,
                );
                // Start even when Redis is down: readiness says so, requests get the failure
                // policy, and the pool keeps reconnecting.
                if let Err(error) = redis.wait_for_connect(REDIS_CONNECT_WAIT).await {
                    tracing::warn!(%error, "Redis is not reachable yet; the pool keeps trying");
                }
                (redis.clone(), None, Some(redis))
            }
        };
        antifraud_model::install_crypto_provider();
        let model = Arc::new(ReloadableModel::load(
            &settings.model,
            settings.policy.model_timeout(),
        )?);
        let serving = model.identity();
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn TransactionStore> = Arc::new(MeteredStore {
            inner: store,
            system: if memory.is_some() { "memory" } else { "redis" },
            metrics: Arc::clone(&metrics),
        });
        let metered: Arc<dyn FraudModel> = Arc::new(MeteredModel {
            inner: model.clone(),
            metrics: Arc::clone(&metrics),
        });
        let metrics = web::Data::from(metrics);
        let scoring = web::Data::new(ScoringService::new(
            store,
            metered,
            SystemClock,
            settings.policy,
        ));
        let openapi = web::Data::new(OpenApiJson(
            ApiDoc::openapi()
                .to_json()
                .context("rendering the OpenAPI document")?,
        ));

        let listener = TcpListener::bind(settings.listen).with_context(|| {
            format!(
                "--listen (ANTIFRAUD_LISTEN): cannot listen on {}",
                settings.listen
            )
        })?;
        let address = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(middleware::from_fn(track_http))
                // The request's span: W3C `traceparent` from the caller becomes its parent.
                .wrap(TracingLogger::default())
                .app_data(metrics.clone())
                .app_data(scoring.clone())
                .app_data(openapi.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)?
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .run();

        tracing::info!(
            %address,
            store = if memory.is_some() { "embedded" } else { "redis" },
            store_failure_policy = ?settings.policy.store_failure(),
            model.name = %serving.name,
            model.version = %serving.version,
            model_timeout_ms = settings.policy.model_timeout().as_millis() as u64,
            default_score = settings.policy.default_score(),
            fraud_threshold = settings.policy.fraud_threshold(),
            "antifraud listening"
        );
        Ok(Application {
            address,
            server,
            memory,
            redis,
            model,
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

    /// Serves until SIGTERM or SIGINT, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let sweeper = self.memory.map(|memory| {
            tokio::spawn(async move {
                let mut every = tokio::time::interval(SWEEP_INTERVAL);
                loop {
                    every.tick().await;
                    memory.purge_expired(OffsetDateTime::now_utc());
                }
            })
        });
        let reloader = tokio::spawn(reload_on_hangup(self.model));
        let result = self.server.await;
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
