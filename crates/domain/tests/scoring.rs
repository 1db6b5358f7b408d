//! The scoring use case against mockall doubles of its ports.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use antifraud_domain::{
    Action, Assessment, CommitOutcome, Decision, Degradation, Evaluation, Facts, Features,
    FraudModel, MockClock, MockFraudModel, MockTransactionStore, Mode, ModelError, ModelIdentity,
    ModelStatus, Prediction, Reason, Reception, RecordOutcome, RuleEvaluation, RuleOutcome,
    RuleSet, ScoreError, ScoringPolicy, ScoringService, StoreError, TransactionInput, Window,
    WindowStat, WindowStats,
};
use async_trait::async_trait;
use futures_executor::block_on;
use time::macros::datetime;

mod common;

use common::NOW;

fn input() -> TransactionInput {
    common::required_fields()
}

fn stats() -> WindowStats {
    WindowStats::from_windows([
        WindowStat::exact(1, 120_000),
        WindowStat::exact(2, 220_000),
        WindowStat::exact(3, 320_000),
        WindowStat::exact(4, 420_000),
    ])
}

fn identity() -> ModelIdentity {
    ModelIdentity {
        name: "test-model".into(),
        version: "7".into(),
    }
}

/// A clock fixed at `NOW` whose timer fires at once: the model must already have answered.
fn clock() -> MockClock {
    let mut clock = MockClock::new();
    clock.expect_now().return_const(NOW);
    clock.expect_sleep().return_const(());
    clock
}

/// A clock fixed at `NOW` whose timer is asked for once, for a duration that `expected` accepts,
/// and fires at once.
fn clock_sleeping(expected: fn(&Duration) -> bool) -> MockClock {
    let mut clock = MockClock::new();
    clock.expect_now().return_const(NOW);
    clock
        .expect_sleep()
        .withf(expected)
        .times(1)
        .return_const(());
    clock
}

/// A store that records the transaction with `stats()` and saves whatever is committed.
fn recording_store() -> MockTransactionStore {
    let mut store = MockTransactionStore::new();
    store
        .expect_record()
        .times(1)
        .returning(|_, _, _| Ok(RecordOutcome::Recorded(stats())));
    store
        .expect_commit()
        .times(1)
        .returning(|_, _, _| Ok(CommitOutcome::Saved));
    store
}

/// A store whose `record` answers `record`, and whose `commit` answers `commit` (or must never
/// be called, for `None`).
fn store_answering(
    record: fn() -> Result<RecordOutcome, StoreError>,
    commit: Option<fn() -> Result<CommitOutcome, StoreError>>,
) -> MockTransactionStore {
    let mut store = MockTransactionStore::new();
    store.expect_record().returning(move |_, _, _| record());
    match commit {
        Some(commit) => store.expect_commit().returning(move |_, _, _| commit()),
        None => store.expect_commit().never(),
    };
    store
}

/// The probability `p`, from the model of [`identity`].
fn prediction(p: f64) -> Prediction {
    Prediction {
        probability: p,
        model: identity(),
    }
}

/// A store that records the transaction, then does not save its assessment in time.
fn commit_times_out() -> MockTransactionStore {
    store_answering(
        || Ok(RecordOutcome::Recorded(stats())),
        Some(|| Err(StoreError::Unavailable("timed out".into()))),
    )
}

fn model_answering(answer: fn() -> Result<f64, ModelError>) -> MockFraudModel {
    let mut model = MockFraudModel::new();
    model.expect_identity().returning(identity);
    model
        .expect_predict()
        .times(1)
        .returning(move |_| answer().map(prediction));
    model
}

fn service<M: FraudModel>(
    store: MockTransactionStore,
    model: M,
) -> ScoringService<MockTransactionStore, M, MockClock> {
    ScoringService::new(store, model, clock(), ScoringPolicy::DEFAULT)
}

