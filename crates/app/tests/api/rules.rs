//! A rule file decides the answer; a bad one stops start-up; SIGHUP swaps it whole or refuses it;
//! failing rules are counted and logged sparingly; `antifraud rules check` checks a file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;

use antifraud_app::config::Inputs;
use serde_json::Value;
use time::Duration;

use crate::helpers::{Binary, get_text, http_client, spawn_app_with, transaction};

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

/// Replaces the file at `path` as a deployment would (write, then rename): the service never
/// reads half a file.
fn replace(path: &std::path::Path, bytes: &[u8]) {
    let next = path.with_extension("next");
    std::fs::write(&next, bytes).expect("written");
    std::fs::rename(&next, path).expect("renamed");
}

/// Reads the binary's log lines until one with `message` and returns it; the lines before it
/// pass through `seen`. Blocks, so it runs beside the runtime's workers.
fn log_line(binary: &mut Binary, message: &str, mut seen: impl FnMut(&Value)) -> Value {
    tokio::task::block_in_place(|| {
        for line in binary.lines.by_ref() {
            let line: Value = serde_json::from_str(&line.expect("UTF-8")).expect("JSON logs");
            if line["message"] == message {
                return line;
            }
            seen(&line);
        }
        panic!("the service stopped before logging {message:?}");
    })
}

/// The rule file of the reload test: `big-amount` acts as `action`; `only_in` is a rule that
/// only this version has.
fn versioned_rules(version: &str, action: &str, only_in: &str) -> String {
    format!(
        r#"
version = "{version}"

[[rules]]
id = "big-amount"
reason = "amount_over_limit"
when = "tx.amount > 400.0"
action = "{action}"

[[rules]]
id = "{only_in}"
reason = "tryout"
when = "tx.amount > 1.0"
action = "review"
mode = "shadow"
"#
    )
}

