//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` (ai.onnx.ml), compiled into flat arrays.
//!
//! Why not tract: its tree ensembles walk the leaf table from the start for every tree (about
//! 1 ms per row at 100 trees, quadratic beyond), while walking the trees is a few hundred
//! comparisons. The semantics follow ONNX Runtime, the reference the exporters are tested
//! against, including its binary-classification rules (see [`TreeEnsemble::finish_classifier`]).

use std::collections::HashMap;

use super::LoadError;
use super::attrs::Attrs;
use super::compact::CompactForest;
use super::ops::PostTransform;

/// How a branch compares the feature with its threshold; `true` takes the true branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Mode {
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
pub(super) struct Node {
    pub(super) mode: Mode,
    pub(super) feature: u32,
    pub(super) threshold: f32,
    pub(super) missing_goes_true: bool,
    pub(super) a: u32,
    pub(super) b: u32,
}

/// How the trees' leaf values combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// A node as walked: 12 bytes, trees laid out in pre-order so that a branch's true child is the
/// next node (often in the same cache line) and only the false child's index is stored.
///
/// A leaf points to itself and never takes its true branch, so a walk may run past the leaf
/// without moving: [`TreeEnsemble::scores`] walks eight trees in lock-step for the depth of the
/// deepest, without a data-dependent branch. The eight independent chains of loads overlap in
/// the memory system, and no comparison is mispredicted, which is where a one-tree-at-a-time walk
/// spends its time.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Packed {
    /// The threshold (NaN for a leaf: no comparison with NaN is true).
    value: f32,
    /// The false child; a leaf's own index.
    next: u32,
    /// The feature compared (0 for a leaf, so that reading it is always in bounds).
    feature: u16,
    /// How the branch compares; [`Mode::Leaf`] for leaves (one byte: `Mode` is `repr(u8)`).
    kind: Mode,
    /// NaN takes the true branch. Always `false` for a leaf.
    missing_goes_true: bool,
}

// The walk's working set is the packed nodes: they stay 12 bytes.
const _: () = assert!(std::mem::size_of::<Packed>() == 12);

/// Trees walked together.
const LANES: usize = 8;

/// A compiled ensemble.
#[derive(Debug, Clone)]
pub(crate) struct TreeEnsemble {
    /// The float nodes, walked when the ensemble has no compact form (empty when it has).
    packed: Vec<Packed>,
    /// Each packed node's weights, as a range of `weights` (empty for branches).
    leaf_weights: Vec<(u32, u32)>,
    roots: Vec<u32>,
    /// Each group of [`LANES`] trees' deepest walk.
    group_depths: Vec<u32>,
    /// The mode every branch shares, when they do (exporters use one): the walk is then
    /// specialised for it.
    uniform_mode: Option<Mode>,
    /// The same trees with ranked thresholds, when they fit that form (see [`CompactForest`]):
    /// what rows are walked with then.
    compact: Option<CompactForest>,
    /// The longest root-to-leaf walk over all trees, summed: the worst-case cost of a row.
    worst_case_steps: usize,
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

/// The node attributes of an ensemble, one entry per node, checked to have the same length.
struct NodeAttrs {
    tree_ids: Vec<i64>,
    node_ids: Vec<i64>,
    feature_ids: Vec<i64>,
    values: Vec<f32>,
    modes: Vec<Vec<u8>>,
    true_ids: Vec<i64>,
    false_ids: Vec<i64>,
    missing: Vec<i64>,
}

impl NodeAttrs {
    fn read(attrs: &Attrs<'_>) -> Result<Self, LoadError> {
        let table = NodeAttrs {
            tree_ids: attrs.ints("nodes_treeids"),
            node_ids: attrs.ints("nodes_nodeids"),
            feature_ids: attrs.ints("nodes_featureids"),
            values: attrs.floats("nodes_values")?,
            modes: attrs.strings("nodes_modes"),
            true_ids: attrs.ints("nodes_truenodeids"),
            false_ids: attrs.ints("nodes_falsenodeids"),
            missing: attrs.ints("nodes_missing_value_tracks_true"),
        };
        let n = table.tree_ids.len();
        if n == 0 {
            return Err(attrs.error("the ensemble has no nodes"));
        }
        for (name, len) in [
            ("nodes_nodeids", table.node_ids.len()),
            ("nodes_featureids", table.feature_ids.len()),
            ("nodes_values", table.values.len()),
            ("nodes_modes", table.modes.len()),
            ("nodes_truenodeids", table.true_ids.len()),
            ("nodes_falsenodeids", table.false_ids.len()),
        ] {
            if len != n {
                return Err(attrs.error(format!("{name} has {len} entries, nodes_treeids {n}")));
            }
        }
        if !table.missing.is_empty() && table.missing.len() != n {
            return Err(attrs.error("nodes_missing_value_tracks_true has the wrong length"));
        }
        Ok(table)
    }

