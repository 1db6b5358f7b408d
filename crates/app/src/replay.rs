//! `antifraud replay`: a backtest. Recorded transactions (the API's JSON, one per line, with
//! `is_fraud` as the label when known) go through the service's own parsing and validation, the
//! embedded store and the model, on event time, and one or two rule sets decide; the report
//! counts decisions, hits per rule and, on labelled input, precision, recall and F1.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use antifraud_domain::{
    Action, Clock, Evaluation, Facts, FraudModel, Mode, RuleOutcome, RuleSet, ScoreError,
    ScoringPolicy, ScoringService, TransactionInput, TransactionStore,
};
use antifraud_rules::CelRules;
use antifraud_store_memory::MemoryStore;
use anyhow::Context as _;
use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::ModelSettings;
use crate::model::ReloadableModel;

/// How many changed decisions the report lists (all are counted).
const CHANGES_LISTED: usize = 1_000;
/// How many invalid lines the report quotes (all are counted).
const INVALID_QUOTED: usize = 10;
/// Every this many transactions, the store drops what fell out of the retention, by the replay
/// clock: a month of traffic replays in the memory a day takes.
const PURGE_EVERY: u64 = 50_000;

/// `antifraud replay`'s arguments.
#[derive(Debug, clap::Parser)]
#[command(
    name = "antifraud replay",
    about = "Backtests rule files on recorded transactions (NDJSON: the API's JSON, one per line, \
             `is_fraud` as the label).",
    disable_version_flag = true
)]
pub struct ReplayArgs {
    /// The rule file to backtest.
    #[arg(long, value_name = "FILE")]
    pub rules: PathBuf,
    /// A second rule file: the report lists the transactions whose decision changes from
    /// `--rules` to this one.
    #[arg(long, value_name = "FILE")]
    pub against: Option<PathBuf>,
    /// The model: `shipped`, `builtin`, `onnx:PATH` or an Open Inference Protocol URL.
    #[arg(long, default_value = "shipped", value_parser = ModelSettings::parse)]
    pub model: ModelSettings,
    /// Also writes the report as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json_out: Option<PathBuf>,
    /// Hides the progress bar (it only shows on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
    /// The transactions, one JSON object per line, in the order they happened.
    #[arg(value_name = "INPUT.ndjson")]
    pub input: PathBuf,
}

