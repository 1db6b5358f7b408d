//! The scoring use case: validate, record, ask the model within its budget, decide, save the
//! assessment.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::assessment::{Assessment, Degradation, ProcessingTime};
use crate::clock::Clock;
use crate::decision::{Facts, RuleEvaluation, RuleSet, ThresholdRules};
use crate::features::Features;
use crate::model::{FraudModel, ModelIdentity, ModelStatus, Prediction};
use crate::race::{Bounded, bounded};
use crate::store::{
    CommitOutcome, Fingerprint, Reception, RecordOutcome, StoreError, TransactionStore,
};
use crate::transaction::{DEFAULT_MAX_LATENESS, TransactionInput};
use crate::validation::{FieldError, ValidationError, Violation};
use crate::window::{Window, WindowStats};

/// The knobs of the use case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoringPolicy {
    model_timeout: Duration,
    default_score: f64,
    fraud_threshold: f64,
    store_failure: StoreFailurePolicy,
    max_lateness: Duration,
    deadline: Duration,
}

/// What to do when the store cannot be reached or answers too late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreFailurePolicy {
    /// Refuse to score ([`ScoreError::Store`]): an answer always means the transaction is
    /// recorded.
    #[default]
    Reject,
    /// Score without history (the statistics of the transaction alone) and mark the assessment
    /// degraded. Nothing is recorded, so nothing can be replayed.
    Degrade,
}

/// A [`ScoringPolicy`] value is out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScoringPolicyError {
    /// The model timeout is zero or longer than [`ScoringPolicy::MAX_MODEL_TIMEOUT`].
    #[error("the model timeout must be between 1 ms and 10 s, got {0:?}")]
    ModelTimeout(Duration),
    /// The default score is not within 0..=1.
    #[error("the default score must be between 0 and 1, got {0}")]
    DefaultScore(f64),
    /// The fraud threshold is not within 0..=1.
    #[error("the fraud threshold must be between 0 and 1, got {0}")]
    FraudThreshold(f64),
    /// The deadline is zero or longer than [`ScoringPolicy::MAX_DEADLINE`].
    #[error("the deadline must be between 1 ms and 10 s, got {0:?}")]
    Deadline(Duration),
    /// The lateness is longer than [`ScoringPolicy::MAX_LATENESS`].
    #[error("the accepted lateness must be at most 7 days, got {0:?}")]
    MaxLateness(Duration),
}

impl ScoringPolicy {
    /// The longest model budget accepted: beyond it, answers are too late for a payment anyway.
    pub const MAX_MODEL_TIMEOUT: Duration = Duration::from_secs(10);

    /// The longest accepted lateness: history is kept for a day plus the lateness, so this bounds
    /// the store's memory at eight days of transactions.
    pub const MAX_LATENESS: Duration = Duration::from_secs(7 * 24 * 3600);

    /// The longest end-to-end deadline accepted.
    pub const MAX_DEADLINE: Duration = Duration::from_secs(10);

    /// The service's defaults: 100 ms model budget, default score 0.5, threshold 0.7, answers
    /// within 200 ms, transactions up to 24 h late.
    ///
    /// The threshold sits above the default score on purpose: a model outage must not flag every
    /// transaction as fraud.
    pub const DEFAULT: ScoringPolicy = ScoringPolicy {
        model_timeout: Duration::from_millis(100),
        default_score: 0.5,
        fraud_threshold: 0.7,
        store_failure: StoreFailurePolicy::Reject,
        max_lateness: Duration::from_secs(DEFAULT_MAX_LATENESS.whole_seconds().unsigned_abs()),
        deadline: Duration::from_millis(200),
    };

