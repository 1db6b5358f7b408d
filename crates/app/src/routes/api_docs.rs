//! What a newcomer opens first: `/` (the service, its version and where everything is),
//! `/docs/` (interactive API docs: Swagger UI, from the build's own copy of its assets) and
//! `/api-docs/openapi.json` (the OpenAPI document they render).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_swagger_ui::Config;

use crate::problem::ApiError;

/// Where the OpenAPI document is served; Swagger UI reads it from there.
pub(crate) const OPENAPI_PATH: &str = "/api-docs/openapi.json";

/// The OpenAPI document, rendered once at start-up.
pub(crate) struct OpenApiJson(pub(crate) String);

pub(crate) async fn openapi_json(document: web::Data<OpenApiJson>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(document.0.clone())
}

/// Swagger UI's settings: the document to render.
pub(crate) struct SwaggerUi(Arc<Config<'static>>);

impl SwaggerUi {
    pub(crate) fn new() -> SwaggerUi {
        SwaggerUi(Arc::new(Config::new([OPENAPI_PATH])))
    }
}

/// `GET /docs`: the docs live under `/docs/`, where their relative asset paths resolve.
pub(crate) async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

/// `GET /docs/{file}`: Swagger UI's page and assets, compiled into the binary.
pub(crate) async fn docs(
    file: web::Path<String>,
    swagger: web::Data<SwaggerUi>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::Http {
        status: StatusCode::NOT_FOUND,
        detail: format!("no resource at /docs/{file}"),
    };
    match utoipa_swagger_ui::serve(&file, Arc::clone(&swagger.0)) {
        Ok(Some(asset)) => {
            let mut response = HttpResponse::Ok();
            if asset.gzpipped {
                response.insert_header((header::CONTENT_ENCODING, "gzip"));
            }
            Ok(response
                .content_type(asset.content_type)
                .body(asset.bytes.into_owned()))
        }
        Ok(None) => Err(not_found()),
        Err(error) => Err(ApiError::Internal(error.to_string().into())),
    }
}

/// `GET /`: the service and where to find its docs, health probes and metrics.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "service": "antifraud",
    "version": "0.1.0",
    "description": "Real-time transaction risk scoring",
    "links": {
        "score": "/api/v1/transactions",
        "docs": "/docs/",
        "openapi": "/api-docs/openapi.json",
        "health": "/health",
        "live": "/health/live",
        "ready": "/health/ready",
        "metrics": "/metrics"
    }
}))]
pub(crate) struct ServiceInfo {
    /// Always `antifraud`.
    service: &'static str,
    /// The build's version.
    version: &'static str,
    /// What the service does.
    description: &'static str,
    /// Paths on this listener.
    links: Links,
}

/// Paths on this listener.
#[derive(Debug, Serialize, ToSchema)]
struct Links {
    /// `POST` a transaction here to score it.
    score: &'static str,
    /// Interactive API docs.
    docs: &'static str,
    /// The OpenAPI document.
    openapi: &'static str,
    /// Liveness and readiness together.
    health: &'static str,
    /// Liveness.
    live: &'static str,
    /// Readiness.
    ready: &'static str,
    /// Prometheus metrics; absent when they have a listener of their own (`--metrics-listen`).
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<&'static str>,
}

impl ServiceInfo {
    pub(crate) fn new(metrics_here: bool) -> ServiceInfo {
        ServiceInfo {
            service: "antifraud",
            version: env!("CARGO_PKG_VERSION"),
            description: "Real-time transaction risk scoring",
            links: Links {
                score: "/api/v1/transactions",
                docs: "/docs/",
                openapi: OPENAPI_PATH,
                health: "/health",
                live: "/health/live",
                ready: "/health/ready",
                metrics: metrics_here.then_some("/metrics"),
            },
        }
    }
}

/// The service, its version and where its docs, health probes and metrics are.
#[utoipa::path(get, path = "/", tag = "service",
    responses((status = 200, description = "The service and its links", body = ServiceInfo)))]
pub(crate) async fn root(info: web::Data<ServiceInfo>) -> HttpResponse {
    HttpResponse::Ok().json(info.as_ref())
}
