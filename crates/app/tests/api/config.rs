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
    // Binary::start parses every line up to "antifraud listening" as JSON, or fails.
    let binary = crate::helpers::Binary::start(&[], &[]);
    assert!(
        binary.address.starts_with("127.0.0.1:"),
        "{}",
        binary.address
    );
    assert_eq!(binary.listening["level"], "INFO");
    assert_eq!(binary.listening["target"], "antifraud_app::startup");
    assert!(
        binary.listening["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}
