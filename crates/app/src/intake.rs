//! The request pipeline up to the store, without a server: the body as the endpoint reads it,
//! and the answer it gives when it refuses one. Public for the fuzz target and the property tests
//! (`fuzz/`, `tests/intake_properties.rs`), which must exercise exactly what the endpoint runs.

use actix_web::ResponseError;
use antifraud_domain::{Transaction, TransactionInput};
use time::OffsetDateTime;

use crate::problem::ApiError;
use crate::routes::parse_body;

/// An answer the endpoint would give instead of scoring.
#[derive(Debug)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// The problem+json body.
    pub body: String,
}

/// What the endpoint makes of `body` received at `now`: the validated transaction it would
/// record, or the answer it would refuse it with.
pub fn read_transaction(body: &[u8], now: OffsetDateTime) -> Result<Transaction, Refusal> {
    let refuse = |error: ApiError| Refusal {
        status: error.status_code().as_u16(),
        body: serde_json::to_string(&error.problem())
            .expect("a problem is strings and numbers, always serialisable"),
    };
    let request = parse_body(body).map_err(refuse)?;
    TransactionInput::from(request)
        .validate(now)
        .map_err(|error| refuse(ApiError::Invalid(error)))
}
