//! Who gets in: the API key check, in front of every route but the open ones, and the per-key
//! rate limit, in front of the API. `routes::configure` mounts them on their scopes.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};

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
            return Ok(Caller::ANONYMOUS);
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

    /// The caller's turn under its key's rate limit.
    fn within_rate(&self, caller: Caller) -> Result<(), ApiError> {
        match &self.rate {
            Some(rate) => {
                rate.acquire(caller.index, Instant::now())
                    .map_err(|wait| ApiError::RateLimited {
                        retry_after: wait,
                        key: caller.key,
                    })
            }
            None => Ok(()),
        }
    }
}

/// Middleware on every route but the open ones (the routing table in `routes` says which):
/// refuses a request without a valid key before its body is read, so a refused request costs
/// next to nothing. The caller is left in the request's extensions for [`rate_limit`].
pub(crate) async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let verdict = match request.app_data::<web::Data<Admission>>() {
        Some(admission) => admission.authenticate(&request),
        None => Ok(Caller::ANONYMOUS),
    };
    match verdict {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            Ok(next.call(request).await?.map_into_left_body())
        }
        Err(error) => Ok(refuse(request, &error, Refusal::Unauthorized)),
    }
}

/// Middleware on the API's scope, inside [`authenticate`]: the caller's key spends a token.
pub(crate) async fn rate_limit(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let caller = request.extensions().get::<Caller>().copied();
    let verdict = match (request.app_data::<web::Data<Admission>>(), caller) {
        (Some(admission), Some(caller)) => admission.within_rate(caller),
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => Ok(next.call(request).await?.map_into_left_body()),
        Err(error) => Ok(refuse(request, &error, Refusal::RateLimited)),
    }
}

/// The refusal, counted.
fn refuse<B>(
    request: ServiceRequest,
    error: &ApiError,
    reason: Refusal,
) -> ServiceResponse<EitherBody<B>> {
    if let Some(metrics) = request.app_data::<web::Data<Metrics>>() {
        metrics.refused(reason);
    }
    request
        .into_response(error.error_response())
        .map_into_right_body()
}
