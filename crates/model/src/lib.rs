//! Fraud model adapters behind the domain's [`FraudModel`](antifraud_domain::FraudModel) port.
//!
//! - [`BuiltinModel`]: a documented logistic baseline over the feature vector, so that the
//!   service scores meaningfully with zero setup.
//! - [`OnnxModel`]: linear and tree-ensemble models exported to ONNX, evaluated in process.
//! - [`RemoteModel`]: a model server speaking the Open Inference Protocol (KServe V2 REST).

mod builtin;
pub mod onnx;
mod remote;

pub use builtin::BuiltinModel;
pub use onnx::OnnxModel;
pub use remote::{HeaderHook, RemoteModel, RemoteModelError, TensorNames, install_crypto_provider};
