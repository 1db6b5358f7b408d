//! `POST /api/v1/transactions`: score one transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use antifraud_domain::{FraudModel, ModelStatus, ScoringService, TransactionStore};

use crate::dto::{ScoreResponse, TransactionRequest};
use crate::limits::InFlightLimit;
use crate::metrics::{Metrics, Refusal};
use crate::problem::{ApiError, Problem};
use crate::system_clock::SystemClock;

/// The scoring use case as the service wires it: adapters chosen at start-up.
pub(crate) type Scoring =
    ScoringService<Arc<dyn TransactionStore>, Arc<dyn FraudModel>, SystemClock>;

/// How much of a client's request the endpoint takes, and how many scorings it runs at once.
#[derive(Debug)]
pub(crate) struct Intake {
    /// Largest body.
    pub(crate) max_body_bytes: usize,
    /// Longest time to receive the body (the head has the server's own deadline).
    pub(crate) body_timeout: Duration,
    /// Scorings in flight at most.
    pub(crate) in_flight: InFlightLimit,
}

/// The header that marks an answer replayed from an earlier request with the same transaction.
const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// Score one transaction.
///
/// Records the transaction, computes the customer's statistics over the last 3, 6, 12 and 24 hours
/// (event time, this transaction included) and asks the model for a fraud score within its
/// budget. Sending the same transaction again (same `customer_id` and `transaction_id`, same
/// payload) returns the first answer unchanged with `Idempotent-Replayed: true`; nothing is
/// counted twice.
#[utoipa::path(post, path = "/api/v1/transactions", tag = "scoring",
    request_body(content = TransactionRequest, content_type = "application/json"),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Scored and recorded, or replayed", body = ScoreResponse,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is the answer to an earlier request with the same transaction"))),
        (status = 400, description = "Malformed JSON, wrong types or duplicate fields; nothing recorded",
            body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No API key, or one the service does not know (when keys are configured)",
            body = Problem, content_type = "application/problem+json",
            headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"antifraud\"`, with `error=\"invalid_token\"` for a wrong key"))),
        (status = 408, description = "The body did not arrive within the request timeout; nothing recorded",
            body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The ids were already used with a different payload; nothing recorded",
            body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body larger than 64 KiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Content-Type is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or missing values; nothing recorded",
            body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This API key is over its rate limit; nothing recorded",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds until the key may send again"))),
        (status = 503, description = "The outcome is unknown: retry with the same body. Type `urn:antifraud:problem:store-unavailable`: the store did not answer in time, so the transaction may or may not be recorded; a retry with the same body never counts it twice and gets its one answer. Type `urn:antifraud:problem:overloaded`: the service is at capacity and nothing was recorded",
            body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = String, description = "Seconds to wait before retrying")))
    ))]
pub(crate) async fn score_transaction(
    scoring: web::Data<Scoring>,
    metrics: web::Data<Metrics>,
    intake: web::Data<Intake>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // The head is in; the body may still be arriving. (actix gives the handler no earlier
    // instant: the head's own read time is not counted.)
    let started = Instant::now();
    require_json(&request)?;
    let body = read_body(&request, payload, &intake, &metrics).await?;
    let transaction = parse_body(&body).inspect_err(|_| metrics.malformed())?;
    // Shed here, after the body is in: a slow client must not hold one of the places.
    let Some(_in_flight) = intake.in_flight.try_enter() else {
        metrics.refused(Refusal::Overloaded);
        return Err(ApiError::Overloaded);
    };
    let scoring_started = Instant::now();
    let result = scoring.score(transaction.into(), started).await;
    metrics.scored(scoring_started.elapsed(), &result);
    let scored = result?;
    let assessment = &scored.assessment;
    if let (false, Some(degradation)) = (scored.replayed, assessment.degraded) {
        // Log lines carry no span fields (see telemetry::init): the transaction is named here.
        tracing::warn!(
            transaction.id = %assessment.transaction_id,
            reason = degradation.as_str(),
            "store unavailable: answered degraded (store failure policy: degrade)"
        );
    }
    if !scored.replayed && assessment.model_status != ModelStatus::Ok {
        // The use case already answered with the default score; this is the one place it is told.
        tracing::warn!(
            transaction.id = %assessment.transaction_id,
            model.name = %assessment.model.name,
            model.status = %assessment.model_status,
            "model fell back to the default score"
        );
    }
    let mut response = HttpResponse::Ok();
    if scored.replayed {
        response.insert_header((IDEMPOTENT_REPLAYED, HeaderValue::from_static("true")));
    }
    Ok(response.json(ScoreResponse::from(scored.assessment)))
}

/// The body, within the size limit and the deadline. A declared length over the limit is refused
/// before a byte is read.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    intake: &Intake,
    metrics: &Metrics,
) -> Result<web::Bytes, ApiError> {
    let too_large = || ApiError::Http {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        detail: format!(
            "the body is larger than {} KiB; nothing was recorded",
            intake.max_body_bytes / 1024
        ),
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > intake.max_body_bytes as u64) {
        return Err(too_large());
    }
    let read = payload.to_bytes_limited(intake.max_body_bytes);
    match tokio::time::timeout(intake.body_timeout, read).await {
        Err(_) => {
            metrics.refused(Refusal::RequestTimeout);
            Err(ApiError::Http {
                status: StatusCode::REQUEST_TIMEOUT,
                detail: format!(
                    "the body did not arrive within {} ms; nothing was recorded",
                    intake.body_timeout.as_millis()
                ),
            })
        }
        Ok(Err(_)) => Err(too_large()),
        Ok(Ok(Err(error))) => Err(ApiError::Http {
            status: StatusCode::BAD_REQUEST,
            detail: format!("the body could not be read: {error}"),
        }),
        Ok(Ok(Ok(body))) => Ok(body),
    }
}

/// `application/json` or any `+json` type; a request without a Content-Type is read as JSON.
fn require_json(request: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::Http {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            detail: "send the transaction as application/json".to_owned(),
        })
    }
}

/// Parses the body, naming the offending field when a value has the wrong type.
pub(crate) fn parse_body(body: &[u8]) -> Result<TransactionRequest, ApiError> {
    let malformed = |field: String, error: serde_json::Error| ApiError::MalformedBody {
        field,
        detail: error.to_string(),
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let request = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        // The path is "." at the top level and has "?" where the parser failed before it knew
        // which field it was in (broken syntax): those are errors of the body as a whole.
        let path = error.path().to_string();
        let field = if path == "." || path.contains('?') {
            "body".to_owned()
        } else {
            path
        };
        malformed(field, error.into_inner())
    })?;
    deserializer
        .end()
        .map_err(|error| malformed("body".to_owned(), error))?;
    Ok(request)
}
