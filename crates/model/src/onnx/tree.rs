//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` (ai.onnx.ml), compiled into flat arrays.
//!
//! Why not tract: its tree ensembles walk the leaf table from the start for every tree (about
//! 1 ms per row at 100 trees, quadratic beyond), while walking the trees is a few hundred
//! comparisons. The semantics follow ONNX Runtime, the reference the exporters are tested
//! against, including its binary-classification rules (see [`TreeEnsemble::finish_classifier`]).

use std::collections::HashMap;

use super::LoadError;
use super::attrs::Attrs;
use super::ops::PostTransform;

/// How a branch compares the feature with its threshold; `true` takes the true branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

/// One node. For a branch, `a`/`b` are the true/false children; for a leaf, the range of its
/// weights in [`TreeEnsemble::weights`].
#[derive(Debug, Clone, Copy)]
struct Node {
    mode: Mode,
    feature: u32,
    threshold: f32,
    missing_goes_true: bool,
    a: u32,
    b: u32,
}

/// How the trees' leaf values combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// A compiled ensemble.
#[derive(Debug, Clone)]
pub(crate) struct TreeEnsemble {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    /// `(output index, weight)` of every leaf, grouped by leaf.
    weights: Vec<(u32, f32)>,
    outputs: usize,
    aggregate: Aggregate,
    base_values: Vec<f32>,
    post: PostTransform,
    /// Classifier only: two classes, and every weight goes to the same one.
    binary_case: bool,
    /// Classifier only: no weight is negative.
    weights_all_positive: bool,
    /// Widest feature index read, to check the input width at load time.
    max_feature: usize,
}

