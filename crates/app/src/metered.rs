//! Decorators that time the store and the model for the metrics, around whichever adapters the
//! settings chose. The domain stays unaware of metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use antifraud_domain::{
    Assessment, CommitOutcome, Features, Fingerprint, FraudModel, ModelError, ModelIdentity,
    Prediction, Reception, RecordOutcome, StoreError, Transaction, TransactionStore,
};
use async_trait::async_trait;
use tracing::Instrument;

use crate::metrics::Metrics;

/// A store whose every operation is timed, traced as a client span, and whose failures are
/// counted.
pub(crate) struct MeteredStore {
    pub(crate) inner: Arc<dyn TransactionStore>,
    /// `db.system` of the spans: `redis`, or `memory` for the embedded store.
    pub(crate) system: &'static str,
    pub(crate) metrics: Arc<Metrics>,
}

/// The store's operations: the `operation` label of the store metrics and the name of each one's
/// span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreOp {
    Record,
    Commit,
    Check,
}

impl StoreOp {
    fn name(self) -> &'static str {
        match self {
            StoreOp::Record => "record",
            StoreOp::Commit => "commit",
            StoreOp::Check => "check",
        }
    }

    /// A client span. Span names must be literals, so there is one macro call per operation:
    /// nothing is formatted per request.
    fn span(self, system: &'static str) -> tracing::Span {
        let name = self.name();
        match self {
            StoreOp::Record => tracing::info_span!(
                "store.record",
                otel.kind = "client",
                db.system = system,
                db.operation.name = name
            ),
            StoreOp::Commit => tracing::info_span!(
                "store.commit",
                otel.kind = "client",
                db.system = system,
                db.operation.name = name
            ),
            StoreOp::Check => tracing::info_span!(
                "store.check",
                otel.kind = "client",
                db.system = system,
                db.operation.name = name
            ),
        }
    }
}

impl MeteredStore {
    async fn observe<T>(
        &self,
        operation: StoreOp,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.instrument(operation.span(self.system)).await;
        let (m, operation) = (&self.metrics, operation.name());
        m.store_duration
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(_) => m.store_up.set(1),
            Err(StoreError::Unavailable(_)) => {
                m.store_up.set(0);
                m.store_errors
                    .with_label_values(&[operation, "unavailable"])
                    .inc();
            }
            // The store answered: it is up, but did not hold the record any more.
            Err(StoreError::Lost) => {
                m.store_up.set(1);
                m.store_errors.with_label_values(&[operation, "lost"]).inc();
            }
            Err(_) => m
                .store_errors
                .with_label_values(&[operation, "internal"])
                .inc(),
        }
        result
    }
}

#[async_trait]
impl TransactionStore for MeteredStore {
    async fn record(
        &self,
        tx: &Transaction,
        fingerprint: &Fingerprint,
        reception: &Reception,
    ) -> Result<RecordOutcome, StoreError> {
        self.observe(
            StoreOp::Record,
            self.inner.record(tx, fingerprint, reception),
        )
        .await
    }

    async fn commit(
        &self,
        tx: &Transaction,
        assessment: &Assessment,
        deadline: Instant,
    ) -> Result<CommitOutcome, StoreError> {
        self.observe(StoreOp::Commit, self.inner.commit(tx, assessment, deadline))
            .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.observe(StoreOp::Check, self.inner.check()).await
    }
}

/// A model whose calls are timed, including those the use case abandons at the budget.
pub(crate) struct MeteredModel {
    pub(crate) inner: Arc<dyn FraudModel>,
    pub(crate) metrics: Arc<Metrics>,
}

/// Observes the call's time when dropped: after an answer, or when the use case gives up.
struct CallTimer<'a> {
    model: &'a MeteredModel,
    identity: ModelIdentity,
    started: Instant,
}

impl Drop for CallTimer<'_> {
    fn drop(&mut self) {
        self.model
            .metrics
            .model_call(&self.identity, self.started.elapsed());
    }
}

#[async_trait]
impl FraudModel for MeteredModel {
    fn identity(&self) -> ModelIdentity {
        self.inner.identity()
    }

    async fn predict(&self, features: &Features) -> Result<Prediction, ModelError> {
        // Read per call: the model may be reloaded between requests.
        let identity = self.inner.identity();
        let span = tracing::info_span!(
            "model.predict",
            model.name = %identity.name,
            model.version = %identity.version,
        );
        let _timer = CallTimer {
            model: self,
            identity,
            started: Instant::now(),
        };
        self.inner.predict(features).instrument(span).await
    }

    async fn check(&self) -> Result<(), ModelError> {
        self.inner.check().await
    }
}
