//! The one module that speaks CEL (the `cel` crate, pinned exactly): compiling a rule's `when`,
//! checking what it may refer to, and evaluating it against one transaction's facts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use antifraud_domain::{FEATURE_NAMES, Facts, Feature, Window};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Program, Value};

/// The variables a rule reads.
pub const VARIABLES: [&str; 6] = ["tx", "stats", "features", "model", "store", "lists"];

/// Functions and macros a rule may call besides operators: CEL's standard ones that need no
/// optional feature of the crate (no regular expressions, no time zones).
const FUNCTIONS: [&str; 16] = [
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "has",
    "exists",
    "all",
    "exists_one",
    "map",
    "filter",
    "type",
];

/// A compiled condition.
pub struct Expression {
    source: String,
    program: Program,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

/// Why an expression was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExpressionError {
    /// It does not parse.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based.
        line: usize,
        /// 1-based.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// It reads a variable rules do not have.
    #[error("unknown variable `{0}` (rules read tx, stats, features, model, store and lists)")]
    UnknownVariable(String),
    /// It calls a function rules do not have.
    #[error("unknown function `{0}`")]
    UnknownFunction(String),
    /// It names a list the file does not define.
    #[error("unknown list `{0}`")]
    UnknownList(String),
    /// On a synthetic transaction it gives something else than a boolean.
    #[error("it gives {0}, not a boolean, on a synthetic transaction")]
    NotBoolean(String),
    /// On a synthetic transaction it fails.
    #[error("it fails on a synthetic transaction: {0}")]
    Fails(String),
}

