//! The antifraud HTTP service: configuration, routes, error mapping and the composition root that
//! wires the adapters into the domain's scoring use case. No business logic lives here.

mod admission;
mod auth;
pub mod config;
mod dto;
pub mod echo;
pub mod intake;
mod limits;
mod metered;
mod metrics;
mod model;
mod problem;
mod reload;
pub mod replay;
mod routes;
pub mod rules;
mod startup;
mod system_clock;
pub mod telemetry;

pub use config::{ConfigError, Settings};
pub use routes::ApiDoc;
pub use startup::Application;
