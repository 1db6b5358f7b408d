//! API tests: each starts the real server on a free port and speaks HTTP to it.

mod config;
mod docs;
mod echo;
mod failover;
mod fake_model;
mod health;
mod helpers;
mod idempotency;
mod logs;
mod metrics;
mod models;
mod openapi;
mod redis_faults;
mod replay;
mod rules;
mod scoring;
mod security;
mod shutdown;
mod traces;
mod validation;
