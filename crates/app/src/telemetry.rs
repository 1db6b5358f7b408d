//! Telemetry setup: logs through `tracing`, and traces exported over OTLP when configured.
//!
//! Conventions: dotted field names (`model.name`), units in names (`duration_ms`), a failure is
//! logged once where it is handled, and no log line carries an IP address, a device id or card
//! data beyond the BIN.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use anyhow::Context;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument as _;
use tracing::field::{Field, Visit};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, OtlpSettings};

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber: log lines on stderr (text or JSON, filtered by `RUST_LOG`,
/// default `info`), and, with `otlp`, spans exported in batches through a bounded queue, so a
/// slow or missing collector never slows a request (spans beyond the queue are dropped).
/// Incoming W3C `traceparent` headers are honoured. Call once, first thing in `main`, inside the
/// runtime.
///
/// What a request pays for is what is used. Log lines carry no span fields: the formatter would
/// format every span's fields as it opens, logged or not (13–16 µs per request with
/// tracing-actix-web's root span, measured). With nothing exporting, no layer wants a span, so
/// every span in the code is disabled where it is written (a cached check), text logs included.
/// JSON lines name the request's trace: then the request's span alone gets an OpenTelemetry
/// context, its children stay disabled.
///
/// # Errors
/// When the exporter cannot be built (an invalid endpoint).
pub fn init(format: LogFormat, otlp: Option<&OtlpSettings>) -> anyhow::Result<Telemetry> {
    // The HTTP exporter builds a reqwest client: see the function's docs.
    antifraud_model::install_crypto_provider();
    let directives = std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_else(|_| "info".into());
    let (provider, subscriber) = subscriber(format, otlp, &directives)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    subscriber.init();
    Ok(Telemetry { provider })
}

/// The subscriber [`init`] installs, with `RUST_LOG`'s directives (`info` when they do not parse).
fn subscriber(
    format: LogFormat,
    otlp: Option<&OtlpSettings>,
    directives: &str,
) -> anyhow::Result<(
    Option<SdkTracerProvider>,
    Box<dyn tracing::Subscriber + Send + Sync>,
)> {
    let filter = || EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.event_format(JsonWithTrace).boxed(),
    }
    .with_filter(filter().and(filter_fn(|metadata| metadata.is_event())));
    let traces = match (otlp, format) {
        (Some(otlp), _) => {
            let provider = provider(otlp)?;
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("antifraud"))
                .with_filter(filter())
                .boxed();
            Some((provider, layer))
        }
        // JSON lines carry the request's trace and span ids even when nothing is exported: a
        // provider without an exporter, for the request's span only.
        (None, LogFormat::Json) => {
            let provider = SdkTracerProvider::builder().build();
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("antifraud"))
                .with_filter(filter().and(filter_fn(|metadata| {
                    metadata.is_span() && metadata.name() == REQUEST_SPAN
                })))
                .boxed();
            Some((provider, layer))
        }
        (None, LogFormat::Text) => None,
    };
    let registry = tracing_subscriber::registry().with(logs);
    // Not `.with(Option<Layer>)`: a `None` layer declares interest in every callsite, which
    // enables every span the per-layer filters just turned away.
    Ok(match traces {
        Some((provider, traces)) => (Some(provider), Box::new(registry.with(traces))),
        None => (None, Box::new(registry)),
    })
}

/// The name of the request's span, the root of the service's part of a trace.
const REQUEST_SPAN: &str = "HTTP request";

/// Middleware: the request's server span (`http.method`, `http.route`, `http.status_code`, and
/// `otel.status_code` `ERROR` on a 5xx), a child of the caller's W3C `traceparent` when there is
/// one. Written here rather than taken from tracing-actix-web, whose root span costs every
/// request a UUID, the connection's info and two header extractions even when no layer wants the
/// span, and carries the client's IP address, which no log line or trace of ours may.
pub(crate) async fn request_span(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let span = tracing::info_span!(
        REQUEST_SPAN,
        otel.kind = "server",
        otel.name = tracing::field::Empty,
        http.method = request.method().as_str(),
        http.route = tracing::field::Empty,
        http.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if span.is_disabled() {
        return next.call(request).await;
    }
    // The pattern, never the raw path: paths carry ids and are unbounded.
    let route = request.match_pattern();
    let route = route.as_deref().unwrap_or("unmatched");
    span.record("http.route", route);
    span.record(
        "otel.name",
        format!("{} {route}", request.method()).as_str(),
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&RequestHeaders(request.headers()))
    });
    // An enabled span always has an OpenTelemetry layer (the log layer takes no spans), so this
    // cannot fail; were it to, the request would simply start a trace of its own.
    let _ = span.set_parent(parent);
    let response = span
        .in_scope(|| next.call(request))
        .instrument(span.clone())
        .await;
    let status = match &response {
        Ok(response) => response.status(),
        Err(error) => error.as_response_error().status_code(),
    };
    span.record("http.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// An incoming request's headers, as the propagator reads them.
struct RequestHeaders<'a>(&'a actix_web::http::header::HeaderMap);

