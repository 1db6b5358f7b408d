//! Feature parity: the training code (ml/features.py) and the service compute the same vector.
//!
//! `fixtures/features.json` holds transactions as the API receives them, in arrival order (some
//! sent twice, as retries), with the vector and baseline probability Python computed for each.
//! This test replays them through the service's own path — validation, the in-memory store's
//! windows, `Features::new`, the built-in model — and compares every value.

use std::path::Path;

use antifraud_domain::{
    FEATURE_NAMES, FEATURE_SCHEMA_VERSION, Features, Fingerprint, RecordOutcome, TransactionInput,
    TransactionStore,
};
use antifraud_model::BuiltinModel;
use antifraud_store_conformance::received;
use antifraud_store_memory::MemoryStore;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Deserialize)]
struct Schema {
    version: u32,
    names: Vec<String>,
}

/// The API's body, as training code writes it (the app's DTO is not a dependency here).
#[derive(Deserialize)]
struct Body {
    customer_id: String,
    transaction_id: String,
    amount: f64,
    currency: String,
    #[serde(rename = "type")]
    kind: i64,
    merchant_id: String,
    card_bin: String,
    ip_address: String,
    device_id: String,
    location: String,
    channel: String,
    timestamp: String,
    merchant_risk_score: Option<f64>,
    card_risk_score: Option<f64>,
    customer_risk_score: Option<f64>,
    is_velocity_alert: bool,
    is_location_alert: bool,
    is_device_alert: bool,
    is_high_value: bool,
    is_fraud: bool,
}

impl From<Body> for TransactionInput {
    fn from(b: Body) -> Self {
        TransactionInput {
            customer_id: Some(b.customer_id),
            transaction_id: Some(b.transaction_id),
            amount: Some(b.amount),
            currency: Some(b.currency),
            kind: Some(b.kind),
            merchant_id: Some(b.merchant_id),
            card_bin: Some(b.card_bin),
            ip_address: Some(b.ip_address),
            device_id: Some(b.device_id),
            location: Some(b.location),
            channel: Some(b.channel),
            timestamp: Some(b.timestamp),
            is_fraud: Some(b.is_fraud),
            merchant_risk_score: b.merchant_risk_score,
            card_risk_score: b.card_risk_score,
            customer_risk_score: b.customer_risk_score,
            is_velocity_alert: Some(b.is_velocity_alert),
            is_location_alert: Some(b.is_location_alert),
            is_device_alert: Some(b.is_device_alert),
            is_high_value: Some(b.is_high_value),
            ..TransactionInput::default()
        }
    }
}

#[derive(Deserialize)]
struct Case {
    transaction: Body,
    features: Vec<Option<f64>>,
    builtin_probability: f64,
}

#[derive(Deserialize)]
struct Fixture {
    now: String,
    schema: Schema,
    cases: Vec<Case>,
}

fn read<T: serde::de::DeserializeOwned>(relative: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    serde_json::from_slice(&std::fs::read(&path).expect("file present")).expect("file parses")
}

#[test]
fn training_schema_is_the_services() {
    let schema: Schema = read("../../ml/feature_schema.json");
    assert_eq!(schema.version, FEATURE_SCHEMA_VERSION);
    assert_eq!(schema.names, FEATURE_NAMES);
    let fixture: Fixture = read("tests/fixtures/features.json");
    assert_eq!(fixture.schema.version, FEATURE_SCHEMA_VERSION);
    assert_eq!(fixture.schema.names, FEATURE_NAMES);
}

#[tokio::test]
async fn python_features_equal_the_services() {
    let fixture: Fixture = read("tests/fixtures/features.json");
    let now = OffsetDateTime::parse(&fixture.now, &Rfc3339).expect("an RFC 3339 time");
    let store = MemoryStore::new();
    let mut busiest = 0.0f64;
    for (i, case) in fixture.cases.into_iter().enumerate() {
        let tx = TransactionInput::from(case.transaction)
            .validate(now)
            .expect("fixture transactions are valid");
        let stats = match store
            .record(&tx, &Fingerprint::of(&tx), &received(now))
            .await
            .expect("the memory store records")
        {
            RecordOutcome::Recorded(stats) => stats,
            other => panic!("case {i}: expected Recorded, got {other:?}"),
        };
        let features = Features::new(&tx, &stats);
        for (j, (ours, theirs)) in features.as_slice().iter().zip(&case.features).enumerate() {
            let name = FEATURE_NAMES[j];
            match theirs {
                None => assert!(
                    ours.is_nan(),
                    "case {i} {name}: {ours} here, missing in Python"
                ),
                Some(theirs) => assert!(
                    (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0),
                    "case {i} {name}: {ours} here, {theirs} in Python"
                ),
            }
        }
        let p = BuiltinModel::probability(&features);
        assert!(
            (p - case.builtin_probability).abs() < 1e-12,
            "case {i}: builtin {p} here, {} in Python",
            case.builtin_probability
        );
        busiest = busiest.max(features.get(antifraud_domain::Feature::Count3h));
    }
    // The fixture must exercise the windows: a burst, not only first transactions.
    assert!(
        busiest >= 4.0,
        "the busiest 3 h window holds only {busiest}"
    );
}
