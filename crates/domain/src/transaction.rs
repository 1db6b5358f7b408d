//! A card transaction: the raw input as a client sends it, and the validated [`Transaction`].

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, PrimitiveDateTime};

use crate::currency::Currency;
use crate::validation::{Collector, ValidationError, Violation};
use crate::window::Mills;

/// How late a transaction may arrive, by default: a day after its timestamp. The service keeps
/// history for the longest window (24 h) plus this lateness, so that a late transaction's windows
/// are as exact as a prompt one's (see `ScoringPolicy::retention`).
pub const DEFAULT_MAX_LATENESS: Duration = Duration::hours(24);

/// How far in the future a transaction's timestamp may be: clients' clocks drift.
pub const MAX_FUTURE_SKEW: Duration = Duration::minutes(5);

/// Longest identifier, in characters.
pub const MAX_ID_CHARS: usize = 256;
/// Longest free-text field (location, channel, category, segment), in characters.
pub const MAX_TEXT_CHARS: usize = 128;
/// Most customer segments on one transaction.
const MAX_SEGMENTS: usize = 32;
/// Largest accepted amount: far above any card payment, small enough that every amount with at
/// most three decimals is its own `f64` and its own whole number of [`Mills`] (below 2^52).
const MAX_AMOUNT: f64 = 1e12;

/// A transaction as received, before validation: every field optional, so that validation can
/// name every missing or invalid field at once.
///
/// Field names follow the HTTP API, except `kind`, which the API calls `type`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransactionInput {
    /// The paying customer.
    pub customer_id: Option<String>,
    /// The payment system's id for this transaction, unique per customer.
    pub transaction_id: Option<String>,
    /// Amount in `currency`, not negative.
    pub amount: Option<f64>,
    /// ISO 4217 alphabetic code.
    pub currency: Option<String>,
    /// Transaction type code, 0..=65535 (the API's `type`).
    pub kind: Option<i64>,
    /// The merchant.
    pub merchant_id: Option<String>,
    /// The card's issuer identification number: 6 to 8 digits.
    pub card_bin: Option<String>,
    /// The payer's IPv4 or IPv6 address.
    pub ip_address: Option<String>,
    /// The payer's device.
    pub device_id: Option<String>,
    /// Where the payment happened, free text such as `Berlin, DE`.
    pub location: Option<String>,
    /// Payment channel, such as `online`, `pos`, `atm`, `mobile`.
    pub channel: Option<String>,
    /// When the payment happened, RFC 3339; without an offset it is read as UTC.
    pub timestamp: Option<String>,
    /// A label, when the client already knows (for training data); not used for scoring.
    pub is_fraud: Option<bool>,
    /// The client's own merchant risk, 0..=1.
    pub merchant_risk_score: Option<f64>,
    /// The client's own card risk, 0..=1.
    pub card_risk_score: Option<f64>,
    /// The client's own customer risk, 0..=1.
    pub customer_risk_score: Option<f64>,
    /// The client's velocity rule fired.
    pub is_velocity_alert: Option<bool>,
    /// The client's location rule fired.
    pub is_location_alert: Option<bool>,
    /// The client's device rule fired.
    pub is_device_alert: Option<bool>,
    /// Segments the customer belongs to.
    pub customer_segments: Option<Vec<String>>,
    /// Merchant category, free text.
    pub transaction_category: Option<String>,
    /// The client considers the amount high for this customer.
    pub is_high_value: Option<bool>,
}

/// A customer's identifier: 1 to 256 characters, no control characters. Any other character,
/// braces, colons and spaces included, is part of the id as sent. Deserialising one validates it,
/// so a stored answer read back passes the same checks as a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CustomerId(String);

/// A transaction's identifier, unique per customer; same rules as [`CustomerId`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TransactionId(String);

/// `Deserialize` through the type's own `parse`: no value that validation refuses can be read
/// back from a store either.
macro_rules! deserialize_by_parsing {
    ($name:ident) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse(text).map_err(serde::de::Error::custom)
            }
        }
    };
}
deserialize_by_parsing!(CustomerId);
deserialize_by_parsing!(TransactionId);
deserialize_by_parsing!(CardBin);

