//! The outcome of scoring one transaction.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::decision::Decision;
use crate::model::{ModelIdentity, ModelStatus};
use crate::transaction::{CustomerId, TransactionId};
use crate::window::WindowStats;

/// What the service decided about one transaction. It is stored with the transaction, so a retry
/// gets exactly this back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// The paying customer.
    pub customer_id: CustomerId,
    /// The scored transaction.
    pub transaction_id: TransactionId,
    /// Fraud probability, 0..=1: the model's, or the default score when the model failed.
    pub score: f64,
    /// `score >= fraud threshold`.
    pub is_fraud: bool,
    /// The customer's statistics at the transaction's time, the transaction included.
    pub stats: WindowStats,
    /// The model that was asked.
    pub model: ModelIdentity,
    /// Whether it answered; anything but `Ok` means `score` is the default.
    pub model_status: ModelStatus,
    /// `None` for an answer the store recorded and saved; otherwise why it is provisional (the
    /// store failed and the policy is to degrade). Saved, as `degraded`, only as `false`: a
    /// provisional answer is never committed.
    #[serde(default, with = "degraded_flag")]
    pub degraded: Option<Degradation>,
    /// How long the service took, from the request's first byte to the final answer.
    #[serde(flatten)]
    pub processing_time: ProcessingTime,
    /// When the decision was made, UTC.
    #[serde(with = "time::serde::rfc3339")]
    pub processed_at: OffsetDateTime,
    /// What to do with the transaction and why, from the rule set in force. `None` only in
    /// answers saved by versions before decisions, which replay as they were first sent.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
}

/// Why an answer is provisional: under the `degrade` policy, what the store could not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degradation {
    /// The store could not record the transaction: nothing was recorded (a command given up on
    /// takes no effect afterwards), and the statistics cover this transaction alone.
    NotRecorded,
    /// The transaction was recorded and its statistics are the store's, but the answer could not
    /// be saved for replay (or the record was lost before it could be): a retry gets the final
    /// answer.
    NotSaved,
}

impl Degradation {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Degradation::NotRecorded => "not_recorded",
            Degradation::NotSaved => "not_saved",
        }
    }
}

/// `Assessment::degraded` as saved: the boolean `degraded` of every version.
mod degraded_flag {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Degradation;

    pub(super) fn serialize<S: Serializer>(
        degraded: &Option<Degradation>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bool(degraded.is_some())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Degradation>, D::Error> {
        // `true` is never saved; read it as the weaker claim, that the answer was not saved.
        Ok(bool::deserialize(deserializer)?.then_some(Degradation::NotSaved))
    }
}

/// How long the service took to answer one request, as saved with its assessment.
///
/// Answers saved before whole microseconds were kept carry a fractional millisecond figure
/// instead; it is replayed exactly as it was first sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProcessingTime {
    /// Whole microseconds, rounded up.
    Measured {
        /// The time in µs.
        processing_time_us: u64,
    },
    /// A fractional millisecond figure, as saved by earlier versions.
    Legacy {
        /// The time in ms.
        processing_time_ms: f64,
    },
}

/// The millisecond figure of a [`ProcessingTime`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Milliseconds {
    /// Whole milliseconds, rounded up: what the API answers.
    Whole(u64),
    /// An earlier version's fractional figure, replayed as it was.
    Fraction(f64),
}

impl ProcessingTime {
    /// The time since `started`.
    pub fn since(started: Instant) -> Self {
        Self::of(started.elapsed())
    }

    /// A duration, rounded up to whole microseconds (a nonzero time never reads as 0).
    pub fn of(elapsed: Duration) -> Self {
        ProcessingTime::Measured {
            processing_time_us: u64::try_from(elapsed.as_nanos().div_ceil(1_000))
                .unwrap_or(u64::MAX),
        }
    }

    /// Whole microseconds, when measured so.
    pub fn micros(&self) -> Option<u64> {
        match *self {
            ProcessingTime::Measured { processing_time_us } => Some(processing_time_us),
            ProcessingTime::Legacy { .. } => None,
        }
    }

    /// The milliseconds figure: whole, rounded up, or an earlier version's fraction.
    pub fn millis(&self) -> Milliseconds {
        match *self {
            ProcessingTime::Measured { processing_time_us } => {
                Milliseconds::Whole(processing_time_us.div_ceil(1_000))
            }
            ProcessingTime::Legacy { processing_time_ms } => {
                Milliseconds::Fraction(processing_time_ms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_up_to_whole_units_and_old_answers_keep_their_figure() {
        let t = ProcessingTime::of(Duration::from_nanos(137_001));
        assert_eq!(t.micros(), Some(138));
        assert_eq!(t.millis(), Milliseconds::Whole(1));
        assert_eq!(
            ProcessingTime::of(Duration::from_micros(2_000)).millis(),
            Milliseconds::Whole(2)
        );
        assert_eq!(
            ProcessingTime::of(Duration::ZERO).millis(),
            Milliseconds::Whole(0)
        );
        let legacy = ProcessingTime::Legacy {
            processing_time_ms: 0.137,
        };
        assert_eq!(legacy.micros(), None);
        assert_eq!(legacy.millis(), Milliseconds::Fraction(0.137));
    }
}
