//! In-process ONNX models: linear and tree-ensemble classifiers as scikit-learn (skl2onnx),
//! LightGBM and XGBoost (onnxmltools) export them, evaluated by a small interpreter of the
//! ONNX-ML operators they use.
//!
//! Why our own evaluator rather than tract: tract-onnx evaluates tree ensembles at ~1 ms per row
//! (quadratic in the tree count), rejects binary ensembles as exported, lacks `Scaler` and
//! `TreeEnsembleRegressor`, and adds minutes of compile time. The exporters' graphs need a dozen
//! operators; their semantics follow ONNX Runtime and are pinned by parity tests against it.

mod attrs;
mod compact;
mod graph;
mod ops;
mod proto;
mod tree;

use std::path::Path;
use std::sync::Arc;

use antifraud_domain::{
    FEATURE_NAMES, FEATURE_SCHEMA_VERSION, Features, FraudModel, ModelError, ModelIdentity,
    Prediction,
};
use async_trait::async_trait;
use prost::Message;
use sha2::{Digest, Sha256};

use graph::Graph;

/// Metadata keys the training pipeline writes into the model (`metadata_props`).
pub mod metadata {
    /// The model's name in responses and metrics.
    pub const NAME: &str = "antifraud.model_name";
    /// The model's version.
    pub const VERSION: &str = "antifraud.model_version";
    /// The feature schema version the model was trained for.
    pub const FEATURE_SCHEMA_VERSION: &str = "antifraud.feature_schema_version";
    /// The feature names, comma-separated, in input order.
    pub const FEATURE_NAMES: &str = "antifraud.feature_names";
}

/// Rows whose worst-case walk visits at most this many tree nodes are evaluated on the calling
/// async worker: at a few ns a node (lock-step walk) that is well under 50 µs, while the hop to the blocking pool alone
/// costs ~12 µs (measured by `cargo xtask bench-model`). Larger models go to the blocking pool,
/// so that a slow evaluation never holds a worker and the scoring budget's timer fires on time.
const INLINE_MAX_STEPS: usize = 4096;

/// The largest model file read: far above a 1,000-tree ensemble, far below memory trouble.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The shipped model's bytes (about 1 MB).
pub const SHIPPED: &[u8] = include_bytes!("../../models/fraud-gbdt.onnx");

/// A model file that cannot serve. The message is one line that names the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a usable model.
    #[error("{0}")]
    Invalid(String),
}

/// A row the compiled graph could not evaluate. Validation at load time rules these out for the
/// model's own input width, so at request time one means a bug; the use case then answers with
/// the default score and `model_status: error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The feature vector is not as wide as the model's input.
    #[error("{given} features given, the model takes {expected}")]
    Width {
        /// Features given.
        given: usize,
        /// Features the model takes.
        expected: usize,
    },
    /// An operator's input is narrower than the operator reads.
    #[error("an operator reads {needed} features of an input that has {got}")]
    Narrow {
        /// Values the operator reads.
        needed: usize,
        /// Values the input has.
        got: usize,
    },
    /// A second input cannot be broadcast over the first.
    #[error("cannot broadcast {from} values over {over}")]
    Broadcast {
        /// The second input's length.
        from: usize,
        /// The first input's length.
        over: usize,
    },
    /// An operator lacks an input it needs.
    #[error("an operator is missing an input")]
    MissingInput,
    /// The output was not computed, or is shorter than the probability's column.
    #[error("the probability output was not computed")]
    NoOutput,
}

/// A loaded ONNX model, ready to score.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    graph: Arc<Graph>,
    identity: ModelIdentity,
}