impl Expression {
    /// Compiles `source` and checks the variables, functions and lists it names.
    ///
    /// # Errors
    /// See [`ExpressionError`].
    pub fn compile(
        source: &str,
        lists: &BTreeMap<String, HashSet<String>>,
    ) -> Result<Expression, ExpressionError> {
        let program = Program::compile(source).map_err(|errors| {
            let first = errors.errors.first();
            ExpressionError::Syntax {
                line: first.map_or(1, |e| e.pos.0.max(1) as usize),
                column: first.map_or(1, |e| e.pos.1.max(0) as usize + 1),
                message: first.map_or_else(|| errors.to_string(), |e| e.msg.clone()),
            }
        })?;
        {
            let references = program.references();
            let mut variables = references.variables();
            variables.sort_unstable();
            if let Some(unknown) = variables.iter().find(|v| !VARIABLES.contains(v)) {
                return Err(ExpressionError::UnknownVariable((*unknown).to_owned()));
            }
            let mut functions = references.functions();
            functions.sort_unstable();
            if let Some(unknown) = functions
                .iter()
                .find(|f| !is_operator(f) && !FUNCTIONS.contains(f))
            {
                return Err(ExpressionError::UnknownFunction((*unknown).to_owned()));
            }
        }
        for name in list_names(source) {
            if !lists.contains_key(name) {
                return Err(ExpressionError::UnknownList(name.to_owned()));
            }
        }
        Ok(Expression {
            source: source.to_owned(),
            program,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against bound facts: `Ok(true)` when the condition holds.
    ///
    /// # Errors
    /// What went wrong, for the log: a value of another type than the expression expects, a
    /// result that is not a boolean.
    pub fn holds(&self, scope: &Scope<'_>) -> Result<bool, String> {
        match self.program.execute(&scope.context) {
            Ok(Value::Bool(holds)) => Ok(holds),
            Ok(other) => Err(format!("gave {other:?}, not a boolean")),
            Err(error) => Err(error.to_string()),
        }
    }
}

impl Expression {
    /// The value the expression gives, as a person reads it: for a reason's detail.
    pub fn value(&self, scope: &Scope<'_>) -> String {
        match self.program.execute(&scope.context) {
            Ok(Value::Float(x)) => format!("{x}"),
            Ok(Value::Int(x)) => x.to_string(),
            Ok(Value::UInt(x)) => x.to_string(),
            Ok(Value::Bool(x)) => x.to_string(),
            Ok(Value::String(s)) => format!("{s:?}"),
            Ok(Value::Null) => "null".to_owned(),
            Ok(other) => format!("{other:?}"),
            Err(error) => format!("<{error}>"),
        }
    }
}

/// CEL writes operators as `_+_`, `!_`, `@in`, `_?_:_`: none is a name a rule author types.
fn is_operator(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('!') || name.starts_with('@') || name.ends_with('_')
}

/// The names after `lists.` in an expression: checked against the file's lists at load, since
/// a missing map key only shows when a request reaches it.
fn list_names(source: &str) -> impl Iterator<Item = &str> {
    source.match_indices("lists.").filter_map(move |(at, _)| {
        let before = source[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return None;
        }
        let rest = &source[at + "lists.".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    })
}

/// The fields of the `tx` variable, in the order a whole `tx` map lists them.
const TX_FIELDS: [&str; 21] = [
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
    "hour",
    "merchant_risk_score",
    "card_risk_score",
    "customer_risk_score",
    "is_velocity_alert",
    "is_location_alert",
    "is_device_alert",
    "is_high_value",
    "transaction_category",
    "customer_segments",
];
/// The fields of the `model` variable.
const MODEL_FIELDS: [&str; 6] = [
    "score",
    "is_fraud",
    "threshold",
    "name",
    "version",
    "status",
];
/// The fields of the `store` variable.
const STORE_FIELDS: [&str; 1] = ["degraded"];
/// The statistics per window of the `stats` variable: `count_3h`, `avg_amount_3h`, `sum_3h`…
const STATS_PER_WINDOW: [&str; 3] = ["count", "avg_amount", "sum"];

/// One transaction's facts as CEL variables, read on demand. CEL looks a qualified name such as
/// `tx.amount` up whole before it tries `tx` and indexes it, so a rule's reads cost one lookup
/// each and a request builds no map; only a bare root (`has(tx.merchant_risk_score)`, `tx` as
/// a value) gets its whole map, built when asked. Lists are built once per file and lent out.
pub struct Bound<'a> {
    facts: Facts<'a>,
    lists: &'a Lists,
}

/// A scope to evaluate expressions in: the standard environment and one transaction's facts.
pub struct Scope<'v> {
    context: Context<'v, 'v>,
}

/// The lists of a rule file as CEL values, built once per file: each a map whose keys are its
/// values, so that `x in lists.name` is a lookup.
pub struct Lists {
    each: HashMap<String, Box<dyn Val>>,
    /// All of them as one map, for a bare `lists`.
    all: Box<dyn Val>,
}

impl Lists {
    /// The file's lists.
    pub fn new(lists: &BTreeMap<String, HashSet<String>>) -> Lists {
        let as_map = |values: &HashSet<String>| -> Value {
            let members: HashMap<String, Value> = values
                .iter()
                .map(|v| (v.clone(), Value::Bool(true)))
                .collect();
            Value::from(members)
        };
        let each = lists
            .iter()
            .map(|(name, values)| (name.clone(), boxed(as_map(values))))
            .collect();
        let all: HashMap<String, Value> = lists
            .iter()
            .map(|(name, values)| (name.clone(), as_map(values)))
            .collect();
        Lists {
            each,
            all: boxed(Value::from(all)),
        }
    }
}

/// A value as the evaluator holds it. Every value built here converts: only durations and
/// timestamps, which rules do not have, can fail to.
fn boxed(value: Value) -> Box<dyn Val> {
    Box::<dyn Val>::try_from(value).unwrap_or_else(|_| Box::new(cel::common::types::CelNull))
}

impl<'a> Bound<'a> {
    /// Binds `facts` and the file's `lists`.
    pub fn new(facts: &Facts<'a>, lists: &'a Lists) -> Bound<'a> {
        Bound {
            facts: *facts,
            lists,
        }
    }

    /// `root.field`, or `None` when the root has no such field (CEL then reads the root whole
    /// and reports the missing key as rules always saw it).
    fn field(&self, root: &str, field: &str) -> Option<Value> {
        match root {
            "tx" => self.tx_field(field),
            "stats" => {
                let (statistic, label) = field.rsplit_once('_')?;
                let window = Window::ALL.into_iter().find(|w| w.label() == label)?;
                let stat = self.facts.stats.get(window);
                match statistic {
                    "count" => Some(Value::Int(i64::try_from(stat.count).unwrap_or(i64::MAX))),
                    "avg_amount" => Some(Value::Float(stat.average())),
                    "sum" => Some(Value::Float(stat.sum_units())),
                    _ => None,
                }
            }
            "features" => FEATURE_NAMES
                .iter()
                .position(|name| *name == field)
                .map(|i| Value::Float(self.facts.features.get(Feature::ALL[i]))),
            "model" => {
                let f = &self.facts;
                Some(match field {
                    "score" => Value::Float(f.score),
                    "is_fraud" => Value::Bool(f.is_fraud),
                    "threshold" => Value::Float(f.threshold),
                    "name" => text(&f.model.name),
                    "version" => text(&f.model.version),
                    "status" => text(f.model_status.as_str()),
                    _ => return None,
                })
            }
            "store" => (field == "degraded").then_some(Value::Bool(self.facts.degraded)),
            _ => None,
        }
    }

    fn tx_field(&self, field: &str) -> Option<Value> {
        let tx = self.facts.transaction;
        let optional = |x: Option<f64>| x.map_or(Value::Null, Value::Float);
        Some(match field {
            "customer_id" => text(tx.customer_id().as_str()),
            "transaction_id" => text(tx.transaction_id().as_str()),
            "amount" => Value::Float(tx.amount()),
            "currency" => text(tx.currency().as_str()),
            "type" => Value::Int(i64::from(tx.kind())),
            "merchant_id" => text(tx.merchant_id()),
            "card_bin" => text(tx.card_bin().as_str()),
            "ip_address" => text(&tx.ip_address().to_string()),
            "device_id" => text(tx.device_id()),
            "location" => text(tx.location()),
            "channel" => text(tx.channel()),
            "hour" => Value::Int(i64::from(tx.timestamp().hour())),
            "merchant_risk_score" => optional(tx.merchant_risk_score()),
            "card_risk_score" => optional(tx.card_risk_score()),
            "customer_risk_score" => optional(tx.customer_risk_score()),
            "is_velocity_alert" => Value::Bool(tx.is_velocity_alert()),
            "is_location_alert" => Value::Bool(tx.is_location_alert()),
            "is_device_alert" => Value::Bool(tx.is_device_alert()),
            "is_high_value" => Value::Bool(tx.is_high_value()),
            "transaction_category" => tx.transaction_category().map_or(Value::Null, text),
            "customer_segments" => Value::List(Arc::new(
                tx.customer_segments().iter().map(|s| text(s)).collect(),
            )),
            _ => return None,
        })
    }

    /// A root variable whole, as a map of its fields.
    fn whole(&self, root: &str) -> Option<Value> {
        let fields: Vec<String> = match root {
            "tx" => TX_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            "model" => MODEL_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            "store" => STORE_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            "features" => FEATURE_NAMES.iter().map(|f| (*f).to_owned()).collect(),
            "stats" => Window::ALL
                .into_iter()
                .flat_map(|w| STATS_PER_WINDOW.map(|s| format!("{s}_{}", w.label())))
                .collect(),
            _ => return None,
        };
        let map: HashMap<String, Value> = fields
            .into_iter()
            .filter_map(|f| self.field(root, &f).map(|v| (f, v)))
            .collect();
        Some(Value::from(map))
    }
}

fn text(s: &str) -> Value {
    Value::String(Arc::new(s.to_owned()))
}

impl VariableResolver for Bound<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        match name.split_once('.') {
            Some(("lists", list)) => self.lists.each.get(list).map(|v| CowVal::Borrowed(&**v)),
            None if name == "lists" => Some(CowVal::Borrowed(&*self.lists.all)),
            Some((root, field)) => self.field(root, field).map(|v| CowVal::Owned(boxed(v))),
            None => self.whole(name).map(|v| CowVal::Owned(boxed(v))),
        }
    }
}

