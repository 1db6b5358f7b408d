//! What a chaos run must never show, checked from its journal of attempts and from what Redis
//! holds at the end. Pure: the run gathers the evidence, this module judges it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

/// One request as sent and as answered.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    /// Order of sending.
    pub(crate) seq: u64,
    pub(crate) customer: String,
    pub(crate) transaction: String,
    /// The payload's amount: the one field a changed retry changes.
    pub(crate) amount: f64,
    /// Which instance it went to.
    pub(crate) instance: usize,
    /// Milliseconds since the run began, when it was sent.
    pub(crate) sent_ms: f64,
    /// From sending to the answer (or to the failure).
    pub(crate) latency_ms: f64,
    pub(crate) outcome: Outcome,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// An HTTP answer.
    Answered {
        status: u16,
        replayed: bool,
        body: String,
    },
    /// No answer: refused, reset or timed out. `instance_down` when the run had killed the
    /// instance at some point during the attempt.
    NoAnswer { error: String, instance_down: bool },
}

/// What an answer says about the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// 200, not degraded: recorded, and this is its answer.
    Recorded,
    /// 200, degraded, `not_recorded`: nothing was recorded.
    NotRecorded,
    /// 200, degraded, `not_saved`: recorded, answer not saved.
    NotSaved,
    /// 409.
    Conflict,
    /// 422.
    Refused,
    /// 503, or no answer: the transaction may or may not be recorded.
    Unknown,
    /// Anything else.
    Unexpected(u16),
}

impl Attempt {
    fn verdict(&self) -> Verdict {
        match &self.outcome {
            Outcome::NoAnswer { .. } => Verdict::Unknown,
            Outcome::Answered { status, body, .. } => match status {
                200 => match serde_json::from_str::<Value>(body) {
                    Ok(answer) if answer["degraded"] == false => Verdict::Recorded,
                    Ok(answer) if answer["degraded_reason"] == "not_recorded" => {
                        Verdict::NotRecorded
                    }
                    Ok(answer) if answer["degraded_reason"] == "not_saved" => Verdict::NotSaved,
                    _ => Verdict::Unexpected(200),
                },
                409 => Verdict::Conflict,
                422 => Verdict::Refused,
                503 => Verdict::Unknown,
                other => Verdict::Unexpected(*other),
            },
        }
    }

    /// What the run's summary counts this attempt as.
    pub(crate) fn label(&self) -> String {
        let replayed = matches!(self.outcome, Outcome::Answered { replayed: true, .. });
        match self.verdict() {
            Verdict::Recorded if replayed => "200 replayed".into(),
            Verdict::Recorded => "200 recorded".into(),
            Verdict::NotRecorded => "200 degraded, not recorded".into(),
            Verdict::NotSaved => "200 degraded, not saved".into(),
            Verdict::Conflict => "409".into(),
            Verdict::Refused => "422".into(),
            Verdict::Unknown if self.body().is_none() => "no answer".into(),
            Verdict::Unknown => "503".into(),
            Verdict::Unexpected(status) => format!("{status} (unexpected)"),
        }
    }

    fn body(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Answered { body, .. } => Some(body),
            Outcome::NoAnswer { .. } => None,
        }
    }
}

/// What Redis holds at the end, per customer: each event's transaction id and amount.
pub(crate) type Held = BTreeMap<String, Vec<(String, f64)>>;

/// The evidence of one run.
pub(crate) struct Evidence<'a> {
    pub(crate) attempts: &'a [Attempt],
    pub(crate) held: &'a Held,
    /// Per customer, the 24 h count of a final transaction sent once every fault had healed
    /// (its own event included in `held`), and its id.
    pub(crate) probes: &'a BTreeMap<String, (String, u64)>,
    /// Every answer must leave within this, in milliseconds: the deadline plus the allowance.
    pub(crate) latency_limit_ms: f64,
}

