//! The HTTP API's bodies, kept apart from the domain's models: the wire format can evolve
//! without touching the domain, and the domain knows nothing of JSON or OpenAPI.

use antifraud_domain::{
    Assessment, Degradation, MAX_ID_CHARS, MAX_TEXT_CHARS, Milliseconds, Reason, TransactionInput,
    Window,
};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

/// One card transaction to score.
///
/// The schema describes a valid transaction. The service reads every field as optional so that
/// it can list every missing or invalid field at once (422). Unknown fields are ignored. A field
/// sent twice is a 400.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "customer_id": "cust-42",
    "transaction_id": "tx-2026-11-25-0001",
    "amount": 125.5,
    "currency": "EUR",
    "type": 1,
    "merchant_id": "merchant-7",
    "card_bin": "411111",
    "ip_address": "192.0.2.10",
    "device_id": "device-9",
    "location": "Berlin, DE",
    "channel": "online",
    "timestamp": "2026-11-25T10:00:00Z",
    "merchant_risk_score": 0.2,
    "customer_segments": ["retail"]
}))]
pub(crate) struct TransactionRequest {
    /// Required. The paying customer: 1 to 256 characters, no control characters.
    #[schema(required = true, nullable = false)]
    pub customer_id: Option<String>,
    /// Required. Unique per customer; the idempotency key with `customer_id`. 1 to 256
    /// characters, no control characters.
    #[schema(required = true, nullable = false)]
    pub transaction_id: Option<String>,
    /// Required. Amount in `currency`, 0 to 1e12.
    #[schema(required = true, nullable = false, minimum = 0, maximum = 1e12)]
    pub amount: Option<f64>,
    /// Required. ISO 4217 alphabetic code, upper case (an unknown code is a 422).
    #[schema(
        required = true,
        nullable = false,
        pattern = "^[A-Z]{3}$",
        example = "EUR"
    )]
    pub currency: Option<String>,
    /// Required. Transaction type code, 0 to 65535 (`7.0` reads as 7; `7.5` is a 400).
    #[serde(rename = "type", default, deserialize_with = "integer")]
    #[schema(
        rename = "type",
        required = true,
        nullable = false,
        minimum = 0,
        maximum = 65535
    )]
    pub kind: Option<i64>,
    /// Required. The merchant: 1 to 256 characters, no control characters.
    #[schema(required = true, nullable = false)]
    pub merchant_id: Option<String>,
    /// Required. The card's BIN: 6 to 8 digits, as a string or a JSON integer.
    #[serde(default, deserialize_with = "string_or_integer")]
    #[schema(required = true, nullable = false, schema_with = card_bin_schema)]
    pub card_bin: Option<String>,
    /// Required. IPv4 or IPv6 address of the payer.
    #[schema(
        required = true,
        nullable = false,
        min_length = 2,
        max_length = 64,
        example = "192.0.2.10"
    )]
    pub ip_address: Option<String>,
    /// Required. The payer's device: 1 to 256 characters, no control characters.
    #[schema(required = true, nullable = false)]
    pub device_id: Option<String>,
    /// Required. Where the payment happened, free text up to 128 characters.
    #[schema(required = true, nullable = false)]
    pub location: Option<String>,
    /// Required. Payment channel, such as `online`, `pos`, `atm`, `mobile`; up to 128 characters.
    #[schema(required = true, nullable = false)]
    pub channel: Option<String>,
    /// Required. Event time, RFC 3339 with an offset; for a new transaction at most the
    /// accepted lateness old (24 h by default) and 5 min ahead.
    #[schema(required = true, nullable = false, format = DateTime)]
    pub timestamp: Option<String>,
    /// The client's label, if known; stored, not used for scoring.
    pub is_fraud: Option<bool>,
    /// The client's merchant risk, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub merchant_risk_score: Option<f64>,
    /// The client's card risk, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub card_risk_score: Option<f64>,
    /// The client's customer risk, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub customer_risk_score: Option<f64>,
    /// The client's velocity rule fired.
    pub is_velocity_alert: Option<bool>,
    /// The client's location rule fired.
    pub is_location_alert: Option<bool>,
    /// The client's device rule fired.
    pub is_device_alert: Option<bool>,
    /// Customer segments, at most 32 of up to 128 characters.
    #[schema(max_items = 32)]
    pub customer_segments: Option<Vec<String>>,
    /// Merchant category, up to 128 characters.
    pub transaction_category: Option<String>,
    /// The client flags the amount as high.
    pub is_high_value: Option<bool>,
}

/// A text with at least one character that is not blank, and no control characters: what the
/// domain's text check accepts.
const TEXT_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";

/// The request's text fields and their longest length, from the domain's own limits.
const TEXT_FIELDS: [(&str, usize); 7] = [
    ("customer_id", MAX_ID_CHARS),
    ("transaction_id", MAX_ID_CHARS),
    ("merchant_id", MAX_ID_CHARS),
    ("device_id", MAX_ID_CHARS),
    ("location", MAX_TEXT_CHARS),
    ("channel", MAX_TEXT_CHARS),
    ("transaction_category", MAX_TEXT_CHARS),
];

