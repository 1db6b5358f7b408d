//! Validation of incoming transactions: a table of invalid values, each naming its field and
//! reason, and the boundaries of the accepted ranges.

use antifraud_domain::{Fingerprint, TransactionInput, Violation};
use time::macros::datetime;
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};

mod common;

use common::NOW;

fn valid() -> TransactionInput {
    TransactionInput {
        ip_address: Some("2001:db8::1".into()),
        is_fraud: Some(false),
        merchant_risk_score: Some(0.2),
        card_risk_score: Some(1.0),
        customer_risk_score: Some(0.0),
        is_velocity_alert: Some(true),
        is_location_alert: None,
        is_device_alert: Some(false),
        customer_segments: Some(vec!["retail".into(), "premium".into()]),
        transaction_category: Some("grocery".into()),
        is_high_value: None,
        ..common::required_fields()
    }
}

/// The one field refused, and why.
fn refused(input: TransactionInput) -> (String, &'static str) {
    let error = input.validate(NOW).expect_err("must be refused");
    assert_eq!(error.fields.len(), 1, "{error}");
    (
        error.fields[0].field.clone(),
        error.fields[0].violation.code(),
    )
}

#[test]
fn a_complete_transaction_is_valid() {
    let tx = valid().validate(NOW).expect("valid");
    assert_eq!(tx.amount(), 120.0);
    assert_eq!(tx.currency().as_str(), "EUR");
    assert_eq!(tx.customer_segments(), ["retail", "premium"]);
    assert!(tx.is_velocity_alert() && !tx.is_location_alert());
}