/// Runs `antifraud replay ARGS…` (the arguments after `replay`): prints the report, or why not.
pub fn main(args: impl IntoIterator<Item = OsString>) -> std::process::ExitCode {
    use clap::Parser as _;
    let args = match ReplayArgs::try_parse_from(
        std::iter::once(OsString::from("antifraud replay")).chain(args),
    ) {
        Ok(args) => args,
        Err(error) => {
            // Help and usage errors, as clap formats them; exit code 0 for --help, 2 otherwise.
            let _ = error.print();
            return std::process::ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    match run(&args) {
        Ok(report) => {
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(report.table().as_bytes());
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("antifraud replay: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Replays `args.input` and writes `--json-out` when asked.
///
/// # Errors
/// A rule file or the model does not load, the input cannot be read, the JSON cannot be written.
pub fn run(args: &ReplayArgs) -> anyhow::Result<Report> {
    let load = |path: &PathBuf, flag: &str| {
        crate::rules::load(path).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))
    };
    let first = load(&args.rules, "rules")?;
    let second = args
        .against
        .as_ref()
        .map(|p| load(p, "against"))
        .transpose()?;
    let policy = ScoringPolicy::default();
    // Before the remote model's HTTP client exists: see the function's docs.
    antifraud_model::install_crypto_provider();
    let model: Arc<dyn FraudModel> =
        Arc::new(ReloadableModel::load(&args.model, policy.model_timeout())?);
    let report = Replay::new(first, second, model, policy).run(args)?;
    if let Some(path) = &args.json_out {
        let json = serde_json::to_string_pretty(&report).context("rendering the report")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("--json-out: cannot write {}", path.display()))?;
    }
    Ok(report)
}

/// The clock of a replay: the latest event time seen, so that each transaction is received as
/// it happened and a late one is as late as it was.
#[derive(Debug)]
struct ReplayClock {
    now: Mutex<OffsetDateTime>,
}

impl ReplayClock {
    /// Moves the clock to `at` unless it is already later.
    fn reach(&self, at: OffsetDateTime) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        if at > *now {
            *now = at;
        }
    }
}

#[async_trait]
impl Clock for ReplayClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The model's budget runs in real time: a remote model is as slow in a replay as live.
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// The rule set the use case decides with, and the one it is compared with, evaluated on the
/// same facts: the second's evaluation is kept for the replay to read.
struct Compared {
    first: CelRules,
    second: Option<CelRules>,
    second_evaluation: Mutex<Option<Evaluation>>,
}

impl RuleSet for Compared {
    fn version(&self) -> String {
        self.first.version()
    }

    fn rules(&self) -> Vec<(Arc<str>, Mode)> {
        self.first.rules()
    }

    fn evaluate(&self, facts: &Facts<'_>) -> Evaluation {
        if let Some(second) = &self.second {
            *self
                .second_evaluation
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(second.evaluate(facts));
        }
        self.first.evaluate(facts)
    }
}

/// A replay in progress.
struct Replay {
    scoring: ScoringService<Arc<dyn TransactionStore>, Arc<dyn FraudModel>, Arc<ReplayClock>>,
    store: Arc<MemoryStore>,
    clock: Arc<ReplayClock>,
    rules: Arc<Compared>,
    retention: time::Duration,
}

impl Replay {
    fn new(
        first: CelRules,
        second: Option<CelRules>,
        model: Arc<dyn FraudModel>,
        policy: ScoringPolicy,
    ) -> Replay {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ReplayClock {
            now: Mutex::new(OffsetDateTime::UNIX_EPOCH),
        });
        let rules = Arc::new(Compared {
            first,
            second,
            second_evaluation: Mutex::new(None),
        });
        let scoring = ScoringService::new(
            Arc::clone(&store) as Arc<dyn TransactionStore>,
            model,
            Arc::clone(&clock),
            policy,
        )
        .with_rules(Arc::clone(&rules) as Arc<dyn RuleSet>);
        Replay {
            scoring,
            store,
            clock,
            rules,
            retention: time::Duration::try_from(policy.retention()).unwrap_or(time::Duration::MAX),
        }
    }

    fn run(self, args: &ReplayArgs) -> anyhow::Result<Report> {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot read {}", args.input.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let progress = if args.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            // Drawn on stderr, and only when it is a terminal.
            indicatif::ProgressBar::new(size).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            )
        };
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut tally = Tally::new(&self.rules);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .context("cannot start a runtime")?;
        let started = Instant::now();
        let mut line = Vec::new();
        let mut number = 0u64;
        let mut read = 0u64;
        runtime.block_on(async {
            loop {
                line.clear();
                let bytes = reader
                    .read_until(b'\n', &mut line)
                    .with_context(|| format!("cannot read {}", args.input.display()))?;
                if bytes == 0 {
                    break;
                }
                number += 1;
                read += bytes as u64;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                self.one(number, &line, &mut tally).await;
                if tally.counts.lines.is_multiple_of(4_096) {
                    progress.set_position(read);
                    progress.set_message(format!("{} transactions", tally.counts.lines));
                }
                if tally.counts.lines.is_multiple_of(PURGE_EVERY) {
                    self.store.purge_expired(self.clock.now() - self.retention);
                }
            }
            anyhow::Ok(())
        })?;
        progress.finish_and_clear();
        Ok(tally.report(started.elapsed()))
    }

    /// Scores one line and counts what happened.
    async fn one(&self, number: u64, line: &[u8], tally: &mut Tally) {
        tally.counts.lines += 1;
        let input = match crate::routes::parse_body(line) {
            Ok(request) => TransactionInput::from(request),
            Err(error) => return tally.invalid(number, error.to_string()),
        };
        let label = input.is_fraud;
        if let Some(at) = input.event_time() {
            self.clock.reach(at);
        }
        match self.scoring.score(input, Instant::now()).await {
            Ok(scored) if scored.replayed => tally.counts.replayed += 1,
            Ok(scored) => {
                let second = self
                    .rules
                    .second_evaluation
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                tally.scored(&scored, second, label);
            }
            Err(ScoreError::Conflict) => tally.counts.conflicts += 1,
            Err(error) => tally.invalid(number, error.to_string()),
        }
    }
}