/// Writes the text fields' limits into the OpenAPI document (`TransactionRequest`), once for all
/// of them: 1 to the domain's maximum characters, [`TEXT_PATTERN`].
pub(crate) struct TextLimits;

impl utoipa::Modify for TextLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, schema::Schema};
        let request = openapi
            .components
            .as_mut()
            .and_then(|components| components.schemas.get_mut("TransactionRequest"));
        let Some(RefOr::T(Schema::Object(request))) = request else {
            return;
        };
        for (field, max) in TEXT_FIELDS {
            if let Some(RefOr::T(Schema::Object(property))) = request.properties.get_mut(field) {
                property.min_length = Some(1);
                property.max_length = Some(max);
                property.pattern = Some(TEXT_PATTERN.to_owned());
            }
        }
    }
}

/// Reads an integer, also when written with a zero fraction (`205.0`): JSON has one number type,
/// JSON Schema counts `205.0` as an integer, and some serialisers write every number that way.
fn integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            // Beyond i64: still an integer, and out of the field's range (a 422 says so).
            Ok(Some(i64::try_from(v).unwrap_or(i64::MAX)))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            // 2^63 is the first float beyond i64; `as` is exact below it for integral values.
            if v.fract() == 0.0 && v.abs() < 9_223_372_036_854_775_808.0 {
                Ok(Some(v as i64))
            } else {
                Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
            }
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// The BIN's schema: the digits as a string, or as a JSON integer.
fn card_bin_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let one_of = OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]{6,8}$"))
                .examples(["411111"]),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(100_000))
                .maximum(Some(99_999_999)),
        )
        .description(Some(
            "Required. The card's BIN: 6 to 8 digits, as a string or a JSON integer.",
        ))
        .build();
    Schema::OneOf(one_of)
}

/// Reads a string, or a non-negative integer as its decimal digits: some payment systems send
/// the BIN as a number.
fn string_or_integer<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or a non-negative integer")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Visitor)
}

impl From<TransactionRequest> for TransactionInput {
    fn from(r: TransactionRequest) -> Self {
        TransactionInput {
            customer_id: r.customer_id,
            transaction_id: r.transaction_id,
            amount: r.amount,
            currency: r.currency,
            kind: r.kind,
            merchant_id: r.merchant_id,
            card_bin: r.card_bin,
            ip_address: r.ip_address,
            device_id: r.device_id,
            location: r.location,
            channel: r.channel,
            timestamp: r.timestamp,
            is_fraud: r.is_fraud,
            merchant_risk_score: r.merchant_risk_score,
            card_risk_score: r.card_risk_score,
            customer_risk_score: r.customer_risk_score,
            is_velocity_alert: r.is_velocity_alert,
            is_location_alert: r.is_location_alert,
            is_device_alert: r.is_device_alert,
            customer_segments: r.customer_segments,
            transaction_category: r.transaction_category,
            is_high_value: r.is_high_value,
        }
    }
}

