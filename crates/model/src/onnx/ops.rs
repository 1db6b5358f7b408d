//! The operators besides tree ensembles: what scikit-learn, LightGBM and XGBoost exporters put
//! around a model (scaling, imputation, casts, the linear models, output transforms).

use super::attrs::{Attrs, tensor_values};
use super::tree::{TreeEnsemble, logistic};
use super::{EvalError, LoadError};

/// The transform a classifier or regressor applies to its raw scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
}

impl PostTransform {
    pub(crate) fn parse(attrs: &Attrs<'_>) -> Result<Self, LoadError> {
        match attrs.string("post_transform", "NONE")?.as_str() {
            "NONE" => Ok(PostTransform::None),
            "LOGISTIC" => Ok(PostTransform::Logistic),
            "SOFTMAX" => Ok(PostTransform::Softmax),
            "SOFTMAX_ZERO" => Ok(PostTransform::SoftmaxZero),
            other => Err(attrs.error(format!("post_transform {other} is not supported"))),
        }
    }

    /// Applies the transform to a row of two or more scores.
    pub(crate) fn apply(self, scores: &mut [f32]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => scores.iter_mut().for_each(|s| *s = logistic(*s)),
            PostTransform::Softmax => softmax(scores, false),
            PostTransform::SoftmaxZero => softmax(scores, true),
        }
    }
}

/// Softmax; with `keep_zero`, entries that are exactly zero stay zero (ONNX's SOFTMAX_ZERO).
fn softmax(scores: &mut [f32], keep_zero: bool) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = if keep_zero && *s == 0.0 {
            0.0
        } else {
            (*s - max).exp()
        };
        sum += *s;
    }
    if sum > 0.0 {
        scores.iter_mut().for_each(|s| *s /= sum);
    }
}

/// Element-wise arithmetic with a broadcast right-hand side.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

/// One operator, compiled.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `Identity` and `Cast` (values are held as `f32` throughout).
    Copy,
    /// `Scaler`: `(x − offset) · scale`.
    Scaler { offset: Vec<f32>, scale: Vec<f32> },
    /// `Imputer`: replaces NaN (or `replaced_value_float`) by a per-column value.
    Imputer { values: Vec<f32>, replaced: f32 },
    /// `Normalizer`: MAX, L1 or L2 over the row.
    Normalizer(Norm),
    /// `Sigmoid`.
    Sigmoid,
    /// `Softmax` over the last axis.
    Softmax,
    /// `Add`, `Sub`, `Mul`, `Div`.
    Arith(Arith),
    /// `LinearClassifier` and `LinearRegressor`: `x · coefficientsᵀ + intercepts`.
    Linear {
        coefficients: Vec<f32>,
        intercepts: Vec<f32>,
        targets: usize,
        post: PostTransform,
        classifier: bool,
    },
    /// `TreeEnsembleClassifier` and `TreeEnsembleRegressor`.
    Trees {
        ensemble: Box<TreeEnsemble>,
        classifier: bool,
    },
}

/// A row norm.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Norm {
    Max,
    L1,
    L2,
}

impl Op {
    /// Compiles the node's operator; `None` if the operator is not supported.
    pub(crate) fn compile(
        attrs: &Attrs<'_>,
        domain: &str,
        op_type: &str,
    ) -> Result<Self, LoadError> {
        let ml = domain == "ai.onnx.ml";
        let core = domain.is_empty() || domain == "ai.onnx";
        Ok(match (ml, core, op_type) {
            (_, true, "Identity" | "Cast") => Op::Copy,
            (_, true, "Sigmoid") => Op::Sigmoid,
            (_, true, "Softmax") => {
                if !matches!(attrs.int("axis", -1), -1 | 1) {
                    return Err(attrs.error("only a softmax over the last axis is supported"));
                }
                Op::Softmax
            }
            (_, true, "Add") => Op::Arith(Arith::Add),
            (_, true, "Sub") => Op::Arith(Arith::Sub),
            (_, true, "Mul") => Op::Arith(Arith::Mul),
            (_, true, "Div") => Op::Arith(Arith::Div),
            (true, _, "Scaler") => Op::Scaler {
                offset: attrs.floats("offset")?,
                scale: attrs.floats("scale")?,
            },
            (true, _, "Imputer") => Op::Imputer {
                values: attrs.floats("imputed_value_floats")?,
                replaced: attrs
                    .floats("replaced_value_float")
                    .ok()
                    .and_then(|v| v.first().copied())
                    .unwrap_or(f32::NAN),
            },
            (true, _, "Normalizer") => {
                Op::Normalizer(match attrs.string("norm", "MAX")?.as_str() {
                    "MAX" => Norm::Max,
                    "L1" => Norm::L1,
                    "L2" => Norm::L2,
                    other => return Err(attrs.error(format!("unknown norm {other}"))),
                })
            }
            (true, _, "LinearClassifier" | "LinearRegressor") => {
                let classifier = op_type == "LinearClassifier";
                let coefficients = attrs.floats("coefficients")?;
                let intercepts = attrs.floats("intercepts")?;
                let targets = if classifier {
                    intercepts.len()
                } else {
                    usize::try_from(attrs.int("targets", 1))
                        .map_err(|_| attrs.error("targets is negative"))?
                };
                if targets == 0 || coefficients.is_empty() || coefficients.len() % targets != 0 {
                    return Err(attrs.error("coefficients do not divide into the targets"));
                }
                if !intercepts.is_empty() && intercepts.len() != targets {
                    return Err(attrs.error("one intercept per target is needed"));
                }
                let labels = attrs
                    .ints("classlabels_ints")
                    .len()
                    .max(attrs.strings("classlabels_strings").len());
                if classifier && targets == 1 && labels == 2 {
                    return Err(attrs.error(
                        "a binary LinearClassifier with one coefficient row is not supported; \
                         skl2onnx exports two rows, one per class",
                    ));
                }
                Op::Linear {
                    coefficients,
                    intercepts,
                    targets,
                    post: PostTransform::parse(attrs)?,
                    classifier,
                }
            }
            (true, _, "TreeEnsembleClassifier") => Op::Trees {
                ensemble: Box::new(TreeEnsemble::compile(attrs, true)?),
                classifier: true,
            },
            (true, _, "TreeEnsembleRegressor") => Op::Trees {
                ensemble: Box::new(TreeEnsemble::compile(attrs, false)?),
                classifier: false,
            },
            (true, _, "ZipMap") => {
                return Err(attrs.error(
                    "ZipMap outputs a map, not a tensor: export the classifier with zipmap=False",
                ));
            }
            _ => {
                return Err(attrs.error(format!(
                    "operator {domain}:{op_type} is not supported (supported: linear and tree-ensemble \
                     models with Scaler, Imputer, Normalizer, Cast, Identity, Sigmoid, Softmax, Add, Sub, Mul, Div)"
                )));
            }
        })
    }