#[test]
fn each_invalid_value_is_refused_naming_its_field_and_reason() {
    let long = "x".repeat(257);
    let cases: Vec<(TransactionInput, &str, &str)> = vec![
        (
            TransactionInput {
                customer_id: None,
                ..valid()
            },
            "customer_id",
            "missing",
        ),
        (
            TransactionInput {
                customer_id: Some("".into()),
                ..valid()
            },
            "customer_id",
            "empty",
        ),
        (
            TransactionInput {
                customer_id: Some("  ".into()),
                ..valid()
            },
            "customer_id",
            "empty",
        ),
        (
            TransactionInput {
                customer_id: Some(long.clone()),
                ..valid()
            },
            "customer_id",
            "too_long",
        ),
        (
            TransactionInput {
                customer_id: Some("a\nb".into()),
                ..valid()
            },
            "customer_id",
            "control_character",
        ),
        (
            TransactionInput {
                transaction_id: Some("".into()),
                ..valid()
            },
            "transaction_id",
            "empty",
        ),
        (
            TransactionInput {
                transaction_id: Some(long),
                ..valid()
            },
            "transaction_id",
            "too_long",
        ),
        (
            TransactionInput {
                amount: Some(-0.01),
                ..valid()
            },
            "amount",
            "out_of_range",
        ),
        (
            TransactionInput {
                amount: Some(1e13),
                ..valid()
            },
            "amount",
            "out_of_range",
        ),
        (
            TransactionInput {
                amount: Some(f64::NAN),
                ..valid()
            },
            "amount",
            "not_finite",
        ),
        (
            TransactionInput {
                amount: Some(f64::INFINITY),
                ..valid()
            },
            "amount",
            "not_finite",
        ),
        (
            TransactionInput {
                currency: Some("usd".into()),
                ..valid()
            },
            "currency",
            "unknown_currency",
        ),
        (
            TransactionInput {
                currency: Some("ZZZ".into()),
                ..valid()
            },
            "currency",
            "unknown_currency",
        ),
        (
            TransactionInput {
                currency: Some("EURO".into()),
                ..valid()
            },
            "currency",
            "unknown_currency",
        ),
        (
            TransactionInput {
                kind: Some(-1),
                ..valid()
            },
            "type",
            "out_of_range",
        ),
        (
            TransactionInput {
                kind: Some(65_536),
                ..valid()
            },
            "type",
            "out_of_range",
        ),
        (
            TransactionInput {
                merchant_id: Some("".into()),
                ..valid()
            },
            "merchant_id",
            "empty",
        ),
        (
            TransactionInput {
                card_bin: Some("41111".into()),
                ..valid()
            },
            "card_bin",
            "format",
        ),
        (
            TransactionInput {
                card_bin: Some("411111111".into()),
                ..valid()
            },
            "card_bin",
            "format",
        ),
        (
            TransactionInput {
                card_bin: Some("41111a".into()),
                ..valid()
            },
            "card_bin",
            "format",
        ),
        (
            TransactionInput {
                ip_address: Some("300.1.1.1".into()),
                ..valid()
            },
            "ip_address",
            "format",
        ),
        (
            TransactionInput {
                ip_address: Some("localhost".into()),
                ..valid()
            },
            "ip_address",
            "format",
        ),
        (
            TransactionInput {
                device_id: Some("\t".into()),
                ..valid()
            },
            "device_id",
            "empty",
        ),
        (
            TransactionInput {
                location: None,
                ..valid()
            },
            "location",
            "missing",
        ),
        (
            TransactionInput {
                channel: Some("x".repeat(129)),
                ..valid()
            },
            "channel",
            "too_long",
        ),
        (
            TransactionInput {
                timestamp: Some("yesterday".into()),
                ..valid()
            },
            "timestamp",
            "format",
        ),
        (
            TransactionInput {
                timestamp: Some("2026-11-25 11:59:00".into()),
                ..valid()
            },
            "timestamp",
            "format",
        ),
        (
            TransactionInput {
                timestamp: Some("2026-11-25T11:59:00+25:00".into()),
                ..valid()
            },
            "timestamp",
            "format",
        ),
        (
            TransactionInput {
                timestamp: Some("2026-11-24T12:00:00Z".into()),
                ..valid()
            },
            "timestamp",
            "too_old",
        ),
        (
            TransactionInput {
                timestamp: Some("2026-11-25T12:05:00.000001Z".into()),
                ..valid()
            },
            "timestamp",
            "in_future",
        ),
        (
            TransactionInput {
                merchant_risk_score: Some(1.01),
                ..valid()
            },
            "merchant_risk_score",
            "out_of_range",
        ),
        (
            TransactionInput {
                card_risk_score: Some(-0.5),
                ..valid()
            },
            "card_risk_score",
            "out_of_range",
        ),
        (
            TransactionInput {
                customer_risk_score: Some(f64::NAN),
                ..valid()
            },
            "customer_risk_score",
            "not_finite",
        ),
        (
            TransactionInput {
                customer_segments: Some(vec!["ok".into(), "".into()]),
                ..valid()
            },
            "customer_segments[1]",
            "empty",
        ),
        (
            TransactionInput {
                customer_segments: Some(vec!["s".into(); 33]),
                ..valid()
            },
            "customer_segments",
            "too_many",
        ),
        (
            TransactionInput {
                transaction_category: Some("\u{0}".into()),
                ..valid()
            },
            "transaction_category",
            "control_character",
        ),
    ];
    for (input, field, code) in cases {
        assert_eq!(
            refused(input),
            (field.to_owned(), code),
            "expected {field} {code}"
        );
    }
}

#[test]
fn every_offending_field_is_listed_at_once() {
    let error = TransactionInput::default()
        .validate(NOW)
        .expect_err("empty input");
    let fields: Vec<_> = error.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "customer_id",
            "transaction_id",
            "amount",
            "currency",
            "type",
            "merchant_id",
            "card_bin",
            "ip_address",
            "device_id",
            "location",
            "channel",
            "timestamp"
        ]
    );
    assert!(
        error
            .fields
            .iter()
            .all(|f| f.violation == Violation::Missing)
    );
    assert!(error.to_string().contains("amount is required"), "{error}");
}

#[test]
fn timestamps_are_accepted_within_the_retention_and_the_clock_skew() {
    let at = |t: OffsetDateTime| TransactionInput {
        timestamp: Some(t.format(&Rfc3339).expect("formats")),
        ..valid()
    };
    let us = Duration::microseconds(1);
    assert!(at(NOW - Duration::hours(24)).validate(NOW).is_err());
    assert!(at(NOW - Duration::hours(24) + us).validate(NOW).is_ok());
    assert!(at(NOW + Duration::minutes(5)).validate(NOW).is_ok());
    assert!(at(NOW + Duration::minutes(5) + us).validate(NOW).is_err());
}