/// True and false positives and negatives of one predictor (a rule, or a rule set's decision)
/// against the labels.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Confusion {
    /// Flagged and fraud.
    pub true_positives: u64,
    /// Flagged, not fraud.
    pub false_positives: u64,
    /// Not flagged, fraud.
    pub false_negatives: u64,
    /// Not flagged, not fraud.
    pub true_negatives: u64,
}

impl Confusion {
    fn add(&mut self, flagged: bool, fraud: bool) {
        match (flagged, fraud) {
            (true, true) => self.true_positives += 1,
            (true, false) => self.false_positives += 1,
            (false, true) => self.false_negatives += 1,
            (false, false) => self.true_negatives += 1,
        }
    }

    /// Of the flagged, the share that is fraud; `None` when nothing was flagged.
    pub fn precision(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// Of the fraud, the share flagged; `None` without fraud.
    pub fn recall(&self) -> Option<f64> {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    /// The harmonic mean of precision and recall; `None` when either is.
    pub fn f1(&self) -> Option<f64> {
        let (p, r) = (self.precision()?, self.recall()?);
        Some(if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        })
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// One rule's results.
#[derive(Debug, Clone, Serialize)]
pub struct RuleReport {
    /// Its id.
    pub rule: String,
    /// `active` or `shadow`.
    pub mode: &'static str,
    /// New transactions on which it fired.
    pub fired: u64,
    /// New transactions on which it could not be evaluated.
    pub failed: u64,
    /// Against the labels (labelled transactions only): fired counts as flagged.
    pub confusion: Confusion,
    /// `confusion`'s precision, recall and F1.
    pub precision: Option<f64>,
    /// See `precision`.
    pub recall: Option<f64>,
    /// See `precision`.
    pub f1: Option<f64>,
}

/// A rule set's results.
#[derive(Debug, Clone, Serialize)]
pub struct SetReport {
    /// The rule file's version.
    pub rules_version: String,
    /// New transactions by decision: `approve`, `review`, `decline`.
    pub decisions: BTreeMap<&'static str, u64>,
    /// Each rule, in the file's order.
    pub rules: Vec<RuleReport>,
    /// The whole set against the labels, flagging what it declines.
    pub set_decline: Confusion,
    /// The whole set against the labels, flagging what it reviews or declines.
    pub set_review_or_decline: Confusion,
}

/// A transaction whose decision changes between the two rule sets.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The customer.
    pub customer_id: String,
    /// The transaction.
    pub transaction_id: String,
    /// The decision of `--rules`.
    pub from: Action,
    /// The decision of `--against`.
    pub to: Action,
    /// The label, when known.
    pub is_fraud: Option<bool>,
}

/// What `--against` found.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The second set's results.
    pub set: SetReport,
    /// New transactions whose decision differs.
    pub changed: u64,
    /// Changes by `from->to`.
    pub transitions: BTreeMap<String, u64>,
    /// The first changes, in input order (at most 1,000).
    pub changes: Vec<Change>,
}

/// An invalid line.
#[derive(Debug, Clone, Serialize)]
pub struct Invalid {
    /// 1-based line number.
    pub line: u64,
    /// Why it was refused, as the API would say.
    pub error: String,
}

/// The report of a replay.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What the lines were and what became of them.
    #[serde(flatten)]
    pub counts: Counts,
    /// Wall-clock time of the replay.
    pub seconds: f64,
    /// Lines per second.
    pub per_second: f64,
    /// `--rules`' results.
    pub set: SetReport,
    /// `--against`'s, and what changes.
    pub against: Option<Comparison>,
}

/// What a replay's lines were and what became of them, counted as it goes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Non-empty lines read.
    pub lines: u64,
    /// New transactions scored and decided.
    pub scored: u64,
    /// Of them, those with a label.
    pub labelled: u64,
    /// Of them, labelled fraud.
    pub labelled_fraud: u64,
    /// Repeats of a transaction already replayed with the same body (answered as first).
    pub replayed: u64,
    /// Reuses of a transaction's ids with another body (409s).
    pub conflicts: u64,
    /// Lines the API would refuse (400 or 422): too old for the replay clock included.
    pub invalid: u64,
    /// The first invalid lines.
    pub invalid_lines: Vec<Invalid>,
    /// The model's name and version.
    pub model: String,
    /// Model calls that timed out or failed (the default score decided).
    pub model_fallbacks: u64,
}

