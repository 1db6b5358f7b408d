//! Logging setup: one subscriber for the whole process, filtered by `RUST_LOG`.
//!
//! Conventions: dotted field names (`model.name`), units in names (`duration_ms`), a failure is
//! logged once where it is handled, and no log line carries an IP address, a device id or card
//! data beyond the BIN.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global `tracing` subscriber on stderr, filtered by `RUST_LOG` (default `info`):
/// human-readable lines, or one JSON object per line. Call once, first thing in `main`.
pub fn init_subscriber(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