#[test]
fn timestamps_keep_their_instant_to_the_microsecond() {
    let tx = TransactionInput {
        timestamp: Some("2026-11-25T13:30:00.123456789+02:00".into()),
        ..valid()
    }
    .validate(NOW)
    .expect("valid");
    assert_eq!(tx.timestamp(), datetime!(2026-11-25 11:30:00.123456 UTC));
}

#[test]
fn a_timestamp_without_an_offset_is_read_as_utc() {
    for (text, expected) in [
        ("2026-11-25T11:30:00", datetime!(2026-11-25 11:30 UTC)),
        (
            "2026-11-25T11:30:00.250",
            datetime!(2026-11-25 11:30:00.25 UTC),
        ),
        (
            "2026-11-25T11:30:00.123456",
            datetime!(2026-11-25 11:30:00.123456 UTC),
        ),
    ] {
        let tx = TransactionInput {
            timestamp: Some(text.into()),
            ..valid()
        }
        .validate(NOW)
        .expect("valid");
        assert_eq!(tx.timestamp(), expected, "{text}");
    }
    for text in ["2026-11-25T11:30", "2026-11-25", "11:30:00"] {
        let input = TransactionInput {
            timestamp: Some(text.into()),
            ..valid()
        };
        assert!(input.validate(NOW).is_err(), "{text}");
    }
}

#[test]
fn boundary_amounts_and_ids_are_accepted() {
    for amount in [0.0, -0.0, 1e12] {
        let tx = TransactionInput {
            amount: Some(amount),
            ..valid()
        }
        .validate(NOW)
        .expect("valid");
        assert!(tx.amount().is_sign_positive(), "-0 is read as 0");
    }
    for id in [
        "{braces}",
        "a:b:c",
        "with space",
        "ünïcødé✓",
        &"x".repeat(256),
    ] {
        let tx = TransactionInput {
            customer_id: Some(id.into()),
            ..valid()
        }
        .validate(NOW)
        .expect("valid");
        assert_eq!(tx.customer_id().as_str(), id);
    }
}

#[test]
fn fingerprints_tell_retries_from_different_transactions() {
    let fp = |input: TransactionInput| Fingerprint::of(&input.validate(NOW).expect("valid"));
    let base = fp(valid());
    assert_eq!(base, fp(valid()));
    let same_instant = TransactionInput {
        timestamp: Some("2026-11-25T13:59:00+02:00".into()),
        ..valid()
    };
    assert_eq!(
        base,
        fp(same_instant),
        "the same instant in another offset is the same transaction"
    );
    let zero = |a: f64| {
        fp(TransactionInput {
            amount: Some(a),
            ..valid()
        })
    };
    assert_eq!(zero(0.0), zero(-0.0));
    for other in [
        TransactionInput {
            amount: Some(120.01),
            ..valid()
        },
        TransactionInput {
            device_id: Some("d-2".into()),
            ..valid()
        },
        TransactionInput {
            merchant_risk_score: None,
            ..valid()
        },
        TransactionInput {
            is_fraud: None,
            ..valid()
        },
        TransactionInput {
            customer_segments: Some(vec!["retailpremium".into()]),
            ..valid()
        },
        TransactionInput {
            transaction_category: None,
            ..valid()
        },
    ] {
        assert_ne!(base, fp(other));
    }
}

#[test]
fn ids_read_back_from_a_store_pass_the_same_checks_as_a_request() {
    use antifraud_domain::{CardBin, CustomerId, TransactionId};
    let customer: CustomerId = serde_json::from_str(r#""cust: {42}""#).expect("a valid id");
    assert_eq!(customer.as_str(), "cust: {42}");
    let long = format!("\"{}\"", "x".repeat(257));
    for bad in [r#""""#, r#""   ""#, r#""a\u0000b""#, long.as_str()] {
        assert!(serde_json::from_str::<CustomerId>(bad).is_err(), "{bad}");
        assert!(serde_json::from_str::<TransactionId>(bad).is_err(), "{bad}");
    }
    assert!(serde_json::from_str::<CardBin>(r#""411111""#).is_ok());
    for bad in [r#""41111""#, r#""41111x""#, r#""411111111""#] {
        assert!(serde_json::from_str::<CardBin>(bad).is_err(), "{bad}");
    }
    // Serialising is unchanged: the id as sent, a plain string.
    assert_eq!(
        serde_json::to_string(&customer).expect("serialises"),
        r#""cust: {42}""#
    );
}