impl OnnxModel {
    /// Reads and validates the model at `path`.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let io = |source| LoadError::Io {
            path: path.display().to_string(),
            source,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > MAX_FILE_BYTES {
            return Err(LoadError::Invalid(format!(
                "{} is {size} bytes, more than the {MAX_FILE_BYTES} accepted",
                path.display()
            )));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        let fallback = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "onnx".to_owned());
        Self::from_bytes(&bytes, &fallback)
            .map_err(|e| LoadError::Invalid(format!("{}: {e}", path.display())))
    }

    /// The model trained by `ml/train.py` (`crates/model/models/fraud-gbdt.onnx`), embedded in
    /// the binary so that the service scores with it with zero setup.
    pub fn shipped() -> Result<Self, LoadError> {
        Self::from_bytes(SHIPPED, "fraud-gbdt")
    }

    /// Decodes and validates a model; `fallback_name` names it when its metadata does not.
    pub fn from_bytes(bytes: &[u8], fallback_name: &str) -> Result<Self, LoadError> {
        let model = proto::ModelProto::decode(bytes)
            .map_err(|e| LoadError::Invalid(format!("not an ONNX model: {e}")))?;
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| LoadError::Invalid("not an ONNX model: no graph".into()))?;
        let meta = |key: &str| {
            model
                .metadata_props
                .iter()
                .find(|p| p.key == key)
                .map(|p| p.value.as_str())
        };
        if let Some(version) = meta(metadata::FEATURE_SCHEMA_VERSION)
            && version != FEATURE_SCHEMA_VERSION.to_string()
        {
            return Err(LoadError::Invalid(format!(
                "the model was trained for feature schema {version}, this service computes \
                 schema {FEATURE_SCHEMA_VERSION}"
            )));
        }
        if let Some(names) = meta(metadata::FEATURE_NAMES) {
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            if names != FEATURE_NAMES {
                return Err(LoadError::Invalid(format!(
                    "the model's feature names differ from the service's: {}",
                    first_difference(&names, &FEATURE_NAMES)
                )));
            }
        }
        let compiled = Graph::compile(graph, FEATURE_NAMES.len())?;
        validate(&compiled)?;
        let digest = Sha256::digest(bytes);
        let identity = ModelIdentity {
            name: meta(metadata::NAME).unwrap_or(fallback_name).to_owned(),
            version: match meta(metadata::VERSION) {
                Some(v) => v.to_owned(),
                None => format!("sha256:{}", hex(&digest[..6])),
            },
        };
        tracing::info!(
            model = %identity.name,
            version = %identity.version,
            producer = %model.producer_name,
            output = %compiled.output_description,
            trees = compiled.trees,
            worst_case_steps = compiled.worst_case_steps,
            inline = compiled.worst_case_steps <= INLINE_MAX_STEPS,
            compact = compiled.compact,
            "ONNX model loaded"
        );
        Ok(OnnxModel {
            graph: Arc::new(compiled),
            identity,
        })
    }

    /// The fraud probability of one feature vector, computed on the calling thread.
    pub fn probability(&self, features: &Features) -> Result<f64, ModelError> {
        self.graph
            .probability(features.as_slice())
            .map_err(|e| ModelError::Failed(Box::new(e)))
    }

    /// Which output the probability is read from, such as `probabilities[:, 1]`.
    pub fn output_description(&self) -> &str {
        &self.graph.output_description
    }
}

/// Probes the model with rows a service will send — all zeros, all missing, large values — and
/// refuses it unless each answer is a probability.
fn validate(graph: &Graph) -> Result<(), LoadError> {
    let width = FEATURE_NAMES.len();
    for (label, row) in [
        ("all-zero", vec![0.0; width]),
        ("all-missing", vec![f64::NAN; width]),
        ("large", vec![1e6; width]),
    ] {
        match graph.probability(&row) {
            Ok(p) if (0.0..=1.0).contains(&p) => {}
            Ok(p) => {
                return Err(LoadError::Invalid(format!(
                    "output {} is {p} for an {label} row, not a probability in 0..1",
                    graph.output_description
                )));
            }
            Err(e) => {
                return Err(LoadError::Invalid(format!(
                    "scoring an {label} row failed: {e}"
                )));
            }
        }
    }
    Ok(())
}