    /// A policy; every value is checked.
    pub fn new(
        model_timeout: Duration,
        default_score: f64,
        fraud_threshold: f64,
    ) -> Result<Self, ScoringPolicyError> {
        if model_timeout < Duration::from_millis(1) || model_timeout > Self::MAX_MODEL_TIMEOUT {
            return Err(ScoringPolicyError::ModelTimeout(model_timeout));
        }
        if !(0.0..=1.0).contains(&default_score) {
            return Err(ScoringPolicyError::DefaultScore(default_score));
        }
        if !(0.0..=1.0).contains(&fraud_threshold) {
            return Err(ScoringPolicyError::FraudThreshold(fraud_threshold));
        }
        Ok(ScoringPolicy {
            model_timeout,
            default_score,
            fraud_threshold,
            ..Self::DEFAULT
        })
    }

    /// The same policy accepting transactions up to `max_lateness` after their timestamp.
    ///
    /// # Errors
    /// [`ScoringPolicyError::MaxLateness`] beyond [`ScoringPolicy::MAX_LATENESS`].
    pub fn with_max_lateness(self, max_lateness: Duration) -> Result<Self, ScoringPolicyError> {
        if max_lateness > Self::MAX_LATENESS {
            return Err(ScoringPolicyError::MaxLateness(max_lateness));
        }
        Ok(ScoringPolicy {
            max_lateness,
            ..self
        })
    }

    /// The same policy answering every request within `deadline` of its arrival: the store's
    /// calls and the model get what remains of it.
    ///
    /// # Errors
    /// [`ScoringPolicyError::Deadline`] outside 1 ms..=[`ScoringPolicy::MAX_DEADLINE`].
    pub fn with_deadline(self, deadline: Duration) -> Result<Self, ScoringPolicyError> {
        if deadline < Duration::from_millis(1) || deadline > Self::MAX_DEADLINE {
            return Err(ScoringPolicyError::Deadline(deadline));
        }
        Ok(ScoringPolicy { deadline, ..self })
    }

    /// How long a request may take, from its arrival to its answer.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// How late a new transaction may arrive after its timestamp.
    pub fn max_lateness(&self) -> Duration {
        self.max_lateness
    }

    /// How long history is kept: the longest window plus the lateness, so that a transaction
    /// accepted as late as allowed still has all of its 24 h, and a retry of any accepted one
    /// finds it for at least the window's length after it arrived.
    pub fn retention(&self) -> Duration {
        Window::Hours24.duration().unsigned_abs() + self.max_lateness
    }

    /// The same policy with another answer to store failures.
    pub fn with_store_failure(self, store_failure: StoreFailurePolicy) -> Self {
        ScoringPolicy {
            store_failure,
            ..self
        }
    }

    /// What happens when the store fails.
    pub fn store_failure(&self) -> StoreFailurePolicy {
        self.store_failure
    }

    /// How long the model may take.
    pub fn model_timeout(&self) -> Duration {
        self.model_timeout
    }
    /// The score used when the model does not answer in time or fails.
    pub fn default_score(&self) -> f64 {
        self.default_score
    }
    /// Scores at or above this are fraud.
    pub fn fraud_threshold(&self) -> f64 {
        self.fraud_threshold
    }
}

impl Default for ScoringPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a transaction was not scored.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The input is invalid; nothing was recorded.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The ids were already used for a different transaction; nothing was recorded.
    #[error("transaction ids already used with a different payload")]
    Conflict,
    /// The store failed; the transaction may or may not be recorded, and a retry is safe.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A scored transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The assessment.
    pub assessment: Assessment,
    /// `true` when this is the assessment of an earlier request with the same transaction, sent
    /// back unchanged.
    pub replayed: bool,
    /// How each rule went when this request decided (none for a replay), for metrics: shadow
    /// rules and failed ones appear here and nowhere in the answer.
    pub rules: Vec<RuleEvaluation>,
}

/// When a request's answer is due.
struct Deadline {
    at: Instant,
}