impl TreeEnsemble {
    /// Compiles a `TreeEnsembleClassifier` (`classifier`) or `TreeEnsembleRegressor` node.
    pub(crate) fn compile(attrs: &Attrs<'_>, classifier: bool) -> Result<Self, LoadError> {
        let tree_ids = attrs.ints("nodes_treeids");
        let node_ids = attrs.ints("nodes_nodeids");
        let feature_ids = attrs.ints("nodes_featureids");
        let values = attrs.floats("nodes_values")?;
        let modes = attrs.strings("nodes_modes");
        let true_ids = attrs.ints("nodes_truenodeids");
        let false_ids = attrs.ints("nodes_falsenodeids");
        let missing = attrs.ints("nodes_missing_value_tracks_true");
        let n = tree_ids.len();
        if n == 0 {
            return Err(attrs.error("the ensemble has no nodes"));
        }
        for (name, len) in [
            ("nodes_nodeids", node_ids.len()),
            ("nodes_featureids", feature_ids.len()),
            ("nodes_values", values.len()),
            ("nodes_modes", modes.len()),
            ("nodes_truenodeids", true_ids.len()),
            ("nodes_falsenodeids", false_ids.len()),
        ] {
            if len != n {
                return Err(attrs.error(format!("{name} has {len} entries, nodes_treeids {n}")));
            }
        }
        if !missing.is_empty() && missing.len() != n {
            return Err(attrs.error("nodes_missing_value_tracks_true has the wrong length"));
        }

        let index: HashMap<(i64, i64), u32> = tree_ids
            .iter()
            .zip(&node_ids)
            .enumerate()
            .map(|(i, (&t, &id))| (t, id, i))
            .try_fold(HashMap::new(), |mut map, (t, id, i)| {
                let slot = u32::try_from(i).map_err(|_| attrs.error("too many nodes"))?;
                match map.insert((t, id), slot) {
                    None => Ok(map),
                    Some(_) => Err(attrs.error(format!("node {id} of tree {t} is defined twice"))),
                }
            })?;
        let lookup = |tree: i64, id: i64| {
            index.get(&(tree, id)).copied().ok_or_else(|| {
                attrs.error(format!(
                    "tree {tree} refers to node {id}, which does not exist"
                ))
            })
        };

        let mut nodes = Vec::with_capacity(n);
        let mut max_feature = 0;
        for i in 0..n {
            let mode = match modes[i].as_slice() {
                b"BRANCH_LEQ" => Mode::Leq,
                b"BRANCH_LT" => Mode::Lt,
                b"BRANCH_GTE" => Mode::Gte,
                b"BRANCH_GT" => Mode::Gt,
                b"BRANCH_EQ" => Mode::Eq,
                b"BRANCH_NEQ" => Mode::Neq,
                b"LEAF" => Mode::Leaf,
                other => {
                    return Err(attrs.error(format!(
                        "unknown node mode {:?}",
                        String::from_utf8_lossy(other)
                    )));
                }
            };
            let (a, b, feature) = if mode == Mode::Leaf {
                (0, 0, 0)
            } else {
                let feature = usize::try_from(feature_ids[i])
                    .map_err(|_| attrs.error("negative feature id"))?;
                max_feature = max_feature.max(feature);
                (
                    lookup(tree_ids[i], true_ids[i])?,
                    lookup(tree_ids[i], false_ids[i])?,
                    u32::try_from(feature).map_err(|_| attrs.error("feature id out of range"))?,
                )
            };
            nodes.push(Node {
                mode,
                feature,
                threshold: values[i],
                missing_goes_true: missing.get(i).is_some_and(|&m| m != 0),
                a,
                b,
            });
        }

        // Leaf weights, attached to their leaves in node order so that a leaf's are contiguous.
        let prefix = if classifier { "class" } else { "target" };
        let w_trees = attrs.ints(&format!("{prefix}_treeids"));
        let w_nodes = attrs.ints(&format!("{prefix}_nodeids"));
        let w_ids = attrs.ints(&format!("{prefix}_ids"));
        let w_values = attrs.floats(&format!("{prefix}_weights"))?;
        let m = w_trees.len();
        if w_nodes.len() != m || w_ids.len() != m || w_values.len() != m {
            return Err(attrs.error(format!("the {prefix}_* weight lists differ in length")));
        }
        let outputs = if classifier {
            let ints = attrs.ints("classlabels_int64s");
            let strings = attrs.strings("classlabels_strings");
            ints.len().max(strings.len())
        } else {
            usize::try_from(attrs.int("n_targets", 1))
                .map_err(|_| attrs.error("n_targets is negative"))?
        };
        if outputs == 0 {
            return Err(attrs.error("no class labels or targets"));
        }
        let mut per_leaf: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for j in 0..m {
            let leaf = lookup(w_trees[j], w_nodes[j])? as usize;
            if nodes[leaf].mode != Mode::Leaf {
                return Err(attrs.error(format!(
                    "a weight is attached to node {} of tree {}, which is a branch",
                    w_nodes[j], w_trees[j]
                )));
            }
            let out = usize::try_from(w_ids[j])
                .ok()
                .filter(|&o| o < outputs)
                .ok_or_else(|| attrs.error(format!("{prefix} id {} out of range", w_ids[j])))?;
            per_leaf[leaf].push((out as u32, w_values[j]));
        }
        let mut weights = Vec::with_capacity(m);
        for (i, leaf_weights) in per_leaf.into_iter().enumerate() {
            if nodes[i].mode == Mode::Leaf {
                nodes[i].a = weights.len() as u32;
                weights.extend(leaf_weights);
                nodes[i].b = weights.len() as u32;
            }
        }

        // Roots: the first node of each tree, in order of appearance (ONNX Runtime's rule). A
        // structure where no node has two parents and no root has one is a forest: no walk can
        // loop, whatever the file says.
        let mut parents = vec![0u8; n];
        for node in nodes.iter().filter(|node| node.mode != Mode::Leaf) {
            for child in [node.a, node.b] {
                parents[child as usize] = parents[child as usize].saturating_add(1);
            }
        }
        let mut roots = Vec::new();
        for i in 0..n {
            if i == 0 || tree_ids[i] != tree_ids[i - 1] {
                if roots
                    .iter()
                    .any(|&r: &u32| tree_ids[r as usize] == tree_ids[i])
                {
                    return Err(attrs.error(format!(
                        "the nodes of tree {} are not contiguous",
                        tree_ids[i]
                    )));
                }
                roots.push(i as u32);
            }
        }
        if let Some(i) =
            (0..n).find(|&i| parents[i] > 1 || (parents[i] > 0 && roots.contains(&(i as u32))))
        {
            return Err(attrs.error(format!(
                "node {} of tree {} has more than one parent or is a root with a parent: not a tree",
                node_ids[i], tree_ids[i]
            )));
        }

        let aggregate = match attrs.string("aggregate_function", "SUM")?.as_str() {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            other => return Err(attrs.error(format!("unknown aggregate_function {other}"))),
        };
        let base_values = attrs.floats("base_values")?;
        if base_values.len() > outputs.max(1) {
            return Err(attrs.error("more base_values than outputs"));
        }
        let post = PostTransform::parse(attrs)?;
        let distinct: std::collections::HashSet<u32> = weights.iter().map(|w| w.0).collect();
        Ok(TreeEnsemble {
            binary_case: classifier && outputs == 2 && distinct.len() == 1,
            weights_all_positive: weights.iter().all(|w| w.1 >= 0.0),
            nodes,
            roots,
            weights,
            outputs,
            aggregate,
            base_values,
            post,
            max_feature,
        })
    }

