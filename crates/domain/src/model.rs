//! The model port: a fraud probability from a feature vector.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::features::Features;

/// Which model answered: shown in responses so that a score can be traced to what produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelIdentity {
    /// The model's name, such as `builtin-logistic`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// A model's answer: the probability, and the model that computed it. They come back together
/// so that a model swapped while the call ran (a reload) cannot label the answer of another.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The fraud probability, `0..=1` by the port's contract (the use case checks).
    pub probability: f64,
    /// The model that computed it.
    pub model: ModelIdentity,
}

/// How the model call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelStatus {
    /// The model answered within its budget with a valid probability.
    Ok,
    /// The model did not answer within its budget: the default score was used.
    Timeout,
    /// The model failed, panicked or answered something that is not a probability: the default
    /// score was used.
    Error,
}

impl ModelStatus {
    /// `ok`, `timeout` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelStatus::Ok => "ok",
            ModelStatus::Timeout => "timeout",
            ModelStatus::Error => "error",
        }
    }
}

impl fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model could not produce a probability.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The model is not ready to answer (loading, remote server down).
    #[error("model unavailable: {0}")]
    Unavailable(String),
    /// The model failed while scoring.
    #[error("model failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A fraud model.
///
/// Contract: [`FraudModel::predict`] returns a probability in `0..=1`, with the identity of the
/// model that computed it (which, for a model swapped at run time, is the one that served this
/// call, not necessarily the one serving when it returns). It may be slow or fail; the scoring
/// use case bounds its time and replaces failures with the default score, so an adapter need not
/// enforce a timeout itself. CPU-heavy adapters must not block the async runtime.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait FraudModel: Send + Sync {
    /// Which model this is.
    fn identity(&self) -> ModelIdentity;

    /// The fraud probability of one transaction, and which model gave it.
    async fn predict(&self, features: &Features) -> Result<Prediction, ModelError>;

    /// Whether the model can answer now (for readiness checks).
    async fn check(&self) -> Result<(), ModelError>;
}

/// The composition root picks the model at run time and shares it: `Arc<dyn FraudModel>`.
#[async_trait]
impl<T: FraudModel + ?Sized> FraudModel for std::sync::Arc<T> {
    fn identity(&self) -> ModelIdentity {
        (**self).identity()
    }

    async fn predict(&self, features: &Features) -> Result<Prediction, ModelError> {
        (**self).predict(features).await
    }

    async fn check(&self) -> Result<(), ModelError> {
        (**self).check().await
    }
}