impl Deadline {
    fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// The scoring use case, generic over its ports. The rule set is a trait object rather than a
/// fourth parameter: the service swaps it at run time (a reload), and one virtual call per
/// request is nothing beside evaluating it.
pub struct ScoringService<S, M, C> {
    store: S,
    model: M,
    clock: C,
    policy: ScoringPolicy,
    rules: Arc<dyn RuleSet>,
}

impl<S, M, C> ScoringService<S, M, C>
where
    S: TransactionStore,
    M: FraudModel,
    C: Clock,
{
    /// Wires the use case to its adapters.
    pub fn new(store: S, model: M, clock: C, policy: ScoringPolicy) -> Self {
        ScoringService {
            store,
            model,
            clock,
            policy,
            rules: Arc::new(ThresholdRules),
        }
    }

    /// Decides with `rules` instead of the built-in threshold rules.
    pub fn with_rules(self, rules: Arc<dyn RuleSet>) -> Self {
        ScoringService { rules, ..self }
    }

    /// The rule set in force.
    pub fn rules(&self) -> &Arc<dyn RuleSet> {
        &self.rules
    }

    /// The policy in force.
    pub fn policy(&self) -> &ScoringPolicy {
        &self.policy
    }

    /// The store, for readiness checks.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The model, for readiness checks.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// Scores one transaction: validates it, records it with its statistics, asks the model within
    /// the budget and saves the assessment. A retry of an assessed transaction returns the saved
    /// assessment with `replayed` set. `started` is when the request began (its first byte, as
    /// near as the caller knows): the answer's processing time counts from there.
    ///
    /// # Errors
    /// See [`ScoreError`]. A slow or failing model is not an error: the default score is used.
    pub async fn score(
        &self,
        input: TransactionInput,
        started: Instant,
    ) -> Result<Scored, ScoreError> {
        let received_at = self.clock.now();
        // At most eight days (the policy's bound): always a valid signed duration.
        let retention =
            time::Duration::try_from(self.policy.retention()).unwrap_or(time::Duration::MAX);
        // A span of its own, so a trace shows validation apart from the store and the model.
        // Anything the store may still hold passes here; whether a late one may be new is the
        // store's to say, after it has looked for a retry.
        let tx = tracing::info_span!("validate")
            .in_scope(|| input.validate_within(received_at, retention))?;
        let fingerprint = Fingerprint::of(&tx);
        let deadline = Deadline {
            at: started + self.policy.deadline,
        };
        let reception = Reception {
            now: received_at,
            horizon: received_at - retention,
            accept_new: tx.timestamp() > received_at - self.policy.max_lateness,
            deadline: deadline.at,
        };
        let degrade = self.policy.store_failure == StoreFailurePolicy::Degrade;
        let recording = || self.store.record(&tx, &fingerprint, &reception);
        let (stats, recorded) = match self.within(&deadline, recording).await {
            Ok(RecordOutcome::Recorded(stats)) => (stats, true),
            Ok(RecordOutcome::Replayed(assessment)) => {
                return Ok(Scored {
                    assessment: *assessment,
                    replayed: true,
                    rules: Vec::new(),
                });
            }
            Ok(RecordOutcome::Conflict) => return Err(ScoreError::Conflict),
            Ok(RecordOutcome::TooLate) => {
                return Err(ScoreError::Invalid(ValidationError {
                    fields: vec![FieldError {
                        field: "timestamp".to_owned(),
                        violation: Violation::TooOld,
                    }],
                }));
            }
            // A transaction too late to be new can only be a retry: without the store there is
            // nothing to replay, and scoring it as new would accept what must be refused.
            Err(StoreError::Unavailable(_)) if degrade && reception.accept_new => {
                // Without history: the statistics of this transaction alone.
                let alone = [(tx.timestamp(), tx.mills())];
                (WindowStats::aggregate(tx.timestamp(), alone), false)
            }
            Err(error) => return Err(error.into()),
        };

        // The model gets its budget, or what remains once the commit's share is set aside.
        let model_budget = self.policy.model_timeout.min(
            deadline
                .remaining()
                .saturating_sub(self.policy.deadline / 10),
        );
        let features = Features::new(&tx, &stats);
        let (score, model_status, model) = self.predict(&features, model_budget).await;
        let is_fraud = score >= self.policy.fraud_threshold;
        let evaluation = tracing::info_span!("rules").in_scope(|| {
            self.rules.evaluate(&Facts {
                transaction: &tx,
                stats: &stats,
                features: &features,
                score,
                is_fraud,
                threshold: self.policy.fraud_threshold,
                model: &model,
                model_status,
                degraded: !recorded,
            })
        });
        let rules = evaluation.rules;
        let mut assessment = Assessment {
            customer_id: tx.customer_id().clone(),
            transaction_id: tx.transaction_id().clone(),
            score,
            is_fraud,
            stats,
            model,
            model_status,
            degraded: (!recorded).then_some(Degradation::NotRecorded),
            // Up to the commit that saves it: the saved answer and the first one are the same.
            processing_time: ProcessingTime::since(started),
            processed_at: self.clock.now(),
            decision: Some(evaluation.decision),
        };
        if !recorded {
            return Ok(Scored {
                assessment,
                replayed: false,
                rules,
            });
        }
        match self
            .within(&deadline, || {
                self.store.commit(&tx, &assessment, deadline.at)
            })
            .await
        {
            Ok(CommitOutcome::Saved) => Ok(Scored {
                assessment,
                replayed: false,
                rules,
            }),
            // Another request's answer won: this one's rule evaluations decided nothing.
            Ok(CommitOutcome::AlreadySaved(first)) => Ok(Scored {
                assessment: first,
                replayed: true,
                rules: Vec::new(),
            }),
            // Recorded and counted (or lost since), but a retry cannot replay this answer: say so.
            Err(StoreError::Unavailable(_) | StoreError::Lost) if degrade => {
                assessment.degraded = Some(Degradation::NotSaved);
                Ok(Scored {
                    assessment,
                    replayed: false,
                    rules,
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    /// A store call, given what remains of the deadline: past it, the store counts as
    /// unavailable (the answer is then 503, or degraded), and a panic in an adapter is contained.
    async fn within<T, F: Future<Output = Result<T, StoreError>>>(
        &self,
        deadline: &Deadline,
        call: impl FnOnce() -> F,
    ) -> Result<T, StoreError> {
        let remaining = deadline.remaining();
        // Past the deadline already (a body slower than the deadline): the call is not even
        // sent, so no store is left to act on a request the service has given up on.
        if remaining.is_zero() {
            return Err(StoreError::Unavailable(
                "the request's deadline passed before the store was asked".into(),
            ));
        }
        match bounded(call(), self.clock.sleep(remaining)).await {
            Bounded::Done(result) => result,
            Bounded::TimedOut => Err(StoreError::Unavailable(
                "the store did not answer within the request's deadline".into(),
            )),
            Bounded::Panicked => Err(StoreError::Internal("the store adapter panicked".into())),
        }
    }

    /// The model's probability and identity, or the default score (and the model that was asked)
    /// when it is late, fails, panics or answers something that is not a probability.
    async fn predict(
        &self,
        features: &Features,
        budget: Duration,
    ) -> (f64, ModelStatus, ModelIdentity) {
        // Read before the call: the model asked, for answers it does not give.
        let asked = self.model.identity();
        let timer = self.clock.sleep(budget);
        // The call itself happens inside the bounded future, so a model that panics before it
        // returns a future is contained too.
        let prediction = async { self.model.predict(features).await };
        let default = self.policy.default_score;
        match bounded(prediction, timer).await {
            Bounded::Done(Ok(Prediction { probability, model }))
                if (0.0..=1.0).contains(&probability) =>
            {
                (probability, ModelStatus::Ok, model)
            }
            Bounded::Done(_) | Bounded::Panicked => (default, ModelStatus::Error, asked),
            Bounded::TimedOut => (default, ModelStatus::Timeout, asked),
        }
    }
}