impl<'v> Scope<'v> {
    /// A scope over `bound`'s facts.
    pub fn new(env: &Arc<cel::Env>, bound: &'v Bound<'_>) -> Scope<'v> {
        let mut context = Context::with_env(Arc::clone(env));
        context.set_variable_resolver(bound);
        Scope { context }
    }
}

/// CEL's standard environment, built once per rule file and shared by every request.
pub(crate) fn environment() -> Arc<cel::Env> {
    Arc::new(cel::Env::stdlib())
}

#[cfg(test)]
mod tests {
    use super::*;
    use antifraud_domain::{Features, ModelIdentity, ModelStatus, TransactionInput, WindowStats};
    use time::macros::datetime;

    /// Evaluates `source` on one transaction with every optional value present but one.
    fn eval(source: &str) -> Value {
        let tx = TransactionInput {
            merchant_risk_score: Some(0.9),
            card_risk_score: None,
            customer_risk_score: Some(0.1),
            is_device_alert: Some(true),
            customer_segments: Some(vec!["vip".into(), "retail".into()]),
            transaction_category: Some("crypto".into()),
            ..TransactionInput::example()
        }
        .validate(datetime!(2026-11-25 10:01 UTC))
        .expect("valid");
        let stats = WindowStats::aggregate(
            tx.timestamp(),
            [
                (
                    tx.timestamp() - time::Duration::hours(5),
                    antifraud_domain::Mills(40_000),
                ),
                (tx.timestamp(), tx.mills()),
            ],
        );
        let features = Features::new(&tx, &stats);
        let model = ModelIdentity {
            name: "m".into(),
            version: "7".into(),
        };
        let facts = Facts {
            transaction: &tx,
            stats: &stats,
            features: &features,
            score: 0.75,
            is_fraud: true,
            threshold: 0.7,
            model: &model,
            model_status: ModelStatus::Timeout,
            degraded: true,
        };
        let lists = Lists::new(&BTreeMap::from([(
            "bins".to_owned(),
            HashSet::from(["411111".to_owned()]),
        )]));
        let bound = Bound::new(&facts, &lists);
        let scope = Scope::new(&environment(), &bound);
        let program = Program::compile(source).expect("compiles");
        program.execute(&scope.context).expect("evaluates")
    }

