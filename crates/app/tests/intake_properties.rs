//! Property tests of the request pipeline (parse, then validate), the part of the service that
//! reads what callers send: whatever the bytes, the answer is a validated transaction or a 4xx
//! problem naming what is wrong; never a panic, a 5xx or a refusal of a valid transaction.
//!
//! `cargo xtask fuzz` runs the same pipeline under libFuzzer for as long as it is given.

use antifraud_app::ApiDoc;
use antifraud_app::intake::read_transaction;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::OpenApi as _;

/// The fields of the request body, as the OpenAPI document lists them: a field added to the API
/// is fuzzed without touching this file.
fn fields() -> Vec<String> {
    let document: Value =
        serde_json::from_str(&ApiDoc::openapi().to_json().expect("renders")).expect("JSON");
    let properties = document["components"]["schemas"]["TransactionRequest"]["properties"]
        .as_object()
        .expect("the request schema's properties")
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert!(properties.len() >= 22, "{properties:?}");
    properties
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_795_000_000).expect("a valid instant")
}

fn valid_body() -> Map<String, Value> {
    let at = (now() - time::Duration::minutes(3))
        .format(&Rfc3339)
        .expect("formats");
    let body = json!({
        "customer_id": "cust-1", "transaction_id": "tx-1", "amount": 42.5, "currency": "EUR",
        "type": 1, "merchant_id": "m-1", "card_bin": "411111", "ip_address": "192.0.2.1",
        "device_id": "d-1", "location": "Lyon, FR", "channel": "web", "timestamp": at,
        "is_fraud": false, "merchant_risk_score": 0.2, "card_risk_score": 0.1,
        "customer_risk_score": 0.3, "is_velocity_alert": false, "is_location_alert": false,
        "is_device_alert": false, "customer_segments": ["retail"],
        "transaction_category": "groceries", "is_high_value": false
    });
    match body {
        Value::Object(map) => map,
        _ => unreachable!("a literal object"),
    }
}

/// Any JSON value, hostile ones weighted in: huge and tiny numbers, long and odd strings,
/// nesting.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        prop_oneof![
            Just(-0.0),
            Just(1e308),
            Just(-1e308),
            Just(5e-324),
            Just(0.5)
        ]
        .prop_map(|x: f64| json!(x)),
        any::<String>().prop_map(Value::String),
        "[A-Z]{3}".prop_map(Value::String),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?"
            .prop_map(Value::String),
        (0usize..2000).prop_map(|n| Value::String("é".repeat(n))),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn assert_a_4xx_problem(status: u16, body: &str) -> Value {
    assert!(matches!(status, 400 | 422), "status {status}: {body}");
    let problem: Value = serde_json::from_str(body).expect("the problem is JSON");
    assert_eq!(problem["status"], status);
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:antifraud:problem:"))
    );
    problem
}

fn named_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// Arbitrary bytes: never a panic, never anything but 400 or 422.
    #[test]
    fn any_bytes_get_a_transaction_or_a_4xx(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(refusal) = read_transaction(&bytes, now()) {
            assert_a_4xx_problem(refusal.status, &refusal.body);
        }
    }

    /// Any JSON object: the same.
    #[test]
    fn any_json_gets_a_transaction_or_a_4xx(value in any_json()) {
        let bytes = serde_json::to_vec(&value).expect("serialisable");
        if let Err(refusal) = read_transaction(&bytes, now()) {
            assert_a_4xx_problem(refusal.status, &refusal.body);
        }
    }

    /// A valid body with one field replaced by any value: accepted, or refused naming exactly
    /// that field. An unknown field of any value is ignored.
    #[test]
    fn one_bad_field_is_named_and_only_it(
        field in prop_oneof![prop::sample::select(fields()), "x_[a-z]{1,8}"],
        value in any_json(),
    ) {
        let mut body = valid_body();
        body.insert(field.clone(), value.clone());
        let bytes = serde_json::to_vec(&Value::Object(body)).expect("serialisable");
        match read_transaction(&bytes, now()) {
            Ok(_) => {}
            Err(refusal) => {
                let problem = assert_a_4xx_problem(refusal.status, &refusal.body);
                prop_assert!(!field.starts_with("x_"), "an unknown field was refused: {problem}");
                let named = named_fields(&problem);
                prop_assert!(!named.is_empty(), "{problem}");
                for name in named {
                    prop_assert!(
                        name == field || name.starts_with(&format!("{field}[")),
                        "{field} = {value} was refused naming {name}: {problem}"
                    );
                }
            }
        }
    }

    /// Valid transactions with any ids, amounts and times in the window are accepted as sent.
    #[test]
    fn valid_transactions_are_accepted_as_sent(
        customer in "[a-zA-Z0-9:{}._-][a-zA-Z0-9:{}._ -]{0,63}",
        amount in 0.0f64..1e9,
        seconds_ago in 0i64..(24 * 3600 - 1),
    ) {
        let mut body = valid_body();
        body.insert("customer_id".into(), json!(customer));
        body.insert("amount".into(), json!(amount));
        let at = (now() - time::Duration::seconds(seconds_ago)).format(&Rfc3339).expect("formats");
        body.insert("timestamp".into(), json!(at));
        let bytes = serde_json::to_vec(&Value::Object(body)).expect("serialisable");
        let transaction = read_transaction(&bytes, now())
            .unwrap_or_else(|refusal| panic!("refused a valid transaction: {}", refusal.body));
        prop_assert_eq!(transaction.customer_id().as_str(), customer.as_str());
        prop_assert!((transaction.amount() - amount).abs() <= amount * 1e-12);
    }
}

#[test]
fn nesting_far_beyond_the_parser_limit_is_a_400_not_a_stack_overflow() {
    for depth in [200, 10_000, 60_000] {
        let mut body = valid_body();
        body.insert("customer_segments".into(), json!(null));
        let text = serde_json::to_string(&Value::Object(body)).expect("serialisable");
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let hostile = text.replacen("null", &nested, 1);
        let refusal = read_transaction(hostile.as_bytes(), now()).expect_err("too deep");
        assert_eq!(refusal.status, 400, "{}", refusal.body);
    }
}