    fn len(&self) -> usize {
        self.tree_ids.len()
    }
}

/// Where each `(tree id, node id)` is in the node list.
struct NodeIndex(HashMap<(i64, i64), u32>);

impl NodeIndex {
    fn new(attrs: &Attrs<'_>, table: &NodeAttrs) -> Result<Self, LoadError> {
        let mut map = HashMap::with_capacity(table.len());
        for (i, (&tree, &id)) in table.tree_ids.iter().zip(&table.node_ids).enumerate() {
            let slot = u32::try_from(i).map_err(|_| attrs.error("too many nodes"))?;
            if map.insert((tree, id), slot).is_some() {
                return Err(attrs.error(format!("node {id} of tree {tree} is defined twice")));
            }
        }
        Ok(NodeIndex(map))
    }

    fn get(&self, attrs: &Attrs<'_>, tree: i64, id: i64) -> Result<u32, LoadError> {
        self.0.get(&(tree, id)).copied().ok_or_else(|| {
            attrs.error(format!(
                "tree {tree} refers to node {id}, which does not exist"
            ))
        })
    }
}

impl Mode {
    fn parse(attrs: &Attrs<'_>, name: &[u8]) -> Result<Mode, LoadError> {
        Ok(match name {
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
        })
    }
}

impl Aggregate {
    fn parse(attrs: &Attrs<'_>) -> Result<Aggregate, LoadError> {
        match attrs.string("aggregate_function", "SUM")?.as_str() {
            "SUM" => Ok(Aggregate::Sum),
            "AVERAGE" => Ok(Aggregate::Average),
            "MIN" => Ok(Aggregate::Min),
            "MAX" => Ok(Aggregate::Max),
            other => Err(attrs.error(format!("unknown aggregate_function {other}"))),
        }
    }
}

/// The nodes, children resolved to positions, and the widest feature a branch reads.
fn read_nodes(
    attrs: &Attrs<'_>,
    table: &NodeAttrs,
    index: &NodeIndex,
) -> Result<(Vec<Node>, usize), LoadError> {
    let mut nodes = Vec::with_capacity(table.len());
    let mut max_feature = 0;
    for i in 0..table.len() {
        let mode = Mode::parse(attrs, &table.modes[i])?;
        let (a, b, feature) = if mode == Mode::Leaf {
            (0, 0, 0)
        } else {
            let feature = usize::try_from(table.feature_ids[i])
                .map_err(|_| attrs.error("negative feature id"))?;
            max_feature = max_feature.max(feature);
            (
                index.get(attrs, table.tree_ids[i], table.true_ids[i])?,
                index.get(attrs, table.tree_ids[i], table.false_ids[i])?,
                u32::try_from(feature).map_err(|_| attrs.error("feature id out of range"))?,
            )
        };
        nodes.push(Node {
            mode,
            feature,
            threshold: table.values[i],
            missing_goes_true: table.missing.get(i).is_some_and(|&m| m != 0),
            a,
            b,
        });
    }
    Ok((nodes, max_feature))
}

/// The number of outputs: class labels, or targets.
fn output_count(attrs: &Attrs<'_>, classifier: bool) -> Result<usize, LoadError> {
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
    Ok(outputs)
}

/// The leaves' `(output, weight)` pairs, attached to their leaves in node order so that a leaf's
/// are contiguous: each leaf's `a..b` becomes its range in the returned list.
fn attach_weights(
    attrs: &Attrs<'_>,
    classifier: bool,
    outputs: usize,
    nodes: &mut [Node],
    index: &NodeIndex,
) -> Result<Vec<(u32, f32)>, LoadError> {
    let prefix = if classifier { "class" } else { "target" };
    let w_trees = attrs.ints(&format!("{prefix}_treeids"));
    let w_nodes = attrs.ints(&format!("{prefix}_nodeids"));
    let w_ids = attrs.ints(&format!("{prefix}_ids"));
    let w_values = attrs.floats(&format!("{prefix}_weights"))?;
    let m = w_trees.len();
    if w_nodes.len() != m || w_ids.len() != m || w_values.len() != m {
        return Err(attrs.error(format!("the {prefix}_* weight lists differ in length")));
    }
    let mut per_leaf: Vec<Vec<(u32, f32)>> = vec![Vec::new(); nodes.len()];
    for j in 0..m {
        let leaf = index.get(attrs, w_trees[j], w_nodes[j])? as usize;
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
    for (node, leaf_weights) in nodes.iter_mut().zip(per_leaf) {
        if node.mode == Mode::Leaf {
            node.a = weights.len() as u32;
            weights.extend(leaf_weights);
            node.b = weights.len() as u32;
        }
    }
    Ok(weights)
}

/// The roots: the first node of each tree, in order of appearance (ONNX Runtime's rule). A
/// structure where no node has two parents and no root has one is a forest: no walk can loop,
/// whatever the file says.
fn forest_roots(
    attrs: &Attrs<'_>,
    table: &NodeAttrs,
    nodes: &[Node],
) -> Result<Vec<u32>, LoadError> {
    let tree_ids = &table.tree_ids;
    let mut parents = vec![0u8; nodes.len()];
    for node in nodes.iter().filter(|node| node.mode != Mode::Leaf) {
        for child in [node.a, node.b] {
            parents[child as usize] = parents[child as usize].saturating_add(1);
        }
    }
    let mut roots = Vec::new();
    for i in 0..nodes.len() {
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
    if let Some(i) = (0..nodes.len())
        .find(|&i| parents[i] > 1 || (parents[i] > 0 && roots.contains(&(i as u32))))
    {
        return Err(attrs.error(format!(
            "node {} of tree {} has more than one parent or is a root with a parent: not a tree",
            table.node_ids[i], tree_ids[i]
        )));
    }
    Ok(roots)
}

impl TreeEnsemble {
    /// Compiles a `TreeEnsembleClassifier` (`classifier`) or `TreeEnsembleRegressor` node.
    pub(crate) fn compile(attrs: &Attrs<'_>, classifier: bool) -> Result<Self, LoadError> {
        let table = NodeAttrs::read(attrs)?;
        let index = NodeIndex::new(attrs, &table)?;
        let (mut nodes, max_feature) = read_nodes(attrs, &table, &index)?;
        let outputs = output_count(attrs, classifier)?;
        let weights = attach_weights(attrs, classifier, outputs, &mut nodes, &index)?;
        let roots = forest_roots(attrs, &table, &nodes)?;
        let aggregate = Aggregate::parse(attrs)?;
        let base_values = attrs.floats("base_values")?;
        if base_values.len() > outputs.max(1) {
            return Err(attrs.error("more base_values than outputs"));
        }
        let post = PostTransform::parse(attrs)?;
        if max_feature > usize::from(u16::MAX) || outputs > usize::from(u16::MAX) {
            return Err(attrs.error("more than 65,535 features or outputs"));
        }
        let distinct: std::collections::HashSet<u32> = weights.iter().map(|w| w.0).collect();
        let layout = pack(&nodes, &roots);
        let mut modes = nodes
            .iter()
            .filter(|n| n.mode != Mode::Leaf)
            .map(|n| n.mode);
        let first = modes.next();
        let uniform_mode = first.filter(|m| modes.all(|other| other == *m));
        let compact = CompactForest::build(&nodes, &roots, uniform_mode, &weights);
        // Rows walk one form: the float nodes are kept only for ensembles without the compact
        // one (the shipped model's would be 750 KB never read).
        let (packed, leaf_weights) = match compact {
            Some(_) => (Vec::new(), Vec::new()),
            None => (layout.packed, layout.leaf_weights),
        };
        Ok(TreeEnsemble {
            compact,
            binary_case: classifier && outputs == 2 && distinct.len() == 1,
            weights_all_positive: weights.iter().all(|w| w.1 >= 0.0),
            packed,
            leaf_weights,
            roots: layout.roots,
            group_depths: layout.group_depths,
            worst_case_steps: layout.worst_case_steps,
            uniform_mode,
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

    /// Whether rows walk the compact form of the trees.
    pub(crate) fn is_compact(&self) -> bool {
        self.compact.is_some()
    }

    /// Number of trees.
    pub(crate) fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Worst-case node visits for one row: what decides whether a row is cheap enough to
    /// evaluate on an async worker.
    pub(crate) fn worst_case_steps(&self) -> usize {
        self.worst_case_steps
    }

    /// Raw aggregated scores per output, and whether each received a weight.
    fn scores(&self, x: &[f32]) -> (Vec<f32>, Vec<bool>) {
        let mut scores = vec![0.0f32; self.outputs];
        let mut has = vec![false; self.outputs];
        let aggregate = self.aggregate;
        let mut add = |out: usize, w: f32| {
            let (s, h) = (&mut scores[out], &mut has[out]);
            *s = match (aggregate, *h) {
                (_, false) => w,
                (Aggregate::Sum | Aggregate::Average, true) => *s + w,
                (Aggregate::Min, true) => s.min(w),
                (Aggregate::Max, true) => s.max(w),
            };
            *h = true;
        };
        if let Some(compact) = &self.compact {
            compact.for_each_leaf(x, |(out, w)| add(out as usize, w));
        } else {
            self.walk_packed(x, |(start, end)| {
                for &(out, w) in &self.weights[start as usize..end as usize] {
                    add(out as usize, w);
                }
            });
        }
        if self.aggregate == Aggregate::Average {
            let n = self.roots.len() as f32;
            scores.iter_mut().for_each(|s| *s /= n);
        }
        (scores, has)
    }

    /// Calls `leaf` with the weights (a range of [`Self::weights`]) of every tree's leaf for the
    /// row `x`, walking the float thresholds.
    fn walk_packed(&self, x: &[f32], mut leaf: impl FnMut((u32, u32))) {
        for (group, &depth) in self.roots.chunks(LANES).zip(&self.group_depths) {
            // Lanes past the last tree walk the group's first tree again; only the group's own
            // leaves are reported.
            let mut at = [group[0]; LANES];
            at[..group.len()].copy_from_slice(group);
            match self.uniform_mode {
                Some(Mode::Leq) => self.walk(&mut at, depth, x, |v, t| v <= t),
                Some(Mode::Lt) => self.walk(&mut at, depth, x, |v, t| v < t),
                Some(Mode::Gte) => self.walk(&mut at, depth, x, |v, t| v >= t),
                Some(Mode::Gt) => self.walk(&mut at, depth, x, |v, t| v > t),
                _ => self.walk_mixed(&mut at, depth, x),
            }
            for &node in &at[..group.len()] {
                leaf(self.leaf_weights[node as usize]);
            }
        }
    }

    /// `depth` steps of every lane, with one comparison for every branch.
    #[inline(always)]
    fn walk(
        &self,
        at: &mut [u32; LANES],
        depth: u32,
        x: &[f32],
        compare: impl Fn(f32, f32) -> bool,
    ) {
        for _ in 0..depth {
            for i in at.iter_mut() {
                let node = &self.packed[*i as usize];
                let v = x[usize::from(node.feature)];
                // `|`, not `||`: no branch on the data. A leaf compares with NaN: false.
                let go_true = compare(v, node.value) | (node.missing_goes_true & v.is_nan());
                *i = select(go_true, *i + 1, node.next);
            }
        }
    }

    /// [`Self::walk`] for ensembles whose branches use several modes.
    fn walk_mixed(&self, at: &mut [u32; LANES], depth: u32, x: &[f32]) {
        for _ in 0..depth {
            for i in at.iter_mut() {
                let node = &self.packed[*i as usize];
                let v = x[usize::from(node.feature)];
                let t = node.value;
                let compared = match node.kind {
                    Mode::Leq => v <= t,
                    Mode::Lt => v < t,
                    Mode::Gte => v >= t,
                    Mode::Gt => v > t,
                    Mode::Eq => v == t,
                    Mode::Neq => v != t,
                    Mode::Leaf => false,
                };
                let go_true =
                    (node.kind != Mode::Leaf) & (compared | (node.missing_goes_true & v.is_nan()));
                *i = if go_true { *i + 1 } else { node.next };
            }
        }
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

/// `if condition { a } else { b }` as arithmetic, so that the compiler cannot turn it into a
/// branch that the data would mispredict half of the time.
#[inline(always)]
pub(super) fn select(condition: bool, a: u32, b: u32) -> u32 {
    let mask = 0u32.wrapping_sub(u32::from(condition));
    (a & mask) | (b & !mask)
}

/// The packed trees.
struct Layout {
    packed: Vec<Packed>,
    leaf_weights: Vec<(u32, u32)>,
    roots: Vec<u32>,
    group_depths: Vec<u32>,
    worst_case_steps: usize,
}

/// Lays the trees out in pre-order (see [`Packed`]). The input is a checked forest, so every
/// walk ends at a leaf within its tree's depth.
fn pack(nodes: &[Node], roots: &[u32]) -> Layout {
    let mut packed: Vec<Packed> = Vec::with_capacity(nodes.len());
    let mut leaf_weights = Vec::with_capacity(nodes.len());
    let mut packed_roots = Vec::with_capacity(roots.len());
    let mut depths = Vec::with_capacity(roots.len());
    for &root in roots {
        packed_roots.push(packed.len() as u32);
        let mut deepest = 0u32;
        // (original node, branches above it, the packed parent whose false child this is).
        let mut stack = vec![(root, 0u32, None::<usize>)];
        while let Some((i, depth, false_of)) = stack.pop() {
            let here = packed.len();
            if let Some(parent) = false_of {
                packed[parent].next = here as u32;
            }
            let node = &nodes[i as usize];
            if node.mode == Mode::Leaf {
                deepest = deepest.max(depth);
                packed.push(Packed {
                    value: f32::NAN,
                    next: here as u32,
                    feature: 0,
                    kind: Mode::Leaf,
                    missing_goes_true: false,
                });
                leaf_weights.push((node.a, node.b));
            } else {
                packed.push(Packed {
                    value: node.threshold,
                    next: 0,
                    feature: node.feature as u16,
                    kind: node.mode,
                    missing_goes_true: node.missing_goes_true,
                });
                leaf_weights.push((0, 0));
                // The true child comes next; the false child after the true subtree.
                stack.push((node.b, depth + 1, Some(here)));
                stack.push((node.a, depth + 1, None));
            }
        }
        depths.push(deepest);
    }
    let group_depths = depths
        .chunks(LANES)
        .map(|g| g.iter().copied().max().unwrap_or(0))
        .collect();
    Layout {
        packed,
        leaf_weights,
        roots: packed_roots,
        group_depths,
        worst_case_steps: depths.iter().map(|&d| d as usize + 1).sum(),
    }
}