macro_rules! identifier {
    ($name:ident) => {
        impl $name {
            /// Validates an identifier.
            pub fn parse(id: impl Into<String>) -> Result<Self, Violation> {
                let id = id.into();
                check_text(&id, MAX_ID_CHARS)?;
                Ok(Self(id))
            }

            /// The identifier as sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
identifier!(CustomerId);
identifier!(TransactionId);

/// A card's issuer identification number (BIN/IIN): 6 to 8 ASCII digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CardBin(String);

impl CardBin {
    /// Validates a BIN.
    pub fn parse(bin: impl Into<String>) -> Result<Self, Violation> {
        let bin = bin.into();
        if (6..=8).contains(&bin.len()) && bin.bytes().all(|b| b.is_ascii_digit()) {
            Ok(CardBin(bin))
        } else {
            Err(Violation::Format("6 to 8 digits"))
        }
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated card transaction.
///
/// The only way to get one is [`TransactionInput::validate`], so every value here is known to be
/// within its documented bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    customer_id: CustomerId,
    transaction_id: TransactionId,
    amount: f64,
    currency: Currency,
    kind: u16,
    merchant_id: String,
    card_bin: CardBin,
    ip_address: IpAddr,
    device_id: String,
    location: String,
    channel: String,
    timestamp: OffsetDateTime,
    is_fraud: Option<bool>,
    merchant_risk_score: Option<f64>,
    card_risk_score: Option<f64>,
    customer_risk_score: Option<f64>,
    is_velocity_alert: bool,
    is_location_alert: bool,
    is_device_alert: bool,
    customer_segments: Vec<String>,
    transaction_category: Option<String>,
    is_high_value: bool,
}

impl TransactionInput {
    /// A card payment with every required field valid and no optional one: 125.50 EUR online,
    /// at 2026-11-25T10:00:00Z. For examples, synthetic checks, benchmarks and tests, which
    /// change what they need with struct update syntax (`..TransactionInput::example()`).
    pub fn example() -> TransactionInput {
        TransactionInput {
            customer_id: Some("cust-42".into()),
            transaction_id: Some("tx-1".into()),
            amount: Some(125.50),
            currency: Some("EUR".into()),
            kind: Some(1),
            merchant_id: Some("merchant-7".into()),
            card_bin: Some("411111".into()),
            ip_address: Some("192.0.2.10".into()),
            device_id: Some("device-9".into()),
            location: Some("Berlin, DE".into()),
            channel: Some("online".into()),
            timestamp: Some("2026-11-25T10:00:00Z".into()),
            ..TransactionInput::default()
        }
    }

    /// When the transaction happened, as validation will read its `timestamp`, without checking
    /// it against a clock: `None` when absent or not a date-time. For a replay, whose clock
    /// follows the events (`antifraud replay`).
    pub fn event_time(&self) -> Option<OffsetDateTime> {
        self.timestamp
            .as_deref()
            .and_then(|t| read_timestamp(t).ok())
    }

    /// Validates every field, `now` being the time of reception: the timestamp must lie within
    /// ([`DEFAULT_MAX_LATENESS`] before `now`, [`MAX_FUTURE_SKEW`] after `now`]: what the
    /// service accepts as a new transaction by default. A timestamp without an offset
    /// (`2026-11-25T10:00:00`) is read as UTC.
    ///
    /// Absent optional booleans count as `false`. `-0.0` amounts are read as `0`.
    pub fn validate(self, now: OffsetDateTime) -> Result<Transaction, ValidationError> {
        self.validate_within(now, DEFAULT_MAX_LATENESS)
    }

    /// [`TransactionInput::validate`] with timestamps up to `max_age` before `now`. The scoring
    /// use case passes the retention: an older transaction cannot be held by the store, so it
    /// cannot even be a retry.
    pub fn validate_within(
        self,
        now: OffsetDateTime,
        max_age: Duration,
    ) -> Result<Transaction, ValidationError> {
        let mut c = Collector::default();
        let customer_id = c.require("customer_id", self.customer_id, CustomerId::parse);
        let transaction_id = c.require("transaction_id", self.transaction_id, TransactionId::parse);
        let amount = c.require("amount", self.amount, parse_amount);
        let currency = c.require("currency", self.currency, |s| Currency::parse(&s));
        let kind = c.require("type", self.kind, |k| {
            u16::try_from(k).map_err(|_| Violation::OutOfRange {
                min: 0.0,
                max: f64::from(u16::MAX),
            })
        });
        let merchant_id = c.require("merchant_id", self.merchant_id, |s| {
            id_text(s, MAX_ID_CHARS)
        });
        let card_bin = c.require("card_bin", self.card_bin, CardBin::parse);
        let ip_address = c.require("ip_address", self.ip_address, |s| {
            s.parse::<IpAddr>()
                .map_err(|_| Violation::Format("an IPv4 or IPv6 address"))
        });
        let device_id = c.require("device_id", self.device_id, |s| id_text(s, MAX_ID_CHARS));
        let location = c.require("location", self.location, |s| id_text(s, MAX_TEXT_CHARS));
        let channel = c.require("channel", self.channel, |s| id_text(s, MAX_TEXT_CHARS));
        let timestamp = c.require("timestamp", self.timestamp, |s| {
            parse_timestamp(&s, now, max_age)
        });
        let merchant_risk_score = c.optional("merchant_risk_score", self.merchant_risk_score, risk);
        let card_risk_score = c.optional("card_risk_score", self.card_risk_score, risk);
        let customer_risk_score = c.optional("customer_risk_score", self.customer_risk_score, risk);
        let customer_segments = self.customer_segments.unwrap_or_default();
        if customer_segments.len() > MAX_SEGMENTS {
            c.check::<()>(
                "customer_segments",
                Err(Violation::TooMany { max: MAX_SEGMENTS }),
            );
        } else {
            for (i, segment) in customer_segments.iter().enumerate() {
                c.check(
                    &format!("customer_segments[{i}]"),
                    check_text(segment, MAX_TEXT_CHARS),
                );
            }
        }
        let transaction_category =
            c.optional("transaction_category", self.transaction_category, |s| {
                id_text(s, MAX_TEXT_CHARS)
            });
        c.finish()?;

        // Every `None` above was recorded as a field error, so `finish` returned early.
        let invariant = "validated above";
        Ok(Transaction {
            customer_id: customer_id.expect(invariant),
            transaction_id: transaction_id.expect(invariant),
            amount: amount.expect(invariant),
            currency: currency.expect(invariant),
            kind: kind.expect(invariant),
            merchant_id: merchant_id.expect(invariant),
            card_bin: card_bin.expect(invariant),
            ip_address: ip_address.expect(invariant),
            device_id: device_id.expect(invariant),
            location: location.expect(invariant),
            channel: channel.expect(invariant),
            timestamp: timestamp.expect(invariant),
            is_fraud: self.is_fraud,
            merchant_risk_score: merchant_risk_score.expect(invariant),
            card_risk_score: card_risk_score.expect(invariant),
            customer_risk_score: customer_risk_score.expect(invariant),
            is_velocity_alert: self.is_velocity_alert.unwrap_or(false),
            is_location_alert: self.is_location_alert.unwrap_or(false),
            is_device_alert: self.is_device_alert.unwrap_or(false),
            customer_segments,
            transaction_category: transaction_category.expect(invariant),
            is_high_value: self.is_high_value.unwrap_or(false),
        })
    }
}

/// Non-empty, bounded, printable text.
fn check_text(text: &str, max_chars: usize) -> Result<(), Violation> {
    if text.trim().is_empty() {
        Err(Violation::Empty)
    } else if text.chars().count() > max_chars {
        Err(Violation::TooLong { max: max_chars })
    } else if text.chars().any(char::is_control) {
        Err(Violation::ControlCharacter)
    } else {
        Ok(())
    }
}

fn id_text(text: String, max_chars: usize) -> Result<String, Violation> {
    check_text(&text, max_chars).map(|()| text)
}

fn parse_amount(amount: f64) -> Result<f64, Violation> {
    if !amount.is_finite() {
        Err(Violation::NotFinite)
    } else if !(0.0..=MAX_AMOUNT).contains(&amount) {
        Err(Violation::OutOfRange {
            min: 0.0,
            max: MAX_AMOUNT,
        })
    } else {
        // `-0.0` lies in the range; adding zero turns it into `+0.0` so it fingerprints as `0`.
        Ok(amount + 0.0)
    }
}

fn risk(score: f64) -> Result<f64, Violation> {
    if !score.is_finite() {
        Err(Violation::NotFinite)
    } else if (0.0..=1.0).contains(&score) {
        Ok(score + 0.0)
    } else {
        Err(Violation::OutOfRange { min: 0.0, max: 1.0 })
    }
}

/// `2026-11-25T10:00:00`, with optional fractional seconds: ISO 8601 without an offset.
const NAIVE_DATE_TIME: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");

fn parse_timestamp(
    text: &str,
    now: OffsetDateTime,
    max_age: Duration,
) -> Result<OffsetDateTime, Violation> {
    let at = read_timestamp(text)?;
    if at <= now - max_age {
        Err(Violation::TooOld)
    } else if at > now + MAX_FUTURE_SKEW {
        Err(Violation::InFuture)
    } else {
        Ok(at)
    }
}

/// The instant `text` names, as validation reads it, whatever the clock.
fn read_timestamp(text: &str) -> Result<OffsetDateTime, Violation> {
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| {
            // Many clients serialise UTC without its offset (Python's naive `isoformat()`):
            // such a date-time is read as UTC rather than refused.
            PrimitiveDateTime::parse(text, NAIVE_DATE_TIME).map(PrimitiveDateTime::assume_utc)
        })
        .map_err(|_| Violation::Format("an RFC 3339 date-time, such as 2026-11-25T10:00:00Z"))?;
    // Microseconds are kept: exact in every store (a Redis score is an f64), finer than any
    // payment system's clock.
    Ok(at
        .replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .expect("a truncated nanosecond is a valid nanosecond"))
}

impl Transaction {
    /// The paying customer.
    pub fn customer_id(&self) -> &CustomerId {
        &self.customer_id
    }
    /// The transaction's id, unique per customer.
    pub fn transaction_id(&self) -> &TransactionId {
        &self.transaction_id
    }
    /// Amount in [`Transaction::currency`], `0..=1e12`.
    pub fn amount(&self) -> f64 {
        self.amount
    }
    /// The amount as the statistics count it: whole mills (see [`Mills`]).
    pub fn mills(&self) -> Mills {
        Mills::of(self.amount)
    }
    /// The amount's currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }
    /// Transaction type code (the API's `type`).
    pub fn kind(&self) -> u16 {
        self.kind
    }
    /// The merchant.
    pub fn merchant_id(&self) -> &str {
        &self.merchant_id
    }
    /// The card's BIN.
    pub fn card_bin(&self) -> &CardBin {
        &self.card_bin
    }
    /// The payer's IP address.
    pub fn ip_address(&self) -> IpAddr {
        self.ip_address
    }
    /// The payer's device.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }
    /// Where the payment happened.
    pub fn location(&self) -> &str {
        &self.location
    }
    /// Payment channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }
    /// When the payment happened (event time), with the client's offset, to the microsecond.
    pub fn timestamp(&self) -> OffsetDateTime {
        self.timestamp
    }
    /// The client's label, if any.
    pub fn is_fraud(&self) -> Option<bool> {
        self.is_fraud
    }
    /// The client's merchant risk, 0..=1.
    pub fn merchant_risk_score(&self) -> Option<f64> {
        self.merchant_risk_score
    }
    /// The client's card risk, 0..=1.
    pub fn card_risk_score(&self) -> Option<f64> {
        self.card_risk_score
    }
    /// The client's customer risk, 0..=1.
    pub fn customer_risk_score(&self) -> Option<f64> {
        self.customer_risk_score
    }
    /// The client's velocity rule fired.
    pub fn is_velocity_alert(&self) -> bool {
        self.is_velocity_alert
    }
    /// The client's location rule fired.
    pub fn is_location_alert(&self) -> bool {
        self.is_location_alert
    }
    /// The client's device rule fired.
    pub fn is_device_alert(&self) -> bool {
        self.is_device_alert
    }
    /// Segments the customer belongs to.
    pub fn customer_segments(&self) -> &[String] {
        &self.customer_segments
    }
    /// Merchant category.
    pub fn transaction_category(&self) -> Option<&str> {
        self.transaction_category.as_deref()
    }
    /// The client considers the amount high.
    pub fn is_high_value(&self) -> bool {
        self.is_high_value
    }
}