    /// The number of input features the ensemble reads (at least).
    pub(crate) fn min_width(&self) -> usize {
        self.max_feature + 1
    }

    /// Number of trees.
    pub(crate) fn trees(&self) -> usize {
        self.roots.len()
    }

    /// The leaf each root leads to for `x`.
    fn leaf(&self, root: u32, x: &[f32]) -> &Node {
        let mut node = &self.nodes[root as usize];
        loop {
            let v = x[node.feature as usize];
            let t = node.threshold;
            let go_true = match node.mode {
                Mode::Leaf => return node,
                Mode::Leq => v <= t,
                Mode::Lt => v < t,
                Mode::Gte => v >= t,
                Mode::Gt => v > t,
                Mode::Eq => v == t,
                Mode::Neq => v != t,
            } || (node.missing_goes_true && v.is_nan());
            node = &self.nodes[if go_true { node.a } else { node.b } as usize];
        }
    }

    /// Raw aggregated scores per output, and whether each received a weight.
    fn scores(&self, x: &[f32]) -> (Vec<f32>, Vec<bool>) {
        let mut scores = vec![0.0f32; self.outputs];
        let mut has = vec![false; self.outputs];
        for &root in &self.roots {
            let leaf = self.leaf(root, x);
            for &(out, w) in &self.weights[leaf.a as usize..leaf.b as usize] {
                let (s, h) = (&mut scores[out as usize], &mut has[out as usize]);
                *s = match (self.aggregate, *h) {
                    (_, false) => w,
                    (Aggregate::Sum | Aggregate::Average, true) => *s + w,
                    (Aggregate::Min, true) => s.min(w),
                    (Aggregate::Max, true) => s.max(w),
                };
                *h = true;
            }
        }
        if self.aggregate == Aggregate::Average {
            let n = self.roots.len() as f32;
            scores.iter_mut().for_each(|s| *s /= n);
        }
        (scores, has)
    }

    /// Regressor output: one value per target.
    pub(crate) fn regress(&self, x: &[f32]) -> Vec<f32> {
        let (mut scores, _) = self.scores(x);
        for (s, b) in scores.iter_mut().zip(&self.base_values) {
            *s += b;
        }
        if scores.len() == 1 {
            // ONNX Runtime applies only PROBIT to a single output (rejected at load), so a
            // single-target regressor's value is written as is.
            return scores;
        }
        self.post.apply(&mut scores);
        scores
    }

    /// Classifier output: the probability (or score) per class.
    pub(crate) fn classify(&self, x: &[f32]) -> Vec<f32> {
        let (scores, has) = self.scores(x);
        self.finish_classifier(scores, &has)
    }

    /// ONNX Runtime's `FinalizeScores` for classifiers. With two classes whose weights all go
    /// to one class (how scikit-learn, LightGBM and XGBoost export binary models), the single
    /// score `s` becomes `[σ(−s), σ(s)]` under LOGISTIC and `[1 − s, s]` when every weight is
    /// non-negative (random forests: `s` is already a probability).
    fn finish_classifier(&self, mut scores: Vec<f32>, has: &[bool]) -> Vec<f32> {
        if self.outputs != 2 {
            for (s, b) in scores.iter_mut().zip(&self.base_values) {
                *s += b;
            }
            self.post.apply(&mut scores);
            return scores;
        }
        let mut single = false;
        match self.base_values.len() {
            2 => {
                scores[0] += self.base_values[0];
                scores[1] += self.base_values[1];
            }
            1 => {
                scores[0] += self.base_values[0];
                single = !has[1];
            }
            _ => single = !has[1],
        }
        if !single {
            self.post.apply(&mut scores);
            return scores;
        }
        let s = scores[0];
        let positive = if self.binary_case && self.weights_all_positive {
            s > 0.5
        } else {
            s > 0.0
        };
        match (self.binary_case && self.weights_all_positive, self.post) {
            (true, _) => vec![1.0 - s, s],
            (false, PostTransform::Logistic) => vec![logistic(-s), logistic(s)],
            (false, _) if positive || !self.binary_case => vec![-s, s],
            (false, _) => vec![s, -s],
        }
    }
}

/// ONNX Runtime's logistic, computed in `f32`.
pub(crate) fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 { 1.0 - e } else { e }
}
