//! The OpenAPI document describes the contract as implemented.

use serde_json::Value;

use crate::helpers::{OPTIONAL_FIELDS, REQUIRED_FIELDS, spawn_app};

#[tokio::test]
async fn the_document_describes_the_scoring_endpoint_with_examples() {
    let app = spawn_app().await;
    let response = app.get("/api-docs/openapi.json").await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .expect("a version")
            .starts_with("3.")
    );

    let post = &doc["paths"]["/api/v1/transactions"]["post"];
    for status in [
        "200", "400", "401", "408", "409", "413", "415", "422", "429", "503",
    ] {
        assert!(
            post["responses"].get(status).is_some(),
            "response {status} documented"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    assert_eq!(post["security"][1]["api_key"], serde_json::json!([]));
    let schemas = &doc["components"]["schemas"];
    let request = &schemas["TransactionRequest"];
    let properties = request["properties"].as_object().expect("properties");
    let mut names: Vec<_> = properties.keys().map(String::as_str).collect();
    let mut expected = [REQUIRED_FIELDS.as_slice(), &OPTIONAL_FIELDS].concat();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(request["example"]["currency"], "EUR");

    let response = &schemas["ScoreResponse"];
    for field in [
        "scoring",
        "is_fraud",
        "customer_transaction_count_24h",
        "customer_avg_amount_3h",
        "processed_at",
    ] {
        assert!(response["properties"].get(field).is_some(), "{field}");
        assert!(
            response["required"]
                .as_array()
                .expect("required")
                .iter()
                .any(|f| f == field),
            "{field}"
        );
    }
    assert!(response["example"]["scoring"].is_number());
    // Decisions are additive: described and exemplified, not required (answers saved before
    // them replay without).
    for field in ["decision", "reasons", "rules_version"] {
        assert!(response["properties"].get(field).is_some(), "{field}");
        assert!(
            response["example"].get(field).is_some(),
            "{field} in the example"
        );
        assert!(
            !response["required"]
                .as_array()
                .expect("required")
                .iter()
                .any(|f| f == field),
            "{field} is optional"
        );
    }
    assert_eq!(response["example"]["reasons"][0]["action"], "review");
    assert!(schemas.get("ReasonResponse").is_some());
    let unavailable = post["responses"]["503"]["description"]
        .as_str()
        .expect("a description");
    assert!(
        unavailable.contains("unknown") && unavailable.contains("retry with the same body"),
        "a 503 says its outcome is unknown: {unavailable}"
    );
    for path in ["/health/live", "/health/ready", "/health"] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
}