/// The assessment of one transaction. A replay returns the first answer's body unchanged.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "customer_id": "cust-42",
    "transaction_id": "tx-2026-11-25-0001",
    "scoring": 0.0713,
    "is_fraud": false,
    "processing_time_ms": 1,
    "processing_time_us": 212,
    "customer_transaction_count_3h": 1,
    "customer_transaction_count_6h": 1,
    "customer_transaction_count_12h": 2,
    "customer_transaction_count_24h": 3,
    "customer_avg_amount_3h": 125.5,
    "customer_avg_amount_6h": 125.5,
    "customer_avg_amount_12h": 87.75,
    "customer_avg_amount_24h": 70.5,
    "processed_at": "2026-11-25T10:00:00.412Z",
    "model_name": "fraud-gbdt",
    "model_version": "1",
    "model_status": "ok",
    "degraded": false,
    "decision": "review",
    "reasons": [{
        "code": "amount_far_above_average",
        "rule": "amount-vs-average",
        "action": "review",
        "detail": "amount 125.50 > 1.5 × avg_24h 70.50"
    }],
    "rules_version": "2026-11-25.1"
}))]
pub(crate) struct ScoreResponse {
    pub customer_id: String,
    pub transaction_id: String,
    /// Fraud probability, 0 to 1.
    pub scoring: f64,
    /// `scoring` is at or above the configured fraud threshold.
    pub is_fraud: bool,
    /// Time from the request's arrival to the answer, in whole milliseconds, rounded up.
    /// (Answers saved by earlier versions, which wrote a fraction, replay it as it was sent.)
    #[schema(value_type = u64, minimum = 0)]
    pub processing_time_ms: serde_json::Number,
    /// The same time in whole microseconds, rounded up: the precise figure. Absent only from
    /// answers saved by earlier versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0)]
    pub processing_time_us: Option<u64>,
    /// The customer's transactions with a timestamp in (t − 3 h, t], this one included.
    pub customer_transaction_count_3h: u64,
    /// As above over 6 h.
    pub customer_transaction_count_6h: u64,
    /// As above over 12 h.
    pub customer_transaction_count_12h: u64,
    /// As above over 24 h.
    pub customer_transaction_count_24h: u64,
    /// Average amount over the same transactions as the 3 h count.
    pub customer_avg_amount_3h: f64,
    /// As above over 6 h.
    pub customer_avg_amount_6h: f64,
    /// As above over 12 h.
    pub customer_avg_amount_12h: f64,
    /// As above over 24 h.
    pub customer_avg_amount_24h: f64,
    /// When the decision was made, RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub processed_at: String,
    /// The model that was asked.
    pub model_name: String,
    /// Its version.
    pub model_version: String,
    /// `ok`, or `timeout` / `error` when the default score was used.
    #[schema(pattern = "^(ok|timeout|error)$")]
    pub model_status: String,
    /// `true` when the store failed and the service was configured to score anyway: the answer
    /// is provisional, not replayable, and `degraded_reason` says why.
    pub degraded: bool,
    /// Only on a degraded answer: `not_recorded` (nothing was recorded; the statistics cover this
    /// transaction alone) or `not_saved` (recorded with its history, but the answer could not
    /// be saved for replay). A retry with the same body gets the final answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(not_recorded|not_saved)$")]
    pub degraded_reason: Option<&'static str>,
    /// What to do with the transaction: the most severe action among the active rules that
    /// fired, `approve` when none did. Without a rule file: `decline` when `is_fraud`, else
    /// `approve`. Absent only from answers saved by versions before decisions, which replay as
    /// they were first sent (as do `reasons` and `rules_version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(approve|review|decline)$")]
    pub decision: Option<&'static str>,
    /// Every active rule that fired, in the rule file's order; empty when none did. Shadow rules
    /// never appear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<ReasonResponse>>,
    /// The version label of the rule set that decided (`builtin-threshold-1` without a rule
    /// file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<String>,
}

/// One active rule that fired.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReasonResponse {
    /// The rule's reason code, stable across edits of the rule.
    pub code: String,
    /// The rule's id.
    pub rule: String,
    /// The action it asks for.
    #[schema(pattern = "^(approve|review|decline)$")]
    pub action: &'static str,
    /// The values the rule saw, for a person to read.
    pub detail: String,
}

impl From<Reason> for ReasonResponse {
    fn from(r: Reason) -> Self {
        ReasonResponse {
            code: r.code,
            rule: r.rule,
            action: r.action.as_str(),
            detail: r.detail,
        }
    }
}

impl From<Assessment> for ScoreResponse {
    fn from(a: Assessment) -> Self {
        let count = |w| a.stats.get(w).count;
        let avg = |w| a.stats.get(w).average();
        ScoreResponse {
            customer_transaction_count_3h: count(Window::Hours3),
            customer_transaction_count_6h: count(Window::Hours6),
            customer_transaction_count_12h: count(Window::Hours12),
            customer_transaction_count_24h: count(Window::Hours24),
            customer_avg_amount_3h: avg(Window::Hours3),
            customer_avg_amount_6h: avg(Window::Hours6),
            customer_avg_amount_12h: avg(Window::Hours12),
            customer_avg_amount_24h: avg(Window::Hours24),
            processed_at: a
                .processed_at
                .format(&Rfc3339)
                .expect("a UTC time of the current era formats as RFC 3339"),
            customer_id: a.customer_id.to_string(),
            transaction_id: a.transaction_id.to_string(),
            scoring: a.score,
            is_fraud: a.is_fraud,
            processing_time_ms: match a.processing_time.millis() {
                Milliseconds::Whole(ms) => ms.into(),
                // A finite figure, as it was first written; NaN cannot have been saved as JSON.
                Milliseconds::Fraction(ms) => serde_json::Number::from_f64(ms).unwrap_or(0.into()),
            },
            processing_time_us: a.processing_time.micros(),
            model_name: a.model.name,
            model_version: a.model.version,
            model_status: a.model_status.as_str().to_owned(),
            degraded: a.degraded.is_some(),
            degraded_reason: a.degraded.map(Degradation::as_str),
            decision: a.decision.as_ref().map(|d| d.action.as_str()),
            rules_version: a.decision.as_ref().map(|d| d.rules_version.clone()),
            reasons: a
                .decision
                .map(|d| d.reasons.into_iter().map(ReasonResponse::from).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::TEXT_FIELDS;

    #[test]
    fn every_text_field_gets_its_limits_in_the_document() {
        let doc = serde_json::to_value(crate::routes::ApiDoc::openapi()).expect("serialises");
        let properties = &doc["components"]["schemas"]["TransactionRequest"]["properties"];
        for (field, max) in TEXT_FIELDS {
            let property = &properties[field];
            assert_eq!(property["maxLength"], max, "{field}: {property}");
            assert_eq!(property["minLength"], 1, "{field}");
            assert!(property["pattern"].is_string(), "{field}");
        }
    }
}
