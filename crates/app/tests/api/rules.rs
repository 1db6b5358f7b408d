//! A rule file decides the answer; a bad one stops start-up; `antifraud rules check` checks one.

use antifraud_app::config::Inputs;
use time::Duration;

use crate::helpers::{spawn_app_with, transaction};

const RULES: &str = r#"
version = "test-rules-3"

[lists]
watched_merchants = ["m-watched"]

[[rules]]
id = "big-amount"
reason = "amount_over_limit"
when = "tx.amount > 400.0"
action = "review"

[[rules]]
id = "watched-merchant"
reason = "merchant_on_watch_list"
when = "tx.merchant_id in lists.watched_merchants"
action = "decline"

[[rules]]
id = "tryout"
reason = "tryout"
when = "tx.amount > 1.0"
action = "decline"
mode = "shadow"
"#;

/// Writes `text` to a file of its own and returns its path.
fn rule_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("antifraud-rules-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let path = dir.join("rules.toml");
    std::fs::write(&path, text).expect("written");
    path
}

#[tokio::test]
async fn a_rule_file_decides_and_its_shadow_rules_do_not() {
    let path = rule_file("decides", RULES);
    let app = spawn_app_with(Inputs {
        rules: Some(path.display().to_string()),
        ..Inputs::default()
    })
    .await;

    let small = app
        .score_ok(&transaction("rita", "tx-1", 20.0, Duration::ZERO))
        .await;
    assert_eq!(
        small["decision"], "approve",
        "the shadow rule does not act: {small}"
    );
    assert_eq!(small["reasons"], serde_json::json!([]));
    assert_eq!(small["rules_version"], "test-rules-3");

    let big_tx = transaction("rita", "tx-2", 500.0, Duration::ZERO);
    let big = app.score_ok(&big_tx).await;
    assert_eq!(big["decision"], "review", "{big}");
    let reason = &big["reasons"][0];
    assert_eq!(reason["code"], "amount_over_limit");
    assert_eq!(reason["rule"], "big-amount");
    assert_eq!(reason["action"], "review");
    assert_eq!(reason["detail"], "tx.amount 500");
    assert_eq!(big["reasons"].as_array().map(Vec::len), Some(1));

    // Every rule's outcome is counted, shadow ones included; a replay decides nothing anew.
    // (Prometheus writes labels in name order.)
    app.score_ok(&big_tx).await;
    let metrics = app.get("/metrics").await.text().await.expect("text");
    for (series, value) in [
        (r#"mode="active",outcome="fired",rule="big-amount""#, 1),
        (r#"mode="active",outcome="passed",rule="big-amount""#, 1),
        (
            r#"mode="active",outcome="passed",rule="watched-merchant""#,
            2,
        ),
        (r#"mode="shadow",outcome="fired",rule="tryout""#, 2),
    ] {
        let line = format!("antifraud_rule_evaluations_total{{{series}}} {value}");
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let _ = std::fs::remove_dir_all(path.parent().expect("a dir"));
}

#[test]
fn a_bad_rule_file_stops_start_up_with_one_line_naming_the_rule() {
    let path = rule_file("bad", &RULES.replace("tx.amount > 400.0", "tx.amount > "));
    let stderr = crate::helpers::start_up_failure(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--rules".into(),
        path.display().to_string(),
    ]);
    assert!(
        stderr.contains("--rules (ANTIFRAUD_RULES)")
            && stderr.contains("rule `big-amount`")
            && stderr.contains("line 1, column"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(path.parent().expect("a dir"));
}

#[test]
fn rules_check_prints_what_a_file_defines_and_fails_on_a_bad_one() {
    let good = rule_file("check-good", RULES);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_antifraud"))
        .args(["rules", "check"])
        .arg(&good)
        .output()
        .expect("the binary runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(stdout.contains("version test-rules-3"), "{stdout}");
    assert!(stdout.contains("rules: 3 (2 active, 1 shadow)"), "{stdout}");
    assert!(stdout.contains("watched_merchants: 1 values"), "{stdout}");

    let bad = rule_file("check-bad", &RULES.replace("\"review\"", "\"hold\""));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_antifraud"))
        .args(["rules", "check"])
        .arg(&bad)
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).expect("UTF-8");
    assert!(
        stderr.contains("rule `big-amount`") && stderr.contains("approve, review or decline"),
        "{stderr}"
    );
    for path in [good, bad] {
        let _ = std::fs::remove_dir_all(path.parent().expect("a dir"));
    }
}