/// The kinds of violation, each a clause of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    /// Two non-degraded 200s for one transaction with different bodies.
    DifferentBodies,
    /// Non-degraded 200s for two payloads of one transaction: the second should have been 409.
    ChangedPayloadAccepted,
    /// Redis holds a transaction whose attempts were all answered "nothing recorded" (or were
    /// refused): a command given up on took effect.
    DegradedButHeld,
    /// A transaction answered with a non-degraded 200 that Redis does not hold.
    Lost,
    /// A transaction Redis holds more than once.
    CountedTwice,
    /// Redis holds another payload than the one its non-degraded 200 answered.
    HeldOtherPayload,
    /// A customer's final count is not its distinct recorded transactions.
    CountMismatch,
    /// A status other than 200, 409, 422 and 503, or a 200 that is not a valid answer.
    UnexpectedStatus,
    /// No answer from an instance that was up.
    NoAnswer,
    /// An answer later than the deadline plus the allowance.
    Late,
}

impl Kind {
    pub(crate) const ALL: [Kind; 10] = [
        Kind::DifferentBodies,
        Kind::ChangedPayloadAccepted,
        Kind::DegradedButHeld,
        Kind::Lost,
        Kind::CountedTwice,
        Kind::HeldOtherPayload,
        Kind::CountMismatch,
        Kind::UnexpectedStatus,
        Kind::NoAnswer,
        Kind::Late,
    ];
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::DifferentBodies => "different bodies for one transaction",
            Kind::ChangedPayloadAccepted => "changed payload accepted",
            Kind::DegradedButHeld => "answered not recorded, but held",
            Kind::Lost => "recorded answer, not held (lost)",
            Kind::CountedTwice => "held twice",
            Kind::HeldOtherPayload => "held another payload than answered",
            Kind::CountMismatch => "final count differs",
            Kind::UnexpectedStatus => "unexpected status",
            Kind::NoAnswer => "no answer from a live instance",
            Kind::Late => "answer past the deadline",
        })
    }
}

/// One broken clause, with what shows it.
#[derive(Debug, Clone)]
pub(crate) struct Violation {
    pub(crate) kind: Kind,
    pub(crate) detail: String,
}

