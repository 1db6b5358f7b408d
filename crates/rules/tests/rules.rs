//! Rule files: what a good one decides, and how a bad one is refused, by rule and position.

use antifraud_domain::{
    Action, Facts, Features, Mode, ModelIdentity, ModelStatus, RuleOutcome, RuleSet, Transaction,
    TransactionInput, WindowStats,
};
use antifraud_rules::{CelRules, RuleFileError};
use time::macros::datetime;

const GOOD: &str = r#"
version = "2026-12-01.1"

[lists]
risky_bins = ["550000", "411111"]

[[rules]]
id = "amount-vs-average"
reason = "amount_far_above_average"
when = "tx.amount > 3.0 * stats.avg_amount_24h && stats.count_24h >= 3"
action = "review"

[[rules]]
id = "risky-bin-online"
reason = "risky_card_bin"
when = "tx.card_bin in lists.risky_bins && tx.channel == 'online'"
action = "decline"

[[rules]]
id = "model-down-big-amount"
reason = "model_unavailable_high_amount"
when = "model.status != 'ok' && tx.amount >= 1000.0"
action = "review"
mode = "shadow"
description = "Tried on live traffic before it acts."

[[rules]]
id = "segment-check"
reason = "vip_segment"
when = "tx.merchant_risk_score > 0.5"
action = "review"
"#;

fn transaction(amount: f64, card_bin: &str, merchant_risk: Option<f64>) -> Transaction {
    TransactionInput {
        amount: Some(amount),
        card_bin: Some(card_bin.into()),
        merchant_risk_score: merchant_risk,
        ..TransactionInput::example()
    }
    .validate(datetime!(2026-11-25 10:01 UTC))
    .expect("valid")
}

/// Decides `tx` after three earlier transactions of 100.00 each, with the model as given.
fn decide(rules: &CelRules, tx: &Transaction, status: ModelStatus) -> antifraud_domain::Evaluation {
    let earlier = (1..=3).map(|h| {
        (
            tx.timestamp() - time::Duration::hours(h),
            antifraud_domain::Mills(100_000),
        )
    });
    let stats = WindowStats::aggregate(
        tx.timestamp(),
        earlier.chain([(tx.timestamp(), tx.mills())]),
    );
    let features = Features::new(tx, &stats);
    let model = ModelIdentity {
        name: "m".into(),
        version: "1".into(),
    };
    rules.evaluate(&Facts {
        transaction: tx,
        stats: &stats,
        features: &features,
        score: 0.3,
        is_fraud: false,
        threshold: 0.7,
        model: &model,
        model_status: status,
        degraded: false,
    })
}

#[test]
fn a_good_file_decides_by_its_most_severe_active_rule_with_the_values_it_saw() {
    let rules = CelRules::load(GOOD).expect("a good file");
    assert_eq!(rules.version(), "2026-12-01.1");
    let ids: Vec<_> = rules
        .rules()
        .into_iter()
        .map(|(id, mode)| (id.to_string(), mode))
        .collect();
    assert_eq!(ids[2], ("model-down-big-amount".to_owned(), Mode::Shadow));

    // 5,000 after three of 100: the average is 1,325 and 3× that is 3,975.
    let tx = transaction(5_000.0, "550000", None);
    let evaluation = decide(&rules, &tx, ModelStatus::Timeout);
    let decision = &evaluation.decision;
    assert_eq!(decision.action, Action::Decline, "{decision:?}");
    let fired: Vec<_> = decision.reasons.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(fired, ["amount_far_above_average", "risky_card_bin"]);
    assert_eq!(decision.rules_version, "2026-12-01.1");
    let detail = &decision.reasons[0].detail;
    assert!(
        detail.contains("tx.amount 5000") && detail.contains("stats.avg_amount_24h 1325"),
        "{detail}"
    );
    // The shadow rule fired (model down, big amount), counted but not acting.
    let shadow = &evaluation.rules[2];
    assert_eq!(
        (shadow.mode, shadow.outcome),
        (Mode::Shadow, RuleOutcome::Fired)
    );
    assert!(!fired.contains(&"model_unavailable_high_amount"));
    // A rule that reads a missing optional value fails alone, without failing the request.
    let failed = &evaluation.rules[3];
    assert_eq!(failed.outcome, RuleOutcome::Failed, "{failed:?}");
    assert!(failed.error.is_some());
}

#[test]
fn nothing_fired_approves() {
    let rules = CelRules::load(GOOD).expect("a good file");
    let tx = transaction(90.0, "400000", Some(0.1));
    let evaluation = decide(&rules, &tx, ModelStatus::Ok);
    assert_eq!(evaluation.decision.action, Action::Approve);
    assert!(evaluation.decision.reasons.is_empty());
    assert!(
        evaluation
            .rules
            .iter()
            .all(|r| r.outcome == RuleOutcome::Passed),
        "{:?}",
        evaluation.rules
    );
}

