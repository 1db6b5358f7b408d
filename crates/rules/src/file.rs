//! The rule file: TOML that analysts edit, checked whole before anything serves from it.
//!
//! ```toml
//! version = "2026-12-01.1"
//!
//! [lists]
//! risky_bins = ["411111", "550000"]
//!
//! [[rules]]
//! id = "amount-vs-average"
//! reason = "amount_far_above_average"
//! when = "tx.amount > 3.0 * stats.avg_amount_24h && stats.count_24h >= 3"
//! action = "review"
//! mode = "active"          # or "shadow"; active by default
//! description = "A purchase far above what the customer usually spends."
//! ```

use std::collections::{BTreeMap, HashSet};

use antifraud_domain::{Action, Mode};
use serde::Deserialize;

use crate::expression::{Expression, ExpressionError};

/// Most rules in one file: bounds the work per request and the metrics' label values.
pub const MAX_RULES: usize = 200;
/// Longest `when`, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 2_000;
/// Most values in all named lists together.
pub const MAX_LIST_VALUES: usize = 1_000_000;

/// A rule file, parsed and every rule compiled.
#[derive(Debug)]
pub struct RuleFile {
    /// The version label answers carry (`rules_version`).
    pub version: String,
    /// Named lists, for constant-time membership (`tx.card_bin in lists.risky_bins`).
    pub lists: BTreeMap<String, HashSet<String>>,
    /// The rules, in the file's order: reasons are listed in it.
    pub rules: Vec<Rule>,
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// Unique within the file; a metric label.
    pub id: String,
    /// The reason code answers carry when it fires.
    pub reason: String,
    /// The condition.
    pub when: Expression,
    /// What it asks for when it fires.
    pub action: Action,
    /// Active (decides) or shadow (only counted).
    pub mode: Mode,
    /// For people.
    pub description: Option<String>,
}

/// Why a rule file was refused: one line, naming the rule when one is at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleFileError {
    /// Not TOML, or not a rule file's shape.
    #[error("{0}")]
    Syntax(String),
    /// A rule is wrong.
    #[error("rule `{rule}`: {problem}")]
    Rule {
        /// Its id (or its position, when it has none).
        rule: String,
        /// What is wrong.
        problem: String,
    },
    /// Something about the file as a whole.
    #[error("{0}")]
    File(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: String,
    #[serde(default)]
    lists: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    reason: String,
    when: String,
    action: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

impl RuleFile {
    /// Parses and checks a rule file: its shape, every rule's fields and expression (syntax,
    /// variables and functions it may use, a boolean result on synthetic facts), unique ids,
    /// and the bounds above. The first problem found is the error.
    ///
    /// # Errors
    /// See [`RuleFileError`].
    pub fn parse(text: &str) -> Result<RuleFile, RuleFileError> {
        let raw: RawFile =
            toml::from_str(text).map_err(|e| RuleFileError::Syntax(one_line(&e.to_string())))?;
        if raw.version.trim().is_empty() {
            return Err(RuleFileError::File("`version` is empty".into()));
        }
        if raw.rules.len() > MAX_RULES {
            return Err(RuleFileError::File(format!(
                "{} rules: at most {MAX_RULES}",
                raw.rules.len()
            )));
        }
        let values: usize = raw.lists.values().map(Vec::len).sum();
        if values > MAX_LIST_VALUES {
            return Err(RuleFileError::File(format!(
                "{values} list values: at most {MAX_LIST_VALUES}"
            )));
        }
        for name in raw.lists.keys() {
            if !is_identifier(name) {
                return Err(RuleFileError::File(format!(
                    "list name `{name}`: letters, digits and `_`, not starting with a digit"
                )));
            }
        }
        let lists: BTreeMap<String, HashSet<String>> = raw
            .lists
            .into_iter()
            .map(|(name, values)| (name, values.into_iter().collect()))
            .collect();
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (position, raw) in raw.rules.into_iter().enumerate() {
            let name = if raw.id.trim().is_empty() {
                format!("#{}", position + 1)
            } else {
                raw.id.clone()
            };
            let fail = |problem: String| RuleFileError::Rule {
                rule: name.clone(),
                problem,
            };
            if raw.id.trim().is_empty() {
                return Err(fail("`id` is empty".into()));
            }
            if !seen.insert(raw.id.clone()) {
                return Err(fail("a second rule with this id".into()));
            }
            if raw.reason.trim().is_empty() {
                return Err(fail("`reason` is empty".into()));
            }
            let action = Action::parse(&raw.action).ok_or_else(|| {
                fail(format!(
                    "`action` is {:?}: approve, review or decline",
                    raw.action
                ))
            })?;
            let mode = match raw.mode.as_deref() {
                None | Some("active") => Mode::Active,
                Some("shadow") => Mode::Shadow,
                Some(other) => {
                    return Err(fail(format!("`mode` is {other:?}: active or shadow")));
                }
            };
            if raw.when.chars().count() > MAX_EXPRESSION_CHARS {
                return Err(fail(format!(
                    "`when` is longer than {MAX_EXPRESSION_CHARS} characters"
                )));
            }
            let when = Expression::compile(&raw.when, &lists).map_err(|e| match e {
                ExpressionError::Syntax {
                    line,
                    column,
                    message,
                } => fail(format!("`when`, line {line}, column {column}: {message}")),
                other => fail(format!("`when`: {other}")),
            })?;
            rules.push(Rule {
                id: raw.id,
                reason: raw.reason,
                when,
                action,
                mode,
                description: raw.description,
            });
        }
        Ok(RuleFile {
            version: raw.version,
            lists,
            rules,
        })
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// TOML's messages span several lines (a snippet and a caret): one line for logs and CI.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|') && l != &"^")
        .collect::<Vec<_>>()
        .join("; ")
}