#[test]
fn scores_with_the_model_and_commits_the_assessment() {
    let mut store = MockTransactionStore::new();
    store
        .expect_record()
        .withf(|tx, _, reception: &Reception| {
            // Received now; history kept for the 24 h windows plus the default 24 h lateness;
            // the store told when the service gives up (200 ms from the request's arrival).
            let deadline = reception.deadline.saturating_duration_since(Instant::now());
            tx.transaction_id().as_str() == "tx-1"
                && *reception
                    == Reception {
                        now: NOW,
                        horizon: NOW - time::Duration::hours(48),
                        accept_new: true,
                        deadline: reception.deadline,
                    }
                && deadline <= Duration::from_millis(200)
                && deadline > Duration::from_millis(100)
        })
        .times(1)
        .returning(|_, _, _| Ok(RecordOutcome::Recorded(stats())));
    store
        .expect_commit()
        .withf(|_, a: &Assessment, _| a.score == 0.9 && a.is_fraud && a.stats == stats())
        .times(1)
        .returning(|_, _, _| Ok(CommitOutcome::Saved));
    let mut model = MockFraudModel::new();
    model.expect_identity().returning(identity);
    model
        .expect_predict()
        .withf(|f: &Features| f.get(antifraud_domain::Feature::Count24h) == 4.0)
        .times(1)
        .returning(|_| Ok(prediction(0.9)));

    let scored = block_on(service(store, model).score(input(), Instant::now())).expect("scored");

    assert!(!scored.replayed);
    let a = scored.assessment;
    assert_eq!(a.customer_id.as_str(), "cust-1");
    assert_eq!(a.transaction_id.as_str(), "tx-1");
    assert_eq!(
        (a.score, a.is_fraud, a.model_status),
        (0.9, true, ModelStatus::Ok)
    );
    assert_eq!(a.model, identity());
    assert_eq!(a.stats.get(Window::Hours24).count, 4);
    assert_eq!(a.processed_at, NOW);
}

#[test]
fn the_processing_time_counts_from_the_start_of_the_request_in_whole_units() {
    // The request began 40 ms before the use case was called (its body was slow to arrive).
    let started = Instant::now() - Duration::from_millis(40);
    let a =
        block_on(service(recording_store(), model_answering(|| Ok(0.1))).score(input(), started))
            .expect("scored")
            .assessment;
    let us = a.processing_time.micros().expect("measured");
    assert!(us >= 40_000, "{us} µs");
    assert_eq!(
        a.processing_time.millis(),
        antifraud_domain::Milliseconds::Whole(us.div_ceil(1_000))
    );
}

#[test]
fn a_score_at_the_threshold_is_fraud_and_declined_and_below_it_is_neither() {
    let threshold = ScoringPolicy::DEFAULT.fraud_threshold();
    for (score, fraud) in [(threshold, true), (threshold - 1e-9, false)] {
        let mut model = MockFraudModel::new();
        model.expect_identity().returning(identity);
        model
            .expect_predict()
            .returning(move |_| Ok(prediction(score)));
        let scored = block_on(service(recording_store(), model).score(input(), Instant::now()))
            .expect("scored");
        assert_eq!(scored.assessment.is_fraud, fraud, "score {score}");
        // Without a rule set of its own, the built-in one decides from the threshold.
        let decision = scored.assessment.decision.expect("decided");
        assert_eq!(
            decision.rules_version,
            antifraud_domain::ThresholdRules::VERSION
        );
        if fraud {
            assert_eq!(decision.action, Action::Decline);
            let reason = &decision.reasons[0];
            assert_eq!(
                (reason.code.as_str(), reason.action),
                ("model_score", Action::Decline)
            );
            assert!(
                reason.detail.contains(&format!("threshold {threshold:.4}")),
                "{reason:?}"
            );
        } else {
            assert_eq!(decision.action, Action::Approve);
            assert!(decision.reasons.is_empty());
        }
    }
}

/// A model that never answers.
struct SilentModel;

#[async_trait]
impl FraudModel for SilentModel {
    fn identity(&self) -> ModelIdentity {
        identity()
    }
    async fn predict(&self, _: &Features) -> Result<Prediction, ModelError> {
        std::future::pending().await
    }
    async fn check(&self) -> Result<(), ModelError> {
        Ok(())
    }
}