fn refused(file: &str) -> String {
    match CelRules::load(file) {
        Ok(_) => panic!("accepted:\n{file}"),
        Err(error) => {
            let text = error.to_string();
            assert!(!text.contains('\n'), "one line: {text}");
            text
        }
    }
}

fn one_rule(when: &str, extra: &str) -> String {
    format!(
        "version = \"v\"\n[lists]\nbins = [\"1\"]\n[[rules]]\nid = \"r1\"\nreason = \"code\"\nwhen = {when:?}\naction = \"review\"\n{extra}"
    )
}

#[test]
fn a_syntax_error_names_the_rule_line_and_column() {
    let error = refused(&one_rule("tx.amount > ", ""));
    assert!(
        error.starts_with("rule `r1`: `when`, line 1, column"),
        "{error}"
    );
    let error = refused(&one_rule("tx.amount >\n  && true", ""));
    assert!(error.contains("line 2"), "{error}");
}

#[test]
fn unknown_variables_functions_and_lists_are_refused() {
    for (when, expected) in [
        ("txn.amount > 1.0", "unknown variable `txn`"),
        ("tx.channel.matches('on.*')", "unknown function `matches`"),
        ("now() > 1", "unknown function `now`"),
        ("tx.card_bin in lists.nope", "unknown list `nope`"),
    ] {
        let error = refused(&one_rule(when, ""));
        assert!(error.contains(expected), "{when}: {error}");
        assert!(error.starts_with("rule `r1`"), "{error}");
    }
}

#[test]
fn a_condition_that_is_not_a_boolean_is_refused() {
    let error = refused(&one_rule("tx.amount + 1.0", ""));
    assert!(error.contains("not a boolean"), "{error}");
    let error = refused(&one_rule("tx.amount > 'ten'", ""));
    assert!(error.contains("synthetic transaction"), "{error}");
}

#[test]
fn the_files_shape_is_checked() {
    let twice = format!(
        "{}\n[[rules]]\nid = \"r1\"\nreason = \"c\"\nwhen = \"true\"\naction = \"review\"\n",
        one_rule("true", "")
    );
    assert!(refused(&twice).contains("rule `r1`: a second rule with this id"));
    let error = refused(&one_rule("true", "").replace("\"review\"", "\"block\""));
    assert!(error.contains("approve, review or decline"), "{error}");
    let error = refused(&one_rule("true", "mode = \"dry-run\""));
    assert!(error.contains("active or shadow"), "{error}");
    let error = refused(&one_rule("true", "colour = \"red\""));
    assert!(
        error.contains("colour"),
        "an unknown field is named: {error}"
    );
    let long = format!("tx.amount > {}", "1.0 + ".repeat(400) + "1.0");
    assert!(refused(&one_rule(&long, "")).contains("longer than"));
    let many = (0..=antifraud_rules::MAX_RULES)
        .map(|i| {
            format!(
                "[[rules]]\nid = \"r{i}\"\nreason = \"c\"\nwhen = \"true\"\naction = \"review\"\n"
            )
        })
        .collect::<String>();
    assert!(refused(&format!("version = \"v\"\n{many}")).contains("at most"));
    assert!(matches!(
        CelRules::load("version = "),
        Err(RuleFileError::Syntax(_))
    ));
}

/// docs/rules.md's rule file and examples, together, load and decide as the page says.
#[test]
fn the_documented_rules_load_and_guard_their_optional_field() {
    let page = include_str!("../../../docs/rules.md");
    let blocks: Vec<&str> = page
        .split("```toml\n")
        .skip(1)
        .map(|block| block.split("```").next().expect("a closed block"))
        .collect();
    assert_eq!(blocks.len(), 2, "the format and the examples");
    let rules = CelRules::load(&blocks.concat()).expect("the documented rules load");
    assert_eq!(rules.rules().len(), 5);
    // Without a merchant risk score, the guarded rule passes instead of failing.
    let tx = transaction(50.0, "400000", None);
    let evaluation = decide(&rules, &tx, ModelStatus::Ok);
    let guarded = evaluation
        .rules
        .iter()
        .find(|r| &*r.rule == "risky-merchant")
        .expect("documented");
    assert_eq!(guarded.outcome, RuleOutcome::Passed, "{guarded:?}");
    let risky = transaction(50.0, "400000", Some(0.9));
    let decision = decide(&rules, &risky, ModelStatus::Ok).decision;
    assert_eq!(decision.action, Action::Review);
    assert_eq!(decision.reasons[0].code, "merchant_risk");
}