impl opentelemetry::propagation::Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

/// The W3C trace context of the current span as headers (`traceparent`, `tracestate`), for
/// calls to other services such as a remote model. Empty when no trace is being recorded.
pub(crate) fn trace_context_headers() -> Vec<(String, String)> {
    struct Headers(Vec<(String, String)>);
    impl opentelemetry::propagation::Injector for Headers {
        fn set(&mut self, key: &str, value: String) {
            self.0.push((key.to_owned(), value));
        }
    }
    let context = tracing::Span::current().context();
    let mut headers = Headers(Vec::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut headers);
    });
    headers.0
}

fn provider(otlp: &OtlpSettings) -> anyhow::Result<SdkTracerProvider> {
    let exporter = if otlp.http {
        // A programmatic endpoint is used as it is: add the signal's path.
        let endpoint = format!("{}/v1/traces", otlp.endpoint.trim_end_matches('/'));
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
    } else {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&otlp.endpoint)
            .build()
    }
    .context("--otlp-endpoint (OTEL_EXPORTER_OTLP_ENDPOINT): cannot build the OTLP exporter")?;
    Ok(SdkTracerProvider::builder()
        // The batch processor exports from its own thread through a bounded queue; the gate in
        // front of it counts what a full queue drops.
        .with_span_processor(accounting::gated(exporter, accounting::queue_size()))
        .with_resource(Resource::builder().with_service_name("antifraud").build())
        .build())
}

impl Telemetry {
    /// Flushes and stops the trace pipeline. It blocks, so it runs off the async workers.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// One JSON object per log line: `timestamp`, `level`, `target`, the event's fields (`message`
/// among them), and `trace_id` / `span_id` of the current span, so a line leads to its trace.
struct JsonWithTrace;

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = serde_json::Map::new();
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), now.into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        event.record(&mut FieldsToJson(&mut line));
        let context = tracing::Span::current().context();
        let span = context.span();
        let ids = span.span_context();
        if ids.is_valid() {
            line.insert("trace_id".into(), ids.trace_id().to_string().into());
            line.insert("span_id".into(), ids.span_id().to_string().into());
        }
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Collects an event's fields as JSON values.
struct FieldsToJson<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for FieldsToJson<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// Counting every finished span's fate for `antifraud_trace_spans_total`. The SDK's batch
/// processor drops spans when its queue is full but keeps the count private, so a gate in front
/// of it holds the same bound and counts the drops itself; the exporter is wrapped to count what
/// it sends and what fails.
mod accounting {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use opentelemetry::Context;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{
        BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor,
    };

    use crate::metrics::TRACE_SPANS;

    /// The export queue's bound: `OTEL_BSP_MAX_QUEUE_SIZE`, else the SDK's 2,048.
    pub(super) fn queue_size() -> usize {
        std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(2048)
    }

