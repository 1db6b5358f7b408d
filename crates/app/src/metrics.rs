//! Prometheus metrics: every series the service exports, defined in this one place, with
//! bounded label values only (never a customer, transaction, IP or device id).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use antifraud_domain::{
    Mode, ModelIdentity, RuleEvaluation, RuleOutcome, RuleSet, ScoreError, Scored, ValidationError,
};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 0.5 ms to 1 s: the budget is 200 ms, the model's 100 ms.
const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.5, 1.0,
];
/// Score buckets: tenths of the probability range.
const SCORE_BUCKETS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];

/// Every metric of the service, registered in its own registry.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) http_requests: IntCounterVec,
    pub(crate) http_duration: HistogramVec,
    pub(crate) http_in_flight: IntGauge,
    scoring_duration: Histogram,
    scores: Histogram,
    decisions: IntCounterVec,
    actions: IntCounterVec,
    rule_evaluations: IntCounterVec,
    /// The rules whose evaluation series exist, by id (ids are unique in a set): a reload
    /// removes those of rules it dropped, so the series stay bounded by the rule file's limit
    /// however often rules change. Counting holds it shared, so that a request still deciding
    /// with the set before a reload cannot create a removed series again.
    rules_shown: RwLock<HashMap<Arc<str>, Mode>>,
    rules_info: IntGaugeVec,
    reloads: IntCounterVec,
    replays: IntCounter,
    conflicts: IntCounter,
    rejections: IntCounterVec,
    refusals: IntCounterVec,
    degraded: IntCounter,
    model_duration: HistogramVec,
    model_outcomes: IntCounterVec,
    pub(crate) store_duration: HistogramVec,
    pub(crate) store_errors: IntCounterVec,
    pub(crate) store_up: IntGauge,
}

/// Spans by fate, counted by the trace pipeline (`telemetry.rs`), which exists before the
/// service's registry: `exported`, `export_failed`, or `dropped` because the export queue was
/// full (a slow or dead collector never slows a request; it loses spans, and this says how many).
pub(crate) static TRACE_SPANS: std::sync::LazyLock<IntCounterVec> =
    std::sync::LazyLock::new(|| {
        IntCounterVec::new(
            Opts::new(
                "antifraud_trace_spans_total",
                "Finished spans by fate: exported, export_failed, dropped (export queue full).",
            ),
            &["outcome"],
        )
        .expect("a constant, valid counter definition")
    });

/// Creates metrics and registers each as it is created, so no metric is listed twice.
struct Registrar {
    registry: Registry,
}

impl Registrar {
    fn register<C: prometheus::core::Collector + Clone + 'static>(&self, collector: C) -> C {
        self.registry
            .register(Box::new(collector.clone()))
            .expect("each metric is registered once, with a constant, valid definition");
        collector
    }

    fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("a constant, valid counter definition"))
    }

    fn counters(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.register(
            IntCounterVec::new(Opts::new(name, help), labels)
                .expect("a constant, valid counter definition"),
        )
    }

    fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("a constant, valid gauge definition"))
    }

    fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.register(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("a constant, valid histogram definition"),
        )
    }

    fn histograms(&self, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
        self.register(
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("a constant, valid histogram definition"),
        )
    }
}

