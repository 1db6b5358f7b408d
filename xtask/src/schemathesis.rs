//! `cargo xtask schemathesis`: property-based tests of the running service generated from its
//! own OpenAPI document (schemathesis, from PyPI, in a pinned venv).
//!
//! Every check runs but one: `positive_data_acceptance` expects every schema-valid body to be
//! accepted, and a schema cannot say what the service rightly refuses with 422 (a timestamp
//! older than the 24 h retention, a currency outside ISO 4217, text that is not an IP address).
//! Everything else holds: no 5xx, every answer documented and matching its schema (status,
//! content type, headers, body), schema-invalid bodies refused, 405 with `Allow` for other
//! methods.

use std::process::Command;

use anyhow::{Context, bail};

use crate::process::{Started, free_port, wait_for_port};
use crate::{cargo, python, workspace_root};

#[derive(clap::Args)]
pub(crate) struct Schemathesis {
    /// Examples generated per operation and phase.
    #[arg(long, default_value_t = 100)]
    max_examples: u32,
    /// Seed of the generator: the same seed sends the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Schemathesis {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let root = workspace_root();
        let bin = python::venv(
            &root.join("target/schemathesis-venv"),
            &root.join("xtask/requirements-schemathesis.txt"),
        )?;
        cargo(&[
            "build",
            "--locked",
            "-p",
            "antifraud-app",
            "--bin",
            "antifraud",
        ])?;
        // With a key, so that the authenticated path is the one tested; a per-run key.
        let key = format!("schemathesis-{}-{}", std::process::id(), free_port()?);
        let port = free_port()?;
        let _service = Started::spawn(
            "antifraud",
            Command::new(root.join("target/debug/antifraud"))
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .env("ANTIFRAUD_API_KEYS", &key),
        )?;
        wait_for_port(port)?;
        let schema = format!("http://127.0.0.1:{port}/api-docs/openapi.json");
        println!(
            "$ schemathesis run {schema} --checks all --exclude-checks positive_data_acceptance"
        );
        let status = Command::new(bin.join("schemathesis"))
            .args([
                "run",
                &schema,
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                &self.max_examples.to_string(),
                "--seed",
                &self.seed.to_string(),
                "--header",
                &format!("Authorization: Bearer {key}"),
                "--no-color",
            ])
            .current_dir(root.join("target"))
            .status()
            .context("cannot run schemathesis")?;
        if !status.success() {
            bail!("schemathesis found answers that break the OpenAPI document ({status})");
        }
        println!("schemathesis: every check passed");
        Ok(())
    }
}
