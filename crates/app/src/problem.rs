//! Errors as HTTP answers: RFC 9457 problem details (`application/problem+json`), each with a
//! stable `type`, and for input errors the list of offending fields.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, ResponseError};
use antifraud_domain::{ScoreError, StoreError, ValidationError};
use serde::Serialize;
use tracing::Level;
use utoipa::ToSchema;

/// An RFC 9457 problem details body.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:antifraud:problem:invalid-transaction",
    "title": "The transaction is invalid",
    "status": 422,
    "detail": "2 fields are invalid; nothing was recorded",
    "errors": [
        {"field": "amount", "pointer": "#/amount", "code": "out_of_range", "detail": "must be between 0 and 1000000000000"},
        {"field": "currency", "pointer": "#/currency", "code": "unknown_currency", "detail": "must be an ISO 4217 alphabetic code, such as EUR"}
    ]
}))]
pub(crate) struct Problem {
    /// Stable identifier of the kind of problem.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: &'static str,
    /// Short summary of the kind of problem.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What happened this time.
    pub detail: String,
    /// The offending fields, for input errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

/// One offending field.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FieldProblem {
    /// The field's name, `customer_segments[2]` for a list entry; `body` for the body as a whole.
    pub field: String,
    /// JSON pointer (RFC 6901) to the field, as a URI fragment.
    pub pointer: String,
    /// Stable reason code, such as `missing`, `out_of_range`, `format`, `invalid_type`.
    pub code: String,
    /// What is wrong, for people.
    pub detail: String,
}

impl FieldProblem {
    pub(crate) fn new(field: &str, code: &str, detail: String) -> Self {
        let pointer = if field == "body" {
            "#".to_owned()
        } else {
            format!("#/{}", field.replace('[', "/").replace(']', ""))
        };
        FieldProblem {
            field: field.to_owned(),
            pointer,
            code: code.to_owned(),
            detail,
        }
    }
}

/// Everything the API answers with other than success.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The body is not the JSON the endpoint takes: syntax, types, duplicate fields.
    #[error("malformed body: {detail}")]
    MalformedBody { field: String, detail: String },
    /// Well-formed, but some values are invalid.
    #[error(transparent)]
    Invalid(ValidationError),
    /// The ids were already used with a different payload.
    #[error("transaction ids already used with a different payload")]
    Conflict,
    /// The store cannot be reached or is too slow; the cause is logged, never answered.
    #[error("store unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// A fault inside the service (the store answered nonsense, say); the cause is logged,
    /// never answered.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No API key, or one the service does not know.
    #[error("unauthorized")]
    Unauthorized {
        /// Whether the request carried an `Authorization` header at all.
        presented: bool,
    },
    /// The caller's key used up its rate limit.
    #[error(
        "rate limit reached by API key {}",
        .key.map_or_else(|| "(none: no keys configured)".to_owned(), |id| id.to_string())
    )]
    RateLimited {
        retry_after: std::time::Duration,
        /// Whose limit, for the log.
        key: Option<crate::auth::KeyId>,
    },
    /// Too many scorings in flight: answering now beats queueing past the budget.
    #[error("overloaded")]
    Overloaded,
    /// A method the path does not take.
    #[error("{detail}")]
    MethodNotAllowed { detail: String, allow: &'static str },
    /// A request the framework refused before any handler ran (size, route, method, media type).
    #[error("{detail}")]
    Http { status: StatusCode, detail: String },
}

impl From<ScoreError> for ApiError {
    fn from(error: ScoreError) -> Self {
        match error {
            ScoreError::Invalid(e) => ApiError::Invalid(e),
            ScoreError::Conflict => ApiError::Conflict,
            // Unreachable, or the record vanished mid-request: either way the outcome is unknown
            // to the client, and a retry with the same body settles it.
            ScoreError::Store(e @ (StoreError::Unavailable(_) | StoreError::Lost)) => {
                ApiError::StoreUnavailable(e)
            }
            ScoreError::Store(e) => ApiError::Internal(Box::new(e)),
        }
    }
}

/// What every answer of one kind shares: its row in the table of [`ApiError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kind {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The problem `type`: a stable URN.
    pub(crate) uri: &'static str,
    /// The problem `title`.
    pub(crate) title: &'static str,
    /// The level the answer is logged at, once, as it is sent: client errors at `DEBUG` (the
    /// metrics count them), what operators must see at `WARN` and `ERROR`.
    pub(crate) level: Level,
}