impl Metrics {
    /// Creates and registers every metric, plus process metrics and build information.
    pub(crate) fn new() -> Metrics {
        let r = Registrar {
            registry: Registry::new(),
        };
        let build_info = r.register(
            IntGaugeVec::new(
                Opts::new(
                    "antifraud_build_info",
                    "Build information; the value is always 1.",
                ),
                &["version", "git_sha"],
            )
            .expect("a constant, valid gauge definition"),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("ANTIFRAUD_GIT_SHA")])
            .set(1);
        r.register(TRACE_SPANS.clone());
        r.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("registered once");
        let metrics = Metrics {
            http_requests: r.counters(
                "antifraud_http_requests_total",
                "HTTP requests answered, by route pattern, method and status code.",
                &["route", "method", "status"],
            ),
            http_duration: r.histograms(
                "antifraud_http_request_duration_seconds",
                "Time to answer an HTTP request, by route pattern and method.",
                &LATENCY_BUCKETS,
                &["route", "method"],
            ),
            http_in_flight: r.gauge(
                "antifraud_http_requests_in_flight",
                "HTTP requests being answered now.",
            ),
            scoring_duration: r.histogram(
                "antifraud_scoring_duration_seconds",
                "Time of the scoring use case: validation, store, model and commit.",
                &LATENCY_BUCKETS,
            ),
            scores: r.histogram(
                "antifraud_score",
                "Fraud scores given to new transactions.",
                &SCORE_BUCKETS,
            ),
            decisions: r.counters(
                "antifraud_decisions_total",
                "New transactions scored, by decision (fraud or legit).",
                &["decision"],
            ),
            actions: r.counters(
                "antifraud_decision_actions_total",
                "New transactions decided, by action (approve, review, decline) and the version \
                 of the rule set that decided.",
                &["action", "rules_version"],
            ),
            rule_evaluations: r.counters(
                "antifraud_rule_evaluations_total",
                "Rule evaluations of new transactions, by rule id, mode (active, shadow) and \
                 outcome (fired, passed, failed). Rule ids are bounded by the rule file's limit.",
                &["rule", "mode", "outcome"],
            ),
            rules_shown: RwLock::new(HashMap::new()),
            rules_info: r.register(
                IntGaugeVec::new(
                    Opts::new(
                        "antifraud_rules_info",
                        "The rule set deciding now, by version label; the value is always 1.",
                    ),
                    &["version"],
                )
                .expect("a constant, valid gauge definition"),
            ),
            reloads: r.counters(
                "antifraud_rules_reloads_total",
                "SIGHUP reloads of the rules and the model, by result: ok (both swapped in), \
                 refused (a file did not load; the previous rules and model keep serving).",
                &["result"],
            ),
            replays: r.counter(
                "antifraud_idempotent_replays_total",
                "Retries answered with the saved assessment.",
            ),
            conflicts: r.counter(
                "antifraud_idempotency_conflicts_total",
                "Transaction ids reused with another payload (409).",
            ),
            rejections: r.counters(
                "antifraud_validation_rejections_total",
                "Invalid fields in rejected requests, by field and reason code.",
                &["field", "reason"],
            ),
            refusals: r.counters(
                "antifraud_requests_refused_total",
                "Requests refused before scoring, by reason: unauthorized, rate_limited, \
                 overloaded (load shed), request_timeout (a body that did not arrive in time).",
                &["reason"],
            ),
            degraded: r.counter(
                "antifraud_degraded_answers_total",
                "Answers given without history because the store failed (policy degrade).",
            ),
            model_duration: r.histograms(
                "antifraud_model_duration_seconds",
                "Time of one model call, until it answered or was abandoned at the budget.",
                &LATENCY_BUCKETS,
                &["model", "version"],
            ),
            model_outcomes: r.counters(
                "antifraud_model_outcomes_total",
                "Model calls by outcome: ok, or timeout / error (the default score was used).",
                &["model", "version", "status"],
            ),
            store_duration: r.histograms(
                "antifraud_store_duration_seconds",
                "Time of one store operation, by operation (record, commit, check).",
                &LATENCY_BUCKETS,
                &["operation"],
            ),
            store_errors: r.counters(
                "antifraud_store_errors_total",
                "Failed store operations, by operation and kind (unavailable, lost: the record vanished \
                 between record and commit, internal).",
                &["operation", "kind"],
            ),
            store_up: r.gauge(
                "antifraud_store_up",
                "1 when the last store operation succeeded, 0 when the store was unavailable.",
            ),
            registry: r.registry,
        };
        // Every fate shows from the start, at zero, so that dashboards and alerts have a series.
        for outcome in ["exported", "export_failed", "dropped"] {
            TRACE_SPANS.with_label_values(&[outcome]);
        }
        for reason in Refusal::ALL {
            metrics.refusals.with_label_values(&[reason.as_str()]);
        }
        for result in ["ok", "refused"] {
            metrics.reloads.with_label_values(&[result]);
        }
        metrics
    }

    /// Shows the rule set deciding now: its version, and each rule's evaluation series at zero
    /// (so that an alert on failures has a series before the first one); the series of rules
    /// it no longer has go.
    pub(crate) fn rules_in_force(&self, rules: &dyn RuleSet) {
        const OUTCOMES: [&str; 3] = ["fired", "passed", "failed"];
        self.rules_info.reset();
        self.rules_info
            .with_label_values(&[&rules.version()])
            .set(1);
        let now: HashMap<Arc<str>, Mode> = rules.rules().into_iter().collect();
        let mut shown = self.rules_shown.write().unwrap_or_else(|e| e.into_inner());
        for (rule, mode) in shown
            .iter()
            .filter(|(rule, mode)| now.get(*rule) != Some(mode))
        {
            for outcome in OUTCOMES {
                // Absent when never created: nothing to remove is no error.
                let _ = self
                    .rule_evaluations
                    .remove_label_values(&[rule, mode.as_str(), outcome]);
            }
        }
        for (rule, mode) in &now {
            for outcome in OUTCOMES {
                self.rule_evaluations
                    .with_label_values(&[rule, mode.as_str(), outcome]);
            }
        }
        *shown = now;
    }

    /// Counts how each rule went for one request. A request decided by the set before a
    /// reload counts only the rules still in force: the series of the others are gone, and
    /// stay gone.
    fn rules_evaluated(&self, rules: &[RuleEvaluation]) {
        let shown = self.rules_shown.read().unwrap_or_else(|e| e.into_inner());
        let in_force = rules
            .iter()
            .filter(|e| shown.get(&*e.rule) == Some(&e.mode));
        for evaluation in in_force {
            let outcome = match evaluation.outcome {
                RuleOutcome::Fired => "fired",
                RuleOutcome::Passed => "passed",
                RuleOutcome::Failed => "failed",
            };
            self.rule_evaluations
                .with_label_values(&[&*evaluation.rule, evaluation.mode.as_str(), outcome])
                .inc();
        }
    }

    /// Counts a SIGHUP reload: swapped in, or refused.
    pub(crate) fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding to memory does not fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }

    /// Records the outcome of one call of the scoring use case.
    pub(crate) fn scored(&self, elapsed: Duration, result: &Result<Scored, ScoreError>) {
        self.scoring_duration.observe(elapsed.as_secs_f64());
        match result {
            Ok(scored) if scored.replayed => self.replays.inc(),
            Ok(Scored {
                assessment: a,
                rules,
                ..
            }) => {
                self.rules_evaluated(rules);
                self.scores.observe(a.score);
                let decision = if a.is_fraud { "fraud" } else { "legit" };
                self.decisions.with_label_values(&[decision]).inc();
                if let Some(d) = &a.decision {
                    self.actions
                        .with_label_values(&[d.action.as_str(), &d.rules_version])
                        .inc();
                }
                self.model_outcomes
                    .with_label_values(&[&a.model.name, &a.model.version, a.model_status.as_str()])
                    .inc();
                if a.degraded.is_some() {
                    self.degraded.inc();
                }
            }
            Err(ScoreError::Conflict) => self.conflicts.inc(),
            Err(ScoreError::Invalid(error)) => self.rejected(error),
            Err(ScoreError::Store(_)) => {}
        }
    }

    /// Counts each refused field of an invalid transaction.
    fn rejected(&self, error: &ValidationError) {
        for field in &error.fields {
            // `customer_segments[7]` counts as `customer_segments`: indexes are unbounded.
            let name = field.field.split('[').next().unwrap_or_default();
            self.rejections
                .with_label_values(&[name, field.violation.code()])
                .inc();
        }
    }

    /// Counts a request refused before scoring.
    pub(crate) fn refused(&self, reason: Refusal) {
        self.refusals.with_label_values(&[reason.as_str()]).inc();
    }

    /// Counts a body that could not be parsed at all.
    pub(crate) fn malformed(&self) {
        self.rejections
            .with_label_values(&["body", "malformed"])
            .inc();
    }

    /// Records the time of one model call, whether it answered or was abandoned.
    pub(crate) fn model_call(&self, model: &ModelIdentity, elapsed: Duration) {
        self.model_duration
            .with_label_values(&[&model.name, &model.version])
            .observe(elapsed.as_secs_f64());
    }
}

