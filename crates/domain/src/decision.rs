//! Decisions: what a payment system should do with a transaction (approve, review, decline) and
//! the reasons for it, from a rule set (a port) that sees everything known once the score is in.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::features::Features;
use crate::model::{ModelIdentity, ModelStatus};
use crate::transaction::Transaction;
use crate::window::WindowStats;

/// What to do with a transaction, least severe first: a decision is the most severe action among
/// the active rules that fired, `Approve` when none did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Let it through.
    Approve,
    /// Let it through, or hold it, for an analyst to look at.
    Review,
    /// Refuse it.
    Decline,
}

impl Action {
    /// Every action, least severe first.
    pub const ALL: [Action; 3] = [Action::Approve, Action::Review, Action::Decline];

    /// `approve`, `review` or `decline`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Review => "review",
            Action::Decline => "decline",
        }
    }

    /// The action named so, as rule files and answers spell it.
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a decision is what it is: one active rule that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The reason code, stable across rule edits: what a payment system maps to its own codes.
    pub code: String,
    /// The rule's id.
    pub rule: String,
    /// What the rule asks for.
    pub action: Action,
    /// The values the rule saw, for a person to read (`amount 950.00 > 3 × avg_24h 120.00`).
    pub detail: String,
}

/// A rule set's answer for one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The most severe action among the reasons; `Approve` without any.
    #[serde(rename = "decision")]
    pub action: Action,
    /// Every active rule that fired, in the rule set's order.
    pub reasons: Vec<Reason>,
    /// The version label of the rule set that decided.
    pub rules_version: String,
}

impl Decision {
    /// The decision that `reasons` make: their most severe action.
    pub fn from_reasons(reasons: Vec<Reason>, rules_version: impl Into<String>) -> Decision {
        Decision {
            action: reasons
                .iter()
                .map(|r| r.action)
                .max()
                .unwrap_or(Action::Approve),
            reasons,
            rules_version: rules_version.into(),
        }
    }
}

/// Everything a rule may look at, once the score is in.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The validated transaction.
    pub transaction: &'a Transaction,
    /// The customer's statistics, this transaction included.
    pub stats: &'a WindowStats,
    /// The feature vector the model saw.
    pub features: &'a Features,
    /// The score (the model's, or the default when it failed).
    pub score: f64,
    /// `score >= fraud threshold`.
    pub is_fraud: bool,
    /// The fraud threshold in force.
    pub threshold: f64,
    /// The model that was asked.
    pub model: &'a ModelIdentity,
    /// Whether it answered.
    pub model_status: ModelStatus,
    /// Whether the answer is provisional (the store failed and the policy is to degrade).
    pub degraded: bool,
}

/// Whether a rule acts on the decision or is only counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Fired rules decide and appear in the answer.
    Active,
    /// Evaluated and counted, never acting nor shown: how a new rule is tried on live traffic.
    Shadow,
}

impl Mode {
    /// `active` or `shadow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Active => "active",
            Mode::Shadow => "shadow",
        }
    }
}

/// How one rule's evaluation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleOutcome {
    /// Its condition held.
    Fired,
    /// It did not.
    Passed,
    /// It could not be evaluated (a value missing, a type it did not expect): skipped, never
    /// failing the request.
    Failed,
}

/// One rule's evaluation, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleEvaluation {
    /// The rule's id: shared, not copied, as every request evaluates every rule. Carried rather
    /// than an index, so that a rule set swapped meanwhile (a reload) cannot relabel it.
    pub rule: Arc<str>,
    /// Active or shadow.
    pub mode: Mode,
    /// What happened.
    pub outcome: RuleOutcome,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// A rule set's full answer: the decision, and how each rule went.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// What the answer says.
    pub decision: Decision,
    /// Every rule evaluated, shadow ones included, in order.
    pub rules: Vec<RuleEvaluation>,
}

/// The rule port: turns the facts about one transaction into a decision. Implementations do no
/// I/O and answer in microseconds; a rule that fails is skipped and reported, never an error.
pub trait RuleSet: Send + Sync {
    /// The version label the answers carry. Owned: a set that swaps itself (a reload) cannot
    /// lend it out.
    fn version(&self) -> String;

    /// The rules' ids with their modes, in order: what metrics can show before any request.
    fn rules(&self) -> Vec<(Arc<str>, Mode)>;

    /// Decides.
    fn evaluate(&self, facts: &Facts<'_>) -> Evaluation;
}

/// The built-in rule set, used without a rule file: the model's score against the threshold.
/// `is_fraud` declines (reason `model_score`), anything else approves; so the decision says
/// what `is_fraud` says.
#[derive(Debug, Default, Clone, Copy)]
pub struct ThresholdRules;

impl ThresholdRules {
    /// The version label of the built-in set.
    pub const VERSION: &'static str = "builtin-threshold-1";
}

impl RuleSet for ThresholdRules {
    fn version(&self) -> String {
        Self::VERSION.to_owned()
    }

    fn rules(&self) -> Vec<(Arc<str>, Mode)> {
        Vec::new()
    }

    fn evaluate(&self, facts: &Facts<'_>) -> Evaluation {
        let reasons = if facts.is_fraud {
            vec![Reason {
                code: "model_score".to_owned(),
                rule: "builtin.score_threshold".to_owned(),
                action: Action::Decline,
                detail: format!(
                    "score {:.4} >= threshold {:.4} ({} {}, {})",
                    facts.score,
                    facts.threshold,
                    facts.model.name,
                    facts.model.version,
                    facts.model_status
                ),
            }]
        } else {
            Vec::new()
        };
        Evaluation {
            decision: Decision::from_reasons(reasons, Self::VERSION),
            rules: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(rule: &str, action: Action) -> Reason {
        Reason {
            code: rule.to_uppercase(),
            rule: rule.to_owned(),
            action,
            detail: String::new(),
        }
    }

    #[test]
    fn a_decision_is_its_most_severe_reason_and_approve_without_any() {
        assert_eq!(Decision::from_reasons(vec![], "v").action, Action::Approve);
        for (actions, expected) in [
            (vec![Action::Review], Action::Review),
            (vec![Action::Review, Action::Decline], Action::Decline),
            (vec![Action::Decline, Action::Review], Action::Decline),
            (vec![Action::Approve, Action::Review], Action::Review),
        ] {
            let reasons = actions
                .iter()
                .enumerate()
                .map(|(i, a)| reason(&format!("r{i}"), *a))
                .collect();
            let decision = Decision::from_reasons(reasons, "v");
            assert_eq!(decision.action, expected, "{actions:?}");
            assert_eq!(
                decision.reasons.len(),
                actions.len(),
                "every reason is kept"
            );
        }
    }

    #[test]
    fn actions_read_back_as_they_are_written() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            let json = serde_json::to_string(&action).expect("serialises");
            assert_eq!(json, format!("\"{action}\""));
        }
        assert_eq!(Action::parse("block"), None);
    }
}
