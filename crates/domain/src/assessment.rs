//! The outcome of scoring one transaction.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{ModelIdentity, ModelStatus};
use crate::transaction::{CustomerId, TransactionId};
use crate::window::WindowStats;

/// What the service decided about one transaction. It is stored with the transaction, so a retry
/// gets exactly this back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// The paying customer.
    pub customer_id: CustomerId,
    /// The scored transaction.
    pub transaction_id: TransactionId,
    /// Fraud probability, 0..=1: the model's, or the default score when the model failed.
    pub score: f64,
    /// `score >= fraud threshold`.
    pub is_fraud: bool,
    /// The customer's statistics at the transaction's time, the transaction included.
    pub stats: WindowStats,
    /// The model that was asked.
    pub model: ModelIdentity,
    /// Whether it answered; anything but `Ok` means `score` is the default.
    pub model_status: ModelStatus,
    /// The store failed and the policy is to degrade: the statistics cover this transaction
    /// alone, or the assessment could not be saved for replay.
    #[serde(default)]
    pub degraded: bool,
    /// Time from reception to the decision, in milliseconds.
    pub processing_time_ms: f64,
    /// When the decision was made, UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub processed_at: OffsetDateTime,
}
