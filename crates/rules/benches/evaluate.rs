//! The cost of deciding: the example rule file of twenty typical rules
//! (`deploy/rules/rules.toml`) evaluated per transaction, over a spread of transactions,
//! histories and model outcomes of which some fire rules. Criterion for the mean, then each
//! evaluation timed alone into an HDR histogram for the tail: the budget is 20 µs at p99. Run
//! with `cargo xtask bench-rules`.

#![allow(clippy::print_stdout, missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use antifraud_domain::{
    Facts, Features, ModelIdentity, ModelStatus, RuleSet, Transaction, TransactionInput,
    WindowStat, WindowStats,
};
use antifraud_rules::CelRules;
use criterion::Criterion;
use hdrhistogram::Histogram;
use time::macros::datetime;

const RULES: &str = include_str!("../../../deploy/rules/rules.toml");

/// One transaction's facts, owned.
struct Case {
    tx: Transaction,
    stats: WindowStats,
    features: Features,
    score: f64,
    status: ModelStatus,
}

/// How the transactions are drawn.
#[derive(Clone, Copy, PartialEq)]
enum Mix {
    /// As traffic looks: most transactions small, from customers with a short history, scored
    /// low; one in sixteen large, one in thirty-two from a busy customer. About one
    /// transaction in three fires an active rule.
    Typical,
    /// Amounts up to ~12,000, histories up to 50 transactions, scores spread over 0..1: about
    /// four active rules fire per transaction, each formatting its reason's detail.
    Heavy,
}

/// 1,024 transactions of `mix`: card BINs on and off the risky list, optional risk scores
/// present or not, and the model answering, late or failing.
fn cases(mix: Mix) -> Vec<Case> {
    let now = datetime!(2026-11-25 10:01 UTC);
    (0..1024u32)
        .map(|i| {
            let x = f64::from(i);
            let wave = (x * 0.61).sin() + 1.0;
            let amount = match mix {
                Mix::Heavy => wave * 6_000.0 + 5.0,
                Mix::Typical if i % 16 == 0 => wave * 5_000.0 + 2_500.0,
                Mix::Typical => wave * 80.0 + 5.0,
            };
            let input = TransactionInput {
                transaction_id: Some(format!("tx-{i}")),
                amount: Some((amount * 100.0).round() / 100.0),
                card_bin: Some(if i % 3 == 0 { "550000" } else { "400000" }.into()),
                merchant_id: Some(format!("merchant-{}", i % 20)),
                merchant_risk_score: (i % 4 == 0).then_some(f64::from(i % 10) / 10.0),
                is_high_value: Some(i % 5 == 0),
                is_velocity_alert: Some(i % 7 == 0),
                customer_segments: (i % 6 == 0).then(|| vec!["vip".to_owned()]),
                ..TransactionInput::example()
            };
            let tx = input.validate(now).expect("a valid transaction");
            let count = match mix {
                Mix::Heavy => u64::from(i % 50) + 1,
                Mix::Typical if i % 32 == 0 => 45,
                Mix::Typical => u64::from(i % 8) + 1,
            };
            let stats = WindowStats::from_windows(std::array::from_fn(|w| {
                let n = count * (w as u64 + 1);
                WindowStat::exact(n, u128::from(n) * 60_000)
            }));
            let features = Features::new(&tx, &stats);
            let status = match i % 16 {
                0 => ModelStatus::Timeout,
                1 => ModelStatus::Error,
                _ => ModelStatus::Ok,
            };
            let spread = ((x * 0.23).cos() + 1.0) / 2.0;
            Case {
                tx,
                stats,
                features,
                score: if mix == Mix::Heavy {
                    spread
                } else {
                    spread.powi(4)
                },
                status,
            }
        })
        .collect()
}

fn facts<'a>(case: &'a Case, model: &'a ModelIdentity) -> Facts<'a> {
    Facts {
        transaction: &case.tx,
        stats: &case.stats,
        features: &case.features,
        score: case.score,
        is_fraud: case.score >= 0.7,
        threshold: 0.7,
        model,
        model_status: case.status,
        degraded: false,
    }
}

fn main() {
    let rules = CelRules::load(RULES).expect("the example rules load");
    // The same rules with lists of a million values in all (the file format's limit):
    // lists are built once per file and looked up, so the cost must not move.
    let big_list: Vec<String> = (0..999_990)
        .map(|i| format!("\"device-stolen-{i}\""))
        .collect();
    let with_big_list = CelRules::load(&RULES.replace(
        r#"blocked_devices = ["device-stolen-1", "device-stolen-2"]"#,
        &format!("blocked_devices = [{}]", big_list.join(", ")),
    ))
    .expect("the example rules with a big list load");
    assert_eq!(with_big_list.file().lists["blocked_devices"].len(), 999_990);
    let model = ModelIdentity {
        name: "fraud-gbdt".into(),
        version: "2026-11-25".into(),
    };
    let mixes = [
        ("typical mix", &rules, cases(Mix::Typical)),
        ("heavy mix", &rules, cases(Mix::Heavy)),
        (
            "typical mix, lists of 1,000,000 values in all",
            &with_big_list,
            cases(Mix::Typical),
        ),
    ];
    let mut criterion = Criterion::default().configure_from_args();
    for (name, rules, cases) in &mixes {
        let mut i = 0;
        criterion.bench_function(&format!("rules/evaluate 20 rules, {name}"), |b| {
            b.iter(|| {
                i = (i + 1) % cases.len();
                rules.evaluate(black_box(&facts(&cases[i], &model)))
            })
        });
    }
    criterion.final_summary();

    const CALLS: usize = 200_000;
    println!(
        "\n| deploy/rules/rules.toml ({} rules), {CALLS} evaluations each timed alone | active rules fired per transaction | p50 µs | p99 µs | p99.9 µs | max µs |\n|---|---|---|---|---|---|---|",
        rules.rules().len()
    );
    for (name, rules, cases) in &mixes {
        let fired: usize = cases
            .iter()
            .map(|c| rules.evaluate(&facts(c, &model)).decision.reasons.len())
            .sum();
        let mut histogram = Histogram::<u64>::new(3).expect("valid precision");
        for n in 0..CALLS {
            let facts = facts(&cases[n % cases.len()], &model);
            let started = Instant::now();
            black_box(rules.evaluate(black_box(&facts)));
            histogram
                .record(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX))
                .expect("in range");
        }
        let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            fired as f64 / cases.len() as f64,
            us(0.5),
            us(0.99),
            us(0.999),
            histogram.max() as f64 / 1000.0
        );
    }
}
