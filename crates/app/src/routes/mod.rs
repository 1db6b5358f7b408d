//! The HTTP routes and the OpenAPI document generated from them.

mod api_docs;
mod health;
mod transactions;

use actix_web::{HttpRequest, HttpResponse, middleware, web};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::admission;
use crate::dto::{ReasonResponse, ScoreResponse, TextLimits, TransactionRequest};
use crate::metrics::metrics_endpoint;
use crate::problem::{ApiError, FieldProblem, Problem};
pub(crate) use api_docs::{OpenApiJson, ServiceInfo, SwaggerUi};
pub(crate) use transactions::{Intake, Scoring, parse_body};

/// The OpenAPI 3 document of the API, served at `/api-docs/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "antifraud",
        description = "Real-time transaction risk scoring: records each card transaction, computes \
                       the customer's rolling statistics over 3, 6, 12 and 24 hours, and scores it \
                       with a fraud model under a latency budget."
    ),
    paths(transactions::score_transaction, health::live, health::ready, health::health, api_docs::root),
    modifiers(&ApiKeyScheme, &TextLimits),
    components(schemas(TransactionRequest, ScoreResponse, ReasonResponse, Problem, FieldProblem, health::Readiness, api_docs::ServiceInfo)),
    tags(
        (name = "scoring", description = "Transaction scoring"),
        (name = "health", description = "Liveness and readiness probes"),
        (name = "service", description = "What the service is and where its docs are")
    )
)]
pub struct ApiDoc;

/// The `api_key` security scheme: `Authorization: Bearer <key>`.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from the service's key file or ANTIFRAUD_API_KEYS. Required \
                         when keys are configured (always when the service listens beyond \
                         loopback).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The routing table: every path, and who may call it. Shared by the server and nothing else.
/// Any other method on a known path gets 405 with `Allow`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, metrics_here: bool) {
    // Open to anyone: what the service is, probes for orchestrators and load balancers, and the
    // API's description and docs (they hold nothing secret).
    for (path, handler) in [
        ("/", web::get().to(api_docs::root)),
        ("/health/live", web::get().to(health::live)),
        ("/health/ready", web::get().to(health::ready)),
        ("/health", web::get().to(health::health)),
        (
            api_docs::OPENAPI_PATH,
            web::get().to(api_docs::openapi_json),
        ),
        ("/docs", web::get().to(api_docs::docs_redirect)),
        ("/docs/{file:.*}", web::get().to(api_docs::docs)),
    ] {
        cfg.service(get_only(path, handler));
    }
    // Everything else, unknown paths included, needs a key when keys are configured; the API
    // also spends the key's rate limit.
    cfg.service(
        web::scope("")
            .wrap(middleware::from_fn(admission::authenticate))
            .service(
                web::scope("/api")
                    .wrap(middleware::from_fn(admission::rate_limit))
                    .service(
                        web::resource("/v1/transactions")
                            .route(web::post().to(transactions::score_transaction))
                            .default_service(web::to(|request: HttpRequest| {
                                method_not_allowed(request, "POST")
                            })),
                    )
                    .default_service(web::to(not_found)),
            )
            .configure(|cfg| {
                if metrics_here {
                    cfg.service(get_only("/metrics", web::get().to(metrics_endpoint)));
                }
            })
            .default_service(web::to(not_found)),
    );
}

/// A resource that answers `GET` with `handler`, and 405 to any other method.
pub(crate) fn get_only(path: &str, handler: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(handler)
        .default_service(web::to(|request: HttpRequest| {
            method_not_allowed(request, "GET")
        }))
}

/// Answers any unknown path.
pub(crate) async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::Http {
        status: actix_web::http::StatusCode::NOT_FOUND,
        detail: format!("no resource at {}", request.path()),
    })
}

async fn method_not_allowed(
    request: HttpRequest,
    allow: &'static str,
) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed {
        detail: format!("{} is not allowed here; use {allow}", request.method()),
        allow,
    })
}
