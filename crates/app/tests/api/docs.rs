//! What a newcomer opens first: `/` and the interactive docs at `/docs/`, open even when keys
//! are required, served from the binary's own copy of Swagger UI.

use antifraud_app::config::Inputs;
use serde_json::Value;

use crate::helpers::{problem, spawn_app, spawn_app_with};

#[tokio::test]
async fn the_root_names_the_service_and_where_everything_is() {
    let app = spawn_app().await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["service"], "antifraud");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    // Every link it gives answers on this listener.
    let links = body["links"].as_object().expect("links");
    for key in [
        "score", "docs", "openapi", "health", "live", "ready", "metrics",
    ] {
        assert!(links.contains_key(key), "{key}: {body}");
    }
    for (key, path) in links {
        let path = path.as_str().expect("a path");
        let status = app.get(path).await.status().as_u16();
        let expected = if key == "score" { 405 } else { 200 };
        assert_eq!(status, expected, "{key} {path}");
    }
}

#[tokio::test]
async fn the_docs_are_swagger_ui_from_the_binary_rendering_the_services_own_document() {
    let app = spawn_app().await;
    // `/docs` moves to `/docs/`, where the page's relative asset paths resolve.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let moved = no_redirects
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .expect("answers");
    assert_eq!(moved.status(), 308);
    assert_eq!(moved.headers()["location"], "/docs/");

    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("ASCII")
            .starts_with("text/html")
    );
    let html = page.text().await.expect("text");
    assert!(html.contains("swagger-ui"), "{html}");
    // Every script and stylesheet the page loads is in the binary.
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|part| part.starts_with("./") && (part.ends_with(".js") || part.ends_with(".css")))
        .collect();
    assert!(assets.len() >= 3, "the page loads its assets: {assets:?}");
    for asset in assets {
        let path = format!("/docs/{}", asset.trim_start_matches("./"));
        assert_eq!(app.get(&path).await.status(), 200, "{path}");
    }
    let initializer = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .expect("text");
    assert!(
        initializer.contains("/api-docs/openapi.json"),
        "the UI renders the service's own document: {initializer}"
    );
    let missing = problem(app.get("/docs/no-such-file.js").await, 404).await;
    assert_eq!(missing["type"], "urn:antifraud:problem:not-found");
}

#[tokio::test]
async fn the_root_and_the_docs_stay_open_when_keys_are_required() {
    let app = spawn_app_with(Inputs {
        api_keys: Some("team-a-0123456789abcdef".into()),
        metrics_listen: Some("127.0.0.1:0".into()),
        ..Inputs::default()
    })
    .await;
    for path in ["/", "/docs/", "/docs/swagger-initializer.js"] {
        assert_eq!(app.get(path).await.status(), 200, "{path}");
    }
    problem(app.get("/api/v1/transactions").await, 401).await;
    let body: Value = app.get("/").await.json().await.expect("JSON");
    assert!(
        body["links"].get("metrics").is_none(),
        "metrics are on their own listener: {body}"
    );
}
