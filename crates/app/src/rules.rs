//! The rule set the settings name: the file's, loaded at start-up and swapped whole on SIGHUP
//! (`reload.rs`), or the built-in threshold rules; and `antifraud rules check` for the CI
//! pipelines of rule authors.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use antifraud_domain::{
    Evaluation, Facts, Mode, RuleEvaluation, RuleOutcome, RuleSet, ThresholdRules,
};
use antifraud_rules::CelRules;

/// At most one warning per this long for rules that fail to evaluate: a rule that fails on
/// every request would otherwise write a line per request. Every failure is counted anyway
/// (`antifraud_rule_evaluations_total{outcome="failed"}`).
const FAILURE_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The rule set in force, behind a lock held only to clone an `Arc`. Each evaluation runs on
/// one snapshot, so a request sees one rule set whole, and its answer names it
/// (`rules_version`); a reload swaps the set between requests.
pub(crate) struct ReloadableRules {
    current: RwLock<Arc<dyn RuleSet>>,
    /// The rule file, when there is one; without, the built-in set has nothing to reload.
    path: Option<PathBuf>,
    failures: FailureWarnings,
}

impl ReloadableRules {
    /// The rules of the file at `path`, checked whole, or the built-in threshold rules.
    ///
    /// # Errors
    /// One line naming the setting, the file and the first problem (and its rule).
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<ReloadableRules> {
        let current: Arc<dyn RuleSet> = match path {
            None => Arc::new(ThresholdRules),
            Some(path) => {
                let rules =
                    load(path).map_err(|e| anyhow::anyhow!("--rules (ANTIFRAUD_RULES): {e}"))?;
                tracing::info!(
                    path = %path.display(),
                    version = rules.file().version,
                    rules = rules.file().rules.len(),
                    "rules loaded"
                );
                Arc::new(rules)
            }
        };
        Ok(ReloadableRules {
            current: RwLock::new(current),
            path: path.map(Path::to_path_buf),
            failures: FailureWarnings::new(),
        })
    }

    /// The set in force.
    pub(crate) fn current(&self) -> Arc<dyn RuleSet> {
        // A poisoned lock means a panic while swapping an `Arc`, which cannot leave it torn.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads and checks the rule file again, without deciding with it yet: `None` without a
    /// file (nothing to reload).
    pub(crate) fn read_again(&self) -> Option<Result<CelRules, String>> {
        self.path.as_deref().map(load)
    }

    /// Decides with `rules` from the next request on.
    pub(crate) fn install(&self, rules: Arc<dyn RuleSet>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = rules;
    }
}

impl RuleSet for ReloadableRules {
    fn version(&self) -> String {
        self.current().version()
    }

    fn rules(&self) -> Vec<(Arc<str>, Mode)> {
        self.current().rules()
    }

    fn evaluate(&self, facts: &Facts<'_>) -> Evaluation {
        let evaluation = self.current().evaluate(facts);
        self.failures.note(&evaluation.rules);
        evaluation
    }
}

/// Warns of failed rule evaluations at most once per [`FAILURE_WARNING_INTERVAL`], saying how
/// many it kept quiet since the last warning. Lock-free: it runs on every request.
struct FailureWarnings {
    origin: Instant,
    /// When the next warning may be written, in milliseconds since `origin`.
    next_at_ms: AtomicU64,
    /// Failures not written since the last warning.
    quiet: AtomicU64,
}

impl FailureWarnings {
    fn new() -> FailureWarnings {
        FailureWarnings {
            origin: Instant::now(),
            next_at_ms: AtomicU64::new(0),
            quiet: AtomicU64::new(0),
        }
    }

    fn note(&self, evaluations: &[RuleEvaluation]) {
        for failed in evaluations
            .iter()
            .filter(|e| e.outcome == RuleOutcome::Failed)
        {
            let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
            let next = self.next_at_ms.load(Ordering::Relaxed);
            let interval = u64::try_from(FAILURE_WARNING_INTERVAL.as_millis()).unwrap_or(u64::MAX);
            // One thread wins the slot; the others count themselves as kept quiet.
            let mine = now >= next
                && self
                    .next_at_ms
                    .compare_exchange(
                        next,
                        now.saturating_add(interval),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok();
            if !mine {
                self.quiet.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            tracing::warn!(
                rule = %failed.rule,
                mode = failed.mode.as_str(),
                error = failed.error.as_deref().unwrap_or("unknown"),
                failures_not_logged = self.quiet.swap(0, Ordering::Relaxed),
                "a rule failed to evaluate and was skipped; at most one such line per {} s, \
                 every failure is counted in antifraud_rule_evaluations_total",
                FAILURE_WARNING_INTERVAL.as_secs()
            );
        }
    }
}

/// Reads and checks the rule file at `path`.
///
/// # Errors
/// One line: the file cannot be read, or the first problem in it, naming the rule.
pub fn load(path: &Path) -> Result<CelRules, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    CelRules::load(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `antifraud rules check FILE`: what the file defines, or why it is refused.
///
/// # Errors
/// As [`load`].
pub fn check(path: &Path) -> Result<String, String> {
    let rules = load(path)?;
    let file = rules.file();
    let mut out = String::new();
    let _ = writeln!(out, "{}: version {}", path.display(), file.version);
    let values: usize = file.lists.values().map(|l| l.len()).sum();
    let _ = writeln!(out, "lists: {} ({values} values)", file.lists.len());
    for (name, list) in &file.lists {
        let _ = writeln!(out, "  {name}: {} values", list.len());
    }
    let shadow = file.rules.iter().filter(|r| r.mode == Mode::Shadow).count();
    let _ = writeln!(
        out,
        "rules: {} ({} active, {shadow} shadow)",
        file.rules.len(),
        file.rules.len() - shadow
    );
    for rule in &file.rules {
        let _ = writeln!(
            out,
            "  {} [{}, {}] reason {}: {}",
            rule.id,
            rule.mode.as_str(),
            rule.action,
            rule.reason,
            rule.when.source()
        );
    }
    Ok(out)
}