fn first_difference(a: &[&str], b: &[&str]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("position {i} is {:?}, expected {:?}", a[i], b[i]),
        None => format!("{} names, expected {}", a.len(), b.len()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl FraudModel for OnnxModel {
    fn identity(&self) -> ModelIdentity {
        self.identity.clone()
    }

    /// Small models run inline; large ones on the runtime's blocking pool (see
    /// [`INLINE_MAX_STEPS`]).
    async fn predict(&self, features: &Features) -> Result<Prediction, ModelError> {
        let probability = if self.graph.worst_case_steps <= INLINE_MAX_STEPS {
            self.probability(features)?
        } else {
            let graph = Arc::clone(&self.graph);
            let row = features.as_slice().to_vec();
            tokio::task::spawn_blocking(move || graph.probability(&row))
                .await
                .map_err(|e| ModelError::Failed(Box::new(e)))?
                .map_err(|e| ModelError::Failed(Box::new(e)))?
        };
        Ok(Prediction {
            probability,
            model: self.identity.clone(),
        })
    }

    async fn check(&self) -> Result<(), ModelError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Load-time validation and operator semantics on hand-built graphs. Parity with ONNX
    //! Runtime on exported models is in `tests/parity.rs`.

    use super::proto::*;
    use super::*;

    const WIDTH: usize = FEATURE_NAMES.len();

    fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            ints: v.to_vec(),
            r#type: 7,
            ..Default::default()
        }
    }
    fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            floats: v.to_vec(),
            r#type: 6,
            ..Default::default()
        }
    }
    fn attr_string(name: &str, v: &str) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            s: v.as_bytes().to_vec(),
            r#type: 3,
            ..Default::default()
        }
    }
    fn attr_strings(name: &str, v: &[&str]) -> AttributeProto {
        AttributeProto {
            name: name.into(),
            strings: v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            r#type: 8,
            ..Default::default()
        }
    }

    fn value(name: &str, elem_type: i32, dims: &[Option<i64>]) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| Dimension {
                                dim_value: *d,
                                dim_param: d.is_none().then(|| "N".into()),
                            })
                            .collect(),
                    }),
                }),
            }),
        }
    }

    /// One tree: `x[feature] <= 0.5` (NaN goes to the true branch) → weight `low`, else `high`;
    /// binary classifier with the class-0 single-score convention of the exporters.
    fn stump(feature: i64, low: f32, high: f32, post: &str) -> NodeProto {
        NodeProto {
            name: "trees".into(),
            op_type: "TreeEnsembleClassifier".into(),
            domain: "ai.onnx.ml".into(),
            input: vec!["features".into()],
            output: vec!["label".into(), "probabilities".into()],
            attribute: vec![
                attr_ints("nodes_treeids", &[0, 0, 0]),
                attr_ints("nodes_nodeids", &[0, 1, 2]),
                attr_ints("nodes_featureids", &[feature, 0, 0]),
                attr_floats("nodes_values", &[0.5, 0.0, 0.0]),
                attr_strings("nodes_modes", &["BRANCH_LEQ", "LEAF", "LEAF"]),
                attr_ints("nodes_truenodeids", &[1, 0, 0]),
                attr_ints("nodes_falsenodeids", &[2, 0, 0]),
                attr_ints("nodes_missing_value_tracks_true", &[1, 0, 0]),
                attr_ints("class_treeids", &[0, 0]),
                attr_ints("class_nodeids", &[1, 2]),
                attr_ints("class_ids", &[0, 0]),
                attr_floats("class_weights", &[low, high]),
                attr_ints("classlabels_int64s", &[0, 1]),
                attr_string("post_transform", post),
            ],
        }
    }

    fn model(nodes: Vec<NodeProto>, width: i64) -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "test".into(),
            graph: Some(GraphProto {
                name: "g".into(),
                node: nodes,
                input: vec![value("features", data_type::FLOAT, &[None, Some(width)])],
                output: vec![
                    value("label", data_type::INT64, &[None]),
                    value("probabilities", data_type::FLOAT, &[None, Some(2)]),
                ],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn load(m: &ModelProto) -> Result<OnnxModel, LoadError> {
        OnnxModel::from_bytes(&m.encode_to_vec(), "test")
    }

    fn row(pairs: &[(usize, f64)]) -> Features {
        let mut v = vec![0.0; WIDTH];
        for &(i, x) in pairs {
            v[i] = x;
        }
        Features::from_slice(&v).expect("full width")
    }

    fn error_of(m: &ModelProto) -> String {
        load(m).expect_err("the model is refused").to_string()
    }

    #[test]
    fn a_logistic_stump_scores_each_branch_and_sends_missing_values_the_marked_way() {
        let m = load(&model(vec![stump(3, -1.0, 2.0, "LOGISTIC")], WIDTH as i64)).expect("loads");
        let sigmoid = |z: f64| 1.0 / (1.0 + (-z).exp());
        let p = |x: f64| m.probability(&row(&[(3, x)])).expect("scores");
        assert!((p(0.2) - sigmoid(-1.0)).abs() < 1e-6);
        assert!(
            (p(0.5) - sigmoid(-1.0)).abs() < 1e-6,
            "the threshold itself goes left (<=)"
        );
        assert!((p(0.7) - sigmoid(2.0)).abs() < 1e-6);
        assert!(
            (p(f64::NAN) - sigmoid(-1.0)).abs() < 1e-6,
            "missing tracks true"
        );
        assert_eq!(m.output_description(), "probabilities[:, 1]");
        assert_eq!(m.identity().name, "test");
        assert!(m.identity().version.starts_with("sha256:"));
    }

    /// `trees` stumps on feature 0, tree `k` using `modes[k % len]` against threshold `k`, with
    /// weight `+1` on its true branch and `0` on its false one (NONE transform, SUM).
    fn stumps(trees: i64, modes: &[&str]) -> NodeProto {
        let mut node = stump(0, 0.0, 0.0, "NONE");
        let per_tree = |f: &dyn Fn(i64) -> [i64; 3]| (0..trees).flat_map(f).collect::<Vec<_>>();
        let set_ints = |node: &mut NodeProto, name: &str, v: Vec<i64>| {
            node.attribute.retain(|a| a.name != name);
            node.attribute.push(attr_ints(name, &v));
        };
        set_ints(&mut node, "nodes_treeids", per_tree(&|t| [t, t, t]));
        set_ints(&mut node, "nodes_nodeids", per_tree(&|_| [0, 1, 2]));
        set_ints(&mut node, "nodes_featureids", per_tree(&|_| [0, 0, 0]));
        set_ints(&mut node, "nodes_truenodeids", per_tree(&|_| [1, 0, 0]));
        set_ints(&mut node, "nodes_falsenodeids", per_tree(&|_| [2, 0, 0]));
        set_ints(
            &mut node,
            "nodes_missing_value_tracks_true",
            per_tree(&|_| [0, 0, 0]),
        );
        set_ints(
            &mut node,
            "class_treeids",
            (0..trees).flat_map(|t| [t, t]).collect(),
        );
        set_ints(
            &mut node,
            "class_nodeids",
            (0..trees).flat_map(|_| [1, 2]).collect(),
        );
        set_ints(
            &mut node,
            "class_ids",
            (0..trees).flat_map(|_| [0, 0]).collect(),
        );
        node.attribute.retain(|a| {
            !["nodes_values", "nodes_modes", "class_weights"].contains(&a.name.as_str())
        });
        let values: Vec<f32> = (0..trees).flat_map(|t| [t as f32, 0.0, 0.0]).collect();
        node.attribute.push(attr_floats("nodes_values", &values));
        let modes: Vec<&str> = (0..trees as usize)
            .flat_map(|t| [modes[t % modes.len()], "LEAF", "LEAF"])
            .collect();
        node.attribute.push(attr_strings("nodes_modes", &modes));
        let weights: Vec<f32> = (0..trees).flat_map(|_| [1.0 / trees as f32, 0.0]).collect();
        node.attribute.push(attr_floats("class_weights", &weights));
        node
    }

    #[test]
    fn every_branch_mode_and_tree_groups_of_any_size_are_walked() {
        // 11 trees: one full group of eight and a partial one. P(fraud) = (trees taking their
        // true branch) / 11, so each mode's comparison shows in the result.
        let score = |modes: &[&str], x: f64| {
            let m = load(&model(vec![stumps(11, modes)], WIDTH as i64)).expect("loads");
            (m.probability(&row(&[(0, x)])).expect("scores") * 11.0).round() as i64
        };
        // Thresholds are 0..=10; x = 4 is <= 7 of them, < 6, >= 5, > 4, == 1, != 10.
        assert_eq!(score(&["BRANCH_LEQ"], 4.0), 7);
        assert_eq!(score(&["BRANCH_LT"], 4.0), 6);
        assert_eq!(score(&["BRANCH_GTE"], 4.0), 5);
        assert_eq!(score(&["BRANCH_GT"], 4.0), 4);
        assert_eq!(score(&["BRANCH_EQ"], 4.0), 1);
        assert_eq!(score(&["BRANCH_NEQ"], 4.0), 10);
        // Mixed: trees alternate LEQ (thresholds 0, 2, .., 10) and GT (1, 3, .., 9): x = 4 is
        // <= 4 of the six even ones and > 2 of the five odd ones.
        assert_eq!(score(&["BRANCH_LEQ", "BRANCH_GT"], 4.0), 6);
    }

    #[test]
    fn non_negative_weights_without_a_transform_are_probabilities_already() {
        // A random forest's leaves hold P(fraud) / trees: [1 − s, s].
        let m = load(&model(vec![stump(0, 0.1, 0.9, "NONE")], WIDTH as i64)).expect("loads");
        assert!((m.probability(&row(&[(0, 1.0)])).expect("scores") - 0.9).abs() < 1e-6);
        assert!((m.probability(&row(&[(0, 0.0)])).expect("scores") - 0.1).abs() < 1e-6);
    }

    #[test]
    fn metadata_names_the_model_and_a_foreign_feature_schema_is_refused() {
        let mut m = model(vec![stump(0, -1.0, 1.0, "LOGISTIC")], WIDTH as i64);
        let entry = |k: &str, v: &str| StringStringEntryProto {
            key: k.into(),
            value: v.into(),
        };
        m.metadata_props = vec![
            entry(metadata::NAME, "fraud-x"),
            entry(metadata::VERSION, "7"),
        ];
        let identity = load(&m).expect("loads").identity();
        assert_eq!(
            (identity.name.as_str(), identity.version.as_str()),
            ("fraud-x", "7")
        );

        m.metadata_props
            .push(entry(metadata::FEATURE_SCHEMA_VERSION, "999"));
        assert!(error_of(&m).contains("feature schema 999"));
        m.metadata_props.pop();
        m.metadata_props
            .push(entry(metadata::FEATURE_NAMES, "amount,count"));
        assert!(
            error_of(&m).contains("feature names differ"),
            "{}",
            error_of(&m)
        );
        m.metadata_props.pop();
        m.metadata_props
            .push(entry(metadata::FEATURE_NAMES, &FEATURE_NAMES.join(",")));
        assert!(load(&m).is_ok());
    }

    #[test]
    fn a_model_for_another_input_width_is_refused_with_both_widths() {
        let message = error_of(&model(vec![stump(0, -1.0, 1.0, "LOGISTIC")], 5));
        assert!(
            message.contains("takes 5 features") && message.contains(&WIDTH.to_string()),
            "{message}"
        );
    }

    #[test]
    fn a_tree_reading_past_the_features_is_refused() {
        let message = error_of(&model(
            vec![stump(WIDTH as i64, -1.0, 1.0, "LOGISTIC")],
            WIDTH as i64,
        ));
        assert!(message.contains("feature"), "{message}");
    }

    #[test]
    fn a_cycle_in_a_tree_is_refused_rather_than_looping_at_request_time() {
        let mut node = stump(0, -1.0, 1.0, "LOGISTIC");
        // Node 0's false branch points back to itself.
        for a in &mut node.attribute {
            if a.name == "nodes_falsenodeids" {
                a.ints = vec![0, 0, 0];
            }
        }
        let message = error_of(&model(vec![node], WIDTH as i64));
        assert!(message.contains("not a tree"), "{message}");
    }

    #[test]
    fn garbage_unknown_operators_and_zipmap_are_refused_with_a_reason() {
        assert!(
            OnnxModel::from_bytes(b"\xff\xff\xff not protobuf", "x")
                .expect_err("refused")
                .to_string()
                .contains("not an ONNX model")
        );
        let mut conv = stump(0, -1.0, 1.0, "LOGISTIC");
        conv.op_type = "Conv".into();
        conv.domain = String::new();
        assert!(error_of(&model(vec![conv], WIDTH as i64)).contains("not supported"));
        let zipmap = NodeProto {
            name: "zip".into(),
            op_type: "ZipMap".into(),
            domain: "ai.onnx.ml".into(),
            input: vec!["probabilities".into()],
            output: vec!["output_probability".into()],
            ..Default::default()
        };
        let message = error_of(&model(
            vec![stump(0, -1.0, 1.0, "LOGISTIC"), zipmap],
            WIDTH as i64,
        ));
        assert!(message.contains("zipmap=False"), "{message}");
    }

    #[test]
    fn an_output_that_is_not_a_probability_is_refused() {
        // Raw scores without the logistic transform and with mixed signs: −1 is no probability.
        let message = error_of(&model(vec![stump(0, -1.0, 3.0, "NONE")], WIDTH as i64));
        assert!(message.contains("not a probability"), "{message}");
    }

    #[test]
    fn the_shipped_model_loads_with_its_identity() {
        let model =
            OnnxModel::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud-gbdt.onnx"))
                .expect("the shipped model loads");
        assert_eq!(model.identity().name, "fraud-gbdt");
        assert_eq!(model.graph.trees, 300);
        assert!(model.graph.compact, "its trees walk in compact form");
        assert!(
            model.graph.worst_case_steps <= 300 * 7,
            "300 trees of depth at most 6: {}",
            model.graph.worst_case_steps
        );
    }

    #[test]
    fn a_row_the_graph_cannot_take_is_an_evaluation_error_not_a_load_error() {
        let model = OnnxModel::shipped().expect("the shipped model loads");
        assert_eq!(
            model.graph.probability(&[0.0; 3]),
            Err(EvalError::Width {
                given: 3,
                expected: WIDTH
            })
        );
        assert!(model.graph.probability(&[0.0; WIDTH]).is_ok());
    }
}
