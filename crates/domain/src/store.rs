//! The store port and its unit of work.
//!
//! Scoring one transaction is one unit of work against the store, in two steps:
//!
//! 1. [`TransactionStore::record`] opens it. Atomically for the customer, it checks idempotency,
//!    records the transaction, deletes what fell out of the retention and returns the customer's
//!    [`WindowStats`] at the transaction's time.
//! 2. [`TransactionStore::commit`] closes it by saving the [`Assessment`], so that a retry gets
//!    it back. The first saved assessment wins.
//!
//! The model is asked between the two steps, outside any lock.
//!
//! **Invariant: nothing is counted twice.** A transaction is identified by its customer and
//! transaction ids. Recording it again never adds it again: with an assessment saved, the retry is
//! a replay; without one (the process died between the steps, or a duplicate is in flight), the
//! retry gets the statistics again and carries on to a commit, where the first assessment wins.
//!
//! **Invariant: exact counts under concurrency.** `record` is atomic per customer: concurrent
//! transactions of one customer are serialised, each seeing all of those recorded before it.

use std::time::Instant;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::assessment::Assessment;
use crate::transaction::Transaction;
use crate::window::WindowStats;

/// A digest of everything a client sent for a transaction, to tell a retry (same fingerprint)
/// from a conflicting reuse of its ids (different fingerprint).
///
/// Equal transactions have equal fingerprints, whatever offset their timestamps were written
/// with. The encoding is stable across releases, so stored fingerprints stay comparable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a validated transaction.
    pub fn of(tx: &Transaction) -> Self {
        let mut h = Sha256::new();
        // Every field is written with a length or a fixed width, so no two transactions encode
        // alike. Bump the version byte if the encoding changes.
        h.update([1u8]);
        let text = |h: &mut Sha256, s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        let opt_f64 = |h: &mut Sha256, v: Option<f64>| match v {
            None => h.update([0]),
            Some(v) => {
                h.update([1]);
                h.update(v.to_bits().to_le_bytes());
            }
        };
        let opt_bool = |h: &mut Sha256, v: Option<bool>| h.update([v.map_or(2, u8::from)]);
        text(&mut h, tx.customer_id().as_str());
        text(&mut h, tx.transaction_id().as_str());
        h.update(tx.amount().to_bits().to_le_bytes());
        text(&mut h, tx.currency().as_str());
        h.update(tx.kind().to_le_bytes());
        text(&mut h, tx.merchant_id());
        text(&mut h, tx.card_bin().as_str());
        text(&mut h, &tx.ip_address().to_string());
        text(&mut h, tx.device_id());
        text(&mut h, tx.location());
        text(&mut h, tx.channel());
        h.update(tx.timestamp().unix_timestamp_nanos().to_le_bytes());
        opt_bool(&mut h, tx.is_fraud());
        opt_f64(&mut h, tx.merchant_risk_score());
        opt_f64(&mut h, tx.card_risk_score());
        opt_f64(&mut h, tx.customer_risk_score());
        h.update([
            u8::from(tx.is_velocity_alert()),
            u8::from(tx.is_location_alert()),
            u8::from(tx.is_device_alert()),
            u8::from(tx.is_high_value()),
        ]);
        h.update((tx.customer_segments().len() as u64).to_le_bytes());
        for segment in tx.customer_segments() {
            text(&mut h, segment);
        }
        match tx.transaction_category() {
            None => h.update([0]),
            Some(category) => {
                h.update([1]);
                text(&mut h, category);
            }
        }
        Fingerprint(h.finalize().into())
    }
}

/// How [`TransactionStore::record`] may open a unit of work: when, what is still retained, and
/// whether a transaction the store does not hold may be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reception {
    /// The time of reception.
    pub now: OffsetDateTime,
    /// The customer's transactions with a timestamp at or before this instant are deleted:
    /// `now` minus the retention (the longest window plus the accepted lateness).
    pub horizon: OffsetDateTime,
    /// Whether a transaction the store does not hold may be recorded: `false` when it arrived
    /// later than the accepted lateness, so that it can only be a retry of one recorded before
    /// (a replay, or a resume of a unit of work that did not reach its commit).
    pub accept_new: bool,
    /// When the service gives up on this request. See [`TransactionStore::record`].
    pub deadline: Instant,
}

