//! The one module that speaks CEL (the `cel` crate, pinned exactly): compiling a rule's `when`,
//! checking what it may refer to, and evaluating it against one transaction's facts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use antifraud_domain::{FEATURE_NAMES, Facts, Feature, Window};
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
    pub fn holds(&self, bound: &Bound) -> Result<bool, String> {
        match self.program.execute(&bound.context) {
            Ok(Value::Bool(holds)) => Ok(holds),
            Ok(other) => Err(format!("gave {other:?}, not a boolean")),
            Err(error) => Err(error.to_string()),
        }
    }
}

impl Expression {
    /// The value the expression gives, as a person reads it: for a reason's detail.
    pub fn value(&self, bound: &Bound) -> String {
        match self.program.execute(&bound.context) {
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

/// One transaction's facts as CEL variables: built once per request, read by every rule.
pub struct Bound {
    context: Context<'static, 'static>,
}

/// The lists of a rule file as one CEL value, built once per file: a map from each list's name
/// to a map whose keys are its values, so that `x in lists.name` is a lookup.
#[derive(Clone)]
pub struct Lists(Value);

impl Lists {
    /// The file's lists.
    pub fn new(lists: &BTreeMap<String, HashSet<String>>) -> Lists {
        let map: HashMap<String, Value> = lists
            .iter()
            .map(|(name, values)| {
                let members: HashMap<String, Value> = values
                    .iter()
                    .map(|v| (v.clone(), Value::Bool(true)))
                    .collect();
                (name.clone(), Value::from(members))
            })
            .collect();
        Lists(Value::from(map))
    }
}

impl Bound {
    /// Binds `facts` and the file's `lists`.
    pub fn new(env: &Arc<cel::Env>, facts: &Facts<'_>, lists: &Lists) -> Bound {
        let tx = facts.transaction;
        let text = |s: &str| Value::String(Arc::new(s.to_owned()));
        let optional = |x: Option<f64>| x.map_or(Value::Null, Value::Float);
        let mut context = Context::with_env(Arc::clone(env));
        let transaction: HashMap<&str, Value> = HashMap::from([
            ("customer_id", text(tx.customer_id().as_str())),
            ("transaction_id", text(tx.transaction_id().as_str())),
            ("amount", Value::Float(tx.amount())),
            ("currency", text(tx.currency().as_str())),
            ("type", Value::Int(i64::from(tx.kind()))),
            ("merchant_id", text(tx.merchant_id())),
            ("card_bin", text(tx.card_bin().as_str())),
            ("ip_address", text(&tx.ip_address().to_string())),
            ("device_id", text(tx.device_id())),
            ("location", text(tx.location())),
            ("channel", text(tx.channel())),
            ("merchant_risk_score", optional(tx.merchant_risk_score())),
            ("card_risk_score", optional(tx.card_risk_score())),
            ("customer_risk_score", optional(tx.customer_risk_score())),
            ("is_velocity_alert", Value::Bool(tx.is_velocity_alert())),
            ("is_location_alert", Value::Bool(tx.is_location_alert())),
            ("is_device_alert", Value::Bool(tx.is_device_alert())),
            ("is_high_value", Value::Bool(tx.is_high_value())),
            (
                "transaction_category",
                tx.transaction_category().map_or(Value::Null, text),
            ),
            (
                "customer_segments",
                Value::List(Arc::new(
                    tx.customer_segments().iter().map(|s| text(s)).collect(),
                )),
            ),
            ("hour", Value::Int(i64::from(tx.timestamp().hour()))),
        ]);
        let mut stats: HashMap<String, Value> = HashMap::new();
        for window in Window::ALL {
            let stat = facts.stats.get(window);
            let label = window.label();
            stats.insert(format!("count_{label}"), Value::Int(stat.count as i64));
            stats.insert(format!("avg_amount_{label}"), Value::Float(stat.average()));
            stats.insert(format!("sum_{label}"), Value::Float(stat.sum_units()));
        }
        let features: HashMap<&str, Value> = FEATURE_NAMES
            .iter()
            .zip(Feature::ALL)
            .map(|(name, feature)| (*name, Value::Float(facts.features.get(feature))))
            .collect();
        let model: HashMap<&str, Value> = HashMap::from([
            ("score", Value::Float(facts.score)),
            ("is_fraud", Value::Bool(facts.is_fraud)),
            ("threshold", Value::Float(facts.threshold)),
            ("name", text(&facts.model.name)),
            ("version", text(&facts.model.version)),
            ("status", text(facts.model_status.as_str())),
        ]);
        let store: HashMap<&str, Value> =
            HashMap::from([("degraded", Value::Bool(facts.degraded))]);
        context.add_variable_from_value("tx", transaction);
        context.add_variable_from_value("stats", stats);
        context.add_variable_from_value("features", features);
        context.add_variable_from_value("model", model);
        context.add_variable_from_value("store", store);
        context.add_variable_from_value("lists", lists.0.clone());
        Bound { context }
    }
}

/// CEL's standard environment, built once per rule file and shared by every request.
pub(crate) fn environment() -> Arc<cel::Env> {
    Arc::new(cel::Env::stdlib())
}
