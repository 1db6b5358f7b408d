//! Telemetry setup: logs through `tracing`, and traces exported over OTLP when configured.
//!
//! Conventions: dotted field names (`model.name`), units in names (`duration_ms`), a failure is
//! logged once where it is handled, and no log line carries an IP address, a device id or card
//! data beyond the BIN.

use anyhow::Context;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::field::{Field, Visit};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
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
/// # Errors
/// When the exporter cannot be built (an invalid endpoint).
pub fn init(format: LogFormat, otlp: Option<&OtlpSettings>) -> anyhow::Result<Telemetry> {
    // The HTTP exporter builds a reqwest client: see the function's docs.
    antifraud_model::install_crypto_provider();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.event_format(JsonWithTrace).boxed(),
    };
    // JSON lines carry trace and span ids, so spans get OpenTelemetry contexts even when nothing
    // is exported: a provider without an exporter.
    let provider = match (otlp, format) {
        (Some(otlp), _) => Some(provider(otlp)?),
        (None, LogFormat::Json) => Some(SdkTracerProvider::builder().build()),
        (None, LogFormat::Text) => None,
    };
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("antifraud")));
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .init();
    Ok(Telemetry { provider })
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
        // The batch processor exports from its own thread; its queue is bounded
        // (OTEL_BSP_MAX_QUEUE_SIZE, 2048 by default).
        .with_batch_exporter(exporter)
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