/// Why a request was refused before it reached the scoring use case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unauthorized,
    RateLimited,
    Overloaded,
    RequestTimeout,
}

impl Refusal {
    const ALL: [Refusal; 4] = [
        Refusal::Unauthorized,
        Refusal::RateLimited,
        Refusal::Overloaded,
        Refusal::RequestTimeout,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::RateLimited => "rate_limited",
            Refusal::Overloaded => "overloaded",
            Refusal::RequestTimeout => "request_timeout",
        }
    }
}

/// Middleware: counts and times every HTTP request by route pattern (never the raw path, which
/// is unbounded), method and status.
pub(crate) async fn track_http(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(metrics) = request.app_data::<web::Data<Metrics>>().cloned() else {
        return next.call(request).await;
    };
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let _in_flight = InFlight::enter(&metrics.http_in_flight);
    let response = next.call(request).await;
    let (route, status) = match &response {
        Ok(response) => (response.request().match_pattern(), response.status()),
        Err(error) => (None, error.as_response_error().status_code()),
    };
    // Known methods only: a client can send any token as a method.
    let method = match method.as_str() {
        "GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH" => method,
        _ => "OTHER".to_owned(),
    };
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    metrics
        .http_requests
        .with_label_values(&[&route, &method, status.as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[&route, &method])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Counts a request in flight until dropped, even when the client goes away mid-request.
struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /metrics`: the Prometheus text format.
pub(crate) async fn metrics_endpoint(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}

#[cfg(test)]
mod tests {
    use antifraud_rules::CelRules;

    use super::*;

    fn rules(version: &str, ids: &[&str]) -> CelRules {
        let mut text = format!("version = \"{version}\"\n");
        for id in ids {
            text.push_str(&format!(
                "[[rules]]\nid = \"{id}\"\nreason = \"r\"\nwhen = \"true\"\naction = \"review\"\n"
            ));
        }
        CelRules::load(&text).expect("valid rules")
    }

    fn fired(rule: &str) -> RuleEvaluation {
        RuleEvaluation {
            rule: Arc::from(rule),
            mode: Mode::Active,
            outcome: RuleOutcome::Fired,
            error: None,
        }
    }

    #[test]
    fn a_request_decided_before_a_reload_does_not_bring_back_a_dropped_rules_series() {
        let metrics = Metrics::new();
        metrics.rules_in_force(&rules("one", &["kept", "dropped"]));
        metrics.rules_evaluated(&[fired("kept"), fired("dropped")]);
        metrics.rules_in_force(&rules("two", &["kept", "added"]));
        // Still in flight with set "one" when "two" came in.
        metrics.rules_evaluated(&[fired("kept"), fired("dropped")]);
        metrics.rules_evaluated(&[fired("kept"), fired("added")]);

        let text = metrics.render();
        let series = |rule: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with("antifraud_rule_evaluations_total")
                        && l.contains(&format!("outcome=\"fired\",rule=\"{rule}\""))
                })
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
        };
        assert_eq!(series("kept").as_deref(), Some("3"), "{text}");
        assert_eq!(series("added").as_deref(), Some("1"), "{text}");
        assert_eq!(series("dropped"), None, "{text}");
    }
}
