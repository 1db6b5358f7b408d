//! Bad input gets a clear 4xx naming the field, and nothing is recorded.

use serde_json::{Value, json};
use time::Duration;

use crate::helpers::{
    REQUIRED_FIELDS, TestApp, count_24h, fields, problem, spawn_app, transaction,
};

/// After rejections, the customer's next valid transaction must be its first.
async fn assert_nothing_recorded(app: &TestApp, customer: &str) {
    let body = app
        .score_ok(&transaction(customer, "after", 1.0, Duration::ZERO))
        .await;
    assert_eq!(count_24h(&body), 1, "a rejected request was recorded");
}

#[tokio::test]
async fn malformed_json_and_wrong_types_get_400_naming_the_field() {
    let app = spawn_app().await;
    let valid = transaction("alice", "tx", 10.0, Duration::ZERO).to_string();
    let with = |field: &str, raw: &str| {
        let mut body: Value = serde_json::from_str(&valid).expect("JSON");
        body.as_object_mut().expect("object").remove(field);
        let text = body.to_string();
        format!("{{\"{field}\":{raw},{}", &text[1..])
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), "body"),
        (b"{".to_vec(), "body"),
        (valid.as_bytes()[..valid.len() - 1].to_vec(), "body"),
        (b"[]".to_vec(), "body"),
        (b"null".to_vec(), "body"),
        (b"\"tx\"".to_vec(), "body"),
        (format!("{valid} trailing").into_bytes(), "body"),
        (vec![b'{', 0xff, 0xfe, b'}'], "body"),
        (with("amount", "\"12.5\"").into_bytes(), "amount"),
        (with("amount", "NaN").into_bytes(), "amount"),
        (with("amount", "Infinity").into_bytes(), "amount"),
        (with("amount", "1e400").into_bytes(), "amount"),
        (with("type", "1.5").into_bytes(), "type"),
        (with("type", "\"1\"").into_bytes(), "type"),
        (with("customer_id", "42").into_bytes(), "customer_id"),
        (
            with("is_velocity_alert", "\"yes\"").into_bytes(),
            "is_velocity_alert",
        ),
        (with("card_bin", "true").into_bytes(), "card_bin"),
        (with("card_bin", "-411111").into_bytes(), "card_bin"),
        (
            with("customer_segments", "[\"a\", 1]").into_bytes(),
            "customer_segments[1]",
        ),
        (
            with("customer_segments", "\"a\"").into_bytes(),
            "customer_segments",
        ),
        // serde reports a duplicate at the object's level; the detail names the field.
        (
            format!("{{\"amount\":1,{}", &valid[1..]).into_bytes(),
            "body",
        ),
    ];
    for (body, field) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let problem = problem(app.score_raw(body).await, 400).await;
        assert_eq!(
            problem["type"], "urn:antifraud:problem:malformed-body",
            "{shown}"
        );
        let named = fields(&problem);
        assert!(
            named.len() == 1 && named[0].starts_with(field),
            "{shown}: {named:?} not {field}"
        );
        if shown.starts_with("{\"amount\":1,") {
            assert!(
                problem["detail"]
                    .as_str()
                    .expect("detail")
                    .contains("duplicate field `amount`")
            );
        }
    }
    assert_nothing_recorded(&app, "alice").await;
}

