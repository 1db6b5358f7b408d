//! Health probes: liveness (the process answers) and readiness (the store and the model answer).

use std::future::Future;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::Scoring;

/// How long a readiness check may take before it counts as failing.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The readiness report. It names no internals: each dependency is `ok` or `failing`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ready", "checks": {"store": "ok", "model": "ok"}}))]
pub(crate) struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// Each dependency's state.
    checks: Checks,
}

#[derive(Debug, Serialize, ToSchema)]
struct Checks {
    /// `ok` or `failing`.
    store: &'static str,
    /// `ok` or `failing`.
    model: &'static str,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process answers", body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the store and the model answer. Load balancers route to ready instances only.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready to score", body = Readiness),
        (status = 503, description = "The store or the model is failing", body = Readiness)
    ))]
pub(crate) async fn ready(scoring: web::Data<Scoring>) -> HttpResponse {
    let (store, model) = tokio::join!(
        passes(scoring.store().check()),
        passes(scoring.model().check()),
    );
    let label = |ok: bool| if ok { "ok" } else { "failing" };
    let report = Readiness {
        status: if store && model {
            "ready"
        } else {
            "unavailable"
        },
        checks: Checks {
            store: label(store),
            model: label(model),
        },
    };
    if store && model {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}

/// The same as `/health/ready`.
#[utoipa::path(get, path = "/health", tag = "health",
    responses(
        (status = 200, description = "Ready to score", body = Readiness),
        (status = 503, description = "The store or the model is failing", body = Readiness)
    ))]
pub(crate) async fn health(scoring: web::Data<Scoring>) -> HttpResponse {
    ready(scoring).await
}

async fn passes<E: std::fmt::Display>(check: impl Future<Output = Result<(), E>>) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            false
        }
        Err(_) => {
            tracing::warn!("readiness check timed out");
            false
        }
    }
}