const RELOAD_SUCCEEDED: &str = "reloaded";
const RELOAD_REFUSED: &str = "reload refused; the previous rules and model keep serving";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_rule_file_whole_and_a_refused_file_keeps_the_old_set() {
    let path = rule_file(
        "reload",
        &versioned_rules("reload-1", "review", "only-in-1"),
    );
    let model = path.with_file_name("model.onnx");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/lightgbm.onnx");
    replace(&model, &std::fs::read(fixture).expect("the fixture"));
    let mut binary = Binary::start(
        &[
            "--rules",
            &path.display().to_string(),
            "--model",
            &format!("onnx:{}", model.display()),
        ],
        &[],
    );
    let url = format!("http://{}/api/v1/transactions", binary.address);
    let client = http_client();
    let poster = client.clone();
    let post = move |tx: Value| {
        let (client, url) = (poster.clone(), url.clone());
        async move {
            let response = client.post(&url).json(&tx).send().await.expect("answers");
            assert_eq!(response.status(), 200, "no request fails during a reload");
            let body: Value = response.json().await.expect("JSON");
            (
                body["rules_version"]
                    .as_str()
                    .expect("a version")
                    .to_owned(),
                body["decision"].as_str().expect("a decision").to_owned(),
            )
        }
    };
    let big = |id: &str| transaction("reno", id, 500.0, Duration::ZERO);
    let first_tx = big("tx-first");
    let first = post(first_tx.clone()).await;
    assert_eq!(first, ("reload-1".to_owned(), "review".to_owned()));

    // Requests flow while the file is swapped; each sees one rule set whole: its version and
    // its decision agree.
    let stop = Arc::new(AtomicBool::new(false));
    let flow = tokio::spawn({
        let (stop, post) = (Arc::clone(&stop), post.clone());
        async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                answers.push(post(big(&format!("tx-flow-{}", answers.len()))).await);
            }
            answers
        }
    });
    tokio::time::sleep(StdDuration::from_millis(100)).await;
    replace(
        &path,
        versioned_rules("reload-2", "decline", "only-in-2").as_bytes(),
    );
    binary.signal("HUP");
    let reloaded = log_line(&mut binary, RELOAD_SUCCEEDED, |_| {});
    assert_eq!(reloaded["rules.version"], "reload-2", "{reloaded}");
    assert_eq!(reloaded["model.name"], "lightgbm", "{reloaded}");
    tokio::time::sleep(StdDuration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = flow.await.expect("the flow ends");
    for (version, decision) in &answers {
        let expected = if version == "reload-1" {
            "review"
        } else {
            "decline"
        };
        assert_eq!(decision, expected, "{version} decides {decision}");
    }
    assert_eq!(answers.first().map(|a| a.0.as_str()), Some("reload-1"));
    assert_eq!(answers.last().map(|a| a.0.as_str()), Some("reload-2"));
    // A retry is answered as first decided, by the set that decided it.
    assert_eq!(post(first_tx).await, first);

    // A file that does not load is refused, naming the rule; the old set keeps deciding.
    replace(
        &path,
        versioned_rules("reload-3", "approve", "only-in-3")
            .replace("tx.amount > 1.0", "tx.amount >")
            .as_bytes(),
    );
    binary.signal("HUP");
    let refused = log_line(&mut binary, RELOAD_REFUSED, |_| {});
    let error = refused["error"].as_str().expect("an error");
    assert!(
        error.contains("--rules (ANTIFRAUD_RULES)")
            && error.contains("rule `only-in-3`")
            && error.contains("line 1, column"),
        "{refused}"
    );
    let after_refusal = post(big("tx-after-refusal")).await;
    assert_eq!(after_refusal, ("reload-2".to_owned(), "decline".to_owned()));

    // Rules and model reload together, or neither: good rules beside a broken model stay out.
    replace(
        &path,
        versioned_rules("reload-4", "review", "only-in-4").as_bytes(),
    );
    replace(&model, b"not a model");
    binary.signal("HUP");
    let refused = log_line(&mut binary, RELOAD_REFUSED, |_| {});
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("--model (ANTIFRAUD_MODEL)")),
        "{refused}"
    );
    let after_model_refusal = post(big("tx-after-model-refusal")).await;
    assert_eq!(after_model_refusal.0, "reload-2");

    let metrics = get_text(&client, &format!("http://{}/metrics", binary.address)).await;
    for line in [
        r#"antifraud_rules_reloads_total{result="ok"} 1"#,
        r#"antifraud_rules_reloads_total{result="refused"} 2"#,
        r#"antifraud_rules_info{version="reload-2"} 1"#,
        r#"antifraud_rule_evaluations_total{mode="shadow",outcome="failed",rule="only-in-2"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    for gone in [
        r#"antifraud_rules_info{version="reload-1"}"#,
        r#"rule="only-in-1""#,
    ] {
        assert!(
            !metrics.lines().any(|l| l.contains(gone)),
            "{gone} is gone after the reload:\n{metrics}"
        );
    }
    let _ = std::fs::remove_dir_all(path.parent().expect("a dir"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_that_fails_on_every_request_is_counted_each_time_and_logged_once() {
    // The test's transactions carry no merchant risk score: the rule fails on each of them.
    let path = rule_file(
        "failing",
        &versioned_rules("failing-1", "review", "risky-merchant")
            .replace("tx.amount > 1.0", "tx.merchant_risk_score > 0.5"),
    );
    let mut binary = Binary::start(&["--rules", &path.display().to_string()], &[]);
    let client = http_client();
    for n in 0..5 {
        let response = client
            .post(format!("http://{}/api/v1/transactions", binary.address))
            .json(&transaction(
                "fay",
                &format!("tx-{n}"),
                10.0,
                Duration::ZERO,
            ))
            .send()
            .await
            .expect("answers");
        assert_eq!(
            response.status(),
            200,
            "a failing rule never fails the request"
        );
    }
    // A reload of the same file marks the end of the requests' log lines.
    binary.signal("HUP");
    let mut warnings = Vec::new();
    log_line(&mut binary, RELOAD_SUCCEEDED, |line| {
        if line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("a rule failed to evaluate"))
        {
            warnings.push(line.clone());
        }
    });
    assert_eq!(
        warnings.len(),
        1,
        "one warning for five failures: {warnings:?}"
    );
    assert_eq!(warnings[0]["rule"], "risky-merchant");
    assert_eq!(warnings[0]["level"], "WARN");

    let metrics = get_text(&client, &format!("http://{}/metrics", binary.address)).await;
    let line = r#"antifraud_rule_evaluations_total{mode="shadow",outcome="failed",rule="risky-merchant"} 5"#;
    assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    let _ = std::fs::remove_dir_all(path.parent().expect("a dir"));
}
