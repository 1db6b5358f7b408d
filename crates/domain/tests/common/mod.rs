//! Fixtures shared by the domain's test files.

use antifraud_domain::TransactionInput;
use time::OffsetDateTime;
use time::macros::datetime;

/// The reception time of every fixture.
pub(crate) const NOW: OffsetDateTime = datetime!(2026-11-25 12:00 UTC);

/// A transaction with every required field valid at [`NOW`] and no optional one.
pub(crate) fn required_fields() -> TransactionInput {
    TransactionInput {
        customer_id: Some("cust-1".into()),
        amount: Some(120.0),
        timestamp: Some("2026-11-25T11:59:00Z".into()),
        ..TransactionInput::example()
    }
}