#[tokio::test]
async fn invalid_values_get_422_naming_each_field() {
    let app = spawn_app().await;
    let h = Duration::hours;
    let cases: Vec<(&str, Value)> = vec![
        ("amount", json!(-0.01)),
        ("amount", json!(1e13)),
        ("currency", json!("usd")),
        ("currency", json!("EURO")),
        ("currency", json!("XXX")),
        ("type", json!(-1)),
        ("type", json!(70_000)),
        ("type", json!(10_000_000_000_000_000_000_u64)),
        ("customer_id", json!("")),
        ("customer_id", json!("x".repeat(257))),
        ("customer_id", json!("line\nbreak")),
        ("transaction_id", json!("   ")),
        ("merchant_id", json!("")),
        ("card_bin", json!("4111")),
        ("card_bin", json!("4111-11")),
        ("card_bin", json!(4111)),
        ("ip_address", json!("999.1.1.1")),
        ("ip_address", json!("not-an-ip")),
        ("device_id", json!("")),
        ("location", json!("")),
        ("channel", json!("")),
        ("timestamp", json!("yesterday")),
        ("timestamp", json!("2026-13-01T00:00:00Z")),
        ("timestamp", json!("25/11/2026 10:00")),
        ("timestamp", json!(crate::helpers::at(-h(25)))),
        (
            "timestamp",
            json!(crate::helpers::at(Duration::minutes(10))),
        ),
        ("merchant_risk_score", json!(1.5)),
        ("card_risk_score", json!(-0.1)),
        ("customer_risk_score", json!(2)),
        ("customer_segments", json!(vec!["s"; 33])),
        ("transaction_category", json!("")),
    ];
    for (field, value) in cases {
        let mut body = transaction("bob", "tx", 10.0, Duration::ZERO);
        body[field] = value.clone();
        let problem = problem(app.score(&body).await, 422).await;
        assert_eq!(problem["type"], "urn:antifraud:problem:invalid-transaction");
        assert_eq!(fields(&problem), [field], "{field} = {value}");
        let error = &problem["errors"][0];
        assert_eq!(error["pointer"], format!("#/{field}"));
        assert!(
            error["code"].is_string() && error["detail"].is_string(),
            "{error}"
        );
    }
    assert_nothing_recorded(&app, "bob").await;
}

#[tokio::test]
async fn missing_required_fields_are_all_listed() {
    let app = spawn_app().await;
    let problem = problem(
        app.score(&json!({"customer_id": "carol", "amount": null}))
            .await,
        422,
    )
    .await;
    // Every required field but the one sent, in order.
    assert_eq!(fields(&problem), REQUIRED_FIELDS[1..]);
    assert!(
        problem["errors"]
            .as_array()
            .expect("list")
            .iter()
            .all(|e| e["code"] == "missing")
    );
    assert_nothing_recorded(&app, "carol").await;
}

#[tokio::test]
async fn a_numeric_bin_an_integral_float_type_and_a_timestamp_without_offset_are_accepted() {
    let app = spawn_app().await;
    let mut body = transaction("frank", "tx", 10.0, Duration::ZERO);
    body["card_bin"] = json!(41111111);
    // JSON Schema's integer: 7.0 is 7 (Python's json writes floats that way).
    body["type"] = json!(7.0);
    let naive = time::OffsetDateTime::now_utc().format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
    ));
    body["timestamp"] = json!(naive.expect("formats"));
    app.score_ok(&body).await;
}

#[tokio::test]
async fn unknown_fields_are_ignored() {
    let app = spawn_app().await;
    let mut body = transaction("dave", "tx", 10.0, Duration::ZERO);
    body["something_new"] = json!({"nested": [1, 2, 3]});
    app.score_ok(&body).await;
}

#[tokio::test]
async fn a_body_that_is_not_json_or_too_large_is_refused() {
    let app = spawn_app().await;
    let url = format!("{}/api/v1/transactions", app.address);
    let tx = transaction("erin", "tx", 10.0, Duration::ZERO).to_string();
    let as_text = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body(tx.clone())
        .send();
    problem(as_text.await.expect("answer"), 415).await;
    let form = app
        .client
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(tx);
    problem(form.send().await.expect("answer"), 415).await;

    let mut huge = transaction("erin", "tx", 10.0, Duration::ZERO);
    huge["location"] = "x".repeat(70 * 1024).into();
    problem(app.score(&huge).await, 413).await;
    assert_nothing_recorded(&app, "erin").await;
}