    /// Every field read the fast way (`tx.amount`, looked up by name) equals the same field of
    /// the root built whole (`tx['amount']`), and the whole roots have every field.
    #[test]
    fn a_field_read_by_name_equals_the_field_of_its_whole_root() {
        let stats: Vec<String> = Window::ALL
            .into_iter()
            .flat_map(|w| STATS_PER_WINDOW.map(|s| format!("{s}_{}", w.label())))
            .collect();
        let roots: [(&str, Vec<&str>); 5] = [
            ("tx", TX_FIELDS.to_vec()),
            ("stats", stats.iter().map(String::as_str).collect()),
            ("features", FEATURE_NAMES.to_vec()),
            ("model", MODEL_FIELDS.to_vec()),
            ("store", STORE_FIELDS.to_vec()),
        ];
        for (root, fields) in roots {
            // The stats and features rows abbreviate; the others list every field.
            if let Some(documented) =
                documented_fields(root).filter(|_| !matches!(root, "stats" | "features"))
            {
                let mut known = fields.clone();
                known.sort_unstable();
                assert_eq!(documented, known, "docs/rules.md lists {root}'s fields");
            }
            assert_eq!(
                eval(&format!("size({root})")),
                Value::Int(fields.len() as i64),
                "{root} has every field"
            );
            for field in fields {
                // A missing risk score is NaN among the features, which equals nothing.
                let (a, b) = (format!("{root}.{field}"), format!("{root}['{field}']"));
                let same = format!("{a} == {b} || ({a} != {a} && {b} != {b})");
                assert_eq!(eval(&same), Value::Bool(true), "{same}");
            }
        }
    }

    /// The fields the variables table of docs/rules.md names for `root` (the values in
    /// backticks of its row, less the values of fields it quotes), sorted.
    fn documented_fields(root: &str) -> Option<Vec<&'static str>> {
        const DOC: &str = include_str!("../../../docs/rules.md");
        const VALUES: [&str; 4] = ["null", "ok", "timeout", "error"];
        let row = DOC
            .lines()
            .find(|l| l.starts_with(&format!("| `{root}` |")))?;
        let cell = row.split('|').nth(2)?;
        let mut fields: Vec<&str> = cell
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|f| !VALUES.contains(f))
            .collect();
        fields.sort_unstable();
        Some(fields)
    }

    #[test]
    fn fields_read_by_name_have_the_facts_values() {
        for (source, expected) in [
            ("tx.amount", Value::Float(125.5)),
            ("tx.type", Value::Int(1)),
            ("tx.hour", Value::Int(10)),
            ("tx.card_risk_score", Value::Null),
            ("tx.merchant_risk_score", Value::Float(0.9)),
            ("tx.is_device_alert", Value::Bool(true)),
            ("tx.is_location_alert", Value::Bool(false)),
            ("'vip' in tx.customer_segments", Value::Bool(true)),
            ("tx.transaction_category", text("crypto")),
            ("tx.ip_address", text("192.0.2.10")),
            ("stats.count_3h", Value::Int(1)),
            ("stats.count_6h", Value::Int(2)),
            ("stats.sum_6h", Value::Float(165.5)),
            ("stats.avg_amount_24h", Value::Float(82.75)),
            ("model.score", Value::Float(0.75)),
            ("model.status", text("timeout")),
            ("model.version", text("7")),
            ("store.degraded", Value::Bool(true)),
            ("tx.card_bin in lists.bins", Value::Bool(true)),
            ("'550000' in lists.bins", Value::Bool(false)),
            ("'bins' in lists", Value::Bool(true)),
            ("has(tx.merchant_risk_score)", Value::Bool(true)),
        ] {
            assert_eq!(eval(source), expected, "{source}");
        }
    }
}
