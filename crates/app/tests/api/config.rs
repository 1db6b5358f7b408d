//! The binary refuses invalid configuration with one line naming the setting.

use std::process::{Command, Output};

fn antifraud(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_antifraud"));
    command.args(args).env("ANTIFRAUD_LISTEN", "127.0.0.1:0");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

#[test]
fn invalid_settings_stop_start_up_with_one_line_naming_the_setting() {
    for (args, env, named) in [
        (&["--default-score", "2"][..], &[][..], "--default-score"),
        (
            &[],
            &[("ANTIFRAUD_MODEL_TIMEOUT_MS", "soon")][..],
            "--model-timeout-ms (ANTIFRAUD_MODEL_TIMEOUT_MS)",
        ),
        (
            &[],
            &[("ANTIFRAUD_FRAUD_THRESHOLD", "-1")][..],
            "ANTIFRAUD_FRAUD_THRESHOLD",
        ),
        (&["--listen", "nowhere"], &[], "--listen"),
        (&["--model", "onnx"], &[], "--model"),
        (
            &["--config", "/nonexistent/antifraud.toml"],
            &[],
            "--config",
        ),
    ] {
        let output = antifraud(args, env);
        assert_eq!(output.status.code(), Some(2), "{args:?} {env:?}");
        let stderr = String::from_utf8(output.stderr).expect("UTF-8");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(named), "{stderr} names {named}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_antifraud"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stderr = child.stderr.take().expect("piped");
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("UTF-8");
        let listening = line.contains("antifraud listening");
        lines.push(line);
        if listening || lines.len() > 20 {
            break;
        }
    }
    child.kill().expect("stopped by pid");
    child.wait().expect("reaped");
    let last: serde_json::Value =
        serde_json::from_str(lines.last().expect("a line")).expect("JSON");
    assert_eq!(last["message"], "antifraud listening", "{lines:?}");
    assert_eq!(last["level"], "INFO");
    assert!(
        last["address"]
            .as_str()
            .expect("an address")
            .starts_with("127.0.0.1:")
    );
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line).expect("every line is JSON");
    }
}