#[test]
fn a_model_that_misses_its_budget_gets_the_default_score() {
    let clock = clock_sleeping(|d| *d == Duration::from_millis(100));
    let policy = ScoringPolicy::new(Duration::from_millis(100), 0.42, 0.4).expect("valid");
    let service = ScoringService::new(recording_store(), SilentModel, clock, policy);

    let a = block_on(service.score(input(), Instant::now()))
        .expect("scored")
        .assessment;

    assert_eq!(a.model_status, ModelStatus::Timeout);
    assert_eq!(a.score, 0.42);
    assert!(
        a.is_fraud,
        "the default score is judged against the threshold like any other"
    );
}

#[test]
fn a_failing_model_gets_the_default_score() {
    let model = model_answering(|| Err(ModelError::Unavailable("down".into())));
    let a = block_on(service(recording_store(), model).score(input(), Instant::now()))
        .expect("scored")
        .assessment;
    assert_eq!(
        (a.score, a.model_status, a.is_fraud),
        (0.5, ModelStatus::Error, false)
    );
}

#[test]
fn an_answer_that_is_not_a_probability_gets_the_default_score() {
    for answer in [f64::NAN, -0.1, 1.1, f64::INFINITY] {
        let mut model = MockFraudModel::new();
        model.expect_identity().returning(identity);
        model
            .expect_predict()
            .returning(move |_| Ok(prediction(answer)));
        let a = block_on(service(recording_store(), model).score(input(), Instant::now()))
            .expect("scored")
            .assessment;
        assert_eq!(
            (a.score, a.model_status),
            (0.5, ModelStatus::Error),
            "answer {answer}"
        );
    }
}

#[test]
fn a_panicking_model_gets_the_default_score() {
    let mut model = MockFraudModel::new();
    model.expect_identity().returning(identity);
    model.expect_predict().returning(|_| panic!("model bug"));
    let a = block_on(service(recording_store(), model).score(input(), Instant::now()))
        .expect("scored")
        .assessment;
    assert_eq!((a.score, a.model_status), (0.5, ModelStatus::Error));
}

fn saved() -> Assessment {
    Assessment {
        customer_id: antifraud_domain::CustomerId::parse("cust-1").expect("valid"),
        transaction_id: antifraud_domain::TransactionId::parse("tx-1").expect("valid"),
        score: 0.123,
        is_fraud: false,
        stats: stats(),
        model: identity(),
        model_status: ModelStatus::Ok,
        degraded: None,
        processing_time: antifraud_domain::ProcessingTime::of(Duration::from_micros(3_500)),
        processed_at: datetime!(2026-11-25 11:59:30 UTC),
        // Saved before decisions existed: it replays without one.
        decision: None,
    }
}

#[test]
fn a_retry_of_an_assessed_transaction_replays_it_without_asking_the_model() {
    let store = store_answering(|| Ok(RecordOutcome::Replayed(Box::new(saved()))), None);
    let mut model = MockFraudModel::new();
    model.expect_predict().never();

    let scored = block_on(service(store, model).score(input(), Instant::now())).expect("replayed");

    assert!(scored.replayed);
    assert_eq!(scored.assessment, saved());
}

#[test]
fn a_duplicate_that_loses_the_commit_race_answers_with_the_winner() {
    let store = store_answering(
        || Ok(RecordOutcome::Recorded(stats())),
        Some(|| Ok(CommitOutcome::AlreadySaved(saved()))),
    );
    let model = model_answering(|| Ok(0.99));

    let scored = block_on(service(store, model).score(input(), Instant::now())).expect("scored");

    assert!(scored.replayed);
    assert_eq!(scored.assessment, saved());
}

#[test]
fn reused_ids_with_another_payload_are_a_conflict() {
    let store = store_answering(|| Ok(RecordOutcome::Conflict), None);
    let result = block_on(service(store, MockFraudModel::new()).score(input(), Instant::now()));
    assert!(matches!(result, Err(ScoreError::Conflict)), "{result:?}");
}