    /// Runs the operator on its inputs, returning its first output (the one a probability flows
    /// through: scores for classifiers) and, for classifiers, nothing else. Errors are shape
    /// mismatches, which validation at load time rules out for the model's input width.
    pub(crate) fn run(&self, inputs: &[&[f32]]) -> Result<Vec<f32>, EvalError> {
        let x = *inputs.first().ok_or(EvalError::MissingInput)?;
        Ok(match self {
            Op::Copy => x.to_vec(),
            Op::Sigmoid => x.iter().map(|&v| logistic(v)).collect(),
            Op::Softmax => {
                let mut v = x.to_vec();
                softmax(&mut v, false);
                v
            }
            Op::Arith(op) => {
                let y = *inputs.get(1).ok_or(EvalError::MissingInput)?;
                if y.len() != 1 && y.len() != x.len() {
                    return Err(EvalError::Broadcast {
                        from: y.len(),
                        over: x.len(),
                    });
                }
                x.iter()
                    .enumerate()
                    .map(|(i, &a)| {
                        let b = y[if y.len() == 1 { 0 } else { i }];
                        match op {
                            Arith::Add => a + b,
                            Arith::Sub => a - b,
                            Arith::Mul => a * b,
                            Arith::Div => a / b,
                        }
                    })
                    .collect()
            }
            Op::Scaler { offset, scale } => x
                .iter()
                .enumerate()
                .map(|(i, &v)| (v - pick(offset, i, 0.0)) * pick(scale, i, 1.0))
                .collect(),
            Op::Imputer { values, replaced } => x
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let missing = if replaced.is_nan() {
                        v.is_nan()
                    } else {
                        v == *replaced
                    };
                    if missing { pick(values, i, v) } else { v }
                })
                .collect(),
            Op::Normalizer(norm) => {
                let d = match norm {
                    Norm::Max => x.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                    Norm::L1 => x.iter().map(|v| v.abs()).sum(),
                    Norm::L2 => x.iter().map(|v| v * v).sum::<f32>().sqrt(),
                };
                x.iter()
                    .map(|v| if d == 0.0 { *v } else { v / d })
                    .collect()
            }
            Op::Linear {
                coefficients,
                intercepts,
                targets,
                post,
                classifier,
            } => {
                let width = coefficients.len() / targets;
                if x.len() != width {
                    return Err(EvalError::Narrow {
                        needed: width,
                        got: x.len(),
                    });
                }
                let mut scores: Vec<f32> = coefficients
                    .chunks_exact(width)
                    .enumerate()
                    .map(|(t, row)| {
                        row.iter().zip(x).map(|(c, v)| c * v).sum::<f32>()
                            + pick(intercepts, t, 0.0)
                    })
                    .collect();
                if *classifier || scores.len() > 1 {
                    post.apply(&mut scores);
                }
                scores
            }
            Op::Trees {
                ensemble,
                classifier,
            } => {
                if x.len() < ensemble.min_width() {
                    return Err(EvalError::Narrow {
                        needed: ensemble.min_width(),
                        got: x.len(),
                    });
                }
                if *classifier {
                    ensemble.classify(x)
                } else {
                    ensemble.regress(x)
                }
            }
        })
    }

    /// For classifiers, the first output is the label and the second the scores.
    pub(crate) fn scores_output(&self) -> usize {
        match self {
            Op::Linear {
                classifier: true, ..
            }
            | Op::Trees {
                classifier: true, ..
            } => 1,
            _ => 0,
        }
    }

    /// Load-time check of a constant input (initializer) read by this operator.
    pub(crate) fn constant(tensor: &super::proto::TensorProto) -> Result<Vec<f32>, LoadError> {
        tensor_values(tensor)
            .map_err(|e| LoadError::Invalid(format!("initializer {:?}: {e}", tensor.name)))
    }
}

/// A per-column parameter: one value for all columns or one per column.
fn pick(values: &[f32], i: usize, default: f32) -> f32 {
    match values.len() {
        0 => default,
        1 => values[0],
        _ => values.get(i).copied().unwrap_or(default),
    }
}