impl ApiError {
    /// The table: one row per kind of answer.
    pub(crate) fn kind(&self) -> Kind {
        use StatusCode as S;
        let (status, uri, title, level) = match self {
            ApiError::MalformedBody { .. } => (
                S::BAD_REQUEST,
                "urn:antifraud:problem:malformed-body",
                "The body is not valid JSON for this endpoint",
                Level::DEBUG,
            ),
            ApiError::Invalid(_) => (
                S::UNPROCESSABLE_ENTITY,
                "urn:antifraud:problem:invalid-transaction",
                "The transaction is invalid",
                Level::DEBUG,
            ),
            ApiError::Conflict => (
                S::CONFLICT,
                "urn:antifraud:problem:idempotency-conflict",
                "Transaction ids reused with a different payload",
                Level::DEBUG,
            ),
            ApiError::StoreUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "urn:antifraud:problem:store-unavailable",
                "The transaction store is unavailable",
                Level::WARN,
            ),
            ApiError::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "urn:antifraud:problem:internal",
                "Internal error",
                Level::ERROR,
            ),
            ApiError::Unauthorized { .. } => (
                S::UNAUTHORIZED,
                "urn:antifraud:problem:unauthorized",
                "A valid API key is required",
                Level::DEBUG,
            ),
            ApiError::RateLimited { .. } => (
                S::TOO_MANY_REQUESTS,
                "urn:antifraud:problem:rate-limited",
                "Too many requests for this API key",
                Level::WARN,
            ),
            ApiError::Overloaded => (
                S::SERVICE_UNAVAILABLE,
                "urn:antifraud:problem:overloaded",
                "The service is at capacity",
                Level::WARN,
            ),
            ApiError::MethodNotAllowed { .. } => (
                S::METHOD_NOT_ALLOWED,
                "urn:antifraud:problem:method-not-allowed",
                "Method not allowed",
                Level::DEBUG,
            ),
            ApiError::Http { status, .. } => {
                let (uri, title) = match *status {
                    S::PAYLOAD_TOO_LARGE => (
                        "urn:antifraud:problem:payload-too-large",
                        "The body is too large",
                    ),
                    S::UNSUPPORTED_MEDIA_TYPE => (
                        "urn:antifraud:problem:unsupported-media-type",
                        "The body must be JSON",
                    ),
                    S::NOT_FOUND => ("urn:antifraud:problem:not-found", "No such resource"),
                    S::REQUEST_TIMEOUT => (
                        "urn:antifraud:problem:request-timeout",
                        "The request was not received in time",
                    ),
                    _ => ("urn:antifraud:problem:bad-request", "Bad request"),
                };
                (*status, uri, title, Level::DEBUG)
            }
        };
        Kind {
            status,
            uri,
            title,
            level,
        }
    }

    /// The problem details body.
    pub(crate) fn problem(&self) -> Problem {
        let kind = self.kind();
        let (detail, errors) = match self {
            ApiError::MalformedBody { field, detail } => (
                format!("{detail}; nothing was recorded"),
                vec![FieldProblem::new(field, "invalid_json", detail.clone())],
            ),
            ApiError::Invalid(e) => (
                format!(
                    "{} invalid; nothing was recorded",
                    match e.fields.len() {
                        1 => "1 field is".to_owned(),
                        n => format!("{n} fields are"),
                    }
                ),
                e.fields
                    .iter()
                    .map(|f| FieldProblem::new(&f.field, f.violation.code(), f.violation.to_string()))
                    .collect(),
            ),
            ApiError::Conflict => (
                "this customer_id and transaction_id were already used for a different transaction; \
                 resend the original payload to get its result, or use new ids"
                    .to_owned(),
                vec![],
            ),
            ApiError::StoreUnavailable(_) => (
                "the outcome is unknown: the transaction may or may not be recorded; retry with the \
                 same body, which never counts it twice"
                    .to_owned(),
                vec![],
            ),
            ApiError::Internal(_) => ("see the service's logs".to_owned(), vec![]),
            ApiError::Unauthorized { presented: false } => (
                "send the API key as `Authorization: Bearer <key>`".to_owned(),
                vec![],
            ),
            ApiError::Unauthorized { presented: true } => (
                "the API key is not valid; send `Authorization: Bearer <key>` with a configured key"
                    .to_owned(),
                vec![],
            ),
            ApiError::RateLimited { retry_after, .. } => (
                format!(
                    "nothing was recorded; retry after {} s",
                    retry_after_seconds(*retry_after)
                ),
                vec![],
            ),
            ApiError::Overloaded => (
                "too many transactions in flight; nothing was recorded, retrying with the same ids \
                 is safe"
                    .to_owned(),
                vec![],
            ),
            ApiError::Http { detail, .. } | ApiError::MethodNotAllowed { detail, .. } => {
                (detail.clone(), vec![])
            }
        };
        Problem {
            kind: kind.uri,
            title: kind.title,
            status: kind.status.as_u16(),
            detail,
            errors,
        }
    }

    /// Logs the answer at its kind's level, with the cause when there is one. Called once per
    /// answer, by [`ResponseError::error_response`], where every failure ends.
    fn log(&self, kind: Kind) {
        let cause = std::error::Error::source(self).map(tracing::field::display);
        let message = format_args!("{self}, answering {}", kind.status.as_u16());
        match kind.level {
            Level::ERROR => tracing::error!(problem.type = kind.uri, error = cause, "{message}"),
            Level::WARN => tracing::warn!(problem.type = kind.uri, error = cause, "{message}"),
            _ => tracing::debug!(problem.type = kind.uri, error = cause, "{message}"),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind().status
    }

    fn error_response(&self) -> HttpResponse {
        let kind = self.kind();
        self.log(kind);
        let mut response = HttpResponse::build(kind.status);
        response.insert_header(ContentType(
            "application/problem+json"
                .parse()
                .expect("a constant, valid media type"),
        ));
        match self {
            ApiError::StoreUnavailable(_) | ApiError::Overloaded => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((header::ALLOW, *allow));
            }
            ApiError::RateLimited { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after_seconds(*retry_after)));
            }
            // RFC 6750 §3: the scheme, and `invalid_token` when a key was sent but is wrong.
            ApiError::Unauthorized { presented } => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    if *presented {
                        r#"Bearer realm="antifraud", error="invalid_token""#
                    } else {
                        r#"Bearer realm="antifraud""#
                    },
                ));
            }
            _ => {}
        }
        response.json(self.problem())
    }
}

/// `Retry-After` takes whole seconds: round up, so that a client waiting that long finds a token.
fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}