#[test]
fn invalid_input_is_refused_before_the_store_is_touched() {
    let mut store = MockTransactionStore::new();
    store.expect_record().never();
    let bad = TransactionInput {
        amount: Some(-1.0),
        currency: Some("usd".into()),
        ..input()
    };
    match block_on(service(store, MockFraudModel::new()).score(bad, Instant::now())) {
        Err(ScoreError::Invalid(e)) => {
            let fields: Vec<_> = e.fields.iter().map(|f| f.field.as_str()).collect();
            assert_eq!(fields, ["amount", "currency"]);
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn a_store_failure_is_reported_and_nothing_is_scored() {
    let store = store_answering(
        || Err(StoreError::Unavailable("connection refused".into())),
        None,
    );
    let mut model = MockFraudModel::new();
    model.expect_predict().never();
    let result = block_on(service(store, model).score(input(), Instant::now()));
    assert!(
        matches!(result, Err(ScoreError::Store(StoreError::Unavailable(_)))),
        "{result:?}"
    );
}

#[test]
fn policies_out_of_range_are_refused() {
    let ms = Duration::from_millis;
    assert!(ScoringPolicy::new(ms(0), 0.5, 0.5).is_err());
    assert!(ScoringPolicy::new(ms(10_001), 0.5, 0.5).is_err());
    assert!(ScoringPolicy::new(ms(100), 1.5, 0.5).is_err());
    assert!(ScoringPolicy::new(ms(100), f64::NAN, 0.5).is_err());
    assert!(ScoringPolicy::new(ms(100), 0.5, -0.1).is_err());
    assert!(ScoringPolicy::new(ms(1), 0.0, 1.0).is_ok());
}

fn degrading() -> ScoringPolicy {
    ScoringPolicy::DEFAULT.with_store_failure(antifraud_domain::StoreFailurePolicy::Degrade)
}

#[test]
fn with_the_degrade_policy_an_unreachable_store_scores_without_history() {
    let store = store_answering(|| Err(StoreError::Unavailable("timed out".into())), None);
    let model = model_answering(|| Ok(0.2));
    let service = ScoringService::new(store, model, clock(), degrading());

    let scored = block_on(service.score(input(), Instant::now())).expect("scored");

    let a = scored.assessment;
    assert_eq!(a.degraded, Some(Degradation::NotRecorded));
    assert!(!scored.replayed);
    assert_eq!((a.score, a.model_status), (0.2, ModelStatus::Ok));
    for window in Window::ALL {
        assert_eq!(
            a.stats.get(window),
            WindowStat::exact(1, 120_000),
            "only itself"
        );
    }
}

#[test]
fn with_the_degrade_policy_a_failed_commit_is_marked_degraded() {
    let store = commit_times_out();
    let service = ScoringService::new(store, model_answering(|| Ok(0.2)), clock(), degrading());

    let a = block_on(service.score(input(), Instant::now()))
        .expect("scored")
        .assessment;

    assert_eq!(a.degraded, Some(Degradation::NotSaved));
    assert_eq!(a.stats, stats(), "the history was read");
}

#[test]
fn the_degrade_policy_does_not_hide_internal_store_errors() {
    let store = store_answering(|| Err(StoreError::Internal("broken script".into())), None);
    let mut model = MockFraudModel::new();
    model.expect_predict().never();
    let service = ScoringService::new(store, model, clock(), degrading());
    let result = block_on(service.score(input(), Instant::now()));
    assert!(
        matches!(result, Err(ScoreError::Store(StoreError::Internal(_)))),
        "{result:?}"
    );
}

#[test]
fn with_the_reject_policy_a_failed_commit_is_an_error() {
    let store = commit_times_out();
    let result =
        block_on(service(store, model_answering(|| Ok(0.2))).score(input(), Instant::now()));
    assert!(
        matches!(result, Err(ScoreError::Store(StoreError::Unavailable(_)))),
        "{result:?}"
    );
}

#[test]
fn a_record_lost_before_the_commit_is_a_store_error_or_under_degrade_a_degraded_answer() {
    let lost = || {
        store_answering(
            || Ok(RecordOutcome::Recorded(stats())),
            Some(|| Err(StoreError::Lost)),
        )
    };
    let result =
        block_on(service(lost(), model_answering(|| Ok(0.2))).score(input(), Instant::now()));
    assert!(
        matches!(result, Err(ScoreError::Store(StoreError::Lost))),
        "{result:?}"
    );
    let service = ScoringService::new(lost(), model_answering(|| Ok(0.2)), clock(), degrading());
    let a = block_on(service.score(input(), Instant::now()))
        .expect("scored")
        .assessment;
    assert_eq!(
        a.degraded,
        Some(Degradation::NotSaved),
        "not saved for replay: it says so"
    );
}

#[test]
fn the_answer_names_the_model_that_gave_it_even_when_swapped_during_the_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let version = |v: &str| ModelIdentity {
        name: "fraud".into(),
        version: v.into(),
    };
    // A model that `v2` replaces while it computes: from then on `identity` says `v2`.
    let swapping = |answer: fn() -> Result<f64, ModelError>| {
        let reloaded = Arc::new(AtomicBool::new(false));
        let mut model = MockFraudModel::new();
        let seen = Arc::clone(&reloaded);
        model.expect_identity().returning(move || {
            version(if seen.load(Ordering::SeqCst) {
                "v2"
            } else {
                "v1"
            })
        });
        model.expect_predict().returning(move |_| {
            reloaded.store(true, Ordering::SeqCst);
            answer().map(|probability| Prediction {
                probability,
                model: version("v1"),
            })
        });
        model
    };
    let answered =
        block_on(service(recording_store(), swapping(|| Ok(0.3))).score(input(), Instant::now()))
            .expect("scored")
            .assessment;
    assert_eq!(answered.model, version("v1"), "the model that answered");

    let failed = block_on(
        service(
            recording_store(),
            swapping(|| Err(ModelError::Unavailable("x".into()))),
        )
        .score(input(), Instant::now()),
    )
    .expect("scored")
    .assessment;
    assert_eq!(
        (failed.model, failed.model_status),
        (version("v1"), ModelStatus::Error),
        "without an answer, the model that was asked"
    );
}

/// The input, `hours` before the reception time.
fn late_by(hours: i64) -> TransactionInput {
    let at = NOW - time::Duration::hours(hours);
    TransactionInput {
        timestamp: Some(
            at.format(&time::format_description::well_known::Rfc3339)
                .expect("formats"),
        ),
        ..input()
    }
}

#[test]
fn a_transaction_later_than_the_lateness_can_only_be_a_retry() {
    // 25 h late: past the default 24 h lateness, inside the 48 h retention. The store is asked
    // (it may hold a retry) but may not record it; one it does not hold is refused, naming the
    // timestamp.
    let mut store = MockTransactionStore::new();
    store
        .expect_record()
        .withf(|_, _, reception: &Reception| !reception.accept_new)
        .returning(|_, _, _| Ok(RecordOutcome::TooLate));
    store.expect_commit().never();
    match block_on(service(store, MockFraudModel::new()).score(late_by(25), Instant::now())) {
        Err(ScoreError::Invalid(error)) => {
            assert_eq!(error.fields.len(), 1);
            assert_eq!(error.fields[0].field, "timestamp");
            assert_eq!(error.fields[0].violation.code(), "too_old");
        }
        other => panic!("expected a 422 on the timestamp, got {other:?}"),
    }

    // One it holds is a replay, however late.
    let store = store_answering(|| Ok(RecordOutcome::Replayed(Box::new(saved()))), None);
    let scored = block_on(service(store, MockFraudModel::new()).score(late_by(25), Instant::now()))
        .expect("replayed");
    assert!(scored.replayed);

    // Beyond the retention nothing can hold it: refused without asking the store.
    let mut store = MockTransactionStore::new();
    store.expect_record().never();
    let result = block_on(service(store, MockFraudModel::new()).score(late_by(49), Instant::now()));
    assert!(matches!(result, Err(ScoreError::Invalid(_))), "{result:?}");
}

#[test]
fn with_the_degrade_policy_a_late_transaction_is_not_scored_without_the_store() {
    // Without the store there is nothing to replay, and scoring it as new would accept what the
    // lateness refuses: the outage is reported instead.
    let store = store_answering(|| Err(StoreError::Unavailable("down".into())), None);
    let service = ScoringService::new(store, MockFraudModel::new(), clock(), degrading());
    let result = block_on(service.score(late_by(25), Instant::now()));
    assert!(
        matches!(result, Err(ScoreError::Store(StoreError::Unavailable(_)))),
        "{result:?}"
    );
}

/// A store that never answers `record`.
struct SilentStore;

#[async_trait]
impl antifraud_domain::TransactionStore for SilentStore {
    async fn record(
        &self,
        _: &antifraud_domain::Transaction,
        _: &antifraud_domain::Fingerprint,
        _: &Reception,
    ) -> Result<RecordOutcome, StoreError> {
        std::future::pending().await
    }
    async fn commit(
        &self,
        _: &antifraud_domain::Transaction,
        _: &Assessment,
        _: Instant,
    ) -> Result<CommitOutcome, StoreError> {
        std::future::pending().await
    }
    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[test]
fn a_store_that_never_answers_is_cut_at_the_deadline() {
    // The clock's timer is asked for what remains of the 200 ms deadline, and fires.
    let deadline_clock =
        || clock_sleeping(|d| *d <= Duration::from_millis(200) && *d > Duration::from_millis(150));
    let service = ScoringService::new(
        SilentStore,
        MockFraudModel::new(),
        deadline_clock(),
        ScoringPolicy::DEFAULT,
    );
    let result = block_on(service.score(input(), Instant::now()));
    assert!(
        matches!(result, Err(ScoreError::Store(StoreError::Unavailable(_)))),
        "{result:?}"
    );
    let service = ScoringService::new(
        SilentStore,
        model_answering(|| Ok(0.2)),
        clock(),
        degrading(),
    );
    let a = block_on(service.score(input(), Instant::now()))
        .expect("scored without history")
        .assessment;
    assert_eq!(a.degraded, Some(Degradation::NotRecorded));
}

#[test]
fn the_model_gets_what_remains_of_the_deadline_when_the_store_was_slow() {
    // 150 ms of the 200 ms are gone when the use case starts (a slow body, a slow store): the
    // model gets what remains but the commit's share (a tenth of the deadline), not its 100 ms.
    let clock = clock_sleeping(|d| *d <= Duration::from_millis(30));
    let service = ScoringService::new(
        recording_store(),
        SilentModel,
        clock,
        ScoringPolicy::DEFAULT,
    );
    let started = Instant::now() - Duration::from_millis(150);
    let a = block_on(service.score(input(), started))
        .expect("scored")
        .assessment;
    assert_eq!(a.model_status, ModelStatus::Timeout);
    assert!(
        ScoringPolicy::DEFAULT
            .with_deadline(Duration::ZERO)
            .is_err()
    );
    assert!(
        ScoringPolicy::DEFAULT
            .with_deadline(Duration::from_secs(11))
            .is_err()
    );
}

#[test]
fn past_the_deadline_the_store_is_not_even_asked() {
    // The body took longer than the whole deadline: nothing is sent to the store, so nothing
    // can take effect there after the service has given up.
    let mut store = MockTransactionStore::new();
    store.expect_record().never();
    store.expect_commit().never();
    let service = ScoringService::new(
        store,
        MockFraudModel::new(),
        clock(),
        ScoringPolicy::DEFAULT,
    );
    let started = Instant::now() - Duration::from_millis(250);
    let result = block_on(service.score(input(), started));
    assert!(
        matches!(result, Err(ScoreError::Store(StoreError::Unavailable(_)))),
        "{result:?}"
    );
}

/// What a rule set saw of one transaction: score, is_fraud, model status, degraded, count 24 h.
type Seen = (f64, bool, ModelStatus, bool, u64);

/// What a rule set saw, and the decision it gives: review, with the facts in its detail.
struct Recording {
    seen: Mutex<Vec<Seen>>,
}

impl Recording {
    fn new() -> Arc<Recording> {
        Arc::new(Recording {
            seen: Mutex::new(Vec::new()),
        })
    }
}

impl RuleSet for Recording {
    fn version(&self) -> String {
        "recording-7".to_owned()
    }

    fn rules(&self) -> Vec<(Arc<str>, Mode)> {
        vec![
            ("velocity".into(), Mode::Active),
            ("tryout".into(), Mode::Shadow),
        ]
    }

    fn evaluate(&self, facts: &Facts<'_>) -> Evaluation {
        let count = facts.stats.get(Window::Hours24).count;
        self.seen.lock().expect("not poisoned").push((
            facts.score,
            facts.is_fraud,
            facts.model_status,
            facts.degraded,
            count,
        ));
        let reason = Reason {
            code: "VELOCITY".into(),
            rule: "velocity".into(),
            action: Action::Review,
            detail: format!("count_24h {count} > 3"),
        };
        Evaluation {
            decision: Decision::from_reasons(vec![reason], "recording-7"),
            rules: vec![
                RuleEvaluation {
                    rule: "velocity".into(),
                    mode: Mode::Active,
                    outcome: RuleOutcome::Fired,
                    error: None,
                },
                RuleEvaluation {
                    rule: "tryout".into(),
                    mode: Mode::Shadow,
                    outcome: RuleOutcome::Fired,
                    error: None,
                },
            ],
        }
    }
}

#[test]
fn the_rule_set_decides_and_its_decision_is_saved_with_the_answer() {
    let mut store = MockTransactionStore::new();
    store
        .expect_record()
        .returning(|_, _, _| Ok(RecordOutcome::Recorded(stats())));
    store
        .expect_commit()
        .withf(|_, a: &Assessment, _| {
            a.decision.as_ref().is_some_and(|d| {
                d.action == Action::Review
                    && d.rules_version == "recording-7"
                    && d.reasons[0].detail == "count_24h 4 > 3"
            })
        })
        .times(1)
        .returning(|_, _, _| Ok(CommitOutcome::Saved));
    let rules = Recording::new();
    let service = service(store, model_answering(|| Ok(0.9))).with_rules(rules.clone());

    let scored = block_on(service.score(input(), Instant::now())).expect("scored");

    let decision = scored.assessment.decision.expect("decided");
    assert_eq!(decision.action, Action::Review);
    assert_eq!(decision.reasons.len(), 1, "the shadow rule acts on nothing");
    // Both evaluations go to the caller, for its metrics.
    assert_eq!(scored.rules.len(), 2);
    assert_eq!(scored.rules[1].mode, Mode::Shadow);
    let seen = rules.seen.lock().expect("not poisoned").clone();
    assert_eq!(seen, vec![(0.9, true, ModelStatus::Ok, false, 4)]);
}

#[test]
fn rules_see_the_model_that_failed_and_the_store_that_did() {
    let rules = Recording::new();
    let store = store_answering(|| Err(StoreError::Unavailable("timed out".into())), None);
    let service = ScoringService::new(
        store,
        model_answering(|| Err(ModelError::Failed("down".into()))),
        clock(),
        degrading(),
    )
    .with_rules(rules.clone());

    let scored = block_on(service.score(input(), Instant::now())).expect("scored");

    let default = ScoringPolicy::DEFAULT.default_score();
    let seen = rules.seen.lock().expect("not poisoned").clone();
    assert_eq!(seen, vec![(default, false, ModelStatus::Error, true, 1)]);
    assert_eq!(
        scored.assessment.decision.map(|d| d.action),
        Some(Action::Review),
        "a degraded answer is decided too"
    );
}

#[test]
fn a_replay_carries_the_saved_answer_as_it_was_without_deciding_again() {
    let store = store_answering(|| Ok(RecordOutcome::Replayed(Box::new(saved()))), None);
    let mut model = MockFraudModel::new();
    model.expect_predict().never();
    let rules = Recording::new();
    let service = service(store, model).with_rules(rules.clone());

    let scored = block_on(service.score(input(), Instant::now())).expect("replayed");

    assert_eq!(
        scored.assessment,
        saved(),
        "an answer from before decisions has none"
    );
    assert!(scored.rules.is_empty());
    assert!(rules.seen.lock().expect("not poisoned").is_empty());
}
