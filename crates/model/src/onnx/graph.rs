//! A model graph compiled into the steps that lead to the probability output.

use std::collections::HashMap;

use super::attrs::Attrs;
use super::ops::Op;
use super::proto::{GraphProto, ValueInfoProto, data_type};
use super::{EvalError, LoadError};

/// How far outside 0..1 a probability may fall by f32 rounding alone.
const ROUNDING: f64 = 1e-5;

/// One node to run: its operator, input slots and the slot its result goes to.
#[derive(Debug, Clone)]
struct Step {
    /// The node's name, for errors.
    name: String,
    op: Op,
    inputs: Vec<usize>,
    output: usize,
}

/// The compiled graph: values live in numbered slots; constants are decoded once, at load.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    slots: usize,
    input_slot: usize,
    input_width: usize,
    constants: Vec<(usize, Vec<f32>)>,
    steps: Vec<Step>,
    output_slot: usize,
    /// Which column of the output row is the fraud probability.
    output_column: usize,
    /// Description of the output read, for logs and docs: `probabilities[:, 1]`.
    pub(crate) output_description: String,
    /// Number of trees, when the model is an ensemble (for logs).
    pub(crate) trees: usize,
    /// Worst-case tree nodes visited for one row, over all ensembles.
    pub(crate) worst_case_steps: usize,
    /// The model has tree ensembles and every one walks compact trees (ranked thresholds, see
    /// `compact.rs`).
    pub(crate) compact: bool,
}