/// What [`TransactionStore::record`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordOutcome {
    /// The transaction is recorded (now, or earlier without an assessment): here are the
    /// customer's statistics at its time. Score it and [`TransactionStore::commit`].
    Recorded(WindowStats),
    /// The same transaction was already assessed: answer with this, unchanged.
    Replayed(Box<Assessment>),
    /// The store does not hold this transaction and [`Reception::accept_new`] is `false`: it
    /// arrived too late to be recorded. Nothing was recorded.
    TooLate,
    /// These ids were already used for a different transaction. Nothing was recorded.
    Conflict,
}

/// What [`TransactionStore::commit`] did.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "an outcome is returned once per request and consumed at once; boxing the \
              assessment would allocate for nothing"
)]
pub enum CommitOutcome {
    /// The assessment was saved.
    Saved,
    /// A concurrent duplicate saved its assessment first; this one is the answer, as for a replay.
    AlreadySaved(Assessment),
}

/// The store failed. No store error is caused by the client's input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time. Retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store answered something it should not have: stored data or a script is broken.
    #[error("store failed: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store no longer holds the transaction this unit of work recorded: it was lost between
    /// `record` and `commit` (evicted, flushed, lost in a failover). Nothing is saved; a retry
    /// records it again, once.
    #[error("the transaction's record was lost between record and commit")]
    Lost,
}

/// Where transactions and their assessments are kept. See the [module](self) for the unit of
/// work and its invariants, which every adapter must uphold; the `antifraud-store-conformance`
/// crate checks them.
///
/// Retention: `record` deletes the customer's transactions at or before
/// [`Reception::horizon`], and adapters delete idle customers' data by their own means (expiry,
/// sweeping) no sooner than that. Windows are computed over what is retained, so a transaction
/// accepted up to the lateness late still sees all of its 24 h.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait TransactionStore: Send + Sync {
    /// Opens the unit of work for `tx`, received as `reception` says.
    ///
    /// The service gives up on the call at [`Reception::deadline`]. Adapters whose calls can run
    /// on after the caller stopped waiting (a command queued on a server) MUST make such a call
    /// take no effect once the deadline has passed, so that an answer given without the store
    /// ("nothing recorded") stays true.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached in time; nothing is known to
    /// be recorded then, and a retry is safe.
    async fn record(
        &self,
        tx: &Transaction,
        fingerprint: &Fingerprint,
        reception: &Reception,
    ) -> Result<RecordOutcome, StoreError>;

    /// Closes the unit of work: saves `assessment` for `tx` unless one is saved already. As for
    /// `record`, a call the service gave up on at `deadline` MUST take no effect afterwards.
    ///
    /// # Errors
    /// As for [`TransactionStore::record`]. The transaction stays recorded, exactly once.
    /// Adapters MUST return [`StoreError::Lost`] when `tx` is no longer recorded, never save an
    /// assessment for it then, and never treat that as a fault of their own.
    async fn commit(
        &self,
        tx: &Transaction,
        assessment: &Assessment,
        deadline: Instant,
    ) -> Result<CommitOutcome, StoreError>;

    /// Whether the store answers now (for readiness checks).
    async fn check(&self) -> Result<(), StoreError>;
}

/// The composition root picks the store at run time and shares it: `Arc<dyn TransactionStore>`.
#[async_trait]
impl<T: TransactionStore + ?Sized> TransactionStore for std::sync::Arc<T> {
    async fn record(
        &self,
        tx: &Transaction,
        fingerprint: &Fingerprint,
        reception: &Reception,
    ) -> Result<RecordOutcome, StoreError> {
        (**self).record(tx, fingerprint, reception).await
    }

    async fn commit(
        &self,
        tx: &Transaction,
        assessment: &Assessment,
        deadline: Instant,
    ) -> Result<CommitOutcome, StoreError> {
        (**self).commit(tx, assessment, deadline).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        (**self).check().await
    }
}
