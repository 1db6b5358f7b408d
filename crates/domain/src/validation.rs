//! Validation errors: every offending field of a request, each with a stable reason code.

use std::fmt;

/// Why one field's value was refused.
///
/// [`Violation::code`] is a stable, bounded identifier (safe as a metric label);
/// the [`fmt::Display`] text is for people.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Violation {
    /// A required field is absent or `null`.
    Missing,
    /// A text field is empty or only white space.
    Empty,
    /// A text field is longer than `max` characters.
    TooLong {
        /// The largest accepted length, in characters.
        max: usize,
    },
    /// A text field contains a control character (newline, tab, NUL, ...).
    ControlCharacter,
    /// A number is NaN or infinite.
    NotFinite,
    /// A number is outside its accepted range.
    OutOfRange {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// The value does not have the expected format; the text says which.
    Format(&'static str),
    /// Not an ISO 4217 alphabetic currency code.
    UnknownCurrency,
    /// The timestamp is older than the service accepts: later than the accepted lateness for a
    /// new transaction, beyond the retention for a retry.
    TooOld,
    /// The timestamp is further in the future than the accepted clock skew.
    InFuture,
    /// A list has more than `max` entries.
    TooMany {
        /// The largest accepted number of entries.
        max: usize,
    },
}

impl Violation {
    /// A stable machine-readable code for this kind of violation.
    pub fn code(&self) -> &'static str {
        match self {
            Violation::Missing => "missing",
            Violation::Empty => "empty",
            Violation::TooLong { .. } => "too_long",
            Violation::ControlCharacter => "control_character",
            Violation::NotFinite => "not_finite",
            Violation::OutOfRange { .. } => "out_of_range",
            Violation::Format(_) => "format",
            Violation::UnknownCurrency => "unknown_currency",
            Violation::TooOld => "too_old",
            Violation::InFuture => "in_future",
            Violation::TooMany { .. } => "too_many",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Missing => f.write_str("is required"),
            Violation::Empty => f.write_str("must not be empty"),
            Violation::TooLong { max } => write!(f, "must be at most {max} characters"),
            Violation::ControlCharacter => f.write_str("must not contain control characters"),
            Violation::NotFinite => f.write_str("must be a finite number"),
            Violation::OutOfRange { min, max } => write!(f, "must be between {min} and {max}"),
            Violation::Format(expected) => write!(f, "must be {expected}"),
            Violation::UnknownCurrency => {
                f.write_str("must be an ISO 4217 alphabetic code, such as EUR")
            }
            Violation::TooOld => f.write_str("is older than the accepted lateness"),
            Violation::InFuture => f.write_str("is more than 5 minutes in the future"),
            Violation::TooMany { max } => write!(f, "must have at most {max} entries"),
        }
    }
}

/// One offending field: its name as the client sent it (`customer_segments[2]` for a list entry)
/// and why it was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field's name in the request body.
    pub field: String,
    /// What is wrong with it.
    pub violation: Violation,
}

/// A transaction was refused: the list of every offending field, never empty.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid transaction: {}", summary(.fields))]
pub struct ValidationError {
    /// Each offending field, in the order of the request's fields.
    pub fields: Vec<FieldError>,
}

fn summary(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|e| format!("{} {}", e.field, e.violation))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects field errors while a whole input is checked, so that the client learns about every
/// problem at once rather than one per round trip.
#[derive(Default)]
pub(crate) struct Collector {
    fields: Vec<FieldError>,
}

impl Collector {
    /// Keeps the value when it is valid, notes the field otherwise.
    pub(crate) fn check<T>(&mut self, field: &str, result: Result<T, Violation>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(violation) => {
                self.fields.push(FieldError {
                    field: field.to_owned(),
                    violation,
                });
                None
            }
        }
    }

    /// Like [`Collector::check`] for a required field: `None` is reported as missing.
    pub(crate) fn require<R, T>(
        &mut self,
        field: &str,
        raw: Option<R>,
        parse: impl FnOnce(R) -> Result<T, Violation>,
    ) -> Option<T> {
        self.check(field, raw.ok_or(Violation::Missing).and_then(parse))
    }

    /// Like [`Collector::check`] for an optional field: `None` stays `None` and is no error.
    pub(crate) fn optional<R, T>(
        &mut self,
        field: &str,
        raw: Option<R>,
        parse: impl FnOnce(R) -> Result<T, Violation>,
    ) -> Option<Option<T>> {
        match raw {
            None => Some(None),
            Some(raw) => self.check(field, parse(raw)).map(Some),
        }
    }

    /// The error to return, if any field was refused.
    pub(crate) fn finish(self) -> Result<(), ValidationError> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                fields: self.fields,
            })
        }
    }
}
