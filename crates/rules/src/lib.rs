//! Analyst rules: a rule file (TOML, conditions in the Common Expression Language) that turns a
//! transaction's score and facts into approve / review / decline with reasons. It implements the
//! domain's [`RuleSet`] port; the service loads it with `--rules` and swaps it on SIGHUP.
//!
//! CEL cannot loop or assign, so a rule always ends, quickly; Kubernetes, Envoy and Google IAM
//! use it, so rule authors may know it already. The evaluator is the `cel` crate, pinned exactly
//! and used from one module (`expression.rs`), as its API moves between releases.

mod expression;
mod file;

use std::sync::Arc;

use antifraud_domain::{
    Decision, Evaluation, Facts, Features, Mode, ModelIdentity, ModelStatus, Reason,
    RuleEvaluation, RuleOutcome, RuleSet, TransactionInput, WindowStats,
};
use time::macros::datetime;

pub use expression::{ExpressionError, VARIABLES};
pub use file::{MAX_EXPRESSION_CHARS, MAX_LIST_VALUES, MAX_RULES, Rule, RuleFile, RuleFileError};

use expression::{Bound, Expression, Lists, Scope};

/// A rule file ready to decide: compiled, checked on a synthetic transaction.
pub struct CelRules {
    file: RuleFile,
    ids: Vec<Arc<str>>,
    /// Per rule, what its reason's detail shows: each `tx.…`, `stats.…`, `features.…`, `model.…`
    /// or `store.…` path its condition reads, compiled to read its value.
    details: Vec<Vec<(String, Expression)>>,
    env: Arc<cel::Env>,
    lists: Lists,
}

impl std::fmt::Debug for CelRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CelRules")
            .field("version", &self.file.version)
            .field("rules", &self.ids)
            .finish()
    }
}

impl CelRules {
    /// Parses, compiles and checks a rule file: [`RuleFile::parse`], then every condition on a
    /// synthetic transaction, which must give a boolean.
    ///
    /// # Errors
    /// The first problem, naming its rule.
    pub fn load(text: &str) -> Result<CelRules, RuleFileError> {
        let file = RuleFile::parse(text)?;
        let env = expression::environment();
        let lists = Lists::new(&file.lists);
        let mut details = Vec::with_capacity(file.rules.len());
        for rule in &file.rules {
            let mut paths = Vec::new();
            for path in value_paths(rule.when.source()) {
                let read =
                    Expression::compile(&path, &file.lists).map_err(|e| RuleFileError::Rule {
                        rule: rule.id.clone(),
                        problem: format!("`when` reads {path}: {e}"),
                    })?;
                paths.push((path, read));
            }
            details.push(paths);
        }
        let rules = CelRules {
            ids: file
                .rules
                .iter()
                .map(|r| Arc::from(r.id.as_str()))
                .collect(),
            file,
            details,
            env,
            lists,
        };
        rules.check_on_synthetic_facts()?;
        Ok(rules)
    }

    /// The file as loaded.
    pub fn file(&self) -> &RuleFile {
        &self.file
    }

    fn check_on_synthetic_facts(&self) -> Result<(), RuleFileError> {
        let at = datetime!(2026-01-15 12:00 UTC);
        // Every optional value present: a condition that reads one must still give a boolean.
        let tx = TransactionInput {
            customer_id: Some("synthetic".into()),
            amount: Some(100.0),
            timestamp: Some("2026-01-15T11:59:00Z".into()),
            merchant_risk_score: Some(0.1),
            card_risk_score: Some(0.1),
            customer_risk_score: Some(0.1),
            customer_segments: Some(vec!["retail".into()]),
            transaction_category: Some("groceries".into()),
            ..TransactionInput::example()
        }
        .validate(at)
        .map_err(|e| RuleFileError::File(format!("the synthetic transaction is invalid: {e}")))?;
        let earlier = [
            (tx.timestamp() - time::Duration::hours(2), tx.mills()),
            (tx.timestamp(), tx.mills()),
        ];
        let stats = WindowStats::aggregate(tx.timestamp(), earlier);
        let features = Features::new(&tx, &stats);
        let model = ModelIdentity {
            name: "synthetic".into(),
            version: "1".into(),
        };
        for status in [ModelStatus::Ok, ModelStatus::Timeout] {
            let facts = Facts {
                transaction: &tx,
                stats: &stats,
                features: &features,
                score: 0.5,
                is_fraud: false,
                threshold: 0.7,
                model: &model,
                model_status: status,
                degraded: status != ModelStatus::Ok,
            };
            let bound = Bound::new(&facts, &self.lists);
            let scope = Scope::new(&self.env, &bound);
            for rule in &self.file.rules {
                rule.when
                    .holds(&scope)
                    .map_err(|problem| RuleFileError::Rule {
                        rule: rule.id.clone(),
                        problem: format!("`when` on a synthetic transaction: {problem}"),
                    })?;
            }
        }
        Ok(())
    }

    /// `path value, path value` for the reason's detail.
    fn detail(&self, rule: usize, scope: &Scope<'_>) -> String {
        let paths = &self.details[rule];
        if paths.is_empty() {
            return self.file.rules[rule].when.source().to_owned();
        }
        paths
            .iter()
            .map(|(path, read)| format!("{path} {}", read.value(scope)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl RuleSet for CelRules {
    fn version(&self) -> String {
        self.file.version.clone()
    }

    fn rules(&self) -> Vec<(Arc<str>, Mode)> {
        self.ids
            .iter()
            .zip(&self.file.rules)
            .map(|(id, rule)| (Arc::clone(id), rule.mode))
            .collect()
    }

    fn evaluate(&self, facts: &Facts<'_>) -> Evaluation {
        let bound = Bound::new(facts, &self.lists);
        let scope = Scope::new(&self.env, &bound);
        let mut reasons = Vec::new();
        let mut evaluations = Vec::with_capacity(self.file.rules.len());
        for (i, (rule, id)) in self.file.rules.iter().zip(&self.ids).enumerate() {
            let (outcome, error) = match rule.when.holds(&scope) {
                Ok(true) => (RuleOutcome::Fired, None),
                Ok(false) => (RuleOutcome::Passed, None),
                Err(error) => (RuleOutcome::Failed, Some(error)),
            };
            if outcome == RuleOutcome::Fired && rule.mode == Mode::Active {
                reasons.push(Reason {
                    code: rule.reason.clone(),
                    rule: rule.id.clone(),
                    action: rule.action,
                    detail: self.detail(i, &scope),
                });
            }
            evaluations.push(RuleEvaluation {
                rule: Arc::clone(id),
                mode: rule.mode,
                outcome,
                error,
            });
        }
        Evaluation {
            decision: Decision::from_reasons(reasons, self.file.version.clone()),
            rules: evaluations,
        }
    }
}

/// The distinct `root.field` paths an expression reads, in order of appearance, for roots that
/// hold facts (not `lists`).
fn value_paths(source: &str) -> Vec<String> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for root in ["tx", "stats", "features", "model", "store"] {
        let prefix = format!("{root}.");
        for (at, _) in source.match_indices(&prefix) {
            let before = source[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                continue;
            }
            let rest = &source[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 {
                found.push((at, format!("{prefix}{}", &rest[..end])));
            }
        }
    }
    found.sort();
    let mut paths: Vec<String> = Vec::new();
    for (_, path) in found {
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}
