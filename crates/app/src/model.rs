//! The model the settings name, swappable at run time: `onnx:PATH` models reload on SIGHUP
//! (`reload.rs`).

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use antifraud_domain::{Features, FraudModel, ModelError, ModelIdentity, Prediction};
use antifraud_model::{BuiltinModel, OnnxModel, RemoteModel};
use anyhow::Context;
use async_trait::async_trait;

use crate::config::ModelSettings;

/// The current model behind a lock held only to clone an `Arc`: a reload swaps it while
/// in-flight requests finish with the model they started with.
pub(crate) struct ReloadableModel {
    current: RwLock<Arc<dyn FraudModel>>,
    source: ModelSettings,
}

impl ReloadableModel {
    /// Loads the model `source` names. A model file that cannot serve stops start-up with one
    /// line naming the setting and the reason.
    pub(crate) fn load(source: &ModelSettings, call_timeout: Duration) -> anyhow::Result<Self> {
        let model: Arc<dyn FraudModel> = match source {
            ModelSettings::Builtin => Arc::new(BuiltinModel),
            ModelSettings::Shipped => match OnnxModel::shipped() {
                Ok(model) => Arc::new(model),
                Err(error) => {
                    // Cannot happen with a tested build; if it does, still score.
                    tracing::error!(%error, "the shipped model does not load; using the built-in baseline");
                    Arc::new(BuiltinModel)
                }
            },
            ModelSettings::Onnx(path) => Arc::new(load_file(path)?),
            ModelSettings::Remote(url) => Arc::new(
                RemoteModel::new(url, call_timeout)
                    .context("--model (ANTIFRAUD_MODEL)")?
                    .with_headers(Arc::new(crate::telemetry::trace_context_headers)),
            ),
        };
        Ok(ReloadableModel {
            current: RwLock::new(model),
            source: source.clone(),
        })
    }

    fn get(&self) -> Arc<dyn FraudModel> {
        // A poisoned lock means a panic while swapping an `Arc`, which cannot leave it torn.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads and checks the model file again, without serving it yet: `None` when the model is
    /// not a file (nothing to reload).
    pub(crate) fn read_again(&self) -> Option<anyhow::Result<OnnxModel>> {
        let ModelSettings::Onnx(path) = &self.source else {
            return None;
        };
        Some(load_file(path))
    }

    /// Serves `model` from the next call on; calls in flight finish with the one they started
    /// with.
    pub(crate) fn install(&self, model: OnnxModel) -> ModelIdentity {
        let identity = model.identity();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
        identity
    }
}

fn load_file(path: &Path) -> anyhow::Result<OnnxModel> {
    OnnxModel::load(path).context("--model (ANTIFRAUD_MODEL): the model cannot serve")
}

#[async_trait]
impl FraudModel for ReloadableModel {
    fn identity(&self) -> ModelIdentity {
        self.get().identity()
    }

    /// One snapshot serves the whole call, and its identity comes back with the answer: a
    /// reload meanwhile neither cuts the call short nor relabels it.
    async fn predict(&self, features: &Features) -> Result<Prediction, ModelError> {
        self.get().predict(features).await
    }

    async fn check(&self) -> Result<(), ModelError> {
        self.get().check().await
    }
}
