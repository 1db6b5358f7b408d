//! API tests: each starts the real server on a free port and speaks HTTP to it.

mod config;
mod health;
mod helpers;
mod idempotency;
mod metrics;
mod models;
mod openapi;
mod redis_faults;
mod scoring;
mod traces;
mod validation;
