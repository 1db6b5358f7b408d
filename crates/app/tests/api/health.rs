//! Health probes and the answers to unknown routes and methods.

use serde_json::Value;

use crate::helpers::{problem, spawn_app};

#[tokio::test]
async fn liveness_and_readiness_answer_200() {
    let app = spawn_app().await;
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    assert_eq!(live.json::<Value>().await.expect("JSON")["status"], "ok");
    for path in ["/health/ready", "/health"] {
        let ready = app.get(path).await;
        assert_eq!(ready.status(), 200, "{path}");
        let body: Value = ready.json().await.expect("JSON");
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"]["store"], "ok");
        assert_eq!(body["checks"]["model"], "ok");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problem_details() {
    let app = spawn_app().await;
    let body = problem(app.get("/api/v1/nothing").await, 404).await;
    assert_eq!(body["type"], "urn:antifraud:problem:not-found");
    let response = app.get("/api/v1/transactions").await;
    assert_eq!(response.headers()["allow"], "POST");
    let body = problem(response, 405).await;
    assert_eq!(body["type"], "urn:antifraud:problem:method-not-allowed");
    for path in ["/health/live", "/health/ready", "/api-docs/openapi.json"] {
        let response = app
            .client
            .delete(format!("{}{path}", app.address))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.headers()["allow"], "GET", "{path}");
        problem(response, 405).await;
    }
}
