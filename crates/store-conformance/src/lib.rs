//! The conformance suite of the [`TransactionStore`] port: every adapter runs these same cases
//! against a real instance of its store, through [`store_conformance_tests!`].
//!
//! Each case uses customers of its own, so the cases may share one store and run concurrently.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use antifraud_domain::{
    Action, Assessment, CommitOutcome, Decision, Fingerprint, ModelIdentity, ModelStatus,
    ProcessingTime, Reason, Reception, RecordOutcome, StoreError, Sum, Transaction,
    TransactionInput, TransactionStore, Window, WindowStats,
};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

/// The list of cases, written once: calls `$then!(@cases $args; case, case, ...)`, so that the
/// per-case tests and [`run_all`] are generated from the same list.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_conformance_cases {
    ($then:ident, $($args:tt)*) => {
        $crate::$then! {@cases $($args)*;
            windows_count_and_average_each_window,
            sums_are_exact_in_mills_whatever_the_order,
            window_bounds_are_open_at_the_start_and_closed_at_the_end,
            later_transactions_do_not_count_for_earlier_ones,
            retry_after_commit_replays_the_saved_assessment,
            retry_before_commit_counts_once_and_first_commit_wins,
            same_ids_with_another_payload_conflict_and_are_not_recorded,
            transaction_ids_are_scoped_by_customer,
            customer_ids_are_taken_literally,
            concurrent_transactions_of_one_customer_get_exact_counts,
            transactions_older_than_the_retention_are_deleted,
            check_succeeds_on_a_healthy_store,
            a_commit_without_its_record_is_lost_and_saves_nothing,
            a_late_transaction_sees_the_whole_of_its_windows,
            a_retry_too_late_to_be_new_replays_and_an_unknown_one_is_too_late,
            the_horizon_never_moves_backwards_when_clocks_disagree,
        }
    };
}

/// Expands to one `#[tokio::test]` per conformance case. `$setup` is an expression that evaluates
/// to a future of `(guard, Arc<store>)`; it is evaluated once per case, and the guard (a server
/// process, say) lives until the case ends. The calling crate needs `tokio` with the `macros` and
/// `rt-multi-thread` features as a dev-dependency.
///
/// ```text
/// antifraud_store_conformance::store_conformance_tests!(async { ((), Arc::new(MemoryStore::new())) });
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($setup:expr) => {
        $crate::__with_conformance_cases!(store_conformance_tests, $setup);
    };
    (@cases $setup:expr; $($case:ident,)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (_guard, store) = $setup.await;
                $crate::$case(store).await;
            }
        )*
    };
}

/// The body of [`run_all`]: every case in turn.
#[doc(hidden)]
#[macro_export]
macro_rules! __run_each_case {
    (@cases $store:expr; $($case:ident,)*) => {
        $($crate::$case(::std::sync::Arc::clone(&$store)).await;)*
    };
}

/// Runs every case in turn against one store (cases use customers of their own), for stores that
/// are expensive to set up, such as a cluster.
pub async fn run_all<S: TransactionStore + 'static>(store: Arc<S>) {
    __with_conformance_cases!(__run_each_case, store);
}

/// A fixed reference time for the cases: every timestamp is relative to it.
fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-11-25 12:00 UTC)
}