/// Counts as a replay goes.
struct Tally {
    counts: Counts,
    first: SetTally,
    second: Option<SetTally>,
    changed: u64,
    transitions: BTreeMap<String, u64>,
    changes: Vec<Change>,
}

/// Counts for one rule set.
struct SetTally {
    version: String,
    decisions: [u64; 3],
    /// Per rule, in the file's order: id, mode, fired, failed, confusion.
    rules: Vec<(Arc<str>, Mode, u64, u64, Confusion)>,
    set_decline: Confusion,
    set_review_or_decline: Confusion,
}

impl SetTally {
    fn new(rules: &CelRules) -> SetTally {
        SetTally {
            version: rules.version(),
            decisions: [0; 3],
            rules: rules
                .rules()
                .into_iter()
                .map(|(id, mode)| (id, mode, 0, 0, Confusion::default()))
                .collect(),
            set_decline: Confusion::default(),
            set_review_or_decline: Confusion::default(),
        }
    }

    fn add(
        &mut self,
        action: Action,
        evaluations: &[antifraud_domain::RuleEvaluation],
        label: Option<bool>,
    ) {
        self.decisions[action as usize] += 1;
        // The evaluations come in the file's order, one per rule.
        for (tally, evaluation) in self.rules.iter_mut().zip(evaluations) {
            let fired = evaluation.outcome == RuleOutcome::Fired;
            tally.2 += u64::from(fired);
            tally.3 += u64::from(evaluation.outcome == RuleOutcome::Failed);
            if let Some(fraud) = label {
                tally.4.add(fired, fraud);
            }
        }
        if let Some(fraud) = label {
            self.set_decline.add(action == Action::Decline, fraud);
            self.set_review_or_decline
                .add(action != Action::Approve, fraud);
        }
    }

    fn report(self) -> SetReport {
        SetReport {
            rules_version: self.version,
            decisions: Action::ALL
                .into_iter()
                .map(|a| (a.as_str(), self.decisions[a as usize]))
                .collect(),
            rules: self
                .rules
                .into_iter()
                .map(|(rule, mode, fired, failed, confusion)| RuleReport {
                    rule: rule.to_string(),
                    mode: mode.as_str(),
                    fired,
                    failed,
                    precision: confusion.precision(),
                    recall: confusion.recall(),
                    f1: confusion.f1(),
                    confusion,
                })
                .collect(),
            set_decline: self.set_decline,
            set_review_or_decline: self.set_review_or_decline,
        }
    }
}

impl Tally {
    fn new(rules: &Compared) -> Tally {
        Tally {
            counts: Counts::default(),
            first: SetTally::new(&rules.first),
            second: rules.second.as_ref().map(SetTally::new),
            changed: 0,
            transitions: BTreeMap::new(),
            changes: Vec::new(),
        }
    }

    fn invalid(&mut self, line: u64, error: String) {
        let counts = &mut self.counts;
        counts.invalid += 1;
        if counts.invalid_lines.len() < INVALID_QUOTED {
            counts.invalid_lines.push(Invalid { line, error });
        }
    }

    fn scored(
        &mut self,
        scored: &antifraud_domain::Scored,
        second: Option<Evaluation>,
        label: Option<bool>,
    ) {
        let (a, counts) = (&scored.assessment, &mut self.counts);
        counts.scored += 1;
        if let Some(fraud) = label {
            counts.labelled += 1;
            counts.labelled_fraud += u64::from(fraud);
        }
        if counts.model.is_empty() {
            counts.model = format!("{} {}", a.model.name, a.model.version);
        }
        counts.model_fallbacks += u64::from(a.model_status != antifraud_domain::ModelStatus::Ok);
        let from = a.decision.as_ref().map_or(Action::Approve, |d| d.action);
        self.first.add(from, &scored.rules, label);
        if let (Some(tally), Some(second)) = (self.second.as_mut(), second) {
            let to = second.decision.action;
            tally.add(to, &second.rules, label);
            if to != from {
                self.changed += 1;
                *self.transitions.entry(format!("{from}->{to}")).or_default() += 1;
                if self.changes.len() < CHANGES_LISTED {
                    self.changes.push(Change {
                        customer_id: a.customer_id.as_str().to_owned(),
                        transaction_id: a.transaction_id.as_str().to_owned(),
                        from,
                        to,
                        is_fraud: label,
                    });
                }
            }
        }
    }