/// Every violation the evidence shows.
pub(crate) fn violations(evidence: &Evidence<'_>) -> Vec<Violation> {
    let mut found = Vec::new();
    let mut flag = |kind, detail: String| found.push(Violation { kind, detail });

    let mut by_transaction: BTreeMap<(&str, &str), Vec<&Attempt>> = BTreeMap::new();
    for attempt in evidence.attempts {
        by_transaction
            .entry((&attempt.customer, &attempt.transaction))
            .or_default()
            .push(attempt);
        match (&attempt.outcome, attempt.verdict()) {
            (_, Verdict::Unexpected(status)) => flag(
                Kind::UnexpectedStatus,
                format!("#{} got {status}: {:?}", attempt.seq, attempt.body()),
            ),
            (
                Outcome::NoAnswer {
                    error,
                    instance_down: false,
                },
                _,
            ) => flag(
                Kind::NoAnswer,
                format!("#{} to instance {}: {error}", attempt.seq, attempt.instance),
            ),
            _ => {}
        }
        // A refused connection answers nothing, and fast: only answers have a latency to keep.
        if matches!(attempt.outcome, Outcome::Answered { .. })
            && attempt.latency_ms > evidence.latency_limit_ms
        {
            flag(
                Kind::Late,
                format!(
                    "#{} answered after {:.1} ms",
                    attempt.seq, attempt.latency_ms
                ),
            );
        }
    }

    let mut held: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for (customer, events) in evidence.held {
        for (transaction, amount) in events {
            held.entry((customer, transaction))
                .or_default()
                .push(*amount);
        }
    }

    for (&(customer, transaction), attempts) in &by_transaction {
        let name = format!("{customer}/{transaction}");
        let recorded: Vec<&&Attempt> = attempts
            .iter()
            .filter(|a| a.verdict() == Verdict::Recorded)
            .collect();
        let bodies: BTreeSet<&str> = recorded.iter().filter_map(|a| a.body()).collect();
        if bodies.len() > 1 {
            flag(
                Kind::DifferentBodies,
                format!("{name}: {} different bodies", bodies.len()),
            );
        }
        let answered_amounts: BTreeSet<u64> = recorded.iter().map(|a| a.amount.to_bits()).collect();
        if answered_amounts.len() > 1 {
            flag(
                Kind::ChangedPayloadAccepted,
                format!(
                    "{name}: {} payloads got a recorded answer",
                    answered_amounts.len()
                ),
            );
        }
        let holding = held.get(&(customer, transaction));
        match (recorded.first(), holding) {
            (Some(first), None) => flag(
                Kind::Lost,
                format!("{name}: answered #{} as recorded, not held", first.seq),
            ),
            (Some(first), Some(amounts)) if !amounts.contains(&first.amount) => flag(
                Kind::HeldOtherPayload,
                format!(
                    "{name}: answered amount {} (#{}), holds {amounts:?}",
                    first.amount, first.seq
                ),
            ),
            _ => {}
        }
        // Only an attempt whose outcome allows it may have recorded the transaction.
        let may_have_recorded = attempts.iter().any(|a| {
            matches!(
                a.verdict(),
                Verdict::Recorded | Verdict::NotSaved | Verdict::Unknown | Verdict::Unexpected(_)
            )
        });
        if holding.is_some() && !may_have_recorded {
            flag(
                Kind::DegradedButHeld,
                format!(
                    "{name}: held, but every attempt was answered without recording it ({})",
                    attempts
                        .iter()
                        .map(|a| format!("#{}", a.seq))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    for (&(customer, transaction), amounts) in &held {
        if amounts.len() > 1 {
            flag(
                Kind::CountedTwice,
                format!("{customer}/{transaction}: held {} times", amounts.len()),
            );
        }
    }
    for (customer, (probe, count)) in evidence.probes {
        let distinct: BTreeSet<&str> = evidence
            .held
            .get(customer)
            .into_iter()
            .flatten()
            .map(|(transaction, _)| transaction.as_str())
            .collect();
        let expected = distinct.len() as u64 + u64::from(!distinct.contains(probe.as_str()));
        if *count != expected {
            flag(
                Kind::CountMismatch,
                format!("{customer}: final count {count}, holds {expected} distinct"),
            );
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recorded answer for `transaction` of `amount`, with a body that depends on both.
    fn answered(
        seq: u64,
        transaction: &str,
        amount: f64,
        status: u16,
        degraded: Option<&str>,
    ) -> Attempt {
        let body = match (status, degraded) {
            (200, None) => format!(
                r#"{{"transaction_id":"{transaction}","amount":{amount},"degraded":false}}"#
            ),
            (200, Some(reason)) => format!(r#"{{"degraded":true,"degraded_reason":"{reason}"}}"#),
            _ => r#"{"type":"urn:antifraud:problem:x"}"#.to_owned(),
        };
        Attempt {
            seq,
            customer: "c".into(),
            transaction: transaction.into(),
            amount,
            instance: 0,
            sent_ms: seq as f64,
            latency_ms: 5.0,
            outcome: Outcome::Answered {
                status,
                replayed: false,
                body,
            },
        }
    }

    fn held(events: &[(&str, f64)]) -> Held {
        BTreeMap::from([(
            "c".to_owned(),
            events.iter().map(|(t, a)| ((*t).to_owned(), *a)).collect(),
        )])
    }

    fn kinds(attempts: &[Attempt], held: &Held, probe_count: Option<u64>) -> Vec<Kind> {
        let probes = probe_count
            .map(|count| BTreeMap::from([("c".to_owned(), ("probe".to_owned(), count))]))
            .unwrap_or_default();
        violations(&Evidence {
            attempts,
            held,
            probes: &probes,
            latency_limit_ms: 220.0,
        })
        .into_iter()
        .map(|v| v.kind)
        .collect()
    }

    #[test]
    fn a_clean_history_passes() {
        let attempts = [
            answered(1, "t1", 10.0, 200, None),
            answered(2, "t1", 10.0, 200, None),
            answered(3, "t1", 11.0, 409, None),
            answered(4, "t2", 5.0, 503, None),
            answered(5, "t2", 5.0, 200, None),
            answered(6, "t3", 7.0, 200, Some("not_recorded")),
            answered(7, "t4", 7.0, 422, None),
        ];
        let state = held(&[("t1", 10.0), ("t2", 5.0), ("probe", 1.0)]);
        assert_eq!(kinds(&attempts, &state, Some(3)), []);
    }

    #[test]
    fn each_broken_clause_is_named() {
        // A retry answered with another body (finding 1: a fresh 200 instead of the replay).
        let replay_differs = [
            answered(1, "t1", 10.0, 200, None),
            Attempt {
                outcome: Outcome::Answered {
                    status: 200,
                    replayed: true,
                    body: r#"{"degraded":false,"other":1}"#.into(),
                },
                ..answered(2, "t1", 10.0, 200, None)
            },
        ];
        assert_eq!(
            kinds(&replay_differs, &held(&[("t1", 10.0)]), None),
            [Kind::DifferentBodies]
        );
        // The same ids with another amount got a recorded 200 instead of 409.
        let changed = [
            answered(1, "t1", 10.0, 200, None),
            answered(2, "t1", 12.0, 200, None),
        ];
        assert_eq!(
            kinds(&changed, &held(&[("t1", 10.0)]), None),
            [Kind::DifferentBodies, Kind::ChangedPayloadAccepted]
        );
        // Answered "nothing recorded", yet held (findings 1 and 12: a late command took effect).
        let degraded = [answered(1, "t1", 10.0, 200, Some("not_recorded"))];
        assert_eq!(
            kinds(&degraded, &held(&[("t1", 10.0)]), None),
            [Kind::DegradedButHeld]
        );
        // ...unless an attempt that may have recorded it exists.
        let then_unknown = [
            answered(1, "t1", 10.0, 200, Some("not_recorded")),
            answered(2, "t1", 10.0, 503, None),
        ];
        assert_eq!(kinds(&then_unknown, &held(&[("t1", 10.0)]), None), []);
        // Recorded, then gone.
        let recorded = [answered(1, "t1", 10.0, 200, None)];
        assert_eq!(kinds(&recorded, &held(&[]), None), [Kind::Lost]);
        // Recorded as 10, held as 12.
        assert_eq!(
            kinds(&recorded, &held(&[("t1", 12.0)]), None),
            [Kind::HeldOtherPayload]
        );
        // Held twice (finding 6: a retry counted again).
        assert_eq!(
            kinds(&recorded, &held(&[("t1", 10.0), ("t1", 10.0)]), None),
            [Kind::CountedTwice]
        );
        // The final count is off by one.
        assert_eq!(
            kinds(&recorded, &held(&[("t1", 10.0), ("probe", 1.0)]), Some(3)),
            [Kind::CountMismatch]
        );
        // A 500 (finding 4), an answer past the deadline (finding 8), silence from a live one.
        let mut late = answered(2, "t2", 1.0, 503, None);
        late.latency_ms = 400.0;
        let silent = Attempt {
            outcome: Outcome::NoAnswer {
                error: "reset".into(),
                instance_down: false,
            },
            ..answered(3, "t3", 1.0, 503, None)
        };
        let down = Attempt {
            outcome: Outcome::NoAnswer {
                error: "refused".into(),
                instance_down: true,
            },
            ..answered(4, "t4", 1.0, 503, None)
        };
        assert_eq!(
            kinds(
                &[answered(1, "t1", 1.0, 500, None), late, silent, down],
                &held(&[]),
                None
            ),
            [Kind::UnexpectedStatus, Kind::Late, Kind::NoAnswer]
        );
    }
}
