//! The antifraud domain: what a card transaction is, when it is valid, what the service remembers
//! about a customer, and how one transaction is scored.
//!
//! This crate does no I/O and depends on no framework, so that other services can reuse it as a
//! library. Everything outside the process is reached through a port:
//!
//! - [`TransactionStore`]: records transactions and aggregates a customer's recent history,
//!   one unit of work per scoring (see [`store`]);
//! - [`FraudModel`]: turns [`Features`] into a fraud probability;
//! - [`Clock`]: the current time and a timer, so the use case can enforce its model budget;
//! - [`RuleSet`]: turns the score and everything known with it into a [`Decision`] (approve,
//!   review, decline) with its reasons.
//!
//! [`ScoringService`] is the use case that ties them together.
//!
//! ```
//! use antifraud_domain::{TransactionInput, Transaction};
//! use time::macros::datetime;
//!
//! // Every field of the API, as received (here: a valid example with another amount).
//! let input = TransactionInput {
//!     amount: Some(980.0),
//!     ..TransactionInput::example()
//! };
//! let tx: Transaction = input.validate(datetime!(2026-11-25 10:01 UTC)).expect("valid");
//! assert_eq!(tx.customer_id().as_str(), "cust-42");
//!
//! // A missing or invalid field is named.
//! let error = TransactionInput { currency: Some("euro".into()), ..TransactionInput::example() }
//!     .validate(datetime!(2026-11-25 10:01 UTC))
//!     .expect_err("refused");
//! assert_eq!(error.fields[0].field, "currency");
//! ```

mod assessment;
mod clock;
mod currency;
mod decision;
mod features;
mod model;
mod race;
mod scoring;
pub mod store;
mod transaction;
mod validation;
mod window;

pub use assessment::{Assessment, Degradation, Milliseconds, ProcessingTime};
pub use clock::Clock;
pub use currency::Currency;
pub use decision::{
    Action, Decision, Evaluation, Facts, Mode, Reason, RuleEvaluation, RuleOutcome, RuleSet,
    ThresholdRules,
};
pub use features::{FEATURE_NAMES, FEATURE_SCHEMA_VERSION, Feature, Features};
pub use model::{FraudModel, ModelError, ModelIdentity, ModelStatus, Prediction};
pub use scoring::{
    ScoreError, Scored, ScoringPolicy, ScoringPolicyError, ScoringService, StoreFailurePolicy,
};
pub use store::{
    CommitOutcome, Fingerprint, Reception, RecordOutcome, StoreError, TransactionStore,
};
pub use transaction::{
    CardBin, CustomerId, DEFAULT_MAX_LATENESS, MAX_FUTURE_SKEW, MAX_ID_CHARS, MAX_TEXT_CHARS,
    Transaction, TransactionId, TransactionInput,
};
pub use validation::{FieldError, ValidationError, Violation};
pub use window::{Mills, Sum, Window, WindowStat, WindowStats};

#[cfg(feature = "mock")]
pub use clock::MockClock;
#[cfg(feature = "mock")]
pub use model::MockFraudModel;
#[cfg(feature = "mock")]
pub use store::MockTransactionStore;