    fn report(self, elapsed: Duration) -> Report {
        let seconds = elapsed.as_secs_f64();
        Report {
            per_second: if seconds > 0.0 {
                self.counts.lines as f64 / seconds
            } else {
                0.0
            },
            seconds,
            counts: self.counts,
            set: self.first.report(),
            against: self.second.map(|second| Comparison {
                set: second.report(),
                changed: self.changed,
                transitions: self.transitions,
                changes: self.changes,
            }),
        }
    }
}

impl Report {
    /// The report as a person reads it.
    pub fn table(&self) -> String {
        let (c, mut out) = (&self.counts, String::new());
        let _ = writeln!(
            out,
            "{} lines in {:.2} s ({:.0} lines/s), model {}",
            c.lines, self.seconds, self.per_second, c.model
        );
        let _ = writeln!(
            out,
            "  {} scored ({} labelled, {} fraud), {} repeated (replayed), {} conflicting, {} invalid, {} model fallbacks",
            c.scored,
            c.labelled,
            c.labelled_fraud,
            c.replayed,
            c.conflicts,
            c.invalid,
            c.model_fallbacks
        );
        for invalid in &c.invalid_lines {
            let _ = writeln!(out, "  line {}: {}", invalid.line, invalid.error);
        }
        set_table(&mut out, "--rules", &self.set, c.scored);
        if let Some(comparison) = &self.against {
            set_table(&mut out, "--against", &comparison.set, c.scored);
            let _ = writeln!(
                out,
                "\ndecisions that change from {} to {}: {}",
                self.set.rules_version, comparison.set.rules_version, comparison.changed
            );
            for (transition, count) in &comparison.transitions {
                let _ = writeln!(out, "  {transition}: {count}");
            }
            for change in comparison.changes.iter().take(20) {
                let label = match change.is_fraud {
                    Some(true) => " (fraud)",
                    Some(false) => " (legit)",
                    None => "",
                };
                let _ = writeln!(
                    out,
                    "  {} {}: {} -> {}{label}",
                    change.customer_id, change.transaction_id, change.from, change.to
                );
            }
            if comparison.changed > 20 {
                let _ = writeln!(out, "  … (--json-out lists the first {CHANGES_LISTED})");
            }
        }
        out
    }
}

fn set_table(out: &mut String, flag: &str, set: &SetReport, scored: u64) {
    let share =
        |n: u64| ratio(n, scored).map_or_else(String::new, |r| format!(" ({:.2} %)", r * 100.0));
    let _ = writeln!(out, "\n{flag}: rules {}", set.rules_version);
    let decisions: Vec<String> = Action::ALL
        .into_iter()
        .map(|action| {
            let n = set.decisions.get(action.as_str()).copied().unwrap_or(0);
            format!("{action} {n}{}", share(n))
        })
        .collect();
    let _ = writeln!(out, "  decisions: {}", decisions.join(", "));
    let _ = writeln!(
        out,
        "  {:<32} {:<6} {:>9} {:>7} {:>9} {:>7} {:>7}",
        "rule", "mode", "fired", "failed", "precision", "recall", "F1"
    );
    let number = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"));
    for rule in &set.rules {
        let _ = writeln!(
            out,
            "  {:<32} {:<6} {:>9} {:>7} {:>9} {:>7} {:>7}",
            rule.rule,
            rule.mode,
            rule.fired,
            rule.failed,
            number(rule.precision),
            number(rule.recall),
            number(rule.f1)
        );
    }
    let declined = set.decisions.get("decline").copied().unwrap_or(0);
    let reviewed = set.decisions.get("review").copied().unwrap_or(0);
    for (name, flagged, confusion) in [
        ("(set: decline)", declined, &set.set_decline),
        (
            "(set: review or decline)",
            declined + reviewed,
            &set.set_review_or_decline,
        ),
    ] {
        let _ = writeln!(
            out,
            "  {:<32} {:<6} {:>9} {:>7} {:>9} {:>7} {:>7}",
            name,
            "",
            flagged,
            "",
            number(confusion.precision()),
            number(confusion.recall()),
            number(confusion.f1())
        );
    }
}
