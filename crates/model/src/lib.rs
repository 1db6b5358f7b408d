//! Fraud model adapters behind the domain's [`FraudModel`](antifraud_domain::FraudModel) port.
//!
//! - [`BuiltinModel`]: a documented logistic baseline over the feature vector, so that the
//!   service scores meaningfully with zero setup.

mod builtin;

pub use builtin::BuiltinModel;
