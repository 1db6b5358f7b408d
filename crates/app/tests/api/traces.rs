//! OTLP export: the binary, pointed at a receiver in this test, exports the spans of a scored
//! request with the caller's trace as parent and the store and model calls as children.

use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use time::Duration;

use crate::helpers::{Binary, transaction};

type Received = Arc<Mutex<Vec<Span>>>;

async fn receive(received: web::Data<Mutex<Vec<Span>>>, body: web::Bytes) -> HttpResponse {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
    let mut spans = received.lock().expect("not poisoned");
    for resource in request.resource_spans {
        for scope in resource.scope_spans {
            spans.extend(scope.spans);
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(Vec::new())
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scored_request_is_exported_as_a_trace_with_child_spans() {
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let data = web::Data::from(Arc::clone(&received));
    let receiver = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route("/v1/traces", web::post().to(receive))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .expect("bind");
    let receiver_port = receiver.addrs()[0].port();
    tokio::spawn(receiver.run());

    let binary = Binary::start(
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{receiver_port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ],
    );
    let address = &binary.address;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let response = crate::helpers::http_client()
        .post(format!("http://{address}/api/v1/transactions"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&transaction("traced", "tx-1", 10.0, Duration::ZERO))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);

    let deadline = Instant::now() + StdDuration::from_secs(15);
    let spans = loop {
        let spans = received.lock().expect("not poisoned").clone();
        let names: Vec<_> = spans.iter().map(|s| s.name.clone()).collect();
        if ["store.commit", "model.predict", "validate"]
            .iter()
            .all(|n| names.iter().any(|m| m == n))
            && spans.iter().any(|s| s.parent_span_id == hex(caller_span))
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans not exported in time: {names:?}"
        );
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    };
    drop(binary);

    let server = spans
        .iter()
        .find(|s| s.parent_span_id == hex(caller_span))
        .expect("the request's span is a child of the caller's");
    assert_eq!(
        server.trace_id,
        hex(trace_id),
        "the caller's trace continues"
    );
    assert_eq!(attribute(server, "http.method").as_deref(), Some("POST"));
    assert_eq!(
        attribute(server, "http.route").as_deref(),
        Some("/api/v1/transactions")
    );
    assert_eq!(
        attribute(server, "http.status_code").as_deref(),
        Some("200")
    );
    for name in ["validate", "store.record", "model.predict", "store.commit"] {
        let child = spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("a {name} span"));
        assert_eq!(child.trace_id, server.trace_id, "{name} is in the trace");
        assert_eq!(
            child.parent_span_id, server.span_id,
            "{name} is a child of the request"
        );
    }
    let record = spans
        .iter()
        .find(|s| s.name == "store.record")
        .expect("record");
    assert_eq!(attribute(record, "db.system").as_deref(), Some("memory"));
    let model = spans
        .iter()
        .find(|s| s.name == "model.predict")
        .expect("model");
    assert_eq!(
        attribute(model, "model.name").as_deref(),
        Some("fraud-gbdt")
    );
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_neither_slows_nor_fails_requests() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("address").port();
    drop(dead);
    let binary = Binary::start(
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{dead_port}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
        ],
    );
    let address = &binary.address;
    let client = crate::helpers::http_client();
    for i in 0..30 {
        let response = client
            .post(format!("http://{address}/api/v1/transactions"))
            .timeout(StdDuration::from_secs(2))
            .json(&transaction(
                "untraced",
                &format!("tx-{i}"),
                10.0,
                Duration::ZERO,
            ))
            .send()
            .await
            .expect("answered before the client's timeout");
        assert_eq!(response.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_lines_inside_a_request_carry_its_trace_and_span_ids() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_port = dead.local_addr().expect("address").port();
    drop(dead);
    let redis_url = format!("redis://127.0.0.1:{dead_port}");
    let mut binary = Binary::start(
        &["--redis-timeout-ms", "20", "--redis-url", &redis_url],
        &[],
    );
    let address = binary.address.clone();

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let response = crate::helpers::http_client()
        .post(format!("http://{address}/api/v1/transactions"))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&transaction("logged", "tx-1", 10.0, Duration::ZERO))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 503);
    let warning = (&mut binary.lines)
        .take(50)
        .map(|line| serde_json::from_str::<serde_json::Value>(&line.expect("UTF-8")).expect("JSON"))
        .find(|line| line["message"] == "store unavailable, answering 503")
        .expect("the outage is logged");

    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["trace_id"], trace_id, "{warning}");
    assert_eq!(
        warning["span_id"].as_str().map(str::len),
        Some(16),
        "{warning}"
    );
}
