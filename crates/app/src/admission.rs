//! Who gets in: the API key check and the per-key rate limit, in front of every route but the
//! health probes and the OpenAPI document.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::auth::{ApiKeys, Caller};
use crate::limits::{RateLimit, RateLimiter};
use crate::metrics::{Metrics, Refusal};
use crate::problem::ApiError;

/// The admission rules, shared by every worker.
#[derive(Debug)]
pub(crate) struct Admission {
    keys: ApiKeys,
    rate: Option<RateLimiter>,
}

impl Admission {
    pub(crate) fn new(keys: ApiKeys, rate: Option<RateLimit>) -> Admission {
        let rate = rate.map(|limit| RateLimiter::new(limit, keys.len(), Instant::now()));
        Admission { keys, rate }
    }

    /// The caller, when the request carries a configured key (or when no keys are configured).
    fn authenticate(&self, request: &ServiceRequest) -> Result<Caller, ApiError> {
        if self.keys.is_empty() {
            return Ok(Caller {
                index: 0,
                key: None,
            });
        }
        let Some(value) = request.headers().get(header::AUTHORIZATION) else {
            return Err(ApiError::Unauthorized { presented: false });
        };
        // The scheme is case-insensitive (RFC 9110 §11.1); the key is not.
        let token = value
            .as_bytes()
            .split_at_checked(7)
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|(_, token)| token.trim_ascii());
        token
            .and_then(|token| self.keys.verify(token))
            .ok_or(ApiError::Unauthorized { presented: true })
    }

    fn check(&self, request: &ServiceRequest) -> Result<(), ApiError> {
        let caller = self.authenticate(request)?;
        if let Some(rate) = &self.rate
            && request.path().starts_with("/api/")
            && let Err(wait) = rate.acquire(caller.index, Instant::now())
        {
            tracing::warn!(
                api_key.id = caller.key.map(|id| id.to_string()),
                "rate limit reached"
            );
            return Err(ApiError::RateLimited { retry_after: wait });
        }
        Ok(())
    }
}

/// Routes anyone may call: probes for orchestrators and load balancers, and the API's
/// description (it holds nothing secret).
fn is_open(path: &str) -> bool {
    matches!(
        path,
        "/health" | "/health/live" | "/health/ready" | "/api-docs/openapi.json"
    )
}

/// The middleware: refuses before the body is read, so a refused request costs next to nothing.
pub(crate) async fn admit(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let verdict = match request.app_data::<web::Data<Admission>>() {
        Some(admission) if !is_open(request.path()) => admission.check(&request),
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => Ok(next.call(request).await?.map_into_left_body()),
        Err(error) => {
            if let Some(metrics) = request.app_data::<web::Data<Metrics>>() {
                metrics.refused(match error {
                    ApiError::RateLimited { .. } => Refusal::RateLimited,
                    _ => Refusal::Unauthorized,
                });
            }
            Ok(request
                .into_response(error.error_response())
                .map_into_right_body())
        }
    }
}