#[tokio::test]
async fn hostile_but_valid_ids_are_taken_literally() {
    let app = spawn_app().await;
    for (i, customer) in ["{tag}", "a:b", "with space", "ünïcødé ✓", &"x".repeat(256)]
        .iter()
        .enumerate()
    {
        let body = app
            .score_ok(&transaction(customer, "tx", i as f64, Duration::ZERO))
            .await;
        assert_eq!(body["customer_id"], *customer);
        assert_eq!(count_24h(&body), 1, "{customer}");
    }
}

#[tokio::test]
async fn the_rest_of_the_hostile_corpus_gets_a_4xx_and_records_nothing() {
    let app = spawn_app().await;
    let valid = transaction("mallory", "tx", 10.0, Duration::ZERO);
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body.to_string()
    };
    let cases: Vec<(String, u16, &str)> = vec![
        (
            with("timestamp", json!("2026-11-25T23:59:60Z")),
            422,
            "timestamp",
        ),
        (
            with("timestamp", json!("9999-12-31T23:59:59Z")),
            422,
            "timestamp",
        ),
        (
            with("timestamp", json!("0001-01-01T00:00:00Z")),
            422,
            "timestamp",
        ),
        (
            with("timestamp", json!("2026-11-25T12:00:00+24:00")),
            422,
            "timestamp",
        ),
        (with("timestamp", json!("")), 422, "timestamp"),
        (with("amount", json!(1e308)), 422, "amount"),
        (with("amount", json!(-1e-300)), 422, "amount"),
        (with("currency", json!("€UR")), 422, "currency"),
        (with("customer_id", json!("a\u{0}b")), 422, "customer_id"),
        (
            with("customer_id", json!("x".repeat(10_000))),
            422,
            "customer_id",
        ),
    ];
    for (body, status, field) in cases {
        let shown: String = body.chars().take(120).collect();
        let problem = problem(app.score_raw(body).await, status).await;
        let named = fields(&problem);
        assert!(
            named.iter().any(|n| n.starts_with(field)),
            "{shown}: {named:?} does not name {field}"
        );
    }
    assert_nothing_recorded(&app, "mallory").await;

    // Nesting far beyond serde_json's recursion limit (128), inside the 64 KiB limit, in a field
    // the service ignores: skipped without recursion (no stack to exhaust), so accepted.
    let deep = format!(
        "{{\"x\":{}1{},{}",
        "[".repeat(20_000),
        "]".repeat(20_000),
        &transaction("deep", "tx-1", 1.0, Duration::ZERO).to_string()[1..]
    );
    let response = app.score_raw(deep).await;
    assert_eq!(response.status(), 200);

    // Odd but valid: the far offsets of RFC 3339 and negative zero are accepted as such.
    let odd_offset = (time::OffsetDateTime::now_utc() - Duration::minutes(5))
        .to_offset(time::macros::offset!(+14:00))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats");
    let mut body = transaction("oddity", "tx-1", 0.0, Duration::ZERO);
    body["timestamp"] = json!(odd_offset);
    body["amount"] = json!(-0.0);
    let answer = app.score_ok(&body).await;
    assert_eq!(answer["customer_avg_amount_24h"], 0.0);
}

/// `--clock-offset-ms` (for fault-injection runs) shifts the clock the service judges timestamps
/// by: ten minutes behind, a transaction stamped now is too far in the future for it.
#[tokio::test]
async fn a_shifted_clock_judges_timestamps_by_its_own_time() {
    let behind = crate::helpers::spawn_app_with(antifraud_app::config::Inputs {
        clock_offset_ms: Some("-600000".into()),
        ..Default::default()
    })
    .await;
    let now = transaction("shifted", "tx-1", 10.0, Duration::ZERO);
    let body = problem(behind.score(&now).await, 422).await;
    assert_eq!(fields(&body), ["timestamp"], "{body}");
    // Ten minutes ago is now to it.
    let earlier = transaction("shifted", "tx-2", 10.0, Duration::minutes(-10));
    assert_eq!(count_24h(&behind.score_ok(&earlier).await), 1);
    // An unshifted instance takes the first one.
    assert_eq!(count_24h(&spawn_app().await.score_ok(&now).await), 1);
}