impl Graph {
    /// Compiles `graph` for an input row of `expected_width` features.
    pub(crate) fn compile(graph: &GraphProto, expected_width: usize) -> Result<Self, LoadError> {
        let mut slot_of_owned: HashMap<String, usize> = HashMap::new();

        // The one input that is not an initializer is the feature row.
        let initializers: HashMap<&str, _> = graph
            .initializer
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let inputs: Vec<&ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains_key(i.name.as_str()))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(LoadError::Invalid(format!(
                "the model must take one input (the feature row), it takes {}",
                inputs.len()
            )));
        };
        let tensor = input
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .ok_or_else(|| LoadError::Invalid(format!("input {:?} is not a tensor", input.name)))?;
        if tensor.elem_type != data_type::FLOAT {
            return Err(LoadError::Invalid(format!(
                "input {:?} must be float32 (export with FloatTensorType), its element type is {}",
                input.name, tensor.elem_type
            )));
        }
        let dims: Vec<Option<i64>> = tensor
            .shape
            .as_ref()
            .map(|s| s.dim.iter().map(|d| d.dim_value).collect())
            .unwrap_or_default();
        match dims.as_slice() {
            [_, Some(w)] | [Some(w)] if usize::try_from(*w).ok() == Some(expected_width) => {}
            [_, Some(w)] | [Some(w)] => {
                return Err(LoadError::Invalid(format!(
                    "input {:?} takes {w} features, the feature vector has {expected_width}",
                    input.name
                )));
            }
            _ => {
                return Err(LoadError::Invalid(format!(
                    "input {:?} must have shape [N, {expected_width}], its shape is {dims:?}",
                    input.name
                )));
            }
        }

        let mut intern = |name: &str| -> usize {
            if let Some(&s) = slot_of_owned.get(name) {
                return s;
            }
            let s = slot_of_owned.len();
            slot_of_owned.insert(name.to_owned(), s);
            s
        };
        let input_slot = intern(&input.name);
        let mut constants = Vec::new();
        for t in &graph.initializer {
            constants.push((intern(&t.name), Op::constant(t)?));
        }

        // Nodes are in topological order (an ONNX requirement); each step produces the output
        // that carries scores. Other outputs (labels) are never read by a probability.
        let mut steps = Vec::new();
        let mut produced: HashMap<usize, usize> = HashMap::new();
        let mut uncomputed = Vec::new();
        for node in &graph.node {
            let attrs = Attrs::new(node);
            let op = Op::compile(&attrs, &node.domain, &node.op_type)?;
            let out_name = node
                .output
                .get(op.scores_output())
                .ok_or_else(|| attrs.error("the node lacks its scores output"))?;
            let inputs = node
                .input
                .iter()
                .filter(|name| !name.is_empty())
                .map(|name| {
                    let s = intern(name);
                    let known = s == input_slot
                        || constants.iter().any(|(c, _)| *c == s)
                        || produced.contains_key(&s);
                    if known {
                        Ok(s)
                    } else {
                        Err(attrs.error(format!("input {name:?} is not produced before this node")))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = intern(out_name);
            // Other outputs (a classifier's labels) are never computed: a step that reads one
            // must not be needed for the probability (checked below).
            for (i, name) in node.output.iter().enumerate() {
                if i != op.scores_output() && !name.is_empty() {
                    let s = intern(name);
                    produced.insert(s, steps.len());
                    uncomputed.push(s);
                }
            }
            produced.insert(output, steps.len());
            steps.push(Step {
                name: node.name.clone(),
                op,
                inputs,
                output,
            });
        }

        // The probability: the first float output that some step produces.
        let outputs: Vec<(&ValueInfoProto, usize)> = graph
            .output
            .iter()
            .filter_map(|o| slot_of_owned.get(&o.name).map(|&s| (o, s)))
            .filter(|(_, s)| produced.contains_key(s))
            .filter(|(o, _)| {
                o.r#type
                    .as_ref()
                    .and_then(|t| t.tensor_type.as_ref())
                    .is_some_and(|t| t.elem_type == data_type::FLOAT)
            })
            .collect();
        let Some(&(out, output_slot)) = outputs.first() else {
            return Err(LoadError::Invalid(
                "the model has no float output (export classifiers with zipmap=False)".into(),
            ));
        };

        // Keep only the steps the output depends on.
        let mut needed = vec![false; steps.len()];
        let mut wanted = vec![output_slot];
        while let Some(s) = wanted.pop() {
            if let Some(&i) = produced.get(&s)
                && !needed[i]
            {
                needed[i] = true;
                wanted.extend(&steps[i].inputs);
            }
        }
        if let Some(step) = steps
            .iter()
            .zip(&needed)
            .find(|(s, n)| **n && s.inputs.iter().any(|i| uncomputed.contains(i)))
            .or(uncomputed
                .contains(&output_slot)
                .then(|| (&steps[produced[&output_slot]], &true)))
        {
            return Err(LoadError::Invalid(format!(
                "the probability output depends on a classifier's label output (via {:?}); \
                 only scores and probabilities are evaluated",
                step.0.name
            )));
        }
        let ensembles = || {
            steps
                .iter()
                .zip(&needed)
                .filter(|(_, n)| **n)
                .filter_map(|(s, _)| match &s.op {
                    Op::Trees { ensemble, .. } => Some(ensemble),
                    _ => None,
                })
        };
        let trees = ensembles().map(|e| e.trees()).sum();
        let worst_case_steps = ensembles().map(|e| e.worst_case_steps()).sum();
        let compact = ensembles().next().is_some() && ensembles().all(|e| e.is_compact());
        let steps: Vec<Step> = steps
            .into_iter()
            .zip(needed)
            .filter_map(|(s, n)| n.then_some(s))
            .collect();

        let mut compiled = Graph {
            slots: slot_of_owned.len(),
            input_slot,
            input_width: expected_width,
            constants,
            steps,
            output_slot,
            compact,
            output_column: 0,
            output_description: String::new(),
            trees,
            worst_case_steps,
        };
        // The output's width decides the column: two columns are [P(0), P(1)], one is P(1).
        let probe = compiled
            .run_row(&vec![0.0; expected_width])
            .map_err(|e| LoadError::Invalid(format!("scoring a row of zeros failed: {e}")))?;
        compiled.output_column = match probe.len() {
            1 => 0,
            2 => 1,
            n => {
                return Err(LoadError::Invalid(format!(
                    "output {:?} has {n} columns; a binary classifier's probabilities (2 columns) \
                     or one probability (1 column) is expected",
                    out.name
                )));
            }
        };
        compiled.output_description = format!("{}[:, {}]", out.name, compiled.output_column);
        Ok(compiled)
    }

    fn run_row(&self, x: &[f32]) -> Result<Vec<f32>, EvalError> {
        // Only computed values are allocated per row; the input and the constants are read in
        // place.
        let mut computed: Vec<Option<Vec<f32>>> = vec![None; self.slots];
        for step in &self.steps {
            let inputs: Vec<&[f32]> = step
                .inputs
                .iter()
                .map(|&s| self.value(s, x, &computed))
                .collect();
            let out = step.op.run(&inputs)?;
            computed[step.output] = Some(out);
        }
        computed[self.output_slot].take().ok_or(EvalError::NoOutput)
    }

    /// The value in slot `s`: the input row, a computed value or a constant.
    fn value<'a>(&'a self, s: usize, x: &'a [f32], computed: &'a [Option<Vec<f32>>]) -> &'a [f32] {
        if s == self.input_slot {
            return x;
        }
        if let Some(v) = &computed[s] {
            return v;
        }
        self.constants
            .iter()
            .find(|(c, _)| *c == s)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// The fraud probability of one feature row (f64 features narrowed to the model's f32).
    pub(crate) fn probability(&self, features: &[f64]) -> Result<f64, EvalError> {
        if features.len() != self.input_width {
            return Err(EvalError::Width {
                given: features.len(),
                expected: self.input_width,
            });
        }
        #[expect(
            clippy::cast_possible_truncation,
            reason = "float32 models read float32 inputs, as exported"
        )]
        let row: Vec<f32> = features.iter().map(|&v| v as f32).collect();
        let out = self.run_row(&row)?;
        let p = out
            .get(self.output_column)
            .map(|&p| f64::from(p))
            .ok_or(EvalError::NoOutput)?;
        // Summing f32 leaf values (a forest's per-tree probabilities) can overshoot 1 by an ulp
        // or two; that is rounding, not a model answering nonsense.
        Ok(if (-ROUNDING..=1.0 + ROUNDING).contains(&p) {
            p.clamp(0.0, 1.0)
        } else {
            p
        })
    }
}