    /// A batch processor over `exporter` whose queue holds `capacity` spans, behind a gate that
    /// counts what does not fit.
    pub(super) fn gated<E: SpanExporter + 'static>(exporter: E, capacity: usize) -> Gate {
        let queued = Arc::new(AtomicUsize::new(0));
        let exporter = Counting {
            inner: exporter,
            queued: Arc::clone(&queued),
        };
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(capacity)
            .build();
        Gate {
            inner: BatchSpanProcessor::builder(exporter)
                .with_batch_config(config)
                .build(),
            queued,
            capacity,
        }
    }

    /// Admits a span only while the batch processor's queue has room for it, so that the
    /// processor itself never drops one uncounted.
    #[derive(Debug)]
    pub(super) struct Gate {
        inner: BatchSpanProcessor,
        /// Spans admitted and not yet handed to the exporter.
        queued: Arc<AtomicUsize>,
        capacity: usize,
    }

    impl SpanProcessor for Gate {
        fn on_start(&self, span: &mut Span, cx: &Context) {
            self.inner.on_start(span, cx);
        }

        fn on_end(&self, span: SpanData) {
            if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                TRACE_SPANS.with_label_values(&["dropped"]).inc();
                return;
            }
            self.inner.on_end(span);
        }

        fn force_flush(&self) -> OTelSdkResult {
            self.inner.force_flush()
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.inner.shutdown_with_timeout(timeout)
        }

        fn set_resource(&mut self, resource: &Resource) {
            self.inner.set_resource(resource);
        }
    }

    /// The exporter, counting what it sends; spans leave the queue when it receives them.
    #[derive(Debug)]
    struct Counting<E> {
        inner: E,
        queued: Arc<AtomicUsize>,
    }

    impl<E: SpanExporter> SpanExporter for Counting<E> {
        fn export(
            &self,
            batch: Vec<SpanData>,
        ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
            let spans = batch.len();
            self.queued.fetch_sub(spans, Ordering::AcqRel);
            let export = self.inner.export(batch);
            async move {
                let result = export.await;
                let outcome = if result.is_ok() {
                    "exported"
                } else {
                    "export_failed"
                };
                TRACE_SPANS
                    .with_label_values(&[outcome])
                    .inc_by(spans as u64);
                result
            }
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.inner.shutdown_with_timeout(timeout)
        }

        fn force_flush(&self) -> OTelSdkResult {
            self.inner.force_flush()
        }

        fn set_resource(&mut self, resource: &Resource) {
            self.inner.set_resource(resource);
        }
    }

    #[cfg(test)]
    mod tests {
        use opentelemetry::trace::{Tracer as _, TracerProvider as _};
        use std::sync::{Mutex, mpsc};

        use opentelemetry_sdk::trace::SdkTracerProvider;

        use super::*;

        /// An exporter that accepts everything, or fails everything.
        #[derive(Debug)]
        struct Sink {
            fail: bool,
        }

        impl SpanExporter for Sink {
            async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
                if self.fail {
                    Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                        "down".into(),
                    ))
                } else {
                    Ok(())
                }
            }
        }

        /// An exporter whose first export says how many spans it got and then waits to be
        /// released, so that the test decides when the queue drains.
        #[derive(Debug)]
        struct Held {
            started: mpsc::Sender<usize>,
            release: Mutex<Option<mpsc::Receiver<()>>>,
        }

        impl SpanExporter for Held {
            async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
                let release = self.release.lock().map(|mut first| first.take());
                if let Ok(Some(release)) = release {
                    let _ = self.started.send(batch.len());
                    let _ = release.recv_timeout(Duration::from_secs(30));
                }
                Ok(())
            }
        }

        fn count(outcome: &str) -> u64 {
            TRACE_SPANS.with_label_values(&[outcome]).get()
        }

        #[test]
        fn every_span_is_exported_failed_or_counted_as_dropped() {
            let (exported, failed, dropped) =
                (count("exported"), count("export_failed"), count("dropped"));
            let (started_tx, started) = mpsc::channel();
            let (release, release_rx) = mpsc::channel();
            let held = Held {
                started: started_tx,
                release: Mutex::new(Some(release_rx)),
            };
            let provider = SdkTracerProvider::builder()
                .with_span_processor(gated(held, 3))
                .build();
            let tracer = provider.tracer("test");
            // A full queue of 3 starts an export, which the exporter holds.
            for _ in 0..3 {
                drop(tracer.start("span"));
            }
            let in_export = started
                .recv_timeout(Duration::from_secs(30))
                .expect("a full queue starts an export");
            assert_eq!(in_export, 3);
            // While it is held the queue refills with 3 of the next 10; the other 7 are dropped
            // and counted.
            for _ in 0..10 {
                drop(tracer.start("span"));
            }
            assert_eq!(count("dropped") - dropped, 7);
            release.send(()).expect("the exporter waits");
            provider.force_flush().expect("flushed");
            assert_eq!(count("exported") - exported, 6);
            // Room again after the export.
            drop(tracer.start("span"));
            provider.force_flush().expect("flushed");
            assert_eq!(count("exported") - exported, 7);
            assert_eq!(count("dropped") - dropped, 7);
            provider.shutdown().expect("shut down");

            let failing = SdkTracerProvider::builder()
                .with_span_processor(gated(Sink { fail: true }, 16))
                .build();
            drop(failing.tracer("test").start("span"));
            let _ = failing.force_flush();
            assert_eq!(count("export_failed") - failed, 1);
            let _ = failing.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of the service's spans the subscriber of this configuration builds. A span that no
    /// layer wants is disabled where it is written: its fields are never evaluated.
    fn enabled_spans(format: LogFormat, otlp: Option<&OtlpSettings>) -> Vec<&'static str> {
        antifraud_model::install_crypto_provider();
        let (provider, subscriber) = subscriber(format, otlp, "info").expect("builds");
        let enabled = tracing::subscriber::with_default(subscriber, || {
            let spans = [
                (REQUEST_SPAN, tracing::info_span!(REQUEST_SPAN)),
                ("validate", tracing::info_span!("validate")),
                ("store.record", tracing::info_span!("store.record")),
                ("model.predict", tracing::info_span!("model.predict")),
            ];
            spans
                .into_iter()
                .filter(|(_, span)| !span.is_disabled())
                .map(|(name, _)| name)
                .collect()
        });
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        enabled
    }

    #[test]
    fn text_logs_without_export_build_no_span() {
        assert_eq!(enabled_spans(LogFormat::Text, None), Vec::<&str>::new());
    }

    #[test]
    fn json_logs_without_export_build_the_request_span_alone() {
        assert_eq!(enabled_spans(LogFormat::Json, None), vec![REQUEST_SPAN]);
    }

    #[test]
    fn with_export_every_span_is_built() {
        let otlp = OtlpSettings {
            endpoint: "http://127.0.0.1:1".into(),
            http: true,
        };
        assert_eq!(
            enabled_spans(LogFormat::Text, Some(&otlp)),
            vec![REQUEST_SPAN, "validate", "store.record", "model.predict"]
        );
    }
}
