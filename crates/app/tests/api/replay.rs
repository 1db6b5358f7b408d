//! `antifraud replay`: a labelled file through the binary, with the counts, the per-rule
//! precision and recall, and the changes against a second rule set worked out by hand.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::transaction;

/// Active `big` reviews amounts over 400; shadow `third` would decline a customer's third
/// transaction in 3 hours.
const RULES: &str = r#"
version = "replay-a"

[[rules]]
id = "big"
reason = "amount_over_limit"
when = "tx.amount > 400.0"
action = "review"

[[rules]]
id = "third"
reason = "velocity"
when = "stats.count_3h >= 3"
action = "decline"
mode = "shadow"
"#;

/// `big` declines from 550 instead.
const AGAINST: &str = r#"
version = "replay-b"

[[rules]]
id = "big"
reason = "amount_over_limit"
when = "tx.amount > 550.0"
action = "decline"
"#;

/// A transaction at `minute` past 10:00 on 2026-11-20, with its label.
fn at(customer: &str, id: &str, amount: f64, minute: i64, label: Option<bool>) -> Value {
    let mut tx = transaction(customer, id, amount, time::Duration::ZERO);
    let when = time::macros::datetime!(2026-11-20 10:00 UTC) + time::Duration::minutes(minute);
    tx["timestamp"] = json!(
        when.format(&time::format_description::well_known::Rfc3339)
            .expect("formats")
    );
    if let Some(label) = label {
        tx["is_fraud"] = json!(label);
    }
    tx
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir =
            std::env::temp_dir().join(format!("antifraud-replay-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        Files { dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("written");
        path
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn replay(args: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_antifraud"))
        .arg("replay")
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn a_replay_counts_decisions_and_rules_and_scores_them_against_the_labels() {
    let files = Files::new("labelled");
    let second = at("c1", "tx-2", 500.0, 2, Some(true));
    let mut conflicting = at("c1", "tx-3", 600.0, 3, Some(false));
    conflicting["amount"] = json!(601.0);
    let lines = [
        at("c1", "tx-1", 100.0, 1, Some(false)).to_string(),
        second.to_string(),
        at("c1", "tx-3", 600.0, 3, Some(false)).to_string(),
        at("c1", "tx-4", 50.0, 4, Some(true)).to_string(),
        second.to_string(),      // a retry: replayed, not counted again
        conflicting.to_string(), // the ids again with another amount: a conflict
        json!({"amount": -1}).to_string(),
        "not json".to_owned(),
        String::new(), // blank lines are skipped
        at("c2", "tx-9", 700.0, 9, None).to_string(),
        // Three days before the replay clock (the latest event so far): too old.
        at("c3", "tx-old", 700.0, -3 * 24 * 60, Some(true)).to_string(),
    ];
    let input = files.write("input.ndjson", &(lines.join("\n") + "\n"));
    let rules = files.write("a.toml", RULES);
    let against = files.write("b.toml", AGAINST);
    let json_out = files.dir.join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_antifraud"))
        .args(["replay", "--model", "builtin", "--quiet", "--rules"])
        .arg(&rules)
        .arg("--against")
        .arg(&against)
        .arg("--json-out")
        .arg(&json_out)
        .arg(&input)
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{output:?}");
    let table = String::from_utf8(output.stdout).expect("UTF-8");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).expect("the JSON report"))
            .expect("JSON");

    for (field, expected) in [
        ("lines", 10),
        ("scored", 5),
        ("labelled", 4),
        ("labelled_fraud", 2),
        ("replayed", 1),
        ("conflicts", 1),
        ("invalid", 3),
    ] {
        assert_eq!(report[field], expected, "{field}: {report:#}");
    }
    let invalid: Vec<u64> = report["invalid_lines"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| i["line"].as_u64().expect("a number"))
        .collect();
    assert_eq!(invalid, [7, 8, 11], "{report:#}");

    // --rules: big reviews tx-2, tx-3 and tx-9; against the labels of tx-1..4 it is right once
    // (tx-2), wrong once (tx-3) and misses tx-4.
    let set = &report["set"];
    assert_eq!(set["rules_version"], "replay-a");
    assert_eq!(
        set["decisions"],
        json!({"approve": 2, "review": 3, "decline": 0})
    );
    let big = &set["rules"][0];
    assert_eq!(
        (&big["rule"], &big["mode"], &big["fired"]),
        (&json!("big"), &json!("active"), &json!(3))
    );
    assert_eq!(
        big["confusion"],
        json!({"true_positives": 1, "false_positives": 1, "false_negatives": 1, "true_negatives": 1})
    );
    for measure in ["precision", "recall", "f1"] {
        assert_eq!(big[measure], 0.5, "{measure}");
    }
    // The shadow rule fires on tx-3 and tx-4, the customer's third and fourth: counted, and
    // scored against the labels, without deciding anything.
    let third = &set["rules"][1];
    assert_eq!(
        (&third["mode"], &third["fired"]),
        (&json!("shadow"), &json!(2))
    );
    assert_eq!(
        third["confusion"],
        json!({"true_positives": 1, "false_positives": 1, "false_negatives": 1, "true_negatives": 1})
    );
    assert_eq!(
        set["set_review_or_decline"],
        json!({"true_positives": 1, "false_positives": 1, "false_negatives": 1, "true_negatives": 1})
    );
    assert_eq!(
        set["set_decline"],
        json!({"true_positives": 0, "false_positives": 0, "false_negatives": 2, "true_negatives": 2})
    );

    // --against: tx-2 (500) is approved, tx-3 and tx-9 declined.
    let against = &report["against"];
    assert_eq!(against["set"]["rules_version"], "replay-b");
    assert_eq!(
        against["set"]["decisions"],
        json!({"approve": 3, "review": 0, "decline": 2})
    );
    assert_eq!(against["changed"], 3);
    assert_eq!(
        against["transitions"],
        json!({"review->approve": 1, "review->decline": 2})
    );
    let changed: Vec<(&str, &str, &str)> = against["changes"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|c| {
            (
                c["transaction_id"].as_str().expect("an id"),
                c["from"].as_str().expect("an action"),
                c["to"].as_str().expect("an action"),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            ("tx-2", "review", "approve"),
            ("tx-3", "review", "decline"),
            ("tx-9", "review", "decline")
        ]
    );

    // The table says the same.
    for expected in [
        "10 lines in",
        "5 scored (4 labelled, 2 fraud), 1 repeated (replayed), 1 conflicting, 3 invalid",
        "decisions: approve 2 (40.00 %), review 3 (60.00 %), decline 0 (0.00 %)",
        "decisions that change from replay-a to replay-b: 3",
        "review->decline: 2",
        "c1 tx-2: review -> approve (fraud)",
    ] {
        assert!(table.contains(expected), "{expected:?} in:\n{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["big", "active", "3", "0", "0.500", "0.500", "0.500"]),
        "{table}"
    );
}

#[test]
fn a_replay_that_cannot_run_says_why() {
    let files = Files::new("refused");
    let input = files.write("input.ndjson", "");
    let bad = files.write(
        "bad.toml",
        &RULES.replace("tx.amount > 400.0", "tx.amount >"),
    );
    let output = replay(&[Path::new("--rules"), &bad, &input]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(
        stderr.contains("--rules") && stderr.contains("rule `big`"),
        "{stderr}"
    );

    let good = files.write("good.toml", RULES);
    let missing = files.dir.join("missing.ndjson");
    let output = replay(&[Path::new("--rules"), &good, &missing]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));

    // No input named: a usage error.
    let output = replay(&[Path::new("--rules"), &good]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");

    // An empty file replays to an empty report.
    let output = replay(&[Path::new("--quiet"), Path::new("--rules"), &good, &input]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("0 lines in"));
}

/// What the training pipeline writes replays whole: every line valid and labelled, as the
/// docs' backtest recipe needs.
#[test]
fn the_training_pipelines_labelled_file_replays_without_a_refused_line() {
    let files = Files::new("pipeline");
    let input = files.dir.join("labelled.ndjson");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ml/labelled.py");
    let status = Command::new("python3")
        .arg(&script)
        .args(["--customers", "60", "--days", "2", "--out"])
        .arg(&input)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    let rules = files.write("rules.toml", RULES);
    let json_out = files.dir.join("report.json");
    let output = replay(&[
        Path::new("--quiet"),
        Path::new("--model"),
        Path::new("builtin"),
        Path::new("--rules"),
        &rules,
        Path::new("--json-out"),
        &json_out,
        &input,
    ]);
    assert!(output.status.success(), "{output:?}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json_out).expect("the JSON report"))
            .expect("JSON");
    let lines = std::fs::read_to_string(&input)
        .expect("the file")
        .lines()
        .count() as u64;
    assert!(lines > 100, "{lines} lines");
    assert_eq!(report["lines"], lines);
    assert_eq!(report["invalid"], 0, "{:#}", report["invalid_lines"]);
    assert_eq!(report["scored"], lines);
    assert_eq!(report["labelled"], lines);
    assert!(
        report["labelled_fraud"].as_u64().is_some_and(|n| n > 0),
        "{report:#}"
    );
}
