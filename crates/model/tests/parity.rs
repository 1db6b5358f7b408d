//! Parity: every fixture model, as its Python exporter wrote it, scores its fixture rows as ONNX
//! Runtime did, to 1e-5. Fixtures are written by `cargo xtask train` (ml/train.py).

use std::path::{Path, PathBuf};

use antifraud_domain::{FEATURE_NAMES, Features};
use antifraud_model::OnnxModel;
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    /// The model file, relative to the workspace root.
    model: String,
    /// Feature rows; `null` is a missing value.
    rows: Vec<Vec<Option<f64>>>,
    /// ONNX Runtime's probability of fraud for each row.
    expected: Vec<f64>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check(fixture_name: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{fixture_name}.rows.json"));
    let fixture: Fixture = serde_json::from_slice(&std::fs::read(&path).expect("fixture present"))
        .expect("fixture parses");
    let model = OnnxModel::load(&workspace_root().join(&fixture.model)).expect("the model loads");
    assert_eq!(fixture.rows.len(), fixture.expected.len());
    assert!(fixture.rows.len() >= 100, "enough rows to mean something");
    let mut worst = 0.0f64;
    for (i, (row, expected)) in fixture.rows.iter().zip(&fixture.expected).enumerate() {
        let values: Vec<f64> = row.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
        assert_eq!(values.len(), FEATURE_NAMES.len());
        let features = Features::from_slice(&values).expect("the right width");
        let p = model.probability(&features).expect("the model scores");
        let diff = (p - expected).abs();
        worst = worst.max(diff);
        assert!(
            diff <= 1e-5,
            "{fixture_name} row {i}: {p} here, {expected} in ONNX Runtime"
        );
    }
    // The rows must exercise the model: a constant output would make parity meaningless.
    let spread = fixture
        .expected
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        - fixture
            .expected
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
    assert!(
        spread > 0.5,
        "{fixture_name}: fixture probabilities span only {spread}"
    );
    eprintln!("{fixture_name}: worst |diff| {worst:.2e}");
}

#[test]
fn shipped_gradient_boosted_model_matches_onnx_runtime() {
    check("fraud-gbdt");
}

#[test]
fn sklearn_logistic_pipeline_matches_onnx_runtime() {
    check("sklearn-logistic");
}

#[test]
fn sklearn_random_forest_matches_onnx_runtime() {
    check("sklearn-random-forest");
}

#[test]
fn sklearn_hist_gradient_boosting_matches_onnx_runtime() {
    check("sklearn-hist-gradient-boosting");
}

#[test]
fn lightgbm_matches_onnx_runtime() {
    check("lightgbm");
}

#[test]
fn xgboost_matches_onnx_runtime() {
    check("xgboost");
}