/// A customer id no other case or run uses, so cases can share a store.
pub fn unique_customer(case: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let run = OffsetDateTime::now_utc().unix_timestamp_nanos();
    format!(
        "conformance:{case}:{run}:{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A valid transaction of `customer` at `at`, as the scoring use case would record it.
pub fn transaction(customer: &str, id: &str, amount: f64, at: OffsetDateTime) -> Transaction {
    TransactionInput {
        customer_id: Some(customer.into()),
        transaction_id: Some(id.into()),
        amount: Some(amount),
        timestamp: Some(at.format(&Rfc3339).expect("a datetime formats as RFC 3339")),
        ..TransactionInput::example()
    }
    .validate(at)
    .expect("the conformance transactions are valid")
}

/// An assessment of `tx` with the given score, as the use case would commit it.
pub fn assessment(tx: &Transaction, stats: WindowStats, score: f64) -> Assessment {
    Assessment {
        customer_id: tx.customer_id().clone(),
        transaction_id: tx.transaction_id().clone(),
        score,
        is_fraud: score >= 0.7,
        stats,
        model: ModelIdentity {
            name: "conformance".into(),
            version: "1".into(),
        },
        model_status: ModelStatus::Ok,
        degraded: None,
        processing_time: ProcessingTime::of(std::time::Duration::from_micros(1_250)),
        processed_at: tx.timestamp(),
        // A decision with a reason, so that a replay shows the store keeps it whole.
        decision: Some(Decision::from_reasons(
            vec![Reason {
                code: "conformance_high_score".into(),
                rule: "conformance.high_score".into(),
                action: if score >= 0.7 {
                    Action::Decline
                } else {
                    Action::Review
                },
                detail: format!("score {score} ≥ 0.5 — ünïcode and \"quotes\" survive"),
            }],
            "conformance-1",
        )),
    }
}

/// Records `tx` received at its own time and expects it to be recorded.
async fn record_new(store: &impl TransactionStore, tx: &Transaction) -> WindowStats {
    match record(store, tx).await {
        RecordOutcome::Recorded(stats) => stats,
        other => panic!(
            "expected {} to be recorded, got {other:?}",
            tx.transaction_id()
        ),
    }
}

/// The retention the cases run with: the longest window plus the default lateness.
const RETENTION: Duration = Duration::hours(48);

/// A deadline the cases never reach.
pub fn later() -> std::time::Instant {
    std::time::Instant::now() + std::time::Duration::from_secs(60)
}

/// A reception at `now` with the cases' retention, open to new transactions.
pub fn received(now: OffsetDateTime) -> Reception {
    Reception {
        now,
        horizon: now - RETENTION,
        accept_new: true,
        deadline: later(),
    }
}

/// The statistics of `last`, received as `reception`, after `c`'s transactions at these times
/// (new each, with amounts 10, 20, 30... in order).
async fn windows_after<const N: usize>(
    store: &impl TransactionStore,
    c: &str,
    history: [(&str, OffsetDateTime); N],
    last: &Transaction,
    reception: &Reception,
) -> WindowStats {
    for (i, (id, at)) in history.into_iter().enumerate() {
        let amount = 10.0 * (i + 1) as f64;
        record_new(store, &transaction(c, id, amount, at)).await;
    }
    recorded(record_at(store, last, reception).await)
}

/// (count, sum) over 3, 6, 12 and 24 h.
fn sums(stats: &WindowStats) -> [(u64, f64); 4] {
    Window::ALL.map(|w| (stats.get(w).count, stats.get(w).sum_units()))
}

/// The statistics of an outcome that must be a record.
fn recorded(outcome: RecordOutcome) -> WindowStats {
    match outcome {
        RecordOutcome::Recorded(stats) => stats,
        other => panic!("expected a record, got {other:?}"),
    }
}

async fn record(store: &impl TransactionStore, tx: &Transaction) -> RecordOutcome {
    record_at(store, tx, &received(tx.timestamp())).await
}

async fn record_at(
    store: &impl TransactionStore,
    tx: &Transaction,
    reception: &Reception,
) -> RecordOutcome {
    store
        .record(tx, &Fingerprint::of(tx), reception)
        .await
        .expect("the store answers")
}

fn counts(stats: &WindowStats) -> [u64; 4] {
    Window::ALL.map(|w| stats.get(w).count)
}

/// Each window counts and averages the transactions in its range.
pub async fn windows_count_and_average_each_window(store: Arc<impl TransactionStore>) {
    let c = unique_customer("windows");
    let hours = |h: i64| t0() - Duration::hours(h);
    let history = [
        ("a", hours(23)),
        ("b", hours(11)),
        ("c", hours(5)),
        ("d", hours(2)),
    ];
    let last = transaction(&c, "e", 50.0, t0());
    let stats = windows_after(&*store, &c, history, &last, &received(t0())).await;
    assert_eq!(
        sums(&stats),
        [(2, 90.0), (3, 120.0), (4, 140.0), (5, 150.0)]
    );
    assert_eq!(stats.get(Window::Hours24).average(), 30.0);
}

/// Sums are whole mills, so they do not depend on the order of the additions: in doubles,
/// `0.1 + 0.2 + 0.3` is `0.6000000000000001` and `0.3 + 0.2 + 0.1` is `0.6`. Customers past
/// 200 events are included, so that Redis's buckets, which add in their own order, are too.
pub async fn sums_are_exact_in_mills_whatever_the_order(store: Arc<impl TransactionStore>) {
    for fillers in [0, 250] {
        let mut days = Vec::new();
        for order in [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]] {
            let c = unique_customer("mills");
            for i in 0..fillers {
                let at = t0() - Duration::hours(20) + Duration::seconds(i);
                record_new(&*store, &transaction(&c, &format!("filler-{i}"), 1.0, at)).await;
            }
            let mut stats = WindowStats::default();
            for (i, amount) in order.into_iter().enumerate() {
                let at = t0() + Duration::seconds(i as i64);
                stats = record_new(&*store, &transaction(&c, &format!("tx-{i}"), amount, at)).await;
            }
            assert_eq!(stats.get(Window::Hours3).sum, Sum::Mills(600), "{order:?}");
            assert_eq!(stats.get(Window::Hours3).average(), 0.2, "{order:?}");
            days.push(stats.get(Window::Hours24));
        }
        assert_eq!(days[0], days[1], "{fillers} fillers");
        assert_eq!(days[0].sum, Sum::Mills(fillers as u128 * 1000 + 600));
    }
}

/// `(t − W, t]`: a transaction exactly `W` before is out, one a microsecond later is in.
pub async fn window_bounds_are_open_at_the_start_and_closed_at_the_end(
    store: Arc<impl TransactionStore>,
) {
    let c = unique_customer("bounds");
    let us = Duration::microseconds(1);
    for (id, at) in [
        ("out-3h", t0() - Duration::hours(3)),
        ("in-3h", t0() - Duration::hours(3) + us),
        ("out-6h", t0() - Duration::hours(6)),
        ("in-6h", t0() - Duration::hours(6) + us),
        ("out-12h", t0() - Duration::hours(12)),
        ("in-12h", t0() - Duration::hours(12) + us),
        ("in-24h", t0() - Duration::hours(24) + us),
    ] {
        record_new(&*store, &transaction(&c, id, 1.0, at)).await;
    }
    let stats = record_new(&*store, &transaction(&c, "now", 1.0, t0())).await;
    assert_eq!(counts(&stats), [2, 4, 6, 8]);
}

/// Event time, not arrival order: a transaction does not count ones timestamped after it.
pub async fn later_transactions_do_not_count_for_earlier_ones(store: Arc<impl TransactionStore>) {
    let c = unique_customer("order");
    record_new(&*store, &transaction(&c, "late", 100.0, t0())).await;
    let earlier = record_new(
        &*store,
        &transaction(&c, "early", 10.0, t0() - Duration::hours(1)),
    )
    .await;
    assert_eq!(counts(&earlier), [1, 1, 1, 1]);
    assert_eq!(earlier.get(Window::Hours24).sum_units(), 10.0);
    let after = record_new(
        &*store,
        &transaction(&c, "after", 1.0, t0() + Duration::minutes(1)),
    )
    .await;
    assert_eq!(counts(&after), [3, 3, 3, 3]);
    assert_eq!(after.get(Window::Hours24).sum_units(), 111.0);
}

/// A retry after the commit gets the saved assessment and counts nothing.
pub async fn retry_after_commit_replays_the_saved_assessment(store: Arc<impl TransactionStore>) {
    let c = unique_customer("replay");
    let tx = transaction(&c, "tx", 42.0, t0());
    let stats = record_new(&*store, &tx).await;
    let saved = assessment(&tx, stats, 0.25);
    assert_eq!(
        store.commit(&tx, &saved, later()).await.expect("commit"),
        CommitOutcome::Saved
    );
    for _ in 0..3 {
        assert_eq!(
            record(&*store, &tx).await,
            RecordOutcome::Replayed(Box::new(saved.clone()))
        );
    }
    let next = record_new(&*store, &transaction(&c, "next", 1.0, t0())).await;
    assert_eq!(counts(&next), [2, 2, 2, 2]);
}

/// A retry before any commit (a crash between the steps, or a duplicate in flight) is not
/// counted again, and the first assessment committed is the one that stands.
pub async fn retry_before_commit_counts_once_and_first_commit_wins(
    store: Arc<impl TransactionStore>,
) {
    let c = unique_customer("resume");
    let tx = transaction(&c, "tx", 42.0, t0());
    let first = record_new(&*store, &tx).await;
    let again = record_new(&*store, &tx).await;
    assert_eq!(first, again);
    assert_eq!(counts(&again), [1, 1, 1, 1]);
    let winner = assessment(&tx, first, 0.1);
    let loser = assessment(&tx, again, 0.9);
    assert_eq!(
        store.commit(&tx, &winner, later()).await.expect("commit"),
        CommitOutcome::Saved
    );
    assert_eq!(
        store.commit(&tx, &loser, later()).await.expect("commit"),
        CommitOutcome::AlreadySaved(winner.clone())
    );
    assert_eq!(
        record(&*store, &tx).await,
        RecordOutcome::Replayed(Box::new(winner))
    );
}

/// Reusing ids for a different transaction is refused, before or after the commit, and the
/// refused transaction is not counted.
pub async fn same_ids_with_another_payload_conflict_and_are_not_recorded(
    store: Arc<impl TransactionStore>,
) {
    let c = unique_customer("conflict");
    let tx = transaction(&c, "tx", 42.0, t0());
    let stats = record_new(&*store, &tx).await;
    let other_amount = transaction(&c, "tx", 43.0, t0());
    assert_eq!(
        record(&*store, &other_amount).await,
        RecordOutcome::Conflict
    );
    store
        .commit(&tx, &assessment(&tx, stats, 0.5), later())
        .await
        .expect("commit");
    let other_time = transaction(&c, "tx", 42.0, t0() - Duration::seconds(1));
    assert_eq!(record(&*store, &other_time).await, RecordOutcome::Conflict);
    let next = record_new(&*store, &transaction(&c, "next", 1.0, t0())).await;
    assert_eq!(counts(&next), [2, 2, 2, 2]);
    assert_eq!(next.get(Window::Hours24).sum_units(), 43.0);
}

/// Two customers may use the same transaction id: neither sees the other.
pub async fn transaction_ids_are_scoped_by_customer(store: Arc<impl TransactionStore>) {
    let a = unique_customer("scope-a");
    let b = unique_customer("scope-b");
    record_new(&*store, &transaction(&a, "shared", 10.0, t0())).await;
    let stats_b = record_new(&*store, &transaction(&b, "shared", 99.0, t0())).await;
    assert_eq!(counts(&stats_b), [1, 1, 1, 1]);
    assert_eq!(stats_b.get(Window::Hours24).sum_units(), 99.0);
}

/// Ids with braces, colons, spaces, unicode or great length are ids like any other, and ids that
/// differ in any character are different customers.
pub async fn customer_ids_are_taken_literally(store: Arc<impl TransactionStore>) {
    let base = unique_customer("literal");
    let long = format!("{base}{}", "x".repeat(200));
    let variants = [
        format!("{base}{{tag}}"),
        format!("{base}:{{tag}}"),
        format!("{base} "),
        format!("{base}:é✓"),
        format!("{base}:É✓"),
        long,
        base.clone(),
    ];
    for (i, customer) in variants.iter().enumerate() {
        let stats = record_new(&*store, &transaction(customer, "tx", i as f64, t0())).await;
        assert_eq!(counts(&stats), [1, 1, 1, 1], "customer {customer:?}");
        assert_eq!(
            stats.get(Window::Hours24).sum_units(),
            i as f64,
            "customer {customer:?}"
        );
    }
}

/// Concurrent transactions of one new customer at one timestamp see counts exactly `1..=N`.
pub async fn concurrent_transactions_of_one_customer_get_exact_counts(
    store: Arc<impl TransactionStore + 'static>,
) {
    const N: u64 = 64;
    let c = unique_customer("concurrent");
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let store = Arc::clone(&store);
            let tx = transaction(&c, &format!("tx-{i}"), 1.0, t0());
            tokio::spawn(async move { record_new(&*store, &tx).await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        let stats = task.await.expect("the task does not panic");
        let day = stats.get(Window::Hours24);
        assert_eq!(day.sum_units(), day.count as f64, "sums move with counts");
        seen.push(day.count);
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=N).collect::<Vec<_>>());
}

/// Once a transaction is at or before the retention's horizon, it is gone: even a window that
/// would still reach it does not count it.
pub async fn transactions_older_than_the_retention_are_deleted(store: Arc<impl TransactionStore>) {
    let c = unique_customer("retention");
    let old = transaction(&c, "old", 500.0, t0() - Duration::hours(23));
    record_new(&*store, &old).await;
    // The horizon has reached `old`. `earlier`'s window, (t0 − 46 h, t0 − 22 h], reaches back
    // over `old`; only deletion keeps `old` out of it.
    let now = old.timestamp() + RETENTION;
    let earlier = transaction(&c, "earlier", 5.0, t0() - Duration::hours(22));
    match record_at(&*store, &earlier, &received(now)).await {
        RecordOutcome::Recorded(stats) => {
            assert_eq!(counts(&stats), [1, 1, 1, 1]);
            assert_eq!(stats.get(Window::Hours24).sum_units(), 5.0);
        }
        other => panic!("expected a new record, got {other:?}"),
    }
}

/// A transaction that arrives almost a day late gets its whole windows, (t − W, t], like any
/// other: the retention spans the lateness and the longest window.
pub async fn a_late_transaction_sees_the_whole_of_its_windows(store: Arc<impl TransactionStore>) {
    let c = unique_customer("late");
    let late_at = t0() - Duration::hours(23) - Duration::minutes(59);
    let hours = |h: i64| late_at - Duration::hours(h);
    let history = [
        ("a", hours(23)),
        ("b", hours(13)),
        ("c", hours(7)),
        ("d", hours(2)),
    ];
    let late = transaction(&c, "late", 50.0, late_at);
    let stats = windows_after(&*store, &c, history, &late, &received(t0())).await;
    // Nothing cut at "now − 24 h".
    assert_eq!(sums(&stats), [(2, 90.0), (2, 90.0), (3, 120.0), (5, 150.0)]);
}

/// A transaction too late to be new (`accept_new` false) is still a retry for as long as it is
/// retained: a replay once assessed, a resume before; one the store does not hold is `TooLate`
/// and records nothing.
pub async fn a_retry_too_late_to_be_new_replays_and_an_unknown_one_is_too_late(
    store: Arc<impl TransactionStore>,
) {
    let c = unique_customer("too-late");
    let late = |now| Reception {
        accept_new: false,
        ..received(now)
    };
    let assessed = transaction(&c, "assessed", 10.0, t0());
    let stats = record_new(&*store, &assessed).await;
    let saved = assessment(&assessed, stats, 0.25);
    store
        .commit(&assessed, &saved, later())
        .await
        .expect("saved");
    let resumed = transaction(&c, "resumed", 20.0, t0() + Duration::seconds(1));
    record_new(&*store, &resumed).await;

    let later = t0() + Duration::hours(25);
    match record_at(&*store, &assessed, &late(later)).await {
        RecordOutcome::Replayed(first) => assert_eq!(*first, saved),
        other => panic!("expected a replay, got {other:?}"),
    }
    match record_at(&*store, &resumed, &late(later)).await {
        RecordOutcome::Recorded(stats) => assert_eq!(stats.get(Window::Hours24).count, 2),
        other => panic!("expected the unit of work to resume, got {other:?}"),
    }
    let unknown = transaction(&c, "unknown", 30.0, t0() + Duration::seconds(2));
    assert_eq!(
        record_at(&*store, &unknown, &late(later)).await,
        RecordOutcome::TooLate
    );
    let next = transaction(&c, "next", 40.0, t0() + Duration::seconds(3));
    let stats = record_new(&*store, &next).await;
    assert_eq!(
        stats.get(Window::Hours24).count,
        3,
        "the refused one was not recorded"
    );
}

/// Two instances whose clocks disagree share the store. The one ahead prunes a transaction; the
/// one behind then receives a retry of it, and a new transaction whose window reaches back over
/// it. The customer's horizon never moves backwards: the retry is not recorded again, and no
/// window counts the deleted transaction, even for a busy customer (whose Redis windows come
/// from buckets).
pub async fn the_horizon_never_moves_backwards_when_clocks_disagree(
    store: Arc<impl TransactionStore>,
) {
    let c = unique_customer("skew");
    let old = transaction(&c, "old", 10.0, t0());
    record_new(&*store, &old).await;
    for i in 1..=205 {
        let at = t0() + Duration::seconds(i);
        record_new(&*store, &transaction(&c, &format!("f{i}"), 1.0, at)).await;
    }
    // The instance ahead: its horizon has reached `old`.
    let ahead = Reception {
        horizon: t0(),
        ..received(t0() + RETENTION)
    };
    let a = transaction(&c, "a", 1.0, t0() + Duration::seconds(300));
    assert!(matches!(
        record_at(&*store, &a, &ahead).await,
        RecordOutcome::Recorded(_)
    ));
    // The instance behind: by its clock, `old` is still retained.
    let behind = Reception {
        now: t0() + RETENTION - Duration::hours(1),
        horizon: t0() - Duration::hours(1),
        ..received(t0() + RETENTION)
    };
    assert_eq!(
        record_at(&*store, &old, &behind).await,
        RecordOutcome::TooLate,
        "a transaction the store deleted is not recorded again"
    );
    let b = transaction(&c, "b", 1.0, t0() + Duration::seconds(400));
    let stats = recorded(record_at(&*store, &b, &behind).await);
    // The 205 fillers, `a` and `b`; `old`, at the horizon, is gone, and counted neither once
    // nor twice.
    assert_eq!(
        (
            stats.get(Window::Hours24).count,
            stats.get(Window::Hours24).sum
        ),
        (207, Sum::Mills(207_000))
    );
}

/// A commit whose record the store no longer holds (evicted, flushed, failed over between the
/// two steps) is `Lost`, not a fault, and saves nothing: recording the transaction afterwards
/// counts it once, as new.
pub async fn a_commit_without_its_record_is_lost_and_saves_nothing(
    store: Arc<impl TransactionStore>,
) {
    let c = unique_customer("lost");
    let tx = transaction(&c, "t1", 10.0, t0());
    let stats = WindowStats::aggregate(tx.timestamp(), [(tx.timestamp(), tx.mills())]);
    match store
        .commit(&tx, &assessment(&tx, stats, 0.5), later())
        .await
    {
        Err(StoreError::Lost) => {}
        other => panic!("a commit without a record must be Lost, got {other:?}"),
    }
    let stats = record_new(&*store, &tx).await;
    assert_eq!(stats.get(Window::Hours24).count, 1, "recorded once, as new");
}

/// A healthy store says so.
pub async fn check_succeeds_on_a_healthy_store(store: Arc<impl TransactionStore>) {
    store
        .check()
        .await
        .expect("a healthy store passes its check");
}
